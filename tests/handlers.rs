//! Custom handlers run by the worker: `command` programs (and, with the
//! `python` feature, Python classes: tests/python_handlers.rs).

use crate::support::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use winchester::pipeline::{HandlerRegistry, PipelineRunner};
use winchester::{EventOutcome, TriggerManager, Worker, WorkerOptions};
use winchester_core::{Clock, LoadedConfig, ManualClock};
use winchester_handlers::amqp::AmqpPool;
use winchester_storage::{StreamFilter, StreamState};

pub(crate) const TRIGGERS: &str = r#"
- name: orders
  distinguished_by: [order_id]
  expiration: "$last + 1h"
  fire_pipeline: fire_p
  match_criteria: [{event_type: "order.*"}]
  fire_criteria: [{event_type: order.paid}]
- name: receipts
  distinguished_by: [order_id]
  expiration: "$last + 1h"
  fire_pipeline: receipt_p
  match_criteria: [{event_type: receipt.sent}]
  fire_criteria: [{number: 1000}]
"#;

/// A fixture file of this package.
pub(crate) fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// A database, the triggers above, `pipelines.yaml` and a worker built from
/// the shipped registry.
pub(crate) struct Fixture {
    pub db: TestDb,
    pub tm: TriggerManager,
    pub clock: Arc<ManualClock>,
    pub _dir: ConfigDir,
    pub cfg: LoadedConfig,
    pub registry: HandlerRegistry,
}

impl Fixture {
    pub async fn new(pipelines: &str, extra_config: &str, registry: HandlerRegistry) -> Fixture {
        let db = TestDb::new().await;
        let dir = ConfigDir::new(&[
            (
                "winchester.yaml",
                &format!("trigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\n{extra_config}"),
            ),
            ("triggers.yaml", TRIGGERS),
            ("pipelines.yaml", pipelines),
        ]);
        let known = |t: &str| registry.knows(t);
        let cfg = LoadedConfig::load(&dir.config(), Some(&known)).unwrap_or_else(|e| panic!("{e}"));
        let clock = Arc::new(ManualClock::new(t(2026, 1, 1, 12, 0, 0)));
        let tm =
            TriggerManager::new(db.storage.clone(), Arc::new(cfg.triggers.clone()), clock.clone() as Arc<dyn Clock>);
        Fixture { db, tm, clock, _dir: dir, cfg, registry }
    }

    pub fn worker(&self) -> Worker {
        let runner = PipelineRunner::new(self.registry.clone(), self.cfg.clone());
        runner.validate().unwrap_or_else(|e| panic!("{e}"));
        Worker::new(self.tm.clone(), runner, WorkerOptions::from_config(&self.cfg.main))
    }

    pub async fn order(&self, id: &str, ty: &str, order: &str) -> i64 {
        match self.tm.add_event(event(id, ty, self.clock.now(), &[("order_id", s(order))])).await.unwrap() {
            EventOutcome::Saved { stream_ids, .. } => stream_ids[0],
            o => panic!("{o:?}"),
        }
    }

    pub async fn receipt_streams(&self) -> usize {
        let f = StreamFilter { trigger: Some("receipts".into()), ..Default::default() };
        self.tm.storage().list_streams(&f).await.unwrap().len()
    }

    pub async fn state(&self, id: i64) -> (StreamState, Option<String>) {
        let st = self.tm.storage().get_stream(id).await.unwrap().unwrap();
        (st.state, st.last_error)
    }
}

/// A `command` handler entry running `argv` with `MODE` and `LOG` set.
fn cmd(argv: &[&Path], mode: &str, log: &Path) -> String {
    let argv: Vec<String> = argv.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    format!(
        "  - {{name: command, params: {{command: [{}], env: {{MODE: {mode}, LOG: {:?}}}}}}}\n",
        argv.join(", "),
        log.display().to_string()
    )
}

fn pipelines(handlers: &[String]) -> String {
    format!("fire_p:\n{}receipt_p:\n  - logger\n", handlers.concat())
}

