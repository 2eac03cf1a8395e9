//! The operations queries: streams and events by filter, counts, the
//! transition log (migration 0002). Every user value is a bound parameter.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use winchester_storage::{
    EventFilter, Page, Result, StorageError, StoredEvent, Stream, StreamCount, StreamFilter, StreamState, TraitFilter,
    Transition, TransitionKind,
};

use crate::errors::storage_error;
use crate::rows::{self, STREAM_COLUMNS};

const EVENT_COLUMNS: &str = "id, message_id, event_type, generated, traits";
const TRANSITION_COLUMNS: &str = "id, stream_id, trigger_name, old_state, new_state, at";

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

fn stored_event(r: &PgRow) -> Result<StoredEvent> {
    Ok(StoredEvent { id: r.try_get("id").map_err(storage_error)?, event: rows::event(r)? })
}

fn transition(r: &PgRow) -> Result<Transition> {
    let state = |n: i16| StreamState::from_i16(n).ok_or_else(|| StorageError::Corrupt(format!("stream state {n}")));
    let from = state(r.try_get("old_state").map_err(storage_error)?)?;
    let to = r.try_get::<Option<i16>, _>("new_state").map_err(storage_error)?.map(state).transpose()?;
    Ok(Transition {
        id: r.try_get("id").map_err(storage_error)?,
        stream_id: r.try_get("stream_id").map_err(storage_error)?,
        trigger: r.try_get("trigger_name").map_err(storage_error)?,
        kind: TransitionKind::classify(from, to)
            .ok_or_else(|| StorageError::Corrupt(format!("transition {from} -> {to:?} is not logged")))?,
        from,
        to,
        at: r.try_get("at").map_err(storage_error)?,
    })
}

pub(crate) async fn list_streams(pool: &PgPool, f: &StreamFilter) -> Result<Vec<Stream>> {
    on_conn!(pool, |c| -> Vec<Stream> {
        let mut qb = QueryBuilder::new(format!("SELECT {STREAM_COLUMNS} FROM stream"));
        push_stream_filter(&mut qb, f);
        push_page(&mut qb, &f.page, f.row_limit());
        let rows = qb.build().persistent(crate::named_statements()).fetch_all(&mut *c).await.map_err(storage_error)?;
        rows.iter().map(rows::stream).collect()
    })
}

pub(crate) async fn count_streams(pool: &PgPool, f: &StreamFilter) -> Result<u64> {
    on_conn!(pool, |c| -> u64 {
        let mut qb = QueryBuilder::new("SELECT count(*) FROM stream");
        push_stream_filter(&mut qb, f);
        let n: i64 = qb
            .build_query_scalar()
            .persistent(crate::named_statements())
            .fetch_one(&mut *c)
            .await
            .map_err(storage_error)?;
        Ok(n as u64)
    })
}

pub(crate) async fn stream_counts(pool: &PgPool) -> Result<Vec<StreamCount>> {
    on_conn!(pool, |c| -> Vec<StreamCount> {
        let sql = "SELECT trigger_name, state, count(*) AS n FROM stream GROUP BY trigger_name, state \
                   ORDER BY trigger_name, state";
        let rows =
            sqlx::query(sql).persistent(crate::named_statements()).fetch_all(&mut *c).await.map_err(storage_error)?;
        rows.iter()
            .map(|r| {
                let state: i16 = r.try_get("state").map_err(storage_error)?;
                Ok(StreamCount {
                    trigger: r.try_get("trigger_name").map_err(storage_error)?,
                    state: StreamState::from_i16(state)
                        .ok_or_else(|| StorageError::Corrupt(format!("stream state {state}")))?,
                    count: r.try_get::<i64, _>("n").map_err(storage_error)? as u64,
                })
            })
            .collect()
    })
}

pub(crate) async fn list_events(pool: &PgPool, f: &EventFilter) -> Result<Vec<StoredEvent>> {
    on_conn!(pool, |c| -> Vec<StoredEvent> {
        let mut qb = QueryBuilder::new(format!("SELECT {EVENT_COLUMNS} FROM event"));
        push_event_filter(&mut qb, f);
        push_page(&mut qb, &f.page, f.page.limit);
        let rows = qb.build().persistent(crate::named_statements()).fetch_all(&mut *c).await.map_err(storage_error)?;
        rows.iter().map(stored_event).collect()
    })
}

