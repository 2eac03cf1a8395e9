//! The one place that classifies database errors.

use winchester_storage::StorageError;

/// Maps a sqlx error to a storage error: connection trouble is `Unavailable`,
/// deadlocks, serialization failures and lost unique races are `Conflict`
/// (both retryable); everything else is `Database`.
pub fn storage_error(e: sqlx::Error) -> StorageError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StorageError::Unavailable(Box::new(e)),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // serialization_failure, deadlock_detected, unique_violation
            Some("40001") | Some("40P01") | Some("23505") => StorageError::Conflict(Box::new(e)),
            // admin_shutdown, crash_shutdown, cannot_connect_now
            Some("57P01") | Some("57P02") | Some("57P03") => StorageError::Unavailable(Box::new(e)),
            _ => StorageError::Database(Box::new(e)),
        },
        _ => StorageError::Database(Box::new(e)),
    }
}
