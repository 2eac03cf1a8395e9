//! The measurements. Each one runs in a fresh database (`wbench_<uuid>`) that
//! is dropped afterwards, whether it succeeded or not.

use crate::db::{self as pgb, EngineRows, ScratchDb};
use anyhow::{anyhow, bail, Context};
use async_trait::async_trait;
use chrono::{Duration as ChronoDuration, DurationRound, Utc};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use winchester::pipeline::{Env, Handler, HandlerError, PipelineRunner};
use winchester::{EventOutcome, TriggerManager, Worker, WorkerOptions};
use winchester_core::{Clock, Event, LoadedConfig, SystemClock, TraitValue, TriggerSet};
use winchester_postgres::PgStorage;

use super::workload::probe_event;
use crate::target::{with_scratch, Target};
use winchester_storage::Storage;

/// Runs `f` on a fresh database and drops the database afterwards.
pub(crate) async fn with_db<T, F, Fut>(admin: &str, f: F) -> anyhow::Result<T>
where
    F: FnOnce(ScratchDb) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let db = ScratchDb::create(admin, true).await.context("creating a scratch database")?;
    let result = f(db.clone()).await;
    if let Err(e) = db.drop_db().await {
        tracing::warn!(database = %db.name, error = %e, "Could not drop the scratch database.");
    }
    result
}

pub(crate) fn manager(storage: PgStorage, triggers: &Arc<TriggerSet>) -> TriggerManager {
    TriggerManager::new(Arc::new(storage), triggers.clone(), Arc::new(SystemClock) as Arc<dyn Clock>)
}

fn manager_on(storage: Arc<dyn Storage>, triggers: &Arc<TriggerSet>) -> TriggerManager {
    TriggerManager::new(storage, triggers.clone(), Arc::new(SystemClock) as Arc<dyn Clock>)
}

pub(crate) fn check_saved(outcomes: &[EventOutcome]) -> anyhow::Result<()> {
    for o in outcomes {
        match o {
            EventOutcome::Saved { .. } => {}
            other => bail!("an event of the workload was not saved: {other:?}"),
        }
    }
    Ok(())
}

