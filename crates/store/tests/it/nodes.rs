//! Several chatgroup nodes on one PostgreSQL database: each a `Store` of its own (its own
//! writer, its own batches, its own sink), writing to the same conversations at once.

use std::collections::{BTreeMap, HashMap};

use chatgroup_protocol::{ConversationId, MessageView, Seq, UserId};
use chatgroup_store::{Committed, Store, StoreError};

use crate::support::{text, Db, Harness};

/// What one send got back: the node that took it, its local id, and the ack.
struct Acked {
    node: usize,
    sender: UserId,
    local_id: String,
    message: MessageView,
    duplicate: bool,
}

/// Two nodes append to the same three conversations at once. Every send is made twice, once
/// on each node at the same moment (a client retrying on another node), and some retries go
/// to another conversation than the original. Afterwards:
/// - each conversation's seqs are exactly 1..=n, as every member reads them on either node;
/// - every acked message is stored, exactly once, as acked;
/// - each pair of sends of one local id collapsed into one message: one ack says new, the
///   other says duplicate with the same message;
/// - each node's sink saw each conversation's new messages in increasing seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_keep_seqs_gap_free_and_local_ids_unique() {
    nodes_keep_seqs_gap_free_and_local_ids_unique(2).await;
}

/// The same with three nodes: every send made three times, one per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_keep_seqs_gap_free_and_local_ids_unique() {
    nodes_keep_seqs_gap_free_and_local_ids_unique(3).await;
}

async fn nodes_keep_seqs_gap_free_and_local_ids_unique(count: usize) {
    const USERS: usize = 8;
    const EACH: usize = 30;
    let Some(db) = Db::postgres() else { return };
    let mut nodes: Vec<Harness> = (0..count).map(|_| db.open()).collect();
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(nodes[i % count].user(&format!("u{i}")).await.id);
    }
    let mut groups = Vec::new();
    for (i, name) in ["one", "two", "three"].into_iter().enumerate() {
        let store = &nodes[i % count].store;
        groups.push(store.create_group(users[i], name, &users).await.unwrap().id);
    }
    for node in &mut nodes {
        node.drain();
    }

    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for &user in &users {
            let store: Store = node.store.clone();
            let groups = groups.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..EACH {
                    // Every fifth send's twins on the other nodes name other conversations.
                    let shift = if i % 5 == 0 { n } else { 0 };
                    let conversation = groups[(i + shift) % groups.len()];
                    let local_id = format!("{}-{i}", user.0);
                    let (message, duplicate) = store
                        .append_committed(text(user, conversation, &local_id, "x"))
                        .await
                        .unwrap();
                    acked.push(Acked {
                        node: n,
                        sender: user,
                        local_id,
                        message,
                        duplicate,
                    });
                }
                acked
            }));
        }
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.unwrap());
    }
    assert_eq!(acks.len(), count * USERS * EACH);

    // Every node reads the same gap-free history in every conversation.
    let mut stored: HashMap<u64, MessageView> = HashMap::new();
    for &g in &groups {
        let first = nodes[0]
            .store
            .messages_after(users[1], g, Seq(0), 100_000)
            .await
            .unwrap();
        for (n, node) in nodes.iter().enumerate().skip(1) {
            let other = node
                .store
                .messages_after(users[n], g, Seq(0), 100_000)
                .await
                .unwrap();
            assert_eq!(first, other, "node {n} reads the same history");
            assert_eq!(
                node.store.last_seq(g).await.unwrap(),
                Seq(first.len() as u64)
            );
        }
        let seqs: Vec<u64> = first.iter().map(|m| m.seq.0).collect();
        assert_eq!(
            seqs,
            (1..=first.len() as u64).collect::<Vec<_>>(),
            "gap-free"
        );
        for m in first {
            assert!(stored.insert(m.id.0, m).is_none(), "one row per message id");
        }
    }
    // Each local id is stored once: the 3 created messages plus one per (user, i).
    assert_eq!(stored.len(), 3 + USERS * EACH);

    // Every ack names a stored message, as stored; of each local id's sends, one is new.
    let mut sends: BTreeMap<(UserId, String), Vec<&Acked>> = BTreeMap::new();
    for ack in &acks {
        assert_eq!(
            stored.get(&ack.message.id.0),
            Some(&ack.message),
            "acked = stored"
        );
        sends
            .entry((ack.sender, ack.local_id.clone()))
            .or_default()
            .push(ack);
    }
    assert_eq!(sends.len(), USERS * EACH);
    for ((_, local_id), same) in &sends {
        assert_eq!(same.len(), count);
        let mut from: Vec<usize> = same.iter().map(|a| a.node).collect();
        from.sort_unstable();
        assert_eq!(from, (0..count).collect::<Vec<_>>(), "one send per node");
        assert!(
            same.iter().all(|a| a.message == same[0].message),
            "{local_id}: one message"
        );
        let new = same.iter().filter(|a| !a.duplicate).count();
        assert_eq!(new, 1, "{local_id}: exactly one send stored it");
    }

    // Each node's sink: per conversation, its own commits in increasing seq order.
    for (n, node) in nodes.iter_mut().enumerate() {
        let mut last: HashMap<ConversationId, Seq> = HashMap::new();
        let mut messages = 0;
        for event in node.drain() {
            messages += 1;
            let message = match event {
                Committed::Message { message, .. } => message,
                // The original's seq, committed earlier by any node.
                Committed::Duplicate { .. } => continue,
                other => panic!("node {n}: {other:?}"),
            };
            let before = last.insert(message.conversation, message.seq);
            if let Some(before) = before {
                assert!(
                    before < message.seq,
                    "node {n}: commit order per conversation"
                );
            }
        }
        assert_eq!(messages, USERS * EACH, "node {n}: one event per send");
        let stats = node.store.stats();
        // Shown with --nocapture: how often the nodes' batches collided.
        println!("node {n}: {stats:?}");
        assert_eq!(stats.failed_batches, 0, "node {n}: conflicts are retried");
    }
}

