//! Running a pipeline over a stream's events.

use super::{Env, Handler, HandlerConfigError, HandlerContext, HandlerError, HandlerRegistry, LeaseWatch};
use crate::live::Live;
use futures::FutureExt;
use std::collections::{BTreeMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use winchester_core::config::LoadedConfig;
use winchester_core::pipeline_config::HandlerEntry;
use winchester_core::{ConfigError, ConfigErrors, Event};

/// Why a pipeline run failed. The stream goes to `error` / `expire_error` with
/// this text recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The pipeline is not in the pipeline config.
    #[error("unknown pipeline {0:?}")]
    UnknownPipeline(String),
    /// A handler could not be built from its params.
    #[error("pipeline {pipeline:?}: handler {handler:?} could not be built: {error}")]
    Build {
        /// Pipeline name.
        pipeline: String,
        /// Handler name.
        handler: String,
        /// Why.
        error: HandlerConfigError,
    },
    /// `handle_events` failed, panicked or timed out; every handler was rolled back.
    #[error("pipeline {pipeline:?}: handler #{position} {handler:?} failed in handle_events: {reason}")]
    Handle {
        /// Pipeline name.
        pipeline: String,
        /// 1-based position of the handler in the pipeline.
        position: usize,
        /// Handler name.
        handler: String,
        /// Why.
        reason: String,
    },
    /// The worker stopped holding the stream's lease (a renewal failed or
    /// another worker took it) before commit; every handler was rolled back and
    /// nothing is recorded on the stream.
    #[error("pipeline {pipeline:?}: lease on the stream lost before commit; rolled back")]
    LeaseLost {
        /// Pipeline name.
        pipeline: String,
    },
    /// One or more `commit` calls failed (the others still ran).
    #[error("pipeline {pipeline:?}: commit failed: {reasons}")]
    Commit {
        /// Pipeline name.
        pipeline: String,
        /// `handler: reason` for each failure, joined.
        reasons: String,
    },
}

/// Builds and runs pipelines. Clones share the configuration, so
/// [`PipelineRunner::set_config`] reaches all, and the [`HandlerContext`]
/// the handlers are built with.
#[derive(Debug, Clone)]
pub struct PipelineRunner {
    registry: HandlerRegistry,
    config: Live<LoadedConfig>,
    handler_timeout: Duration,
    context: HandlerContext,
}

enum CallError {
    Failed(String),
    LeaseLost,
}

async fn guarded<F, T>(timeout: Duration, fut: F) -> Result<T, CallError>
where
    F: std::future::Future<Output = Result<T, HandlerError>>,
{
    match tokio::time::timeout(timeout, AssertUnwindSafe(fut).catch_unwind()).await {
        Err(_) => Err(CallError::Failed(format!("timed out after {:?}", timeout))),
        Ok(Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(CallError::Failed(format!("panicked: {msg}")))
        }
        Ok(Ok(Err(e))) => Err(CallError::Failed(e.to_string())),
        Ok(Ok(Ok(v))) => Ok(v),
    }
}

/// The type of a pipeline's handler: `handler_types` maps handler names to
/// types (a name not in it is its own type).
fn handler_type<'a>(entry: &'a HandlerEntry, handler_types: &'a BTreeMap<String, String>) -> &'a str {
    handler_types.get(&entry.name).map(String::as_str).unwrap_or(&entry.name)
}

impl PipelineRunner {
    /// A runner for the pipelines of `config`, building handlers from
    /// `registry` with a context of their own (see [`PipelineRunner::context`]).
    pub fn new(registry: HandlerRegistry, config: LoadedConfig) -> PipelineRunner {
        let handler_timeout = config.main.handler_timeout;
        let context = HandlerContext::new();
        PipelineRunner { registry, config: Live::new(Arc::new(config)), handler_timeout, context }
    }

    /// The resources this runner's handlers share; the worker that owns the
    /// runner shuts it down when it stops.
    pub fn context(&self) -> &HandlerContext {
        &self.context
    }

    /// The configuration in force (a snapshot).
    pub fn config(&self) -> Arc<LoadedConfig> {
        self.config.get()
    }

    /// Swaps in a new configuration (its pipelines and handler types) for this
    /// runner and its clones; runs already started keep what they started with.
    pub fn set_config(&self, config: Arc<LoadedConfig>) {
        self.config.set(config);
    }

