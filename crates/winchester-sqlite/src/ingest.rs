//! Saving events and their stream memberships (see the PostgreSQL backend for
//! the rules). Writers are serialised by `BEGIN IMMEDIATE`, so a key's open
//! stream cannot change under us between reading and writing it.
//!
//! Every row is written `OR FAIL`: a statement that breaks a constraint stops
//! there instead of undoing its own rows, so SQLite keeps no statement
//! journal (a copy of every page the statement changes). Any error drops the
//! whole transaction anyway.
//!
//! [`IngestStore::ingest`] writes through a connection that does not check
//! foreign keys. A membership's stream and event are rows the same
//! transaction inserted, or read open under the write lock, so the check (two
//! index lookups per membership, and a statement journal) could only fail
//! through a fault in this module; the test
//! `ingest::sqlite_memberships_reference_their_rows` runs SQLite's own
//! `foreign_key_check` after ingesting. A finish's new events go through the
//! pool's connections, which do check them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::query_builder::Separated;
use sqlx::sqlite::SqliteQueryResult;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Transaction};
use std::collections::{BTreeSet, HashMap, HashSet};
use winchester_storage::decode;
use winchester_storage::fold::{assign_streams, fold_group, group_by_key, outcomes, Entry, FoldedGroup, StreamDraft};
use winchester_storage::{expect_written, EventPlan, IngestOutcome, IngestStore, Result, StorageError};

use crate::rows::{json, micros, JsonRow, LiteJson};
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
        let mut tx = begin(&self.ingest).await?;
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
    // SQLite runs each statement on the connection's own thread; the CPU work
    // that does not depend on it runs here meanwhile (`join!` sends the
    // statement first, then does the work, then awaits the statement).
    // 1. The open streams of every key of the batch, read while the events'
    // traits are serialised.
    let mut keys: Vec<(&str, &str)> = batch
        .iter()
        .flat_map(|p| p.memberships.iter().map(|m| (m.trigger.name.as_str(), m.dist_key.as_str())))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let (read, traits) = tokio::join!(read_open_streams(conn, &keys), async {
        batch.iter().map(|p| serde_json::to_string(&p.event.traits).map_err(corrupt)).collect::<Result<Vec<_>>>()
    });
    let (read, traits) = (read?, traits?);
    // 2. The events, inserted while the open streams are decoded and the
    // memberships folded into them as if every event were new (duplicates
    // are rare).
    let all_new = vec![Some(0); batch.len()];
    let (event_ids, folds) = tokio::join!(insert_events(conn, batch, &traits), async {
        fold_batch(batch, &all_new, parse_open_streams(&read)?, now)
    });
    let event_ids = event_ids?;
    let folds = if event_ids.iter().all(Option::is_some) {
        folds?
    } else {
        // Some were stored already: fold again without them, from a fresh
        // read (no stream has been written yet).
        let read = read_open_streams(conn, &keys).await?;
        fold_batch(batch, &event_ids, parse_open_streams(&read)?, now)?
    };
    // 3. Existing streams written back first, so a stream closed here makes
    // room for its key's new open one; the later statements, and the
    // memberships (with the ids the new streams will get), are built while
    // the statements before them run.
    let next_id = if folds.inserts.is_empty() { 0 } else { next_stream_id(conn).await? };
    let [unindexed, expire, fire, open] = &folds.updates;
    let mut first = update_statements(unindexed, Changed::Unindexed);
    first.extend(update_statements(expire, Changed::Expire));
    let (done, (mut moved, mut new)) = tokio::join!(execute_all(conn, &mut first, "updated streams"), async {
        let mut moved = update_statements(fire, Changed::Fire);
        moved.extend(update_statements(open, Changed::Open));
        (moved, insert_statements(&folds.inserts))
    });
    done?;
    let predicted = next_id..next_id + folds.inserts.len() as i64;
    let (done, planned) = tokio::join!(execute_all(conn, &mut moved, "updated streams"), async {
        memberships(&folds.keys, &event_ids, predicted.clone())
    });
    done?;
    // 4. The new streams. Under the write lock AUTOINCREMENT numbers them
    // from `next_id` on; should it not have, the memberships are worked out
    // again with the ids they got.
    let mut new_ids: Vec<i64> = Vec::with_capacity(folds.inserts.len());
    for done in execute_all(conn, &mut new, "new streams").await? {
        new_ids.extend(inserted_ids(&done));
    }
    let Memberships { pairs, stream_of, opened } = if new_ids.iter().copied().eq(predicted) {
        planned?
    } else {
        tracing::debug!("New stream ids were not the ones predicted; memberships worked out again.");
        memberships(&folds.keys, &event_ids, new_ids)?
    };
    // 5. The memberships, in key order: the `(stream_id, event_id)` index
    // then takes them page by page instead of at random (a fifth faster).
    let mut writes = membership_statements(&pairs);
    // The outcomes are worked out while they are inserted.
    let (done, out) = tokio::join!(execute_all(conn, &mut writes, "memberships"), async {
        outcomes(batch, &event_ids, &stream_of, &opened)
    });
    done?;
    Ok(out)
}

