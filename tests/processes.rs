//! Real `pipeline-worker` processes (the `counting_worker` example, which is the
//! stock worker plus a handler that records each commit in a table) against
//! one database: exactly once across workers, kill -9, SIGTERM.

use crate::support::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use winchester::EventOutcome;

const TRIGGERS: &str = ORDER_TRIGGERS;

struct Cluster {
    db: TestDb,
    dir: ConfigDir,
}

impl Cluster {
    async fn new(backend: Backend, streams: usize, sleep_ms: u64, extra: &str) -> Cluster {
        let db = TestDb::on(backend).await;
        db.exec("CREATE TABLE handler_commits (stream_id BIGINT NOT NULL, action TEXT NOT NULL, pid INT NOT NULL)")
            .await;
        let dir = ConfigDir::new(&[
            (
                "winchester.yaml",
                &format!(
                    "database: {{url: '{}'}}\ntrigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\npurge_completed_streams: false\npipeline_worker_delay: 0.2\nstatistics_period: 1\n{extra}",
                    db.url
                ),
            ),
            ("triggers.yaml", TRIGGERS),
            ("pipelines.yaml", &format!("count_it:\n  - {{name: counting, params: {{sleep_ms: {sleep_ms}}}}}\n")),
        ]);
        let (tm, _) = manager(&db, TRIGGERS, chrono::Utc::now());
        let events: Vec<_> = (0..streams)
            .map(|i| {
                event(&format!("paid-{i}"), "order.paid", chrono::Utc::now(), &[("order_id", s(&format!("o{i}")))])
            })
            .collect();
        for chunk in events.chunks(1000) {
            let out = tm.add_events(chunk.to_vec()).await.unwrap();
            assert!(out.iter().all(|o| matches!(o, EventOutcome::Saved { .. })));
        }
        Cluster { db, dir }
    }

