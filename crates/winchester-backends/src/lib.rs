//! The storage backends by database URL: the one place that picks PostgreSQL
//! (`postgres://`, `postgresql://`) or SQLite (`sqlite://`) from a URL.
//!
//! - [`Kind`]: which backend a URL names, and its [`Schema`] (known without a
//!   connection, for offline `--sql` scripts).
//! - [`DatabaseOptions`]: a database URL and the pooler in front of it; every
//!   connection a program makes is built from one.
//! - [`connect`]: a connected [`Backend`] (its storage and its migrations),
//!   with errors that say what is wrong and never show a password.
//! - [`open_storage`]: the storage of a database whose schema is current, or an
//!   error saying which migrations are missing and how to apply them.
//! - [`read_router`]: reads from a hot standby (`database.read_url`) while
//!   its lag is within a bound, else from the primary.
//! - [`wait_for_database`]: the one wait of every program at start, while the
//!   database is unreachable ([`BackendError::is_unavailable`]), bounded by
//!   [`WaitForDatabase`].
//!
//! Both backends ship sqlx migrations; [`SqlxBackend`] applies, reverts and
//! lists them the same way for either. The backends contribute only their
//! dialect (bookkeeping table, byte literals) and their error classification.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use async_trait::async_trait;
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use std::sync::Arc;
use std::time::{Duration, Instant};
use winchester_core::config::{redact_url as redact, Pooler};
use winchester_postgres::{PgOptions, PgStorage};
use winchester_sqlite::SqliteStorage;
use winchester_storage::backend::{Backend, MigrationEntry, Schema};
use winchester_storage::{RetryPolicy, Storage, StorageError};

/// What went wrong reaching a database.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The URL names no backend this build has.
    #[error("unsupported database URL {url:?}: use postgres:// (postgresql://) or sqlite://, not {scheme:?}")]
    Unsupported {
        /// The URL, password hidden.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// A PostgreSQL-only tool was given another database.
    #[error("{url:?} is not a PostgreSQL URL: this needs postgres:// (postgresql://)")]
    NotPostgres {
        /// The URL, password hidden.
        url: String,
    },
    /// The URL does not parse.
    #[error("invalid database URL {url:?}: {source}")]
    InvalidUrl {
        /// The URL, password hidden.
        url: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The database could not be opened (a bad password, no such database, ...).
    #[error("cannot connect to database {url}")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The server could not be reached, or cannot take connections now
    /// (refused, unknown host, starting up, shutting down, in recovery, too
    /// many connections): waiting may help.
    #[error("cannot connect to database {url}")]
    Unavailable {
        /// The URL, password hidden.
        url: String,
        /// Why.
        source: sqlx::Error,
    },
    /// The database stayed unavailable for as long as the program was told to wait.
    #[error("database {url} still unavailable after waiting {waited:.1?} (--wait-for-database {bound})")]
    GaveUp {
        /// The URL, password hidden.
        url: String,
        /// How long it waited.
        waited: std::time::Duration,
        /// The bound, as given.
        bound: WaitForDatabase,
        /// The last failure.
        source: Box<BackendError>,
    },
    /// The database answered, but reading or changing its schema failed.
    #[error("{what} {url}")]
    Schema {
        /// What was being done.
        what: &'static str,
        /// The URL, password hidden.
        url: String,
        /// Why.
        source: StorageError,
    },
    /// The schema lacks migrations this build needs.
    #[error("database {url} lacks schema migration(s) {pending}: run `winchester-db --database-url '{url}' upgrade head` first")]
    NotMigrated {
        /// The URL, password hidden.
        url: String,
        /// The missing versions, comma-separated.
        pending: String,
    },
}

/// Which backend a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `sqlite://` (or `sqlite::memory:`).
    Sqlite,
}

impl Kind {
    /// The backend `url` names; an error for any other scheme.
    pub fn of(url: &str) -> Result<Kind, BackendError> {
        if url.starts_with("sqlite:") {
            Ok(Kind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Kind::Postgres)
        } else {
            let scheme = url.split("://").next().unwrap_or(url).to_string();
            Err(BackendError::Unsupported { url: redact(url), scheme })
        }
    }

