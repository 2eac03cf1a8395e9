//! Saving events and their stream memberships.
//!
//! One transaction per batch, set-based: a constant number of round trips
//! however many events and streams the batch touches.
//! 0. (before the transaction) partitions for days not seen before, see
//!    [`crate::partitions::Days::ensure`];
//! 1. all events in one statement: their dedup keys `INSERT .. SELECT FROM
//!    UNNEST .. ON CONFLICT DO NOTHING` into `event_key` (duplicates are the
//!    rows that come back missing), the events of the keys inserted into the
//!    partitioned `event` with the ids the keys drew, and types not seen before into `event_types`;
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
use winchester_storage::decode;
use winchester_storage::fold::{assign_streams, fold_group, group_by_key, outcomes, FoldedGroup, StreamDraft};
use winchester_storage::{
    expect_written, EventPlan, IngestOutcome, IngestStore, Membership, Result, RetryPolicy, StorageError,
};

use crate::errors::storage_error;
use crate::rows::Pg;
use crate::PgStorage;

/// How often a batch is tried in all when it meets transient conflicts
/// (deadlock, lost race).
const MAX_TRIES: u32 = 8;

#[async_trait]
impl IngestStore for PgStorage {
    async fn ingest(&self, batch: &[EventPlan], now: DateTime<Utc>) -> Result<Vec<IngestOutcome>> {
        self.days.ensure_for(self, batch).await?;
        RetryPolicy::conflicts(MAX_TRIES)
            .retry("ingest", || async {
                let mut tx = self.pool.begin().await.map_err(storage_error)?;
                let out = ingest_in_tx(&mut tx, self.named(), batch, now).await?;
                tx.commit().await.map_err(storage_error)?;
                Ok(out)
            })
            .await
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
    // 1. Events; 2. their streams; 3. memberships; 4. the wake-up.
    let event_ids = insert_events(conn, named, batch).await?;
    // 2. Streams, grouped by key, keys in sorted order.
    let groups = group_by_key(batch, &event_ids);
    let (stream_of, opened, notify) = write_streams(conn, named, batch, &groups, now).await?;
    insert_memberships(conn, named, batch, &event_ids, &stream_of).await?;
    // 4. Wake idle workers (delivered on commit).
    if notify {
        // The channel is `READY_CHANNEL` (a test holds the two together).
        sqlx::query!("NOTIFY winchester_ready").persistent(named).execute(&mut *conn).await.map_err(storage_error)?;
    }
    Ok(outcomes(batch, &event_ids, &stream_of, &opened))
}

/// Step 1: inserts the batch's events, in message_id order so concurrent batches
/// lock alike; a message_id repeated in the batch is sent once (its first
/// occurrence). Returns each entry's event id, `None` for a duplicate.
async fn insert_events(conn: &mut PgConnection, named: bool, batch: &[EventPlan]) -> Result<Vec<Option<i64>>> {
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
    // index on message_id alone); each key draws its event's id. A type not
    // seen before joins the catalog that globs are resolved against.
    // (sqlx's checked macros cannot leave a statement that returns rows of
    // several columns unnamed, which a transaction pooler needs.)
    let rows = sqlx::query(
        "WITH u AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[]) \
           AS u(message_id, event_type, generated, traits)), \
         k AS (INSERT INTO event_key (message_id, generated, event_id) \
           SELECT message_id, generated, nextval('event_id_seq') FROM u \
           ON CONFLICT (message_id) DO NOTHING RETURNING event_id, message_id), \
         t AS (INSERT INTO event_types (event_type) SELECT DISTINCT event_type FROM u ORDER BY 1 \
           ON CONFLICT (event_type) DO NOTHING) \
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
    Ok(event_ids)
}

/// Step 3: inserts the memberships, in key order (the `(stream_id, event_id)`
/// index then takes them page by page instead of at random).
async fn insert_memberships(
    conn: &mut PgConnection,
    named: bool,
    batch: &[EventPlan],
    event_ids: &[Option<i64>],
    stream_of: &HashMap<(usize, usize), i64>,
) -> Result<()> {
    if stream_of.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<(i64, i64, usize)> = Vec::with_capacity(stream_of.len());
    for ((i, _), sid) in stream_of {
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
    sqlx::query!(
        "INSERT INTO stream_event (stream_id, event_id, generated) \
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::timestamptz[])",
        &sids,
        &eids,
        &times
    )
    .persistent(named)
    .execute(&mut *conn)
    .await
    .map_err(storage_error)?;
    Ok(())
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

/// The folded columns of stream rows (a draft's), one Vec per column.
#[derive(Default)]
struct DraftColumns {
    first: Vec<DateTime<Utc>>,
    last: Vec<DateTime<Utc>>,
    expire: Vec<DateTime<Utc>>,
    fire: Vec<Option<DateTime<Utc>>>,
    count: Vec<i64>,
    counts: Vec<String>,
}

impl DraftColumns {
    fn push(&mut self, d: &StreamDraft) {
        self.first.push(d.first);
        self.last.push(d.last);
        self.expire.push(d.expire);
        self.fire.push(d.fire);
        self.count.push(d.count);
        self.counts.push(counts_literal(&d.counts));
    }
}

/// Columns of new stream rows, one Vec per column, and the key each is for.
#[derive(Default)]
struct NewRows<'a> {
    trigger: Vec<&'a str>,
    key: Vec<&'a str>,
    dist: Vec<Json<&'a winchester_core::DistTraits>>,
    open: Vec<bool>,
    draft: DraftColumns,
    version: Vec<Option<&'a str>>,
    /// Each row's key (its index in the batch's sorted keys) and draft.
    slot: Vec<(usize, usize)>,
}

impl<'a> NewRows<'a> {
    /// A new row for draft `n` of key `k`, whose first entry is membership
    /// `m`; a claim is inserted `open` whatever the draft says (step (d)
    /// closes it).
    fn push(
        &mut self,
        keys: &[(&'a str, &'a str)],
        (k, n): (usize, usize),
        m: &'a Membership,
        d: &StreamDraft,
        open: bool,
    ) {
        let (trigger, key) = keys[k];
        self.trigger.push(trigger);
        self.key.push(key);
        self.dist.push(Json(&m.dist));
        self.open.push(open);
        self.draft.push(d);
        // A batch opens streams under the current definition version only.
        self.version.push(m.trigger.version.as_deref());
        self.slot.push((k, n));
    }
}

/// Columns of existing streams to write back, one Vec per column.
#[derive(Default)]
struct Updates {
    id: Vec<i64>,
    draft: DraftColumns,
    open: Vec<bool>,
}

impl Updates {
    fn push(&mut self, id: i64, d: &StreamDraft) {
        self.id.push(id);
        self.draft.push(d);
        self.open.push(d.open);
    }
}

/// How many times keys are redone after losing claim races before the batch
/// is given up as a transient conflict (and retried whole).
const MAX_CLAIM_ROUNDS: u32 = 8;

/// The streams a batch writes: the stream id of each (event, membership)
/// entry, the entries that opened their stream, and whether any stream
/// became ready to fire.
type Written = (HashMap<(usize, usize), i64>, HashSet<(usize, usize)>, bool);

/// The batch's keys and entries (step 2's input).
struct Keyed<'a> {
    batch: &'a [EventPlan],
    groups: &'a BTreeMap<(&'a str, &'a str), Vec<(usize, usize)>>,
    /// The keys in sorted order; a key is named by its index here.
    keys: Vec<(&'a str, &'a str)>,
}

impl<'a> Keyed<'a> {
    /// The first membership of key `k` (its trigger, distinguishing traits and version).
    fn first_membership(&self, k: usize) -> &'a Membership {
        let (i, j) = self.groups[&self.keys[k]][0];
        &self.batch[i].memberships[j]
    }
}

/// Writes every stream the batch touches (step 2).
async fn write_streams(
    conn: &mut PgConnection,
    named: bool,
    batch: &[EventPlan],
    groups: &BTreeMap<(&str, &str), Vec<(usize, usize)>>,
    now: DateTime<Utc>,
) -> Result<Written> {
    let keyed = Keyed { batch, groups, keys: groups.keys().copied().collect() };
    let mut plans = plan_and_claim(conn, named, &keyed, now).await?;
    let (updates, more) = further_writes(&keyed, &plans);
    update_streams(conn, named, &updates).await?;
    insert_streams(conn, named, &keyed, &more, &mut plans).await?;
    let mut stream_of: HashMap<(usize, usize), i64> = HashMap::new();
    let mut opened: HashSet<(usize, usize)> = HashSet::new();
    let mut notify = false;
    for (k, p) in plans.iter().enumerate() {
        notify |= p.folded.ready;
        let id_of = |n: usize| p.folded.drafts[n].id.expect("every draft written");
        assign_streams(&groups[&keyed.keys[k]], &p.folded, id_of, &mut stream_of, &mut opened);
    }
    Ok((stream_of, opened, notify))
}

/// Steps (a) to (c), in rounds until every key is planned: lock the pending
/// keys' open streams, fold the batch into them, claim the keys without one;
/// the keys whose claim another ingester won are pending again.
async fn plan_and_claim(
    conn: &mut PgConnection,
    named: bool,
    keyed: &Keyed<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<KeyPlan>> {
    let mut plans: Vec<Option<KeyPlan>> = (0..keyed.keys.len()).map(|_| None).collect();
    let mut pending: Vec<usize> = (0..keyed.keys.len()).collect();
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        if rounds > MAX_CLAIM_ROUNDS {
            return Err(StorageError::Conflict("streams kept being opened by other ingesters".into()));
        }
        let mut existing = lock_open_streams(conn, named, keyed, &pending).await?;
        let mut claims = NewRows::default();
        for &k in &pending {
            let (trigger_name, dist_key) = keyed.keys[k];
            let found = existing.remove(&(trigger_name.to_string(), dist_key.to_string()));
            let plan = fold(keyed.batch, &keyed.groups[&keyed.keys[k]], found, now);
            if !plan.had_existing {
                claims.push(&keyed.keys, (k, 0), keyed.first_membership(k), &plan.folded.drafts[0], true);
            }
            plans[k] = Some(plan);
        }
        let won = claim_keys(conn, named, &claims).await?;
        pending = Vec::new();
        for &(k, _) in &claims.slot {
            let plan = &mut plans[k];
            match (won.get(&k), plan.as_mut()) {
                (Some(id), Some(p)) => p.folded.drafts[0].id = Some(*id),
                // Another ingester opened this key's stream first; redo the key.
                _ => {
                    *plan = None;
                    pending.push(k);
                }
            }
        }
        pending.sort_unstable();
    }
    Ok(plans.into_iter().map(|p| p.expect("every key planned")).collect())
}

/// (a) Locks the open streams of the `pending` keys, in key order.
async fn lock_open_streams(
    conn: &mut PgConnection,
    named: bool,
    keyed: &Keyed<'_>,
    pending: &[usize],
) -> Result<HashMap<(String, String), StreamDraft>> {
    let names: Vec<&str> = pending.iter().map(|&k| keyed.keys[k].0).collect();
    let dist_keys: Vec<&str> = pending.iter().map(|&k| keyed.keys[k].1).collect();
    let rows = sqlx::query(
        "SELECT s.id, s.trigger_name, s.dist_key, s.first_event, s.last_event, s.expire_timestamp, s.fire_timestamp, \
           s.event_count, s.fire_counts, s.version \
         FROM stream s JOIN UNNEST($1::text[], $2::text[]) AS k(trigger_name, dist_key) \
           ON s.trigger_name = k.trigger_name AND s.dist_key = k.dist_key \
         WHERE s.open \
         ORDER BY s.trigger_name COLLATE \"C\", s.dist_key COLLATE \"C\" \
         FOR UPDATE OF s",
    )
    .persistent(named)
    .bind(&names)
    .bind(&dist_keys)
    .fetch_all(&mut *conn)
    .await
    .map_err(storage_error)?;
    rows.iter().map(decode::open_stream::<Pg>).collect()
}

/// (c) Inserts the first stream of each key that had none, open; returns
/// the new stream's id per key index. A key another ingester claimed first
/// is missing.
async fn claim_keys(conn: &mut PgConnection, named: bool, claims: &NewRows<'_>) -> Result<HashMap<usize, i64>> {
    if claims.trigger.is_empty() {
        return Ok(HashMap::new());
    }
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
    );
    let rows = bind_new_rows(rows.persistent(named), claims).fetch_all(&mut *conn).await.map_err(storage_error)?;
    let slot_of: HashMap<(&str, &str), usize> =
        claims.trigger.iter().zip(&claims.key).zip(&claims.slot).map(|((t, d), (k, _))| ((*t, *d), *k)).collect();
    let mut won = HashMap::with_capacity(rows.len());
    for r in rows {
        let trigger: String = r.try_get("trigger_name").map_err(storage_error)?;
        let dist_key: String = r.try_get("dist_key").map_err(storage_error)?;
        let k = slot_of.get(&(trigger.as_str(), dist_key.as_str())).copied();
        let k =
            k.ok_or_else(|| StorageError::Corrupt(format!("claimed a stream for {trigger} {dist_key} not asked for")))?;
        won.insert(k, r.try_get("id").map_err(storage_error)?);
    }
    Ok(won)
}

