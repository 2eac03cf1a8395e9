//! Pure domain logic of winchester-rs: no database, no network.
//!
//! Layout:
//! - [`event`]: events and typed trait values, validation, JSON form.
//! - [`cloudevent`]: CloudEvents 1.0 to events (`POST /v1/events`).
//! - [`timex`]: time expressions (`$last + 1h`, `day($launched_at)`).
//! - [`duration`]: durations of command-line flags (`30s`, `5m`, `1h30m`).
//! - [`criteria`]: `match_criteria` / `fire_criteria` entries and event-type globs.
//! - [`trigger`]: trigger definitions, distinguishing traits, fire decisions.
//! - [`pipeline_config`]: the `pipelines.yaml` format.
//! - [`config`]: `winchester.yaml` and loading of every file it names.
//! - [`config_error`]: errors that name file, line, definition and key.
//! - [`amqp_ingest`]: the `amqp_ingest` section (the AMQP ingest daemon).
//! - [`clock`]: where "now" comes from.
//! - [`version`]: trigger definition versions (hash and stored text, for hot reload).
//! - [`distiller`]: StackDistiller, notifications to events via `event_definitions.yaml`.
//! - [`iso8601`]: notification date-times, read as Python's `iso8601` 2.1.0 reads them.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod amqp_ingest;
pub mod api_config;
pub mod clock;
pub mod cloudevent;
pub mod config;
pub mod config_error;
pub mod criteria;
pub mod distiller;
pub mod duration;
pub mod event;
pub mod iso8601;
pub mod pipeline_config;
pub mod timex;
pub mod trigger;
pub mod version;
pub mod yaml;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{LoadedConfig, WinchesterConfig};
pub use config_error::{ConfigError, ConfigErrors};
pub use event::{Event, EventError, TraitValue};
pub use trigger::{DistTraits, DistValue, TriggerDefinition, TriggerSet, TypeVerdicts};
pub use version::DefinitionVersion;
