//! Prometheus metrics: every metric's name, help text and labels, and the
//! exporter, in one place. Code elsewhere calls the small functions here
//! (`metrics::stream_finished(...)`); without an installed exporter they cost
//! next to nothing.
//!
//! Naming follows Prometheus: `winchester_` prefix, base units (seconds),
//! `_total` on counters; labels are bounded sets (trigger, action, handler,
//! reason...), never stream ids or trait values.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use winchester_storage::outage::{self, Outage, OutageChange};
use winchester_storage::{Action, Storage, Stream, StreamState};

/// Events handed to the engine, by where they came from (`cli`, `amqp`, `pipeline`).
pub const EVENTS_RECEIVED: &str = "winchester_events_received_total";
/// Events saved.
pub const EVENTS_SAVED: &str = "winchester_events_saved_total";
/// Events whose message_id was already stored.
pub const EVENTS_DUPLICATE: &str = "winchester_events_duplicate_total";
/// Events not saved, by reason (`invalid`, `database`, `undistillable`, `not_json`).
pub const EVENTS_REJECTED: &str = "winchester_events_rejected_total";
/// Streams opened, by trigger.
pub const STREAMS_CREATED: &str = "winchester_streams_created_total";
/// Pipeline runs finished, by trigger, action and outcome (`completed`, `failed`, `lost_lease`).
pub const STREAMS_FINISHED: &str = "winchester_streams_finished_total";
/// Seconds from claim to recorded outcome, by trigger and action.
pub const PIPELINE_DURATION: &str = "winchester_pipeline_duration_seconds";
/// Seconds from a stream's due time (fire or expire timestamp) to its recorded outcome.
pub const FIRE_DELAY: &str = "winchester_fire_delay_seconds";
/// Handler failures (handle_events or commit), by handler name.
pub const HANDLER_ERRORS: &str = "winchester_handler_errors_total";
/// Ready streams another worker claimed first.
pub const CLAIM_CONFLICTS: &str = "winchester_claim_conflicts_total";
/// Streams taken over after another worker's lease ran out.
pub const LEASE_RECLAIMS: &str = "winchester_lease_reclaims_total";
/// Streams per trigger and state (counted in the database on an interval).
pub const STREAMS: &str = "winchester_streams";
/// Seconds since the oldest stream ready for an action (`fire`, `expire`)
/// fell due, 0 when none is waiting (read on the same interval).
pub const OLDEST_READY: &str = "winchester_oldest_ready_seconds";
/// AMQP messages dead-lettered, by reason.
pub const AMQP_DEAD_LETTERED: &str = "winchester_amqp_dead_lettered_total";
/// AMQP reconnections.
pub const AMQP_RECONNECTS: &str = "winchester_amqp_reconnects_total";
/// Configuration reloads (SIGHUP), by result (`applied`, `refused`).
pub const CONFIG_RELOADS: &str = "winchester_config_reloads_total";
/// `POST /v1/events` requests answered, by status code.
pub const HTTP_INGEST_REQUESTS: &str = "winchester_http_ingest_requests_total";
/// Events of `POST /v1/events` requests, by outcome (`ingested`, `duplicate`, `rejected`, `unavailable`).
pub const HTTP_INGEST_EVENTS: &str = "winchester_http_ingest_events_total";
/// Seconds from a `POST /v1/events` request's arrival to its answer.
pub const HTTP_INGEST_DURATION: &str = "winchester_http_ingest_duration_seconds";
/// Always 1; the version and the program (`pipeline-worker`,
/// `winchester-ingest`, `serve`) are labels.
pub const BUILD_INFO: &str = "winchester_build_info";
/// 1 while nothing in the process waits for the database, 0 while
/// something does (at start, or a retrying loop during an outage).
pub const DATABASE_UP: &str = "winchester_database_up";
/// Database outages the process met (times [`DATABASE_UP`] went to 0).
pub const DATABASE_OUTAGES: &str = "winchester_database_outages_total";
/// Seconds the hot standby `winchester serve` reads from lags behind the
/// primary (`database.read_url`); NaN while unknown.
pub const READ_REPLICA_LAG: &str = "winchester_read_replica_lag_seconds";
/// 1 while `winchester serve`'s reads go to the hot standby, 0 while they
/// fall back to the primary (lag beyond `max_read_lag`, a server unreachable).
pub const READ_REPLICA_USED: &str = "winchester_read_replica_used";
/// `debug_level` counters of a trigger (`Added events`, `Streams fired`, `Locked`...).
pub const TRIGGER_DEBUG: &str = "winchester_trigger_debug_total";
/// `debug_level` match/fire criteria checks of a trigger, by criteria group and result.
pub const TRIGGER_CHECKS: &str = "winchester_trigger_checks_total";