    /// The backend's embedded migrations.
    fn migrator(self) -> &'static Migrator {
        match self {
            Kind::Postgres => &winchester_postgres::MIGRATOR,
            Kind::Sqlite => &winchester_sqlite::MIGRATOR,
        }
    }

    /// The schema this build ships for the backend.
    pub fn schema(self) -> Schema {
        let (backend, bookkeeping_table, bytes_literal): (_, _, fn(&[u8]) -> String) = match self {
            Kind::Postgres => (
                "postgres",
                winchester_postgres::migrate::bookkeeping_table(),
                winchester_postgres::migrate::bytes_literal,
            ),
            Kind::Sqlite => {
                ("sqlite", winchester_sqlite::migrate::bookkeeping_table(), winchester_sqlite::migrate::bytes_literal)
            }
        };
        Schema { backend, migrations: migrations_of(self.migrator()), bookkeeping_table, bytes_literal }
    }
}

fn migrations_of(migrator: &Migrator) -> Vec<winchester_storage::backend::Migration> {
    Schema::migrations_from(migrator.iter().map(|m| MigrationEntry {
        version: m.version,
        description: &m.description,
        up: m.migration_type.is_up_migration(),
        sql: &m.sql,
        checksum: &m.checksum,
    }))
}

/// A backend on an sqlx pool: its storage, and its embedded sqlx migrations
/// applied through sqlx's own bookkeeping (`_sqlx_migrations`).
#[derive(Debug)]
pub struct SqlxBackend<DB: sqlx::Database> {
    kind: Kind,
    pool: sqlx::Pool<DB>,
    storage: Arc<dyn Storage>,
    migrator: &'static Migrator,
    classify: fn(sqlx::Error) -> StorageError,
}

impl SqlxBackend<sqlx::Postgres> {
    /// The PostgreSQL backend on a connected storage.
    pub fn postgres(storage: PgStorage) -> SqlxBackend<sqlx::Postgres> {
        let pool = storage.pool().clone();
        SqlxBackend::new(Kind::Postgres, pool, Arc::new(storage), winchester_postgres::storage_error)
    }
}

impl SqlxBackend<sqlx::Sqlite> {
    /// The SQLite backend on an opened storage.
    pub fn sqlite(storage: SqliteStorage) -> SqlxBackend<sqlx::Sqlite> {
        let pool = storage.pool().clone();
        SqlxBackend::new(Kind::Sqlite, pool, Arc::new(storage), winchester_sqlite::storage_error)
    }
}

impl<DB: sqlx::Database> SqlxBackend<DB> {
    fn new(
        kind: Kind,
        pool: sqlx::Pool<DB>,
        storage: Arc<dyn Storage>,
        classify: fn(sqlx::Error) -> StorageError,
    ) -> SqlxBackend<DB> {
        SqlxBackend { kind, pool, storage, migrator: kind.migrator(), classify }
    }

    fn migrate_error(&self, e: MigrateError) -> StorageError {
        match e {
            MigrateError::Execute(e) => (self.classify)(e),
            other => StorageError::Database(Box::new(other)),
        }
    }
}

