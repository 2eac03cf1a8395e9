//! Recorded trigger definition versions (migration 0003).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use winchester_core::DefinitionVersion;
use winchester_storage::decode::{self, VERSION_COLUMNS};
use winchester_storage::{Result, TriggerVersion, VersionStore};

use crate::errors::storage_error;
use crate::rows::Pg;
use crate::PgStorage;

#[async_trait]
impl VersionStore for PgStorage {
    async fn record_versions(&self, versions: &[DefinitionVersion], now: DateTime<Utc>) -> Result<()> {
        if versions.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = versions.iter().map(|v| v.trigger.as_str()).collect();
        let ids: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
        let texts: Vec<&str> = versions.iter().map(|v| v.text.as_str()).collect();
        on_conn!(self, |c| -> () {
            sqlx::query(
                "INSERT INTO trigger_version (trigger_name, version, definition, first_used) \
                 SELECT u.n, u.v, u.d, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(n, v, d) \
                 ON CONFLICT (trigger_name, version) DO NOTHING",
            )
            .persistent(self.named())
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

    async fn trigger_version(&self, trigger: &str, version: &str) -> Result<Option<TriggerVersion>> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM trigger_version WHERE trigger_name = $1 AND version = $2");
        on_conn!(self, |c| -> Option<TriggerVersion> {
            let r = sqlx::query(&sql)
                .persistent(self.named())
                .bind(trigger)
                .bind(version)
                .fetch_optional(c)
                .await
                .map_err(storage_error)?;
            r.as_ref().map(decode::trigger_version::<Pg>).transpose()
        })
    }

    async fn trigger_versions(&self, trigger: Option<&str>) -> Result<Vec<TriggerVersion>> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM trigger_version WHERE $1::text IS NULL OR trigger_name = $1 \
             ORDER BY trigger_name COLLATE \"C\", first_used, version"
        );
        on_conn!(self, |c| -> Vec<TriggerVersion> {
            let rows =
                sqlx::query(&sql).persistent(self.named()).bind(trigger).fetch_all(c).await.map_err(storage_error)?;
            rows.iter().map(decode::trigger_version::<Pg>).collect()
        })
    }
}
