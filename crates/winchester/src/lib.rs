//! The winchester-rs engine.
//!
//! Layout:
//! - [`trigger_manager`]: [`TriggerManager::add_event`] and friends: match events
//!   against triggers and hand them to storage.
//! - [`pipeline`]: the [`Handler`](pipeline::Handler) trait, the handler registry,
//!   running a pipeline over a stream's events, built-in handlers.
//! - [`worker`]: the pipeline worker loop that fires and expires ready streams.
//! - [`group_commit`]: concurrent `add_event` calls sharing transactions.
//! - [`replay`]: replaying archived events on an event-time clock, in exact batches.
//! - [`event_clock`]: [`StoredEventClock`], "now" = the latest stored event (replay).
//! - [`debug`]: per-trigger debug counters (`debug_level`).
//! - [`live`]: hot reload: swappable shared definitions, recording versions.
//! - [`json`]: the JSON shapes of streams and transitions (CLI, API, tail).
//! - [`tail`]: following new events and stream transitions live.
//! - [`metrics`]: Prometheus metrics (names, exporter, the hooks the engine calls).
//! - [`error`]: the engine's error type.
//!
//! Storage is reached only through [`winchester_storage::Storage`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod debug;
pub mod error;
pub mod event_clock;
pub mod group_commit;
pub mod json;
pub mod live;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod tail;
pub mod trigger_manager;
pub mod worker;

pub use error::EngineError;
pub use event_clock::StoredEventClock;
pub use replay::Replay;
pub use trigger_manager::{EventOutcome, TriggerManager};
pub use winchester_core as core;
pub use winchester_storage as storage;
pub use worker::{Worker, WorkerOptions, WorkerStats};
