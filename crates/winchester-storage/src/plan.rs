//! What the engine hands storage for each event.

use std::sync::Arc;
use winchester_core::{DistTraits, Event, TriggerDefinition};

/// One stream an event joins: the trigger, the distinguishing traits, and which
/// of the trigger's fire criteria the event counts toward.
#[derive(Debug, Clone)]
pub struct Membership {
    /// The trigger (storage calls it for expire times and fire readiness).
    pub trigger: Arc<TriggerDefinition>,
    /// The stream's distinguishing traits.
    pub dist: DistTraits,
    /// `dist.key()`, computed once.
    pub dist_key: String,
    /// One flag per fire criteria.
    pub fire_hits: Vec<bool>,
}

/// An event and every stream it joins.
#[derive(Debug, Clone)]
pub struct EventPlan {
    /// The validated event.
    pub event: Event,
    /// Its memberships, in trigger load order.
    pub memberships: Vec<Membership>,
}

/// What ingest did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Saved, with the ids of the streams it joined.
    Saved {
        /// The event's row id.
        event_id: i64,
        /// Streams joined (one per membership, same order).
        stream_ids: Vec<i64>,
        /// For each membership, whether this event opened the stream.
        opened: Vec<bool>,
    },
    /// A `message_id` already stored: nothing changed.
    Duplicate,
}
