//! How a store is opened.

use std::path::PathBuf;

/// How hard a commit tries to reach the disk before its writes are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is fsynced (`PRAGMA synchronous = FULL`): an acknowledged write survives a
    /// power loss.
    #[default]
    Full,
    /// The WAL is fsynced only at checkpoints (`PRAGMA synchronous = NORMAL`): a process crash
    /// loses nothing, but a power loss or OS crash may lose the last commits.
    Normal,
}

/// Where the database lives and how the store runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The data directory; created if missing. The database is `<dir>/chatgroup.db`.
    pub dir: PathBuf,
    /// What a commit guarantees.
    pub durability: Durability,
    /// Read-only connections for concurrent reads (at least 1 is used).
    pub readers: usize,
    /// The most writes committed in one transaction (at least 1 is used).
    pub max_batch: usize,
    /// How many writes may wait for the writer before callers wait for room (at least 1 is
    /// used).
    pub queue_depth: usize,
}

impl StoreConfig {
    /// The defaults: [`Durability::Full`], 4 readers, batches of up to 1024, a queue of 4096.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            durability: Durability::Full,
            readers: 4,
            max_batch: 1024,
            queue_depth: 4096,
        }
    }

    /// The database file inside [`StoreConfig::dir`].
    #[must_use]
    pub fn db_path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }
}

/// The database's file name inside the data directory.
pub(crate) const DB_FILE: &str = "chatgroup.db";
