//! Ingest against events already stored, and trimming one day of them
//! (PostgreSQL's daily partitions, migration 0004).
//!
//! For each stored size a fresh database is seeded with that many events
//! (and their dedup keys) by COPY, spread evenly over the [`SEED_DAYS`] days
//! before today (so there are that many partitions), with random message_ids
//! as real ones are, a mix of event types and traits, and one stream per
//! [`EVENTS_PER_STREAM`] events with their memberships (see [`seed`]), so
//! that the query stage ([`crate::query`]) has something to find. Then the
//! workload is ingested in batches and timed.
//! The seeded database is vacuumed and checkpointed before the ingest is
//! timed. Then the query stage runs. In the largest database, the oldest day is then
//! trimmed ([`Storage::trim_events`] with the cutoff at that day's end) and
//! timed; so is deleting that day's dedup keys, which follows in batches.

use anyhow::Context;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use sqlx::{Connection, PgConnection};
use std::sync::Arc;
use std::time::Instant;
use winchester_core::{Event, TriggerSet};
use winchester_postgres::PgStorage;
use winchester_storage::EventStore;

use crate::measure::{check_saved, manager, with_db};

/// Days the seeded events are spread over (the days before today).
pub const SEED_DAYS: u32 = 30;

/// Rows per COPY statement while seeding.
const COPY_CHUNK: u64 = 200_000;

/// What the stored-size measurement found.
#[derive(Debug, Clone, Default)]
pub struct StoredResult {
    /// (events stored, ingest events/s), in the order of the sizes given.
    pub rates: Vec<(u64, f64)>,
    /// Time of the `trim_events` call that dropped the oldest seeded day of
    /// the largest size (None when every size is 0).
    pub trim_day_s: Option<f64>,
    /// Events that day held.
    pub trim_day_events: u64,
    /// Time of the following `trim_events` calls until that day's dedup keys
    /// were all deleted.
    pub trim_day_keys_s: Option<f64>,
    /// (events stored, the query stage's figures), in the order of the sizes.
    pub queries: Vec<(u64, crate::query::QueryResult)>,
}

/// A well-mixed 64-bit hash (splitmix64), for message_ids that spread over
/// the key index as random UUIDs do.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The first instant of `day` (UTC).
fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// The type most seeded events have (about 70%).
pub const COMMON_TYPE: &str = "compute.instance.update";
/// The other types of the seed, about 5% each.
pub const MID_TYPES: [&str; 6] = [
    "compute.instance.exists",
    "compute.instance.create.start",
    "compute.instance.create.end",
    "compute.instance.delete.end",
    "compute.instance.power_off.end",
    "compute.instance.resize.confirm.end",
];
/// A rare type: seeded event 1 and every 10,000th after it (the workload
/// never has it).
pub const RARE_TYPE: &str = "compute.instance.rebuild.error";
/// One seeded event in this many has [`RARE_TYPE`].
pub const RARE_EVERY: u64 = 10_000;
/// Distinct `instance_id` values of the seed (`seed-0` ..).
pub const SEED_INSTANCES: u64 = 5_000;
/// Distinct `tenant_id` values of the seed (`tenant-0` ..).
pub const SEED_TENANTS: u64 = 100;
/// Seeded events per seeded stream.
pub const EVENTS_PER_STREAM: u64 = 10;
/// Triggers the seeded streams belong to (the bench's own, all distinguished
/// by `instance_id`), the first for 8 in 10 streams.
pub const SEED_TRIGGERS: [&str; 3] = ["instance_day", "resize_flow", "power_cycle"];
/// One seeded stream in this many is in error (state 4).
pub const ERROR_EVERY: u64 = 100;

/// The instance (index) of seeded event `i` (1-based): the instance of its stream.
pub fn seed_instance(i: u64) -> u64 {
    ((i.max(1) - 1) / EVENTS_PER_STREAM) % SEED_INSTANCES
}

/// The event type of seeded event `i` (1-based).
fn seed_type(i: u64, h: u64) -> &'static str {
    if i % RARE_EVERY == 1 {
        RARE_TYPE
    } else if h % 100 < 70 {
        COMMON_TYPE
    } else {
        MID_TYPES[(h >> 8) as usize % MID_TYPES.len()]
    }
}

