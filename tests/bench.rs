//! `winchester bench`: a tiny run as a real process (speed is never asserted),
//! and the set-based ingest paths the bench leans on.

use crate::support::*;
use winchester::EventOutcome;

/// Taken by the tests here that make `wbench_` databases on the server: the
/// smoke run's leftover check counts every one, so they take turns.
static SCRATCH_DATABASES: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn bench_smoke_run_prints_every_figure() {
    let _turn = SCRATCH_DATABASES.lock().unwrap_or_else(|e| e.into_inner());
    let (code, out, err) = run(std::process::Command::new(bin("winchester")).args([
        "bench",
        "--events",
        "300",
        "--instances",
        "20",
        "--workers",
        "1",
        "--runs",
        "1",
        "--stored",
        "0,3000",
        "--query-requests",
        "64",
        "--query-clients",
        "4",
        "--stored-without-query-indexes",
        "--json",
        "--database-url",
        &admin_url(),
    ]));
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let positive = |path: &[&str]| {
        let mut x = &v;
        for p in path {
            x = x.get(p).unwrap_or_else(|| panic!("missing {path:?} in {out}"));
        }
        let n = x.as_f64().unwrap_or_else(|| panic!("{path:?} is not a number in {out}"));
        assert!(n > 0.0 && n.is_finite(), "{path:?} = {n}");
    };
    for key in [
        "ingest_events_per_s_single",
        "ingest_events_per_s_batched",
        "ingest_events_per_s_concurrent",
        "ingest_concurrent_vs_batched",
        "http_ingest_events_per_s_batched",
        "http_ingest_events_per_s_single",
        "http_ingest_batched_vs_batched",
        "http_ingest_single_vs_batched",
        "replay_events_per_s",
        "copy_limit_rows_per_s",
        "ingest_vs_copy_ratio",
        "cost_growth_ratio",
        "stored_growth_ratio",
        "trim_day_s",
        "trim_day_keys_s",
        "ingest_vs_copy_ratio_without_query_indexes",
        "query_index_ingest_cost",
        "stored_growth_ratio_without_query_indexes",
        "query_growth_ratio",
    ] {
        positive(&[key]);
    }
    // The query stage, at every stored size: each query's p99 and all of them
    // (every answer was checked to be 200, and non-empty where the seed has rows).
    for size in ["0", "3000"] {
        for q in [
            "events_rare_type",
            "events_common_type",
            "events_trait",
            "events_hour",
            "streams_error",
            "streams_dist_trait",
            "console_overview",
            "all",
        ] {
            positive(&["query_p99_ms", size, q]);
            positive(&["query_p50_ms", size, q]);
        }
    }
    positive(&["ingest_events_per_s_at_stored_without_query_indexes", "3000"]);
    assert!(v["query_overloaded"]["3000"]["events_trait"].is_u64(), "{out}");
    let indexes = v["sizes"]["query_indexes"].as_array().unwrap_or_else(|| panic!("no sizes.query_indexes in {out}"));
    assert!(indexes.iter().any(|n| n == "event_type_idx"), "{indexes:?}");
    positive(&["ingest_events_per_s_at_stored", "0"]);
    positive(&["ingest_events_per_s_at_stored", "3000"]);
    positive(&["sizes", "trim_day_events"]);
    for p in ["p50", "p99", "max"] {
        positive(&["fire_latency_ms", p]);
        positive(&["fire_latency_under_load_ms", p]);
    }
    positive(&["worker_limit_streams_per_s"]);
    positive(&["worker_vs_limit_ratio"]);
    positive(&["worker_streams_per_s", "1"]);
    positive(&["peak_rss_mb", "ingest"]);
    positive(&["peak_rss_mb", "worker"]);
    positive(&["sizes", "events"]);
    positive(&["sizes", "instances"]);
    // The bench drops every database it made.
    let (_, left, _) = run(std::process::Command::new("psql").args([
        &admin_url(),
        "-Atc",
        "select count(*) from pg_database where datname like 'wbench\\_%'",
    ]));
    if let Ok(n) = left.trim().parse::<i64>() {
        assert_eq!(n, 0, "scratch databases left behind");
    }
}

