//! Promises of the protocol that the server once broke (each test names the promise): sync
//! after a restart, before the hub has seen any traffic, and the remaining members hearing
//! of a removal.

use chatgroup_protocol::ClientMsg;

use super::client::{ChatClient, ChatServer};

/// `ServerMsg::Conversation`: "A conversation the user is in was created or changed (members,
/// name)". Removing a member or leaving changes the members: the others must hear of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_members_hear_of_a_removal_and_a_leave() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let carol = api.signup("carol").await;
    let group = api.create_group(&alice, "shrinking", &[&bob, &carol]).await;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let mut c = ChatClient::connect(server.addr(), &carol.token).await;
    let names = |info: &chatgroup_protocol::ConversationInfo| {
        let mut n: Vec<String> = info.members.iter().map(|m| m.username.clone()).collect();
        n.sort();
        n
    };

    a.send(&ClientMsg::RemoveMember {
        conversation: group.id,
        username: "bob".into(),
        reference: Some("rm".into()),
    })
    .await;
    a.expect_done("rm").await;
    for client in [&mut a, &mut c] {
        client
            .expect_conversation_update(group.id, |info| names(info) == ["alice", "carol"])
            .await;
    }
    c.send(&ClientMsg::Leave {
        conversation: group.id,
        reference: Some("bye".into()),
    })
    .await;
    c.expect_done("bye").await;
    a.expect_conversation_update(group.id, |info| names(info) == ["alice"])
        .await;
    server.stop().await;
}

/// `ServerMsg::Synced.cursors`: "Conversation → the newest `seq` now delivered to this
/// connection". After a restart, before any new message in a conversation, a sync from the
/// newest seq (nothing to replay) answers cursor 0 instead of that seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_cursor_after_a_restart_is_the_newest_seq_not_zero() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let group = api.create_group(&alice, "quiet", &[]).await;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let last = a.post_acked(group.id, "m1", "one").await.seq;
    let same_run = a
        .sync(super::client::cursor(group.id, last.0), "same-run")
        .await;
    assert_eq!(same_run.cursors[&group.id], last, "before the restart");
    a.close().await;

    let server = server.restart().await;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let synced = a
        .sync(super::client::cursor(group.id, last.0), "after-restart")
        .await;
    assert!(synced.messages.is_empty());
    assert_eq!(synced.cursors[&group.id], last, "after the restart");
    server.stop().await;
}

/// Sync: "every message after the cursor … Messages delivered live before the sync are not
/// replayed again". After a restart, a connection that received one live message and then
/// syncs from an older cursor must get the messages between the cursor and that live one;
/// they were never delivered to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_after_a_restart_replays_what_was_missed_before_the_first_live_message() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let group = api.create_group(&alice, "missed", &[&bob]).await;
    let g = group.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let mut acks = Vec::new();
    for i in 0..5 {
        acks.push(
            a.post_acked(g, &format!("m{i}"), &format!("before {i}"))
                .await,
        );
    }
    a.close().await;
    // Bob has seen up to the second of those.
    let bob_cursor = acks[1].seq;

    let server = server.restart().await;
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let live = a.post_acked(g, "after", "after the restart").await;
    b.expect_new_message("live after the restart", |m| m.id == live.id)
        .await;
    let synced = b
        .sync(super::client::cursor(g, bob_cursor.0), "catch-up")
        .await;
    let replayed: Vec<u64> = synced.messages.iter().map(|m| m.seq.0).collect();
    let missed: Vec<u64> = acks[2..].iter().map(|a| a.seq.0).collect();
    assert_eq!(
        replayed, missed,
        "bob never got these; the sync must replay them"
    );
    assert_eq!(synced.cursors[&g], live.seq);
    server.stop().await;
}

/// A cursor beyond the conversation's newest `seq` (kept from before a reset, say) is not
/// believed: `synced` reports what exists, and the next live message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_past_the_newest_message_does_not_hide_live_messages() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let group = api.create_group(&alice, "reset", &[&bob]).await;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;
    let synced = b
        .sync(super::client::cursor(group.id, 1_000), "claims-too-much")
        .await;
    assert!(synced.messages.is_empty());
    assert_eq!(synced.cursors[&group.id], group.last_seq);
    let sent = a.post_acked(group.id, "after", "still arrives").await;
    let got = b
        .expect_new_message("the next live message", |m| m.id == sent.id)
        .await;
    assert_eq!(got.seq, sent.seq);
    server.stop().await;
}
