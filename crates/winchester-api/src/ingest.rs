//! `POST /v1/events`: events in over HTTP, answered only once they are
//! committed (docs/api.md, "POST /v1/events"; the CloudEvents mapping is
//! `winchester_core::cloudevent`).
//!
//! The body is read (up to `api.ingest_max_body_bytes`: 413 beyond), cut into
//! items by its media type, each item made an event (flat JSON events as
//! `winchester ingest` reads them, raw notifications through the
//! distiller, CloudEvents through their mapping), and the events handed to
//! the trigger manager's group-commit batcher
//! ([`TriggerManager::add_events_grouped`]) with the queue bound
//! (`api.ingest_queue_limit`: 429 when over). Every item gets its own result,
//! in order.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::time::Instant;
use utoipa::{IntoParams, ToSchema};
use winchester::{EventOutcome, TriggerManager};
use winchester_core::cloudevent::{self, json_type, CloudEvent, Data};
use winchester_core::Event;

use crate::error::ApiError;
use crate::handlers::{ErrorBody, JsonObject};
use crate::params::Params;
use crate::ApiState;

/// Seconds a client is told to wait (`Retry-After`) after a 429 or a 503.
pub const RETRY_AFTER_S: u32 = 1;

/// How `POST /v1/events` takes events.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// Saves them (its source is `http`); a reload swaps its definitions.
    pub manager: TriggerManager,
    /// Largest body, in bytes (`api.ingest_max_body_bytes`).
    pub max_body: usize,
    /// Most events waiting for their commit (`api.ingest_queue_limit`).
    pub queue_limit: usize,
}

/// `notifications=true`: the items are raw OpenStack notifications.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct IngestQuery {
    /// true: each item is a raw OpenStack notification, distilled through
    /// `distiller_config` (JSON and JSON lines bodies only).
    notifications: Option<bool>,
}

/// What happened to one item of the body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResult {
    /// Its position in the body (array element, or non-blank line), from 0.
    pub index: usize,
    /// Its line (JSON lines bodies), from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The event's message_id, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// `ingested`, `duplicate` (already stored; nothing changed), `rejected`
    /// (invalid: sending it again will not help) or `unavailable` (not saved:
    /// the database is unavailable; send it again).
    pub outcome: &'static str,
    /// Why it was not saved, naming the item, its message_id and the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer of `POST /v1/events`: counts and one result per item, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestBody {
    /// Items saved.
    pub ingested: u64,
    /// Items whose message_id was already stored.
    pub duplicates: u64,
    /// Items refused as invalid.
    pub rejected: u64,
    /// Items not saved because the database is unavailable.
    pub unavailable: u64,
    /// One per item, in the body's order.
    pub results: Vec<ItemResult>,
}

/// What the body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `application/json` (or no content type): an object or an array of them.
    Json,
    /// `application/x-ndjson`: one JSON value per line.
    Lines,
    /// `application/cloudevents+json`.
    Structured,
    /// `application/cloudevents-batch+json`.
    Batch,
    /// `ce-*` headers, the body being `data`.
    Binary,
}

const MEDIA_TYPES: &str = "application/json, application/x-ndjson, application/cloudevents+json, \
    application/cloudevents-batch+json, or CloudEvents binary mode (ce-* headers)";

fn format(headers: &HeaderMap) -> Result<Format, ApiError> {
    if headers.contains_key("ce-specversion") {
        return Ok(Format::Binary);
    }
    let Some(ct) = headers.get(header::CONTENT_TYPE) else { return Ok(Format::Json) };
    let ct = ct.to_str().unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "" => Ok(Format::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/jsonlines" => {
            Ok(Format::Lines)
        }
        "application/cloudevents+json" => Ok(Format::Structured),
        "application/cloudevents-batch+json" => Ok(Format::Batch),
        _ => {
            let hint = if essence == "application/x-www-form-urlencoded" {
                " (curl -d sends that; add -H 'Content-Type: application/json')"
            } else {
                ""
            };
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {ct:?} is not one POST /v1/events takes{hint}: send {MEDIA_TYPES}"),
            ))
        }
    }
}

/// One item of the body, made into an event or not.
struct Item {
    line: Option<usize>,
    message_id: Option<String>,
    parsed: Parsed,
}

enum Parsed {
    Event(Event),
    /// A raw notification still to be distilled.
    Notification(Value),
    Rejected(String),
    /// Handed on (to the distiller, or to be saved).
    Sent,
}

