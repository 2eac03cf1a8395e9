//! Events: flat maps of typed traits with three required keys.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// Longest accepted `message_id`, in characters.
pub const MAX_MESSAGE_ID_LEN: usize = 255;
/// Longest accepted `event_type`, in characters.
pub const MAX_EVENT_TYPE_LEN: usize = 255;
/// Longest accepted trait name, in characters.
pub const MAX_TRAIT_NAME_LEN: usize = 100;
/// Longest accepted string trait value, in characters.
pub const MAX_STRING_LEN: usize = 8192;

/// The names that every event carries outside its trait map.
pub const ENVELOPE_KEYS: [&str; 3] = ["message_id", "event_type", "timestamp"];

/// A typed trait value.
///
/// Serialized externally tagged (`{"int": 5}`), which is also how traits are
/// stored, so the type survives a round trip through the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraitValue {
    /// UTF-8 text.
    String(String),
    /// 64-bit signed integer.
    Int(i64),
    /// 64-bit float.
    Float(f64),
    /// An instant in UTC.
    Datetime(#[serde(serialize_with = "serialize_datetime")] DateTime<Utc>),
    /// A boolean.
    Bool(bool),
}

/// Serialises a datetime as chrono does ([`format_datetime`]), formatted in
/// one piece: chrono's own `Serialize` hands serde_json the text a few
/// characters at a time, each piece escaped on its own, which made datetimes
/// the dearest part of serialising an event's traits.
pub fn serialize_datetime<S: serde::Serializer>(d: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_datetime(d))
}

impl TraitValue {
    /// The type's name as used in messages and configuration (`string`, `int`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            TraitValue::String(_) => "string",
            TraitValue::Int(_) => "int",
            TraitValue::Float(_) => "float",
            TraitValue::Datetime(_) => "datetime",
            TraitValue::Bool(_) => "bool",
        }
    }

    /// The value as a float, for numeric comparison (ints and floats only).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            TraitValue::Int(i) => Some(*i as f64),
            TraitValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as a plain JSON value (datetimes as RFC 3339 strings).
    pub fn to_plain_json(&self) -> serde_json::Value {
        match self {
            TraitValue::String(s) => serde_json::Value::String(s.clone()),
            TraitValue::Int(i) => serde_json::Value::from(*i),
            TraitValue::Float(f) => serde_json::Value::from(*f),
            TraitValue::Datetime(d) => serde_json::Value::String(format_datetime(d)),
            TraitValue::Bool(b) => serde_json::Value::Bool(*b),
        }
    }
}

impl fmt::Display for TraitValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraitValue::String(s) => write!(f, "{s}"),
            TraitValue::Int(i) => write!(f, "{i}"),
            TraitValue::Float(x) => write!(f, "{x}"),
            TraitValue::Datetime(d) => write!(f, "{}", format_datetime(d)),
            TraitValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Formats an instant the way winchester-rs prints them everywhere: RFC 3339,
/// microseconds when not whole seconds, `Z` zone.
pub fn format_datetime(d: &DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses a full RFC 3339 date-time with a zone (`2026-11-23T10:00:00Z`), the
/// only string form that JSON input turns into a datetime trait.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    // Cheap pre-check so ordinary strings skip the parser.
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc))
}

/// An event: `message_id`, `event_type`, `timestamp` and a flat map of typed traits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id; a second event with the same id is a duplicate.
    pub message_id: String,
    /// Dotted type name, e.g. `compute.instance.create.end`.
    pub event_type: String,
    /// When the event happened (UTC).
    pub timestamp: DateTime<Utc>,
    /// Every other key.
    pub traits: BTreeMap<String, TraitValue>,
}

/// Why an event was rejected. Every variant names the offending key and, when
/// known, the event's `message_id`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The input is not a JSON object.
    #[error("event is not a JSON object")]
    NotAnObject,
    /// A required key is absent (or null).
    #[error("missing required key {key:?}{}", mid(message_id))]
    MissingKey {
        /// The missing key.
        key: &'static str,
        /// The event's message_id, if it had one.
        message_id: Option<String>,
    },
    /// A key has a value of the wrong type.
    #[error("key {key:?} must be {expected}, found {found}{}", mid(message_id))]
    WrongType {
        /// The key.
        key: String,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
        /// The event's message_id, if known.
        message_id: Option<String>,
    },
    /// A trait value is an array or object; events are flat.
    #[error("trait {key:?} is nested ({found}); events are flat maps of scalars{}", mid(message_id))]
    Nested {
        /// The trait name.
        key: String,
        /// `array` or `object`.
        found: &'static str,
        /// The event's message_id, if known.
        message_id: Option<String>,
    },
    /// A name or value is longer than the schema allows.
    #[error("{what} {key:?} is {len} characters, longer than the limit of {max}{}", mid(message_id))]
    TooLong {
        /// What is too long (`trait name`, `string value of`, ...).
        what: &'static str,
        /// The key.
        key: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
        /// The event's message_id, if known.
        message_id: Option<String>,
    },
    /// A key is present but empty or otherwise unusable.
    #[error("key {key:?} is invalid: {reason}{}", mid(message_id))]
    Invalid {
        /// The key.
        key: String,
        /// Why.
        reason: String,
        /// The event's message_id, if known.
        message_id: Option<String>,
    },
}

