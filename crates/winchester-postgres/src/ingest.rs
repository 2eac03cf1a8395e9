//! Saving events and their stream memberships.
//!
//! One transaction per batch, set-based where it can be:
//! 1. all events in one `INSERT .. SELECT FROM UNNEST .. ON CONFLICT DO NOTHING`
//!    (duplicates are the rows that come back missing);
//! 2. per (trigger, distinguishing key), in sorted order so concurrent batches
//!    lock in the same order: lock the open stream (`FOR UPDATE`), fold the
//!    batch's events into it in memory (first/last, counts per fire criteria,
//!    expire and fire times), and write it back once;
//! 3. all memberships in one `INSERT .. UNNEST`;
//! 4. one `NOTIFY` if a stream became ready to fire.
//!
//! "One open stream per key" is the partial unique index `stream_open_key`. A
//! new key's first stream is inserted open with `ON CONFLICT DO NOTHING`: when
//! another ingester won that race we redo the key, now finding its stream.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use winchester_storage::fold::{fold_group, StreamDraft};
use winchester_storage::{EventPlan, IngestOutcome, Membership, Result, StorageError};

use crate::errors::storage_error;
use crate::READY_CHANNEL;

/// How often a batch is retried after a transient conflict (deadlock, lost race).
const MAX_ATTEMPTS: u32 = 8;

pub(crate) async fn ingest(pool: &PgPool, batch: &[EventPlan], now: DateTime<Utc>) -> Result<Vec<IngestOutcome>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            let mut tx = pool.begin().await.map_err(storage_error)?;
            let out = ingest_in_tx(&mut tx, batch, now).await?;
            tx.commit().await.map_err(storage_error)?;
            Ok(out)
        }
        .await;
        match result {
            Err(e @ StorageError::Conflict(_)) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(attempt, error = %e, "Ingest conflict, retrying batch.");
                tokio::time::sleep(Duration::from_millis(5 * attempt as u64)).await;
            }
            other => return other,
        }
    }
}

/// Saves a batch inside an open transaction. Used by ingest and by a worker
/// saving a pipeline's new events together with the stream's completion.
pub(crate) async fn ingest_in_tx(conn: &mut PgConnection, batch: &[EventPlan], now: DateTime<Utc>) -> Result<Vec<IngestOutcome>> {
    if batch.is_empty() {
        return Ok(vec![]);
    }
    // 1. Events, in message_id order so concurrent batches lock alike.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by(|a, b| batch[*a].event.message_id.cmp(&batch[*b].event.message_id));
    let mut ids = Vec::with_capacity(batch.len());
    let mut types = Vec::with_capacity(batch.len());
    let mut times = Vec::with_capacity(batch.len());
    let mut traits = Vec::with_capacity(batch.len());
    for &i in &order {
        let e = &batch[i].event;
        ids.push(e.message_id.as_str());
        types.push(e.event_type.as_str());
        times.push(e.timestamp);
        traits.push(Json(&e.traits));
    }
    let rows = sqlx::query(
        "INSERT INTO event (message_id, event_type, generated, traits) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[]) \
         ON CONFLICT (message_id) DO NOTHING RETURNING id, message_id",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&times)
    .bind(&traits)
    .fetch_all(&mut *conn)
    .await
    .map_err(storage_error)?;
    let mut inserted: HashMap<String, i64> = HashMap::with_capacity(rows.len());
    for r in rows {
        inserted.insert(r.try_get("message_id").map_err(storage_error)?, r.try_get("id").map_err(storage_error)?);
    }
    // The first occurrence of an inserted message_id is the saved one; any
    // repeat in the same batch is a duplicate.
    let mut event_ids: Vec<Option<i64>> = Vec::with_capacity(batch.len());
    for p in batch {
        event_ids.push(inserted.remove(&p.event.message_id));
    }

    // 2. Streams, grouped by key, keys in sorted order.
    let mut groups: BTreeMap<(&str, &str), Vec<(usize, usize)>> = BTreeMap::new();
    for (i, p) in batch.iter().enumerate() {
        if event_ids[i].is_none() {
            continue;
        }
        for (j, m) in p.memberships.iter().enumerate() {
            groups.entry((m.trigger.name.as_str(), m.dist_key.as_str())).or_default().push((i, j));
        }
    }
    let mut stream_of: HashMap<(usize, usize), i64> = HashMap::new();
    let mut notify = false;
    for ((trigger_name, dist_key), entries) in &groups {
        let (assigned, ready) = write_group(conn, batch, trigger_name, dist_key, entries, now).await?;
        notify |= ready;
        for (entry, sid) in entries.iter().zip(assigned) {
            stream_of.insert(*entry, sid);
        }
    }

    // 3. Memberships.
    if !stream_of.is_empty() {
        let (sids, eids): (Vec<i64>, Vec<i64>) = stream_of
            .iter()
            .map(|((i, _), sid)| (*sid, event_ids[*i].expect("grouped events were saved")))
            .unzip();
        sqlx::query("INSERT INTO stream_event (stream_id, event_id) SELECT * FROM UNNEST($1::bigint[], $2::bigint[])")
            .bind(&sids)
            .bind(&eids)
            .execute(&mut *conn)
            .await
            .map_err(storage_error)?;
    }
    // 4. Wake idle workers (delivered on commit).
    if notify {
        sqlx::query("SELECT pg_notify($1, '')").bind(READY_CHANNEL).execute(&mut *conn).await.map_err(storage_error)?;
    }
    Ok(batch
        .iter()
        .enumerate()
        .map(|(i, p)| match event_ids[i] {
            None => IngestOutcome::Duplicate,
            Some(event_id) => IngestOutcome::Saved {
                event_id,
                stream_ids: (0..p.memberships.len()).map(|j| stream_of[&(i, j)]).collect(),
            },
        })
        .collect())
}