/// On SQLite the bench runs the figures that apply there, against its own
/// limit, with scratch files next to the given path (all removed afterwards).
#[test]
fn bench_on_sqlite_prints_its_figures() {
    let dir = std::env::temp_dir().join(format!("wtest_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let (code, out, err) = run(std::process::Command::new(bin("winchester")).args([
        "bench",
        "--events",
        "300",
        "--instances",
        "20",
        "--runs",
        "1",
        "--stored",
        "0,2000",
        "--query-requests",
        "32",
        "--query-clients",
        "4",
        "--json",
        "--database-url",
        &url,
    ]));
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(v["backend"], "sqlite");
    for key in [
        "ingest_events_per_s_single",
        "ingest_events_per_s_batched",
        "ingest_events_per_s_concurrent",
        "ingest_concurrent_vs_batched",
        "http_ingest_events_per_s_batched",
        "http_ingest_events_per_s_single",
        "http_ingest_batched_vs_batched",
        "replay_events_per_s",
        "copy_limit_rows_per_s",
        "ingest_vs_copy_ratio",
    ] {
        let n = v[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {out}"));
        assert!(n > 0.0 && n.is_finite(), "{key} = {n}");
    }
    // The query stage runs on SQLite too, at each stored size up to 1M.
    for size in ["0", "2000"] {
        for q in ["events_rare_type", "events_trait", "streams_error", "console_overview", "all"] {
            let n = v["query_p99_ms"][size][q].as_f64().unwrap_or_else(|| panic!("query_p99_ms.{size}.{q} in {out}"));
            assert!(n > 0.0 && n.is_finite(), "query_p99_ms.{size}.{q} = {n}");
        }
    }
    assert!(v["query_growth_ratio"].as_f64().is_some_and(|r| r > 0.0), "{out}");
    // PostgreSQL-only figures are absent, not made up.
    assert!(v["worker_limit_streams_per_s"].is_null(), "{out}");
    assert!(v["stored_growth_ratio"].is_null() && v["trim_day_s"].is_null(), "{out}");
    assert!(v["query_index_ingest_cost"].is_null(), "{out}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "scratch files left behind: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn ids(o: &EventOutcome) -> Vec<i64> {
    match o {
        EventOutcome::Saved { stream_ids, .. } => stream_ids.clone(),
        other => panic!("not saved: {other:?}"),
    }
}

/// One batch: a new key whose events are all past expiry (a claim that is
/// closed again, then further closed streams), a new key that stays open, and
/// an existing key whose stream expired (closed, successor opened).
#[tokio::test]
async fn one_batch_claims_closes_and_opens_streams() {
    let db = TestDb::new().await;
    let now = t(2014, 8, 1, 20, 30, 0);
    let (tm, clock) = manager(&db, INSTANCE_TRIGGERS, now);
    let i = |v: &str| ("instance_id", s(v));
    let old = ids(&tm
        .add_event(event("o", "compute.instance.update", t(2014, 8, 1, 20, 0, 0), &[i("i-old")]))
        .await
        .unwrap())[0];
    clock.set(t(2014, 8, 1, 21, 30, 0));
    let out = tm
        .add_events(vec![
            event("a1", "compute.instance.update", t(2014, 8, 1, 19, 0, 0), &[i("i-a")]),
            event("a2", "compute.instance.update", t(2014, 8, 1, 19, 1, 0), &[i("i-a")]),
            event("a3", "compute.instance.update", t(2014, 8, 1, 19, 2, 0), &[i("i-a")]),
            event("b1", "compute.instance.update", t(2014, 8, 1, 21, 0, 0), &[i("i-b")]),
            event("b2", "compute.instance.update", t(2014, 8, 1, 21, 5, 0), &[i("i-b")]),
            event("c1", "compute.instance.update", t(2014, 8, 1, 21, 10, 0), &[i("i-old")]),
        ])
        .await
        .unwrap();
    let sid: Vec<i64> = out.iter().map(|o| ids(o)[0]).collect();
    // Old events of a new key: each opens (and closes) its own stream.
    assert!(sid[0] != sid[1] && sid[1] != sid[2] && sid[0] != sid[2]);
    // Fresh events of a new key share one open stream.
    assert_eq!(sid[3], sid[4]);
    // The expired stream got a successor.
    assert_ne!(sid[5], old);
    assert_eq!(db.count("SELECT count(*) FROM stream WHERE open").await, 2);
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM stream WHERE open AND id IN ({}, {})", sid[3], sid[5])).await,
        2
    );
    assert_eq!(db.count(&format!("SELECT event_count FROM stream WHERE id = {}", sid[3])).await, 2);
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, 7);
    for id in &sid[..3] {
        assert_eq!(db.count(&format!("SELECT event_count FROM stream WHERE id = {id} AND NOT open")).await, 1);
    }
    db.drop_db().await;
}