/// One `add_event` per event, one caller. Returns events/s.
pub async fn ingest_single(target: &Target, triggers: &Arc<TriggerSet>, events: &[Event]) -> anyhow::Result<f64> {
    let events = events.to_vec();
    with_scratch(target, |db| async move {
        let tm = manager_on(db.storage(2).await?, triggers);
        let n = events.len();
        let start = Instant::now();
        for e in events {
            check_saved(&[tm.add_event(e).await?])?;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    })
    .await
}

/// `tasks` concurrent callers of `add_event` (a service calling it per
/// request), sharing transactions by group commit; caller `k` adds events
/// `k, k + tasks, ...` in order. Returns events/s.
pub async fn ingest_concurrent(
    target: &Target,
    triggers: &Arc<TriggerSet>,
    events: &[Event],
    tasks: usize,
) -> anyhow::Result<f64> {
    let events = events.to_vec();
    with_scratch(target, |db| async move {
        let tm = manager_on(db.storage(4).await?, triggers);
        let n = events.len();
        let mut per_task: Vec<Vec<Event>> = vec![Vec::new(); tasks.max(1)];
        for (i, e) in events.into_iter().enumerate() {
            per_task[i % tasks.max(1)].push(e);
        }
        let start = Instant::now();
        let mut handles = Vec::new();
        for mine in per_task {
            let tm = tm.clone();
            handles.push(tokio::spawn(async move {
                for e in mine {
                    check_saved(&[tm.add_event(e).await?])?;
                }
                anyhow::Ok(())
            }));
        }
        for h in handles {
            h.await.context("a concurrent caller panicked")??;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    })
    .await
}

/// Replay of the demo's workload (`winchester demo`: simulated notifications
/// through the example configs, exact batches, the worker firing and expiring
/// streams in the same process). Returns events saved / the run's wall-clock
/// time (generation and distilling included).
pub async fn replay(target: &Target, generator: winchester_demo::GeneratorOptions) -> anyhow::Result<f64> {
    with_scratch(target, |db| async move {
        let opts = winchester_demo::DemoOptions {
            generator,
            database_url: Some(db.url.clone()),
            config: None,
            batch_size: 1000,
            progress: false,
            per_moment: false,
        };
        let s = winchester_demo::run(&opts).await?;
        Ok(s.events_ingested as f64 / s.elapsed_s.max(1e-9))
    })
    .await
}

/// What the batched ingest and its COPY comparison measured.
#[derive(Debug, Clone)]
pub struct BatchedResult {
    /// Time of the whole batched ingest.
    pub engine: Duration,
    /// Time of the COPY of the same rows.
    pub copy: Duration,
    /// Rows written: events, streams, memberships.
    pub rows: (u64, u64, u64),
}

/// `add_events` in batches of `batch`, then the same rows loaded the fastest
/// way the backend has: COPY on PostgreSQL, one `INSERT .. SELECT` per table
/// in one transaction on SQLite. On PostgreSQL, the indexes named in
/// `drop_indexes` are dropped from both fresh databases first (the cost of
/// indexes is measured this way; SQLite ignores it).
pub async fn ingest_batched(
    target: &Target,
    triggers: &Arc<TriggerSet>,
    events: &[Event],
    batch: usize,
    drop_indexes: &[String],
) -> anyhow::Result<BatchedResult> {
    let admin = match target {
        Target::Postgres { admin } => admin.as_str(),
        Target::Sqlite { .. } => return sqlite_batched(target, triggers, events, batch).await,
    };
    let chunks: Vec<Vec<Event>> = events.chunks(batch.max(1)).map(|c| c.to_vec()).collect();
    let (engine, rows): (Duration, EngineRows) = with_db(admin, |db| async move {
        pgb::drop_indexes(&db.url, drop_indexes).await.context("dropping indexes")?;
        let storage = PgStorage::connect(&db.url.parse()?, 2).await?;
        let tm = manager(storage.clone(), triggers);
        let start = Instant::now();
        for chunk in chunks {
            check_saved(&tm.add_events(chunk).await?)?;
        }
        let took = start.elapsed();
        storage.pool().close().await;
        let rows = pgb::dump_rows(&db.url).await.context("reading back the engine's rows")?;
        Ok((took, rows))
    })
    .await?;
    let counts = rows.counts;
    let copy = with_db(admin, |db| async move {
        pgb::drop_indexes(&db.url, drop_indexes).await.context("dropping indexes")?;
        pgb::copy_load(&db.url, &rows).await.context("COPY into an empty schema")
    })
    .await?;
    Ok(BatchedResult { engine, copy, rows: counts })
}

async fn sqlite_batched(
    target: &Target,
    triggers: &Arc<TriggerSet>,
    events: &[Event],
    batch: usize,
) -> anyhow::Result<BatchedResult> {
    let chunks: Vec<Vec<Event>> = events.chunks(batch.max(1)).map(|c| c.to_vec()).collect();
    with_scratch(target, |source| async move {
        let tm = manager_on(source.storage(2).await?, triggers);
        let start = Instant::now();
        for chunk in chunks {
            check_saved(&tm.add_events(chunk).await?)?;
        }
        let engine = start.elapsed();
        drop(tm);
        let rows = crate::target::row_counts(&source.url).await?;
        let source = &source;
        let copy = with_scratch(target, |dest| async move { crate::target::sqlite_bulk_load(source, &dest).await })
            .await
            .context("bulk insert into an empty schema")?;
        Ok(BatchedResult { engine, copy, rows })
    })
    .await
}

/// A handler that reports when the pipeline of an `instance_day` stream commits.
struct Probe {
    tx: tokio::sync::mpsc::UnboundedSender<(i64, Instant)>,
}

#[async_trait]
impl Handler for Probe {
    async fn handle_events(&mut self, events: Vec<Event>, _env: &mut Env) -> Result<Vec<Event>, HandlerError> {
        Ok(events)
    }

    async fn commit(&mut self, env: &Env) -> Result<(), HandlerError> {
        if env.stream_name == "instance_day" {
            let _ = self.tx.send((env.stream_id, Instant::now()));
        }
        Ok(())
    }
}

/// Fire latency: one in-process worker idles (woken by NOTIFY); one at a time,
/// an `update` opens an instance-day stream and its `exists` completes it.
/// Each sample is the time from `add_event` of the `exists` returning (its
/// commit done) to the pipeline's commit. With `load_per_s` > 0, another task
/// ingests that many `update` events per second (batches every 10 ms, spread
/// over 1,000 instances) meanwhile. Returns the samples in ms.
pub async fn fire_latency(
    admin: &str,
    cfg: &LoadedConfig,
    samples: usize,
    load_per_s: u32,
) -> anyhow::Result<Vec<f64>> {
    with_db(admin, |db| async move {
        let storage = PgStorage::connect(&db.url.parse()?, 4).await?;
        let triggers = Arc::new(cfg.triggers.clone());
        let tm = manager(storage.clone(), &triggers);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut registry = winchester_handlers::registry();
        registry.register("bench_probe", move |_, _| Ok(Box::new(Probe { tx: tx.clone() }) as Box<dyn Handler>));
        let runner = PipelineRunner::new(registry, cfg.clone());
        let mut opts = WorkerOptions::from_config(&cfg.main);
        opts.trim = None;
        let worker = Arc::new(Worker::new(tm.clone(), runner, opts));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let w = worker.clone();
        let handle = tokio::spawn(async move {
            w.run(async move {
                let _ = stop_rx.await;
            })
            .await
        });
        let (load_stop_tx, mut load_stop) = tokio::sync::oneshot::channel::<()>();
        let loader = (load_per_s > 0).then(|| {
            let tm = tm.clone();
            let per_tick = (load_per_s as usize / 100).max(1);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut n: u64 = 0;
                loop {
                    tokio::select! {
                        _ = &mut load_stop => return Ok::<u64, anyhow::Error>(n),
                        _ = tick.tick() => {}
                    }
                    let batch: Vec<Event> = (0..per_tick)
                        .map(|i| {
                            let k = n + i as u64;
                            probe_event(
                                format!("load-{k}"),
                                "compute.instance.update",
                                &format!("load-{}", k % 1000),
                                Utc::now(),
                                &[],
                            )
                        })
                        .collect();
                    check_saved(&tm.add_events(batch).await?)?;
                    n += per_tick as u64;
                }
            })
        });
        // Let the worker finish its first pass and start waiting.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut out = Vec::with_capacity(samples);
        let result: anyhow::Result<()> = async {
            for k in 0..samples {
                let now = Utc::now();
                let day = now.duration_trunc(ChronoDuration::days(1)).unwrap_or(now);
                let instance = format!("latency-{k}");
                let first = probe_event(format!("latency-{k}-update"), "compute.instance.update", &instance, now, &[]);
                check_saved(&[tm.add_event(first).await?])?;
                let exists = probe_event(
                    format!("latency-{k}-exists"),
                    "compute.instance.exists",
                    &instance,
                    Utc::now(),
                    &[
                        ("audit_period_beginning", TraitValue::Datetime(day)),
                        ("audit_period_ending", TraitValue::Datetime(day + ChronoDuration::days(1))),
                    ],
                );
                let outcome = tm.add_event(exists).await?;
                let t0 = Instant::now();
                let EventOutcome::Saved { stream_ids, .. } = outcome else {
                    bail!("latency event not saved: {outcome:?}")
                };
                let sid = *stream_ids.first().ok_or_else(|| anyhow!("latency event joined no stream"))?;
                let deadline = t0 + Duration::from_secs(30);
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, rx.recv()).await {
                        Ok(Some((id, at))) if id == sid => {
                            out.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
                            break;
                        }
                        Ok(Some(_)) => continue,
                        Ok(None) => bail!("the worker stopped"),
                        Err(_) => bail!("stream {sid} did not fire within 30 s"),
                    }
                }
            }
            Ok(())
        }
        .await;
        let _ = load_stop_tx.send(());
        let loaded = match loader {
            Some(l) => Some(l.await.map_err(|e| anyhow!("load task panicked: {e}"))?),
            None => None,
        };
        let _ = stop_tx.send(());
        match handle.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(anyhow!("in-process worker failed: {e}")),
            Err(e) => return Err(anyhow!("in-process worker panicked: {e}")),
        }
        storage.pool().close().await;
        result?;
        if let Some(loaded) = loaded {
            loaded.context("background ingest under the latency measurement")?;
        }
        Ok(out)
    })
    .await
}

