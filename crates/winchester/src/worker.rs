//! The pipeline worker: takes ready streams, runs their pipelines, records the
//! outcome. Any number of workers on any number of hosts share one database;
//! every stream state change is a compare-and-set on its serial number, so a
//! worker that loses a race just moves on.

use crate::error::EngineError;
use crate::event_clock::StoredEventClock;
use crate::metrics::RunTimer;
use crate::pipeline::{Env, HandlerContext, LeaseLostSwitch, LeaseWatch, PipelineError, PipelineRunner};
use crate::trigger_manager::TriggerManager;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use winchester_core::pipeline_config::HandlerEntry;
use winchester_core::timex::{TimeExpr, Vars};
use winchester_core::version::VersionedDefinition;
use winchester_core::{Event, LoadedConfig, TriggerDefinition, WinchesterConfig};
use winchester_storage::{Action, Claimed, EventPlan, Finish, FinishOutcome, ReadyListener, Stream, TriggerScope};

/// The triggers whose streams are claimed together: one per distinct
/// `priority`, highest first. Priority 0 also takes the streams of triggers
/// no longer configured.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PriorityLevel {
    priority: i32,
    /// `true`: every trigger except `names` (priority 0).
    except: bool,
    names: Vec<String>,
}

impl PriorityLevel {
    /// The levels of `(trigger name, priority)` pairs, highest first; empty
    /// when every trigger has the same priority (claims then take any stream).
    fn of<'a>(triggers: impl Iterator<Item = (&'a str, i32)>) -> Vec<PriorityLevel> {
        let mut by: std::collections::BTreeMap<i32, Vec<String>> = Default::default();
        for (name, priority) in triggers {
            by.entry(priority).or_default().push(name.to_string());
        }
        if by.len() <= 1 {
            return vec![];
        }
        let prioritized: Vec<String> = by.iter().filter(|(p, _)| **p != 0).flat_map(|(_, n)| n.clone()).collect();
        by.insert(0, prioritized);
        by.into_iter().rev().map(|(priority, names)| PriorityLevel { priority, except: priority == 0, names }).collect()
    }

    fn scope(&self) -> TriggerScope<'_> {
        if self.except {
            TriggerScope::Except(&self.names)
        } else {
            TriggerScope::Only(&self.names)
        }
    }
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Most streams claimed per fire or expire statement.
    pub batch_size: u32,
    /// Most pipelines run at once.
    pub concurrency: usize,
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
}

