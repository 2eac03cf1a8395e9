//! One function per endpoint. The `#[utoipa::path]` annotations build both the
//! router and the OpenAPI document.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use utoipa::{IntoParams, ToSchema};
use winchester::json;
use winchester::tail::TailFilter;
use winchester_storage::{all_stream_events, Count, NamePattern, Page, Stream, StreamState, COUNT_CAP};

use crate::error::ApiError;
use crate::params::{Params, EVENT_FILTER_PARAMS, PAGE_PARAMS, STREAM_FILTER_PARAMS};
use crate::{ApiState, BULK_PAGE};

/// Header carrying the mark of the next page.
pub const NEXT_MARK: &str = "x-next-mark";

/// Any JSON object (streams and events are documented in docs/api.md).
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct JsonObject(Value);

/// `{"error": "..."}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong; a 400 names the parameter.
    pub error: String,
}

/// `{"count": N, "exact": true}`: counting stops at 10,000 (then `"count":
/// 10000, "exact": false`), so that a count costs the same however much is
/// stored.
#[derive(Serialize, ToSchema)]
pub struct CountBody {
    /// Matching rows (the cap when not exact).
    pub count: u64,
    /// False when more rows than `count` match.
    pub exact: bool,
}

impl From<Count> for CountBody {
    fn from(c: Count) -> CountBody {
        CountBody { count: c.n, exact: c.exact }
    }
}

/// What a bulk action did.
#[derive(Serialize, ToSchema)]
pub struct BulkBody {
    /// Streams matching the filter.
    pub matched: u64,
    /// Streams changed.
    pub changed: u64,
}

/// The stream filters (quincy's names).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StreamQuery {
    /// ISO 8601: only streams whose first event is before this.
    older_than: Option<String>,
    /// ISO 8601: only streams whose last event is after this.
    younger_than: Option<String>,
    /// active, firing, expiring, error, expire_error, completed, retry_fire, retry_expire.
    state: Option<String>,
    /// Only this trigger's streams.
    trigger_name: Option<String>,
    /// Alias of trigger_name (klugman).
    name: Option<String>,
    /// `k:v;k2:v2` (or `,` between pairs); values compared with the trait's type.
    distinguishing_traits: Option<String>,
}

/// Paging.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageQuery {
    /// The last row's id in hex; a leading `+` lists oldest first. The next
    /// page's mark is in the `X-Next-Mark` response header.
    mark: Option<String>,
    /// Rows per page (default 200, at most 1000).
    limit: Option<u32>,
}

/// Include each stream's events.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DetailsQuery {
    /// true: each stream carries `events`.
    details: Option<bool>,
}

/// The event filters.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventQuery {
    /// ISO 8601: only events generated at or after this.
    from_datetime: Option<String>,
    /// ISO 8601: only events generated before this.
    to_datetime: Option<String>,
    /// Exact event type, or a glob with `*` and `?`.
    event_name: Option<String>,
    /// `k:v;k2:v2` (or `,`); values compared with the trait's type (`memory_mb:4096` is an int).
    traits: Option<String>,
}

/// What the tail sends.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TailQuery {
    /// Only events whose type matches (exact or glob).
    event_name: Option<String>,
    /// Only events with these traits (`k:v;...`).
    traits: Option<String>,
    /// Only transitions of this trigger.
    trigger_name: Option<String>,
    /// `events`, `streams`, or both (default, `events,streams`).
    kind: Option<String>,
}

fn with_mark(body: Vec<Value>, page: &Page, last: Option<i64>) -> Response {
    let mut r = Json(Value::Array(body)).into_response();
    if let Some(id) = last {
        if let Ok(v) = HeaderValue::from_str(&page.next_mark(id)) {
            r.headers_mut().insert(HeaderName::from_static(NEXT_MARK), v);
        }
    }
    r
}

async fn stream_body(st: &ApiState, s: &Stream, details: bool) -> Result<Value, ApiError> {
    let mut v = json::stream(s);
    if details {
        let events = all_stream_events(st.storage.as_ref(), s.id, 1000).await?;
        v["events"] = Value::Array(events.iter().map(|e| e.to_json()).collect());
    }
    Ok(v)
}

