//! `winchester demo` and `winchester generate` as real processes.

use crate::support::*;
use std::process::Command;

fn demo(args: &[&str]) -> serde_json::Value {
    let (code, out, err) = run(Command::new(bin("winchester"))
        .arg("demo")
        .args(["--instances", "40", "--days", "2", "--json"])
        .args(args)
        .env_remove("DATABASE_URL"));
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn check_summary(s: &serde_json::Value, backend: &str) {
    assert_eq!(s["backend"], backend);
    for key in ["events_ingested", "streams_created", "streams_fired", "streams_expired", "errors", "elapsed_s"] {
        assert!(s[key].is_number(), "{key} missing: {s}");
    }
    assert!(s["events_ingested"].as_u64().unwrap() > 100, "{s}");
    assert_eq!(s["events_ingested"], s["notifications"], "every generated notification distils: {s}");
    assert!(s["streams_fired"].as_u64().unwrap() > 0 && s["streams_expired"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["errors"], 0);
    let runs = s["pipelines"].as_array().expect("pipelines");
    let total: u64 = runs.iter().map(|r| r["streams"].as_u64().unwrap()).sum();
    assert_eq!(total, s["streams_fired"].as_u64().unwrap() + s["streams_expired"].as_u64().unwrap(), "{s}");
    assert!(
        runs.iter()
            .any(|r| r["trigger"] == "instance_day" && r["action"] == "fire" && r["pipeline"] == "instance_fired"),
        "{s}"
    );
    assert_eq!(
        s["streams_fired"].as_u64().unwrap() + s["streams_expired"].as_u64().unwrap(),
        s["streams_created"].as_u64().unwrap(),
        "every stream ends: {s}"
    );
}

/// With no database configured the demo runs on SQLite and shows fired and expired streams.
#[test]
fn demo_on_sqlite_by_default() {
    check_summary(&demo(&[]), "sqlite");
}

/// The same demo on PostgreSQL gives the same counts (same seed).
#[tokio::test]
async fn demo_on_postgres_matches_sqlite() {
    let db = TestDb::new().await;
    let pg = demo(&["--database-url", &db.url]);
    check_summary(&pg, "postgres");
    let lite = demo(&[]);
    for key in ["events_ingested", "streams_created", "streams_fired", "streams_expired"] {
        assert_eq!(pg[key], lite[key], "{key}");
    }
    db.drop_db().await;
}

/// `winchester generate` prints notifications the example distiller accepts.
#[test]
fn generate_prints_notifications() {
    let (code, out, err) =
        run(Command::new(bin("winchester")).args(["generate", "--count", "25", "--instances", "10"]));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 25);
    assert!(lines.iter().all(|n| n["event_type"].as_str().unwrap().starts_with("compute.instance.")
        && n["payload"]["instance_id"].is_string()));
}

/// `winchester generate --count N` prints exactly N notifications even when
/// the given instances make fewer, and says on stderr how many it took.
#[test]
fn generate_count_is_exact() {
    let (code, out, err) =
        run(Command::new(bin("winchester")).args(["generate", "--count", "2000", "--instances", "10"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2000);
    assert!(err.contains("instances to reach 2000 notifications"), "{err}");
    let ids: std::collections::HashSet<&str> =
        out.lines().map(|l| l.split("\"message_id\":").nth(1).unwrap_or(l)).collect();
    assert_eq!(ids.len(), 2000, "message ids repeat");
}
