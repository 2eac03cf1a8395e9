//! `POST /v1/events` (issue 27) over a real socket: reqwest against an
//! in-process server, the CloudEvents Python SDK, curl against the real
//! `winchester serve`, and a `kill -9` of `serve` under load. Everything a
//! response reports saved is looked up in the database.

use crate::support::*;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use winchester::TriggerManager;
use winchester_api::{ApiState, ReadyCheck};
use winchester_core::cloudevent;
use winchester_core::{Clock, SystemClock};

const TOKEN: &str = "ingest-token";

/// A database and an in-process server on 127.0.0.1:0.
struct Server {
    db: TestDb,
    tm: TriggerManager,
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    async fn start(backend: Backend, token: Option<&str>, max_body: usize, queue_limit: usize) -> Server {
        let db = TestDb::on(backend).await;
        let triggers = triggers(ORDER_TRIGGERS);
        let tm = TriggerManager::new(db.storage.clone(), triggers.clone(), Arc::new(SystemClock) as Arc<dyn Clock>)
            .with_source("http");
        let ready: ReadyCheck = Arc::new(|| Box::pin(async { Ok(()) }));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let state = ApiState::new(db.storage.clone(), triggers, token.map(str::to_string), false, ready, stop_rx)
            .with_ingest(tm.clone(), max_body, queue_limit);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(winchester_api::serve(listener, state, stop_tx, async move {
            let _ = rx.await;
        }));
        Server { db, tm, base, http: reqwest::Client::new(), stop: Some(tx) }
    }

    async fn default(backend: Backend) -> Server {
        Server::start(backend, Some(TOKEN), 8 * 1024 * 1024, 20_000).await
    }

