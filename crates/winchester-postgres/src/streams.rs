//! Stream queries and compare-and-set state changes.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;
use winchester_storage::{Action, Finish, FinishOutcome, Result, StorageError, Stream, StreamState};

use crate::errors::storage_error;
use crate::ingest::ingest_in_tx;
use crate::rows::{self, STREAM_COLUMNS};

pub(crate) async fn ready(pool: &PgPool, action: Action, now: DateTime<Utc>, limit: u32) -> Result<Vec<Stream>> {
    // Each branch walks its own partial index; a stream that is due to fire is
    // never picked for expiry (fire wins).
    let sql = match action {
        Action::Fire => format!(
            "(SELECT {STREAM_COLUMNS} FROM stream WHERE state IN (1, 7) AND fire_timestamp <= $1 ORDER BY fire_timestamp LIMIT $2) \
             UNION ALL \
             (SELECT {STREAM_COLUMNS} FROM stream WHERE state = 2 AND lease_expires_at <= $1 ORDER BY lease_expires_at LIMIT $2) \
             LIMIT $2"
        ),
        Action::Expire => format!(
            "(SELECT {STREAM_COLUMNS} FROM stream WHERE state = 1 AND fire_timestamp IS NULL AND expire_timestamp <= $1 ORDER BY expire_timestamp LIMIT $2) \
             UNION ALL \
             (SELECT {STREAM_COLUMNS} FROM stream WHERE state = 8 AND expire_timestamp <= $1 ORDER BY expire_timestamp LIMIT $2) \
             UNION ALL \
             (SELECT {STREAM_COLUMNS} FROM stream WHERE state = 3 AND lease_expires_at <= $1 ORDER BY lease_expires_at LIMIT $2) \
             LIMIT $2"
        ),
    };
    let rows = sqlx::query(&sql).bind(now).bind(limit as i64).fetch_all(pool).await.map_err(storage_error)?;
    rows.iter().map(rows::stream).collect()
}

pub(crate) async fn claim(
    pool: &PgPool,
    stream: &Stream,
    action: Action,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Stream>> {
    let lease_end = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::days(1));
    // An expire claim must not take a stream that became ready to fire since it was read.
    let extra = match action {
        Action::Fire => "",
        Action::Expire => " AND (state <> 1 OR fire_timestamp IS NULL)",
    };
    let sql = format!(
        "UPDATE stream SET state = $3, state_serial_no = state_serial_no + 1, open = FALSE, \
         lease_expires_at = $4, attempts = attempts + 1 \
         WHERE id = $1 AND state_serial_no = $2{extra} RETURNING {STREAM_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(stream.id)
        .bind(stream.state_serial_no)
        .bind(action.working_state() as i16)
        .bind(lease_end)
        .fetch_optional(pool)
        .await
        .map_err(storage_error)?;
    row.as_ref().map(rows::stream).transpose()
}

pub(crate) async fn finish(
    pool: &PgPool,
    claimed: &Stream,
    outcome: Finish<'_>,
    now: DateTime<Utc>,
) -> Result<FinishOutcome> {
    let mut tx = pool.begin().await.map_err(storage_error)?;
    let (sql, reason, state) = match &outcome {
        Finish::Completed { purge: true, .. } => ("DELETE FROM stream WHERE id = $1 AND state_serial_no = $2", None, None),
        Finish::Completed { purge: false, .. } => (
            "UPDATE stream SET state = $3, state_serial_no = state_serial_no + 1, lease_expires_at = NULL, last_error = $4 \
             WHERE id = $1 AND state_serial_no = $2",
            None,
            Some(StreamState::Completed),
        ),
        Finish::Failed { reason } => (
            "UPDATE stream SET state = $3, state_serial_no = state_serial_no + 1, lease_expires_at = NULL, last_error = $4 \
             WHERE id = $1 AND state_serial_no = $2",
            Some(*reason),
            Some(match claimed.state {
                StreamState::Expiring => StreamState::ExpireError,
                _ => StreamState::Error,
            }),
        ),
    };
    let mut q = sqlx::query(sql).bind(claimed.id).bind(claimed.state_serial_no);
    if let Some(state) = state {
        q = q.bind(state as i16).bind(reason);
    }
    let done = q.execute(&mut *tx).await.map_err(storage_error)?.rows_affected();
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

pub(crate) async fn get(pool: &PgPool, id: i64) -> Result<Option<Stream>> {
    let sql = format!("SELECT {STREAM_COLUMNS} FROM stream WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await.map_err(storage_error)?;
    row.as_ref().map(rows::stream).transpose()
}

pub(crate) async fn retry(pool: &PgPool, id: i64) -> Result<Option<Stream>> {
    for _ in 0..10 {
        let Some(s) = get(pool, id).await? else { return Ok(None) };
        let Some(to) = s.state.retry_state() else { return Ok(Some(s)) };
        let sql = format!(
            "UPDATE stream SET state = $3, state_serial_no = state_serial_no + 1 \
             WHERE id = $1 AND state_serial_no = $2 RETURNING {STREAM_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(s.state_serial_no)
            .bind(to as i16)
            .fetch_optional(pool)
            .await
            .map_err(storage_error)?;
        if let Some(r) = row {
            return rows::stream(&r).map(Some);
        }
    }
    Err(StorageError::Conflict(format!("stream {id} kept changing while retrying it").into()))
}

pub(crate) async fn purge(pool: &PgPool, id: i64) -> Result<bool> {
    let n = sqlx::query("DELETE FROM stream WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(storage_error)?
        .rows_affected();
    Ok(n == 1)
}

pub(crate) async fn next_due(pool: &PgPool, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "SELECT LEAST( \
           (SELECT min(fire_timestamp) FROM stream WHERE state IN (1, 7) AND fire_timestamp > $1), \
           (SELECT min(expire_timestamp) FROM stream WHERE state = 1 AND fire_timestamp IS NULL AND expire_timestamp > $1), \
           (SELECT min(expire_timestamp) FROM stream WHERE state = 8 AND expire_timestamp > $1), \
           (SELECT min(lease_expires_at) FROM stream WHERE state IN (2, 3) AND lease_expires_at > $1))",
    )
    .bind(now)
    .fetch_one(pool)
    .await
    .map_err(storage_error)
}
