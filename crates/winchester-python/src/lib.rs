//! Python pipeline handlers and distiller trait plugins, run unchanged in an
//! embedded interpreter (pyo3).
//!
//! - [`configure`]: starts the interpreter, adds `python_path` to `sys.path`
//!   and provides the original's base classes
//!   (`winchester.pipeline_handler.PipelineHandlerBase`,
//!   `stackdistiller.trait_plugins.TraitPluginBase`) when the real ones are not
//!   importable.
//! - [`register`]: lets a [`HandlerRegistry`] build any class path
//!   (`module.path:ClassName`) as a handler: the class is imported once, and an
//!   instance is constructed per stream with the handler's `params` as keyword
//!   arguments.
//! - [`trait_plugins`]: the `distiller_trait_plugins` of a config as a
//!   [`PluginRegistry`].
//!
//! Python code never runs on the async runtime's threads: every handler call
//! runs on a thread of its own, which holds the GIL only while Python runs.
//! When the engine gives up on a call (`handler_timeout`, lost lease), a
//! `TimeoutError` is raised inside it; code blocked in C (a long `time.sleep`)
//! sees it only when it returns to Python.

mod convert;
mod handler;
mod plugin;

pub use handler::PythonHandler;
pub use plugin::PythonPlugin;

use pyo3::prelude::*;
use pyo3::types::PyModule;
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex, Once, OnceLock};
use winchester::pipeline::{HandlerContext, HandlerRegistry};
use winchester_core::config::WinchesterConfig;
use winchester_core::distiller::PluginRegistry;
use winchester_core::{ConfigError, ConfigErrors};

const HELPERS: &str = include_str!("helpers.py");
const HELPERS_MODULE: &str = "_winchester_rs";

/// Starts the interpreter once and installs the helper module.
fn ensure_started() -> Result<(), String> {
    static START: Once = Once::new();
    static FAILED: OnceLock<String> = OnceLock::new();
    START.call_once(|| {
        Python::initialize();
        let r = Python::attach(|py| -> PyResult<()> {
            let code = CString::new(HELPERS).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
            let file = CString::new("winchester_rs_helpers.py").unwrap_or_default();
            let name = CString::new(HELPERS_MODULE).unwrap_or_default();
            let m = PyModule::from_code(py, &code, &file, &name)?;
            py.import("sys")?.getattr("modules")?.set_item(HELPERS_MODULE, &m)?;
            m.call_method0("install_shims")?;
            Ok(())
        });
        if let Err(e) = r {
            let text = Python::attach(|py| convert::describe(py, &e));
            let _ = FAILED.set(format!("cannot start the Python interpreter: {text}"));
        }
    });
    match FAILED.get() {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

fn helpers(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import(HELPERS_MODULE)
}

/// Starts the interpreter (once) and adds the config's `python_path` to
/// `sys.path` (after `PYTHONPATH`).
pub fn configure(cfg: &WinchesterConfig) -> Result<(), String> {
    ensure_started()?;
    let dirs: Vec<String> = cfg.python_path.iter().map(|p| p.display().to_string()).collect();
    Python::attach(|py| {
        helpers(py)?.call_method1("add_path", (dirs,))?;
        Ok::<_, PyErr>(())
    })
    .map_err(|e| Python::attach(|py| format!("cannot set python_path: {}", convert::describe(py, &e))))
}

/// A class path's import: the class, or why it failed.
type Imported = Result<Arc<Py<PyAny>>, String>;

/// Imported classes by class path (failures too, so each is reported the same way).
fn class_cache() -> &'static Mutex<HashMap<String, Imported>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Imported>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Imports `module.path:ClassName` (once per process).
pub fn import_class(class_path: &str) -> Result<Arc<Py<PyAny>>, String> {
    if let Some(hit) = class_cache().lock().unwrap_or_else(|e| e.into_inner()).get(class_path) {
        return hit.clone();
    }
    ensure_started()?;
    let loaded = Python::attach(|py| {
        helpers(py)
            .and_then(|h| h.call_method1("import_class", (class_path,)))
            .map(|c| Arc::new(c.unbind()))
            .map_err(|e| format!("cannot import Python class {class_path:?}: {}", convert::describe(py, &e)))
    });
    class_cache().lock().unwrap_or_else(|e| e.into_inner()).insert(class_path.to_string(), loaded.clone());
    loaded
}

/// Lets `registry` build any class path as a Python handler.
pub fn register(registry: &mut HandlerRegistry) {
    registry.set_class_loader(Arc::new(|class_path: &str| {
        let class = import_class(class_path)?;
        let class_path: Arc<str> = class_path.into();
        Ok(Arc::new(move |params: &serde_yaml::Mapping, _: &HandlerContext| {
            PythonHandler::new(class_path.clone(), class.clone(), params)
                .map(|h| Box::new(h) as Box<dyn winchester::pipeline::Handler>)
        }) as winchester::pipeline::HandlerFactory)
    }));
}

/// The config's `distiller_trait_plugins` as plugins: each class is imported
/// now; an instance is built for each trait that uses it, with the trait's
/// `parameters` as keyword arguments.
pub fn trait_plugins(cfg: &WinchesterConfig) -> Result<PluginRegistry, ConfigErrors> {
    let mut registry = PluginRegistry::default();
    if cfg.distiller_trait_plugins.is_empty() {
        return Ok(registry);
    }
    configure(cfg).map_err(|e| ConfigError::new(e).key("python_path").in_file(&cfg.file))?;
    let mut errors = Vec::new();
    for (name, class_path) in &cfg.distiller_trait_plugins {
        match import_class(class_path) {
            Ok(class) => {
                let class_path: Arc<str> = class_path.as_str().into();
                registry.register(
                    name.clone(),
                    Arc::new(move |params: &serde_json::Map<String, serde_json::Value>| {
                        PythonPlugin::new(class_path.clone(), &class, params)
                            .map(|p| Arc::new(p) as Arc<dyn winchester_core::distiller::TraitPlugin>)
                    }),
                );
            }
            Err(e) => {
                errors.push(ConfigError::new(e).key(format!("distiller_trait_plugins.{name}")).in_file(&cfg.file))
            }
        }
    }
    if errors.is_empty() {
        Ok(registry)
    } else {
        Err(ConfigErrors(errors))
    }
}
