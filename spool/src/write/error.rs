//! [`SpoolError`]: what went wrong in the spool.

/// What went wrong in the spool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// The configuration is not usable.
    #[error("spool configuration: {0}")]
    Config(String),
    /// Setting up the capture or staging directory failed.
    #[error("{0}")]
    Setup(String),
    /// Errors while running or closing (each names the file involved).
    #[error("spool errors: {}", .0.join("; "))]
    Background(Vec<String>),
}
