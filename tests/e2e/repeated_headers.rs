//! Headers the handshake reads as one value are refused with 400 when repeated (issue 7: two
//! `Origin` lines used to pass the origin check with the first one); list-valued headers may
//! repeat. Runs against `/echo`, whose handshake goes through the same checks as `/ws`.

use chatgroup_server::{Config, OriginPolicy};

use crate::support::{http, test_config, Connect, Server, TestClient};

const ALLOWED: &str = "http://allowed.example";
const EVIL: &str = "https://evil.example";

fn echo_config() -> Config {
    let mut cfg = test_config();
    cfg.echo = true;
    cfg.allowed_origins = OriginPolicy::parse(ALLOWED).unwrap();
    cfg
}

/// The handshake's HTTP status: 101 when it opened.
async fn status(server: &Server, headers: &[(&str, &str)]) -> u16 {
    match TestClient::try_connect(server.addr, "/echo", headers).await {
        Connect::Open(c) => {
            c.close().await;
            101
        }
        Connect::Refused(status) => status,
    }
}

#[tokio::test]
async fn two_origin_headers_are_refused_in_either_order() {
    let server = Server::start(echo_config()).await;
    assert_eq!(status(&server, &[("Origin", ALLOWED)]).await, 101);
    assert_eq!(status(&server, &[("Origin", EVIL)]).await, 403);
    assert_eq!(
        status(&server, &[("Origin", ALLOWED), ("Origin", EVIL)]).await,
        400,
        "allowed then evil must not pass"
    );
    assert_eq!(
        status(&server, &[("Origin", EVIL), ("Origin", ALLOWED)]).await,
        400
    );
    assert_eq!(
        status(&server, &[("Origin", ALLOWED), ("origin", ALLOWED)]).await,
        400,
        "even equal copies"
    );
    assert_eq!(
        server.metric("chatgroup_handshakes_rejected_total").await,
        4
    );
    server.stop().await;
}

#[tokio::test]
async fn repeated_host_key_and_version_are_refused() {
    let server = Server::start(echo_config()).await;
    // Our client writes Host, Sec-WebSocket-Key and Sec-WebSocket-Version itself; each of
    // these adds a second copy.
    let host = server.addr.to_string();
    for extra in [
        ("Host", "evil.example"),
        ("Host", host.as_str()),
        ("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA=="),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Version", "8"),
    ] {
        assert_eq!(status(&server, &[extra]).await, 400, "second {extra:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn list_valued_headers_may_repeat() {
    let server = Server::start(echo_config()).await;
    for extra in [
        [("Upgrade", "h2c"), ("Upgrade", "websocket")],
        [("Connection", "keep-alive"), ("Connection", "Upgrade")],
        [
            ("Sec-WebSocket-Protocol", "a"),
            ("Sec-WebSocket-Protocol", "b"),
        ],
    ] {
        assert_eq!(status(&server, &extra).await, 101, "{extra:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_repeated_content_length_is_refused_even_when_equal() {
    let server = Server::start(echo_config()).await;
    for lengths in [
        "Content-Length: 0\r\nContent-Length: 0",
        "Content-Length: 0\r\nContent-Length: 2",
    ] {
        let raw = format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{lengths}\r\n\r\nok");
        assert_eq!(http(server.addr, &raw).await.status, 400, "{lengths}");
    }
    let one = "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(http(server.addr, one).await.status, 200);
    server.stop().await;
}
