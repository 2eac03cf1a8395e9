//! Configuration errors that say where: file, line, definition and key, and
//! the validation every config file goes through: read with serde into
//! structs of [`Raw`] values, then checked into settings with [`Checked`],
//! which names the key and what was found. Pipeline handlers validate their
//! `params` with the same two (see `winchester::pipeline::params`).

use std::fmt;
use std::path::PathBuf;

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when the problem is in one.
    pub file: Option<PathBuf>,
    /// 1-based line, when known (YAML syntax errors).
    pub line: Option<usize>,
    /// The definition it is in, e.g. `trigger "test_trigger"` or `pipeline "p"`.
    pub context: Option<String>,
    /// The key path inside the definition, e.g. `fire_criteria[0].traits.memory_mb`.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A problem with just a message.
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError { file: None, line: None, context: None, key: None, message: message.into() }
    }
    /// Sets the key path.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
    /// Sets the definition context.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }
    /// Sets the file, unless one is already set.
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        if self.file.is_none() {
            self.file = Some(file.into());
        }
        self
    }
    /// Builds an error from a YAML parse failure, with its line.
    pub fn yaml(file: impl Into<PathBuf>, err: &serde_yaml::Error) -> ConfigError {
        let mut e = ConfigError::new(format!("invalid YAML: {err}")).in_file(file);
        e.line = err.location().map(|l| l.line());
        e
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": ")?;
        }
        if let Some(c) = &self.context {
            write!(f, "{c}: ")?;
        }
        if let Some(k) = &self.key {
            write!(f, "key {k:?}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found while loading a configuration; nothing starts with any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} configuration error{}", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Renders a YAML scalar or structure briefly for messages: a string quoted,
/// anything else as YAML on one line.
pub fn show(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => format!("{s:?}"),
        other => serde_yaml::to_string(other).map(|s| s.trim().replace('\n', " ")).unwrap_or_else(|_| "?".into()),
    }
}

/// A value as a config file wrote it: parsed into the type it should have when
/// it fits, and always the YAML found, so validation can say what it found
/// where (`key "x": must be a string, found 5`). Config files (and pipeline
/// handlers' `params`) are first read into serde structs of `Option<Raw<T>>`
/// fields, then validated into the settings with [`Checked`].
#[derive(Debug, Clone, PartialEq)]
pub struct Raw<T> {
    /// The value, when the YAML has the right shape.
    pub parsed: Option<T>,
    /// The YAML as written.
    pub found: serde_yaml::Value,
}

impl<'de, T: serde::de::DeserializeOwned> serde::Deserialize<'de> for Raw<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_yaml::Value::deserialize(d).map(Raw::from)
    }
}

/// A value found inside one already read (e.g. an entry of a `Raw<Mapping>`).
impl<T: serde::de::DeserializeOwned> From<serde_yaml::Value> for Raw<T> {
    fn from(found: serde_yaml::Value) -> Self {
        Raw { parsed: serde_yaml::from_value(found.clone()).ok(), found }
    }
}

impl<T> Raw<T> {
    /// The value if it parsed and passes `ok`, else the error `{expected},
    /// found {what was written}`.
    pub fn expect(self, expected: &str, ok: impl FnOnce(&T) -> bool) -> Result<T, ConfigError> {
        match self.parsed {
            Some(t) if ok(&t) => Ok(t),
            _ => Err(ConfigError::new(format!("{expected}, found {}", show(&self.found)))),
        }
    }
}

/// Reads a YAML map into its serde struct `T` (whose `#[serde(flatten)]`
/// mapping gathers unknown keys). Keys that are not strings cannot name a
/// field, so they are taken out first and returned apart, as unknown keys.
/// `Err` with the YAML found when `v` is not a map.
pub(crate) fn read_map<T: serde::de::DeserializeOwned>(
    v: &serde_yaml::Value,
) -> Result<(T, Vec<serde_yaml::Value>), String> {
    let serde_yaml::Value::Mapping(m) = v else { return Err(show(v)) };
    let (named, odd): (serde_yaml::Mapping, serde_yaml::Mapping) =
        m.clone().into_iter().partition(|(k, _)| k.is_string());
    let t = serde_yaml::from_value(serde_yaml::Value::Mapping(named)).map_err(|e| e.to_string())?;
    Ok((t, odd.into_iter().map(|(k, _)| k).collect()))
}

