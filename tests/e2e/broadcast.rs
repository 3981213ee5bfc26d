//! The test relay `/broadcast?conversation_id=N` (served with `--echo`): every member gets
//! every broadcast once, in order; senders do not get their own; other conversations get
//! nothing. Also what `/ws` no longer does: it relays nothing and reads no query.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rfc6455::{CloseCode, Event, Message};
use tokio_tungstenite::tungstenite;

use crate::support::{echo_test_config, http, test_config, Server, TestClient};

const MEMBERS: usize = 24;
const SENDERS: usize = 3;
const PER_SENDER: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_members_receive_every_broadcast_once_in_order() {
    let server = Server::start(echo_test_config()).await;
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        members.push(TestClient::connect(server.addr, "/broadcast?conversation_id=1").await);
    }
    let mut outsider = TestClient::connect(server.addr, "/broadcast?conversation_id=2").await;
    // A peer's view: a third-party client in the same conversation.
    let (mut peer, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/broadcast?conversation_id=1",
        server.addr
    ))
    .await
    .expect("tungstenite connects");
    // Joins are processed by the hub in order before any later broadcast from these sockets,
    // but a broadcast from one socket can overtake another socket's join: settle first.
    crate::support::eventually("all members registered", || async {
        server.metric("chatgroup_connections_open").await == (MEMBERS + 2) as u64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The first SENDERS members send concurrently.
    let mut senders: Vec<TestClient> = members.drain(..SENDERS).collect();
    let send_all = async {
        for i in 0..PER_SENDER {
            for (s, client) in senders.iter_mut().enumerate() {
                client.send_text(&format!("s{s} m{i}")).await;
            }
        }
        senders
    };
    let receivers = members;
    let receive_all =
        futures_util::future::join_all(receivers.into_iter().map(|mut c| async move {
            let mut next = [0usize; SENDERS];
            for _ in 0..SENDERS * PER_SENDER {
                let text = c.expect_text().await;
                let (s, i) = parse(&text);
                assert_eq!(
                    i, next[s],
                    "messages from sender {s} arrive in order, exactly once"
                );
                next[s] += 1;
            }
            c
        }));
    let peer_view = async {
        let mut next = [0usize; SENDERS];
        let mut got = 0;
        while got < SENDERS * PER_SENDER {
            match peer
                .next()
                .await
                .expect("peer stream open")
                .expect("peer frame")
            {
                tungstenite::Message::Text(t) => {
                    let (s, i) = parse(t.as_str());
                    assert_eq!(i, next[s]);
                    next[s] += 1;
                    got += 1;
                }
                tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
                other => panic!("peer got {other:?}"),
            }
        }
        peer
    };
    let (mut senders, receivers, mut peer) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(send_all, receive_all, peer_view)
    })
    .await
    .expect("fan-out finished in time");

    // Nothing more arrives: no duplicates, and senders never got their own messages
    // (each sender received exactly the other senders' messages).
    for (s, client) in senders.iter_mut().enumerate() {
        let mut next = [0usize; SENDERS];
        for _ in 0..(SENDERS - 1) * PER_SENDER {
            let (from, i) = parse(&client.expect_text().await);
            assert_ne!(from, s, "a sender does not receive its own broadcast");
            assert_eq!(i, next[from]);
            next[from] += 1;
        }
    }
    for mut client in receivers.into_iter().chain(senders) {
        assert!(
            client
                .next_event_within(Duration::from_millis(150))
                .await
                .is_err(),
            "no extra messages"
        );
        client.close().await;
    }
    assert!(
        outsider
            .next_event_within(Duration::from_millis(100))
            .await
            .is_err(),
        "another conversation hears nothing"
    );
    outsider.close().await;

    // The peer's messages reach our members too. The listener speaks first: the peer
    // hearing it proves the hub has registered the listener (a socket's join is handled
    // before its own broadcasts), so nothing the peer sends afterwards can overtake the join.
    let mut listener = TestClient::connect(server.addr, "/broadcast?conversation_id=1").await;
    listener.send_text("listener here").await;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), peer.next())
            .await
            .expect("peer hears the listener in time")
            .expect("peer stream open")
            .expect("peer frame")
        {
            tungstenite::Message::Text(t) => {
                assert_eq!(t.as_str(), "listener here");
                break;
            }
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("peer got {other:?}"),
        }
    }
    peer.send(tungstenite::Message::Text("from tungstenite".into()))
        .await
        .unwrap();
    assert_eq!(listener.expect_text().await, "from tungstenite");
    peer.close(None).await.unwrap();

    assert!(server.metric("chatgroup_broadcasts_total").await >= (SENDERS * PER_SENDER) as u64);
    listener.close().await;
    server.stop().await;
}

