//! Heartbeats and the liveness sweep.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rfc6455::{Event, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{echo_test_config, test_config, Server, TestClient};

#[tokio::test]
async fn text_ping_gets_text_pong_and_protocol_ping_gets_pong() {
    let server = Server::start(echo_test_config()).await;
    let mut chat = TestClient::connect(server.addr, "/ws").await;
    let mut member = TestClient::connect(server.addr, "/broadcast?conversation_id=3").await;
    let mut other = TestClient::connect(server.addr, "/broadcast?conversation_id=3").await;
    for c in [&mut chat, &mut member] {
        c.send_text("ping").await;
        assert_eq!(c.expect_text().await, "pong");
        c.send_frame(&Frame::ping(Bytes::from_static(b"abc"))).await;
        assert_eq!(
            c.next_event().await,
            Some(Event::Pong(Bytes::from_static(b"abc")))
        );
    }
    // Heartbeats are not broadcast.
    assert!(other
        .next_event_within(Duration::from_millis(100))
        .await
        .is_err());
    for c in [chat, member, other] {
        c.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn server_sends_protocol_pings() {
    let mut cfg = test_config();
    cfg.ping_interval = Duration::from_millis(100);
    cfg.sweep_interval = Duration::from_secs(5);
    let server = Server::start(cfg).await;
    let mut c = TestClient::connect(server.addr, "/ws").await;
    // Read raw frames (TestClient answers pings silently, so look at the bytes).
    let mut buf = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), c.stream.read_exact(&mut buf))
        .await
        .expect("a ping within the interval")
        .unwrap();
    assert_eq!(buf, [0x89, 0x00], "an empty, unmasked ping frame");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_terminated_by_the_sweep_while_live_ones_stay() {
    let mut cfg = test_config();
    cfg.ping_interval = Duration::from_millis(100);
    cfg.sweep_interval = Duration::from_millis(300);
    let server = Server::start(cfg).await;

    // A raw TCP client: completes the handshake, then never sends anything (no pongs).
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    silent
        .write_all(
            format!(
                "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n",
                server.addr
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut live = TestClient::connect(server.addr, "/ws").await;

    // Keep the live client answering pings while the silent one is read (but never answers).
    let live_task = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < deadline {
            let _ = live.next_event_within(Duration::from_millis(50)).await;
        }
        live
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        loop {
            match silent.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the silent client was cut off");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "terminated by a sweep, after {elapsed:?}"
    );
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101 "),
        "it had been upgraded"
    );

    let mut live = live_task.await.unwrap();
    live.send_text("ping").await;
    assert_eq!(
        live.expect_text().await,
        "pong",
        "a client answering pings survives sweeps"
    );
    assert_eq!(server.metric("chatgroup_sweep_terminations_total").await, 1);
    live.close().await;
    server.stop().await;
}
