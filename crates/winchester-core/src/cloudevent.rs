//! CloudEvents 1.0 to events: the mapping `POST /v1/events` uses for the
//! structured, batched and binary modes of the HTTP binding (docs/ingest.md,
//! "CloudEvents").
//!
//! - `type` is the `event_type`, `time` the `timestamp` (absent: the time the
//!   event was received, and the trait [`TIME_MISSING`] says so);
//! - `message_id` is [`message_id`]: a UUIDv5 of `source` and `id`, so a
//!   redelivered CloudEvent is a duplicate;
//! - `id`, `source`, `subject`, `dataschema` and `datacontenttype` become the
//!   traits `ce_id`, `ce_source`, ...; an extension attribute `x` becomes
//!   `ce_x`;
//! - the fields of an object `data` become traits of their own names
//!   (nested objects flattened with `.`, arrays kept as their JSON text);
//!   any other `data` is the trait `data` (`data_base64` for binary data).

use crate::event::{parse_rfc3339, trait_from_json, Event, EventError, TraitValue, ENVELOPE_KEYS};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::BTreeMap;

/// The namespace of [`message_id`]'s UUIDv5:
/// `uuid5(NAMESPACE_URL, "urn:winchester-rs:cloudevents")`.
pub const MESSAGE_ID_NAMESPACE: uuid::Uuid = uuid::uuid!("bb41fcd3-2353-5298-9199-18fa8f671508");

/// The trait set (to `true`) on an event whose CloudEvent had no `time`: its
/// `timestamp` is the time it was received.
pub const TIME_MISSING: &str = "ce_time_missing";

/// The attributes the specification defines; any other is an extension.
const CONTEXT_ATTRIBUTES: [&str; 9] =
    ["specversion", "id", "source", "type", "time", "subject", "dataschema", "datacontenttype", "data_base64"];

/// The `message_id` of the CloudEvent with this `source` and `id`: the
/// UUIDv5 (in [`MESSAGE_ID_NAMESPACE`]) of the UTF-8 bytes of `source`, a
/// NUL byte and `id` (CloudEvents strings cannot hold NUL, so no two pairs
/// share a name). In Python: `uuid.uuid5(NS, source + "\0" + id)`.
pub fn message_id(source: &str, id: &str) -> String {
    let mut name = Vec::with_capacity(source.len() + id.len() + 1);
    name.extend_from_slice(source.as_bytes());
    name.push(0);
    name.extend_from_slice(id.as_bytes());
    uuid::Uuid::new_v5(&MESSAGE_ID_NAMESPACE, &name).to_string()
}

/// Why a CloudEvent cannot be an event. Each names the attribute and, once
/// known, the CloudEvent's `id` and `source`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CloudEventError {
    /// A structured CloudEvent that is not a JSON object.
    #[error("a CloudEvent must be a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// A required attribute is absent or empty.
    #[error("CloudEvent{}: missing required attribute {name:?}", who(id, ce_source))]
    Missing {
        /// The attribute.
        name: &'static str,
        /// The CloudEvent's id, if it had one.
        id: Option<String>,
        /// Its source, if it had one.
        ce_source: Option<String>,
    },
    /// An attribute with an unusable value.
    #[error("CloudEvent{}: attribute {name:?} {reason}", who(id, ce_source))]
    Attribute {
        /// The attribute.
        name: String,
        /// What is wrong with it.
        reason: String,
        /// The CloudEvent's id, if known.
        id: Option<String>,
        /// Its source, if known.
        ce_source: Option<String>,
    },
    /// The event made of it is invalid (a trait too long, an event type with
    /// a space...).
    #[error("CloudEvent (id {id:?}, source {ce_source:?}): {error}")]
    Event {
        /// Why (boxed: it is large, and rare).
        error: Box<EventError>,
        /// The CloudEvent's id.
        id: String,
        /// Its source.
        ce_source: String,
    },
}