fn stream_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_request(format!("path parameter id: {raw:?} is not a stream id")))
}

/// Streams matching the filters, newest first (or oldest first with a `+` mark).
#[utoipa::path(get, path = "/v1/streams", tag = "streams",
    params(StreamQuery, DetailsQuery, PageQuery),
    responses((status = 200, description = "Stream objects", body = Vec<JsonObject>), (status = 400, body = ErrorBody)))]
pub async fn list_streams(State(st): State<ApiState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::from_query(q.as_deref(), &[STREAM_FILTER_PARAMS, PAGE_PARAMS, &["details"]])?;
    let mut filter = p.stream_filter()?;
    filter.page = p.page()?;
    let details = p.flag("details")?;
    let streams = st.reads().list_streams(&filter).await?;
    let mut body = Vec::with_capacity(streams.len());
    for s in &streams {
        body.push(stream_body(&st, s, details).await?);
    }
    Ok(with_mark(body, &filter.page, streams.last().map(|s| s.id)))
}

/// How many streams match the filters.
#[utoipa::path(get, path = "/v1/streams/count", tag = "streams", params(StreamQuery),
    responses((status = 200, description = "`[{\"count\": N, \"exact\": true}]`", body = Vec<CountBody>), (status = 400, body = ErrorBody)))]
pub async fn count_streams(
    State(st): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<CountBody>>, ApiError> {
    let p = Params::from_query(q.as_deref(), &[STREAM_FILTER_PARAMS])?;
    let n = st.reads().count_streams_upto(&p.stream_filter()?, Some(COUNT_CAP)).await?;
    Ok(Json(vec![n.into()]))
}

/// One stream (a one-element array), with its events when `details=true`.
#[utoipa::path(get, path = "/v1/streams/{id}", tag = "streams",
    params(("id" = i64, Path, description = "Stream id"), DetailsQuery),
    responses((status = 200, body = Vec<JsonObject>), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub async fn get_stream(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let id = stream_id(&id)?;
    let p = Params::from_query(q.as_deref(), &[&["details"]])?;
    let s = st.storage.get_stream(id).await?.ok_or_else(|| ApiError::not_found(format!("no stream with id {id}")))?;
    Ok(Json(json!([stream_body(&st, &s, p.flag("details")?).await?])))
}

/// Resets a failed stream: error -> retry_fire, expire_error -> retry_expire.
#[utoipa::path(put, path = "/v1/streams/{id}", tag = "streams", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Stream id")),
    responses((status = 200, description = "The stream afterwards", body = Vec<JsonObject>),
        (status = 404, body = ErrorBody), (status = 409, description = "Not in error or expire_error", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn reset_stream(State(st): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = stream_id(&id)?;
    let before =
        st.storage.get_stream(id).await?.ok_or_else(|| ApiError::not_found(format!("no stream with id {id}")))?;
    if before.state.retry_state().is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("stream {id} is {}; only error and expire_error streams can be reset", before.state),
        ));
    }
    let s = st.storage.retry_stream(id).await?.ok_or_else(|| ApiError::not_found(format!("no stream with id {id}")))?;
    Ok(Json(json!([json::stream(&s)])))
}

/// Deletes a stream and its memberships (its events stay).
#[utoipa::path(delete, path = "/v1/streams/{id}", tag = "streams", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Stream id")),
    responses((status = 200, description = "`{\"purged\": id}`", body = JsonObject), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn delete_stream(State(st): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = stream_id(&id)?;
    if st.storage.purge_stream(id).await? {
        Ok(Json(json!({ "purged": id })))
    } else {
        Err(ApiError::not_found(format!("no stream with id {id}")))
    }
}

/// The stream filter of a bulk body; an empty filter needs `"all": true`.
fn bulk_filter(body: &Value) -> Result<winchester_storage::StreamFilter, ApiError> {
    let (p, traits) = Params::from_body(body, &[STREAM_FILTER_PARAMS, &["all"]])?;
    let mut filter = p.stream_filter()?;
    filter.dist_traits.extend(traits);
    let all = p.flag("all")?;
    let empty = filter.trigger.is_none()
        && filter.state.is_none()
        && filter.older_than.is_none()
        && filter.younger_than.is_none()
        && filter.dist_traits.is_empty();
    if empty && !all {
        return Err(ApiError::bad_request("body: give at least one filter, or \"all\": true to act on every stream"));
    }
    Ok(filter)
}

fn json_body(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("body: not JSON: {e}")))
}