/// What [`seed`] stored.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    /// The first seeded day.
    pub first: NaiveDate,
    /// Events seeded.
    pub events: u64,
    /// Streams seeded.
    pub streams: u64,
    /// Events of [`RARE_TYPE`] seeded.
    pub rare: u64,
    /// Events of [`COMMON_TYPE`] seeded.
    pub common: u64,
    /// Streams in error seeded.
    pub errors: u64,
}

/// The statements of `sql` (comments stripped) that create or drop an
/// index, in order (a replaced index is dropped before its successor is
/// made; the drops made harmless with `IF EXISTS`).
fn create_index_statements(sql: &str) -> Vec<String> {
    crate::db::statements(sql)
        .into_iter()
        .filter_map(|st| {
            let up = st.to_ascii_uppercase();
            if up.starts_with("CREATE INDEX") || up.starts_with("CREATE UNIQUE INDEX") {
                Some(st)
            } else if up.starts_with("DROP INDEX ") && !up.starts_with("DROP INDEX IF EXISTS") {
                Some(format!("DROP INDEX IF EXISTS {}", &st["DROP INDEX ".len()..]))
            } else {
                None
            }
        })
        .collect()
}

/// Seeds `n` events and their keys into the migrated database at `url`:
/// COPY in chunks, ids 1..=n, evenly spread over the [`SEED_DAYS`] days
/// before `today`: types mixed ([`COMMON_TYPE`], [`MID_TYPES`], [`RARE_TYPE`]),
/// traits `instance_id` ([`SEED_INSTANCES`] values), `tenant_id`
/// ([`SEED_TENANTS`]), `memory_mb` (int) and `host`. Then one stream per
/// [`EVENTS_PER_STREAM`] consecutive events (their memberships too), of one
/// instance, as the engine writes them: active and closed, the newest
/// [`SEED_INSTANCES`] open, one in [`ERROR_EVERY`] in error, one in ten
/// completed. Migration 0005's indexes are dropped while loading and, when
/// `query_indexes`, built again afterwards (as a bulk load would).
pub async fn seed(url: &str, n: u64, today: NaiveDate, salt: u64, query_indexes: bool) -> anyhow::Result<Seeded> {
    let first = today - ChronoDuration::days(i64::from(SEED_DAYS));
    let mut conn = PgConnection::connect(url).await?;
    crate::db::make_partitions(&mut conn, first, today).await?;
    let index_names = crate::db::query_index_names();
    crate::db::drop_indexes(url, &index_names).await?;
    let span_us = i64::from(SEED_DAYS) * 86_400_000_000;
    let step_us = span_us / n.max(1) as i64;
    let ts_of = |i: u64| start_of(first) + ChronoDuration::microseconds((i.max(1) - 1) as i64 * step_us);
    let fmt_ts = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
    let (mut rare, mut common, mut errors) = (0u64, 0u64, 0u64);
    let mut id = 1u64;
    while id <= n {
        let end = (id + COPY_CHUNK).min(n + 1);
        let (mut events, mut keys, mut members) = (Vec::new(), Vec::new(), Vec::new());
        for i in id..end {
            let h = mix(salt ^ i);
            let message_id = format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                h >> 32,
                h & 0xffff,
                (h >> 20) & 0xfff,
                (h >> 8) & 0xfff,
                mix(h) & 0xffff_ffff_ffff
            );
            let ts = fmt_ts(ts_of(i));
            let event_type = seed_type(i, h);
            rare += u64::from(event_type == RARE_TYPE);
            common += u64::from(event_type == COMMON_TYPE);
            let inst = seed_instance(i);
            events.extend_from_slice(
                format!(
                    "{i}\t{message_id}\t{event_type}\t{ts}\t{{\"instance_id\": {{\"string\": \"seed-{inst}\"}}, \"tenant_id\": {{\"string\": \"tenant-{}\"}}, \"memory_mb\": {{\"int\": {}}}, \"host\": {{\"string\": \"compute-{}\"}}}}\n",
                    inst % SEED_TENANTS,
                    512u64 << (inst % 5),
                    inst % 50
                )
                .as_bytes(),
            );
            keys.extend_from_slice(format!("{message_id}\t{ts}\t{i}\n").as_bytes());
            members.extend_from_slice(format!("{}\t{i}\t{ts}\n", (i - 1) / EVENTS_PER_STREAM + 1).as_bytes());
        }
        for (sql, data) in [
            ("COPY event (id, message_id, event_type, generated, traits) FROM STDIN", &events),
            ("COPY event_key (message_id, generated, event_id) FROM STDIN", &keys),
        ] {
            let mut copy = conn.copy_in_raw(sql).await?;
            copy.send(data.as_slice()).await?;
            copy.finish().await?;
        }
        // The streams whose first event is in this chunk, before the
        // memberships (foreign key).
        let (s_first, s_last) = ((id - 1).div_ceil(EVENTS_PER_STREAM) + 1, (end - 2) / EVENTS_PER_STREAM + 1);
        let (streams, e) = stream_rows(s_first..=s_last, n, start_of(first + ChronoDuration::days(1)), &ts_of, &fmt_ts);
        errors += e;
        let mut copy = conn
            .copy_in_raw(
                "COPY stream (id, trigger_name, dist_key, dist_traits, open, state, state_serial_no, first_event, \
                 last_event, expire_timestamp, fire_timestamp, event_count, fire_counts, attempts, last_error) FROM STDIN",
            )
            .await?;
        copy.send(streams.as_slice()).await?;
        copy.finish().await?;
        let mut copy = conn.copy_in_raw("COPY stream_event (stream_id, event_id, generated) FROM STDIN").await?;
        copy.send(members.as_slice()).await?;
        copy.finish().await?;
        id = end;
    }
    let streams = n.div_ceil(EVENTS_PER_STREAM);
    sqlx::query("SELECT setval('event_id_seq', $1, false)").bind((n + 1) as i64).execute(&mut conn).await?;
    sqlx::query("SELECT setval(pg_get_serial_sequence('stream', 'id'), $1, false)")
        .bind((streams + 1) as i64)
        .execute(&mut conn)
        .await?;
    if n > 0 {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('event_types')::text").fetch_one(&mut conn).await?;
        if exists.is_some() {
            let mut types = vec![COMMON_TYPE, RARE_TYPE];
            types.extend(MID_TYPES);
            sqlx::query("INSERT INTO event_types (event_type) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING")
                .bind(&types)
                .execute(&mut conn)
                .await?;
        }
    }
    if query_indexes {
        sqlx::query("SET maintenance_work_mem = '512MB'").execute(&mut conn).await?;
        for st in create_index_statements(crate::db::QUERY_INDEXES_SQL) {
            sqlx::query(&st).execute(&mut conn).await.with_context(|| format!("seeding: {st}"))?;
        }
    }
    // Settled, as a database that has held its events a while is: vacuumed
    // (the freshly loaded rows are not vacuumed by autovacuum while the
    // ingest is timed) and checkpointed (when the role may).
    sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;
    if let Err(e) = sqlx::query("CHECKPOINT").execute(&mut conn).await {
        tracing::debug!(error = %e, "No checkpoint after seeding.");
    }
    conn.close().await?;
    Ok(Seeded { first, events: n, streams, rare, common, errors })
}