fn mid(message_id: &Option<String>) -> String {
    match message_id {
        Some(m) => format!(" (message_id {m:?})"),
        None => String::new(),
    }
}

impl EventError {
    /// The message_id of the event the error is about, if it had one.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            EventError::NotAnObject => None,
            EventError::MissingKey { message_id, .. }
            | EventError::WrongType { message_id, .. }
            | EventError::Nested { message_id, .. }
            | EventError::TooLong { message_id, .. }
            | EventError::Invalid { message_id, .. } => message_id.as_deref(),
        }
    }
}

fn json_type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// One JSON value as a trait value, by the rules of [`Event::from_json`]:
/// a full RFC 3339 string with a zone becomes a datetime, other strings stay
/// strings; integers become int, other numbers float; booleans bool; `null`
/// is no trait (`None`); arrays and objects are refused. `message_id` names
/// the event in the error.
pub fn trait_from_json(
    key: &str,
    v: &serde_json::Value,
    message_id: &dyn Fn() -> Option<String>,
) -> Result<Option<TraitValue>, EventError> {
    let m = message_id;
    Ok(Some(match v {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Bool(b) => TraitValue::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                TraitValue::Int(i)
            } else if n.is_u64() {
                return Err(EventError::WrongType {
                    key: key.into(),
                    expected: "an integer within 64-bit signed range",
                    found: n.to_string(),
                    message_id: m(),
                });
            } else {
                match n.as_f64() {
                    Some(f) => TraitValue::Float(f),
                    None => {
                        return Err(EventError::WrongType {
                            key: key.into(),
                            expected: "a finite number",
                            found: n.to_string(),
                            message_id: m(),
                        })
                    }
                }
            }
        }
        serde_json::Value::String(s) => match parse_rfc3339(s) {
            Some(d) => TraitValue::Datetime(d),
            None => TraitValue::String(s.clone()),
        },
        serde_json::Value::Array(_) => {
            return Err(EventError::Nested { key: key.into(), found: "array", message_id: m() })
        }
        serde_json::Value::Object(_) => {
            return Err(EventError::Nested { key: key.into(), found: "object", message_id: m() })
        }
    }))
}

impl Event {
    /// Builds an event and validates it (see [`Event::validate`]).
    pub fn new(
        message_id: impl Into<String>,
        event_type: impl Into<String>,
        timestamp: DateTime<Utc>,
        traits: BTreeMap<String, TraitValue>,
    ) -> Result<Event, EventError> {
        let e = Event { message_id: message_id.into(), event_type: event_type.into(), timestamp, traits };
        e.validate()?;
        Ok(e)
    }

    /// Checks lengths, emptiness and that no trait shadows a required key.
    pub fn validate(&self) -> Result<(), EventError> {
        let m = || Some(self.message_id.clone());
        check_required_string("message_id", &self.message_id, MAX_MESSAGE_ID_LEN, &m)?;
        check_required_string("event_type", &self.event_type, MAX_EVENT_TYPE_LEN, &m)?;
        if self.event_type.chars().any(char::is_whitespace) {
            return Err(EventError::Invalid {
                key: "event_type".into(),
                reason: "must not contain whitespace".into(),
                message_id: m(),
            });
        }
        for (name, value) in &self.traits {
            check_trait(name, value, &m)?;
        }
        Ok(())
    }

