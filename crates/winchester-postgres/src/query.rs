//! The operations queries: streams and events by filter, counts, the
//! transition log (migration 0002). Every user value is a bound parameter.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder};
use winchester_storage::decode::{self, IdLog, EVENT_COLUMNS, STREAM_COLUMNS, TRANSITION_COLUMNS};
use winchester_storage::{
    EventFilter, Page, QueryStore, Result, StoredEvent, Stream, StreamCount, StreamFilter, TraitFilter, Transition,
};

use crate::errors::storage_error;
use crate::rows::Pg;
use crate::PgStorage;

/// The typed JSON values a trait condition may equal.
fn candidates(f: &TraitFilter) -> Vec<serde_json::Value> {
    f.candidates().iter().filter_map(|v| serde_json::to_value(v).ok()).collect()
}

fn push_page(qb: &mut QueryBuilder<'_, Postgres>, page: &Page, limit: Option<u32>) {
    if let Some(after) = page.after {
        qb.push(if page.ascending { " AND id > " } else { " AND id < " }).push_bind(after);
    }
    qb.push(if page.ascending { " ORDER BY id ASC" } else { " ORDER BY id DESC" });
    if let Some(limit) = limit {
        qb.push(" LIMIT ").push_bind(i64::from(limit));
    }
}

fn push_stream_filter(qb: &mut QueryBuilder<'_, Postgres>, f: &StreamFilter) {
    qb.push(" WHERE TRUE");
    if let Some(t) = &f.trigger {
        qb.push(" AND trigger_name = ").push_bind(t.clone());
    }
    if let Some(s) = f.state {
        qb.push(" AND state = ").push_bind(s as i16);
    }
    if let Some(t) = f.older_than {
        qb.push(" AND first_event < ").push_bind(t);
    }
    if let Some(t) = f.younger_than {
        qb.push(" AND last_event > ").push_bind(t);
    }
    for d in &f.dist_traits {
        qb.push(" AND dist_traits -> ")
            .push_bind(d.name.clone())
            .push(" -> 'value' = ANY(")
            .push_bind(candidates(d))
            .push("::jsonb[])");
    }
}

fn push_event_filter(qb: &mut QueryBuilder<'_, Postgres>, f: &EventFilter) {
    qb.push(" WHERE TRUE");
    if let Some(t) = f.from {
        qb.push(" AND generated >= ").push_bind(t);
    }
    if let Some(t) = f.to {
        qb.push(" AND generated < ").push_bind(t);
    }
    if let Some(p) = &f.event_name {
        if p.is_glob() {
            qb.push(" AND event_type LIKE ").push_bind(p.to_like()).push(" ESCAPE '\\'");
        } else {
            qb.push(" AND event_type = ").push_bind(p.0.clone());
        }
    }
    for t in &f.traits {
        qb.push(" AND traits -> ")
            .push_bind(t.name.clone())
            .push(" = ANY(")
            .push_bind(candidates(t))
            .push("::jsonb[])");
    }
}

/// The rows of a log with an id above `after` or in `also`, ascending.
/// Runs the `SELECT` built in `qb` and decodes its rows.
async fn select_rows<T>(
    db: &PgStorage,
    mut qb: QueryBuilder<'_, Postgres>,
    decode: fn(&PgRow) -> Result<T>,
) -> Result<Vec<T>> {
    on_conn!(db, |c| -> Vec<T> {
        let rows = qb.build().persistent(db.named()).fetch_all(&mut *c).await.map_err(storage_error)?;
        rows.iter().map(decode).collect()
    })
}

/// Runs the `SELECT count(*)` built in `qb`.
async fn select_count(db: &PgStorage, mut qb: QueryBuilder<'_, Postgres>) -> Result<u64> {
    on_conn!(db, |c| -> u64 {
        let n: i64 = qb.build_query_scalar().persistent(db.named()).fetch_one(&mut *c).await.map_err(storage_error)?;
        Ok(n as u64)
    })
}

async fn since<T: IdLog>(db: &PgStorage, after: i64, also: &[i64], limit: u32) -> Result<Vec<T>> {
    on_conn!(db, |c| -> Vec<T> {
        let sql = format!("SELECT {} FROM {} WHERE id > $1 OR id = ANY($2) ORDER BY id LIMIT $3", T::COLUMNS, T::TABLE);
        let rows = sqlx::query(&sql)
            .persistent(db.named())
            .bind(after)
            .bind(also)
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await
            .map_err(storage_error)?;
        rows.iter().map(T::decode::<Pg>).collect()
    })
}

