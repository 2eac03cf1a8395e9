//! StackDistiller: turns OpenStack notifications into flat events (spec 9).
//!
//! A [`Distiller`] is built from `event_definitions.yaml`: a list of
//! definitions, each with an `event_type` filter and a map of traits that say
//! which notification fields (see [`path`]) become which typed traits.
//! [`Distiller::to_event`] picks the definition for a notification and builds
//! an [`Event`].

pub mod ceilometer;
pub mod path;
pub mod plugin;
pub mod python;

use crate::config_error::{present, read_map, show, ConfigError, ConfigErrors, Raw};
use crate::criteria::EventTypeFilter;
use crate::event::{Event, EventError, TraitValue, ENVELOPE_KEYS};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

pub use path::{FieldMatch, FieldPath, PathError, Step};
pub use plugin::{BitFlag, ExternalPlugin, Plugin, PluginFactory, PluginRegistry, TraitPlugin};

/// Whose rules a [`Distiller`] follows (`distiller:` in `winchester.yaml`).
///
/// The ceilometer flavour's rules are in [`ceilometer`]; docs/compatibility.md
/// lists every difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavour {
    /// `stackdistiller` (the default): StackDistiller, as the original Winchester uses it.
    #[default]
    StackDistiller,
    /// `ceilometer`: ceilometer 27.0.0's event converter (definitions read
    /// oslo.messaging's message: `ctxt.*`, `payload.*`, `metadata.*`).
    Ceilometer,
}

impl Flavour {
    /// The configuration names, in the order messages list them.
    pub const NAMES: [&'static str; 2] = ["stackdistiller", "ceilometer"];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::StackDistiller => "stackdistiller",
            Flavour::Ceilometer => "ceilometer",
        }
    }

    /// The flavour named `name` (as written in `winchester.yaml`).
    pub fn from_name(name: &str) -> Option<Flavour> {
        match name {
            "stackdistiller" => Some(Flavour::StackDistiller),
            "ceilometer" => Some(Flavour::Ceilometer),
            _ => None,
        }
    }

    /// The traits every definition has unless it defines traits of those names.
    fn default_traits(self) -> Vec<TraitDefinition> {
        match self {
            Flavour::StackDistiller => default_traits(),
            Flavour::Ceilometer => ceilometer::default_traits(),
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type a trait's value is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraitType {
    /// `text` (the default): Python's `str()` of the value (`True`, `1.0`,
    /// `{'a': 1}`); the ceilometer flavour cuts it at 255 characters.
    Text,
    /// `int`: Python's `int()` (booleans, floats truncated, integer strings).
    Int,
    /// `float`: Python's `float()` (numbers, booleans, numeric strings).
    Float,
    /// `datetime`: from ISO-8601 strings, read as the original's Python `iso8601`
    /// 2.1.0 reads them (see [`crate::iso8601`]), converted to UTC.
    Datetime,
    /// `none` (ceilometer flavour only): ceilometer's `NONE_TYPE`, converted
    /// like `text` except that an empty string gives no trait. Stored as text
    /// (events have no untyped traits).
    NoneType,
}

impl TraitType {
    /// The configuration name (`text`, `int`, `float`, `datetime`).
    pub fn name(self) -> &'static str {
        match self {
            TraitType::Text => "text",
            TraitType::Int => "int",
            TraitType::Float => "float",
            TraitType::Datetime => "datetime",
            TraitType::NoneType => "none",
        }
    }
}

/// How one trait is extracted.
#[derive(Debug, Clone, PartialEq)]
pub struct TraitDefinition {
    /// Trait name.
    pub name: String,
    /// Paths searched, in order; their matches are combined.
    pub fields: Vec<FieldPath>,
    /// Target type.
    pub trait_type: TraitType,
    /// Optional plugin that computes the value from the matches.
    pub plugin: Option<Plugin>,
    /// Ceilometer flavour: an integer (or boolean) `fields` is the trait's
    /// value itself, whatever the notification (no paths, no plugin).
    pub constant: Option<Json>,
}

/// One entry of `event_definitions.yaml`.
#[derive(Debug, Clone)]
pub struct EventDefinition {
    /// Which event types it applies to.
    pub event_type: EventTypeFilter,
    /// Its traits, default traits (`service`, `request_id`, `tenant_id`; see
    /// [`Flavour`] for the ceilometer flavour's) first unless the file defines
    /// traits of those names.
    pub traits: Vec<TraitDefinition>,
    /// 0-based position in the file; `None` for the implicit catch-all.
    pub index: Option<usize>,
}

