//! `winchester bench --soak DURATION` (issue 14, section 5): a steady ingest
//! through the real ingest path for a long time, to see what drifts.
//!
//! In a scratch database: `winchester ingest -` reads a pipe the bench writes
//! `--soak-rate` events per second into (ten per simulated instance: nine
//! updates, then the `exists` that fires the instance's day stream), two
//! `pipeline-worker` processes fire the streams (purging them once done) and
//! trim the events older than `--soak-retention`. Every `--soak-interval`
//! (a minute) one row: the ingest rate (events stored), the streams fired,
//! the fire delay p99 (from the moment a stream became ready to the commit
//! of its pipeline), the resident memory of each process and the database
//! size. At the end a summary over the rows after the warm-up (the
//! retention plus one interval, at least a fifth of the run): RSS drift per
//! process, the p99 trend, whether the database size stayed bounded.
//!
//! The fire delay is read from a table of the bench's own, filled by a
//! trigger on stream deletes in the scratch database (the engine's schema
//! is not changed).

use crate::measure::{rss_mb, stderr_file, tail, with_db, Children};
use crate::stats::percentile;
use crate::workload::{probe_event, PIPELINES_YAML, TRIGGERS_YAML};
use anyhow::{anyhow, bail, Context};
use chrono::{DurationRound, Utc};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use winchester_core::TraitValue;

/// Default steady ingest rate, events per second.
pub const DEFAULT_RATE: u32 = 2_000;
/// Default time between two rows.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default age past which the workers trim events.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(300);
/// Events per simulated instance: updates, then the `exists` that fires.
pub const EVENTS_PER_STREAM: u64 = 10;
/// Worker processes.
pub const WORKERS: usize = 2;
/// Largest growth of the database size, second half of the measured rows
/// over the first, still counted as bounded.
pub const BOUNDED_GROWTH: f64 = 1.10;

/// What a soak run does.
#[derive(Debug, Clone)]
pub struct SoakOpts {
    /// How long to run.
    pub duration: Duration,
    /// Events per second fed to the ingester.
    pub rate: u32,
    /// Time between two rows.
    pub interval: Duration,
    /// Events older than this are trimmed.
    pub retention: Duration,
    /// Print one JSON object (with every row) instead of the table.
    pub json: bool,
}

impl SoakOpts {
    /// Checks the sizes; errors name the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.rate == 0 {
            bail!("--soak-rate must be at least 1 event per second");
        }
        if self.interval.is_zero() || self.interval > self.duration {
            bail!("--soak-interval must be positive and at most the --soak duration");
        }
        if self.retention < Duration::from_secs(1) {
            bail!("--soak-retention must be at least 1s");
        }
        Ok(())
    }

    /// Rows up to this point are the warm-up: the retention plus one
    /// interval (trimming has caught up), at least a fifth of the run.
    pub fn warmup(&self) -> Duration {
        (self.retention + self.interval).max(self.duration / 5)
    }
}
pub use winchester_core::duration::parse_duration;

/// One interval's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct SoakRow {
    /// Seconds since the feed started, at the end of the interval.
    pub elapsed_s: f64,
    /// Events stored per second.
    pub ingest_per_s: f64,
    /// Streams fired (and purged) per second.
    pub fired_per_s: f64,
    /// Fire delay p99, ms (None when nothing fired).
    pub fire_p99_ms: Option<f64>,
    /// Resident memory, MB: the ingester, then each worker.
    pub rss_mb: Vec<f64>,
    /// `pg_database_size`, MB.
    pub db_mb: f64,
}

impl SoakRow {
    fn to_json(&self) -> Value {
        json!({
            "elapsed_s": self.elapsed_s,
            "ingest_events_per_s": self.ingest_per_s,
            "fired_streams_per_s": self.fired_per_s,
            "fire_delay_p99_ms": self.fire_p99_ms,
            "rss_mb": self.rss_mb,
            "db_size_mb": self.db_mb,
        })
    }
}