/// `winchester bench --soak` with a short interval: one row per interval
/// with every figure, then the summary (speed is not asserted).
#[test]
fn soak_smoke_run_reports_every_interval_and_a_summary() {
    let _turn = SCRATCH_DATABASES.lock().unwrap_or_else(|e| e.into_inner());
    let (code, out, err) = run(std::process::Command::new(bin("winchester")).args([
        "bench",
        "--soak",
        "24s",
        "--soak-interval",
        "4s",
        "--soak-rate",
        "300",
        "--soak-retention",
        "2s",
        "--json",
        "--database-url",
        &admin_url(),
    ]));
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let soak = &v["soak"];
    assert!(soak["events_fed"].as_u64().unwrap_or(0) > 0, "{out}");
    let rows = soak["rows"].as_array().unwrap_or_else(|| panic!("no rows: {out}"));
    assert_eq!(rows.len(), 6, "{out}");
    for r in rows {
        let rss = r["rss_mb"].as_array().unwrap_or_else(|| panic!("{r}"));
        assert_eq!(rss.len(), 3, "ingester and two workers: {r}");
        assert!(rss.iter().all(|m| m.as_f64().unwrap_or(0.0) > 0.0), "{r}");
        assert!(r["db_size_mb"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
        assert!(r["ingest_events_per_s"].as_f64().is_some(), "{r}");
    }
    let last = &rows[rows.len() - 1];
    assert!(last["ingest_events_per_s"].as_f64().unwrap() > 0.0, "{out}");
    let fired: f64 = rows.iter().map(|r| r["fired_streams_per_s"].as_f64().unwrap_or(0.0)).sum();
    assert!(fired > 0.0, "no stream fired: {out}");
    assert!(rows.iter().any(|r| r["fire_delay_p99_ms"].as_f64().is_some()), "{out}");
    let summary = &soak["summary"];
    assert_eq!(summary["measured_rows"], 5, "{out}");
    assert_eq!(summary["rss_drift_pct"].as_array().map(Vec::len), Some(3), "{out}");
    assert!(summary["db_size_bounded"].is_boolean(), "{out}");
}

/// Bad `--soak` input is refused before anything runs, naming what is wrong.
#[test]
fn soak_refuses_bad_durations() {
    let (code, _, err) = run(std::process::Command::new(bin("winchester")).args(["bench", "--soak", "30x"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid duration \"30x\"") && err.contains("unknown unit"), "{err}");
    let (code, _, err) = run(std::process::Command::new(bin("winchester")).args(["bench", "--soak", "30"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs a unit"), "{err}");
    let (code, _, err) =
        run(std::process::Command::new(bin("winchester")).args(["bench", "--soak", "10s", "--soak-interval", "1m"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--soak-interval"), "{err}");
}
