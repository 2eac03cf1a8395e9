//! Hot reload with versioned definitions, in-process, on both backends: each
//! transition the rules in docs/configuration.md name. A stream fires and
//! expires by the version it was opened under; new events match the current
//! definitions only.

use crate::support::*;
use async_trait::async_trait;
use chrono::Duration;
use std::sync::{Arc, Mutex};
use winchester::pipeline::{Env, Handler, HandlerError, HandlerRegistry, PipelineRunner};
use winchester::{EventOutcome, TriggerManager, Worker, WorkerOptions};
use winchester_core::{Clock, Event, LoadedConfig, ManualClock};
use winchester_storage::{Stream, StreamState};

/// Logs `name:action:message ids` of every run it is part of.
struct Recording {
    name: String,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Handler for Recording {
    async fn handle_events(&mut self, events: Vec<Event>, env: &mut Env) -> Result<Vec<Event>, HandlerError> {
        let ids: Vec<&str> = events.iter().map(|e| e.message_id.as_str()).collect();
        self.log.lock().unwrap().push(format!("{}:{}:{}", self.name, env.action.as_str(), ids.join(",")));
        Ok(events)
    }
    async fn commit(&mut self, _env: &Env) -> Result<(), HandlerError> {
        Ok(())
    }
    async fn rollback(&mut self, _env: &Env) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// The first version of the trigger every test starts from.
const V1: &str = r#"
- name: orders
  distinguished_by: [order_id]
  expiration: "$last + 1h"
  fire_pipeline: fire_p
  expire_pipeline: expire_p
  match_criteria: [{event_type: "order.*"}]
  fire_criteria: [{event_type: order.paid}]
"#;

/// Pipelines whose recording handler is called `fire_<tag>` / `expire_<tag>`.
fn pipelines(tag: &str) -> String {
    format!(
        "fire_p: [{{name: recording, params: {{name: fire_{tag}}}}}]\n\
         expire_p: [{{name: recording, params: {{name: expire_{tag}}}}}]\n"
    )
}

struct Fx {
    db: TestDb,
    dir: ConfigDir,
    tm: TriggerManager,
    worker: Worker,
    clock: Arc<ManualClock>,
    log: Arc<Mutex<Vec<String>>>,
    registry: HandlerRegistry,
}

impl Fx {
    async fn new(backend: Backend, triggers: &str, pipelines: &str) -> Fx {
        let db = TestDb::on(backend).await;
        let dir = ConfigDir::on_db(&db, triggers, pipelines);
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut registry = HandlerRegistry::with_builtins();
        let l = log.clone();
        registry.register("recording", move |p, _| {
            let name = p.get("name").and_then(|v| v.as_str()).unwrap_or("h").to_string();
            Ok(Box::new(Recording { name, log: l.clone() }) as Box<dyn Handler>)
        });
        let cfg = LoadedConfig::load(&dir.config(), None).unwrap_or_else(|e| panic!("{e}"));
        let clock = Arc::new(ManualClock::new(t(2026, 1, 1, 12, 0, 0)));
        winchester::live::record_versions(&*db.storage, &cfg, clock.now()).await.unwrap();
        let tm =
            TriggerManager::new(db.storage.clone(), Arc::new(cfg.triggers.clone()), clock.clone() as Arc<dyn Clock>);
        let runner = PipelineRunner::new(registry.clone(), cfg.clone());
        let worker = Worker::new(tm.clone(), runner, WorkerOptions::from_config(&cfg.main));
        Fx { db, dir, tm, worker, clock, log, registry }
    }

    /// Rewrites the files and reloads them as SIGHUP does (the worker and the
    /// manager share the definitions); the swap happens at the next pass.
    async fn reload(&self, triggers: &str, pipelines: &str) {
        std::fs::write(self.dir.path("triggers.yaml"), triggers).unwrap();
        std::fs::write(self.dir.path("pipelines.yaml"), pipelines).unwrap();
        let cfg = LoadedConfig::load(&self.dir.config(), None).unwrap_or_else(|e| panic!("{e}"));
        PipelineRunner::new(self.registry.clone(), cfg.clone()).validate().unwrap();
        self.worker.reload(cfg).await.unwrap();
        self.worker.run_once().await.unwrap();
    }

    /// Adds an event now; the streams it joined.
    async fn add(&self, id: &str, ty: &str, traits: &[(&str, &str)]) -> Vec<i64> {
        let traits: Vec<(&str, winchester_core::TraitValue)> = traits.iter().map(|(k, v)| (*k, s(v))).collect();
        match self.tm.add_event(event(id, ty, self.clock.now(), &traits)).await.unwrap() {
            EventOutcome::Saved { stream_ids, .. } => stream_ids,
            o => panic!("{o:?}"),
        }
    }

    async fn stream(&self, id: i64) -> Stream {
        self.db.storage.get_stream(id).await.unwrap().unwrap_or_else(|| panic!("stream {id}"))
    }

    /// Runs the worker until idle at `minutes` from now; returns the runs logged.
    async fn run_at(&self, minutes: i64) -> Vec<String> {
        self.clock.set(self.clock.now() + Duration::minutes(minutes));
        while self.worker.run_once().await.unwrap() > 0 {}
        let mut log = std::mem::take(&mut *self.log.lock().unwrap());
        log.sort();
        log
    }

    async fn versions(&self, trigger: &str) -> Vec<String> {
        let v = self.db.storage.trigger_versions(Some(trigger)).await.unwrap();
        v.into_iter().map(|v| v.definition.version).collect()
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Adding a trigger leaves the others' versions (and open streams) alone;
/// the new one matches from the reload on.
async fn trigger_added(backend: Backend) {
    let f = Fx::new(backend, V1, &pipelines("1")).await;
    let s1 = f.add("e1", "order.created", &[("order_id", "o1")]).await;
    let added = format!(
        "{V1}- name: refunds\n  distinguished_by: [order_id]\n  expiration: \"$last + 1h\"\n  fire_pipeline: fire_p\n  \
         match_criteria: [{{event_type: \"refund.*\"}}]\n  fire_criteria: [{{event_type: refund.done}}]\n"
    );
    f.reload(&added, &pipelines("1")).await;
    assert_eq!(f.versions("orders").await.len(), 1, "orders unchanged: same version");
    assert_eq!(f.versions("refunds").await.len(), 1);
    assert_eq!(f.add("e2", "order.paid", &[("order_id", "o1")]).await, s1, "joins its open stream");
    let r = f.add("e3", "refund.done", &[("order_id", "o1")]).await;
    assert_eq!(f.stream(r[0]).await.version, Some(f.versions("refunds").await[0].clone()));
    assert_eq!(f.run_at(1).await, strs(&["fire_1:fire:e1,e2", "fire_1:fire:e3"]));
    f.db.drop_db().await;
}

/// Changed match criteria: new events match the new criteria only; the old
/// version's open stream takes no more events and expires by its own rules.
async fn match_criteria_changed(backend: Backend) {
    let f = Fx::new(backend, V1, &pipelines("1")).await;
    let s1 = f.add("e1", "order.created", &[("order_id", "o1")]).await[0];
    f.reload(&V1.replace("order.*", "purchase.*").replace("order.paid", "purchase.paid"), &pipelines("1")).await;
    assert_eq!(f.versions("orders").await.len(), 2);
    assert!(f.add("e2", "order.paid", &[("order_id", "o1")]).await.is_empty(), "old criteria no longer match");
    let s2 = f.add("e3", "purchase.created", &[("order_id", "o1")]).await[0];
    assert_ne!(s1, s2);
    let old = f.stream(s1).await;
    assert_eq!((old.open, old.event_count, old.fire_timestamp), (false, 1, None), "closed, never fired");
    assert_eq!(f.run_at(90).await, strs(&["expire_1:expire:e1", "expire_1:expire:e3"]));
    f.db.drop_db().await;
}

/// Changed distinguished_by: new events get the new key (a new stream); the
/// old key's stream expires by its version.
async fn distinguished_by_changed(backend: Backend) {
    let f = Fx::new(backend, V1, &pipelines("1")).await;
    let s1 = f.add("e1", "order.created", &[("order_id", "o1"), ("region", "eu")]).await[0];
    f.reload(&V1.replace("[order_id]", "[order_id, region]"), &pipelines("1")).await;
    let s2 = f.add("e2", "order.created", &[("order_id", "o1"), ("region", "eu")]).await[0];
    assert_ne!(s1, s2);
    let new = f.stream(s2).await;
    assert_eq!(new.dist_traits.0.keys().map(String::as_str).collect::<Vec<_>>(), ["order_id", "region"]);
    assert_ne!(new.version, f.stream(s1).await.version);
    assert_eq!(f.run_at(90).await, strs(&["expire_1:expire:e1", "expire_1:expire:e2"]));
    f.db.drop_db().await;
}

/// Changed fire criteria: a stream whose (old) criteria were met fires; an
/// open one of the old version is closed by the next event of its key (which
/// opens a stream of the new version, counting from zero) and expires.
async fn fire_criteria_changed(backend: Backend) {
    let f = Fx::new(backend, V1, &pipelines("1")).await;
    let ready = f.add("r1", "order.created", &[("order_id", "o0")]).await[0];
    f.add("r2", "order.paid", &[("order_id", "o0")]).await;
    let s1 = f.add("e1", "order.created", &[("order_id", "o1")]).await[0];
    let explain = |f: &Fx| {
        let triggers = f.tm.triggers();
        let storage = f.db.storage.clone();
        async move {
            let e = event("e2", "order.paid", t(2026, 1, 1, 12, 0, 0), &[("order_id", s("o1"))]);
            winchester_cli::authoring::explain::explain(&triggers, Some(&*storage), &e).await.unwrap()[0].stream_id
        }
    };
    assert_eq!(explain(&f).await, Some(s1), "same version: explain names the stream it joins");
    f.reload(&V1.replace("order.paid", "order.shipped"), &pipelines("1")).await;
    assert_eq!(explain(&f).await, None, "another version: a new stream would be opened");
    let s2 = f.add("e2", "order.paid", &[("order_id", "o1")]).await[0];
    assert_ne!(s1, s2, "another version: a new stream");
    let old = f.stream(s1).await;
    assert_eq!((old.open, old.fire_timestamp, old.event_count), (false, None, 1));
    assert!(f.stream(s2).await.fire_timestamp.is_none(), "order.paid no longer fires");
    assert_eq!(f.add("e3", "order.shipped", &[("order_id", "o1")]).await, [s2]);
    // The ready stream fires under v1 (v2 would not fire it); the new one under v2.
    assert_eq!(f.run_at(1).await, strs(&["fire_1:fire:e2,e3", "fire_1:fire:r1,r2"]));
    assert_eq!(f.run_at(90).await, strs(&["expire_1:expire:e1"]));
    assert!(f.db.storage.get_stream(ready).await.unwrap().is_none(), "fired, completed and purged");
    f.db.drop_db().await;
}

/// A changed pipeline is a new version: a stream opened before runs the old
/// handlers, one opened after runs the new ones.
async fn pipeline_changed(backend: Backend) {
    let f = Fx::new(backend, V1, &pipelines("1")).await;
    let s1 = f.add("e1", "order.created", &[("order_id", "o1")]).await[0];
    f.add("e2", "order.paid", &[("order_id", "o1")]).await;
    let s3 = f.add("e3", "order.created", &[("order_id", "o3")]).await[0];
    f.reload(V1, &pipelines("2")).await;
    assert_eq!(f.versions("orders").await.len(), 2, "the pipeline is part of the version");
    // o3's old stream is closed by its next event; the new stream fires by v2.
    let s4 = f.add("e4", "order.paid", &[("order_id", "o3")]).await[0];
    assert_ne!(s3, s4);
    let s5 = f.add("e5", "order.paid", &[("order_id", "o5")]).await[0];
    assert_eq!(f.run_at(1).await, strs(&["fire_1:fire:e1,e2", "fire_2:fire:e4", "fire_2:fire:e5"]));
    assert_eq!(f.run_at(90).await, strs(&["expire_1:expire:e3"]));
    let _ = (s1, s5);
    f.db.drop_db().await;
}

/// A removed trigger matches nothing more; its open streams expire through
/// their own version's expire pipeline, though the pipeline is gone from the
/// files; a ready one still fires by its version.
async fn trigger_removed(backend: Backend) {
    let f = Fx::new(backend, V1, &pipelines("1")).await;
    f.add("e1", "order.created", &[("order_id", "o1")]).await;
    f.add("r1", "order.created", &[("order_id", "o0")]).await;
    f.add("r2", "order.paid", &[("order_id", "o0")]).await;
    f.reload("[]\n", "other_p: [{name: recording, params: {name: other}}]\n").await;
    assert!(f.add("e2", "order.created", &[("order_id", "o1")]).await.is_empty());
    assert_eq!(f.run_at(1).await, strs(&["fire_1:fire:r1,r2"]));
    assert_eq!(f.run_at(90).await, strs(&["expire_1:expire:e1"]));
    let left = f.db.storage.count_streams(&Default::default()).await.unwrap();
    assert_eq!(left, 0, "every stream finished (and purged)");
    f.db.drop_db().await;
}

/// A stream whose version is not recorded (or unreadable) fails with a
/// reason instead of running some other definition.
async fn unknown_version_fails_the_run(backend: Backend) {
    let f = Fx::new(backend, V1, &pipelines("1")).await;
    let s1 = f.add("e1", "order.created", &[("order_id", "o1")]).await[0];
    f.add("e2", "order.paid", &[("order_id", "o1")]).await;
    f.db.exec(&format!("UPDATE stream SET version = 'feedfeedfeedfeed' WHERE id = {s1}")).await;
    assert!(f.run_at(1).await.is_empty());
    let st = f.stream(s1).await;
    assert_eq!(st.state, StreamState::Error);
    assert!(st.last_error.unwrap().contains("version feedfeedfeedfeed is not recorded"));
    f.db.drop_db().await;
}

/// `winchester serve` reloads on SIGHUP (an invalid set is refused and
/// counted, the loaded triggers stay); `winchester ingest` records versions,
/// `streams list` shows each stream's and `triggers history` lists them.
async fn serve_reloads_and_cli_shows_versions(backend: Backend) {
    let db = TestDb::on(backend).await;
    let dir = ConfigDir::on_db(&db, V1, "fire_p: [logger]\nexpire_p: [logger]\n");
    let cli = |args: &[&str]| run(program("winchester").arg("-c").arg(dir.config()).args(args));
    std::fs::write(
        dir.path("events.jsonl"),
        "{\"message_id\": \"m1\", \"event_type\": \"order.created\", \"timestamp\": \"2026-01-01T12:00:00Z\", \"order_id\": \"o1\"}\n",
    )
    .unwrap();
    let (code, _, err) = cli(&["ingest", dir.path("events.jsonl").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&["triggers", "history", "--json"]);
    assert_eq!(code, 0, "{err}");
    let history: serde_json::Value = serde_json::from_str(&out).unwrap();
    let v1 = history[0]["version"].as_str().unwrap().to_string();
    assert_eq!((history.as_array().unwrap().len(), &history[0]["current"]), (1, &serde_json::json!(true)));
    assert_eq!(history[0]["definition"]["trigger"]["name"], "orders");
    let (_, out, _) = cli(&["streams", "list"]);
    assert!(out.lines().next().unwrap().contains("VERSION") && out.contains(&v1), "{out}");

    let (server, base) = spawn_serve(&dir.config()).await;
    let names = || async {
        let v: serde_json::Value = reqwest::get(format!("{base}/v1/triggers")).await.unwrap().json().await.unwrap();
        v.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let refused = || async {
        let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
        text.lines().any(|l| l.starts_with("winchester_config_reloads_total{result=\"refused\"} 1"))
    };
    assert_eq!(names().await, ["orders"]);
    let hup = || {
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &server.0.id().to_string()])
            .status()
            .unwrap()
            .success())
    };
    std::fs::write(dir.path("triggers.yaml"), format!("{V1}{}", V1.replace("name: orders", "name: refunds"))).unwrap();
    hup();
    let started = std::time::Instant::now();
    while names().await.len() < 2 {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "serve did not reload");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    std::fs::write(dir.path("triggers.yaml"), "- {name: broken}\n").unwrap();
    hup();
    while !refused().await {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "serve did not refuse the reload");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(names().await, ["orders", "refunds"], "the triggers in force stay");
    drop(server);
    db.drop_db().await;
}

crate::backend_tests!(
    trigger_added,
    match_criteria_changed,
    distinguished_by_changed,
    fire_criteria_changed,
    pipeline_changed,
    trigger_removed,
    unknown_version_fails_the_run,
    serve_reloads_and_cli_shows_versions,
);
