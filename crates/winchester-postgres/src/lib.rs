//! PostgreSQL backend of winchester-rs.
//!
//! Layout:
//! - [`PgStorage`]: a [`Storage`](winchester_storage::Storage): each module
//!   implements one part of it in PostgreSQL's dialect; here, the connection
//!   setup and the LISTEN wake-ups ([`Wakeups`]).
//! - `ingest`: saving events and stream memberships (set-based, one
//!   transaction per batch; [`IngestStore`](winchester_storage::IngestStore)).
//! - `streams`: stream queries and compare-and-set state changes
//!   ([`StreamStore`](winchester_storage::StreamStore)).
//! - `events`: reading events ([`EventStore`](winchester_storage::EventStore));
//!   trimming is [`partitions`]'s.
//! - [`partitions`]: the daily partitions of events and memberships: created
//!   ahead, trimmed by dropping whole days.
//! - `query`: the operations queries: filters, counts, the transition log
//!   ([`QueryStore`](winchester_storage::QueryStore)).
//! - `versions`: recorded trigger definition versions
//!   ([`VersionStore`](winchester_storage::VersionStore)).
//! - `rows`: how this backend reads typed columns
//!   ([`Columns`](winchester_storage::decode::Columns)); the decoders are the storage crate's.
//! - `errors`: mapping sqlx errors to [`StorageError`](winchester_storage::StorageError).
//! - [`migrate`]: the embedded migrations (`migrations/` at the workspace root) and
//!   the dialect of their bookkeeping.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// Runs `$body` (the contents of an async block returning `Result<$t>`, with
/// `$c: &mut PgConnection`) on a [`Conn`]: a pooled connection, or behind a
/// transaction pooler a transaction of its own, committed when the body
/// succeeded.
macro_rules! on_conn {
    ($pool:expr, |$c:ident| -> $t:ty $body:block) => {{
        let mut conn = $crate::Conn::get($pool).await?;
        let $c = conn.conn();
        let r: $crate::Result<$t> = async move $body.await;
        conn.done(r).await
    }};
}

mod errors;
mod events;
mod ingest;
pub mod migrate;
pub mod partitions;
mod query;
mod rows;
mod streams;
mod versions;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use winchester_core::config::Pooler;
use winchester_storage::{PollingListener, ReadyListener, Result, Wakeups};

pub use errors::storage_error;
pub use migrate::MIGRATOR;

/// The NOTIFY channel an ingester signals when a stream becomes ready to fire.
pub const READY_CHANNEL: &str = "winchester_ready";

/// The NOTIFY channel database triggers signal on new events (`e`) and logged
/// stream transitions (`t`) (migration 0002).
pub const CHANGES_CHANNEL: &str = "winchester_changes";

/// How often a worker or a tail polls where LISTEN is off (behind a
/// transaction pooler).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Whether this process reaches PostgreSQL through a transaction pooler,
/// which hands each transaction whichever server connection is free. Set for
/// the whole process by [`PgStorage::connect_with`] with
/// [`Pooler::Transaction`] (a program talks to one database). Then statements
/// are unnamed (another client's statement of the same name may exist on the
/// server connection, or ours may not) and every statement runs in a
/// transaction (see [`Conn`]).
static TRANSACTION_POOLER: AtomicBool = AtomicBool::new(false);

/// Whether statements may be named (prepared once per connection, reused).
pub(crate) fn named_statements() -> bool {
    !TRANSACTION_POOLER.load(Ordering::Relaxed)
}

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
    pub(crate) async fn get(pool: &PgPool) -> Result<Conn> {
        Ok(if named_statements() {
            Conn::Direct(pool.acquire().await.map_err(storage_error)?)
        } else {
            Conn::Tx(pool.begin().await.map_err(storage_error)?)
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
}

/// Longest wait for a pooled connection. While the server is down, every
/// call fails with [`winchester_storage::StorageError::Unavailable`] after this long (the
/// pool keeps trying to connect meanwhile): long enough to ride out a busy
/// pool, short enough for the API to answer 503 before its request timeout.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl PgStorage {
    /// Connects a pool of at most `max_connections` to `url`.
    pub async fn connect(url: &str, max_connections: u32) -> std::result::Result<PgStorage, sqlx::Error> {
        PgStorage::connect_with(url, max_connections, Pooler::None).await
    }

    /// Connects through `pooler`: with [`Pooler::Transaction`], no session
    /// state is used (no statement cache, unnamed statements, no LISTEN).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        pooler: Pooler,
    ) -> std::result::Result<PgStorage, sqlx::Error> {
        let mut options: PgConnectOptions = url.parse()?;
        if pooler == Pooler::Transaction {
            options = options.statement_cache_capacity(0);
            TRANSACTION_POOLER.store(true, Ordering::Relaxed);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(PgStorage { pool, pooler, days: Arc::default() })
    }

    /// Uses an existing pool (direct connections).
    pub fn from_pool(pool: PgPool) -> PgStorage {
        PgStorage { pool, pooler: Pooler::None, days: Arc::default() }
    }

    /// The pool (for migrations and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pooler this storage was connected through.
    pub fn pooler(&self) -> Pooler {
        self.pooler
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
