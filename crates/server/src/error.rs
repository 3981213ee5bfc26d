//! The server's error type.

use crate::config::ConfigError;

/// Why [`crate::run`] could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration failed [`crate::Config::validate`].
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}
