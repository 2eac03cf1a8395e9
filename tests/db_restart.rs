//! Losing the database (issue 14, section 1) for `pipeline-worker`: a private
//! PostgreSQL cluster of the test's own (never the shared server) is
//! restarted while a worker is in the middle of its batches. The worker
//! waits with backoff, logs the outage once and its end once, and every
//! stream is committed exactly once.

use crate::support::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

const TRIGGERS: &str = ORDER_TRIGGERS;

/// A PostgreSQL cluster in a temp dir on a port of its own, stopped and
/// removed when dropped.
struct PrivateCluster {
    dir: PathBuf,
    port: u16,
}

impl PrivateCluster {
    fn start() -> PrivateCluster {
        assert!(std::path::Path::new(PG_BIN).join("initdb").exists(), "no PostgreSQL 15 server binaries in {PG_BIN}");
        let dir = std::env::temp_dir().join(format!("winchester-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = PrivateCluster { dir, port };
        // The server refuses to run as root.
        if c.as_root() {
            assert!(Command::new("chown").args(["-R", "postgres:"]).arg(&c.dir).status().unwrap().success());
        }
        c.pg("initdb", &["-D", &c.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C"]);
        c.pg_ctl("start");
        c
    }

    fn as_root(&self) -> bool {
        Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn pg(&self, program: &str, args: &[&str]) {
        let exe = format!("{PG_BIN}/{program}");
        let mut cmd = if self.as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &exe]);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).stdin(Stdio::null()).output().expect("run a PostgreSQL program");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        let data = self.data();
        self.pg("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts, "-m", "fast", action]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data();
        let exe = format!("{PG_BIN}/pg_ctl");
        let _ = if self.as_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--", &exe, "-D", &data, "-m", "immediate", "stop"])
                .output()
        } else {
            Command::new(&exe).args(["-D", &data, "-m", "immediate", "stop"]).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Section 1 for `pipeline-worker`: the private cluster stops (fast
/// shutdown: every connection is cut, open transactions roll back) while a
/// worker is running pipelines and recording their ends, and starts again
/// once the worker has noticed. The worker keeps
/// running, logs the outage once and its end once (per retrying loop), and
/// every stream is committed exactly once and ends completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_survives_a_database_restart_mid_batch() {
    let cluster = PrivateCluster::start();
    let url = cluster.url();
    winchester_backends::migrated(&url, 2).await.expect("migrate the private cluster");
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
    cluster.pg_ctl("stop");
    let start = Instant::now();
    while !read(&dir, "worker.log").contains("Database unavailable") {
        assert!(start.elapsed() < Duration::from_secs(60), "the worker never noticed: {}", read(&dir, "worker.log"));
        assert!(worker.0.try_wait().unwrap().is_none(), "the worker exited: {}", read(&dir, "worker.log"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.pg_ctl("start");
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
    let log = read(&dir, "worker.log");
    let lost = log.matches("Database unavailable").count();
    let back = log.matches("Database available again").count();
    assert!(lost >= 1 && lost == back && lost <= 3, "outage logged {lost} times, recovery {back} times:\n{log}");
    sink.drop_db().await;
}

fn read(dir: &ConfigDir, name: &str) -> String {
    std::fs::read_to_string(dir.path(name)).unwrap_or_default()
}
