//! Daily partitions of `event` and `stream_event` (migration 0004): created
//! ahead by the ingest path, trimmed by dropping whole days.
//!
//! - [`Days::ensure`]: before a batch is saved, every UTC day of its events
//!   that this process has not seen yet gets its partitions, and the next
//!   [`AHEAD`] days too (the SQL function `winchester_event_partitions`, which
//!   serializes creators and skips existing days). Days are remembered per
//!   process, so this is one round trip per new day, not per batch. An event
//!   of a day without a partition lands in the default partition, so an
//!   insert never fails for want of one.
//! - [`trim`]: each day entirely older than the cutoff whose memberships no
//!   unfinished stream holds is dropped (both tables); events older than the
//!   cutoff elsewhere (a day still needed, the default partition, the
//!   cutoff's own day) are deleted row by row as before; the dedup keys of
//!   dropped days are deleted in batches afterwards.

use chrono::{DateTime, Days as DayCount, NaiveDate, Utc};
use sqlx::PgConnection;
use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;
use winchester_storage::stream::state_no::COMPLETED;
use winchester_storage::{EventPlan, Result};

use crate::errors::storage_error;
use crate::PgStorage;

/// How many days after a newly seen day get their partitions at once.
pub const AHEAD: u64 = 7;

/// How many dedup keys of dropped days one trim deletes.
pub const KEY_BATCH: i64 = 10_000;

/// Sets how long creating or dropping a partition waits for its table locks
/// (5 s) before giving up until the next time: ingest and reads are queued
/// behind a waiting `DROP`/`CREATE`, so this stays short.
async fn lock_timeout(tx: &mut PgConnection) -> Result<()> {
    sqlx::query!("SET LOCAL lock_timeout = '5s'").persistent(false).execute(tx).await.map_err(storage_error)?;
    Ok(())
}

