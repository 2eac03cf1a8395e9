//! Trigger definitions (`triggers.yaml`): which events to collect, how to split
//! them into streams, when a stream fires and when it expires.

use crate::config_error::{present_raw, read_map, show, ConfigError, ConfigErrors, Raw};
use crate::criteria::Criteria;
use crate::event::{format_datetime, Event, TraitValue};
use crate::timex::{TimeExpr, TimexValue};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// One `distinguished_by` entry.
#[derive(Debug, Clone)]
pub enum DistinguishedBy {
    /// The trait's value itself.
    Trait(String),
    /// `{name: "<timex>"}`: the expression evaluated with `$timestamp` = the trait's value.
    Range {
        /// The trait (and distinguishing) name.
        name: String,
        /// The expression, e.g. `day`.
        expr: TimeExpr,
    },
}

impl DistinguishedBy {
    /// The distinguishing name.
    pub fn name(&self) -> &str {
        match self {
            DistinguishedBy::Trait(n) | DistinguishedBy::Range { name: n, .. } => n,
        }
    }
}

/// The value of one distinguishing trait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistValue {
    /// A plain trait value.
    Value(TraitValue),
    /// A time range `[begin, end)`.
    Timerange {
        /// Inclusive start.
        #[serde(serialize_with = "crate::event::serialize_datetime")]
        begin: DateTime<Utc>,
        /// Exclusive end.
        #[serde(serialize_with = "crate::event::serialize_datetime")]
        end: DateTime<Utc>,
    },
}

impl DistValue {
    /// Plain JSON: scalars as themselves, ranges as `{"begin": .., "end": ..}`.
    pub fn to_plain_json(&self) -> serde_json::Value {
        match self {
            DistValue::Value(v) => v.to_plain_json(),
            DistValue::Timerange { begin, end } => serde_json::json!({
                "begin": format_datetime(begin),
                "end": format_datetime(end),
            }),
        }
    }
}

/// The distinguishing traits of a stream: name -> value. Together with the
/// trigger name they identify the stream, like SQL `GROUP BY`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DistTraits(pub BTreeMap<String, DistValue>);

impl DistTraits {
    /// A canonical string for the map: equal maps give equal keys, so storage can
    /// enforce "one open stream per (trigger, key)" with a unique index.
    pub fn key(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    /// Plain JSON object (see [`DistValue::to_plain_json`]).
    pub fn to_plain_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.0.iter().map(|(k, v)| (k.clone(), v.to_plain_json())).collect())
    }
}

/// A validated trigger definition.
#[derive(Debug, Clone)]
pub struct TriggerDefinition {
    /// Name; also the name of every stream it creates.
    pub name: String,
    /// 0 none, 1 counters, 2 counters and mismatch reasons.
    pub debug_level: u8,
    /// How events are split into streams.
    pub distinguished_by: Vec<DistinguishedBy>,
    /// Expire time of a stream, from `$first` and `$last`.
    pub expiration: TimeExpr,
    /// Pipeline run when a stream fires.
    pub fire_pipeline: Option<String>,
    /// Pipeline run when a stream expires.
    pub expire_pipeline: Option<String>,
    /// All must be met (each by `number` events) for a stream to fire.
    pub fire_criteria: Vec<Criteria>,
    /// An event joins a stream of this trigger when any of these matches.
    pub match_criteria: Vec<Criteria>,
    /// Seconds between a stream becoming ready and its fire time.
    pub fire_delay: i64,
    /// When more streams are ready than a worker takes at once, those of
    /// triggers with a higher priority are taken first (default 0).
    pub priority: i32,
    /// The definition as written (what its version is computed from).
    pub source: Value,
    /// Its version (see [`crate::version`]); set when the whole configuration
    /// is loaded ([`crate::LoadedConfig`]), `None` for a set loaded alone.
    pub version: Option<String>,
}

/// Why an event did not yield a stream membership for a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoMatch {
    /// No match criteria matched.
    NoMatchingCriteria,
    /// A distinguishing trait is missing from the event.
    MissingDistinguishingTrait(String),
    /// A range distinguishing trait is not a datetime, or its expression failed.
    BadDistinguishingTrait(String),
}

/// Trigger keys we know; anything else is a definition error.
const TRIGGER_KEYS: &[&str] = &[
    "name",
    "debug_level",
    "distinguished_by",
    "expiration",
    "fire_pipeline",
    "expire_pipeline",
    "fire_criteria",
    "match_criteria",
    "fire_delay",
    "load_criteria",
    "priority",
];

/// A trigger definition as written (serde): each value parsed into the type it
/// should have or kept as found (see [`Raw`]); unknown keys in `unknown`.
/// [`TriggerDefinition::from_yaml`] validates it.
#[derive(Debug, Deserialize)]
struct RawTrigger {
    #[serde(default, deserialize_with = "present_raw")]
    name: Option<Raw<String>>,
    #[serde(default)]
    debug_level: Option<Raw<NumberOrText<u64>>>,
    #[serde(default)]
    distinguished_by: Option<Raw<Vec<Raw<RawDistinguishedBy>>>>,
    #[serde(default)]
    expiration: Option<Raw<String>>,
    #[serde(default)]
    fire_pipeline: Option<Raw<String>>,
    #[serde(default)]
    expire_pipeline: Option<Raw<String>>,
    #[serde(default)]
    fire_criteria: Option<Raw<Vec<Value>>>,
    #[serde(default)]
    match_criteria: Option<Raw<Vec<Value>>>,
    #[serde(default)]
    load_criteria: Option<Raw<Vec<Value>>>,
    #[serde(default)]
    fire_delay: Option<Raw<NumberOrText<i64>>>,
    #[serde(default)]
    priority: Option<Raw<NumberOrText<i64>>>,
    #[serde(flatten)]
    unknown: serde_yaml::Mapping,
}