/// A Python program filters the stream and adds a receipt, a shell program
/// after it sees exactly that list; both are committed with the stream's
/// idempotency key; the receipt is saved and opens a stream of its own.
async fn command_filters_adds_and_commits() {
    let dir = ConfigDir::new(&[]);
    let log = dir.path("calls.log");
    let py = fixture("command/receipt.py");
    let sh = fixture("command/steps.sh");
    let p = pipelines(&[cmd(&[Path::new("python3"), &py], "-", &log), cmd(&[Path::new("/bin/sh"), &sh], "pass", &log)]);
    let f = Fixture::new(&p, "purge_completed_streams: false\n", winchester_handlers::registry()).await;
    let id = f.order("e1", "order.created", "o1").await;
    f.order("e2", "order.paid", "o1").await;
    assert_eq!(f.worker().run_once().await.unwrap(), 1);
    assert_eq!(f.state(id).await, (StreamState::Completed, None));
    let calls = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    let key = format!("winchester-stream-{id}-fire");
    assert_eq!(lines.len(), 3, "{calls}");
    // The shell program got the Python program's output: e1 dropped, receipt added.
    let seen: serde_json::Value = serde_json::from_str(lines[0].strip_prefix("handle fire ").unwrap()).unwrap();
    let ids: Vec<&str> = seen["events"].as_array().unwrap().iter().map(|e| e["message_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["e2".to_string(), format!("receipt-{id}")]);
    assert_eq!(seen["idempotency_key"], key.as_str());
    assert_eq!(seen["stream_name"], "orders");
    assert_eq!(seen["distinguishing_traits"]["order_id"], "o1");
    assert_eq!(lines[1], format!("--commit {key} 2"), "python commit gets its own input document");
    assert_eq!(lines[2], format!("--commit orders {key}"));
    let saved = f.db.count(&format!("SELECT count(*) FROM event WHERE message_id = 'receipt-{id}'")).await;
    assert_eq!(saved, 1);
    assert_eq!(f.receipt_streams().await, 1, "the new event joined a stream");
    f.db.drop_db().await;
}

/// A program that exits non-zero fails the stream with the tail of its
/// standard error; every handler is rolled back (with `--rollback`).
async fn command_failure_rolls_back_with_stderr() {
    let dir = ConfigDir::new(&[]);
    let log = dir.path("calls.log");
    let p = pipelines(&[
        cmd(&[Path::new("python3"), &fixture("command/receipt.py")], "-", &log),
        cmd(&[Path::new("/bin/sh"), &fixture("command/steps.sh")], "fail", &log),
    ]);
    let f = Fixture::new(&p, "", winchester_handlers::registry()).await;
    let id = f.order("e1", "order.paid", "o1").await;
    f.worker().run_once().await.unwrap();
    let (state, reason) = f.state(id).await;
    assert_eq!(state, StreamState::Error);
    let reason = reason.unwrap();
    assert!(reason.contains("handler #2") && reason.contains("exit status: 3"), "{reason}");
    assert!(reason.contains("some noise\nquota exceeded for tenant t1"), "{reason}");
    let calls = std::fs::read_to_string(&log).unwrap();
    let key = format!("winchester-stream-{id}-fire");
    let lines: Vec<&str> = calls.lines().collect();
    assert!(lines[0].starts_with("handle fire "), "{calls}");
    assert_eq!(lines[1..], [format!("--rollback {key} 1"), format!("--rollback orders {key}")], "{calls}");
    assert_eq!(f.receipt_streams().await, 0, "no new events saved");
    f.db.drop_db().await;
}

/// A program that hangs past `handler_timeout` fails its stream and is killed
/// with its process group (its own child too); the worker goes on.
async fn command_timeout_kills_the_process_group() {
    let dir = ConfigDir::new(&[]);
    let log = dir.path("calls.log");
    let p = pipelines(&[cmd(&[Path::new("/bin/sh"), &fixture("command/steps.sh")], "hang", &log)]);
    let f = Fixture::new(&p, "handler_timeout: 1\n", winchester_handlers::registry()).await;
    let id = f.order("e1", "order.paid", "o1").await;
    let w = f.worker();
    w.run_once().await.unwrap();
    let (state, reason) = f.state(id).await;
    assert_eq!(state, StreamState::Error);
    assert!(reason.as_deref().unwrap().contains("timed out"), "{reason:?}");
    let child: i32 = std::fs::read_to_string(format!("{}.child", log.display())).unwrap().trim().parse().unwrap();
    // SIGKILL is delivered at once; the child is gone or a zombie awaiting its reaper.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{child}/stat"))
            .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
    };
    let mut tries = 0;
    while alive() && tries < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        tries += 1;
    }
    assert!(!alive(), "the program's child {child} outlived the timeout");
    // The worker is healthy: the next stream runs.
    f.order("e2", "order.paid", "o2").await;
    assert_eq!(w.run_once().await.unwrap(), 1);
    f.db.drop_db().await;
}

