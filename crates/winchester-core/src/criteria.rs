//! Criteria: the entries of `match_criteria` and `fire_criteria`.

use crate::config_error::{read_map, show, Checked, ConfigError, Raw, Strings};
use crate::event::{Event, TraitValue};
use crate::timex::TimeExpr;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;

/// An include/exclude list of `event_type` glob patterns (`*`, `?`, `[..]`;
/// entries starting with `!` exclude). A type matches when it matches any
/// include and no exclude; with no includes, `*` is included.
#[derive(Debug, Clone)]
pub struct EventTypeFilter {
    includes: Vec<String>,
    excludes: Vec<String>,
    include_set: GlobSet,
    exclude_set: GlobSet,
    match_all: bool,
}

impl EventTypeFilter {
    /// Builds a filter from pattern strings.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<EventTypeFilter, String> {
        let mut includes = Vec::new();
        let mut excludes = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            match p.strip_prefix('!') {
                Some(rest) => excludes.push(rest.to_string()),
                None => includes.push(p.to_string()),
            }
        }
        if includes.is_empty() {
            includes.push("*".into());
        }
        let build = |pats: &[String]| -> Result<GlobSet, String> {
            let mut b = GlobSetBuilder::new();
            for p in pats {
                if p.is_empty() {
                    return Err("empty event_type pattern".into());
                }
                let g = Glob::new(p).map_err(|e| format!("bad event_type pattern {p:?}: {}", e.kind()))?;
                b.add(g);
            }
            b.build().map_err(|e| e.to_string())
        };
        Ok(EventTypeFilter {
            match_all: includes.iter().any(|i| i == "*") && excludes.is_empty(),
            include_set: build(&includes)?,
            exclude_set: build(&excludes)?,
            includes,
            excludes,
        })
    }

    /// Builds a filter from a YAML string or list of strings.
    pub fn from_yaml(v: &Value) -> Result<EventTypeFilter, String> {
        match v {
            Value::String(s) => EventTypeFilter::new(&[s]),
            Value::Sequence(items) => {
                let mut pats = Vec::new();
                for it in items {
                    match it {
                        Value::String(s) => pats.push(s.clone()),
                        other => return Err(format!("event_type entries must be strings, found {}", show(other))),
                    }
                }
                EventTypeFilter::new(&pats)
            }
            other => Err(format!("event_type must be a string or a list of strings, found {}", show(other))),
        }
    }

    /// Whether `event_type` passes the filter.
    pub fn matches(&self, event_type: &str) -> bool {
        (self.match_all || self.include_set.is_match(event_type)) && !self.exclude_set.is_match(event_type)
    }

    /// Which pattern decided: `Ok(include)` with the include glob that
    /// matched, or `Err` saying the type matched no include glob or which
    /// exclude glob (without its `!`) shut it out.
    pub fn explain(&self, event_type: &str) -> Result<&str, String> {
        if let Some(&i) = self.exclude_set.matches(event_type).first() {
            return Err(format!("event_type {event_type:?} is excluded by \"!{}\"", self.excludes[i]));
        }
        match self.include_set.matches(event_type).first() {
            Some(&i) => Ok(&self.includes[i]),
            None => Err(format!("event_type {event_type:?} matches no glob of {:?}", self.includes)),
        }
    }

    /// Include patterns.
    pub fn includes(&self) -> &[String] {
        &self.includes
    }
    /// Exclude patterns (without the `!`).
    pub fn excludes(&self) -> &[String] {
        &self.excludes
    }
    /// True when the filter includes `*` and excludes nothing.
    pub fn is_catch_all(&self) -> bool {
        self.match_all
    }
}

/// Comparison operator of a numeric criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl CmpOp {
    /// The operator as written: `=`, `!=`, `>`, `>=`, `<`, `<=`.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }
    fn parse(s: &str) -> Option<CmpOp> {
        Some(match s {
            "=" | "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            _ => return None,
        })
    }
    fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
        }
    }
}