fn parse(text: &str) -> (usize, usize) {
    let (s, m) = text.split_once(' ').expect("s<n> m<i>");
    (s[1..].parse().unwrap(), m[1..].parse().unwrap())
}

#[tokio::test]
async fn binary_on_chat_and_broadcast_sockets_is_refused_with_1003() {
    let server = Server::start(echo_test_config()).await;
    for path in ["/ws", "/broadcast?conversation_id=9"] {
        let mut a = TestClient::connect(server.addr, path).await;
        a.send_frame(&rfc6455::Frame::binary(&b"\x00\x01"[..]))
            .await;
        a.expect_close(CloseCode::UNSUPPORTED_DATA).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn chat_socket_relays_nothing_and_ignores_the_query() {
    let server = Server::start(echo_test_config()).await;
    // The old way of joining a conversation: now an ordinary chat socket.
    let mut a = TestClient::connect(server.addr, "/ws?conversation_id=3").await;
    let mut b = TestClient::connect(server.addr, "/ws?conversation_id=3").await;
    let mut listener = TestClient::connect(server.addr, "/broadcast?conversation_id=3").await;
    // Both are registered once a heartbeat round-trips on each.
    for c in [&mut a, &mut b, &mut listener] {
        c.send_text("ping").await;
        assert_eq!(c.expect_text().await, "pong");
    }
    a.send_text("hello?").await;
    let answer = a.expect_text().await;
    assert!(
        answer.contains("\"type\":\"error\"") && answer.contains("malformed"),
        "the chat socket answers what is not chat protocol with an error: {answer}"
    );
    for c in [&mut b, &mut listener] {
        assert!(
            c.next_event_within(Duration::from_millis(150))
                .await
                .is_err(),
            "chat sockets relay nothing"
        );
    }
    a.send_text("ping").await;
    assert_eq!(a.expect_text().await, "pong", "the socket stays open");
    assert_eq!(server.metric("chatgroup_broadcasts_total").await, 0);
    for c in [a, b, listener] {
        c.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn broadcast_endpoint_only_with_flag_and_a_conversation() {
    let upgrade = |target: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let server = Server::start(test_config()).await;
    let resp = http(server.addr, &upgrade("/broadcast?conversation_id=1")).await;
    assert_eq!(resp.status, 404, "no relay without --echo");
    server.stop().await;

    let server = Server::start(echo_test_config()).await;
    for target in [
        "/broadcast",
        "/broadcast?conversation_id=x",
        "/broadcast?conversation_id=-1",
        "/broadcast?conversation_id=1&conversation_id=2",
    ] {
        let resp = http(server.addr, &upgrade(target)).await;
        assert_eq!(resp.status, 400, "{target}");
        assert!(resp.body.contains("conversation_id"), "{}", resp.body);
    }
    let resp = http(server.addr, "POST /broadcast HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(resp.status, 405);
    let c = TestClient::connect(server.addr, "/broadcast?conversation_id=1").await;
    c.close().await;
    server.stop().await;
}

#[tokio::test]
async fn echo_endpoint_only_with_flag() {
    let server = Server::start(test_config()).await;
    let resp = http(server.addr, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(resp.status, 404);
    server.stop().await;

    let server = Server::start(echo_test_config()).await;
    let mut c = TestClient::connect(server.addr, "/echo").await;
    c.send_text("ping").await;
    assert_eq!(c.expect_text().await, "ping", "echo mode echoes verbatim");
    c.send_frame(&rfc6455::Frame::binary(vec![7u8; 70_000]))
        .await;
    match c.next_event().await {
        Some(Event::Message(Message::Binary(b))) => assert_eq!(b.len(), 70_000),
        other => panic!("expected binary echo, got {other:?}"),
    }
    c.close().await;
    server.stop().await;
}
