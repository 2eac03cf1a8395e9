//! Saving events and their stream memberships.
//!
//! One transaction per batch, set-based: a constant number of round trips
//! however many events and streams the batch touches.
//! 0. (before the transaction) partitions for days not seen before, see
//!    [`crate::partitions::Days::ensure`];
//! 1. all events in one statement: their dedup keys `INSERT .. SELECT FROM
//!    UNNEST .. ON CONFLICT DO NOTHING` into `event_key` (duplicates are the
//!    rows that come back missing), the events of the keys inserted into the
//!    partitioned `event` with the ids the keys drew;
//! 2. streams, for every (trigger, distinguishing key) of the batch at once:
//!    - (a) one `SELECT .. FOR UPDATE` locks the keys' open streams, in sorted
//!      key order (`COLLATE "C"`, the same byte order as the batch's own sort)
//!      so concurrent batches lock alike;
//!    - (b) the batch's events are folded into them in memory (first/last,
//!      counts per fire criteria, expire and fire times);
//!    - (c) keys without an open stream are claimed: their first new stream is
//!      inserted open in one `INSERT .. ON CONFLICT DO NOTHING` (one row per
//!      key, in key order); a key another ingester claimed first comes back
//!      missing and is redone from (a), now finding that stream;
//!    - (d) existing streams and claims are written back in one `UPDATE .. FROM
//!      UNNEST` (this also closes expired streams before (e) opens successors);
//!    - (e) any further new streams (a key whose stream expired) in one
//!      `INSERT` with ids drawn from the sequence, so each draft knows its id;
//! 3. all memberships in one `INSERT .. UNNEST`;
//! 4. one `NOTIFY` if a stream became ready to fire.
//!
//! "One open stream per key" is the partial unique index `stream_open_key`. A
//! new key's first stream is inserted open with `ON CONFLICT DO NOTHING`: when
//! another ingester won that race we redo the key, now finding its stream.
//! Deadlocks (possible only when a redone key is locked out of order) are
//! transient conflicts: the whole batch is retried.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use winchester_storage::decode;
use winchester_storage::fold::{assign_streams, fold_group, group_by_key, outcomes, FoldedGroup, StreamDraft};
use winchester_storage::{expect_written, EventPlan, IngestOutcome, IngestStore, Membership, Result, StorageError};

use crate::errors::storage_error;
use crate::rows::Pg;
use crate::{PgStorage, READY_CHANNEL};

/// How often a batch is retried after a transient conflict (deadlock, lost race).
const MAX_ATTEMPTS: u32 = 8;

