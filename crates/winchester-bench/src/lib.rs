//! `winchester bench`: measures the engine against the physical limit in one run.
//!
//! Every measurement runs in a fresh database (`wbench_<uuid>`, created through
//! the admin URL and dropped afterwards) and is repeated `--runs` times; the
//! table shows median, min and max. No configuration file is needed: the
//! triggers are embedded ([`workload::TRIGGERS_YAML`]) and the worker config is
//! written to a temp dir.
//!
//! - [`workload`]: the workload (flat events of the seeded OpenStack simulation
//!   in [`winchester_sim`], sized to `--events`) and the triggers.
//! - [`measure`]: the measurements (ingest, COPY limit, fire latency, worker
//!   throughput, cost growth, memory).
//! - [`stats`]: medians and percentiles.
//! - [`soak`]: `--soak DURATION`, a long steady run watching for drift.
//! - [`stored`]: ingest against events already stored (seeded by COPY) and
//!   trimming a day of them (PostgreSQL).
//! - [`query`]: query latency through `winchester serve` at each stored size
//!   (issue 32).
//! - [`http_ingest`]: ingest over HTTP, `POST /v1/events` of `winchester
//!   serve`, batched and one event per request (issue 27).
//!
//! - [`db`]: the database side (scratch databases, the COPY limit, ready-made
//!   streams for worker runs): the bench's own admin SQL, kept out of the
//!   production backend.
//!
//! See docs/performance.md for what each figure means and what limits it.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod db;
pub mod http_ingest;
pub mod measure;
pub mod query;
pub mod soak;
pub mod stats;
pub mod stored;
pub mod target;
pub mod workload;

use anyhow::{anyhow, Context};
use clap::Args;
use serde_json::{json, Value};
use stats::Summary;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use winchester_core::LoadedConfig;

/// Flags of `winchester bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchOpts {
    /// Events in the workload (batched ingest; the single-call ingest uses the first min(N, 5000)).
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Instances the workload's events are about.
    #[arg(long, default_value_t = 1_000)]
    pub instances: usize,
    /// Numbers of worker processes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub workers: Vec<usize>,
    /// Repeats of every measurement (the table shows median, min and max).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Seed of the workload generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Admin URL of the PostgreSQL server: the bench creates and drops
    /// `wbench_<uuid>` databases there (default: $DATABASE_URL, else the local
    /// server). `sqlite://DIR/any.db`: measure SQLite, with scratch files in DIR
    /// (the figures that apply to SQLite only).
    #[arg(long = "database-url")]
    pub database_url: Option<String>,
    /// Events already stored (seeded by COPY over the 30 days before today)
    /// when the ingest rate against stored events is measured (PostgreSQL;
    /// measured once, in this order; the largest is also trimmed by a day).
    /// The query stage runs at each size too (on SQLite only, at the sizes
    /// up to 1,000,000, seeded alike).
    #[arg(long, value_delimiter = ',', default_value = "0,1000000,10000000")]
    pub stored: Vec<u64>,
    /// Concurrent HTTP clients of the query stage (PostgreSQL; at each
    /// `--stored` size, through `winchester serve`).
    #[arg(long, value_name = "N", default_value_t = query::CLIENTS)]
    pub query_clients: usize,
    /// Requests of each query at each stored size (0: no query stage).
    #[arg(long, value_name = "N", default_value_t = query::DEFAULT_REQUESTS)]
    pub query_requests: usize,
    /// Also measure the stored-events ingest without migration 0005's query
    /// indexes (seeds every `--stored` size once more), for
    /// `stored_growth_ratio_without_query_indexes`.
    #[arg(long)]
    pub stored_without_query_indexes: bool,
    /// Also measure each query index's own ingest cost: the batched ingest
    /// with every query index but that one (once per run and index).
    #[arg(long)]
    pub query_index_cost: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the table (markdown) to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Soak instead of the measurements: a steady ingest for this long (e.g.
    /// 30m, 2h) with two workers and trimming on; one row per minute, then a
    /// summary (see docs/performance.md).
    #[arg(long, value_name = "DURATION", value_parser = soak::parse_duration)]
    pub soak: Option<std::time::Duration>,
    /// Events per second fed to the ingester during --soak.
    #[arg(long, value_name = "N", default_value_t = soak::DEFAULT_RATE)]
    pub soak_rate: u32,
    /// Events older than this are trimmed by the workers during --soak.
    #[arg(long, value_name = "DURATION", value_parser = soak::parse_duration, default_value = "5m")]
    pub soak_retention: std::time::Duration,
    /// Time between two rows of --soak (tests use a few seconds).
    #[arg(long, value_name = "DURATION", value_parser = soak::parse_duration, default_value = "1m", hide = true)]
    pub soak_interval: std::time::Duration,
}

/// Largest `--stored` size the query stage seeds on SQLite (issue 32 reports
/// SQLite at 1M events).
pub const SQLITE_QUERY_MAX: u64 = 1_000_000;