    /// Builds every handler of every pipeline once, so bad params are found at
    /// start-up (and by `winchester check`), naming file, pipeline and handler.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let config = self.config();
        for (name, entries) in &config.pipelines.pipelines {
            for (i, entry) in entries.iter().enumerate() {
                let Err(error) = self.build_one(entry, &config.main.pipeline_handlers) else { continue };
                for one in error.each() {
                    let mut e = ConfigError::new(one.to_string())
                        .context(format!("pipeline {name:?}"))
                        .key(format!("[{i}] ({})", entry.name));
                    if let Some(f) = &config.pipelines_file {
                        e = e.in_file(f);
                    }
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Whether any handler of the configuration's pipelines may add events:
    /// all but the types registered as never adding any
    /// ([`HandlerRegistry::never_adds_events`]).
    pub fn may_add_events(&self) -> bool {
        let config = self.config();
        let types = &config.main.pipeline_handlers;
        config.pipelines.pipelines.values().flatten().any(|e| !self.registry.never_adds_events(handler_type(e, types)))
    }

    /// Builds a handler (of [`handler_type`]).
    fn build_one(
        &self,
        entry: &HandlerEntry,
        handler_types: &BTreeMap<String, String>,
    ) -> Result<Box<dyn Handler>, HandlerConfigError> {
        self.registry.build(handler_type(entry, handler_types), &entry.params, &self.context)
    }

    /// Runs pipeline `name` over `events`. On success returns the events the
    /// pipeline added (those whose message_id was not among the input's).
    pub async fn run(&self, name: &str, events: Vec<Event>, env: &mut Env) -> Result<Vec<Event>, PipelineError> {
        self.run_leased(name, events, env, &LeaseWatch::held()).await
    }

    /// [`run`](Self::run) while the worker holds the stream's lease: when `lease`
    /// reports it lost, the handler in progress is abandoned, every handler is
    /// rolled back and nothing is committed ([`PipelineError::LeaseLost`]).
    pub async fn run_leased(
        &self,
        name: &str,
        events: Vec<Event>,
        env: &mut Env,
        lease: &LeaseWatch,
    ) -> Result<Vec<Event>, PipelineError> {
        let config = self.config();
        let entries = config.pipelines.get(name).ok_or_else(|| PipelineError::UnknownPipeline(name.to_string()))?;
        self.run_handlers(name, entries, &config.main.pipeline_handlers, events, env, lease).await
    }

    /// Runs the pipeline `name` made of `entries` (handler names resolved to
    /// types through `handler_types`): how a stream runs its own definition
    /// version's pipeline. Otherwise as [`run_leased`](Self::run_leased).
    pub async fn run_handlers(
        &self,
        name: &str,
        entries: &[HandlerEntry],
        handler_types: &BTreeMap<String, String>,
        events: Vec<Event>,
        env: &mut Env,
        lease: &LeaseWatch,
    ) -> Result<Vec<Event>, PipelineError> {
        let mut handlers = Vec::with_capacity(entries.len());
        for entry in entries {
            let h = self.build_one(entry, handler_types).map_err(|error| PipelineError::Build {
                pipeline: name.to_string(),
                handler: entry.name.clone(),
                error,
            })?;
            handlers.push((entry.name.as_str(), h));
        }
        let input_ids: HashSet<String> = events.iter().map(|e| e.message_id.clone()).collect();
        let mut current = events;
        let mut failure = None;
        for (i, (hname, h)) in handlers.iter_mut().enumerate() {
            let call = guarded(self.handler_timeout, h.handle_events(std::mem::take(&mut current), env));
            let result = tokio::select! {
                r = call => r,
                _ = lease.lost() => Err(CallError::LeaseLost),
            };
            match result {
                Ok(out) => current = out,
                Err(CallError::LeaseLost) => {
                    failure = Some(PipelineError::LeaseLost { pipeline: name.to_string() });
                    break;
                }
                Err(CallError::Failed(reason)) => {
                    crate::metrics::handler_error(hname);
                    failure = Some(PipelineError::Handle {
                        pipeline: name.to_string(),
                        position: i + 1,
                        handler: hname.to_string(),
                        reason,
                    });
                    break;
                }
            }
        }
        if failure.is_none() && lease.is_lost() {
            failure = Some(PipelineError::LeaseLost { pipeline: name.to_string() });
        }
        if let Some(err) = failure {
            tracing::warn!(stream_id = env.stream_id, pipeline = name, error = %err, "Pipeline failed; rolling back.");
            for (hname, h) in handlers.iter_mut() {
                if let Err(CallError::Failed(reason)) = guarded(self.handler_timeout, h.rollback(env)).await {
                    tracing::error!(stream_id = env.stream_id, pipeline = name, handler = %hname, %reason, "Rollback failed.");
                }
            }
            return Err(err);
        }
        let mut commit_errors = Vec::new();
        for (hname, h) in handlers.iter_mut() {
            if let Err(CallError::Failed(reason)) = guarded(self.handler_timeout, h.commit(env)).await {
                tracing::error!(stream_id = env.stream_id, pipeline = name, handler = %hname, %reason, "Commit failed.");
                crate::metrics::handler_error(hname);
                commit_errors.push(format!("{hname}: {reason}"));
            }
        }
        if !commit_errors.is_empty() {
            return Err(PipelineError::Commit { pipeline: name.to_string(), reasons: commit_errors.join("; ") });
        }
        Ok(current.into_iter().filter(|e| !input_ids.contains(&e.message_id)).collect())
    }
}
