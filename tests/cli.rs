//! The binaries end to end: winchester-db, winchester check / ingest / streams.

use crate::support::*;
use std::process::Command;

/// Runs `winchester-db --database-url URL ARGS` (no config file, no DATABASE_URL).
pub(crate) fn db_cmd(url: &str, args: &[&str]) -> (i32, String, String) {
    run(Command::new(bin("winchester-db"))
        .args(["--database-url", url])
        .args(args)
        .env_remove("DATABASE_URL")
        .env("WINCHESTER_CONFIG", "/nonexistent/winchester.yaml"))
}

/// `winchester-db` on either backend: upgrade twice is harmless, --sql prints
/// the schema without running it, current and history report, --sql
/// downgrade prints the revert, downgrade base empties, upgrade again works,
/// and both scripts applied by hand leave what the commands would.
async fn winchester_db_migrations(backend: Backend) {
    let db = TestDb::empty_on(backend).await;
    let all = ["event", "stream", "stream_event"];
    let (code, out, err) = db_cmd(&db.url, &["--sql", "upgrade", "head"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CREATE TABLE event") && out.contains("INSERT INTO _sqlx_migrations"), "{out}");
    assert_eq!(db.tables(&all).await, 0, "--sql must not run anything");
    let (code, out, err) = db_cmd(&db.url, &["current"]);
    assert_eq!((code, out.trim()), (0, "base (no migrations applied)"), "{err}");
    let (_, out, _) = db_cmd(&db.url, &["history"]);
    assert_eq!(
        out.trim(),
        "1 initial pending\n2 operations pending\n3 trigger versions pending\n4 partitioned events pending\n\
         5 query indexes pending\n6 event time keys pending"
    );
    assert_eq!(db.tables(&["_sqlx_migrations"]).await, 0, "looking must not create the bookkeeping table");
    let (code, out, err) = db_cmd(&db.url, &["upgrade", "head"]);
    assert_eq!(
        (code, out.trim()),
        (
            0,
            "applied migration 1\napplied migration 2\napplied migration 3\napplied migration 4\napplied migration 5\n\
             applied migration 6"
        ),
        "{err}"
    );
    let (code, out, _) = db_cmd(&db.url, &["upgrade", "head"]);
    assert_eq!((code, out.trim()), (0, "database is up to date"));
    let (_, out, _) = db_cmd(&db.url, &["current"]);
    assert_eq!(out.trim(), "6 event time keys (head)");
    let (_, out, _) = db_cmd(&db.url, &["history"]);
    assert_eq!(
        out.trim(),
        "1 initial applied\n2 operations applied\n3 trigger versions applied\n4 partitioned events applied\n\
         5 query indexes applied\n6 event time keys applied"
    );
    let (code, out, _) = db_cmd(&db.url, &["--sql", "upgrade", "head"]);
    assert_eq!(code, 0);
    assert!(!out.contains("CREATE TABLE event"), "nothing pending: {out}");
    let (code, down, err) = db_cmd(&db.url, &["--sql", "downgrade", "base"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        down.starts_with("BEGIN;\n\n-- Revert migration 6 event time keys\n")
            && down.contains("DROP TABLE")
            && down.ends_with("DELETE FROM _sqlx_migrations WHERE version = 1;\n\nCOMMIT;\n"),
        "{down}"
    );
    assert_eq!(db.tables(&all).await, 3, "--sql must not run anything");
    let (code, out, _) = db_cmd(&db.url, &["downgrade", "base"]);
    assert_eq!((code, out.trim()), (0, "database downgraded to base"));
    assert_eq!(db.tables(&all).await, 0);
    let (_, out, _) = db_cmd(&db.url, &["current"]);
    assert_eq!(out.trim(), "base (no migrations applied)");
    let (code, _, _) = db_cmd(&db.url, &["upgrade", "head"]);
    assert_eq!(code, 0);
    assert_eq!(db.tables(&all).await, 3);
    // The revert script run by hand leaves a database at base.
    db.exec(&down).await;
    assert_eq!(db.tables(&all).await, 0);
    let (_, out, _) = db_cmd(&db.url, &["current"]);
    assert_eq!(out.trim(), "base (no migrations applied)");
    // The SQL printed for an empty database applies cleanly by hand and leaves
    // a database `upgrade head` considers current.
    let (_, script, _) = db_cmd(&db.url, &["--sql", "upgrade", "head"]);
    db.exec(&script).await;
    assert_eq!(db.tables(&all).await, 3);
    let (_, out, _) = db_cmd(&db.url, &["upgrade", "head"]);
    assert_eq!(out.trim(), "database is up to date");
    let (_, out, _) = db_cmd(&db.url, &["current"]);
    assert_eq!(out.trim(), "6 event time keys (head)");
    db.drop_db().await;
}

/// The `--sql` scripts of both backends have the same shape: the same
/// transaction, comments and bookkeeping statements around dialect SQL.
#[tokio::test]
async fn winchester_db_sql_has_one_shape_on_both_backends() {
    let skeleton = |script: &str| -> Vec<String> {
        script
            .lines()
            .filter(|l| {
                [
                    "BEGIN;",
                    "COMMIT;",
                    "-- Migration ",
                    "-- Revert migration ",
                    "CREATE TABLE IF NOT EXISTS _sqlx_migrations",
                    "INSERT INTO _sqlx_migrations",
                    "DELETE FROM _sqlx_migrations",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            })
            .map(str::to_string)
            .collect()
    };
    let mut shapes = vec![];
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let db = TestDb::empty_on(backend).await;
        let (code, up, err) = db_cmd(&db.url, &["--sql", "upgrade", "head"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(db_cmd(&db.url, &["upgrade", "head"]).0, 0);
        let (code, down, err) = db_cmd(&db.url, &["--sql", "downgrade", "base"]);
        assert_eq!(code, 0, "{err}");
        shapes.push((skeleton(&up), skeleton(&down)));
        db.drop_db().await;
    }
    assert_eq!(
        shapes[0].0,
        vec![
            "BEGIN;",
            "CREATE TABLE IF NOT EXISTS _sqlx_migrations (",
            "-- Migration 1 initial",
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)",
            "-- Migration 2 operations",
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)",
            "-- Migration 3 trigger versions",
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)",
            "-- Migration 4 partitioned events",
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)",
            "-- Migration 5 query indexes",
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)",
            "-- Migration 6 event time keys",
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)",
            "COMMIT;"
        ]
    );
    assert_eq!(shapes[0], shapes[1]);
}

