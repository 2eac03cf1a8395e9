//! Query latency through `winchester serve` (issue 32): a fixed set of
//! representative API and console requests, each sent by [`CLIENTS`]
//! concurrent clients in a closed loop, against a database seeded by
//! [`crate::stored::seed`].
//!
//! The real server is started as a child process (`winchester serve --listen
//! 127.0.0.1:0`, no token, so the console's pages are open) next to the
//! bench's own program. Each query is measured on its own: every client sends
//! it, waits for the whole answer and sends it again, until the query's
//! request count is reached (or [`PHASE_CAP`] passes); the first
//! [`WARMUP_PER_CLIENT`] requests of each client are not counted. Every
//! answer must be 200, and non-empty where the seed holds matching data: a
//! bench that measured errors or empty pages would be wrong, so either fails
//! the stage. The one exception is 503 (the server overloaded: no database
//! connection free in time, or the request timeout): that is what the query
//! costs, so it is counted ([`QueryFigures::overloaded`]) and its latency
//! kept among the samples.

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::measure::{stderr_file, tail, Children};
use crate::stats::percentile;
use crate::stored::{Seeded, COMMON_TYPE, RARE_TYPE, SEED_DAYS, SEED_INSTANCES};

/// Concurrent clients (the figure).
pub const CLIENTS: usize = 32;
/// Requests of each query per stored size, by default.
pub const DEFAULT_REQUESTS: usize = 2000;
/// Requests per client before a query's timing starts.
pub const WARMUP_PER_CLIENT: usize = 2;
/// Longest time one query is measured; a query slower than this gets fewer
/// samples (reported in `query_requests`).
pub const PHASE_CAP: Duration = Duration::from_secs(60);
/// Rows asked for by the event queries (`limit`).
pub const EVENT_LIMIT: u32 = 100;

/// The queries, in the order they are measured.
pub const QUERIES: [Query; 7] = [
    Query::EventsRareType,
    Query::EventsCommonType,
    Query::EventsTrait,
    Query::EventsHour,
    Query::StreamsError,
    Query::StreamsDistTrait,
    Query::ConsoleOverview,
];

/// One representative query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// `/v1/events?event_name=<rare type>&limit=100` (one seeded event in 10,000).
    EventsRareType,
    /// `/v1/events?event_name=<common type>&limit=100` (about 70% of the seed).
    EventsCommonType,
    /// `/v1/events?traits=instance_id:<v>&limit=100`, `v` varying over the seeded instances.
    EventsTrait,
    /// `/v1/events?from_datetime=..&to_datetime=..&limit=100`: one hour, varying over the seeded days.
    EventsHour,
    /// `/v1/streams?state=error`.
    StreamsError,
    /// `/v1/streams?distinguishing_traits=instance_id:<v>`, `v` varying.
    StreamsDistTrait,
    /// `GET /`: the console's overview.
    ConsoleOverview,
}

impl Query {
    /// The name used in the JSON keys and the table.
    pub fn name(self) -> &'static str {
        match self {
            Query::EventsRareType => "events_rare_type",
            Query::EventsCommonType => "events_common_type",
            Query::EventsTrait => "events_trait",
            Query::EventsHour => "events_hour",
            Query::StreamsError => "streams_error",
            Query::StreamsDistTrait => "streams_dist_trait",
            Query::ConsoleOverview => "console_overview",
        }
    }

    /// The path and query string of request number `seq`.
    fn path(self, seq: u64, seed: &Seeded) -> String {
        let instances = seed.streams.clamp(1, SEED_INSTANCES);
        let instance = seq.wrapping_mul(7919) % instances;
        match self {
            Query::EventsRareType => format!("/v1/events?event_name={RARE_TYPE}&limit={EVENT_LIMIT}"),
            Query::EventsCommonType => format!("/v1/events?event_name={COMMON_TYPE}&limit={EVENT_LIMIT}"),
            Query::EventsTrait => format!("/v1/events?traits=instance_id:seed-{instance}&limit={EVENT_LIMIT}"),
            Query::EventsHour => {
                let hours = u64::from(SEED_DAYS) * 24;
                let from = start_of_seed(seed) + ChronoDuration::hours((seq.wrapping_mul(37) % hours) as i64);
                let to = from + ChronoDuration::hours(1);
                format!(
                    "/v1/events?from_datetime={}&to_datetime={}&limit={EVENT_LIMIT}",
                    from.format("%Y-%m-%dT%H:%M:%SZ"),
                    to.format("%Y-%m-%dT%H:%M:%SZ")
                )
            }
            Query::StreamsError => "/v1/streams?state=error".to_string(),
            Query::StreamsDistTrait => format!("/v1/streams?distinguishing_traits=instance_id:seed-{instance}"),
            Query::ConsoleOverview => "/".to_string(),
        }
    }

    /// Whether the seed guarantees a non-empty answer.
    fn expects_rows(self, seed: &Seeded) -> bool {
        match self {
            Query::EventsRareType => seed.rare > 0,
            Query::EventsCommonType => seed.common > 0,
            Query::EventsTrait => seed.events > 0,
            // Every hour of the seeded days holds an event once the events
            // are at most an hour apart.
            Query::EventsHour => seed.events >= u64::from(SEED_DAYS) * 24,
            Query::StreamsError => seed.errors > 0,
            Query::StreamsDistTrait => seed.streams > 0,
            Query::ConsoleOverview => true,
        }
    }
}