/// The id the next stream inserted gets (AUTOINCREMENT: one past the
/// largest ever used, which `sqlite_sequence` keeps).
async fn next_stream_id(conn: &mut SqliteConnection) -> Result<i64> {
    let seq = sqlx::query_scalar!(r#"SELECT seq AS "seq: i64" FROM sqlite_sequence WHERE name = 'stream'"#)
        .fetch_optional(&mut *conn)
        .await
        .map_err(storage_error)?;
    Ok(seq.flatten().unwrap_or(0) + 1)
}

/// A batch's memberships: `(stream_id, event_id)` pairs in key order, each
/// entry's stream, and the entries that opened theirs.
struct Memberships {
    pairs: Vec<(i64, i64)>,
    stream_of: HashMap<Entry, i64>,
    opened: HashSet<Entry>,
}

/// Works out the memberships of `keys`' entries, the new streams having the
/// ids `new_ids` (in `keys` order).
fn memberships(
    keys: &[KeyFold],
    event_ids: &[Option<i64>],
    new_ids: impl IntoIterator<Item = i64>,
) -> Result<Memberships> {
    let mut next_new = new_ids.into_iter();
    let mut stream_of: HashMap<Entry, i64> = HashMap::new();
    let mut opened: HashSet<Entry> = HashSet::new();
    for KeyFold { entries, folded } in keys {
        let mut ids = Vec::with_capacity(folded.drafts.len());
        for d in &folded.drafts {
            ids.push(match d.id {
                Some(id) => id,
                None => next_new.next().ok_or_else(|| StorageError::Corrupt("a new stream has no id".into()))?,
            });
        }
        assign_streams(entries, folded, |k| ids[k], &mut stream_of, &mut opened);
    }
    let mut pairs: Vec<(i64, i64)> =
        stream_of.iter().filter_map(|(&(i, _), &sid)| event_ids[i].map(|eid| (sid, eid))).collect();
    pairs.sort_unstable();
    Ok(Memberships { pairs, stream_of, opened })
}

/// One key's fold: its entries (batch order) and its folded streams.
struct KeyFold {
    entries: Vec<Entry>,
    folded: FoldedGroup,
}

/// A new stream's row: trigger, key (the distinguishing traits as JSON), version.
type NewStream<'a> = (&'a str, &'a str, Option<String>, StreamRow);

/// What a batch writes to the streams: every key's fold, and the rows.
struct StreamWrites<'a> {
    keys: Vec<KeyFold>,
    /// Streams read, by the indexed columns their update must assign
    /// (`updates[c as usize]` for [`Changed`] `c`).
    updates: [Vec<(i64, StreamRow)>; 4],
    /// Streams opened, in `keys` order.
    inserts: Vec<NewStream<'a>>,
}

/// Folds the memberships of the saved events (`event_ids[i]` is `Some`) into
/// the open streams read for their keys, and builds the rows to write.
fn fold_batch<'a>(
    batch: &'a [EventPlan],
    event_ids: &[Option<i64>],
    mut existing: HashMap<(String, String), StreamDraft>,
    now: DateTime<Utc>,
) -> Result<StreamWrites<'a>> {
    // The indexed columns as read: an update leaves out those it does not
    // change (see [`Changed`]).
    let read: HashMap<i64, (i64, Option<i64>)> =
        existing.values().filter_map(|d| Some((d.id?, (micros(d.expire), d.fire.map(micros))))).collect();
    let groups = group_by_key(batch, event_ids);
    let mut out = StreamWrites { keys: Vec::with_capacity(groups.len()), updates: Default::default(), inserts: vec![] };
    for ((trigger_name, dist_key), entries) in groups {
        let m0 = &batch[entries[0].0].memberships[entries[0].1];
        let existing = existing.remove(&(trigger_name.to_string(), dist_key.to_string()));
        let events = entries.iter().map(|&(i, j)| {
            (batch[i].event.timestamp, batch[i].memberships[j].fire_hits.as_slice(), batch[i].arrival(now))
        });
        let folded = fold_group(&m0.trigger, existing, events, now);
        for d in &folded.drafts {
            let row = StreamRow {
                first: micros(d.first),
                last: micros(d.last),
                expire: micros(d.expire),
                fire: d.fire.map(micros),
                count: d.count,
                counts: serde_json::to_string(&d.counts).map_err(corrupt)?,
                open: d.open,
            };
            match d.id {
                Some(id) => out.updates[Changed::of(read.get(&id), &row) as usize].push((id, row)),
                // The distinguishing traits as JSON are the key itself.
                None => out.inserts.push((trigger_name, dist_key, d.version.clone(), row)),
            }
        }
        out.keys.push(KeyFold { entries, folded });
    }
    Ok(out)
}