pub(crate) async fn count_events(pool: &PgPool, f: &EventFilter) -> Result<u64> {
    on_conn!(pool, |c| -> u64 {
        let mut qb = QueryBuilder::new("SELECT count(*) FROM event");
        push_event_filter(&mut qb, f);
        let n: i64 = qb
            .build_query_scalar()
            .persistent(crate::named_statements())
            .fetch_one(&mut *c)
            .await
            .map_err(storage_error)?;
        Ok(n as u64)
    })
}

pub(crate) async fn get_event(pool: &PgPool, message_id: &str) -> Result<Option<StoredEvent>> {
    on_conn!(pool, |c| -> Option<StoredEvent> {
        // By its dedup key: one probe of one partition, not one per partition.
        let row = sqlx::query(
            "SELECT e.id, e.message_id, e.event_type, e.generated, e.traits FROM event_key k \
             JOIN event e ON e.id = k.event_id AND e.generated = k.generated WHERE k.message_id = $1",
        )
        .persistent(crate::named_statements())
        .bind(message_id)
        .fetch_optional(&mut *c)
        .await
        .map_err(storage_error)?;
        row.as_ref().map(stored_event).transpose()
    })
}

pub(crate) async fn event_streams(pool: &PgPool, event_id: i64) -> Result<Vec<i64>> {
    on_conn!(pool, |c| -> Vec<i64> {
        sqlx::query_scalar("SELECT stream_id FROM stream_event WHERE event_id = $1 ORDER BY stream_id")
            .persistent(crate::named_statements())
            .bind(event_id)
            .fetch_all(&mut *c)
            .await
            .map_err(storage_error)
    })
}

/// Rows of `select` (ending in `FROM table`) with an id above `after` or in `also`, ascending.
async fn since<T>(
    pool: &PgPool,
    select: &str,
    after: i64,
    also: &[i64],
    limit: u32,
    decode: fn(&PgRow) -> Result<T>,
) -> Result<Vec<T>> {
    on_conn!(pool, |c| -> Vec<T> {
        let rows = sqlx::query(&format!("{select} WHERE id > $1 OR id = ANY($2) ORDER BY id LIMIT $3"))
            .persistent(crate::named_statements())
            .bind(after)
            .bind(also)
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await
            .map_err(storage_error)?;
        rows.iter().map(decode).collect()
    })
}

pub(crate) async fn events_since(pool: &PgPool, after: i64, also: &[i64], limit: u32) -> Result<Vec<StoredEvent>> {
    since(pool, &format!("SELECT {EVENT_COLUMNS} FROM event"), after, also, limit, stored_event).await
}

pub(crate) async fn transitions_since(pool: &PgPool, after: i64, also: &[i64], limit: u32) -> Result<Vec<Transition>> {
    since(pool, &format!("SELECT {TRANSITION_COLUMNS} FROM stream_transition"), after, also, limit, transition).await
}

pub(crate) async fn transitions_from(pool: &PgPool, since: DateTime<Utc>, limit: u32) -> Result<Vec<Transition>> {
    on_conn!(pool, |c| -> Vec<Transition> {
        let rows = sqlx::query(&format!(
            "SELECT {TRANSITION_COLUMNS} FROM stream_transition WHERE at >= $1 ORDER BY at, id LIMIT $2"
        ))
        .persistent(crate::named_statements())
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&mut *c)
        .await
        .map_err(storage_error)?;
        rows.iter().map(transition).collect()
    })
}

pub(crate) async fn latest_ids(pool: &PgPool) -> Result<(i64, i64)> {
    on_conn!(pool, |c| -> (i64, i64) {
        sqlx::query_as(
            "SELECT (SELECT coalesce(max(id), 0) FROM event), (SELECT coalesce(max(id), 0) FROM stream_transition)",
        )
        .persistent(crate::named_statements())
        .fetch_one(&mut *c)
        .await
        .map_err(storage_error)
    })
}
