//! Reading events (trimming is [`crate::partitions`]'s).
//!
//! A stream's events are read by membership, each event looked up by `(id,
//! generated)` in a `LATERAL .. LIMIT 1`: that forces a nested loop whose
//! every lookup is pruned to one partition at run time. A plain join is costed
//! as if every partition were probed per membership, and the planner then
//! prefers hashing every event partition (hundreds of ms at a million events).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use winchester_core::Event;
use winchester_storage::decode;
use winchester_storage::{Cursor, EventStore, Result};

use crate::errors::storage_error;
use crate::rows::Pg;
use crate::PgStorage;

pub(crate) async fn stream_events(
    db: &PgStorage,
    stream_id: i64,
    after: Option<Cursor>,
    limit: u32,
) -> Result<(Vec<Event>, Option<Cursor>)> {
    on_conn!(db, |c| -> (Vec<Event>, Option<Cursor>) {
        let rows = sqlx::query(
            "SELECT e.id, e.message_id, e.event_type, e.generated, e.traits \
         FROM stream_event se CROSS JOIN LATERAL (SELECT * FROM event e \
           WHERE e.id = se.event_id AND e.generated = se.generated LIMIT 1) e \
         WHERE se.stream_id = $1 AND ($2::timestamptz IS NULL OR (e.generated, e.id) > ($2, $3)) \
         ORDER BY e.generated, e.id LIMIT $4",
        )
        .persistent(db.named())
        .bind(stream_id)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1).unwrap_or(0))
        .bind(limit as i64)
        .fetch_all(&mut *c)
        .await
        .map_err(storage_error)?;
        decode::event_page::<Pg>(&rows)
    })
}

/// The latest event timestamp (`generated` is indexed, so this is one index probe).
pub(crate) async fn latest_time(db: &PgStorage) -> Result<Option<DateTime<Utc>>> {
    on_conn!(db, |c| -> Option<DateTime<Utc>> {
        sqlx::query_scalar("SELECT max(generated) FROM event")
            .persistent(db.named())
            .fetch_one(&mut *c)
            .await
            .map_err(storage_error)
    })
}

/// Every event of several streams, in one query.
pub(crate) async fn load_events(db: &PgStorage, stream_ids: &[i64]) -> Result<Vec<(i64, Event)>> {
    on_conn!(db, |c| -> Vec<(i64, Event)> {
        if stream_ids.is_empty() {
            return Ok(vec![]);
        }
        let rows = sqlx::query(
            "SELECT se.stream_id, e.message_id, e.event_type, e.generated, e.traits \
         FROM stream_event se CROSS JOIN LATERAL (SELECT * FROM event e \
           WHERE e.id = se.event_id AND e.generated = se.generated LIMIT 1) e \
         WHERE se.stream_id = ANY($1) ORDER BY se.stream_id, e.generated, e.id",
        )
        .persistent(db.named())
        .bind(stream_ids)
        .fetch_all(&mut *c)
        .await
        .map_err(storage_error)?;
        rows.iter().map(decode::stream_event::<Pg>).collect()
    })
}

#[async_trait]
impl EventStore for PgStorage {
    async fn stream_events(
        &self,
        stream_id: i64,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<(Vec<Event>, Option<Cursor>)> {
        stream_events(self, stream_id, after, limit).await
    }

    async fn load_events(&self, stream_ids: &[i64]) -> Result<Vec<(i64, Event)>> {
        load_events(self, stream_ids).await
    }

    async fn trim_events(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<u64> {
        crate::partitions::trim(self, cutoff, limit).await
    }

    async fn latest_event_time(&self) -> Result<Option<DateTime<Utc>>> {
        latest_time(self).await
    }
}
