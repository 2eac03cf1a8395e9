//! Handler `params`: how a handler reads its YAML map from `pipelines.yaml`,
//! and [`HandlerConfigError`], why a handler could not be built.
//!
//! A handler declares its params as a serde struct of `Option<Raw<T>>` fields
//! (the configuration's [`Raw`]: the value parsed into the type it should
//! have when it fits, and always the YAML found), reads them with [`read`]
//! (a param that is not a field of the struct is an unknown param) and
//! validates them with the configuration's [`Checked`], then [`finish`]:
//!
//! ```
//! use serde::Deserialize;
//! use winchester::pipeline::params::{self, Checked, HandlerConfigError, Raw};
//!
//! #[derive(Deserialize)]
//! struct EchoParams {
//!     greeting: Option<Raw<String>>,
//!     times: Option<Raw<u64>>,
//! }
//!
//! fn echo(params: &serde_yaml::Mapping) -> Result<(String, u64), HandlerConfigError> {
//!     let p: EchoParams = params::read(params)?;
//!     let greeting = params::require("greeting", p.greeting, "must be a string", |_| true)?;
//!     let mut c = Checked::default();
//!     let times = c.get("times", p.times, "must be an integer from 1 to 10", |n| (1..=10).contains(n));
//!     params::finish(c)?;
//!     Ok((greeting, times.unwrap_or(1)))
//! }
//!
//! let p = |y: &str| serde_yaml::from_str(y).unwrap();
//! assert_eq!(echo(&p("greeting: hi")).unwrap(), ("hi".to_string(), 1));
//! assert_eq!(
//!     echo(&p("greeting: hi\ntimes: lots")).unwrap_err().to_string(),
//!     "param \"times\" must be an integer from 1 to 10, found \"lots\""
//! );
//! assert_eq!(
//!     echo(&p("greeting: hi\ntime: 2")).unwrap_err().to_string(),
//!     "unknown param \"time\"; expected greeting, times"
//! );
//! ```
//!
//! The error names the param; the runner adds the pipeline and the handler
//! (`pipelines.yaml: pipeline "notify": key "[1] (webhook)": param "timeout"
//! must be ...`).

use serde::de::{DeserializeOwned, Visitor};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
pub use winchester_core::config_error::{show, Checked, Raw};
use winchester_core::ConfigError;

/// Why a handler could not be built from its type and `params`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerConfigError {
    /// No handler type (nor loadable class) of this name.
    #[error("unknown handler type {0:?}")]
    UnknownType(String),
    /// A param the handler does not take.
    #[error("unknown param {name}; {}", expected(known))]
    UnknownParam {
        /// The param as written (quoted when a string).
        name: String,
        /// The params the handler takes.
        known: &'static [&'static str],
    },
    /// A required param is absent (or empty).
    #[error("missing required param {0:?}")]
    Missing(String),
    /// A param has a value the handler cannot use.
    #[error("param {key:?} {message}")]
    Invalid {
        /// The param (with a path inside it, e.g. `headers.X-Api-Key`, `command[1]`).
        key: String,
        /// What is wrong, e.g. `must be a number of seconds ..., found "abc"`.
        message: String,
    },
    /// Anything else: a class that cannot be loaded, a registered factory's own reason.
    #[error("{0}")]
    Other(String),
    /// Several params are wrong: each error, in the order found (see [`finish`]).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<HandlerConfigError>),
}

fn expected(known: &[&str]) -> String {
    if known.is_empty() {
        "this handler takes none".into()
    } else {
        format!("expected {}", known.join(", "))
    }
}

impl HandlerConfigError {
    /// A param with a value the handler cannot use.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> HandlerConfigError {
        HandlerConfigError::Invalid { key: key.into(), message: message.into() }
    }

    /// The param at fault, when one is.
    pub fn key(&self) -> Option<&str> {
        match self {
            HandlerConfigError::Missing(k) | HandlerConfigError::Invalid { key: k, .. } => Some(k),
            _ => None,
        }
    }

    /// Each error: those of [`HandlerConfigError::Several`], else this one.
    pub fn each(&self) -> &[HandlerConfigError] {
        match self {
            HandlerConfigError::Several(all) => all,
            one => std::slice::from_ref(one),
        }
    }
}

impl From<String> for HandlerConfigError {
    fn from(reason: String) -> Self {
        HandlerConfigError::Other(reason)
    }
}

impl From<&str> for HandlerConfigError {
    fn from(reason: &str) -> Self {
        HandlerConfigError::Other(reason.to_string())
    }
}

/// A [`Checked`] error: under its key, an invalid param.
impl From<ConfigError> for HandlerConfigError {
    fn from(e: ConfigError) -> Self {
        match e.key {
            Some(key) => HandlerConfigError::Invalid { key, message: e.message },
            None => HandlerConfigError::Other(e.message),
        }
    }
}

