//! The operations queries: streams and events by filter, counts, the
//! transition log (migration 0002). Every user value is a bound parameter;
//! trait conditions look the trait up with `json_each` (the name is bound,
//! never spliced into a JSON path).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use winchester_core::TraitValue;
use winchester_storage::decode::{self, IdLog, EVENT_COLUMNS, STREAM_COLUMNS, TRANSITION_COLUMNS};
use winchester_storage::{
    EventFilter, Page, QueryStore, Result, StoredEvent, Stream, StreamCount, StreamFilter, TraitFilter, Transition,
};

use crate::rows::{micros, Lite};
use crate::{storage_error, SqliteStorage};

fn push_page(qb: &mut QueryBuilder<'_, Sqlite>, page: &Page, limit: Option<u32>) {
    if let Some(after) = page.after {
        qb.push(if page.ascending { " AND id > " } else { " AND id < " }).push_bind(after);
    }
    qb.push(if page.ascending { " ORDER BY id ASC" } else { " ORDER BY id DESC" });
    if let Some(limit) = limit {
        qb.push(" LIMIT ").push_bind(i64::from(limit));
    }
}

/// ` AND EXISTS (...)`: the JSON object in `column` has the key with a value
/// equal to one of the condition's typed candidates. `prefix` is the JSON path
/// from the key's value to the typed value (`$.` for traits, `$.value.` for
/// distinguishing traits).
fn push_trait(qb: &mut QueryBuilder<'_, Sqlite>, column: &str, prefix: &str, f: &TraitFilter) {
    qb.push(format!(" AND EXISTS (SELECT 1 FROM json_each({column}) j WHERE j.key = "));
    qb.push_bind(f.name.clone());
    qb.push(" AND (");
    for (i, v) in f.candidates().into_iter().enumerate() {
        if i > 0 {
            qb.push(" OR ");
        }
        qb.push(format!("json_extract(j.value, '{prefix}{}') = ", v.type_name()));
        match v {
            TraitValue::String(s) => qb.push_bind(s),
            TraitValue::Int(i) => qb.push_bind(i),
            TraitValue::Float(f) => qb.push_bind(f),
            TraitValue::Bool(b) => qb.push_bind(b),
            TraitValue::Datetime(d) => {
                qb.push_bind(serde_json::to_value(d).ok().and_then(|v| v.as_str().map(str::to_string)))
            }
        };
    }
    qb.push("))");
}

fn push_stream_filter(qb: &mut QueryBuilder<'_, Sqlite>, f: &StreamFilter) {
    qb.push(" WHERE 1");
    if let Some(t) = &f.trigger {
        qb.push(" AND trigger_name = ").push_bind(t.clone());
    }
    if let Some(s) = f.state {
        qb.push(" AND state = ").push_bind(s as i64);
    }
    if let Some(t) = f.older_than {
        qb.push(" AND first_event < ").push_bind(micros(t));
    }
    if let Some(t) = f.younger_than {
        qb.push(" AND last_event > ").push_bind(micros(t));
    }
    for d in &f.dist_traits {
        push_trait(qb, "dist_traits", "$.value.", d);
    }
}

fn push_event_filter(qb: &mut QueryBuilder<'_, Sqlite>, f: &EventFilter) {
    qb.push(" WHERE 1");
    if let Some(t) = f.from {
        qb.push(" AND generated >= ").push_bind(micros(t));
    }
    if let Some(t) = f.to {
        qb.push(" AND generated < ").push_bind(micros(t));
    }
    if let Some(p) = &f.event_name {
        if p.is_glob() {
            qb.push(" AND event_type GLOB ").push_bind(p.to_sqlite_glob());
        } else {
            qb.push(" AND event_type = ").push_bind(p.0.clone());
        }
    }
    for t in &f.traits {
        push_trait(qb, "traits", "$.", t);
    }
}

/// `(?, ?, ...)` of the ids, or `(NULL)` when there are none.
fn push_ids(qb: &mut QueryBuilder<'_, Sqlite>, ids: &[i64]) {
    qb.push("(");
    if ids.is_empty() {
        qb.push("NULL");
    }
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    qb.push(")");
}

