//! The server's error type.

use crate::config::ConfigError;

/// Why [`crate::run`] could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration failed [`crate::Config::validate`].
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The database could not be opened (unwritable directory, newer schema, corruption).
    #[error("opening the database: {0}")]
    Store(#[from] chatgroup_store::StoreError),
    /// Startup failed for another reason (no randomness for password hashing, …).
    #[error("{0}")]
    Startup(&'static str),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}