/// Every metric: (name, help). docs/operations.md lists the same table; a test
/// checks that each name appears there.
pub const ALL: &[(&str, &str)] = &[
    (EVENTS_RECEIVED, "Events handed to the engine, by source."),
    (EVENTS_SAVED, "Events saved."),
    (EVENTS_DUPLICATE, "Events whose message_id was already stored."),
    (EVENTS_REJECTED, "Events not saved, by reason."),
    (STREAMS_CREATED, "Streams opened, by trigger."),
    (STREAMS_FINISHED, "Pipeline runs finished, by trigger, action and outcome."),
    (PIPELINE_DURATION, "Seconds from claiming a stream to recording its outcome."),
    (FIRE_DELAY, "Seconds from a stream's due time to its recorded outcome."),
    (HANDLER_ERRORS, "Handler failures, by handler."),
    (CLAIM_CONFLICTS, "Ready streams another worker claimed first."),
    (LEASE_RECLAIMS, "Streams taken over after a lease ran out."),
    (STREAMS, "Streams per trigger and state."),
    (OLDEST_READY, "Seconds since the oldest stream ready for an action fell due; 0 when none waits."),
    (AMQP_DEAD_LETTERED, "AMQP messages dead-lettered, by reason."),
    (AMQP_RECONNECTS, "AMQP reconnections."),
    (CONFIG_RELOADS, "Configuration reloads (SIGHUP), by result."),
    (HTTP_INGEST_REQUESTS, "POST /v1/events requests answered, by status code."),
    (HTTP_INGEST_EVENTS, "Events of POST /v1/events requests, by outcome."),
    (HTTP_INGEST_DURATION, "Seconds from a POST /v1/events request's arrival to its answer."),
    (BUILD_INFO, "Build information, by version and program; always 1."),
    (DATABASE_UP, "1 while nothing in this process waits for the database, else 0."),
    (DATABASE_OUTAGES, "Database outages this process waited out or is waiting out."),
    (READ_REPLICA_LAG, "Seconds the hot standby serve reads from lags behind the primary; NaN while unknown."),
    (READ_REPLICA_USED, "1 while serve's reads go to the hot standby, 0 while they fall back to the primary."),
    (TRIGGER_DEBUG, "debug_level counters, by trigger and counter."),
    (TRIGGER_CHECKS, "debug_level criteria checks, by trigger, criteria and result."),
];

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the metrics exporter: {0}")]
pub struct MetricsError(String);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Describes every metric, sets the build info of `program`, starts the
/// counters without labels at 0 (so that dashboards and alerts find them
/// before the first event) and follows the database's availability.
fn describe(program: &'static str) {
    for (name, help) in ALL {
        let help = *help;
        match *name {
            PIPELINE_DURATION | FIRE_DELAY | HTTP_INGEST_DURATION => describe_histogram!(*name, Unit::Seconds, help),
            STREAMS | OLDEST_READY | BUILD_INFO | DATABASE_UP | READ_REPLICA_LAG | READ_REPLICA_USED => {
                describe_gauge!(*name, help)
            }
            _ => describe_counter!(*name, help),
        }
    }
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "program" => program).set(1.0);
    for name in [CLAIM_CONFLICTS, LEASE_RECLAIMS, DATABASE_OUTAGES] {
        counter!(name).increment(0);
    }
    for result in ["applied", "refused"] {
        counter!(CONFIG_RELOADS, "result" => result).increment(0);
    }
    if program == "winchester-ingest" {
        counter!(AMQP_RECONNECTS).increment(0);
    }
    gauge!(DATABASE_UP).set(if outage::waiting() { 0.0 } else { 1.0 });
    outage::observe(database_outage);
}

