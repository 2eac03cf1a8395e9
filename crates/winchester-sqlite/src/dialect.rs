//! SQLite as a [`SqlBackend`]: how a statement runs (writes under `BEGIN
//! IMMEDIATE`), how values bind (times as INTEGER microseconds, id lists as
//! JSON text read with `json_each`), and the SQL that is SQLite's own (trait
//! conditions through `json_each`, `GLOB` patterns). The statements both
//! backends share are [`winchester_storage::sql`]'s.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Row, Sqlite};
use std::collections::{HashMap, HashSet};
use winchester_core::{DefinitionVersion, TraitValue};
use winchester_storage::decode::{self, STREAM_COLUMNS};
use winchester_storage::rules::{claim_assignments, pick_ready_sql, trigger_condition};
use winchester_storage::sql::{Arg, ClaimBatch, SqlBackend, Stmt, TraitColumn};
use winchester_storage::stream::state_no::{COMPLETED, EXPIRING, FIRING};
use winchester_storage::{one_for_one, Claimed, Finish, FinishOutcome, NamePattern, Result, Stream, TraitFilter};

use crate::ingest::{begin, ingest_in_tx};
use crate::rows::{json, micros, Lite};
use crate::{storage_error, SqliteStorage};

/// Binds one argument as this schema stores it (booleans and times as
/// INTEGER, lists as JSON text).
fn bind<'q>(q: Query<'q, Sqlite, SqliteArguments<'q>>, arg: Arg) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    match arg {
        Arg::Int(v) => q.bind(v),
        Arg::Bool(v) => q.bind(i64::from(v)),
        Arg::Float(v) => q.bind(v),
        Arg::Text(v) => q.bind(v),
        Arg::Time(v) => q.bind(v.map(micros)),
        Arg::Ids(v) => q.bind(json(v)),
        Arg::Json(v) => q.bind(json(v)),
    }
}

/// The query of a statement's SQL, its arguments bound.
fn query(sql: &str, args: Vec<Arg>) -> Query<'_, Sqlite, SqliteArguments<'_>> {
    args.into_iter().fold(sqlx::query(sql), bind)
}

#[async_trait]
impl SqlBackend for SqliteStorage {
    type Columns = Lite;

    async fn rows(&self, stmt: Stmt) -> Result<Vec<SqliteRow>> {
        let Stmt { sql, args, writes } = stmt;
        if !writes {
            if let Some(log) = &self.plans {
                let steps = query(&format!("EXPLAIN QUERY PLAN {sql}"), args.clone())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(storage_error)?;
                let detail = |r: &SqliteRow| r.try_get::<String, _>("detail").map_err(storage_error);
                log.record(&sql, steps.iter().map(detail).collect::<Result<serde_json::Value>>()?);
            }
            return query(&sql, args).fetch_all(&self.pool).await.map_err(storage_error);
        }
        let mut tx = begin(&self.pool).await?;
        let rows = query(&sql, args).fetch_all(&mut *tx).await.map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        Ok(rows)
    }

    async fn execute(&self, stmt: Stmt) -> Result<u64> {
        let Stmt { sql, args, .. } = stmt;
        let mut tx = begin(&self.pool).await?;
        let n = query(&sql, args).execute(&mut *tx).await.map_err(storage_error)?.rows_affected();
        tx.commit().await.map_err(storage_error)?;
        Ok(n)
    }

    /// `EXISTS` a key of the JSON object in `column` with a value equal to
    /// one of the candidates (the name is bound, never spliced into a JSON
    /// path).
    fn push_trait(stmt: &mut Stmt, column: TraitColumn, f: &TraitFilter) {
        let (column, prefix) = match column {
            TraitColumn::EventTraits => ("traits", "$."),
            TraitColumn::DistTraits => ("dist_traits", "$.value."),
        };
        stmt.push(&format!(" AND EXISTS (SELECT 1 FROM json_each({column}) j WHERE j.key = "));
        stmt.bind(f.name.as_str()).push(" AND (");
        for (i, v) in f.candidates().into_iter().enumerate() {
            stmt.push(if i > 0 { " OR " } else { "" });
            stmt.push(&format!("json_extract(j.value, '{prefix}{}') = ", v.type_name()));
            stmt.bind(match v {
                TraitValue::String(s) => Arg::Text(Some(s)),
                TraitValue::Int(i) => Arg::Int(i),
                TraitValue::Float(f) => Arg::Float(f),
                TraitValue::Bool(b) => Arg::Bool(b),
                TraitValue::Datetime(d) => {
                    Arg::Text(serde_json::to_value(d).ok().and_then(|v| v.as_str().map(str::to_string)))
                }
            });
        }
        stmt.push("))");
    }

    fn push_event_type_glob(stmt: &mut Stmt, p: &NamePattern) {
        stmt.push(" AND event_type GLOB ").bind(p.to_sqlite_glob().as_str());
    }

    fn in_ids(stmt: &mut Stmt, column: &str, ids: &[i64]) -> String {
        format!("{column} IN (SELECT value FROM json_each({}))", stmt.arg(Arg::Ids(ids.to_vec())))
    }

    const MEMBER_EVENT: &'static str = "FROM stream_event se JOIN event e ON e.id = se.event_id";

    const FENCE: &'static str = " LIMIT -1 OFFSET 0";

    const KEYED_EVENT: &'static str = "JOIN event e ON e.id = k.id";

    const EVENT_BY_MESSAGE_ID: &'static str =
        "SELECT id, message_id, event_type, generated, traits FROM event WHERE message_id = $1";

    const VERSION_ORDER: &'static str = "trigger_name, first_used, version";

