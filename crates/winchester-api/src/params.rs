//! Query parameters and JSON bodies turned into storage filters, with 400
//! errors that name the offending parameter.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;
use winchester_storage::{EventFilter, NamePattern, Page, StreamFilter, StreamState, TraitFilter};

use crate::error::ApiError;

/// Default page size of listings.
pub const DEFAULT_LIMIT: u32 = 200;
/// Largest page size.
pub const MAX_LIMIT: u32 = 1000;

/// Parameters of the stream filters (quincy's names; `name` is klugman's alias of `trigger_name`).
pub const STREAM_FILTER_PARAMS: &[&str] =
    &["older_than", "younger_than", "state", "trigger_name", "name", "distinguishing_traits"];
/// Parameters of the event filters.
pub const EVENT_FILTER_PARAMS: &[&str] = &["from_datetime", "to_datetime", "event_name", "traits"];
/// Paging parameters.
pub const PAGE_PARAMS: &[&str] = &["mark", "limit"];

/// Decoded parameters (query string or JSON body), checked against the allowed names.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a query string; any name not in one of `allowed` is a 400.
    pub fn from_query(raw: Option<&str>, allowed: &[&[&str]]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("query string: {e}")))?;
        let p = Params(pairs);
        p.check(allowed)?;
        Ok(p)
    }

    /// A JSON object body with string (or scalar) values; `distinguishing_traits`
    /// may also be an object of name -> value.
    pub fn from_body(body: &Value, allowed: &[&[&str]]) -> Result<(Params, Vec<TraitFilter>), ApiError> {
        let obj = body.as_object().ok_or_else(|| ApiError::bad_request("body: must be a JSON object"))?;
        let mut pairs = Vec::new();
        let mut traits = Vec::new();
        for (k, v) in obj {
            match (k.as_str(), v) {
                (_, Value::Null) => {}
                ("distinguishing_traits", Value::Object(m)) => {
                    for (name, value) in m {
                        traits.push(TraitFilter { name: name.clone(), value: scalar(value, k)? });
                    }
                }
                _ => pairs.push((k.clone(), scalar(v, k)?)),
            }
        }
        let p = Params(pairs);
        p.check(allowed)?;
        Ok((p, traits))
    }

    fn check(&self, allowed: &[&[&str]]) -> Result<(), ApiError> {
        // PostgreSQL text cannot hold NUL: a 400 here, not a 500 from the database.
        if let Some((k, _)) = self.0.iter().find(|(_, v)| v.contains('\0')) {
            return Err(ApiError::bad_request(format!("parameter {k:?}: contains a NUL character")));
        }
        for (k, _) in &self.0 {
            if !allowed.iter().any(|set| set.contains(&k.as_str())) {
                let names: Vec<&str> = allowed.iter().flat_map(|s| s.iter().copied()).collect();
                return Err(ApiError::bad_request(format!("unknown parameter {k:?}; known: {}", names.join(", "))));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (k, _) in &self.0 {
            if !seen.insert(k.as_str()) {
                return Err(ApiError::bad_request(format!("parameter {k:?} given more than once")));
            }
        }
        Ok(())
    }

    /// Whether any parameter was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A parameter's value (empty values count as absent).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    /// A date-time parameter: RFC 3339, or ISO 8601 without zone (UTC), or a date.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.get(name)
            .map(|v| {
                parse_time(v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "parameter {name}: {v:?} is not an ISO 8601 date-time (like 2026-11-23T10:00:00Z)"
                    ))
                })
            })
            .transpose()
    }

    /// A boolean parameter (`true`/`false`/`1`/`0`/`yes`/`no`), false when absent.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") | Some("0") | Some("no") => Ok(false),
            Some("true") | Some("1") | Some("yes") => Ok(true),
            Some(v) => Err(ApiError::bad_request(format!("parameter {name}: {v:?} is not true or false"))),
        }
    }

    /// `mark` and `limit` (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = match self.get("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => v.parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                ApiError::bad_request(format!("parameter limit: {v:?} is not a number from 1 to {MAX_LIMIT}"))
            })?,
        };
        // A `+` sent unencoded arrives as a space.
        let mark = self.get("mark").map(|m| m.replace(' ', "+"));
        Page::from_mark(mark.as_deref(), Some(limit)).map_err(|e| ApiError::bad_request(format!("parameter mark: {e}")))
    }

    /// A `k:v;k2:v2` list parameter.
    pub fn traits(&self, name: &str) -> Result<Vec<TraitFilter>, ApiError> {
        self.get(name)
            .map(|v| TraitFilter::parse_list(v).map_err(|e| ApiError::bad_request(format!("parameter {name}: {e}"))))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// The stream filters (without paging).
    pub fn stream_filter(&self) -> Result<StreamFilter, ApiError> {
        let trigger = match (self.get("trigger_name"), self.get("name")) {
            (Some(a), Some(b)) if a != b => {
                return Err(ApiError::bad_request("parameters trigger_name and name (its alias) disagree"))
            }
            (a, b) => a.or(b).map(str::to_string),
        };
        let state = self
            .get("state")
            .map(|s| s.parse::<StreamState>().map_err(|e| ApiError::bad_request(format!("parameter state: {e}"))))
            .transpose()?;
        Ok(StreamFilter {
            trigger,
            state,
            older_than: self.time("older_than")?,
            younger_than: self.time("younger_than")?,
            dist_traits: self.traits("distinguishing_traits")?,
            ..StreamFilter::default()
        })
    }

    /// The event filters (without paging).
    pub fn event_filter(&self) -> Result<EventFilter, ApiError> {
        Ok(EventFilter {
            from: self.time("from_datetime")?,
            to: self.time("to_datetime")?,
            event_name: self.get("event_name").map(|n| NamePattern(n.to_string())),
            traits: self.traits("traits")?,
            page: Page::default(),
        })
    }
}

fn scalar(v: &Value, key: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(ApiError::bad_request(format!("body: {key} must be a string, number or boolean"))),
    }
}

/// RFC 3339; `YYYY-MM-DDTHH:MM:SS[.f]` or with a space (UTC); `YYYY-MM-DD` (midnight UTC).
pub fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(v) {
        return Some(d.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(v, fmt) {
            return Some(n.and_utc());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert!(parse_time("2026-11-23T10:00:00Z").is_some());
        assert!(parse_time("2026-11-23T10:00:00.5").is_some());
        assert!(parse_time("2026-11-23 10:00:00").is_some());
        assert!(parse_time("2026-11-23").is_some());
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn unknown_and_bad_parameters_are_named() {
        let e = Params::from_query(Some("bogus=1"), &[STREAM_FILTER_PARAMS]).unwrap_err();
        assert!(e.message.contains("bogus"), "{}", e.message);
        let p = Params::from_query(Some("limit=5000"), &[PAGE_PARAMS]).unwrap();
        assert!(p.page().unwrap_err().message.contains("limit"));
        let p = Params::from_query(Some("mark=+1f"), &[PAGE_PARAMS]).unwrap();
        assert!(p.page().unwrap().ascending, "an unencoded + is a space");
    }
}
