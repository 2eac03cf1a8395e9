//! Stream queries and compare-and-set state changes, in PostgreSQL's dialect.
//! The rules (which streams are ready, where a run leaves its stream) come
//! from [`winchester_storage::rules`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::time::Duration;
use winchester_storage::decode::{self, Columns, STREAM_COLUMNS};
use winchester_storage::rules::{
    claim_assignments, claim_ready_sql, next_due_sql, ready_condition, ready_sql, trigger_condition,
};
use winchester_storage::stream::state_no::{EXPIRING, FIRING};
use winchester_storage::{
    one_for_one, Action, Claimed, Finish, FinishOutcome, Result, Stream, StreamState, StreamStore, TriggerScope,
};

use crate::errors::storage_error;
use crate::ingest::ingest_in_tx;
use crate::rows::Pg;
use crate::PgStorage;

#[async_trait]
impl StreamStore for PgStorage {
    async fn ready_streams(&self, action: Action, now: DateTime<Utc>, limit: u32) -> Result<Vec<Stream>> {
        on_conn!(self, |c| -> Vec<Stream> {
            let rows = sqlx::query(&ready_sql(action, STREAM_COLUMNS, "$1", "$2"))
                .persistent(self.named())
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&mut *c)
                .await
                .map_err(storage_error)?;
            rows.iter().map(decode::stream::<Pg>).collect()
        })
    }

    async fn claim(
        &self,
        stream: &Stream,
        action: Action,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Stream>> {
        on_conn!(self, |c| -> Option<Stream> {
            let lease_end = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::days(1));
            // Still ready for `action` (an expire claim must not take a stream that
            // became ready to fire since it was read).
            let sql = format!(
                "UPDATE stream SET {} WHERE id = $1 AND state_serial_no = $2 AND ({}) RETURNING {STREAM_COLUMNS}",
                claim_assignments(action, "$4"),
                ready_condition(action, "$3")
            );
            let row = sqlx::query(&sql)
                .persistent(self.named())
                .bind(stream.id)
                .bind(stream.state_serial_no)
                .bind(now)
                .bind(lease_end)
                .fetch_optional(&mut *c)
                .await
                .map_err(storage_error)?;
            row.as_ref().map(decode::stream::<Pg>).transpose()
        })
    }

    async fn claim_ready_among(
        &self,
        action: Action,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        triggers: TriggerScope<'_>,
    ) -> Result<Vec<Claimed>> {
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

    async fn finish_many(&self, runs: &[(&Stream, Finish<'_>)], now: DateTime<Utc>) -> Result<Vec<FinishOutcome>> {
        if runs.is_empty() {
            return Ok(vec![]);
        }
        // Partitions for the days of the pipelines' new events, before the transaction.
        self.days.ensure_for(self, runs.iter().flat_map(|(_, f)| f.new_events())).await?;
        let mut tx = self.pool.begin().await.map_err(storage_error)?;
        // Set-based compare-and-set: deletes for purged completions, one UPDATE for
        // the rest; each row only where its serial still matches.
        let (purge, keep): (Vec<_>, Vec<_>) = runs.iter().partition(|(s, f)| f.target(s.state).is_none());
        let mut held: HashSet<i64> = HashSet::with_capacity(runs.len());
        if !purge.is_empty() {
            let ids: Vec<i64> = purge.iter().map(|(s, _)| s.id).collect();
            let serials: Vec<i32> = purge.iter().map(|(s, _)| s.state_serial_no).collect();
            let done = sqlx::query_scalar!(
                "DELETE FROM stream AS s USING unnest($1::bigint[], $2::int[]) AS f(id, serial) \
                 WHERE s.id = f.id AND s.state_serial_no = f.serial RETURNING s.id",
                &ids,
                &serials
            )
            .persistent(self.named())
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
            .persistent(self.named())
            .fetch_all(&mut *tx)
            .await
            .map_err(storage_error)?;
            held.extend(done);
        }
        // New events of the runs whose compare-and-set held, in one ingest.
        let plans: Vec<_> = runs
            .iter()
            .filter(|(s, _)| held.contains(&s.id))
            .flat_map(|(_, f)| f.new_events().iter().cloned())
            .collect();
        let mut saved =
            one_for_one("finish: new events", plans.len(), ingest_in_tx(&mut tx, self.named(), &plans, now).await?)?;
        tx.commit().await.map_err(storage_error)?;
        let mut out = Vec::with_capacity(runs.len());
        for (s, f) in runs {
            if held.contains(&s.id) {
                let rest = saved.split_off(f.new_events().len());
                out.push(FinishOutcome::Done(std::mem::replace(&mut saved, rest)));
            } else {
                out.push(FinishOutcome::LostLease);
            }
        }
        Ok(out)
    }

    async fn set_state(&self, id: i64, serial: i32, to: StreamState) -> Result<Option<Stream>> {
        on_conn!(self, |c| -> Option<Stream> {
            let sql = format!(
                "UPDATE stream SET state = $3, state_serial_no = state_serial_no + 1 \
             WHERE id = $1 AND state_serial_no = $2 RETURNING {STREAM_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .persistent(self.named())
                .bind(id)
                .bind(serial)
                .bind(to as i16)
                .fetch_optional(&mut *c)
                .await
                .map_err(storage_error)?;
            row.as_ref().map(decode::stream::<Pg>).transpose()
        })
    }

    async fn renew_leases(&self, held: &[(i64, i32)], until: DateTime<Utc>) -> Result<Vec<i64>> {
        on_conn!(self, |c| -> Vec<i64> {
            if held.is_empty() {
                return Ok(vec![]);
            }
            let (ids, serials): (Vec<i64>, Vec<i32>) = held.iter().copied().unzip();
            let sql = format!(
                "UPDATE stream AS s SET lease_expires_at = $3 FROM unnest($1::bigint[], $2::int[]) AS h(id, serial) \
             WHERE s.id = h.id AND s.state_serial_no = h.serial AND s.state IN ({FIRING}, {EXPIRING}) RETURNING s.id"
            );
            sqlx::query_scalar(&sql)
                .persistent(self.named())
                .bind(ids)
                .bind(serials)
                .bind(until)
                .fetch_all(&mut *c)
                .await
                .map_err(storage_error)
        })
    }

    async fn get_stream(&self, id: i64) -> Result<Option<Stream>> {
        on_conn!(self, |c| -> Option<Stream> {
            let sql = format!("SELECT {STREAM_COLUMNS} FROM stream WHERE id = $1");
            let row = sqlx::query(&sql)
                .persistent(self.named())
                .bind(id)
                .fetch_optional(&mut *c)
                .await
                .map_err(storage_error)?;
            row.as_ref().map(decode::stream::<Pg>).transpose()
        })
    }

    async fn purge_stream(&self, id: i64) -> Result<bool> {
        on_conn!(self, |c| -> bool {
            let n = sqlx::query("DELETE FROM stream WHERE id = $1")
                .persistent(self.named())
                .bind(id)
                .execute(&mut *c)
                .await
                .map_err(storage_error)?
                .rows_affected();
            Ok(n == 1)
        })
    }

    async fn next_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        on_conn!(self, |c| -> Option<DateTime<Utc>> {
            sqlx::query_scalar(&next_due_sql("$1"))
                .persistent(self.named())
                .bind(now)
                .fetch_one(&mut *c)
                .await
                .map_err(storage_error)
        })
    }
}
