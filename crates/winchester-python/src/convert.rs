//! Values between Rust and Python: events, env values, plugin matches.

use chrono::{DateTime, NaiveDateTime, Utc};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use winchester_core::{Event, TraitValue};

/// Longest traceback kept in a reason.
const MAX_REASON_CHARS: usize = 4000;

/// An exception as its traceback text (the end of it, when very long).
pub(crate) fn describe(py: Python<'_>, err: &PyErr) -> String {
    let text = super::helpers(py)
        .and_then(|h| h.call_method1("format_exception", (err.value(py), err.traceback(py))))
        .and_then(|s| s.extract::<String>())
        .unwrap_or_else(|_| err.to_string());
    let n = text.chars().count();
    if n > MAX_REASON_CHARS {
        format!("...{}", text.chars().skip(n - MAX_REASON_CHARS).collect::<String>())
    } else {
        text
    }
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// JSON to the equivalent Python value.
pub(crate) fn json_to_py<'py>(py: Python<'py>, v: &Json) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Json::Null => py.None().into_bound(py),
        Json::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Json::String(s) => PyString::new(py, s).into_any(),
        Json::Array(items) => {
            let list = PyList::empty(py);
            for i in items {
                list.append(json_to_py(py, i)?)?;
            }
            list.into_any()
        }
        Json::Object(map) => json_map_to_py(py, map)?.into_any(),
    })
}

/// A JSON object to a Python dict.
pub(crate) fn json_map_to_py<'py>(
    py: Python<'py>,
    map: &serde_json::Map<String, Json>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in map {
        d.set_item(k, json_to_py(py, v)?)?;
    }
    Ok(d)
}

fn datetime_of(v: &Bound<'_, PyAny>) -> PyResult<Option<DateTime<Utc>>> {
    let h = super::helpers(v.py())?;
    if !h.call_method1("is_datetime", (v,))?.extract::<bool>()? {
        return Ok(None);
    }
    let naive: NaiveDateTime = h.call_method1("utc_naive", (v,))?.extract()?;
    Ok(Some(naive.and_utc()))
}

/// A Python value to JSON: None, bool, int, float, str, list/tuple, dict
/// with str keys; datetimes as RFC 3339 strings.
pub(crate) fn py_to_json(v: &Bound<'_, PyAny>) -> PyResult<Json> {
    if v.is_none() {
        return Ok(Json::Null);
    }
    if v.is_instance_of::<PyBool>() {
        return Ok(Json::Bool(v.extract()?));
    }
    if v.is_instance_of::<PyInt>() {
        if let Ok(i) = v.extract::<i64>() {
            return Ok(Json::from(i));
        }
        return Ok(Json::from(v.extract::<u64>()?));
    }
    if v.is_instance_of::<PyFloat>() {
        let f: f64 = v.extract()?;
        return serde_json::Number::from_f64(f)
            .map(Json::Number)
            .ok_or_else(|| PyTypeError::new_err(format!("{f} is not a finite number")));
    }
    if v.is_instance_of::<PyString>() {
        return Ok(Json::String(v.extract()?));
    }
    if let Some(d) = datetime_of(v)? {
        return Ok(Json::String(winchester_core::event::format_datetime(&d)));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for item in v.try_iter()? {
            out.push(py_to_json(&item?)?);
        }
        return Ok(Json::Array(out));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut out = serde_json::Map::new();
        for (k, val) in d.iter() {
            let key: String = k.extract().map_err(|_| PyTypeError::new_err("dict keys must be strings"))?;
            out.insert(key, py_to_json(&val)?);
        }
        return Ok(Json::Object(out));
    }
    Err(PyTypeError::new_err(format!("cannot convert a {} to plain data", type_name(v))))
}

fn trait_to_py<'py>(py: Python<'py>, v: &TraitValue) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        TraitValue::String(s) => PyString::new(py, s).into_any(),
        TraitValue::Int(i) => i.into_pyobject(py)?.into_any(),
        TraitValue::Float(f) => f.into_pyobject(py)?.into_any(),
        TraitValue::Datetime(d) => d.into_pyobject(py)?.into_any(),
        TraitValue::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
    })
}

/// An event as the dict the original gave handlers: `message_id`,
/// `event_type`, `timestamp` (an aware datetime) and the traits.
pub(crate) fn event_to_py<'py>(py: Python<'py>, e: &Event) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("message_id", &e.message_id)?;
    d.set_item("event_type", &e.event_type)?;
    d.set_item("timestamp", e.timestamp.into_pyobject(py)?)?;
    for (k, v) in &e.traits {
        d.set_item(k, trait_to_py(py, v)?)?;
    }
    Ok(d)
}

/// A dict returned by a handler as an event. `None` values are dropped;
/// datetimes without a zone are taken as UTC.
pub(crate) fn py_to_event(v: &Bound<'_, PyAny>, position: usize) -> Result<Event, String> {
    let d = v.cast::<PyDict>().map_err(|_| format!("event #{position} is a {}, not a dict", type_name(v)))?;
    let text = |key: &str| -> Result<String, String> {
        match d.get_item(key).map_err(|e| e.to_string())? {
            Some(x) if x.is_instance_of::<PyString>() => x.extract::<String>().map_err(|e| e.to_string()),
            Some(x) if x.is_none() => Err(format!("event #{position} has no {key:?}")),
            Some(x) => Err(format!("event #{position}: {key:?} must be a str, found a {}", type_name(&x))),
            None => Err(format!("event #{position} has no {key:?}")),
        }
    };
    let message_id = text("message_id")?;
    let at = |m: String| format!("event #{position} (message_id {message_id:?}): {m}");
    let event_type = text("event_type").map_err(at)?;
    let timestamp = match d.get_item("timestamp").map_err(|e| at(e.to_string()))? {
        Some(x) if !x.is_none() => match datetime_of(&x).map_err(|e| at(e.to_string()))? {
            Some(t) => t,
            None => match x.extract::<String>().ok().and_then(|s| winchester_core::event::parse_rfc3339(&s)) {
                Some(t) => t,
                None => return Err(at(format!("\"timestamp\" must be a datetime, found a {}", type_name(&x)))),
            },
        },
        _ => return Err(at("no \"timestamp\"".into())),
    };
    let mut traits = BTreeMap::new();
    for (k, val) in d.iter() {
        let key: String = k.extract().map_err(|_| at("keys must be strings".into()))?;
        if matches!(key.as_str(), "message_id" | "event_type" | "timestamp") || val.is_none() {
            continue;
        }
        let tv = if val.is_instance_of::<PyBool>() {
            TraitValue::Bool(val.extract().map_err(|e: PyErr| at(e.to_string()))?)
        } else if val.is_instance_of::<PyInt>() {
            TraitValue::Int(val.extract().map_err(|_| at(format!("trait {key:?} is out of the 64-bit range")))?)
        } else if val.is_instance_of::<PyFloat>() {
            TraitValue::Float(val.extract().map_err(|e: PyErr| at(e.to_string()))?)
        } else if val.is_instance_of::<PyString>() {
            TraitValue::String(val.extract().map_err(|e: PyErr| at(e.to_string()))?)
        } else if let Some(t) = datetime_of(&val).map_err(|e| at(e.to_string()))? {
            TraitValue::Datetime(t)
        } else {
            return Err(at(format!(
                "trait {key:?} is a {}; traits are str, int, float, bool or datetime",
                type_name(&val)
            )));
        };
        traits.insert(key, tv);
    }
    Event::new(message_id, event_type, timestamp, traits).map_err(|e| e.to_string())
}