/// The rows of a log with an id above `after` or in `also`, ascending.
async fn since<T: IdLog>(pool: &SqlitePool, after: i64, also: &[i64], limit: u32) -> Result<Vec<T>> {
    let mut qb = QueryBuilder::new(format!("SELECT {} FROM {} WHERE id > ", T::COLUMNS, T::TABLE));
    qb.push_bind(after).push(" OR id IN ");
    push_ids(&mut qb, also);
    qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
    let rows = qb.build().fetch_all(pool).await.map_err(storage_error)?;
    rows.iter().map(T::decode::<Lite>).collect()
}

#[async_trait]
impl QueryStore for SqliteStorage {
    async fn list_streams(&self, f: &StreamFilter) -> Result<Vec<Stream>> {
        let mut qb = QueryBuilder::new(format!("SELECT {STREAM_COLUMNS} FROM stream"));
        push_stream_filter(&mut qb, f);
        push_page(&mut qb, &f.page, f.row_limit());
        let rows = qb.build().fetch_all(&self.pool).await.map_err(storage_error)?;
        rows.iter().map(decode::stream::<Lite>).collect()
    }

    async fn count_streams(&self, f: &StreamFilter) -> Result<u64> {
        let mut qb = QueryBuilder::new("SELECT count(*) FROM stream");
        push_stream_filter(&mut qb, f);
        let n: i64 = qb.build_query_scalar().fetch_one(&self.pool).await.map_err(storage_error)?;
        Ok(n as u64)
    }

    async fn stream_counts(&self) -> Result<Vec<StreamCount>> {
        let rows = sqlx::query!(
            r#"SELECT trigger_name, state, count(*) AS "n!: i64" FROM stream GROUP BY trigger_name, state ORDER BY trigger_name, state"#
        )
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)?;
        rows.into_iter()
            .map(|r| Ok(StreamCount { trigger: r.trigger_name, state: decode::state(r.state)?, count: r.n as u64 }))
            .collect()
    }

    async fn list_events(&self, f: &EventFilter) -> Result<Vec<StoredEvent>> {
        let mut qb = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM event"));
        push_event_filter(&mut qb, f);
        push_page(&mut qb, &f.page, f.page.limit);
        let rows = qb.build().fetch_all(&self.pool).await.map_err(storage_error)?;
        rows.iter().map(decode::stored_event::<Lite>).collect()
    }

    async fn count_events(&self, f: &EventFilter) -> Result<u64> {
        let mut qb = QueryBuilder::new("SELECT count(*) FROM event");
        push_event_filter(&mut qb, f);
        let n: i64 = qb.build_query_scalar().fetch_one(&self.pool).await.map_err(storage_error)?;
        Ok(n as u64)
    }

    async fn get_event(&self, message_id: &str) -> Result<Option<StoredEvent>> {
        let row = sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM event WHERE message_id = ?"))
            .bind(message_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage_error)?;
        row.as_ref().map(decode::stored_event::<Lite>).transpose()
    }

    async fn event_streams(&self, event_id: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar!("SELECT stream_id FROM stream_event WHERE event_id = ?1 ORDER BY stream_id", event_id)
            .fetch_all(&self.pool)
            .await
            .map_err(storage_error)
    }

    async fn events_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<StoredEvent>> {
        since(&self.pool, after, also, limit).await
    }

    async fn transitions_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<Transition>> {
        since(&self.pool, after, also, limit).await
    }

    async fn transitions_from(&self, since: DateTime<Utc>, limit: u32) -> Result<Vec<Transition>> {
        let rows = sqlx::query(&format!(
            "SELECT {TRANSITION_COLUMNS} FROM stream_transition WHERE at >= ? ORDER BY at, id LIMIT ?"
        ))
        .bind(micros(since))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage_error)?;
        rows.iter().map(decode::transition::<Lite>).collect()
    }

    async fn latest_ids(&self) -> Result<(i64, i64)> {
        let r = sqlx::query!(
            r#"SELECT (SELECT coalesce(max(id), 0) FROM event) AS "events!: i64",
                  (SELECT coalesce(max(id), 0) FROM stream_transition) AS "transitions!: i64""#
        )
        .fetch_one(&self.pool)
        .await
        .map_err(storage_error)?;
        Ok((r.events, r.transitions))
    }
}