    /// POSTs `body` as `content_type` (with the token); status, headers, JSON answer.
    async fn post(
        &self,
        query: &str,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.post(format!("{}/v1/events{query}", self.base)).bearer_auth(TOKEN).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let (status, h) = (r.status(), r.headers().clone());
        let text = r.text().await.unwrap();
        (status, h, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn post_json(&self, body: &Value) -> (StatusCode, Value) {
        let (s, _, v) = self.post("", Some("application/json"), &[], body.to_string()).await;
        (s, v)
    }

    async fn stored(&self, message_id: &str) -> Option<winchester_core::Event> {
        self.db.storage.get_event(message_id).await.unwrap().map(|e| e.event)
    }

    async fn events(&self) -> i64 {
        self.db.count("SELECT count(*) FROM event").await
    }

    async fn finish(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.db.drop_db().await;
    }
}

fn now() -> String {
    winchester_core::event::format_datetime(&Utc::now())
}

fn order(id: &str, ty: &str, order_id: &str) -> Value {
    json!({"message_id": id, "event_type": ty, "timestamp": now(), "order_id": order_id})
}

fn outcomes(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {v}"))
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect()
}

fn reason(v: &Value, i: usize) -> String {
    v["results"][i]["reason"].as_str().unwrap_or_else(|| panic!("no reason for {i}: {v}")).to_string()
}

/// Every item the answer reports ingested or duplicate is stored.
async fn assert_reported_saved_are_stored(s: &Server, v: &Value) -> usize {
    let mut n = 0;
    for r in v["results"].as_array().unwrap() {
        if matches!(r["outcome"].as_str(), Some("ingested" | "duplicate")) {
            let id = r["message_id"].as_str().unwrap_or_else(|| panic!("a saved item without message_id: {r}"));
            assert!(s.stored(id).await.is_some(), "reported saved but not stored: {r}");
            n += 1;
        }
    }
    n
}

/// JSON objects and arrays, JSON lines and the three CloudEvents modes: each
/// item's outcome in order, 200 / 207 / 422 by what was saved, reasons
/// naming the item, its message_id and the key; a redelivered CloudEvent is
/// a duplicate; whole-body errors are 400 / 415; every mutation needs the
/// token.
async fn formats_and_outcomes(backend: Backend) {
    let s = Server::default(backend).await;
    // JSON: one object; an array mixing good and bad.
    let (status, v) = s.post_json(&order("j1", "order.created", "o1")).await;
    assert_eq!((status, outcomes(&v)), (StatusCode::OK, vec!["ingested".to_string()]), "{v}");
    let mut bad_time = order("j3", "order.created", "o3");
    bad_time["timestamp"] = json!("yesterday");
    let (status, v) = s
        .post_json(&json!([order("j2", "order.created", "o2"), {"message_id": "j-no-type", "timestamp": now()}, bad_time, 7, order("j1", "order.created", "o1")]))
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{v}");
    assert_eq!(outcomes(&v), ["ingested", "rejected", "rejected", "rejected", "duplicate"], "{v}");
    assert_eq!((v["ingested"].as_u64(), v["duplicates"].as_u64(), v["rejected"].as_u64()), (Some(1), Some(1), Some(3)));
    let r = reason(&v, 1);
    assert!(r.starts_with("event 1:") && r.contains("\"event_type\"") && r.contains("j-no-type"), "{r}");
    let r = reason(&v, 2);
    assert!(
        r.starts_with("event 2:") && r.contains("\"timestamp\"") && r.contains("yesterday") && r.contains("j3"),
        "{r}"
    );
    assert!(reason(&v, 3).contains("not a JSON object"), "{v}");
    assert_eq!(v["results"][1]["message_id"], "j-no-type");
    assert_eq!(assert_reported_saved_are_stored(&s, &v).await, 2);
    assert!(s.stored("j-no-type").await.is_none() && s.stored("j3").await.is_none());
    // All rejected: 422.
    let (status, v) = s.post_json(&json!([{"event_type": "x"}])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(reason(&v, 0).contains("message_id"), "{v}");

    // JSON lines: blank lines skipped, a bad line named by its number.
    let lines = format!("{}\n\n{{not json\n{}\n", order("l1", "order.created", "o4"), order("l2", "order.paid", "o4"));
    let (status, _, v) = s.post("", Some("application/x-ndjson"), &[], lines).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{v}");
    assert_eq!(outcomes(&v), ["ingested", "rejected", "ingested"]);
    assert_eq!(v["results"][1]["line"], 3);
    assert!(reason(&v, 1).starts_with("line 3: invalid JSON"), "{v}");
    assert_eq!(assert_reported_saved_are_stored(&s, &v).await, 2);

    // CloudEvents, structured: the mapping, then a redelivery is a duplicate.
    let ce = json!({"specversion": "1.0", "id": "c-1", "source": "/shop/eu", "type": "order.paid",
        "time": "2026-11-23T10:00:00Z", "subject": "o5", "tenant": "t1", "attempt": 2,
        "datacontenttype": "application/json", "data": {"order_id": "o5", "amount": 12.5, "customer": {"id": 3}}});
    let (status, _, v) = s.post("", Some("application/cloudevents+json"), &[], ce.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mid = cloudevent::message_id("/shop/eu", "c-1");
    assert_eq!(v["results"][0]["message_id"], mid.as_str());
    let e = s.stored(&mid).await.expect("stored");
    assert_eq!(e.event_type, "order.paid");
    assert_eq!(winchester_core::event::format_datetime(&e.timestamp), "2026-11-23T10:00:00Z");
    let traits = e.to_json();
    for (k, want) in [
        ("order_id", json!("o5")),
        ("amount", json!(12.5)),
        ("customer.id", json!(3)),
        ("ce_id", json!("c-1")),
        ("ce_source", json!("/shop/eu")),
        ("ce_subject", json!("o5")),
        ("ce_tenant", json!("t1")),
        ("ce_attempt", json!(2)),
    ] {
        assert_eq!(traits[k], want, "{k}: {traits}");
    }
    assert!(traits.get(cloudevent::TIME_MISSING).is_none());
    let (status, _, v) = s.post("", Some("application/cloudevents+json"), &[], ce.to_string()).await;
    assert_eq!((status, outcomes(&v)), (StatusCode::OK, vec!["duplicate".to_string()]), "{v}");

    // Batched: a missing type and a bad time are rejected with their ids.
    let batch = json!([
        {"specversion": "1.0", "id": "b-1", "source": "/shop", "type": "order.created", "data": {"order_id": "o6"}},
        {"specversion": "1.0", "id": "b-2", "source": "/shop", "data": {"order_id": "o6"}},
        {"specversion": "1.0", "id": "b-3", "source": "/shop", "type": "order.paid", "time": "soon", "data": {"order_id": "o6"}},
    ]);
    let (status, _, v) = s.post("", Some("application/cloudevents-batch+json"), &[], batch.to_string()).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{v}");
    assert_eq!(outcomes(&v), ["ingested", "rejected", "rejected"]);
    let r = reason(&v, 1);
    assert!(r.starts_with("event 1:") && r.contains("\"type\"") && r.contains("b-2"), "{r}");
    let r = reason(&v, 2);
    assert!(r.contains("\"time\"") && r.contains("soon") && r.contains("b-3"), "{r}");
    assert_eq!(v["results"][2]["message_id"], cloudevent::message_id("/shop", "b-3").as_str());
    let e = s.stored(&cloudevent::message_id("/shop", "b-1")).await.expect("stored");
    assert_eq!(e.traits.get(cloudevent::TIME_MISSING), Some(&winchester_core::TraitValue::Bool(true)));
    assert!((Utc::now() - e.timestamp).num_seconds().abs() < 60, "receive time: {}", e.timestamp);

    // Binary: attributes in percent-encoded ce-* headers, data in the body.
    let headers = [
        ("ce-specversion", "1.0"),
        ("ce-id", "bin-1"),
        ("ce-source", "/shop%20eu"),
        ("ce-type", "order.created"),
        ("ce-time", "2026-11-23T11:00:00.5Z"),
        ("ce-region", "eu%2Dwest"),
    ];
    let (status, _, v) = s.post("", Some("application/json"), &headers, json!({"order_id": "o7"}).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let e = s.stored(&cloudevent::message_id("/shop eu", "bin-1")).await.expect("stored");
    let traits = e.to_json();
    assert_eq!((traits["order_id"].clone(), traits["ce_region"].clone()), (json!("o7"), json!("eu-west")), "{traits}");
    assert_eq!(traits["ce_datacontenttype"], "application/json");
    let text = [("ce-specversion", "1.0"), ("ce-id", "bin-2"), ("ce-source", "/shop"), ("ce-type", "order.created")];
    let (status, _, v) = s.post("", Some("text/plain"), &text, "hello").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let e = s.stored(&cloudevent::message_id("/shop", "bin-2")).await.expect("stored").to_json();
    assert_eq!((e["data"].clone(), e["ce_datacontenttype"].clone()), (json!("hello"), json!("text/plain")), "{e}");
    let (status, _, v) = s.post("", None, &[("ce-specversion", "1.0"), ("ce-id", "x")], "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(reason(&v, 0).contains("\"source\""), "{v}");

    // Whole-body errors.
    let (status, _, v) = s.post("", Some("application/json"), &[], "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not JSON"), "{v}");
    let (status, _, v) = s.post("", Some("application/json"), &[], "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, _, v) = s.post("", Some("application/json"), &[], "42").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, _, v) = s.post("", Some("text/csv"), &[], "a,b").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("application/x-ndjson"), "{v}");
    let (status, _, v) = s.post("?notifications=true", Some("application/json"), &[], "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no distiller: {v}");
    let (status, _, v) = s.post("?notification=true", Some("application/json"), &[], "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a misspelt parameter: {v}");

    // The token.
    let before = s.events().await;
    let r =
        s.http.post(format!("{}/v1/events", s.base)).json(&order("t1", "order.created", "o8")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.events().await, before);
    assert!(s.stored("t1").await.is_none());
    s.finish().await;
}

/// The bad input of the issue, each with a clear per-event or per-request
/// error: non-JSON, a missing `type`, a bad `time` (above), a 10 MB body
/// (413, nothing stored), and 10,000 events in one request (all stored, one
/// result each, in order).
async fn big_requests(backend: Backend) {
    let s = Server::default(backend).await;
    let pad = "x".repeat(1000);
    let ten_mb: String = (0..10_000)
        .map(|i| {
            let mut e = order(&format!("big-{i}"), "order.created", &format!("o{i}"));
            e["pad"] = json!(pad);
            format!("{e}\n")
        })
        .collect();
    assert!(ten_mb.len() > 10_000_000);
    let (status, _, v) = s.post("", Some("application/x-ndjson"), &[], ten_mb).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("api.ingest_max_body_bytes"), "{v}");
    assert_eq!(s.events().await, 0);

    let many: Vec<Value> =
        (0..10_000).map(|i| order(&format!("many-{i}"), "order.created", &format!("o{}", i % 500))).collect();
    let (status, v) = s.post_json(&Value::Array(many)).await;
    assert_eq!(status, StatusCode::OK, "{}", v["results"][0]);
    assert_eq!(v["ingested"], 10_000);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 10_000);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(
            (r["index"].as_u64(), r["message_id"].as_str()),
            (Some(i as u64), Some(format!("many-{i}").as_str()))
        );
    }
    assert_eq!(s.events().await, 10_000);
    assert_eq!(s.db.count("SELECT count(*) FROM stream").await, 500, "one stream per order");
    s.finish().await;
}

crate::backend_tests!(formats_and_outcomes, big_requests);

/// 429 with Retry-After when the commit queue is over its bound, and nothing
/// of that request is queued: the database is held (a lock on the event
/// table) so that a first request's events wait for their commit, a second
/// request over the bound is refused, and once the lock goes the first is
/// answered 200 and the second's event was never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_over_its_bound_answers_429() {
    let s = Server::start(Backend::Postgres, Some(TOKEN), 1 << 20, 3).await;
    let mut lock = s.db.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE event IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let first = {
        let (http, url) = (s.http.clone(), format!("{}/v1/events", s.base));
        let body = json!([order("q1", "order.created", "o1"), order("q2", "order.created", "o2")]);
        tokio::spawn(async move { http.post(url).bearer_auth(TOKEN).json(&body).send().await.unwrap().status() })
    };
    let start = Instant::now();
    while s.tm.queued_events() < 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "the first request never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, headers, v) = s
        .post(
            "",
            Some("application/json"),
            &[],
            json!([order("q3", "order.created", "o3"), order("q4", "order.created", "o4")]).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(headers.get("retry-after").map(|h| h.to_str().unwrap()), Some("1"));
    assert!(v["error"].as_str().unwrap().contains("nothing of this request was queued"), "{v}");
    lock.rollback().await.unwrap();
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert!(s.stored("q1").await.is_some() && s.stored("q2").await.is_some());
    assert!(s.stored("q3").await.is_none(), "a refused request's event was stored");
    assert_eq!(s.tm.queued_events(), 0);
    let (status, v) = s.post_json(&json!([order("q3", "order.created", "o3")])).await;
    assert_eq!(status, StatusCode::OK, "taken once the queue drained: {v}");
    s.finish().await;
}

/// The `winchester_http_ingest_*` metrics move: requests by status, events
/// by outcome, the latency histogram.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_metrics_move() {
    winchester::metrics::install("serve").unwrap();
    let s = Server::default(Backend::Postgres).await;
    let scrape = || async {
        let text = s.http.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let get = |name: &str, label: Option<(&str, &str)>| -> f64 {
            scrape
                .samples
                .iter()
                .filter(|x| x.metric == name && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
                .map(|x| match x.value {
                    prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                    prometheus_parse::Value::Histogram(ref h) => h.last().map_or(0.0, |b| b.count),
                    _ => 0.0,
                })
                .sum()
        };
        (
            get("winchester_http_ingest_requests_total", Some(("status", "207"))),
            get("winchester_http_ingest_events_total", Some(("outcome", "ingested"))),
            get("winchester_http_ingest_events_total", Some(("outcome", "rejected"))),
            get("winchester_http_ingest_duration_seconds", None),
            text.contains("winchester_http_ingest_duration_seconds_bucket"),
        )
    };
    let before = scrape().await;
    let (status, _) =
        s.post_json(&json!([order("m1", "order.created", "o1"), order("m2", "order.created", "o2"), {}])).await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    let after = scrape().await;
    assert!(after.0 >= before.0 + 1.0, "{before:?} {after:?}");
    assert!(after.1 >= before.1 + 2.0, "{before:?} {after:?}");
    assert!(after.2 >= before.2 + 1.0, "{before:?} {after:?}");
    assert!(after.3 >= before.3 + 1.0 && after.4, "{before:?} {after:?}");
    s.finish().await;
}

/// A venv named `name` under `.tmp/` holding `pins` (made once, reused
/// while the pins are the same), and its python; `Err` (the caller skips,
/// saying why) when it cannot be made, as when PyPI cannot be reached.
fn python_venv(name: &str, pins: &[&str]) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tmp").join(name);
    let stamp = dir.join(".installed");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == pins.join(" ")) {
        return Ok(dir.join("bin/python"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (code, out, err) = run(std::process::Command::new("python3").args(["-m", "venv"]).arg(&dir));
    if code != 0 {
        return Err(format!("python3 -m venv failed: {out}{err}"));
    }
    let (code, out, err) = run(std::process::Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "--timeout", "20"])
        .args(pins));
    if code != 0 {
        return Err(format!(
            "pip install {} failed (PyPI unreachable?): {}",
            pins.join(" "),
            format!("{out}{err}").trim()
        ));
    }
    std::fs::write(&stamp, pins.join(" ")).unwrap();
    Ok(dir.join("bin/python"))
}

