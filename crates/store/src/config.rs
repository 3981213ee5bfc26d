//! How a store is opened.

use std::path::PathBuf;

/// How hard a commit tries to reach the disk before its writes are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is fsynced (`PRAGMA synchronous = FULL`; on PostgreSQL
    /// `synchronous_commit = on`): an acknowledged write survives a power loss.
    #[default]
    Full,
    /// The WAL is fsynced only at checkpoints (`PRAGMA synchronous = NORMAL`): a process crash
    /// loses nothing, but a power loss or OS crash may lose the last commits. On PostgreSQL,
    /// `synchronous_commit = off`: a crash of the database server may lose the last commits
    /// (never corrupt it), a crash of chatgroup loses nothing.
    Normal,
}

/// Which database the store runs on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// `<dir>/chatgroup.db`, one process at a time (the data directory is locked).
    #[default]
    Sqlite,
    /// A PostgreSQL database that several chatgroup nodes may share.
    Postgres(DatabaseUrl),
}

impl std::fmt::Display for Backend {
    /// `sqlite`, or `postgres` and the URL without its password: fit for a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Sqlite => f.write_str("sqlite"),
            Backend::Postgres(url) => write!(f, "postgres {url}"),
        }
    }
}

/// A `postgres://` connection URL (or a `key=value` connection string). Its `Debug` and
/// `Display` forms hide the password, so a config can be logged whole.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL as given; it is parsed when the store opens.
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The URL itself, password included: for the driver only, never for a log.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password (if any) replaced by `***`.
    #[must_use]
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Hides the password of a URL (`scheme://user:password@host/…`) or of a key=value
/// connection string (`… password=secret …`).
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        // The userinfo ends at the last `@` before the path: a password may contain `@`s
        // only percent-encoded, but be generous and take the last one.
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***{}", &rest[at..]);
            }
        }
        // A password may also come as a query parameter.
        return match url.find("password=") {
            Some(i) => redact_value(url, i + "password=".len(), '&'),
            None => url.to_owned(),
        };
    }
    match url.find("password=") {
        Some(i) => redact_value(url, i + "password=".len(), ' '),
        None => url.to_owned(),
    }
}

/// `s` with the value starting at `start` (up to `end` or the end) replaced by `***`.
fn redact_value(s: &str, start: usize, end: char) -> String {
    let stop = s[start..].find(end).map_or(s.len(), |n| start + n);
    format!("{}***{}", &s[..start], &s[stop..])
}

/// Where the database lives and how the store runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The data directory; created if missing. With [`Backend::Sqlite`] the database is
    /// `<dir>/chatgroup.db`; with [`Backend::Postgres`] the store itself keeps nothing there
    /// (the server keeps files' bytes there either way).
    pub dir: PathBuf,
    /// Which database: SQLite in `dir` (the default) or PostgreSQL.
    pub backend: Backend,
    /// What a commit guarantees.
    pub durability: Durability,
    /// Read-only connections for concurrent reads (at least 1 is used); on PostgreSQL, the
    /// size of the read pool.
    pub readers: usize,
    /// The most writes committed in one transaction (at least 1 is used).
    pub max_batch: usize,
    /// How many writes may wait for the writer before callers wait for room (at least 1 is
    /// used).
    pub queue_depth: usize,
}

impl StoreConfig {
    /// The defaults: SQLite in `dir`, [`Durability::Full`], 4 readers, batches of up to
    /// 1024, a queue of 4096.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            backend: Backend::Sqlite,
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

#[cfg(test)]
mod tests {
    use super::DatabaseUrl;

    #[test]
    fn passwords_never_show() {
        let cases = [
            (
                "postgres://chat:s3cr%40t@db.local:5432/chat",
                "postgres://chat:***@db.local:5432/chat",
            ),
            (
                "postgresql://chat@10.0.0.1/chat",
                "postgresql://chat@10.0.0.1/chat",
            ),
            (
                "postgres://db/chat?user=chat&password=hunter2&sslmode=require",
                "postgres://db/chat?user=chat&password=***&sslmode=require",
            ),
            (
                "host=db user=chat password=hunter2 dbname=chat",
                "host=db user=chat password=*** dbname=chat",
            ),
        ];
        for (url, shown) in cases {
            let url = DatabaseUrl::new(url);
            assert_eq!(
                super::Backend::Postgres(url.clone()).to_string(),
                format!("postgres {shown}")
            );
            assert_eq!(url.to_string(), shown);
            assert!(!format!("{url:?}").contains("hunter2"));
            assert!(!format!("{url:?}").contains("s3cr"));
        }
    }
}