/// A number, or a string holding one (the original accepts both).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NumberOrText<N> {
    Number(N),
    Text(String),
}

impl<N: std::str::FromStr> NumberOrText<N> {
    fn number(self) -> Option<N> {
        match self {
            NumberOrText::Number(n) => Some(n),
            NumberOrText::Text(s) => s.parse().ok(),
        }
    }
}

/// A `distinguished_by` entry as written: a trait name or a `{trait: expression}` map.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDistinguishedBy {
    Trait(String),
    Range(serde_yaml::Mapping),
}

/// Reads definition #`index + 1` into its [`RawTrigger`] and the keys that
/// are not strings; `None` (and an error) when it is not a map.
fn read_trigger(v: &Value, index: usize, errors: &mut Vec<ConfigError>) -> Option<(RawTrigger, Vec<Value>)> {
    match read_map(v) {
        Ok(read) => Some(read),
        Err(_) => {
            let found = show(v);
            errors.push(ConfigError::new(format!("trigger definition #{} must be a map, found {found}", index + 1)));
            None
        }
    }
}

/// The trigger's name: required, a non-empty string.
fn trigger_name(raw: Option<Raw<String>>, index: usize, errors: &mut Vec<ConfigError>) -> Option<String> {
    let at = || format!("trigger #{}", index + 1);
    match raw.map(|n| n.expect("name must be a non-empty string", |s| !s.trim().is_empty())) {
        Some(Ok(name)) => Some(name),
        Some(Err(e)) => {
            errors.push(e.context(at()).key("name"));
            None
        }
        None => {
            errors.push(ConfigError::new("missing required key").context(at()).key("name"));
            None
        }
    }
}

/// An error for each key that is not one of [`TRIGGER_KEYS`].
fn unknown_trigger_keys(unknown: &serde_yaml::Mapping, odd_keys: &[Value]) -> Vec<ConfigError> {
    let expected = format!("unknown key; expected one of {}", TRIGGER_KEYS.join(", "));
    unknown.keys().chain(odd_keys).map(|k| ConfigError::new(&expected).key(show(k).trim_matches('"'))).collect()
}

/// A number (or a string holding one) that `convert` accepts; `None` when
/// absent or (with the error `{expected}, found …` under `key`) when not.
fn number<N: std::str::FromStr, T>(
    local: &mut Vec<ConfigError>,
    key: &str,
    raw: Option<Raw<NumberOrText<N>>>,
    expected: &str,
    convert: impl FnOnce(N) -> Option<T>,
) -> Option<T> {
    let raw = raw?;
    let value = raw.parsed.and_then(NumberOrText::number).and_then(convert);
    if value.is_none() {
        local.push(ConfigError::new(format!("{expected}, found {}", show(&raw.found))).key(key));
    }
    value
}

/// `distinguished_by`: trait names and `{trait: expression}` maps, each name once.
fn distinguished_by(
    raw: Option<Raw<Vec<Raw<RawDistinguishedBy>>>>,
    local: &mut Vec<ConfigError>,
) -> Vec<DistinguishedBy> {
    let items = match raw.map(|d| d.expect("must be a list", |_| true)) {
        None => return Vec::new(),
        Some(Err(e)) => {
            local.push(e.key("distinguished_by"));
            return Vec::new();
        }
        Some(Ok(items)) => items,
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match distinguished_by_entry(item) {
            Ok(d) => out.push(d),
            Err(e) => local.push(e.key(format!("distinguished_by[{i}]"))),
        }
    }
    let mut seen = HashSet::new();
    for d in &out {
        if !seen.insert(d.name().to_string()) {
            local.push(ConfigError::new(format!("{:?} is listed twice", d.name())).key("distinguished_by"));
        }
    }
    out
}

/// One `distinguished_by` entry (its error has no key yet).
fn distinguished_by_entry(item: Raw<RawDistinguishedBy>) -> Result<DistinguishedBy, ConfigError> {
    let found = item.found.clone();
    match item.expect("must be a trait name or a {trait: expression} map", |_| true)? {
        RawDistinguishedBy::Trait(name) => Ok(DistinguishedBy::Trait(name)),
        RawDistinguishedBy::Range(mm) if mm.len() == 1 => {
            let (k, v) = mm.iter().next().expect("len 1");
            match (k.as_str(), v.as_str()) {
                (Some(n), Some(expr)) => match TimeExpr::parse(expr) {
                    Ok(expr) => Ok(DistinguishedBy::Range { name: n.to_string(), expr }),
                    Err(e) => Err(ConfigError::new(e.to_string())),
                },
                _ => {
                    Err(ConfigError::new(format!("must map a trait name to a time expression, found {}", show(&found))))
                }
            }
        }
        RawDistinguishedBy::Range(mm) => {
            Err(ConfigError::new(format!("a map entry must have exactly one key, found {}", mm.len())))
        }
    }
}