/// Peak resident memory (VmHWM) of a process, in MB; None once it is gone.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    proc_status_mb(pid, "VmHWM:")
}

/// Resident memory now (VmRSS) of a process, in MB; None once it is gone.
pub fn rss_mb(pid: u32) -> Option<f64> {
    proc_status_mb(pid, "VmRSS:")
}

/// A `kB` line of /proc/PID/status, in MB.
fn proc_status_mb(pid: u32, key: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?;
        let kb: f64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb / 1024.0)
    })
}

/// Where a child writes its stderr, and its tail for error messages.
pub(crate) fn stderr_file(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!("{name}.stderr"));
    let f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok((path, f))
}

/// The last lines of a child's stderr, for error messages.
pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// What a worker-throughput run measured.
#[derive(Debug, Clone)]
pub struct WorkerResult {
    /// Streams fired per second.
    pub streams_per_s: f64,
    /// Largest peak RSS among the worker processes, MB.
    pub peak_rss_mb: f64,
}

/// Child processes, killed and reaped when dropped.
pub(crate) struct Children(pub(crate) Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A pool on the scratch database at `url`, filled with `streams` ready
/// streams of `events_per_stream` events (see [`pgb::fill_ready_streams`]).
async fn ready_streams_db(url: &str, streams: u64, events_per_stream: u64) -> anyhow::Result<sqlx::PgPool> {
    // The fill is one big statement: keep sqlx's slow-statement warning out of the output.
    use sqlx::ConnectOptions;
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.disable_statement_logging())
        .await?;
    pgb::fill_ready_streams(&pool, "instance_day", "compute.instance.update", streams, events_per_stream)
        .await
        .context("writing ready streams")?;
    Ok(pool)
}

