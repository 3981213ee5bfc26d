//! Delivery and read receipts (issue 9 §1): cumulative, monotonic markers, persisted,
//! coalesced and sent to whom they concern, and the unread count following the read marker
//! on every device.

use std::time::Duration;

use chatgroup_protocol::rest::CreateConversation;
use chatgroup_protocol::{
    ClientMsg, ConversationId, ConversationInfo, ErrorCode, Markers, Seq, ServerMsg, UserId,
};

use super::client::{ChatClient, ChatServer, User};

fn received(conversation: ConversationId, seq: u64) -> ClientMsg {
    ClientMsg::Received {
        conversation,
        seq: Seq(seq),
    }
}

fn read(conversation: ConversationId, seq: u64) -> ClientMsg {
    ClientMsg::Read {
        conversation,
        seq: Seq(seq),
    }
}

/// Waits for a receipt about `user` in `conversation` with these markers.
async fn expect_receipt(
    c: &mut ChatClient,
    conversation: ConversationId,
    user: UserId,
    delivered: u64,
    read: u64,
) {
    let what = format!("receipt {user} delivered {delivered} read {read}");
    c.wait_live(&what, |m| {
        matches!(m, ServerMsg::Receipt { conversation: c, user: u, delivered: d, read: r }
            if *c == conversation && *u == user && *d == Seq(delivered) && *r == Seq(read))
    })
    .await;
}

fn markers_of(info: &ConversationInfo, user: UserId) -> Markers {
    *info
        .markers
        .iter()
        .find(|m| m.user == user)
        .unwrap_or_else(|| panic!("no markers for {user} in {info:?}"))
}

async fn direct(server: &ChatServer, a: &User, b: &User) -> ConversationInfo {
    server
        .api()
        .post(
            "/api/conversations",
            Some(&a.token),
            &CreateConversation::Direct {
                with: b.name().to_owned(),
            },
        )
        .await
        .expect(201)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_chat_receipts_are_cumulative_monotonic_and_survive_a_restart() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let d = direct(&server, &alice, &bob).await.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;
    let mut last = 0;
    for i in 1..=3 {
        last = a.post_acked(d, &format!("m{i}"), "hello").await.seq.0;
    }

    b.send(&received(d, last)).await;
    expect_receipt(&mut a, d, bob.id(), last, 0).await;
    b.send(&read(d, 2)).await;
    expect_receipt(&mut a, d, bob.id(), last, 2).await;
    // Lower values change nothing; a value past the last message is clamped to it.
    b.send(&read(d, 1)).await;
    b.send(&received(d, 1)).await;
    b.send(&read(d, 1_000)).await;
    expect_receipt(&mut a, d, bob.id(), last, last).await;
    let live = a.live_for(Duration::from_millis(400)).await;
    assert!(live.is_empty(), "nothing moved after that: {live:?}");

    // A reconnecting client gets the markers with its conversations.
    drop(a);
    let a = ChatClient::connect(server.addr(), &alice.token).await;
    let info = a.ready.as_ref().unwrap().conversations[0].clone();
    assert_eq!(markers_of(&info, bob.id()).delivered, Seq(last));
    assert_eq!(markers_of(&info, bob.id()).read, Seq(last));
    drop((a, b));

    // ... and so does one after a restart: they are stored.
    let server = server.restart().await;
    let a = ChatClient::connect(server.addr(), &alice.token).await;
    let info = a.ready.as_ref().unwrap().conversations[0].clone();
    assert_eq!(
        markers_of(&info, bob.id()),
        Markers {
            user: bob.id(),
            delivered: Seq(last),
            read: Seq(last)
        }
    );
    let b = ChatClient::connect(server.addr(), &bob.token).await;
    assert_eq!(b.ready.as_ref().unwrap().conversations[0].unread, 0);
    drop((a, b));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_receipts_is_coalesced_and_reaches_only_the_senders() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let carol = api.signup("carol").await;
    let dave = api.signup("dave").await;
    let g = api
        .create_group(&alice, "burst", &[&bob, &carol, &dave])
        .await
        .id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;
    let mut c = ChatClient::connect(server.addr(), &carol.token).await;
    // The group's creation is seq 1; alice's messages follow.
    let mut last = Seq::ZERO;
    for i in 0..200 {
        last = a.post_acked(g, &format!("m{i}"), "x").await.seq;
    }
    // Bob confirms every message one by one, as a naive client would.
    for seq in 1..=last.0 {
        b.send(&received(g, seq)).await;
    }
    expect_receipt(&mut a, g, bob.id(), last.0, 0).await;
    let extra = a.live_for(Duration::from_millis(400)).await;
    let receipts_about_bob = extra
        .iter()
        .filter(|m| matches!(m, ServerMsg::Receipt { user, .. } if *user == bob.id()))
        .count();
    assert!(
        receipts_about_bob == 0,
        "the final receipt came last: {extra:?}"
    );
    // Carol sent nothing in that range: bob's receipts are no news to her.
    let carol_saw = c.live_for(Duration::from_millis(300)).await;
    assert!(
        !carol_saw
            .iter()
            .any(|m| matches!(m, ServerMsg::Receipt { user, .. } if *user == bob.id())),
        "{carol_saw:?}"
    );
    // And the count of frames sent stays far below one per report.
    let metrics = api.request("GET", "/metrics", None, None).await;
    let frames: u64 = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("chatgroup_receipt_frames_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("receipt frame counter");
    assert!(
        frames < last.0 / 4,
        "{frames} receipt frames for {} reports",
        last.0
    );
    drop((a, b, c));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_on_one_device_clears_the_unread_count_on_the_others() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let g = api.create_group(&alice, "two tabs", &[&bob]).await.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let mut last = Seq::ZERO;
    for i in 0..5 {
        last = a.post_acked(g, &format!("m{i}"), "x").await.seq;
    }
    let mut tab1 = ChatClient::connect(server.addr(), &bob.token).await;
    let mut tab2 = ChatClient::connect(server.addr(), &bob.token).await;
    let unread = tab2.ready.as_ref().unwrap().conversations[0].unread;
    assert!(unread >= 5, "alice's five messages are unread: {unread}");

    tab1.send(&read(g, last.0)).await;
    expect_receipt(&mut tab2, g, bob.id(), last.0, last.0).await;
    tab2.send(&ClientMsg::Conversations {
        reference: Some("list".into()),
    })
    .await;
    let list = tab2
        .wait_for("conversations", |m| {
            matches!(m, ServerMsg::Conversations { .. })
        })
        .await;
    let ServerMsg::Conversations { conversations, .. } = list else {
        unreachable!()
    };
    assert_eq!(conversations[0].unread, 0);
    drop((a, tab1, tab2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_a_foreign_conversation_are_refused() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let g = api.create_group(&alice, "private", &[]).await.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    a.post_acked(g, "m", "secret").await;
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;
    b.send(&read(g, 1)).await;
    let err = b.expect_error(None).await;
    ChatClient::check_error(&err, ErrorCode::NotMember);
    b.send(&received(ConversationId(9_999), 1)).await;
    let err = b.expect_error(None).await;
    ChatClient::check_error(&err, ErrorCode::NotFound);
    // Nothing reached alice about bob.
    let live = a.live_for(Duration::from_millis(300)).await;
    assert!(live.is_empty(), "{live:?}");
    drop((a, b));
    server.stop().await;
}