/// Sends CloudEvents with the official Python SDK in structured, binary and
/// batched mode (the SDK's JSON format for each event of the batch), then
/// the structured one again; prints each answer's status and body as JSON
/// lines, and the message_id the documented UUIDv5 gives for each event.
const SDK_CLIENT: &str = r#"
import json, sys, uuid, urllib.request
from cloudevents.core.v1.event import CloudEvent
from cloudevents.core.bindings.http import to_structured_event, to_binary_event
from cloudevents.core.formats.json import JSONFormat

base, token = sys.argv[1], sys.argv[2]
NS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:winchester-rs:cloudevents")

def post(body, headers):
    headers = dict(headers, Authorization="Bearer " + token)
    req = urllib.request.Request(base + "/v1/events", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())

def report(mode, ev, status, body):
    a = ev.get_attributes()
    print(json.dumps({"mode": mode, "status": status, "body": body,
        "expected_message_id": str(uuid.uuid5(NS, a["source"] + "\0" + a["id"]))}))

structured = CloudEvent({"type": "order.created", "source": "https://shop.example/py", "id": "py-s-1",
    "subject": "o-py-1", "tenant": "t9"}, {"order_id": "o-py-1", "amount": 7})
m = to_structured_event(structured)
report("structured", structured, *post(m.body, m.headers))

