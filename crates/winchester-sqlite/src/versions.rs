//! Recorded trigger definition versions (migration 0003).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use winchester_core::DefinitionVersion;
use winchester_storage::decode::{self, VERSION_COLUMNS};
use winchester_storage::{Result, TriggerVersion, VersionStore};

use crate::rows::{micros, Lite};
use crate::{storage_error, SqliteStorage};

#[async_trait]
impl VersionStore for SqliteStorage {
    async fn record_versions(&self, versions: &[DefinitionVersion], now: DateTime<Utc>) -> Result<()> {
        if versions.is_empty() {
            return Ok(());
        }
        let mut tx = crate::ingest::begin(&self.pool).await?;
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

    async fn trigger_version(&self, trigger: &str, version: &str) -> Result<Option<TriggerVersion>> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM trigger_version WHERE trigger_name = ? AND version = ?");
        let r =
            sqlx::query(&sql).bind(trigger).bind(version).fetch_optional(&self.pool).await.map_err(storage_error)?;
        r.as_ref().map(decode::trigger_version::<Lite>).transpose()
    }

    async fn trigger_versions(&self, trigger: Option<&str>) -> Result<Vec<TriggerVersion>> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM trigger_version WHERE ?1 IS NULL OR trigger_name = ?1 \
             ORDER BY trigger_name, first_used, version"
        );
        let rows = sqlx::query(&sql).bind(trigger).fetch_all(&self.pool).await.map_err(storage_error)?;
        rows.iter().map(decode::trigger_version::<Lite>).collect()
    }
}
