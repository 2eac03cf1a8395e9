//! A Python class as a pipeline handler.

use crate::convert;
use async_trait::async_trait;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use winchester::pipeline::{Env, Handler, HandlerConfigError, HandlerError};
use winchester_core::Event;

/// Env keys the engine fills in; what a handler leaves under other keys is
/// kept for the handlers after it (when it is plain data).
const ENV_KEYS: [&str; 2] = ["stream_id", "stream_name"];

/// One stream's instance of a Python handler class, constructed (with the
/// handler's params as keyword arguments) on its first call.
#[derive(Debug)]
pub struct PythonHandler {
    class_path: Arc<str>,
    class: Arc<Py<PyAny>>,
    params: Arc<serde_json::Map<String, serde_json::Value>>,
    instance: Arc<Mutex<Option<Py<PyAny>>>>,
}

/// What a call's thread and the engine share to interrupt it.
#[derive(Default)]
struct CallState {
    /// Python's id of the thread running the call (0: not yet known).
    thread: AtomicU64,
    /// The call returned (set with the GIL held).
    done: AtomicBool,
    /// A timeout was raised in it (set with the GIL held).
    interrupted: AtomicBool,
    /// The engine gave up on the call: if it has not started, it must not.
    cancelled: AtomicBool,
}

/// Raises `TimeoutError` in a call the engine abandoned.
struct InterruptOnDrop(Option<Arc<CallState>>);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        let Some(state) = self.0.take() else { return };
        state.cancelled.store(true, Ordering::SeqCst);
        // Off the async threads: taking the GIL may wait.
        let _ = std::thread::Builder::new().name("python-interrupt".into()).spawn(move || {
            Python::attach(|py| {
                let tid = state.thread.load(Ordering::SeqCst);
                if tid == 0 || state.done.load(Ordering::SeqCst) {
                    return;
                }
                match crate::helpers(py).and_then(|h| h.call_method1("interrupt", (tid, false))) {
                    Ok(_) => state.interrupted.store(true, Ordering::SeqCst),
                    Err(e) => tracing::warn!("cannot interrupt a Python handler: {}", convert::describe(py, &e)),
                }
            })
        });
    }
}

impl PythonHandler {
    /// A handler of `class` with `params` (checked to be plain data with string keys).
    pub fn new(
        class_path: Arc<str>,
        class: Arc<Py<PyAny>>,
        params: &serde_yaml::Mapping,
    ) -> Result<Self, HandlerConfigError> {
        let params = match serde_json::to_value(params) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => return Err("params must be a map".into()),
            Err(e) => return Err(format!("params are not plain data (they become keyword arguments): {e}").into()),
        };
        Ok(PythonHandler { class_path, class, params: Arc::new(params), instance: Arc::default() })
    }

    /// Runs `f` with the instance (constructed if needed) on a thread of its
    /// own; Python errors come back as their traceback.
    async fn call<T, F>(&self, f: F) -> Result<T, HandlerError>
    where
        T: Send + 'static,
        F: for<'py> FnOnce(Python<'py>, &Bound<'py, PyAny>) -> Result<T, CallError> + Send + 'static,
    {
        let state = Arc::new(CallState::default());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (class_path, class, params, instance, st) =
            (self.class_path.clone(), self.class.clone(), self.params.clone(), self.instance.clone(), state.clone());
        std::thread::Builder::new()
            .name("python-handler".into())
            .spawn(move || {
                let out = Python::attach(|py| {
                    if let Ok(tid) = py.import("threading").and_then(|t| t.call_method0("get_ident")?.extract::<u64>())
                    {
                        st.thread.store(tid, Ordering::SeqCst);
                    }
                    let result = (|| {
                        // Given up on before it got the GIL (the thread id was not known then).
                        if st.cancelled.load(Ordering::SeqCst) {
                            return Err(CallError::Message("abandoned before it started".into()));
                        }
                        let obj = {
                            let mut slot = instance.lock().unwrap_or_else(|e| e.into_inner());
                            match &*slot {
                                Some(o) => o.clone_ref(py),
                                None => {
                                    let kwargs = convert::json_map_to_py(py, &params).map_err(CallError::Py)?;
                                    let o = class.bind(py).call((), Some(&kwargs)).map_err(|e| {
                                        CallError::Message(format!(
                                            "constructing {class_path}: {}",
                                            convert::describe(py, &e)
                                        ))
                                    })?;
                                    *slot = Some(o.clone().unbind());
                                    o.unbind()
                                }
                            }
                        };
                        f(py, obj.bind(py))
                    })();
                    st.done.store(true, Ordering::SeqCst);
                    if st.interrupted.load(Ordering::SeqCst) {
                        // A timeout raised too late to land in the call must not land elsewhere.
                        let tid = st.thread.load(Ordering::SeqCst);
                        let _ = crate::helpers(py).and_then(|h| h.call_method1("interrupt", (tid, true)));
                    }
                    result.map_err(|e| e.describe(py))
                });
                let _ = tx.send(out);
            })
            .map_err(|e| format!("cannot start a thread for Python: {e}"))?;
        let mut guard = InterruptOnDrop(Some(state));
        let out = rx.await.map_err(|_| "the Python handler's thread ended without an answer".to_string());
        guard.0 = None;
        Ok(out??)
    }
}

