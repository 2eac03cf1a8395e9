//! The one place that classifies database errors.

use winchester_storage::StorageError;

/// Maps a sqlx error to a storage error: connection trouble
/// ([`is_unavailable`]) is `Unavailable`, deadlocks, serialization failures
/// and lost unique races are `Conflict` (both retryable); everything else is
/// `Database`.
pub fn storage_error(e: sqlx::Error) -> StorageError {
    if is_unavailable(&e) {
        return StorageError::Unavailable(Box::new(e));
    }
    match &e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // serialization_failure, deadlock_detected, unique_violation
            Some("40001") | Some("40P01") | Some("23505") => StorageError::Conflict(Box::new(e)),
            _ => StorageError::Database(Box::new(e)),
        },
        _ => StorageError::Database(Box::new(e)),
    }
}

/// Whether `e` says the server cannot be reached or cannot serve us now,
/// so that waiting may help: a broken or refused connection, an unknown
/// host, a server starting up, shutting down or in recovery, out of
/// connection slots, or a pool that timed out waiting for one. A bad
/// password, a missing database or a bad URL are not.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // admin_shutdown, crash_shutdown, cannot_connect_now (starting
            // up, shutting down, in recovery), too_many_connections, and the
            // connection exceptions (class 08)
            matches!(&*code, "57P01" | "57P02" | "57P03" | "53300") || code.starts_with("08")
        }),
        _ => false,
    }
}