    /// Parses an event from a JSON object.
    ///
    /// Rules: `timestamp`, and any other string in full RFC 3339 form with a
    /// zone, become datetimes; integers become int, other numbers float;
    /// booleans bool; `null` values are dropped; arrays and objects are rejected.
    pub fn from_json(value: &serde_json::Value) -> Result<Event, EventError> {
        let obj = value.as_object().ok_or(EventError::NotAnObject)?;
        let message_id = match obj.get("message_id") {
            None | Some(serde_json::Value::Null) => {
                return Err(EventError::MissingKey { key: "message_id", message_id: None })
            }
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(EventError::WrongType {
                    key: "message_id".into(),
                    expected: "a string",
                    found: json_type_name(other).into(),
                    message_id: None,
                })
            }
        };
        let m = || Some(message_id.clone());
        let event_type = match obj.get("event_type") {
            None | Some(serde_json::Value::Null) => {
                return Err(EventError::MissingKey { key: "event_type", message_id: m() })
            }
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(EventError::WrongType {
                    key: "event_type".into(),
                    expected: "a string",
                    found: json_type_name(other).into(),
                    message_id: m(),
                })
            }
        };
        let timestamp = match obj.get("timestamp") {
            None | Some(serde_json::Value::Null) => {
                return Err(EventError::MissingKey { key: "timestamp", message_id: m() })
            }
            Some(serde_json::Value::String(s)) => parse_rfc3339(s).ok_or_else(|| EventError::WrongType {
                key: "timestamp".into(),
                expected: "an RFC 3339 date-time with a zone, e.g. 2026-11-23T10:00:00Z",
                found: format!("{s:?}"),
                message_id: m(),
            })?,
            Some(other) => {
                return Err(EventError::WrongType {
                    key: "timestamp".into(),
                    expected: "an RFC 3339 date-time string",
                    found: json_type_name(other).into(),
                    message_id: m(),
                })
            }
        };
        let mut traits = BTreeMap::new();
        for (key, v) in obj {
            if ENVELOPE_KEYS.contains(&key.as_str()) {
                continue;
            }
            if let Some(value) = trait_from_json(key, v, &m)? {
                traits.insert(key.clone(), value);
            }
        }
        Event::new(message_id, event_type, timestamp, traits)
    }

    /// The event as a plain JSON object: envelope keys plus traits, datetimes as
    /// RFC 3339 strings. [`Event::from_json`] reads it back to an equal event.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("message_id".into(), self.message_id.clone().into());
        map.insert("event_type".into(), self.event_type.clone().into());
        map.insert("timestamp".into(), format_datetime(&self.timestamp).into());
        for (k, v) in &self.traits {
            map.insert(k.clone(), v.to_plain_json());
        }
        serde_json::Value::Object(map)
    }

    /// Looks up a key: the envelope keys (`timestamp` as a datetime) or a trait.
    pub fn get(&self, name: &str) -> Option<Cow<'_, TraitValue>> {
        match name {
            "message_id" => Some(Cow::Owned(TraitValue::String(self.message_id.clone()))),
            "event_type" => Some(Cow::Owned(TraitValue::String(self.event_type.clone()))),
            "timestamp" => Some(Cow::Owned(TraitValue::Datetime(self.timestamp))),
            _ => self.traits.get(name).map(Cow::Borrowed),
        }
    }

    /// The datetime-valued key `name` of the event (`timestamp` included):
    /// the variables a `timestamp`/`datetime` criterion is evaluated with.
    pub fn datetime_var(&self, name: &str) -> Option<DateTime<Utc>> {
        if name == "timestamp" {
            return Some(self.timestamp);
        }
        match self.traits.get(name) {
            Some(TraitValue::Datetime(d)) => Some(*d),
            _ => None,
        }
    }
}

fn check_required_string(
    key: &'static str,
    value: &str,
    max: usize,
    m: &dyn Fn() -> Option<String>,
) -> Result<(), EventError> {
    if value.is_empty() {
        return Err(EventError::Invalid { key: key.into(), reason: "must not be empty".into(), message_id: m() });
    }
    if let Some(len) = chars_over(value, max) {
        return Err(EventError::TooLong { what: "value of", key: key.into(), len, max, message_id: m() });
    }
    Ok(())
}

/// The length of `s` in characters when it is more than `max` (counted only
/// when its byte length could be).
fn chars_over(s: &str, max: usize) -> Option<usize> {
    if s.len() <= max {
        return None;
    }
    Some(s.chars().count()).filter(|&len| len > max)
}

