//! PostgreSQL backend of winchester-rs.
//!
//! Layout:
//! - [`PgStorage`]: a [`Storage`](winchester_storage::Storage): each module
//!   implements one part of it in PostgreSQL's dialect; here, the connection
//!   setup and the LISTEN wake-ups ([`Wakeups`]).
//! - `ingest`: saving events and stream memberships (set-based, one
//!   transaction per batch; [`IngestStore`](winchester_storage::IngestStore)).
//! - `dialect`: PostgreSQL as a [`SqlBackend`](winchester_storage::sql::SqlBackend):
//!   how statements run and bind, the SQL that is PostgreSQL's own, and the
//!   set-based claims, finishes and lease renewals; the statements both
//!   backends share (and with them the stream, event, query and version
//!   stores) are [`winchester_storage::sql`]'s.
//! - [`partitions`]: the daily partitions of events and memberships: created
//!   ahead, trimmed by dropping whole days.
//! - `rows`: how this backend reads typed columns
//!   ([`Columns`](winchester_storage::decode::Columns)); the decoders are the storage crate's.
//! - `errors`: mapping sqlx errors to [`StorageError`](winchester_storage::StorageError), and which mean the server is unavailable ([`is_unavailable`]).
//! - [`migrate`]: the embedded migrations (`migrations/` at the workspace root) and
//!   the dialect of their bookkeeping.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// Runs `$body` (the contents of an async block returning `Result<$t>`, with
/// `$c: &mut PgConnection`) on a [`Conn`]: a pooled connection, or behind a
/// transaction pooler a transaction of its own, committed when the body
/// succeeded.
macro_rules! on_conn {
    ($db:expr, |$c:ident| -> $t:ty $body:block) => {{
        let mut conn = $crate::Conn::get($db).await?;
        let $c = conn.conn();
        let r: $crate::Result<$t> = async move $body.await;
        conn.done(r).await
    }};
}

pub mod connect;
mod dialect;
mod errors;
mod ingest;
pub mod migrate;
pub mod partitions;
mod rows;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool};
use std::sync::Arc;
use std::time::Duration;
use winchester_core::config::Pooler;
use winchester_storage::sql::PlanLog;
use winchester_storage::{PollingListener, ReadyListener, Result, Wakeups};

pub use connect::{PgOptions, ACQUIRE_TIMEOUT};
pub use errors::{is_unavailable, storage_error};
pub use migrate::MIGRATOR;
pub use rows::Pg;

/// The NOTIFY channel an ingester signals when a stream becomes ready to fire.
pub const READY_CHANNEL: &str = "winchester_ready";

/// The NOTIFY channel database triggers signal on new events (`e`) and logged
/// stream transitions (`t`) (migration 0002).
pub const CHANGES_CHANNEL: &str = "winchester_changes";

