use chatgroup_protocol::{ConversationId, ConversationKind, MessageKind, Seq, SystemEvent, UserId};
use chatgroup_store::{Committed, StoreError};

use crate::support::{on_both, text, Db};

fn ids(users: &[chatgroup_protocol::UserInfo]) -> Vec<UserId> {
    users.iter().map(|u| u.id).collect()
}

/// The system message of a `Committed::Message`, or a panic.
fn system(e: &Committed) -> (&SystemEvent, Seq, &str) {
    match e {
        Committed::Message {
            message,
            origin: None,
        } => {
            assert_eq!(message.kind, MessageKind::System);
            assert_eq!(message.local_id, None);
            (
                message.event.as_ref().expect("system event"),
                message.seq,
                &message.body,
            )
        }
        other => panic!("expected a system message, got {other:?}"),
    }
}

async fn group_creation_adds_members_before_the_created_message(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let carol = h.user("carol").await;

    let info = h
        .store
        .create_group(alice.id, "  trip  ", &[bob.id, carol.id, bob.id, alice.id])
        .await
        .unwrap();
    assert_eq!(info.kind, ConversationKind::Group);
    assert_eq!(info.name, "trip");
    assert_eq!(info.owner, Some(alice.id));
    assert_eq!(ids(&info.members), [alice.id, bob.id, carol.id]);
    assert_eq!(info.last_seq, Seq(1));
    assert_eq!(info.unread, 0, "the creator sent the created message");

    let events = h.drain();
    assert_eq!(events.len(), 2, "{events:?}");
    let Committed::MembersAdded {
        conversation,
        users,
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(users, &[alice.id, bob.id, carol.id]);
    assert_eq!(conversation.id, info.id);
    assert_eq!(
        conversation.last_seq,
        Seq(0),
        "as of before the created message"
    );
    let (event, seq, body) = system(&events[1]);
    assert_eq!(seq, Seq(1));
    assert_eq!(
        event,
        &SystemEvent::Created {
            by: alice.id,
            name: Some("trip".into())
        }
    );
    assert_eq!(body, "alice created the group \"trip\"");

    // Bob sees one unread: the created message.
    let bobs = h.store.conversation(bob.id, info.id).await.unwrap();
    assert_eq!(bobs.unread, 1);
    assert_eq!(
        bobs.last_message.unwrap().event,
        Some(SystemEvent::Created {
            by: alice.id,
            name: Some("trip".into())
        })
    );
}

async fn group_creation_is_validated(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    for bad in ["", "   ", &"x".repeat(65)] {
        assert!(
            matches!(
                h.store.create_group(alice.id, bad, &[]).await,
                Err(StoreError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    assert!(h
        .store
        .create_group(alice.id, &"é".repeat(64), &[])
        .await
        .is_ok());
    h.drain();
    assert_eq!(
        h.store.create_group(alice.id, "x", &[UserId(99)]).await,
        Err(StoreError::NotFound("user"))
    );
    assert_eq!(
        h.store.create_group(UserId(99), "x", &[]).await,
        Err(StoreError::NotFound("user"))
    );
    assert!(h.drain().is_empty(), "a refused operation emits nothing");
}

async fn direct_chats_are_created_once(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;

    let (info, created) = h.store.create_direct(alice.id, bob.id).await.unwrap();
    assert!(created);
    assert_eq!(info.kind, ConversationKind::Direct);
    assert_eq!(info.name, "bob", "named after the other member");
    assert_eq!(info.owner, None);
    let events = h.drain();
    let Committed::MembersAdded {
        users,
        conversation,
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(users, &[alice.id, bob.id]);
    assert_eq!(conversation.name, "", "events carry no viewer");
    assert_eq!(
        chatgroup_store::for_viewer(conversation, bob.id).name,
        "alice"
    );
    let (event, seq, _) = system(&events[1]);
    assert_eq!(
        (event, seq),
        (
            &SystemEvent::Created {
                by: alice.id,
                name: None
            },
            Seq(1)
        )
    );
    assert_eq!(events.len(), 2);

    let (again, created) = h.store.create_direct(bob.id, alice.id).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, info.id);
    assert_eq!(again.name, "alice");
    assert!(h.drain().is_empty());

    assert!(matches!(
        h.store.create_direct(alice.id, alice.id).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        h.store.create_direct(alice.id, UserId(99)).await,
        Err(StoreError::NotFound("user"))
    );

    // Members of a direct chat never change, and it has no name to change.
    let carol = h.user("carol").await;
    assert!(matches!(
        h.store.add_member(alice.id, info.id, carol.id).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        h.store.remove_member(alice.id, info.id, bob.id).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        h.store.remove_member(alice.id, info.id, alice.id).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        h.store.rename(alice.id, info.id, "x").await,
        Err(StoreError::Invalid(_))
    ));
}

async fn only_the_owner_adds_and_removes(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let carol = h.user("carol").await;
    let dave = h.user("dave").await;
    let g = h
        .store
        .create_group(alice.id, "g", &[bob.id])
        .await
        .unwrap()
        .id;
    h.drain();

    assert_eq!(
        h.store.add_member(bob.id, g, carol.id).await,
        Err(StoreError::NotOwner)
    );
    assert_eq!(
        h.store.add_member(carol.id, g, dave.id).await,
        Err(StoreError::NotMember)
    );
    assert_eq!(
        h.store.add_member(alice.id, g, UserId(99)).await,
        Err(StoreError::NotFound("user"))
    );
    assert_eq!(
        h.store
            .add_member(alice.id, ConversationId(99), carol.id)
            .await,
        Err(StoreError::NotFound("conversation"))
    );
    assert!(h.drain().is_empty());

    let info = h.store.add_member(alice.id, g, carol.id).await.unwrap();
    assert_eq!(ids(&info.members), [alice.id, bob.id, carol.id]);
    assert_eq!(info.last_seq, Seq(2));
    let events = h.drain();
    assert_eq!(events.len(), 2, "{events:?}");
    let Committed::MembersAdded {
        conversation,
        users,
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(users, &[carol.id]);
    assert_eq!(conversation.last_seq, Seq(1));
    assert_eq!(ids(&conversation.members), [alice.id, bob.id, carol.id]);
    let (event, seq, body) = system(&events[1]);
    assert_eq!(
        (event, seq, body),
        (
            &SystemEvent::Joined {
                user: carol.id,
                by: alice.id
            },
            Seq(2),
            "alice added carol"
        )
    );

    // Adding a member again changes nothing.
    assert_eq!(
        h.store
            .add_member(alice.id, g, carol.id)
            .await
            .unwrap()
            .last_seq,
        Seq(2)
    );
    assert!(h.drain().is_empty());

    assert_eq!(
        h.store.remove_member(bob.id, g, carol.id).await,
        Err(StoreError::NotOwner)
    );
    assert_eq!(
        h.store.remove_member(dave.id, g, carol.id).await,
        Err(StoreError::NotMember)
    );
    assert_eq!(
        h.store.remove_member(alice.id, g, dave.id).await,
        Err(StoreError::NotFound("member"))
    );
    assert!(h.drain().is_empty());

    h.store.remove_member(alice.id, g, carol.id).await.unwrap();
    let events = h.drain();
    let (event, seq, body) = system(&events[0]);
    assert_eq!(
        (event, seq, body),
        (
            &SystemEvent::Removed {
                user: carol.id,
                by: alice.id
            },
            Seq(3),
            "alice removed carol"
        )
    );
    assert_eq!(
        events[1],
        Committed::MemberRemoved {
            conversation: g,
            user: carol.id
        }
    );
    assert!(matches!(&events[2], Committed::ConversationChanged { .. }));
    assert_eq!(events.len(), 3);
    assert!(!h.store.is_member(carol.id, g).await.unwrap());
    assert_eq!(
        h.store.conversation(carol.id, g).await,
        Err(StoreError::NotMember)
    );
}

async fn leaving_passes_ownership_to_the_longest_standing_member(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let carol = h.user("carol").await;
    let g = h.store.create_group(alice.id, "g", &[]).await.unwrap().id;
    h.store.add_member(alice.id, g, carol.id).await.unwrap();
    h.store.add_member(alice.id, g, bob.id).await.unwrap();
    h.drain();

    // A member leaves on their own.
    h.store.remove_member(bob.id, g, bob.id).await.unwrap();
    let events = h.drain();
    let (event, _, body) = system(&events[0]);
    assert_eq!(
        (event, body),
        (&SystemEvent::Left { user: bob.id }, "bob left")
    );
    assert_eq!(
        events[1],
        Committed::MemberRemoved {
            conversation: g,
            user: bob.id
        }
    );
    // The remaining members learn the new member list.
    let Committed::ConversationChanged { conversation } = &events[2] else {
        panic!("{events:?}")
    };
    assert!(!conversation.members.iter().any(|m| m.id == bob.id));
    assert_eq!(events.len(), 3);
    h.store.add_member(alice.id, g, bob.id).await.unwrap();
    h.drain();

    // The owner leaves: carol joined before bob's return, so she inherits.
    h.store.remove_member(alice.id, g, alice.id).await.unwrap();
    let events = h.drain();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(system(&events[0]).0, &SystemEvent::Left { user: alice.id });
    assert_eq!(
        events[1],
        Committed::MemberRemoved {
            conversation: g,
            user: alice.id
        }
    );
    let Committed::ConversationChanged { conversation } = &events[2] else {
        panic!("{events:?}")
    };
    assert_eq!(conversation.owner, Some(carol.id));
    assert_eq!(ids(&conversation.members), [carol.id, bob.id]);
    assert_eq!(
        h.store.conversation(bob.id, g).await.unwrap().owner,
        Some(carol.id)
    );
    assert_eq!(
        h.store.add_member(bob.id, g, alice.id).await,
        Err(StoreError::NotOwner)
    );
    h.store.add_member(carol.id, g, alice.id).await.unwrap();

    // Everyone leaves: an empty, ownerless group is fine.
    for u in [carol.id, bob.id, alice.id] {
        h.store.remove_member(u, g, u).await.unwrap();
    }
    assert_eq!(
        h.store.conversation(alice.id, g).await,
        Err(StoreError::NotMember)
    );
    assert_eq!(h.store.last_seq(g).await.unwrap(), Seq(10));
}

async fn any_member_renames_a_group(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let eve = h.user("eve").await;
    let g = h
        .store
        .create_group(alice.id, "old", &[bob.id])
        .await
        .unwrap()
        .id;
    h.drain();

    let info = h.store.rename(bob.id, g, " new name ").await.unwrap();
    assert_eq!(info.name, "new name");
    assert_eq!(info.last_seq, Seq(2));
    let events = h.drain();
    let (event, seq, body) = system(&events[0]);
    assert_eq!(
        (event, seq, body),
        (
            &SystemEvent::Renamed {
                name: "new name".into(),
                by: bob.id
            },
            Seq(2),
            "bob renamed the group to \"new name\""
        )
    );
    let Committed::ConversationChanged { conversation } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(conversation.name, "new name");
    assert_eq!(events.len(), 2);

    assert_eq!(
        h.store.rename(eve.id, g, "x").await,
        Err(StoreError::NotMember)
    );
    assert!(matches!(
        h.store.rename(alice.id, g, " ").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        h.store.rename(alice.id, g, &"x".repeat(65)).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        h.store.rename(alice.id, ConversationId(99), "x").await,
        Err(StoreError::NotFound("conversation"))
    );
    assert!(h.drain().is_empty());
}

async fn non_members_are_refused_everywhere(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let eve = h.user("eve").await;
    let g = h
        .store
        .create_group(alice.id, "g", &[bob.id])
        .await
        .unwrap()
        .id;
    let (d, _) = h.store.create_direct(alice.id, bob.id).await.unwrap();
    h.drain();

    for c in [g, d.id] {
        assert_eq!(
            h.store.append_committed(text(eve.id, c, "e1", "hi")).await,
            Err(StoreError::NotMember)
        );
        assert_eq!(
            h.store.history(eve.id, c, None, 10).await,
            Err(StoreError::NotMember)
        );
        assert_eq!(
            h.store.messages_after(eve.id, c, Seq(0), 10).await,
            Err(StoreError::NotMember)
        );
        assert_eq!(
            h.store.conversation(eve.id, c).await,
            Err(StoreError::NotMember)
        );
        assert_eq!(
            h.store.mark_read(eve.id, c, Seq(1)).await,
            Err(StoreError::NotMember)
        );
        assert_eq!(
            h.store.add_member(eve.id, c, eve.id).await,
            Err(StoreError::NotMember)
        );
        assert_eq!(
            h.store.remove_member(eve.id, c, bob.id).await,
            Err(StoreError::NotMember)
        );
        assert_eq!(
            h.store.remove_member(eve.id, c, eve.id).await,
            Err(StoreError::NotMember)
        );
        assert_eq!(
            h.store.rename(eve.id, c, "mine").await,
            Err(StoreError::NotMember)
        );
        assert!(!h.store.is_member(eve.id, c).await.unwrap());
    }
    assert!(h.store.conversations(eve.id).await.unwrap().is_empty());
    // Unknown conversations are NotFound, not NotMember.
    let nowhere = ConversationId(999);
    assert_eq!(
        h.store.history(alice.id, nowhere, None, 10).await,
        Err(StoreError::NotFound("conversation"))
    );
    assert_eq!(
        h.store.conversation(alice.id, nowhere).await,
        Err(StoreError::NotFound("conversation"))
    );
    assert_eq!(
        h.store.mark_read(alice.id, nowhere, Seq(1)).await,
        Err(StoreError::NotFound("conversation"))
    );
    assert_eq!(
        h.store.last_seq(nowhere).await,
        Err(StoreError::NotFound("conversation"))
    );

    // The refused appends reached the sink as rejections and used no seq.
    let events = h.drain();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert!(
            matches!(
                e,
                Committed::Rejected {
                    error: StoreError::NotMember,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    assert_eq!(h.store.last_seq(g).await.unwrap(), Seq(1));
}

async fn conversation_list_orders_by_activity_and_counts_unread(db: Db) {
    let h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let g1 = h
        .store
        .create_group(alice.id, "one", &[bob.id])
        .await
        .unwrap()
        .id;
    let (d, _) = h.store.create_direct(bob.id, alice.id).await.unwrap();
    let g2 = h
        .store
        .create_group(bob.id, "two", &[alice.id])
        .await
        .unwrap()
        .id;
    // Timestamps are in ms; make the activity order unambiguous.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    for i in 0..3 {
        h.store
            .append_committed(text(bob.id, g1, &format!("b{i}"), "hey"))
            .await
            .unwrap();
    }
    h.store
        .append_committed(text(alice.id, g1, "a0", "hi"))
        .await
        .unwrap();

    let list = h.store.conversations(alice.id).await.unwrap();
    let order: Vec<_> = list.iter().map(|c| c.id).collect();
    assert_eq!(order, [g1, g2, d.id]);
    assert_eq!(list[0].last_seq, Seq(5));
    assert_eq!(list[0].last_message.as_ref().unwrap().body, "hi");
    assert_eq!(
        list[0].unread, 3,
        "bob's three; alice's own and created message don't count"
    );
    assert_eq!(list[1].unread, 1, "bob created two");
    assert_eq!(
        list[2].name, "bob",
        "a direct chat is named after the other member"
    );
    assert_eq!(list[2].unread, 1, "bob started the chat");
    assert_eq!(list[0].members.len(), 2);

    // The read marker is monotonic and clamped to the last seq.
    assert_eq!(
        h.store.mark_read(alice.id, g1, Seq(3)).await.unwrap(),
        Seq(3)
    );
    assert_eq!(h.store.conversation(alice.id, g1).await.unwrap().unread, 1);
    assert_eq!(
        h.store.mark_read(alice.id, g1, Seq(2)).await.unwrap(),
        Seq(3)
    );
    assert_eq!(
        h.store
            .mark_read(alice.id, g1, Seq(u64::MAX))
            .await
            .unwrap(),
        Seq(5)
    );
    assert_eq!(h.store.conversation(alice.id, g1).await.unwrap().unread, 0);
    let bobs = h.store.conversation(bob.id, g1).await.unwrap();
    assert_eq!(bobs.unread, 2, "alice's created message and her hi");
}

async fn attach_reports_memberships_in_commit_order(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    h.store.attach(bob.id, 7).await.unwrap();
    let g = h.store.create_group(alice.id, "g", &[]).await.unwrap().id;
    h.store.add_member(alice.id, g, bob.id).await.unwrap();
    h.store.attach(bob.id, 8).await.unwrap();
    h.store.remove_member(alice.id, g, bob.id).await.unwrap();
    h.store.attach(bob.id, 9).await.unwrap();

    let attached: Vec<_> = h
        .take(10)
        .await
        .into_iter()
        .filter_map(|e| match e {
            Committed::Attached {
                tag,
                user,
                conversations,
            } => Some((tag, user, conversations)),
            _ => None,
        })
        .collect();
    assert_eq!(
        attached,
        [
            (7, bob.id, vec![]),
            (8, bob.id, vec![g]),
            (9, bob.id, vec![])
        ]
    );
}

on_both!(
    group_creation_adds_members_before_the_created_message,
    group_creation_is_validated,
    direct_chats_are_created_once,
    only_the_owner_adds_and_removes,
    leaving_passes_ownership_to_the_longest_standing_member,
    any_member_renames_a_group,
    non_members_are_refused_everywhere,
    conversation_list_orders_by_activity_and_counts_unread,
    attach_reports_memberships_in_commit_order,
);