impl EventDefinition {
    /// The definition's event_type patterns, for messages: `compute.instance.*, !x.y`.
    pub fn describe(&self) -> String {
        describe_filter(&self.event_type)
    }
}

fn describe_filter(f: &EventTypeFilter) -> String {
    let mut parts: Vec<String> = f.includes().to_vec();
    parts.extend(f.excludes().iter().map(|e| format!("!{e}")));
    parts.join(", ")
}

/// Why a notification could not be turned into an event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DistillError {
    /// The notification is not a JSON object.
    #[error("notification is not a JSON object")]
    NotAnObject,
    /// An oslo.messaging v2 envelope whose `oslo.message` is not a JSON object in a string.
    #[error("bad oslo.messaging envelope: {reason}")]
    BadEnvelope {
        /// What is wrong.
        reason: String,
    },
    /// A required key is absent or null.
    #[error("notification has no {key:?}{}", mid(message_id))]
    MissingKey {
        /// The key (`event_type`, `message_id`, or `timestamp` when neither
        /// `timestamp` nor `_context_timestamp` is present).
        key: &'static str,
        /// The message_id, when known.
        message_id: Option<String>,
    },
    /// A key has an unusable value.
    #[error("notification key {key:?} is invalid: {reason}{}", mid(message_id))]
    InvalidKey {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
        /// The message_id, when known.
        message_id: Option<String>,
    },
    /// A trait value could not be converted to the trait's type.
    #[error(
        "definition for event_type {definition:?}: trait {trait_name:?} from {path:?}: cannot convert {value} to {to}{}",
        mid(message_id)
    )]
    Conversion {
        /// The definition's event_type patterns.
        definition: String,
        /// The trait.
        trait_name: String,
        /// The field path the value came from (the trait's first path when a plugin produced it).
        path: String,
        /// The raw value, as JSON.
        value: String,
        /// The target type.
        to: TraitType,
        /// The message_id.
        message_id: Option<String>,
    },
    /// Evaluating a trait's field path failed where the Python original
    /// raises (jsonpath-rw's `[0]` on null, a comparison between text and a
    /// number): the whole notification fails, as there.
    #[error(
        "definition for event_type {definition:?}: trait {trait_name:?}: field path {path:?} failed: {reason}{}",
        mid(message_id)
    )]
    Path {
        /// The definition's event_type patterns.
        definition: String,
        /// The trait.
        trait_name: String,
        /// The field path.
        path: String,
        /// What failed.
        reason: String,
        /// The message_id.
        message_id: Option<String>,
    },
    /// An external trait plugin failed.
    #[error(
        "definition for event_type {definition:?}: trait {trait_name:?}: plugin {plugin:?} failed: {reason}{}",
        mid(message_id)
    )]
    Plugin {
        /// The definition's event_type patterns.
        definition: String,
        /// The trait.
        trait_name: String,
        /// The plugin's name.
        plugin: String,
        /// What it reported (for a Python plugin, the traceback).
        reason: String,
        /// The message_id.
        message_id: Option<String>,
    },
    /// The resulting event did not validate.
    #[error("distilled event is invalid: {source}")]
    InvalidEvent {
        /// The validation failure (it carries the message_id).
        source: EventError,
        /// The message_id.
        message_id: Option<String>,
    },
}

impl DistillError {
    /// The message_id of the notification, when known.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            DistillError::NotAnObject | DistillError::BadEnvelope { .. } => None,
            DistillError::MissingKey { message_id, .. }
            | DistillError::InvalidKey { message_id, .. }
            | DistillError::Conversion { message_id, .. }
            | DistillError::Path { message_id, .. }
            | DistillError::Plugin { message_id, .. }
            | DistillError::InvalidEvent { message_id, .. } => message_id.as_deref(),
        }
    }
}

fn mid(message_id: &Option<String>) -> String {
    match message_id {
        Some(m) => format!(" (message_id {m:?})"),
        None => String::new(),
    }
}

/// Converts notifications to events with a list of definitions.
#[derive(Debug, Clone)]
pub struct Distiller {
    definitions: Vec<EventDefinition>,
    implicit_catch_all: Option<EventDefinition>,
    flavour: Flavour,
}

const DEFINITION_KEYS: &str = "event_type, traits";
const TRAIT_KEYS: &str = "fields, type, plugin";

