//! Test support: a fresh PostgreSQL database per test, configs written to temp
//! dirs, event factories, and paths of the real binaries.
#![allow(dead_code)]

mod cluster;
mod patroni;
pub use cluster::{assert_outages_logged, wait_for_log, PrivateCluster};
pub use patroni::{ha_unavailable, HaCluster};

use chrono::{DateTime, TimeZone, Utc};
use sqlx::{Connection, PgConnection};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use winchester::TriggerManager;
use winchester_backends::SqlxBackend;
use winchester_bench::db::with_database;
use winchester_core::{Clock, Event, ManualClock, TraitValue, TriggerSet};
use winchester_postgres::PgStorage;
use winchester_sqlite::SqliteStorage;
use winchester_storage::backend::Backend as _;
use winchester_storage::Storage;

/// The server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("WINCHESTER_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Which storage backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Generates, for each listed `async fn name(backend: Backend)`, one test per
/// backend: `postgres::name` and `sqlite::name`, so a behaviour of the engine
/// cannot differ between the backends without a red test. (The storage
/// rules themselves are the conformance suite: tests/conformance.rs.)
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
    };
}

/// One trigger for the process tests (`counting_worker` with pipeline
/// `count_it`): a stream per `order_id`, fired by `order.paid`.
pub const ORDER_TRIGGERS: &str = r#"
- name: orders
  distinguished_by: [order_id]
  expiration: "$last + 1d"
  fire_pipeline: count_it
  match_criteria: [{event_type: "order.*"}]
  fire_criteria: [{event_type: order.paid}]
"#;

/// Tests of parts that do not depend on the storage backend (handlers), each
/// an `async fn name()` run on PostgreSQL as `postgres::name`.
#[macro_export]
macro_rules! postgres_tests {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name().await
                }
            )*
        }
    };
}

enum Pool {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool, PathBuf),
}

/// A fresh, migrated database that is dropped by [`TestDb::drop_db`] (kept on
/// failure for inspection; scripts/test clears leftovers).
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub name: String,
    pub storage: Arc<dyn Storage>,
    pool: Pool,
}

impl TestDb {
    /// A fresh PostgreSQL database.
    pub async fn new() -> TestDb {
        TestDb::create(Backend::Postgres, true).await
    }

    /// A fresh database of the given backend.
    pub async fn on(backend: Backend) -> TestDb {
        TestDb::create(backend, true).await
    }

    /// A fresh PostgreSQL database without the schema.
    pub async fn empty() -> TestDb {
        TestDb::create(Backend::Postgres, false).await
    }

    /// A fresh database of the given backend without the schema.
    pub async fn empty_on(backend: Backend) -> TestDb {
        TestDb::create(backend, false).await
    }

