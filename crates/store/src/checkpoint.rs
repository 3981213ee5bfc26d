//! The checkpointer: a thread of its own that folds the WAL back into the database file.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold, so the
//! writer (and every ack waiting on that batch) stalled while tens of MiB were copied and,
//! with `synchronous=FULL`, synced: the tail of the ack latency was checkpoints. Here the
//! writer only nudges this thread after each commit; a PASSIVE checkpoint runs beside the
//! writer's next batches (WAL mode lets a checkpoint and a writer work at once) and never
//! waits for it. Should the WAL still outgrow [`HARD_LIMIT_PAGES`] (a checkpoint that cannot
//! catch up with a sustained flood), one RESTART checkpoint waits for the writer to pause
//! and lets the WAL start over, so the file cannot grow without bound.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::config::Durability;
use crate::error::Res;
use crate::schema;

/// WAL pages at which the checkpointer insists on restarting the WAL (about 256 MiB).
const HARD_LIMIT_PAGES: i64 = 65_536;
/// At most one checkpoint this often: frequent checkpoints copy the same hot index pages
/// again and again (SQLite's default of one per 1,000 pages cost the writer an eighth of
/// its time), rare ones let the WAL grow.
const EVERY: Duration = Duration::from_millis(250);

/// Opens the checkpointer's connection and starts its thread. It ends when every sender of
/// `nudges` is gone (the writer sends one after each commit).
pub(crate) fn start(
    path: PathBuf,
    durability: Durability,
    nudges: Receiver<()>,
) -> Res<std::thread::JoinHandle<()>> {
    let conn = schema::open_checkpointer(&path, durability)?;
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || run(&conn, &nudges))
        .map_err(|e| crate::StoreError::Db(format!("cannot start the checkpointer: {e}")).into())
}

fn run(conn: &Connection, nudges: &Receiver<()>) {
    let mut last = Instant::now();
    loop {
        // Wait for a commit, then for the rest of the interval, taking every nudge that
        // arrives meanwhile: one checkpoint serves them all.
        if nudges.recv().is_err() {
            return;
        }
        let due = last + EVERY;
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            match nudges.recv_timeout(due - now) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        while nudges.try_recv().is_ok() {}
        last = Instant::now();
        if let Ok(log) = checkpoint(conn, "PASSIVE") {
            if log >= HARD_LIMIT_PAGES {
                let _ = checkpoint(conn, "RESTART");
            }
        }
    }
}

/// Runs one checkpoint; returns the WAL's size in pages.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(1))
}