fn default_traits() -> Vec<TraitDefinition> {
    let p = |s: &str| FieldPath::parse(s).expect("built-in default path parses");
    let t = |name: &str, fields: Vec<FieldPath>| TraitDefinition {
        name: name.into(),
        fields,
        trait_type: TraitType::Text,
        plugin: None,
        constant: None,
    };
    vec![
        t("service", vec![p("publisher_id")]),
        t("request_id", vec![p("_context_request_id")]),
        t("tenant_id", vec![p("payload.tenant_id"), p("_context_tenant")]),
    ]
}

impl Distiller {
    /// Reads and parses a definitions file (see [`Distiller::from_yaml_str`]).
    pub fn load(path: impl AsRef<Path>, catch_all: bool) -> Result<Distiller, ConfigErrors> {
        Distiller::load_with(path, catch_all, &PluginRegistry::default())
    }

    /// [`load`](Self::load) with trait plugins beyond the built-ins.
    pub fn load_with(
        path: impl AsRef<Path>,
        catch_all: bool,
        plugins: &PluginRegistry,
    ) -> Result<Distiller, ConfigErrors> {
        Distiller::load_flavoured(path, catch_all, Flavour::StackDistiller, plugins)
    }

    /// [`load_with`](Self::load_with) following `flavour`'s rules.
    pub fn load_flavoured(
        path: impl AsRef<Path>,
        catch_all: bool,
        flavour: Flavour,
        plugins: &PluginRegistry,
    ) -> Result<Distiller, ConfigErrors> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("cannot read event definitions: {e}")).in_file(path))?;
        Distiller::from_yaml_str_flavoured(&text, path, catch_all, flavour, plugins)
    }

    /// Parses `event_definitions.yaml` text; `file` is only used in messages.
    ///
    /// YAML merge keys (`<<: *anchor`) are resolved. Every problem is reported,
    /// each naming the file, the definition (1-based number and event_type) and
    /// the key. With `catch_all`, when no definition includes `*` without
    /// excludes, an implicit `{event_type: '*', traits: {}}` is checked last.
    pub fn from_yaml_str(text: &str, file: &Path, catch_all: bool) -> Result<Distiller, ConfigErrors> {
        Distiller::from_yaml_str_with(text, file, catch_all, &PluginRegistry::default())
    }

    /// [`from_yaml_str`](Self::from_yaml_str) with trait plugins beyond the built-ins.
    pub fn from_yaml_str_with(
        text: &str,
        file: &Path,
        catch_all: bool,
        plugins: &PluginRegistry,
    ) -> Result<Distiller, ConfigErrors> {
        Distiller::from_yaml_str_flavoured(text, file, catch_all, Flavour::StackDistiller, plugins)
    }

    /// [`from_yaml_str_with`](Self::from_yaml_str_with) following `flavour`'s rules.
    pub fn from_yaml_str_flavoured(
        text: &str,
        file: &Path,
        catch_all: bool,
        flavour: Flavour,
        plugins: &PluginRegistry,
    ) -> Result<Distiller, ConfigErrors> {
        // Merge keys are resolved by the loader, as PyYAML does; duplicate
        // keys' warnings are gathered by `LoadedConfig`.
        let (doc, _) = crate::yaml::load(text, file)?;
        let items = match &doc {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items.iter().collect(),
            other => {
                return Err(ConfigError::new(format!(
                    "event definitions must be a list of definitions, found {}",
                    show(other)
                ))
                .in_file(file)
                .into())
            }
        };
        let mut errors = Vec::new();
        let mut definitions = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            if let Some(d) = parse_definition(item, i, plugins, flavour, &mut errors) {
                definitions.push(d);
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors.into_iter().map(|e| e.in_file(file)).collect()));
        }
        let implicit_catch_all =
            (catch_all && !definitions.iter().any(|d| d.event_type.is_catch_all())).then(|| EventDefinition {
                event_type: EventTypeFilter::new(&["*"]).expect("'*' is a valid pattern"),
                traits: flavour.default_traits(),
                index: None,
            });
        Ok(Distiller { definitions, implicit_catch_all, flavour })
    }

    /// The rules it follows.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// Whether some trait uses a plugin whose calls may block (see
    /// [`TraitPlugin::blocking`]): distill off async runtime threads then.
    pub fn has_blocking_plugins(&self) -> bool {
        self.definitions.iter().flat_map(|d| &d.traits).any(|t| t.plugin.as_ref().is_some_and(Plugin::blocking))
    }

    /// The definitions from the file, in file order.
    pub fn definitions(&self) -> &[EventDefinition] {
        &self.definitions
    }

    /// The implicit catch-all definition, when one was added.
    pub fn implicit_catch_all(&self) -> Option<&EventDefinition> {
        self.implicit_catch_all.as_ref()
    }

    /// The definition used for `event_type`: the last-listed matching one, else
    /// the implicit catch-all, else none.
    pub fn definition_for(&self, event_type: &str) -> Option<&EventDefinition> {
        self.definitions.iter().rev().chain(self.implicit_catch_all.iter()).find(|d| d.event_type.matches(event_type))
    }

    /// Converts a notification to an event; `Ok(None)` when no definition
    /// matches its `event_type` (the notification is dropped).
    ///
    /// An oslo.messaging v2 envelope (`{"oslo.version": "2.0", "oslo.message":
    /// "<json>"}`) is unwrapped first. `event_type` and `message_id` are
    /// required. The event time is `timestamp`, else `_context_timestamp`;
    /// unlike the original, a notification with neither is an error rather than
    /// stamped with the current time, so distilling is deterministic.
    ///
    /// Traits named like the envelope keys (`message_id`, `event_type`,
    /// `timestamp`) are skipped: they never override the envelope.
    ///
    /// The ceilometer flavour follows [`ceilometer`]'s rules instead.
    pub fn to_event(&self, notification: &Json) -> Result<Option<Event>, DistillError> {
        if self.flavour == Flavour::Ceilometer {
            return ceilometer::to_event(self, notification);
        }
        let unwrapped;
        let mut n = notification;
        if let Some(obj) = n.as_object() {
            if obj.contains_key("oslo.message") || obj.contains_key("oslo.version") {
                let inner = obj.get("oslo.message").and_then(Json::as_str).ok_or_else(|| {
                    DistillError::BadEnvelope { reason: "\"oslo.message\" is missing or not a string".into() }
                })?;
                unwrapped = serde_json::from_str::<Json>(inner).map_err(|e| DistillError::BadEnvelope {
                    reason: format!("\"oslo.message\" is not valid JSON: {e}"),
                })?;
                n = &unwrapped;
            }
        }
        let obj = n.as_object().ok_or(DistillError::NotAnObject)?;
        let message_id = match obj.get("message_id") {
            None | Some(Json::Null) => return Err(DistillError::MissingKey { key: "message_id", message_id: None }),
            Some(Json::String(s)) => s.clone(),
            Some(Json::Number(x)) => x.to_string(),
            Some(other) => {
                return Err(DistillError::InvalidKey {
                    key: "message_id",
                    reason: format!("must be a string, found {other}"),
                    message_id: None,
                })
            }
        };
        let m = || Some(message_id.clone());
        let event_type = match obj.get("event_type") {
            None | Some(Json::Null) => return Err(DistillError::MissingKey { key: "event_type", message_id: m() }),
            Some(Json::String(s)) => s.clone(),
            Some(other) => {
                return Err(DistillError::InvalidKey {
                    key: "event_type",
                    reason: format!("must be a string, found {other}"),
                    message_id: m(),
                })
            }
        };
        let Some(def) = self.definition_for(&event_type) else {
            tracing::debug!(event_type, message_id, "no event definition matches; notification dropped");
            return Ok(None);
        };
        let mut when = None;
        for key in ["timestamp", "_context_timestamp"] {
            match obj.get(key) {
                None | Some(Json::Null) => continue,
                Some(Json::String(s)) => {
                    when = Some(parse_iso8601(s).ok_or_else(|| DistillError::InvalidKey {
                        key,
                        reason: format!("{s:?} is not an ISO-8601 date-time"),
                        message_id: m(),
                    })?);
                    break;
                }
                Some(other) => {
                    return Err(DistillError::InvalidKey {
                        key,
                        reason: format!("must be an ISO-8601 date-time string, found {other}"),
                        message_id: m(),
                    })
                }
            }
        }
        let when = when.ok_or_else(|| DistillError::MissingKey { key: "timestamp", message_id: m() })?;

        let mut traits = BTreeMap::new();
        for t in &def.traits {
            if ENVELOPE_KEYS.contains(&t.name.as_str()) {
                tracing::debug!(trait_name = t.name, "trait named like an envelope key skipped");
                continue;
            }
            let Some(raw) = raw_value(def, t, n, m, Plugin::apply)?.filter(|(v, _)| !v.is_null()) else { continue };
            let Some(value) = typed(def, t, raw, m, convert)? else { continue };
            traits.insert(t.name.clone(), value);
        }
        Event::new(message_id.clone(), event_type, when, traits)
            .map(Some)
            .map_err(|source| DistillError::InvalidEvent { source, message_id: m() })
    }
}

