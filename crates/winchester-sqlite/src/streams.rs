//! Stream queries and compare-and-set state changes, in SQLite's dialect. The
//! rules (which streams are ready, where a run leaves its stream) come from
//! [`winchester_storage::rules`]; every write runs under `BEGIN IMMEDIATE`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::time::Duration;
use winchester_storage::decode::{self, STREAM_COLUMNS};
use winchester_storage::rules::{
    claim_assignments, next_due_sql, pick_ready_sql, ready_condition, ready_sql, trigger_condition,
};
use winchester_storage::stream::state_no::{EXPIRING, FIRING};
use winchester_storage::{
    one_for_one, Action, Claimed, Finish, FinishOutcome, Result, StorageError, Stream, StreamState, StreamStore,
    TriggerScope,
};

use crate::ingest::{begin, ingest_in_tx};
use crate::rows::{self, micros, Lite};
use crate::{storage_error, SqliteStorage};

#[async_trait]
impl StreamStore for SqliteStorage {
    async fn ready_streams(&self, action: Action, now: DateTime<Utc>, limit: u32) -> Result<Vec<Stream>> {
        let rows = sqlx::query(&ready_sql(action, STREAM_COLUMNS, "?1", "?2"))
            .bind(micros(now))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(storage_error)?;
        rows.iter().map(decode::stream::<Lite>).collect()
    }

    async fn claim(
        &self,
        stream: &Stream,
        action: Action,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Stream>> {
        let lease_end = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::days(1));
        let sql = format!(
            "UPDATE stream SET {} WHERE id = ?1 AND state_serial_no = ?2 AND ({}) RETURNING {STREAM_COLUMNS}",
            claim_assignments(action, "?4"),
            ready_condition(action, "?3")
        );
        let mut tx = begin(&self.pool).await?;
        let row = sqlx::query(&sql)
            .bind(stream.id)
            .bind(stream.state_serial_no as i64)
            .bind(micros(now))
            .bind(micros(lease_end))
            .fetch_optional(&mut *tx)
            .await
            .map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        row.as_ref().map(decode::stream::<Lite>).transpose()
    }

    async fn claim_ready_among(
        &self,
        action: Action,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        triggers: TriggerScope<'_>,
    ) -> Result<Vec<Claimed>> {
        // BEGIN IMMEDIATE already excludes every other writer: no row locks needed.
        // SQLite's RETURNING cannot see an UPDATE's FROM list, so the streams are
        // picked first and claimed by id, in the same transaction.
        let mut tx = begin(&self.pool).await?;
        let filter = trigger_condition(triggers, "trigger_name IN (SELECT value FROM json_each(?3))");
        let sql = pick_ready_sql(action, "?1", "?2", &filter);
        let mut query = sqlx::query_as(&sql).bind(micros(now)).bind(limit as i64);
        if let Some(names) = triggers.names() {
            query = query.bind(serde_json::to_string(names).map_err(|e| StorageError::Database(e.into()))?);
        }
        let picked: Vec<(i64, bool)> = query.fetch_all(&mut *tx).await.map_err(storage_error)?;
        let reclaimed: HashSet<i64> = picked.iter().filter(|(_, r)| *r).map(|(id, _)| *id).collect();
        let ids = serde_json::to_string(&picked.iter().map(|(id, _)| *id).collect::<Vec<_>>())
            .map_err(|e| StorageError::Database(e.into()))?;
        let sql = format!(
            "UPDATE stream SET {} WHERE id IN (SELECT value FROM json_each(?2)) RETURNING {STREAM_COLUMNS}",
            claim_assignments(action, "?1")
        );
        let rows =
            sqlx::query(&sql).bind(micros(lease_until)).bind(ids).fetch_all(&mut *tx).await.map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        let mut claimed = rows
            .iter()
            .map(|r| decode::stream::<Lite>(r).map(|s| Claimed { reclaimed: reclaimed.contains(&s.id), stream: s }))
            .collect::<Result<Vec<_>>>()?;
        // Oldest due first, as picked.
        let order: std::collections::HashMap<i64, usize> =
            picked.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
        claimed.sort_by_key(|c| order.get(&c.stream.id).copied().unwrap_or(usize::MAX));
        Ok(claimed)
    }

