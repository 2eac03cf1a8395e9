//! Pipelines: ordered handlers run over a fired or expired stream's events.
//!
//! - [`Handler`]: what a handler implements.
//! - [`HandlerRegistry`]: handler type name -> constructor; built-ins plus
//!   whatever the embedding program registers.
//! - [`params`]: how a constructor reads its YAML params (the configuration's
//!   `Raw`/`Checked` validation) and [`HandlerConfigError`], why it refused them.
//! - [`HandlerContext`]: resources the handlers of one worker share (an HTTP
//!   client, broker connections), released when the worker stops.
//! - [`PipelineRunner`]: builds fresh handlers for each stream and runs them with
//!   the original's semantics: `handle_events` in order, then `commit` on each if
//!   all succeeded, else `rollback` on each.
//! - [`handlers`]: the built-in handlers.

mod context;
pub mod handlers;
pub mod params;
mod registry;
mod runner;

pub use context::{HandlerContext, SharedResource};
pub use params::HandlerConfigError;
pub use registry::{is_class_path, ClassLoader, HandlerFactory, HandlerRegistry};
pub use runner::{PipelineError, PipelineRunner};

use async_trait::async_trait;
use std::collections::BTreeMap;
use winchester_core::{DistTraits, Event};
use winchester_storage::Action;

/// Whether the worker running a pipeline still holds the stream's lease; the
/// worker's heartbeat flips it when a renewal fails or another worker took the
/// stream.
#[derive(Debug, Clone)]
pub struct LeaseWatch(tokio::sync::watch::Receiver<bool>);

impl LeaseWatch {
    /// A lease that is never lost (runs outside a worker).
    pub fn held() -> LeaseWatch {
        let (tx, rx) = tokio::sync::watch::channel(false);
        // Keep the value readable after the sender is gone.
        drop(tx);
        LeaseWatch(rx)
    }

    /// A new watch and the switch that marks it lost.
    pub fn new() -> (LeaseLostSwitch, LeaseWatch) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (LeaseLostSwitch(tx), LeaseWatch(rx))
    }

    /// Whether the lease is lost.
    pub fn is_lost(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when the lease is lost; never, if it is not.
    pub async fn lost(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|lost| *lost).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Marks a [`LeaseWatch`] lost.
#[derive(Debug)]
pub struct LeaseLostSwitch(tokio::sync::watch::Sender<bool>);

impl LeaseLostSwitch {
    /// The lease is gone: the pipeline must not commit.
    pub fn mark_lost(&self) {
        self.0.send_replace(true);
    }
}

/// Error returned by a handler.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Per-run context shared by the handlers of one pipeline run.
#[derive(Debug, Clone)]
pub struct Env {
    /// The stream's id.
    pub stream_id: i64,
    /// The stream's name (its trigger).
    pub stream_name: String,
    /// Whether the stream fired or expired.
    pub action: Action,
    /// The stream's distinguishing traits.
    pub distinguishing_traits: DistTraits,
    /// The same for every retry of this stream's firing (or expiry): use it to
    /// make side effects idempotent.
    pub idempotency_key: String,
    /// Scratch space handlers use to pass data to later handlers.
    pub values: BTreeMap<String, serde_json::Value>,
}

/// A pipeline handler. A fresh instance is built for every stream processed.
///
/// `handle_events` may be run again for the same stream (after a crash or a
/// rollback), so it must not act on the outside world: do that in `commit`.
#[async_trait]
pub trait Handler: Send {
    /// Gets the events (in timestamp order, as returned by the previous handler)
    /// and returns the list for the next one: it may drop events or add new ones.
    async fn handle_events(&mut self, events: Vec<Event>, env: &mut Env) -> Result<Vec<Event>, HandlerError>;

    /// Called on every handler once all of them succeeded.
    async fn commit(&mut self, _env: &Env) -> Result<(), HandlerError> {
        Ok(())
    }

    /// Called on every handler when any of them failed.
    async fn rollback(&mut self, _env: &Env) -> Result<(), HandlerError> {
        Ok(())
    }
}