/// A trait's raw value, found by its paths and made by its plugin (run by
/// `apply`, as the flavour runs plugins), with the path it came from (the
/// first match's; the trait's first path when a plugin made it from none);
/// `None` when there is nothing.
fn raw_value(
    def: &EventDefinition,
    t: &TraitDefinition,
    doc: &Json,
    message_id: impl Fn() -> Option<String> + Copy,
    apply: impl Fn(&Plugin, &[FieldMatch<'_>]) -> Result<Option<Json>, String>,
) -> Result<Option<(Json, String)>, DistillError> {
    let matches = find_all(def, t, doc, message_id)?;
    let Some(p) = &t.plugin else {
        return Ok(matches.first().map(|fm| (fm.value.clone().into_owned(), fm.path.clone())));
    };
    let path = matches
        .first()
        .map(|fm| fm.path.clone())
        .or_else(|| t.fields.first().map(|f| f.source().to_string()))
        .unwrap_or_default();
    match apply(p, &matches) {
        Ok(v) => Ok(v.map(|v| (v, path))),
        Err(reason) => Err(DistillError::Plugin {
            definition: def.describe(),
            trait_name: t.name.clone(),
            plugin: p.name().to_string(),
            reason,
            message_id: message_id(),
        }),
    }
}

/// `raw` (found at `path`) as a value of the trait's type, converted by the
/// flavour's `convert`; `None` for `''` and a type other than text; an error
/// naming definition, trait and path when it does not convert.
fn typed(
    def: &EventDefinition,
    t: &TraitDefinition,
    (raw, path): (Json, String),
    message_id: impl Fn() -> Option<String>,
    convert: fn(&Json, TraitType) -> Option<TraitValue>,
) -> Result<Option<TraitValue>, DistillError> {
    if t.trait_type != TraitType::Text && raw.as_str() == Some("") {
        return Ok(None);
    }
    convert(&raw, t.trait_type).map(Some).ok_or_else(|| DistillError::Conversion {
        definition: def.describe(),
        trait_name: t.name.clone(),
        path,
        value: raw.to_string(),
        to: t.trait_type,
        message_id: message_id(),
    })
}

/// The non-null matches of a trait's paths, in order; an error where a path's
/// evaluation raises in Python.
fn find_all<'a>(
    def: &EventDefinition,
    t: &TraitDefinition,
    doc: &'a Json,
    message_id: impl Fn() -> Option<String>,
) -> Result<Vec<FieldMatch<'a>>, DistillError> {
    let mut out = Vec::new();
    for f in &t.fields {
        let found = f.try_find(doc).map_err(|e| DistillError::Path {
            definition: def.describe(),
            trait_name: t.name.clone(),
            path: f.source().to_string(),
            reason: e.to_string(),
            message_id: message_id(),
        })?;
        out.extend(found.into_iter().filter(|fm| !fm.value.is_null()));
    }
    Ok(out)
}

