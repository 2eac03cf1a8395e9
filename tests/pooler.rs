//! PgBouncer in transaction pooling mode in front of the test database
//! (`database.pooler: transaction`): an ingester and two worker processes
//! share a few server connections, exactly once intact; every program starts
//! on server connections other clients used before (no named statement is
//! left behind). Needs Debian's `pgbouncer` (scripts/test installs it).

use crate::support::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TRIGGERS: &str = ORDER_TRIGGERS;

/// A private PgBouncer (its own port and files, transaction pooling, a few
/// server connections per database) in front of the shared test server.
struct Pgbouncer {
    _child: KillOnDrop,
    port: u16,
    _dir: ConfigDir,
}

impl Pgbouncer {
    /// With `pool_size` server connections per database (`default_pool_size`).
    fn start(pool_size: u32) -> Pgbouncer {
        let exe = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("pgbouncer is not installed (apt-get install pgbouncer; scripts/test does)");
        let admin = admin_url();
        let hostport = admin.split('@').nth(1).and_then(|h| h.split('/').next()).unwrap_or("127.0.0.1:5432");
        let (host, server_port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = ConfigDir::new(&[("userlist.txt", "\"postgres\" \"\"\n")]);
        let ini = format!(
            "[databases]\n* = host={host} port={server_port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {}\npool_mode = transaction\ndefault_pool_size = {pool_size}\n\
             max_client_conn = 200\nignore_startup_parameters = extra_float_digits,options\n",
            dir.path("userlist.txt").display()
        );
        std::fs::write(dir.path("pgbouncer.ini"), ini).unwrap();
        let mut cmd = Command::new(exe);
        // PgBouncer refuses to run as root.
        if Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false) {
            cmd.args(["-u", "postgres"]);
        }
        let child = KillOnDrop(
            cmd.arg(dir.path("pgbouncer.ini"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start pgbouncer"),
        );
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "pgbouncer did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Pgbouncer { _child: child, port, _dir: dir }
    }

    fn url(&self, db: &TestDb) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, db.name)
    }
}

fn spawn_worker(dir: &ConfigDir, db: &TestDb, name: &str) -> Child {
    Command::new(example("counting_worker"))
        .arg("-c")
        .arg(dir.config())
        .args(["-n", name])
        .env_remove("DATABASE_URL")
        .env("COUNTING_SINK_URL", &db.url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker")
}

/// JSON lines of `orders` orders, each `order.created` then `order.paid`
/// (a stream per order that fires on payment), timestamped just before now.
fn order_lines(orders: usize) -> String {
    let now = chrono::Utc::now();
    let mut lines = String::new();
    for i in 0..orders {
        for (kind, secs) in [("created", 2), ("paid", 1)] {
            let ts = winchester_core::event::format_datetime(&(now - chrono::Duration::seconds(secs)));
            lines.push_str(&format!(
                "{{\"message_id\": \"{kind}-{i}\", \"event_type\": \"order.{kind}\", \"timestamp\": \"{ts}\", \"order_id\": \"o{i}\"}}\n"
            ));
        }
    }
    lines
}

/// Waits until every stream is completed (none of `workers` may exit
/// meanwhile), then stops the workers with SIGTERM; each must exit cleanly.
async fn complete_and_stop(db: &TestDb, workers: &mut [KillOnDrop], within: Duration, what: &str) {
    let start = Instant::now();
    loop {
        let left = db.count("SELECT count(*) FROM stream WHERE state <> 6").await;
        if left == 0 {
            break;
        }
        for w in workers.iter_mut() {
            assert!(w.0.try_wait().unwrap().is_none(), "{what}: a worker exited early");
        }
        assert!(start.elapsed() < within, "{what}: {left} streams not completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A worker that did no work may still be starting: SIGTERM before it
    // handles the signal would kill it outright, which is not what is tested.
    for w in workers.iter() {
        let handles_term = || {
            let status = std::fs::read_to_string(format!("/proc/{}/status", w.0.id())).unwrap_or_default();
            let caught = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).map(str::trim).unwrap_or("0");
            u64::from_str_radix(caught, 16).unwrap_or(0) & (1 << (15 - 1)) != 0
        };
        let since = Instant::now();
        while !handles_term() && since.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for w in workers.iter() {
        assert!(Command::new("kill").arg("-TERM").arg(w.0.id().to_string()).status().unwrap().success());
    }
    for w in workers.iter_mut() {
        assert!(w.0.wait().unwrap().success(), "{what}: a worker failed");
    }
}

/// `database.pooler: transaction` through a real PgBouncer in transaction
/// mode with fewer server connections than clients: `winchester ingest`
/// (twice: the second run is all duplicates) while two workers poll and fire;
/// every stream is committed exactly once and ends completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_two_workers_through_pgbouncer_transaction_pooling() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE handler_commits (stream_id BIGINT NOT NULL, action TEXT NOT NULL, pid INT NOT NULL)").await;
    let bouncer = Pgbouncer::start(3);
    let database =
        format!("database: {{url: '{}', pooler: transaction}}\ntrigger_definitions: triggers.yaml\n", bouncer.url(&db));
    let dir = ConfigDir::new(&[
        (
            "winchester.yaml",
            &format!(
                "{database}pipeline_config: pipelines.yaml\npurge_completed_streams: false\npipeline_worker_delay: 0.2\npipeline_worker_batch_size: 50\nstatistics_period: 1\n"
            ),
        ),
        ("triggers.yaml", TRIGGERS),
        ("pipelines.yaml", "count_it:\n  - {name: counting, params: {sleep_ms: 0}}\n"),
    ]);
    const ORDERS: usize = 1000;
    let lines = order_lines(ORDERS);
    std::fs::write(dir.path("orders.jsonl"), lines).unwrap();
    let mut workers: Vec<KillOnDrop> = (0..2).map(|i| KillOnDrop(spawn_worker(&dir, &db, &format!("w{i}")))).collect();
    let ingest = || {
        run(program("winchester")
            .arg("-c")
            .arg(dir.config())
            .args(["ingest", "--batch-size", "100"])
            .arg(dir.path("orders.jsonl")))
    };
    let (code, out, err) = ingest();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&format!("ingested: {}\nduplicates: 0\n", 2 * ORDERS)), "{out}");
    let (code, out, err) = ingest();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&format!("ingested: 0\nduplicates: {}\n", 2 * ORDERS)), "{out}");

    complete_and_stop(&db, &mut workers, Duration::from_secs(180), "ingest and two workers").await;
    assert_eq!(db.count("SELECT count(*) FROM event").await, 2 * ORDERS as i64);
    assert_eq!(db.count("SELECT count(*) FROM stream").await, ORDERS as i64);
    assert_eq!(db.count("SELECT count(*) FROM handler_commits").await, ORDERS as i64);
    assert_eq!(db.count("SELECT count(DISTINCT stream_id) FROM handler_commits").await, ORDERS as i64);
    let pids = db.count("SELECT count(DISTINCT pid) FROM handler_commits").await;
    assert!(pids == 2, "only {pids} worker(s) did any work");
    drop(bouncer);
    db.drop_db().await;
}