/// One entry of a criteria's `traits` map.
#[derive(Debug, Clone)]
pub enum TraitCriterion {
    /// Type-sensitive equality (`3` does not equal `"3"`).
    Equal(TraitValue),
    /// `{int: "> 3"}` / `{float: "< 3.14"}`: numeric comparison with an int or float trait.
    Numeric(CmpOp, f64),
    /// `{datetime: "<timex>"}`: the trait is a datetime inside the expression's value,
    /// evaluated with the event's datetime fields as variables.
    Time(TimeExpr),
}

impl TraitCriterion {
    fn from_yaml(v: &Value) -> Result<TraitCriterion, String> {
        match v {
            Value::String(s) => Ok(TraitCriterion::Equal(TraitValue::String(s.clone()))),
            Value::Bool(b) => Ok(TraitCriterion::Equal(TraitValue::Bool(*b))),
            Value::Number(n) => Ok(TraitCriterion::Equal(yaml_number(n))),
            Value::Mapping(m) => {
                if m.len() != 1 {
                    return Err(format!("a trait criterion map must have exactly one key (string, text, int, float or datetime), found {}", m.len()));
                }
                let (k, val) = m.iter().next().expect("len checked");
                let kind = k.as_str().unwrap_or("");
                match kind {
                    "string" | "text" => match val {
                        Value::String(s) => Ok(TraitCriterion::Equal(TraitValue::String(s.clone()))),
                        Value::Number(n) => Ok(TraitCriterion::Equal(TraitValue::String(n.to_string()))),
                        other => Err(format!("{kind} criterion must be a string, found {}", show(other))),
                    },
                    "int" | "float" => match val {
                        Value::Number(n) => {
                            let v = yaml_number(n);
                            Ok(TraitCriterion::Numeric(CmpOp::Eq, v.as_f64().unwrap_or(f64::NAN)))
                        }
                        Value::String(s) => parse_numeric(kind, s),
                        other => Err(format!(
                            "{kind} criterion must be a number or a string like \"> 3\", found {}",
                            show(other)
                        )),
                    },
                    "datetime" => match val {
                        Value::String(s) => TimeExpr::parse(s).map(TraitCriterion::Time).map_err(|e| e.to_string()),
                        other => {
                            Err(format!("datetime criterion must be a time expression string, found {}", show(other)))
                        }
                    },
                    other => Err(format!(
                        "unknown criterion type {other:?}; expected one of string, text, int, float, datetime"
                    )),
                }
            }
            other => Err(format!("unsupported trait criterion {}", show(other))),
        }
    }

    /// Whether the event's trait `name` satisfies this criterion.
    pub fn matches(&self, event: &Event, name: &str) -> bool {
        let Some(value) = event.get(name) else { return false };
        match self {
            TraitCriterion::Equal(expected) => *value == *expected,
            TraitCriterion::Numeric(op, n) => value.as_f64().map(|v| op.apply(v, *n)).unwrap_or(false),
            TraitCriterion::Time(expr) => match &*value {
                TraitValue::Datetime(d) => {
                    expr.eval(&|n: &str| event.datetime_var(n)).map(|r| r.contains(*d)).unwrap_or(false)
                }
                _ => false,
            },
        }
    }
}

impl std::fmt::Display for TraitCriterion {
    /// The condition in words: `= "x" (string)`, `>= 4096`, `within day($x)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraitCriterion::Equal(v) => write!(f, "= {} ({})", v.to_plain_json(), v.type_name()),
            TraitCriterion::Numeric(op, n) => write!(f, "{} {n}", op.as_str()),
            TraitCriterion::Time(expr) => write!(f, "within {}", expr.source()),
        }
    }
}

/// The first condition of a criteria entry an event fails (see [`Criteria::mismatch`]).
#[derive(Debug, Clone, Copy)]
pub enum Mismatch<'a> {
    /// The event type is not let through by the `event_type` globs.
    EventType,
    /// The event's timestamp lies outside this `timestamp` expression's value.
    Timestamp(&'a TimeExpr),
    /// The named trait is missing or fails this condition.
    Trait(&'a str, &'a TraitCriterion),
}