/// Converts a trait's value as StackDistiller's `Trait.convert_value` does:
/// Python's `str()`, `int()`, `float()` (see [`python`]); ISO-8601 for
/// datetimes. `None` when Python would raise (or the float is not finite).
fn convert(raw: &Json, to: TraitType) -> Option<TraitValue> {
    match to {
        TraitType::Text | TraitType::NoneType => Some(TraitValue::String(python::py_str(raw))),
        TraitType::Int => python::py_int(raw).map(TraitValue::Int),
        TraitType::Float => python::py_float(raw).filter(|f| f.is_finite()).map(TraitValue::Float),
        TraitType::Datetime => raw.as_str().and_then(parse_iso8601).map(TraitValue::Datetime),
    }
}

/// Parses a notification date-time as the original StackDistiller does
/// (Python's `iso8601` 2.1.0, then UTC; no zone means UTC): see
/// [`crate::iso8601`]. Examples: `2013-08-08 21:06:37.803826`,
/// `2014-08-01T20:04:00Z`, `2014-08-01T20:04:00.123+02:00`, and glance's
/// `2015-09-25 1541:14.634363` (15:41:14.634363).
pub fn parse_iso8601(s: &str) -> Option<DateTime<Utc>> {
    crate::iso8601::parse(s)
}

