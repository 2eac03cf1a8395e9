//! `winchester demo` and `winchester generate`.
//!
//! The demo generates OpenStack instance lifecycle notifications, ingests them
//! with the example configs (or yours), and runs a worker in the same process,
//! all on an event-time clock: simulated days pass in seconds, so streams fire
//! (audit events arrive) and expire (instances go quiet) as they would live.
//! With no database URL it uses an SQLite file in a temp dir: no server needed.
//! The notifications come from the simulator in [`winchester_sim`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use anyhow::{anyhow, Context};
use chrono::{DateTime, Duration, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use winchester::pipeline::PipelineRunner;
use winchester::{EventOutcome, Replay, TriggerManager, WorkerOptions};
use winchester_core::distiller::{parse_iso8601, Distiller};
use winchester_core::{Clock, LoadedConfig, ManualClock};
use winchester_sim::{SimOptions, Simulation};

/// What to generate: the simulator's options, under the name the `winchester`
/// program uses.
pub type GeneratorOptions = SimOptions;

/// The notifications of `winchester demo` and `winchester generate`: a
/// simulation rendered as raw notifications, sorted by timestamp.
pub fn generate(opts: &GeneratorOptions) -> Vec<Value> {
    Simulation::run(opts).notifications()
}

/// The example configuration shipped in `etc/`, built into the binary so the
/// demo runs anywhere.
const EXAMPLE_FILES: &[(&str, &str)] = &[
    ("winchester.yaml", include_str!("../../../etc/winchester.yaml")),
    ("triggers.yaml", include_str!("../../../etc/triggers.yaml")),
    ("pipelines.yaml", include_str!("../../../etc/pipelines.yaml")),
    ("event_definitions.yaml", include_str!("../../../etc/event_definitions.yaml")),
];

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// What to generate.
    pub generator: GeneratorOptions,
    /// Database; an SQLite file in a temp dir when `None`.
    pub database_url: Option<String>,
    /// A winchester.yaml to use instead of the built-in examples.
    pub config: Option<PathBuf>,
    /// Notifications per ingest batch.
    pub batch_size: usize,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Commit each moment alone (the slow reference replay) instead of in
    /// exact batches.
    pub per_moment: bool,
}

/// What the demo did.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSummary {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Where the data is.
    pub database: String,
    /// Notifications generated.
    pub notifications: u64,
    /// Events saved.
    pub events_ingested: u64,
    /// Duplicates, undistillable or rejected notifications.
    pub events_not_saved: u64,
    /// Distinct streams the events opened.
    pub streams_created: u64,
    /// Streams fired.
    pub streams_fired: u64,
    /// Streams expired.
    pub streams_expired: u64,
    /// Pipeline failures.
    pub errors: u64,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
    /// What the pipelines did: one row per trigger and action (`fire`/`expire`)
    /// with the pipeline that ran and how many streams it completed.
    pub pipeline_runs: Vec<PipelineRuns>,
}

/// Streams one trigger's fire or expire pipeline completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRuns {
    /// The trigger.
    pub trigger: String,
    /// `fire` or `expire`.
    pub action: String,
    /// The pipeline (`-` when the trigger has none for this action).
    pub pipeline: String,
    /// Streams completed.
    pub streams: u64,
}

impl DemoSummary {
    /// The summary as one JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "backend": self.backend, "database": self.database,
            "notifications": self.notifications, "events_ingested": self.events_ingested,
            "events_not_saved": self.events_not_saved, "streams_created": self.streams_created,
            "streams_fired": self.streams_fired, "streams_expired": self.streams_expired,
            "errors": self.errors, "elapsed_s": self.elapsed_s,
            "events_per_s": self.events_per_s(),
            "pipelines": self.pipeline_runs.iter().map(|r| json!({
                "trigger": r.trigger, "action": r.action, "pipeline": r.pipeline, "streams": r.streams,
            })).collect::<Vec<_>>(),
        })
    }

    fn events_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            (self.events_ingested as f64 / self.elapsed_s * 10.0).round() / 10.0
        } else {
            0.0
        }
    }

    /// The summary as a table.
    pub fn table(&self) -> String {
        let rows = [
            ("backend", format!("{} ({})", self.backend, self.database)),
            ("notifications generated", self.notifications.to_string()),
            ("events ingested", self.events_ingested.to_string()),
            ("not saved (duplicate/undistillable)", self.events_not_saved.to_string()),
            ("streams created", self.streams_created.to_string()),
            ("streams fired", self.streams_fired.to_string()),
            ("streams expired", self.streams_expired.to_string()),
            ("errors", self.errors.to_string()),
            ("elapsed", format!("{:.2} s", self.elapsed_s)),
            ("events/s", format!("{:.0}", self.events_per_s())),
        ];
        let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let mut out: String = rows.iter().map(|(k, v)| format!("{k:<w$}  {v}\n")).collect();
        if !self.pipeline_runs.is_empty() {
            out.push_str("\nwhat the pipelines did:\n");
            let tw = self.pipeline_runs.iter().map(|r| r.trigger.len()).max().unwrap_or(0);
            let pw = self.pipeline_runs.iter().map(|r| r.pipeline.len()).max().unwrap_or(0);
            for r in &self.pipeline_runs {
                out.push_str(&format!(
                    "  {:<tw$}  {:<6}  {:<pw$}  {} streams\n",
                    r.trigger, r.action, r.pipeline, r.streams
                ));
            }
        }
        out
    }
}