/// The process began or ended waiting for the database.
fn database_outage(change: OutageChange) {
    match change {
        OutageChange::Began => {
            gauge!(DATABASE_UP).set(0.0);
            counter!(DATABASE_OUTAGES).increment(1);
        }
        OutageChange::Ended(_) => gauge!(DATABASE_UP).set(1.0),
    }
}

fn builder() -> Result<PrometheusBuilder, MetricsError> {
    let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(PIPELINE_DURATION.into()), &buckets)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(FIRE_DELAY.into()), &buckets))
        .and_then(|b| {
            let fast = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
            b.set_buckets_for_metric(Matcher::Full(HTTP_INGEST_DURATION.into()), &fast)
        })
        .map_err(|e| MetricsError(e.to_string()))
}

/// Installs the process's recorder (once; later calls return the same
/// handle) so [`render`] has text to serve; `program` names the process in
/// [`BUILD_INFO`]. `winchester serve` serves it on its own `/metrics` route.
pub fn install(program: &'static str) -> Result<PrometheusHandle, MetricsError> {
    // One caller at a time: two first calls (tests in one process) must not
    // both try to set the global recorder.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let recorder = builder()?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| MetricsError(e.to_string()))?;
    let _ = HANDLE.set(handle.clone());
    describe(program);
    spawn_upkeep(handle.clone());
    Ok(handle)
}

/// Installs the recorder and serves `/metrics` on `addr` (pipeline-worker and
/// winchester-ingest with `--metrics-listen`; `program` as for [`install`]).
/// Must run inside a Tokio runtime.
pub fn serve(program: &'static str, addr: SocketAddr) -> Result<PrometheusHandle, MetricsError> {
    if HANDLE.get().is_some() {
        return Err(MetricsError("a metrics recorder is already installed".into()));
    }
    let (recorder, exporter) =
        builder()?.with_http_listener(addr).build().map_err(|e| MetricsError(format!("{addr}: {e}")))?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| MetricsError(e.to_string()))?;
    let _ = HANDLE.set(handle.clone());
    describe(program);
    tokio::spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!(error = ?e, "Metrics listener stopped.");
        }
    });
    Ok(handle)
}

/// Histograms keep their samples until rendered; render now and then so an
/// unscraped process does not grow.
fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            handle.run_upkeep();
        }
    });
}

/// The Prometheus text of every metric (empty before [`install`]).
pub fn render() -> String {
    HANDLE.get().map(|h| h.render()).unwrap_or_default()
}

/// Refreshes [`STREAMS`] from [`Storage::stream_counts`](winchester_storage::QueryStore::stream_counts) every `period` (a cheap
/// `GROUP BY` on an indexed column; states without streams read 0) and
/// [`OLDEST_READY`] from the oldest ready stream of each action (one index
/// probe each, as the console's). While this finds the database
/// unavailable, the process counts as waiting for it ([`DATABASE_UP`] 0, see
/// [`outage`]), so that a process that otherwise only answers requests
/// (`serve`) shows an outage too.
pub fn spawn_stream_gauge(storage: Arc<dyn Storage>, period: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut unavailable: Option<Outage> = None;
        loop {
            let refreshed = refresh_stream_gauges(storage.as_ref(), &mut seen).await;
            match &refreshed {
                Err(winchester_storage::StorageError::Unavailable(_)) => {
                    unavailable.get_or_insert_with(Outage::begin);
                }
                _ => unavailable = None,
            }
            match refreshed {
                Ok(()) => {}
                // An outage is logged by the program's own retrying loop.
                Err(e) if e.is_retryable() => tracing::debug!(error = %e, "Counting streams for metrics failed."),
                Err(e) => tracing::warn!(error = %e, "Counting streams for metrics failed."),
            }
            tokio::time::sleep(period).await;
        }
    })
}

