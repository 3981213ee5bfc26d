//! Conversations between several users with several tabs: who gets the `ack` and who the
//! `new_message`, group and direct chats side by side, direct-chat dedupe, the conversation
//! list, and membership changing live (added users receive at once, removed ones stop at
//! once) with every change a system message in the conversation's own `seq` stream.

use std::time::Duration;

use chatgroup_protocol::rest::{AddMember, ConversationList, CreateConversation};
use chatgroup_protocol::{
    ClientMsg, ConversationInfo, ConversationKind, ErrorCode, MessageKind, MessageView, ServerMsg,
    SystemEvent,
};

use super::client::{assert_gap_free, ChatClient, ChatServer};

const QUIET: Duration = Duration::from_millis(300);

fn member_names(info: &ConversationInfo) -> Vec<String> {
    let mut names: Vec<String> = info.members.iter().map(|m| m.username.clone()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_users_several_tabs_group_and_direct_chat() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let carol = api.signup("carol").await;
    let addr = server.addr();

    let mut a1 = ChatClient::connect(addr, &alice.token).await;
    let mut a2 = ChatClient::connect(addr, &alice.token).await;
    let mut b1 = ChatClient::connect(addr, &bob.token).await;
    let mut c1 = ChatClient::connect(addr, &carol.token).await;
    let mut c2 = ChatClient::connect(addr, &carol.token).await;

    // Alice creates the group over the socket; every member's every tab hears of it.
    a1.send(&ClientMsg::CreateGroup {
        name: "trip".into(),
        members: vec!["bob".into(), "carol".into()],
        reference: Some("g".into()),
    })
    .await;
    let group = a1.expect_conversation("g").await;
    assert_eq!(group.kind, ConversationKind::Group);
    assert_eq!(group.name, "trip");
    assert_eq!(group.owner, Some(alice.id()));
    assert_eq!(member_names(&group), ["alice", "bob", "carol"]);
    assert!(group.last_seq.0 >= 1, "creation is seq 1");
    for tab in [&mut a2, &mut b1, &mut c1, &mut c2] {
        let seen = tab.expect_conversation_event(group.id).await;
        assert_eq!(seen.name, "trip");
        assert_eq!(member_names(&seen), ["alice", "bob", "carol"]);
    }

    // Alice's tab 1 sends: the ack to tab 1 only, new_message to everyone else.
    let ack = a1.post_acked(group.id, "l1", "hello all").await;
    assert!(!ack.duplicate);
    assert_eq!(ack.conversation, group.id);
    assert!(ack.seq > group.last_seq);
    for tab in [&mut a2, &mut b1, &mut c1, &mut c2] {
        let m = tab
            .expect_new_message("alice's hello", |m| m.local_id.as_deref() == Some("l1"))
            .await;
        assert_eq!((m.id, m.seq, m.ts), (ack.id, ack.seq, ack.ts));
        assert_eq!(m.conversation, group.id);
        assert_eq!(m.sender, Some(alice.id()));
        assert_eq!(m.sender_name.as_deref(), Some("alice"));
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.body, "hello all");
    }
    // Bob answers; by the time tab 1 has it, tab 1 would have had its own message too.
    let bob_ack = b1.post_acked(group.id, "b1", "hi alice").await;
    assert_eq!(bob_ack.seq, ack.seq.next(), "consecutive seq");
    let before_bob: Vec<ServerMsg> = {
        let mut seen = Vec::new();
        loop {
            let msg = a1.recv().await;
            if matches!(&msg, ServerMsg::NewMessage(m) if m.local_id.as_deref() == Some("b1")) {
                break;
            }
            seen.push(msg);
        }
        seen
    };
    assert!(
        !before_bob
            .iter()
            .any(|m| matches!(m, ServerMsg::NewMessage(v) if v.id == ack.id)),
        "the sending tab got its own message as new_message: {before_bob:?}"
    );
    for tab in [&mut a2, &mut c1, &mut c2] {
        tab.expect_new_message("bob's reply", |m| m.id == bob_ack.id)
            .await;
    }
    let own = b1.drain(QUIET).await;
    assert!(
        !own.iter()
            .any(|m| matches!(m, ServerMsg::NewMessage(v) if v.id == bob_ack.id)),
        "bob's only tab got his own message as new_message: {own:?}"
    );

    // Bob opens a direct chat with carol (REST, 201); carol opening it (socket) and bob
    // again (REST, 200) give the same conversation.
    let direct: ConversationInfo = api
        .post(
            "/api/conversations",
            Some(&bob.token),
            &CreateConversation::Direct {
                with: "carol".into(),
            },
        )
        .await
        .expect(201);
    assert_eq!(direct.kind, ConversationKind::Direct);
    assert_eq!(
        direct.name, "carol",
        "a direct chat is named after the other person"
    );
    assert_eq!(direct.owner, None);
    assert_eq!(member_names(&direct), ["bob", "carol"]);
    c1.send(&ClientMsg::CreateDirect {
        with: "bob".into(),
        reference: Some("d".into()),
    })
    .await;
    let from_carol = c1.expect_conversation("d").await;
    assert_eq!(
        from_carol.id, direct.id,
        "creating it again returns the same chat"
    );
    assert_eq!(from_carol.name, "bob");
    let again: ConversationInfo = api
        .post(
            "/api/conversations",
            Some(&bob.token),
            &CreateConversation::Direct {
                with: "CAROL".into(),
            },
        )
        .await
        .expect(200);
    assert_eq!(again.id, direct.id);
    // Not with yourself, not with nobody.
    c1.refused(
        &ClientMsg::CreateDirect {
            with: "carol".into(),
            reference: Some("self".into()),
        },
        "self",
        ErrorCode::Invalid,
    )
    .await;
    c1.refused(
        &ClientMsg::CreateDirect {
            with: "nobody".into(),
            reference: Some("ghost".into()),
        },
        "ghost",
        ErrorCode::NotFound,
    )
    .await;

    // Carol writes in the direct chat from tab 2: bob and carol's tab 1 get it, alice nothing.
    let d_ack = c2.post_acked(direct.id, "c-d1", "psst bob").await;
    let m = b1
        .expect_new_message("carol's direct", |m| m.id == d_ack.id)
        .await;
    assert_eq!(m.conversation, direct.id);
    assert_eq!(m.sender_name.as_deref(), Some("carol"));
    c1.expect_new_message("own tab's direct", |m| m.id == d_ack.id)
        .await;
    // Then a group message: it is the next thing alice's tabs see (no direct-chat traffic).
    let g_ack = c2.post_acked(group.id, "c-g1", "back to the group").await;
    for tab in [&mut a1, &mut a2] {
        let msgs = tab.drain(QUIET).await;
        let received: Vec<&MessageView> = msgs
            .iter()
            .filter_map(|m| match m {
                ServerMsg::NewMessage(v) => Some(v),
                _ => None,
            })
            .collect();
        assert!(
            received.iter().all(|m| m.conversation == group.id),
            "alice saw another conversation's message: {received:?}"
        );
        assert!(received.iter().any(|m| m.id == g_ack.id));
    }

    // The list: newest activity first, direct chats named after the other person, last message.
    let list: ConversationList = api.get("/api/conversations", &bob.token).await.expect(200);
    let ids: Vec<_> = list.conversations.iter().map(|c| c.id).collect();
    assert_eq!(ids, [group.id, direct.id], "newest activity first");
    assert_eq!(list.conversations[1].name, "carol");
    let last = list.conversations[0]
        .last_message
        .as_ref()
        .expect("last message");
    assert_eq!(last.id, g_ack.id);
    assert_eq!(list.conversations[0].last_seq, g_ack.seq);
    assert_eq!(
        list.conversations[1].last_message.as_ref().map(|m| m.id),
        Some(d_ack.id)
    );
    let alices: ConversationList = api
        .get("/api/conversations", &alice.token)
        .await
        .expect(200);
    assert_eq!(
        alices.conversations.len(),
        1,
        "alice is not in the direct chat"
    );
    let single: ConversationInfo = api
        .get(&format!("/api/conversations/{}", direct.id), &carol.token)
        .await
        .expect(200);
    assert_eq!(single.id, direct.id);
    assert_eq!(single.name, "bob");

    // A new connection's ready lists both, newest first, with the right names.
    let b2 = ChatClient::connect(addr, &bob.token).await;
    let ready = b2.ready.clone().expect("ready");
    let listed: Vec<_> = ready
        .conversations
        .iter()
        .map(|c| (c.id, c.name.clone()))
        .collect();
    assert_eq!(
        listed,
        [
            (group.id, "trip".to_owned()),
            (direct.id, "carol".to_owned())
        ]
    );
    server.stop().await;
}