fn start_of_seed(seed: &Seeded) -> DateTime<Utc> {
    seed.first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// How the query stage runs.
#[derive(Debug, Clone)]
pub struct QueryOpts {
    /// Concurrent clients.
    pub clients: usize,
    /// Requests of each query (warm-up not counted).
    pub requests: usize,
    /// The directory of the `winchester` program.
    pub exe_dir: PathBuf,
    /// The config file `winchester serve` loads (no API token).
    pub config: PathBuf,
}

/// One query's figures at one stored size.
#[derive(Debug, Clone)]
pub struct QueryFigures {
    /// [`Query::name`].
    pub name: &'static str,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Requests timed.
    pub requests: usize,
    /// Requests per second while timed.
    pub per_s: f64,
    /// Timed requests answered 503 (overloaded), included in the latencies.
    pub overloaded: usize,
}

/// Every query's figures at one stored size.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    /// Per query, in [`QUERIES`] order.
    pub queries: Vec<QueryFigures>,
    /// p50 over every timed request of every query, ms.
    pub all_p50_ms: f64,
    /// p99 over every timed request of every query, ms.
    pub all_p99_ms: f64,
}

/// The `winchester serve` child: killed when dropped.
pub(crate) struct Server {
    _child: Children,
    /// `http://ADDR`.
    pub(crate) base: String,
}

/// Starts `winchester serve` (the program in `exe_dir`, loading `config`) on
/// the database at `url` and waits (at most 60 s) for its address.
pub(crate) async fn serve(url: &str, exe_dir: &Path, config: &Path) -> anyhow::Result<Server> {
    let (url, exe_dir, config) = (url.to_string(), exe_dir.to_path_buf(), config.to_path_buf());
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || start_server(&url, &exe_dir, &config)),
    )
    .await
    .map_err(|_| anyhow!("winchester serve did not say where it listens within 60 s"))?
    .map_err(|e| anyhow!("starting winchester serve: {e}"))?
}

/// Starts `winchester serve` on the database at `url` and waits for its
/// address.
fn start_server(url: &str, exe_dir: &Path, config: &Path) -> anyhow::Result<Server> {
    let dir = config.parent().unwrap_or(Path::new(".")).to_path_buf();
    let (log, f) = stderr_file(&dir, "bench-serve")?;
    let program = exe_dir.join("winchester");
    let mut child = Command::new(&program)
        .arg("-c")
        .arg(config)
        .arg("--database-url")
        .arg(url)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(f)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("winchester serve: no stdout"))?;
    let child = Children(vec![child]);
    // The line `listening on http://ADDR` (serve.rs); EOF if it exits first.
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(stdout);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("winchester serve exited before listening: {}", tail(&log));
        }
        if let Some(base) = line.trim().strip_prefix("listening on ") {
            let base = base.to_string();
            // Keep reading stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            return Ok(Server { _child: child, base });
        }
    }
}

/// One bench client's HTTP client: one kept-alive connection, a generous timeout.
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(120))
        .build()
        .context("making an HTTP client")
}