/// Follows the standby `serve` reads from: [`READ_REPLICA_LAG`] and
/// [`READ_REPLICA_USED`] at every measurement of `router`.
pub fn spawn_replica_gauge(router: &winchester_storage::replica::ReadRouter) -> tokio::task::JoinHandle<()> {
    let mut status = router.subscribe();
    tokio::spawn(async move {
        loop {
            let now = status.borrow_and_update().clone();
            gauge!(READ_REPLICA_LAG).set(now.lag.map_or(f64::NAN, |l| l.as_secs_f64()));
            let used = now.target == winchester_storage::replica::ReadTarget::Standby;
            gauge!(READ_REPLICA_USED).set(if used { 1.0 } else { 0.0 });
            if status.changed().await.is_err() {
                return;
            }
        }
    })
}

/// One refresh of [`STREAMS`] (for every trigger `seen` so far) and [`OLDEST_READY`].
async fn refresh_stream_gauges(
    storage: &dyn Storage,
    seen: &mut BTreeSet<String>,
) -> Result<(), winchester_storage::StorageError> {
    let counts = storage.stream_counts().await?;
    seen.extend(counts.iter().map(|c| c.trigger.clone()));
    for trigger in seen.iter() {
        for state in StreamState::ALL {
            let n = counts.iter().find(|c| &c.trigger == trigger && c.state == state).map_or(0, |c| c.count.n);
            gauge!(STREAMS, "trigger" => trigger.clone(), "state" => state.as_str()).set(n as f64);
        }
    }
    let now = chrono::Utc::now();
    for action in [Action::Fire, Action::Expire] {
        let oldest = storage.ready_streams(action, now, 1).await?.into_iter().next();
        let age = oldest.map_or(0.0, |s| (now - due(&s, action)).to_std().unwrap_or_default().as_secs_f64());
        gauge!(OLDEST_READY, "action" => action.as_str()).set(age);
    }
    Ok(())
}

/// When a stream fell due for `action`: its fire time (for a fire, when it
/// has one) or its expire time.
fn due(stream: &Stream, action: Action) -> chrono::DateTime<chrono::Utc> {
    match action {
        Action::Fire => stream.fire_timestamp.unwrap_or(stream.expire_timestamp),
        Action::Expire => stream.expire_timestamp,
    }
}

/// Events handed to the engine from `source`.
pub fn events_received(source: &'static str, n: u64) {
    counter!(EVENTS_RECEIVED, "source" => source).increment(n);
}

/// How one event (or notification) handed to the engine ended, as the
/// ingest counters see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Saved.
    Saved,
    /// Already stored.
    Duplicate,
    /// Invalid, or a notification that could not be distilled.
    Invalid,
    /// Refused by the database.
    Failed,
    /// A notification no event definition covers.
    Undistilled,
}

/// Counts a batch handed to the engine from `source` and its outcomes.
pub fn ingested(source: &'static str, outcomes: impl IntoIterator<Item = Ingested>) {
    let (mut n, mut saved, mut dup, mut invalid, mut failed, mut undistilled) = (0, 0, 0, 0, 0, 0);
    for o in outcomes {
        n += 1;
        match o {
            Ingested::Saved => saved += 1,
            Ingested::Duplicate => dup += 1,
            Ingested::Invalid => invalid += 1,
            Ingested::Failed => failed += 1,
            Ingested::Undistilled => undistilled += 1,
        }
    }
    if n == 0 {
        return;
    }
    events_received(source, n);
    events_rejected("undistilled", undistilled);
    counter!(EVENTS_SAVED).increment(saved);
    counter!(EVENTS_DUPLICATE).increment(dup);
    events_rejected("invalid", invalid);
    events_rejected("database", failed);
}

