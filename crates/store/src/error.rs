//! The store's one error type, and the crate-private plumbing that turns SQLite's and
//! PostgreSQL's errors into it without letting either driver show in the public API.

use chatgroup_protocol::ErrorCode;

/// Why a store operation failed.
///
/// The `Display` text is for logs and is not part of the API; branch on the variant or on
/// [`StoreError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The named thing (`"user"`, `"conversation"`, `"member"`) does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The acting user is not a member of the conversation.
    #[error("not a member of the conversation")]
    NotMember,
    /// Only the group's owner may do this.
    #[error("only the group's owner may do this")]
    NotOwner,
    /// Another user already has this username (compared case-insensitively).
    #[error("username taken")]
    UsernameTaken,
    /// The request breaks a rule; the text says which.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The store is closed (or its writer has stopped): nothing more can be written.
    #[error("store closed")]
    Closed,
    /// The database failed (I/O, corruption, a schema from a newer build, a bug).
    #[error("database: {0}")]
    Db(String),
}

impl StoreError {
    /// The wire error code a client is told.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        // Exhaustive on purpose: a new variant must choose its wire code here.
        match self {
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::NotMember => ErrorCode::NotMember,
            StoreError::NotOwner => ErrorCode::NotOwner,
            StoreError::UsernameTaken => ErrorCode::UsernameTaken,
            StoreError::Invalid(_) => ErrorCode::Invalid,
            StoreError::Closed => ErrorCode::Unavailable,
            StoreError::Db(_) => ErrorCode::Internal,
        }
    }
}

/// An operation's failure inside the crate: a refusal the caller should see as is, or a raw
/// driver error that becomes [`StoreError::Db`] at the edge. Keeping them apart lets `?`
/// work on all without a public `From<rusqlite::Error>` impl, which would leak the backend,
/// and lets the PostgreSQL writer tell a conflict worth retrying from a real failure.
#[derive(Debug)]
pub(crate) enum Fail {
    Store(StoreError),
    Sql(rusqlite::Error),
    Pg(tokio_postgres::Error),
    /// Another node committed a row this attempt had counted on not existing (PostgreSQL's
    /// writer only): run the attempt again.
    Conflict,
    /// PostgreSQL's writer lost its connection before it sent `COMMIT`: nothing of the
    /// attempt was committed, so it can run again on a new connection.
    Lost(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl Fail {
    /// True for PostgreSQL errors that a concurrent transaction caused and that running the
    /// same transaction again can clear: a serialization failure, a deadlock, a unique
    /// violation from a row another node committed meanwhile, a [`Fail::Conflict`], or a
    /// connection lost before `COMMIT` ([`Fail::Lost`]).
    pub(crate) fn is_retryable(&self) -> bool {
        use tokio_postgres::error::SqlState;
        let e = match self {
            Fail::Pg(e) => e,
            Fail::Conflict | Fail::Lost(_) => return true,
            Fail::Store(_) | Fail::Sql(_) => return false,
        };
        e.code().is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::UNIQUE_VIOLATION
        })
    }
}

/// A PostgreSQL error as text: the server's message when there is one (the driver's own
/// `Display` says only "db error"). Never contains the connection's password: neither the
/// driver nor the server repeats it.
pub(crate) fn pg_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Store(e) => e,
            Fail::Sql(e) => StoreError::Db(e.to_string()),
            Fail::Pg(e) | Fail::Lost(e) => StoreError::Db(pg_text(&e)),
            Fail::Conflict => {
                StoreError::Db("the batch kept conflicting with other nodes' commits".into())
            }
        }
    }
}

/// The result type of the crate-private query functions.
pub(crate) type Res<T> = Result<T, Fail>;

/// True when `e` is a UNIQUE (or PRIMARY KEY) constraint violation.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error().map(|e| e.extended_code),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_is_unavailable_and_db_is_internal() {
        assert_eq!(StoreError::Closed.code(), ErrorCode::Unavailable);
        assert_eq!(StoreError::Db("x".into()).code(), ErrorCode::Internal);
        assert_eq!(StoreError::NotFound("user").to_string(), "user not found");
    }
}
