//! Raw notifications end to end: `winchester ingest --notifications` through the
//! distiller (nested payloads, missing fields, datetime formats, oslo
//! envelopes), and `--event-time` replay with `pipeline-worker --event-time`.

use crate::support::*;
use std::process::Command;

/// In the original StackDistiller format: a catch-all first, specific
/// definitions later (the last match wins), anchors and merge keys.
const DEFINITIONS: &str = r#"
- event_type: "*"
  traits: {}
- event_type: compute.instance.*
  traits: &instance
    tenant_id:
      fields: [payload.tenant_id, _context_project_id]
    instance_id:
      fields: payload.instance_id
    host:
      fields: publisher_id
      plugin: {name: split, parameters: {segment: 1, max_split: 1}}
    memory_mb:
      type: int
      fields: payload.memory_mb
    disk_gb:
      type: int
      fields: payload.disk_gb
    os_distro:
      fields: payload.image_meta.'org.openstack__1__os_distro'
    state:
      fields: payload.state
    launched_at:
      type: datetime
      fields: payload.launched_at
    deleted_at:
      type: datetime
      fields: payload.deleted_at
- event_type: compute.instance.exists
  traits:
    <<: *instance
    audit_period_beginning:
      type: datetime
      fields: payload.audit_period_beginning
    audit_period_ending:
      type: datetime
      fields: payload.audit_period_ending
"#;

fn config(db: &TestDb, triggers: &str) -> ConfigDir {
    ConfigDir::new(&[
        (
            "winchester.yaml",
            &format!(
                "database: {{url: '{}'}}\ntrigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\ndistiller_config: event_definitions.yaml\n\
                 pipeline_handlers: {{log_it: logger}}\npurge_completed_streams: false\n",
                db.url
            ),
        ),
        ("event_definitions.yaml", DEFINITIONS),
        ("triggers.yaml", triggers),
        ("pipelines.yaml", "fire_p:\n  - log_it\nexpire_p:\n  - log_it\n"),
    ])
}

fn ingest(dir: &ConfigDir, db: &TestDb, lines: &[String], extra: &[&str]) -> (i32, String, String) {
    let file = dir.path("notifications.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    run(Command::new(bin("winchester"))
        .arg("-c")
        .arg(dir.config())
        .env("DATABASE_URL", &db.url)
        .args(["ingest", "--notifications"])
        .args(extra)
        .arg(&file))
}

async fn trait_of(db: &TestDb, message_id: &str, name: &str) -> Option<serde_json::Value> {
    sqlx::query_scalar::<_, Option<serde_json::Value>>("SELECT traits->$2 FROM event WHERE message_id = $1")
        .bind(message_id)
        .bind(name)
        .fetch_optional(db.pool())
        .await
        .unwrap()
        .flatten()
}