/// One node removes a member while another floods the conversation with that member's
/// sends: membership is checked under the conversation's lock, so each send is either
/// stored before the removal's system message or refused, and the seqs stay gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_on_one_node_and_sends_on_another_do_not_interleave() {
    let Some(db) = Db::postgres() else { return };
    let (a, b) = (db.open(), db.open());
    let alice = a.user("alice").await;
    let bob = a.user("bob").await;
    let g = a
        .store
        .create_group(alice.id, "g", &[bob.id])
        .await
        .unwrap()
        .id;
    let flood = {
        let store = b.store.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..200 {
                outcomes.push(
                    store
                        .append_committed(text(bob.id, g, &format!("b{i}"), "x"))
                        .await,
                );
            }
            outcomes
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    a.store.remove_member(alice.id, g, bob.id).await.unwrap();
    let outcomes = flood.await.unwrap();

    let history = a
        .store
        .messages_after(alice.id, g, Seq(0), 10_000)
        .await
        .unwrap();
    let seqs: Vec<u64> = history.iter().map(|m| m.seq.0).collect();
    assert_eq!(
        seqs,
        (1..=history.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    let removed = history
        .iter()
        .find(|m| {
            matches!(
                m.event,
                Some(chatgroup_protocol::SystemEvent::Removed { .. })
            )
        })
        .expect("the removal's system message")
        .seq;
    let mut refused = 0;
    for outcome in outcomes {
        match outcome {
            Ok((m, false)) => assert!(m.seq < removed, "stored while still a member"),
            Err(StoreError::NotMember) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    let stored = history
        .iter()
        .filter(|m| m.sender == Some(bob.id) && m.local_id.is_some())
        .count();
    assert_eq!(stored, 200 - refused, "every acked send is stored");
    assert!(
        history
            .iter()
            .filter(|m| m.seq > removed)
            .all(|m| m.sender != Some(bob.id)),
        "nothing of bob's after his removal"
    );
    println!("{refused} of 200 sends refused after the removal");
}

/// A client whose send timed out on one node retries it on another: it gets the original
/// back, and nothing new is stored, even after the first node closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_node_gets_the_original() {
    let Some(db) = Db::postgres() else { return };
    let first = db.open();
    let alice = first.user("alice").await;
    let g = first
        .store
        .create_group(alice.id, "g", &[])
        .await
        .unwrap()
        .id;
    let (sent, _) = first
        .store
        .append_committed(text(alice.id, g, "l1", "hello"))
        .await
        .unwrap();
    first.store.close().await;

    let second = db.open();
    assert_eq!(second.store.epoch(), first.store.epoch(), "one database");
    assert_eq!(second.store.jwt_secret(), first.store.jwt_secret());
    let (again, duplicate) = second
        .store
        .append_committed(text(alice.id, g, "l1", "hello"))
        .await
        .unwrap();
    assert_eq!((again, duplicate), (sent, true));
    assert_eq!(second.store.last_seq(g).await.unwrap(), Seq(2));
    // The second node's next message follows the first node's.
    let (next, _) = second
        .store
        .append_committed(text(alice.id, g, "l2", "again"))
        .await
        .unwrap();
    assert_eq!(next.seq, Seq(3));
}

/// Nodes opening at once migrate one at a time (the later ones find the schema in place)
/// and agree on the epoch and the token secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_opening_at_once_agree() {
    let Some(db) = Db::postgres() else { return };
    let db = std::sync::Arc::new(db);
    let opened: Vec<Harness> = (0..4)
        .map(|_| {
            let db = std::sync::Arc::clone(&db);
            std::thread::spawn(move || db.open())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for h in &opened[1..] {
        assert_eq!(h.store.epoch(), opened[0].store.epoch());
        assert_eq!(h.store.jwt_secret(), opened[0].store.jwt_secret());
    }
    for h in &opened {
        h.store.close().await;
    }
}

/// A database migrated by a newer build is refused, as with SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let Some(db) = Db::postgres() else { return };
    db.open().store.close().await;
    db.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 0)");
    let err = Store::open(db.config(), Box::new(|_| {})).unwrap_err();
    let StoreError::Db(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("newer"), "{msg}");
}

/// A database that cannot be reached is an error at open, and says where without the
/// password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_an_error_without_the_password() {
    let mut cfg = crate::support::config(crate::support::tempdir().path());
    cfg.backend = chatgroup_store::Backend::Postgres(chatgroup_store::DatabaseUrl::new(
        "postgres://chat:hunter2@127.0.0.1:1/chat?connect_timeout=2",
    ));
    let err = Store::open(cfg, Box::new(|_| {})).unwrap_err();
    assert!(matches!(err, StoreError::Db(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// Acked appends per second on one and on two nodes, 64 senders in a closed loop over 8
/// groups: every acked append is stored, with seqs 1..n in each group. It runs for a second
/// per setup in the test command; for the README's figures, run it longer in a release build:
/// `CHATGROUP_MEASURE_SECS=3 cargo test -p chatgroup-store --release --test it append_rate --
/// --nocapture` (with `CHATGROUP_TEST_POSTGRES` set; SQLite is measured alongside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_rate() {
    const SENDERS: usize = 64;
    const GROUPS: usize = 8;
    let seconds: u64 = std::env::var("CHATGROUP_MEASURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    async fn measure(label: &str, nodes: &[Harness], seconds: u64) {
        let mut users = Vec::new();
        for i in 0..SENDERS {
            users.push(nodes[0].user(&format!("u{i}")).await.id);
        }
        let mut groups = Vec::new();
        for g in 0..GROUPS {
            let members: Vec<UserId> = users.iter().copied().skip(g).step_by(GROUPS).collect();
            let id = nodes[0]
                .store
                .create_group(members[0], &format!("g{g}"), &members)
                .await
                .unwrap()
                .id;
            groups.push(id);
        }
        let before: Vec<_> = nodes.iter().map(|n| n.store.stats()).collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for (i, &user) in users.iter().enumerate() {
            let store = nodes[i % nodes.len()].store.clone();
            let group = groups[i % GROUPS];
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while std::time::Instant::now() < deadline {
                    store
                        .append_committed(text(user, group, &format!("{i}-{n}"), &"x".repeat(100)))
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        let commits: u64 = nodes
            .iter()
            .zip(&before)
            .map(|(n, b)| n.store.stats().commits - b.commits)
            .sum();
        let retries: u64 = nodes
            .iter()
            .zip(&before)
            .map(|(n, b)| n.store.stats().retries - b.retries)
            .sum();
        println!(
            "{label}: {:.0} acked appends/s ({total} in {seconds} s, {commits} commits, {retries} retries)",
            total as f64 / seconds as f64
        );
        // Each group holds its "created" message and every append acked in it, gap-free.
        let mut stored = 0;
        for &g in &groups {
            stored += nodes[0].store.last_seq(g).await.unwrap().0 - 1;
        }
        assert!(total > 0, "{label}: nothing was acked");
        assert_eq!(
            stored, total,
            "{label}: acked appends and stored messages differ"
        );
    }
    let sqlite = Db::sqlite();
    measure("sqlite, 1 node", &[sqlite.open()], seconds).await;
    let Some(db) = Db::postgres() else { return };
    measure("postgres, 1 node", &[db.open()], seconds).await;
    let db = db.another();
    measure("postgres, 2 nodes", &[db.open(), db.open()], seconds).await;
}

/// The database ends the writer's connection (a restart, a failover, an administrator): the
/// batch that meets the dead connection before its COMMIT runs again on a new connection, so
/// its callers never notice, and the seqs go on with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_reconnects_after_losing_its_connection() {
    let Some(db) = Db::postgres() else { return };
    let h = db.open();
    let alice = h.user("alice").await;
    let g = h.store.create_group(alice.id, "g", &[]).await.unwrap().id;
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'chatgroup-writer' AND datname = current_database()",
    );
    let mut failed = 0;
    let message = loop {
        match h
            .store
            .append_committed(text(alice.id, g, &format!("try-{failed}"), "x"))
            .await
        {
            Ok((message, _)) => break message,
            Err(StoreError::Db(_)) if failed < 3 => failed += 1,
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(failed, 0, "the batch ran again on a new connection");
    assert!(h.store.stats().retries >= 1);
    assert_eq!(message.seq, Seq(2));
    let stored = h
        .store
        .messages_after(alice.id, g, Seq(0), 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1], message);
}