/// Measures every query of [`QUERIES`] against the seeded database at `url`.
pub async fn measure(url: &str, seed: &Seeded, opts: &QueryOpts) -> anyhow::Result<QueryResult> {
    let server = serve(url, &opts.exe_dir, &opts.config).await?;
    let mut out = QueryResult::default();
    let mut all = Vec::new();
    for q in QUERIES {
        let samples = phase(&server.base, q, seed, opts).await?;
        let (took_s, lat, overloaded) = samples;
        out.queries.push(QueryFigures {
            name: q.name(),
            p50_ms: percentile(&lat, 50.0),
            p99_ms: percentile(&lat, 99.0),
            requests: lat.len(),
            per_s: lat.len() as f64 / took_s.max(1e-9),
            overloaded,
        });
        if overloaded > 0 {
            tracing::warn!(query = q.name(), overloaded, "Requests answered 503 (the server was overloaded).");
        }
        all.extend(lat);
    }
    out.all_p50_ms = percentile(&all, 50.0);
    out.all_p99_ms = percentile(&all, 99.0);
    drop(server);
    Ok(out)
}

/// One query by every client: (seconds timed, latencies in ms, how many
/// answered 503).
async fn phase(base: &str, q: Query, seed: &Seeded, opts: &QueryOpts) -> anyhow::Result<(f64, Vec<f64>, usize)> {
    let clients = opts.clients.max(1);
    let warmup = clients * WARMUP_PER_CLIENT;
    let total = warmup + opts.requests.max(1);
    let issued = Arc::new(AtomicUsize::new(0));
    let seed = Arc::new(*seed);
    let deadline = Instant::now() + PHASE_CAP;
    let timed_from = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (issued, seed, base, timed_from) = (issued.clone(), seed.clone(), base.to_string(), timed_from.clone());
        tasks.push(tokio::spawn(async move {
            let client = http_client()?;
            let mut cookie: Option<String> = None;
            let mut lat = Vec::new();
            let mut overloaded = 0;
            loop {
                let k = issued.fetch_add(1, Ordering::Relaxed);
                if k >= total || Instant::now() > deadline {
                    break;
                }
                if k == warmup {
                    let mut t = timed_from.lock().unwrap_or_else(|p| p.into_inner());
                    t.get_or_insert_with(Instant::now);
                }
                let path = q.path(k as u64, &seed);
                let mut req = client.get(format!("{base}{path}"));
                if let Some(c) = &cookie {
                    req = req.header(reqwest::header::COOKIE, c);
                }
                let start = Instant::now();
                let resp = req.send().await.with_context(|| format!("GET {path}"))?;
                let status = resp.status();
                if cookie.is_none() {
                    // The console's session, kept as a browser keeps it.
                    cookie = resp
                        .headers()
                        .get(reqwest::header::SET_COOKIE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.split(';').next())
                        .map(str::to_string);
                }
                let body = resp.bytes().await.with_context(|| format!("GET {path}: reading the answer"))?;
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    overloaded += usize::from(k >= warmup);
                } else {
                    check(q, &path, status, &body, &seed)?;
                }
                if k >= warmup {
                    lat.push(ms);
                }
            }
            anyhow::Ok((lat, overloaded))
        }));
    }
    let (mut lat, mut overloaded) = (Vec::new(), 0);
    for t in tasks {
        let (l, o) = t.await.map_err(|e| anyhow!("a query client panicked: {e}"))??;
        lat.extend(l);
        overloaded += o;
    }
    let from = timed_from.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or_else(Instant::now);
    if lat.is_empty() {
        bail!("query {}: no request was timed within {} s", q.name(), PHASE_CAP.as_secs());
    }
    if overloaded == lat.len() {
        bail!("query {}: every timed request answered 503 (overloaded)", q.name());
    }
    Ok((from.elapsed().as_secs_f64(), lat, overloaded))
}

/// A measured answer must be 200; JSON listings an array, non-empty when
/// the seed holds rows for them; the console a page.
fn check(q: Query, path: &str, status: reqwest::StatusCode, body: &[u8], seed: &Seeded) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(body);
    let snippet: String = text.chars().take(200).collect();
    if status != reqwest::StatusCode::OK {
        bail!("query {}: GET {path} answered {status}: {snippet}", q.name());
    }
    let t = text.trim();
    let ok = match q {
        Query::ConsoleOverview => t.contains("<html") || t.contains("<!DOCTYPE") || t.contains("<!doctype"),
        _ => t.starts_with('[') && (!q.expects_rows(seed) || t != "[]"),
    };
    if !ok {
        bail!("query {}: GET {path} answered 200 without the rows the seed holds: {snippet}", q.name());
    }
    Ok(())
}
