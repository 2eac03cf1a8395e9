//! Recorded trigger definition versions (migration 0003).

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use winchester_core::DefinitionVersion;
use winchester_storage::{Result, TriggerVersion};

use crate::errors::storage_error;
use crate::named_statements;

const COLUMNS: &str = "trigger_name, version, definition, first_used";

fn row(r: &PgRow) -> Result<TriggerVersion> {
    Ok(TriggerVersion {
        definition: DefinitionVersion {
            trigger: r.try_get("trigger_name").map_err(storage_error)?,
            version: r.try_get("version").map_err(storage_error)?,
            text: r.try_get("definition").map_err(storage_error)?,
        },
        first_used: r.try_get("first_used").map_err(storage_error)?,
    })
}

pub(crate) async fn record(pool: &PgPool, versions: &[DefinitionVersion], now: DateTime<Utc>) -> Result<()> {
    if versions.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = versions.iter().map(|v| v.trigger.as_str()).collect();
    let ids: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
    let texts: Vec<&str> = versions.iter().map(|v| v.text.as_str()).collect();
    on_conn!(pool, |c| -> () {
        sqlx::query(
            "INSERT INTO trigger_version (trigger_name, version, definition, first_used) \
             SELECT u.n, u.v, u.d, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(n, v, d) \
             ON CONFLICT (trigger_name, version) DO NOTHING",
        )
        .persistent(named_statements())
        .bind(&names)
        .bind(&ids)
        .bind(&texts)
        .bind(now)
        .execute(c)
        .await
        .map_err(storage_error)?;
        Ok(())
    })
}

pub(crate) async fn get(pool: &PgPool, trigger: &str, version: &str) -> Result<Option<TriggerVersion>> {
    let sql = format!("SELECT {COLUMNS} FROM trigger_version WHERE trigger_name = $1 AND version = $2");
    on_conn!(pool, |c| -> Option<TriggerVersion> {
        let r = sqlx::query(&sql)
            .persistent(named_statements())
            .bind(trigger)
            .bind(version)
            .fetch_optional(c)
            .await
            .map_err(storage_error)?;
        r.as_ref().map(row).transpose()
    })
}

pub(crate) async fn list(pool: &PgPool, trigger: Option<&str>) -> Result<Vec<TriggerVersion>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM trigger_version WHERE $1::text IS NULL OR trigger_name = $1 \
         ORDER BY trigger_name COLLATE \"C\", first_used, version"
    );
    on_conn!(pool, |c| -> Vec<TriggerVersion> {
        let rows =
            sqlx::query(&sql).persistent(named_statements()).bind(trigger).fetch_all(c).await.map_err(storage_error)?;
        rows.iter().map(row).collect()
    })
}
