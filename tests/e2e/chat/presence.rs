//! Typing and presence (issue 9 §2–3): typing throttled and lapsing by itself, stopped by a
//! send; presence per user across tabs, debounced across a reload, ended by the liveness
//! sweep, and visible only to people who share a conversation.

use std::time::Duration;

use chatgroup_protocol::{ClientMsg, ConversationId, ErrorCode, ServerMsg, TypingState, UserId};

use super::client::{ChatClient, ChatServer};

fn typing(conversation: ConversationId, state: TypingState) -> ClientMsg {
    ClientMsg::Typing {
        conversation,
        state,
    }
}

fn is_typing(m: &ServerMsg, who: UserId, what: TypingState) -> bool {
    matches!(m, ServerMsg::Typing { user, state, .. } if *user == who && *state == what)
}

fn is_presence(m: &ServerMsg, who: UserId, is_online: bool) -> bool {
    matches!(m, ServerMsg::Presence { user, online, .. } if *user == who && *online == is_online)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_throttled_lapses_by_itself_and_stops_with_a_send() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let carol = api.signup("carol").await;
    let g = api.create_group(&alice, "typing", &[&bob]).await.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;
    b.settle().await;

    a.send(&typing(g, TypingState::Start)).await;
    b.wait_live("alice typing", |m| {
        is_typing(m, alice.id(), TypingState::Start)
    })
    .await;
    // Repeats within 2 s are not broadcast again.
    for _ in 0..5 {
        a.send(&typing(g, TypingState::Start)).await;
    }
    let repeats = b.live_for(Duration::from_millis(500)).await;
    assert!(
        !repeats
            .iter()
            .any(|m| matches!(m, ServerMsg::Typing { .. })),
        "throttled: {repeats:?}"
    );
    // Without a repeat the start lapses after 5 s, and the hub says so.
    let started = tokio::time::Instant::now();
    b.wait_live("alice stopped", |m| {
        is_typing(m, alice.id(), TypingState::Stop)
    })
    .await;
    let lapsed = started.elapsed();
    assert!(
        lapsed > Duration::from_secs(3),
        "lapsed too early: {lapsed:?}"
    );
    // Alice never sees her own typing.
    let own = a.live_for(Duration::from_millis(100)).await;
    assert!(
        !own.iter().any(|m| matches!(m, ServerMsg::Typing { .. })),
        "{own:?}"
    );

    // Sending a message stops typing.
    a.send(&typing(g, TypingState::Start)).await;
    b.wait_live("typing again", |m| {
        is_typing(m, alice.id(), TypingState::Start)
    })
    .await;
    a.post_acked(g, "done", "here it is").await;
    b.wait_live("stop on send", |m| {
        is_typing(m, alice.id(), TypingState::Stop)
    })
    .await;

    // Typing where one is not a member is refused, and reaches nobody.
    let mut c = ChatClient::connect(server.addr(), &carol.token).await;
    c.settle().await;
    c.send(&typing(g, TypingState::Start)).await;
    let err = c.expect_error(None).await;
    ChatClient::check_error(&err, ErrorCode::NotMember);
    let seen = b.live_for(Duration::from_millis(300)).await;
    assert!(
        !seen.iter().any(|m| matches!(m, ServerMsg::Typing { .. })),
        "{seen:?}"
    );
    drop((a, b, c));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_tabs_survives_a_reload_and_is_seen_only_by_contacts() {
    let server = ChatServer::start_with(|cfg| {
        cfg.presence_debounce = Duration::from_millis(600);
    })
    .await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let stranger = api.signup("stranger").await;
    let g = api.create_group(&bob, "friends", &[&alice]).await.id;
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;
    let mut s = ChatClient::connect(server.addr(), &stranger.token).await;
    b.settle().await;
    s.settle().await;

    let mut tab1 = ChatClient::connect(server.addr(), &alice.token).await;
    b.wait_live("alice online", |m| is_presence(m, alice.id(), true))
        .await;
    // Alice's new connection starts knowing bob is online.
    tab1.wait_live("bob online, right after ready", |m| {
        is_presence(m, bob.id(), true)
    })
    .await;
    // A second tab, then the first closes: still online, nothing to announce.
    let tab2 = ChatClient::connect(server.addr(), &alice.token).await;
    tab1.close().await;
    // A reload of the last tab within the debounce: not seen at all.
    tab2.close().await;
    let tab3 = ChatClient::connect(server.addr(), &alice.token).await;
    let flaps = b.live_for(Duration::from_millis(1200)).await;
    assert!(
        !flaps
            .iter()
            .any(|m| matches!(m, ServerMsg::Presence { .. })),
        "{flaps:?}"
    );

    // user_list: who is in the group, who is online.
    b.send(&ClientMsg::UserList {
        conversation: g,
        reference: Some("who".into()),
    })
    .await;
    let list = b
        .wait_for("user_list", |m| matches!(m, ServerMsg::UserList { .. }))
        .await;
    let ServerMsg::UserList { members, .. } = list else {
        unreachable!()
    };
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.online), "{members:?}");

    // Leaving for good: offline after the debounce, with when.
    tab3.close().await;
    let msg = b
        .wait_live("alice offline", |m| is_presence(m, alice.id(), false))
        .await;
    let ServerMsg::Presence { last_seen, .. } = msg else {
        unreachable!()
    };
    assert!(last_seen.is_some_and(|t| t > 0));
    b.send(&ClientMsg::UserList {
        conversation: g,
        reference: Some("who2".into()),
    })
    .await;
    let list = b
        .wait_for("user_list", |m| matches!(m, ServerMsg::UserList { .. }))
        .await;
    let ServerMsg::UserList { members, .. } = list else {
        unreachable!()
    };
    let alice_entry = members.iter().find(|m| m.id == alice.id()).unwrap();
    assert!(!alice_entry.online);

    // The stranger shares nothing with alice: never told, and may not list the group.
    let seen = s.live_for(Duration::from_millis(200)).await;
    assert!(seen.is_empty(), "{seen:?}");
    s.send(&ClientMsg::UserList {
        conversation: g,
        reference: Some("peek".into()),
    })
    .await;
    let err = s.expect_error(Some("peek")).await;
    ChatClient::check_error(&err, ErrorCode::NotMember);
    drop((b, s));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_goes_offline_when_the_sweep_ends_it() {
    let server = ChatServer::start_with(|cfg| {
        cfg.ping_interval = Duration::from_millis(200);
        cfg.sweep_interval = Duration::from_millis(500);
        cfg.presence_debounce = Duration::from_millis(200);
    })
    .await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    api.create_group(&bob, "sweep", &[&alice]).await;
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;
    b.settle().await;
    // Alice connects, then stops reading: her client answers no ping.
    let silent = ChatClient::connect(server.addr(), &alice.token).await;
    b.wait_live("alice online", |m| is_presence(m, alice.id(), true))
        .await;
    // Bob keeps answering pings by reading.
    b.wait_live("alice offline", |m| is_presence(m, alice.id(), false))
        .await;
    drop(silent);
    drop(b);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_in_a_large_group_goes_to_watchers_only() {
    let server = ChatServer::start_with(|cfg| {
        cfg.presence_fanout = 2;
        cfg.presence_debounce = Duration::from_millis(100);
    })
    .await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let mut others = Vec::new();
    for name in ["bob", "carol", "dave"] {
        others.push(api.signup(name).await);
    }
    let refs: Vec<_> = others.iter().collect();
    let g = api.create_group(&alice, "large", &refs).await.id;
    let mut conns = Vec::new();
    for u in &others {
        let mut c = ChatClient::connect(server.addr(), &u.token).await;
        c.settle().await;
        conns.push(c);
    }
    // Bob watches the group; carol and dave do not.
    conns[0]
        .send(&ClientMsg::UserList {
            conversation: g,
            reference: Some("w".into()),
        })
        .await;
    conns[0]
        .wait_for("user_list", |m| matches!(m, ServerMsg::UserList { .. }))
        .await;
    let a = ChatClient::connect(server.addr(), &alice.token).await;
    conns[0]
        .wait_live("alice online", |m| is_presence(m, alice.id(), true))
        .await;
    for c in &mut conns[1..] {
        let seen = c.live_for(Duration::from_millis(400)).await;
        assert!(
            !seen.iter().any(|m| is_presence(m, alice.id(), true)),
            "3 connected members > fan-out limit 2: {seen:?}"
        );
    }
    drop((a, conns));
    server.stop().await;
}