/// The server used when neither `--database-url` nor `DATABASE_URL` is given.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Batch size of the batched ingest.
pub const BATCH: usize = 1000;
/// Most events of the single-call ingest.
pub const SINGLE_MAX: usize = 5000;
/// Concurrent `add_event` callers of the group-commit measurement.
pub const CONCURRENT_TASKS: usize = 64;
/// Simulated days of the replay measurement (the demo's workload).
pub const REPLAY_DAYS: u32 = 3;

/// Background ingest rate of the fire-latency-under-load measurement.
pub const LOAD_EVENTS_PER_S: u32 = 5_000;

/// Events per stream in the worker-throughput runs.
pub const READY_STREAM_EVENTS: u64 = 10;
/// Stream lengths of the cost-growth measurement.
pub const GROWTH_SIZES: [u64; 3] = [10, 1_000, 10_000];

/// The sizes a run uses, derived from the flags.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Workload events.
    pub events: usize,
    /// Instances.
    pub instances: usize,
    /// Events of the single-call ingest.
    pub single_events: usize,
    /// Ready streams per worker run (10,000, fewer for a small `--events`).
    pub ready_streams: u64,
    /// Fire-latency samples per run.
    pub latency_samples: usize,
    /// Single calls per stream size in the cost-growth measurement.
    pub growth_samples: usize,
    /// Worker process counts.
    pub workers: Vec<usize>,
    /// Repeats.
    pub runs: usize,
    /// Stored-event sizes of the stored-growth measurement.
    pub stored: Vec<u64>,
    /// Clients of the query stage.
    pub query_clients: usize,
    /// Requests per query and stored size (0: no query stage).
    pub query_requests: usize,
}

impl Sizes {
    /// Sizes for `opts`; errors on nonsense.
    pub fn from_opts(o: &BenchOpts) -> anyhow::Result<Sizes> {
        if o.events == 0 || o.instances == 0 || o.runs == 0 {
            return Err(anyhow!("--events, --instances and --runs must be at least 1"));
        }
        if o.query_clients == 0 || o.query_clients > 1024 {
            return Err(anyhow!("--query-clients must be between 1 and 1024"));
        }
        if o.workers.is_empty() || o.workers.iter().any(|w| *w == 0 || *w > 64) {
            return Err(anyhow!("--workers must list process counts between 1 and 64, e.g. 1,2,4"));
        }
        Ok(Sizes {
            events: o.events,
            instances: o.instances,
            single_events: o.events.min(SINGLE_MAX),
            ready_streams: (o.events as u64 / 2).clamp(10, 10_000),
            latency_samples: (o.events / 100).clamp(20, 200),
            growth_samples: (o.events / 40).clamp(30, 300),
            workers: o.workers.clone(),
            runs: o.runs,
            stored: o.stored.clone(),
            query_clients: o.query_clients,
            query_requests: o.query_requests,
        })
    }
}

/// The machine the bench ran on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// PostgreSQL server version.
    pub postgres: String,
}

fn machine(postgres: String) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:").and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    Machine { cpu, cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), memory_gib, postgres }
}

/// Every measured value, one entry per run.
#[derive(Debug, Default, Clone)]
struct Samples {
    single: Vec<f64>,
    concurrent: Vec<f64>,
    concurrent_ratio: Vec<f64>,
    http_batched: Vec<f64>,
    http_single: Vec<f64>,
    http_batched_ratio: Vec<f64>,
    http_single_ratio: Vec<f64>,
    replay: Vec<f64>,
    batched: Vec<f64>,
    batched_s: Vec<f64>,
    copy_rows_per_s: Vec<f64>,
    copy_s: Vec<f64>,
    engine_rows_per_s: Vec<f64>,
    ratio: Vec<f64>,
    rows: (u64, u64, u64),
    lat_p50: Vec<f64>,
    lat_p99: Vec<f64>,
    lat_max: Vec<f64>,
    load_p50: Vec<f64>,
    load_p99: Vec<f64>,
    load_max: Vec<f64>,
    limit_per_s: Vec<f64>,
    worker_vs_limit: Vec<f64>,
    workers: Vec<(usize, Vec<f64>)>,
    growth: Vec<Vec<f64>>,
    growth_ratio: Vec<f64>,
    worker_rss: f64,
    ingest_rss: f64,
    stored: stored::StoredResult,
    /// The stored stage again without the query indexes (when asked).
    stored_without: Option<stored::StoredResult>,
    noidx_batched_s: Vec<f64>,
    noidx_ratio: Vec<f64>,
    index_cost: Vec<f64>,
    /// Per query index: batched time with all / with all but that one.
    per_index: Vec<(String, Vec<f64>)>,
}

/// One line of the table.
struct Row {
    key: String,
    figure: String,
    s: Summary,
    unit: &'static str,
    /// Whether it was measured (some figures apply to PostgreSQL only).
    measured: bool,
}