/// The verdict over the rows after the warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct SoakSummary {
    /// Rows after the warm-up.
    pub measured_rows: usize,
    /// RSS change from the first measured row to the last, %, per process
    /// (ingester, then workers); empty with fewer than two measured rows.
    pub rss_drift_pct: Vec<f64>,
    /// Mean p99 of the second half of the measured rows over the first half.
    pub p99_trend: Option<f64>,
    /// Largest size in the second half over the largest in the first, and
    /// whether that is within [`BOUNDED_GROWTH`] (four measured rows needed).
    pub db_growth: Option<(f64, bool)>,
}

/// Sums up `rows` after `warmup`.
pub fn summarize(rows: &[SoakRow], warmup: Duration) -> SoakSummary {
    let measured: Vec<&SoakRow> = rows.iter().filter(|r| r.elapsed_s > warmup.as_secs_f64()).collect();
    let mut s = SoakSummary { measured_rows: measured.len(), rss_drift_pct: vec![], p99_trend: None, db_growth: None };
    if let (Some(first), Some(last), true) = (measured.first(), measured.last(), measured.len() >= 2) {
        s.rss_drift_pct = first
            .rss_mb
            .iter()
            .zip(&last.rss_mb)
            .map(|(a, b)| if *a > 0.0 { (b - a) / a * 100.0 } else { 0.0 })
            .collect();
    }
    let (early, late) = measured.split_at(measured.len() / 2);
    let mean = |rs: &[&SoakRow]| {
        let v: Vec<f64> = rs.iter().filter_map(|r| r.fire_p99_ms).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    if let (Some(a), Some(b)) = (mean(early), mean(late)) {
        s.p99_trend = (a > 0.0).then(|| b / a);
    }
    if measured.len() >= 4 {
        let max = |rs: &[&SoakRow]| rs.iter().map(|r| r.db_mb).fold(0.0, f64::max);
        let growth = if max(early) > 0.0 { max(late) / max(early) } else { 1.0 };
        s.db_growth = Some((growth, growth <= BOUNDED_GROWTH));
    }
    s
}

/// The table's header (the row lines follow as they are measured).
pub fn header(opts: &SoakOpts) -> String {
    let workers: String = (0..WORKERS).map(|i| format!(" RSS worker-{i} MB |")).collect();
    let rule: String = (0..WORKERS).map(|_| "---:|").collect();
    format!(
        "winchester bench --soak {}: {} events/s through `winchester ingest -`, {WORKERS} pipeline-worker processes, \
         trimming events older than {}; one row per {}\n\n\
         | elapsed | ingest events/s | fired streams/s | fire delay p99 ms | RSS ingest MB |{workers} DB MB |\n\
         |---:|---:|---:|---:|---:|{rule}---:|\n",
        show(opts.duration),
        opts.rate,
        show(opts.retention),
        show(opts.interval),
    )
}

/// One table row.
pub fn render_row(r: &SoakRow) -> String {
    let rss: String = r.rss_mb.iter().map(|m| format!(" {m:.1} |")).collect();
    let p99 = r.fire_p99_ms.map_or("-".to_string(), |p| format!("{p:.1}"));
    format!(
        "| {} | {:.0} | {:.1} | {p99} | {rss} {:.1} |\n",
        show(Duration::from_secs_f64(r.elapsed_s)),
        r.ingest_per_s,
        r.fired_per_s,
        r.db_mb
    )
    .replace("|  ", "| ")
}

/// The closing lines.
pub fn render_summary(s: &SoakSummary, opts: &SoakOpts) -> String {
    let mut out = format!("\nsummary ({} rows after a warm-up of {}):\n", s.measured_rows, show(opts.warmup()));
    let names = std::iter::once("ingest".to_string()).chain((0..WORKERS).map(|i| format!("worker-{i}")));
    if s.rss_drift_pct.is_empty() {
        out.push_str("  RSS drift: n/a (fewer than 2 rows after the warm-up; run longer)\n");
    } else {
        let parts: Vec<String> = names.zip(&s.rss_drift_pct).map(|(n, d)| format!("{n} {d:+.1}%")).collect();
        out.push_str(&format!("  RSS drift after warm-up: {}\n", parts.join(", ")));
    }
    match s.p99_trend {
        Some(t) => out.push_str(&format!("  fire delay p99 trend: {t:.2}x (mean p99, second half / first half)\n")),
        None => out.push_str("  fire delay p99 trend: n/a\n"),
    }
    match s.db_growth {
        Some((g, ok)) => out.push_str(&format!(
            "  database size bounded: {} (largest size, second half / first half: {g:.2}x)\n",
            if ok { "yes" } else { "no" }
        )),
        None => out.push_str("  database size bounded: n/a (fewer than 4 rows after the warm-up; run longer)\n"),
    }
    out
}

fn summary_json(s: &SoakSummary) -> Value {
    json!({
        "measured_rows": s.measured_rows,
        "rss_drift_pct": s.rss_drift_pct,
        "fire_delay_p99_trend": s.p99_trend,
        "db_size_growth": s.db_growth.map(|g| g.0),
        "db_size_bounded": s.db_growth.map(|g| g.1),
    })
}

/// `1h30m`, `70s`, `500ms`.
fn show(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Said when the server runs without autovacuum.
const AUTOVACUUM_OFF: &str = "autovacuum is off on this server: the space of trimmed events and purged \
     streams is never reused, so the database size cannot stay bounded; soak on a server with autovacuum on";

/// The workers' config: trimming on, completed streams purged.
fn winchester_yaml(retention: Duration) -> String {
    format!(
        "log_level: warn\n\
         statistics_period: 3600\n\
         pipeline_worker_batch_size: 1000\n\
         pipeline_worker_delay: 1\n\
         stream_lease_timeout: 120\n\
         handler_timeout: 30\n\
         purge_completed_streams: true\n\
         trim_events: true\n\
         trim_events_age: \"$timestamp - {}s\"\n\
         trim_events_batch_size: 10000\n\
         trigger_definitions: triggers.yaml\n\
         pipeline_config: pipelines.yaml\n\
         pipeline_handlers:\n  sink: logger\n",
        retention.as_secs()
    )
}

/// The bench's own record of fire delays: one row per purged stream that
/// had fired, with the time from ready (`fire_timestamp`) to the delete.
const FIRE_DELAY_SQL: &str = "\
CREATE TABLE soak_fired (delay_ms DOUBLE PRECISION NOT NULL);
CREATE FUNCTION soak_record_fire() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.fire_timestamp IS NOT NULL THEN
        INSERT INTO soak_fired VALUES (extract(epoch FROM clock_timestamp() - OLD.fire_timestamp) * 1000);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER soak_record_fire AFTER DELETE ON stream FOR EACH ROW EXECUTE FUNCTION soak_record_fire();";

/// A temp dir with the soak's config files, removed when dropped.
struct SoakDir(PathBuf);

impl Drop for SoakDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes event lines into the ingester's pipe at `rate` per second until
/// `stop`; returns how many it wrote.
fn feed(mut pipe: ChildStdin, rate: u32, stop: Arc<AtomicBool>) -> std::io::Result<u64> {
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        // Never more than a second's worth in one write (a slow ingester
        // blocks the pipe; the rows show the rate it kept).
        let upto = due.min(n + rate as u64);
        if upto > n {
            buf.clear();
            let now = Utc::now();
            let day = now.duration_trunc(chrono::Duration::days(1)).unwrap_or(now);
            for k in n..upto {
                let instance = format!("soak-{}", k / EVENTS_PER_STREAM);
                let e = if k % EVENTS_PER_STREAM == EVENTS_PER_STREAM - 1 {
                    let audit = [
                        ("audit_period_beginning", TraitValue::Datetime(day)),
                        ("audit_period_ending", TraitValue::Datetime(day + chrono::Duration::days(1))),
                    ];
                    probe_event(format!("soak-{k}"), "compute.instance.exists", &instance, now, &audit)
                } else {
                    probe_event(format!("soak-{k}"), "compute.instance.update", &instance, now, &[])
                };
                serde_json::to_writer(&mut buf, &e.to_json())?;
                buf.push(b'\n');
            }
            pipe.write_all(&buf)?;
            pipe.flush()?;
            n = upto;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(n)
}

/// Runs the soak on a scratch database on `admin` (PostgreSQL) with the
/// programs in `exe_dir`; prints the rows as they come (unless `opts.json`)
/// and returns the rest of the output.
pub async fn run(opts: &SoakOpts, admin: &str, exe_dir: &Path) -> anyhow::Result<String> {
    opts.validate()?;
    if !matches!(crate::target::Target::from_url(admin), crate::target::Target::Postgres { .. }) {
        bail!("--soak needs PostgreSQL (a postgres:// admin URL)");
    }
    for bin in ["pipeline-worker", "winchester"] {
        if !exe_dir.join(bin).exists() {
            bail!("{} not found: the soak runs the {bin} program next to itself", exe_dir.join(bin).display());
        }
    }
    let dir = SoakDir(std::env::temp_dir().join(format!("winchester-soak-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
    for (name, text) in [
        ("triggers.yaml", TRIGGERS_YAML.to_string()),
        ("pipelines.yaml", PIPELINES_YAML.to_string()),
        ("winchester.yaml", winchester_yaml(opts.retention)),
    ] {
        let path = dir.0.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let config = dir.0.join("winchester.yaml");
    let opts = opts.clone();
    with_db(admin, |db| async move {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&db.url).await?;
        sqlx::raw_sql(FIRE_DELAY_SQL).execute(&pool).await.context("creating the fire-delay table")?;
        let autovacuum: String = sqlx::query_scalar("SELECT current_setting('autovacuum')").fetch_one(&pool).await?;
        let autovacuum = autovacuum == "on";
        if !autovacuum {
            eprintln!("bench: {AUTOVACUUM_OFF}");
        }
        let spawn = |name: &str, cmd: &mut Command| -> anyhow::Result<(std::process::Child, PathBuf)> {
            let (log, f) = stderr_file(&dir.0, name)?;
            let child = cmd
                .arg("-c")
                .arg(&config)
                .arg("--database-url")
                .arg(&db.url)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(f)
                .spawn()
                .with_context(|| format!("starting {name}"))?;
            Ok((child, log))
        };
        let mut children = Children(Vec::new());
        let mut logs = Vec::new();
        let (mut ingest, log) =
            spawn("soak-ingest", Command::new(exe_dir.join("winchester")).args(["ingest", "-"]).stdin(Stdio::piped()))?;
        let pipe = ingest.stdin.take().ok_or_else(|| anyhow!("no pipe to the ingester"))?;
        children.0.push(ingest);
        logs.push(log);
        for i in 0..WORKERS {
            let name = format!("soak-worker-{i}");
            let (child, log) =
                spawn(&name, Command::new(exe_dir.join("pipeline-worker")).args(["-n", &name]).stdin(Stdio::null()))?;
            children.0.push(child);
            logs.push(log);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let feeder = {
            let (stop, rate) = (stop.clone(), opts.rate);
            std::thread::spawn(move || feed(pipe, rate, stop))
        };
        if !opts.json {
            print!("{}", header(&opts));
        }
        let result: anyhow::Result<Vec<SoakRow>> = async {
            let start = Instant::now();
            let mut rows = Vec::new();
            let mut last_id: i64 = 0;
            let mut last_at = start;
            let mut tick = start;
            while start.elapsed() < opts.duration {
                tick += opts.interval.min(opts.duration.saturating_sub(tick - start));
                while Instant::now() < tick {
                    tokio::time::sleep(Duration::from_millis(200).min(tick - Instant::now())).await;
                    for (c, log) in children.0.iter_mut().zip(&logs) {
                        if let Some(status) = c.try_wait()? {
                            bail!("{} exited during the soak ({status}): {}", log.display(), tail(log));
                        }
                    }
                }
                if feeder.is_finished() {
                    bail!("the feed into `winchester ingest -` stopped: {}", tail(&logs[0]));
                }
                let id: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0)::bigint FROM event").fetch_one(&pool).await?;
                let delays: Vec<f64> =
                    sqlx::query_scalar("DELETE FROM soak_fired RETURNING delay_ms").fetch_all(&pool).await?;
                let bytes: i64 =
                    sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(&pool).await?;
                let now = Instant::now();
                let secs = now.duration_since(last_at).as_secs_f64().max(1e-3);
                let row = SoakRow {
                    elapsed_s: now.duration_since(start).as_secs_f64().round(),
                    ingest_per_s: (id - last_id) as f64 / secs,
                    fired_per_s: delays.len() as f64 / secs,
                    fire_p99_ms: (!delays.is_empty()).then(|| percentile(&delays, 99.0)),
                    rss_mb: children.0.iter().map(|c| rss_mb(c.id()).unwrap_or(0.0)).collect(),
                    db_mb: bytes as f64 / 1024.0 / 1024.0,
                };
                (last_id, last_at) = (id, now);
                if !opts.json {
                    print!("{}", render_row(&row));
                    let _ = std::io::stdout().flush();
                }
                rows.push(row);
            }
            Ok(rows)
        }
        .await;
        stop.store(true, Ordering::Relaxed);
        // The feeder ends (closing the pipe) within one of its 10 ms steps,
        // unless it is stuck writing into a pipe nobody reads: the children
        // are killed below either way.
        let fed = tokio::task::spawn_blocking(move || feeder.join()).await;
        drop(children);
        // What holds the space, for telling retention from other growth.
        let largest: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema() \
             ORDER BY 2 DESC LIMIT 5",
        )
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        pool.close().await;
        let rows = result?;
        let fed = match fed {
            Ok(Ok(Ok(n))) => n,
            Ok(Ok(Err(e))) => bail!("feeding `winchester ingest -`: {e}"),
            _ => bail!("the feed into `winchester ingest -` panicked"),
        };
        let summary = summarize(&rows, opts.warmup());
        if opts.json {
            let v = json!({
                "soak": {
                    "duration_s": opts.duration.as_secs_f64(),
                    "rate_events_per_s": opts.rate,
                    "interval_s": opts.interval.as_secs_f64(),
                    "retention_s": opts.retention.as_secs_f64(),
                    "warmup_s": opts.warmup().as_secs_f64(),
                    "workers": WORKERS,
                    "events_fed": fed,
                    "autovacuum": autovacuum,
                    "largest_tables_mb": largest.iter().map(|(t, b)| (t.clone(), json!(*b as f64 / 1048576.0))).collect::<serde_json::Map<_, _>>(),
                    "rows": rows.iter().map(SoakRow::to_json).collect::<Vec<_>>(),
                    "summary": summary_json(&summary),
                }
            });
            return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
        }
        let tables: Vec<String> =
            largest.iter().map(|(t, b)| format!("{t} {:.1} MB", *b as f64 / 1048576.0)).collect();
        Ok(format!(
            "{}  events fed: {fed}\n  largest tables at the end: {}\n{}",
            render_summary(&summary, &opts),
            tables.join(", "),
            if autovacuum { String::new() } else { format!("  note: {AUTOVACUUM_OFF}\n") }
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workers_config_is_valid_and_trims() {
        let dir = std::env::temp_dir().join(format!("winchester-soak-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("triggers.yaml"), TRIGGERS_YAML).unwrap();
        std::fs::write(dir.join("pipelines.yaml"), PIPELINES_YAML).unwrap();
        std::fs::write(dir.join("winchester.yaml"), winchester_yaml(Duration::from_secs(600))).unwrap();
        let registry = winchester_handlers::registry();
        let known = |t: &str| registry.knows(t);
        let cfg = winchester_core::LoadedConfig::load(&dir.join("winchester.yaml"), Some(&known));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = cfg.unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.main.trim_events && cfg.main.purge_completed_streams);
        let now = Utc::now();
        let mut vars = winchester_core::timex::Vars::new();
        vars.insert("timestamp".into(), now);
        let cutoff = cfg.main.trim_events_age.eval(&vars).unwrap().timestamp();
        assert_eq!(cutoff, now - chrono::Duration::seconds(600));
    }

    fn row(elapsed_s: f64, p99: f64, rss: f64, db: f64) -> SoakRow {
        SoakRow {
            elapsed_s,
            ingest_per_s: 2000.0,
            fired_per_s: 200.0,
            fire_p99_ms: Some(p99),
            rss_mb: vec![rss, rss * 2.0, rss * 2.0],
            db_mb: db,
        }
    }

    #[test]
    fn summary_skips_the_warmup_and_judges_drift_trend_and_bound() {
        // Warm-up rows (growing fast) are left out.
        let mut rows = vec![row(60.0, 500.0, 10.0, 10.0), row(120.0, 400.0, 20.0, 50.0)];
        rows.extend((3..=10).map(|m| row(m as f64 * 60.0, if m <= 6 { 20.0 } else { 30.0 }, 40.0 + m as f64, 100.0)));
        let s = summarize(&rows, Duration::from_secs(150));
        assert_eq!(s.measured_rows, 8);
        assert_eq!(s.rss_drift_pct.len(), 3);
        assert!((s.rss_drift_pct[0] - (50.0 - 43.0) / 43.0 * 100.0).abs() < 1e-9, "{s:?}");
        assert!((s.p99_trend.unwrap() - 1.5).abs() < 1e-9, "{s:?}");
        assert_eq!(s.db_growth, Some((1.0, true)));
        // A database that keeps growing is not bounded.
        let growing: Vec<SoakRow> = (1..=8).map(|m| row(m as f64 * 60.0, 20.0, 40.0, 100.0 * m as f64)).collect();
        let g = summarize(&growing, Duration::ZERO).db_growth.unwrap();
        assert!(!g.1 && g.0 > 1.5, "{g:?}");
        // Too short to say.
        let s = summarize(&rows[..3], Duration::from_secs(150));
        assert_eq!((s.measured_rows, s.db_growth, s.p99_trend), (1, None, None));
        assert!(s.rss_drift_pct.is_empty());
        assert!(render_summary(&s, &soak_opts()).contains("n/a"));
    }

    fn soak_opts() -> SoakOpts {
        SoakOpts {
            duration: Duration::from_secs(1800),
            rate: DEFAULT_RATE,
            interval: DEFAULT_INTERVAL,
            retention: DEFAULT_RETENTION,
            json: false,
        }
    }

    #[test]
    fn rows_render_as_table_lines_under_the_header() {
        let o = soak_opts();
        assert_eq!(o.warmup(), Duration::from_secs(360));
        let h = header(&o);
        assert!(h.contains("--soak 30m") && h.contains("older than 5m") && h.contains("one row per 1m"), "{h}");
        let cols = h.lines().nth(2).unwrap().matches('|').count();
        let line = render_row(&row(90.0, 12.34, 40.0, 100.0));
        assert_eq!(line.matches('|').count(), cols, "{h}{line}");
        assert!(line.starts_with("| 1m30s | 2000 | 200.0 | 12.3 | 40.0 | 80.0 | 80.0 | 100.0 |"), "{line}");
        assert!(SoakOpts { interval: Duration::from_secs(3600), ..o.clone() }.validate().is_err());
        assert!(SoakOpts { rate: 0, ..o }.validate().is_err());
    }
}
