//! Authorization on every action: a non-member can neither read, write, sync nor change a
//! group, over the socket or REST, and learns nothing from it; a member who is not the owner
//! cannot add or remove others. Each refusal keeps the socket open.

use std::time::Duration;

use chatgroup_protocol::rest::{AddMember, ConversationList, MessagePage};
use chatgroup_protocol::{ClientMsg, ConversationInfo, ErrorCode, Seq, ServerMsg};

use super::client::{cursor, ChatClient, ChatServer};

fn r(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_is_refused_every_action() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let eve = api.signup("eve").await;
    api.signup("carol").await;
    let group = api.create_group(&alice, "private", &[&bob]).await;
    let g = group.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let secret = a.post_acked(g, "s1", "the secret").await;
    let mut e = ChatClient::connect(server.addr(), &eve.token).await;

    // Over the socket.
    let err = e
        .refused(
            &ClientMsg::Send {
                conversation: g,
                local_id: "e1".into(),
                body: "let me in".into(),
                reference: None,
            },
            "e1",
            ErrorCode::NotMember,
        )
        .await;
    assert_eq!(
        err.reference.as_deref(),
        Some("e1"),
        "a send's error carries its localId"
    );
    let err = e
        .refused(
            &ClientMsg::Send {
                conversation: g,
                local_id: "e2".into(),
                body: "let me in".into(),
                reference: r("send-ref"),
            },
            "send-ref",
            ErrorCode::NotMember,
        )
        .await;
    assert!(!err.message.contains("the secret"));
    e.refused(
        &ClientMsg::History {
            conversation: g,
            before: None,
            limit: None,
            reference: r("h"),
        },
        "h",
        ErrorCode::NotMember,
    )
    .await;
    for (reference, username) in [("add-self", "eve"), ("add-other", "carol")] {
        e.refused(
            &ClientMsg::AddMember {
                conversation: g,
                username: username.into(),
                reference: r(reference),
            },
            reference,
            ErrorCode::NotMember,
        )
        .await;
    }
    e.refused(
        &ClientMsg::RemoveMember {
            conversation: g,
            username: "bob".into(),
            reference: r("rm"),
        },
        "rm",
        ErrorCode::NotMember,
    )
    .await;
    e.refused(
        &ClientMsg::Rename {
            conversation: g,
            name: "mine now".into(),
            reference: r("ren"),
        },
        "ren",
        ErrorCode::NotMember,
    )
    .await;
    e.refused(
        &ClientMsg::Leave {
            conversation: g,
            reference: r("leave"),
        },
        "leave",
        ErrorCode::NotMember,
    )
    .await;
    // A sync cursor for the group: refused, and nothing of it is replayed.
    let synced = e.sync(cursor(g, 0), "sync").await;
    assert!(
        synced
            .errors
            .iter()
            .any(|err| err.code == ErrorCode::NotMember && err.reference.as_deref() == Some("sync")),
        "sync errors: {:?}",
        synced.errors
    );
    assert!(
        synced.messages.is_empty(),
        "replayed to a non-member: {:?}",
        synced.messages
    );
    assert!(
        !synced.cursors.contains_key(&g),
        "cursors {:?}",
        synced.cursors
    );

    // Over REST.
    api.get(&format!("/api/conversations/{g}"), &eve.token)
        .await
        .expect_error(ErrorCode::NotMember);
    api.get(&format!("/api/conversations/{g}/messages"), &eve.token)
        .await
        .expect_error(ErrorCode::NotMember);
    api.get(
        &format!("/api/conversations/{g}/messages?before=5&limit=10"),
        &eve.token,
    )
    .await
    .expect_error(ErrorCode::NotMember);
    for username in ["eve", "carol"] {
        api.post(
            &format!("/api/conversations/{g}/members"),
            Some(&eve.token),
            &AddMember {
                username: username.into(),
            },
        )
        .await
        .expect_error(ErrorCode::NotMember);
    }
    api.delete(&format!("/api/conversations/{g}/members/bob"), &eve.token)
        .await
        .expect_error(ErrorCode::NotMember);
    api.delete(&format!("/api/conversations/{g}/members/eve"), &eve.token)
        .await
        .expect_error(ErrorCode::NotMember);
    let list: ConversationList = api.get("/api/conversations", &eve.token).await.expect(200);
    assert!(list.conversations.is_empty());

    // Nothing changed, nothing leaked, and eve's socket still works.
    let info: ConversationInfo = api
        .get(&format!("/api/conversations/{g}"), &alice.token)
        .await
        .expect(200);
    assert_eq!(info.name, "private");
    assert_eq!(info.members.len(), 2);
    assert_eq!(info.last_seq, secret.seq, "no message was stored for eve");
    let later = a.post_acked(g, "s2", "still secret").await;
    assert_eq!(later.seq, secret.seq.next());
    let seen = e.drain(Duration::from_millis(300)).await;
    assert!(
        !seen.iter().any(|m| matches!(
            m,
            ServerMsg::NewMessage(_) | ServerMsg::SyncBatch { .. } | ServerMsg::Conversation { .. }
        )),
        "eve saw: {seen:?}"
    );
    e.send(&ClientMsg::Conversations {
        reference: r("list"),
    })
    .await;
    let answer = e
        .wait_for("conversations", |m| {
            matches!(m, ServerMsg::Conversations { .. })
        })
        .await;
    assert!(
        matches!(answer, ServerMsg::Conversations { conversations, .. } if conversations.is_empty())
    );
    let page: MessagePage = api
        .get(&format!("/api/conversations/{g}/messages"), &bob.token)
        .await
        .expect(200);
    assert!(page.messages.iter().all(|m| m.sender != Some(eve.id())));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_is_not_the_owner_cannot_add_or_remove_others() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let carol = api.signup("carol").await;
    api.signup("dan").await;
    let group = api.create_group(&alice, "owned", &[&bob, &carol]).await;
    let g = group.id;
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;

    b.refused(
        &ClientMsg::AddMember {
            conversation: g,
            username: "dan".into(),
            reference: r("add"),
        },
        "add",
        ErrorCode::NotOwner,
    )
    .await;
    for (reference, username) in [("rm-carol", "carol"), ("rm-owner", "alice")] {
        b.refused(
            &ClientMsg::RemoveMember {
                conversation: g,
                username: username.into(),
                reference: r(reference),
            },
            reference,
            ErrorCode::NotOwner,
        )
        .await;
    }
    api.post(
        &format!("/api/conversations/{g}/members"),
        Some(&bob.token),
        &AddMember {
            username: "dan".into(),
        },
    )
    .await
    .expect_error(ErrorCode::NotOwner);
    for username in ["carol", "alice"] {
        api.delete(
            &format!("/api/conversations/{g}/members/{username}"),
            &bob.token,
        )
        .await
        .expect_error(ErrorCode::NotOwner);
    }
    let info: ConversationInfo = api
        .get(&format!("/api/conversations/{g}"), &carol.token)
        .await
        .expect(200);
    assert_eq!(info.members.len(), 3, "membership unchanged");
    assert_eq!(
        info.last_seq, group.last_seq,
        "no system message was written"
    );

    // What a member may do: write, and remove themself (leave).
    b.post_acked(g, "ok", "i can write").await;
    let left = api
        .delete(&format!("/api/conversations/{g}/members/bob"), &bob.token)
        .await;
    assert_eq!(left.status, 204, "{}", left.body);
    let removed = b
        .wait_for("conversation_removed", |m| {
            matches!(m, ServerMsg::ConversationRemoved { .. })
        })
        .await;
    assert!(
        matches!(removed, ServerMsg::ConversationRemoved { conversation } if conversation == g)
    );
    // Now bob is a non-member like any other.
    b.refused(
        &ClientMsg::History {
            conversation: g,
            before: Some(Seq(100)),
            limit: Some(10),
            reference: r("h"),
        },
        "h",
        ErrorCode::NotMember,
    )
    .await;
    server.stop().await;
}