/// How a backend reads and applies its migrations.
#[async_trait]
pub trait Migrations: sqlx::Database {
    /// The applied versions, oldest first; looking changes nothing.
    async fn applied_versions(pool: &sqlx::Pool<Self>) -> Result<Vec<i64>, MigrateError>;
    /// Applies every pending migration.
    async fn apply_pending(pool: &sqlx::Pool<Self>, migrator: &'static Migrator) -> Result<(), MigrateError>;
    /// Reverts the migrations newer than `target`.
    async fn revert_to(pool: &sqlx::Pool<Self>, migrator: &'static Migrator, target: i64) -> Result<(), MigrateError>;
}

/// PostgreSQL: the backend's own runner (sqlx-cli's bookkeeping, unnamed
/// statements, one transaction per step), right behind a transaction pooler.
#[async_trait]
impl Migrations for sqlx::Postgres {
    async fn applied_versions(pool: &sqlx::PgPool) -> Result<Vec<i64>, MigrateError> {
        Ok(winchester_postgres::migrate::applied_versions(pool).await?)
    }

    async fn apply_pending(pool: &sqlx::PgPool, migrator: &'static Migrator) -> Result<(), MigrateError> {
        winchester_postgres::migrate::apply_pending(pool, migrator).await.map(drop)
    }

    async fn revert_to(pool: &sqlx::PgPool, migrator: &'static Migrator, target: i64) -> Result<(), MigrateError> {
        winchester_postgres::migrate::revert_to(pool, migrator, target).await.map(drop)
    }
}

/// SQLite: sqlx's migrator.
#[async_trait]
impl Migrations for sqlx::Sqlite {
    /// Reads the bookkeeping table in a transaction that is rolled back, so
    /// that looking leaves a database without one as it was.
    async fn applied_versions(pool: &sqlx::SqlitePool) -> Result<Vec<i64>, MigrateError> {
        let mut tx = pool.begin().await?;
        tx.ensure_migrations_table().await?;
        let applied = tx.list_applied_migrations().await?;
        tx.rollback().await?;
        Ok(applied.into_iter().map(|m| m.version).collect())
    }

    async fn apply_pending(pool: &sqlx::SqlitePool, migrator: &'static Migrator) -> Result<(), MigrateError> {
        migrator.run(pool).await
    }

    async fn revert_to(pool: &sqlx::SqlitePool, migrator: &'static Migrator, target: i64) -> Result<(), MigrateError> {
        migrator.undo(pool, target).await
    }
}

#[async_trait]
impl<DB> Backend for SqlxBackend<DB>
where
    DB: Migrations,
{
    fn schema(&self) -> Schema {
        self.kind.schema()
    }

    fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    async fn applied_versions(&self) -> winchester_storage::Result<Vec<i64>> {
        DB::applied_versions(&self.pool).await.map_err(|e| self.migrate_error(e))
    }

    async fn apply_pending(&self) -> winchester_storage::Result<()> {
        DB::apply_pending(&self.pool, self.migrator).await.map_err(|e| self.migrate_error(e))
    }

    async fn revert_to(&self, target: i64) -> winchester_storage::Result<()> {
        DB::revert_to(&self.pool, self.migrator, target).await.map_err(|e| self.migrate_error(e))
    }
}

/// The database a program uses and how it reaches it: its URL and the
/// pooler in front of it (`database.url`, `database.pooler`). Every
/// connection a program makes is built from one, so none can forget the
/// pooler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseOptions {
    /// The database URL (`postgres://…`, `sqlite://…`).
    pub url: String,
    /// What stands between us and PostgreSQL.
    pub pooler: Pooler,
}

impl DatabaseOptions {
    /// `url` reached through `pooler`.
    pub fn new(url: impl Into<String>, pooler: Pooler) -> DatabaseOptions {
        DatabaseOptions { url: url.into(), pooler }
    }

    /// `url` reached directly.
    pub fn direct(url: impl Into<String>) -> DatabaseOptions {
        DatabaseOptions::new(url, Pooler::None)
    }

    /// The backend the URL names.
    pub fn kind(&self) -> Result<Kind, BackendError> {
        Kind::of(&self.url)
    }

    /// The URL with its password hidden, for messages.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }

    /// The PostgreSQL connection options (an error for another backend).
    pub fn postgres(&self) -> Result<PgOptions, BackendError> {
        if self.kind()? != Kind::Postgres {
            return Err(BackendError::NotPostgres { url: self.redacted() });
        }
        PgOptions::new(&self.url, self.pooler)
            .map_err(|source| BackendError::InvalidUrl { url: self.redacted(), source })
    }
}

/// Connects to the database `db` names with a pool of at most
/// `max_connections` (an SQLite file is created if missing). Does not look at
/// the schema; see [`open_storage`].
pub async fn connect(db: &DatabaseOptions, max_connections: u32) -> Result<Arc<dyn Backend>, BackendError> {
    match db.kind()? {
        Kind::Postgres => Ok(Arc::new(SqlxBackend::postgres(connect_postgres(db, max_connections).await?))),
        Kind::Sqlite => {
            let storage = SqliteStorage::connect(&db.url, max_connections)
                .await
                .map_err(|source| BackendError::Connect { url: db.redacted(), source })?;
            Ok(Arc::new(SqlxBackend::sqlite(storage)))
        }
    }
}

/// Connects to PostgreSQL. One connection of its own first: it fails fast
/// with the real reason (refused, unknown host, bad password, no such
/// database) where the pool would only time out.
pub async fn connect_postgres(db: &DatabaseOptions, max_connections: u32) -> Result<PgStorage, BackendError> {
    let options = db.postgres()?;
    let connect_error = |source: sqlx::Error| {
        let url = db.redacted();
        if winchester_postgres::is_unavailable(&source) {
            BackendError::Unavailable { url, source }
        } else {
            BackendError::Connect { url, source }
        }
    };
    drop(options.connect().await.map_err(connect_error)?);
    PgStorage::connect(&options, max_connections).await.map_err(connect_error)
}

/// Opens the storage of the database `db` names, checking that its schema
/// is up to date, so a process started against an empty or old database says
/// what to do instead of failing later.
pub async fn open_storage(db: &DatabaseOptions, max_connections: u32) -> Result<Arc<dyn Storage>, BackendError> {
    let backend = connect(db, max_connections).await?;
    let pending = backend.pending().await.map_err(schema_error("cannot read the schema version of", &db.url))?;
    if !pending.is_empty() {
        return Err(BackendError::NotMigrated {
            url: db.redacted(),
            pending: pending.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(backend.storage())
}

/// Connects and applies every pending migration; returns the backend and the
/// versions applied.
pub async fn migrated(
    db: &DatabaseOptions,
    max_connections: u32,
) -> Result<(Arc<dyn Backend>, Vec<i64>), BackendError> {
    let backend = connect(db, max_connections).await?;
    let applied = backend.upgrade().await.map_err(schema_error("cannot migrate", &db.url))?;
    Ok((backend, applied))
}

/// A hot standby to read from: `database.read_url` and `database.max_read_lag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReplicaOptions {
    /// The standby's URL (`postgres://…`), reached through the primary's pooler setting.
    pub url: String,
    /// Beyond this lag, reads go to the primary.
    pub max_lag: Duration,
}

/// Longest wait for a connection to the standby: a read it cannot take soon
/// goes to the primary.
pub const STANDBY_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The reads of `winchester serve` over `primary` (the storage of `db`) and
/// the standby `replica` names, with `max_connections` to the standby: a
/// [`ReadRouter`](winchester_storage::replica::ReadRouter) whose lag probe
/// is running. The standby is connected when first used, so one that is
/// down now only sends the reads to the primary. Both must be PostgreSQL.
pub fn read_router(
    db: &DatabaseOptions,
    primary: Arc<dyn Storage>,
    replica: &ReadReplicaOptions,
    max_connections: u32,
) -> Result<Arc<winchester_storage::replica::ReadRouter>, BackendError> {
    use winchester_storage::replica::{ReadRouter, WalPosition, PROBE_TIMEOUT};
    let standby_db = DatabaseOptions::new(replica.url.clone(), db.pooler);
    let standby = Arc::new(PgStorage::connect_lazy(&standby_db.postgres()?, max_connections, STANDBY_ACQUIRE_TIMEOUT));
    let primary_wal: Arc<dyn WalPosition> = Arc::new(PgStorage::connect_lazy(&db.postgres()?, 1, PROBE_TIMEOUT));
    let router = Arc::new(ReadRouter::new(
        (primary, primary_wal),
        (standby.clone(), standby),
        replica.max_lag,
        standby_db.redacted(),
    ));
    router.spawn_probe();
    Ok(router)
}

/// Wraps a storage error met while `what` (reading, migrating) the schema of `url`.
fn schema_error(what: &'static str, url: &str) -> impl FnOnce(StorageError) -> BackendError {
    let url = redact(url);
    move |source| BackendError::Schema { what, url, source }
}

/// How long a program waits at start for a database it cannot reach
/// (`--wait-for-database`): `forever`, `0` (not at all), or a duration
/// such as `30s`, `5m`, `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitForDatabase {
    /// Until it answers (the daemons' default).
    Forever,
    /// At most this long (zero: fail at the first refusal).
    UpTo(Duration),
}

impl WaitForDatabase {
    /// The default of one-shot commands.
    pub const ONE_SHOT: WaitForDatabase = WaitForDatabase::UpTo(Duration::from_secs(30));
}

impl std::str::FromStr for WaitForDatabase {
    type Err = String;

    fn from_str(text: &str) -> Result<WaitForDatabase, String> {
        match text.trim() {
            "forever" => Ok(WaitForDatabase::Forever),
            "0" => Ok(WaitForDatabase::UpTo(Duration::ZERO)),
            other => winchester_core::duration::parse_duration(other)
                .map(WaitForDatabase::UpTo)
                .map_err(|e| format!("{e}; or `forever`, or 0 not to wait")),
        }
    }
}

impl std::fmt::Display for WaitForDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitForDatabase::Forever => f.write_str("forever"),
            WaitForDatabase::UpTo(d) if d.is_zero() => f.write_str("0"),
            WaitForDatabase::UpTo(d) => write!(f, "{d:?}"),
        }
    }
}