/// Reads `params` into the params struct `P` (serde). A param that is not
/// one of `P`'s fields is [`HandlerConfigError::UnknownParam`], listing the
/// fields. `P` is a plain struct (no `flatten`) of `Option<Raw<T>>` fields,
/// so reading it fails on nothing else: values are checked afterwards.
pub fn read<P: DeserializeOwned>(params: &Mapping) -> Result<P, HandlerConfigError> {
    let known = field_names::<P>();
    if let Some(k) = params.keys().find(|k| !k.as_str().is_some_and(|k| known.contains(&k))) {
        return Err(HandlerConfigError::UnknownParam { name: show(k), known });
    }
    serde_yaml::from_value(Value::Mapping(params.clone())).map_err(|e| HandlerConfigError::Other(e.to_string()))
}

/// For handlers that take no params: any param is unknown.
pub fn none(params: &Mapping) -> Result<(), HandlerConfigError> {
    #[derive(Deserialize)]
    struct NoParams {}
    read::<NoParams>(params).map(|NoParams {}| ())
}

/// A required param: [`HandlerConfigError::Missing`] when absent (or null),
/// invalid when it does not fit or pass `ok` (see [`Raw::expect`]).
pub fn require<T>(
    key: &str,
    raw: Option<Raw<T>>,
    expected: &str,
    ok: impl FnOnce(&T) -> bool,
) -> Result<T, HandlerConfigError> {
    let raw = raw.ok_or_else(|| HandlerConfigError::Missing(key.to_string()))?;
    raw.expect(expected, ok).map_err(|e| HandlerConfigError::invalid(key, e.message))
}

/// The end of a validation: the error [`Checked`] recorded, if one, or
/// [`HandlerConfigError::Several`] with each, if more.
pub fn finish(checked: Checked) -> Result<(), HandlerConfigError> {
    let mut errors: Vec<HandlerConfigError> = checked.0.into_iter().map(Into::into).collect();
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(HandlerConfigError::Several(errors)),
    }
}

/// A scalar param value used as text (a string, a number or a boolean, as
/// YAML reads `5` or `true` unquoted).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A string.
    Text(String),
    /// A number.
    Number(serde_yaml::Number),
    /// `true` or `false`.
    Bool(bool),
}

impl Scalar {
    /// The value as text (`5`, `true`).
    pub fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// The field names of the struct `P`, as its derived `Deserialize` announces
/// them (empty for anything else).
fn field_names<P: DeserializeOwned>() -> &'static [&'static str] {
    match P::deserialize(FieldNames) {
        Err(Fields(names)) => names,
        Ok(_) => &[],
    }
}

/// A deserializer that answers every request with the field names a struct
/// asks for, as its "error".
struct FieldNames;

#[derive(Debug)]
struct Fields(&'static [&'static str]);

impl std::fmt::Display for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fields {:?}", self.0)
    }
}

impl std::error::Error for Fields {}

impl serde::de::Error for Fields {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Fields(&[])
    }
}

impl<'de> serde::Deserializer<'de> for FieldNames {
    type Error = Fields;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
        Err(Fields(&[]))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Fields> {
        Err(Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Two {
        a: Option<Raw<u64>>,
        b: Option<Raw<String>>,
    }

    fn map(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn reads_known_params_and_names_unknown_ones() {
        let p: Two = read(&map("a: 5\nb: ~")).unwrap();
        assert_eq!(p.a.and_then(|r| r.parsed), Some(5));
        assert!(p.b.is_none(), "null is absent");
        let e = read::<Two>(&map("a: 1\nc: 2")).unwrap_err();
        assert_eq!(e, HandlerConfigError::UnknownParam { name: "\"c\"".into(), known: &["a", "b"] });
        assert_eq!(e.to_string(), "unknown param \"c\"; expected a, b");
        assert_eq!(read::<Two>(&map("5: x")).unwrap_err().to_string(), "unknown param 5; expected a, b");
        assert_eq!(none(&map("x: 1")).unwrap_err().to_string(), "unknown param \"x\"; this handler takes none");
        assert!(none(&Mapping::new()).is_ok());
    }

    #[test]
    fn required_and_checked_errors_name_the_param() {
        let p: Two = read(&map("a: lots")).unwrap();
        assert_eq!(require("b", p.b, "must be a string", |_| true), Err(HandlerConfigError::Missing("b".into())));
        let e = require("a", p.a, "must be a count", |_| true).unwrap_err();
        assert_eq!(e.to_string(), "param \"a\" must be a count, found \"lots\"");
        assert_eq!(e.key(), Some("a"));
        let mut c = Checked::default();
        c.push("x", "is wrong");
        let one = finish(c).unwrap_err();
        assert_eq!(one, HandlerConfigError::invalid("x", "is wrong"));
        assert_eq!(one.each(), std::slice::from_ref(&one));
        let mut c = Checked::default();
        c.push("x", "is wrong");
        c.push("y", "is wrong too");
        let both = finish(c).unwrap_err();
        assert_eq!(both.to_string(), "param \"x\" is wrong; param \"y\" is wrong too");
        assert_eq!(both.each(), [one, HandlerConfigError::invalid("y", "is wrong too")]);
        assert_eq!(both.key(), None);
        assert_eq!(finish(Checked::default()), Ok(()));
    }

    #[test]
    fn scalars_as_text() {
        let s: Vec<Scalar> = serde_yaml::from_str("[a, 5, 1.5, true]").unwrap();
        assert_eq!(s.iter().map(Scalar::text).collect::<Vec<_>>(), ["a", "5", "1.5", "true"]);
    }
}