/// `expiration`: required, a time expression of `$first` and `$last`.
fn expiration(raw: Option<Raw<String>>, local: &mut Vec<ConfigError>) -> Option<TimeExpr> {
    let checked = match raw.map(|e| e.expect("must be a time expression string", |_| true)) {
        None => Err(ConfigError::new("missing required key")),
        Some(Err(e)) => Err(e),
        Some(Ok(s)) => TimeExpr::parse(&s).map_err(|e| ConfigError::new(e.to_string())).and_then(|e| {
            let bad: Vec<String> = e.variables().into_iter().filter(|v| v != "first" && v != "last").collect();
            if bad.is_empty() {
                Ok(e)
            } else {
                Err(ConfigError::new(format!("{s:?} uses ${}; only $first and $last are defined", bad.join(", $"))))
            }
        }),
    };
    checked.map_err(|e| local.push(e.key("expiration"))).ok()
}

/// A pipeline name (empty: none).
fn pipeline(key: &str, raw: Option<Raw<String>>, local: &mut Vec<ConfigError>) -> Option<String> {
    match raw?.expect("must be a pipeline name", |_| true) {
        Ok(p) => Some(p).filter(|p| !p.is_empty()),
        Err(e) => {
            local.push(e.key(key));
            None
        }
    }
}

/// `fire_criteria` or `match_criteria`: required, a non-empty list of criteria.
fn criteria_list(
    key: &str,
    raw: Option<Raw<Vec<Value>>>,
    local: &mut Vec<ConfigError>,
    local_warn: &mut Vec<ConfigError>,
) -> Vec<Criteria> {
    match raw.map(|r| r.expect("must be a list of criteria", |_| true)) {
        None => local.push(ConfigError::new("missing required key").key(key)),
        Some(Err(e)) => local.push(e.key(key)),
        Some(Ok(items)) if items.is_empty() => local.push(ConfigError::new("must list at least one criteria").key(key)),
        Some(Ok(items)) => {
            return items
                .iter()
                .enumerate()
                .filter_map(|(i, it)| Criteria::from_yaml(it, &format!("{key}[{i}]"), local, local_warn))
                .collect()
        }
    }
    vec![]
}

/// `load_criteria`: checked like criteria, then a warning that it has no effect.
fn load_criteria(raw: Option<Raw<Vec<Value>>>, local: &mut Vec<ConfigError>, local_warn: &mut Vec<ConfigError>) {
    if let Some(items) = raw.and_then(|r| r.parsed) {
        for (i, it) in items.iter().enumerate() {
            let _ = Criteria::from_yaml(it, &format!("load_criteria[{i}]"), local, local_warn);
        }
        local_warn.push(
            ConfigError::new("load_criteria is parsed but has no effect (as in the original)").key("load_criteria"),
        );
    }
}

impl TriggerDefinition {
    /// Parses and validates one definition. All problems go to `errors`.
    pub fn from_yaml(
        v: &Value,
        index: usize,
        errors: &mut Vec<ConfigError>,
        warnings: &mut Vec<ConfigError>,
    ) -> Option<TriggerDefinition> {
        let (mut raw, odd_keys) = read_trigger(v, index, errors)?;
        let name = trigger_name(raw.name.take(), index, errors)?;
        let mut local = unknown_trigger_keys(&raw.unknown, &odd_keys);
        let mut local_warn = Vec::new();
        let debug_level =
            number(&mut local, "debug_level", raw.debug_level, "must be 0, 1 or 2", |n| (n <= 2).then_some(n as u8));
        let distinguished_by = distinguished_by(raw.distinguished_by, &mut local);
        let expiration = expiration(raw.expiration, &mut local);
        let fire_pipeline = pipeline("fire_pipeline", raw.fire_pipeline, &mut local);
        let expire_pipeline = pipeline("expire_pipeline", raw.expire_pipeline, &mut local);
        if fire_pipeline.is_none() && expire_pipeline.is_none() {
            local.push(
                ConfigError::new("at least one of fire_pipeline and expire_pipeline is required").key("fire_pipeline"),
            );
        }
        let fire_criteria = criteria_list("fire_criteria", raw.fire_criteria, &mut local, &mut local_warn);
        let match_criteria = criteria_list("match_criteria", raw.match_criteria, &mut local, &mut local_warn);
        load_criteria(raw.load_criteria, &mut local, &mut local_warn);
        let delay = "must be a non-negative number of seconds";
        let fire_delay = number(&mut local, "fire_delay", raw.fire_delay, delay, |n: i64| (n >= 0).then_some(n));
        let priority = number(&mut local, "priority", raw.priority, "must be an integer", |n| i32::try_from(n).ok());
        let ctx = format!("trigger {name:?}");
        warnings.extend(local_warn.into_iter().map(|e| e.context(ctx.clone())));
        let Some(expiration) = expiration.filter(|_| local.is_empty()) else {
            errors.extend(local.into_iter().map(|e| e.context(ctx.clone())));
            return None;
        };
        Some(TriggerDefinition {
            name,
            debug_level: debug_level.unwrap_or(0),
            distinguished_by,
            expiration,
            fire_pipeline,
            expire_pipeline,
            fire_criteria,
            match_criteria,
            fire_delay: fire_delay.unwrap_or(0),
            priority: priority.unwrap_or(0),
            source: v.clone(),
            version: None,
        })
    }