fn who(id: &Option<String>, ce_source: &Option<String>) -> String {
    match (id, ce_source) {
        (Some(i), Some(s)) => format!(" (id {i:?}, source {s:?})"),
        (Some(i), None) => format!(" (id {i:?})"),
        (None, Some(s)) => format!(" (source {s:?})"),
        (None, None) => String::new(),
    }
}

/// A CloudEvent's `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// None.
    None,
    /// JSON (`datacontenttype` JSON or absent, in structured mode; a JSON
    /// body in binary mode).
    Json(Value),
    /// Text.
    Text(String),
    /// Binary, base64-encoded (`data_base64`).
    Base64(String),
}

/// A CloudEvent, its attributes as given: read from a JSON object
/// ([`CloudEvent::from_json`], structured mode) or from HTTP headers and a
/// body (binary mode, which builds it field by field).
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    /// Every attribute but `data`/`data_base64`, by name; in binary mode all
    /// strings.
    pub attributes: BTreeMap<String, Value>,
    /// The payload.
    pub data: Data,
}

/// A JSON value's type as messages name it: `null`, `a boolean`, `a number`,
/// `a string`, `an array`, `an object`.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl CloudEvent {
    /// A CloudEvent in structured mode (`application/cloudevents+json`, or
    /// one element of a batch).
    pub fn from_json(v: &Value) -> Result<CloudEvent, CloudEventError> {
        let Value::Object(obj) = v else { return Err(CloudEventError::NotAnObject { found: json_type(v) }) };
        let mut attributes = BTreeMap::new();
        let mut data = Data::None;
        for (k, v) in obj {
            match k.as_str() {
                "data" => data = Data::Json(v.clone()),
                "data_base64" => match v {
                    Value::String(s) => data = Data::Base64(s.clone()),
                    Value::Null => {}
                    other => {
                        let (id, ce_source) = ids(obj);
                        return Err(CloudEventError::Attribute {
                            name: k.clone(),
                            reason: format!("must be a base64 string, found {}", json_type(other)),
                            id,
                            ce_source,
                        });
                    }
                },
                _ => {
                    attributes.insert(k.clone(), v.clone());
                }
            }
        }
        // A JSON `data` of a non-JSON datacontenttype is the text it holds.
        if let (Data::Json(Value::String(s)), Some(Value::String(ct))) = (&data, attributes.get("datacontenttype")) {
            if !is_json_media_type(ct) {
                data = Data::Text(s.clone());
            }
        }
        Ok(CloudEvent { attributes, data })
    }

    fn string(&self, name: &'static str) -> Result<Option<&str>, CloudEventError> {
        match self.attributes.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.attribute_error(name, format!("must be a string, found {}", json_type(other)))),
        }
    }

    fn required(&self, name: &'static str) -> Result<&str, CloudEventError> {
        match self.string(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(CloudEventError::Missing { name, id: self.attr_text("id"), ce_source: self.attr_text("source") }),
        }
    }

    fn attr_text(&self, name: &str) -> Option<String> {
        match self.attributes.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }

    fn attribute_error(&self, name: &str, reason: String) -> CloudEventError {
        CloudEventError::Attribute {
            name: name.to_string(),
            reason,
            id: self.attr_text("id"),
            ce_source: self.attr_text("source"),
        }
    }

    /// The event of this CloudEvent (see the module's mapping); `received`
    /// is its timestamp when it has no `time`.
    pub fn to_event(&self, received: DateTime<Utc>) -> Result<Event, CloudEventError> {
        let specversion = self.required("specversion")?;
        if specversion != "1.0" {
            return Err(
                self.attribute_error("specversion", format!("is {specversion:?}; only CloudEvents 1.0 is supported"))
            );
        }
        let id = self.required("id")?;
        let source = self.required("source")?;
        let event_type = self.required("type")?;
        let message_id = message_id(source, id);
        let m = || Some(message_id.clone());
        let mut traits = BTreeMap::new();
        let timestamp = match self.string("time")? {
            Some(t) => parse_rfc3339(t).ok_or_else(|| {
                self.attribute_error(
                    "time",
                    format!("must be an RFC 3339 timestamp (2026-11-23T10:00:00Z), found {t:?}"),
                )
            })?,
            None => {
                traits.insert(TIME_MISSING.to_string(), TraitValue::Bool(true));
                received
            }
        };
        let wrap = |error: EventError| CloudEventError::Event {
            error: Box::new(error),
            id: id.to_string(),
            ce_source: source.to_string(),
        };
        for (name, v) in &self.attributes {
            if matches!(name.as_str(), "specversion" | "type" | "time") {
                continue;
            }
            let trait_name = format!("ce_{name}");
            let value = if CONTEXT_ATTRIBUTES.contains(&name.as_str()) {
                // Context attributes are strings (URIs and media types stay text).
                match v {
                    Value::Null => continue,
                    Value::String(s) => TraitValue::String(s.clone()),
                    other => {
                        return Err(self.attribute_error(name, format!("must be a string, found {}", json_type(other))))
                    }
                }
            } else {
                match trait_from_json(&trait_name, v, &m).map_err(wrap)? {
                    Some(t) => t,
                    None => continue,
                }
            };
            traits.insert(trait_name, value);
        }
        let mut data_traits = BTreeMap::new();
        match &self.data {
            Data::None => {}
            Data::Json(Value::Object(fields)) => flatten("", fields, &mut data_traits, &m).map_err(wrap)?,
            Data::Json(v) => {
                if let Some(t) = data_value("data", v, &m).map_err(wrap)? {
                    data_traits.insert("data".to_string(), t);
                }
            }
            Data::Text(s) => {
                data_traits.insert("data".to_string(), TraitValue::String(s.clone()));
            }
            Data::Base64(s) => {
                data_traits.insert("data_base64".to_string(), TraitValue::String(s.clone()));
            }
        }
        for (name, value) in data_traits {
            let name = if ENVELOPE_KEYS.contains(&name.as_str()) { format!("data.{name}") } else { name };
            if traits.contains_key(&name) {
                return Err(self.attribute_error(
                    "data",
                    format!("has a field {name:?}, the name of the trait of an attribute; rename one of them"),
                ));
            }
            traits.insert(name, value);
        }
        Event::new(message_id.clone(), event_type, timestamp, traits).map_err(wrap)
    }
}