/// The open streams of `keys`: one JSON array per statement (see
/// [`parse_open_streams`]).
async fn read_open_streams(conn: &mut SqliteConnection, keys: &[(&str, &str)]) -> Result<Vec<String>> {
    let mut read = Vec::new();
    for chunk in keys.chunks(KEY_ROWS) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT json_group_array(json_array(s.id, s.trigger_name, s.dist_key, s.first_event, s.last_event, \
               s.expire_timestamp, s.fire_timestamp, s.event_count, json(s.fire_counts), s.version)) FROM ",
        );
        push_rows(&mut sql, chunk, KEY_ROWS, 2, |row, (trigger, key)| {
            row.push_bind(*trigger).push_bind(*key);
        });
        sql.push(" k JOIN stream s ON s.trigger_name = k.column1 AND s.dist_key = k.column2 AND s.open = 1");
        read.push(sql.build_query_scalar().fetch_one(&mut *conn).await.map_err(storage_error)?);
    }
    Ok(read)
}

/// The open streams [`read_open_streams`] read, by key.
fn parse_open_streams(read: &[String]) -> Result<HashMap<(String, String), StreamDraft>> {
    let mut existing = HashMap::new();
    for rows in read {
        for r in &JsonRow::parse_all(OPEN_STREAM_COLUMNS, rows)? {
            let (key, draft) = decode::open_stream::<LiteJson>(r)?;
            existing.insert(key, draft);
        }
    }
    Ok(existing)
}

/// A statement and the rows it must write.
struct Write<'a> {
    sql: QueryBuilder<'a, Sqlite>,
    rows: usize,
}

/// Runs `writes` in order; each must write all its rows (`what` names them
/// in the error).
async fn execute_all(
    conn: &mut SqliteConnection,
    writes: &mut [Write<'_>],
    what: &str,
) -> Result<Vec<SqliteQueryResult>> {
    let mut results = Vec::with_capacity(writes.len());
    for w in writes {
        let done = w.sql.build().execute(&mut *conn).await.map_err(storage_error)?;
        expect_written(done.rows_affected() as usize, w.rows, what)?;
        results.push(done);
    }
    Ok(results)
}

/// Inserts the streams a batch opens.
fn insert_statements<'a>(inserts: &'a [NewStream<'a>]) -> Vec<Write<'a>> {
    let mut writes = Vec::new();
    for chunk in inserts.chunks(STREAM_ROWS) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "INSERT OR FAIL INTO stream (trigger_name, dist_key, dist_traits, version, first_event, last_event, \
               expire_timestamp, fire_timestamp, event_count, fire_counts, open) SELECT * FROM ",
        );
        push_rows(&mut sql, chunk, STREAM_ROWS, 11, |b, (trigger, key, version, r)| {
            b.push_bind(*trigger)
                .push_bind(*key)
                .push_bind(*key)
                .push_bind(version.as_deref())
                .push_bind(r.first)
                .push_bind(r.last)
                .push_bind(r.expire)
                .push_bind(r.fire)
                .push_bind(r.count)
                .push_bind(r.counts.as_str())
                .push_bind(r.open);
        });
        sql.push(" WHERE column1 IS NOT NULL");
        writes.push(Write { sql, rows: chunk.len() });
    }
    writes
}

/// Inserts the memberships, `(stream_id, event_id)` pairs.
fn membership_statements(pairs: &[(i64, i64)]) -> Vec<Write<'_>> {
    let mut writes = Vec::new();
    for chunk in pairs.chunks(MEMBERSHIP_ROWS) {
        let mut sql =
            QueryBuilder::<Sqlite>::new("INSERT OR FAIL INTO stream_event (stream_id, event_id) SELECT * FROM ");
        push_rows(&mut sql, chunk, MEMBERSHIP_ROWS, 2, |b, (sid, eid)| {
            b.push_bind(*sid).push_bind(*eid);
        });
        sql.push(" WHERE column1 IS NOT NULL");
        writes.push(Write { sql, rows: chunk.len() });
    }
    writes
}