fn streams(dir: &ConfigDir, db: &TestDb) -> Vec<serde_json::Value> {
    let (code, out, err) = run(Command::new(bin("winchester"))
        .arg("-c")
        .arg(dir.config())
        .env("DATABASE_URL", &db.url)
        .args(["streams", "list", "--json"]));
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// compute.instance.create.end / exists / delete.end as nova sends them: traits
/// come out typed, nested and quoted paths resolve, missing and empty fields
/// are left out, every datetime format lands in UTC, the oslo v2 envelope is
/// unwrapped; bad lines are rejected with their line number and the rest saved.
#[tokio::test]
async fn distiller_conformance_end_to_end() {
    let db = TestDb::new().await;
    let dir = config(&db, INSTANCE_TRIGGERS);
    let create_end = serde_json::json!({
        "event_type": "compute.instance.create.end",
        "message_id": "n-create",
        "priority": "INFO",
        "publisher_id": "compute.host-1.example.org",
        "timestamp": "2026-03-01 10:00:00.123456",
        "_context_request_id": "req-1",
        "_context_project_id": "ctx-project",
        "payload": {
            "tenant_id": "t-1",
            "instance_id": "i-1",
            "memory_mb": 512,
            "disk_gb": "20",
            "state": "active",
            "launched_at": "2026-03-01T09:59:58.000000",
            "image_meta": {"org.openstack__1__os_distro": "ubuntu", "base_image_ref": "img"}
        }
    });
    // exists: no tenant_id in the payload (falls back to _context_project_id),
    // no memory_mb (omitted), audit period in "space" format.
    let exists = serde_json::json!({
        "event_type": "compute.instance.exists",
        "message_id": "n-exists",
        "publisher_id": "compute.host-1",
        "timestamp": "2026-03-02T00:05:00Z",
        "_context_project_id": "ctx-project",
        "payload": {
            "instance_id": "i-1",
            "state": "active",
            "audit_period_beginning": "2026-03-01 00:00:00",
            "audit_period_ending": "2026-03-02 00:00:00"
        }
    });
    let envelope = serde_json::json!({"oslo.version": "2.0", "oslo.message": exists.to_string()});
    // delete.end: a zone offset, an empty int field (omitted), a null field.
    let delete_end = serde_json::json!({
        "event_type": "compute.instance.delete.end",
        "message_id": "n-delete",
        "publisher_id": "compute.host-1",
        "timestamp": "2026-03-01T12:30:00+02:00",
        "payload": {"tenant_id": "t-1", "instance_id": "i-1", "memory_mb": "", "state": null, "deleted_at": "2026-03-01T12:29:59.5+02:00"}
    });
    let other = serde_json::json!({"event_type": "image.upload", "message_id": "n-image", "publisher_id": "image.host-9", "timestamp": "2026-03-01T11:00:00Z", "payload": {}});
    let lines = vec![
        create_end.to_string(),
        envelope.to_string(),
        delete_end.to_string(),
        serde_json::json!({"event_type": "compute.instance.update", "message_id": "n-bad", "timestamp": "2026-03-01T11:00:00Z", "payload": {"memory_mb": "lots"}}).to_string(),
        serde_json::json!({"event_type": "compute.instance.update", "timestamp": "2026-03-01T11:00:00Z", "payload": {}}).to_string(),
        "{not json".to_string(),
        String::new(),
        other.to_string(),
        create_end.to_string(),
    ];
    let (code, out, err) = ingest(&dir, &db, &lines, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.starts_with("ingested: 4\nduplicates: 1\nrejected: 3\n"), "{out}");
    assert!(out.contains("line 4: ") && out.contains("memory_mb") && out.contains("n-bad"), "{out}");
    assert!(out.contains("line 5: ") && out.contains("message_id"), "{out}");
    assert!(out.contains("line 6: invalid JSON"), "{out}");
    assert!(err.is_empty() || !err.contains('\r'), "no progress bar outside a terminal: {err:?}");

    assert_eq!(trait_of(&db, "n-create", "tenant_id").await, Some(serde_json::json!({"string": "t-1"})));
    assert_eq!(trait_of(&db, "n-create", "host").await, Some(serde_json::json!({"string": "host-1.example.org"})));
    assert_eq!(
        trait_of(&db, "n-create", "service").await,
        Some(serde_json::json!({"string": "compute.host-1.example.org"}))
    );
    assert_eq!(trait_of(&db, "n-create", "request_id").await, Some(serde_json::json!({"string": "req-1"})));
    assert_eq!(trait_of(&db, "n-create", "memory_mb").await, Some(serde_json::json!({"int": 512})));
    assert_eq!(trait_of(&db, "n-create", "disk_gb").await, Some(serde_json::json!({"int": 20})));
    assert_eq!(trait_of(&db, "n-create", "os_distro").await, Some(serde_json::json!({"string": "ubuntu"})));
    assert_eq!(trait_of(&db, "n-create", "deleted_at").await, None);
    let generated = |id: &'static str| {
        let pool = db.pool().clone();
        async move {
            sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>("SELECT generated FROM event WHERE message_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(generated("n-create").await.to_rfc3339(), "2026-03-01T10:00:00.123456+00:00");
    assert_eq!(generated("n-delete").await.to_rfc3339(), "2026-03-01T10:30:00+00:00");
    let dt = |v: Option<serde_json::Value>| -> String {
        let s = v.and_then(|v| v["datetime"].as_str().map(str::to_string)).expect("a datetime trait");
        chrono::DateTime::parse_from_rfc3339(&s).unwrap().with_timezone(&chrono::Utc).to_rfc3339()
    };
    assert_eq!(dt(trait_of(&db, "n-create", "launched_at").await), "2026-03-01T09:59:58+00:00");
    assert_eq!(dt(trait_of(&db, "n-delete", "deleted_at").await), "2026-03-01T10:29:59.500+00:00");
    assert_eq!(dt(trait_of(&db, "n-exists", "audit_period_beginning").await), "2026-03-01T00:00:00+00:00");
    // The envelope was unwrapped; the missing tenant_id fell back; missing,
    // empty and null fields are simply absent.
    assert_eq!(trait_of(&db, "n-exists", "tenant_id").await, Some(serde_json::json!({"string": "ctx-project"})));
    assert_eq!(trait_of(&db, "n-exists", "memory_mb").await, None);
    assert_eq!(trait_of(&db, "n-delete", "memory_mb").await, None);
    assert_eq!(trait_of(&db, "n-delete", "state").await, None);
    // Covered only by the catch-all definition: default traits only.
    assert_eq!(trait_of(&db, "n-image", "service").await, Some(serde_json::json!({"string": "image.host-9"})));
    assert_eq!(db.count("SELECT count(*) FROM event WHERE message_id = 'n-image' AND traits ? 'instance_id'").await, 0);

    // Every compute.instance event joined an instance_day stream of i-1 (the
    // image event matches no trigger).
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, 3);
    let all = streams(&dir, &db);
    assert!(!all.is_empty() && all.iter().all(|s| s["distinguishing_traits"]["instance_id"] == "i-1"), "{all:?}");
    db.drop_db().await;
}

/// A day of archived notifications replayed with `--event-time`: streams split
/// and expire where they did live (`$last + 1h` after each instance's last
/// event), and `pipeline-worker --event-time --once` fires and expires by the
/// latest stored event's time, not the wall clock.
#[tokio::test]
async fn event_time_replay_fires_and_expires_as_live() {
    let db = TestDb::new().await;
    let dir = config(&db, INSTANCE_TRIGGERS);
    let n = |id: &str, ty: &str, ts: &str, instance: &str, extra: serde_json::Value| {
        let mut payload = serde_json::json!({"instance_id": instance, "tenant_id": "t-1"});
        if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        serde_json::json!({"event_type": ty, "message_id": id, "publisher_id": "compute.h1", "timestamp": ts, "payload": payload}).to_string()
    };
    let none = serde_json::json!({});
    let lines = vec![
        // i-1: a burst at 08:00, then silence > 1 h, then more at 10:00.
        n("a1", "compute.instance.create.start", "2026-03-01T08:00:00Z", "i-1", none.clone()),
        n("a2", "compute.instance.create.end", "2026-03-01T08:01:00Z", "i-1", none.clone()),
        // i-2: created, then its day's audit event arrives: ready to fire.
        n("b1", "compute.instance.create.end", "2026-03-01T09:00:00Z", "i-2", none.clone()),
        n(
            "b2",
            "compute.instance.exists",
            "2026-03-01T09:30:00Z",
            "i-2",
            serde_json::json!({"audit_period_beginning": "2026-03-01 00:00:00"}),
        ),
        n("a3", "compute.instance.update", "2026-03-01T10:00:00Z", "i-1", none.clone()),
        n("a4", "compute.instance.update", "2026-03-01T10:30:00Z", "i-1", none.clone()),
    ];
    let (code, out, err) = ingest(&dir, &db, &lines, &["--event-time"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ingested: 6\n"), "{out}");

    let of = |all: &[serde_json::Value], instance: &str| -> Vec<serde_json::Value> {
        let mut v: Vec<_> =
            all.iter().filter(|s| s["distinguishing_traits"]["instance_id"] == instance).cloned().collect();
        v.sort_by_key(|s| s["first_event"].as_str().unwrap_or_default().to_string());
        v
    };
    let all = streams(&dir, &db);
    let i1 = of(&all, "i-1");
    // Live, the 08:01 stream expired at 09:01, so 10:00 opened a new one.
    assert_eq!(i1.len(), 2, "{all:#?}");
    assert_eq!((i1[0]["event_count"].as_i64(), i1[1]["event_count"].as_i64()), (Some(2), Some(2)), "{i1:#?}");
    assert_eq!(of(&all, "i-2").len(), 1);

    // The worker's "now" is 10:30, the latest event: the 08:01 stream is past
    // its expiry, i-2's is ready to fire, the 10:30 stream is still open.
    let (code, _, err) = run(Command::new(bin("pipeline-worker"))
        .arg("-c")
        .arg(dir.config())
        .env("DATABASE_URL", &db.url)
        .args(["--event-time", "--once"]));
    assert_eq!(code, 0, "{err}");
    let all = streams(&dir, &db);
    let i1 = of(&all, "i-1");
    assert_eq!(i1[0]["state"], "completed", "{i1:#?}");
    assert!(i1[0]["fire_timestamp"].is_null(), "expired, not fired: {i1:#?}");
    assert_eq!(i1[1]["state"], "active", "the 10:30 stream expires at 11:30 event time: {i1:#?}");
    let i2 = of(&all, "i-2");
    assert_eq!(i2[0]["state"], "completed", "{i2:#?}");
    assert!(!i2[0]["fire_timestamp"].is_null(), "fired: {i2:#?}");

    // An event at 11:31 moves event time past 11:30: now the second expires.
    let (code, out, err) = ingest(
        &dir,
        &db,
        &[n("c1", "compute.instance.update", "2026-03-01T11:31:00Z", "i-3", none.clone())],
        &["--event-time"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = run(Command::new(bin("pipeline-worker"))
        .arg("-c")
        .arg(dir.config())
        .env("DATABASE_URL", &db.url)
        .args(["--event-time", "--once"]));
    assert_eq!(code, 0, "{err}");
    let all = streams(&dir, &db);
    assert_eq!(of(&all, "i-1")[1]["state"], "completed", "{all:#?}");
    assert_eq!(of(&all, "i-3")[0]["state"], "active", "{all:#?}");

    // Without --event-time the same archive splits at every event (each one
    // is already past its stream's expiry by the wall clock).
    let db2 = TestDb::new().await;
    let dir2 = config(&db2, INSTANCE_TRIGGERS);
    let (code, out, err) = ingest(&dir2, &db2, &lines, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(of(&streams(&dir2, &db2), "i-1").len(), 4);
    db2.drop_db().await;
    db.drop_db().await;
}
