//! PostgreSQL as a [`SqlBackend`]: how a statement runs (on a [`Conn`]), how
//! values bind (times as `timestamptz`, id lists as `bigint[]`), and the SQL
//! that is PostgreSQL's own (`jsonb` trait conditions, `LIKE` globs, the
//! partition-pruned join from memberships to events). The statements both
//! backends share are [`winchester_storage::sql`]'s.
//!
//! A stream's events are read by membership, each event looked up by `(id,
//! generated)` in a `LATERAL .. LIMIT 1`: that forces a nested loop whose
//! every lookup is pruned to one partition at run time. A plain join is costed
//! as if every partition were probed per membership, and the planner then
//! prefers hashing every event partition (hundreds of ms at a million events).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::Postgres;
use sqlx::{PgConnection, Row};
use std::collections::{HashMap, HashSet};
use winchester_core::DefinitionVersion;
use winchester_storage::decode::{self, Columns, STREAM_COLUMNS};
use winchester_storage::rules::{claim_ready_sql, trigger_condition};
use winchester_storage::sql::{Arg, ClaimBatch, SqlBackend, Stmt, TraitColumn};
use winchester_storage::stream::state_no::{EXPIRING, FIRING};
use winchester_storage::{one_for_one, Claimed, Finish, FinishOutcome, NamePattern, Result, Stream, TraitFilter};

use crate::errors::storage_error;
use crate::ingest::ingest_in_tx;
use crate::rows::Pg;
use crate::PgStorage;

/// Binds one argument as this schema stores it.
fn bind(q: Query<'_, Postgres, PgArguments>, arg: Arg) -> Query<'_, Postgres, PgArguments> {
    match arg {
        Arg::Int(v) => q.bind(v),
        Arg::Float(v) => q.bind(v),
        Arg::Bool(v) => q.bind(v),
        Arg::Text(v) => q.bind(v),
        Arg::Time(v) => q.bind(v),
        Arg::Ids(v) => q.bind(v),
        Arg::Json(v) => q.bind(v),
    }
}

/// The query of a statement's SQL, its arguments bound, named or not (see
/// [`PgStorage::named`]).
fn query(sql: &str, args: Vec<Arg>, named: bool) -> Query<'_, Postgres, PgArguments> {
    args.into_iter().fold(sqlx::query(sql).persistent(named), bind)
}

#[async_trait]
impl SqlBackend for PgStorage {
    type Columns = Pg;