#[async_trait]
impl IngestStore for PgStorage {
    async fn ingest(&self, batch: &[EventPlan], now: DateTime<Utc>) -> Result<Vec<IngestOutcome>> {
        self.days.ensure_for(self, batch).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let mut tx = self.pool.begin().await.map_err(storage_error)?;
                let out = ingest_in_tx(&mut tx, self.named(), batch, now).await?;
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
}

/// Saves a batch inside an open transaction. Used by ingest and by a worker
/// saving a pipeline's new events together with the stream's completion.
pub(crate) async fn ingest_in_tx(
    conn: &mut PgConnection,
    named: bool,
    batch: &[EventPlan],
    now: DateTime<Utc>,
) -> Result<Vec<IngestOutcome>> {
    if batch.is_empty() {
        return Ok(vec![]);
    }
    // 1. Events, in message_id order so concurrent batches lock alike; a
    // message_id repeated in the batch is sent once (its first occurrence).
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by(|a, b| batch[*a].event.message_id.cmp(&batch[*b].event.message_id));
    order.dedup_by(|a, b| batch[*a].event.message_id == batch[*b].event.message_id);
    let mut ids = Vec::with_capacity(order.len());
    let mut types = Vec::with_capacity(order.len());
    let mut times = Vec::with_capacity(order.len());
    let mut traits = Vec::with_capacity(order.len());
    for &i in &order {
        let e = &batch[i].event;
        ids.push(e.message_id.as_str());
        types.push(e.event_type.as_str());
        times.push(e.timestamp);
        traits.push(Json(&e.traits));
    }
    // The key table is the global dedup (a partitioned table has no unique
    // index on message_id alone); each key draws its event's id.
    let rows = sqlx::query(
        "WITH u AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[]) \
           AS u(message_id, event_type, generated, traits)), \
         k AS (INSERT INTO event_key (message_id, generated, event_id) \
           SELECT message_id, generated, nextval('event_id_seq') FROM u \
           ON CONFLICT (message_id) DO NOTHING RETURNING event_id, message_id) \
         INSERT INTO event (id, message_id, event_type, generated, traits) \
         SELECT k.event_id, u.message_id, u.event_type, u.generated, u.traits FROM k JOIN u USING (message_id) \
         RETURNING id, message_id",
    )
    .persistent(named)
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
    let groups = group_by_key(batch, &event_ids);
    let (stream_of, opened, notify) = write_streams(conn, named, batch, &groups, now).await?;

    // 3. Memberships, in key order (the `(stream_id, event_id)` index then
    // takes them page by page instead of at random).
    if !stream_of.is_empty() {
        let mut rows: Vec<(i64, i64, usize)> = Vec::with_capacity(stream_of.len());
        for ((i, _), sid) in &stream_of {
            rows.push((*sid, event_ids[*i].expect("grouped events were saved"), *i));
        }
        rows.sort_unstable();
        let mut sids = Vec::with_capacity(rows.len());
        let mut eids = Vec::with_capacity(rows.len());
        let mut times = Vec::with_capacity(rows.len());
        for (sid, eid, i) in rows {
            sids.push(sid);
            eids.push(eid);
            times.push(batch[i].event.timestamp);
        }
        sqlx::query(
            "INSERT INTO stream_event (stream_id, event_id, generated) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::timestamptz[])",
        )
        .persistent(named)
        .bind(&sids)
        .bind(&eids)
        .bind(&times)
        .execute(&mut *conn)
        .await
        .map_err(storage_error)?;
    }
    // 4. Wake idle workers (delivered on commit).
    if notify {
        sqlx::query("SELECT pg_notify($1, '')")
            .persistent(named)
            .bind(READY_CHANNEL)
            .execute(&mut *conn)
            .await
            .map_err(storage_error)?;
    }
    Ok(outcomes(batch, &event_ids, &stream_of, &opened))
}

/// One key's streams as the batch leaves them.
struct KeyPlan {
    /// The key's open stream was found (locked) rather than claimed.
    had_existing: bool,
    /// Drafts, assignment per entry, and readiness: see [`fold_group`].
    folded: FoldedGroup,
}

/// Folds one key's entries into its open stream (if any).
fn fold(batch: &[EventPlan], entries: &[(usize, usize)], existing: Option<StreamDraft>, now: DateTime<Utc>) -> KeyPlan {
    let membership = |(i, j): (usize, usize)| -> &Membership { &batch[i].memberships[j] };
    let trigger = &membership(entries[0]).trigger;
    let had_existing = existing.is_some();
    let events = entries
        .iter()
        .map(|&(i, j)| (batch[i].event.timestamp, membership((i, j)).fire_hits.as_slice(), batch[i].arrival(now)));
    KeyPlan { had_existing, folded: fold_group(trigger, existing, events, now) }
}

/// `{1,0,2}`: a BIGINT[] literal, so rows of different lengths fit one text[].
fn counts_literal(counts: &[i64]) -> String {
    let inner: Vec<String> = counts.iter().map(i64::to_string).collect();
    format!("{{{}}}", inner.join(","))
}

/// Columns of new stream rows, one Vec per column.
#[derive(Default)]
struct NewRows<'a> {
    trigger: Vec<&'a str>,
    key: Vec<&'a str>,
    dist: Vec<Json<&'a winchester_core::DistTraits>>,
    open: Vec<bool>,
    first: Vec<DateTime<Utc>>,
    last: Vec<DateTime<Utc>>,
    expire: Vec<DateTime<Utc>>,
    fire: Vec<Option<DateTime<Utc>>>,
    count: Vec<i64>,
    counts: Vec<String>,
    version: Vec<Option<&'a str>>,
}