/// `workers` pipeline-worker processes on `streams` ready streams of
/// `events_per_stream` events: time from spawning them until no stream is
/// left unfinished.
pub async fn worker_throughput(
    admin: &str,
    config: &Path,
    exe_dir: &Path,
    workers: usize,
    streams: u64,
    events_per_stream: u64,
) -> anyhow::Result<WorkerResult> {
    with_db(admin, |db| async move {
        let pool = ready_streams_db(&db.url, streams, events_per_stream).await?;
        let dir = config.parent().unwrap_or(Path::new("."));
        let mut children = Children(Vec::new());
        let mut logs = Vec::new();
        let start = Instant::now();
        for i in 0..workers {
            let name = format!("bench-worker-{i}");
            let (log, f) = stderr_file(dir, &name)?;
            let child = Command::new(exe_dir.join("pipeline-worker"))
                .arg("-c")
                .arg(config)
                .arg("--database-url")
                .arg(&db.url)
                .arg("-n")
                .arg(&name)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(f)
                .spawn()
                .with_context(|| format!("starting {}", exe_dir.join("pipeline-worker").display()))?;
            children.0.push(child);
            logs.push(log);
        }
        let deadline = start + Duration::from_secs(900);
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            for (c, log) in children.0.iter_mut().zip(&logs) {
                if let Some(status) = c.try_wait()? {
                    bail!("pipeline-worker exited early ({status}): {}", tail(log));
                }
            }
            if pgb::unfinished_streams(&pool).await? == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("workers did not finish {streams} streams within 15 minutes");
            }
        }
        let took = start.elapsed();
        let rss = children.0.iter().filter_map(|c| peak_rss_mb(c.id())).fold(0.0, f64::max);
        drop(children);
        let states = pgb::stream_states(&pool).await?;
        let completed = states.iter().find(|(s, _)| *s == 6).map(|(_, n)| *n).unwrap_or(0);
        if completed as u64 != streams {
            bail!("expected {streams} completed streams, found states {states:?}");
        }
        pool.close().await;
        Ok(WorkerResult { streams_per_s: streams as f64 / took.as_secs_f64(), peak_rss_mb: rss })
    })
    .await
}

