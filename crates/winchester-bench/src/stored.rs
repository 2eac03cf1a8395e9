//! Ingest against events already stored, and trimming one day of them
//! (PostgreSQL's daily partitions, migration 0004).
//!
//! For each stored size a fresh database is seeded with that many events
//! (and their dedup keys) by COPY, spread evenly over the [`SEED_DAYS`] days
//! before today (so there are that many partitions), with random message_ids
//! as real ones are. Then the workload is ingested in batches and timed.
//! The seeded database is vacuumed and checkpointed before the ingest is
//! timed. Streams are not seeded: a deployment purges completed streams, while its
//! events stay until trimmed. In the largest database, the oldest day is then
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

/// Seeds `n` events and their keys into the migrated database at `url`:
/// COPY in chunks, ids 1..=n, evenly spread over the [`SEED_DAYS`] days
/// before `today`. Returns the first seeded day.
pub async fn seed(url: &str, n: u64, today: NaiveDate, salt: u64) -> anyhow::Result<NaiveDate> {
    let first = today - ChronoDuration::days(i64::from(SEED_DAYS));
    let mut conn = PgConnection::connect(url).await?;
    crate::db::make_partitions(&mut conn, first, today).await?;
    let span_us = i64::from(SEED_DAYS) * 86_400_000_000;
    let step_us = span_us / n.max(1) as i64;
    let mut id = 1u64;
    while id <= n {
        let end = (id + COPY_CHUNK).min(n + 1);
        let (mut events, mut keys) = (Vec::new(), Vec::new());
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
            let ts = (start_of(first) + ChronoDuration::microseconds((i - 1) as i64 * step_us))
                .format("%Y-%m-%d %H:%M:%S%.6f+00")
                .to_string();
            events.extend_from_slice(
                format!(
                    "{i}\t{message_id}\tcompute.instance.update\t{ts}\t{{\"instance_id\": {{\"string\": \"seed-{}\"}}, \"tenant_id\": {{\"string\": \"tenant-{}\"}}}}\n",
                    i % 5000,
                    i % 97
                )
                .as_bytes(),
            );
            keys.extend_from_slice(format!("{message_id}\t{ts}\t{i}\n").as_bytes());
        }
        for (sql, data) in [
            ("COPY event (id, message_id, event_type, generated, traits) FROM STDIN", &events),
            ("COPY event_key (message_id, generated, event_id) FROM STDIN", &keys),
        ] {
            let mut copy = conn.copy_in_raw(sql).await?;
            copy.send(data.as_slice()).await?;
            copy.finish().await?;
        }
        id = end;
    }
    sqlx::query("SELECT setval('event_id_seq', $1, false)").bind((n + 1) as i64).execute(&mut conn).await?;
    // Settled, as a database that has held its events a while is: vacuumed
    // (the freshly loaded rows are not vacuumed by autovacuum while the
    // ingest is timed) and checkpointed (when the role may).
    sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;
    if let Err(e) = sqlx::query("CHECKPOINT").execute(&mut conn).await {
        tracing::debug!(error = %e, "No checkpoint after seeding.");
    }
    conn.close().await?;
    Ok(first)
}

/// Ingest rate of `events` (batches of `batch`) at each stored size, then
/// trimming a day in the largest. Sizes are measured in the order given.
pub async fn stored_growth(
    admin: &str,
    triggers: &Arc<TriggerSet>,
    events: &[Event],
    sizes: &[u64],
    batch: usize,
    salt: u64,
    progress: impl Fn(&str),
) -> anyhow::Result<StoredResult> {
    let mut out = StoredResult::default();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let mut trimmed = false;
    for &size in sizes {
        progress(&format!("stored events: seeding {size} events by COPY over {SEED_DAYS} days, then ingesting"));
        let chunks: Vec<Vec<Event>> = events.chunks(batch.max(1)).map(|c| c.to_vec()).collect();
        let trim_here = size == largest && size > 0 && !trimmed;
        let (rate, trim) = with_db(admin, |db| async move {
            let today = Utc::now().date_naive();
            let first = seed(&db.url, size, today, salt).await.context("seeding stored events")?;
            let storage = PgStorage::connect(&db.url.parse()?, 2).await?;
            let tm = manager(storage.clone(), triggers);
            let n: usize = chunks.iter().map(Vec::len).sum();
            let start = Instant::now();
            for chunk in chunks {
                check_saved(&tm.add_events(chunk).await?)?;
            }
            let rate = n as f64 / start.elapsed().as_secs_f64();
            let trim = if trim_here { Some(trim_day(&storage, first).await?) } else { None };
            storage.pool().close().await;
            anyhow::Ok((rate, trim))
        })
        .await?;
        out.rates.push((size, rate));
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
