//! What the engine hands storage for each event.

use chrono::{DateTime, Utc};
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
    /// Replay only: when this event is judged, instead of the batch's `now`.
    pub replay: Option<ReplayAt>,
}

/// When a replayed event arrives, so that a batch spanning many moments is
/// folded exactly as if each moment had been committed alone, with a worker
/// taking every due stream after each (see `winchester::replay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayAt {
    /// The replay clock when the event arrives: its `now`.
    pub now: DateTime<Utc>,
    /// The latest earlier moment at which a worker took every stream due by
    /// then (`None`: no worker ran). A stream whose fire time had come by then
    /// was taken, so it no longer accepts events.
    pub worker_ran: Option<DateTime<Utc>>,
}

impl EventPlan {
    /// When this event is judged: `(now, worker_ran)`; the batch's `now` and
    /// no worker unless it is replayed.
    pub fn arrival(&self, now: DateTime<Utc>) -> ReplayAt {
        self.replay.unwrap_or(ReplayAt { now, worker_ran: None })
    }
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