/// COPY text of seeded streams `ks` (of `n` events in all), and how many of
/// them are in error. Streams that start before `settled` (the second seeded
/// day) are all completed, so the oldest day can be trimmed by dropping its
/// partitions, as the stored stage measures.
fn stream_rows(
    ks: std::ops::RangeInclusive<u64>,
    n: u64,
    settled: DateTime<Utc>,
    ts_of: &impl Fn(u64) -> DateTime<Utc>,
    fmt_ts: &impl Fn(DateTime<Utc>) -> String,
) -> (Vec<u8>, u64) {
    let total = n.div_ceil(EVENTS_PER_STREAM);
    let mut out = Vec::new();
    let mut errors = 0;
    for k in ks {
        let (e_first, e_last) = ((k - 1) * EVENTS_PER_STREAM + 1, (k * EVENTS_PER_STREAM).min(n));
        let inst = seed_instance(e_first);
        let trigger = match k % 10 {
            8 => SEED_TRIGGERS[1],
            9 => SEED_TRIGGERS[2],
            _ => SEED_TRIGGERS[0],
        };
        let dist = format!("{{\"instance_id\": {{\"value\": {{\"string\": \"seed-{inst}\"}}}}}}");
        // The key is the compact form; closed streams may share it.
        let key = dist.replace(' ', "");
        let (first, last) = (ts_of(e_first), ts_of(e_last));
        let (state, serial, open, fired, attempts, error) = if first < settled || k % 10 == 3 {
            (6, 2, "f", "{1}", 1, "\\N")
        } else if k % ERROR_EVERY == ERROR_EVERY / 2 {
            errors += 1;
            (4, 2, "f", "{1}", 1, "seed: the pipeline failed")
        } else {
            (1, 0, if total - k < SEED_INSTANCES { "t" } else { "f" }, "{0}", 0, "\\N")
        };
        let expire = fmt_ts(last + ChronoDuration::hours(1));
        let fire = if state == 1 { "\\N".to_string() } else { fmt_ts(last) };
        out.extend_from_slice(
            format!(
                "{k}\t{trigger}\t{key}\t{dist}\t{open}\t{state}\t{serial}\t{}\t{}\t{expire}\t{fire}\t{}\t{fired}\t{attempts}\t{error}\n",
                fmt_ts(first),
                fmt_ts(last),
                e_last - e_first + 1
            )
            .as_bytes(),
        );
    }
    (out, errors)
}

