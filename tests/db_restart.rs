//! Losing the database (issue 14, section 1): a private PostgreSQL cluster of
//! the test's own (never the shared server, see [`PrivateCluster`]) is
//! restarted while each long-running program is busy: `pipeline-worker` in
//! the middle of its batches, `winchester-ingest` with deliveries in flight,
//! `winchester ingest` reading a file or a pipe in the middle of a batch, and
//! `winchester serve` answering requests. Each waits with backoff, logs the
//! outage once and its end once, and nothing is lost or doubled. On SQLite,
//! another process holding the write lock means waiting, not failing.

use crate::support::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TRIGGERS: &str = ORDER_TRIGGERS;

/// Section 1 for `pipeline-worker`: the private cluster stops (fast
/// shutdown: every connection is cut, open transactions roll back) while a
/// worker is running pipelines and recording their ends, and starts again
/// once the worker has noticed. The worker keeps
/// running, logs the outage once and its end once (per retrying loop), and
/// every stream is committed exactly once and ends completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_survives_a_database_restart_mid_batch() {
    let cluster = PrivateCluster::migrated().await;
    let url = cluster.url();
    // The handler records its commits on the shared server, which stays up.
    let sink = TestDb::new().await;
    sink.exec("CREATE TABLE handler_commits (stream_id BIGINT NOT NULL, action TEXT NOT NULL, pid INT NOT NULL)").await;
    let database = format!("database: {{url: '{url}'}}\ntrigger_definitions: triggers.yaml\n");
    let dir = ConfigDir::new(&[
        (
            "winchester.yaml",
            &format!(
                "{database}pipeline_config: pipelines.yaml\npurge_completed_streams: false\npipeline_worker_delay: 0.2\npipeline_worker_batch_size: 20\npipeline_worker_concurrency: 4\nstream_lease_timeout: 120\n"
            ),
        ),
        ("triggers.yaml", TRIGGERS),
        ("pipelines.yaml", "count_it:\n  - {name: counting, params: {sleep_ms: 100}}\n"),
    ]);
    const ORDERS: i64 = 300;
    let ts = winchester_core::event::format_datetime(&(chrono::Utc::now() - chrono::Duration::seconds(5)));
    let lines: String = (0..ORDERS)
        .map(|i| {
            format!("{{\"message_id\": \"paid-{i}\", \"event_type\": \"order.paid\", \"timestamp\": \"{ts}\", \"order_id\": \"o{i}\"}}\n")
        })
        .collect();
    std::fs::write(dir.path("orders.jsonl"), lines).unwrap();
    let (code, out, err) =
        run(program("winchester").arg("-c").arg(dir.config()).arg("ingest").arg(dir.path("orders.jsonl")));
    assert_eq!(code, 0, "{out}{err}");

    let log = std::fs::File::create(dir.path("worker.log")).unwrap();
    let mut worker = KillOnDrop(
        Command::new(example("counting_worker"))
            .arg("-c")
            .arg(dir.config())
            .env_remove("DATABASE_URL")
            .env("COUNTING_SINK_URL", &sink.url)
            .env("RUST_LOG", "warn,winchester_storage=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn worker"),
    );
    let start = Instant::now();
    while sink.count("SELECT count(*) FROM handler_commits").await < 30 {
        assert!(start.elapsed() < Duration::from_secs(60), "the worker did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Down until the worker has noticed, then up again.
    cluster.down();
    wait_for_log(&dir.path("worker.log"), "Database unavailable", &mut worker.0);
    cluster.up();
    let start = Instant::now();
    loop {
        assert!(worker.0.try_wait().unwrap().is_none(), "the worker exited: {}", read(&dir, "worker.log"));
        let left = match sqlx::PgPool::connect(&url).await {
            Ok(pool) => {
                let n: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM stream WHERE state <> 6").fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
            Err(_) => -1,
        };
        if left == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{left} streams not completed: {}",
            read(&dir, "worker.log")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(Command::new("kill").arg("-TERM").arg(worker.0.id().to_string()).status().unwrap().success());
    assert!(worker.0.wait().unwrap().success(), "{}", read(&dir, "worker.log"));
    assert_eq!(sink.count("SELECT count(*) FROM handler_commits").await, ORDERS);
    assert_eq!(sink.count("SELECT count(DISTINCT stream_id) FROM handler_commits").await, ORDERS);
    assert_outages_logged(&read(&dir, "worker.log"), 3);
    sink.drop_db().await;
}

fn read(dir: &ConfigDir, name: &str) -> String {
    std::fs::read_to_string(dir.path(name)).unwrap_or_default()
}

/// A winchester.yaml on the private cluster with the order triggers.
fn restart_config(cluster: &PrivateCluster) -> ConfigDir {
    ConfigDir::new(&[
        ("winchester.yaml", &format!("database: {{url: '{}'}}\n{LOGGING_PIPELINES}", cluster.url())),
        ("triggers.yaml", TRIGGERS),
        ("pipelines.yaml", "count_it:\n  - log_it\n"),
    ])
}

/// The rest of a winchester.yaml whose `count_it` pipeline only logs.
const LOGGING_PIPELINES: &str = "trigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\n\
     pipeline_handlers: {log_it: logger}\npurge_completed_streams: false\npipeline_worker_delay: 0.2\n";

/// JSON lines of `order.created` events numbered `range` (message ids `order.created-N`).
fn order_lines(range: std::ops::Range<i64>) -> String {
    lines_of("order.created", range)
}

/// JSON lines of events of type `event_type` (`order.created`, or
/// `order.paid`, which fires), one order each, numbered `range`.
fn lines_of(event_type: &str, range: std::ops::Range<i64>) -> String {
    let ts = chrono::Utc::now() - chrono::Duration::seconds(5);
    range.map(|i| order_line(event_type, i, ts)).collect()
}

/// One JSON line: order `i`'s event of type `event_type` at `ts`.
fn order_line(event_type: &str, i: i64, ts: chrono::DateTime<chrono::Utc>) -> String {
    let ts = winchester_core::event::format_datetime(&ts);
    format!("{{\"message_id\": \"{event_type}-{i}\", \"event_type\": \"{event_type}\", \"timestamp\": \"{ts}\", \"order_id\": \"o{i}\"}}\n")
}

/// `winchester ingest ARGS` with its log going to `log` in `dir`.
fn ingest_command(dir: &ConfigDir, args: &[&str], log: &str) -> Command {
    let mut cmd = logged("winchester", dir, log);
    cmd.arg("ingest").args(args).stdout(Stdio::piped());
    cmd
}

/// Checks that each of `n` numbered events is stored exactly once.
async fn assert_stored_once(cluster: &PrivateCluster, n: i64) {
    assert_eq!(cluster.count("SELECT count(*) FROM event").await, Some(n));
    assert_eq!(cluster.count("SELECT count(DISTINCT message_id) FROM event").await, Some(n));
}

/// Section 1 for `winchester ingest FILE`: the cluster stops while the file
/// is being saved in batches, and starts again once the command has noticed.
/// The command waits, completes, and every line is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_ingest_survives_a_database_restart_mid_batch() {
    ingest_file_through_a_restart(&order_lines(0..40_000), &["--batch-size", "100"]).await;
}

/// The same for a replay (`--event-time`): every event at its own moment, so
/// the replay commits a batch at a time while the clock follows the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_ingest_survives_a_database_restart_mid_batch() {
    let first = chrono::Utc::now() - chrono::Duration::days(1);
    let lines: String =
        (0..40_000).map(|i| order_line("order.created", i, first + chrono::Duration::seconds(i))).collect();
    ingest_file_through_a_restart(&lines, &["--event-time", "--batch-size", "100"]).await;
}

/// `winchester ingest ARGS FILE` of `lines`: the cluster stops once 1,000
/// events are in and starts again once the command logged the outage. The
/// command must finish, reject nothing and store every line once.
async fn ingest_file_through_a_restart(lines: &str, args: &[&str]) {
    let cluster = PrivateCluster::migrated().await;
    let dir = restart_config(&cluster);
    std::fs::write(dir.path("orders.jsonl"), lines).unwrap();
    let events = lines.lines().count() as i64;
    let orders = dir.path("orders.jsonl").display().to_string();
    let args: Vec<&str> = args.iter().copied().chain([orders.as_str()]).collect();
    let mut ingest = KillOnDrop(ingest_command(&dir, &args, "ingest.log").spawn().expect("spawn ingest"));
    // Some batches in, the rest still to come.
    let start = Instant::now();
    while cluster.count("SELECT count(*) FROM event").await.unwrap_or(0) < 1000 {
        assert!(start.elapsed() < Duration::from_secs(60), "ingest did not get going: {}", read(&dir, "ingest.log"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.down();
    wait_for_log(&dir.path("ingest.log"), "Database unavailable", &mut ingest.0);
    cluster.up();
    let (status, out) = finish(&mut ingest, &read(&dir, "ingest.log"));
    assert!(status.success(), "{out}{}", read(&dir, "ingest.log"));
    assert!(out.contains("rejected: 0"), "{out}");
    assert_stored_once(&cluster, events).await;
    assert_outages_logged(&read(&dir, "ingest.log"), 2);
}

/// Section 1 for `winchester ingest -` reading a pipe: events written while
/// the cluster is down wait in the command (it keeps running), are saved
/// once it is back, and the events written after are saved too; every event
/// is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_ingest_survives_a_database_restart() {
    let cluster = PrivateCluster::migrated().await;
    let dir = restart_config(&cluster);
    let mut ingest = KillOnDrop(
        ingest_command(&dir, &["--flush-after-ms", "100", "-"], "ingest.log")
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn ingest"),
    );
    let mut pipe = ingest.0.stdin.take().expect("stdin");
    let count = "SELECT count(*) FROM event";
    pipe.write_all(order_lines(0..300).as_bytes()).unwrap();
    pipe.flush().unwrap();
    let log = dir.path("ingest.log");
    let running = |child: &mut KillOnDrop| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(child.0.try_wait().unwrap().is_none(), "ingest exited: {text}");
        text
    };
    cluster.wait_count(count, 300, Duration::from_secs(60), || running(&mut ingest)).await;
    cluster.down();
    // Read while the database is down: held by the command, not lost.
    pipe.write_all(order_lines(300..600).as_bytes()).unwrap();
    pipe.flush().unwrap();
    wait_for_log(&log, "Database unavailable", &mut ingest.0);
    cluster.up();
    pipe.write_all(order_lines(600..900).as_bytes()).unwrap();
    pipe.flush().unwrap();
    cluster.wait_count(count, 900, Duration::from_secs(120), || running(&mut ingest)).await;
    running(&mut ingest);
    drop(pipe);
    let (status, out) = finish(&mut ingest, &read(&dir, "ingest.log"));
    assert!(status.success(), "{out}{}", read(&dir, "ingest.log"));
    assert_stored_once(&cluster, 900).await;
    assert_outages_logged(&read(&dir, "ingest.log"), 2);
}

/// Section 1 for `winchester-ingest`: the cluster stops with deliveries in
/// flight (consumed, not yet committed, so not acknowledged) and more
/// messages published meanwhile. Once it is back, every published message is
/// stored exactly once, nothing is left in the queue or dead-lettered, and
/// the daemon stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_ingest_survives_a_database_restart_with_deliveries_in_flight() {
    use crate::amqp_ingest::{envelope, notification, Broker};
    let cluster = PrivateCluster::migrated().await;
    let broker = Broker::new().await;
    let dir = broker.config_on(&cluster.url(), 50);
    const MESSAGES: usize = 2000;
    let bodies: Vec<Vec<u8>> =
        (0..MESSAGES).map(|i| serde_json::to_vec(&envelope(&notification(i))).unwrap()).collect();
    let log = dir.path("ingest.log");
    let mut daemon =
        KillOnDrop(logged("winchester-ingest", &dir, "ingest.log").spawn().expect("spawn winchester-ingest"));
    let count = "SELECT count(*) FROM event";
    let running = |child: &mut KillOnDrop| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(child.0.try_wait().unwrap().is_none(), "winchester-ingest exited: {text}");
        text
    };
    broker.publish(&bodies[..500]).await;
    cluster.wait_count(count, 500, Duration::from_secs(60), || running(&mut daemon)).await;
    cluster.down();
    broker.publish(&bodies[500..]).await;
    wait_for_log(&log, "Database unavailable", &mut daemon.0);
    cluster.up();
    cluster.wait_count(count, MESSAGES as i64, Duration::from_secs(120), || running(&mut daemon)).await;
    assert!(Command::new("kill").arg("-TERM").arg(daemon.0.id().to_string()).status().unwrap().success());
    let (status, _) = finish(&mut daemon, "winchester-ingest did not stop");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{text}");
    assert_stored_once(&cluster, MESSAGES as i64).await;
    // Everything acknowledged (an unacknowledged delivery would be back in
    // the queue now that the daemon's channel is closed), nothing dead.
    assert_eq!(broker.ready(&broker.queue).await, 0, "{text}");
    assert_eq!(broker.ready(&broker.dead_queue).await, 0, "{text}");
    assert_outages_logged(&text, 2);
    broker.cleanup().await;
}