    /// The first match criteria the event satisfies (whose distinguishing traits it
    /// carries), with the stream's distinguishing traits.
    ///
    /// Unlike the original, presence of a distinguishing trait is checked under the
    /// name the criteria's `map_distinguished_by` reads it from.
    pub fn match_event(&self, event: &Event) -> Result<(usize, DistTraits), NoMatch> {
        self.match_event_given_types(event, &self.type_verdicts(&event.event_type))
    }

    /// Whether each of this trigger's criteria accepts events of
    /// `event_type`: the match criteria, then the fire criteria.
    pub fn type_verdicts(&self, event_type: &str) -> Vec<bool> {
        self.match_criteria.iter().chain(&self.fire_criteria).map(|c| c.event_type.matches(event_type)).collect()
    }

    /// [`TriggerDefinition::match_event`] given the event type's
    /// [`TriggerDefinition::type_verdicts`].
    pub fn match_event_given_types(&self, event: &Event, types: &[bool]) -> Result<(usize, DistTraits), NoMatch> {
        let mut missing = None;
        for (i, c) in self.match_criteria.iter().enumerate() {
            if c.mismatch_given_type(event, types.get(i).copied().unwrap_or(false)).is_some() {
                continue;
            }
            match self.distinguishing_traits(event, c) {
                Ok(d) => return Ok((i, d)),
                Err(e) => missing = missing.or(Some(e)),
            }
        }
        Err(missing.unwrap_or(NoMatch::NoMatchingCriteria))
    }