fn yaml_number(n: &serde_yaml::Number) -> TraitValue {
    if let Some(i) = n.as_i64() {
        TraitValue::Int(i)
    } else {
        TraitValue::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

fn parse_numeric(kind: &str, s: &str) -> Result<TraitCriterion, String> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let (op, num) = match parts.as_slice() {
        [num] => (CmpOp::Eq, *num),
        [op, num] => (
            CmpOp::parse(op).ok_or_else(|| {
                format!("unknown operator {op:?} in {kind} criterion {s:?}; use =, !=, >, >=, < or <=")
            })?,
            *num,
        ),
        _ => return Err(format!("{kind} criterion {s:?} must be \"<number>\" or \"<operator> <number>\"")),
    };
    let n = if kind == "int" {
        num.parse::<i64>().map(|i| i as f64).map_err(|_| format!("{num:?} is not an integer in int criterion {s:?}"))?
    } else {
        num.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("{num:?} is not a number in float criterion {s:?}"))?
    };
    Ok(TraitCriterion::Numeric(op, n))
}

/// One criteria entry: all of its conditions must hold.
#[derive(Debug, Clone)]
pub struct Criteria {
    /// Event-type filter (default `*`).
    pub event_type: EventTypeFilter,
    /// Count threshold, meaningful in `fire_criteria` (default 1).
    pub number: u32,
    /// The event's timestamp must lie in this expression's value.
    pub timestamp: Option<TimeExpr>,
    /// Distinguishing-trait name -> the event key to read instead.
    pub map_distinguished_by: BTreeMap<String, String>,
    /// Trait conditions, in file order.
    pub traits: Vec<(String, TraitCriterion)>,
}

/// A criteria entry as written (serde): each value parsed into the type it
/// should have or kept as found; unknown keys in `unknown`.
/// [`Criteria::from_yaml`] validates it.
#[derive(Debug, Deserialize)]
struct RawCriteria {
    #[serde(default)]
    event_type: Option<Raw<Strings>>,
    #[serde(default)]
    number: Option<Raw<u64>>,
    #[serde(default)]
    timestamp: Option<Raw<String>>,
    #[serde(default)]
    map_distinguished_by: Option<Raw<Mapping>>,
    /// The original sample's misspelling, accepted with a warning.
    #[serde(default)]
    map_distingushed_by: Option<Raw<Mapping>>,
    #[serde(default)]
    traits: Option<Raw<Mapping>>,
    #[serde(flatten)]
    unknown: Mapping,
}