#[async_trait]
impl QueryStore for PgStorage {
    async fn list_streams(&self, f: &StreamFilter) -> Result<Vec<Stream>> {
        let mut qb = QueryBuilder::new(format!("SELECT {STREAM_COLUMNS} FROM stream"));
        push_stream_filter(&mut qb, f);
        push_page(&mut qb, &f.page, f.row_limit());
        select_rows(self, qb, decode::stream::<Pg>).await
    }

    async fn count_streams(&self, f: &StreamFilter) -> Result<u64> {
        let mut qb = QueryBuilder::new("SELECT count(*) FROM stream");
        push_stream_filter(&mut qb, f);
        select_count(self, qb).await
    }

    async fn stream_counts(&self) -> Result<Vec<StreamCount>> {
        on_conn!(self, |c| -> Vec<StreamCount> {
            let sql = "SELECT trigger_name, state, count(*) AS n FROM stream GROUP BY trigger_name, state \
                       ORDER BY trigger_name, state";
            let rows = sqlx::query(sql).persistent(self.named()).fetch_all(&mut *c).await.map_err(storage_error)?;
            rows.iter().map(decode::stream_count::<Pg>).collect()
        })
    }

    async fn list_events(&self, f: &EventFilter) -> Result<Vec<StoredEvent>> {
        let mut qb = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM event"));
        push_event_filter(&mut qb, f);
        push_page(&mut qb, &f.page, f.page.limit);
        select_rows(self, qb, decode::stored_event::<Pg>).await
    }

    async fn count_events(&self, f: &EventFilter) -> Result<u64> {
        let mut qb = QueryBuilder::new("SELECT count(*) FROM event");
        push_event_filter(&mut qb, f);
        select_count(self, qb).await
    }

    async fn get_event(&self, message_id: &str) -> Result<Option<StoredEvent>> {
        on_conn!(self, |c| -> Option<StoredEvent> {
            // By its dedup key: one probe of one partition, not one per partition.
            let row = sqlx::query(
                "SELECT e.id, e.message_id, e.event_type, e.generated, e.traits FROM event_key k \
                 JOIN event e ON e.id = k.event_id AND e.generated = k.generated WHERE k.message_id = $1",
            )
            .persistent(self.named())
            .bind(message_id)
            .fetch_optional(&mut *c)
            .await
            .map_err(storage_error)?;
            row.as_ref().map(decode::stored_event::<Pg>).transpose()
        })
    }

    async fn event_streams(&self, event_id: i64) -> Result<Vec<i64>> {
        on_conn!(self, |c| -> Vec<i64> {
            sqlx::query_scalar("SELECT stream_id FROM stream_event WHERE event_id = $1 ORDER BY stream_id")
                .persistent(self.named())
                .bind(event_id)
                .fetch_all(&mut *c)
                .await
                .map_err(storage_error)
        })
    }

    async fn events_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<StoredEvent>> {
        since(self, after, also, limit).await
    }

    async fn transitions_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<Transition>> {
        since(self, after, also, limit).await
    }

    async fn transitions_from(&self, since: DateTime<Utc>, limit: u32) -> Result<Vec<Transition>> {
        on_conn!(self, |c| -> Vec<Transition> {
            let rows = sqlx::query(&format!(
                "SELECT {TRANSITION_COLUMNS} FROM stream_transition WHERE at >= $1 ORDER BY at, id LIMIT $2"
            ))
            .persistent(self.named())
            .bind(since)
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await
            .map_err(storage_error)?;
            rows.iter().map(decode::transition::<Pg>).collect()
        })
    }

    async fn latest_ids(&self) -> Result<(i64, i64)> {
        on_conn!(self, |c| -> (i64, i64) {
            sqlx::query_as(
                "SELECT (SELECT coalesce(max(id), 0) FROM event), (SELECT coalesce(max(id), 0) FROM stream_transition)",
            )
            .persistent(self.named())
            .fetch_one(&mut *c)
            .await
            .map_err(storage_error)
        })
    }
}
