//! Saving events and their stream memberships (see the PostgreSQL backend for
//! the rules). Writers are serialised by `BEGIN IMMEDIATE`, so a key's open
//! stream cannot change under us between reading and writing it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool, Transaction};
use std::collections::{HashMap, HashSet};
use winchester_storage::decode;
use winchester_storage::fold::{fold_group, group_by_key, outcomes, StreamDraft};
use winchester_storage::{expect_written, EventPlan, IngestOutcome, IngestStore, Result, StorageError};

use crate::rows::{micros, Lite};
use crate::{storage_error, SqliteStorage};

/// Starts a write transaction holding the database's write lock from the
/// start (`BEGIN IMMEDIATE`); the connection's busy timeout makes other
/// writers wait their turn instead of failing.
pub(crate) async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE").await.map_err(storage_error)
}

#[async_trait]
impl IngestStore for SqliteStorage {
    async fn ingest(&self, batch: &[EventPlan], now: DateTime<Utc>) -> Result<Vec<IngestOutcome>> {
        let mut tx = begin(&self.pool).await?;
        let out = ingest_in_tx(&mut tx, batch, now).await?;
        tx.commit().await.map_err(storage_error)?;
        Ok(out)
    }
}

pub(crate) async fn ingest_in_tx(
    conn: &mut SqliteConnection,
    batch: &[EventPlan],
    now: DateTime<Utc>,
) -> Result<Vec<IngestOutcome>> {
    if batch.is_empty() {
        return Ok(vec![]);
    }
    let corrupt = |e: serde_json::Error| StorageError::Corrupt(e.to_string());
    // 1. Every event in one statement (rows from a JSON array); the rows that
    // come back are the ones inserted, the rest are duplicates.
    let mut rows = Vec::with_capacity(batch.len());
    for p in batch {
        let e = &p.event;
        let traits = serde_json::to_string(&e.traits).map_err(corrupt)?;
        rows.push(serde_json::json!([e.message_id, e.event_type, micros(e.timestamp), traits]));
    }
    let rows = serde_json::to_string(&rows).map_err(corrupt)?;
    let inserted_rows = sqlx::query(
        "INSERT INTO event (message_id, event_type, generated, traits) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?) WHERE true \
         ON CONFLICT (message_id) DO NOTHING RETURNING id, message_id",
    )
    .bind(rows)
    .fetch_all(&mut *conn)
    .await
    .map_err(storage_error)?;
    let mut inserted: HashMap<String, i64> = HashMap::with_capacity(inserted_rows.len());
    for r in inserted_rows {
        inserted.insert(r.try_get("message_id").map_err(storage_error)?, r.try_get("id").map_err(storage_error)?);
    }
    // The first occurrence of an inserted message_id is the saved one.
    let event_ids: Vec<Option<i64>> = batch.iter().map(|p| inserted.remove(&p.event.message_id)).collect();
    let groups = group_by_key(batch, &event_ids);
    let mut stream_of: HashMap<(usize, usize), i64> = HashMap::new();
    let mut opened: HashSet<(usize, usize)> = HashSet::new();
    // 2a. The open streams of every key of the batch, in one query.
    let keys: Vec<(&str, &str)> = groups.keys().copied().collect();
    let mut existing: HashMap<(String, String), StreamDraft> = HashMap::with_capacity(keys.len());
    if !keys.is_empty() {
        let rows = sqlx::query(
            "SELECT s.id, s.trigger_name, s.dist_key, s.first_event, s.last_event, s.expire_timestamp, \
               s.fire_timestamp, s.event_count, s.fire_counts, s.version \
             FROM json_each(?) k JOIN stream s \
               ON s.trigger_name = k.value ->> 0 AND s.dist_key = k.value ->> 1 AND s.open = 1",
        )
        .bind(serde_json::to_string(&keys).map_err(corrupt)?)
        .fetch_all(&mut *conn)
        .await
        .map_err(storage_error)?;
        for r in &rows {
            let (key, draft) = decode::open_stream::<Lite>(r)?;
            existing.insert(key, draft);
        }
    }
    // 2b. Fold each key's events into its streams.
    let mut folds = Vec::with_capacity(groups.len());
    for ((trigger_name, dist_key), entries) in &groups {
        let m0 = &batch[entries[0].0].memberships[entries[0].1];
        let existing = existing.remove(&(trigger_name.to_string(), dist_key.to_string()));
        let events = entries.iter().map(|&(i, j)| {
            (batch[i].event.timestamp, batch[i].memberships[j].fire_hits.as_slice(), batch[i].arrival(now))
        });
        folds.push((*trigger_name, *dist_key, m0, entries, fold_group(&m0.trigger, existing, events, now)));
    }
    // 2c. Existing streams written back in one statement (first, so a stream
    // closed here makes room for its key's new open one).
    let mut updates = Vec::new();
    let mut inserts = Vec::new();
    for (trigger_name, dist_key, m0, _, folded) in &folds {
        for d in &folded.drafts {
            let counts = serde_json::to_string(&d.counts).map_err(corrupt)?;
            let row = (micros(d.first), micros(d.last), micros(d.expire), d.fire.map(micros), d.count, counts, d.open);
            match d.id {
                Some(id) => {
                    updates.push(serde_json::json!([id, row.0, row.1, row.2, row.3, row.4, row.5, row.6 as i64]))
                }
                None => {
                    let dist = serde_json::to_string(&m0.dist).map_err(corrupt)?;
                    inserts.push(serde_json::json!([
                        trigger_name,
                        dist_key,
                        dist,
                        row.6 as i64,
                        row.0,
                        row.1,
                        row.2,
                        row.3,
                        row.4,
                        row.5,
                        d.version
                    ]))
                }
            }
        }
    }
    if !updates.is_empty() {
        sqlx::query(
            "UPDATE stream SET first_event = u.value ->> 1, last_event = u.value ->> 2, \
               expire_timestamp = u.value ->> 3, fire_timestamp = u.value ->> 4, event_count = u.value ->> 5, \
               fire_counts = u.value ->> 6, open = u.value ->> 7 \
             FROM json_each(?) u WHERE stream.id = u.value ->> 0",
        )
        .bind(serde_json::to_string(&updates).map_err(corrupt)?)
        .execute(&mut *conn)
        .await
        .map_err(storage_error)?;
    }
    // 2d. New streams in one statement, in array order: under the write lock
    // AUTOINCREMENT gives them rising ids, so the sorted ids are theirs in order.
    let mut new_ids: Vec<i64> = Vec::new();
    if !inserts.is_empty() {
        new_ids = sqlx::query_scalar(
            "INSERT INTO stream (trigger_name, dist_key, dist_traits, open, first_event, last_event, \
               expire_timestamp, fire_timestamp, event_count, fire_counts, version) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
               value ->> 7, value ->> 8, value ->> 9, value ->> 10 FROM json_each(?) ORDER BY key RETURNING id",
        )
        .bind(serde_json::to_string(&inserts).map_err(corrupt)?)
        .fetch_all(&mut *conn)
        .await
        .map_err(storage_error)?;
        expect_written(new_ids.len(), inserts.len(), "new streams")?;
        new_ids.sort_unstable();
    }
    let mut next_new = new_ids.into_iter();
    for (_, _, _, entries, folded) in &folds {
        let mut ids = Vec::with_capacity(folded.drafts.len());
        for d in &folded.drafts {
            ids.push(match d.id {
                Some(id) => id,
                None => next_new.next().ok_or_else(|| StorageError::Corrupt("a new stream has no id".into()))?,
            });
        }
        for ((entry, k), &opens) in entries.iter().zip(&folded.assignment).zip(&folded.opens) {
            stream_of.insert(*entry, ids[*k]);
            if opens {
                opened.insert(*entry);
            }
        }
    }
    // 3. Every membership in one statement.
    if !stream_of.is_empty() {
        let pairs: Vec<(i64, i64)> =
            stream_of.iter().filter_map(|(&(i, _), &sid)| event_ids[i].map(|eid| (sid, eid))).collect();
        sqlx::query("INSERT INTO stream_event (stream_id, event_id) SELECT value ->> 0, value ->> 1 FROM json_each(?)")
            .bind(serde_json::to_string(&pairs).map_err(corrupt)?)
            .execute(&mut *conn)
            .await
            .map_err(storage_error)?;
    }
    Ok(outcomes(batch, &event_ids, &stream_of, &opened))
}
