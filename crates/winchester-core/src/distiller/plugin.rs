//! Trait plugins: the built-in `split` and `bitfield` (spec 9.3), ceilometer's
//! `timedelta` and `map`, and plugins the embedding program supplies
//! ([`TraitPlugin`], e.g. Python classes named in `distiller_trait_plugins`)
//! through a [`PluginRegistry`]. Each flavour's way of reading and running
//! them is here (`ceilometer_parse`, `ceilometer_apply` for the ceilometer
//! flavour), so the flavours depend on this module and not the reverse.

use super::path::{FieldMatch, FieldPath};
use super::{python, Flavour};
use crate::config_error::{show, ConfigError};
use serde_json::Value as Json;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A trait plugin supplied from outside the engine (the original's
/// `TraitPluginBase` interface).
pub trait TraitPlugin: Send + Sync + std::fmt::Debug {
    /// The trait's value from the `(path, value)` pairs that matched, in order
    /// (possibly none); `Ok(None)` or a JSON null: no value.
    fn trait_value(&self, matches: &[(String, Json)]) -> Result<Option<Json>, String>;

    /// Whether calls may block (take an interpreter lock, do I/O): the engine
    /// then distills off its async threads.
    fn blocking(&self) -> bool {
        true
    }
}

/// Builds a plugin from a trait's `parameters` (an empty map when there are none).
pub type PluginFactory =
    Arc<dyn Fn(&serde_json::Map<String, Json>) -> Result<Arc<dyn TraitPlugin>, String> + Send + Sync>;

/// Plugin name -> factory, for plugins beyond the built-ins; a name here
/// overrides a built-in of the same name.
#[derive(Clone, Default)]
pub struct PluginRegistry {
    factories: BTreeMap<String, PluginFactory>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

impl PluginRegistry {
    /// Registers (or replaces) plugin `name`.
    pub fn register(&mut self, name: impl Into<String>, factory: PluginFactory) -> &mut Self {
        self.factories.insert(name.into(), factory);
        self
    }

    /// Registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }
}

/// An external plugin instance; equal only to itself.
#[derive(Debug, Clone)]
pub struct ExternalPlugin(pub Arc<dyn TraitPlugin>);

impl PartialEq for ExternalPlugin {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A trait plugin: turns the matches of a trait's `fields` into one value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Plugin {
    /// `split`: splits the first match (as text) and keeps one segment (in the
    /// ceilometer flavour: the first match that has that segment).
    Split {
        /// Separator (`.` by default). Empty only in the ceilometer flavour, for
        /// `separator: null`: split on runs of whitespace.
        separator: String,
        /// Segment to keep (0 by default; negative counts from the end).
        segment: i64,
        /// Split at most this many times (`None`, the default: no limit).
        max_split: Option<usize>,
    },
    /// `timedelta` (ceilometer flavour): the absolute difference in seconds
    /// between exactly two date-time matches.
    Timedelta,
    /// `map` (ceilometer flavour): each match looked up in `values`, else `default`.
    Map {
        /// `values`: (key, mapped value) in file order; for a key written
        /// twice (or equal as Python compares them) the last one counts.
        /// Keys are case-folded when `case_sensitive` is false.
        values: Vec<(Json, Json)>,
        /// `default` (null by default: no value).
        default: Json,
        /// `case_sensitive` (true by default).
        case_sensitive: bool,
    },
    /// `bitfield`: an integer with a bit set for each flag whose path matched.
    Bitfield {
        /// Starting value (0 by default).
        initial_bitfield: i64,
        /// The flags, in file order.
        flags: Vec<BitFlag>,
    },
    /// A plugin from the [`PluginRegistry`].
    External {
        /// Its configuration name.
        name: String,
        /// The instance built from the trait's parameters.
        plugin: ExternalPlugin,
    },
}

/// One flag of the `bitfield` plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct BitFlag {
    /// Canonical path (see [`FieldPath::canonical`]) the flag looks for among the matches.
    pub path: String,
    /// Bit to set, 0..=63.
    pub bit: u32,
    /// When present, the matched value must equal this for the bit to be set.
    pub value: Option<Json>,
}

impl Plugin {
    /// The plugin's configuration name.
    pub fn name(&self) -> &str {
        match self {
            Plugin::Split { .. } => "split",
            Plugin::Bitfield { .. } => "bitfield",
            Plugin::Timedelta => "timedelta",
            Plugin::Map { .. } => "map",
            Plugin::External { name, .. } => name,
        }
    }

    /// Whether applying it may block (see [`TraitPlugin::blocking`]).
    pub fn blocking(&self) -> bool {
        matches!(self, Plugin::External { plugin, .. } if plugin.0.blocking())
    }

    /// Parses a `plugin:` value: a name, or `{name, parameters}`. `key` is the
    /// key path for messages (e.g. `traits.host.plugin`).
    pub fn from_yaml(v: &Value, key: &str) -> Result<Plugin, Vec<ConfigError>> {
        Plugin::from_yaml_with(v, key, &PluginRegistry::default())
    }

    /// [`from_yaml`](Self::from_yaml) with plugins beyond the built-ins.
    pub fn from_yaml_with(v: &Value, key: &str, registry: &PluginRegistry) -> Result<Plugin, Vec<ConfigError>> {
        Plugin::from_yaml_flavoured(v, key, registry, Flavour::StackDistiller)
    }

    /// [`from_yaml_with`](Self::from_yaml_with) for a distiller flavour: the
    /// ceilometer flavour has ceilometer's built-ins (`split`, `bitfield`,
    /// `timedelta`, `map`) with its parameters, and ignores unknown keys as
    /// ceilometer does (logging them).
    pub fn from_yaml_flavoured(
        v: &Value,
        key: &str,
        registry: &PluginRegistry,
        flavour: Flavour,
    ) -> Result<Plugin, Vec<ConfigError>> {
        let err = |k: &str, m: String| vec![ConfigError::new(m).key(k)];
        let (name, params) = match v {
            Value::String(s) => (s.as_str(), None),
            Value::Mapping(m) => {
                let mut name = None;
                let mut params = None;
                for (k, val) in m {
                    match k.as_str() {
                        Some("name") => match val.as_str() {
                            Some(n) => name = Some(n),
                            None => {
                                return Err(err(
                                    &format!("{key}.name"),
                                    format!("plugin name must be a string, found {}", show(val)),
                                ))
                            }
                        },
                        Some("parameters") => params = Some(val),
                        _ if flavour == Flavour::Ceilometer => {
                            tracing::warn!(key, plugin_key = %show(k), "unknown plugin key ignored");
                        }
                        _ => {
                            return Err(err(key, format!("unknown plugin key {} (expected name, parameters)", show(k))))
                        }
                    }
                }
                match name {
                    Some(n) => (n, params),
                    None => return Err(err(key, "plugin has no name".into())),
                }
            }
            other => {
                return Err(err(
                    key,
                    format!("plugin must be a name or a map with name and parameters, found {}", show(other)),
                ))
            }
        };
        let pkey = format!("{key}.parameters");
        if let Some(factory) = registry.factories.get(name) {
            let params = match params {
                None | Some(Value::Null) => Json::Object(Default::default()),
                Some(p) => serde_json::to_value(p)
                    .map_err(|e| err(&pkey, format!("plugin parameters are not plain data: {e}")))?,
            };
            let Json::Object(params) = params else {
                return Err(err(&pkey, format!("plugin parameters must be a map, found {params}")));
            };
            return factory(&params)
                .map(|p| Plugin::External { name: name.to_string(), plugin: ExternalPlugin(p) })
                .map_err(|m| err(key, format!("plugin {name:?}: {m}")));
        }
        let params: Vec<(&Value, &Value)> = match params {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(m)) => m.iter().collect(),
            Some(other) => return Err(err(&pkey, format!("plugin parameters must be a map, found {}", show(other)))),
        };
        if flavour == Flavour::Ceilometer {
            return ceilometer_parse(name, &params, &pkey)
                .unwrap_or_else(|| Err(err(key, unknown_plugin(name, registry, flavour))));
        }
        let mut errors = Vec::new();
        let plugin = match name {
            "split" => {
                let mut separator = ".".to_string();
                let mut segment = 0i64;
                let mut max_split = None;
                for (k, val) in params {
                    let here = format!("{pkey}.{}", k.as_str().unwrap_or("?"));
                    match k.as_str() {
                        Some("separator") => match val.as_str() {
                            Some(s) if !s.is_empty() => separator = s.to_string(),
                            _ => errors.push(
                                ConfigError::new(format!("separator must be a non-empty string, found {}", show(val)))
                                    .key(here),
                            ),
                        },
                        Some("segment") => match val.as_i64() {
                            Some(i) => segment = i,
                            None => errors.push(
                                ConfigError::new(format!("segment must be an integer, found {}", show(val))).key(here),
                            ),
                        },
                        Some("max_split") => match val.as_i64() {
                            Some(-1) => max_split = None,
                            Some(i) if i >= 0 => max_split = usize::try_from(i).ok(),
                            _ => errors.push(
                                ConfigError::new(format!(
                                    "max_split must be a non-negative integer (or -1 for no limit), found {}",
                                    show(val)
                                ))
                                .key(here),
                            ),
                        },
                        _ => errors.push(
                            ConfigError::new(format!(
                                "unknown split parameter {} (expected separator, segment, max_split)",
                                show(k)
                            ))
                            .key(pkey.clone()),
                        ),
                    }
                }
                Plugin::Split { separator, segment, max_split }
            }
            "bitfield" => {
                let mut initial_bitfield = 0i64;
                let mut flags = Vec::new();
                for (k, val) in params {
                    let here = format!("{pkey}.{}", k.as_str().unwrap_or("?"));
                    match k.as_str() {
                        Some("initial_bitfield") => match val.as_i64() {
                            Some(i) => initial_bitfield = i,
                            None => errors.push(
                                ConfigError::new(format!("initial_bitfield must be an integer, found {}", show(val)))
                                    .key(here),
                            ),
                        },
                        Some("flags") => match val {
                            Value::Null => {}
                            Value::Sequence(items) => {
                                for (i, item) in items.iter().enumerate() {
                                    match parse_flag(item, &format!("{here}[{i}]")) {
                                        Ok(f) => flags.push(f),
                                        Err(mut e) => errors.append(&mut e),
                                    }
                                }
                            }
                            other => errors.push(
                                ConfigError::new(format!("flags must be a list, found {}", show(other))).key(here),
                            ),
                        },
                        _ => errors.push(
                            ConfigError::new(format!(
                                "unknown bitfield parameter {} (expected initial_bitfield, flags)",
                                show(k)
                            ))
                            .key(pkey.clone()),
                        ),
                    }
                }
                Plugin::Bitfield { initial_bitfield, flags }
            }
            other => return Err(err(key, unknown_plugin(other, registry, flavour))),
        };
        if errors.is_empty() {
            Ok(plugin)
        } else {
            Err(errors)
        }
    }

    /// Runs the plugin on a trait's matches (possibly none); `Err` when an
    /// external plugin failed.
    pub fn apply(&self, matches: &[FieldMatch<'_>]) -> Result<Option<Json>, String> {
        match self {
            Plugin::External { plugin, .. } => {
                let pairs: Vec<(String, Json)> =
                    matches.iter().map(|m| (m.path.clone(), m.value.clone().into_owned())).collect();
                plugin.0.trait_value(&pairs)
            }
            Plugin::Timedelta | Plugin::Map { .. } => ceilometer_apply(self, matches),
            _ => Ok(self.apply_builtin(matches)),
        }
    }

    fn apply_builtin(&self, matches: &[FieldMatch<'_>]) -> Option<Json> {
        match self {
            Plugin::Split { separator, segment, max_split } => {
                let text = python::py_str(&matches.first()?.value);
                let sep = (!separator.is_empty()).then_some(separator.as_str());
                let parts = python::py_split(&text, sep, *max_split);
                python::py_index(&parts, *segment).map(|s| Json::String(s.to_string()))
            }
            Plugin::Bitfield { initial_bitfield, flags } => {
                Some(Json::from(bitfield(*initial_bitfield, flags, matches)))
            }
            Plugin::Timedelta | Plugin::Map { .. } | Plugin::External { .. } => None,
        }
    }
}

/// A trait plugin as ceilometer runs it: the plugin yields a list of values
/// (`split` and `map` one per match) and the first that is not null is the
/// trait's value.
pub(super) fn ceilometer_apply(p: &Plugin, matches: &[FieldMatch<'_>]) -> Result<Option<Json>, String> {
    match p {
        Plugin::Split { separator, segment, max_split } => Ok(matches.iter().find_map(|fm| {
            let text = python::py_str(&fm.value);
            let parts = python::py_split(&text, (!separator.is_empty()).then_some(separator.as_str()), *max_split);
            python::py_index(&parts, *segment).map(|s| Json::String(s.to_string()))
        })),
        Plugin::Bitfield { initial_bitfield, flags } => {
            Ok(Some(Json::from(bitfield(*initial_bitfield, flags, matches))))
        }
        Plugin::Timedelta => Ok(timedelta(matches)),
        Plugin::Map { values, default, case_sensitive } => {
            for fm in matches {
                let key =
                    if *case_sensitive { fm.value.clone().into_owned() } else { python::casefold_json(&fm.value) };
                if let Json::Array(_) | Json::Object(_) = key {
                    return Err(format!(
                        "unhashable type: '{}' (value of {})",
                        if key.is_array() { "list" } else { "dict" },
                        fm.path
                    ));
                }
                // A Python dict keeps the last of equal keys.
                let hit = values.iter().rev().find(|(k, _)| python::py_eq(k, &key)).map(|(_, v)| v);
                let v = match hit {
                    Some(v) => v,
                    None => {
                        tracing::warn!(value = %fm.value, path = fm.path, "map plugin: unknown value, using the default");
                        default
                    }
                };
                if !v.is_null() {
                    return Ok(Some(v.clone()));
                }
            }
            Ok(None)
        }
        Plugin::External { .. } => match p.apply(matches)? {
            Some(Json::Array(items)) => Ok(items.into_iter().find(|v| !v.is_null())),
            other => Ok(other),
        },
    }
}

/// `timedelta`: exactly two matches, both ISO-8601 date-times: the absolute
/// difference in seconds (a float); otherwise no value.
fn timedelta(matches: &[FieldMatch<'_>]) -> Option<Json> {
    let [start, end] = matches else {
        tracing::warn!("timedelta plugin needs exactly two timestamp fields");
        return None;
    };
    let parse = |fm: &FieldMatch<'_>| fm.value.as_str().and_then(crate::iso8601::parse);
    let (Some(s), Some(e)) = (parse(start), parse(end)) else {
        tracing::warn!(start = start.path, end = end.path, "timedelta plugin: both fields must be date-times");
        return None;
    };
    let micros = (e - s).num_microseconds()?;
    let secs = micros.unsigned_abs() as f64 / 1e6;
    serde_json::Number::from_f64(secs).map(Json::Number)
}

/// Parses a built-in plugin's parameters as ceilometer's plugin classes take
/// them; `None` when `name` is not one of them. Unknown parameters are
/// ignored (logged), as the classes' `**kw` does; values ceilometer would
/// only fail on when a notification arrives (a non-integer `segment`, an
/// empty separator, a flag without `path`) are errors here.
pub(super) fn ceilometer_parse(
    name: &str,
    params: &[(&serde_yaml::Value, &serde_yaml::Value)],
    pkey: &str,
) -> Option<Result<Plugin, Vec<ConfigError>>> {
    use serde_yaml::Value as Y;
    let mut errors = Vec::new();
    let mut flag_errors = Vec::new();
    let mut e = |k: &str, m: String| errors.push(ConfigError::new(m).key(format!("{pkey}.{k}")));
    let ignored = |k: &Y| tracing::warn!(plugin = name, parameter = %show(k), "unknown plugin parameter ignored");
    let plugin = match name {
        "split" => {
            let (mut separator, mut segment, mut max_split) = (".".to_string(), 0i64, None);
            for (k, v) in params {
                match k.as_str() {
                    Some("separator") => match v {
                        Y::Null => separator = String::new(),
                        Y::String(s) if !s.is_empty() => separator = s.clone(),
                        _ => e("separator", format!("separator must be a non-empty string or null, found {}", show(v))),
                    },
                    Some("segment") => match v.as_i64() {
                        Some(i) => segment = i,
                        None => e("segment", format!("segment must be an integer, found {}", show(v))),
                    },
                    Some("max_split") => match (v, v.as_i64()) {
                        (Y::Null, _) => max_split = None,
                        (_, Some(i)) => max_split = usize::try_from(i).ok(),
                        _ => e("max_split", format!("max_split must be an integer or null, found {}", show(v))),
                    },
                    _ => ignored(k),
                }
            }
            Plugin::Split { separator, segment, max_split }
        }
        "bitfield" => {
            let (mut initial_bitfield, mut flags) = (0i64, Vec::new());
            for (k, v) in params {
                match k.as_str() {
                    Some("initial_bitfield") => match v.as_i64() {
                        Some(i) => initial_bitfield = i,
                        None => {
                            e("initial_bitfield", format!("initial_bitfield must be an integer, found {}", show(v)))
                        }
                    },
                    Some("flags") => match v {
                        Y::Null => {}
                        Y::Sequence(items) => {
                            for (i, item) in items.iter().enumerate() {
                                match ceilometer_flag(item, &format!("{pkey}.flags[{i}]")) {
                                    Ok(f) => flags.push(f),
                                    Err(mut es) => flag_errors.append(&mut es),
                                }
                            }
                        }
                        other => e("flags", format!("flags must be a list, found {}", show(other))),
                    },
                    _ => ignored(k),
                }
            }
            Plugin::Bitfield { initial_bitfield, flags }
        }
        "timedelta" => {
            params.iter().for_each(|(k, _)| ignored(k));
            Plugin::Timedelta
        }
        "map" => {
            let (mut values, mut default, mut case_sensitive) = (None, Json::Null, true);
            for (k, v) in params {
                match k.as_str() {
                    Some("values") => values = Some(*v),
                    Some("default") => match serde_json::to_value(v) {
                        Ok(j) => default = j,
                        Err(err) => e("default", format!("default is not plain data: {err}")),
                    },
                    Some("case_sensitive") => case_sensitive = python::py_truthy(v),
                    _ => ignored(k),
                }
            }
            let mut pairs = Vec::new();
            match values {
                None | Some(Y::Null) => {
                    e("values", "the 'values' parameter is required for the map trait plugin".into())
                }
                Some(Y::Mapping(m)) if m.is_empty() => {
                    e("values", "the 'values' parameter is required for the map trait plugin".into())
                }
                Some(Y::Mapping(m)) => {
                    for (k, v) in m {
                        let key = match k {
                            Y::String(s) => Some(Json::String(s.clone())),
                            Y::Bool(b) => Some(Json::Bool(*b)),
                            Y::Number(_) => serde_json::to_value(k).ok(),
                            _ => None,
                        };
                        let Some(key) = key else {
                            e("values", format!("map keys must be strings, numbers or booleans, found {}", show(k)));
                            continue;
                        };
                        let key = if case_sensitive { key } else { python::casefold_json(&key) };
                        match serde_json::to_value(v) {
                            Ok(val) => pairs.push((key, val)),
                            Err(err) => e("values", format!("mapped value is not plain data: {err}")),
                        }
                    }
                }
                Some(other) => e("values", format!("the 'values' parameter needs to be a map, found {}", show(other))),
            }
            Plugin::Map { values: pairs, default, case_sensitive }
        }
        _ => return None,
    };
    errors.append(&mut flag_errors);
    Some(if errors.is_empty() { Ok(plugin) } else { Err(errors) })
}

/// A `bitfield` flag: as [`parse_flag`], but `bit` may be an
/// integer string (`int(flag['bit'])`) and unknown keys are ignored.
fn ceilometer_flag(v: &serde_yaml::Value, key: &str) -> Result<BitFlag, Vec<ConfigError>> {
    use serde_yaml::Value as Y;
    let Y::Mapping(m) = v else { return parse_flag(v, key) };
    let mut kept = serde_yaml::Mapping::new();
    for (k, val) in m {
        match k.as_str() {
            Some("bit") => {
                let bit = match val {
                    Y::String(s) => {
                        python::py_int(&Json::String(s.clone())).map(Y::from).unwrap_or_else(|| val.clone())
                    }
                    _ => val.clone(),
                };
                kept.insert(k.clone(), bit);
            }
            Some("path" | "value") => {
                kept.insert(k.clone(), val.clone());
            }
            _ => tracing::warn!(flag = key, key = %show(k), "unknown bitfield flag key ignored"),
        }
    }
    parse_flag(&Y::Mapping(kept), key)
}

/// `bitfield` (both flavours: StackDistiller and ceilometer run the same
/// code): flags compare with the last match of their path (a Python dict
/// of the matches), values with Python's `==` (`1 == 1.0 == true`).
fn bitfield(initial: i64, flags: &[BitFlag], matches: &[FieldMatch<'_>]) -> i64 {
    let mut bits = initial;
    for flag in flags {
        if let Some(m) = matches.iter().rev().find(|m| m.path == flag.path) {
            if flag.value.as_ref().is_none_or(|want| python::py_eq(want, &m.value)) {
                bits |= 1i64 << flag.bit;
            }
        }
    }
    bits
}

/// The message for a plugin name that is neither built in (for `flavour`) nor registered.
fn unknown_plugin(name: &str, registry: &PluginRegistry, flavour: Flavour) -> String {
    let builtin: &[&str] = match flavour {
        Flavour::StackDistiller => &["split", "bitfield"],
        Flavour::Ceilometer => &["split", "bitfield", "timedelta", "map"],
    };
    let mut known: Vec<&str> = builtin.to_vec();
    known.extend(registry.names().filter(|n| !builtin.contains(n)));
    format!("unknown plugin {name:?} (known plugins: {})", known.join(", "))
}

pub(super) fn parse_flag(v: &Value, key: &str) -> Result<BitFlag, Vec<ConfigError>> {
    let Value::Mapping(m) = v else {
        return Err(vec![ConfigError::new(format!(
            "a flag must be a map with path, bit and optional value, found {}",
            show(v)
        ))
        .key(key)]);
    };
    let mut errors = Vec::new();
    let mut path = None;
    let mut bit = None;
    let mut value = None;
    for (k, val) in m {
        let here = format!("{key}.{}", k.as_str().unwrap_or("?"));
        match k.as_str() {
            Some("path") => match val.as_str().map(FieldPath::parse) {
                Some(Ok(p)) if p.has_wildcard() => errors
                    .push(ConfigError::new(format!("flag path {:?} must not contain wildcards", p.source())).key(here)),
                Some(Ok(p)) => path = Some(p.canonical()),
                Some(Err(e)) => errors.push(ConfigError::new(e.to_string()).key(here)),
                None => {
                    errors.push(ConfigError::new(format!("flag path must be a string, found {}", show(val))).key(here))
                }
            },
            Some("bit") => match val.as_u64().filter(|b| *b < 64) {
                Some(b) => bit = Some(b as u32),
                None => errors.push(
                    ConfigError::new(format!("bit must be an integer from 0 to 63, found {}", show(val))).key(here),
                ),
            },
            Some("value") => match serde_json::to_value(val) {
                Ok(j) => value = Some(j),
                Err(e) => errors.push(ConfigError::new(format!("flag value is not plain data: {e}")).key(here)),
            },
            _ => errors
                .push(ConfigError::new(format!("unknown flag key {} (expected path, bit, value)", show(k))).key(key)),
        }
    }
    if path.is_none() && !m.contains_key("path") {
        errors.push(ConfigError::new("flag has no path").key(key));
    }
    if bit.is_none() && !m.contains_key("bit") {
        errors.push(ConfigError::new("flag has no bit").key(key));
    }
    match (path, bit) {
        (Some(path), Some(bit)) if errors.is_empty() => Ok(BitFlag { path, bit, value }),
        _ => Err(errors),
    }
}
