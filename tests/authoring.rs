//! Trigger authoring: `winchester test` (fixture files) and `winchester explain`.

use crate::backend_tests;
use crate::support::*;
use std::path::{Path, PathBuf};

fn etc(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("etc").join(name)
}

fn winchester_test(config: &Path, args: &[&str]) -> (i32, String, String) {
    run(program("winchester").arg("-c").arg(config).arg("test").args(args))
}

/// The shipped fixture files (etc/tests/) pass against the shipped example
/// configuration, and there is one for each example trigger.
#[test]
fn shipped_fixture_tests_pass() {
    let (code, out, err) = winchester_test(&etc("winchester.yaml"), &[etc("tests").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("FAIL"), "{out}");
    let last = out.lines().last().unwrap_or_default();
    let passed: usize = last
        .strip_prefix("tests: ")
        .and_then(|r| r.strip_suffix(" passed, 0 failed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("closing line: {out}"));
    assert_eq!(passed, out.lines().filter(|l| l.starts_with("ok ")).count(), "{out}");
    for trigger in ["instance_day", "request_trace", "big_instances"] {
        assert!(etc("tests").join(format!("{trigger}.yaml")).exists(), "no fixture file for {trigger}");
    }
}

const ONE_UPDATE: &str = r#"
    events:
      - {message_id: m1, event_type: compute.instance.update, timestamp: "2026-11-23T10:00:00Z", instance_id: i-2}
"#;

/// A wrong expectation fails the test (exit 1) and shows expected against
/// actual; the other tests still pass; `--json` says the same.
#[test]
fn wrong_expectation_fails_with_expected_and_actual() {
    let dir = ConfigDir::new(&[(
        "t.yaml",
        &format!(
            "tests:\n  - name: right\n{ONE_UPDATE}    expect:\n      expired: [{{trigger: instance_day, events: 1}}]\n  - name: wrong\n{ONE_UPDATE}    expect:\n      expired: [{{trigger: instance_day, distinguishing_traits: {{instance_id: i-2}}, events: 3}}]\n      fired: []\n"
        ),
    )]);
    let file = dir.path("t.yaml");
    let (code, out, err) = winchester_test(&etc("winchester.yaml"), &[file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ok ") && lines[0].ends_with("t.yaml: right"), "{out}");
    assert!(lines[1].starts_with("FAIL ") && lines[1].ends_with("t.yaml: wrong"), "{out}");
    assert!(lines[2].contains("expired: expected and actual differ"), "{out}");
    assert!(
        out.contains(r#"- {"distinguishing_traits":{"instance_id":"i-2"},"events":3,"trigger":"instance_day"}"#),
        "{out}"
    );
    assert!(
        out.contains(r#"- {"distinguishing_traits":{"instance_id":"i-2","timestamp":{"begin":"2026-11-23T00:00:00Z","end":"2026-11-24T00:00:00Z"}},"events":1,"trigger":"instance_day"}"#),
        "{out}"
    );
    assert!(!out.contains("fired:"), "fired [] held: {out}");
    assert_eq!(lines.last(), Some(&"tests: 1 passed, 1 failed"), "{out}");

    let (code, out, err) = winchester_test(&etc("winchester.yaml"), &["--json", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((v["passed"].as_u64(), v["failed"].as_u64()), (Some(1), Some(1)), "{v}");
    let failures = v["tests"][1]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{v}");
    assert_eq!(failures[0]["what"], "expired");
    assert_eq!(failures[0]["expected"][0]["events"], 3);
    assert_eq!(failures[0]["actual"][0]["events"], 1);
}

/// A bad fixture file is exit 2 with its file, line and key, and no test runs.
#[test]
fn bad_fixture_files_name_file_line_and_key() {
    let cases = [
        (
            "tests:\n  - name: a\n    events:\n      - {message_id: m1, event_type: x.y, timestamp: \"2026-11-23T10:00:00Z\"}\n    expect:\n      fired:\n        - {trigger: instance_dya}\n",
            ":7: key \"tests[0].expect.fired[0].trigger\": unknown trigger \"instance_dya\"",
        ),
        (
            "tests:\n  - name: a\n    events:\n      - {message_id: m1, event_type: x.y, timestamp: yesterday}\n",
            ":4: key \"tests[0].events[0]\": key \"timestamp\" must be an RFC 3339 date-time",
        ),
        ("tests:\n  - name: a\n    evnts: []\n", ":3: key \"tests[0].evnts\": unknown field `evnts`"),
        (
            "tests:\n  - name: a\n    events:\n      - {message_id: m1, event_type: x.y, timestamp: \"2026-11-23T10:00:00Z\"}\n    expect:\n      streams: [{state: firng}]\n",
            ":6: key \"tests[0].expect.streams[0].state\": unknown stream state \"firng\"",
        ),
        ("tests:\n  - name: a\n    expect: {}\n", ":2: key \"tests[0]\": test \"a\": needs events"),
        ("tests: [\n", ":2: key \"tests\": did not find expected node content"),
    ];
    for (yaml, want) in cases {
        let dir = ConfigDir::new(&[("good.yaml", "tests:\n  - name: fine\n    events:\n      - {message_id: m1, event_type: x.y, timestamp: \"2026-11-23T10:00:00Z\"}\n"), ("bad.yaml", yaml)]);
        let (code, out, err) = winchester_test(
            &etc("winchester.yaml"),
            &[dir.path("good.yaml").to_str().unwrap(), dir.path("bad.yaml").to_str().unwrap()],
        );
        assert_eq!(code, 2, "{yaml}: {out}{err}");
        assert!(out.is_empty(), "no test runs: {out}");
        let line = err.lines().next().unwrap_or_default();
        assert!(
            line.starts_with("error: ") && line.contains("bad.yaml") && line.contains(want),
            "{yaml}\nwant {want}\ngot {err}"
        );
    }
    // --json: the same as objects.
    let dir = ConfigDir::new(&[("bad.yaml", cases[0].0)]);
    let (code, out, _) = winchester_test(&etc("winchester.yaml"), &["--json", dir.path("bad.yaml").to_str().unwrap()]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["errors"][0]["line"], 7, "{v}");
    assert_eq!(v["errors"][0]["key"], "tests[0].expect.fired[0].trigger", "{v}");
    assert!(v["errors"][0]["file"].as_str().unwrap().ends_with("bad.yaml"), "{v}");
}

/// A tiny HTTP server answering 200 to every request; counts the requests.
async fn counting_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read the head, then the body its Content-Length announces.
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                c.fetch_add(1, Ordering::SeqCst);
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
            });
        }
    });
    (url, count)
}

/// Network handlers (webhook) are recorded, not called, unless
/// `--live-handlers`; other handlers run as configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_handlers_are_recorded_unless_live() {
    use std::sync::atomic::Ordering;
    let (url, count) = counting_server().await;
    let dir = ConfigDir::new(&[
        (
            "winchester.yaml",
            "trigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\npipeline_handlers: {notify: webhook}\n",
        ),
        (
            "triggers.yaml",
            "- name: req\n  distinguished_by: [request_id]\n  expiration: \"$last + 10s\"\n  fire_pipeline: done\n  match_criteria: [{event_type: '*'}]\n  fire_criteria: [{event_type: '*.end'}]\n",
        ),
        ("pipelines.yaml", &format!("done:\n  - logger\n  - name: notify\n    params: {{url: '{url}', max_retries: 0}}\n")),
        (
            "t.yaml",
            "tests:\n  - name: fires once\n    events:\n      - {message_id: m1, event_type: a.start, timestamp: \"2026-11-23T10:00:00Z\", request_id: r}\n      - {message_id: m2, event_type: a.end, timestamp: \"2026-11-23T10:00:01Z\", request_id: r}\n    expect:\n      fired: [{trigger: req, distinguishing_traits: {request_id: r}, events: 2}]\n",
        ),
    ]);
    let config = dir.config();
    let file = dir.path("t.yaml");
    let run_it = |args: Vec<String>| {
        let (config, file) = (config.clone(), file.clone());
        tokio::task::spawn_blocking(move || {
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            a.push(file.to_str().unwrap());
            winchester_test(&config, &a)
        })
    };
    let (code, out, err) = run_it(vec!["--json".into()]).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let recorded = v["tests"][0]["recorded"].as_array().unwrap();
    assert_eq!(recorded.len(), 1, "{v}");
    assert_eq!(recorded[0]["handler"], "webhook");
    assert_eq!(recorded[0]["trigger"], "req");
    assert_eq!(recorded[0]["action"], "fire");
    assert_eq!(recorded[0]["events"], 2);
    assert_eq!(recorded[0]["distinguishing_traits"], serde_json::json!({"request_id": "r"}));
    assert_eq!(count.load(Ordering::SeqCst), 0, "recorded, not sent");

    let (code, out, err) = run_it(vec!["--json".into(), "--live-handlers".into()]).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["tests"][0]["recorded"], serde_json::json!([]), "{v}");
    assert_eq!(count.load(Ordering::SeqCst), 1, "sent once");
}

async fn first_stream(db: &TestDb, trigger: &str) -> i64 {
    let f = winchester_storage::StreamFilter { trigger: Some(trigger.into()), ..Default::default() };
    db.storage.list_streams(&f).await.unwrap()[0].id
}

/// `winchester explain` over a database with open streams: which criterion
/// decided, the key, the open stream and whether it would fire; the JSON shape.
async fn explain_against_open_streams(backend: Backend) {
    let db = TestDb::on(backend).await;
    let triggers_yaml = std::fs::read_to_string(etc("triggers.yaml")).unwrap();
    let now = t(2026, 11, 23, 10, 0, 0);
    let (tm, _) = manager(&db, &triggers_yaml, now);
    let stored = winchester_core::Event::from_json(&serde_json::json!({
        "message_id": "a1", "event_type": "compute.instance.create.end", "timestamp": "2026-11-23T10:00:00Z",
        "instance_id": "i-1", "tenant_id": "t-1", "request_id": "r-1", "memory_mb": 8192,
    }))
    .unwrap();
    let ids = match tm.add_event(stored).await.unwrap() {
        winchester::EventOutcome::Saved { stream_ids, .. } => stream_ids,
        o => panic!("{o:?}"),
    };
    assert_eq!(ids.len(), 3, "instance_day, request_trace, big_instances");
    let (day, req) = (first_stream(&db, "instance_day").await, first_stream(&db, "request_trace").await);
    let dir = ConfigDir::new(&[
        (
            "exists.json",
            r#"{"message_id": "e1", "event_type": "compute.instance.exists", "timestamp": "2026-11-24T00:00:05Z", "instance_id": "i-1", "tenant_id": "t-1", "audit_period_beginning": "2026-11-23T00:00:00Z"}"#,
        ),
        (
            "small.json",
            r#"{"message_id": "s1", "event_type": "compute.instance.create.end", "timestamp": "2026-11-23T11:00:00Z", "instance_id": "i-9", "tenant_id": "t-1", "request_id": "r-1", "memory_mb": 2048}"#,
        ),
    ]);
    let explain = |file: &str, extra: &[&str]| {
        let (code, out, err) = run(program("winchester")
            .arg("-c")
            .arg(etc("winchester.yaml"))
            .args(["--database-url", &db.url, "explain", "--json"])
            .args(extra)
            .arg(dir.path(file)));
        assert_eq!(code, 0, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let by: std::collections::BTreeMap<String, serde_json::Value> =
            v.as_array().unwrap().iter().map(|x| (x["trigger"].as_str().unwrap().to_string(), x.clone())).collect();
        for x in by.values() {
            let keys: Vec<&str> = x.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["distinguishing_traits", "matched", "reason", "stream_id", "trigger", "would_fire"],
                "{x}"
            );
        }
        by
    };

    let x = explain("exists.json", &[]);
    let d = &x["instance_day"];
    assert_eq!(d["matched"], true, "{d}");
    assert!(
        d["reason"].as_str().unwrap().starts_with(
            "match_criteria[1]: event_type \"compute.instance.exists\" matches glob \"compute.instance.exists\""
        ),
        "{d}"
    );
    assert_eq!(d["distinguishing_traits"]["instance_id"], "i-1", "{d}");
    assert_eq!(d["distinguishing_traits"]["timestamp"]["begin"], "2026-11-23T00:00:00Z", "{d}");
    assert_eq!(d["stream_id"], day, "joins the open stream: {d}");
    assert_eq!(d["would_fire"], true, "{d}");
    let r = &x["request_trace"];
    assert_eq!(
        (&r["matched"], &r["stream_id"], &r["would_fire"]),
        (&serde_json::json!(false), &serde_json::Value::Null, &serde_json::Value::Null),
        "{r}"
    );
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("match_criteria[0]: event_type \"compute.instance.exists\" matches no glob of [\"*.start\"]"),
        "{r}"
    );
    assert!(
        x["big_instances"]["reason"].as_str().unwrap().contains("matches no glob of [\"compute.instance.create.end\"]"),
        "{x:?}"
    );

    let x = explain("small.json", &[]);
    let b = &x["big_instances"];
    assert_eq!(b["matched"], false, "{b}");
    assert!(b["reason"].as_str().unwrap().contains("trait \"memory_mb\" needs >= 4096, saw 2048 (int)"), "{b}");
    let r = &x["request_trace"];
    assert_eq!((&r["matched"], &r["stream_id"]), (&serde_json::json!(true), &serde_json::json!(req)), "{r}");
    assert_eq!(r["would_fire"], false, "two ends and no start: {r}");
    let d = &x["instance_day"];
    assert_eq!(
        (&d["matched"], &d["stream_id"], &d["would_fire"]),
        (&serde_json::json!(true), &serde_json::Value::Null, &serde_json::json!(false)),
        "a new instance, a new stream: {d}"
    );

    // Without the database: no stream ids; a lone exists event would fire a new stream.
    let x = explain("exists.json", &["--no-database"]);
    assert_eq!(x["instance_day"]["stream_id"], serde_json::Value::Null);
    assert_eq!(x["instance_day"]["would_fire"], true);
    db.drop_db().await;
}

