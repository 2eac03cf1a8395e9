//! A private PostgreSQL cluster for tests that stop and start the database
//! (issue 14, section 1): never the shared server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL cluster in a temp dir on a port of its own, stopped and
/// removed when dropped.
pub struct PrivateCluster {
    dir: PathBuf,
    port: u16,
}

impl PrivateCluster {
    /// A fresh cluster (initdb, trust auth, user postgres), started.
    pub fn start() -> PrivateCluster {
        assert!(Path::new(PG_BIN).join("initdb").exists(), "no PostgreSQL 15 server binaries in {PG_BIN}");
        let c = PrivateCluster::empty();
        c.pg("initdb", &["-D", &c.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C"]);
        c.up();
        c
    }

    /// A hot standby of `primary` streaming from it (pg_basebackup -R),
    /// started, on a port of its own.
    pub fn standby_of(primary: &PrivateCluster) -> PrivateCluster {
        let c = PrivateCluster::empty();
        let from = primary.port.to_string();
        c.pg(
            "pg_basebackup",
            &["-D", &c.data(), "-R", "-X", "stream", "-h", "127.0.0.1", "-p", &from, "-U", "postgres"],
        );
        c.up();
        c
    }

    /// A temp dir (owned by `postgres` when run as root: the server refuses
    /// to run as root) and a free port, for a cluster still to be made.
    fn empty() -> PrivateCluster {
        let dir = std::env::temp_dir().join(format!("winchester-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = PrivateCluster { dir, port };
        if c.as_root() {
            assert!(Command::new("chown").args(["-R", "postgres:"]).arg(&c.dir).status().unwrap().success());
        }
        c
    }

    /// The cluster's `postgres` database, migrated to the current schema.
    pub async fn migrated() -> PrivateCluster {
        let c = PrivateCluster::start();
        winchester_backends::migrated(&winchester_backends::DatabaseOptions::direct(c.url()), 2)
            .await
            .expect("migrate the private cluster");
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

    /// `pg_ctl ACTION` (start, stop; fast shutdown: every connection is cut,
    /// open transactions roll back), waiting until it is done.
    pub fn pg_ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        let data = self.data();
        self.pg("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts, "-m", "fast", action]);
    }

    /// Stops the server (fast shutdown).
    pub fn down(&self) {
        self.pg_ctl("stop");
    }

    /// Starts the server again.
    pub fn up(&self) {
        self.pg_ctl("start");
    }

    /// URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A single integer from a query on the cluster, or None while it is down.
    pub async fn count(&self, sql: &str) -> Option<i64> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(2))
            .connect(&self.url())
            .await
            .ok()?;
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await.ok();
        pool.close().await;
        n
    }

    /// Waits (up to `limit`) until `sql` counts `want`, checking `alive`
    /// (a process that must keep running) meanwhile; panics with `what` otherwise.
    pub async fn wait_count(&self, sql: &str, want: i64, limit: Duration, mut alive: impl FnMut() -> String) {
        let start = Instant::now();
        loop {
            let n = self.count(sql).await;
            if n == Some(want) {
                return;
            }
            assert!(start.elapsed() < limit, "{sql}: {n:?}, want {want}: {}", alive());
            alive();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

/// Waits (up to 60 s) until the log file at `path` says `needle`, while
/// `child` keeps running; panics with the log otherwise.
pub fn wait_for_log(path: &Path, needle: &str, child: &mut std::process::Child) {
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(needle) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no {needle:?} in the log: {log}");
        assert!(child.try_wait().unwrap().is_none(), "the process exited: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks that a program's log records each outage once and its end once
/// (at most `most` outages: the server may be seen going down in more than
/// one retrying loop).
pub fn assert_outages_logged(log: &str, most: usize) {
    let lost = log.matches("Database unavailable").count();
    let back = log.matches("Database available again").count();
    assert!(lost >= 1 && lost == back && lost <= most, "outage logged {lost} times, recovery {back} times:\n{log}");
}