/// Resets every failed stream matching the filter (JSON body with the stream
/// filters), in pages.
#[utoipa::path(post, path = "/v1/streams/retry", tag = "bulk", security(("bearer" = [])),
    request_body(content = JsonObject, description = "Stream filters, e.g. `{\"state\": \"error\", \"trigger_name\": \"t\"}`"),
    responses((status = 200, body = BulkBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn bulk_retry(State(st): State<ApiState>, body: axum::body::Bytes) -> Result<Json<BulkBody>, ApiError> {
    let filter = bulk_filter(&json_body(&body)?)?;
    let o = st.storage.retry_streams(&filter, BULK_PAGE).await?;
    Ok(Json(BulkBody { matched: o.matched, changed: o.changed }))
}

/// Purges every stream matching the filter, in pages.
#[utoipa::path(post, path = "/v1/streams/purge", tag = "bulk", security(("bearer" = [])),
    request_body(content = JsonObject, description = "Stream filters"),
    responses((status = 200, body = BulkBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn bulk_purge(State(st): State<ApiState>, body: axum::body::Bytes) -> Result<Json<BulkBody>, ApiError> {
    let filter = bulk_filter(&json_body(&body)?)?;
    let o = st.storage.purge_streams(&filter, BULK_PAGE).await?;
    Ok(Json(BulkBody { matched: o.matched, changed: o.changed }))
}

/// Events matching the filters, newest first (or oldest first with a `+` mark),
/// as flat JSON objects (the ingest format).
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery, PageQuery),
    responses((status = 200, body = Vec<JsonObject>), (status = 400, body = ErrorBody)))]
pub async fn list_events(State(st): State<ApiState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::from_query(q.as_deref(), &[EVENT_FILTER_PARAMS, PAGE_PARAMS])?;
    let mut filter = p.event_filter()?;
    filter.page = p.page()?;
    let events = st.reads().list_events(&filter).await?;
    let body = events.iter().map(|e| e.event.to_json()).collect();
    Ok(with_mark(body, &filter.page, events.last().map(|e| e.id)))
}

/// How many events match the filters.
#[utoipa::path(get, path = "/v1/events/count", tag = "events", params(EventQuery),
    responses((status = 200, body = Vec<CountBody>), (status = 400, body = ErrorBody)))]
pub async fn count_events(State(st): State<ApiState>, RawQuery(q): RawQuery) -> Result<Json<Vec<CountBody>>, ApiError> {
    let p = Params::from_query(q.as_deref(), &[EVENT_FILTER_PARAMS])?;
    let n = st.reads().count_events_upto(&p.event_filter()?, Some(COUNT_CAP)).await?;
    Ok(Json(vec![n.into()]))
}

/// One event by message_id; the ids of the streams it belongs to are in the
/// `X-Stream-Ids` header.
#[utoipa::path(get, path = "/v1/events/{message_id}", tag = "events",
    params(("message_id" = String, Path, description = "The event's message_id")),
    responses((status = 200, body = JsonObject), (status = 404, body = ErrorBody)))]