/// The system events of `messages`, in order.
fn events(messages: &[MessageView]) -> Vec<SystemEvent> {
    messages
        .iter()
        .filter(|m| m.kind == MessageKind::System)
        .map(|m| {
            m.event
                .clone()
                .expect("a system message says what happened")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_take_effect_live_and_are_system_messages() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let dave = api.signup("dave").await;
    let addr = server.addr();

    let group = api.create_group(&alice, "crew", &[&bob]).await;
    let mut a = ChatClient::connect(addr, &alice.token).await;
    let mut b = ChatClient::connect(addr, &bob.token).await;
    let mut d = ChatClient::connect(addr, &dave.token).await;
    assert!(d.ready.as_ref().expect("ready").conversations.is_empty());

    // Adding dave while his socket is open: he hears of it and gets the next message at once.
    a.send(&ClientMsg::AddMember {
        conversation: group.id,
        username: "dave".into(),
        reference: Some("add".into()),
    })
    .await;
    let added = a.expect_conversation("add").await;
    assert_eq!(member_names(&added), ["alice", "bob", "dave"]);
    let seen = d.expect_conversation_event(group.id).await;
    assert_eq!(member_names(&seen), ["alice", "bob", "dave"]);
    assert_eq!(seen.name, "crew");
    b.expect_conversation_event(group.id).await;
    let joined = b
        .expect_new_message("dave joined", |m| m.kind == MessageKind::System)
        .await;
    assert_eq!(
        joined.event,
        Some(SystemEvent::Joined {
            user: dave.id(),
            by: alice.id()
        })
    );
    let hello = a.post_acked(group.id, "hello-dave", "welcome dave").await;
    let got = d
        .expect_new_message("first message after joining", |m| {
            m.kind == MessageKind::Text
        })
        .await;
    assert_eq!(got.id, hello.id);
    assert_eq!(got.seq, hello.seq);
    // Dave can write at once too.
    let dave_ack = d.post_acked(group.id, "thanks", "thanks").await;
    b.expect_new_message("dave's thanks", |m| m.id == dave_ack.id)
        .await;

    // Removing bob: his socket is told, and nothing of the group reaches it afterwards.
    a.send(&ClientMsg::RemoveMember {
        conversation: group.id,
        username: "bob".into(),
        reference: Some("rm".into()),
    })
    .await;
    a.expect_done("rm").await;
    let removed = b
        .wait_for("conversation_removed", |m| {
            matches!(m, ServerMsg::ConversationRemoved { .. })
        })
        .await;
    assert!(
        matches!(removed, ServerMsg::ConversationRemoved { conversation } if conversation == group.id)
    );
    // What bob got before the removal notice (the system message saying so, say) is fine.
    b.take_pending();
    let after = a.post_acked(group.id, "after-bob", "bob is gone").await;
    d.expect_new_message("after bob left", |m| m.id == after.id)
        .await;
    let leftovers = b.drain(QUIET).await;
    assert!(
        !leftovers
            .iter()
            .any(|m| matches!(m, ServerMsg::NewMessage(_) | ServerMsg::SyncBatch { .. })),
        "a removed member still receives: {leftovers:?}"
    );
    b.refused(
        &ClientMsg::Send {
            conversation: group.id,
            local_id: "late".into(),
            body: "let me back".into(),
            reference: Some("late".into()),
        },
        "late",
        ErrorCode::NotMember,
    )
    .await;
    let bobs: ConversationList = api.get("/api/conversations", &bob.token).await.expect(200);
    assert!(bobs.conversations.is_empty());

    // Rename (a member may) and leave, the REST way for a change.
    a.send(&ClientMsg::Rename {
        conversation: group.id,
        name: "crew 2".into(),
        reference: Some("ren".into()),
    })
    .await;
    let renamed = a.expect_conversation("ren").await;
    assert_eq!(renamed.name, "crew 2");
    d.expect_conversation_update(group.id, |c| c.name == "crew 2")
        .await;
    let left = api
        .delete(
            &format!("/api/conversations/{}/members/dave", group.id),
            &dave.token,
        )
        .await;
    assert_eq!(left.status, 204, "{}", left.body);
    let gone = d
        .wait_for("conversation_removed after leaving", |m| {
            matches!(m, ServerMsg::ConversationRemoved { .. })
        })
        .await;
    assert!(
        matches!(gone, ServerMsg::ConversationRemoved { conversation } if conversation == group.id)
    );
    let info: ConversationInfo = api
        .get(&format!("/api/conversations/{}", group.id), &alice.token)
        .await
        .expect(200);
    assert_eq!(member_names(&info), ["alice"]);
    // Adding back over REST works for the owner.
    let back: ConversationInfo = api
        .post(
            &format!("/api/conversations/{}/members", group.id),
            Some(&alice.token),
            &AddMember {
                username: "bob".into(),
            },
        )
        .await
        .expect(200);
    assert_eq!(member_names(&back), ["alice", "bob"]);
    b.expect_conversation_update(group.id, |c| member_names(c) == ["alice", "bob"])
        .await;
    let last = a
        .post_acked(group.id, "welcome-back", "welcome back bob")
        .await;
    b.expect_new_message("message after re-adding", |m| m.id == last.id)
        .await;

    // The whole story, in one seq stream, in order.
    let history = api.full_history(&alice.token, group.id).await;
    assert_gap_free(&history, 1, last.seq.0);
    let first = &history[0];
    assert_eq!(first.kind, MessageKind::System);
    assert!(
        matches!(first.event, Some(SystemEvent::Created { by, .. }) if by == alice.id()),
        "seq 1 is the creation: {first:?}"
    );
    // What happened after creation (which may record bob's initial membership its own way).
    let since_creation: Vec<MessageView> = history
        .iter()
        .filter(|m| m.seq > group.last_seq)
        .cloned()
        .collect();
    let story = events(&since_creation);
    assert_eq!(
        story,
        [
            SystemEvent::Joined {
                user: dave.id(),
                by: alice.id()
            },
            SystemEvent::Removed {
                user: bob.id(),
                by: alice.id()
            },
            SystemEvent::Renamed {
                name: "crew 2".into(),
                by: alice.id()
            },
            SystemEvent::Left { user: dave.id() },
            SystemEvent::Joined {
                user: bob.id(),
                by: alice.id()
            },
        ],
        "system messages in order"
    );
    // And the text messages sit between them where they happened (history is seq 1..N, so
    // a message's index is its seq - 1).
    let pos = |id| history.iter().position(|m| m.id == id).expect("in history");
    let pos_event = |e: SystemEvent| {
        since_creation
            .iter()
            .find(|m| m.event.as_ref() == Some(&e))
            .map(|m| (m.seq.0 - 1) as usize)
            .expect("event in history")
    };
    let dave_joined = pos_event(SystemEvent::Joined {
        user: dave.id(),
        by: alice.id(),
    });
    let bob_removed = pos_event(SystemEvent::Removed {
        user: bob.id(),
        by: alice.id(),
    });
    assert!(dave_joined < pos(hello.id));
    assert!(pos(hello.id) < pos(dave_ack.id));
    assert!(pos(dave_ack.id) < bob_removed);
    assert!(bob_removed < pos(after.id));
    server.stop().await;
}