impl Item {
    fn rejected(line: Option<usize>, message_id: Option<String>, reason: String) -> Item {
        Item { line, message_id, parsed: Parsed::Rejected(reason) }
    }
}

/// How much of a body over the limit is still read (and dropped) before the
/// 413 is sent: a client that is still sending when the server answers and
/// closes may see the connection reset instead of the answer, so a body up
/// to this much over the limit is let through to its end.
pub const DRAIN_OVER_LIMIT: usize = 16 * 1024 * 1024;

/// Reads the body, refusing it (413) once it passes `max` bytes.
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {max} bytes (api.ingest_max_body_bytes); send fewer events per request"),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let drain_cap = max.saturating_add(DRAIN_OVER_LIMIT) as u64;
    if declared.is_some_and(|n| n > drain_cap) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| (n as usize).min(max)));
    let mut read: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        read += chunk.len() as u64;
        if read > drain_cap {
            return Err(too_large());
        }
        if read <= max as u64 {
            out.extend_from_slice(&chunk);
        } else {
            out = Vec::new();
        }
    }
    if read > max as u64 {
        return Err(too_large());
    }
    Ok(out)
}

/// A flat event (or, with `notifications`, a raw notification) from one JSON value.
fn json_item(v: Value, line: Option<usize>, notifications: bool) -> Item {
    let message_id = v.get("message_id").and_then(|m| m.as_str().map(str::to_string));
    if notifications {
        return Item { line, message_id, parsed: Parsed::Notification(v) };
    }
    match Event::from_json(&v) {
        Ok(e) => Item { line, message_id: Some(e.message_id.clone()), parsed: Parsed::Event(e) },
        Err(e) => Item::rejected(line, e.message_id().map(str::to_string).or(message_id), e.to_string()),
    }
}

/// A structured-mode CloudEvent (one, or one of a batch).
fn cloud_item(v: &Value, received: DateTime<Utc>) -> Item {
    let message_id = match (v.get("source").and_then(Value::as_str), v.get("id").and_then(Value::as_str)) {
        (Some(source), Some(id)) if !source.is_empty() && !id.is_empty() => Some(cloudevent::message_id(source, id)),
        _ => None,
    };
    match CloudEvent::from_json(v).and_then(|ce| ce.to_event(received)) {
        Ok(e) => Item { line: None, message_id: Some(e.message_id.clone()), parsed: Parsed::Event(e) },
        Err(e) => Item::rejected(None, message_id, e.to_string()),
    }
}

fn parse_json(body: &[u8], what: &str) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not JSON ({what}): {e}")))
}

