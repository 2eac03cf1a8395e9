//! Replay: archived events fed in timestamp order on a [`ManualClock`] that
//! follows them, committed in batches, with exactly the streams, fires and
//! expiries of a replay that commits each moment (distinct timestamp) alone
//! and lets a worker take every due stream after each moment.
//!
//! Each event is judged at its own arrival ([`ReplayAt`]): the clock at that
//! moment (expiry, fire time) and the previous moment, at which the worker of
//! a per-moment replay would have run. A stream whose fire time had come by
//! then was taken by that worker, so the event opens a new stream instead
//! (`StreamDraft::accepts`). The worker itself runs once per batch, at the
//! last moment of the batch, and takes every stream the batch left due.
//!
//! The worker runs on a clock of its own, set to the moment it runs at, and in
//! the background: while it fires and expires what batch k left due, batch
//! k + 1 is gathered and committed. That cannot change which events any
//! stream gets. The worker at moment m takes only streams due by m; every
//! event of the next batch came after m and was judged as arriving after a
//! worker run at m (`worker_ran`), so it never joins such a stream; and the
//! streams that batch writes fall due after m, except one opened by an event
//! timestamped before the clock and already past its expiry, which the
//! worker at m may take as soon as the batch commits, with the same events.
//! The run at m ends before the next one starts. Only when a pipeline may add
//! events ([`PipelineRunner::may_add_events`]) does the batch wait for the
//! worker instead: the new events are saved when the stream finishes, and
//! the next batch's events must come after them.
//!
//! One difference remains, by design: the pipelines of streams that became due
//! inside a batch run when the worker next runs, on the clock of that moment
//! (the last moment of the batch, or, in the case above, an earlier one). A
//! pipeline that adds events (a handler returning new events) has them saved
//! then, not at the moment the stream became due.
//! [`Replay::per_moment`] is the one-transaction-per-moment replay itself (the
//! reference the tests compare against).

use chrono::{DateTime, Utc};
use std::sync::Arc;
use winchester_core::{Clock, Event, ManualClock};
use winchester_storage::{ReplayAt, RetryPolicy};

use crate::pipeline::PipelineRunner;
use crate::{EngineError, EventOutcome, TriggerManager, Worker, WorkerOptions};

/// A replay in progress. Feed events with [`Replay::push`] in file order and
/// end with [`Replay::finish`]; outcomes come back in the order pushed.
#[derive(Debug)]
pub struct Replay {
    tm: TriggerManager,
    clock: Arc<ManualClock>,
    worker: Option<Arc<Worker>>,
    /// The worker's clock: the moment it runs at.
    worker_clock: Arc<ManualClock>,
    /// Whether a batch may be committed while the worker runs (no pipeline
    /// adds events).
    overlap: bool,
    /// The worker's run in the background, if one is under way.
    running: Option<tokio::task::JoinHandle<Result<(), EngineError>>>,
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
        let worker_clock = Arc::new(ManualClock::new(clock.now()));
        Replay {
            tm,
            clock,
            worker: None,
            worker_clock,
            overlap: false,
            running: None,
            batch_size: batch_size.max(1),
            per_moment: false,
            pending: Vec::new(),
            moment: None,
            worker_ran: None,
            retry: RetryPolicy::new(),
        }
    }

    /// Runs a worker with `runner` and `opts` after the batches, taking every
    /// stream that is due, on a clock of its own (set to the moment it runs at).
    pub fn with_worker(mut self, runner: PipelineRunner, opts: WorkerOptions) -> Replay {
        self.overlap = !runner.may_add_events();
        let tm = self.tm.clone().with_clock(self.worker_clock.clone());
        self.worker = Some(Arc::new(Worker::new(tm, runner, opts)));
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
        self.worker.as_deref()
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
                self.work(m).await?;
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
        self.work_at(self.clock.now()).await?;
        Ok(out)
    }

    /// Lets the worker take every stream due at `moment` (after
    /// [`Replay::finish`]: say, once the last quiet streams have timed out),
    /// and waits for it.
    pub async fn work_at(&mut self, moment: DateTime<Utc>) -> Result<(), EngineError> {
        self.work(moment).await?;
        self.worker_done().await
    }

    async fn commit(&mut self) -> Result<Vec<EventOutcome>, EngineError> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        if !self.overlap {
            self.worker_done().await?;
        }
        // Through a database outage (a restart, a failover) the batch waits
        // and is tried again; a try whose commit went through but whose
        // answer was lost comes back as duplicates.
        let pending = std::mem::take(&mut self.pending);
        let tm = &self.tm;
        self.retry.retry("saving replayed events", || tm.add_events_at(pending.clone())).await
    }

    /// Starts the worker's run at `moment`, until nothing is due, once its
    /// run before has ended: in the background, or to the end (per moment).
    async fn work(&mut self, moment: DateTime<Utc>) -> Result<(), EngineError> {
        let Some(w) = self.worker.clone() else {
            return Ok(());
        };
        self.worker_done().await?;
        self.worker_clock.advance_to(moment);
        let run = async move {
            while w.run_once().await? > 0 {}
            Ok(())
        };
        if self.per_moment {
            return run.await;
        }
        self.running = Some(tokio::spawn(run));
        Ok(())
    }

    /// Waits for the worker's run in the background, if any.
    async fn worker_done(&mut self) -> Result<(), EngineError> {
        match self.running.take() {
            None => Ok(()),
            Some(run) => run.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
        }
    }
}

impl Drop for Replay {
    /// A replay dropped unfinished stops its worker (leases left behind run out).
    fn drop(&mut self) {
        if let Some(run) = &self.running {
            run.abort();
        }
    }
}