/// A program started against a database without the schema says which
/// migrations are missing and how to apply them, on either backend.
async fn programs_refuse_a_database_without_the_schema(backend: Backend) {
    let db = TestDb::empty_on(backend).await;
    let dir = project_config(&db);
    let (code, out, err) = run(Command::new(bin("winchester")).arg("-c").arg(dir.config()).args(["streams", "list"]));
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: database ")
            && err.contains("lacks schema migration(s) 1, 2, 3, 4, 5, 6: run `winchester-db --database-url")
            && err.contains("upgrade head` first"),
        "{err}"
    );
    db.drop_db().await;
}

/// `winchester ingest -` on a pipe that stays open (`tail -F log |`): the
/// events written so far are committed after the short wait, not held back
/// until a full batch (1,000 lines) or the end of the input.
async fn ingest_from_an_open_pipe_commits_without_a_full_batch(backend: Backend) {
    use std::io::Write;
    let db = TestDb::on(backend).await;
    let dir = project_config(&db);
    let line = |i: u32| {
        format!(
            r#"{{"message_id": "p{i}", "event_type": "compute.instance.update", "timestamp": "2026-01-01T00:00:0{i}Z", "instance_id": "i-{i}"}}"#
        ) + "\n"
    };
    let mut child = KillOnDrop(
        program("winchester")
            .arg("-c")
            .arg(dir.config())
            .args(["ingest", "-", "--flush-after-ms", "100"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start winchester ingest -"),
    );
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    // Waits (the pipe still open) until `n` events are stored; a liveness
    // bound only: with a full batch needed they would never arrive.
    let stored = |n: i64| {
        let db = &db;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let got = db.count("SELECT count(*) FROM event").await;
                if got == n {
                    return;
                }
                assert!(got < n && std::time::Instant::now() < deadline, "{got} events stored, waiting for {n}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    for i in 1..=6 {
        stdin.write_all(line(i).as_bytes()).unwrap();
    }
    stdin.flush().unwrap();
    stored(6).await;
    // The program is still reading: a later line is committed too.
    stdin.write_all(line(7).as_bytes()).unwrap();
    stdin.flush().unwrap();
    stored(7).await;
    assert!(child.0.try_wait().unwrap().is_none(), "winchester ingest ended with its input still open");
    drop(stdin);
    let (mut out, mut err) = (String::new(), String::new());
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut out).unwrap();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}: {out}{err}");
    assert!(out.starts_with("ingested: 7\nduplicates: 0\nrejected: 0\n"), "{out}");
    db.drop_db().await;
}

crate::backend_tests!(
    winchester_db_migrations,
    programs_refuse_a_database_without_the_schema,
    ingest_from_an_open_pipe_commits_without_a_full_batch
);

/// Unreachable server (with `--wait-for-database 0`: no waiting), unknown
/// database, wrong scheme: one clear line, exit 1, at once.
#[test]
fn winchester_db_errors_are_one_line() {
    for (url, needle) in [
        ("postgres://postgres@127.0.0.1:1/x", "Connection refused"),
        ("postgres://postgres@127.0.0.1:5432/wtest_does_not_exist", "does not exist"),
        ("mysql://winchester:testpasswd@localhost/winchester", "use postgres://"),
    ] {
        let url = url.replace(
            "127.0.0.1:5432",
            admin_url().split('@').nth(1).and_then(|h| h.split('/').next()).unwrap_or("127.0.0.1:5432"),
        );
        let start = std::time::Instant::now();
        let (code, out, err) = db_cmd(&url, &["--wait-for-database", "0", "upgrade", "head"]);
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "{url}: waited");
        assert_eq!(code, 1, "{url}: {out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
        assert!(!err.contains("testpasswd"), "password leaked: {err}");
    }
}

/// Issue 29, item 2, for one-shot commands: with the database unreachable,
/// `winchester-db` and `winchester streams` wait (with backoff, the outage
/// logged once) for `--wait-for-database 2s`, then exit 1 with one error line
/// naming the database, the bound and the cause. An authentication failure
/// or an unknown database is not waited for, whatever the bound.
#[test]
fn one_shot_commands_wait_for_the_database_then_give_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://postgres:testpasswd@127.0.0.1:{port}/x");
    let dir = ConfigDir::new(&[("winchester.yaml", &format!("database: {{url: '{url}'}}\n"))]);
    let command = |name: &str, args: &[&str]| {
        let mut cmd = program(name);
        cmd.arg("-c").arg(dir.config()).args(["--wait-for-database", "2s"]).args(args);
        cmd
    };
    for mut cmd in [command("winchester-db", &["upgrade", "head"]), command("winchester", &["streams", "count"])] {
        let start = std::time::Instant::now();
        let (code, out, err) = run(&mut cmd);
        let took = start.elapsed();
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(10),
            "{took:?}: {err}"
        );
        let last = err.trim().lines().last().unwrap_or_default();
        assert!(last.starts_with("error: database postgres://postgres:"), "{err}");
        for needle in [
            format!("127.0.0.1:{port}/x still unavailable after waiting 2."),
            "(--wait-for-database 2s)".into(),
            "Connection refused".into(),
        ] {
            assert!(last.contains(&needle), "no {needle:?} in {last}");
        }
        assert!(!err.contains("testpasswd"), "password leaked: {err}");
        assert_eq!(err.matches("Database unavailable").count(), 1, "the outage is logged once: {err}");
    }
    // Not waited for: a role that does not exist (an authentication failure).
    let admin = admin_url();
    let host = admin.split('@').nth(1).and_then(|h| h.split('/').next()).unwrap_or("127.0.0.1:5432");
    let start = std::time::Instant::now();
    let (code, out, err) =
        db_cmd(&format!("postgres://wtest_no_such_role@{host}/postgres"), &["--wait-for-database", "1m", "current"]);
    assert!(start.elapsed() < std::time::Duration::from_secs(10), "waited on an authentication failure: {err}");
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.trim().lines().count() == 1 && err.contains("wtest_no_such_role"), "{err}");
}

