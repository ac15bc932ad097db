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
    /// The store is out of space (a full disk or quota, Redis at `maxmemory`);
    /// nothing was acknowledged. The detail is for the log only.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// The store file is damaged; the message names the file and what to do
    /// (returned when opening, so the server refuses to start).
    #[error("{0}")]
    Damaged(String),
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
            HubError::Storage(_) | HubError::Damaged(_) => ErrorCode::StorageUnavailable,
            HubError::StorageFull(_) => ErrorCode::StorageFull,
            HubError::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }

    /// The same error again, for answering every request of a failed group.
    pub fn duplicate(&self) -> HubError {
        match self {
            HubError::StorageFull(d) => HubError::StorageFull(d.clone()),
            HubError::Damaged(d) => HubError::Damaged(d.clone()),
            other => HubError::Storage(other.to_string()),
        }
    }

    /// A message safe to show a client (storage details stay in the log).
    pub fn client_message(&self) -> String {
        match self {
            HubError::Storage(_) | HubError::Damaged(_) => {
                "the store failed; nothing was acknowledged; retry".into()
            }
            HubError::StorageFull(_) => {
                "the store is out of space (disk full or memory limit); nothing was \
                 acknowledged; retry once space is freed"
                    .into()
            }
            other => other.to_string(),
        }
    }
}