/// `winchester-db`, `winchester ingest`, three `pipeline-worker`s started at
/// once and `serve`'s `/readyz`, all through a PgBouncer with two server
/// connections, so that every program gets server connections the others
/// used before; 20 rounds, each on a fresh database, so that a collision
/// cannot pass by luck. Before every statement was unnamed, programs failed
/// to start about one round in two: `prepared statement "sqlx_s_1" already
/// exists` (issue 34).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_program_starts_through_pgbouncer_round_after_round() {
    const ROUNDS: usize = 20;
    const ORDERS: usize = 20;
    let bouncer = Pgbouncer::start(2);
    for round in 0..ROUNDS {
        let db = TestDb::empty().await;
        db.exec("CREATE TABLE handler_commits (stream_id BIGINT NOT NULL, action TEXT NOT NULL, pid INT NOT NULL)")
            .await;
        let config = |pipelines: &str| {
            format!(
                "database: {{url: '{}', pooler: transaction}}\ntrigger_definitions: triggers.yaml\n\
                 pipeline_config: {pipelines}\npurge_completed_streams: false\npipeline_worker_delay: 0.2\n",
                bouncer.url(&db)
            )
        };
        // `serve` knows only the built-in handlers.
        let dir = ConfigDir::new(&[
            ("winchester.yaml", &config("pipelines.yaml")),
            ("serve.yaml", &config("serve-pipelines.yaml")),
            ("triggers.yaml", TRIGGERS),
            ("pipelines.yaml", "count_it:\n  - {name: counting, params: {sleep_ms: 0}}\n"),
            ("serve-pipelines.yaml", "count_it:\n  - {name: logger}\n"),
        ]);
        let db_tool = |args: &[&str]| run(program("winchester-db").arg("-c").arg(dir.config()).args(args));
        let (code, out, err) = db_tool(&["upgrade", "head"]);
        assert_eq!(code, 0, "round {round}: winchester-db upgrade head: {out}{err}");
        for args in [&["current"][..], &["history"], &["upgrade", "head"]] {
            let (code, out, err) = db_tool(args);
            assert_eq!(code, 0, "round {round}: winchester-db {args:?}: {out}{err}");
        }

        let lines = order_lines(ORDERS);
        std::fs::write(dir.path("orders.jsonl"), lines).unwrap();
        let (code, out, err) =
            run(program("winchester").arg("-c").arg(dir.config()).arg("ingest").arg(dir.path("orders.jsonl")));
        assert_eq!(code, 0, "round {round}: winchester ingest: {out}{err}");
        assert!(out.starts_with(&format!("ingested: {}\n", 2 * ORDERS)), "round {round}: {out}");

        let mut workers: Vec<KillOnDrop> =
            (0..3).map(|i| KillOnDrop(spawn_worker(&dir, &db, &format!("r{round}w{i}")))).collect();
        let (_serve, base) = spawn_serve(&dir.path("serve.yaml")).await;
        let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
        assert_eq!(ready.status(), 200, "round {round}: /readyz: {}", ready.text().await.unwrap_or_default());

        complete_and_stop(&db, &mut workers, Duration::from_secs(60), &format!("round {round}")).await;
        assert_eq!(db.count("SELECT count(*) FROM stream").await, ORDERS as i64, "round {round}");
        assert_eq!(db.count("SELECT count(*) FROM handler_commits").await, ORDERS as i64, "round {round}");
        assert_eq!(
            db.count("SELECT count(DISTINCT stream_id) FROM handler_commits").await,
            ORDERS as i64,
            "round {round}"
        );
        drop(_serve);
        db.drop_db().await;
    }
    drop(bouncer);
}