/// The config files the workers (and the in-process latency worker) load.
struct ConfigDir {
    dir: PathBuf,
}

impl ConfigDir {
    fn new() -> anyhow::Result<ConfigDir> {
        let dir = std::env::temp_dir().join(format!("winchester-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).with_context(|| format!("writing {}", dir.join(name).display()))
        };
        write("triggers.yaml", workload::TRIGGERS_YAML)?;
        write("pipelines.yaml", workload::PIPELINES_YAML)?;
        write("winchester.yaml", &workload::winchester_yaml("logger"))?;
        write("latency.yaml", &workload::winchester_yaml("bench_probe"))?;
        Ok(ConfigDir { dir })
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

/// Runs the bench; returns what to print (the table, or the JSON object).
/// `fallback_url` is the `winchester` program's own `--database-url`/`DATABASE_URL`.
pub async fn run(opts: &BenchOpts, fallback_url: Option<String>) -> anyhow::Result<String> {
    let admin = opts.database_url.clone().or(fallback_url).unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string());
    if let Some(duration) = opts.soak {
        let exe = std::env::current_exe().context("finding this program")?;
        let soak = soak::SoakOpts {
            duration,
            rate: opts.soak_rate,
            interval: opts.soak_interval,
            retention: opts.soak_retention,
            json: opts.json,
        };
        return soak::run(&soak, &admin, exe.parent().unwrap_or(Path::new("."))).await;
    }
    let sizes = Sizes::from_opts(opts)?;
    let target = target::Target::from_url(&admin);
    let pg = matches!(target, target::Target::Postgres { .. });
    let postgres = if pg {
        let admin_pool =
            winchester_backends::connect_postgres(&winchester_backends::DatabaseOptions::direct(admin.as_str()), 1)
                .await?;
        let v = db::server_version(admin_pool.pool()).await.context("asking the server's version")?;
        admin_pool.pool().close().await;
        v
    } else {
        "-".to_string()
    };
    let machine = machine(postgres);
    let exe = std::env::current_exe().context("finding this program")?;
    let exe_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    for bin in ["pipeline-worker", "winchester"] {
        // The HTTP ingest stage runs `winchester serve` on both backends.
        if (pg || bin == "winchester") && !exe_dir.join(bin).exists() {
            return Err(anyhow!(
                "{} not found: the bench runs the {bin} program next to itself",
                exe_dir.join(bin).display()
            ));
        }
    }
    let cfg_dir = ConfigDir::new()?;
    let worker_cfg = cfg_dir.dir.join("winchester.yaml");
    let registry = {
        let mut r = winchester_handlers::registry();
        r.register("bench_probe", |_, _| Err("registered by the latency measurement".into()));
        r
    };
    let known = |t: &str| registry.knows(t);
    let latency_cfg = LoadedConfig::load(&cfg_dir.dir.join("latency.yaml"), Some(&known))
        .map_err(|e| anyhow!("bench config: {e}"))?;
    let triggers = Arc::new(latency_cfg.triggers.clone());

    let query_indexes = db::query_index_names();
    let wl = workload::generate(sizes.events, sizes.instances, opts.seed, workload::base_day(chrono::Utc::now()));
    let events = wl.events;
    let mut s = Samples {
        workers: sizes.workers.iter().map(|w| (*w, vec![])).collect(),
        growth: vec![vec![]; GROWTH_SIZES.len()],
        per_index: if opts.query_index_cost && pg {
            query_indexes.iter().map(|n| (n.clone(), vec![])).collect()
        } else {
            vec![]
        },
        ..Default::default()
    };
    for run in 1..=sizes.runs {
        let tag = format!("run {run}/{}", sizes.runs);
        progress(&format!("{tag}: ingest, one event per call ({} events)", sizes.single_events));
        s.single.push(measure::ingest_single(&target, &triggers, &events[..sizes.single_events]).await?);

        progress(&format!(
            "{tag}: ingest, {CONCURRENT_TASKS} tasks calling add_event ({} events, group commit)",
            sizes.single_events
        ));
        let concurrent =
            measure::ingest_concurrent(&target, &triggers, &events[..sizes.single_events], CONCURRENT_TASKS).await?;
        s.concurrent.push(concurrent);

        progress(&format!(
            "{tag}: ingest, batches of {BATCH} ({} events), then the {} of the same rows",
            events.len(),
            if pg { "COPY" } else { "bulk insert" }
        ));
        let b = measure::ingest_batched(&target, &triggers, &events, BATCH, &[]).await?;
        let rows = (b.rows.0 + b.rows.1 + b.rows.2) as f64;
        s.rows = b.rows;
        s.batched.push(events.len() as f64 / b.engine.as_secs_f64());
        s.batched_s.push(b.engine.as_secs_f64());
        s.engine_rows_per_s.push(rows / b.engine.as_secs_f64());
        s.copy_s.push(b.copy.as_secs_f64());
        s.copy_rows_per_s.push(rows / b.copy.as_secs_f64());
        s.ratio.push(b.engine.as_secs_f64() / b.copy.as_secs_f64());
        let batched_rate = events.len() as f64 / b.engine.as_secs_f64();
        s.concurrent_ratio.push(concurrent / batched_rate);

        progress(&format!(
            "{tag}: ingest over HTTP, {} clients posting batches of {} to winchester serve ({} events)",
            http_ingest::CLIENTS,
            http_ingest::BATCH,
            events.len()
        ));
        let hb = http_ingest::measure(&target, &exe_dir, &worker_cfg, &events, http_ingest::BATCH).await?;
        s.http_batched.push(hb);
        s.http_batched_ratio.push(hb / batched_rate);
        progress(&format!(
            "{tag}: ingest over HTTP, {} clients posting one event per request ({} events)",
            http_ingest::CLIENTS,
            sizes.single_events
        ));
        let hs = http_ingest::measure(&target, &exe_dir, &worker_cfg, &events[..sizes.single_events], 1).await?;
        s.http_single.push(hs);
        s.http_single_ratio.push(hs / batched_rate);

        progress(&format!("{tag}: replay of the demo's workload ({} instances, {REPLAY_DAYS} days)", sizes.instances));
        let generator = winchester_demo::GeneratorOptions {
            instances: sizes.instances,
            days: REPLAY_DAYS,
            tenants: 25,
            start: winchester_demo::default_start(REPLAY_DAYS),
            seed: opts.seed,
        };
        s.replay.push(measure::replay(&target, generator).await?);
        if !pg {
            continue;
        }

        progress(&format!(
            "{tag}: the same batched ingest and COPY without migration 0005's query indexes ({})",
            query_indexes.join(", ")
        ));
        let nb = measure::ingest_batched(&target, &triggers, &events, BATCH, &query_indexes).await?;
        s.noidx_batched_s.push(nb.engine.as_secs_f64());
        s.noidx_ratio.push(nb.engine.as_secs_f64() / nb.copy.as_secs_f64());
        s.index_cost.push(b.engine.as_secs_f64() / nb.engine.as_secs_f64());
        if opts.query_index_cost {
            for (name, v) in s.per_index.iter_mut() {
                progress(&format!("{tag}: the same batched ingest without {name} alone"));
                let r = measure::ingest_batched(&target, &triggers, &events, BATCH, std::slice::from_ref(name)).await?;
                v.push(b.engine.as_secs_f64() / r.engine.as_secs_f64());
            }
        }

        progress(&format!("{tag}: fire latency ({} streams, one idle worker)", sizes.latency_samples));
        let lat = measure::fire_latency(&admin, &latency_cfg, sizes.latency_samples, 0).await?;
        s.lat_p50.push(stats::percentile(&lat, 50.0));
        s.lat_p99.push(stats::percentile(&lat, 99.0));
        s.lat_max.push(stats::percentile(&lat, 100.0));

        progress(&format!(
            "{tag}: fire latency under load ({} streams, another task ingesting {LOAD_EVENTS_PER_S} events/s)",
            sizes.latency_samples
        ));
        let lat = measure::fire_latency(&admin, &latency_cfg, sizes.latency_samples, LOAD_EVENTS_PER_S).await?;
        s.load_p50.push(stats::percentile(&lat, 50.0));
        s.load_p99.push(stats::percentile(&lat, 99.0));
        s.load_max.push(stats::percentile(&lat, 100.0));

        progress(&format!(
            "{tag}: worker limit: {} ready streams finished by set-based SQL in one transaction",
            sizes.ready_streams
        ));
        let limit_s = measure::worker_limit(&admin, sizes.ready_streams, READY_STREAM_EVENTS).await?;
        s.limit_per_s.push(sizes.ready_streams as f64 / limit_s);

        for (w, v) in s.workers.iter_mut() {
            progress(&format!(
                "{tag}: {w} worker process(es) on {} ready streams of {READY_STREAM_EVENTS} events",
                sizes.ready_streams
            ));
            let r =
                measure::worker_throughput(&admin, &worker_cfg, &exe_dir, *w, sizes.ready_streams, READY_STREAM_EVENTS)
                    .await?;
            v.push(r.streams_per_s);
            if *w == 1 {
                // One worker process's time / the limit's time.
                s.worker_vs_limit.push((sizes.ready_streams as f64 / r.streams_per_s) / limit_s);
            }
            s.worker_rss = s.worker_rss.max(r.peak_rss_mb);
        }

        progress(&format!(
            "{tag}: cost growth (streams of {GROWTH_SIZES:?} events, {} calls each)",
            sizes.growth_samples
        ));
        let g = measure::cost_growth(&admin, &triggers, &GROWTH_SIZES, sizes.growth_samples).await?;
        s.growth_ratio.push(g[g.len() - 1] / g[0]);
        for (k, t) in g.into_iter().enumerate() {
            s.growth[k].push(t);
        }
    }
    if pg {
        progress(&format!("peak RSS of `winchester ingest` on the whole workload ({} events)", events.len()));
        s.ingest_rss = measure::ingest_rss(&admin, &worker_cfg, &exe_dir, &events).await?;
        let queries = (sizes.query_requests > 0).then(|| query::QueryOpts {
            clients: sizes.query_clients,
            requests: sizes.query_requests,
            exe_dir: exe_dir.clone(),
            config: worker_cfg.clone(),
        });
        let with = stored::StoredOpts { query_indexes: true, trim: true, queries };
        s.stored =
            stored::stored_growth(&admin, &triggers, &events, &sizes.stored, BATCH, opts.seed, &with, progress).await?;
        if opts.stored_without_query_indexes {
            let without = stored::StoredOpts { query_indexes: false, trim: false, queries: None };
            s.stored_without = Some(
                stored::stored_growth(&admin, &triggers, &events, &sizes.stored, BATCH, opts.seed, &without, progress)
                    .await?,
            );
        }
    }

    if !pg && sizes.query_requests > 0 {
        if !exe_dir.join("winchester").exists() {
            return Err(anyhow!(
                "{} not found: the query stage runs the winchester program next to itself (--query-requests 0 skips it)",
                exe_dir.join("winchester").display()
            ));
        }
        let q = query::QueryOpts {
            clients: sizes.query_clients,
            requests: sizes.query_requests,
            exe_dir: exe_dir.clone(),
            config: worker_cfg.clone(),
        };
        for &size in sizes.stored.iter().filter(|n| **n <= SQLITE_QUERY_MAX) {
            progress(&format!(
                "queries at {size} events stored (SQLite, seeded by INSERT .. SELECT): {} queries, {} requests each, {} clients",
                query::QUERIES.len(),
                q.requests,
                q.clients
            ));
            let q = &q;
            let r = target::with_scratch(&target, |db| async move {
                let seeded = stored::seed_sqlite(&db.url, size, chrono::Utc::now().date_naive())
                    .await
                    .context("seeding SQLite")?;
                query::measure(&db.url, &seeded, q).await.context("query stage")
            })
            .await?;
            s.stored.queries.push((size, r));
        }
    }
    let rows = table_rows(&s, &sizes, pg);
    let table = render_table(&rows, &s, &sizes, &machine, wl.days, pg);
    if let Some(path) = &opts.output {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    if opts.json {
        Ok(format!("{}\n", serde_json::to_string_pretty(&to_json(&rows, &s, &sizes, &machine, wl.days, pg))?))
    } else {
        Ok(table)
    }
}

fn table_rows(s: &Samples, z: &Sizes, pg: bool) -> Vec<Row> {
    let limit = if pg {
        "limit: COPY of the same rows into an empty schema, one transaction"
    } else {
        "limit: bulk insert of the same rows into an empty schema (INSERT .. SELECT), one transaction"
    };
    let row = |key: &str, figure: String, v: &[f64], unit: &'static str| Row {
        key: key.into(),
        figure,
        s: Summary::of(v),
        unit,
        measured: !v.is_empty(),
    };
    let (e, st, m) = s.rows;
    let mut rows = vec![
        row(
            "ingest_events_per_s_single",
            format!("ingest, one event per call (add_event, {} events)", z.single_events),
            &s.single,
            "events/s",
        ),
        row(
            "ingest_events_per_s_batched",
            format!("ingest, batched (add_events, batches of {BATCH})"),
            &s.batched,
            "events/s",
        ),
        row(
            "ingest_events_per_s_concurrent",
            format!("ingest, {CONCURRENT_TASKS} tasks calling add_event (group commit, {} events)", z.single_events),
            &s.concurrent,
            "events/s",
        ),
        row(
            "ingest_concurrent_vs_batched",
            "ratio: concurrent add_event rate / batched rate".into(),
            &s.concurrent_ratio,
            "x",
        ),
        row(
            "http_ingest_events_per_s_batched",
            format!(
                "ingest over HTTP: {} clients posting batches of {} to POST /v1/events",
                http_ingest::CLIENTS,
                http_ingest::BATCH
            ),
            &s.http_batched,
            "events/s",
        ),
        row(
            "http_ingest_batched_vs_batched",
            "ratio: HTTP batched rate / batched rate (target at least 0.7)".into(),
            &s.http_batched_ratio,
            "x",
        ),
        row(
            "http_ingest_events_per_s_single",
            format!(
                "ingest over HTTP: {} clients posting one event per request ({} events)",
                http_ingest::CLIENTS,
                z.single_events
            ),
            &s.http_single,
            "events/s",
        ),
        row(
            "http_ingest_single_vs_batched",
            "ratio: HTTP one-event rate / batched rate (target at least 0.4)".into(),
            &s.http_single_ratio,
            "x",
        ),
        row(
            "replay_events_per_s",
            format!(
                "replay of the demo's workload ({} instances, {REPLAY_DAYS} days; whole run incl. worker)",
                z.instances
            ),
            &s.replay,
            "events/s",
        ),
        row("ingest_batched_s", "ingest, batched: time".into(), &s.batched_s, "s"),
        row(
            "engine_rows_per_s",
            format!("ingest, batched: rows written ({e} events + {st} streams + {m} memberships)"),
            &s.engine_rows_per_s,
            "rows/s",
        ),
        row("copy_limit_rows_per_s", limit.into(), &s.copy_rows_per_s, "rows/s"),
        row("copy_limit_s", "limit: time".into(), &s.copy_s, "s"),
        row("ingest_vs_copy_ratio", "ratio: batched ingest time / limit time".into(), &s.ratio, "x"),
        row(
            "ingest_batched_s_without_query_indexes",
            "ingest, batched, without migration 0005's query indexes: time".into(),
            &s.noidx_batched_s,
            "s",
        ),
        row(
            "ingest_vs_copy_ratio_without_query_indexes",
            "ratio without the query indexes: batched ingest time / limit time (COPY, same schema)".into(),
            &s.noidx_ratio,
            "x",
        ),
        row(
            "query_index_ingest_cost",
            "query indexes' cost: batched ingest time with them / without them".into(),
            &s.index_cost,
            "x",
        ),
        row(
            "fire_latency_p50",
            "fire latency p50 (commit of completing event -> pipeline commit)".into(),
            &s.lat_p50,
            "ms",
        ),
        row("fire_latency_p99", "fire latency p99".into(), &s.lat_p99, "ms"),
        row("fire_latency_max", "fire latency max".into(), &s.lat_max, "ms"),
        row(
            "fire_latency_under_load_p50",
            format!("fire latency under load p50 (another task ingesting {LOAD_EVENTS_PER_S} events/s)"),
            &s.load_p50,
            "ms",
        ),
        row("fire_latency_under_load_p99", "fire latency under load p99".into(), &s.load_p99, "ms"),
        row("fire_latency_under_load_max", "fire latency under load max".into(), &s.load_max, "ms"),
        row(
            "worker_limit_streams_per_s",
            format!(
                "limit: {} ready streams claimed, read and completed by set-based SQL, one transaction",
                z.ready_streams
            ),
            &s.limit_per_s,
            "streams/s",
        ),
        row(
            "worker_vs_limit_ratio",
            "ratio: one worker process's time / limit time (when --workers lists 1)".into(),
            &s.worker_vs_limit,
            "x",
        ),
    ];
    for (w, v) in &s.workers {
        rows.push(row(
            &format!("worker_streams_per_s_{w}"),
            format!("workers: {w} process(es), {} streams of {READY_STREAM_EVENTS} events", z.ready_streams),
            v,
            "streams/s",
        ));
    }
    for (name, v) in &s.per_index {
        rows.push(row(
            &format!("query_index_ingest_cost_{name}"),
            format!("cost of {name}: batched ingest time with every query index / with all but it"),
            v,
            "x",
        ));
    }
    for (k, size) in GROWTH_SIZES.iter().enumerate() {
        rows.push(row(
            &format!("growth_ms_{size}"),
            format!("ingest per event, stream holds {size} events"),
            &s.growth[k],
            "ms",
        ));
    }
    rows.push(row(
        "cost_growth_ratio",
        format!("cost growth: per-event time at {} / at {}", GROWTH_SIZES[2], GROWTH_SIZES[0]),
        &s.growth_ratio,
        "x",
    ));
    if pg {
        rows.push(row(
            "peak_rss_ingest",
            "peak RSS, ingester (winchester ingest, whole workload; measured once)".into(),
            &[s.ingest_rss],
            "MB",
        ));
        rows.push(row(
            "peak_rss_worker",
            "peak RSS, worker (largest pipeline-worker process)".into(),
            &[s.worker_rss],
            "MB",
        ));
    }
    for (n, rate) in &s.stored.rates {
        rows.push(row(
            &format!("ingest_events_per_s_at_stored_{n}"),
            format!("ingest, batched, with {n} events already stored (measured once)"),
            &[*rate],
            "events/s",
        ));
    }
    if let Some(ratio) = stored_growth_ratio(&s.stored) {
        rows.push(row(
            "stored_growth_ratio",
            "stored growth: ingest rate at the smallest stored size / at the largest".into(),
            &[ratio],
            "x",
        ));
    }
    if let Some(w) = &s.stored_without {
        for (n, rate) in &w.rates {
            rows.push(row(
                &format!("ingest_events_per_s_at_stored_{n}_without_query_indexes"),
                format!("ingest, batched, with {n} events already stored, without the query indexes (measured once)"),
                &[*rate],
                "events/s",
            ));
        }
        if let Some(ratio) = stored_growth_ratio(w) {
            rows.push(row(
                "stored_growth_ratio_without_query_indexes",
                "stored growth without the query indexes".into(),
                &[ratio],
                "x",
            ));
        }
    }
    if let (Some(day), Some(keys)) = (s.stored.trim_day_s, s.stored.trim_day_keys_s) {
        let events = s.stored.trim_day_events;
        rows.push(row("trim_day_s", format!("trim one day ({events} events): drop its partitions"), &[day], "s"));
        rows.push(row("trim_day_keys_s", "trim one day, until its dedup keys are deleted too".into(), &[keys], "s"));
    }
    for (n, q) in &s.stored.queries {
        for f in &q.queries {
            rows.push(row(
                &format!("query_p99_ms_{n}_{}", f.name),
                format!(
                    "query p99, {} ({} clients, {n} events stored; p50 {}, {:.0} requests/s{})",
                    f.name,
                    z.query_clients,
                    fmt(f.p50_ms),
                    f.per_s,
                    if f.overloaded > 0 {
                        format!("; {} of {} answered 503", f.overloaded, f.requests)
                    } else {
                        String::new()
                    }
                ),
                &[f.p99_ms],
                "ms",
            ));
        }
        rows.push(row(
            &format!("query_p99_ms_{n}_all"),
            format!("query p99, every query's requests together ({n} events stored)"),
            &[q.all_p99_ms],
            "ms",
        ));
    }
    if let Some(ratio) = query_growth_ratio(&s.stored) {
        rows.push(row(
            "query_growth_ratio",
            "query growth: p99 at the largest stored size / at the second largest".into(),
            &[ratio],
            "x",
        ));
    }
    // Figures that do not apply to this backend were not measured.
    rows.into_iter().filter(|r| r.measured).collect()
}

/// The query stage's overall p99 at the largest stored size / at the second
/// largest (None with fewer than two sizes).
fn query_growth_ratio(r: &stored::StoredResult) -> Option<f64> {
    let mut q: Vec<(u64, f64)> = r.queries.iter().map(|(n, q)| (*n, q.all_p99_ms)).collect();
    q.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    match q.as_slice() {
        [(a, hi), (b, lo), ..] if a > b && *lo > 0.0 => Some(hi / lo),
        _ => None,
    }
}

/// `{size: {query: figure, ..., "all": figure}}` of the query stage.
/// One object per stored size, of one figure per query (`figure`), plus
/// `all` when `all` gives it.
fn per_query(
    r: &stored::StoredResult,
    figure: impl Fn(&query::QueryFigures) -> Value,
    all: impl Fn(&query::QueryResult) -> Option<Value>,
) -> Value {
    let per_size: serde_json::Map<String, Value> = r
        .queries
        .iter()
        .map(|(n, q)| {
            let mut m: serde_json::Map<String, Value> =
                q.queries.iter().map(|f| (f.name.to_string(), figure(f))).collect();
            if let Some(v) = all(q) {
                m.insert("all".into(), v);
            }
            (n.to_string(), Value::Object(m))
        })
        .collect();
    Value::Object(per_size)
}

/// Ingest rate at the smallest stored size / at the largest.
fn stored_growth_ratio(r: &stored::StoredResult) -> Option<f64> {
    let low = r.rates.iter().min_by_key(|(n, _)| *n)?;
    let high = r.rates.iter().max_by_key(|(n, _)| *n)?;
    (high.0 > low.0).then(|| low.1 / high.1)
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn render_table(rows: &[Row], s: &Samples, z: &Sizes, m: &Machine, days: u32, pg: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "winchester bench: {} events ({} instances over {days} days), {} run(s); workers {}\n",
        z.events,
        z.instances,
        z.runs,
        z.workers.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(",")
    ));
    out.push_str(&format!(
        "machine: {}, {} cores, {:.1} GiB memory; {}\n\n",
        m.cpu,
        m.cores,
        m.memory_gib,
        if pg { format!("PostgreSQL {}", m.postgres) } else { "SQLite".to_string() }
    ));
    out.push_str("| figure | median | min | max | unit |\n|---|---:|---:|---:|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.figure,
            fmt(r.s.median),
            fmt(r.s.min),
            fmt(r.s.max),
            r.unit
        ));
    }
    let ratio = Summary::of(&s.ratio).median;
    out.push_str(&format!(
        "\nbatched ingest takes {ratio:.2}x the time {} the same {} rows.\n",
        if pg { "PostgreSQL needs to COPY" } else { "SQLite needs to bulk insert" },
        s.rows.0 + s.rows.1 + s.rows.2
    ));
    out
}