/// How often a worker or a tail polls where LISTEN is off (behind a
/// transaction pooler).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The connection a statement runs on outside an explicit transaction.
/// Behind a transaction pooler it is a transaction of its own: sqlx answers
/// its Parse with a Sync before the Bind and Execute, and only an open
/// transaction keeps the pooler from handing the server connection (and the
/// unnamed statement on it) to another client in between.
pub(crate) enum Conn {
    Direct(sqlx::pool::PoolConnection<sqlx::Postgres>),
    Tx(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Conn {
    pub(crate) async fn get(db: &PgStorage) -> Result<Conn> {
        Ok(if db.named() {
            Conn::Direct(db.pool.acquire().await.map_err(storage_error)?)
        } else {
            Conn::Tx(db.pool.begin().await.map_err(storage_error)?)
        })
    }

    pub(crate) fn conn(&mut self) -> &mut sqlx::PgConnection {
        match self {
            Conn::Direct(c) => c,
            Conn::Tx(t) => t,
        }
    }

    /// Commits a transaction whose statement succeeded; passes `r` on.
    pub(crate) async fn done<T>(self, r: Result<T>) -> Result<T> {
        match (self, r) {
            (Conn::Tx(t), Ok(v)) => {
                t.commit().await.map_err(storage_error)?;
                Ok(v)
            }
            (_, r) => r,
        }
    }
}

/// Storage on a PostgreSQL connection pool.
#[derive(Debug, Clone)]
pub struct PgStorage {
    pool: PgPool,
    pooler: Pooler,
    /// The event days known to have partitions.
    days: Arc<partitions::Days>,
    /// Where the plans of read statements are recorded, if anywhere.
    plans: Option<Arc<PlanLog>>,
}

impl PgStorage {
    /// Connects a pool of at most `max_connections` with `options` (and its
    /// pooler: with [`Pooler::Transaction`], no session state is used: no
    /// statement cache, unnamed statements, no LISTEN).
    pub async fn connect(options: &PgOptions, max_connections: u32) -> std::result::Result<PgStorage, sqlx::Error> {
        let pool = options.pool(max_connections).await?;
        Ok(PgStorage { pool, pooler: options.pooler(), days: Arc::default(), plans: None })
    }

    /// Like [`PgStorage::connect`], but connects only when first used, so a
    /// server that is down now (a hot standby for reads) does not stop the
    /// program; a call waits at most `acquire_timeout` for a connection.
    pub fn connect_lazy(options: &PgOptions, max_connections: u32, acquire_timeout: Duration) -> PgStorage {
        let pool = options.lazy_pool(max_connections, acquire_timeout);
        PgStorage { pool, pooler: options.pooler(), days: Arc::default(), plans: None }
    }

    /// Uses an existing pool (direct connections).
    pub fn from_pool(pool: PgPool) -> PgStorage {
        PgStorage { pool, pooler: Pooler::None, days: Arc::default(), plans: None }
    }

    /// The same storage, running every read statement once more under
    /// `EXPLAIN (ANALYZE)` before it runs and recording the plan, with the
    /// rows each step really read, in `log` (for the plan tests and for
    /// diagnosis; each read costs twice).
    pub fn with_plan_log(self, log: Arc<PlanLog>) -> PgStorage {
        PgStorage { plans: Some(log), ..self }
    }

    /// The pool (for migrations and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pooler this storage was connected through.
    pub fn pooler(&self) -> Pooler {
        self.pooler
    }

    /// Whether statements may be named (prepared once per connection and
    /// reused): not behind a transaction pooler (see [`connect`]).
    pub(crate) fn named(&self) -> bool {
        connect::named_statements(self.pooler)
    }
}

/// On a primary the WAL position written so far; on a standby (in
/// recovery) the position replayed, 0 before it has replayed any.
#[async_trait]
impl winchester_storage::replica::WalPosition for PgStorage {
    async fn wal_position(&self) -> Result<u64> {
        let named = self.named();
        on_conn!(self, |c| -> u64 {
            let position = sqlx::query_scalar!(
                r#"SELECT (CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_replay_lsn(), '0/0')
                           ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint AS "position!""#
            )
            .persistent(named)
            .fetch_one(&mut *c)
            .await
            .map_err(storage_error)?;
            Ok(u64::try_from(position).unwrap_or(0))
        })
    }
}

#[async_trait]
impl Wakeups for PgStorage {
    async fn ready_listener(&self) -> Result<Box<dyn ReadyListener>> {
        self.listener(READY_CHANNEL).await
    }

    async fn change_listener(&self) -> Result<Box<dyn ReadyListener>> {
        self.listener(CHANGES_CHANNEL).await
    }
}

impl PgStorage {
    async fn listener(&self, channel: &str) -> Result<Box<dyn ReadyListener>> {
        if self.pooler == Pooler::Transaction {
            // LISTEN needs a session of its own; a transaction pooler has none.
            return Ok(Box::new(PollingListener(POLL_INTERVAL)));
        }
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(storage_error)?;
        listener.listen(channel).await.map_err(storage_error)?;
        Ok(Box::new(PgReadyListener { listener }))
    }
}

struct PgReadyListener {
    listener: PgListener,
}

#[async_trait]
impl ReadyListener for PgReadyListener {
    async fn wait(&mut self, timeout: Duration) -> Result<bool> {
        match tokio::time::timeout(timeout, self.listener.recv()).await {
            Err(_) => Ok(false),
            Ok(Ok(_)) => {
                // Drain notifications already buffered so one burst wakes us once.
                while self.listener.next_buffered().is_some() {}
                Ok(true)
            }
            Ok(Err(e)) => Err(storage_error(e)),
        }
    }
}