impl<'a> NewRows<'a> {
    fn push(
        &mut self,
        trigger: &'a str,
        trigger_version: Option<&'a str>,
        key: &'a str,
        dist: &'a winchester_core::DistTraits,
        open: bool,
        d: &StreamDraft,
    ) {
        self.trigger.push(trigger);
        self.key.push(key);
        self.dist.push(Json(dist));
        self.open.push(open);
        self.first.push(d.first);
        self.last.push(d.last);
        self.expire.push(d.expire);
        self.fire.push(d.fire);
        self.count.push(d.count);
        self.counts.push(counts_literal(&d.counts));
        // A batch opens streams under the current definition version only.
        self.version.push(trigger_version);
    }
}

/// How many times keys are redone after losing claim races before the batch
/// is given up as a transient conflict (and retried whole).
const MAX_CLAIM_ROUNDS: u32 = 8;

/// Writes every stream the batch touches (step 2). Returns the stream id of
/// each (event, membership) entry and whether any stream became ready to fire.
async fn write_streams(
    conn: &mut PgConnection,
    named: bool,
    batch: &[EventPlan],
    groups: &BTreeMap<(&str, &str), Vec<(usize, usize)>>,
    now: DateTime<Utc>,
) -> Result<(HashMap<(usize, usize), i64>, HashSet<(usize, usize)>, bool)> {
    let keys: Vec<(&str, &str)> = groups.keys().copied().collect();
    let mut plans: Vec<Option<KeyPlan>> = (0..keys.len()).map(|_| None).collect();
    let mut pending: Vec<usize> = (0..keys.len()).collect();
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        if rounds > MAX_CLAIM_ROUNDS {
            return Err(StorageError::Conflict("streams kept being opened by other ingesters".into()));
        }
        // a. Lock the open streams of the pending keys, in key order.
        let names: Vec<&str> = pending.iter().map(|&k| keys[k].0).collect();
        let dist_keys: Vec<&str> = pending.iter().map(|&k| keys[k].1).collect();
        let rows = sqlx::query(
            "SELECT s.id, s.trigger_name, s.dist_key, s.first_event, s.last_event, s.expire_timestamp, s.fire_timestamp, \
               s.event_count, s.fire_counts, s.version \
             FROM stream s JOIN UNNEST($1::text[], $2::text[]) AS k(trigger_name, dist_key) \
               ON s.trigger_name = k.trigger_name AND s.dist_key = k.dist_key \
             WHERE s.open \
             ORDER BY s.trigger_name COLLATE \"C\", s.dist_key COLLATE \"C\" \
             FOR UPDATE OF s",
        ).persistent(named)
        .bind(&names)
        .bind(&dist_keys)
        .fetch_all(&mut *conn)
        .await
        .map_err(storage_error)?;
        let mut existing: HashMap<(String, String), StreamDraft> = HashMap::with_capacity(rows.len());
        for r in &rows {
            let (key, draft) = decode::open_stream::<Pg>(r)?;
            existing.insert(key, draft);
        }
        // b. Fold.
        let mut claims = NewRows::default();
        let mut claim_of: HashMap<(&str, &str), usize> = HashMap::new();
        for &k in &pending {
            let (trigger_name, dist_key) = keys[k];
            let entries = &groups[&keys[k]];
            let found = existing.remove(&(trigger_name.to_string(), dist_key.to_string()));
            let plan = fold(batch, entries, found, now);
            if !plan.had_existing {
                let (i, j) = entries[0];
                let m = &batch[i].memberships[j];
                claims.push(
                    trigger_name,
                    m.trigger.version.as_deref(),
                    dist_key,
                    &m.dist,
                    true,
                    &plan.folded.drafts[0],
                );
                claim_of.insert(keys[k], k);
            }
            plans[k] = Some(plan);
        }
        // c. Claim the keys that had no open stream.
        let mut lost: Vec<usize> = Vec::new();
        if !claims.trigger.is_empty() {
            let rows = sqlx::query(
                "INSERT INTO stream (trigger_name, dist_key, dist_traits, open, first_event, last_event, \
                   expire_timestamp, fire_timestamp, event_count, fire_counts, version) \
                 SELECT u.trigger_name, u.dist_key, u.dist_traits, u.open, u.first_event, u.last_event, u.expire_timestamp, \
                   u.fire_timestamp, u.event_count, u.fire_counts::bigint[], u.version \
                 FROM UNNEST($1::text[], $2::text[], $3::jsonb[], $4::bool[], $5::timestamptz[], $6::timestamptz[], \
                   $7::timestamptz[], $8::timestamptz[], $9::bigint[], $10::text[], $11::text[]) \
                   AS u(trigger_name, dist_key, dist_traits, open, first_event, last_event, expire_timestamp, \
                   fire_timestamp, event_count, fire_counts, version) \
                 ON CONFLICT (trigger_name, dist_key) WHERE open DO NOTHING \
                 RETURNING id, trigger_name, dist_key",
            ).persistent(named)
            .bind(&claims.trigger)
            .bind(&claims.key)
            .bind(&claims.dist)
            .bind(&claims.open)
            .bind(&claims.first)
            .bind(&claims.last)
            .bind(&claims.expire)
            .bind(&claims.fire)
            .bind(&claims.count)
            .bind(&claims.counts)
            .bind(&claims.version)
            .fetch_all(&mut *conn)
            .await
            .map_err(storage_error)?;
            let mut won: HashMap<(String, String), i64> = HashMap::with_capacity(rows.len());
            for r in rows {
                won.insert(
                    (r.try_get("trigger_name").map_err(storage_error)?, r.try_get("dist_key").map_err(storage_error)?),
                    r.try_get("id").map_err(storage_error)?,
                );
            }
            for (key, k) in claim_of {
                match won.get(&(key.0.to_string(), key.1.to_string())) {
                    Some(id) => {
                        if let Some(p) = plans[k].as_mut() {
                            p.folded.drafts[0].id = Some(*id);
                        }
                    }
                    // Another ingester opened this key's stream first; redo the key.
                    None => lost.push(k),
                }
            }
        }
        lost.sort_unstable();
        for &k in &lost {
            plans[k] = None;
        }
        pending = lost;
    }
    let plans: Vec<KeyPlan> = plans.into_iter().map(|p| p.expect("every key planned")).collect();

    // d. Write back existing streams and claims (claims only when they must close).
    let mut ids = Vec::new();
    let mut firsts = Vec::new();
    let mut lasts = Vec::new();
    let mut expires = Vec::new();
    let mut fires: Vec<Option<DateTime<Utc>>> = Vec::new();
    let mut counts = Vec::new();
    let mut fire_counts = Vec::new();
    let mut opens = Vec::new();
    // e. Further new streams.
    let mut more = NewRows::default();
    let mut more_slots: Vec<(usize, usize)> = Vec::new();
    for (k, p) in plans.iter().enumerate() {
        for (n, d) in p.folded.drafts.iter().enumerate() {
            let is_claim = n == 0 && !p.had_existing;
            match d.id {
                Some(id) if p.had_existing || (is_claim && !d.open) => {
                    ids.push(id);
                    firsts.push(d.first);
                    lasts.push(d.last);
                    expires.push(d.expire);
                    fires.push(d.fire);
                    counts.push(d.count);
                    fire_counts.push(counts_literal(&d.counts));
                    opens.push(d.open);
                }
                Some(_) => {}
                None => {
                    let (trigger_name, dist_key) = keys[k];
                    let (i, j) = groups[&keys[k]][0];
                    let m = &batch[i].memberships[j];
                    more.push(trigger_name, m.trigger.version.as_deref(), dist_key, &m.dist, d.open, d);
                    more_slots.push((k, n));
                }
            }
        }
    }
    if !ids.is_empty() {
        sqlx::query(
            "UPDATE stream s SET first_event = u.first_event, last_event = u.last_event, expire_timestamp = u.expire_timestamp, \
               fire_timestamp = u.fire_timestamp, event_count = u.event_count, fire_counts = u.fire_counts::bigint[], open = u.open \
             FROM UNNEST($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], \
               $6::bigint[], $7::text[], $8::bool[]) \
               AS u(id, first_event, last_event, expire_timestamp, fire_timestamp, event_count, fire_counts, open) \
             WHERE s.id = u.id",
        ).persistent(named)
        .bind(&ids)
        .bind(&firsts)
        .bind(&lasts)
        .bind(&expires)
        .bind(&fires)
        .bind(&counts)
        .bind(&fire_counts)
        .bind(&opens)
        .execute(&mut *conn)
        .await
        .map_err(storage_error)?;
    }
    let mut plans = plans;
    if !more.trigger.is_empty() {
        // Ids come from the sequence in input order, so each draft learns its own.
        let rows = sqlx::query(
            "WITH src AS MATERIALIZED ( \
               SELECT nextval(pg_get_serial_sequence('stream', 'id')) AS id, u.* \
               FROM UNNEST($1::text[], $2::text[], $3::jsonb[], $4::bool[], $5::timestamptz[], $6::timestamptz[], \
                 $7::timestamptz[], $8::timestamptz[], $9::bigint[], $10::text[], $11::text[]) WITH ORDINALITY \
                 AS u(trigger_name, dist_key, dist_traits, open, first_event, last_event, expire_timestamp, \
                 fire_timestamp, event_count, fire_counts, version, ord)), \
             ins AS ( \
               INSERT INTO stream (id, trigger_name, dist_key, dist_traits, open, first_event, last_event, \
                 expire_timestamp, fire_timestamp, event_count, fire_counts, version) OVERRIDING SYSTEM VALUE \
               SELECT id, trigger_name, dist_key, dist_traits, open, first_event, last_event, expire_timestamp, \
                 fire_timestamp, event_count, fire_counts::bigint[], version FROM src ORDER BY ord \
               ON CONFLICT (trigger_name, dist_key) WHERE open DO NOTHING RETURNING id) \
             SELECT src.id, src.id IN (SELECT id FROM ins) AS inserted FROM src ORDER BY src.ord",
        )
        .persistent(named)
        .bind(&more.trigger)
        .bind(&more.key)
        .bind(&more.dist)
        .bind(&more.open)
        .bind(&more.first)
        .bind(&more.last)
        .bind(&more.expire)
        .bind(&more.fire)
        .bind(&more.count)
        .bind(&more.counts)
        .bind(&more.version)
        .fetch_all(&mut *conn)
        .await
        .map_err(storage_error)?;
        expect_written(rows.len(), more_slots.len(), "new streams")?;
        for (r, (k, n)) in rows.iter().zip(&more_slots) {
            let inserted: bool = r.try_get("inserted").map_err(storage_error)?;
            if !inserted {
                let (t, d) = keys[*k];
                return Err(StorageError::Conflict(format!("open stream for {t} {d} appeared while locked").into()));
            }
            plans[*k].folded.drafts[*n].id = Some(r.try_get("id").map_err(storage_error)?);
        }
    }

    let mut stream_of: HashMap<(usize, usize), i64> = HashMap::new();
    let mut opened: HashSet<(usize, usize)> = HashSet::new();
    let mut notify = false;
    for (k, p) in plans.iter().enumerate() {
        notify |= p.folded.ready;
        let id_of = |n: usize| p.folded.drafts[n].id.expect("every draft written");
        assign_streams(&groups[&keys[k]], &p.folded, id_of, &mut stream_of, &mut opened);
    }
    Ok((stream_of, opened, notify))
}
