//! Opening connections and migrating the schema.
//!
//! Migrations are SQL scripts applied in order, each in its own transaction together with the
//! bump of `PRAGMA user_version`, so a crash mid-migration leaves the previous version intact.
//! Never edit a released script: append a new one.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::error::Res;
use crate::{Durability, StoreError};

/// The schema, one script per version: `MIGRATIONS[i]` takes `user_version` from `i` to `i+1`.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    r"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL,
    -- Unicode-lowercased username: uniqueness, lookup and prefix search ignore case.
    username_key  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_username_key ON users (username_key);

-- Only the SHA-256 of a refresh token is stored; the token itself never reaches the disk.
CREATE TABLE refresh_tokens (
    hash       BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE conversations (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('group', 'direct')),
    -- Empty for direct chats: their name is the other member's username.
    name       TEXT NOT NULL,
    owner      INTEGER REFERENCES users (id),
    -- The two members of a direct chat, lower id first; NULL for groups.
    direct_lo  INTEGER,
    direct_hi  INTEGER,
    -- Written by the writer once per batch; always equal to max(messages.seq) once committed.
    last_seq   INTEGER NOT NULL DEFAULT 0,
    last_ts    INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX conversations_direct ON conversations (direct_lo, direct_hi)
    WHERE direct_lo IS NOT NULL;

-- The rowid orders members by when they (last) joined: ownership passes to the lowest.
CREATE TABLE members (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    user_id         INTEGER NOT NULL REFERENCES users (id),
    joined_at       INTEGER NOT NULL,
    -- The conversation's last seq when the user joined (kept for history cut-offs later;
    -- today a member sees the whole history).
    joined_seq      INTEGER NOT NULL,
    -- The read marker: messages after it count as unread.
    read_seq        INTEGER NOT NULL
);
CREATE UNIQUE INDEX members_conversation_user ON members (conversation_id, user_id);
CREATE INDEX members_user ON members (user_id, conversation_id);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    ts              INTEGER NOT NULL,
    sender          INTEGER,
    -- 0 text, 1 system, 2 file.
    kind            INTEGER NOT NULL,
    body            TEXT NOT NULL,
    -- NULL for system messages; NULLs never collide in the unique index below.
    local_id        TEXT,
    -- The SystemEvent as JSON, for system messages.
    event           TEXT
);
CREATE UNIQUE INDEX messages_conversation_seq ON messages (conversation_id, seq);
CREATE UNIQUE INDEX messages_sender_local_id ON messages (sender, local_id);
",
    // 2: delivery markers and last-seen times (receipts, presence); files.
    r"
-- Everything up to it reached one of the member's devices; never behind read_seq.
ALTER TABLE members ADD COLUMN delivered_seq INTEGER NOT NULL DEFAULT 0;
UPDATE members SET delivered_seq = read_seq;
-- When the user's last connection closed (NULL: never, or not since this column exists).
ALTER TABLE users ADD COLUMN last_seen INTEGER;

-- Uploads and the files they became. A row is an upload in progress until completed_at is
-- set, which happens in the transaction that posts its message. The bytes live outside the
-- database, under <data-dir>/files/ (see the server's chat::files).
CREATE TABLE files (
    id              INTEGER PRIMARY KEY,
    uploader        INTEGER NOT NULL REFERENCES users (id),
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    -- The client's id for the upload: starting it again resumes it; it becomes the file
    -- message's local_id.
    upload_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    mime            TEXT NOT NULL,
    size            INTEGER NOT NULL,
    -- Lowercase hex: as announced while uploading (NULL if not), as computed once completed.
    sha256          TEXT,
    created_at      INTEGER NOT NULL,
    completed_at    INTEGER
);
CREATE UNIQUE INDEX files_uploader_upload ON files (uploader, upload_id);
-- The daily quota sums a user's recent uploads.
CREATE INDEX files_uploader_created ON files (uploader, created_at);
-- The idle-upload sweep looks only at uploads still in progress.
CREATE INDEX files_in_progress ON files (created_at) WHERE completed_at IS NULL;
-- Set for file messages (kind 2).
ALTER TABLE messages ADD COLUMN file_id INTEGER REFERENCES files (id);
",
];

/// The schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens the read-write connection, switches it to WAL and migrates the schema.
pub(crate) fn open_writer(path: &Path, durability: Durability) -> Res<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // journal_mode answers with the mode it got; anything but "wal" (a read-only medium, a
    // VFS without shared memory) would silently lose the concurrency the readers rely on.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Db(format!("cannot use WAL (journal_mode is {mode})")).into());
    }
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 16 MiB of page cache (the default is 2): the hot index pages that every batch touches
    // (one per sender in the (sender, local_id) index) stay in memory as the database grows.
    conn.pragma_update(None, "cache_size", -16384)?;
    // No checkpoints inside the writer's COMMIT: they stalled every ack of the batch that
    // crossed the threshold. The checkpointer thread does them (see `checkpoint`).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // The writer's statements are few and hot; keep them all prepared.
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&conn)?;
    Ok(conn)
}

/// Opens the checkpointer's connection: read-write, same durability, never checkpointing by
/// itself.
pub(crate) fn open_checkpointer(path: &Path, durability: Durability) -> Res<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// Opens one read-only connection to an existing, migrated database.
pub(crate) fn open_reader(path: &Path) -> Res<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Applies every migration newer than the database's `user_version`.
pub(crate) fn migrate(conn: &Connection) -> Res<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > VERSION {
        return Err(StoreError::Db(format!(
            "the database has schema version {current}, newer than this build's {VERSION}: \
             it was written by a newer chatgroup; upgrade instead of downgrading"
        ))
        .into());
    }
    for (from, script) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let applied = conn
            .execute_batch(script)
            .and_then(|()| conn.pragma_update(None, "user_version", from as i64 + 1))
            .and_then(|()| conn.execute_batch("COMMIT"));
        if let Err(e) = applied {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}

/// Reads a meta value, or stores `fresh()` under `key` if there is none yet, so the value is
/// generated once, when the database is created, and stable after that.
pub(crate) fn meta_or_insert(
    conn: &Connection,
    key: &str,
    fresh: impl FnOnce() -> Res<Vec<u8>>,
) -> Res<Vec<u8>> {
    let existing: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?;
    if let Some(v) = existing {
        return Ok(v);
    }
    let value = fresh()?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)",
        rusqlite::params![key, value],
    )?;
    Ok(value)
}

/// `n` bytes from the operating system's random source.
pub(crate) fn random_bytes(n: usize) -> Res<Vec<u8>> {
    let mut buf = vec![0; n];
    getrandom::fill(&mut buf)
        .map_err(|e| StoreError::Db(format!("no randomness from the OS: {e}")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_newer_versions_are_refused() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        migrate(&conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        let Err(crate::error::Fail::Store(StoreError::Db(msg))) = migrate(&conn) else {
            panic!("a newer schema must be refused");
        };
        assert!(msg.contains("newer"), "{msg}");
    }

    #[test]
    fn meta_values_are_generated_once() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        let a = meta_or_insert(&conn, "k", || random_bytes(16)).unwrap();
        let b = meta_or_insert(&conn, "k", || random_bytes(16)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
    }
}