/// The indexed columns of a stream read open that its update must assign,
/// each level including the ones before it. SQLite rewrites the index
/// entries of every assigned column (and of every partial index whose
/// condition names one), changed or not: most updates only add events, and
/// a stream whose expiry counts from its first event keeps that too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Changed {
    /// No indexed column: the event count, first and last event, counts.
    Unindexed,
    /// And `expire_timestamp` (`stream_expire_ready_idx`).
    Expire,
    /// And `fire_timestamp` (`stream_fire_ready_idx`): the stream still open.
    Fire,
    /// And `open` (`stream_open_key`): the stream closed.
    Open,
}

impl Changed {
    /// What `row` changes of the stream as read (`(expire, fire)`).
    fn of(read: Option<&(i64, Option<i64>)>, row: &StreamRow) -> Changed {
        match read {
            _ if !row.open => Changed::Open,
            None => Changed::Open,
            Some(&(_, fire)) if fire != row.fire => Changed::Fire,
            Some(&(expire, _)) if expire != row.expire => Changed::Expire,
            Some(_) => Changed::Unindexed,
        }
    }
}

/// Writes back streams read by this batch, assigning the indexed columns
/// `changed` names.
fn update_statements(rows: &[(i64, StreamRow)], changed: Changed) -> Vec<Write<'_>> {
    const SET: [&str; 4] = [
        "",
        ", expire_timestamp = u.column6",
        ", expire_timestamp = u.column6, fire_timestamp = u.column7",
        ", expire_timestamp = u.column6, fire_timestamp = u.column7, open = u.column8",
    ];
    let width = 5 + changed as usize;
    let mut writes = Vec::new();
    for chunk in rows.chunks(STREAM_ROWS) {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "UPDATE OR FAIL stream SET first_event = u.column2, last_event = u.column3, event_count = u.column4, \
               fire_counts = u.column5",
        );
        sql.push(SET[changed as usize]);
        sql.push(" FROM ");
        push_rows(&mut sql, chunk, STREAM_ROWS, width, |b, (id, r)| {
            b.push_bind(*id).push_bind(r.first).push_bind(r.last).push_bind(r.count).push_bind(r.counts.as_str());
            if changed >= Changed::Expire {
                b.push_bind(r.expire);
            }
            if changed >= Changed::Fire {
                b.push_bind(r.fire);
            }
            if changed >= Changed::Open {
                b.push_bind(r.open);
            }
        });
        sql.push(" u WHERE stream.id = u.column1");
        writes.push(Write { sql, rows: chunk.len() });
    }
    writes
}

/// Pushes `rows` as a parenthesised `VALUES` list (columns `column1`..), padded
/// with rows of `width` NULLs to [`statement_rows`] rows. The statement's text
/// then takes one of a few forms, each prepared once and kept on the
/// connection: preparing n rows of `VALUES` costs about as much as running
/// them, and a batch's row counts vary. Statements skip the padding by a
/// non-NULL first column.
fn push_rows<'a, T>(
    sql: &mut QueryBuilder<'a, Sqlite>,
    rows: &'a [T],
    max: usize,
    width: usize,
    mut push: impl FnMut(&mut Separated<'_, 'a, Sqlite, &'static str>, &'a T),
) {
    sql.push("(");
    sql.push_values((0..statement_rows(rows.len(), max)).map(|i| rows.get(i)), |mut b, row| match row {
        Some(r) => push(&mut b, r),
        None => {
            for _ in 0..width {
                b.push_bind(None::<i64>);
            }
        }
    });
    sql.push(")");
}

/// The rows of a statement for `n` rows (at most `max`): the next power of
/// two, at least 16, at most `max`.
fn statement_rows(n: usize, max: usize) -> usize {
    n.next_power_of_two().clamp(16, max).max(n)
}

// Rows per statement of bound values (SQLite takes up to 32,766 values in one
// statement): a batch of 1,000 events (the default) needs one statement per
// step.
/// Events per `INSERT` (4 values each).
const EVENT_ROWS: usize = 1000;
/// Stream keys per open-stream lookup (2 values each).
const KEY_ROWS: usize = 2000;
/// Streams per `INSERT` or `UPDATE` (11 and 8 values).
const STREAM_ROWS: usize = 500;
/// Memberships per `INSERT` (2 values each).
const MEMBERSHIP_ROWS: usize = 4000;

