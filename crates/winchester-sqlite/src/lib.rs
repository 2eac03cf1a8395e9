//! SQLite backend of winchester-rs: the embedded default for one host.
//!
//! One database file in WAL mode, shared by any number of processes on the
//! host. Every write transaction starts with `BEGIN IMMEDIATE`, so writers take
//! the database's single write lock up front and never deadlock; the
//! compare-and-set rules and the "one open stream per key" unique index are the
//! same as on PostgreSQL. SQLite has no LISTEN/NOTIFY: an idle worker polls
//! every [`POLL_INTERVAL`].
//!
//! Layout:
//! - [`SqliteStorage`]: a [`Storage`](winchester_storage::Storage): each module
//!   ingest (`ingest`) and SQLite as a
//!   [`SqlBackend`](winchester_storage::sql::SqlBackend) (`dialect`: how
//!   statements run and bind, the SQL that is SQLite's own, claims, finishes
//!   and lease renewals); the statements both backends share are
//!   [`winchester_storage::sql`]'s. Here, the connection setup and the polling
//!   wake-ups ([`Wakeups`]).
//! - `rows`: how this backend stores typed columns (times as INTEGER
//!   microseconds since the epoch, JSON as text;
//!   [`Columns`](winchester_storage::decode::Columns)); the decoders are the storage crate's.
//! - [`checkpointer`]: copies the WAL back into the database file in the
//!   background, so that writers' commits do not.
//! - [`migrate`]: this backend's migrations (`crates/winchester-sqlite/migrations`)
//!   and the dialect of their bookkeeping.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod checkpointer;
mod dialect;
mod ingest;
pub mod migrate;
mod rows;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use winchester_storage::sql::PlanLog;
use winchester_storage::{PollingListener, ReadyListener, Result, StorageError, Wakeups};

pub use migrate::MIGRATOR;
pub use rows::Lite;

/// How often an idle worker looks for ready streams (there is no NOTIFY).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Maps a sqlx error to a storage error: busy/locked databases and I/O are
/// retryable, constraint races are conflicts, anything else is fatal.
pub fn storage_error(e: sqlx::Error) -> StorageError {
    match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            StorageError::Unavailable(Box::new(e))
        }
        sqlx::Error::Database(db) => {
            // Extended result codes; the low byte is the primary code.
            let code: i64 = db.code().and_then(|c| c.parse().ok()).unwrap_or(0);
            match (code & 0xff, code) {
                // SQLITE_BUSY, SQLITE_LOCKED: another process holds the lock.
                (5, _) | (6, _) => StorageError::Conflict(Box::new(e)),
                // SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY: a lost race.
                (_, 2067) | (_, 1555) => StorageError::Conflict(Box::new(e)),
                _ => StorageError::Database(Box::new(e)),
            }
        }
        _ => StorageError::Database(Box::new(e)),
    }
}

/// Settings every connection gets besides WAL, `synchronous = NORMAL` and
/// foreign keys (the bench's bulk-insert limit uses them too); the background
/// [`checkpointer`] normally copies the WAL back long before the automatic
/// checkpoint's threshold:
/// - `cache_size`: 32 MiB of page cache (the default is 2 MiB), so a batch's
///   index pages stay in memory from one transaction to the next;
/// - `temp_store = memory`: a multi-row statement's rollback journal stays in
///   memory instead of spilling to a temporary file (it doubled the writes);
/// - `wal_autocheckpoint`: 16,384 pages (128 MiB of WAL at [`PAGE_SIZE`])
///   instead of 1,000, so pages that every batch changes (indexes) are copied
///   back once per many batches rather than every other one, and the
///   background checkpoint, not a writer's commit, does the copying: at full
///   batched speed the WAL grows by about 100 MiB a second. The WAL file
///   keeps the largest size it reached (up to about this bound, more while a
///   long read holds a checkpoint back).
pub const TUNING: &[(&str, &str)] =
    &[("cache_size", "-32768"), ("temp_store", "memory"), ("wal_autocheckpoint", "16384")];

/// The page size of a database this backend creates (SQLite's default is
/// 4 KiB). A commit writes every page it changed to the WAL, two system calls
/// each, and a batch's inserts land all over the random-keyed indexes: with
/// twice the page, a batch changes about half as many pages. With checkpoints
/// every 100 ms that halved the commits' time; with the present checkpoint
/// settings batched ingest is about as fast on 4 KiB pages, at 20,000 and at
/// 100,000 events, and 8 KiB was kept as the no slower choice. A database
/// created before keeps its page size (see docs/operations.md to convert one).
pub const PAGE_SIZE: u32 = 8192;

/// Storage in one SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    pool: SqlitePool,
    /// The connection [`IngestStore::ingest`](winchester_storage::IngestStore::ingest)
    /// writes through: foreign keys unchecked (see the `ingest` module); the pool
    /// itself for an in-memory database.
    ingest: SqlitePool,
    /// Held by every clone; the background checkpointer stops when the last
    /// one is dropped.
    _alive: Arc<()>,
    /// Where the plans of read statements are recorded, if anywhere.
    plans: Option<Arc<PlanLog>>,
}

impl SqliteStorage {
    /// The same storage, recording the plan of every read statement
    /// (`EXPLAIN QUERY PLAN`: one line per step) in `log` before it runs (for
    /// the plan tests and for diagnosis).
    pub fn with_plan_log(self, log: Arc<PlanLog>) -> SqliteStorage {
        SqliteStorage { plans: Some(log), ..self }
    }

    /// Opens (creating if needed) the database at `url` (`sqlite://path` or
    /// `sqlite::memory:`) in WAL mode with a generous busy timeout.
    pub async fn connect(url: &str, max_connections: u32) -> std::result::Result<SqliteStorage, sqlx::Error> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .page_size(PAGE_SIZE)
            .busy_timeout(Duration::from_secs(30));
        let opts = TUNING.iter().fold(opts, |opts, (name, value)| opts.pragma(*name, *value));
        let pool = SqlitePoolOptions::new().max_connections(max_connections.max(1)).connect_with(opts.clone()).await?;
        let alive = Arc::new(());
        let ingest = if url.contains(":memory:") || url.contains("mode=memory") {
            pool.clone()
        } else {
            // Writers take turns anyway (`BEGIN IMMEDIATE`): one connection.
            let ingest_opts = opts.clone().foreign_keys(false);
            let ingest = SqlitePoolOptions::new().max_connections(1).connect_with(ingest_opts).await?;
            checkpointer::spawn(opts, Arc::downgrade(&alive));
            ingest
        };
        Ok(SqliteStorage { pool, ingest, _alive: alive, plans: None })
    }

    /// The pool (for migrations and tools).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// No LISTEN/NOTIFY: an idle worker or a tail polls.
#[async_trait]
impl Wakeups for SqliteStorage {
    async fn ready_listener(&self) -> Result<Box<dyn ReadyListener>> {
        Ok(Box::new(PollingListener(POLL_INTERVAL)))
    }

    async fn change_listener(&self) -> Result<Box<dyn ReadyListener>> {
        Ok(Box::new(PollingListener(POLL_INTERVAL)))
    }
}
