//! Batches that cannot commit. Neither database gives fault injection, so the tests plant
//! triggers: in SQLite, one that makes SQLite roll the whole transaction back mid-batch, and
//! one that leaves a deferred foreign-key violation so that COMMIT itself fails; in
//! PostgreSQL, one that fails a statement mid-batch and one that fails the COMMIT.

use std::path::Path;

use chatgroup_protocol::{ConversationId, Seq, UserId};
use chatgroup_store::{Committed, StoreError};

use crate::support::{text, Db, Harness};

fn plant(dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join("chatgroup.db")).unwrap();
    conn.execute_batch(sql).unwrap();
}

async fn setup(db: &Db) -> (UserId, ConversationId) {
    let h = db.open();
    let alice = h.user("alice").await;
    let g = h.store.create_group(alice.id, "g", &[]).await.unwrap().id;
    h.store
        .append_committed(text(alice.id, g, "ok", "fine"))
        .await
        .unwrap();
    h.store.close().await;
    (alice.id, g)
}

/// Queues `bodies` as one batch (the writer held meanwhile) and returns their events.
async fn one_batch(
    h: &mut Harness,
    alice: UserId,
    g: ConversationId,
    bodies: &[&str],
) -> Vec<Committed> {
    h.gate.close();
    h.store.attach(alice, 0).await.unwrap();
    h.gate.writer_held().await;
    for (i, body) in bodies.iter().enumerate() {
        h.store
            .append(text(alice, g, &format!("{body}-{i}"), body))
            .await
            .unwrap();
    }
    h.store.attach(alice, 1).await.unwrap();
    h.gate.open();
    let mut events = h.take(bodies.len() + 2).await;
    events.remove(0);
    events
}

async fn check_failed_batch(db: &Db, alice: UserId, g: ConversationId) {
    let mut h = db.open();
    let failed = h.store.stats().failed_batches;
    let events = one_batch(&mut h, alice, g, &["a", "boom", "b"]).await;
    assert_eq!(h.store.stats().failed_batches, failed + 1);
    for e in &events[..3] {
        assert!(
            matches!(e, Committed::Rejected { error: StoreError::Db(_), conversation, .. } if *conversation == g),
            "{e:?}"
        );
    }
    // The attach is answered from the committed state.
    assert_eq!(
        events[3],
        Committed::Attached {
            tag: 1,
            user: alice,
            conversations: vec![g]
        }
    );
    assert_eq!(h.store.last_seq(g).await.unwrap(), Seq(2));

    // The writer's cache did not keep the lost seqs: the next messages follow the committed
    // ones, with no gap and no duplicate.
    let (m, dup) = h
        .store
        .append_committed(text(alice, g, "a-0", "a"))
        .await
        .unwrap();
    assert_eq!(
        (m.seq, dup),
        (Seq(3), false),
        "the failed batch stored nothing"
    );
    assert!(matches!(
        h.store
            .append_committed(text(alice, g, "boom-9", "boom"))
            .await,
        Err(StoreError::Db(_))
    ));
    let (m, _) = h
        .store
        .append_committed(text(alice, g, "c", "c"))
        .await
        .unwrap();
    assert_eq!(m.seq, Seq(4));
    let seqs: Vec<_> = h
        .store
        .messages_after(alice, g, Seq(0), 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq.0)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    // Other operations still work after the failures.
    assert_eq!(
        h.store
            .rename(alice, g, "still here")
            .await
            .unwrap()
            .last_seq,
        Seq(5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_rolled_back_mid_batch_fails_the_whole_batch() {
    let db = Db::sqlite();
    let (alice, g) = setup(&db).await;
    plant(
        db.dir(),
        "CREATE TRIGGER boom AFTER INSERT ON messages WHEN NEW.body = 'boom'
         BEGIN SELECT RAISE(ROLLBACK, 'boom'); END;",
    );
    check_failed_batch(&db, alice, g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_the_whole_batch() {
    let db = Db::sqlite();
    let (alice, g) = setup(&db).await;
    plant(
        db.dir(),
        "CREATE TABLE doomed (user_id INTEGER REFERENCES users (id) DEFERRABLE INITIALLY DEFERRED);
         CREATE TRIGGER boom AFTER INSERT ON messages WHEN NEW.body = 'boom'
         BEGIN INSERT INTO doomed VALUES (-1); END;",
    );
    check_failed_batch(&db, alice, g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_last_seq_column_does_not_reuse_seqs() {
    let db = Db::sqlite();
    let (alice, g) = setup(&db).await;
    plant(
        db.dir(),
        "UPDATE conversations SET last_seq = 0, last_ts = 0",
    );
    let h = db.open();
    let (m, _) = h
        .store
        .append_committed(text(alice, g, "next", "x"))
        .await
        .unwrap();
    assert_eq!(m.seq, Seq(3), "continues after the stored messages");
    assert_eq!(
        h.store.last_seq(g).await.unwrap(),
        Seq(3),
        "and repairs the column"
    );
}

/// A statement failing in the middle of a PostgreSQL batch aborts the transaction: the whole
/// batch fails, nothing of it is stored, and the seqs it would have used are given again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failed_statement_fails_the_whole_batch() {
    let Some(db) = Db::postgres() else { return };
    let (alice, g) = setup(&db).await;
    db.execute(
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'boom'; END $$;
         CREATE TRIGGER boom AFTER INSERT ON messages FOR EACH ROW
         WHEN (NEW.body = 'boom') EXECUTE FUNCTION boom();",
    );
    check_failed_batch(&db, alice, g).await;
}

/// A deferred constraint makes PostgreSQL's COMMIT itself fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failed_commit_fails_the_whole_batch() {
    let Some(db) = Db::postgres() else { return };
    let (alice, g) = setup(&db).await;
    db.execute(
        "CREATE TABLE doomed (user_id BIGINT REFERENCES users (id) DEFERRABLE INITIALLY DEFERRED);
         CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO doomed VALUES (-1); RETURN NULL; END $$;
         CREATE TRIGGER boom AFTER INSERT ON messages FOR EACH ROW
         WHEN (NEW.body = 'boom') EXECUTE FUNCTION boom();",
    );
    check_failed_batch(&db, alice, g).await;
}