fn load_config(opts: &DemoOptions, dir: &Path) -> anyhow::Result<LoadedConfig> {
    let path = match &opts.config {
        Some(p) => p.clone(),
        None => {
            for (name, text) in EXAMPLE_FILES {
                std::fs::write(dir.join(name), text).with_context(|| format!("writing {name}"))?;
            }
            dir.join("winchester.yaml")
        }
    };
    let registry = winchester_handlers::registry();
    let known = |t: &str| registry.knows(t);
    LoadedConfig::load(&path, Some(&known)).map_err(|e| anyhow!("{e}"))
}

/// Runs the demo.
pub async fn run(opts: &DemoOptions) -> anyhow::Result<DemoSummary> {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("winchester-demo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cfg = load_config(opts, &dir)?;
    let url =
        opts.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", dir.join("winchester-demo.db").display()));
    let (backend, _) =
        winchester_backends::migrated(&winchester_backends::DatabaseOptions::direct(url.as_str()), 4).await?;
    let storage = backend.storage();
    let notifications = generate(&opts.generator);
    let first =
        notifications.first().and_then(|n| n["timestamp"].as_str()).and_then(parse_iso8601).unwrap_or_else(Utc::now);
    let clock = Arc::new(ManualClock::new(first));
    let mut tm = TriggerManager::new(storage, Arc::new(cfg.triggers.clone()), clock.clone() as Arc<dyn Clock>);
    let distiller_file = cfg.distiller_file.clone().ok_or_else(|| anyhow!("the config names no distiller_config"))?;
    let distiller = Distiller::load_flavoured(
        &distiller_file,
        cfg.main.catch_all_notifications,
        cfg.main.distiller,
        &Default::default(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    tm = tm.with_distiller(Arc::new(distiller));
    let runner = PipelineRunner::new(winchester_handlers::registry(), cfg.clone());
    runner.validate().map_err(|e| anyhow!("{e}"))?;
    let mut wopts = WorkerOptions::from_config(&cfg.main);
    wopts.purge_completed = false;
    let mut replay = Replay::new(tm.clone(), clock.clone(), opts.batch_size).with_worker(runner, wopts);
    if opts.per_moment {
        replay = replay.per_moment();
    }

    let bar = ProgressBar::new(notifications.len() as u64);
    if opts.progress {
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} notifications ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut summary = DemoSummary {
        backend: backend.name().into(),
        database: url.clone(),
        notifications: notifications.len() as u64,
        events_ingested: 0,
        events_not_saved: 0,
        streams_created: 0,
        streams_fired: 0,
        streams_expired: 0,
        errors: 0,
        elapsed_s: 0.0,
        pipeline_runs: Vec::new(),
    };
    let mut streams: HashSet<i64> = HashSet::new();
    let mut count = |outcomes: Vec<EventOutcome>, summary: &mut DemoSummary| {
        for o in outcomes {
            match o {
                EventOutcome::Saved { stream_ids, .. } => {
                    summary.events_ingested += 1;
                    streams.extend(stream_ids);
                }
                _ => summary.events_not_saved += 1,
            }
        }
    };
    // Replayed in exact batches: each event judged at its own time, the
    // worker run between batches (see winchester::replay).
    for (i, n) in notifications.iter().enumerate() {
        match tm.distill(n) {
            Ok(Some(event)) => count(replay.push(event).await?, &mut summary),
            Ok(None) | Err(_) => summary.events_not_saved += 1,
        }
        if i % 1000 == 999 {
            bar.set_position(i as u64 + 1);
            if let Some(w) = replay.worker() {
                let s = w.stats();
                bar.set_message(format!("{} fired, {} expired", s.fired, s.expired));
            }
        }
    }
    count(replay.finish().await?, &mut summary);
    // Let the last quiet streams time out.
    replay.work_at(clock.now() + Duration::days(2)).await?;
    let worker = replay.worker().ok_or_else(|| anyhow!("the demo's replay has a worker"))?;
    worker.close().await;
    bar.finish_and_clear();
    let s = worker.stats();
    summary.streams_created = streams.len() as u64;
    summary.streams_fired = s.fired;
    summary.streams_expired = s.expired;
    summary.errors = s.errors;
    summary.pipeline_runs = s
        .completed_by_trigger
        .iter()
        .map(|((trigger, action), n)| {
            let def = cfg.triggers.get(trigger);
            let pipeline = def.and_then(|d| match action {
                winchester_storage::Action::Fire => d.fire_pipeline.clone(),
                winchester_storage::Action::Expire => d.expire_pipeline.clone(),
            });
            PipelineRuns {
                trigger: trigger.clone(),
                action: action.as_str().to_string(),
                pipeline: pipeline.unwrap_or_else(|| "-".into()),
                streams: *n,
            }
        })
        .collect();
    summary.elapsed_s = (started.elapsed().as_secs_f64() * 100.0).round() / 100.0;
    if opts.database_url.is_none() {
        tracing::info!(dir = %dir.display(), "Demo database kept for inspection.");
    }
    Ok(summary)
}

/// The start of a simulated period ending now (`days` days ago, at midnight).
pub fn default_start(days: u32) -> DateTime<Utc> {
    Utc::now() - Duration::days(days as i64 + 1)
}
