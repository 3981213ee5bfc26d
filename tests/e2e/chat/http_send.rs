//! `POST /api/messages` (issue 9 §5) and the rate limits of §6.

use std::time::Duration;

use chatgroup_protocol::rest::SendMessage;
use chatgroup_protocol::{ClientMsg, ErrorCode, ServerMsg, TypingState};
use rfc6455::CloseCode;

use super::client::{ChatClient, ChatServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_send_acks_after_commit_delivers_live_and_is_idempotent() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let mallory = api.signup("mallory").await;
    let g = api.create_group(&alice, "bots", &[&bob]).await.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;

    let request = SendMessage {
        conversation: g,
        local_id: "bot-1".into(),
        body: "deploy finished".into(),
    };
    let ack: ServerMsg = api
        .post("/api/messages", Some(&alice.token), &request)
        .await
        .expect(201);
    let ServerMsg::Ack {
        seq, duplicate, id, ..
    } = ack
    else {
        panic!("not an ack: {ack:?}")
    };
    assert!(!duplicate);
    let m = b
        .expect_new_message("the bot's message", |m| m.seq == seq)
        .await;
    assert_eq!(m.body, "deploy finished");
    assert_eq!(m.local_id.as_deref(), Some("bot-1"));
    // The sender's own sockets get it too: the post did not come from them.
    let own = a.expect_new_message("own post", |m| m.seq == seq).await;
    assert_eq!(own.id, id);

    // A retry (the response was lost, say) gets the same ack, marked duplicate.
    let again: ServerMsg = api
        .post("/api/messages", Some(&alice.token), &request)
        .await
        .expect(200);
    assert!(
        matches!(again, ServerMsg::Ack { seq: s, duplicate: true, .. } if s == seq),
        "{again:?}"
    );
    b.expect_quiet(Duration::from_millis(300)).await;

    // The same checks as a socket send.
    api.post("/api/messages", Some(&mallory.token), &request)
        .await
        .expect_error(ErrorCode::NotMember);
    let empty = SendMessage {
        body: "  ".into(),
        local_id: "bot-2".into(),
        ..request.clone()
    };
    api.post("/api/messages", Some(&alice.token), &empty)
        .await
        .expect_error(ErrorCode::Invalid);
    api.request("POST", "/api/messages", None, Some("{}"))
        .await
        .expect_error(ErrorCode::NotAuthenticated);
    api.request(
        "POST",
        "/api/messages",
        Some(&alice.token),
        Some("{\"body\":1}"),
    )
    .await
    .expect_error(ErrorCode::Invalid);
    let get = api.get("/api/messages", &alice.token).await;
    assert_eq!(get.status, 405);
    drop((a, b));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_with_retry_after_and_close_those_who_ignore_them() {
    let server = ChatServer::start_with(|cfg| {
        cfg.typing_rate = 1;
        cfg.user_message_rate = 1;
    })
    .await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let g = api.create_group(&alice, "limits", &[]).await.id;

    // Per user, across sockets and HTTP: a burst of two, then refused.
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    a.post_acked(g, "s1", "one").await;
    let request = SendMessage {
        conversation: g,
        local_id: "h1".into(),
        body: "two".into(),
    };
    api.post("/api/messages", Some(&alice.token), &request)
        .await
        .expect::<ServerMsg>(201);
    let refused = api
        .post(
            "/api/messages",
            Some(&alice.token),
            &SendMessage {
                local_id: "h2".into(),
                ..request.clone()
            },
        )
        .await
        .expect_error(ErrorCode::RateLimited);
    assert!(refused.retry_after_ms.is_some_and(|ms| ms > 0));
    a.post(g, "s2", "three").await;
    let err = a.expect_error(Some("s2")).await;
    ChatClient::check_error(&err, ErrorCode::RateLimited);
    assert!(err.retry_after_ms.is_some_and(|ms| ms > 0), "{err:?}");

    // Typing: two at once, then refused; a client that keeps going is closed.
    let mut t = ChatClient::connect(server.addr(), &alice.token).await;
    let start = ClientMsg::Typing {
        conversation: g,
        state: TypingState::Start,
    };
    for _ in 0..2 {
        t.send(&start).await;
    }
    t.send(&start).await;
    let err = t.expect_error(None).await;
    ChatClient::check_error(&err, ErrorCode::RateLimited);
    for _ in 0..40 {
        if !t.try_send(&start).await {
            break;
        }
    }
    let reason = t.expect_close(CloseCode::POLICY_VIOLATION).await;
    assert!(reason.contains("rate"), "{reason}");
    drop(a);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_may_hold_only_so_many_connections() {
    let server = ChatServer::start_with(|cfg| cfg.max_connections_per_user = 2).await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let first = ChatClient::connect(server.addr(), &alice.token).await;
    let _second = ChatClient::connect(server.addr(), &alice.token).await;
    let mut third = ChatClient::open(server.addr(), "/ws").await;
    third
        .send(&ClientMsg::Auth {
            token: alice.token.clone(),
        })
        .await;
    let reason = third.expect_close(CloseCode::POLICY_VIOLATION).await;
    assert!(reason.contains("too many connections"), "{reason}");
    // Other users are not affected, and a freed slot can be taken again.
    let _bob = ChatClient::connect(server.addr(), &bob.token).await;
    first.close().await;
    let mut again = None;
    for _ in 0..50 {
        let mut c = ChatClient::open(server.addr(), "/ws").await;
        c.send(&ClientMsg::Auth {
            token: alice.token.clone(),
        })
        .await;
        match c.next_within(Duration::from_secs(5)).await {
            super::client::Next::Msg(m) if matches!(*m, ServerMsg::Ready { .. }) => {
                again = Some(c);
                break;
            }
            // The server may not have seen the first close yet.
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(again.is_some(), "a slot frees up when a connection closes");
    server.stop().await;
}
