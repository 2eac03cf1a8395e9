//! The `ceilometer` flavour: the rules in which ceilometer 27.0.0's event
//! converter (`ceilometer/event/converter.py`, `trait_plugins.py`) differs
//! from StackDistiller, in one place.
//!
//! Ceilometer never sees the wire notification: oslo.messaging moves the
//! `_context_*` keys into a context and hands the converter
//! `{ctxt, publisher_id, event_type, payload, metadata: {message_id,
//! timestamp}}` ([`body`]). Definitions' paths are evaluated against that body
//! (`ctxt.user_id`, `payload.x`, `metadata.message_id`). Values are converted as
//! Python's `int()`, `float()` and `str()` would ([`convert`]); text is cut at
//! 255 characters; events without traits are kept.

use super::python::{py_float, py_int, py_str};
use super::{parse_iso8601, DistillError, Distiller, TraitDefinition, TraitType};
use crate::event::{Event, TraitValue, ENVELOPE_KEYS};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

/// Longest text trait ceilometer keeps, in characters (its `TraitText` column).
pub const MAX_TEXT_LEN: usize = 255;

/// Ceilometer's default traits, in its order: `service` (publisher_id),
/// `request_id` (ctxt.request_id), `project_id` (payload.tenant_id, else
/// ctxt.project_id), `user_id` (payload.user_id, else ctxt.user_id) and
/// `tenant_id` (the same as `project_id`).
pub(super) fn default_traits() -> Vec<TraitDefinition> {
    let t = |name: &str, fields: &[&str]| TraitDefinition {
        name: name.into(),
        fields: fields.iter().map(|f| super::FieldPath::parse(f).expect("built-in default path parses")).collect(),
        trait_type: TraitType::Text,
        plugin: None,
        constant: None,
    };
    vec![
        t("service", &["publisher_id"]),
        t("request_id", &["ctxt.request_id"]),
        t("project_id", &["payload.tenant_id", "ctxt.project_id"]),
        t("user_id", &["payload.user_id", "ctxt.user_id"]),
        t("tenant_id", &["payload.tenant_id", "ctxt.project_id"]),
    ]
}

/// The message ceilometer's converter is given for a wire notification, as
/// oslo.messaging builds it: an oslo v2 envelope (both `oslo.version` and
/// `oslo.message`) is unwrapped; every `_context_<k>` key becomes `ctxt.<k>`
/// (`msg_id` and `reply_q` removed, `client_timeout` set from `_timeout`); the
/// result is `{ctxt, publisher_id, event_type, payload, metadata:
/// {message_id, timestamp}}`, absent keys null. Other top-level keys
/// (`priority`, `_unique_id`, ...) are not visible to definitions.
pub fn body(notification: &Json) -> Result<Json, DistillError> {
    dispatch(notification).map(|(body, _)| body)
}

/// [`body`] and the notification's `priority`.
fn dispatch(notification: &Json) -> Result<(Json, Option<Json>), DistillError> {
    let unwrapped;
    let mut n = notification;
    if let Some(obj) = n.as_object() {
        if obj.contains_key("oslo.message") && obj.contains_key("oslo.version") {
            match obj.get("oslo.version") {
                Some(Json::String(v)) if version_compatible(v) => {}
                other => {
                    return Err(DistillError::BadEnvelope {
                        reason: format!(
                            "\"oslo.version\" {} is not compatible with 2.0",
                            other.map(Json::to_string).unwrap_or_default()
                        ),
                    })
                }
            }
            let inner = obj
                .get("oslo.message")
                .and_then(Json::as_str)
                .ok_or_else(|| DistillError::BadEnvelope { reason: "\"oslo.message\" is not a string".into() })?;
            unwrapped = serde_json::from_str::<Json>(inner).map_err(|e| DistillError::BadEnvelope {
                reason: format!("\"oslo.message\" is not valid JSON: {e}"),
            })?;
            n = &unwrapped;
        }
    }
    let obj = n.as_object().ok_or(DistillError::NotAnObject)?;
    let mut ctxt = Map::new();
    for (k, v) in obj {
        if let Some(name) = k.strip_prefix("_context_") {
            ctxt.insert(name.to_string(), v.clone());
        }
    }
    ctxt.remove("msg_id");
    ctxt.remove("reply_q");
    ctxt.insert("client_timeout".into(), obj.get("_timeout").cloned().unwrap_or(Json::Null));
    let get = |k: &str| obj.get(k).cloned().unwrap_or(Json::Null);
    let mut metadata = Map::new();
    metadata.insert("message_id".into(), get("message_id"));
    metadata.insert("timestamp".into(), get("timestamp"));
    let mut b = Map::new();
    b.insert("ctxt".into(), Json::Object(ctxt));
    b.insert("publisher_id".into(), get("publisher_id"));
    b.insert("event_type".into(), get("event_type"));
    b.insert("payload".into(), get("payload"));
    b.insert("metadata".into(), Json::Object(metadata));
    Ok((Json::Object(b), obj.get("priority").cloned()))
}

