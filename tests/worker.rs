//! The worker in-process: state transitions, pipeline semantics, leases.

use crate::support::*;
use async_trait::async_trait;
use chrono::Duration;
use std::sync::{Arc, Mutex};
use winchester::pipeline::{Env, Handler, HandlerError, HandlerRegistry, PipelineRunner};
use winchester::worker::ProcessOutcome;
use winchester::{EventOutcome, TriggerManager, Worker, WorkerOptions};
use winchester_core::{Clock, Event, LoadedConfig, ManualClock};
use winchester_storage::{Action, StreamFilter, StreamState};

const TRIGGERS: &str = r#"
- name: orders
  distinguished_by: [order_id]
  expiration: "$last + 1h"
  fire_pipeline: fire_p
  expire_pipeline: expire_p
  match_criteria: [{event_type: "order.*"}]
  fire_criteria: [{event_type: order.paid}]
- name: receipts
  distinguished_by: [order_id]
  expiration: "$last + 1h"
  fire_pipeline: receipt_p
  match_criteria: [{event_type: receipt.sent}]
  fire_criteria: [{number: 1000}]
- name: quiet
  distinguished_by: [order_id]
  expiration: "$last + 1h"
  expire_pipeline: expire_p
  match_criteria: [{event_type: "quiet.*"}]
  fire_criteria: [{event_type: quiet.done}]
"#;

/// What the recording handlers saw, shared with the test.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);
impl Log {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// Behaviour chosen by params: `mode` = ok | fail | panic | hang | slow (1.8 s) | add_receipt.
struct Recording {
    name: String,
    mode: String,
    log: Arc<Log>,
}

#[async_trait]
impl Handler for Recording {
    async fn handle_events(&mut self, mut events: Vec<Event>, env: &mut Env) -> Result<Vec<Event>, HandlerError> {
        self.log.push(format!(
            "{}:handle:{}:{}",
            self.name,
            env.action.as_str(),
            events.iter().map(|e| e.message_id.as_str()).collect::<Vec<_>>().join(",")
        ));
        match self.mode.as_str() {
            "fail" => return Err("refused".into()),
            "panic" => panic!("handler exploded"),
            "hang" => tokio::time::sleep(std::time::Duration::from_secs(3600)).await,
            "slow" => tokio::time::sleep(std::time::Duration::from_millis(1800)).await,
            "add_receipt" => {
                let first = events[0].clone();
                let mut r = first.clone();
                r.message_id = format!("receipt-{}", env.stream_id);
                r.event_type = "receipt.sent".into();
                events.push(r);
            }
            _ => {}
        }
        Ok(events)
    }
    async fn commit(&mut self, env: &Env) -> Result<(), HandlerError> {
        self.log.push(format!("{}:commit:{}", self.name, env.idempotency_key));
        Ok(())
    }
    async fn rollback(&mut self, _env: &Env) -> Result<(), HandlerError> {
        self.log.push(format!("{}:rollback", self.name));
        Ok(())
    }
}

struct Fixture {
    db: TestDb,
    tm: TriggerManager,
    clock: Arc<ManualClock>,
    log: Arc<Log>,
    _dir: ConfigDir,
    cfg: LoadedConfig,
    registry: HandlerRegistry,
}

impl Fixture {
    async fn new(backend: Backend, pipelines: &str, extra_config: &str) -> Fixture {
        Fixture::with_triggers(backend, TRIGGERS, pipelines, extra_config).await
    }

    async fn with_triggers(backend: Backend, triggers: &str, pipelines: &str, extra_config: &str) -> Fixture {
        let db = TestDb::on(backend).await;
        let timeout = if extra_config.contains("handler_timeout") { "" } else { "handler_timeout: 1\n" };
        let dir = ConfigDir::new(&[
            (
                "winchester.yaml",
                &format!(
                    "trigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\n{timeout}{extra_config}"
                ),
            ),
            ("triggers.yaml", triggers),
            ("pipelines.yaml", pipelines),
        ]);
        let cfg = LoadedConfig::load(&dir.config(), None).unwrap_or_else(|e| panic!("{e}"));
        let log = Arc::new(Log::default());
        let mut registry = HandlerRegistry::with_builtins();
        let l = log.clone();
        registry.register("recording", move |p, _| {
            let name = p.get("name").and_then(|v| v.as_str()).unwrap_or("h").to_string();
            let mode = p.get("mode").and_then(|v| v.as_str()).unwrap_or("ok").to_string();
            Ok(Box::new(Recording { name, mode, log: l.clone() }) as Box<dyn Handler>)
        });
        let clock = Arc::new(ManualClock::new(t(2026, 1, 1, 12, 0, 0)));
        let tm =
            TriggerManager::new(db.storage.clone(), Arc::new(cfg.triggers.clone()), clock.clone() as Arc<dyn Clock>);
        Fixture { db, tm, clock, log, _dir: dir, cfg, registry }
    }