/// Bad `command` params are reported at start-up naming the pipeline and handler.
async fn command_bad_params_rejected_at_startup() {
    let f = Fixture::new(
        "fire_p:\n  - {name: command, params: {command: [], cwd: /nonexistent}}\nreceipt_p: [logger]\n",
        "",
        winchester_handlers::registry(),
    )
    .await;
    let err = PipelineRunner::new(f.registry.clone(), f.cfg.clone()).validate().unwrap_err().to_string();
    assert!(err.contains("pipeline \"fire_p\"") && err.contains("\"command\" must name a program"), "{err}");
    f.db.drop_db().await;
}

/// A replay commits its next batch while the worker runs only when no
/// pipeline may add events: the built-ins that pass events through (logger,
/// webhook, amqp, also by their original class paths) never do; `usage`,
/// `command`, an unknown class and a type registered plainly may.
async fn pipelines_that_may_add_events_are_told_apart() {
    let may_add = |pipelines: &'static str, extra: &'static str, registry: HandlerRegistry| async move {
        let f = Fixture::new(pipelines, extra, registry).await;
        let answer = PipelineRunner::new(f.registry.clone(), f.cfg.clone()).may_add_events();
        f.db.drop_db().await;
        answer
    };
    let shipped = winchester_handlers::registry;
    let passing =
        "fire_p:\n  - logger\n  - {name: webhook, params: {url: \"http://127.0.0.1:9/\"}}\nreceipt_p: [log_it]\n";
    let alias = "pipeline_handlers: {log_it: \"winchester.pipeline_handler:LoggingHandler\"}\n";
    assert!(!may_add(passing, alias, shipped()).await);
    assert!(may_add("fire_p: [logger]\nreceipt_p: [usage]\n", "", shipped()).await);
    let command = "fire_p: [logger]\nreceipt_p:\n  - {name: command, params: {command: [\"true\"]}}\n";
    assert!(may_add(command, "", shipped()).await);
    // The same type registered again without the promise loses it.
    let mut plain = shipped();
    plain.register("logger", |_, _| Err("never built here".into()));
    assert!(may_add("fire_p: [logger]\nreceipt_p: [logger]\n", "", plain).await);
}

/// The `amqp` handlers of a worker share its context's connection, which the
/// worker closes when it stops; another worker's context is its own.
async fn stopping_worker_closes_its_amqp_connections() {
    let broker = crate::amqp_ingest::Broker::new().await;
    let uri: lapin::uri::AMQPUri = crate::amqp_ingest::amqp_url().parse().unwrap();
    let a = &uri.authority;
    let params = format!(
        "{{exchange: '{}', queue_name: '{}', host: '{}', port: {}, user: '{}', password: '{}', vhost: '{}', publish_events: true}}",
        broker.exchange, broker.queue, a.host, a.port, a.userinfo.username, a.userinfo.password, uri.vhost
    );
    let p = format!("fire_p:\n  - {{name: amqp, params: {params}}}\nreceipt_p: [logger]\n");
    let f = Fixture::new(&p, "", winchester_handlers::registry()).await;
    let (first, second) = (f.worker(), f.worker());
    for order in ["o1", "o2"] {
        f.order(&format!("{order}-created"), "order.created", order).await;
        f.order(&format!("{order}-paid"), "order.paid", order).await;
    }
    assert_eq!(first.run_once().await.unwrap(), 2);
    let pool = first.handler_context().get::<AmqpPool>().expect("publishing made the pool");
    let conns = pool.connections().await;
    assert_eq!(conns.len(), 1, "both streams published on one connection");
    assert!(conns[0].status().connected());
    assert!(second.handler_context().get::<AmqpPool>().is_none(), "another worker's context is its own");
    assert_eq!(broker.ready(&broker.queue).await, 4);
    // Asked to stop before it starts: run returns and closes the context.
    first.run(std::future::ready(())).await.unwrap();
    assert!(conns[0].status().closed(), "{:?}", conns[0].status());
    assert!(first.handler_context().get::<AmqpPool>().is_none());
    broker.cleanup().await;
    f.db.drop_db().await;
}

crate::postgres_tests!(
    stopping_worker_closes_its_amqp_connections,
    pipelines_that_may_add_events_are_told_apart,
    command_filters_adds_and_commits,
    command_failure_rolls_back_with_stderr,
    command_timeout_kills_the_process_group,
    command_bad_params_rejected_at_startup,
);
