//! The pipeline worker: takes ready streams, runs their pipelines, records the
//! outcome. Any number of workers on any number of hosts share one database;
//! every stream state change is a compare-and-set on its serial number, so a
//! worker that loses a race just moves on.

use crate::error::EngineError;
use crate::event_clock::StoredEventClock;
use crate::pipeline::{Env, PipelineRunner};
use crate::trigger_manager::TriggerManager;
use chrono::{DateTime, Utc};
use rand::seq::SliceRandom;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use winchester_core::timex::{TimeExpr, Vars};
use winchester_core::{Event, WinchesterConfig};
use winchester_storage::{Action, EventPlan, Finish, FinishOutcome, ReadyListener, Stream};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Most streams loaded per fire or expire query.
    pub batch_size: u32,
    /// Longest idle sleep (a notification or a due stream wakes it sooner).
    pub idle_delay: Duration,
    /// How long a taken stream is leased before another worker may reclaim it.
    pub lease: Duration,
    /// Delete completed streams instead of keeping them as `completed`.
    pub purge_completed: bool,
    /// Event trimming: cutoff expression (`$timestamp` = now) and batch size.
    pub trim: Option<(TimeExpr, u32)>,
    /// How often the statistics line is logged.
    pub statistics_period: Duration,
    /// Events read per page when loading a stream.
    pub event_page_size: u32,
}

impl WorkerOptions {
    /// Options from `winchester.yaml`.
    pub fn from_config(c: &WinchesterConfig) -> WorkerOptions {
        WorkerOptions {
            batch_size: c.pipeline_worker_batch_size,
            idle_delay: c.pipeline_worker_delay,
            lease: c.stream_lease_timeout,
            purge_completed: c.purge_completed_streams,
            trim: c.trim_events.then(|| (c.trim_events_age.clone(), c.trim_events_batch_size)),
            statistics_period: c.statistics_period,
            event_page_size: 1000,
        }
    }
}

/// Counters since the worker started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Ready streams loaded.
    pub loaded: u64,
    /// Streams fired (pipeline committed, stream completed).
    pub fired: u64,
    /// Streams expired.
    pub expired: u64,
    /// Pipeline runs that failed (stream left in error / expire_error).
    pub errors: u64,
    /// Streams another worker took first.
    pub lock_conflicts: u64,
    /// Runs whose lease ran out before they finished (another worker took over).
    pub lost_leases: u64,
    /// Events trimmed.
    pub trimmed: u64,
    /// Completed runs per (trigger, fire or expire).
    pub completed_by_trigger: std::collections::BTreeMap<(String, Action), u64>,
}

/// What processing one ready stream came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessOutcome {
    /// Pipeline committed and stream completed.
    Completed,
    /// Pipeline failed; stream in error / expire_error with this reason.
    Failed(String),
    /// Another worker holds it.
    Locked,
    /// Our lease ran out and another worker took it over; nothing was recorded.
    LostLease,
}

/// A pipeline worker.
#[derive(Debug)]
pub struct Worker {
    tm: TriggerManager,
    runner: PipelineRunner,
    opts: WorkerOptions,
    stats: Mutex<WorkerStats>,
    stopping: Arc<AtomicBool>,
    wake: Arc<Notify>,
    event_clock: Option<Arc<StoredEventClock>>,
}

impl Worker {
    /// A worker that plans pipeline output with `tm` (same storage, triggers, clock).
    pub fn new(tm: TriggerManager, runner: PipelineRunner, opts: WorkerOptions) -> Worker {
        Worker {
            tm,
            runner,
            opts,
            stats: Mutex::new(WorkerStats::default()),
            stopping: Arc::new(AtomicBool::new(false)),
            wake: Arc::new(Notify::new()),
            event_clock: None,
        }
    }