/// oslo.messaging's envelope check against its 2.0: same major, minor not above.
fn version_compatible(v: &str) -> bool {
    let mut it = v.split('.');
    let major = it.next().and_then(|s| s.parse::<u64>().ok());
    let minor = match it.next() {
        None => Some(0),
        Some(s) => s.parse::<u64>().ok(),
    };
    major == Some(2) && minor == Some(0) && it.all(|s| s.parse::<u64>().is_ok())
}

/// [`Distiller::to_event`] in the ceilometer flavour.
pub(super) fn to_event(d: &Distiller, notification: &Json) -> Result<Option<Event>, DistillError> {
    let (body, priority) = dispatch(notification)?;
    let message_id = match &body["metadata"]["message_id"] {
        Json::String(s) => Some(s.clone()),
        Json::Number(x) => Some(x.to_string()),
        _ => None,
    };
    let m = || message_id.clone();
    // oslo.messaging hands ceilometer's event endpoint only `info` and
    // `error` notifications (any case); others, and those without a
    // priority, never reach the converter.
    match &priority {
        Some(Json::String(p)) if matches!(p.to_lowercase().as_str(), "info" | "error") => {}
        None | Some(Json::String(_)) => {
            tracing::debug!(?priority, message_id, "priority other than info or error; notification dropped");
            return Ok(None);
        }
        Some(other) => {
            return Err(DistillError::InvalidKey {
                key: "priority",
                reason: format!("must be a string, found {other}"),
                message_id: m(),
            })
        }
    }
    // Without any definition nothing reads the event type (ceilometer's
    // fnmatch is what fails on a missing one).
    if d.definitions().is_empty() && d.implicit_catch_all().is_none() {
        return Ok(None);
    }
    let event_type = match &body["event_type"] {
        Json::Null => return Err(DistillError::MissingKey { key: "event_type", message_id: m() }),
        Json::String(s) => s.clone(),
        other => {
            return Err(DistillError::InvalidKey {
                key: "event_type",
                reason: format!("must be a string, found {other}"),
                message_id: m(),
            })
        }
    };
    let Some(def) = d.definition_for(&event_type) else {
        tracing::debug!(event_type, message_id, "no event definition matches; notification dropped");
        return Ok(None);
    };
    let when = match &body["metadata"]["timestamp"] {
        Json::Null => return Err(DistillError::MissingKey { key: "timestamp", message_id: m() }),
        Json::String(s) => parse_iso8601(s).ok_or_else(|| DistillError::InvalidKey {
            key: "timestamp",
            reason: format!("{s:?} is not an ISO-8601 date-time"),
            message_id: m(),
        })?,
        other => {
            return Err(DistillError::InvalidKey {
                key: "timestamp",
                reason: format!("must be an ISO-8601 date-time string, found {other}"),
                message_id: m(),
            })
        }
    };
    let mut traits = BTreeMap::new();
    for t in &def.traits {
        if let Some(c) = &t.constant {
            // `Definition.parse` returns an integer `fields` as it is.
            let value = convert(c, t.trait_type).ok_or_else(|| DistillError::Conversion {
                definition: def.describe(),
                trait_name: t.name.clone(),
                path: c.to_string(),
                value: c.to_string(),
                to: t.trait_type,
                message_id: m(),
            })?;
            if !ENVELOPE_KEYS.contains(&t.name.as_str()) {
                traits.insert(t.name.clone(), value);
            }
            continue;
        }
        let Some(raw) = super::raw_value(def, t, &body, m, super::plugin::ceilometer_apply)? else { continue };
        let Some(value) = super::typed(def, t, raw, m, convert)? else { continue };
        if ENVELOPE_KEYS.contains(&t.name.as_str()) {
            tracing::debug!(trait_name = t.name, "trait named like an envelope key skipped");
            continue;
        }
        traits.insert(t.name.clone(), value);
    }
    let Some(message_id) = message_id else {
        return Err(match &body["metadata"]["message_id"] {
            Json::Null => DistillError::MissingKey { key: "message_id", message_id: None },
            other => DistillError::InvalidKey {
                key: "message_id",
                reason: format!("must be a string, found {other}"),
                message_id: None,
            },
        });
    };
    Event::new(message_id.clone(), event_type, when, traits)
        .map(Some)
        .map_err(|source| DistillError::InvalidEvent { source, message_id: Some(message_id) })
}

/// Converts a trait's value as ceilometer's `Trait.convert_value` does:
/// `int()`, `float()`, ISO-8601 for datetimes, `str()` cut at 255 characters
/// for text. `None` when Python would raise.
pub fn convert(raw: &Json, to: TraitType) -> Option<TraitValue> {
    match to {
        TraitType::Text | TraitType::NoneType => {
            Some(TraitValue::String(py_str(raw).chars().take(MAX_TEXT_LEN).collect()))
        }
        TraitType::Int => py_int(raw).map(TraitValue::Int),
        TraitType::Float => py_float(raw).map(TraitValue::Float),
        TraitType::Datetime => raw.as_str().and_then(parse_iso8601).map(TraitValue::Datetime),
    }
}

#[cfg(test)]
#[path = "ceilometer_tests.rs"]
mod tests;
