//! Saving events and their stream memberships (see the PostgreSQL backend for
//! the rules). Writers are serialised by `BEGIN IMMEDIATE`, so a key's open
//! stream cannot change under us between reading and writing it.

use chrono::{DateTime, Utc};
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool, Transaction};
use std::collections::{HashMap, HashSet};
use winchester_storage::fold::{fold_group, group_by_key, outcomes, StreamDraft};
use winchester_storage::{EventPlan, IngestOutcome, Result, StorageError};

use crate::rows::{micros, time};
use crate::storage_error;

/// Starts a write transaction holding the database's write lock from the
/// start (`BEGIN IMMEDIATE`); the connection's busy timeout makes other
/// writers wait their turn instead of failing.
pub(crate) async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE").await.map_err(storage_error)
}

pub(crate) async fn ingest(pool: &SqlitePool, batch: &[EventPlan], now: DateTime<Utc>) -> Result<Vec<IngestOutcome>> {
    let mut tx = begin(pool).await?;
    let out = ingest_in_tx(&mut tx, batch, now).await?;
    tx.commit().await.map_err(storage_error)?;
    Ok(out)
}

pub(crate) async fn ingest_in_tx(
    conn: &mut SqliteConnection,
    batch: &[EventPlan],
    now: DateTime<Utc>,
) -> Result<Vec<IngestOutcome>> {
    let mut event_ids: Vec<Option<i64>> = Vec::with_capacity(batch.len());
    for p in batch {
        let e = &p.event;
        let traits = serde_json::to_string(&e.traits).map_err(|err| StorageError::Corrupt(err.to_string()))?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO event (message_id, event_type, generated, traits) VALUES (?, ?, ?, ?) \
             ON CONFLICT (message_id) DO NOTHING RETURNING id",
        )
        .bind(&e.message_id)
        .bind(&e.event_type)
        .bind(micros(e.timestamp))
        .bind(traits)
        .fetch_optional(&mut *conn)
        .await
        .map_err(storage_error)?;
        event_ids.push(id);
    }
    let groups = group_by_key(batch, &event_ids);
    let mut stream_of: HashMap<(usize, usize), i64> = HashMap::new();
    let mut opened: HashSet<(usize, usize)> = HashSet::new();
    for ((trigger_name, dist_key), entries) in &groups {
        let m0 = &batch[entries[0].0].memberships[entries[0].1];
        let row = sqlx::query(
            "SELECT id, first_event, last_event, expire_timestamp, fire_timestamp, event_count, fire_counts, version \
             FROM stream WHERE trigger_name = ? AND dist_key = ? AND open = 1",
        )
        .bind(*trigger_name)
        .bind(*dist_key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(storage_error)?;
        let existing = match row {
            Some(r) => Some(StreamDraft {
                id: Some(r.try_get("id").map_err(storage_error)?),
                first: time(r.try_get("first_event").map_err(storage_error)?)?,
                last: time(r.try_get("last_event").map_err(storage_error)?)?,
                expire: time(r.try_get("expire_timestamp").map_err(storage_error)?)?,
                fire: r.try_get::<Option<i64>, _>("fire_timestamp").map_err(storage_error)?.map(time).transpose()?,
                count: r.try_get("event_count").map_err(storage_error)?,
                counts: crate::rows::json(&r, "fire_counts")?,
                open: true,
                version: r.try_get("version").map_err(storage_error)?,
            }),
            None => None,
        };
        let events =
            entries.iter().map(|&(i, j)| (batch[i].event.timestamp, batch[i].memberships[j].fire_hits.as_slice()));
        let folded = fold_group(&m0.trigger, existing, events, now);
        let dist_json = serde_json::to_string(&m0.dist).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let mut ids = Vec::with_capacity(folded.drafts.len());
        for d in &folded.drafts {
            let counts = serde_json::to_string(&d.counts).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let id = match d.id {
                Some(id) => {
                    sqlx::query(
                        "UPDATE stream SET first_event = ?, last_event = ?, expire_timestamp = ?, fire_timestamp = ?, \
                         event_count = ?, fire_counts = ?, open = ? WHERE id = ?",
                    )
                    .bind(micros(d.first))
                    .bind(micros(d.last))
                    .bind(micros(d.expire))
                    .bind(d.fire.map(micros))
                    .bind(d.count)
                    .bind(counts)
                    .bind(d.open as i64)
                    .bind(id)
                    .execute(&mut *conn)
                    .await
                    .map_err(storage_error)?;
                    id
                }
                None => sqlx::query_scalar(
                    "INSERT INTO stream (trigger_name, dist_key, dist_traits, open, first_event, last_event, \
                     expire_timestamp, fire_timestamp, event_count, fire_counts, version) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(*trigger_name)
                .bind(*dist_key)
                .bind(&dist_json)
                .bind(d.open as i64)
                .bind(micros(d.first))
                .bind(micros(d.last))
                .bind(micros(d.expire))
                .bind(d.fire.map(micros))
                .bind(d.count)
                .bind(counts)
                .bind(d.version.as_deref())
                .fetch_one(&mut *conn)
                .await
                .map_err(storage_error)?,
            };
            ids.push(id);
        }
        for ((entry, k), &opens) in entries.iter().zip(&folded.assignment).zip(&folded.opens) {
            stream_of.insert(*entry, ids[*k]);
            if opens {
                opened.insert(*entry);
            }
        }
    }
    for (&(i, _), sid) in &stream_of {
        sqlx::query("INSERT INTO stream_event (stream_id, event_id) VALUES (?, ?)")
            .bind(*sid)
            .bind(event_ids[i].expect("grouped events were saved"))
            .execute(&mut *conn)
            .await
            .map_err(storage_error)?;
    }
    Ok(outcomes(batch, &event_ids, &stream_of, &opened))
}