impl WorkerOptions {
    /// Options from `winchester.yaml`.
    pub fn from_config(c: &WinchesterConfig) -> WorkerOptions {
        WorkerOptions {
            batch_size: c.pipeline_worker_batch_size,
            concurrency: c.pipeline_worker_concurrency.max(1) as usize,
            idle_delay: c.pipeline_worker_delay,
            lease: c.stream_lease_timeout,
            purge_completed: c.purge_completed_streams,
            trim: c.trim_events.then(|| (c.trim_events_age.clone(), c.trim_events_batch_size)),
            statistics_period: c.statistics_period,
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

impl ProcessOutcome {
    /// The `outcome` label of `winchester_streams_finished_total`; none for a
    /// stream another worker holds (nothing ran).
    pub fn metric_label(&self) -> Option<&'static str> {
        match self {
            ProcessOutcome::Completed => Some("completed"),
            ProcessOutcome::Failed(_) => Some("failed"),
            ProcessOutcome::LostLease => Some("lost_lease"),
            ProcessOutcome::Locked => None,
        }
    }
}

/// A stream this worker holds while its pipeline runs: what the heartbeat renews.
#[derive(Debug)]
struct Held {
    serial: i32,
    /// When the lease was last set (claim or renewal), by this process's clock.
    renewed: Instant,
    lost: LeaseLostSwitch,
    /// Its finish is being recorded: no more renewals (the serial is about to move).
    finishing: bool,
}

/// Most finished runs recorded in one call.
const FINISH_BATCH: usize = 500;

/// Most full batches one pass takes per action before turning to the other
/// action, so a backlog of one cannot hold up the other for long.
const BATCHES_PER_PASS: usize = 4;

/// Claimed streams, held (their leases renewed by the heartbeat) until
/// released, with the events of those that have a pipeline.
struct Batch {
    streams: Vec<Stream>,
    /// Each stream's definition (of its own version), or why it has none.
    defs: Vec<Result<StreamDefinition, DefinitionError>>,
    events: HashMap<i64, Vec<Event>>,
    watches: Vec<LeaseWatch>,
}

/// How a pipeline run ended.
enum RunResult {
    /// Every handler committed: the pipeline's new events, planned.
    Done(Vec<EventPlan>),
    /// The run failed, for this reason.
    Failed(String),
    /// The lease was lost; everything was rolled back.
    LeaseLost,
}

/// Why a stream has no definition to run: its run fails with this reason.
#[derive(Debug, Clone, thiserror::Error)]
enum DefinitionError {
    /// Its version is not in `trigger_version`.
    #[error("trigger {trigger:?} version {version} is not recorded in the database")]
    NotRecorded { trigger: String, version: String },
    /// Its stored version cannot be parsed.
    #[error("stored definition cannot be read: {0}")]
    Unreadable(String),
    /// Its definition has no trigger of its name.
    #[error("unknown trigger definition {0:?}")]
    UnknownTrigger(String),
}

/// Where a stream's definition comes from: the configuration in force (the
/// stream's version is current, or it has none), or its own older version.
#[derive(Debug, Clone)]
enum StreamDefinition {
    Current(Arc<LoadedConfig>),
    Version(Arc<VersionedDefinition>),
}

impl StreamDefinition {
    fn trigger(&self, name: &str) -> Option<&TriggerDefinition> {
        match self {
            StreamDefinition::Current(c) => c.triggers.get(name).map(|t| &**t),
            StreamDefinition::Version(v) => Some(&v.trigger),
        }
    }

    fn pipeline(&self, name: &str) -> Option<&[HandlerEntry]> {
        match self {
            StreamDefinition::Current(c) => c.pipelines.get(name),
            StreamDefinition::Version(v) => v.pipelines.get(name),
        }
    }

    fn handler_types(&self) -> &BTreeMap<String, String> {
        match self {
            StreamDefinition::Current(c) => &c.main.pipeline_handlers,
            StreamDefinition::Version(v) => &v.handler_types,
        }
    }

    /// The pipeline for `action`: `Err` when the trigger is unknown, `Ok(None)`
    /// when it has no such pipeline.
    fn pipeline_of(&self, stream: &Stream, action: Action) -> Result<Option<String>, DefinitionError> {
        let Some(trigger) = self.trigger(&stream.trigger) else {
            return Err(DefinitionError::UnknownTrigger(stream.trigger.clone()));
        };
        Ok(match action {
            Action::Fire => trigger.fire_pipeline.clone(),
            Action::Expire => trigger.expire_pipeline.clone(),
        })
    }
}

/// A pipeline worker.
#[derive(Debug)]
pub struct Worker {
    held: Mutex<std::collections::HashMap<i64, Held>>,
    /// Older definition versions read from the database, parsed once.
    versions: Mutex<HashMap<(String, String), Arc<VersionedDefinition>>>,
    /// A reloaded configuration, swapped in before the next pass.
    pending: Mutex<Option<Arc<LoadedConfig>>>,
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
            held: Mutex::new(Default::default()),
            versions: Mutex::new(Default::default()),
            pending: Mutex::new(None),
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

    /// Takes a reloaded configuration: records its definition versions, then
    /// swaps it in before the next pass (never during one). Streams already
    /// open keep their own versions' rules (see docs/configuration.md).
    pub async fn reload(&self, config: LoadedConfig) -> Result<(), EngineError> {
        crate::live::record_versions(&**self.tm.storage(), &config, self.now()).await?;
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(config));
        self.wake.notify_one();
        Ok(())
    }

    /// Swaps in a configuration [`Worker::reload`] left, if any.
    fn apply_pending(&self) {
        let Some(config) = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let distiller = self.tm.definitions().distiller.clone();
        self.tm.set_definitions(Arc::new(config.triggers.clone()), distiller);
        self.runner.set_config(config);
        tracing::info!("Configuration reloaded.");
    }

    /// The definition a stream fires and expires by: the configuration in
    /// force when the stream's version is current (or it has none), else its
    /// own version, read from the database once. `Ok(Err(reason))`: it cannot
    /// be found or read (the run fails with that reason).
    async fn definition_of(
        &self,
        current: &Arc<LoadedConfig>,
        stream: &Stream,
    ) -> Result<Result<StreamDefinition, DefinitionError>, EngineError> {
        let Some(version) = &stream.version else { return Ok(Ok(StreamDefinition::Current(current.clone()))) };
        let in_force = current.triggers.get(&stream.trigger).and_then(|t| t.version.as_ref());
        if in_force == Some(version) {
            return Ok(Ok(StreamDefinition::Current(current.clone())));
        }
        let key = (stream.trigger.clone(), version.clone());
        if let Some(v) = self.versions.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Ok(StreamDefinition::Version(v.clone())));
        }
        let Some(stored) = self.tm.storage().trigger_version(&stream.trigger, version).await? else {
            return Ok(Err(DefinitionError::NotRecorded { trigger: stream.trigger.clone(), version: version.clone() }));
        };
        match stored.definition.parse() {
            Ok(v) => {
                let v = Arc::new(v);
                self.versions.lock().unwrap_or_else(|e| e.into_inner()).insert(key, v.clone());
                Ok(Ok(StreamDefinition::Version(v)))
            }
            Err(e) => Ok(Err(DefinitionError::Unreadable(e.to_string()))),
        }
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
    /// in hand, releases the handlers' shared resources ([`Worker::close`]) and
    /// returns the counters.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<WorkerStats, EngineError> {
        let stopping = self.stopping.clone();
        let wake = self.wake.clone();
        let watcher = tokio::spawn(async move {
            shutdown.await;
            stopping.store(true, Ordering::SeqCst);
            wake.notify_waiters();
            wake.notify_one();
        });
        let result = self.with_heartbeat(self.run_loop()).await;
        watcher.abort();
        self.close().await;
        result.map(|_| self.stats())
    }

    /// The resources this worker's handlers share (its runner's context).
    pub fn handler_context(&self) -> &HandlerContext {
        self.runner.context()
    }

    /// Releases the resources the handlers share (closes their connections,
    /// stops their threads): [`Worker::run`] does when it returns; call it
    /// after driving the worker with [`Worker::run_once`]. A later run makes
    /// them again.
    pub async fn close(&self) {
        self.runner.context().shutdown().await;
    }

    async fn run_loop(&self) -> Result<(), EngineError> {
        let storage = self.tm.storage().clone();
        let mut listener: Option<Box<dyn ReadyListener>> = None;
        let mut last_stats = Instant::now();
        let mut reported = WorkerStats::default();
        let mut retry = winchester_storage::RetryPolicy::new();
        while !self.stopping.load(Ordering::SeqCst) {
            let worked = match self.pass().await {
                Ok(n) => {
                    retry.succeeded();
                    n
                }
                Err(EngineError::Storage(e)) if e.is_retryable() => {
                    let wait = retry.failed("worker pass", &e);
                    listener = None;
                    self.sleep(wait).await;
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

    /// Runs `work` while renewing the leases of the streams in hand every third
    /// of the lease.
    async fn with_heartbeat<T>(&self, work: impl Future<Output = T>) -> T {
        tokio::select! {
            r = work => r,
            never = self.heartbeat() => match never {},
        }
    }

    /// Renews the leases of the streams in hand, in one statement per beat. A
    /// stream whose renewal was refused (another worker holds it now) is marked
    /// lost at once; when renewals fail (database trouble), a stream is marked
    /// lost once two thirds of its lease have passed since it was last renewed,
    /// so its run rolls back before anyone else may take it.
    async fn heartbeat(&self) -> std::convert::Infallible {
        let period = (self.opts.lease / 3).max(Duration::from_millis(10));
        let mut wait = period;
        loop {
            tokio::time::sleep(wait).await;
            let held: Vec<(i64, i32)> =
                self.held_lock().iter().filter(|(_, h)| !h.finishing).map(|(id, h)| (*id, h.serial)).collect();
            if held.is_empty() {
                wait = period;
                continue;
            }
            let asked = Instant::now();
            let until = self.now() + chrono::Duration::from_std(self.opts.lease).unwrap_or(chrono::Duration::days(1));
            match self.tm.storage().renew_leases(&held, until).await {
                Ok(renewed) => {
                    let renewed: std::collections::HashSet<i64> = renewed.into_iter().collect();
                    let mut map = self.held_lock();
                    for (id, serial) in held {
                        let Some(h) = map.get_mut(&id).filter(|h| h.serial == serial && !h.finishing) else {
                            continue;
                        };
                        if renewed.contains(&id) {
                            h.renewed = asked;
                        } else {
                            tracing::warn!(
                                stream_id = id,
                                "Lease renewal refused: another worker holds the stream now; abandoning the run."
                            );
                            h.lost.mark_lost();
                        }
                    }
                    wait = period;
                }
                Err(e) => {
                    let limit = self.opts.lease * 2 / 3;
                    let map = self.held_lock();
                    for (id, h) in map.iter().filter(|(_, h)| h.renewed.elapsed() >= limit) {
                        tracing::warn!(stream_id = id, error = %e, "Lease renewal failed for too long; abandoning the run before the lease runs out.");
                        h.lost.mark_lost();
                    }
                    tracing::warn!(error = %e, streams = map.len(), "Lease renewal failed; trying again.");
                    wait = (period / 4).max(Duration::from_millis(10));
                }
            }
        }
    }

    fn held_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One pass: fire what is ready, expire what is due, trim. Returns how many
    /// streams were handled (0 means idle).
    pub async fn run_once(&self) -> Result<usize, EngineError> {
        self.with_heartbeat(self.pass()).await
    }

    async fn pass(&self) -> Result<usize, EngineError> {
        self.apply_pending();
        if let Some(clock) = &self.event_clock {
            clock.refresh().await?;
        }
        let mut n = 0;
        for action in [Action::Fire, Action::Expire] {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            n += self.drain(action).await?;
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

    /// Claims up to a batch of streams ready for `action`: those of triggers
    /// with a higher `priority` first (see [`PriorityLevel`]), oldest due first
    /// within a priority.
    async fn claim_ready(&self, action: Action) -> Result<Vec<Claimed>, EngineError> {
        let now = self.now();
        let (lease, limit) = (now + self.lease(), self.opts.batch_size);
        let storage = self.tm.storage();
        let levels = PriorityLevel::of(self.tm.triggers().iter().map(|t| (t.name.as_str(), t.priority)));
        if levels.is_empty() {
            return Ok(storage.claim_ready(action, now, lease, limit).await?);
        }
        let mut claimed = Vec::new();
        for level in &levels {
            let left = limit.saturating_sub(claimed.len() as u32);
            if left == 0 {
                break;
            }
            claimed.extend(storage.claim_ready_among(action, now, lease, left, level.scope()).await?);
        }
        Ok(claimed)
    }

    /// Takes one ready stream (if no other worker has) and fires or expires it,
    /// renewing its lease while the pipeline runs.
    pub async fn process(&self, stream: &Stream, action: Action) -> Result<ProcessOutcome, EngineError> {
        self.with_heartbeat(self.process_one(stream, action)).await
    }

    async fn process_one(&self, stream: &Stream, action: Action) -> Result<ProcessOutcome, EngineError> {
        let Some(claimed) = self.tm.storage().claim(stream, action, self.now(), self.opts.lease).await? else {
            self.bump(|s| s.lock_conflicts += 1);
            self.tm.debug().bump(&stream.trigger, "Locked", 1);
            crate::metrics::claim_conflict();
            return Ok(ProcessOutcome::Locked);
        };
        if stream.state == action.working_state() {
            crate::metrics::lease_reclaimed();
        }
        let mut out = self.run_claimed(vec![claimed], action).await?;
        Ok(out.pop().unwrap_or(ProcessOutcome::LostLease))
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.opts.lease).unwrap_or(chrono::Duration::days(1))
    }

    /// Runs the pipelines of claimed streams, up to `concurrency` at once, with
    /// their events loaded in one query, and records their ends in batches (the
    /// runs done at that moment). The heartbeat renews their leases meanwhile.
    /// Takes up to [`BATCHES_PER_PASS`] batches of streams ready for
    /// `action`: while one batch's pipelines run and its finishes are
    /// recorded, the next batch is claimed and its events loaded (on another
    /// connection), so the database and the pipelines work at the same time.
    /// Returns how many streams were handled.
    async fn drain(&self, action: Action) -> Result<usize, EngineError> {
        let mut batch = self.take_batch(action).await?;
        let mut handled = 0;
        for taken in 1..=BATCHES_PER_PASS {
            let full = batch.streams.len() as u32 >= self.opts.batch_size;
            if !full || taken == BATCHES_PER_PASS || self.stopping.load(Ordering::SeqCst) {
                return Ok(handled + self.finish_batch(batch, action).await?.len());
            }
            match futures::join!(self.finish_batch(batch, action), self.take_batch(action)) {
                (Ok(done), Ok(next)) => {
                    handled += done.len();
                    batch = next;
                }
                (Err(e), Ok(next)) => {
                    self.release(&next.streams);
                    return Err(e);
                }
                (Err(e), Err(_)) | (Ok(_), Err(e)) => return Err(e),
            }
        }
        Ok(handled)
    }

    /// Claims a batch of ready streams (see [`Worker::claim_ready`]) and
    /// prepares it (see [`Worker::prepare`]).
    async fn take_batch(&self, action: Action) -> Result<Batch, EngineError> {
        let claimed = self.claim_ready(action).await?;
        self.bump(|s| s.loaded += claimed.len() as u64);
        let streams = claimed
            .into_iter()
            .map(|c| {
                if c.reclaimed {
                    crate::metrics::lease_reclaimed();
                }
                c.stream
            })
            .collect();
        self.prepare(streams, action).await
    }

    /// Holds claimed streams (the heartbeat renews their leases from now on)
    /// and loads the events of those with a pipeline for `action`, in one query.
    async fn prepare(&self, streams: Vec<Stream>, action: Action) -> Result<Batch, EngineError> {
        let mut watches = Vec::with_capacity(streams.len());
        {
            let mut held = self.held_lock();
            for s in &streams {
                let (switch, watch) = LeaseWatch::new();
                held.insert(
                    s.id,
                    Held { serial: s.state_serial_no, renewed: Instant::now(), lost: switch, finishing: false },
                );
                watches.push(watch);
            }
        }
        // One snapshot of the configuration for the whole batch.
        let current = self.runner.config();
        let mut defs = Vec::with_capacity(streams.len());
        for s in &streams {
            match self.definition_of(&current, s).await {
                Ok(d) => defs.push(d),
                Err(e) => {
                    self.release(&streams);
                    return Err(e);
                }
            }
        }
        let with_pipeline: Vec<i64> = streams
            .iter()
            .zip(&defs)
            .filter(|(s, d)| matches!(d.as_ref().map(|d| d.pipeline_of(s, action)), Ok(Ok(Some(_)))))
            .map(|(s, _)| s.id)
            .collect();
        let loaded =
            if with_pipeline.is_empty() { Ok(vec![]) } else { self.tm.storage().load_events(&with_pipeline).await };
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                self.release(&streams);
                return Err(e.into());
            }
        };
        let mut events: HashMap<i64, Vec<Event>> = HashMap::new();
        for (id, e) in loaded {
            events.entry(id).or_default().push(e);
        }
        Ok(Batch { streams, defs, events, watches })
    }

    /// Stops renewing the leases of these streams.
    fn release(&self, streams: &[Stream]) {
        let mut held = self.held_lock();
        for s in streams {
            held.remove(&s.id);
        }
    }

    async fn run_claimed(&self, claimed: Vec<Stream>, action: Action) -> Result<Vec<ProcessOutcome>, EngineError> {
        if claimed.is_empty() {
            return Ok(vec![]);
        }
        let batch = self.prepare(claimed, action).await?;
        self.finish_batch(batch, action).await
    }

    /// Runs a prepared batch's pipelines, records their ends, then releases it.
    async fn finish_batch(&self, batch: Batch, action: Action) -> Result<Vec<ProcessOutcome>, EngineError> {
        let Batch { streams, defs, mut events, watches } = batch;
        let result = self.run_and_record(&streams, defs, &mut events, watches, action).await;
        self.release(&streams);
        result
    }

    async fn run_and_record(
        &self,
        claimed: &[Stream],
        defs: Vec<Result<StreamDefinition, DefinitionError>>,
        events: &mut HashMap<i64, Vec<Event>>,
        watches: Vec<LeaseWatch>,
        action: Action,
    ) -> Result<Vec<ProcessOutcome>, EngineError> {
        // Boxed so the spawned worker future stays provably `Send`.
        type Run<'a> =
            Pin<Box<dyn Future<Output = (&'a Stream, RunTimer, Result<RunResult, EngineError>)> + Send + 'a>>;
        let runs: Vec<Run<'_>> = claimed
            .iter()
            .zip(watches)
            .zip(defs)
            .map(|((s, lease), def)| {
                let evs = events.remove(&s.id).unwrap_or_default();
                Box::pin(async move {
                    let timer = RunTimer::start(s, action);
                    (s, timer, self.run_pipeline(s, def, action, evs, &lease).await)
                }) as Run<'_>
            })
            .collect();
        // The runs are driven on their own while finished ones are recorded,
        // so a slow record (the database away, retried until it is back) never
        // stalls a handler in the middle of its work.
        let (ended_tx, mut ended_rx) = tokio::sync::mpsc::unbounded_channel();
        let run_all = async move {
            let mut done = futures::stream::iter(runs).buffer_unordered(self.opts.concurrency);
            while let Some(run) = done.next().await {
                // The receiver lives as long as this call: sending cannot fail.
                let _ = ended_tx.send(run);
            }
        };
        let record_all = async {
            let mut outcomes = Vec::with_capacity(claimed.len());
            while let Some(first) = ended_rx.recv().await {
                let mut chunk = vec![first];
                while chunk.len() < FINISH_BATCH {
                    match ended_rx.try_recv() {
                        Ok(run) => chunk.push(run),
                        Err(_) => break,
                    }
                }
                let mut ended = Vec::with_capacity(chunk.len());
                for (s, timer, r) in chunk {
                    ended.push((s, timer, r?));
                }
                outcomes.extend(self.record(ended, action).await?);
            }
            Ok(outcomes)
        };
        tokio::pin!(run_all, record_all);
        match futures::future::select(run_all, record_all).await {
            futures::future::Either::Left(((), record_all)) => record_all.await,
            // Recording ended first: it failed (the runs in flight are dropped,
            // as before), or every run had ended.
            futures::future::Either::Right((outcomes, _)) => outcomes,
        }
    }

    /// Records the ends of finished runs in one call and counts each outcome.
    async fn record(
        &self,
        ended: Vec<(&Stream, RunTimer, RunResult)>,
        action: Action,
    ) -> Result<Vec<ProcessOutcome>, EngineError> {
        let mut out = Vec::with_capacity(ended.len());
        let mut finishing = Vec::with_capacity(ended.len());
        {
            let mut held = self.held_lock();
            for (s, _, r) in &ended {
                let finish = match r {
                    RunResult::LeaseLost => continue,
                    RunResult::Done(plans) => Finish::Completed { purge: self.opts.purge_completed, new_events: plans },
                    RunResult::Failed(reason) => Finish::Failed { reason },
                };
                if let Some(h) = held.get_mut(&s.id) {
                    h.finishing = true;
                }
                finishing.push((*s, finish));
            }
        }
        // The handlers have committed: losing the database now must not lose
        // the record (the streams would be run again once their leases ran
        // out). Retried until it is back; a record that did commit before the
        // connection broke makes the retry's compare-and-set a no-op.
        let recorded = winchester_storage::RetryPolicy::new()
            .retry("recording finished runs", || self.tm.storage().finish_many(&finishing, self.now()))
            .await?;
        let recorded = winchester_storage::one_for_one("finish_many", finishing.len(), recorded)?;
        let mut recorded = recorded.into_iter();
        let now = self.now();
        for (s, timer, r) in ended {
            let outcome = match &r {
                RunResult::LeaseLost => self.lost_lease(s, action),
                RunResult::Done(_) | RunResult::Failed(_) => match recorded.next() {
                    Some(FinishOutcome::Done(_)) => self.ended(s, action, &r),
                    Some(FinishOutcome::LostLease) | None => self.lost_lease(s, action),
                },
            };
            if let Some(label) = outcome.metric_label() {
                timer.finish(label, now);
            }
            out.push(outcome);
        }
        Ok(out)
    }

    /// A run recorded on its stream: completed or failed.
    fn ended(&self, claimed: &Stream, action: Action, result: &RunResult) -> ProcessOutcome {
        let debug = self.tm.debug();
        match result {
            RunResult::Failed(reason) => {
                tracing::warn!(stream_id = claimed.id, trigger = %claimed.trigger, action = action.as_str(), %reason, "Stream failed.");
                self.bump(|s| s.errors += 1);
                debug.bump(&claimed.trigger, "Pipeline error", 1);
                ProcessOutcome::Failed(reason.clone())
            }
            _ => {
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
                ProcessOutcome::Completed
            }
        }
    }

    /// A run that no longer holds its stream: nothing was recorded.
    fn lost_lease(&self, claimed: &Stream, action: Action) -> ProcessOutcome {
        tracing::warn!(
            stream_id = claimed.id,
            action = action.as_str(),
            "Lease lost before the run finished; nothing recorded, another worker owns (or will own) the stream."
        );
        self.bump(|s| s.lost_leases += 1);
        self.tm.debug().bump(&claimed.trigger, "Lost lease", 1);
        ProcessOutcome::LostLease
    }

    /// Runs the pipeline of the stream's definition over its events. Error:
    /// storage trouble.
    async fn run_pipeline(
        &self,
        stream: &Stream,
        def: Result<StreamDefinition, DefinitionError>,
        action: Action,
        events: Vec<Event>,
        lease: &LeaseWatch,
    ) -> Result<RunResult, EngineError> {
        let def = match def {
            Ok(d) => d,
            Err(reason) => return Ok(RunResult::Failed(reason.to_string())),
        };
        let pipeline = match def.pipeline_of(stream, action) {
            Err(reason) => return Ok(RunResult::Failed(reason.to_string())),
            Ok(None) => {
                tracing::debug!(stream_id = stream.id, trigger = %stream.trigger, "No {} pipeline.", action.as_str());
                return Ok(RunResult::Done(vec![]));
            }
            Ok(Some(p)) => p,
        };
        let mut env = Env {
            stream_id: stream.id,
            stream_name: stream.trigger.clone(),
            action,
            distinguishing_traits: stream.dist_traits.clone(),
            idempotency_key: format!("winchester-stream-{}-{}", stream.id, action.as_str()),
            values: Default::default(),
        };
        let Some(entries) = def.pipeline(&pipeline) else {
            return Ok(RunResult::Failed(PipelineError::UnknownPipeline(pipeline).to_string()));
        };
        let run = self.runner.run_handlers(&pipeline, entries, def.handler_types(), events, &mut env, lease);
        let new_events = match run.await {
            Ok(n) => n,
            Err(PipelineError::LeaseLost { .. }) => return Ok(RunResult::LeaseLost),
            Err(e) => return Ok(RunResult::Failed(e.to_string())),
        };
        let mut plans = Vec::with_capacity(new_events.len());
        for e in new_events {
            match self.tm.plan(e) {
                Ok(p) => plans.push(p),
                Err(err) => {
                    return Ok(RunResult::Failed(format!("pipeline {pipeline:?} produced an invalid event: {err}")))
                }
            }
        }
        Ok(RunResult::Done(plans))
    }
}

#[cfg(test)]
mod tests {
    use super::PriorityLevel;

    fn level(priority: i32, except: bool, names: &[&str]) -> PriorityLevel {
        PriorityLevel { priority, except, names: names.iter().map(|n| n.to_string()).collect() }
    }

    #[test]
    fn priority_levels_highest_first_with_zero_taking_the_rest() {
        assert!(PriorityLevel::of([("a", 0), ("b", 0)].into_iter()).is_empty());
        assert!(PriorityLevel::of([("a", 5), ("b", 5)].into_iter()).is_empty());
        assert_eq!(
            PriorityLevel::of([("a", 5), ("b", 0), ("c", -2), ("d", 5)].into_iter()),
            [level(5, false, &["a", "d"]), level(0, true, &["c", "a", "d"]), level(-2, false, &["c"])]
        );
        // No trigger at 0: a level for the rest (triggers no longer configured) still exists.
        assert_eq!(
            PriorityLevel::of([("a", 3), ("b", 1)].into_iter()),
            [level(3, false, &["a"]), level(1, false, &["b"]), level(0, true, &["b", "a"])]
        );
    }
}