/// The UTC day of a time.
pub fn day_of(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

/// The partition of `table` (`event` or `stream_event`) holding `day`.
pub fn partition_name(table: &str, day: NaiveDate) -> String {
    format!("{table}_p{}", day.format("%Y%m%d"))
}

/// The first instant of `day` (UTC).
fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// The days this process knows to have partitions (or to be past helping:
/// their events sit in the default partition).
#[derive(Debug, Default)]
pub struct Days {
    known: Mutex<HashSet<NaiveDate>>,
}

impl Days {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<NaiveDate>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the partitions of the days of the events of `plans` not known
    /// yet, and of the [`AHEAD`] days after each. Failing to (a lock not
    /// granted in time, say) is logged and left for the next batch: the events
    /// go to the default partition meanwhile, so the batch is saved regardless.
    pub(crate) async fn ensure_for<'a>(
        &self,
        db: &PgStorage,
        plans: impl IntoIterator<Item = &'a EventPlan>,
    ) -> Result<()> {
        let missing: BTreeSet<NaiveDate> = {
            let known = self.lock();
            plans.into_iter().map(|p| day_of(p.event.timestamp)).filter(|d| !known.contains(d)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut ranges: Vec<(NaiveDate, NaiveDate)> = Vec::new();
        for d in missing {
            match ranges.last_mut() {
                Some((_, last)) if d <= *last => {}
                _ => ranges.push((d, d.checked_add_days(DayCount::new(AHEAD)).unwrap_or(d))),
            }
        }
        match create(db, &ranges).await {
            Ok(created) => {
                if created > 0 {
                    tracing::info!(created, "Created daily event partitions.");
                }
                let mut known = self.lock();
                for (first, last) in ranges {
                    known.extend(first.iter_days().take_while(|d| *d <= last));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Could not create event partitions; new events go to the default partition meanwhile.")
            }
        }
        Ok(())
    }

    /// Forgets `day` (its partitions were dropped).
    fn forget(&self, day: NaiveDate) {
        self.lock().remove(&day);
    }
}

/// Creates the partitions of the days in `ranges` (inclusive). Returns how
/// many days got new partitions.
async fn create(db: &PgStorage, ranges: &[(NaiveDate, NaiveDate)]) -> Result<i64> {
    let mut tx = db.pool().begin().await.map_err(storage_error)?;
    lock_timeout(&mut tx).await?;
    let mut created = 0;
    for (first, last) in ranges {
        let n = sqlx::query_scalar!(r#"SELECT winchester_event_partitions($1, $2) AS "created!""#, first, last)
            .persistent(db.named())
            .fetch_one(&mut *tx)
            .await
            .map_err(storage_error)?;
        created += i64::from(n);
    }
    tx.commit().await.map_err(storage_error)?;
    Ok(created)
}

/// Deletes events older than `cutoff` that no unfinished stream needs:
/// whole days by dropping their partitions, up to `limit` more row by row.
/// Then deletes up to [`KEY_BATCH`] dedup keys of dropped days. Returns how
/// many events were deleted.
pub(crate) async fn trim(db: &PgStorage, cutoff: DateTime<Utc>, limit: u32) -> Result<u64> {
    let mut trimmed = 0;
    for day in droppable_days(db, cutoff).await? {
        match drop_day(db, day).await {
            Ok(Some(n)) => {
                db.days.forget(day);
                tracing::info!(%day, events = n, "Dropped a day of events.");
                trimmed += n;
            }
            Ok(None) => {}
            // A lock not granted in time, a deadlock with a late event of that
            // day: the day is tried again next time.
            Err(e) => tracing::warn!(%day, error = %e, "Could not drop a day of events; trying again later."),
        }
    }
    trimmed += on_conn!(db, |c| -> u64 { trim_rows(c, db.named(), cutoff, limit).await })?;
    on_conn!(db, |c| -> u64 { delete_dropped_keys(c, db.named(), KEY_BATCH).await })?;
    Ok(trimmed)
}

/// Days with partitions that end at or before `cutoff`, oldest first.
async fn droppable_days(db: &PgStorage, cutoff: DateTime<Utc>) -> Result<Vec<NaiveDate>> {
    let days = partition_days(db).await?;
    Ok(days.into_iter().filter(|d| d.succ_opt().is_some_and(|next| start_of(next) <= cutoff)).collect())
}

/// Drops `day`'s partitions unless an unfinished stream has a membership in
/// it. Returns how many events it held, or None when the day is still needed.
async fn drop_day(db: &PgStorage, day: NaiveDate) -> Result<Option<u64>> {
    let (events, members) = (partition_name("event", day), partition_name("stream_event", day));
    let next = day.succ_opt().unwrap_or(day);
    let mut tx = db.pool().begin().await.map_err(storage_error)?;
    lock_timeout(&mut tx).await?;
    // No event or membership joins the day while it is checked (reads go on;
    // only the DROP itself holds the parent tables, briefly).
    // Statements naming a day are never prepared (one per day would fill the
    // statement cache; behind a transaction pooler none may be).
    sqlx::query(&format!("LOCK TABLE {events}, {members} IN SHARE MODE"))
        .persistent(false)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
    // A stream holds events between its first and last event times only.
    let needed: bool = sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM stream s WHERE s.state <> {COMPLETED} \
           AND s.first_event < $2 AND s.last_event >= $1 \
           AND EXISTS (SELECT 1 FROM {members} se WHERE se.stream_id = s.id))"
    ))
    .persistent(false)
    .bind(start_of(day))
    .bind(start_of(next))
    .fetch_one(&mut *tx)
    .await
    .map_err(storage_error)?;
    if needed {
        tx.rollback().await.map_err(storage_error)?;
        return Ok(None);
    }
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {events}"))
        .persistent(false)
        .fetch_one(&mut *tx)
        .await
        .map_err(storage_error)?;
    sqlx::query(&format!("DROP TABLE {members}, {events}"))
        .persistent(false)
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
    sqlx::query!("INSERT INTO event_key_cleanup (day) VALUES ($1) ON CONFLICT DO NOTHING", day)
        .persistent(db.named())
        .execute(&mut *tx)
        .await
        .map_err(storage_error)?;
    tx.commit().await.map_err(storage_error)?;
    Ok(Some(n as u64))
}

/// Deletes up to `limit` events older than `cutoff` that no unfinished
/// stream needs, with their memberships and dedup keys.
async fn trim_rows(c: &mut PgConnection, named: bool, cutoff: DateTime<Utc>, limit: u32) -> Result<u64> {
    let n = sqlx::query_scalar!(
        r#"WITH doomed AS (
           SELECT e.id, e.generated, e.message_id FROM event e WHERE e.generated < $1 AND NOT EXISTS (
             SELECT 1 FROM stream_event se JOIN stream s ON s.id = se.stream_id
             WHERE se.event_id = e.id AND se.generated = e.generated AND s.state <> $3)
           ORDER BY e.generated LIMIT $2),
         members AS (DELETE FROM stream_event se USING doomed d WHERE se.event_id = d.id AND se.generated = d.generated),
         keys AS (DELETE FROM event_key k USING doomed d WHERE k.message_id = d.message_id AND k.event_id = d.id),
         gone AS (DELETE FROM event e USING doomed d WHERE e.id = d.id AND e.generated = d.generated RETURNING 1)
         SELECT count(*) AS "n!" FROM gone"#,
        cutoff,
        i64::from(limit),
        COMPLETED
    )
    .persistent(named)
    .fetch_one(&mut *c)
    .await
    .map_err(storage_error)?;
    Ok(n as u64)
}