    async fn rows(&self, stmt: Stmt) -> Result<Vec<PgRow>> {
        let Stmt { sql, args, writes } = stmt;
        on_conn!(self, |c| -> Vec<PgRow> {
            if let (Some(log), false) = (&self.plans, writes) {
                let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}");
                let row = query(&explain, args.clone(), false).fetch_one(&mut *c).await.map_err(storage_error)?;
                log.record(&sql, row.try_get(0).map_err(storage_error)?);
            }
            query(&sql, args, self.named()).fetch_all(&mut *c).await.map_err(storage_error)
        })
    }

    async fn execute(&self, stmt: Stmt) -> Result<u64> {
        let Stmt { sql, args, .. } = stmt;
        on_conn!(self, |c| -> u64 {
            Ok(query(&sql, args, self.named()).execute(&mut *c).await.map_err(storage_error)?.rows_affected())
        })
    }

    /// Containment (`@>`), which the GIN indexes of `traits` and
    /// `dist_traits` answer (migration 0005): the column holds
    /// `{name: candidate}` (`{name: {"value": candidate}}` for a stream's
    /// distinguishing traits) for one of the typed candidates.
    fn push_trait(stmt: &mut Stmt, column: TraitColumn, f: &TraitFilter) {
        let name = f.name.as_str();
        let contained = |v: serde_json::Value| match column {
            TraitColumn::EventTraits => serde_json::json!({ name: v }),
            TraitColumn::DistTraits => serde_json::json!({ name: { "value": v } }),
        };
        let candidates = f.candidates().iter().filter_map(|v| serde_json::to_value(v).ok()).map(contained).collect();
        let values = stmt.arg(Arg::Json(candidates));
        let column = match column {
            TraitColumn::EventTraits => "traits",
            TraitColumn::DistTraits => "dist_traits",
        };
        stmt.push(&format!(" AND {column} @> ANY({values}::jsonb[])"));
    }

    fn push_event_type_glob(stmt: &mut Stmt, p: &NamePattern) {
        stmt.push(" AND event_type LIKE ").bind(p.to_like().as_str()).push(" ESCAPE '\\'");
    }

    fn in_ids(stmt: &mut Stmt, column: &str, ids: &[i64]) -> String {
        format!("{column} = ANY({})", stmt.arg(Arg::Ids(ids.to_vec())))
    }

    const MEMBER_EVENT: &'static str = "FROM stream_event se CROSS JOIN LATERAL (SELECT * FROM event e \
         WHERE e.id = se.event_id AND e.generated = se.generated LIMIT 1) e";

    const FENCE: &'static str = " OFFSET 0";

    /// One probe of the key's partition per event (as [`Self::MEMBER_EVENT`]).
    const KEYED_EVENT: &'static str = "CROSS JOIN LATERAL (SELECT * FROM event e \
         WHERE e.id = k.id AND e.generated = k.generated LIMIT 1) e";

    /// By its dedup key: one probe of one partition, not one per partition.
    const EVENT_BY_MESSAGE_ID: &'static str = "SELECT e.id, e.message_id, e.event_type, e.generated, e.traits \
         FROM event_key k JOIN event e ON e.id = k.event_id AND e.generated = k.generated WHERE k.message_id = $1";

    const VERSION_ORDER: &'static str = "trigger_name COLLATE \"C\", first_used, version";

    async fn claim_batch(&self, batch: ClaimBatch<'_>) -> Result<Vec<Claimed>> {
        let ClaimBatch { action, now, lease_until, limit, triggers } = batch;
        on_conn!(self, |c| -> Vec<Claimed> {
            // Rows other workers are claiming are skipped, never waited for.
            let filter = trigger_condition(triggers, "trigger_name = ANY($4)");
            let sql = claim_ready_sql(action, STREAM_COLUMNS, "$1", "$2", "$3", &filter, " FOR UPDATE SKIP LOCKED");
            let mut query = sqlx::query(&sql).persistent(self.named()).bind(now).bind(lease_until).bind(limit as i64);
            if let Some(names) = triggers.names() {
                query = query.bind(names);
            }
            let rows = query.fetch_all(&mut *c).await.map_err(storage_error)?;
            rows.iter()
                .map(|r| Ok(Claimed { stream: decode::stream::<Pg>(r)?, reclaimed: Pg::bool(r, "picked_reclaim")? }))
                .collect()
        })
    }

    /// Set-based compare-and-set ([`compare_and_set`]); the new events of
    /// the runs whose compare-and-set held are saved in one ingest, in the
    /// same transaction.
    async fn finish_many(&self, runs: &[(&Stream, Finish<'_>)], now: DateTime<Utc>) -> Result<Vec<FinishOutcome>> {
        if runs.is_empty() {
            return Ok(vec![]);
        }
        // Partitions for the days of the pipelines' new events, before the transaction.
        self.days.ensure_for(self, runs.iter().flat_map(|(_, f)| f.new_events())).await?;
        let mut tx = self.pool.begin().await.map_err(storage_error)?;
        // The n-th run of a stream in this batch is compared-and-set in
        // round n, after the ones before it, as if each came alone.
        let mut seen: HashMap<i64, usize> = HashMap::with_capacity(runs.len());
        let rounds: Vec<usize> = runs
            .iter()
            .map(|(s, _)| {
                let n = seen.entry(s.id).or_default();
                *n += 1;
                *n - 1
            })
            .collect();
        let mut held = vec![false; runs.len()];
        for round in 0..=rounds.iter().copied().max().unwrap_or(0) {
            let of_round: Vec<usize> = (0..runs.len()).filter(|&i| rounds[i] == round).collect();
            let done = compare_and_set(&mut tx, self.named(), of_round.iter().map(|&i| &runs[i]).collect()).await?;
            for i in of_round {
                held[i] = done.contains(&runs[i].0.id);
            }
        }
        let plans: Vec<_> = runs
            .iter()
            .zip(&held)
            .filter(|(_, held)| **held)
            .flat_map(|((_, f), _)| f.new_events().iter().cloned())
            .collect();
        let mut saved =
            one_for_one("finish: new events", plans.len(), ingest_in_tx(&mut tx, self.named(), &plans, now).await?)?;
        tx.commit().await.map_err(storage_error)?;
        let mut out = Vec::with_capacity(runs.len());
        for ((_, f), held) in runs.iter().zip(held) {
            if held {
                let rest = saved.split_off(f.new_events().len());
                out.push(FinishOutcome::Done(std::mem::replace(&mut saved, rest)));
            } else {
                out.push(FinishOutcome::LostLease);
            }
        }
        Ok(out)
    }

    async fn renew_leases(&self, held: &[(i64, i32)], until: DateTime<Utc>) -> Result<Vec<i64>> {
        let (ids, serials): (Vec<i64>, Vec<i32>) = held.iter().copied().unzip();
        on_conn!(self, |c| -> Vec<i64> {
            sqlx::query_scalar!(
                "UPDATE stream AS s SET lease_expires_at = $3 FROM unnest($1::bigint[], $2::int[]) AS h(id, serial) \
                 WHERE s.id = h.id AND s.state_serial_no = h.serial AND s.state IN ($4, $5) RETURNING s.id",
                &ids,
                &serials,
                until,
                FIRING,
                EXPIRING
            )
            .persistent(self.named())
            .fetch_all(&mut *c)
            .await
            .map_err(storage_error)
        })
    }

    async fn trim_events(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<u64> {
        crate::partitions::trim(self, cutoff, limit).await
    }

    async fn record_versions(&self, versions: &[DefinitionVersion], now: DateTime<Utc>) -> Result<()> {
        let names: Vec<&str> = versions.iter().map(|v| v.trigger.as_str()).collect();
        let ids: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
        let texts: Vec<&str> = versions.iter().map(|v| v.text.as_str()).collect();
        on_conn!(self, |c| -> () {
            sqlx::query!(
                "INSERT INTO trigger_version (trigger_name, version, definition, first_used) \
                 SELECT u.n, u.v, u.d, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(n, v, d) \
                 ON CONFLICT (trigger_name, version) DO NOTHING",
                &names as &[&str],
                &ids as &[&str],
                &texts as &[&str],
                now
            )
            .persistent(self.named())
            .execute(&mut *c)
            .await
            .map_err(storage_error)?;
            Ok(())
        })
    }
}

/// One round of [`SqlBackend::finish_many`] (each stream at most once):
/// deletes for purged completions, one UPDATE for the rest, each row only
/// where its serial still matches. Returns the streams whose
/// compare-and-set held.
async fn compare_and_set(
    tx: &mut PgConnection,
    named: bool,
    runs: Vec<&(&Stream, Finish<'_>)>,
) -> Result<HashSet<i64>> {
    let (purge, keep): (Vec<_>, Vec<_>) = runs.into_iter().partition(|(s, f)| f.target(s.state).is_none());
    let mut held: HashSet<i64> = HashSet::with_capacity(purge.len() + keep.len());
    if !purge.is_empty() {
        let ids: Vec<i64> = purge.iter().map(|(s, _)| s.id).collect();
        let serials: Vec<i32> = purge.iter().map(|(s, _)| s.state_serial_no).collect();
        let done = sqlx::query_scalar!(
            "DELETE FROM stream AS s USING unnest($1::bigint[], $2::int[]) AS f(id, serial) \
             WHERE s.id = f.id AND s.state_serial_no = f.serial RETURNING s.id",
            &ids,
            &serials
        )
        .persistent(named)
        .fetch_all(&mut *tx)
        .await
        .map_err(storage_error)?;
        held.extend(done);
    }
    if !keep.is_empty() {
        let ids: Vec<i64> = keep.iter().map(|(s, _)| s.id).collect();
        let serials: Vec<i32> = keep.iter().map(|(s, _)| s.state_serial_no).collect();
        let states: Vec<i16> = keep.iter().map(|(s, f)| f.target(s.state).map_or(0, |t| t as i16)).collect();
        let reasons: Vec<Option<&str>> = keep.iter().map(|(_, f)| f.reason()).collect();
        let done = sqlx::query_scalar!(
            "UPDATE stream AS s SET state = f.state, state_serial_no = s.state_serial_no + 1, \
             lease_expires_at = NULL, last_error = f.reason \
             FROM unnest($1::bigint[], $2::int[], $3::smallint[], $4::text[]) AS f(id, serial, state, reason) \
             WHERE s.id = f.id AND s.state_serial_no = f.serial RETURNING s.id",
            &ids,
            &serials,
            &states,
            &reasons as &[Option<&str>]
        )
        .persistent(named)
        .fetch_all(&mut *tx)
        .await
        .map_err(storage_error)?;
        held.extend(done);
    }
    Ok(held)
}
