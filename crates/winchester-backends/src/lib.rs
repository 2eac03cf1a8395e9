//! The storage backends by database URL: PostgreSQL (`postgres://`,
//! `postgresql://`) or SQLite (`sqlite://`). Connects with clear errors and
//! checks that the schema is up to date.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use anyhow::{anyhow, Context};
use std::sync::Arc;
use winchester_core::config::redact_url as redact;
use winchester_postgres::PgStorage;
use winchester_sqlite::SqliteStorage;
use winchester_storage::Storage;

/// Whether a URL names an SQLite database.
pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// Opens an SQLite database (creating the file if needed) with a clear error.
pub async fn connect_sqlite(url: &str, max_connections: u32) -> anyhow::Result<SqliteStorage> {
    SqliteStorage::connect(url, max_connections).await.with_context(|| format!("cannot open database {url}"))
}

/// Opens the storage a URL names: PostgreSQL (`postgres://`) or SQLite (`sqlite://`).
/// Checks that the database's schema is up to date, so a process started
/// against an empty or old database says what to do instead of failing later.
pub async fn open_storage(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn Storage>> {
    use sqlx::migrate::Migrate;
    let (storage, applied, known): (Arc<dyn Storage>, Vec<i64>, Vec<i64>) = if is_sqlite(url) {
        let s = connect_sqlite(url, max_connections).await?;
        let mut conn = s.pool().acquire().await?;
        conn.ensure_migrations_table().await?;
        let applied = conn.list_applied_migrations().await?.into_iter().map(|m| m.version).collect();
        drop(conn);
        let known = winchester_sqlite::MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .collect();
        (Arc::new(s), applied, known)
    } else {
        let s = connect(url, max_connections).await?;
        let status = winchester_postgres::migrate::status(s.pool()).await?;
        let applied = status.iter().filter(|m| m.applied).map(|m| m.version).collect();
        (Arc::new(s), applied, status.iter().map(|m| m.version).collect())
    };
    let pending: Vec<String> = known.iter().filter(|v| !applied.contains(v)).map(i64::to_string).collect();
    if !pending.is_empty() {
        return Err(anyhow!(
            "database {} lacks schema migration(s) {}: run `winchester-db --database-url '{}' upgrade head` first",
            redact(url),
            pending.join(", "),
            redact(url)
        ));
    }
    Ok(storage)
}

/// Connects to PostgreSQL with a clear error.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgStorage> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        let scheme = url.split("://").next().unwrap_or(url);
        return Err(anyhow!(
            "unsupported database URL {:?}: use postgres:// (postgresql://) or sqlite://, not {scheme:?}",
            redact(url)
        ));
    }
    let what = || format!("cannot connect to database {}", redact(url));
    let opts: sqlx::postgres::PgConnectOptions =
        url.parse().map_err(|e| anyhow!("invalid database URL {:?}: {e}", redact(url)))?;
    // One direct connection first: it fails fast with the real reason
    // (refused, unknown host, bad password, no such database).
    use sqlx::ConnectOptions;
    let conn = opts.connect().await.with_context(what)?;
    drop(conn);
    PgStorage::connect(url, max_connections).await.with_context(what)
}