binary = CloudEvent({"type": "order.paid", "source": "https://shop.example/py", "id": "py-b-1",
    "datacontenttype": "application/json", "region": "eu west"}, {"order_id": "o-py-1"})
m = to_binary_event(binary)
report("binary", binary, *post(m.body, m.headers))

fmt = JSONFormat()
batch = [CloudEvent({"type": "order.created", "source": "https://shop.example/py", "id": "py-batch-%d" % i},
    {"order_id": "o-py-b%d" % i}) for i in range(3)]
body = b"[" + b",".join(fmt.write(e) for e in batch) + b"]"
status, answer = post(body, {"Content-Type": "application/cloudevents-batch+json"})
for e in batch:
    report("batched", e, status, answer)

m = to_structured_event(structured)
report("redelivered", structured, *post(m.body, m.headers))
"#;

/// The CloudEvents Python SDK (`cloudevents` from PyPI, in a venv) sends
/// structured, binary and batched events; each is stored under the
/// message_id the documented UUIDv5 of source and id gives, with its data
/// fields and extensions as traits; a redelivery is a duplicate. Skipped,
/// saying why, when PyPI cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_python_sdk() {
    let venv = || python_venv("venv-cloudevents", &["cloudevents==2.2.0"]);
    let python = match tokio::task::spawn_blocking(venv).await.unwrap() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED cloudevents_python_sdk: {why}");
            return;
        }
    };
    let s = Server::default(Backend::Postgres).await;
    let script = std::env::temp_dir().join(format!("ce-client-{}.py", uuid::Uuid::new_v4().simple()));
    std::fs::write(&script, SDK_CLIENT).unwrap();
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(&script).arg(&s.base).arg(TOKEN);
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&mut cmd)).await.unwrap();
    let _ = std::fs::remove_file(&script);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let modes: Vec<&str> = lines.iter().map(|l| l["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["structured", "binary", "batched", "batched", "batched", "redelivered"]);
    let mut batch_index = 0;
    for l in &lines {
        assert_eq!(l["status"], 200, "{l}");
        let want = l["expected_message_id"].as_str().unwrap();
        let result = if l["mode"] == "batched" {
            batch_index += 1;
            &l["body"]["results"][batch_index - 1]
        } else {
            &l["body"]["results"][0]
        };
        assert_eq!(result["message_id"], want, "{l}");
        let expected = if l["mode"] == "redelivered" { "duplicate" } else { "ingested" };
        assert_eq!(result["outcome"], expected, "{l}");
        assert!(s.stored(want).await.is_some(), "{l}");
    }
    let e = s.stored(lines[0]["expected_message_id"].as_str().unwrap()).await.unwrap().to_json();
    assert_eq!(
        (e["event_type"].clone(), e["order_id"].clone(), e["amount"].clone()),
        (json!("order.created"), json!("o-py-1"), json!(7)),
        "{e}"
    );
    assert_eq!((e["ce_subject"].clone(), e["ce_tenant"].clone()), (json!("o-py-1"), json!("t9")), "{e}");
    let e = s.stored(lines[1]["expected_message_id"].as_str().unwrap()).await.unwrap().to_json();
    assert_eq!((e["event_type"].clone(), e["ce_region"].clone()), (json!("order.paid"), json!("eu west")), "{e}");
    assert_eq!(s.events().await, 5);
    s.finish().await;
}

/// The real `winchester serve` (token, distiller_config): curl posts a JSON
/// lines file, then raw notifications with `?notifications=true`; what curl
/// is told was saved is stored, and without the token nothing is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_posts_a_json_lines_file_to_serve() {
    let db = TestDb::new().await;
    let etc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("etc/event_definitions.yaml");
    let main = format!(
        "database: {{url: '{}'}}\ntrigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\ndistiller_config: {}\napi: {{token: {TOKEN}}}\n",
        db.url,
        etc.display()
    );
    let dir = ConfigDir::new(&[
        ("winchester.yaml", &main),
        ("triggers.yaml", ORDER_TRIGGERS),
        ("pipelines.yaml", "count_it:\n  - logger\n"),
    ]);
    let lines: String =
        (0..50).map(|i| format!("{}\n", order(&format!("curl-{i}"), "order.created", &format!("o{i}")))).collect();
    std::fs::write(dir.path("events.jsonl"), format!("{lines}{{\"message_id\": \"curl-bad\"}}\n")).unwrap();
    let (code, notifications, err) = run(program("winchester").args(["generate", "--count", "20"]));
    assert_eq!(code, 0, "{err}");
    std::fs::write(dir.path("notifications.jsonl"), &notifications).unwrap();
    let (_serve, base) = spawn_serve(&dir.config()).await;
    let curl = |args: &[&str]| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "-w", "\n%{http_code}"]).args(args);
        let (code, out, err) = run(&mut cmd);
        assert_eq!(code, 0, "curl: {err}");
        let (body, status) = out.trim_end().rsplit_once('\n').unwrap();
        (status.to_string(), serde_json::from_str::<Value>(body).unwrap_or_else(|_| panic!("{body}")))
    };
    let auth = format!("Authorization: Bearer {TOKEN}");
    let file = format!("@{}", dir.path("events.jsonl").display());
    let url = format!("{base}/v1/events");
    let (status, v) = curl(&["-H", "Content-Type: application/x-ndjson", "--data-binary", &file, &url]);
    assert_eq!(status, "401", "{v}");
    assert_eq!(db.count("SELECT count(*) FROM event").await, 0);
    let (status, v) = curl(&["-H", &auth, "-H", "Content-Type: application/x-ndjson", "--data-binary", &file, &url]);
    assert_eq!(status, "207", "{v}");
    assert_eq!((v["ingested"].as_u64(), v["rejected"].as_u64()), (Some(50), Some(1)), "{v}");
    assert!(reason(&v, 50).starts_with("line 51:") && reason(&v, 50).contains("curl-bad"), "{v}");
    for i in 0..50 {
        assert!(db.storage.get_event(&format!("curl-{i}")).await.unwrap().is_some());
    }
    let file = format!("@{}", dir.path("notifications.jsonl").display());
    let (status, v) = curl(&[
        "-H",
        &auth,
        "-H",
        "Content-Type: application/x-ndjson",
        "--data-binary",
        &file,
        &format!("{url}?notifications=true"),
    ]);
    assert_eq!(status, "200", "{v}");
    assert_eq!(v["ingested"], 20, "{v}");
    for r in v["results"].as_array().unwrap() {
        assert!(db.storage.get_event(r["message_id"].as_str().unwrap()).await.unwrap().is_some(), "{r}");
    }
    assert_eq!(db.count("SELECT count(*) FROM event").await, 70);
    db.drop_db().await;
}