    /// Replay: "now" is the latest event timestamp in storage, read again
    /// before each pass, so archived streams fire and expire as they did live.
    pub fn with_event_clock(mut self, clock: Arc<StoredEventClock>) -> Worker {
        self.tm = self.tm.clone().with_clock(clock.clone());
        self.event_clock = Some(clock);
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> WorkerStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn bump(&self, f: impl FnOnce(&mut WorkerStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn now(&self) -> DateTime<Utc> {
        self.tm.clock().now()
    }

    /// Runs until `shutdown` completes: then takes no new stream, finishes the one
    /// in hand, and returns the counters.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<WorkerStats, EngineError> {
        let stopping = self.stopping.clone();
        let wake = self.wake.clone();
        let watcher = tokio::spawn(async move {
            shutdown.await;
            stopping.store(true, Ordering::SeqCst);
            wake.notify_waiters();
            wake.notify_one();
        });
        let result = self.run_loop().await;
        watcher.abort();
        result.map(|_| self.stats())
    }

    async fn run_loop(&self) -> Result<(), EngineError> {
        let storage = self.tm.storage().clone();
        let mut listener: Option<Box<dyn ReadyListener>> = None;
        let mut last_stats = Instant::now();
        let mut reported = WorkerStats::default();
        while !self.stopping.load(Ordering::SeqCst) {
            let worked = match self.run_once().await {
                Ok(n) => n,
                Err(EngineError::Storage(e)) if e.is_retryable() => {
                    tracing::warn!(error = %e, "Database unavailable; retrying in 5s.");
                    listener = None;
                    self.sleep(Duration::from_secs(5)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if last_stats.elapsed() >= self.opts.statistics_period {
                let s = self.stats();
                tracing::info!(
                    loaded = s.loaded - reported.loaded,
                    fired = s.fired - reported.fired,
                    expired = s.expired - reported.expired,
                    errors = s.errors - reported.errors,
                    lock_conflicts = s.lock_conflicts - reported.lock_conflicts,
                    "Loaded {} streams. Fired {}, Expired {}.",
                    s.loaded - reported.loaded,
                    s.fired - reported.fired,
                    s.expired - reported.expired
                );
                reported = s;
                last_stats = Instant::now();
                self.tm.debug().log_dump();
            }
            if worked > 0 || self.stopping.load(Ordering::SeqCst) {
                continue;
            }
            // Idle: sleep until the next stream is due, a notification, or the delay.
            let now = self.now();
            let mut wait = self.opts.idle_delay;
            if let Ok(Some(due)) = storage.next_due(now).await {
                let until = (due - now).to_std().unwrap_or_default() + Duration::from_millis(5);
                wait = wait.min(until);
            }
            if listener.is_none() {
                listener = storage.ready_listener().await.ok();
            }
            match listener.as_mut() {
                Some(l) => {
                    let woke = tokio::select! {
                        r = l.wait(wait) => r,
                        _ = self.wake.notified() => Ok(false),
                    };
                    if woke.is_err() {
                        listener = None;
                    }
                }
                None => self.sleep(wait).await,
            }
        }
        Ok(())
    }

    async fn sleep(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {},
            _ = self.wake.notified() => {},
        }
    }

    /// One pass: fire what is ready, expire what is due, trim. Returns how many
    /// streams were handled (0 means idle).
    pub async fn run_once(&self) -> Result<usize, EngineError> {
        if let Some(clock) = &self.event_clock {
            clock.refresh().await?;
        }
        let mut n = 0;
        for action in [Action::Fire, Action::Expire] {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            let mut ready = self.tm.storage().ready_streams(action, self.now(), self.opts.batch_size).await?;
            self.bump(|s| s.loaded += ready.len() as u64);
            ready.shuffle(&mut rand::thread_rng());
            for stream in &ready {
                if self.stopping.load(Ordering::SeqCst) {
                    break;
                }
                if self.process(stream, action).await? != ProcessOutcome::Locked {
                    n += 1;
                }
            }
        }
        if let Some((expr, limit)) = &self.opts.trim {
            let mut vars = Vars::new();
            vars.insert("timestamp".into(), self.now());
            if let Ok(v) = expr.eval(&vars) {
                let trimmed = self.tm.storage().trim_events(v.timestamp(), *limit).await?;
                self.bump(|s| s.trimmed += trimmed);
                n += trimmed as usize;
            }
        }
        Ok(n)
    }

    /// Takes one ready stream (if no other worker has) and fires or expires it.
    pub async fn process(&self, stream: &Stream, action: Action) -> Result<ProcessOutcome, EngineError> {
        let storage = self.tm.storage();
        let debug = self.tm.debug();
        let Some(claimed) = storage.claim(stream, action, self.now(), self.opts.lease).await? else {
            self.bump(|s| s.lock_conflicts += 1);
            debug.bump(&stream.trigger, "Locked", 1);
            crate::metrics::claim_conflict();
            return Ok(ProcessOutcome::Locked);
        };
        let timer = crate::metrics::RunTimer::start(stream, &claimed, action);
        let result = self.run_pipeline(&claimed, action).await?;
        let finish = match &result {
            Ok(plans) => Finish::Completed { purge: self.opts.purge_completed, new_events: plans },
            Err(reason) => Finish::Failed { reason },
        };
        let finished = storage.finish(&claimed, finish, self.now()).await?;
        timer.finish(&finished, result.is_ok(), self.now());
        match finished {
            FinishOutcome::LostLease => {
                tracing::warn!(
                    stream_id = claimed.id,
                    action = action.as_str(),
                    "Lease ran out before the run finished; another worker owns the stream now."
                );
                self.bump(|s| s.lost_leases += 1);
                debug.bump(&claimed.trigger, "Lost lease", 1);
                Ok(ProcessOutcome::LostLease)
            }
            FinishOutcome::Done(_) => match result {
                Ok(_) => {
                    tracing::debug!(stream_id = claimed.id, trigger = %claimed.trigger, action = action.as_str(), "Stream done.");
                    self.bump(|s| {
                        match action {
                            Action::Fire => s.fired += 1,
                            Action::Expire => s.expired += 1,
                        }
                        *s.completed_by_trigger.entry((claimed.trigger.clone(), action)).or_default() += 1;
                    });
                    debug.bump(
                        &claimed.trigger,
                        if action == Action::Fire { "Streams fired" } else { "Streams expired" },
                        1,
                    );
                    Ok(ProcessOutcome::Completed)
                }
                Err(reason) => {
                    tracing::warn!(stream_id = claimed.id, trigger = %claimed.trigger, action = action.as_str(), %reason, "Stream failed.");
                    self.bump(|s| s.errors += 1);
                    debug.bump(&claimed.trigger, "Pipeline error", 1);
                    Ok(ProcessOutcome::Failed(reason))
                }
            },
        }
    }

    /// Runs the stream's pipeline. Outer error: storage trouble; inner error: the
    /// reason the run failed; inner ok: the pipeline's new events, planned.
    async fn run_pipeline(
        &self,
        stream: &Stream,
        action: Action,
    ) -> Result<Result<Vec<EventPlan>, String>, EngineError> {
        let Some(trigger) = self.tm.triggers().get(&stream.trigger) else {
            return Ok(Err(format!("unknown trigger definition {:?}", stream.trigger)));
        };
        let pipeline = match action {
            Action::Fire => &trigger.fire_pipeline,
            Action::Expire => &trigger.expire_pipeline,
        };
        let Some(pipeline) = pipeline else {
            tracing::debug!(stream_id = stream.id, trigger = %stream.trigger, "No {} pipeline.", action.as_str());
            return Ok(Ok(vec![]));
        };
        let events = self.load_events(stream.id).await?;
        let mut env = Env {
            stream_id: stream.id,
            stream_name: stream.trigger.clone(),
            action,
            distinguishing_traits: stream.dist_traits.clone(),
            idempotency_key: format!("winchester-stream-{}-{}", stream.id, action.as_str()),
            values: Default::default(),
        };
        let new_events = match self.runner.run(pipeline, events, &mut env).await {
            Ok(n) => n,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let mut plans = Vec::with_capacity(new_events.len());
        for e in new_events {
            match self.tm.plan(e) {
                Ok(p) => plans.push(p),
                Err(err) => return Ok(Err(format!("pipeline {pipeline:?} produced an invalid event: {err}"))),
            }
        }
        Ok(Ok(plans))
    }

    async fn load_events(&self, stream_id: i64) -> Result<Vec<Event>, EngineError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let (page, last) = self.tm.storage().stream_events(stream_id, after, self.opts.event_page_size).await?;
            let done = (page.len() as u32) < self.opts.event_page_size;
            all.extend(page);
            if done || last.is_none() {
                return Ok(all);
            }
            after = last;
        }
    }
}