/// Deletes up to `limit` dedup keys of the oldest dropped day whose events
/// are gone; a day done is struck off `event_key_cleanup`. Returns how many.
async fn delete_dropped_keys(c: &mut PgConnection, named: bool, limit: i64) -> Result<u64> {
    let Some(day) = sqlx::query_scalar!("SELECT min(day) FROM event_key_cleanup")
        .persistent(named)
        .fetch_one(&mut *c)
        .await
        .map_err(storage_error)?
    else {
        return Ok(0);
    };
    let next = day.succ_opt().unwrap_or(day);
    // A key whose event is still there stays: the event went to the default
    // partition, or to the day's partition made again for a late event. Only
    // those two are probed (a probe through `event` would cost one index
    // probe per partition, or a hash of every partition).
    let again = partition_name("event", day);
    let recreated = sqlx::query_scalar!(r#"SELECT to_regclass($1) IS NOT NULL AS "exists!""#, &again)
        .persistent(named)
        .fetch_one(&mut *c)
        .await
        .map_err(storage_error)?;
    let also = if recreated {
        format!(" AND NOT EXISTS (SELECT 1 FROM {again} e WHERE e.id = k.event_id)")
    } else {
        String::new()
    };
    let n = sqlx::query(&format!(
        "DELETE FROM event_key WHERE message_id IN ( \
           SELECT k.message_id FROM event_key k WHERE k.generated >= $1 AND k.generated < $2 \
             AND NOT EXISTS (SELECT 1 FROM event_default e WHERE e.id = k.event_id){also} \
           LIMIT $3)"
    ))
    .persistent(false)
    .bind(start_of(day))
    .bind(start_of(next))
    .bind(limit)
    .execute(&mut *c)
    .await
    .map_err(storage_error)?
    .rows_affected();
    if (n as i64) < limit {
        sqlx::query!("DELETE FROM event_key_cleanup WHERE day = $1", day)
            .persistent(named)
            .execute(&mut *c)
            .await
            .map_err(storage_error)?;
    }
    Ok(n)
}

/// The day of every daily partition `event` has, oldest first.
pub async fn partition_days(db: &PgStorage) -> Result<Vec<NaiveDate>> {
    let names: Vec<String> = on_conn!(db, |c| -> Vec<String> {
        sqlx::query_scalar!(
            r#"SELECT c.relname::text AS "name!" FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'event'::regclass AND c.relname ~ '^event_p[0-9]{8}$' ORDER BY 1"#
        )
        .persistent(db.named())
        .fetch_all(&mut *c)
        .await
        .map_err(storage_error)
    })?;
    Ok(names.iter().filter_map(|n| NaiveDate::parse_from_str(n.strip_prefix("event_p")?, "%Y%m%d").ok()).collect())
}
