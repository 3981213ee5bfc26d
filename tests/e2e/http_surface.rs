//! The HTTP side of the port: routes, errors, keep-alive, slowloris.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{http, read_response, test_config, Server};

/// The page and its modules come from the binary with a strict CSP, `nosniff`, and an ETag
/// a browser revalidates with; nothing else of `web/` is reachable.
#[tokio::test]
async fn the_browser_client_is_served_from_the_binary() {
    let server = Server::start(test_config()).await;
    let a = server.addr;
    let header = |head: &str, name: &str| -> Option<String> {
        head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };

    let index = http(a, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(index.status, 200);
    let csp = header(&index.head, "content-security-policy").expect("CSP on the page");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(
        header(&index.head, "x-content-type-options").as_deref(),
        Some("nosniff")
    );

    let module = http(a, "GET /js/connection.js HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(module.status, 200);
    assert_eq!(
        header(&module.head, "content-type").as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    assert!(module.body.contains("export class Connection"));
    let etag = header(&module.head, "etag").expect("an ETag");
    let again = http(
        a,
        &format!("GET /js/connection.js HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n"),
    )
    .await;
    assert_eq!((again.status, again.body.as_str()), (304, ""));

    for path in [
        "/test/backoff.test.js",
        "/package.json",
        "/README.md",
        "/js/../README.md",
    ] {
        let r = http(a, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")).await;
        assert_eq!(r.status, 404, "{path}");
    }
}

#[tokio::test]
async fn routes_and_status_codes() {
    let server = Server::start(test_config()).await;
    let a = server.addr;

    let index = http(a, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(index.status, 200);
    assert!(index.head.contains("text/html"));
    assert!(index.body.contains("<script type=\"module\""));

    let health = http(a, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    let metrics = http(a, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(metrics.status, 200);
    for name in [
        "chatgroup_connections_open",
        "chatgroup_handshakes_accepted_total",
        "chatgroup_handshakes_rejected_total",
        "chatgroup_frames_in_total",
        "chatgroup_frames_out_total",
        "chatgroup_bytes_in_total",
        "chatgroup_bytes_out_total",
        "chatgroup_broadcasts_total",
        "chatgroup_queue_full_disconnects_total",
        "chatgroup_sweep_terminations_total",
    ] {
        assert!(
            metrics.body.contains(&format!("\n{name} ")),
            "{name} exported"
        );
    }

    assert_eq!(
        http(a, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .status,
        404
    );
    let post = http(
        a,
        "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(post.status, 405);
    assert!(post.head.contains("Allow: GET, HEAD"));
    assert_eq!(
        http(a, "PUT /ws HTTP/1.1\r\nHost: t\r\n\r\n").await.status,
        405
    );
    // A plain GET of the WebSocket endpoint is not an upgrade.
    assert_eq!(
        http(a, "GET /ws HTTP/1.1\r\nHost: t\r\n\r\n").await.status,
        400
    );
    // Wrong WebSocket version: 426 with the version we speak.
    let v8 = http(
        a,
        "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await;
    assert_eq!(v8.status, 426);
    assert!(v8.head.contains("Sec-WebSocket-Version: 13"));
    // The chat socket reads no query: what used to pick a conversation is ignored.
    let with_query = http(
        a,
        "GET /ws?conversation_id=x HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert_eq!(with_query.status, 101);
    // The test sockets need --echo.
    for path in ["/echo", "/broadcast"] {
        let status = http(a, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .await
            .status;
        assert_eq!(status, 404, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_and_oversize_heads() {
    let server = Server::start(test_config()).await;
    let a = server.addr;
    assert_eq!(http(a, "GARBAGE\r\n\r\n").await.status, 400);
    assert_eq!(
        http(a, "GET / HTTP/1.1\r\nBad Header\r\n\r\n").await.status,
        400
    );
    assert_eq!(
        http(a, "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n")
            .await
            .status,
        400
    );

    let huge = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(http(a, &huge).await.status, 431);
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(
        http(a, &format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n"))
            .await
            .status,
        431
    );

    let big_body = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n";
    assert_eq!(http(a, big_body).await.status, 413);
    let chunked = "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(http(a, chunked).await.status, 501);
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(test_config()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = BytesMut::new();
    // Two pipelined requests, one with a body that must be skipped, then a third later.
    stream
        .write_all(b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_response(&mut stream, &mut buf).await.unwrap().status,
        404
    );
    assert_eq!(
        read_response(&mut stream, &mut buf).await.unwrap().status,
        200
    );
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(text.ends_with("\r\n\r\n"), "HEAD has no body");
    assert!(text.contains("Connection: close"));
    server.stop().await;
}

#[tokio::test]
async fn slowloris_head_is_cut_off_within_the_handshake_timeout() {
    let mut cfg = test_config();
    cfg.handshake_timeout = Duration::from_millis(500);
    let server = Server::start(cfg).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request =
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let started = Instant::now();
    let mut sent = 0;
    // One byte every 50 ms: the head would take ~3.5 s; the server must not wait for it.
    for byte in request {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
        let mut probe = [0u8; 256];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
        {
            let text = String::from_utf8_lossy(&probe[..n]).into_owned();
            assert!(n == 0 || text.starts_with("HTTP/1.1 408 "), "got {text:?}");
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(
        sent < request.len(),
        "the server waited for the whole trickled head"
    );
    assert!(
        elapsed < Duration::from_millis(1500),
        "cut off after {elapsed:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let mut cfg = test_config();
    cfg.handshake_timeout = Duration::from_millis(300);
    let server = Server::start(cfg).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut byte))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a response");
    server.stop().await;
}