/// Events not saved, with a short reason.
pub fn events_rejected(reason: &'static str, n: u64) {
    if n > 0 {
        counter!(EVENTS_REJECTED, "reason" => reason).increment(n);
    }
}

/// One answered `POST /v1/events`: its status, how many of its events ended
/// each way (`(outcome, n)`), and how long it took.
pub fn http_ingest(status: u16, events: &[(&'static str, u64)], took: Duration) {
    counter!(HTTP_INGEST_REQUESTS, "status" => status.to_string()).increment(1);
    for (outcome, n) in events {
        if *n > 0 {
            counter!(HTTP_INGEST_EVENTS, "outcome" => *outcome).increment(*n);
        }
    }
    histogram!(HTTP_INGEST_DURATION).record(took.as_secs_f64());
}

/// A stream opened for `trigger`.
pub fn stream_created(trigger: &str) {
    counter!(STREAMS_CREATED, "trigger" => trigger.to_string()).increment(1);
}

/// A handler failed.
pub fn handler_error(handler: &str) {
    counter!(HANDLER_ERRORS, "handler" => handler.to_string()).increment(1);
}

/// A ready stream was claimed by another worker first.
pub fn claim_conflict() {
    counter!(CLAIM_CONFLICTS).increment(1);
}

/// A message was dead-lettered.
pub fn amqp_dead_lettered(reason: &'static str, n: u64) {
    counter!(AMQP_DEAD_LETTERED, "reason" => reason).increment(n);
}

/// The AMQP connection was re-established.
pub fn amqp_reconnect() {
    counter!(AMQP_RECONNECTS).increment(1);
}

/// A `debug_level` counter moved.
pub fn trigger_debug(trigger: &str, counter_name: &str, n: u64) {
    counter!(TRIGGER_DEBUG, "trigger" => trigger.to_string(), "counter" => counter_name.to_string()).increment(n);
}

/// A `debug_level` criteria check.
pub fn trigger_check(trigger: &str, group: &'static str, passed: bool) {
    counter!(TRIGGER_CHECKS, "trigger" => trigger.to_string(), "criteria" => group, "result" => if passed { "passed" } else { "failed" })
        .increment(1);
}

/// A configuration reload was applied (`true`) or refused.
pub fn config_reload(applied: bool) {
    counter!(CONFIG_RELOADS, "result" => if applied { "applied" } else { "refused" }).increment(1);
}

/// A stream was taken over after the lease of the worker holding it ran out.
pub fn lease_reclaimed() {
    counter!(LEASE_RECLAIMS).increment(1);
}

/// Times one pipeline run of a claimed stream (the worker's one hook).
#[derive(Debug)]
pub struct RunTimer {
    started: Instant,
    trigger: String,
    action: Action,
    due: chrono::DateTime<chrono::Utc>,
}

impl RunTimer {
    /// Starts timing the run of `claimed`.
    pub fn start(claimed: &Stream, action: Action) -> RunTimer {
        RunTimer { started: Instant::now(), trigger: claimed.trigger.clone(), action, due: due(claimed, action) }
    }

    /// Records how the run ended (`outcome`: `completed`, `failed` or
    /// `lost_lease`) at `now` (the worker's clock, for the delay since the
    /// stream was due).
    pub fn finish(self, outcome: &'static str, now: chrono::DateTime<chrono::Utc>) {
        let labels = [("trigger", self.trigger), ("action", self.action.as_str().to_string())];
        counter!(STREAMS_FINISHED, "trigger" => labels[0].1.clone(), "action" => labels[1].1.clone(), "outcome" => outcome)
            .increment(1);
        histogram!(PIPELINE_DURATION, &labels).record(self.started.elapsed().as_secs_f64());
        let delay = (now - self.due).to_std().unwrap_or_default();
        histogram!(FIRE_DELAY, &labels).record(delay.as_secs_f64());
    }
}
