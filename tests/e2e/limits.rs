//! Limits: connection count, message size, Origin, protocol errors.

use std::time::Duration;

use rfc6455::{CloseCode, Frame, OpCode};

use crate::support::{test_config, Connect, Server, TestClient};

#[tokio::test]
async fn max_connections_refuses_upgrades_with_503_until_a_slot_frees() {
    let mut cfg = test_config();
    cfg.max_connections = 3;
    let server = Server::start(cfg).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(TestClient::connect(server.addr, "/ws").await);
    }
    for _ in 0..2 {
        match TestClient::try_connect(server.addr, "/ws", &[]).await {
            Connect::Refused(status) => assert_eq!(status, 503),
            Connect::Open(_) => panic!("a fourth connection was accepted"),
        }
    }
    // Plain HTTP still works at the limit.
    let health =
        crate::support::http(server.addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(health.status, 200);
    assert!(server.metric("chatgroup_handshakes_rejected_total").await >= 2);

    open.pop().unwrap().close().await;
    crate::support::eventually("a slot frees after a close", || async {
        server.metric("chatgroup_connections_open").await == 2
    })
    .await;
    let again = TestClient::connect(server.addr, "/ws").await;
    again.close().await;
    for c in open {
        c.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn oversize_frames_and_messages_close_with_1009() {
    let mut cfg = test_config();
    cfg.max_frame_len = 1024;
    cfg.max_message_len = 1536;
    let server = Server::start(cfg).await;

    let mut c = TestClient::connect(server.addr, "/ws").await;
    c.send_text(&"a".repeat(1000)).await; // fits (and is answered as malformed chat JSON)
    assert!(c.expect_text().await.contains("malformed"));
    c.send_text("ping").await;
    assert_eq!(c.expect_text().await, "pong");
    c.send_text(&"a".repeat(2000)).await;
    c.expect_close(CloseCode::MESSAGE_TOO_BIG).await;

    // Each fragment fits the frame limit, the message does not.
    let mut c = TestClient::connect(server.addr, "/ws").await;
    c.send_frame(&Frame::new(OpCode::Text, "a".repeat(1000)).with_fin(false))
        .await;
    c.send_frame(&Frame::new(OpCode::Continuation, "a".repeat(1000)))
        .await;
    c.expect_close(CloseCode::MESSAGE_TOO_BIG).await;
    assert!(server.metric("chatgroup_protocol_errors_total").await >= 2);
    server.stop().await;
}

#[tokio::test]
async fn protocol_errors_close_with_their_code() {
    let server = Server::start(test_config()).await;
    // An unmasked client frame is a protocol error (1002).
    let mut c = TestClient::connect(server.addr, "/ws").await;
    c.send_raw(&[0x81, 0x02, b'h', b'i']).await;
    c.expect_close(CloseCode::PROTOCOL_ERROR).await;
    // Invalid UTF-8 in a text message (1007).
    let mut c = TestClient::connect(server.addr, "/ws").await;
    c.send_frame(&Frame::new(OpCode::Text, &b"\xff\xfe"[..]))
        .await;
    c.expect_close(CloseCode::INVALID_PAYLOAD).await;
    // A client-initiated close is echoed.
    let mut c = TestClient::connect(server.addr, "/ws").await;
    c.send_frame(&Frame::close(Some(&rfc6455::CloseFrame::new(
        CloseCode(4000),
        "done",
    ))))
    .await;
    match c.next_event().await {
        Some(rfc6455::Event::Close(Some(f))) => assert_eq!(f.code, CloseCode(4000)),
        other => panic!("expected the close echo, got {other:?}"),
    }
    c.expect_eof().await;
    server.stop().await;
}

#[tokio::test]
async fn origin_policy_gives_403_to_foreign_pages() {
    let server = Server::start(test_config()).await;
    let foreign = [("Origin", "http://evil.example")];
    match TestClient::try_connect(server.addr, "/ws", &foreign).await {
        Connect::Refused(status) => assert_eq!(status, 403),
        Connect::Open(_) => panic!("foreign origin accepted"),
    }
    let own = format!("http://{}", server.addr);
    let c = TestClient::connect_with_origin(server.addr, &own).await;
    c.close().await;
    server.stop().await;

    let mut cfg = test_config();
    cfg.allowed_origins = chatgroup_server::OriginPolicy::parse("https://chat.example").unwrap();
    let server = Server::start(cfg).await;
    let c = TestClient::connect_with_origin(server.addr, "https://chat.example").await;
    c.close().await;
    match TestClient::try_connect(server.addr, "/ws", &[("Origin", &own)]).await {
        Connect::Refused(status) => assert_eq!(status, 403),
        Connect::Open(_) => panic!("origin outside the list accepted"),
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.stop().await;
}

impl TestClient {
    async fn connect_with_origin(addr: std::net::SocketAddr, origin: &str) -> Self {
        match Self::try_connect(addr, "/ws", &[("Origin", origin)]).await {
            Connect::Open(c) => c,
            Connect::Refused(s) => panic!("origin {origin} refused with {s}"),
        }
    }
}

#[tokio::test]
async fn idle_http_connections_are_capped_and_websockets_do_not_count() {
    use tokio::io::AsyncReadExt;

    let mut cfg = test_config();
    cfg.max_http_connections = 3;
    let server = Server::start(cfg).await;
    // Upgraded sockets leave the HTTP phase: more of them than the HTTP cap all open.
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(TestClient::connect(server.addr, "/ws").await);
    }
    // Three clients connect and say nothing: they hold the HTTP phase until their timeout.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    // The next connection is answered 503 at once and closed.
    crate::support::eventually("a connection over the cap is refused with 503", || async {
        let mut extra = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), extra.read_to_end(&mut answer)).await;
        answer.starts_with(b"HTTP/1.1 503 ")
    })
    .await;

    // The idle clients leave; their places are given back, and the refusal was counted
    // (/metrics is itself an HTTP request, so it only answers once places are free).
    drop(idle);
    crate::support::eventually("freed places serve requests again", || async {
        let mut probe = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let _ = tokio::io::AsyncWriteExt::write_all(
            &mut probe,
            b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), probe.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        answer.starts_with("HTTP/1.1 200 ")
            && answer.lines().any(|l| {
                l.strip_prefix("chatgroup_http_connections_refused_total ")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .is_some_and(|v| v >= 1)
            })
    })
    .await;
    for s in sockets {
        s.close().await;
    }
    server.stop().await;
}