    fn worker(&self) -> Worker {
        let runner = PipelineRunner::new(self.registry.clone(), self.cfg.clone());
        runner.validate().unwrap();
        Worker::new(self.tm.clone(), runner, WorkerOptions::from_config(&self.cfg.main))
    }

    async fn order(&self, id: &str, ty: &str, order: &str) -> i64 {
        match self.tm.add_event(event(id, ty, self.clock.now(), &[("order_id", s(order))])).await.unwrap() {
            EventOutcome::Saved { stream_ids, .. } => stream_ids[0],
            o => panic!("{o:?}"),
        }
    }
}

fn h(name: &str, mode: &str) -> String {
    format!("  - {{name: recording, params: {{name: {name}, mode: {mode}}}}}\n")
}

/// A fired stream runs every handler, then commits each, then completes
/// (kept as `completed` when purge is off, deleted when on).
async fn fire_runs_pipeline_then_completes(backend: Backend) {
    for purge in [false, true] {
        let pipelines =
            format!("fire_p:\n{}{}expire_p:\n{}receipt_p:\n{}", h("a", "ok"), h("b", "ok"), h("x", "ok"), h("r", "ok"));
        let f = Fixture::new(backend, &pipelines, &format!("purge_completed_streams: {purge}\n")).await;
        let id = f.order("e1", "order.created", "o1").await;
        f.order("e2", "order.paid", "o1").await;
        let w = f.worker();
        assert_eq!(w.run_once().await.unwrap(), 1);
        let key = format!("winchester-stream-{id}-fire");
        assert_eq!(
            f.log.take(),
            vec![
                "a:handle:fire:e1,e2".to_string(),
                "b:handle:fire:e1,e2".into(),
                format!("a:commit:{key}"),
                format!("b:commit:{key}")
            ]
        );
        let st = f.tm.storage().get_stream(id).await.unwrap();
        if purge {
            assert!(st.is_none());
            assert_eq!(f.db.count("SELECT count(*) FROM event").await, 2, "purge keeps events");
        } else {
            let st = st.unwrap();
            assert_eq!((st.state, st.state_serial_no, st.lease_expires_at), (StreamState::Completed, 2, None));
        }
        assert_eq!(w.stats().fired, 1);
        assert_eq!(w.run_once().await.unwrap(), 0);
        f.db.drop_db().await;
    }
}

/// A failing, panicking or hanging handler rolls back every handler, leaves the
/// stream in error with the reason, and the worker carries on; retry re-fires it.
async fn failures_roll_back_and_record_reason(backend: Backend) {
    for (mode, reason) in [("fail", "refused"), ("panic", "panicked: handler exploded"), ("hang", "timed out")] {
        let pipelines =
            format!("fire_p:\n{}{}expire_p:\n{}receipt_p:\n{}", h("a", "ok"), h("b", mode), h("x", "ok"), h("r", "ok"));
        let f = Fixture::new(backend, &pipelines, "").await;
        let id = f.order("e1", "order.paid", "o1").await;
        let w = f.worker();
        let ready = f.tm.storage().ready_streams(Action::Fire, f.clock.now(), 10).await.unwrap();
        let out = w.process(&ready[0], Action::Fire).await.unwrap();
        assert!(
            matches!(&out, ProcessOutcome::Failed(r) if r.contains(reason) && r.contains("handler #2")),
            "{mode}: {out:?}"
        );
        assert_eq!(
            f.log.take(),
            vec!["a:handle:fire:e1".to_string(), "b:handle:fire:e1".into(), "a:rollback".into(), "b:rollback".into()]
        );
        let st = f.tm.storage().get_stream(id).await.unwrap().unwrap();
        assert_eq!(st.state, StreamState::Error);
        assert!(st.last_error.as_deref().unwrap().contains(reason));
        assert_eq!(w.stats().errors, 1);
        // Not picked again until retried.
        assert_eq!(w.run_once().await.unwrap(), 0);
        let st = f.tm.storage().retry_stream(id).await.unwrap().unwrap();
        assert_eq!(st.state, StreamState::RetryFire);
        assert_eq!(w.run_once().await.unwrap(), 1);
        assert_eq!(f.tm.storage().get_stream(id).await.unwrap().unwrap().state, StreamState::Error);
        f.db.drop_db().await;
    }
}

/// Expired streams go through the expire pipeline; a failure leaves expire_error,
/// and retry makes it retry_expire; a trigger without expire pipeline completes.
async fn expire_path(backend: Backend) {
    let pipelines = format!("fire_p:\n{}expire_p:\n{}receipt_p:\n{}", h("a", "ok"), h("x", "fail"), h("r", "ok"));
    let f = Fixture::new(backend, &pipelines, "purge_completed_streams: false\n").await;
    let id = f.order("e1", "order.created", "o1").await;
    let quiet = f.order("q1", "quiet.start", "o1").await;
    f.clock.set(f.clock.now() + Duration::hours(2));
    let w = f.worker();
    assert_eq!(w.run_once().await.unwrap(), 2);
    let st = f.tm.storage().get_stream(id).await.unwrap().unwrap();
    assert_eq!(st.state, StreamState::ExpireError);
    assert_eq!(f.tm.storage().get_stream(quiet).await.unwrap().unwrap().state, StreamState::ExpireError);
    assert_eq!(f.tm.storage().retry_stream(id).await.unwrap().unwrap().state, StreamState::RetryExpire);
    f.db.drop_db().await;
}

/// Invariant 9: events a pipeline adds are saved (and matched against the
/// triggers) if and only if the stream completes.
async fn pipeline_output_saved_iff_completed(backend: Backend) {
    for (second, completes) in [("ok", true), ("fail", false)] {
        let pipelines = format!(
            "fire_p:\n{}{}expire_p:\n{}receipt_p:\n{}",
            h("a", "add_receipt"),
            h("b", second),
            h("x", "ok"),
            h("r", "ok")
        );
        let f = Fixture::new(backend, &pipelines, "").await;
        let id = f.order("e1", "order.paid", "o1").await;
        f.worker().run_once().await.unwrap();
        let receipt = format!("receipt-{id}");
        let saved = f.db.count(&format!("SELECT count(*) FROM event WHERE message_id = '{receipt}'")).await;
        assert_eq!(saved, completes as i64, "second handler {second}");
        let receipts =
            f.tm.storage()
                .list_streams(&StreamFilter { trigger: Some("receipts".into()), ..Default::default() })
                .await
                .unwrap();
        assert_eq!(receipts.len(), completes as usize);
        f.db.drop_db().await;
    }
}

/// With more streams ready than one batch takes, a trigger of higher
/// `priority` is served first even when its streams became ready later;
/// without priorities the oldest due go first.
async fn higher_priority_triggers_fire_first(backend: Backend) {
    let pipelines = format!("fire_p:\n{}expire_p:\n{}receipt_p:\n{}", h("a", "ok"), h("x", "ok"), h("q", "ok"));
    for prioritized in [false, true] {
        let quiet = if prioritized { "- name: quiet\n  priority: 5\n" } else { "- name: quiet\n" };
        let triggers = TRIGGERS.replace("- name: quiet\n", &format!("{quiet}  fire_pipeline: receipt_p\n"));
        let f = Fixture::with_triggers(backend, &triggers, &pipelines, "pipeline_worker_batch_size: 3\n").await;
        for i in 0..4 {
            f.order(&format!("o{i}"), "order.paid", &format!("o{i}")).await;
        }
        f.clock.set(f.clock.now() + Duration::minutes(1));
        for i in 0..3 {
            f.order(&format!("q{i}"), "quiet.done", &format!("q{i}")).await;
        }
        let w = f.worker();
        while w.run_once().await.unwrap() > 0 {}
        // Batches run one after another: the first three runs are the first batch.
        let handled: Vec<String> =
            f.log.take().into_iter().filter(|l| l.contains(":handle:")).map(|l| l[..1].to_string()).collect();
        let first: Vec<&str> = handled.iter().take(3).map(|s| s.as_str()).collect();
        assert_eq!(first, if prioritized { ["q"; 3] } else { ["a"; 3] }, "prioritized: {prioritized}: {handled:?}");
        assert_eq!(handled.len(), 7, "every ready stream fires in the end");
        f.db.drop_db().await;
    }
}

/// The daemon loop wakes on NOTIFY: a stream made ready while the worker idles
/// (with a 60 s poll delay) is fired promptly, and shutdown returns.
async fn idle_worker_wakes_on_notify_and_stops(backend: Backend) {
    let pipelines = format!("fire_p:\n{}expire_p:\n{}receipt_p:\n{}", h("a", "ok"), h("x", "ok"), h("r", "ok"));
    let f = Fixture::new(backend, &pipelines, "pipeline_worker_delay: 60\n").await;
    // The worker uses the wall clock here, so the notify path is exercised.
    let tm = TriggerManager::new(
        f.db.storage.clone(),
        Arc::new(f.cfg.triggers.clone()),
        Arc::new(winchester_core::SystemClock),
    );
    let runner = PipelineRunner::new(f.registry.clone(), f.cfg.clone());
    let worker = Arc::new(Worker::new(tm.clone(), runner, WorkerOptions::from_config(&f.cfg.main)));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let w = worker.clone();
    let handle = tokio::spawn(async move {
        w.run(async move {
            let _ = stop_rx.await;
        })
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tm.add_event(event("e1", "order.paid", chrono::Utc::now(), &[("order_id", s("o1"))])).await.unwrap();
    let started = std::time::Instant::now();
    while worker.stats().fired == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "not woken by NOTIFY");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop_tx.send(()).unwrap();
    let stats = tokio::time::timeout(std::time::Duration::from_secs(10), handle).await.unwrap().unwrap().unwrap();
    assert_eq!(stats.fired, 1);
    f.db.drop_db().await;
}

/// Lease heartbeat: a run three times longer than the lease keeps its stream
/// (renewed while it runs) and commits once; a run whose renewal is refused
/// (another worker took the stream) or keeps failing (database trouble) stops,
/// rolls back and records nothing.
async fn lease_heartbeat_keeps_or_abandons_the_run(backend: Backend) {
    let pipelines = format!("fire_p:\n{}expire_p:\n{}receipt_p:\n{}", h("a", "slow"), h("x", "ok"), h("r", "ok"));
    let cfg = "purge_completed_streams: false\nstream_lease_timeout: 0.6\nhandler_timeout: 5\n";
    for case in ["renewed", "taken", "renewal_fails"] {
        let f = Fixture::new(backend, &pipelines, cfg).await;
        let id = f.order("e1", "order.paid", "o1").await;
        let storage = f.tm.storage().clone();
        let ready = storage.ready_streams(Action::Fire, f.clock.now(), 10).await.unwrap();
        if case == "renewal_fails" {
            match backend {
                Backend::Postgres => {
                    f.db.exec(
                        "CREATE FUNCTION no_renew() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                         IF NEW.state_serial_no = OLD.state_serial_no \
                         THEN RAISE EXCEPTION 'renewal refused by the test'; END IF; RETURN NEW; END $$; \
                         CREATE TRIGGER no_renew BEFORE UPDATE ON stream FOR EACH ROW EXECUTE FUNCTION no_renew()",
                    )
                    .await
                }
                Backend::Sqlite => {
                    f.db.exec(
                        "CREATE TRIGGER no_renew BEFORE UPDATE OF lease_expires_at ON stream \
                         WHEN NEW.state_serial_no = OLD.state_serial_no BEGIN SELECT RAISE(ABORT, 'renewal refused by the test'); END",
                    )
                    .await
                }
            }
        }
        let w = f.worker();
        let thief = async {
            if case == "taken" {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                f.db.exec(&format!("UPDATE stream SET state_serial_no = state_serial_no + 1 WHERE id = {id}")).await;
            }
        };
        let (out, ()) = tokio::join!(w.process(&ready[0], Action::Fire), thief);
        let out = out.unwrap();
        let st = storage.get_stream(id).await.unwrap().unwrap();
        let log = f.log.take();
        if case == "renewed" {
            assert_eq!(out, ProcessOutcome::Completed, "{case}");
            assert_eq!(log, vec!["a:handle:fire:e1".to_string(), format!("a:commit:winchester-stream-{id}-fire")]);
            assert_eq!((st.state, st.attempts), (StreamState::Completed, 1));
            assert_eq!(w.stats().lost_leases, 0);
        } else {
            assert_eq!(out, ProcessOutcome::LostLease, "{case}");
            assert_eq!(log, vec!["a:handle:fire:e1".to_string(), "a:rollback".into()], "{case}");
            assert_eq!((st.state, st.attempts), (StreamState::Firing, 1), "{case}: nothing recorded");
            assert_eq!(w.stats().lost_leases, 1);
            assert_eq!(w.stats().fired, 0);
        }
        f.db.drop_db().await;
    }
}

crate::backend_tests!(
    higher_priority_triggers_fire_first,
    lease_heartbeat_keeps_or_abandons_the_run,
    fire_runs_pipeline_then_completes,
    failures_roll_back_and_record_reason,
    expire_path,
    pipeline_output_saved_iff_completed,
    idle_worker_wakes_on_notify_and_stops
);
