use chatgroup_protocol::{Seq, UserId};
use chatgroup_store::{Committed, Durability, Store, StoreConfig, StoreError};

use crate::support::{on_both, open, open_with, tempdir, text, Db};

async fn epoch_and_secret_are_stable_across_restarts(db: Db) {
    let h = db.open();
    let epoch = h.store.epoch().to_owned();
    let secret = h.store.jwt_secret().to_vec();
    assert_eq!(epoch.len(), 32);
    assert!(epoch.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(secret.len(), 32);
    h.store.close().await;
    drop(h);

    let h = db.open();
    assert_eq!(h.store.epoch(), epoch);
    assert_eq!(h.store.jwt_secret(), secret);

    let other = db.another();
    let fresh = other.open();
    assert_ne!(fresh.store.epoch(), epoch, "a new database is a new epoch");
    assert_ne!(fresh.store.jwt_secret(), secret);
}

async fn everything_survives_close_and_reopen(db: Db) {
    let (alice, bob, g, d, sent) = {
        let mut cfg = db.config();
        cfg.durability = Durability::Full;
        let h = open_with(cfg);
        let alice = h.user("alice").await;
        let bob = h.user("bob").await;
        h.store
            .add_refresh_token(alice.id, [1; 32], i64::MAX)
            .await
            .unwrap();
        let g = h
            .store
            .create_group(alice.id, "g", &[bob.id])
            .await
            .unwrap();
        let (d, _) = h.store.create_direct(alice.id, bob.id).await.unwrap();
        for i in 0..10 {
            h.store
                .append(text(bob.id, g.id, &format!("b{i}"), "hi"))
                .await
                .unwrap();
        }
        let (sent, _) = h
            .store
            .append_committed(text(alice.id, g.id, "a0", "yo"))
            .await
            .unwrap();
        h.store.mark_read(alice.id, g.id, Seq(5)).await.unwrap();
        // Queued appends are committed by close, not dropped.
        for i in 0..100 {
            h.store
                .append(text(alice.id, d.id, &format!("d{i}"), "queued"))
                .await
                .unwrap();
        }
        h.store.close().await;
        (alice, bob, g.id, d.id, sent)
    };

    let mut h = db.open();
    assert_eq!(
        h.store.user_by_name("ALICE").await.unwrap().unwrap().user,
        alice
    );
    assert_eq!(
        h.store
            .rotate_refresh_token([1; 32], [2; 32], i64::MAX, 0)
            .await
            .unwrap(),
        Some(alice.clone())
    );
    let list = h.store.conversations(alice.id).await.unwrap();
    assert_eq!(list.len(), 2);
    let group = list.iter().find(|c| c.id == g).unwrap();
    assert_eq!(
        (group.last_seq, group.unread),
        (Seq(12), 6),
        "bob's 6-11 after the marker at 5"
    );
    assert_eq!(group.last_message.as_ref(), Some(&sent));
    assert_eq!(h.store.last_seq(d).await.unwrap(), Seq(101));

    // Seqs continue; duplicates are still recognised after the restart.
    let (again, dup) = h
        .store
        .append_committed(text(alice.id, g, "a0", "yo"))
        .await
        .unwrap();
    assert_eq!((again, dup), (sent, true));
    let (next, _) = h
        .store
        .append_committed(text(bob.id, g, "after", "restart"))
        .await
        .unwrap();
    assert_eq!(next.seq, Seq(13));
    let (pair, created) = h.store.create_direct(bob.id, alice.id).await.unwrap();
    assert_eq!((pair.id, created), (d, false));
    let events = h.drain();
    assert!(
        matches!(&events[0], Committed::Duplicate { .. }),
        "{events:?}"
    );
}

async fn close_is_idempotent_and_refuses_later_writes(db: Db) {
    let h = db.open();
    let alice = h.user("alice").await;
    let g = h.store.create_group(alice.id, "g", &[]).await.unwrap().id;
    let clone = h.store.clone();
    tokio::join!(h.store.close(), clone.close());
    h.store.close().await;

    assert_eq!(
        h.store.append(text(alice.id, g, "late", "x")).await,
        Err(StoreError::Closed)
    );
    assert_eq!(
        h.store
            .append_committed(text(alice.id, g, "late", "x"))
            .await,
        Err(StoreError::Closed)
    );
    assert_eq!(
        h.store.create_user("bob", "x").await,
        Err(StoreError::Closed)
    );
    assert_eq!(h.store.attach(alice.id, 1).await, Err(StoreError::Closed));
    assert_eq!(
        StoreError::Closed.code(),
        chatgroup_protocol::ErrorCode::Unavailable
    );
    // Reads still work.
    assert_eq!(h.store.last_seq(g).await.unwrap(), Seq(1));
    if !db.is_postgres() {
        // The WAL was checkpointed into the database file.
        let wal = db.dir().join("chatgroup.db-wal");
        assert!(
            std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0,
            "WAL left non-empty"
        );
    }
}

async fn concurrent_appends_share_commits(db: Db) {
    let mut h = db.open();
    let mut users = Vec::new();
    for i in 0..50 {
        users.push(h.user(&format!("u{i}")).await.id);
    }
    let g = h
        .store
        .create_group(users[0], "g", &users)
        .await
        .unwrap()
        .id;
    h.drain();
    let before = h.store.stats();

    let mut tasks = Vec::new();
    for &u in &users {
        let store = h.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                store
                    .append(text(u, g, &format!("{i}"), "x"))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    h.take(1000).await;
    let after = h.store.stats();
    let (commits, ops) = (after.commits - before.commits, after.ops - before.ops);
    assert_eq!(ops, 1000);
    assert!(commits < ops / 2, "{commits} commits for {ops} appends");

    // Deterministically: everything queued while the writer is busy goes in one commit,
    // up to max_batch.
    h.gate.close();
    h.store
        .append(text(users[0], g, "hold", "x"))
        .await
        .unwrap();
    h.gate.writer_held().await;
    let before = h.store.stats();
    for i in 0..500 {
        h.store
            .append(text(users[1], g, &format!("q{i}"), "x"))
            .await
            .unwrap();
    }
    h.gate.open();
    h.take(501).await;
    let after = h.store.stats();
    assert_eq!(
        (after.commits - before.commits, after.ops - before.ops),
        (1, 500)
    );
}

async fn batches_stop_at_max_batch(db: Db) {
    let mut cfg = db.config();
    cfg.max_batch = 10;
    let mut h = open_with(cfg);
    let alice = h.user("alice").await;
    let g = h.store.create_group(alice.id, "g", &[]).await.unwrap().id;
    h.drain();
    h.gate.close();
    h.store
        .append(text(alice.id, g, "hold", "x"))
        .await
        .unwrap();
    h.gate.writer_held().await;
    let before = h.store.stats();
    for i in 0..95 {
        h.store
            .append(text(alice.id, g, &format!("q{i}"), "x"))
            .await
            .unwrap();
    }
    h.gate.open();
    h.take(96).await;
    assert_eq!(h.store.stats().commits - before.commits, 10);
}

async fn a_full_queue_makes_appenders_wait(db: Db) {
    let mut cfg = db.config();
    cfg.queue_depth = 4;
    let mut h = open_with(cfg);
    let alice = h.user("alice").await;
    let g = h.store.create_group(alice.id, "g", &[]).await.unwrap().id;
    h.drain();
    h.gate.close();
    h.store
        .append(text(alice.id, g, "hold", "x"))
        .await
        .unwrap();
    h.gate.writer_held().await;
    for i in 0..4 {
        h.store
            .append(text(alice.id, g, &format!("q{i}"), "x"))
            .await
            .unwrap();
    }
    let waiting = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        h.store.append(text(alice.id, g, "over", "x")),
    )
    .await;
    assert!(waiting.is_err(), "the fifth append must wait for room");
    h.gate.open();
    h.store
        .append(text(alice.id, g, "over", "x"))
        .await
        .unwrap();
    h.take(6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let dir = tempdir();
    open(dir.path()).store.close().await;
    let conn = rusqlite::Connection::open(dir.path().join("chatgroup.db")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open(StoreConfig::new(dir.path()), Box::new(|_| {})).unwrap_err();
    let StoreError::Db(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("newer"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_directory_is_an_error() {
    let dir = tempdir();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a dir").unwrap();
    let err = Store::open(StoreConfig::new(file.join("sub")), Box::new(|_| {})).unwrap_err();
    assert!(matches!(err, StoreError::Db(_)), "{err:?}");
    // A data file that is not a database.
    std::fs::create_dir(dir.path().join("bad")).unwrap();
    std::fs::write(dir.path().join("bad/chatgroup.db"), vec![0x55; 8192]).unwrap();
    let err = Store::open(StoreConfig::new(dir.path().join("bad")), Box::new(|_| {})).unwrap_err();
    assert!(matches!(err, StoreError::Db(_)), "{err:?}");
    let _ = UserId(0);
}

/// Two servers on one data directory would both assign seq numbers from their own caches:
/// the second is refused until the first has closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_is_used_by_one_store_at_a_time() {
    let dir = tempdir();
    let first = Store::open(StoreConfig::new(dir.path()), Box::new(|_| {})).unwrap();
    let second = Store::open(StoreConfig::new(dir.path()), Box::new(|_| {}));
    let err = second.unwrap_err().to_string();
    assert!(err.contains("in use by another chatgroup process"), "{err}");
    first.close().await;
    let again = Store::open(StoreConfig::new(dir.path()), Box::new(|_| {})).unwrap();
    again.close().await;
}

/// Checkpoints run on their own thread, not inside the writer's commits: committed pages
/// reach the database file shortly after the commits, with no checkpoint asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_folds_the_wal_into_the_database() {
    let dir = tempdir();
    let h = open(dir.path());
    let alice = h.user("alice").await;
    let g = h.store.create_group(alice.id, "g", &[]).await.unwrap().id;
    let db = dir.path().join("chatgroup.db");
    let before = std::fs::metadata(&db).unwrap().len();
    let body = "x".repeat(1000);
    for i in 0..500 {
        h.store
            .append_committed(text(alice.id, g, &format!("m{i}"), &body))
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = std::fs::metadata(&db).unwrap().len();
        if now > before + 400_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {now} bytes (was {before})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    h.store.close().await;
}

on_both!(
    epoch_and_secret_are_stable_across_restarts,
    everything_survives_close_and_reopen,
    close_is_idempotent_and_refuses_later_writes,
    concurrent_appends_share_commits,
    batches_stop_at_max_batch,
    a_full_queue_makes_appenders_wait,
);