impl BackendError {
    /// Whether the database could not be reached, or could not serve us
    /// yet, so that waiting may help (what [`wait_for_database`] waits out).
    /// A bad URL, a bad password, a missing database or schema are not.
    pub fn is_unavailable(&self) -> bool {
        match self {
            BackendError::Unavailable { .. } => true,
            BackendError::Schema { source, .. } => matches!(source, StorageError::Unavailable(_)),
            _ => false,
        }
    }
}

/// Runs `op` (connecting, opening the storage, migrating `db`) until it
/// succeeds or fails for a reason waiting cannot fix; while the database is
/// unavailable ([`BackendError::is_unavailable`]) it tries again with the
/// engine's one backoff ([`RetryPolicy`]: jittered, doubling from 0.5 s to
/// 30 s), logging the outage once when the wait starts and once when it
/// ends (with its length). After `wait` it gives up:
/// [`BackendError::GaveUp`] with the last failure (with a zero `wait`, that
/// failure itself). Every program waits for its database here.
pub async fn wait_for_database<T, F, Fut>(
    db: &DatabaseOptions,
    wait: WaitForDatabase,
    mut op: F,
) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let start = Instant::now();
    let bound = match wait {
        WaitForDatabase::Forever => None,
        WaitForDatabase::UpTo(d) => Some(d),
    };
    let what = match wait {
        WaitForDatabase::Forever => format!("connecting to {} at start", db.redacted()),
        bounded => format!("connecting to {} at start, waiting at most {bounded}", db.redacted()),
    };
    let mut retry = RetryPolicy::new();
    loop {
        let left = bound.map(|b| b.saturating_sub(start.elapsed()));
        let attempt = match left {
            // A server that does not answer at all (packets dropped) must not
            // hold a bounded wait past its bound.
            Some(left) if !left.is_zero() => tokio::time::timeout(left, op()).await.unwrap_or_else(|_| {
                let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer from the server");
                Err(BackendError::Unavailable { url: db.redacted(), source: sqlx::Error::Io(source) })
            }),
            _ => op().await,
        };
        let error = match attempt {
            Ok(v) => {
                retry.succeeded();
                return Ok(v);
            }
            Err(e) if e.is_unavailable() => e,
            Err(e) => return Err(e),
        };
        if wait == WaitForDatabase::UpTo(Duration::ZERO) {
            return Err(error);
        }
        let left = bound.map(|b| b.saturating_sub(start.elapsed()));
        if left == Some(Duration::ZERO) {
            return Err(BackendError::GaveUp {
                url: db.redacted(),
                waited: start.elapsed(),
                bound: wait,
                source: Box::new(error),
            });
        }
        let pause = retry.failed(&what, &Chain(&error));
        tokio::time::sleep(left.map_or(pause, |left| pause.min(left))).await;
    }
}

/// An error with its causes, `a: b: c`, for a log line (a cause whose text
/// the one before already shows is left out).
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            cause = e.source();
        }
        Ok(())
    }
}