/// How [`stored_growth`] runs besides the ingest.
#[derive(Debug, Clone)]
pub struct StoredOpts {
    /// Whether migration 0005's query indexes are present (built after the
    /// seed); without them, the ingest is measured as it was before them.
    pub query_indexes: bool,
    /// Whether the largest size is trimmed by a day afterwards.
    pub trim: bool,
    /// The query stage, run at each size after the ingest (and before the
    /// trim); None skips it.
    pub queries: Option<crate::query::QueryOpts>,
}

/// Ingest rate of `events` (batches of `batch`) at each stored size, then
/// the query stage, then trimming a day in the largest. Sizes are measured in
/// the order given.
#[allow(clippy::too_many_arguments)]
pub async fn stored_growth(
    admin: &str,
    triggers: &Arc<TriggerSet>,
    events: &[Event],
    sizes: &[u64],
    batch: usize,
    salt: u64,
    opts: &StoredOpts,
    progress: impl Fn(&str),
) -> anyhow::Result<StoredResult> {
    let mut out = StoredResult::default();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let mut trimmed = false;
    let without = if opts.query_indexes { "" } else { " (without the query indexes)" };
    for &size in sizes {
        progress(&format!(
            "stored events{without}: seeding {size} events and {} streams by COPY over {SEED_DAYS} days, then ingesting",
            size.div_ceil(EVENTS_PER_STREAM)
        ));
        let chunks: Vec<Vec<Event>> = events.chunks(batch.max(1)).map(|c| c.to_vec()).collect();
        let trim_here = opts.trim && size == largest && size > 0 && !trimmed;
        let progress = &progress;
        let (rate, queries, trim) = with_db(admin, |db| async move {
            let today = Utc::now().date_naive();
            let seeded =
                seed(&db.url, size, today, salt, opts.query_indexes).await.context("seeding stored events")?;
            let storage = PgStorage::connect(&db.url.parse()?, 2).await?;
            let tm = manager(storage.clone(), triggers);
            let n: usize = chunks.iter().map(Vec::len).sum();
            let start = Instant::now();
            for chunk in chunks {
                check_saved(&tm.add_events(chunk).await?)?;
            }
            let rate = n as f64 / start.elapsed().as_secs_f64();
            let queries = match &opts.queries {
                Some(q) => {
                    progress(&format!(
                        "queries at {size} events stored: {} queries, {} requests each, {} clients, through winchester serve",
                        crate::query::QUERIES.len(),
                        q.requests,
                        q.clients
                    ));
                    Some(crate::query::measure(&db.url, &seeded, q).await.context("query stage")?)
                }
                None => None,
            };
            let trim = if trim_here { Some(trim_day(&storage, seeded.first).await?) } else { None };
            storage.pool().close().await;
            anyhow::Ok((rate, queries, trim))
        })
        .await?;
        out.rates.push((size, rate));
        if let Some(q) = queries {
            out.queries.push((size, q));
        }
        if let Some((day_s, day_events, keys_s)) = trim {
            trimmed = true;
            out.trim_day_s = Some(day_s);
            out.trim_day_events = day_events;
            out.trim_day_keys_s = Some(keys_s);
        }
    }
    Ok(out)
}