/// Binds the eleven columns of new stream rows, `$1` to `$11`.
fn bind_new_rows<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    rows: &'q NewRows<'_>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    q.bind(&rows.trigger)
        .bind(&rows.key)
        .bind(&rows.dist)
        .bind(&rows.open)
        .bind(&rows.draft.first)
        .bind(&rows.draft.last)
        .bind(&rows.draft.expire)
        .bind(&rows.draft.fire)
        .bind(&rows.draft.count)
        .bind(&rows.draft.counts)
        .bind(&rows.version)
}

/// What (d) and (e) write: existing streams and claims to write back
/// (claims only when they must close), and further new streams.
fn further_writes<'a>(keyed: &Keyed<'a>, plans: &[KeyPlan]) -> (Updates, NewRows<'a>) {
    let mut updates = Updates::default();
    let mut more = NewRows::default();
    for (k, p) in plans.iter().enumerate() {
        for (n, d) in p.folded.drafts.iter().enumerate() {
            let is_claim = n == 0 && !p.had_existing;
            match d.id {
                Some(id) if p.had_existing || (is_claim && !d.open) => updates.push(id, d),
                Some(_) => {}
                None => more.push(&keyed.keys, (k, n), keyed.first_membership(k), d, d.open),
            }
        }
    }
    (updates, more)
}