    /// BEGIN IMMEDIATE already excludes every other writer: no row locks
    /// needed. SQLite's RETURNING cannot see an UPDATE's FROM list, so the
    /// streams are picked first and claimed by id, in the same transaction.
    async fn claim_batch(&self, batch: ClaimBatch<'_>) -> Result<Vec<Claimed>> {
        let ClaimBatch { action, now, lease_until, limit, triggers } = batch;
        let mut tx = begin(&self.pool).await?;
        let filter = trigger_condition(triggers, "trigger_name IN (SELECT value FROM json_each(?3))");
        let sql = pick_ready_sql(action, "?1", "?2", &filter);
        let mut pick = sqlx::query_as(&sql).bind(micros(now)).bind(limit as i64);
        if let Some(names) = triggers.names() {
            pick = pick.bind(json(names.to_vec()));
        }
        let picked: Vec<(i64, bool)> = pick.fetch_all(&mut *tx).await.map_err(storage_error)?;
        let reclaimed: HashSet<i64> = picked.iter().filter(|(_, r)| *r).map(|(id, _)| *id).collect();
        let ids = json(picked.iter().map(|(id, _)| *id).collect::<Vec<_>>());
        let sql = format!(
            "UPDATE stream SET {} WHERE id IN (SELECT value FROM json_each(?2)) RETURNING {STREAM_COLUMNS}",
            claim_assignments(action, "?1")
        );
        let rows =
            sqlx::query(&sql).bind(micros(lease_until)).bind(ids).fetch_all(&mut *tx).await.map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        let mut claimed = rows
            .iter()
            .map(|r| decode::stream::<Lite>(r).map(|s| Claimed { reclaimed: reclaimed.contains(&s.id), stream: s }))
            .collect::<Result<Vec<_>>>()?;
        // Oldest due first, as picked.
        let order: HashMap<i64, usize> = picked.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
        claimed.sort_by_key(|c| order.get(&c.stream.id).copied().unwrap_or(usize::MAX));
        Ok(claimed)
    }

    /// One compare-and-set per stream (statements are cheap in-process); a
    /// stream's new events are saved only if its own compare-and-set held.
    async fn finish_many(&self, runs: &[(&Stream, Finish<'_>)], now: DateTime<Utc>) -> Result<Vec<FinishOutcome>> {
        if runs.is_empty() {
            return Ok(vec![]);
        }
        let mut tx = begin(&self.pool).await?;
        let mut out = Vec::with_capacity(runs.len());
        for (claimed, finish) in runs {
            let (id, serial) = (claimed.id, claimed.state_serial_no as i64);
            let done = match finish.target(claimed.state) {
                None => {
                    sqlx::query!("DELETE FROM stream WHERE id = ?1 AND state_serial_no = ?2", id, serial)
                        .execute(&mut *tx)
                        .await
                }
                Some(to) => {
                    let (to, reason) = (to as i64, finish.reason());
                    sqlx::query!(
                        "UPDATE stream SET state = ?3, state_serial_no = state_serial_no + 1, lease_expires_at = NULL, \
                         last_error = ?4 WHERE id = ?1 AND state_serial_no = ?2",
                        id,
                        serial,
                        to,
                        reason
                    )
                    .execute(&mut *tx)
                    .await
                }
            }
            .map_err(storage_error)?
            .rows_affected();
            if done != 1 {
                out.push(FinishOutcome::LostLease);
                continue;
            }
            let plans = finish.new_events();
            let saved = one_for_one("finish: new events", plans.len(), ingest_in_tx(&mut tx, plans, now).await?)?;
            out.push(FinishOutcome::Done(saved));
        }
        tx.commit().await.map_err(storage_error)?;
        Ok(out)
    }

    async fn renew_leases(&self, held: &[(i64, i32)], until: DateTime<Utc>) -> Result<Vec<i64>> {
        let pairs: Vec<serde_json::Value> = held.iter().map(|&(id, serial)| serde_json::json!([id, serial])).collect();
        let (until, pairs) = (micros(until), json(pairs));
        let (firing, expiring) = (FIRING as i64, EXPIRING as i64);
        let mut tx = begin(&self.pool).await?;
        let ids = sqlx::query_scalar!(
            r#"UPDATE stream SET lease_expires_at = ?1
               WHERE (id, state_serial_no) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?2))
               AND state IN (?3, ?4) RETURNING id AS "id!: i64""#,
            until,
            pairs,
            firing,
            expiring
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(storage_error)?;
        tx.commit().await.map_err(storage_error)?;
        Ok(ids)
    }

    async fn trim_events(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<u64> {
        let (cutoff, limit) = (micros(cutoff), i64::from(limit));
        let n = sqlx::query!(
            "DELETE FROM event WHERE id IN ( \
               SELECT e.id FROM event e WHERE e.generated < ?1 AND NOT EXISTS ( \
                 SELECT 1 FROM stream_event se JOIN stream s ON s.id = se.stream_id \
                 WHERE se.event_id = e.id AND s.state <> ?3) \
               ORDER BY e.generated LIMIT ?2)",
            cutoff,
            limit,
            COMPLETED
        )
        .execute(&self.pool)
        .await
        .map_err(storage_error)?
        .rows_affected();
        Ok(n)
    }

    async fn record_versions(&self, versions: &[DefinitionVersion], now: DateTime<Utc>) -> Result<()> {
        let now = micros(now);
        let mut tx = begin(&self.pool).await?;
        for v in versions {
            sqlx::query!(
                "INSERT INTO trigger_version (trigger_name, version, definition, first_used) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (trigger_name, version) DO NOTHING",
                v.trigger,
                v.version,
                v.text,
                now
            )
            .execute(&mut *tx)
            .await
            .map_err(storage_error)?;
        }
        tx.commit().await.map_err(storage_error)
    }
}