/// A definition as written (serde); [`parse_definition`] validates it.
#[derive(Debug, Deserialize)]
struct RawDefinition {
    #[serde(default, deserialize_with = "present")]
    event_type: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    traits: Option<Value>,
    #[serde(flatten)]
    unknown: Mapping,
}

/// A trait definition as written (serde); [`parse_trait`] validates it.
#[derive(Debug, Deserialize)]
struct RawTrait {
    #[serde(default, deserialize_with = "present")]
    fields: Option<Value>,
    #[serde(default, rename = "type")]
    trait_type: Option<Raw<String>>,
    #[serde(default, deserialize_with = "present")]
    plugin: Option<Value>,
    #[serde(flatten)]
    unknown: Mapping,
}

fn parse_definition(
    v: &Value,
    index: usize,
    plugins: &PluginRegistry,
    flavour: Flavour,
    errors: &mut Vec<ConfigError>,
) -> Option<EventDefinition> {
    let mut ctx = format!("event definition #{}", index + 1);
    let (raw, odd_keys): (RawDefinition, _) = match read_map(v) {
        Ok(read) => read,
        Err(found) => {
            errors.push(
                ConfigError::new(format!("a definition must be a map with event_type and traits, found {found}"))
                    .context(ctx),
            );
            return None;
        }
    };
    let before = errors.len();
    let mut filter = None;
    match &raw.event_type {
        None => errors.push(ConfigError::new("missing required key event_type").context(ctx.clone())),
        Some(et) => match EventTypeFilter::from_yaml(et) {
            Ok(f) => {
                ctx = format!("{ctx} (event_type {:?})", describe_filter(&f));
                filter = Some(f);
            }
            Err(e) => errors.push(ConfigError::new(e).context(ctx.clone()).key("event_type")),
        },
    }
    for k in raw.unknown.keys().chain(&odd_keys) {
        if flavour == Flavour::Ceilometer {
            tracing::warn!(definition = ctx, key = %show(k), "unknown definition key ignored");
            continue;
        }
        errors.push(
            ConfigError::new(format!("unknown key {} (expected {DEFINITION_KEYS})", show(k))).context(ctx.clone()),
        );
    }
    let mut traits: Vec<TraitDefinition> = Vec::new();
    match &raw.traits {
        None => errors.push(ConfigError::new("missing required key traits").context(ctx.clone())),
        Some(Value::Null) => {}
        Some(Value::Mapping(tm)) => {
            for (name, tv) in tm {
                let Some(name) = name.as_str() else {
                    errors.push(
                        ConfigError::new(format!("trait names must be strings, found {}", show(name)))
                            .context(ctx.clone())
                            .key("traits"),
                    );
                    continue;
                };
                match parse_trait(name, tv, plugins, flavour) {
                    Ok(t) => traits.push(t),
                    Err(es) => errors.extend(es.into_iter().map(|e| e.context(ctx.clone()))),
                }
            }
        }
        Some(other) => errors.push(
            ConfigError::new(format!("traits must be a map of trait name to trait definition, found {}", show(other)))
                .context(ctx.clone())
                .key("traits"),
        ),
    }
    if errors.len() > before {
        return None;
    }
    let all: Vec<TraitDefinition> = match flavour {
        Flavour::StackDistiller => {
            let mut all: Vec<TraitDefinition> =
                default_traits().into_iter().filter(|d| !traits.iter().any(|t| t.name == d.name)).collect();
            all.extend(traits);
            all
        }
        // A Python dict: a trait named like a default one takes its place.
        Flavour::Ceilometer => {
            let mut all = flavour.default_traits();
            for t in traits {
                match all.iter_mut().find(|d| d.name == t.name) {
                    Some(slot) => *slot = t,
                    None => all.push(t),
                }
            }
            all
        }
    };
    Some(EventDefinition { event_type: filter?, traits: all, index: Some(index) })
}