/// (d) Writes back existing streams (this also closes expired streams before
/// (e) opens their successors).
async fn update_streams(conn: &mut PgConnection, named: bool, u: &Updates) -> Result<()> {
    if u.id.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "UPDATE stream s SET first_event = u.first_event, last_event = u.last_event, expire_timestamp = u.expire_timestamp, \
           fire_timestamp = u.fire_timestamp, event_count = u.event_count, fire_counts = u.fire_counts::bigint[], open = u.open \
         FROM UNNEST($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], \
           $6::bigint[], $7::text[], $8::bool[]) \
           AS u(id, first_event, last_event, expire_timestamp, fire_timestamp, event_count, fire_counts, open) \
         WHERE s.id = u.id",
        &u.id,
        &u.draft.first,
        &u.draft.last,
        &u.draft.expire,
        &u.draft.fire as &[Option<DateTime<Utc>>],
        &u.draft.count,
        &u.draft.counts,
        &u.open
    )
    .persistent(named)
    .execute(&mut *conn)
    .await
    .map_err(storage_error)?;
    Ok(())
}

/// (e) Inserts further new streams (a key whose stream expired), with ids
/// drawn from the sequence in input order, so each draft learns its own.
async fn insert_streams(
    conn: &mut PgConnection,
    named: bool,
    keyed: &Keyed<'_>,
    more: &NewRows<'_>,
    plans: &mut [KeyPlan],
) -> Result<()> {
    if more.trigger.is_empty() {
        return Ok(());
    }
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
    );
    let rows = bind_new_rows(rows.persistent(named), more).fetch_all(&mut *conn).await.map_err(storage_error)?;
    expect_written(rows.len(), more.slot.len(), "new streams")?;
    for (r, &(k, n)) in rows.iter().zip(&more.slot) {
        let inserted: bool = r.try_get("inserted").map_err(storage_error)?;
        if !inserted {
            let (t, d) = keyed.keys[k];
            return Err(StorageError::Conflict(format!("open stream for {t} {d} appeared while locked").into()));
        }
        plans[k].folded.drafts[n].id = Some(r.try_get("id").map_err(storage_error)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ingest_notifies_the_ready_channel() {
        let source = include_str!("ingest.rs");
        assert!(source.contains(&format!("\"NOTIFY {}\"", crate::READY_CHANNEL)));
    }
}