    fn spawn_worker(&self, name: &str) -> Child {
        Command::new(example("counting_worker"))
            .arg("-c")
            .arg(self.dir.config())
            .arg("-n")
            .arg(name)
            .env("DATABASE_URL", &self.db.url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn worker")
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db.count(sql).await
    }

    async fn wait_for(&self, sql: &str, want: i64, limit: Duration) {
        let start = Instant::now();
        loop {
            let got = self.count(sql).await;
            if got == want {
                return;
            }
            assert!(start.elapsed() < limit, "{sql}: still {got}, want {want} after {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("worker did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Invariant 7: 4 worker processes, each running 8 pipelines at once, 10,000
/// ready streams: every stream is committed exactly once and ends completed.
async fn exactly_once_across_four_workers(backend: Backend) {
    let c = Cluster::new(backend, 10_000, 0, "pipeline_worker_concurrency: 8\npipeline_worker_batch_size: 200\n").await;
    let mut workers: Vec<Child> = (0..4).map(|i| c.spawn_worker(&format!("w{i}"))).collect();
    c.wait_for("SELECT count(*) FROM stream WHERE state <> 6", 0, Duration::from_secs(240)).await;
    for w in &workers {
        sigterm(w);
    }
    for w in &mut workers {
        assert!(wait_exit(w, Duration::from_secs(30)).success());
    }
    assert_eq!(c.count("SELECT count(*) FROM handler_commits").await, 10_000);
    assert_eq!(c.count("SELECT count(DISTINCT stream_id) FROM handler_commits").await, 10_000);
    assert_eq!(c.count("SELECT count(*) FROM stream WHERE state = 6").await, 10_000);
    let pids = c.count("SELECT count(DISTINCT pid) FROM handler_commits").await;
    assert!(pids >= 2, "only {pids} worker(s) did any work");
    c.db.drop_db().await;
}

/// Invariant 7: a worker killed with SIGKILL inside handle_events leaves its
/// stream firing; once its lease (renewed until the kill) runs out, another
/// worker fires it, committed once, within lease + worker delay.
async fn killed_worker_stream_is_reclaimed_after_lease(backend: Backend) {
    let c = Cluster::new(backend, 1, 2500, "stream_lease_timeout: 2\nhandler_timeout: 10\n").await;
    let mut a = c.spawn_worker("doomed");
    c.wait_for("SELECT count(*) FROM stream WHERE state = 2", 1, Duration::from_secs(30)).await;
    // Past the first renewals (every lease/3), still inside handle_events (2.5 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    let killed_at = Instant::now();
    let taken: i64 = c.count("SELECT id FROM stream WHERE state = 2").await;
    assert_eq!(c.count("SELECT count(*) FROM handler_commits").await, 0);
    let mut b = c.spawn_worker("rescuer");
    c.wait_for(&format!("SELECT CAST(attempts AS BIGINT) FROM stream WHERE id = {taken}"), 2, Duration::from_secs(30))
        .await;
    let reclaimed = killed_at.elapsed();
    // Lease 2 s + delay 0.2 s, with slack for starting the rescuer process.
    assert!(reclaimed < Duration::from_secs(5), "reclaimed only after {reclaimed:?}");
    c.wait_for("SELECT count(*) FROM stream WHERE state <> 6", 0, Duration::from_secs(60)).await;
    sigterm(&b);
    assert!(wait_exit(&mut b, Duration::from_secs(30)).success());
    assert_eq!(c.count("SELECT count(*) FROM handler_commits").await, 1);
    assert_eq!(c.count(&format!("SELECT count(*) FROM handler_commits WHERE stream_id = {taken}")).await, 1);
    assert_eq!(c.count(&format!("SELECT CAST(attempts AS BIGINT) FROM stream WHERE id = {taken}")).await, 2);
    c.db.drop_db().await;
}

/// Invariant 10: SIGTERM while streams are in hand: the worker finishes the
/// ones it claimed (the batch running and the next one, claimed while it
/// runs), claims no new one, exits 0, and leaves nothing firing.
async fn sigterm_finishes_stream_in_hand(backend: Backend) {
    let c = Cluster::new(backend, 5, 1000, "pipeline_worker_batch_size: 2\npipeline_worker_concurrency: 1\n").await;
    let mut w = c.spawn_worker("graceful");
    let in_hand = "SELECT CAST(CASE WHEN count(*) > 0 THEN 1 ELSE 0 END AS BIGINT) FROM stream WHERE state = 2";
    c.wait_for(in_hand, 1, Duration::from_secs(30)).await;
    sigterm(&w);
    let status = wait_exit(&mut w, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    assert_eq!(c.count("SELECT count(*) FROM stream WHERE state IN (2, 3)").await, 0);
    let done = c.count("SELECT count(*) FROM stream WHERE state = 6").await;
    assert_eq!(c.count("SELECT count(*) FROM handler_commits").await, done);
    assert!((1..5).contains(&done), "{done} completed: it should finish the one in hand and stop");
    c.db.drop_db().await;
}

/// Lease heartbeat: handlers that take three times the lease, two workers
/// running: no stream is taken over while its run is alive, every stream is
/// committed exactly once, each taken once.
async fn slow_handlers_outliving_the_lease_commit_once(backend: Backend) {
    let c = Cluster::new(backend, 4, 3000, "stream_lease_timeout: 1\nhandler_timeout: 10\n").await;
    let mut workers: Vec<Child> = (0..2).map(|i| c.spawn_worker(&format!("w{i}"))).collect();
    c.wait_for("SELECT count(*) FROM stream WHERE state <> 6", 0, Duration::from_secs(60)).await;
    for w in &workers {
        sigterm(w);
    }
    for w in &mut workers {
        assert!(wait_exit(w, Duration::from_secs(30)).success());
    }
    assert_eq!(c.count("SELECT count(*) FROM handler_commits").await, 4);
    assert_eq!(c.count("SELECT count(DISTINCT stream_id) FROM handler_commits").await, 4);
    assert_eq!(c.count("SELECT count(*) FROM stream WHERE attempts = 1").await, 4, "a stream was taken twice");
    c.db.drop_db().await;
}

/// kill -9 in the middle of a batch (8 pipelines running, more claimed): the
/// rescuer completes every stream once the lease runs out; nothing is lost, a
/// commit runs twice only for a stream the killed worker had in hand, and
/// nothing is left firing.
async fn kill_mid_batch_loses_nothing(backend: Backend) {
    let n = 1000;
    let c = Cluster::new(
        backend,
        n,
        50,
        "stream_lease_timeout: 2\npipeline_worker_concurrency: 8\npipeline_worker_batch_size: 100\n",
    )
    .await;
    let mut a = c.spawn_worker("doomed");
    let start = Instant::now();
    while c.count("SELECT count(*) FROM handler_commits").await < 150 {
        assert!(start.elapsed() < Duration::from_secs(60), "the worker did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.kill().unwrap(); // SIGKILL, mid-batch
    a.wait().unwrap();
    let in_hand = c.count("SELECT count(*) FROM stream WHERE state = 2").await;
    assert!(in_hand > 0, "nothing was in hand at the kill");
    c.db.exec("CREATE TABLE in_hand AS SELECT id FROM stream WHERE state = 2").await;
    let mut b = c.spawn_worker("rescuer");
    c.wait_for("SELECT count(*) FROM stream WHERE state <> 6", 0, Duration::from_secs(120)).await;
    sigterm(&b);
    assert!(wait_exit(&mut b, Duration::from_secs(30)).success());
    assert_eq!(c.count("SELECT count(DISTINCT stream_id) FROM handler_commits").await, n as i64, "lost a stream");
    let twice = c
        .count(
            "SELECT count(*) FROM (SELECT stream_id FROM handler_commits GROUP BY stream_id HAVING count(*) > 1) AS d \
             WHERE stream_id NOT IN (SELECT id FROM in_hand)",
        )
        .await;
    assert_eq!(twice, 0, "a stream not in the killed worker's hand was committed twice");
    c.db.drop_db().await;
}

crate::backend_tests!(
    kill_mid_batch_loses_nothing,
    slow_handlers_outliving_the_lease_commit_once,
    exactly_once_across_four_workers,
    killed_worker_stream_is_reclaimed_after_lease,
    sigterm_finishes_stream_in_hand
);
