//! A Python class as a distiller trait plugin.

use crate::convert;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use std::sync::Arc;
use winchester_core::distiller::TraitPlugin;

/// An instance of a Python trait plugin class (the original's
/// `TraitPluginBase` interface: `trait_value(match_list)`, or ceilometer's
/// `trait_values(match_list)` when the class has no `trait_value`).
#[derive(Debug)]
pub struct PythonPlugin {
    class_path: Arc<str>,
    instance: Py<PyAny>,
}

impl PythonPlugin {
    /// Constructs `class` with `params` as keyword arguments.
    pub fn new(
        class_path: Arc<str>,
        class: &Py<PyAny>,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<PythonPlugin, String> {
        Python::attach(|py| {
            let kwargs = convert::json_map_to_py(py, params).map_err(|e| convert::describe(py, &e))?;
            let instance = class
                .bind(py)
                .call((), Some(&kwargs))
                .map_err(|e| format!("constructing {class_path}: {}", convert::describe(py, &e)))?;
            Ok(PythonPlugin { class_path, instance: instance.unbind() })
        })
    }
}

impl TraitPlugin for PythonPlugin {
    fn trait_value(&self, matches: &[(String, serde_json::Value)]) -> Result<Option<serde_json::Value>, String> {
        Python::attach(|py| {
            // StackDistiller's interface is `trait_value` (one value);
            // ceilometer's is `trait_values` (a list, whose first non-null
            // element the ceilometer flavour takes).
            let instance = self.instance.bind(py);
            let method = match instance.hasattr("trait_value") {
                Ok(false) => "trait_values",
                _ => "trait_value",
            };
            let run = || -> PyResult<serde_json::Value> {
                let list = PyList::empty(py);
                for (path, value) in matches {
                    list.append(PyTuple::new(
                        py,
                        [path.into_pyobject(py)?.into_any(), convert::json_to_py(py, value)?],
                    )?)?;
                }
                let ret = instance.call_method1(method, (list,))?;
                convert::py_to_json(&ret)
            };
            match run() {
                Ok(serde_json::Value::Null) => Ok(None),
                Ok(v) => Ok(Some(v)),
                Err(e) => Err(format!("{}.{method}: {}", self.class_path, convert::describe(py, &e))),
            }
        })
    }
}