/// The worker limit: the same ready streams as [`worker_throughput`], finished
/// by set-based SQL in one transaction. Returns the seconds it took.
pub async fn worker_limit(admin: &str, streams: u64, events_per_stream: u64) -> anyhow::Result<f64> {
    with_db(admin, |db| async move {
        let pool = ready_streams_db(&db.url, streams, events_per_stream).await?;
        let start = Instant::now();
        let done = pgb::finish_ready_set_based(&pool).await.context("finishing ready streams set-based")?;
        let took = start.elapsed();
        if done != streams {
            bail!("set-based finish took {done} of {streams} ready streams");
        }
        pool.close().await;
        Ok(took.as_secs_f64())
    })
    .await
}

/// Cost growth: one instance-day stream per size, pre-filled with that many
/// events (batched), then `samples` single `add_event` calls into each, taken
/// in turn so drift hits every size alike. Returns the median ms per event for
/// each size.
pub async fn cost_growth(
    admin: &str,
    triggers: &Arc<TriggerSet>,
    sizes: &[u64],
    samples: usize,
) -> anyhow::Result<Vec<f64>> {
    with_db(admin, |db| async move {
        let storage = PgStorage::connect(&db.url.parse()?, 2).await?;
        let tm = manager(storage.clone(), triggers);
        let base = super::workload::base_day(Utc::now());
        let ts = |i: u64| base + ChronoDuration::milliseconds(i as i64);
        for size in sizes {
            let instance = format!("growth-{size}");
            let mut i = 0;
            while i < *size {
                let n = (size - i).min(1000);
                let batch: Vec<Event> = (i..i + n)
                    .map(|k| {
                        probe_event(format!("growth-{size}-{k}"), "compute.instance.update", &instance, ts(k), &[])
                    })
                    .collect();
                check_saved(&tm.add_events(batch).await?)?;
                i += n;
            }
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(samples); sizes.len()];
        for r in 0..samples as u64 {
            for (k, size) in sizes.iter().enumerate() {
                let instance = format!("growth-{size}");
                let e = probe_event(
                    format!("growth-{size}-extra-{r}"),
                    "compute.instance.update",
                    &instance,
                    ts(size + r),
                    &[],
                );
                let start = Instant::now();
                let out = tm.add_event(e).await?;
                times[k].push(start.elapsed().as_secs_f64() * 1000.0);
                check_saved(&[out])?;
            }
        }
        storage.pool().close().await;
        Ok(times.iter().map(|t| super::stats::median(t)).collect())
    })
    .await
}

/// Peak RSS of the real ingester: `winchester ingest` of the whole workload
/// (JSON lines, batches of 1,000) in a child process, its VmHWM polled until
/// it exits. Returns MB.
pub async fn ingest_rss(admin: &str, config: &Path, exe_dir: &Path, events: &[Event]) -> anyhow::Result<f64> {
    let dir = config.parent().unwrap_or(Path::new(".")).to_path_buf();
    let file = dir.join("workload.jsonl");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(&file).with_context(|| format!("creating {}", file.display()))?,
        );
        for e in events {
            serde_json::to_writer(&mut w, &e.to_json())?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    let log_dir = dir.clone();
    let result = with_db(admin, |db| async move {
        let (log, f) = stderr_file(&log_dir, "bench-ingest")?;
        let mut child = Children(vec![Command::new(exe_dir.join("winchester"))
            .arg("-c")
            .arg(config)
            .arg("--database-url")
            .arg(&db.url)
            .arg("ingest")
            .arg(&file)
            .arg("--batch-size")
            .arg("1000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {}", exe_dir.join("winchester").display()))?]);
        let pid = child.0[0].id();
        let mut peak: f64 = 0.0;
        let deadline = Instant::now() + Duration::from_secs(900);
        let status = loop {
            if let Some(mb) = peak_rss_mb(pid) {
                peak = peak.max(mb);
            }
            if let Some(status) = child.0[0].try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                bail!("winchester ingest did not finish within 15 minutes");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        child.0.clear();
        if !status.success() {
            bail!("winchester ingest failed ({status}): {}", tail(&log));
        }
        Ok(peak)
    })
    .await;
    let _ = std::fs::remove_file(dir.join("workload.jsonl"));
    result
}