fn parse_trait(
    name: &str,
    v: &Value,
    plugins: &PluginRegistry,
    flavour: Flavour,
) -> Result<TraitDefinition, Vec<ConfigError>> {
    let base = format!("traits.{name}");
    // Ceilometer's short form: `name: <path or list of paths>`, a text trait.
    let short;
    let v = match v {
        Value::String(_) | Value::Sequence(_) | Value::Number(_) | Value::Bool(_) if flavour == Flavour::Ceilometer => {
            let mut m = Mapping::new();
            m.insert("fields".into(), v.clone());
            short = Value::Mapping(m);
            &short
        }
        _ => v,
    };
    let (raw, odd_keys): (RawTrait, _) = read_map(v).map_err(|found| {
        vec![ConfigError::new(format!("a trait definition must be a map with {TRAIT_KEYS}, found {found}"))
            .key(base.clone())]
    })?;
    let mut errors = Vec::new();
    let mut fields = Vec::new();
    let mut plugin = None;
    let mut parse_path = |p: &str, key: String, errors: &mut Vec<ConfigError>| match FieldPath::parse(p) {
        // StackDistiller's jsonpath-rw has none of jsonpath-rw-ext's additions.
        Ok(fp) if flavour == Flavour::StackDistiller && fp.ext_feature().is_some() => errors.push(
            ConfigError::new(format!(
                "field path {p:?} uses {}, a jsonpath-rw-ext addition StackDistiller does not have \
                 (`distiller: ceilometer` reads it)",
                fp.ext_feature().unwrap_or_default()
            ))
            .key(key),
        ),
        Ok(fp) => fields.push(fp),
        Err(e) => errors.push(ConfigError::new(e.to_string()).key(key)),
    };
    let mut constant = None;
    match &raw.fields {
        None => errors.push(ConfigError::new("missing required key fields").key(base.clone())),
        // Ceilometer: `isinstance(fields, int)` (booleans included) is a constant.
        Some(Value::Bool(b)) if flavour == Flavour::Ceilometer => constant = Some(Json::Bool(*b)),
        Some(Value::Number(n)) if flavour == Flavour::Ceilometer && (n.is_i64() || n.is_u64()) => {
            constant = serde_json::to_value(n).ok()
        }
        Some(Value::String(s)) => parse_path(s, format!("{base}.fields"), &mut errors),
        Some(Value::Sequence(items)) if !items.is_empty() => {
            for (i, it) in items.iter().enumerate() {
                match it.as_str() {
                    Some(s) => parse_path(s, format!("{base}.fields[{i}]"), &mut errors),
                    None => errors.push(
                        ConfigError::new(format!("a field path must be a string, found {}", show(it)))
                            .key(format!("{base}.fields[{i}]")),
                    ),
                }
            }
        }
        Some(other) => errors.push(
            ConfigError::new(format!("fields must be a path or a non-empty list of paths, found {}", show(other)))
                .key(format!("{base}.fields")),
        ),
    }
    let trait_type = match raw.trait_type {
        None => TraitType::Text,
        Some(t) => match t
            .parsed
            .as_deref()
            .map(|n| match flavour {
                // `getattr(Trait, name.upper() + '_TYPE')`
                Flavour::Ceilometer => n.to_ascii_lowercase(),
                Flavour::StackDistiller => n.to_string(),
            })
            .as_deref()
        {
            Some("text") => TraitType::Text,
            Some("int") => TraitType::Int,
            Some("float") => TraitType::Float,
            Some("datetime") => TraitType::Datetime,
            Some("none") if flavour == Flavour::Ceilometer => TraitType::NoneType,
            _ => {
                errors.push(
                    ConfigError::new(format!(
                        "unknown trait type {} (expected text, int, float, datetime)",
                        show(&t.found)
                    ))
                    .key(format!("{base}.type")),
                );
                TraitType::Text
            }
        },
    };
    if let Some(p) = &raw.plugin {
        match Plugin::from_yaml_flavoured(p, &format!("{base}.plugin"), plugins, flavour) {
            Ok(p) => plugin = Some(p),
            Err(mut es) => errors.append(&mut es),
        }
    }
    for k in raw.unknown.keys().chain(&odd_keys) {
        if flavour == Flavour::Ceilometer {
            tracing::warn!(key = base, unknown = %show(k), "unknown trait key ignored");
            continue;
        }
        errors.push(ConfigError::new(format!("unknown key {} (expected {TRAIT_KEYS})", show(k))).key(base.clone()));
    }
    if errors.is_empty() {
        Ok(TraitDefinition { name: name.to_string(), fields, trait_type, plugin, constant })
    } else {
        Err(errors)
    }
}

impl fmt::Display for TraitType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests;