fn check_trait(name: &str, value: &TraitValue, m: &dyn Fn() -> Option<String>) -> Result<(), EventError> {
    if name.is_empty() {
        return Err(EventError::Invalid {
            key: name.into(),
            reason: "trait name must not be empty".into(),
            message_id: m(),
        });
    }
    if ENVELOPE_KEYS.contains(&name) {
        return Err(EventError::Invalid {
            key: name.into(),
            reason: "is a required key and cannot also be a trait".into(),
            message_id: m(),
        });
    }
    if let Some(len) = chars_over(name, MAX_TRAIT_NAME_LEN) {
        return Err(EventError::TooLong {
            what: "trait name",
            key: name.into(),
            len,
            max: MAX_TRAIT_NAME_LEN,
            message_id: m(),
        });
    }
    match value {
        TraitValue::String(s) => {
            if let Some(len) = chars_over(s, MAX_STRING_LEN) {
                return Err(EventError::TooLong {
                    what: "string value of trait",
                    key: name.into(),
                    len,
                    max: MAX_STRING_LEN,
                    message_id: m(),
                });
            }
        }
        TraitValue::Float(f) if !f.is_finite() => {
            return Err(EventError::Invalid {
                key: name.into(),
                reason: "float must be finite".into(),
                message_id: m(),
            });
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Stored traits and stream keys hold datetimes as text; the one-piece
    /// serialiser must write exactly what chrono's `Serialize` writes, or
    /// keys stored before would stop matching.
    #[test]
    fn datetimes_serialise_as_chrono_does() {
        use chrono::TimeZone;
        let base = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let mut cases = vec![
            base,
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
        ];
        for nanos in [1, 1_000, 1_000_000, 123_456_789, 120_000_000, 999_999_999] {
            cases.push(base + chrono::Duration::nanoseconds(nanos));
        }
        // A leap second, as chrono represents it.
        cases.push(
            Utc.from_utc_datetime(
                &chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
                    .unwrap()
                    .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
                    .unwrap(),
            ),
        );
        for d in cases {
            let ours = serde_json::to_string(&TraitValue::Datetime(d)).unwrap();
            let chrono_s = format!("{{\"datetime\":{}}}", serde_json::to_string(&d).unwrap());
            assert_eq!(ours, chrono_s, "{d:?}");
            let back: TraitValue = serde_json::from_str(&ours).unwrap();
            assert_eq!(back, TraitValue::Datetime(d), "{d:?}");
        }
    }

    #[test]
    fn json_rules() {
        let e = Event::from_json(&json!({
            "message_id": "m1", "event_type": "a.b", "timestamp": "2026-11-23T10:00:00Z",
            "s": "x", "i": 3, "f": 1.5, "d": "2026-11-23T11:00:00+01:00", "b": true, "n": null,
            "date_only": "2026-11-23"
        }))
        .unwrap();
        assert_eq!(e.traits["s"], TraitValue::String("x".into()));
        assert_eq!(e.traits["i"], TraitValue::Int(3));
        assert_eq!(e.traits["f"], TraitValue::Float(1.5));
        assert_eq!(e.traits["d"], TraitValue::Datetime(e.timestamp));
        assert_eq!(e.traits["b"], TraitValue::Bool(true));
        assert_eq!(e.traits["date_only"], TraitValue::String("2026-11-23".into()));
        assert!(!e.traits.contains_key("n"));
        assert_eq!(Event::from_json(&e.to_json()).unwrap(), e);
    }

    #[test]
    fn errors_name_key_and_message_id() {
        let base = json!({"message_id": "m1", "event_type": "a.b", "timestamp": "2026-11-23T10:00:00Z"});
        let with = |k: &str, v: serde_json::Value| {
            let mut o = base.clone();
            o[k] = v;
            Event::from_json(&o).unwrap_err()
        };
        let e = with("x", json!({"a": 1}));
        assert!(matches!(e, EventError::Nested { ref key, .. } if key == "x"));
        assert_eq!(e.message_id(), Some("m1"));
        assert!(e.to_string().contains("\"x\"") && e.to_string().contains("m1"));
        assert!(matches!(with("x", json!([1])), EventError::Nested { .. }));
        assert!(matches!(with("timestamp", json!("yesterday")), EventError::WrongType { .. }));
        assert!(matches!(with("timestamp", json!("2026-11-23T10:00:00")), EventError::WrongType { .. }));
        assert!(matches!(with("event_type", json!(5)), EventError::WrongType { .. }));
        assert!(matches!(with("x", json!(u64::MAX)), EventError::WrongType { .. }));
        assert!(matches!(with(&"k".repeat(101), json!(1)), EventError::TooLong { .. }));
        assert!(matches!(with("x", json!("v".repeat(MAX_STRING_LEN + 1))), EventError::TooLong { .. }));
        assert!(matches!(with("message_id", json!("m".repeat(256))), EventError::TooLong { .. }));
        // Limits count characters, not bytes: 255 two-byte characters are fine.
        let mut o = base.clone();
        o["message_id"] = json!("é".repeat(255));
        o["é".repeat(100)] = json!("ü".repeat(MAX_STRING_LEN));
        assert!(Event::from_json(&o).is_ok());
        let e = with("message_id", json!("é".repeat(256)));
        assert!(matches!(e, EventError::TooLong { len: 256, max: 255, .. }), "{e:?}");
        assert!(
            matches!(with("x", json!("ü".repeat(MAX_STRING_LEN + 1))), EventError::TooLong { len, .. } if len == MAX_STRING_LEN + 1)
        );
        let mut o = base.clone();
        o.as_object_mut().unwrap().remove("timestamp");
        let e = Event::from_json(&o).unwrap_err();
        assert!(matches!(e, EventError::MissingKey { key: "timestamp", .. }));
        assert!(e.to_string().contains("m1"));
        assert_eq!(Event::from_json(&json!([1])).unwrap_err(), EventError::NotAnObject);
    }
}