pub async fn get_event(State(st): State<ApiState>, Path(message_id): Path<String>) -> Result<Response, ApiError> {
    let e = st
        .reads()
        .get_event(&message_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no event with message_id {message_id:?}")))?;
    let streams = st.reads().event_streams(e.id).await?;
    let mut r = Json(e.event.to_json()).into_response();
    let ids = streams.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    if let Ok(v) = HeaderValue::from_str(&ids) {
        r.headers_mut().insert(HeaderName::from_static("x-stream-ids"), v);
    }
    Ok(r)
}

/// The loaded trigger definitions with their stream counts per state (each
/// counted up to 10,000; `streams_exact` is false when one stopped there).
#[utoipa::path(get, path = "/v1/triggers", tag = "triggers", responses((status = 200, body = Vec<JsonObject>)))]
pub async fn list_triggers(State(st): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let counts = st.counts.get(st.reads()).await?;
    let out: Vec<Value> = st
        .triggers
        .get()
        .iter()
        .map(|t| {
            let states: serde_json::Map<String, Value> = StreamState::ALL
                .iter()
                .map(|s| {
                    let n = counts.iter().find(|c| c.trigger == t.name && c.state == *s).map_or(0, |c| c.count.n);
                    (s.as_str().to_string(), json!(n))
                })
                .collect();
            json!({
                "name": t.name,
                "distinguished_by": t.distinguished_by.iter().map(|d| d.name().to_string()).collect::<Vec<_>>(),
                "fire_pipeline": t.fire_pipeline,
                "expire_pipeline": t.expire_pipeline,
                "debug_level": t.debug_level,
                "streams": states,
                "streams_exact": counts.iter().filter(|c| c.trigger == t.name).all(|c| c.count.exact),
            })
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

/// Server-sent events: `event` (a new event, flat JSON) and `stream` (a
/// transition: fired, expired, failed, reset, purged, completed) as they are
/// committed.
/// A client that falls behind is disconnected.
#[utoipa::path(get, path = "/v1/tail", tag = "tail", params(TailQuery),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream"), (status = 400, body = ErrorBody)))]
pub async fn tail(State(st): State<ApiState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::from_query(q.as_deref(), &[&["event_name", "traits", "trigger_name", "kind"]])?;
    let mut filter = TailFilter {
        event_name: p.get("event_name").map(|n| NamePattern(n.to_string())),
        traits: p.traits("traits")?,
        trigger: p.get("trigger_name").map(str::to_string),
        events: true,
        streams: true,
    };
    if let Some(kind) = p.get("kind") {
        filter.events = false;
        filter.streams = false;
        for k in kind.split(',') {
            match k.trim() {
                "events" => filter.events = true,
                "streams" => filter.streams = true,
                other => {
                    return Err(ApiError::bad_request(format!("parameter kind: {other:?} is not events or streams")))
                }
            }
        }
    }
    let (rx, stopping) = st.subscribe();
    let stream = futures::stream::unfold((rx, stopping, filter), |(mut rx, mut stopping, filter)| async move {
        loop {
            let got = tokio::select! {
                r = rx.recv() => r,
                _ = stopping.changed() => return None,
            };
            match got {
                Ok(item) if filter.matches(&item) => {
                    let ev = SseEvent::default().event(item.kind()).id(item.id()).data(item.to_json().to_string());
                    return Some((Ok::<_, Infallible>(ev), (rx, stopping, filter)));
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "Dropping a tail client that fell behind.");
                    return None;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let mut r = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = JsonObject)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database is reachable and its schema current; with a hot standby
/// for reads, `read_replica` says where reads go and the replica lag.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = JsonObject), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(st): State<ApiState>) -> Result<Json<Value>, ApiError> {
    (st.ready)().await.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?;
    let mut body = json!({ "status": "ready" });
    if let Some(router) = &st.replica {
        let now = router.status();
        body["read_replica"] = json!({
            "reads_from": now.target.as_str(),
            "lag_seconds": now.lag.map(|l| l.as_secs_f64()),
            "max_read_lag_seconds": router.max_lag().as_secs_f64(),
            "status": now.describe(router.max_lag()),
        });
    }
    Ok(Json(body))
}

/// Prometheus text of the process's metrics.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], winchester::metrics::render()).into_response()
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "health", responses((status = 200, body = JsonObject)))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi_document())
}