fn project_config(db: &TestDb) -> ConfigDir {
    let etc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("etc");
    ConfigDir::new(&[(
        "winchester.yaml",
        &format!("config_path: {}\ndatabase: {{url: '{}'}}\ntrigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\ndistiller_config: event_definitions.yaml\npipeline_handlers: {{log_it: logger}}\n", etc.display(), db.url),
    )])
}

/// `winchester ingest` reports counts and line numbers and exits 2 when lines
/// were rejected (the good ones are saved); `streams list --json` shows the
/// streams the triggers predict.
#[tokio::test]
async fn ingest_then_list_streams() {
    let db = TestDb::new().await;
    let dir = project_config(&db);
    let now = chrono::Utc::now();
    let ts = |secs: i64| winchester_core::event::format_datetime(&(now - chrono::Duration::seconds(secs)));
    let day_start = winchester_core::event::format_datetime(&now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc());
    let lines = [
        format!(
            r#"{{"message_id": "a1", "event_type": "compute.instance.create.start", "timestamp": "{}", "instance_id": "i-1", "request_id": "r-1", "tenant_id": "t"}}"#,
            ts(3)
        ),
        format!(
            r#"{{"message_id": "a2", "event_type": "compute.instance.create.end", "timestamp": "{}", "instance_id": "i-1", "request_id": "r-1", "tenant_id": "t", "memory_mb": 512}}"#,
            ts(2)
        ),
        "not json".to_string(),
        format!(
            r#"{{"message_id": "a3", "event_type": "compute.instance.exists", "timestamp": "{}", "instance_id": "i-1", "audit_period_beginning": "{day_start}"}}"#,
            ts(1)
        ),
        format!(
            r#"{{"message_id": "b1", "event_type": "compute.instance.update", "timestamp": "{}", "instance_id": "i-2"}}"#,
            ts(1)
        ),
        r#"{"message_id": "c1", "event_type": "x.y", "timestamp": "2026-01-01T00:00:00Z", "nested": {"a": 1}}"#
            .to_string(),
        String::new(),
        format!(
            r#"{{"message_id": "a1", "event_type": "compute.instance.create.start", "timestamp": "{}", "instance_id": "i-1"}}"#,
            ts(3)
        ),
    ];
    std::fs::write(dir.path("events.jsonl"), lines.join("\n") + "\n").unwrap();
    let (code, out, err) = run(Command::new(bin("winchester"))
        .env("DATABASE_URL", &db.url)
        .arg("-c")
        .arg(dir.config())
        .args(["ingest"])
        .arg(dir.path("events.jsonl")));
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.starts_with("ingested: 4\nduplicates: 1\nrejected: 2\n"), "{out}");
    assert!(out.contains("line 3: invalid JSON"), "{out}");
    assert!(out.contains("line 6: trait \"nested\" is nested") && out.contains("c1"), "{out}");
    // etc/triggers.yaml asks for debug counters on instance_day (debug_level 1).
    assert!(
        err.contains("---- Trigger Definition: instance_day ----")
            && err.contains("Match Criteria: 5 checks, 5 passed")
            && err.contains("Counter \"Added events\" = 4"),
        "{err}"
    );

    let (code, out, err) = run(Command::new(bin("winchester"))
        .env("DATABASE_URL", &db.url)
        .arg("-c")
        .arg(dir.config())
        .args(["streams", "list", "--json"]));
    assert_eq!(code, 0, "{err}");
    let streams: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let by = |trigger: &str, key: &str, val: &str| -> Vec<serde_json::Value> {
        streams.iter().filter(|s| s["trigger"] == trigger && s["distinguishing_traits"][key] == val).cloned().collect()
    };
    let i1 = by("instance_day", "instance_id", "i-1");
    assert_eq!(i1.len(), 1, "{out}");
    assert_eq!(i1[0]["event_count"], 3);
    assert_eq!(i1[0]["state"], "active");
    assert!(i1[0]["fire_timestamp"].is_string(), "exists arrived: ready to fire");
    assert_eq!(i1[0]["distinguishing_traits"]["timestamp"]["begin"], day_start);
    let i2 = by("instance_day", "instance_id", "i-2");
    assert_eq!((i2[0]["event_count"].as_i64(), i2[0]["fire_timestamp"].is_null()), (Some(1), true));
    let r1 = by("request_trace", "request_id", "r-1");
    assert_eq!((r1[0]["event_count"].as_i64(), r1[0]["fire_timestamp"].is_string()), (Some(2), true));
    for key in ["id", "first_event", "last_event", "expire_timestamp"] {
        assert!(!i1[0][key].is_null(), "{key}");
    }
    // Filters and the table form.
    let (code, out, err) = run(Command::new(bin("winchester"))
        .env("DATABASE_URL", &db.url)
        .arg("-c")
        .arg(dir.config())
        .args(["streams", "list", "--trigger", "request_trace"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ID") && out.contains("request_trace") && !out.contains("instance_day"), "{out}");
    let (code, _, err) = run(Command::new(bin("winchester"))
        .env("DATABASE_URL", &db.url)
        .arg("-c")
        .arg(dir.config())
        .args(["streams", "list", "--state", "sleeping"]));
    assert_eq!(code, 1);
    assert!(err.contains("unknown stream state \"sleeping\""), "{err}");
    let id = i1[0]["id"].as_i64().unwrap().to_string();
    let (code, out, err) = run(Command::new(bin("winchester"))
        .env("DATABASE_URL", &db.url)
        .arg("-c")
        .arg(dir.config())
        .args(["streams", "show", &id, "--json"]));
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        shown["events"].as_array().unwrap().iter().map(|e| e["message_id"].as_str().unwrap()).collect::<Vec<_>>(),
        ["a1", "a2", "a3"]
    );
    db.drop_db().await;
}

/// `streams retry` and `streams purge` from the command line.
#[tokio::test]
async fn retry_and_purge_from_the_command_line() {
    let db = TestDb::new().await;
    let dir = project_config(&db);
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, t(2014, 8, 1, 20, 30, 0));
    tm.add_event(event("x", "compute.instance.update", t(2014, 8, 1, 20, 0, 0), &[("instance_id", s("i-1"))]))
        .await
        .unwrap();
    db.exec("UPDATE stream SET fire_timestamp = first_event").await; // due to fire (a claim checks readiness)
    let st = tm.storage().list_streams(&Default::default()).await.unwrap().remove(0);
    let claimed = tm
        .storage()
        .claim(&st, winchester_storage::Action::Fire, t(2014, 8, 1, 20, 30, 0), std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    tm.storage()
        .finish(&claimed, winchester_storage::Finish::Failed { reason: "webhook said 500" }, t(2014, 8, 1, 20, 30, 0))
        .await
        .unwrap();
    let cmd = |args: &[&str]| {
        run(Command::new(bin("winchester")).env("DATABASE_URL", &db.url).arg("-c").arg(dir.config()).args(args))
    };
    let id = st.id.to_string();
    let (code, out, err) = cmd(&["streams", "show", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("error")
            && out.contains("last error: webhook said 500")
            && out.contains("compute.instance.update  x"),
        "{out}"
    );
    let (code, out, _) = cmd(&["streams", "retry", "--all-errors"]);
    assert_eq!((code, out.trim()), (0, format!("stream {id}: retry_fire").as_str()));
    let (code, out, _) = cmd(&["streams", "retry", &id]);
    assert_eq!((code, out.trim()), (0, format!("stream {id}: retry_fire").as_str()), "other states are left alone");
    let (code, out, _) = cmd(&["streams", "purge", &id]);
    assert_eq!((code, out.trim()), (0, format!("stream {id}: purged").as_str()));
    let (code, _, err) = cmd(&["streams", "purge", &id]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("no stream with id {id}")), "{err}");
    assert_eq!(db.count("SELECT count(*) FROM event").await, 1, "purge keeps events");
    db.drop_db().await;
}

/// Every shipped etc/ file loads: `winchester check` on the project's own config.
#[test]
fn shipped_etc_checks() {
    let etc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/winchester.yaml");
    let (code, out, err) =
        run(Command::new(bin("winchester")).arg("-c").arg(&etc).arg("check").env_remove("DATABASE_URL"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("triggers")
            && out.contains("instance_day")
            && out.contains("pipelines")
            && out.contains("event definitions"),
        "{out}"
    );
}

/// A broken config lists every problem with file, trigger and key, exit 1.
#[test]
fn check_reports_every_error() {
    let dir = ConfigDir::new(&[
        ("winchester.yaml", "trigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\npipeline_handlers: {mystery: no.such:Class}\n"),
        (
            "triggers.yaml",
            r#"
- name: one
  expiration: "$last + 1 parsec"
  fire_pipeline: missing_pipeline
  match_criteria: [{event_type: "compute.[bad"}]
  fire_criteria: [{event_typo: x}]
- name: two
  expiration: "$last + 1h"
  fire_pipeline: p
  match_criteria: [{traits: {memory_mb: {numeric: "> 4096"}}}]
  fire_criteria: [{}]
"#,
        ),
        ("pipelines.yaml", "p:\n  - logger\n  - mystery\n  - {name: logger, params: {verbose: true}}\n"),
    ]);
    let (code, out, err) = run(Command::new(bin("winchester")).arg("-c").arg(dir.config()).arg("check"));
    assert_eq!(code, 1, "{out}{err}");
    for needle in [
        "triggers.yaml: trigger \"one\": key \"expiration\"",
        "parsec",
        "trigger \"one\": key \"match_criteria[0].event_type\"",
        "trigger \"one\": key \"fire_criteria[0].event_typo\": unknown key",
        "trigger \"two\": key \"match_criteria[0].traits.memory_mb\": unknown criterion type \"numeric\"",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// Duplicate keys in every config file are read as PyYAML reads them (the
/// last one wins) and warned about with file and lines: `check` prints the
/// warnings and exits 0, `check --strict` exits 2.
#[test]
fn check_warns_on_duplicate_keys() {
    let dir = ConfigDir::new(&[
        (
            "winchester.yaml",
            "trigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\ndistiller_config: event_definitions.yaml\nlog_level: debug\nlog_level: info\n",
        ),
        (
            "triggers.yaml",
            "- name: one\n  expiration: \"$last + 1h\"\n  fire_pipeline: p\n  fire_pipeline: q\n  match_criteria: [{event_type: a.b}]\n  fire_criteria: [{event_type: a.b}]\n",
        ),
        ("pipelines.yaml", "p: [logger]\nq: [logger]\nq: [logger, logger]\n"),
        (
            "event_definitions.yaml",
            "- event_type: trove.*\n  traits: &trove_base_traits\n    state:\n      fields: payload.state_description\n    instance_type:\n      fields: payload.instance_type\n    state:\n      fields: payload.state\n- event_type: trove.instance.exists\n  traits:\n    <<: *trove_base_traits\n    display_name:\n      fields: payload.display_name\n",
        ),
    ]);
    let (code, out, err) = run(Command::new(bin("winchester")).arg("-c").arg(dir.config()).arg("check"));
    assert_eq!(code, 0, "{out}{err}");
    let last_wins = "in a mapping (the last one wins, as PyYAML reads it)";
    for needle in [
        format!("winchester.yaml:5: duplicate key \"log_level\" {last_wins}; first at line 4"),
        format!("triggers.yaml:4: duplicate key \"fire_pipeline\" {last_wins}; first at line 3"),
        format!("pipelines.yaml:3: duplicate key \"q\" {last_wins}; first at line 2"),
        format!("event_definitions.yaml:7: duplicate key \"state\" {last_wins}; first at line 3"),
        "warnings: 4".to_string(),
        "one: 1 match criteria, 1 fire criteria, distinguished by [], expiration \"$last + 1h\", fire_pipeline q"
            .into(),
        "q: logger -> logger".into(),
    ] {
        assert!(out.contains(&needle), "missing {needle:?} in:\n{out}");
    }
    let (code, out, err) =
        run(Command::new(bin("winchester")).arg("-c").arg(dir.config()).arg("check").arg("--strict"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("warnings: 4") && err.contains("4 warnings (--strict)"), "{out}{err}");
    // Without warnings, --strict passes.
    let clean = ConfigDir::new(&[("winchester.yaml", "log_level: info\n")]);
    let (code, out, err) =
        run(Command::new(bin("winchester")).arg("-c").arg(clean.config()).arg("check").arg("--strict"));
    assert_eq!(code, 0, "{out}{err}");
}

/// Cross-file problems: a trigger naming a missing pipeline, handlers that do
/// not resolve, bad handler params.
#[test]
fn check_reports_pipeline_problems() {
    let dir = ConfigDir::new(&[
        ("winchester.yaml", "trigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\npipeline_handlers: {mystery: no.such:Class}\n"),
        ("triggers.yaml", "- {name: one, expiration: \"$last + 1h\", fire_pipeline: nope, match_criteria: [{}], fire_criteria: [{}]}\n"),
        ("pipelines.yaml", "p:\n  - logger\n  - mystery\n  - unlisted\n"),
    ]);
    let (code, _, err) = run(Command::new(bin("winchester")).arg("-c").arg(dir.config()).arg("check"));
    assert_eq!(code, 1);
    assert!(err.contains("trigger \"one\": key \"fire_pipeline\": pipeline \"nope\" is not defined"), "{err}");
    assert!(err.contains("handler \"unlisted\" is not listed in pipeline_handlers"), "{err}");
    if winchester_cli::common::PYTHON {
        // A Python class path is imported when the pipelines are built, once the cross-file checks pass.
        let dir = ConfigDir::new(&[
            ("winchester.yaml", "pipeline_config: pipelines.yaml\npipeline_handlers: {mystery: no.such:Class}\n"),
            ("pipelines.yaml", "p: [mystery]\n"),
        ]);
        let (code, _, err) = run(Command::new(bin("winchester")).arg("-c").arg(dir.config()).arg("check"));
        assert_eq!(code, 1);
        assert!(
            err.contains("pipeline \"p\": key \"[0] (mystery)\": cannot import Python class \"no.such:Class\""),
            "{err}"
        );
        assert!(err.contains("ModuleNotFoundError: No module named 'no'"), "{err}");
    } else {
        assert!(err.contains("pipeline \"p\": key \"[1]\": handler \"mystery\" has type \"no.such:Class\""), "{err}");
        assert!(err.contains("a Python class path") && err.contains("`python` feature"), "{err}");
    }
    let dir = ConfigDir::new(&[
        ("winchester.yaml", "pipeline_config: pipelines.yaml\n"),
        ("pipelines.yaml", "p:\n  - {name: logger, params: {verbose: true}}\n"),
    ]);
    let (code, _, err) = run(Command::new(bin("winchester")).arg("-c").arg(dir.config()).arg("check"));
    assert_eq!(code, 1);
    assert!(err.contains("pipeline \"p\": key \"[0] (logger)\": unknown param \"verbose\""), "{err}");
}

/// The definitions files clouds really run load unchanged in `winchester
/// check`, each under the flavour its original reads it with (issue 26):
/// StackDistiller's example, ceilometer's file of 2015-2018 (a duplicate key:
/// a warning, exit 0; `--strict` exit 2) and ceilometer 27.0.0's
/// (jsonpath-rw-ext paths). Under the default flavour the current
/// ceilometer file is refused with a message that names the fix.
#[test]
fn check_loads_the_upstream_definitions_files() {
    let defs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/distiller/definitions");
    let check = |file: &str, flavour: Option<&str>, strict: bool| {
        let main = format!(
            "distiller_config: {}\n{}",
            defs.join(file).display(),
            flavour.map(|f| format!("distiller: {f}\n")).unwrap_or_default()
        );
        let dir = ConfigDir::new(&[("winchester.yaml", &main)]);
        let mut cmd = Command::new(bin("winchester"));
        cmd.arg("-c").arg(dir.config()).arg("check");
        if strict {
            cmd.arg("--strict");
        }
        run(&mut cmd)
    };
    for (file, flavour) in [
        ("stackdistiller.yaml", None),
        ("ceilometer-2015.yaml", None),
        ("ceilometer-2015.yaml", Some("ceilometer")),
        ("ceilometer-current.yaml", Some("ceilometer")),
    ] {
        let (code, out, err) = check(file, flavour, false);
        assert_eq!(code, 0, "{file} ({flavour:?}): {out}{err}");
    }
    let (_, out, _) = check("ceilometer-2015.yaml", Some("ceilometer"), false);
    assert!(out.contains("ceilometer-2015.yaml:435: duplicate key \"state\""), "{out}");
    let (code, out, err) = check("ceilometer-2015.yaml", Some("ceilometer"), true);
    assert_eq!(code, 2, "{out}{err}");
    let (code, out, err) = check("ceilometer-current.yaml", None, false);
    assert_eq!(code, 1, "{out}{err}");
    assert!(format!("{out}{err}").contains("`distiller: ceilometer` reads it"), "{out}{err}");
}