/// For `#[serde(default, deserialize_with = "present")]`: a key that is
/// there, even with an empty (null) value, is `Some`.
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_yaml::Value>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

/// For `#[serde(default, deserialize_with = "present_raw")]`: a [`Raw`] that
/// is there, even empty (null), is `Some`, so validation can name it.
pub(crate) fn present_raw<'de, D, T>(d: D) -> Result<Option<Raw<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    serde::Deserialize::deserialize(d).map(Some)
}

/// Collects the errors of validating one config file (or section, or a
/// handler's params), each under its key. Each getter returns the value when
/// it fits and records the error (`{expected}, found {what was written}`)
/// when it does not, so validation goes on and every problem is reported.
#[derive(Debug, Default)]
pub struct Checked(pub Vec<ConfigError>);

impl Checked {
    /// `raw`'s value if it fits and passes `ok`; `None` when absent, or (with
    /// the error `{expected}, found …` under `key`) when it does not.
    pub fn get<T>(&mut self, key: &str, raw: Option<Raw<T>>, expected: &str, ok: impl FnOnce(&T) -> bool) -> Option<T> {
        match raw?.expect(expected, ok) {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e.key(key));
                None
            }
        }
    }

    /// A string setting.
    pub fn string(&mut self, key: &str, raw: Option<Raw<String>>) -> Option<String> {
        self.get(key, raw, "must be a string", |_| true)
    }

    /// A true/false setting, `default` when absent or wrong.
    pub fn boolean(&mut self, key: &str, raw: Option<Raw<bool>>, default: bool) -> bool {
        self.get(key, raw, "must be true or false", |_| true).unwrap_or(default)
    }

    /// One string or a list of strings (`expected` names both); each entry
    /// that is not a string is an error of its own.
    pub fn strings<T: From<String>>(&mut self, key: &str, raw: Option<Raw<Strings>>, expected: &str) -> Option<Vec<T>> {
        Some(match self.get(key, raw, expected, |_| true)? {
            Strings::One(s) => vec![s.into()],
            Strings::Many(items) => self.entries(key, items),
        })
    }

    /// A list of strings (`expected` names it; one string alone is not a
    /// list); each entry that is not a string is an error of its own.
    pub fn string_list<T: From<String>>(
        &mut self,
        key: &str,
        raw: Option<Raw<Vec<Raw<String>>>>,
        expected: &str,
    ) -> Option<Vec<T>> {
        let items = self.get(key, raw, expected, |_| true)?;
        Some(self.entries(key, items))
    }

    /// The entries of a list of strings that are strings; an error for each other.
    fn entries<T: From<String>>(&mut self, key: &str, items: Vec<Raw<String>>) -> Vec<T> {
        items
            .into_iter()
            .filter_map(|i| self.get(key, Some(i), "entries must be strings", |_| true))
            .map(T::from)
            .collect()
    }

    /// An error under `key`.
    pub fn push(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(ConfigError::new(message).key(key));
    }
}

/// One string or a list of them, as written (see [`Checked::strings`]).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum Strings {
    /// `key: value`.
    One(String),
    /// `key: [a, b]`.
    Many(Vec<Raw<String>>),
}

/// Warnings for keys nobody reads, under `prefix` (`""` or `"section."`).
pub(crate) fn unknown_keys<'a>(
    unknown: &'a serde_yaml::Mapping,
    prefix: &'a str,
) -> impl Iterator<Item = ConfigError> + 'a {
    unknown
        .keys()
        .map(move |k| ConfigError::new("unknown key, ignored").key(format!("{prefix}{}", show(k).trim_matches('"'))))
}