/// The big_instances stream needs three; the stored one plus this one is two,
/// so it would not fire; a third event would.
async fn explain_counts_the_streams_events(backend: Backend) {
    let db = TestDb::on(backend).await;
    let triggers_yaml = std::fs::read_to_string(etc("triggers.yaml")).unwrap();
    let (tm, _) = manager(&db, &triggers_yaml, t(2026, 11, 23, 10, 0, 0));
    let big = |id: &str, instance: &str| {
        serde_json::json!({
            "message_id": id, "event_type": "compute.instance.create.end", "timestamp": "2026-11-23T10:00:00Z",
            "instance_id": instance, "tenant_id": "t-1", "memory_mb": 8192,
        })
    };
    tm.add_event(winchester_core::Event::from_json(&big("b1", "i-1")).unwrap()).await.unwrap();
    let dir = ConfigDir::new(&[("b.json", &big("b2", "i-2").to_string()), ("b1.json", &big("b1", "i-1").to_string())]);
    let would_fire = |file: &str| {
        let (code, out, err) = run(program("winchester")
            .arg("-c")
            .arg(etc("winchester.yaml"))
            .args(["--database-url", &db.url, "explain", "--json"])
            .arg(dir.path(file)));
        assert_eq!(code, 0, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array().unwrap().iter().find(|x| x["trigger"] == "big_instances").unwrap()["would_fire"].clone()
    };
    assert_eq!(would_fire("b.json"), false, "2 of 3");
    assert_eq!(would_fire("b1.json"), false, "the stored event explained again counts once");
    tm.add_event(winchester_core::Event::from_json(&big("b2", "i-2")).unwrap()).await.unwrap();
    let dir2 = ConfigDir::new(&[("b3.json", &big("b3", "i-3").to_string())]);
    let (code, out, err) = run(program("winchester")
        .arg("-c")
        .arg(etc("winchester.yaml"))
        .args(["--database-url", &db.url, "explain"])
        .arg(dir2.path("b3.json")));
    assert_eq!(code, 0, "{out}{err}");
    let block: String = out.split("big_instances: ").nth(1).unwrap_or_default().to_string();
    assert!(
        block.starts_with("matches\n") && block.contains("stream: open stream") && block.contains("would fire: yes"),
        "{out}"
    );
    db.drop_db().await;
}

backend_tests!(explain_against_open_streams, explain_counts_the_streams_events);

/// Bad input to explain: one error line naming the file, exit 1.
#[test]
fn explain_rejects_bad_events() {
    let dir = ConfigDir::new(&[("e.json", r#"{"message_id": "m", "event_type": "a.b"}"#), ("n.json", "not json")]);
    for (file, want) in
        [("e.json", "e.json: missing required key \"timestamp\""), ("n.json", "n.json: not a JSON document")]
    {
        let (code, out, err) = run(program("winchester")
            .arg("-c")
            .arg(etc("winchester.yaml"))
            .args(["explain", "--no-database"])
            .arg(dir.path(file)));
        assert_eq!(code, 1, "{out}{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(want), "want {want}: {err}");
    }
}

/// `--notification`: the raw notification is distilled first (its request id
/// from the oslo context), then explained.
#[test]
fn explain_distills_a_notification() {
    let n = r#"{"event_type": "compute.instance.create.start", "message_id": "n1", "timestamp": "2026-11-29 14:06:41.196138",
        "_context_request_id": "req-1", "_context_project_id": "tenant-1",
        "payload": {"instance_id": "i-1", "tenant_id": "tenant-1", "memory_mb": 2048, "state": "building"}}"#;
    let dir = ConfigDir::new(&[("n.json", n)]);
    let (code, out, err) = run(program("winchester")
        .arg("-c")
        .arg(etc("winchester.yaml"))
        .args(["explain", "--no-database", "--notification", "--json"])
        .arg(dir.path("n.json")));
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let r = v.as_array().unwrap().iter().find(|x| x["trigger"] == "request_trace").unwrap();
    assert_eq!(r["matched"], true, "{r}");
    assert_eq!(r["distinguishing_traits"], serde_json::json!({"request_id": "req-1"}), "{r}");
    assert_eq!(r["would_fire"], false, "a start without its end: {r}");
}

/// Notifications in a fixture need the configuration's distiller_config: a
/// file error (exit 2) with its line and key, not a failed test.
#[test]
fn fixture_notifications_need_a_distiller() {
    let dir = ConfigDir::new(&[
        ("winchester.yaml", "trigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\n"),
        (
            "triggers.yaml",
            "- name: req\n  distinguished_by: [request_id]\n  expiration: \"$last + 10s\"\n  fire_pipeline: done\n  match_criteria: [{event_type: '*'}]\n  fire_criteria: [{event_type: '*.end'}]\n",
        ),
        ("pipelines.yaml", "done:\n  - logger\n"),
        ("t.yaml", "tests:\n  - name: n\n    notifications:\n      - {event_type: a.start, message_id: n1, timestamp: \"2026-11-23T10:00:00Z\"}\n"),
    ]);
    let (code, out, err) = winchester_test(&dir.config(), &[dir.path("t.yaml").to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("t.yaml:4: key \"tests[0].notifications[0]\": notifications need distiller_config"), "{err}");
}