/// `kill -9` of the real `winchester serve` while 16 clients post batches:
/// every event any answer reported ingested or duplicate is stored (nothing
/// is acknowledged before its commit), and a restarted server takes the
/// unacknowledged ones again (redeliveries of committed ones come back
/// duplicates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_serve_loses_no_acknowledged_event() {
    let db = TestDb::new().await;
    let dir = ConfigDir::on_db(&db, ORDER_TRIGGERS, "count_it:\n  - logger\n");
    let (mut serve, base) = spawn_serve(&dir.config()).await;
    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::<String>::new()));
    let sent = Arc::new(std::sync::Mutex::new(Vec::<Vec<Value>>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..16 {
        let (acked, sent, stop, url) = (acked.clone(), sent.clone(), stop.clone(), format!("{base}/v1/events"));
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for b in 0.. {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let batch: Vec<Value> =
                    (0..50).map(|i| order(&format!("k-{c}-{b}-{i}"), "order.created", &format!("o{c}-{i}"))).collect();
                sent.lock().unwrap().push(batch.clone());
                let Ok(r) = http.post(&url).json(&batch).send().await else { break };
                let Ok(v) = r.json::<Value>().await else { break };
                for r in v["results"].as_array().into_iter().flatten() {
                    if matches!(r["outcome"].as_str(), Some("ingested" | "duplicate")) {
                        acked.lock().unwrap().insert(r["message_id"].as_str().unwrap().to_string());
                    }
                }
            }
        }));
    }
    let start = Instant::now();
    while acked.lock().unwrap().len() < 2000 {
        assert!(start.elapsed() < Duration::from_secs(60), "the clients got nowhere");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(std::process::Command::new("kill").args(["-KILL", &serve.0.id().to_string()]).status().unwrap().success());
    let _ = serve.0.wait();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let stored: BTreeSet<String> =
        sqlx::query_scalar("SELECT message_id FROM event").fetch_all(db.pool()).await.unwrap().into_iter().collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    // Everything sent, again, to a new server: each event stored once.
    let (_serve, base) = spawn_serve(&dir.config()).await;
    let http = reqwest::Client::new();
    let batches = sent.lock().unwrap().clone();
    let mut all = BTreeSet::new();
    for batch in &batches {
        let r = http.post(format!("{base}/v1/events")).json(batch).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        for (r, e) in v["results"].as_array().unwrap().iter().zip(batch) {
            let id = e["message_id"].as_str().unwrap();
            all.insert(id.to_string());
            if acked.contains(id) {
                assert_eq!(r["outcome"], "duplicate", "{r}");
            }
        }
    }
    assert_eq!(db.count("SELECT count(*) FROM event").await, all.len() as i64);
    db.drop_db().await;
}

