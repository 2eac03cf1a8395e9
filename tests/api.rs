//! `winchester serve`'s API over real HTTP (in-process server on 127.0.0.1:0, or
//! the real binary), the live tail, event queries and metrics, on both backends.

use crate::support::*;
use chrono::{Duration, Utc};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::Arc;
use winchester::pipeline::{HandlerRegistry, PipelineRunner};
use winchester::{TriggerManager, Worker, WorkerOptions};
use winchester_api::{ApiState, ReadyCheck};
use winchester_core::{Clock, LoadedConfig, ManualClock, TraitValue};
use winchester_storage::{EventFilter, TraitFilter};

const TRIGGERS: &str = r#"
- name: api_orders
  distinguished_by: [order_id]
  expiration: "$last + 1h"
  fire_pipeline: fire_p
  match_criteria: [{event_type: "order.*"}]
  fire_criteria: [{event_type: order.paid}]
"#;
const PIPELINES: &str = "fire_p:\n  - logger\n";
const TOKEN: &str = "s3cret-token";

/// A database, a trigger manager on a manual clock, config files and an
/// in-process server.
struct Api {
    db: TestDb,
    tm: TriggerManager,
    clock: Arc<ManualClock>,
    cfg: LoadedConfig,
    dir: ConfigDir,
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Api {
    async fn start(backend: Backend, token: Option<&str>, read_only: bool) -> Api {
        let db = TestDb::on(backend).await;
        let dir = ConfigDir::on_db(&db, TRIGGERS, PIPELINES);
        let cfg = LoadedConfig::load(&dir.config(), None).unwrap_or_else(|e| panic!("{e}"));
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let tm =
            TriggerManager::new(db.storage.clone(), Arc::new(cfg.triggers.clone()), clock.clone() as Arc<dyn Clock>);
        let ready: ReadyCheck = Arc::new(|| Box::pin(async { Ok(()) }));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let state = ApiState::new(
            db.storage.clone(),
            Arc::new(cfg.triggers.clone()),
            token.map(str::to_string),
            read_only,
            ready,
            stop_rx,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(winchester_api::serve(listener, state, stop_tx, async move {
            let _ = rx.await;
        }));
        Api { db, tm, clock, cfg, dir, base, http: reqwest::Client::new(), stop: Some(tx) }
    }

    async fn get(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        let text = r.text().await.unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// One order event per order id (each opens its own stream).
    async fn orders(&self, n: usize, ty: &str, prefix: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        for i in 0..n {
            let e = event(
                &format!("{prefix}-{ty}-{i}"),
                ty,
                self.clock.now(),
                &[("order_id", s(&format!("{prefix}{i}"))), ("amount", TraitValue::Int(i as i64))],
            );
            match self.tm.add_event(e).await.unwrap() {
                winchester::EventOutcome::Saved { stream_ids, .. } => ids.extend(stream_ids),
                o => panic!("{o:?}"),
            }
        }
        ids
    }

    fn worker(&self) -> Worker {
        let runner = PipelineRunner::new(HandlerRegistry::with_builtins(), self.cfg.clone());
        Worker::new(self.tm.clone(), runner, WorkerOptions::from_config(&self.cfg.main))
    }

    async fn finish(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.db.drop_db().await;
    }
}

fn error_text(v: &Value) -> String {
    v["error"].as_str().unwrap_or_else(|| panic!("not a JSON error: {v}")).to_string()
}

/// Walks a listing with X-Next-Mark until an empty page; returns the pages' ids.
async fn pages(api: &Api, path: &str, key: &str, first_mark: Option<&str>) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut next = match first_mark {
        Some(m) => format!("{path}{sep}mark={}", urlencode(m)),
        None => path.to_string(),
    };
    loop {
        let (status, headers, body) = api.get(&next).await;
        assert_eq!(status, StatusCode::OK, "{next}: {body}");
        let rows = body.as_array().unwrap().clone();
        if rows.is_empty() {
            return out;
        }
        out.push(rows.iter().map(|r| r[key].clone()).collect());
        let mark = headers.get("x-next-mark").expect("next mark header").to_str().unwrap().to_string();
        next = format!("{path}{sep}mark={}", urlencode(&mark));
        assert!(out.len() < 100, "paging does not end");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every stream endpoint and filter; paging across more than two pages in
/// both directions; count equals list length; reset and purge; bad input is a
/// 400 naming the parameter.
async fn streams_endpoints(backend: Backend) {
    let api = Api::start(backend, None, false).await;
    let ids = api.orders(7, "order.created", "o").await;
    api.clock.set(api.clock.now() + Duration::seconds(10));
    let later = api.clock.now();
    api.orders(1, "order.created", "late").await;

    let (status, _, all) = api.get("/v1/streams").await;
    assert_eq!(status, StatusCode::OK);
    let all = all.as_array().unwrap().clone();
    assert_eq!(all.len(), 8);
    assert!(all.iter().all(|s| s["name"] == "api_orders" && s["trigger"] == "api_orders"), "quincy's name field");
    let (_, _, count) = api.get("/v1/streams/count").await;
    assert_eq!(count, json!([{"count": 8, "exact": true}]));

    // Paging: 3 + 3 + 2, newest first; ascending with a + mark.
    let desc = pages(&api, "/v1/streams?limit=3", "id", None).await;
    assert_eq!(desc.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2]);
    let flat: Vec<i64> = desc.concat().iter().map(|v| v.as_i64().unwrap()).collect();
    let mut sorted = flat.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(flat, sorted, "newest first, no repeats");
    let (_, _, asc) = api.get("/v1/streams?limit=3&mark=%2B").await;
    assert_eq!(asc[0]["id"].as_i64().unwrap(), *ids.iter().min().unwrap(), "+ lists oldest first");
    let asc_pages = pages(&api, "/v1/streams?limit=3", "id", Some("+0")).await;
    assert_eq!(asc_pages.len(), 3);
    // An unencoded + (a space once decoded) still means ascending.
    let (_, _, asc2) = api.get("/v1/streams?limit=1&mark=+").await;
    assert_eq!(asc2[0]["id"], asc[0]["id"]);

    // Filters.
    for q in ["trigger_name=api_orders", "name=api_orders", "state=active"] {
        let (_, _, v) = api.get(&format!("/v1/streams?{q}")).await;
        assert_eq!(v.as_array().unwrap().len(), 8, "{q}");
        let (_, _, c) = api.get(&format!("/v1/streams/count?{q}")).await;
        assert_eq!(c[0]["count"], 8, "{q}");
    }
    for q in ["trigger_name=nope", "state=error", "distinguishing_traits=order_id:nope"] {
        let (_, _, v) = api.get(&format!("/v1/streams?{q}")).await;
        assert_eq!(v, json!([]), "{q}");
    }
    let (_, _, one) = api.get("/v1/streams?distinguishing_traits=order_id:o3").await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["distinguishing_traits"]["order_id"], "o3");
    let (_, _, one) = api.get("/v1/streams?distinguishing_traits=order_id:o3,order_id:o3").await;
    assert_eq!(one.as_array().unwrap().len(), 1, "klugman's , separator");
    let t = urlencode(&winchester_core::event::format_datetime(&(later - Duration::seconds(1))));
    let (_, _, young) = api.get(&format!("/v1/streams?younger_than={t}")).await;
    assert_eq!(young.as_array().unwrap().len(), 1, "only the late stream has a last event after");
    let (_, _, old) = api.get(&format!("/v1/streams?older_than={t}")).await;
    assert_eq!(old.as_array().unwrap().len(), 7);
    let (_, _, c) = api.get(&format!("/v1/streams/count?older_than={t}")).await;
    assert_eq!(c[0]["count"], 7, "count equals list length");

    // One stream, details.
    let id = ids[0];
    let (status, _, v) = api.get(&format!("/v1/streams/{id}?details=true")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v[0]["id"], id);
    assert_eq!(v[0]["events"][0]["event_type"], "order.created");
    let (_, _, v) = api.get("/v1/streams?details=true&limit=1").await;
    assert!(v[0]["events"].is_array());
    let (status, _, v) = api.get("/v1/streams/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_text(&v).contains("999999"));

    // Bad input: 400 naming the parameter, never 500.
    for (q, name) in [
        ("/v1/streams?state=bogus", "state"),
        ("/v1/streams?limit=0", "limit"),
        ("/v1/streams?limit=1001", "limit"),
        ("/v1/streams?limit=abc", "limit"),
        ("/v1/streams?mark=xyz", "mark"),
        ("/v1/streams?older_than=yesterday", "older_than"),
        ("/v1/streams?younger_than=2026-13-45", "younger_than"),
        ("/v1/streams?distinguishing_traits=nocolon", "distinguishing_traits"),
        ("/v1/streams?details=maybe", "details"),
        ("/v1/streams?bogus=1", "bogus"),
        ("/v1/streams/count?limit=5", "limit"),
        ("/v1/streams/abc", "id"),
        ("/v1/streams/-1", "id"),
        ("/v1/events?from_datetime=nope", "from_datetime"),
        ("/v1/events?traits=%3Av", "traits"),
        ("/v1/tail?kind=cats", "kind"),
    ] {
        let (status, _, v) = api.get(q).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert!(error_text(&v).contains(name), "{q}: {v}");
    }
    let (status, _, v) = api.get("/v1/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_text(&v).contains("no such endpoint"));

    // Reset: only failed streams; purge.
    let (status, v) = api.send(reqwest::Method::PUT, &format!("/v1/streams/{id}"), None, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    api.db.exec(&format!("UPDATE stream SET state = 4, open = {} WHERE id = {id}", open_false(backend))).await;
    let (status, v) = api.send(reqwest::Method::PUT, &format!("/v1/streams/{id}"), None, None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v[0]["state"], "retry_fire");
    let (status, _) = api.send(reqwest::Method::DELETE, &format!("/v1/streams/{id}"), None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = api.get(&format!("/v1/streams/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.send(reqwest::Method::DELETE, &format!("/v1/streams/{id}"), None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    api.finish().await;
}

fn open_false(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "FALSE",
        Backend::Sqlite => "0",
    }
}

/// Every event endpoint and filter: time range, exact and glob names, typed
/// traits, paging over three pages, count equals list length, one event with
/// its streams.
async fn events_endpoints(backend: Backend) {
    let api = Api::start(backend, None, false).await;
    let start = api.clock.now();
    api.orders(5, "order.created", "e").await;
    api.clock.set(api.clock.now() + Duration::seconds(60));
    let mid = api.clock.now();
    api.orders(3, "order.shipped", "e").await;
    let memo = event("float-1", "misc.thing", mid, &[("memory_mb", TraitValue::Float(4096.0))]);
    let memo2 = event("str-1", "misc.thing", mid, &[("memory_mb", s("4096"))]);
    let memo3 = event("int-1", "misc.thing", mid, &[("memory_mb", TraitValue::Int(4096))]);
    let memo4 = event("int-2", "misc.thing", mid, &[("memory_mb", TraitValue::Int(512))]);
    api.tm.add_events(vec![memo, memo2, memo3, memo4]).await.unwrap();

    let (_, _, all) = api.get("/v1/events?limit=1000").await;
    assert_eq!(all.as_array().unwrap().len(), 12);
    let (_, _, c) = api.get("/v1/events/count").await;
    assert_eq!(c, json!([{"count": 12, "exact": true}]));
    let p = pages(&api, "/v1/events?limit=5", "message_id", None).await;
    assert_eq!(p.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 2]);
    let p = pages(&api, "/v1/events?limit=5", "message_id", Some("+")).await;
    assert_eq!(p[0][0], "e-order.created-0", "oldest first");
    assert_eq!(p.concat().len(), 12);

    let check = |q: &'static str, n: usize| {
        let api = &api;
        async move {
            let (status, _, v) = api.get(&format!("/v1/events?{q}")).await;
            assert_eq!(status, StatusCode::OK, "{q}: {v}");
            assert_eq!(v.as_array().unwrap().len(), n, "{q}: {v}");
            let (_, _, c) = api.get(&format!("/v1/events/count?{q}")).await;
            assert_eq!(c[0]["count"], n, "count of {q}");
        }
    };
    check("event_name=order.created", 5).await;
    check("event_name=order.*", 8).await;
    check("event_name=order.shi%3Fped", 3).await;
    check("event_name=order", 0).await;
    check("event_name=*.thing", 4).await;
    check("traits=order_id:e2", 2).await;
    check("traits=order_id:e2;amount:2", 2).await;
    check("traits=order_id:e2,amount:3", 0).await;
    // Typed: 4096 matches the int, the float and the string; 512 only the int.
    check("traits=memory_mb:4096", 3).await;
    check("traits=memory_mb:512", 1).await;
    check("traits=memory_mb:4096.5", 0).await;
    let m = urlencode(&winchester_core::event::format_datetime(&mid));
    let st = urlencode(&winchester_core::event::format_datetime(&start));
    let (_, _, v) = api.get(&format!("/v1/events?from_datetime={m}")).await;
    assert_eq!(v.as_array().unwrap().len(), 7);
    let (_, _, v) = api.get(&format!("/v1/events?from_datetime={st}&to_datetime={m}")).await;
    assert_eq!(v.as_array().unwrap().len(), 5);
    let (_, _, c) = api.get(&format!("/v1/events/count?to_datetime={m}")).await;
    assert_eq!(c[0]["count"], 5);

    // Flat objects in the ingest format; one event with its streams.
    let (status, headers, v) = api.get("/v1/events/e-order.created-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["order_id"], "e1");
    assert_eq!(v["amount"], 1);
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    let streams = headers.get("x-stream-ids").unwrap().to_str().unwrap().to_string();
    let (_, _, sv) = api.get(&format!("/v1/streams/{streams}")).await;
    assert_eq!(sv[0]["distinguishing_traits"]["order_id"], "e1");
    let (status, _, v) = api.get("/v1/events/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_text(&v).contains("nope"));
    api.finish().await;
}

/// Trait names and values with quotes, `%`, `_`, `;` and SQL fragments are
/// data: they match themselves and nothing else, and break nothing.
async fn hostile_filters(backend: Backend) {
    let api = Api::start(backend, None, false).await;
    let nasty = [
        ("it's", "o'clock"),
        ("pct%", "100%"),
        ("under_score", "a_b"),
        ("semi", "x; DROP TABLE event; --"),
        ("q\"uote", "\" OR 1=1 --"),
        ("sql", "') OR ('1'='1"),
        ("$.path", "[*]"),
    ];
    let now = api.clock.now();
    let mut events = Vec::new();
    for (i, (k, v)) in nasty.iter().enumerate() {
        events.push(event(&format!("n{i}"), "odd.ev%en_t", now, &[(k, s(v))]));
        // Look-alikes that a LIKE or a spliced path would wrongly match.
        let mut look_alike = v.replace(['%', '_', '\''], "Z");
        if look_alike == *v {
            look_alike.push('!');
        }
        events.push(event(&format!("m{i}"), "odd.evXenYt", now, &[(k, s(&look_alike))]));
    }
    api.tm.add_events(events).await.unwrap();
    for (k, v) in nasty {
        let f = EventFilter { traits: vec![TraitFilter { name: k.into(), value: v.into() }], ..Default::default() };
        let found = api.db.storage.list_events(&f).await.unwrap();
        assert_eq!(found.len(), 1, "{k}={v}: {found:?}");
        assert_eq!(api.db.storage.count_events(&f).await.unwrap(), 1);
        if !v.contains([';', ',']) && !k.contains([':', '=']) {
            let q = format!("/v1/events?traits={}", urlencode(&format!("{k}:{v}")));
            let (status, _, body) = api.get(&q).await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            assert_eq!(body.as_array().unwrap().len(), 1, "{q}");
        }
    }
    let (_, _, v) = api.get(&format!("/v1/events?event_name={}", urlencode("odd.ev%en_t"))).await;
    assert_eq!(v.as_array().unwrap().len(), nasty.len(), "% and _ are literal in an exact name");
    let (_, _, v) = api.get(&format!("/v1/events?event_name={}", urlencode("odd.ev%en_*"))).await;
    assert_eq!(v.as_array().unwrap().len(), nasty.len(), "% and _ are literal in a glob");
    let (_, _, v) = api.get(&format!("/v1/streams?distinguishing_traits={}", urlencode("order_id:' OR 1=1 --"))).await;
    assert_eq!(v, json!([]));
    assert_eq!(api.db.count("SELECT count(*) FROM event").await, 14, "nothing dropped");
    api.finish().await;
}

/// Bulk retry of 50 error streams and bulk purge, through the token.
async fn bulk_actions(backend: Backend) {
    let api = Api::start(backend, Some(TOKEN), false).await;
    api.orders(50, "order.created", "bad").await;
    api.orders(5, "order.created", "good").await;
    let text = if backend == Backend::Postgres { "dist_traits::text" } else { "dist_traits" };
    api.db
        .exec(&format!(
            "UPDATE stream SET state = 4, open = {}, last_error = 'boom' WHERE {text} LIKE '%bad%'",
            open_false(backend)
        ))
        .await;
    let (_, _, c) = api.get("/v1/streams/count?state=error").await;
    assert_eq!(c[0]["count"], 50);
    let (status, v) = api.send(reqwest::Method::POST, "/v1/streams/retry", Some(TOKEN), Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an empty filter needs all: true: {v}");
    let (status, v) = api
        .send(
            reqwest::Method::POST,
            "/v1/streams/retry",
            Some(TOKEN),
            Some(json!({"state": "error", "trigger_name": "api_orders"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"matched": 50, "changed": 50}));
    let (_, _, c) = api.get("/v1/streams/count?state=retry_fire").await;
    assert_eq!(c[0]["count"], 50);
    let (_, v) = api.send(reqwest::Method::POST, "/v1/streams/retry", Some(TOKEN), Some(json!({"all": true}))).await;
    assert_eq!(v, json!({"matched": 55, "changed": 0}), "nothing left in error");
    let (status, v) =
        api.send(reqwest::Method::POST, "/v1/streams/purge", Some(TOKEN), Some(json!({"state": "bogus"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_text(&v).contains("state"));
    let (status, v) = api
        .send(
            reqwest::Method::POST,
            "/v1/streams/purge",
            Some(TOKEN),
            Some(json!({"distinguishing_traits": {"order_id": "good3"}})),
        )
        .await;
    assert_eq!((status, v), (StatusCode::OK, json!({"matched": 1, "changed": 1})));
    let (_, v) =
        api.send(reqwest::Method::POST, "/v1/streams/purge", Some(TOKEN), Some(json!({"state": "retry_fire"}))).await;
    assert_eq!(v, json!({"matched": 50, "changed": 50}));
    let (_, _, c) = api.get("/v1/streams/count").await;
    assert_eq!(c[0]["count"], 4);
    api.finish().await;
}

/// Mutations need the bearer token (401 without or with a wrong one); reads do
/// not; read-only mode refuses every mutation (403).
async fn auth_and_read_only(backend: Backend) {
    let api = Api::start(backend, Some(TOKEN), false).await;
    let id = api.orders(1, "order.created", "a").await[0];
    let path = format!("/v1/streams/{id}");
    for token in [None, Some("wrong"), Some("s3cret-token-and-more")] {
        let (status, v) = api.send(reqwest::Method::DELETE, &path, token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert!(error_text(&v).contains("Bearer"));
        let (status, _) = api.send(reqwest::Method::POST, "/v1/streams/purge", token, Some(json!({"all": true}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = api.get(&path).await;
    assert_eq!(status, StatusCode::OK, "reads need no token");
    let (status, _) = api.send(reqwest::Method::DELETE, &path, Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    api.finish().await;

    let ro = Api::start(backend, Some(TOKEN), true).await;
    let id = ro.orders(1, "order.created", "a").await[0];
    let (status, v) = ro.send(reqwest::Method::DELETE, &format!("/v1/streams/{id}"), Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(error_text(&v).contains("read-only"));
    let (status, _) =
        ro.send(reqwest::Method::POST, "/v1/streams/retry", Some(TOKEN), Some(json!({"all": true}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = ro.get(&format!("/v1/streams/{id}")).await;
    assert_eq!(status, StatusCode::OK, "still there");
    ro.finish().await;
}

/// /v1/triggers, /healthz, /readyz, and the OpenAPI document: every
/// documented operation answers (not the fallback, not 405), and docs/api.md
/// names every path.
async fn triggers_health_openapi(backend: Backend) {
    let api = Api::start(backend, Some(TOKEN), false).await;
    let ids = api.orders(2, "order.created", "t").await;
    let (_, _, v) = api.get("/v1/triggers").await;
    assert_eq!(v[0]["name"], "api_orders");
    assert_eq!(v[0]["streams"]["active"], 2);
    assert_eq!(v[0]["streams"]["error"], 0);
    // The counts are shared for a second: a stream opened meanwhile by
    // another process shows after it, one purged through this server at once.
    api.orders(1, "order.created", "u").await;
    for id in &ids {
        let (status, _) = api.send(reqwest::Method::DELETE, &format!("/v1/streams/{id}"), Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, _, v) = api.get("/v1/triggers").await;
    assert_eq!(v[0]["streams"]["active"], 1, "two purged, one opened: {v}");
    assert_eq!(api.get("/healthz").await.2, json!({"status": "ok"}));
    assert_eq!(api.get("/readyz").await.2, json!({"status": "ready"}));
    let (status, _, doc) = api.get("/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 14, "{:?}", paths.keys());
    for (path, ops) in paths {
        assert!(docs.contains(&format!(" {path}")), "docs/api.md does not document {path}");
        for method in ops.as_object().unwrap().keys() {
            let url = path.replace("{id}", "999999").replace("{message_id}", "nope");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = api.http.request(m, format!("{}{url}", api.base)).bearer_auth(TOKEN);
            if method == "post" {
                req = req.json(&json!({"trigger_name": "none"}));
            }
            let r = tokio::time::timeout(std::time::Duration::from_secs(5), req.send()).await.unwrap().unwrap();
            let status = r.status();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(status.as_u16() < 500, "{method} {path}: {status}");
            if path != "/v1/tail" {
                let body = r.text().await.unwrap();
                assert!(!body.contains("no such endpoint"), "{method} {path} is documented but not routed");
            }
        }
    }
    api.finish().await;
}

/// Reads server-sent events until `want` matches one, or `wait` passes.
async fn next_sse<B: AsRef<[u8]>>(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<B>> + Unpin),
    buf: &mut String,
    wait: std::time::Duration,
    want: impl Fn(&str, &Value) -> bool,
) -> Option<(String, Value)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut kind = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if let Ok(v) = serde_json::from_str::<Value>(&data) {
                if want(&kind, &v) {
                    return Some((kind, v));
                }
            }
        }
        let chunk = tokio::time::timeout_at(deadline, stream.next()).await.ok()??.ok()?;
        buf.push_str(&String::from_utf8_lossy(chunk.as_ref()));
    }
}

/// The tail: an event ingested by another process (`winchester ingest`) arrives
/// within a second, filtered by name glob and traits; a fired stream arrives as
/// a `stream` transition.
async fn tail_follows_other_processes(backend: Backend) {
    let api = Api::start(backend, None, false).await;
    let r = api.http.get(format!("{}/v1/tail?event_name=order.*&traits=order_id:x1", api.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    // Let the server's tail take its starting position.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let ts = winchester_core::event::format_datetime(&Utc::now());
    let lines = format!(
        "{{\"message_id\": \"other-1\", \"event_type\": \"other.thing\", \"timestamp\": \"{ts}\", \"order_id\": \"x1\"}}\n\
         {{\"message_id\": \"other-2\", \"event_type\": \"order.created\", \"timestamp\": \"{ts}\", \"order_id\": \"x2\"}}\n\
         {{\"message_id\": \"other-3\", \"event_type\": \"order.paid\", \"timestamp\": \"{ts}\", \"order_id\": \"x1\"}}\n"
    );
    std::fs::write(api.dir.path("events.jsonl"), lines).unwrap();
    let (code, _, err) =
        run(program("winchester").arg("-c").arg(api.dir.config()).arg("ingest").arg(api.dir.path("events.jsonl")));
    assert_eq!(code, 0, "{err}");
    let got = next_sse(&mut stream, &mut buf, std::time::Duration::from_secs(1), |_, _| true).await;
    let (kind, v) = got.expect("the event arrives within a second of the ingest");
    assert_eq!(kind, "event");
    assert_eq!(v["message_id"], "other-3", "filtered: other-1 has the wrong type, other-2 the wrong order_id");

    // Stream transitions: fire the x1 stream.
    let r = api.http.get(format!("{}/v1/tail?kind=streams", api.base)).send().await.unwrap();
    let mut streams = r.bytes_stream();
    let mut sbuf = String::new();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    api.clock.set(Utc::now() + Duration::seconds(5));
    assert!(api.worker().run_once().await.unwrap() >= 1);
    let (kind, v) =
        next_sse(&mut streams, &mut sbuf, std::time::Duration::from_secs(5), |_, _| true).await.expect("a transition");
    assert_eq!(kind, "stream");
    assert_eq!(v["transition"], "fired");
    assert_eq!(v["trigger"], "api_orders");
    api.finish().await;
}

/// A tail that reads `id > last` must not skip an event whose transaction
/// committed after a later id's (PostgreSQL hands out ids before commit).
#[tokio::test]
async fn tail_keeps_late_commits() {
    let db = TestDb::new().await;
    let mut tail = winchester::tail::Tail::start(db.storage.clone()).await.unwrap();
    let mut slow = db.pool().begin().await.unwrap();
    let slow_id: i64 = sqlx::query_scalar(
        "INSERT INTO event (message_id, event_type, generated) VALUES ('slow', 'x.slow', now()) RETURNING id",
    )
    .fetch_one(&mut *slow)
    .await
    .unwrap();
    db.exec("INSERT INTO event (message_id, event_type, generated) VALUES ('fast', 'x.fast', now())").await;
    let first = tail.next().await.unwrap();
    let names: Vec<String> = first
        .iter()
        .filter_map(|i| match i {
            winchester::tail::TailItem::Event(e) => Some(e.event.message_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["fast"]);
    slow.commit().await.unwrap();
    let mut late = Vec::new();
    for _ in 0..10 {
        late.extend(tail.next().await.unwrap());
        if !late.is_empty() {
            break;
        }
    }
    match late.as_slice() {
        [winchester::tail::TailItem::Event(e)] => assert_eq!((e.id, e.event.message_id.as_str()), (slow_id, "slow")),
        other => panic!("the late commit was skipped: {other:?}"),
    }
    drop(tail);
    db.drop_db().await;
}

/// Parses Prometheus text; returns the value of the sample with this name and labels.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// `/metrics` parses as Prometheus text; events and stream counters move after
/// ingest and fire; histograms have buckets; every metric is documented.
async fn metrics_move(backend: Backend) {
    winchester::metrics::install("serve").unwrap();
    let api = Api::start(backend, None, false).await;
    let text = |api: &Api| {
        let url = format!("{}/metrics", api.base);
        let http = api.http.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let before = text(&api).await;
    let saved0 = sample(&before, "winchester_events_saved_total", &[]);
    let created0 = sample(&before, "winchester_streams_created_total", &[("trigger", "api_orders")]);
    let fired0 =
        sample(&before, "winchester_streams_finished_total", &[("trigger", "api_orders"), ("outcome", "completed")]);
    api.orders(3, "order.created", "m").await;
    api.orders(3, "order.paid", "m").await;
    api.clock.set(api.clock.now() + Duration::seconds(5));
    api.worker().run_once().await.unwrap();
    let after = text(&api).await;
    assert!(sample(&after, "winchester_events_saved_total", &[]) >= saved0 + 6.0);
    let created = sample(&after, "winchester_streams_created_total", &[("trigger", "api_orders")]);
    assert!(created >= created0 + 3.0, "three orders opened three streams: {after}");
    assert!(sample(&after, "winchester_events_received_total", &[("source", "library")]) >= 6.0);
    let fired = sample(
        &after,
        "winchester_streams_finished_total",
        &[("trigger", "api_orders"), ("action", "fire"), ("outcome", "completed")],
    );
    assert!(fired >= fired0 + 3.0, "{after}");
    assert!(after.contains("winchester_pipeline_duration_seconds_bucket"), "histogram buckets");
    assert!(after.contains("winchester_fire_delay_seconds_bucket"));
    assert_eq!(sample(&after, "winchester_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    let ops = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
    for (name, _) in winchester::metrics::ALL {
        assert!(ops.contains(name), "docs/operations.md lacks {name}");
    }
    api.finish().await;
}

crate::backend_tests!(
    streams_endpoints,
    events_endpoints,
    hostile_filters,
    bulk_actions,
    auth_and_read_only,
    triggers_health_openapi,
    tail_follows_other_processes,
    metrics_move,
    serve_and_cli,
);

/// Sends SIGTERM (a graceful stop).
fn sigterm(child: &std::process::Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
}

/// The real `winchester serve`: refuses a public address without a token,
/// serves /healthz and /readyz on 127.0.0.1:0, stops on SIGTERM; the CLI's
/// `events list|count|show`, `streams count`, and `pipeline-worker
/// --metrics-listen` scraped with a Prometheus parser.
async fn serve_and_cli(backend: Backend) {
    let api = Api::start(backend, None, false).await;
    api.orders(3, "order.created", "c").await;
    api.orders(3, "order.paid", "c").await;
    let cfg = api.dir.config();
    let (code, _, err) = run(program("winchester").arg("-c").arg(&cfg).args(["serve", "--listen", "0.0.0.0:0"]));
    assert_eq!(code, 1);
    assert!(err.contains("without a token") && err.contains("--insecure"), "{err}");

    let (mut child, base) = spawn_serve(&cfg).await;
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), StatusCode::OK);
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let v: Value = http.get(format!("{base}/v1/streams/count")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v[0]["count"], 3);
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    sample(&metrics, "winchester_build_info", &[]);
    sigterm(&child.0);
    let status = tokio::task::spawn_blocking(move || child.0.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status:?}");

    // The CLI.
    let cli = |args: &[&str]| run(program("winchester").arg("-c").arg(&cfg).args(args));
    let (code, out, err) = cli(&["events", "count", "--event-name", "order.*", "--trait", "order_id=c1"]);
    assert_eq!((code, out.trim()), (0, "2"), "{err}");
    let (code, out, _) = cli(&["events", "list", "--limit", "4", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len(), 4);
    let (_, out, _) = cli(&["events", "list", "--limit", "4"]);
    assert!(out.contains("(more: --mark "), "{out}");
    let (code, out, _) = cli(&["events", "show", "c-order.paid-2", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["event"]["order_id"], "c2");
    assert_eq!(v["streams"].as_array().unwrap().len(), 1);
    let (code, _, err) = cli(&["events", "show", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no event with message_id \"nope\""), "{err}");
    let (code, _, err) = cli(&["events", "list", "--from", "yesterday"]);
    assert_eq!(code, 1);
    assert!(err.contains("--from"), "{err}");
    let (code, out, _) = cli(&["streams", "count", "--state", "active"]);
    assert_eq!((code, out.trim()), (0, "3"));

    // winchester tail in its own process sees an event another process ingests.
    let mut tail = KillOnDrop(
        program("winchester")
            .arg("-c")
            .arg(&cfg)
            .args(["tail", "--event-name", "order.*", "--trait", "order_id=t9", "--streams", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let tail_out = tail.0.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for l in std::io::BufRead::lines(std::io::BufReader::new(tail_out)).map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let ts = winchester_core::event::format_datetime(&Utc::now());
    std::fs::write(
        api.dir.path("tail.jsonl"),
        format!(
            "{{\"message_id\": \"t-0\", \"event_type\": \"order.created\", \"timestamp\": \"{ts}\", \"order_id\": \"t8\"}}\n\
             {{\"message_id\": \"t-1\", \"event_type\": \"order.created\", \"timestamp\": \"{ts}\", \"order_id\": \"t9\"}}\n"
        ),
    )
    .unwrap();
    let (code, _, err) = cli(&["ingest", api.dir.path("tail.jsonl").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let line = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await.expect("tail printed").unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["message_id"], "t-1", "filtered by trait: {line}");
    drop(tail);

    // pipeline-worker --metrics-listen: the fired streams show in its /metrics.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut worker = KillOnDrop(
        program("pipeline-worker")
            .arg("-c")
            .arg(&cfg)
            .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut fired = 0.0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let Ok(r) = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await else { continue };
        let text = r.text().await.unwrap();
        fired =
            sample(&text, "winchester_streams_finished_total", &[("trigger", "api_orders"), ("outcome", "completed")]);
        if fired >= 3.0 {
            assert_eq!(sample(&text, "winchester_claim_conflicts_total", &[]), 0.0);
            break;
        }
    }
    assert_eq!(fired, 3.0, "the worker fired the three paid orders");
    sigterm(&worker.0);
    let _ = tokio::task::spawn_blocking(move || worker.0.wait()).await;
    api.finish().await;
}

/// A tail client that stops reading is dropped once it falls TAIL_BUFFER items
/// behind, while ingest carries on; a reading client still gets everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_tail_client_is_dropped() {
    let api = Api::start(Backend::Postgres, None, false).await;
    let slow = api.http.get(format!("{}/v1/tail?kind=events", api.base)).send().await.unwrap();
    let fast = api.http.get(format!("{}/v1/tail?kind=events", api.base)).send().await.unwrap();
    let mut fast = fast.bytes_stream();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    const N: usize = 4000;
    let big = "x".repeat(8000);
    let reader = tokio::spawn(async move {
        let mut buf = String::new();
        let mut n = 0;
        while n < N {
            match next_sse(&mut fast, &mut buf, std::time::Duration::from_secs(30), |k, _| k == "event").await {
                Some(_) => n += 1,
                None => break,
            }
        }
        n
    });
    for chunk in 0..N / 500 {
        let events = (0..500)
            .map(|i| event(&format!("big-{chunk}-{i}"), "big.event", api.clock.now(), &[("blob", s(&big))]))
            .collect();
        api.tm.add_events(events).await.unwrap();
    }
    assert_eq!(reader.await.unwrap(), N, "the reading client got every event");
    // The one that never read: its stream ends early (dropped), not after N events.
    let mut slow = slow.bytes_stream();
    let mut text = String::new();
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), slow.next()).await {
            Err(_) => panic!("the slow client's stream neither ended nor delivered for 10 s"),
            Ok(None) | Ok(Some(Err(_))) => break, // the server closed it
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
        }
    }
    let got = text.lines().filter(|l| l.strip_prefix("event:").is_some_and(|k| k.trim() == "event")).count();
    assert!(got > 0 && got < N, "the slow client was dropped after {got} events, not fed all {N}");
    api.finish().await;
}
