//! Reads from a hot standby (issue 29, item 3) on a plain streaming replica:
//! a private primary and a standby made from it with pg_basebackup (the
//! Patroni cluster of tests/ha.rs does the same through HAProxy).
//! `winchester serve` with `database.read_url` answers listings and counts
//! from the standby while its lag is within `max_read_lag`; with replay
//! paused (lag growing) and with the standby stopped, reads go to the
//! primary, and back once it has caught up; each change is logged once;
//! `/readyz`, `/metrics` and the console show the lag; a write and the read
//! before it use the primary.

use crate::support::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// JSON lines of `n` orders (`order.created` only, no stream fires) numbered from `first`.
fn orders(first: usize, n: usize) -> String {
    let ts = winchester_core::event::format_datetime(&(chrono::Utc::now() - chrono::Duration::seconds(5)));
    (first..first + n)
        .map(|i| {
            format!("{{\"message_id\": \"o-{i}\", \"event_type\": \"order.created\", \"timestamp\": \"{ts}\", \"order_id\": \"o{i}\"}}\n")
        })
        .collect()
}

/// A winchester.yaml on `primary` reading from `standby` (`more`: more keys of `database`).
fn config(primary: &PrivateCluster, standby: &PrivateCluster, more: &str) -> ConfigDir {
    let main = format!(
        "database: {{url: '{}', read_url: '{}'{more}}}\ntrigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\n",
        primary.url(),
        standby.url()
    );
    ConfigDir::new(&[
        ("winchester.yaml", &main),
        ("triggers.yaml", ORDER_TRIGGERS),
        ("pipelines.yaml", "count_it: [logger]\n"),
    ])
}

fn ingest(dir: &ConfigDir, lines: &str) {
    let file = dir.path("orders.jsonl");
    std::fs::write(&file, lines).unwrap();
    let (code, out, err) = run(program("winchester").arg("-c").arg(dir.config()).arg("ingest").arg(&file));
    assert_eq!(code, 0, "{out}{err}");
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}{path}")).await.expect("serve answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// `/v1/events/count`, which must answer 200.
async fn event_count(base: &str) -> u64 {
    let (status, body) = get(base, "/v1/events/count").await;
    assert_eq!(status, 200, "{body}");
    body[0]["count"].as_u64().unwrap()
}

/// Waits (up to 30 s) until `/readyz` says reads come from `target`; returns its details.
async fn wait_reads_from(base: &str, target: &str, log: &Path) -> Value {
    let start = Instant::now();
    loop {
        let (status, body) = get(base, "/readyz").await;
        if status == 200 && body["read_replica"]["reads_from"] == target {
            return body["read_replica"].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "reads never went to the {target}: {body}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `sql` on the standby (replay pause and resume).
async fn on(cluster: &PrivateCluster, sql: &str) {
    let pool = sqlx::PgPool::connect(&cluster.url()).await.unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_from_a_standby_within_max_read_lag_and_falls_back() {
    let primary = PrivateCluster::migrated().await;
    let standby = PrivateCluster::standby_of(&primary);
    let dir = config(&primary, &standby, ", max_read_lag: 2");
    ingest(&dir, &orders(0, 10));
    let log = dir.path("serve.log");
    let (mut serve, base) = spawn_serve_logging(&dir.config(), std::fs::File::create(&log).unwrap()).await;
    let details = wait_reads_from(&base, "standby", &log).await;
    assert_eq!(details["max_read_lag_seconds"], 2.0, "{details}");
    assert!(details["lag_seconds"].as_f64().is_some_and(|l| l < 2.0), "{details}");
    let start = Instant::now();
    while event_count(&base).await != 10 {
        assert!(start.elapsed() < Duration::from_secs(30), "the standby never replayed the first events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Replay paused: the standby keeps answering (its 10 events, not the
    // primary's 15) until the lag passes 2 s, then the primary answers.
    on(&standby, "SELECT pg_wal_replay_pause()").await;
    ingest(&dir, &orders(10, 5));
    assert_eq!(event_count(&base).await, 10, "a read within max_read_lag comes from the standby");
    // A write and the read before it use the primary: the new stream exists
    // there only (a 409, not in error; a read on the standby would say 404).
    let id = primary.count("SELECT max(id) FROM stream").await.unwrap();
    let reset = reqwest::Client::new().put(format!("{base}/v1/streams/{id}")).send().await.unwrap();
    assert_eq!(reset.status(), 409, "{}", reset.text().await.unwrap_or_default());
    let details = wait_reads_from(&base, "primary", &log).await;
    assert!(details["lag_seconds"].as_f64().is_some_and(|l| l > 2.0), "{details}");
    assert!(details["status"].as_str().unwrap().contains("beyond max_read_lag"), "{details}");
    assert_eq!(event_count(&base).await, 15);
    let metrics = format!("{base}/metrics");
    assert!(metric_sum(&metrics, "winchester_read_replica_lag_seconds").await.is_some_and(|l| l > 2.0));
    assert_eq!(metric_sum(&metrics, "winchester_read_replica_used").await, Some(0.0));
    let (status, page) = reqwest::get(format!("{base}/")).await.map(|r| (r.status(), r)).unwrap();
    assert_eq!(status, 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("from the primary") && page.contains("beyond max_read_lag"), "{page}");

    on(&standby, "SELECT pg_wal_replay_resume()").await;
    wait_reads_from(&base, "standby", &log).await;
    assert_eq!(event_count(&base).await, 15);
    assert_eq!(metric_sum(&metrics, "winchester_read_replica_used").await, Some(1.0));

    // The standby stopped: every read still answers, from the primary.
    standby.down();
    for _ in 0..20 {
        assert_eq!(event_count(&base).await, 15);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let details = wait_reads_from(&base, "primary", &log).await;
    assert!(details["status"].as_str().unwrap().contains("standby is unreachable"), "{details}");
    assert!(details["lag_seconds"].is_null(), "{details}");
    standby.up();
    wait_reads_from(&base, "standby", &log).await;

    assert!(std::process::Command::new("kill").arg("-TERM").arg(serve.0.id().to_string()).status().unwrap().success());
    assert!(serve.0.wait().unwrap().success());
    // Each change logged once: to the standby at start and twice after, to
    // the primary twice (lag, then unreachable).
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("Reads from the standby").count(), 3, "{text}");
    assert_eq!(text.matches("Reads from the primary").count(), 2, "{text}");
}

/// A configured standby that is down when `serve` starts does not stop it:
/// reads go to the primary, and to the standby once it is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_with_its_standby_down() {
    let primary = PrivateCluster::migrated().await;
    let standby = PrivateCluster::standby_of(&primary);
    standby.down();
    let dir = config(&primary, &standby, "");
    ingest(&dir, &orders(0, 3));
    let log = dir.path("serve.log");
    let (_serve, base) = spawn_serve_logging(&dir.config(), std::fs::File::create(&log).unwrap()).await;
    let details = wait_reads_from(&base, "primary", &log).await;
    assert!(details["status"].as_str().unwrap().contains("standby is unreachable"), "{details}");
    assert_eq!(event_count(&base).await, 3);
    standby.up();
    wait_reads_from(&base, "standby", &log).await;
    assert_eq!(event_count(&base).await, 3);
}