/// Schemathesis (from PyPI, in a venv) generates requests to `POST
/// /v1/events` from the served OpenAPI document (examples, coverage and
/// fuzzing phases, with the token): no answer is a 5xx. Skipped, saying
/// why, when PyPI cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_on_ingest() {
    let venv = || python_venv("venv-schemathesis", &["schemathesis==4.32.5"]);
    let python = match tokio::task::spawn_blocking(venv).await.unwrap() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED schemathesis_finds_no_server_error_on_ingest: {why}");
            return;
        }
    };
    let s = Server::default(Backend::Postgres).await;
    let st = python.with_file_name("st");
    let mut cmd = std::process::Command::new(st);
    cmd.arg("run")
        .arg(format!("{}/v1/openapi.json", s.base))
        .args(["--include-operation-id", "post_events", "--phases", "examples,coverage,fuzzing"])
        .args(["--checks", "not_a_server_error", "--max-time", "30", "--workers", "2", "--seed", "27"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .env("NO_COLOR", "1")
        // Its cache (.schemathesis/) goes there, not into the checkout.
        .current_dir(std::env::temp_dir());
    let (code, out, err) = tokio::task::spawn_blocking(move || run(&mut cmd)).await.unwrap();
    assert_eq!(code, 0, "schemathesis found a failure:\n{out}{err}");
    assert!(out.contains("POST /v1/events"), "the operation was not tested:\n{out}");
    s.finish().await;
}