/// A failure inside a call, turned into text with the GIL held.
pub(crate) enum CallError {
    Py(PyErr),
    Message(String),
}

impl CallError {
    fn describe(self, py: Python<'_>) -> String {
        match self {
            CallError::Py(e) => convert::describe(py, &e),
            CallError::Message(m) => m,
        }
    }
}

impl From<PyErr> for CallError {
    fn from(e: PyErr) -> Self {
        CallError::Py(e)
    }
}

fn env_dict<'py>(py: Python<'py>, env: &Env) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in &env.values {
        d.set_item(k, convert::json_to_py(py, v)?)?;
    }
    d.set_item("stream_id", env.stream_id)?;
    d.set_item("stream_name", &env.stream_name)?;
    Ok(d)
}

#[async_trait]
impl Handler for PythonHandler {
    async fn handle_events(&mut self, events: Vec<Event>, env: &mut Env) -> Result<Vec<Event>, HandlerError> {
        let snapshot = env.clone();
        let class_path = self.class_path.clone();
        let (out, values) = self
            .call(move |py, obj| {
                let list = PyList::empty(py);
                for e in &events {
                    list.append(convert::event_to_py(py, e)?)?;
                }
                let envd = env_dict(py, &snapshot)?;
                let ret = obj.call_method1("handle_events", (list, &envd))?;
                if ret.is_none() {
                    return Err(CallError::Message(format!(
                        "{class_path}.handle_events returned None; it must return the list of events"
                    )));
                }
                let mut out = Vec::new();
                for (i, item) in ret.try_iter()?.enumerate() {
                    let item = item?;
                    out.push(convert::py_to_event(&item, i + 1).map_err(|m| {
                        CallError::Message(format!("{class_path}.handle_events returned a bad event: {m}"))
                    })?);
                }
                let mut values = Vec::new();
                for (k, v) in envd.iter() {
                    let Ok(key) = k.extract::<String>() else { continue };
                    if ENV_KEYS.contains(&key.as_str()) {
                        continue;
                    }
                    match convert::py_to_json(&v) {
                        Ok(j) => values.push((key, j)),
                        Err(_) => tracing::debug!(key, "env value is not plain data; not passed on"),
                    }
                }
                Ok((out, values))
            })
            .await?;
        env.values = values.into_iter().collect();
        Ok(out)
    }

    async fn commit(&mut self, _env: &Env) -> Result<(), HandlerError> {
        self.call(|_py, obj| {
            if obj.hasattr("commit")? {
                obj.call_method0("commit")?;
            }
            Ok(())
        })
        .await
    }

    async fn rollback(&mut self, _env: &Env) -> Result<(), HandlerError> {
        self.call(|_py, obj| {
            if obj.hasattr("rollback")? {
                obj.call_method0("rollback")?;
            }
            Ok(())
        })
        .await
    }
}