/// The body's items, in order.
fn items(
    format: Format,
    headers: &HeaderMap,
    body: &[u8],
    notifications: bool,
    received: DateTime<Utc>,
) -> Result<Vec<Item>, ApiError> {
    if notifications && !matches!(format, Format::Json | Format::Lines) {
        return Err(ApiError::bad_request(
            "parameter notifications: raw notifications come as application/json or application/x-ndjson, not as CloudEvents",
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) && format != Format::Binary {
        return Err(ApiError::bad_request(format!("the body is empty: send {MEDIA_TYPES}")));
    }
    Ok(match format {
        Format::Json => match parse_json(body, "application/json")? {
            Value::Array(items) => items.into_iter().map(|v| json_item(v, None, notifications)).collect(),
            v @ Value::Object(_) => vec![json_item(v, None, notifications)],
            other => {
                return Err(ApiError::bad_request(format!(
                    "the body must be a JSON object or an array of objects, found {}",
                    json_type(&other)
                )))
            }
        },
        Format::Lines => body
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(n, l)| {
                let line = Some(n + 1);
                match serde_json::from_slice::<Value>(l) {
                    Ok(v) => json_item(v, line, notifications),
                    Err(e) => Item::rejected(line, None, format!("invalid JSON: {e}")),
                }
            })
            .collect(),
        Format::Structured => vec![cloud_item(&parse_json(body, "application/cloudevents+json")?, received)],
        Format::Batch => match parse_json(body, "application/cloudevents-batch+json")? {
            Value::Array(items) => items.iter().map(|v| cloud_item(v, received)).collect(),
            other => {
                return Err(ApiError::bad_request(format!(
                    "application/cloudevents-batch+json: the body must be a JSON array of CloudEvents, found {}",
                    json_type(&other)
                )))
            }
        },
        Format::Binary => vec![binary_item(headers, body, received)?],
    })
}

/// A binary-mode CloudEvent: attributes from the `ce-*` headers
/// (percent-decoded), `datacontenttype` from Content-Type, `data` the body.
fn binary_item(headers: &HeaderMap, body: &[u8], received: DateTime<Utc>) -> Result<Item, ApiError> {
    let mut attributes = std::collections::BTreeMap::new();
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix("ce-") else { continue };
        let text =
            value.to_str().ok().and_then(|v| percent_encoding::percent_decode_str(v).decode_utf8().ok()).ok_or_else(
                || {
                    ApiError::bad_request(format!(
                        "header {name}: not percent-encoded UTF-8 (CloudEvents HTTP binding 3.1.3.2)"
                    ))
                },
            )?;
        attributes.insert(attr.to_string(), Value::String(text.into_owned()));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let json = content_type.as_deref().is_none_or(cloudevent::is_json_media_type);
    if let Some(ct) = &content_type {
        attributes.insert("datacontenttype".into(), Value::String(ct.clone()));
    }
    let ce = |data| CloudEvent { attributes: attributes.clone(), data };
    let message_id = match (attributes.get("source"), attributes.get("id")) {
        (Some(Value::String(s)), Some(Value::String(i))) if !s.is_empty() && !i.is_empty() => {
            Some(cloudevent::message_id(s, i))
        }
        _ => None,
    };
    let data = if body.is_empty() {
        Data::None
    } else if json {
        match serde_json::from_slice(body) {
            Ok(v) => Data::Json(v),
            Err(e) => {
                let ct = content_type.as_deref().unwrap_or("none");
                return Ok(Item::rejected(None, message_id, format!("data is not JSON (Content-Type {ct}): {e}")));
            }
        }
    } else {
        match std::str::from_utf8(body) {
            Ok(text) => Data::Text(text.to_string()),
            Err(_) => Data::Base64(base64::engine::general_purpose::STANDARD.encode(body)),
        }
    };
    Ok(match ce(data).to_event(received) {
        Ok(e) => Item { line: None, message_id: Some(e.message_id.clone()), parsed: Parsed::Event(e) },
        Err(e) => Item::rejected(None, message_id, e.to_string()),
    })
}

/// Names the item in a reason: `event 3` or `line 4`.
fn item_name(index: usize, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("line {l}"),
        None => format!("event {index}"),
    }
}

/// Saves the events of a body (JSON, JSON lines, raw notifications, or
/// CloudEvents in structured, batched or binary mode) once they are
/// committed; every item gets its own result, in order. 200: all saved (or
/// already stored); 207: some saved, some rejected; 422: none saved, some
/// rejected; 503: the database is unavailable (the results say which were
/// saved; send the rest again); 429: the commit queue is full, nothing was
/// queued.
#[utoipa::path(post, path = "/v1/events", tag = "events", security(("bearer" = [])), params(IngestQuery),
    request_body(description = "Events: flat JSON events (an object or an array), JSON lines, raw notifications with \
        `notifications=true`, or CloudEvents 1.0 (structured, batched, or binary mode with `ce-*` headers)",
        content(
            (Vec<JsonObject> = "application/json"),
            (String = "application/x-ndjson"),
            (JsonObject = "application/cloudevents+json"),
            (Vec<JsonObject> = "application/cloudevents-batch+json"),
        )),
    responses(
        (status = 200, description = "Every event saved or already stored", body = IngestBody),
        (status = 207, description = "Some saved, some rejected (see each result)", body = IngestBody),
        (status = 422, description = "None saved: every event rejected", body = IngestBody),
        (status = 400, description = "The body as a whole is unusable (not JSON, wrong shape, empty)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, description = "Larger than api.ingest_max_body_bytes", body = ErrorBody),
        (status = 415, description = "A Content-Type it does not take", body = ErrorBody),
        (status = 429, description = "The commit queue is full; nothing was queued; see Retry-After", body = ErrorBody),
        (status = 503, description = "The database is unavailable; the results say which events were saved", body = IngestBody)))]
pub async fn post_events(
    State(st): State<ApiState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let (response, counts) = match ingest(&st.ingest, q.as_deref(), &headers, body).await {
        Ok((status, body)) => {
            let counts = [
                ("ingested", body.ingested),
                ("duplicate", body.duplicates),
                ("rejected", body.rejected),
                ("unavailable", body.unavailable),
            ];
            let mut r = (status, Json(body)).into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
            }
            (r, counts)
        }
        Err(e) => {
            let status = e.status;
            let mut r = e.into_response();
            if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
            }
            (r, [("ingested", 0), ("duplicate", 0), ("rejected", 0), ("unavailable", 0)])
        }
    };
    winchester::metrics::http_ingest(response.status().as_u16(), &counts, started.elapsed());
    response
}

