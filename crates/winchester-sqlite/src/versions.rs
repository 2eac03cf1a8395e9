//! Recorded trigger definition versions (migration 0003).

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use winchester_core::DefinitionVersion;
use winchester_storage::{Result, TriggerVersion};

use crate::rows::{micros, time};
use crate::storage_error;

const COLUMNS: &str = "trigger_name, version, definition, first_used";

fn row(r: &SqliteRow) -> Result<TriggerVersion> {
    Ok(TriggerVersion {
        definition: DefinitionVersion {
            trigger: r.try_get("trigger_name").map_err(storage_error)?,
            version: r.try_get("version").map_err(storage_error)?,
            text: r.try_get("definition").map_err(storage_error)?,
        },
        first_used: time(r.try_get("first_used").map_err(storage_error)?)?,
    })
}

pub(crate) async fn record(pool: &SqlitePool, versions: &[DefinitionVersion], now: DateTime<Utc>) -> Result<()> {
    if versions.is_empty() {
        return Ok(());
    }
    let mut tx = crate::ingest::begin(pool).await?;
    for v in versions {
        sqlx::query(
            "INSERT INTO trigger_version (trigger_name, version, definition, first_used) VALUES (?, ?, ?, ?) \
             ON CONFLICT (trigger_name, version) DO NOTHING",
        )
        .bind(&v.trigger)
        .bind(&v.version)
        .bind(&v.text)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
    }
    tx.commit().await.map_err(storage_error)
}

pub(crate) async fn get(pool: &SqlitePool, trigger: &str, version: &str) -> Result<Option<TriggerVersion>> {
    let sql = format!("SELECT {COLUMNS} FROM trigger_version WHERE trigger_name = ? AND version = ?");
    let r = sqlx::query(&sql).bind(trigger).bind(version).fetch_optional(pool).await.map_err(storage_error)?;
    r.as_ref().map(row).transpose()
}

pub(crate) async fn list(pool: &SqlitePool, trigger: Option<&str>) -> Result<Vec<TriggerVersion>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM trigger_version WHERE ?1 IS NULL OR trigger_name = ?1 \
         ORDER BY trigger_name, first_used, version"
    );
    let rows = sqlx::query(&sql).bind(trigger).fetch_all(pool).await.map_err(storage_error)?;
    rows.iter().map(row).collect()
}
