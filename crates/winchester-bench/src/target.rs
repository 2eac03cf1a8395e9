//! Where the bench runs: a PostgreSQL server (scratch databases made through
//! an admin URL) or SQLite (scratch files next to the given path), and the
//! figures that apply to each.

use crate::db::ScratchDb;
use anyhow::{anyhow, Context};
use sqlx::{Connection, SqliteConnection};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use winchester_storage::Storage;

/// The backend the bench measures.
#[derive(Debug, Clone)]
pub enum Target {
    /// A PostgreSQL server, reached through this admin URL.
    Postgres {
        /// Admin URL (`CREATE DATABASE` is run there).
        admin: String,
    },
    /// SQLite files made in this directory.
    Sqlite {
        /// Directory of the scratch files.
        dir: PathBuf,
    },
}

impl Target {
    /// The target a `--database-url` names: `sqlite://path` (scratch files go
    /// next to `path`), else a PostgreSQL admin URL.
    pub fn from_url(url: &str) -> Target {
        match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Some(path) => {
                let path = PathBuf::from(path.split('?').next().unwrap_or(path));
                let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).map(PathBuf::from);
                Target::Sqlite { dir: dir.unwrap_or_else(std::env::temp_dir) }
            }
            None => Target::Postgres { admin: url.to_string() },
        }
    }

    /// `postgres` or `sqlite`.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Postgres { .. } => "postgres",
            Target::Sqlite { .. } => "sqlite",
        }
    }

    /// A fresh, migrated database.
    pub async fn scratch(&self) -> anyhow::Result<Scratch> {
        match self {
            Target::Postgres { admin } => {
                let db = ScratchDb::create(admin, true).await.context("creating a scratch database")?;
                Ok(Scratch { url: db.url.clone(), pg: Some(db), file: None })
            }
            Target::Sqlite { dir } => {
                let file = dir.join(format!("wbench_{}.db", uuid::Uuid::new_v4().simple()));
                let url = format!("sqlite://{}", file.display());
                winchester_backends::migrated(&winchester_backends::DatabaseOptions::direct(url.as_str()), 1)
                    .await
                    .with_context(|| format!("creating {}", file.display()))?;
                Ok(Scratch { url, pg: None, file: Some(file) })
            }
        }
    }
}

/// A scratch database; [`Scratch::drop_db`] removes it.
#[derive(Debug, Clone)]
pub struct Scratch {
    /// Its URL.
    pub url: String,
    pg: Option<ScratchDb>,
    file: Option<PathBuf>,
}

impl Scratch {
    /// Storage on it (both backends, through `winchester_backends`).
    pub async fn storage(&self, max_connections: u32) -> anyhow::Result<Arc<dyn Storage>> {
        Ok(winchester_backends::open_storage(
            &winchester_backends::DatabaseOptions::direct(self.url.as_str()),
            max_connections,
        )
        .await?)
    }

    /// The PostgreSQL scratch database, if that is what this is.
    pub fn postgres(&self) -> Option<&ScratchDb> {
        self.pg.as_ref()
    }

    /// The SQLite file, if that is what this is.
    pub fn sqlite_file(&self) -> Option<&PathBuf> {
        self.file.as_ref()
    }

    /// Drops the database or removes the file (and its WAL).
    pub async fn drop_db(&self) -> anyhow::Result<()> {
        if let Some(db) = &self.pg {
            db.drop_db().await?;
        }
        if let Some(f) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", f.display()));
            }
        }
        Ok(())
    }
}

/// Runs `f` on a fresh database and drops it afterwards, whether `f`
/// succeeded or not.
pub async fn with_scratch<T, F, Fut>(target: &Target, f: F) -> anyhow::Result<T>
where
    F: FnOnce(Scratch) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let db = target.scratch().await?;
    let result = f(db.clone()).await;
    if let Err(e) = db.drop_db().await {
        tracing::warn!(database = %db.url, error = %e, "Could not drop the scratch database.");
    }
    result
}

/// What the SQLite limit copies, per table: the columns, and the order the
/// rows go in: each table's key, as PostgreSQL's COPY limit loads them, so
/// the limit does not depend on the order the engine happened to write.
const SQLITE_TABLES: [(&str, &str, &str); 3] = [
    ("event", "id, message_id, event_type, generated, traits", "id"),
    (
        "stream",
        "id, trigger_name, dist_key, dist_traits, open, state, state_serial_no, first_event, last_event, \
         expire_timestamp, fire_timestamp, event_count, fire_counts, lease_expires_at, attempts, last_error",
        "id",
    ),
    ("stream_event", "stream_id, event_id", "stream_id, event_id"),
];

/// SQLite's limit: the rows the engine wrote in `source` inserted into the
/// empty, migrated `dest` in one transaction (`INSERT .. SELECT` from the
/// attached source file, every index and constraint in place), with the
/// backend's settings (WAL, `synchronous = NORMAL`, [`winchester_sqlite::TUNING`]). Returns the time from
/// `BEGIN` to `COMMIT`.
pub async fn sqlite_bulk_load(source: &Scratch, dest: &Scratch) -> anyhow::Result<Duration> {
    let (src, dst) = match (source.sqlite_file(), dest.sqlite_file()) {
        (Some(s), Some(d)) => (s, d),
        _ => return Err(anyhow!("the SQLite limit needs two SQLite scratch files")),
    };
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", dst.display())).await?;
    sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON")
        .execute(&mut conn)
        .await?;
    for (name, value) in winchester_sqlite::TUNING {
        sqlx::raw_sql(&format!("PRAGMA {name} = {value}")).execute(&mut conn).await?;
    }
    sqlx::query("ATTACH DATABASE ? AS src").bind(src.display().to_string()).execute(&mut conn).await?;
    let start = Instant::now();
    let mut tx = conn.begin().await?;
    for (table, cols, order) in SQLITE_TABLES {
        sqlx::query(&format!("INSERT INTO main.{table} ({cols}) SELECT {cols} FROM src.{table} ORDER BY {order}"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let took = start.elapsed();
    conn.close().await?;
    Ok(took)
}

/// Rows of the engine's tables: events, streams, memberships.
pub async fn row_counts(storage_url: &str) -> anyhow::Result<(u64, u64, u64)> {
    let mut conn = SqliteConnection::connect(storage_url).await?;
    let mut n = [0u64; 3];
    for (k, (table, ..)) in SQLITE_TABLES.iter().enumerate() {
        let c: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut conn).await?;
        n[k] = c as u64;
    }
    conn.close().await?;
    Ok((n[0], n[1], n[2]))
}