    async fn finish_many(&self, runs: &[(&Stream, Finish<'_>)], now: DateTime<Utc>) -> Result<Vec<FinishOutcome>> {
        if runs.is_empty() {
            return Ok(vec![]);
        }
        let mut tx = begin(&self.pool).await?;
        let mut out = Vec::with_capacity(runs.len());
        // One compare-and-set per stream (statements are cheap in-process); a
        // stream's new events are saved only if its own compare-and-set held.
        for (claimed, finish) in runs {
            let (id, serial) = (claimed.id, claimed.state_serial_no as i64);
            let done = match finish.target(claimed.state) {
                None => {
                    sqlx::query!("DELETE FROM stream WHERE id = ?1 AND state_serial_no = ?2", id, serial)
                        .execute(&mut *tx)
                        .await
                }
                Some(to) => {
                    let (to, reason) = (to as i64, finish.reason());
                    sqlx::query!(
                        "UPDATE stream SET state = ?3, state_serial_no = state_serial_no + 1, lease_expires_at = NULL, \
                         last_error = ?4 WHERE id = ?1 AND state_serial_no = ?2",
                        id,
                        serial,
                        to,
                        reason
                    )
                    .execute(&mut *tx)
                    .await
                }
            }
            .map_err(storage_error)?
            .rows_affected();
            if done != 1 {
                out.push(FinishOutcome::LostLease);
                continue;
            }
            let plans = finish.new_events();
            let saved = one_for_one("finish: new events", plans.len(), ingest_in_tx(&mut tx, plans, now).await?)?;
            out.push(FinishOutcome::Done(saved));
        }
        tx.commit().await.map_err(storage_error)?;
        Ok(out)
    }

    async fn set_state(&self, id: i64, serial: i32, to: StreamState) -> Result<Option<Stream>> {
        let sql = format!(
            "UPDATE stream SET state = ?3, state_serial_no = state_serial_no + 1 \
             WHERE id = ?1 AND state_serial_no = ?2 RETURNING {STREAM_COLUMNS}"
        );
        let mut tx = begin(&self.pool).await?;
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(serial as i64)
            .bind(to as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        row.as_ref().map(decode::stream::<Lite>).transpose()
    }

    async fn renew_leases(&self, held: &[(i64, i32)], until: DateTime<Utc>) -> Result<Vec<i64>> {
        if held.is_empty() {
            return Ok(vec![]);
        }
        let pairs = serde_json::to_string(held).map_err(|e| StorageError::Database(Box::new(e)))?;
        let sql = format!(
            "UPDATE stream SET lease_expires_at = ?1 \
             WHERE (id, state_serial_no) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?2)) \
             AND state IN ({FIRING}, {EXPIRING}) RETURNING id"
        );
        let mut tx = begin(&self.pool).await?;
        let ids = sqlx::query_scalar(&sql)
            .bind(micros(until))
            .bind(pairs)
            .fetch_all(&mut *tx)
            .await
            .map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        Ok(ids)
    }

    async fn get_stream(&self, id: i64) -> Result<Option<Stream>> {
        let sql = format!("SELECT {STREAM_COLUMNS} FROM stream WHERE id = ?");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await.map_err(storage_error)?;
        row.as_ref().map(decode::stream::<Lite>).transpose()
    }

    async fn purge_stream(&self, id: i64) -> Result<bool> {
        let n = sqlx::query!("DELETE FROM stream WHERE id = ?1", id)
            .execute(&self.pool)
            .await
            .map_err(storage_error)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn next_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let v: Option<i64> = sqlx::query_scalar(&next_due_sql("?1"))
            .bind(micros(now))
            .fetch_one(&self.pool)
            .await
            .map_err(storage_error)?;
        v.map(rows::time).transpose()
    }
}