impl Criteria {
    /// Parses one criteria map: read into [`RawCriteria`] (serde), then
    /// validated. `key` is its path for messages, e.g. `match_criteria[0]`.
    /// Problems are pushed to `errors`; warnings (such as the original's
    /// misspelled `map_distingushed_by`) to `warnings`.
    pub fn from_yaml(
        v: &Value,
        key: &str,
        errors: &mut Vec<ConfigError>,
        warnings: &mut Vec<ConfigError>,
    ) -> Option<Criteria> {
        let (raw, odd_keys): (RawCriteria, _) = match read_map(v) {
            Ok(read) => read,
            Err(found) => {
                errors.push(ConfigError::new(format!("criteria must be a map, found {found}")).key(key));
                return None;
            }
        };
        let before = errors.len();
        let mut local = Checked::default();
        let here = |name: &str| format!("{key}.{name}");
        let event_type = match raw.event_type {
            None => Some(EventTypeFilter::new::<&str>(&[]).expect("empty filter is valid")),
            Some(r) => local
                .strings::<String>(&here("event_type"), Some(r), "event_type must be a string or a list of strings")
                .and_then(|pats| match EventTypeFilter::new(&pats) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        local.push(&here("event_type"), e);
                        None
                    }
                }),
        };
        let number = local
            .get(&here("number"), raw.number, "number must be a positive integer", |n| {
                (1..=u32::MAX as u64).contains(n)
            })
            .map_or(1, |n| n as u32);
        let timestamp = local
            .get(&here("timestamp"), raw.timestamp, "timestamp must be a time expression string", |_| true)
            .and_then(|s| match TimeExpr::parse(&s) {
                Ok(e) => Some(e),
                Err(e) => {
                    local.push(&here("timestamp"), e.to_string());
                    None
                }
            });
        let mut map_distinguished_by = BTreeMap::new();
        for (name, r) in
            [("map_distinguished_by", raw.map_distinguished_by), ("map_distingushed_by", raw.map_distingushed_by)]
        {
            let Some(r) = r else { continue };
            if name == "map_distingushed_by" {
                warnings.push(
                    ConfigError::new(
                        "misspelled key accepted as \"map_distinguished_by\" (the original engine silently ignored it)",
                    )
                    .key(here(name)),
                );
            }
            let Some(m) = local.get(&here(name), Some(r), "must be a map", |_| true) else { continue };
            for (dk, dv) in &m {
                match (dk.as_str(), dv.as_str()) {
                    (Some(a), Some(b)) => {
                        map_distinguished_by.insert(a.to_string(), b.to_string());
                    }
                    _ => local.push(
                        &here(name),
                        format!(
                            "entries must map a distinguishing trait name to a trait name, found {}: {}",
                            show(dk),
                            show(dv)
                        ),
                    ),
                }
            }
        }
        let mut traits = Vec::new();
        let raw_traits = raw.traits.filter(|r| !r.found.is_null());
        for (tk, tv) in local.get(&here("traits"), raw_traits, "traits must be a map", |_| true).unwrap_or_default() {
            let Some(tname) = tk.as_str() else {
                local.push(&here("traits"), format!("trait names must be strings, found {}", show(&tk)));
                continue;
            };
            match TraitCriterion::from_yaml(&tv) {
                Ok(tc) => traits.push((tname.to_string(), tc)),
                Err(e) => local.push(&format!("{}.{tname}", here("traits")), e),
            }
        }
        for k in raw.unknown.keys().chain(&odd_keys) {
            let name = show(k).trim_matches('"').to_string();
            local.push(
                &here(&name),
                format!(
                    "unknown key {:?}; expected event_type, number, timestamp, map_distinguished_by or traits",
                    name
                ),
            );
        }
        errors.extend(local.0);
        (errors.len() == before).then(|| Criteria {
            event_type: event_type.expect("no error, so parsed"),
            number,
            timestamp,
            map_distinguished_by,
            traits,
        })
    }

    /// Whether the event satisfies every condition: type, then timestamp, then traits.
    pub fn matches(&self, event: &Event) -> bool {
        self.mismatch(event).is_none()
    }

    /// The first condition the event fails, in the order [`Criteria::matches`]
    /// checks them; `None` when it meets them all.
    pub fn mismatch(&self, event: &Event) -> Option<Mismatch<'_>> {
        self.mismatch_given_type(event, self.event_type.matches(&event.event_type))
    }

    /// [`Criteria::mismatch`] given whether the event's type passes this
    /// criteria's `event_type` filter (worked out once per type, see
    /// [`crate::TypeVerdicts`]).
    pub fn mismatch_given_type(&self, event: &Event, type_matches: bool) -> Option<Mismatch<'_>> {
        if !type_matches {
            return Some(Mismatch::EventType);
        }
        if let Some(expr) = &self.timestamp {
            match expr.eval(&|n: &str| event.datetime_var(n)) {
                Ok(r) if r.contains(event.timestamp) => {}
                _ => return Some(Mismatch::Timestamp(expr)),
            }
        }
        self.traits.iter().find(|(name, tc)| !tc.matches(event, name)).map(|(name, tc)| Mismatch::Trait(name, tc))
    }

    /// Why the event meets this entry (`Ok`: the glob that let its type
    /// through and each trait condition with the value seen) or not (`Err`:
    /// the condition that failed and the value seen), in words.
    pub fn explain(&self, event: &Event) -> Result<String, String> {
        let seen = |name: &str| match event.get(name) {
            Some(v) => format!("{} ({})", v.to_plain_json(), v.type_name()),
            None => "no such trait".to_string(),
        };
        match self.mismatch(event) {
            Some(Mismatch::EventType) => Err(self.event_type.explain(&event.event_type).err().unwrap_or_default()),
            Some(Mismatch::Timestamp(expr)) => Err(format!(
                "timestamp {} is not within {}",
                crate::event::format_datetime(&event.timestamp),
                expr.source()
            )),
            Some(Mismatch::Trait(name, tc)) => Err(format!("trait {name:?} needs {tc}, saw {}", seen(name))),
            None => {
                let glob = self.event_type.explain(&event.event_type).unwrap_or("*");
                let mut out = format!("event_type {:?} matches glob {glob:?}", event.event_type);
                if let Some(expr) = &self.timestamp {
                    out.push_str(&format!(", timestamp within {}", expr.source()));
                }
                for (name, tc) in &self.traits {
                    out.push_str(&format!(", trait {name:?} {tc}: saw {}", seen(name)));
                }
                Ok(out)
            }
        }
    }

    /// The event key a distinguishing trait is read from under this criteria.
    pub fn source_for<'a>(&'a self, dist_name: &'a str) -> &'a str {
        self.map_distinguished_by.get(dist_name).map(String::as_str).unwrap_or(dist_name)
    }
}

