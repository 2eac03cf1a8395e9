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
//! - [`SqliteStorage`]: the [`Storage`](winchester_storage::Storage) implementation.
//! - `ingest`, `streams`, `events`, `query`: the queries, as in the PostgreSQL backend.
//! - `rows`: decoding rows and times (INTEGER microseconds since the epoch).
//! - [`migrate`]: this backend's migrations (`crates/winchester-sqlite/migrations`)
//!   and the dialect of their bookkeeping.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod events;
mod ingest;
pub mod migrate;
mod query;
mod rows;
mod streams;
mod versions;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;
use winchester_core::{DefinitionVersion, Event};
use winchester_storage::{
    Action, EventFilter, EventPlan, Finish, FinishOutcome, IngestOutcome, PollingListener, ReadyListener, Result,
    Storage, StorageError, StoredEvent, Stream, StreamCount, StreamFilter, StreamState, Transition, TriggerVersion,
};

pub use migrate::MIGRATOR;

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

/// Storage in one SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    pool: SqlitePool,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or
    /// `sqlite::memory:`) in WAL mode with a generous busy timeout.
    pub async fn connect(url: &str, max_connections: u32) -> std::result::Result<SqliteStorage, sqlx::Error> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // 32 MiB of page cache per connection (the default is 2 MiB): a
            // batch's index pages stay in memory from one transaction to the
            // next instead of being read back from the OS each time.
            .pragma("cache_size", "-32768")
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new().max_connections(max_connections.max(1)).connect_with(opts).await?;
        Ok(SqliteStorage { pool })
    }

    /// The pool (for migrations and tools).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn ingest(&self, batch: &[EventPlan], now: DateTime<Utc>) -> Result<Vec<IngestOutcome>> {
        ingest::ingest(&self.pool, batch, now).await
    }

    async fn ready_streams(&self, action: Action, now: DateTime<Utc>, limit: u32) -> Result<Vec<Stream>> {
        streams::ready(&self.pool, action, now, limit).await
    }

    async fn claim(
        &self,
        stream: &Stream,
        action: Action,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Stream>> {
        streams::claim(&self.pool, stream, action, now, lease).await
    }

    async fn stream_events(
        &self,
        stream_id: i64,
        after: Option<(DateTime<Utc>, i64)>,
        limit: u32,
    ) -> Result<(Vec<Event>, Option<(DateTime<Utc>, i64)>)> {
        events::stream_events(&self.pool, stream_id, after, limit).await
    }

    async fn claim_ready_among(
        &self,
        action: Action,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        triggers: winchester_storage::TriggerScope<'_>,
    ) -> Result<Vec<winchester_storage::Claimed>> {
        streams::claim_ready(&self.pool, action, now, lease_until, limit, triggers).await
    }

    async fn load_events(&self, stream_ids: &[i64]) -> Result<Vec<(i64, Event)>> {
        events::load_events(&self.pool, stream_ids).await
    }

    async fn finish_many(&self, runs: &[(&Stream, Finish<'_>)], now: DateTime<Utc>) -> Result<Vec<FinishOutcome>> {
        streams::finish_many(&self.pool, runs, now).await
    }

    async fn set_state(&self, id: i64, serial: i32, to: StreamState) -> Result<Option<Stream>> {
        streams::set_state(&self.pool, id, serial, to).await
    }

    async fn renew_leases(&self, held: &[(i64, i32)], until: DateTime<Utc>) -> Result<Vec<i64>> {
        streams::renew_leases(&self.pool, held, until).await
    }

    async fn list_streams(&self, filter: &StreamFilter) -> Result<Vec<Stream>> {
        query::list_streams(&self.pool, filter).await
    }

    async fn get_stream(&self, id: i64) -> Result<Option<Stream>> {
        streams::get(&self.pool, id).await
    }

    async fn purge_stream(&self, id: i64) -> Result<bool> {
        streams::purge(&self.pool, id).await
    }

    async fn trim_events(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<u64> {
        events::trim(&self.pool, cutoff, limit).await
    }

    async fn next_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        streams::next_due(&self.pool, now).await
    }

    async fn latest_event_time(&self) -> Result<Option<DateTime<Utc>>> {
        events::latest_time(&self.pool).await
    }

    async fn ready_listener(&self) -> Result<Box<dyn ReadyListener>> {
        Ok(Box::new(PollingListener(POLL_INTERVAL)))
    }

    async fn count_streams(&self, filter: &StreamFilter) -> Result<u64> {
        query::count_streams(&self.pool, filter).await
    }

    async fn stream_counts(&self) -> Result<Vec<StreamCount>> {
        query::stream_counts(&self.pool).await
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>> {
        query::list_events(&self.pool, filter).await
    }

    async fn count_events(&self, filter: &EventFilter) -> Result<u64> {
        query::count_events(&self.pool, filter).await
    }

    async fn get_event(&self, message_id: &str) -> Result<Option<StoredEvent>> {
        query::get_event(&self.pool, message_id).await
    }

    async fn event_streams(&self, event_id: i64) -> Result<Vec<i64>> {
        query::event_streams(&self.pool, event_id).await
    }

    async fn events_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<StoredEvent>> {
        query::events_since(&self.pool, after, also, limit).await
    }

    async fn transitions_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<Transition>> {
        query::transitions_since(&self.pool, after, also, limit).await
    }

    async fn transitions_from(&self, since: DateTime<Utc>, limit: u32) -> Result<Vec<Transition>> {
        query::transitions_from(&self.pool, since, limit).await
    }

    async fn latest_ids(&self) -> Result<(i64, i64)> {
        query::latest_ids(&self.pool).await
    }

    async fn change_listener(&self) -> Result<Box<dyn ReadyListener>> {
        Ok(Box::new(PollingListener(POLL_INTERVAL)))
    }

    async fn record_versions(&self, versions: &[DefinitionVersion], now: DateTime<Utc>) -> Result<()> {
        versions::record(&self.pool, versions, now).await
    }

    async fn trigger_version(&self, trigger: &str, version: &str) -> Result<Option<TriggerVersion>> {
        versions::get(&self.pool, trigger, version).await
    }

    async fn trigger_versions(&self, trigger: Option<&str>) -> Result<Vec<TriggerVersion>> {
        versions::list(&self.pool, trigger).await
    }
}
