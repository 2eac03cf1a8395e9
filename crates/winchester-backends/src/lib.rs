//! The storage backends by database URL: the one place that picks PostgreSQL
//! (`postgres://`, `postgresql://`) or SQLite (`sqlite://`) from a URL.
//!
//! - [`Kind`]: which backend a URL names, and its [`Schema`] (known without a
//!   connection, for offline `--sql` scripts).
//! - [`connect`]: a connected [`Backend`] (its storage and its migrations),
//!   with errors that say what is wrong and never show a password.
//! - [`open_storage`]: the storage of a database whose schema is current, or an
//!   error saying which migrations are missing and how to apply them.
//!
//! Both backends ship sqlx migrations; [`SqlxBackend`] applies, reverts and
//! lists them the same way for either. The backends contribute only their
//! dialect (bookkeeping table, byte literals) and their error classification.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use async_trait::async_trait;
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use std::sync::Arc;
use winchester_core::config::{redact_url as redact, Pooler};
use winchester_postgres::PgStorage;
use winchester_sqlite::SqliteStorage;
use winchester_storage::backend::{Backend, MigrationEntry, Schema};
use winchester_storage::{Storage, StorageError};

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
    /// The database could not be reached or opened.
    #[error("cannot connect to database {url}")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// Why.
        source: sqlx::Error,
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
                winchester_postgres::migrate::BOOKKEEPING_TABLE,
                winchester_postgres::migrate::bytes_literal,
            ),
            Kind::Sqlite => {
                ("sqlite", winchester_sqlite::migrate::BOOKKEEPING_TABLE, winchester_sqlite::migrate::bytes_literal)
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

/// What a backend does before rolling back the transaction that only looked
/// at the migrations table.
#[async_trait]
pub trait AfterLook: sqlx::Database {
    /// Cleans up in `tx`.
    async fn after_look(tx: &mut sqlx::Transaction<'_, Self>) -> Result<(), sqlx::Error>;
}

#[async_trait]
impl AfterLook for sqlx::Postgres {
    /// sqlx names the bookkeeping query's statement: it is dropped (and
    /// forgotten by the connection's cache) with the transaction, or behind a
    /// transaction pooler it would outlive us on a server connection that
    /// another client gets next.
    async fn after_look(tx: &mut sqlx::Transaction<'_, Self>) -> Result<(), sqlx::Error> {
        sqlx::Connection::clear_cached_statements(&mut **tx).await?;
        sqlx::Executor::execute(&mut **tx, "DEALLOCATE ALL").await.map(drop)
    }
}

#[async_trait]
impl AfterLook for sqlx::Sqlite {
    async fn after_look(_tx: &mut sqlx::Transaction<'_, Self>) -> Result<(), sqlx::Error> {
        Ok(())
    }
}

#[async_trait]
impl<DB> Backend for SqlxBackend<DB>
where
    DB: sqlx::Database + AfterLook,
    DB::Connection: Migrate,
{
    fn schema(&self) -> Schema {
        self.kind.schema()
    }

    fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    /// Reads the bookkeeping table in a transaction that is rolled back, so
    /// that looking (`current`, `--sql`, the schema check) leaves a database
    /// without one as it was.
    async fn applied_versions(&self) -> winchester_storage::Result<Vec<i64>> {
        let mut tx = self.pool.begin().await.map_err(self.classify)?;
        tx.ensure_migrations_table().await.map_err(|e| self.migrate_error(e))?;
        let applied = tx.list_applied_migrations().await.map_err(|e| self.migrate_error(e))?;
        DB::after_look(&mut tx).await.map_err(self.classify)?;
        tx.rollback().await.map_err(self.classify)?;
        Ok(applied.into_iter().map(|m| m.version).collect())
    }

    async fn apply_pending(&self) -> winchester_storage::Result<()> {
        self.migrator.run(&self.pool).await.map_err(|e| self.migrate_error(e))
    }

    async fn revert_to(&self, target: i64) -> winchester_storage::Result<()> {
        self.migrator.undo(&self.pool, target).await.map_err(|e| self.migrate_error(e))
    }
}

/// Connects to the database `url` names with a pool of at most
/// `max_connections` (an SQLite file is created if missing). Does not look at
/// the schema; see [`open_storage`].
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Backend>, BackendError> {
    connect_with(url, max_connections, Pooler::None).await
}

/// [`connect`] through a connection pooler (`database.pooler`; PostgreSQL only).
pub async fn connect_with(url: &str, max_connections: u32, pooler: Pooler) -> Result<Arc<dyn Backend>, BackendError> {
    let connect_error = |source| BackendError::Connect { url: redact(url), source };
    match Kind::of(url)? {
        Kind::Postgres => {
            Ok(Arc::new(SqlxBackend::postgres(connect_postgres_with(url, max_connections, pooler).await?)))
        }
        Kind::Sqlite => {
            let storage = SqliteStorage::connect(url, max_connections).await.map_err(connect_error)?;
            Ok(Arc::new(SqlxBackend::sqlite(storage)))
        }
    }
}

/// Connects to PostgreSQL. One direct connection first: it fails fast with
/// the real reason (refused, unknown host, bad password, no such database)
/// where the pool would only time out.
pub async fn connect_postgres(url: &str, max_connections: u32) -> Result<PgStorage, BackendError> {
    connect_postgres_with(url, max_connections, Pooler::None).await
}

/// [`connect_postgres`] through a connection pooler.
pub async fn connect_postgres_with(url: &str, max_connections: u32, pooler: Pooler) -> Result<PgStorage, BackendError> {
    use sqlx::ConnectOptions;
    let connect_error = |source| BackendError::Connect { url: redact(url), source };
    if Kind::of(url)? != Kind::Postgres {
        return Err(BackendError::NotPostgres { url: redact(url) });
    }
    let opts: sqlx::postgres::PgConnectOptions =
        url.parse().map_err(|source| BackendError::InvalidUrl { url: redact(url), source })?;
    drop(opts.connect().await.map_err(connect_error)?);
    PgStorage::connect_with(url, max_connections, pooler).await.map_err(connect_error)
}

/// Opens the storage a URL names, checking that the database's schema is up
/// to date, so a process started against an empty or old database says what
/// to do instead of failing later.
pub async fn open_storage(url: &str, max_connections: u32) -> Result<Arc<dyn Storage>, BackendError> {
    open_storage_with(url, max_connections, Pooler::None).await
}

/// [`open_storage`] through a connection pooler (`database.pooler`).
pub async fn open_storage_with(
    url: &str,
    max_connections: u32,
    pooler: Pooler,
) -> Result<Arc<dyn Storage>, BackendError> {
    let backend = connect_with(url, max_connections, pooler).await?;
    let pending = backend.pending().await.map_err(schema_error("cannot read the schema version of", url))?;
    if !pending.is_empty() {
        return Err(BackendError::NotMigrated {
            url: redact(url),
            pending: pending.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(backend.storage())
}

/// Connects and applies every pending migration; returns the backend and the
/// versions applied.
pub async fn migrated(url: &str, max_connections: u32) -> Result<(Arc<dyn Backend>, Vec<i64>), BackendError> {
    let backend = connect(url, max_connections).await?;
    let applied = backend.upgrade().await.map_err(schema_error("cannot migrate", url))?;
    Ok((backend, applied))
}

/// Wraps a storage error met while `what` (reading, migrating) the schema of `url`.
fn schema_error(what: &'static str, url: &str) -> impl FnOnce(StorageError) -> BackendError {
    let url = redact(url);
    move |source| BackendError::Schema { what, url, source }
}
