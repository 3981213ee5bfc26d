//! A client that stops reading is evicted; the others keep receiving everything.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rfc6455::{CloseCode, CloseFrame, Event, Message};
use tokio::net::TcpSocket;

use crate::support::{echo_test_config, Server, TestClient};

const MESSAGES: usize = 600;
const SIZE: usize = 8 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_client_is_evicted_while_others_keep_receiving() {
    let mut cfg = echo_test_config();
    cfg.outbox_depth = 64;
    cfg.max_frame_len = 64 * 1024;
    cfg.max_message_len = 64 * 1024;
    cfg.outbox_bytes = 1024 * 1024;
    cfg.slow_consumer_grace = Duration::from_millis(500);
    cfg.close_timeout = Duration::from_millis(300);
    let server = Server::start(cfg).await;

    // The slow client advertises a tiny receive window so the server's queue fills fast.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let crate::support::Connect::Open(mut slow) =
        TestClient::handshake_on(stream, server.addr, "/broadcast?conversation_id=5", &[]).await
    else {
        panic!("slow client refused")
    };
    let mut sender = TestClient::connect(server.addr, "/broadcast?conversation_id=5").await;
    let mut fast = Vec::new();
    let progress: Arc<Vec<AtomicUsize>> = Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
    for n in 0..3 {
        let mut c = TestClient::connect(server.addr, "/broadcast?conversation_id=5").await;
        let progress = progress.clone();
        // Each fast member reads on its own task, as a real client would.
        fast.push(tokio::spawn(async move {
            for i in 0..MESSAGES {
                let text = c.expect_text().await;
                assert_eq!(&text[..7], format!("{i:07}"), "in order, none missing");
                progress[n].store(i + 1, Ordering::Relaxed);
            }
            c
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let body = "x".repeat(SIZE - 8);
    for i in 0..MESSAGES {
        sender.send_text(&format!("{i:07} {body}")).await;
        // The fast members must be faster than the sender (in a debug build on a busy machine
        // they might not be): let them catch up every half queue.
        if i % 32 == 31 {
            crate::support::eventually("fast members keep up", || async {
                progress.iter().all(|p| p.load(Ordering::Relaxed) > i)
            })
            .await;
        }
    }
    let mut fast_clients = Vec::new();
    for task in fast {
        let c = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the fast members received everything in time")
            .expect("fast member");
        fast_clients.push(c);
    }
    let mut fast = fast_clients;

    crate::support::eventually("slow consumer evicted", || async {
        server
            .metric("chatgroup_queue_full_disconnects_total")
            .await
            == 1
    })
    .await;
    assert!(
        server.metric("chatgroup_queue_full_drops_total").await > 0,
        "frames were dropped, not queued"
    );

    // Now the slow client reads what reached it: fewer than all messages, then the end.
    let mut received = 0;
    loop {
        match slow.next_event().await {
            Some(Event::Message(Message::Text(_))) => received += 1,
            Some(Event::Close(Some(CloseFrame { code, .. }))) => {
                assert_eq!(code, CloseCode::POLICY_VIOLATION);
                break;
            }
            None => break,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        received < MESSAGES,
        "the slow client was cut off (got {received})"
    );
    // Memory stayed bounded: the queue never held more than its hard bound (the outbox
    // refuses to grow past it; the unit tests pin that), and the client is gone.
    crate::support::eventually("only the evicted client is gone", || async {
        server.metric("chatgroup_connections_open").await == 4
    })
    .await;

    sender.send_text("still here").await;
    for c in &mut fast {
        assert_eq!(c.expect_text().await, "still here");
    }
    for c in fast {
        c.close().await;
    }
    sender.close().await;
    server.stop().await;
}
