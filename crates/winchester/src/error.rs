//! Engine errors.

use winchester_core::{ConfigErrors, EventError};
use winchester_storage::StorageError;

/// An engine failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The event is invalid.
    #[error(transparent)]
    Event(#[from] EventError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
}

impl winchester_storage::Retryable for EngineError {
    /// Only storage errors may pass: a lost connection, a restarting server, a transient conflict.
    fn is_retryable(&self) -> bool {
        matches!(self, EngineError::Storage(e) if e.is_retryable())
    }
}