/// The columns of the open-stream lookup's `json_array`, in order.
const OPEN_STREAM_COLUMNS: &[&str] = &[
    "id",
    "trigger_name",
    "dist_key",
    "first_event",
    "last_event",
    "expire_timestamp",
    "fire_timestamp",
    "event_count",
    "fire_counts",
    "version",
];

/// A stream's folded columns, as stored.
struct StreamRow {
    first: i64,
    last: i64,
    expire: i64,
    fire: Option<i64>,
    count: i64,
    counts: String,
    open: bool,
}

/// Inserts the batch's events (`traits`: each one's traits as JSON), skipping
/// message_ids already stored (and repeats within the batch). Returns each
/// event's new id, or `None` for a duplicate.
async fn insert_events(
    conn: &mut SqliteConnection,
    batch: &[EventPlan],
    traits: &[String],
) -> Result<Vec<Option<i64>>> {
    let mut event_ids: Vec<Option<i64>> = Vec::with_capacity(batch.len());
    for (chunk, traits) in batch.chunks(EVENT_ROWS).zip(traits.chunks(EVENT_ROWS)) {
        event_ids.extend(insert_event_rows(conn, chunk, traits).await?);
    }
    // Types not seen before join the catalog globs are resolved against.
    let types: BTreeSet<&str> = batch.iter().map(|p| p.event.event_type.as_str()).collect();
    sqlx::query("INSERT OR IGNORE INTO event_types (event_type) SELECT value FROM json_each(?1)")
        .bind(json(types.into_iter().collect::<Vec<_>>()))
        .execute(&mut *conn)
        .await
        .map_err(storage_error)?;
    Ok(event_ids)
}

/// Inserts one statement's events (see [`insert_events`]).
///
/// When every row was inserted, [`inserted_ids`] are theirs in order;
/// otherwise the newest rows are read back to tell which message_ids were
/// inserted (skipped duplicates leave gaps in the ids).
async fn insert_event_rows(
    conn: &mut SqliteConnection,
    chunk: &[EventPlan],
    traits: &[String],
) -> Result<Vec<Option<i64>>> {
    let mut sql = QueryBuilder::<Sqlite>::new(
        "INSERT OR FAIL INTO event (message_id, event_type, generated, traits) SELECT * FROM ",
    );
    let rows: Vec<(&EventPlan, &String)> = chunk.iter().zip(traits).collect();
    push_rows(&mut sql, &rows, EVENT_ROWS, 4, |row, (p, traits)| {
        row.push_bind(&p.event.message_id)
            .push_bind(&p.event.event_type)
            .push_bind(micros(p.event.timestamp))
            .push_bind(traits.as_str());
    });
    sql.push(" WHERE column1 IS NOT NULL ON CONFLICT (message_id) DO NOTHING");
    let done = sql.build().execute(&mut *conn).await.map_err(storage_error)?;
    let inserted = done.rows_affected() as usize;
    if inserted == chunk.len() {
        return Ok(inserted_ids(&done).map(Some).collect());
    }
    if inserted == 0 {
        return Ok(vec![None; chunk.len()]);
    }
    // A row skipped as a duplicate still used up an AUTOINCREMENT id, so the
    // new rows' ids have gaps. Under the write lock they are still the
    // newest rows, the last of them `last_insert_rowid`.
    let (last, n) = (done.last_insert_rowid(), inserted as i64);
    let rows = sqlx::query!(
        r#"SELECT id AS "id!: i64", message_id FROM event WHERE id <= ?1 ORDER BY id DESC LIMIT ?2"#,
        last,
        n
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(storage_error)?;
    expect_written(rows.len(), inserted, "new events")?;
    let mut ids: HashMap<String, i64> = rows.into_iter().map(|r| (r.message_id, r.id)).collect();
    // The first occurrence of an inserted message_id is the saved one.
    Ok(chunk.iter().map(|p| ids.remove(&p.event.message_id)).collect())
}

/// The ids of the rows one `INSERT` wrote, in insertion order: under the
/// write lock (`BEGIN IMMEDIATE`) AUTOINCREMENT numbers one statement's rows
/// consecutively, ending at `last_insert_rowid`.
fn inserted_ids(done: &SqliteQueryResult) -> std::ops::RangeInclusive<i64> {
    let last = done.last_insert_rowid();
    last - done.rows_affected() as i64 + 1..=last
}

fn corrupt(e: serde_json::Error) -> StorageError {
    StorageError::Corrupt(e.to_string())
}