    /// [`TriggerDefinition::match_event`]'s verdict with the reason in words:
    /// which match criteria decided (the glob, each trait condition and the
    /// value it saw), or why each one failed.
    pub fn explain_match(&self, event: &Event) -> (Result<(usize, DistTraits), NoMatch>, String) {
        let verdict = self.match_event(event);
        let first_matching = || self.match_criteria.iter().position(|c| c.matches(event)).unwrap_or(0);
        let reason = match &verdict {
            Ok((i, _)) => {
                let why = self.match_criteria[*i].explain(event).unwrap_or_else(|e| e);
                format!("match_criteria[{i}]: {why}")
            }
            Err(NoMatch::NoMatchingCriteria) if self.match_criteria.is_empty() => "no match_criteria".to_string(),
            Err(NoMatch::NoMatchingCriteria) => self
                .match_criteria
                .iter()
                .enumerate()
                .map(|(i, c)| format!("match_criteria[{i}]: {}", c.explain(event).err().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("; "),
            Err(NoMatch::MissingDistinguishingTrait(t)) => {
                format!("match_criteria[{}] matches, but the event has no distinguishing trait {t:?}", first_matching())
            }
            Err(NoMatch::BadDistinguishingTrait(t)) => format!(
                "match_criteria[{}] matches, but distinguishing trait {t:?} is not a datetime its range can be computed from",
                first_matching()
            ),
        };
        (verdict, reason)
    }

    /// The distinguishing traits of an event matched by `criteria`.
    pub fn distinguishing_traits(&self, event: &Event, criteria: &Criteria) -> Result<DistTraits, NoMatch> {
        let mut out = BTreeMap::new();
        for d in &self.distinguished_by {
            let name = d.name();
            let source = criteria.source_for(name);
            let value = event.get(source).ok_or_else(|| NoMatch::MissingDistinguishingTrait(source.to_string()))?;
            let dv = match d {
                DistinguishedBy::Trait(_) => DistValue::Value(value.into_owned()),
                DistinguishedBy::Range { expr, .. } => {
                    let TraitValue::Datetime(t) = *value else {
                        return Err(NoMatch::BadDistinguishingTrait(source.to_string()));
                    };
                    // `$timestamp` is the source trait's time here.
                    let vars = |n: &str| if n == "timestamp" { Some(t) } else { event.datetime_var(n) };
                    match expr.eval(&vars) {
                        Ok(TimexValue::Range { begin, end }) => DistValue::Timerange { begin, end },
                        Ok(TimexValue::Timestamp(ts)) => DistValue::Value(TraitValue::Datetime(ts)),
                        Err(_) => return Err(NoMatch::BadDistinguishingTrait(source.to_string())),
                    }
                }
            };
            out.insert(name.to_string(), dv);
        }
        Ok(DistTraits(out))
    }

    /// Which fire criteria the event counts toward (one flag per criteria).
    pub fn fire_hits(&self, event: &Event) -> Vec<bool> {
        self.fire_hits_given_types(event, &self.type_verdicts(&event.event_type))
    }

    /// [`TriggerDefinition::fire_hits`] given the event type's
    /// [`TriggerDefinition::type_verdicts`].
    pub fn fire_hits_given_types(&self, event: &Event, types: &[bool]) -> Vec<bool> {
        let fire_types = types.get(self.match_criteria.len()..).unwrap_or_default();
        self.fire_criteria
            .iter()
            .enumerate()
            .map(|(i, c)| c.mismatch_given_type(event, fire_types.get(i).copied().unwrap_or(false)).is_none())
            .collect()
    }

    /// Whether per-criteria counts meet every criteria's `number`.
    pub fn fire_ready(&self, counts: &[i64]) -> bool {
        self.fire_criteria.iter().enumerate().all(|(i, c)| counts.get(i).copied().unwrap_or(0) >= c.number as i64)
    }

    /// A stream's expire time from its first and last event times.
    pub fn expire_at(&self, first: DateTime<Utc>, last: DateTime<Utc>) -> DateTime<Utc> {
        let vars = |n: &str| match n {
            "first" => Some(first),
            "last" => Some(last),
            _ => None,
        };
        // Variables were checked at load time, so evaluation only fails on
        // date overflow; then the stream never expires on its own.
        self.expiration.eval(&vars).map(|v| v.timestamp()).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Fire time of a stream that becomes ready at `now` (the end of time if
    /// `fire_delay` reaches past it).
    pub fn fire_timestamp(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        Duration::try_seconds(self.fire_delay)
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Every trigger's [`TriggerDefinition::type_verdicts`], worked out once per
/// event type: a batch has few distinct types, and matching globs is most of
/// the cost of matching an event.
#[derive(Debug)]
pub struct TypeVerdicts<'a> {
    triggers: &'a TriggerSet,
    by_type: HashMap<String, Vec<Vec<bool>>>,
}

impl<'a> TypeVerdicts<'a> {
    /// Distinct event types remembered at most; past it the memo starts over
    /// (event types are the sender's to choose).
    const MAX_TYPES: usize = 1024;

    /// An empty memo for `triggers`.
    pub fn new(triggers: &'a TriggerSet) -> TypeVerdicts<'a> {
        TypeVerdicts { triggers, by_type: HashMap::new() }
    }

    /// The verdicts of each trigger of the set (in order) for `event_type`.
    pub fn get(&mut self, event_type: &str) -> &[Vec<bool>] {
        if !self.by_type.contains_key(event_type) {
            if self.by_type.len() >= Self::MAX_TYPES {
                self.by_type.clear();
            }
            self.by_type.insert(event_type.to_string(), self.triggers.type_verdicts(event_type));
        }
        &self.by_type[event_type]
    }
}

/// All trigger definitions, in load order; names are unique.
#[derive(Debug, Clone, Default)]
pub struct TriggerSet {
    triggers: Vec<Arc<TriggerDefinition>>,
}

impl TriggerSet {
    /// Builds a set, rejecting duplicate names.
    pub fn new(triggers: Vec<TriggerDefinition>) -> Result<TriggerSet, ConfigErrors> {
        let mut seen = HashSet::new();
        let mut errors = Vec::new();
        for t in &triggers {
            if !seen.insert(t.name.clone()) {
                errors.push(
                    ConfigError::new("trigger name defined more than once")
                        .context(format!("trigger {:?}", t.name))
                        .key("name"),
                );
            }
        }
        if errors.is_empty() {
            Ok(TriggerSet { triggers: triggers.into_iter().map(Arc::new).collect() })
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Parses a `triggers.yaml` document. Returns the set and warnings.
    pub fn from_yaml_str(text: &str, file: &Path) -> Result<(TriggerSet, Vec<ConfigError>), ConfigErrors> {
        let (doc, yaml_warnings) = crate::yaml::load(text, file)?;
        let items = match doc {
            Value::Sequence(items) => items,
            Value::Null => vec![],
            other => {
                return Err(ConfigError::new(format!("must be a list of trigger definitions, found {}", show(&other)))
                    .in_file(file)
                    .into())
            }
        };
        let (mut errors, mut warnings) = (vec![], yaml_warnings);
        let defs: Vec<_> = items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| TriggerDefinition::from_yaml(it, i, &mut errors, &mut warnings))
            .collect();
        let set = TriggerSet::new(defs);
        if let Err(ConfigErrors(e)) = &set {
            errors.extend(e.iter().cloned());
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors.into_iter().map(|e| e.in_file(file)).collect()));
        }
        Ok((set.expect("no errors"), warnings.into_iter().map(|e| e.in_file(file)).collect()))
    }

    /// Loads a `triggers.yaml` file.
    pub fn load(file: &Path) -> Result<(TriggerSet, Vec<ConfigError>), ConfigErrors> {
        let text =
            std::fs::read_to_string(file).map_err(|e| ConfigError::new(format!("cannot read: {e}")).in_file(file))?;
        TriggerSet::from_yaml_str(&text, file)
    }

    /// The definitions in load order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<TriggerDefinition>> {
        self.triggers.iter()
    }

    /// Each trigger's [`TriggerDefinition::type_verdicts`] for `event_type`,
    /// in load order ([`TypeVerdicts`] keeps them per type for a batch).
    pub fn type_verdicts(&self, event_type: &str) -> Vec<Vec<bool>> {
        self.triggers.iter().map(|t| t.type_verdicts(event_type)).collect()
    }

    /// Changes every definition in place (e.g. to set its version).
    pub fn update(&mut self, mut f: impl FnMut(&mut TriggerDefinition)) {
        for t in &mut self.triggers {
            f(Arc::make_mut(t));
        }
    }

    /// Looks a definition up by name.
    pub fn get(&self, name: &str) -> Option<&Arc<TriggerDefinition>> {
        self.triggers.iter().find(|t| t.name == name)
    }

    /// Number of definitions.
    pub fn len(&self) -> usize {
        self.triggers.len()
    }

    /// True when there are no definitions.
    pub fn is_empty(&self) -> bool {
        self.triggers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn def(yaml: &str) -> Result<TriggerDefinition, Vec<ConfigError>> {
        let v: Value = serde_yaml::from_str(yaml).unwrap();
        let (mut e, mut w) = (vec![], vec![]);
        TriggerDefinition::from_yaml(&v, 0, &mut e, &mut w).ok_or(e)
    }

    const MIN: &str = "{name: t, expiration: \"$last + 1h\", fire_pipeline: p, fire_criteria: [{event_type: test.thing}], match_criteria: [{event_type: \"test.*\"}]}";

    /// The memo gives each trigger's own verdicts, for types seen before and
    /// after it fills up and starts over.
    #[test]
    fn type_verdicts_are_each_triggers_own() {
        let yaml = "
- {name: a, expiration: \"$last + 1h\", fire_pipeline: p, match_criteria: [{event_type: [\"x.*\", \"!x.no\"]}, {event_type: y.one}], fire_criteria: [{event_type: x.yes}, {number: 2}]}
- {name: b, expiration: \"$last + 1h\", fire_pipeline: p, match_criteria: [{event_type: \"*.one\"}], fire_criteria: [{event_type: \"y.*\"}]}
";
        let (set, _) = TriggerSet::from_yaml_str(yaml, Path::new("triggers.yaml")).unwrap();
        let mut memo = TypeVerdicts::new(&set);
        let expected = |ty: &str| -> Vec<Vec<bool>> { set.type_verdicts(ty) };
        assert_eq!(expected("x.yes"), [vec![true, false, true, true], vec![false, false]]);
        assert_eq!(expected("x.no"), [vec![false, false, false, true], vec![false, false]]);
        assert_eq!(expected("y.one"), [vec![false, true, false, true], vec![true, true]]);
        let types: Vec<String> = (0..TypeVerdicts::MAX_TYPES + 10)
            .map(|i| format!("n{i}"))
            .chain(["x.yes", "x.no", "y.one"].map(String::from))
            .collect();
        for round in 0..2 {
            for ty in &types {
                assert_eq!(memo.get(ty), expected(ty), "{ty} (round {round})");
            }
        }
        assert!(memo.by_type.len() <= TypeVerdicts::MAX_TYPES);
    }

    fn ev(ty: &str, traits: &[(&str, TraitValue)]) -> Event {
        Event::new(
            format!("m-{ty}"),
            ty,
            Utc.with_ymd_and_hms(2014, 8, 1, 20, 4, 0).unwrap(),
            traits.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        )
        .unwrap()
    }

    /// explain_match gives match_event's verdict and names the deciding
    /// criterion: the glob, the trait condition and the value seen.
    #[test]
    fn explain_match_names_the_deciding_criterion() {
        let t = def("{name: t, expiration: \"$last + 1h\", fire_pipeline: p, distinguished_by: [id], fire_criteria: [{}], match_criteria: [{event_type: [\"a.*\", \"!a.x\"], traits: {size: {int: \">= 10\"}}}, {event_type: b.c, timestamp: \"day($when)\"}]}").unwrap();
        let id = ("id", TraitValue::String("k".into()));
        let (v, why) = t.explain_match(&ev("a.y", &[id.clone(), ("size", TraitValue::Int(12))]));
        assert_eq!(v.map(|(i, _)| i), Ok(0));
        assert_eq!(
            why,
            "match_criteria[0]: event_type \"a.y\" matches glob \"a.*\", trait \"size\" >= 10: saw 12 (int)"
        );
        let (v, why) = t.explain_match(&ev("a.y", &[id.clone(), ("size", TraitValue::Int(3))]));
        assert_eq!(v.map(|(i, _)| i), Err(NoMatch::NoMatchingCriteria));
        assert_eq!(
            why,
            "match_criteria[0]: trait \"size\" needs >= 10, saw 3 (int); match_criteria[1]: event_type \"a.y\" matches no glob of [\"b.c\"]"
        );
        let (_, why) = t.explain_match(&ev("a.x", std::slice::from_ref(&id)));
        assert!(why.starts_with("match_criteria[0]: event_type \"a.x\" is excluded by \"!a.x\""), "{why}");
        let (_, why) = t.explain_match(&ev("a.y", &[("size", TraitValue::Int(12))]));
        assert_eq!(why, "match_criteria[0] matches, but the event has no distinguishing trait \"id\"");
        let (_, why) = t.explain_match(&ev("b.c", &[id]));
        assert!(why.contains("match_criteria[1]: timestamp 2014-08-01T20:04:00Z is not within day($when)"), "{why}");
    }

    #[test]
    fn required_keys() {
        assert!(def("{}").is_err());
        assert!(def("{name: t}").is_err());
        assert!(def("{name: t, expiration: \"$last + 1h\"}").is_err());
        assert!(def("{name: t, expiration: \"$last + 1h\", fire_pipeline: p}").is_err());
        let e = def("{name: t, expiration: \"$last + 1h\", fire_pipeline: p, fire_criteria: [{}]}").unwrap_err();
        assert_eq!(e[0].key.as_deref(), Some("match_criteria"));
        assert_eq!(e[0].context.as_deref(), Some("trigger \"t\""));
        let d = def(MIN).unwrap();
        assert_eq!(
            (d.distinguished_by.len(), d.fire_criteria.len(), d.match_criteria.len(), d.fire_delay),
            (0, 1, 1, 0)
        );
        assert!(def("{name: t, expiration: \"$last + 1h\", fire_criteria: [{}], match_criteria: [{}]}").is_err());
        assert!(def(
            "{name: t, expiration: \"$now + 1h\", fire_pipeline: p, fire_criteria: [{}], match_criteria: [{}]}"
        )
        .is_err());
        assert!(def("{name: t, distinguished_by: [{a: day, b: day}], expiration: \"$last + 1h\", fire_pipeline: p, fire_criteria: [{}], match_criteria: [{}]}").is_err());
    }

    #[test]
    fn matching_and_distinguishing() {
        let d = def(MIN).unwrap();
        assert!(d.match_event(&ev("test.thing", &[])).is_ok());
        assert!(d.match_event(&ev("other.thing", &[])).is_err());
        let d = def("{name: t, distinguished_by: [instance_id, {timestamp: day}], expiration: \"$last + 1h\", fire_pipeline: p, fire_criteria: [{}], match_criteria: [{event_type: \"test.*\"}]}").unwrap();
        assert_eq!(
            d.match_event(&ev("test.thing", &[])),
            Err(NoMatch::MissingDistinguishingTrait("instance_id".into()))
        );
        let (_, dist) = d.match_event(&ev("test.thing", &[("instance_id", TraitValue::String("foo".into()))])).unwrap();
        assert_eq!(dist.0["instance_id"], DistValue::Value(TraitValue::String("foo".into())));
        assert_eq!(
            dist.0["timestamp"],
            DistValue::Timerange {
                begin: Utc.with_ymd_and_hms(2014, 8, 1, 0, 0, 0).unwrap(),
                end: Utc.with_ymd_and_hms(2014, 8, 2, 0, 0, 0).unwrap()
            }
        );
        let d = def("{name: t, distinguished_by: [instance_id], expiration: \"$last + 1h\", fire_pipeline: p, fire_criteria: [{}], match_criteria: [{map_distinguished_by: {instance_id: other_id}}]}").unwrap();
        let (_, dist) = d.match_event(&ev("x", &[("other_id", TraitValue::String("bar".into()))])).unwrap();
        assert_eq!(dist.0["instance_id"], DistValue::Value(TraitValue::String("bar".into())));
    }

    #[test]
    fn priority_is_an_optional_integer() {
        assert_eq!(def(MIN).unwrap().priority, 0);
        let with = |p: &str| def(&MIN.replace("fire_pipeline: p", &format!("fire_pipeline: p, priority: {p}")));
        assert_eq!(with("10").unwrap().priority, 10);
        assert_eq!(with("-3").unwrap().priority, -3);
        let odd = def(&MIN.replace("fire_pipeline: p", "fire_pipeline: p, 5: x")).unwrap_err();
        assert!(odd[0].to_string().starts_with("trigger \"t\": key \"5\": unknown key"), "{}", odd[0]);
        assert_eq!(with("\"7\"").unwrap().priority, 7);
        for bad in ["high", "1.5", "99999999999"] {
            let e = with(bad).unwrap_err();
            assert!(e[0].to_string().contains("key \"priority\": must be an integer"), "{bad}: {}", e[0]);
        }
    }

    #[test]
    fn fire_decision_and_timestamps() {
        let d = def(MIN).unwrap();
        let t0 = Utc.with_ymd_and_hms(2014, 8, 1, 0, 0, 0).unwrap();
        assert_eq!(d.fire_timestamp(t0), t0);
        let d2 = def(&MIN.replace("fire_pipeline: p", "fire_pipeline: p, fire_delay: 3600")).unwrap();
        assert_eq!(d2.fire_timestamp(t0), t0 + Duration::hours(1));
        let count = |types: &[&str]| -> Vec<i64> {
            let mut c = vec![0; d.fire_criteria.len()];
            for t in types {
                for (i, h) in d.fire_hits(&ev(t, &[])).into_iter().enumerate() {
                    c[i] += h as i64;
                }
            }
            c
        };
        assert!(d.fire_ready(&count(&["foobar", "test.thing", "test.thing"])));
        assert!(d.fire_ready(&count(&["foobar", "test.thing"])));
        assert!(!d.fire_ready(&count(&["foobar", "whatsit"])));
        let d = def(&MIN.replace("{event_type: test.thing}", "{event_type: test.thing, number: 2}")).unwrap();
        assert!(d.fire_ready(&[2]) && !d.fire_ready(&[1]));
        assert_eq!(d.expire_at(t0, t0 + Duration::hours(2)), t0 + Duration::hours(3));
    }

    #[test]
    fn duplicate_names_rejected() {
        let text = format!("- {MIN}\n- {MIN}\n");
        let e = TriggerSet::from_yaml_str(&text, Path::new("triggers.yaml")).unwrap_err();
        assert!(e.to_string().contains("more than once"), "{e}");
    }

    fn lines(yaml: &str) -> (Vec<String>, Vec<String>) {
        match TriggerSet::from_yaml_str(yaml, Path::new("/etc/w/triggers.yaml")) {
            Ok((_, w)) => (vec![], w.iter().map(ToString::to_string).collect()),
            Err(e) => (e.0.iter().map(ToString::to_string).collect(), vec![]),
        }
    }

    /// Every problem of every definition, each with file, trigger and key.
    #[test]
    fn every_error_names_file_trigger_and_key() {
        let (errors, _) = lines(
            "- 5\n- {expiration: x}\n- {name: ''}\n- {name: ~}\n\
             - name: a\n  debug_level: 3\n  distinguished_by: [instance_id, {day: \"$timestamp - 1d\", x: y}, {d: 5}, [z], instance_id, {bad: \"$bad +\"}]\n  \
               expiration: 5\n  fire_pipeline: [p]\n  fire_criteria: []\n  match_criteria: {}\n  fire_delay: -1\n  colour: red\n\
             - name: b\n  debug_level: \"1\"\n  distinguished_by: instance_id\n  expiration: \"$when + 1h\"\n  fire_pipeline: ''\n  expire_pipeline: ~\n  fire_criteria: ~\n  fire_delay: soon\n\
             - name: c\n  expiration: \"$last + 1 parsec\"\n  expire_pipeline: p\n  fire_criteria: [{}]\n  match_criteria: [{}]\n  debug_level: 1.0\n\
             - {name: c, expiration: \"$last + 1h\", fire_pipeline: p, fire_criteria: [{}], match_criteria: [{}]}\n",
        );
        assert_eq!(
            errors,
            vec![
                "/etc/w/triggers.yaml: trigger definition #1 must be a map, found 5",
                "/etc/w/triggers.yaml: trigger #2: key \"name\": missing required key",
                "/etc/w/triggers.yaml: trigger #3: key \"name\": name must be a non-empty string, found \"\"",
                "/etc/w/triggers.yaml: trigger #4: key \"name\": name must be a non-empty string, found null",
                "/etc/w/triggers.yaml: trigger \"a\": key \"colour\": unknown key; expected one of name, debug_level, distinguished_by, expiration, fire_pipeline, expire_pipeline, fire_criteria, match_criteria, fire_delay, load_criteria, priority",
                "/etc/w/triggers.yaml: trigger \"a\": key \"debug_level\": must be 0, 1 or 2, found 3",
                "/etc/w/triggers.yaml: trigger \"a\": key \"distinguished_by[1]\": a map entry must have exactly one key, found 2",
                "/etc/w/triggers.yaml: trigger \"a\": key \"distinguished_by[2]\": must map a trait name to a time expression, found d: 5",
                "/etc/w/triggers.yaml: trigger \"a\": key \"distinguished_by[3]\": must be a trait name or a {trait: expression} map, found - z",
                "/etc/w/triggers.yaml: trigger \"a\": key \"distinguished_by[5]\": invalid time expression \"$bad +\": expected a duration (e.g. '1h') after '+', found end of expression",
                "/etc/w/triggers.yaml: trigger \"a\": key \"distinguished_by\": \"instance_id\" is listed twice",
                "/etc/w/triggers.yaml: trigger \"a\": key \"expiration\": must be a time expression string, found 5",
                "/etc/w/triggers.yaml: trigger \"a\": key \"fire_pipeline\": must be a pipeline name, found - p",
                "/etc/w/triggers.yaml: trigger \"a\": key \"fire_pipeline\": at least one of fire_pipeline and expire_pipeline is required",
                "/etc/w/triggers.yaml: trigger \"a\": key \"fire_criteria\": must list at least one criteria",
                "/etc/w/triggers.yaml: trigger \"a\": key \"match_criteria\": must be a list of criteria, found {}",
                "/etc/w/triggers.yaml: trigger \"a\": key \"fire_delay\": must be a non-negative number of seconds, found -1",
                "/etc/w/triggers.yaml: trigger \"b\": key \"distinguished_by\": must be a list, found \"instance_id\"",
                "/etc/w/triggers.yaml: trigger \"b\": key \"expiration\": \"$when + 1h\" uses $when; only $first and $last are defined",
                "/etc/w/triggers.yaml: trigger \"b\": key \"fire_pipeline\": at least one of fire_pipeline and expire_pipeline is required",
                "/etc/w/triggers.yaml: trigger \"b\": key \"fire_criteria\": missing required key",
                "/etc/w/triggers.yaml: trigger \"b\": key \"match_criteria\": missing required key",
                "/etc/w/triggers.yaml: trigger \"b\": key \"fire_delay\": must be a non-negative number of seconds, found \"soon\"",
                "/etc/w/triggers.yaml: trigger \"c\": key \"debug_level\": must be 0, 1 or 2, found 1.0",
                "/etc/w/triggers.yaml: trigger \"c\": key \"expiration\": invalid time expression \"$last + 1 parsec\": unknown unit 'parsec' at offset 10",
            ]
        );
        let (_, warnings) = lines(
            "- {name: t, expiration: \"$last + 1h\", fire_pipeline: p, fire_criteria: [{}], match_criteria: [{}], load_criteria: [{}], debug_level: \"2\", fire_delay: \"30\"}\n",
        );
        assert_eq!(
            warnings,
            vec!["/etc/w/triggers.yaml: trigger \"t\": key \"load_criteria\": load_criteria is parsed but has no effect (as in the original)"]
        );
        let (errors, _) = lines("{a: 1}\n");
        assert_eq!(errors, vec!["/etc/w/triggers.yaml: must be a list of trigger definitions, found a: 1"]);
        let (errors, _) = lines("- name: [\n");
        assert!(errors[0].starts_with("/etc/w/triggers.yaml:2: invalid YAML"), "{errors:?}");
    }
}
