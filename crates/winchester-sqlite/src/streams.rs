//! Stream queries and compare-and-set state changes.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use std::time::Duration;
use winchester_storage::{Action, Finish, FinishOutcome, Result, StorageError, Stream, StreamState};

use crate::ingest::{begin, ingest_in_tx};
use crate::rows::{self, micros, STREAM_COLUMNS};
use crate::storage_error;

pub(crate) async fn ready(pool: &SqlitePool, action: Action, now: DateTime<Utc>, limit: u32) -> Result<Vec<Stream>> {
    let sql = match action {
        Action::Fire => format!(
            "SELECT * FROM (SELECT {STREAM_COLUMNS} FROM stream WHERE state IN (1, 7) AND fire_timestamp <= ?1 ORDER BY fire_timestamp LIMIT ?2) \
             UNION ALL \
             SELECT * FROM (SELECT {STREAM_COLUMNS} FROM stream WHERE state = 2 AND lease_expires_at <= ?1 ORDER BY lease_expires_at LIMIT ?2) \
             LIMIT ?2"
        ),
        Action::Expire => format!(
            "SELECT * FROM (SELECT {STREAM_COLUMNS} FROM stream WHERE state = 1 AND fire_timestamp IS NULL AND expire_timestamp <= ?1 ORDER BY expire_timestamp LIMIT ?2) \
             UNION ALL \
             SELECT * FROM (SELECT {STREAM_COLUMNS} FROM stream WHERE state = 8 AND expire_timestamp <= ?1 ORDER BY expire_timestamp LIMIT ?2) \
             UNION ALL \
             SELECT * FROM (SELECT {STREAM_COLUMNS} FROM stream WHERE state = 3 AND lease_expires_at <= ?1 ORDER BY lease_expires_at LIMIT ?2) \
             LIMIT ?2"
        ),
    };
    let rows = sqlx::query(&sql).bind(micros(now)).bind(limit as i64).fetch_all(pool).await.map_err(storage_error)?;
    rows.iter().map(rows::stream).collect()
}

pub(crate) async fn claim(
    pool: &SqlitePool,
    stream: &Stream,
    action: Action,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Stream>> {
    let lease_end = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::days(1));
    let extra = match action {
        Action::Fire => "",
        Action::Expire => " AND (state <> 1 OR fire_timestamp IS NULL)",
    };
    let sql = format!(
        "UPDATE stream SET state = ?3, state_serial_no = state_serial_no + 1, open = 0, \
         lease_expires_at = ?4, attempts = attempts + 1 \
         WHERE id = ?1 AND state_serial_no = ?2{extra} RETURNING {STREAM_COLUMNS}"
    );
    let mut tx = begin(pool).await?;
    let row = sqlx::query(&sql)
        .bind(stream.id)
        .bind(stream.state_serial_no as i64)
        .bind(action.working_state() as i64)
        .bind(micros(lease_end))
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage_error)?;
    tx.commit().await.map_err(storage_error)?;
    row.as_ref().map(rows::stream).transpose()
}

pub(crate) async fn finish(
    pool: &SqlitePool,
    claimed: &Stream,
    outcome: Finish<'_>,
    now: DateTime<Utc>,
) -> Result<FinishOutcome> {
    let mut tx = begin(pool).await?;
    let done = match &outcome {
        Finish::Completed { purge: true, .. } => {
            sqlx::query("DELETE FROM stream WHERE id = ? AND state_serial_no = ?")
                .bind(claimed.id)
                .bind(claimed.state_serial_no as i64)
                .execute(&mut *tx)
                .await
        }
        Finish::Completed { purge: false, .. } | Finish::Failed { .. } => {
            let (state, reason) = match &outcome {
                Finish::Failed { reason } => (
                    match claimed.state {
                        StreamState::Expiring => StreamState::ExpireError,
                        _ => StreamState::Error,
                    },
                    Some(*reason),
                ),
                _ => (StreamState::Completed, None),
            };
            sqlx::query(
                "UPDATE stream SET state = ?, state_serial_no = state_serial_no + 1, lease_expires_at = NULL, last_error = ? \
                 WHERE id = ? AND state_serial_no = ?",
            )
            .bind(state as i64)
            .bind(reason)
            .bind(claimed.id)
            .bind(claimed.state_serial_no as i64)
            .execute(&mut *tx)
            .await
        }
    }
    .map_err(storage_error)?
    .rows_affected();
    if done != 1 {
        tx.rollback().await.map_err(storage_error)?;
        return Ok(FinishOutcome::LostLease);
    }
    let outcomes = match outcome {
        Finish::Completed { new_events, .. } => ingest_in_tx(&mut tx, new_events, now).await?,
        Finish::Failed { .. } => vec![],
    };
    tx.commit().await.map_err(storage_error)?;
    Ok(FinishOutcome::Done(outcomes))
}

pub(crate) async fn get(pool: &SqlitePool, id: i64) -> Result<Option<Stream>> {
    let sql = format!("SELECT {STREAM_COLUMNS} FROM stream WHERE id = ?");
    let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await.map_err(storage_error)?;
    row.as_ref().map(rows::stream).transpose()
}

pub(crate) async fn retry(pool: &SqlitePool, id: i64) -> Result<Option<Stream>> {
    for _ in 0..10 {
        let Some(s) = get(pool, id).await? else { return Ok(None) };
        let Some(to) = s.state.retry_state() else { return Ok(Some(s)) };
        let sql = format!("UPDATE stream SET state = ?, state_serial_no = state_serial_no + 1 WHERE id = ? AND state_serial_no = ? RETURNING {STREAM_COLUMNS}");
        let mut tx = begin(pool).await?;
        let row = sqlx::query(&sql)
            .bind(to as i64)
            .bind(id)
            .bind(s.state_serial_no as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        if let Some(r) = row {
            return rows::stream(&r).map(Some);
        }
    }
    Err(StorageError::Conflict(format!("stream {id} kept changing while retrying it").into()))
}

pub(crate) async fn purge(pool: &SqlitePool, id: i64) -> Result<bool> {
    let n = sqlx::query("DELETE FROM stream WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await
        .map_err(storage_error)?
        .rows_affected();
    Ok(n == 1)
}

pub(crate) async fn next_due(pool: &SqlitePool, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let v: Option<i64> = sqlx::query_scalar(
        "SELECT min(t) FROM ( \
           SELECT min(fire_timestamp) AS t FROM stream WHERE state IN (1, 7) AND fire_timestamp > ?1 \
           UNION ALL SELECT min(expire_timestamp) FROM stream WHERE state = 1 AND fire_timestamp IS NULL AND expire_timestamp > ?1 \
           UNION ALL SELECT min(expire_timestamp) FROM stream WHERE state = 8 AND expire_timestamp > ?1 \
           UNION ALL SELECT min(lease_expires_at) FROM stream WHERE state IN (2, 3) AND lease_expires_at > ?1)",
    )
    .bind(micros(now))
    .fetch_one(pool)
    .await
    .map_err(storage_error)?;
    v.map(rows::time).transpose()
}
