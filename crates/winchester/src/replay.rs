//! Replay: archived events fed in timestamp order on a [`ManualClock`] that
//! follows them, committed in batches, with exactly the streams, fires and
//! expiries of a replay that commits each moment (distinct timestamp) alone
//! and lets a worker take every due stream after each moment.
//!
//! Each event is judged at its own arrival ([`ReplayAt`]): the clock at that
//! moment (expiry, fire time) and the previous moment, at which the worker of
//! a per-moment replay would have run. A stream whose fire time had come by
//! then was taken by that worker, so the event opens a new stream instead
//! (`StreamDraft::accepts`). The worker itself runs only between batches, at
//! the last moment of the batch, and takes every stream the batch left due.
//!
//! One difference remains, by design: the pipelines of streams that became due
//! inside a batch run when the batch ends, on the clock of its last moment. A
//! pipeline that adds events (a handler returning new events) has them saved
//! then, not at the moment the stream became due.
//! [`Replay::per_moment`] is the one-transaction-per-moment replay itself (the
//! reference the tests compare against).

use chrono::{DateTime, Utc};
use std::sync::Arc;
use winchester_core::{Clock, Event, ManualClock};
use winchester_storage::{ReplayAt, RetryPolicy};

use crate::{EngineError, EventOutcome, TriggerManager, Worker};

/// A replay in progress. Feed events with [`Replay::push`] in file order and
/// end with [`Replay::finish`]; outcomes come back in the order pushed.
#[derive(Debug)]
pub struct Replay {
    tm: TriggerManager,
    clock: Arc<ManualClock>,
    worker: Option<Worker>,
    batch_size: usize,
    per_moment: bool,
    pending: Vec<(Event, Option<ReplayAt>)>,
    /// The moment of the latest event.
    moment: Option<DateTime<Utc>>,
    /// The moment before it: when a worker runs, it ran then.
    worker_ran: Option<DateTime<Utc>>,
    /// Commits wait out database outages.
    retry: RetryPolicy,
}

impl Replay {
    /// A batched replay through `tm`, whose clock must be `clock`; commits
    /// at least `batch_size` events at a time (whole moments when a worker runs).
    pub fn new(tm: TriggerManager, clock: Arc<ManualClock>, batch_size: usize) -> Replay {
        Replay {
            tm,
            clock,
            worker: None,
            batch_size: batch_size.max(1),
            per_moment: false,
            pending: Vec::new(),
            moment: None,
            worker_ran: None,
            retry: RetryPolicy::new(),
        }
    }

    /// Runs `worker` (built on the same trigger manager and clock) after the
    /// batches, taking every stream that is due.
    pub fn with_worker(mut self, worker: Worker) -> Replay {
        self.worker = Some(worker);
        self
    }

    /// Commits every moment alone (and runs the worker after each): the slow
    /// reference replay.
    pub fn per_moment(mut self) -> Replay {
        self.per_moment = true;
        self
    }

    /// The worker, if any.
    pub fn worker(&self) -> Option<&Worker> {
        self.worker.as_ref()
    }

    /// Adds the next event. Returns the outcomes of the events committed now
    /// (earlier events, in the order pushed); the clock never moves backward.
    pub async fn push(&mut self, event: Event) -> Result<Vec<EventOutcome>, EngineError> {
        let mut out = Vec::new();
        let now = self.clock.now();
        let at = now.max(event.timestamp);
        if let Some(m) = self.moment.filter(|m| at > *m) {
            // The previous moment is complete: a batch may end here.
            if self.per_moment || self.pending.len() >= self.batch_size {
                out = self.commit().await?;
                self.work().await?;
            }
            if self.worker.is_some() {
                self.worker_ran = Some(m);
            }
        } else if self.worker.is_none() && self.pending.len() >= self.batch_size
            || self.pending.len() >= 4 * self.batch_size
        {
            // Within one moment (or with no worker), committing is all there is.
            out = self.commit().await?;
        }
        self.clock.advance_to(at);
        self.moment = Some(at);
        self.pending.push((event, Some(ReplayAt { now: at, worker_ran: self.worker_ran })));
        Ok(out)
    }

    /// Commits what is left and lets the worker take every due stream.
    pub async fn finish(&mut self) -> Result<Vec<EventOutcome>, EngineError> {
        let out = self.commit().await?;
        self.work().await?;
        Ok(out)
    }

    async fn commit(&mut self) -> Result<Vec<EventOutcome>, EngineError> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        // Through a database outage (a restart, a failover) the batch waits
        // and is tried again; a try whose commit went through but whose
        // answer was lost comes back as duplicates.
        let pending = std::mem::take(&mut self.pending);
        let tm = &self.tm;
        self.retry.retry("saving replayed events", || tm.add_events_at(pending.clone())).await
    }

    /// The worker's run at the current moment: until nothing is due.
    async fn work(&mut self) -> Result<(), EngineError> {
        if let Some(w) = &self.worker {
            while w.run_once().await? > 0 {}
        }
        Ok(())
    }
}