/// Trims `day` (cutoff at its end): (seconds, events it held, seconds until
/// its keys were deleted too).
async fn trim_day(storage: &PgStorage, day: NaiveDate) -> anyhow::Result<(f64, u64, f64)> {
    let cutoff = start_of(day.succ_opt().unwrap_or(day));
    let start = Instant::now();
    let n = storage.trim_events(cutoff, 1000).await?;
    let day_s = start.elapsed().as_secs_f64();
    let keys_start = Instant::now();
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM event_key_cleanup").fetch_one(storage.pool()).await?;
        if left == 0 {
            break;
        }
        storage.trim_events(cutoff, 1000).await?;
    }
    Ok((day_s, n, day_s + keys_start.elapsed().as_secs_f64()))
}

/// Seeds `n` events into the migrated SQLite file at `url` as [`seed`] does
/// on PostgreSQL (the same types, traits, streams and memberships; times in
/// integer microseconds, JSON as text; message_ids `seed-<i>`), by one
/// `INSERT .. SELECT` over a recursive CTE per table, in one transaction.
/// The type mix is drawn from a multiplicative hash of the id, not
/// [`seed`]'s, so the counts differ slightly; [`Seeded`] has this seed's.
pub async fn seed_sqlite(url: &str, n: u64, today: NaiveDate) -> anyhow::Result<Seeded> {
    use sqlx::SqliteConnection;
    let first = today - ChronoDuration::days(i64::from(SEED_DAYS));
    let start_us = start_of(first).timestamp_micros();
    let step_us = i64::from(SEED_DAYS) * 86_400_000_000 / n.max(1) as i64;
    let settled_us = start_of(first + ChronoDuration::days(1)).timestamp_micros();
    let streams = n.div_ceil(EVENTS_PER_STREAM);
    let mut conn = SqliteConnection::connect(url).await?;
    sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL").execute(&mut conn).await?;
    let mid: Vec<String> = MID_TYPES.iter().enumerate().map(|(k, t)| format!("WHEN {k} THEN '{t}'")).collect();
    let ev_type = format!(
        "CASE WHEN i % {RARE_EVERY} = 1 THEN '{RARE_TYPE}' WHEN (i * 2654435761) % 4294967291 % 100 < 70 \
         THEN '{COMMON_TYPE}' ELSE CASE (i * 40503) % 65521 % {} {} END END",
        MID_TYPES.len(),
        mid.join(" ")
    );
    let inst = format!("(((i - 1) / {EVENTS_PER_STREAM}) % {SEED_INSTANCES})");
    let mut tx = conn.begin().await?;
    sqlx::query(&format!(
        "WITH RECURSIVE g(i) AS (SELECT 1 WHERE ?1 > 0 UNION ALL SELECT i + 1 FROM g WHERE i < ?1) \
         INSERT INTO event (id, message_id, event_type, generated, traits) \
         SELECT i, 'seed-' || i, {ev_type}, ?2 + (i - 1) * ?3, \
           json_object('instance_id', json_object('string', 'seed-' || {inst}), \
             'tenant_id', json_object('string', 'tenant-' || ({inst} % {SEED_TENANTS})), \
             'memory_mb', json_object('int', 512 << ({inst} % 5)), \
             'host', json_object('string', 'compute-' || ({inst} % 50))) \
         FROM g"
    ))
    .bind(n as i64)
    .bind(start_us)
    .bind(step_us)
    .execute(&mut *tx)
    .await
    .context("seeding SQLite events")?;
    // Stream k holds events (k-1)*10+1 ..= min(k*10, n), of instance (k-1) % 5000.
    let (e_first, e_last) =
        (format!("((k - 1) * {EVENTS_PER_STREAM} + 1)"), format!("min(k * {EVENTS_PER_STREAM}, ?1)"));
    let first_us = format!("(?2 + ({e_first} - 1) * ?3)");
    let last_us = format!("(?2 + ({e_last} - 1) * ?3)");
    let done = format!("({first_us} < ?4 OR k % 10 = 3)");
    let error = format!("(NOT {done} AND k % {ERROR_EVERY} = {})", ERROR_EVERY / 2);
    let dist = format!("json_object('instance_id', json_object('value', json_object('string', 'seed-' || ((k - 1) % {SEED_INSTANCES}))))");
    sqlx::query(&format!(
        "WITH RECURSIVE g(k) AS (SELECT 1 WHERE ?5 > 0 UNION ALL SELECT k + 1 FROM g WHERE k < ?5) \
         INSERT INTO stream (id, trigger_name, dist_key, dist_traits, open, state, state_serial_no, first_event, \
           last_event, expire_timestamp, fire_timestamp, event_count, fire_counts, attempts, last_error) \
         SELECT k, CASE k % 10 WHEN 8 THEN '{t1}' WHEN 9 THEN '{t2}' ELSE '{t0}' END, {dist}, {dist}, \
           CASE WHEN NOT {done} AND NOT {error} AND ?5 - k < {SEED_INSTANCES} THEN 1 ELSE 0 END, \
           CASE WHEN {done} THEN 6 WHEN {error} THEN 4 ELSE 1 END, \
           CASE WHEN {done} OR {error} THEN 2 ELSE 0 END, \
           {first_us}, {last_us}, {last_us} + 3600000000, \
           CASE WHEN {done} OR {error} THEN {last_us} END, \
           {e_last} - {e_first} + 1, \
           CASE WHEN {done} OR {error} THEN '[1]' ELSE '[0]' END, \
           CASE WHEN {done} OR {error} THEN 1 ELSE 0 END, \
           CASE WHEN {error} THEN 'seed: the pipeline failed' END \
         FROM g",
        t0 = SEED_TRIGGERS[0],
        t1 = SEED_TRIGGERS[1],
        t2 = SEED_TRIGGERS[2],
    ))
    .bind(n as i64)
    .bind(start_us)
    .bind(step_us)
    .bind(settled_us)
    .bind(streams as i64)
    .execute(&mut *tx)
    .await
    .context("seeding SQLite streams")?;
    sqlx::query(&format!(
        "WITH RECURSIVE g(i) AS (SELECT 1 WHERE ?1 > 0 UNION ALL SELECT i + 1 FROM g WHERE i < ?1) \
         INSERT INTO stream_event (stream_id, event_id) SELECT (i - 1) / {EVENTS_PER_STREAM} + 1, i FROM g"
    ))
    .bind(n as i64)
    .execute(&mut *tx)
    .await
    .context("seeding SQLite memberships")?;
    let rare: i64 = sqlx::query_scalar("SELECT count(*) FROM event WHERE event_type = ?1")
        .bind(RARE_TYPE)
        .fetch_one(&mut *tx)
        .await?;
    let common: i64 = sqlx::query_scalar("SELECT count(*) FROM event WHERE event_type = ?1")
        .bind(COMMON_TYPE)
        .fetch_one(&mut *tx)
        .await?;
    let errors: i64 = sqlx::query_scalar("SELECT count(*) FROM stream WHERE state = 4").fetch_one(&mut *tx).await?;
    tx.commit().await?;
    sqlx::raw_sql("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await?;
    conn.close().await?;
    Ok(Seeded { first, events: n, streams, rare: rare as u64, common: common as u64, errors: errors as u64 })
}
