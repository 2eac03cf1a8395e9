//! Reading and trimming events.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use winchester_core::Event;
use winchester_storage::decode;
use winchester_storage::stream::state_no::COMPLETED;
use winchester_storage::{Cursor, EventStore, Result};

use crate::rows::{self, micros, Lite};
use crate::{storage_error, SqliteStorage};

#[async_trait]
impl EventStore for SqliteStorage {
    async fn stream_events(
        &self,
        stream_id: i64,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<(Vec<Event>, Option<Cursor>)> {
        let rows = sqlx::query(
            "SELECT e.id, e.message_id, e.event_type, e.generated, e.traits \
             FROM stream_event se JOIN event e ON e.id = se.event_id \
             WHERE se.stream_id = ?1 AND (?2 IS NULL OR (e.generated, e.id) > (?2, ?3)) \
             ORDER BY e.generated, e.id LIMIT ?4",
        )
        .bind(stream_id)
        .bind(after.map(|a| micros(a.0)))
        .bind(after.map(|a| a.1).unwrap_or(0))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)?;
        decode::event_page::<Lite>(&rows)
    }

    async fn trim_events(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<u64> {
        let sql = format!(
            "DELETE FROM event WHERE id IN ( \
               SELECT e.id FROM event e WHERE e.generated < ?1 AND NOT EXISTS ( \
                 SELECT 1 FROM stream_event se JOIN stream s ON s.id = se.stream_id \
                 WHERE se.event_id = e.id AND s.state <> {COMPLETED}) \
               ORDER BY e.generated LIMIT ?2)"
        );
        let n = sqlx::query(&sql)
            .bind(micros(cutoff))
            .bind(limit as i64)
            .execute(&self.pool)
            .await
            .map_err(storage_error)?
            .rows_affected();
        Ok(n)
    }

    /// The latest event timestamp.
    async fn latest_event_time(&self) -> Result<Option<DateTime<Utc>>> {
        let v: Option<i64> = sqlx::query_scalar!(r#"SELECT max(generated) AS "latest: i64" FROM event"#)
            .fetch_one(&self.pool)
            .await
            .map_err(storage_error)?;
        v.map(rows::time).transpose()
    }

    /// Every event of several streams, in one query.
    async fn load_events(&self, stream_ids: &[i64]) -> Result<Vec<(i64, Event)>> {
        if stream_ids.is_empty() {
            return Ok(vec![]);
        }
        let ids =
            serde_json::to_string(stream_ids).map_err(|e| winchester_storage::StorageError::Database(Box::new(e)))?;
        let rows = sqlx::query(
            "SELECT se.stream_id, e.message_id, e.event_type, e.generated, e.traits \
             FROM stream_event se JOIN event e ON e.id = se.event_id \
             WHERE se.stream_id IN (SELECT value FROM json_each(?1)) ORDER BY se.stream_id, e.generated, e.id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)?;
        rows.iter().map(decode::stream_event::<Lite>).collect()
    }
}