/// A data value as a trait: arrays as their JSON text, the rest as
/// [`trait_from_json`] reads them.
fn data_value(key: &str, v: &Value, m: &dyn Fn() -> Option<String>) -> Result<Option<TraitValue>, EventError> {
    match v {
        Value::Array(_) => Ok(Some(TraitValue::String(v.to_string()))),
        _ => trait_from_json(key, v, m),
    }
}

/// The fields of `obj` as traits, nested objects flattened (`a.b`).
fn flatten(
    prefix: &str,
    obj: &serde_json::Map<String, Value>,
    out: &mut BTreeMap<String, TraitValue>,
    m: &dyn Fn() -> Option<String>,
) -> Result<(), EventError> {
    for (k, v) in obj {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Object(inner) => flatten(&key, inner, out, m)?,
            _ => {
                if let Some(t) = data_value(&key, v, m)? {
                    out.insert(key, t);
                }
            }
        }
    }
    Ok(())
}

fn ids(obj: &serde_json::Map<String, Value>) -> (Option<String>, Option<String>) {
    let get = |k: &str| obj.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    (get("id"), get("source"))
}

/// Whether a media type is JSON: `application/json`, `text/json` or any
/// `+json` type (parameters ignored).
pub fn is_json_media_type(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn received() -> DateTime<Utc> {
        parse_rfc3339("2026-11-23T10:00:00Z").unwrap()
    }

    #[test]
    fn namespace_is_the_documented_uuid5() {
        assert_eq!(
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"urn:winchester-rs:cloudevents"),
            MESSAGE_ID_NAMESPACE
        );
    }

    #[test]
    fn maps_attributes_data_and_extensions() {
        let ce = CloudEvent::from_json(&json!({
            "specversion": "1.0", "id": "a1", "source": "/shop", "type": "order.paid",
            "time": "2026-11-23T09:00:00Z", "subject": "order-7", "datacontenttype": "application/json",
            "tenant": "t1", "attempt": 3, "urgent": true,
            "data": {"order_id": "o7", "amount": 12.5, "customer": {"id": 9}, "items": [1, 2], "timestamp": "x", "gone": null}
        }))
        .unwrap();
        let e = ce.to_event(received()).unwrap();
        assert_eq!(e.event_type, "order.paid");
        assert_eq!(e.message_id, message_id("/shop", "a1"));
        assert_eq!(e.timestamp, parse_rfc3339("2026-11-23T09:00:00Z").unwrap());
        let t = &e.traits;
        assert_eq!(t["ce_id"], TraitValue::String("a1".into()));
        assert_eq!(t["ce_source"], TraitValue::String("/shop".into()));
        assert_eq!(t["ce_subject"], TraitValue::String("order-7".into()));
        assert_eq!(t["ce_tenant"], TraitValue::String("t1".into()));
        assert_eq!(t["ce_attempt"], TraitValue::Int(3));
        assert_eq!(t["ce_urgent"], TraitValue::Bool(true));
        assert_eq!(t["order_id"], TraitValue::String("o7".into()));
        assert_eq!(t["amount"], TraitValue::Float(12.5));
        assert_eq!(t["customer.id"], TraitValue::Int(9));
        assert_eq!(t["items"], TraitValue::String("[1,2]".into()));
        assert_eq!(t["data.timestamp"], TraitValue::String("x".into()));
        assert!(!t.contains_key("gone") && !t.contains_key(TIME_MISSING));
    }

    #[test]
    fn no_time_is_the_receive_time_and_says_so() {
        let ce =
            CloudEvent::from_json(&json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": "hi"}))
                .unwrap();
        let e = ce.to_event(received()).unwrap();
        assert_eq!(e.timestamp, received());
        assert_eq!(e.traits[TIME_MISSING], TraitValue::Bool(true));
        assert_eq!(e.traits["data"], TraitValue::String("hi".into()));
    }

    #[test]
    fn same_source_and_id_same_message_id() {
        assert_eq!(message_id("s", "1"), message_id("s", "1"));
        assert_ne!(message_id("s", "1"), message_id("s1", ""));
        assert_ne!(message_id("a", "bc"), message_id("ab", "c"));
    }

    #[test]
    fn errors_name_the_attribute_and_the_event() {
        let err = |v: Value| CloudEvent::from_json(&v).and_then(|c| c.to_event(received())).unwrap_err().to_string();
        let e = err(json!({"specversion": "1.0", "id": "9", "source": "s"}));
        assert!(e.contains("\"type\"") && e.contains("id \"9\""), "{e}");
        let e = err(json!({"specversion": "1.0", "id": "9", "source": "s", "type": "t", "time": "yesterday"}));
        assert!(e.contains("\"time\"") && e.contains("yesterday"), "{e}");
        let e = err(json!({"specversion": "0.3", "id": "9", "source": "s", "type": "t"}));
        assert!(e.contains("1.0"), "{e}");
        let e = err(json!({"specversion": "1.0", "id": "9", "source": "s", "type": "t", "x": 1, "data": {"ce_x": 2}}));
        assert!(e.contains("ce_x"), "{e}");
        let e = err(json!({"specversion": "1.0", "id": "9", "source": "s", "type": "has space"}));
        assert!(e.contains("whitespace") && e.contains("source \"s\""), "{e}");
        assert!(err(json!([1])).contains("JSON object"));
    }
}
