//! The hub's error type. Transports map it to HTTP statuses and WebSocket frames in
//! one place each, through [`HubError::code`].

use jobwire_proto::{ErrorCode, InputError};

/// Why a hub or engine call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The input was refused (bad value, illegal transition, terminal job…).
    #[error("{}", .0.message)]
    Input(#[from] InputError),
    /// No such job.
    #[error("job not found")]
    NotFound,
    /// The caller's token does not allow this (scope or allow-list).
    #[error("not allowed by your token")]
    Forbidden,
    /// A different job with this id exists.
    #[error("a different job with this id already exists")]
    JobExists,
    /// The store failed; nothing was acknowledged. The detail is for the log only.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The engine is shutting down and takes no more writes.
    #[error("shutting down")]
    ShuttingDown,
}

impl HubError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::Input(e) => e.code,
            HubError::NotFound => ErrorCode::JobNotFound,
            HubError::JobExists => ErrorCode::JobExists,
            HubError::Forbidden => ErrorCode::Forbidden,
            HubError::Storage(_) => ErrorCode::StorageUnavailable,
            HubError::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }

    /// A message safe to show a client (storage details stay in the log).
    pub fn client_message(&self) -> String {
        match self {
            HubError::Storage(_) => "the store could not make the write durable; retry".into(),
            other => other.to_string(),
        }
    }
}