/// Section 1 for `winchester serve`: while the cluster is down the API
/// answers 503 with a JSON error naming the database (no crash, liveness
/// still answers; `POST /v1/events` with Retry-After and every event
/// `unavailable`), and works again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_503_while_the_database_is_down_and_recovers() {
    let cluster = PrivateCluster::migrated().await;
    let dir = restart_config(&cluster);
    std::fs::write(dir.path("orders.jsonl"), order_lines(0..10)).unwrap();
    let (code, out, err) =
        run(program("winchester").arg("-c").arg(dir.config()).arg("ingest").arg(dir.path("orders.jsonl")));
    assert_eq!(code, 0, "{out}{err}");
    let log = dir.path("serve.log");
    let (mut serve, base) = spawn_serve_logging(&dir.config(), std::fs::File::create(&log).unwrap()).await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let req = http.get(format!("{base}{path}"));
        async move {
            let r = req.send().await.expect("the server answers");
            let status = r.status();
            (status, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let (status, body) = get("/v1/streams").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().map(Vec::len), Some(10), "{body}");

    let post = |lines: String| {
        let req = http.post(format!("{base}/v1/events")).header("content-type", "application/x-ndjson").body(lines);
        async move {
            let r = req.send().await.expect("the server answers");
            let (status, retry) = (r.status(), r.headers().get("retry-after").cloned());
            (status, retry, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };

    cluster.down();
    let (status, body) = get("/v1/streams").await;
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("database unavailable"), "{body}");
    assert_eq!(get("/healthz").await.0, 200);
    // POST /v1/events: 503 with Retry-After, each event "unavailable" (not saved).
    let (status, retry, body) = post(order_lines(10..12)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_ref().and_then(|r| r.to_str().ok()), Some("1"), "{body}");
    assert_eq!(body["unavailable"], 2, "{body}");
    assert!(body["results"][0]["reason"].as_str().unwrap_or_default().contains("send it again"), "{body}");
    wait_for_log(&log, "Database unavailable", &mut serve.0);

    cluster.up();
    let start = Instant::now();
    loop {
        assert!(serve.0.try_wait().unwrap().is_none(), "serve exited: {}", read_path(&log));
        let (status, body) = get("/v1/streams").await;
        if status == 200 {
            assert_eq!(body.as_array().map(Vec::len), Some(10), "{body}");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(start.elapsed() < Duration::from_secs(60), "the API did not recover: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_log(&log, "Database available again", &mut serve.0);
    let (status, _, body) = post(order_lines(10..12)).await;
    assert_eq!(
        (status, body["ingested"].as_u64()),
        (reqwest::StatusCode::OK, Some(2)),
        "sent again once it is back: {body}"
    );
    assert_eq!(get("/v1/events/count").await.1[0]["count"], 12);
    assert!(Command::new("kill").arg("-TERM").arg(serve.0.id().to_string()).status().unwrap().success());
    let (status, _) = finish(&mut serve, "serve did not stop");
    assert!(status.success(), "{}", read_path(&log));
    assert_outages_logged(&read_path(&log), 2);
}

fn read_path(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Section 1 on SQLite: another process holding the write lock (here a
/// connection of the test's own, in `BEGIN IMMEDIATE` with a write pending)
/// for 10 s makes `winchester ingest` and `pipeline-worker` wait, not fail:
/// nothing is written while it is held, and once it is released the batch
/// is saved and every ready stream fires, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_write_lock_held_by_another_process_means_waiting() {
    use sqlx::Connection;
    let db = TestDb::on(Backend::Sqlite).await;
    let dir = ConfigDir::new(&[
        ("winchester.yaml", &format!("database: {{url: '{}'}}\n{LOGGING_PIPELINES}", db.url)),
        ("triggers.yaml", TRIGGERS),
        ("pipelines.yaml", "count_it:\n  - log_it\n"),
    ]);
    // Ready streams for the worker, before the lock.
    std::fs::write(dir.path("first.jsonl"), lines_of("order.paid", 0..50)).unwrap();
    let (code, out, err) =
        run(program("winchester").arg("-c").arg(dir.config()).arg("ingest").arg(dir.path("first.jsonl")));
    assert_eq!(code, 0, "{out}{err}");
    std::fs::write(dir.path("second.jsonl"), lines_of("order.paid", 50..100)).unwrap();
    db.exec("CREATE TABLE lock_holder (x INTEGER)").await;

    let mut holder = sqlx::SqliteConnection::connect(&db.url).await.expect("holder connection");
    sqlx::raw_sql("BEGIN IMMEDIATE; INSERT INTO lock_holder VALUES (1);").execute(&mut holder).await.unwrap();
    let second = dir.path("second.jsonl").display().to_string();
    let mut ingest = KillOnDrop(ingest_command(&dir, &[&second], "ingest.log").spawn().expect("spawn ingest"));
    let mut worker = KillOnDrop(logged("pipeline-worker", &dir, "worker.log").spawn().expect("spawn worker"));
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Held all along: both still waiting, nothing written.
    assert!(ingest.0.try_wait().unwrap().is_none(), "ingest gave up: {}", read(&dir, "ingest.log"));
    assert!(worker.0.try_wait().unwrap().is_none(), "the worker gave up: {}", read(&dir, "worker.log"));
    assert_eq!(db.count("SELECT count(*) FROM event").await, 50);
    assert_eq!(db.count("SELECT count(*) FROM stream WHERE state <> 1").await, 0);
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();

    let (status, out) = finish(&mut ingest, &read(&dir, "ingest.log"));
    assert!(status.success(), "{out}{}", read(&dir, "ingest.log"));
    assert!(out.contains("ingested: 50\n"), "{out}");
    let start = Instant::now();
    while db.count("SELECT count(*) FROM stream WHERE state = 6").await < 100 {
        assert!(worker.0.try_wait().unwrap().is_none(), "the worker exited: {}", read(&dir, "worker.log"));
        assert!(start.elapsed() < Duration::from_secs(60), "streams not completed: {}", read(&dir, "worker.log"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(Command::new("kill").arg("-TERM").arg(worker.0.id().to_string()).status().unwrap().success());
    let (status, _) = finish(&mut worker, "the worker did not stop");
    assert!(status.success(), "{}", read(&dir, "worker.log"));
    assert_eq!(db.count("SELECT count(*) FROM event").await, 100);
    assert_eq!(db.count("SELECT count(*) FROM stream").await, 100);
    db.drop_db().await;
}

/// Issue 29, item 2: `pipeline-worker`, `winchester serve` and a one-shot
/// `winchester ingest FILE` are started while the database is down. None
/// exits: each logs the outage once, the worker's `/metrics` answers
/// meanwhile with `winchester_database_up 0`; once the server is up each
/// logs its end once, the file is ingested, `serve` starts listening and
/// answers, the worker fires every stream, and its metrics read
/// `winchester_database_up 1` after one outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_started_while_the_database_is_down_wait_for_it() {
    let cluster = PrivateCluster::migrated().await;
    cluster.down();
    let dir = restart_config(&cluster);
    std::fs::write(dir.path("orders.jsonl"), lines_of("order.paid", 0..50)).unwrap();
    let metrics = format!("http://127.0.0.1:{}/metrics", free_port());
    let listen = metrics.trim_start_matches("http://").trim_end_matches("/metrics").to_string();
    let mut worker = KillOnDrop(
        logged("pipeline-worker", &dir, "worker.log")
            .args(["--metrics-listen", &listen])
            .spawn()
            .expect("spawn worker"),
    );
    let mut serve = KillOnDrop(
        logged("winchester", &dir, "serve.log")
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn serve"),
    );
    let orders = dir.path("orders.jsonl").display().to_string();
    let mut ingest = KillOnDrop(ingest_command(&dir, &[&orders], "ingest.log").spawn().expect("spawn ingest"));
    for (child, log) in [(&mut worker, "worker.log"), (&mut serve, "serve.log"), (&mut ingest, "ingest.log")] {
        wait_for_log(&dir.path(log), "Database unavailable", &mut child.0);
    }
    assert_eq!(metric_sum(&metrics, "winchester_database_up").await, Some(0.0), "{}", read(&dir, "worker.log"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (child, log) in [(&mut worker, "worker.log"), (&mut serve, "serve.log"), (&mut ingest, "ingest.log")] {
        assert!(child.0.try_wait().unwrap().is_none(), "{log}: exited: {}", read(&dir, log));
    }

    cluster.up();
    let (status, out) = finish(&mut ingest, &read(&dir, "ingest.log"));
    assert!(status.success(), "{out}{}", read(&dir, "ingest.log"));
    assert!(out.contains("ingested: 50\n"), "{out}");
    let stdout = serve.0.stdout.take().expect("piped stdout");
    let line = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let mut l = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut l).map(|_| l)
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("serve did not start listening: {}", read(&dir, "serve.log")))
    .unwrap()
    .unwrap();
    let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line}")).to_string();
    let running = |child: &mut KillOnDrop| {
        assert!(child.0.try_wait().unwrap().is_none(), "the worker exited: {}", read(&dir, "worker.log"));
        String::new()
    };
    cluster
        .wait_count("SELECT count(*) FROM stream WHERE state = 6", 50, Duration::from_secs(60), || running(&mut worker))
        .await;
    let streams = reqwest::get(format!("{base}/v1/streams?state=completed")).await.expect("serve answers");
    assert_eq!(streams.status(), 200);
    let body: serde_json::Value = streams.json().await.unwrap();
    assert!(body.as_array().is_some_and(|a| !a.is_empty()), "{body}");
    assert_eq!(reqwest::get(format!("{base}/readyz")).await.unwrap().status(), 200);
    assert_eq!(metric_sum(&metrics, "winchester_database_up").await, Some(1.0));
    assert_eq!(metric_sum(&metrics, "winchester_database_outages_total").await, Some(1.0));
    for (child, log) in [(&mut worker, "worker.log"), (&mut serve, "serve.log")] {
        assert!(Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status().unwrap().success());
        let (status, _) = finish(child, log);
        assert!(status.success(), "{log}: {}", read(&dir, log));
    }
    for log in ["worker.log", "serve.log", "ingest.log"] {
        let text = read(&dir, log);
        assert_outages_logged(&text, 1);
        assert!(text.contains("at start"), "{log}: {text}");
    }
}

/// Issue 29, item 2, for `winchester-ingest`: started while the database is
/// down, it waits (logging the outage once) with messages piling up in the
/// queue, then stores every one once the server is up and stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_ingest_started_while_the_database_is_down_waits_for_it() {
    use crate::amqp_ingest::{envelope, notification, Broker};
    let cluster = PrivateCluster::migrated().await;
    cluster.down();
    let broker = Broker::new().await;
    let dir = broker.config_on(&cluster.url(), 50);
    let log = dir.path("ingest.log");
    let mut daemon =
        KillOnDrop(logged("winchester-ingest", &dir, "ingest.log").spawn().expect("spawn winchester-ingest"));
    wait_for_log(&log, "Database unavailable", &mut daemon.0);
    const MESSAGES: usize = 200;
    let bodies: Vec<Vec<u8>> =
        (0..MESSAGES).map(|i| serde_json::to_vec(&envelope(&notification(i))).unwrap()).collect();
    broker.publish(&bodies).await;
    assert!(daemon.0.try_wait().unwrap().is_none(), "winchester-ingest exited: {}", read_path(&log));
    cluster.up();
    let running = |child: &mut KillOnDrop| {
        assert!(child.0.try_wait().unwrap().is_none(), "winchester-ingest exited: {}", read_path(&log));
        String::new()
    };
    cluster
        .wait_count("SELECT count(*) FROM event", MESSAGES as i64, Duration::from_secs(60), || running(&mut daemon))
        .await;
    assert!(Command::new("kill").arg("-TERM").arg(daemon.0.id().to_string()).status().unwrap().success());
    let (status, _) = finish(&mut daemon, "winchester-ingest did not stop");
    let text = read_path(&log);
    assert!(status.success(), "{text}");
    assert_stored_once(&cluster, MESSAGES as i64).await;
    assert_eq!(broker.ready(&broker.queue).await, 0, "{text}");
    assert_outages_logged(&text, 1);
    broker.cleanup().await;
}