    async fn create(backend: Backend, migrated: bool) -> TestDb {
        let name = format!("wtest_{}", uuid::Uuid::new_v4().simple());
        match backend {
            Backend::Postgres => {
                let admin = admin_url();
                let mut conn = PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("test PostgreSQL at {admin} does not answer: {e}"));
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let url = with_database(&admin, &name);
                let storage = PgStorage::connect(&url.parse().expect("test database URL"), 6)
                    .await
                    .expect("connect test database");
                if migrated {
                    SqlxBackend::postgres(storage.clone()).upgrade().await.expect("migrate");
                }
                let pool = Pool::Pg(storage.pool().clone());
                TestDb { backend, url, name, storage: Arc::new(storage), pool }
            }
            Backend::Sqlite => TestDb::sqlite_at(std::env::temp_dir().join(format!("{name}.db")), migrated).await,
        }
    }

    /// The SQLite database at `path`, created if missing (an existing file is
    /// opened as it is, then migrated when `migrated`); `drop_db` removes it.
    pub async fn sqlite_at(path: PathBuf, migrated: bool) -> TestDb {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let url = format!("sqlite://{}", path.display());
        let storage = SqliteStorage::connect(&url, 4).await.expect("open test database");
        if migrated {
            SqlxBackend::sqlite(storage.clone()).upgrade().await.expect("migrate");
        }
        let pool = Pool::Sqlite(storage.pool().clone(), path);
        TestDb { backend: Backend::Sqlite, url, name, storage: Arc::new(storage), pool }
    }

    /// The SQLite database file (SQLite-only tests).
    pub fn sqlite_file(&self) -> &std::path::Path {
        match &self.pool {
            Pool::Sqlite(_, path) => path,
            Pool::Pg(_) => panic!("not a SQLite test database"),
        }
    }

    /// The PostgreSQL pool (PostgreSQL-only tests).
    pub fn pool(&self) -> &sqlx::PgPool {
        match &self.pool {
            Pool::Pg(p) => p,
            Pool::Sqlite(..) => panic!("not a PostgreSQL test database"),
        }
    }

    pub async fn drop_db(self) {
        match self.pool {
            Pool::Pg(p) => {
                // A connection still held (a live tail's listener) would keep
                // close() waiting; DROP ... WITH (FORCE) ends it anyway.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), p.close()).await;
                if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
                        .execute(&mut conn)
                        .await;
                }
            }
            Pool::Sqlite(p, path) => {
                p.close().await;
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
        }
    }

    /// Runs a statement (portable SQL, or per-backend by the caller).
    pub async fn exec(&self, sql: &str) {
        match &self.pool {
            Pool::Pg(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Pool::Sqlite(p, _) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A single integer from a query (portable SQL).
    pub async fn count(&self, sql: &str) -> i64 {
        match &self.pool {
            Pool::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            Pool::Sqlite(p, _) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// How many of the named tables exist.
    pub async fn tables(&self, names: &[&str]) -> i64 {
        let list = names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
        self.count(&match self.backend {
            Backend::Postgres => format!("SELECT count(*) FROM pg_tables WHERE tablename IN ({list})"),
            Backend::Sqlite => format!("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({list})"),
        })
        .await
    }

    /// Makes inserting a stream whose distinguishing traits contain `needle` fail
    /// inside the database (to test atomicity).
    pub async fn fail_stream_inserts_containing(&self, needle: &str) {
        match self.backend {
            Backend::Postgres => {
                self.exec(&format!(
                    "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
                     BEGIN IF NEW.dist_traits::text LIKE '%{needle}%' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$"
                ))
                .await;
                self.exec("CREATE TRIGGER boom BEFORE INSERT ON stream FOR EACH ROW EXECUTE FUNCTION boom()").await;
            }
            Backend::Sqlite => {
                self.exec(&format!(
                    "CREATE TRIGGER boom BEFORE INSERT ON stream WHEN NEW.dist_traits LIKE '%{needle}%' BEGIN SELECT RAISE(ABORT, 'boom'); END"
                ))
                .await;
            }
        }
    }
}

pub fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// An event with string traits from `traits`.
pub fn event(id: &str, ty: &str, ts: DateTime<Utc>, traits: &[(&str, TraitValue)]) -> Event {
    let map: BTreeMap<String, TraitValue> = traits.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    Event::new(id, ty, ts, map).unwrap()
}

pub fn s(v: &str) -> TraitValue {
    TraitValue::String(v.into())
}

pub fn triggers(yaml: &str) -> Arc<TriggerSet> {
    let (set, _) = TriggerSet::from_yaml_str(yaml, Path::new("test-triggers.yaml")).unwrap_or_else(|e| panic!("{e}"));
    Arc::new(set)
}

/// A trigger manager on `db` with a manual clock at `now`.
pub fn manager(db: &TestDb, yaml: &str, now: DateTime<Utc>) -> (TriggerManager, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(now));
    let tm = TriggerManager::new(db.storage.clone(), triggers(yaml), clock.clone() as Arc<dyn Clock>);
    (tm, clock)
}

/// The example triggers: instance streams per day, fired by `.exists` (the
/// storage conformance suite uses them too).
pub use winchester_storage::conformance::INSTANCE_TRIGGERS;

/// A temp dir holding a winchester.yaml (plus whatever files are given).
pub struct ConfigDir {
    pub dir: PathBuf,
}

impl ConfigDir {
    pub fn new(files: &[(&str, &str)]) -> ConfigDir {
        let dir = std::env::temp_dir().join(format!("winchester-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        ConfigDir { dir }
    }

    /// A winchester.yaml on `db` naming triggers.yaml and pipelines.yaml,
    /// which hold `triggers` and `pipelines`.
    pub fn on_db(db: &TestDb, triggers: &str, pipelines: &str) -> ConfigDir {
        let main = format!(
            "database: {{url: '{}'}}\ntrigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\n",
            db.url
        );
        ConfigDir::new(&[("winchester.yaml", &main), ("triggers.yaml", triggers), ("pipelines.yaml", pipelines)])
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn config(&self) -> PathBuf {
        self.path("winchester.yaml")
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Path of one of the package's binaries.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "winchester" => PathBuf::from(env!("CARGO_BIN_EXE_winchester")),
        "winchester-db" => PathBuf::from(env!("CARGO_BIN_EXE_winchester-db")),
        "pipeline-worker" => PathBuf::from(env!("CARGO_BIN_EXE_pipeline-worker")),
        "winchester-ingest" => PathBuf::from(env!("CARGO_BIN_EXE_winchester-ingest")),
        other => panic!("no binary {other}"),
    }
}

/// Path of a compiled example (built by `cargo test` alongside the tests).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join("examples").join(name);
    assert!(p.exists(), "example binary {} not built; run `cargo build --examples` (scripts/test does)", p.display());
    p
}

/// Where the original Winchester's example configs are, if present beside the checkout.
pub fn shared_etc() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/winchester-etc");
    p.join("triggers.yaml").exists().then(|| p.canonicalize().unwrap())
}

/// Runs a command, returning (exit code, stdout, stderr).
pub fn run(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("spawn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child process killed (and reaped) when dropped, so a failing test leaves
/// no server behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `winchester -c CONFIG serve --listen 127.0.0.1:0` and returns it with
/// the base URL it prints (`listening on http://...`).
pub async fn spawn_serve(config: &Path) -> (KillOnDrop, String) {
    spawn_serve_logging(config, std::process::Stdio::inherit()).await
}

/// [`spawn_serve`] with its log (stderr, warnings and the storage layer's
/// outage and recovery lines) going to `log`.
pub async fn spawn_serve_logging(config: &Path, log: impl Into<std::process::Stdio>) -> (KillOnDrop, String) {
    let mut child = KillOnDrop(
        program("winchester")
            .arg("-c")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn,winchester_storage=info")
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start winchester serve"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut l = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut l).expect("read serve's first line");
        l
    })
    .await
    .expect("reader");
    let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line}")).to_string();
    (child, base)
}

/// One of the project's programs, reading its database from the config it is
/// given: a `DATABASE_URL` or `WINCHESTER_CONFIG` exported by whoever runs the
/// tests (scripts/test exports the admin URL) must not override it.
pub fn program(name: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin(name));
    cmd.env_remove("DATABASE_URL").env_remove("WINCHESTER_CONFIG");
    cmd
}

/// One of the programs on `dir`'s config, its log (warnings, and the storage
/// layer's outage and recovery lines) going to `log` in `dir`.
pub fn logged(name: &str, dir: &ConfigDir, log: &str) -> std::process::Command {
    let mut cmd = program(name);
    cmd.arg("-c")
        .arg(dir.config())
        .env("RUST_LOG", "warn,winchester_storage=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path(log)).unwrap());
    cmd
}

/// Exit status and standard output of a process, within 120 s.
pub fn finish(child: &mut KillOnDrop, log: &str) -> (std::process::ExitStatus, String) {
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(120), "still running: {log}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.0.stdout.take() {
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    }
    (status, out)
}

/// A TCP port free at the moment of asking, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The sum of every sample of metric `name` (any labels) at `url`
/// (`http://host:port/metrics`); `None` when it does not answer or has no
/// such metric.
pub async fn metric_sum(url: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).ok()?;
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