#[cfg(test)]
#[allow(clippy::approx_constant)] // the spec's cases use 3.14
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn crit(yaml: &str) -> Result<Criteria, Vec<ConfigError>> {
        let v: Value = serde_yaml::from_str(yaml).unwrap();
        let (mut errs, mut warns) = (vec![], vec![]);
        Criteria::from_yaml(&v, "c", &mut errs, &mut warns).ok_or(errs)
    }

    #[test]
    fn every_criteria_error_names_its_key() {
        let errs = |yaml: &str| -> Vec<String> { crit(yaml).unwrap_err().iter().map(|e| e.to_string()).collect() };
        assert_eq!(errs("5"), ["key \"c\": criteria must be a map, found 5"]);
        assert_eq!(
            errs("{event_type: [a, 5], number: 0, timestamp: 7, traits: {x: {colour: red}}, colour: red, 3: x}"),
            [
                "key \"c.event_type\": entries must be strings, found 5",
                "key \"c.number\": number must be a positive integer, found 0",
                "key \"c.timestamp\": timestamp must be a time expression string, found 7",
                "key \"c.traits.x\": unknown criterion type \"colour\"; expected one of string, text, int, float, datetime",
                "key \"c.colour\": unknown key \"colour\"; expected event_type, number, timestamp, map_distinguished_by or traits",
                "key \"c.3\": unknown key \"3\"; expected event_type, number, timestamp, map_distinguished_by or traits",
            ]
        );
        assert_eq!(
            errs("{event_type: {a: b}, timestamp: \"day(\", map_distinguished_by: [x], traits: [y]}"),
            [
                "key \"c.event_type\": event_type must be a string or a list of strings, found a: b",
                "key \"c.timestamp\": invalid time expression \"day(\": expected a timestamp or range expression, found end of expression",
                "key \"c.map_distinguished_by\": must be a map, found - x",
                "key \"c.traits\": traits must be a map, found - y",
            ]
        );
        let (mut e, mut w) = (vec![], vec![]);
        let v: Value = serde_yaml::from_str("{map_distingushed_by: {a: b}, traits: ~}").unwrap();
        let c = Criteria::from_yaml(&v, "c", &mut e, &mut w).expect("valid");
        assert_eq!(c.source_for("a"), "b");
        assert!(w[0].to_string().contains("misspelled key"), "{w:?}");
    }

    fn ev(traits: &[(&str, TraitValue)]) -> Event {
        Event::new(
            "m1",
            "test.thing",
            Utc.with_ymd_and_hms(2014, 8, 1, 20, 4, 0).unwrap(),
            traits.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        )
        .unwrap()
    }

    #[test]
    fn constant_and_int_criteria() {
        for y in ["traits: {foo: 3}", "traits: {foo: {int: \"3\"}}", "traits: {foo: {int: 3}}"] {
            let c = crit(y).unwrap();
            assert!(c.matches(&ev(&[("foo", TraitValue::Int(3))])), "{y}");
            assert!(!c.matches(&ev(&[("foo", TraitValue::Int(5))])), "{y}");
            assert!(!c.matches(&ev(&[])), "{y}");
            assert!(!c.matches(&ev(&[("foo", TraitValue::String("booga".into()))])), "{y}");
        }
        let gt = crit("traits: {foo: {int: \"> 3\"}}").unwrap();
        assert!(!gt.matches(&ev(&[("foo", TraitValue::Int(3))])));
        assert!(gt.matches(&ev(&[("foo", TraitValue::Int(5))])));
        let lt = crit("traits: {foo: {int: \"< 3\"}}").unwrap();
        assert!(!lt.matches(&ev(&[("foo", TraitValue::Int(3))])));
        assert!(lt.matches(&ev(&[("foo", TraitValue::Int(1))])));
        let ge = crit("traits: {foo: {int: \">= 3\"}}").unwrap();
        assert!(ge.matches(&ev(&[("foo", TraitValue::Int(3))])));
        assert!(crit("traits: {foo: {int: \"zazz\"}}").is_err());
        assert!(crit("traits: {foo: {int: \"\"}}").is_err());
        assert!(crit("traits: {foo: {int: \"~ 3\"}}").is_err());
        assert!(crit("traits: {foo: {numeric: \"> 3\"}}").is_err());
        assert!(crit("traits: {foo: {int: 1, float: 2}}").is_err());
    }

    #[test]
    fn float_criteria() {
        let eq = crit("traits: {foo: {float: \"3.14\"}}").unwrap();
        assert!(eq.matches(&ev(&[("foo", TraitValue::Float(3.14))])));
        assert!(!eq.matches(&ev(&[("foo", TraitValue::Float(5.2))])));
        assert!(!eq.matches(&ev(&[("foo", TraitValue::String("booga".into()))])));
        let lt = crit("traits: {foo: {float: \"< 3.14\"}}").unwrap();
        assert!(!lt.matches(&ev(&[("foo", TraitValue::Float(3.14))])));
        assert!(!lt.matches(&ev(&[("foo", TraitValue::Float(3.5))])));
        assert!(lt.matches(&ev(&[("foo", TraitValue::Float(3.02))])));
        assert!(crit("traits: {foo: {float: \"zazz\"}}").is_err());
        assert!(crit("traits: {foo: {float: \"\"}}").is_err());
    }

    #[test]
    fn event_type_globs() {
        let f = EventTypeFilter::new(&["test.foo.*", "!test.wakka.*"]).unwrap();
        assert!(f.matches("test.foo.bar"));
        assert!(!f.matches("test.wakka.wakka"));
        assert!(!f.matches("test.boingy"));
        let f = EventTypeFilter::new(&["!test.foo.bar"]).unwrap();
        assert_eq!(f.includes(), ["*"]);
        assert!(f.matches("x") && !f.matches("test.foo.bar"));
        assert!(EventTypeFilter::new(&["test.[foo"]).is_err());
        let c = crit("{}").unwrap();
        assert_eq!(c.number, 1);
        assert!(c.event_type.is_catch_all() && c.traits.is_empty() && c.timestamp.is_none());
    }

    #[test]
    fn unknown_key_rejected() {
        let e = crit("{event_type: a, numbr: 2}").unwrap_err();
        assert_eq!(e[0].key.as_deref(), Some("c.numbr"));
    }
}