async fn ingest(
    ing: &Ingest,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, IngestBody), ApiError> {
    let p = Params::from_query(query, &[&["notifications"]])?;
    let notifications = p.flag("notifications")?;
    if notifications && ing.manager.definitions().distiller.is_none() {
        return Err(ApiError::bad_request(
            "parameter notifications: the server has no distiller_config (event_definitions.yaml) to distill notifications with",
        ));
    }
    let format = format(headers)?;
    let received = ing.manager.clock().now();
    let body = read_body(headers, body, ing.max_body).await?;
    let mut items = items(format, headers, &body, notifications, received)?;
    drop(body);
    if notifications {
        distill(&ing.manager, &mut items).await;
    }
    // The events go to the batcher; the others keep their reason.
    let (slots, events) = take(&mut items, |p| match p {
        Parsed::Event(e) => Ok(e),
        other => Err(other),
    });
    let saved = ing.manager.add_events_grouped(events, Some(ing.queue_limit)).await.map_err(|full| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{full}: nothing of this request was queued; try again later"),
        )
    })?;
    let mut outcomes: Vec<Option<Result<EventOutcome, String>>> = items.iter().map(|_| None).collect();
    for (slot, r) in slots.into_iter().zip(saved) {
        outcomes[slot] = Some(r.map_err(|e| e.to_string()));
    }
    let mut out = IngestBody { ingested: 0, duplicates: 0, rejected: 0, unavailable: 0, results: Vec::new() };
    for (index, (item, outcome)) in items.into_iter().zip(outcomes).enumerate() {
        let name = item_name(index, item.line);
        let (outcome, reason) = match (item.parsed, outcome) {
            (_, Some(Ok(EventOutcome::Saved { .. }))) => {
                out.ingested += 1;
                ("ingested", None)
            }
            (_, Some(Ok(EventOutcome::Duplicate))) => {
                out.duplicates += 1;
                ("duplicate", None)
            }
            (_, Some(Ok(other))) => {
                out.rejected += 1;
                ("rejected", Some(format!("{name}: {}", other.rejection().unwrap_or_default())))
            }
            (_, Some(Err(e))) => {
                out.unavailable += 1;
                ("unavailable", Some(format!("{name}: not saved: {e}; send it again")))
            }
            (Parsed::Rejected(reason), None) => {
                out.rejected += 1;
                ("rejected", Some(format!("{name}: {reason}")))
            }
            (Parsed::Event(_) | Parsed::Notification(_) | Parsed::Sent, None) => {
                out.unavailable += 1;
                ("unavailable", Some(format!("{name}: not saved; send it again")))
            }
        };
        out.results.push(ItemResult { index, line: item.line, message_id: item.message_id, outcome, reason });
    }
    let status = if out.unavailable > 0 {
        StatusCode::SERVICE_UNAVAILABLE
    } else if out.rejected == 0 {
        StatusCode::OK
    } else if out.ingested + out.duplicates > 0 {
        StatusCode::MULTI_STATUS
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, out))
}

/// Takes out of `items` what `pick` accepts (leaving [`Parsed::Sent`] in
/// its place), with the positions it came from.
fn take<T>(items: &mut [Item], pick: impl Fn(Parsed) -> Result<T, Parsed>) -> (Vec<usize>, Vec<T>) {
    let (mut slots, mut taken) = (Vec::new(), Vec::new());
    for (i, item) in items.iter_mut().enumerate() {
        match pick(std::mem::replace(&mut item.parsed, Parsed::Sent)) {
            Ok(t) => {
                slots.push(i);
                taken.push(t);
            }
            Err(other) => item.parsed = other,
        }
    }
    (slots, taken)
}

/// Distills the raw notifications among `items` (in one batch) into events
/// or rejections.
async fn distill(tm: &TriggerManager, items: &mut [Item]) {
    let (slots, notifications) = take(items, |p| match p {
        Parsed::Notification(n) => Ok(n),
        other => Err(other),
    });
    let distilled = tm.distill_batch(&notifications).await;
    for (slot, d) in slots.into_iter().zip(distilled) {
        let item = &mut items[slot];
        item.parsed = match d {
            Ok(e) => {
                item.message_id = Some(e.message_id.clone());
                Parsed::Event(e)
            }
            Err(o) => Parsed::Rejected(o.rejection().unwrap_or_default()),
        };
    }
}