/// Folds one key's events into its streams and writes them. Returns the stream
/// id for each entry and whether a stream became ready to fire.
async fn write_group(
    conn: &mut PgConnection,
    batch: &[EventPlan],
    trigger_name: &str,
    dist_key: &str,
    entries: &[(usize, usize)],
    now: DateTime<Utc>,
) -> Result<(Vec<i64>, bool)> {
    let membership = |(i, j): (usize, usize)| -> &Membership { &batch[i].memberships[j] };
    let trigger = membership(entries[0]).trigger.clone();
    'retry: loop {
        let existing = sqlx::query(
            "SELECT id, first_event, last_event, expire_timestamp, fire_timestamp, event_count, fire_counts \
             FROM stream WHERE trigger_name = $1 AND dist_key = $2 AND open FOR UPDATE",
        )
        .bind(trigger_name)
        .bind(dist_key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(storage_error)?;
        let existing = match existing {
            Some(r) => Some(StreamDraft {
                id: Some(r.try_get("id").map_err(storage_error)?),
                first: r.try_get("first_event").map_err(storage_error)?,
                last: r.try_get("last_event").map_err(storage_error)?,
                expire: r.try_get("expire_timestamp").map_err(storage_error)?,
                fire: r.try_get("fire_timestamp").map_err(storage_error)?,
                count: r.try_get("event_count").map_err(storage_error)?,
                counts: r.try_get("fire_counts").map_err(storage_error)?,
                open: true,
            }),
            None => None,
        };
        let events = entries.iter().map(|&(i, j)| (batch[i].event.timestamp, membership((i, j)).fire_hits.as_slice()));
        let folded = fold_group(&trigger, existing, events, now);
        let (mut drafts, assignment, ready) = (folded.drafts, folded.assignment, folded.ready);
        let dist_json = Json(&membership(entries[0]).dist);
        for k in 0..drafts.len() {
            let d = &drafts[k];
            let id = match d.id {
                Some(id) => {
                    update_stream(conn, id, d).await?;
                    id
                }
                None => {
                    // The first new stream of a key claims the key: inserted open, so
                    // a concurrent ingester's insert for the same key conflicts.
                    let claim_key = k == 0;
                    let row = sqlx::query(
                        "INSERT INTO stream (trigger_name, dist_key, dist_traits, open, first_event, last_event, \
                         expire_timestamp, fire_timestamp, event_count, fire_counts) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (trigger_name, dist_key) WHERE open DO NOTHING RETURNING id",
                    )
                    .bind(trigger_name)
                    .bind(dist_key)
                    .bind(&dist_json)
                    .bind(claim_key || d.open)
                    .bind(d.first)
                    .bind(d.last)
                    .bind(d.expire)
                    .bind(d.fire)
                    .bind(d.count)
                    .bind(&d.counts)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(storage_error)?;
                    let Some(row) = row else {
                        if claim_key {
                            // Another ingester opened this key's stream first; redo the key.
                            continue 'retry;
                        }
                        return Err(StorageError::Conflict(format!("open stream for {trigger_name} {dist_key} appeared while locked").into()));
                    };
                    let id: i64 = row.try_get("id").map_err(storage_error)?;
                    if claim_key && !d.open {
                        sqlx::query("UPDATE stream SET open = FALSE WHERE id = $1").bind(id).execute(&mut *conn).await.map_err(storage_error)?;
                    }
                    id
                }
            };
            drafts[k].id = Some(id);
        }
        let ids = assignment.into_iter().map(|k| drafts[k].id.expect("written")).collect();
        return Ok((ids, ready));
    }
}

async fn update_stream(conn: &mut PgConnection, id: i64, d: &StreamDraft) -> Result<()> {
    sqlx::query(
        "UPDATE stream SET first_event = $2, last_event = $3, expire_timestamp = $4, fire_timestamp = $5, \
         event_count = $6, fire_counts = $7, open = $8 WHERE id = $1",
    )
    .bind(id)
    .bind(d.first)
    .bind(d.last)
    .bind(d.expire)
    .bind(d.fire)
    .bind(d.count)
    .bind(&d.counts)
    .bind(d.open)
    .execute(&mut *conn)
    .await
    .map_err(storage_error)?;
    Ok(())
}
