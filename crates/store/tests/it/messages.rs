use std::collections::HashMap;

use chatgroup_protocol::{ConversationId, MessageKind, Seq, UserId};
use chatgroup_store::{Committed, StoreError};

use crate::support::{on_both, text, Db};

async fn appends_are_committed_in_seq_order(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let g = h
        .store
        .create_group(alice.id, "g", &[bob.id])
        .await
        .unwrap()
        .id;
    h.drain();

    h.store
        .append(text(bob.id, g, "l1", "hello"))
        .await
        .unwrap();
    h.store
        .append(text(alice.id, g, "l1", "hi bob"))
        .await
        .unwrap();
    let events = h.take(2).await;
    let mut last_ts = 0;
    for (i, e) in events.iter().enumerate() {
        let Committed::Message {
            message,
            origin: Some(origin),
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(message.seq, Seq(i as u64 + 2));
        assert_eq!(message.conversation, g);
        assert_eq!(message.kind, MessageKind::Text);
        assert_eq!(message.local_id.as_deref(), Some("l1"));
        assert_eq!(origin.tag, message.sender.unwrap().0);
        assert!(message.ts >= last_ts);
        last_ts = message.ts;
    }
    let Committed::Message { message, .. } = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        (
            message.sender,
            message.sender_name.as_deref(),
            message.body.as_str()
        ),
        (Some(bob.id), Some("bob"), "hello")
    );

    // What the sink saw is what a reader reads.
    let stored = h
        .store
        .messages_after(alice.id, g, Seq(1), 10)
        .await
        .unwrap();
    let delivered: Vec<_> = events
        .into_iter()
        .map(|e| match e {
            Committed::Message { message, .. } => message,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(stored, delivered);

    let (message, duplicate) = h
        .store
        .append_committed(text(bob.id, g, "l2", "sync"))
        .await
        .unwrap();
    assert!(!duplicate);
    assert_eq!(message.seq, Seq(4));
    assert!(matches!(&h.take(1).await[0], Committed::Message { message: m, .. } if *m == message));
}

async fn concurrent_appenders_get_gap_free_seqs(db: Db) {
    const SENDERS: usize = 20;
    const EACH: usize = 50;
    let mut h = db.open();
    let mut users = Vec::new();
    for i in 0..SENDERS {
        users.push(h.user(&format!("u{i}")).await.id);
    }
    let g = h
        .store
        .create_group(users[0], "busy", &users)
        .await
        .unwrap()
        .id;
    let other = h
        .store
        .create_group(users[1], "other", &users[..3])
        .await
        .unwrap()
        .id;
    h.drain();

    let mut tasks = Vec::new();
    for (n, &u) in users.iter().enumerate() {
        let store = h.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                // A few senders also write elsewhere, interleaved in the same batches.
                let c = if n < 3 && i % 5 == 0 { other } else { g };
                store
                    .append(text(u, c, &format!("{n}-{i}"), "x"))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events = h.take(SENDERS * EACH).await;
    let mut last: HashMap<ConversationId, u64> = HashMap::from([(g, 1), (other, 1)]);
    for e in &events {
        let Committed::Message { message, .. } = e else {
            panic!("{e:?}")
        };
        let prev = last.insert(message.conversation, message.seq.0).unwrap();
        assert_eq!(
            message.seq.0,
            prev + 1,
            "gap-free and in order per conversation"
        );
    }
    let in_other = 3 * EACH.div_ceil(5);
    assert_eq!(last[&g], 1 + (SENDERS * EACH - in_other) as u64);
    assert_eq!(last[&other], 1 + in_other as u64);
    // Every seq exactly once in storage too.
    let stored = h
        .store
        .messages_after(users[0], g, Seq(0), 100_000)
        .await
        .unwrap();
    let seqs: Vec<u64> = stored.iter().map(|m| m.seq.0).collect();
    assert_eq!(seqs, (1..=last[&g]).collect::<Vec<_>>());
    assert_eq!(h.store.last_seq(g).await.unwrap(), Seq(last[&g]));
}

async fn a_retried_local_id_returns_the_original(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let g = h.store.create_group(alice.id, "g", &[]).await.unwrap().id;
    h.drain();

    let (first, dup) = h
        .store
        .append_committed(text(alice.id, g, "same", "one"))
        .await
        .unwrap();
    assert!(!dup);
    let mut retry = text(alice.id, g, "same", "changed body");
    retry.origin.tag = 77;
    let (again, dup) = h.store.append_committed(retry).await.unwrap();
    assert!(dup);
    assert_eq!(again, first, "same id, seq, ts and body");
    let events = h.take(2).await;
    let Committed::Duplicate { message, origin } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!((message, origin.tag), (&first, 77));
    assert_eq!(
        h.store.last_seq(g).await.unwrap(),
        Seq(2),
        "nothing new stored"
    );
}

async fn duplicates_within_one_batch(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let g = h
        .store
        .create_group(alice.id, "g", &[bob.id])
        .await
        .unwrap()
        .id;
    h.drain();

    // Hold the writer inside the sink, queue the pair, let go: they share one batch.
    h.gate.close();
    h.store
        .append(text(alice.id, g, "before", "x"))
        .await
        .unwrap();
    h.gate.writer_held().await;
    let commits = h.store.stats().commits;
    h.store
        .append(text(bob.id, g, "twice", "first"))
        .await
        .unwrap();
    h.store
        .append(text(bob.id, g, "twice", "second"))
        .await
        .unwrap();
    // The same local id from another sender is not a duplicate.
    h.store
        .append(text(alice.id, g, "twice", "alice's"))
        .await
        .unwrap();
    h.gate.open();
    let events = h.take(4).await;
    assert_eq!(h.store.stats().commits, commits + 1, "one batch");

    let Committed::Message { message: first, .. } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!((first.seq, first.body.as_str()), (Seq(3), "first"));
    let Committed::Duplicate { message, .. } = &events[2] else {
        panic!("{events:?}")
    };
    assert_eq!(message, first);
    let Committed::Message { message, .. } = &events[3] else {
        panic!("{events:?}")
    };
    assert_eq!(message.seq, Seq(4), "the duplicate consumed no seq");
}

async fn refused_appends_consume_no_seq(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let eve = h.user("eve").await;
    let g = h.store.create_group(alice.id, "g", &[]).await.unwrap().id;
    h.drain();

    h.store
        .append(text(eve.id, g, "e1", "let me in"))
        .await
        .unwrap();
    h.store
        .append(text(alice.id, ConversationId(999), "a1", "void"))
        .await
        .unwrap();
    h.store
        .append(text(UserId(999), g, "n1", "ghost"))
        .await
        .unwrap();
    let mut system = text(alice.id, g, "s1", "fake");
    system.kind = MessageKind::System;
    h.store.append(system).await.unwrap();
    h.store
        .append(text(alice.id, g, "a2", "real"))
        .await
        .unwrap();

    let events = h.take(5).await;
    let errors: Vec<_> = events[..4]
        .iter()
        .map(|e| match e {
            Committed::Rejected {
                error,
                origin,
                local_id,
                ..
            } => {
                assert_eq!(origin.reference.as_deref(), Some(local_id.as_str()));
                error.clone()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(errors[0], StoreError::NotMember);
    assert_eq!(errors[1], StoreError::NotFound("conversation"));
    assert_eq!(errors[2], StoreError::NotMember);
    assert!(matches!(errors[3], StoreError::Invalid(_)));
    let Committed::Message { message, .. } = &events[4] else {
        panic!("{events:?}")
    };
    assert_eq!(message.seq, Seq(2));

    // A file message is stored like text.
    let mut file = text(alice.id, g, "f1", "photo.jpg");
    file.kind = MessageKind::File;
    let (m, _) = h.store.append_committed(file).await.unwrap();
    assert_eq!(m.kind, MessageKind::File);
    assert_eq!(h.store.history(alice.id, g, None, 1).await.unwrap().0, [m]);
}

async fn a_retry_after_removal_still_gets_its_original(db: Db) {
    let h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let g = h
        .store
        .create_group(alice.id, "g", &[bob.id])
        .await
        .unwrap()
        .id;
    let (sent, _) = h
        .store
        .append_committed(text(bob.id, g, "b1", "bye"))
        .await
        .unwrap();
    h.store.remove_member(alice.id, g, bob.id).await.unwrap();
    assert_eq!(
        h.store
            .append_committed(text(bob.id, g, "b1", "bye"))
            .await
            .unwrap(),
        (sent, true)
    );
    assert_eq!(
        h.store.append_committed(text(bob.id, g, "b2", "hey")).await,
        Err(StoreError::NotMember)
    );
}

async fn history_and_messages_after_page(db: Db) {
    let h = db.open();
    let alice = h.user("alice").await;
    let g = h.store.create_group(alice.id, "g", &[]).await.unwrap().id;
    for i in 0..25 {
        h.store
            .append(text(alice.id, g, &format!("m{i}"), &format!("body {i}")))
            .await
            .unwrap();
    }
    h.store
        .append_committed(text(alice.id, g, "last", "last"))
        .await
        .unwrap();
    let seqs =
        |v: &[chatgroup_protocol::MessageView]| v.iter().map(|m| m.seq.0).collect::<Vec<_>>();

    let (page, more) = h.store.history(alice.id, g, None, 10).await.unwrap();
    assert_eq!((seqs(&page), more), ((18..=27).collect(), true));
    let (page, more) = h
        .store
        .history(alice.id, g, Some(Seq(18)), 10)
        .await
        .unwrap();
    assert_eq!((seqs(&page), more), ((8..=17).collect(), true));
    let (page, more) = h
        .store
        .history(alice.id, g, Some(Seq(8)), 10)
        .await
        .unwrap();
    assert_eq!((seqs(&page), more), ((1..=7).collect(), false));
    assert_eq!(
        page[0].event,
        Some(chatgroup_protocol::SystemEvent::Created {
            by: alice.id,
            name: Some("g".into())
        })
    );
    let (page, more) = h
        .store
        .history(alice.id, g, Some(Seq(1)), 10)
        .await
        .unwrap();
    assert_eq!((page.len(), more), (0, false));
    let (page, more) = h.store.history(alice.id, g, None, 0).await.unwrap();
    assert_eq!((page.len(), more), (0, true));
    let (page, more) = h
        .store
        .history(alice.id, g, Some(Seq(u64::MAX)), 27)
        .await
        .unwrap();
    assert_eq!((page.len(), more), (27, false));

    assert_eq!(
        seqs(
            &h.store
                .messages_after(alice.id, g, Seq(0), 10)
                .await
                .unwrap()
        ),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(
            &h.store
                .messages_after(alice.id, g, Seq(20), 10)
                .await
                .unwrap()
        ),
        (21..=27).collect::<Vec<_>>()
    );
    assert!(h
        .store
        .messages_after(alice.id, g, Seq(27), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(h
        .store
        .messages_after(alice.id, g, Seq(u64::MAX), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(h
        .store
        .messages_after(alice.id, g, Seq(0), 0)
        .await
        .unwrap()
        .is_empty());
}

on_both!(
    appends_are_committed_in_seq_order,
    concurrent_appenders_get_gap_free_seqs,
    a_retried_local_id_returns_the_original,
    duplicates_within_one_batch,
    refused_appends_consume_no_seq,
    a_retry_after_removal_still_gets_its_original,
    history_and_messages_after_page,
);