fn to_json(rows: &[Row], s: &Samples, z: &Sizes, m: &Machine, days: u32, pg: bool) -> Value {
    let med = |v: &[f64]| if v.is_empty() { Value::Null } else { json!(Summary::of(v).median) };
    let workers: serde_json::Map<String, Value> =
        s.workers.iter().filter(|(_, v)| !v.is_empty()).map(|(w, v)| (w.to_string(), med(v))).collect();
    let figures: Vec<Value> = rows
        .iter()
        .map(|r| json!({"key": r.key, "figure": r.figure, "median": r.s.median, "min": r.s.min, "max": r.s.max, "unit": r.unit}))
        .collect();
    let mut v = json!({
        "backend": if pg { "postgres" } else { "sqlite" },
        "ingest_events_per_s_single": med(&s.single),
        "ingest_events_per_s_concurrent": med(&s.concurrent),
        "ingest_concurrent_vs_batched": med(&s.concurrent_ratio),
        "replay_events_per_s": med(&s.replay),
        "ingest_events_per_s_batched": med(&s.batched),
        "copy_limit_rows_per_s": med(&s.copy_rows_per_s),
        "ingest_vs_copy_ratio": med(&s.ratio),
        "fire_latency_ms": {"p50": med(&s.lat_p50), "p99": med(&s.lat_p99), "max": med(&s.lat_max)},
        "fire_latency_under_load_ms": {"p50": med(&s.load_p50), "p99": med(&s.load_p99), "max": med(&s.load_max)},
        "worker_limit_streams_per_s": med(&s.limit_per_s),
        "worker_vs_limit_ratio": med(&s.worker_vs_limit),
        "worker_streams_per_s": workers,
        "cost_growth_ratio": med(&s.growth_ratio),
        "ingest_events_per_s_at_stored": s.stored.rates.iter().map(|(n, r)| (n.to_string(), json!(r))).collect::<serde_json::Map<_, _>>(),
        "stored_growth_ratio": stored_growth_ratio(&s.stored),
        "trim_day_s": s.stored.trim_day_s,
        "trim_day_keys_s": s.stored.trim_day_keys_s,
        "peak_rss_mb": if pg { json!({"ingest": s.ingest_rss, "worker": s.worker_rss}) } else { Value::Null },
        "sizes": {
            "events": z.events,
            "instances": z.instances,
            "days": days,
            "single_events": z.single_events,
            "batch_size": BATCH,
            "concurrent_tasks": CONCURRENT_TASKS,
            "replay_days": REPLAY_DAYS,
            "rows": {"events": s.rows.0, "streams": s.rows.1, "memberships": s.rows.2},
            "ready_streams": z.ready_streams,
            "events_per_ready_stream": READY_STREAM_EVENTS,
            "latency_samples": z.latency_samples,
            "latency_load_events_per_s": LOAD_EVENTS_PER_S,
            "growth_sizes": GROWTH_SIZES,
            "growth_samples": z.growth_samples,
            "workers": z.workers,
            "runs": z.runs,
            "stored": z.stored,
            "stored_days": stored::SEED_DAYS,
            "trim_day_events": s.stored.trim_day_events,
        },
        "machine": {"cpu": m.cpu, "cores": m.cores, "memory_gib": m.memory_gib, "postgres": m.postgres},
        "figures": figures,
    });
    // The query stage's keys (issue 32), outside the macro above (its recursion limit).
    v["ingest_vs_copy_ratio_without_query_indexes"] = json!(med(&s.noidx_ratio));
    v["query_index_ingest_cost"] = json!(med(&s.index_cost));
    v["query_index_ingest_cost_per_index"] = json!(s
        .per_index
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| (n.clone(), med(v)))
        .collect::<serde_json::Map<_, _>>());
    v["ingest_events_per_s_at_stored_without_query_indexes"] = json!(s.stored_without.as_ref().map(|w| w
        .rates
        .iter()
        .map(|(n, r)| (n.to_string(), json!(r)))
        .collect::<serde_json::Map<_, _>>()));
    v["stored_growth_ratio_without_query_indexes"] = json!(s.stored_without.as_ref().and_then(stored_growth_ratio));
    v["query_p99_ms"] = per_query(&s.stored, |f| json!(f.p99_ms), |q| Some(json!(q.all_p99_ms)));
    v["query_p50_ms"] = per_query(&s.stored, |f| json!(f.p50_ms), |q| Some(json!(q.all_p50_ms)));
    v["query_requests"] = per_query(&s.stored, |f| json!(f.requests), |_| None);
    v["query_growth_ratio"] = json!(query_growth_ratio(&s.stored));
    v["query_overloaded"] = per_query(&s.stored, |f| json!(f.overloaded), |_| None);
    v["http_ingest_events_per_s_batched"] = med(&s.http_batched);
    v["http_ingest_events_per_s_single"] = med(&s.http_single);
    v["http_ingest_batched_vs_batched"] = med(&s.http_batched_ratio);
    v["http_ingest_single_vs_batched"] = med(&s.http_single_ratio);
    v["sizes"]["http_clients"] = json!(http_ingest::CLIENTS);
    v["sizes"]["http_batch"] = json!(http_ingest::BATCH);
    v["sizes"]["query_clients"] = json!(z.query_clients);
    v["sizes"]["query_requests"] = json!(z.query_requests);
    v["sizes"]["query_indexes"] = json!(db::query_index_names());
    v
}
