//! Python handler classes and trait plugins (the `python` feature), run by the
//! worker and the distiller: tests/fixtures/python/shop_handlers.py.

use crate::handlers::{fixture, Fixture};
use crate::support::*;
use std::path::Path;
use winchester_core::{Clock, TraitValue};
use winchester_storage::StreamState;

/// `pipeline_handlers` naming the fixture classes, and the fixtures on `python_path`.
fn config() -> String {
    format!(
        "python_path: {:?}\npurge_completed_streams: false\nhandler_timeout: 1\npipeline_handlers:\n  \
         original_logger: shop_handlers:LoggingHandler\n  filter: shop_handlers:FilterHandler\n  \
         receipt: shop_handlers:ReceiptHandler\n  raising: shop_handlers:RaisingHandler\n  \
         sleepy: shop_handlers:SleepyHandler\n  missing: no_such_module:Handler\n",
        fixture("python").display().to_string()
    )
}

fn entry(name: &str, log: &Path, extra: &str) -> String {
    format!("  - {{name: {name}, params: {{log: {:?}{extra}}}}}\n", log.display().to_string())
}

async fn setup(fire: &[String]) -> Fixture {
    let pipelines = format!("fire_p:\n{}receipt_p:\n  - original_logger\n", fire.concat());
    let f = Fixture::new(&pipelines, &config(), winchester_cli::common::registry()).await;
    winchester_python::configure(&f.cfg.main).unwrap();
    f
}

fn read(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect()
}

/// The original's LoggingHandler as written there, a handler that filters,
/// then one that adds an event: the events are
/// dicts with aware datetimes, env carries stream_id, stream_name and what
/// an earlier handler left; the added event is saved with typed traits and
/// joins a stream; both handlers are committed.
async fn python_handlers_filter_add_and_commit() {
    let dir = ConfigDir::new(&[]);
    let log = dir.path("calls.log");
    let f = setup(&[
        "  - original_logger\n".to_string(),
        entry("filter", &log, ", drop: [order.created]"),
        entry("receipt", &log, ""),
    ])
    .await;
    let id = f.order("e1", "order.created", "o1").await;
    f.order("e2", "order.paid", "o1").await;
    assert_eq!(f.worker().run_once().await.unwrap(), 1);
    assert_eq!(f.state(id).await, (StreamState::Completed, None));
    assert_eq!(
        read(&log),
        vec![
            format!("filter handle {id} orders aware=True n=2"),
            "receipt handle n=1 filtered=1".into(),
            "filter commit".into(),
            "receipt commit".into(),
        ]
    );
    let typed =
        f.db.count(&format!(
            "SELECT count(*) FROM event WHERE message_id = 'receipt-{id}' AND traits->'amount'->>'float' = '12.5' \
             AND traits->'items'->>'int' = '3' AND traits->'order_id'->>'string' = 'o1' \
             AND traits->'sent_at'->>'datetime' LIKE '2026-01-01T13:00:00%' AND NOT traits ? 'note'"
        ))
        .await;
    assert_eq!(typed, 1, "the receipt is saved with typed traits");
    assert_eq!(f.receipt_streams().await, 1);
    f.db.drop_db().await;
}

/// An exception in handle_events fails the stream with its traceback; every
/// handler is rolled back and nothing is committed or saved.
async fn python_raise_in_handle_events_rolls_back() {
    let dir = ConfigDir::new(&[]);
    let log = dir.path("calls.log");
    let f = setup(&[
        entry("filter", &log, ""),
        entry("raising", &log, ", where: handle_events"),
        entry("receipt", &log, ""),
    ])
    .await;
    let id = f.order("e1", "order.paid", "o1").await;
    f.worker().run_once().await.unwrap();
    let (state, reason) = f.state(id).await;
    assert_eq!(state, StreamState::Error);
    let reason = reason.unwrap();
    assert!(reason.contains("handler #2 \"raising\""), "{reason}");
    assert!(reason.contains("Traceback (most recent call last):"), "{reason}");
    assert!(reason.contains("shop_handlers.py") && reason.contains("in handle_events"), "{reason}");
    assert!(reason.ends_with("ValueError: order total does not add up"), "{reason}");
    assert_eq!(
        read(&log),
        vec![
            format!("filter handle {id} orders aware=True n=1"),
            "filter rollback".into(),
            "raising rollback".into(),
            "receipt rollback".into()
        ]
    );
    assert_eq!(f.receipt_streams().await, 0);
    f.db.drop_db().await;
}

/// An exception in commit fails the stream with its traceback; the other
/// handlers are still committed.
async fn python_raise_in_commit() {
    let dir = ConfigDir::new(&[]);
    let log = dir.path("calls.log");
    let f = setup(&[entry("raising", &log, ", where: commit"), entry("filter", &log, "")]).await;
    let id = f.order("e1", "order.paid", "o1").await;
    f.worker().run_once().await.unwrap();
    let (state, reason) = f.state(id).await;
    assert_eq!(state, StreamState::Error);
    let reason = reason.unwrap();
    assert!(
        reason.contains("commit failed: raising:") && reason.contains("RuntimeError: ledger unavailable"),
        "{reason}"
    );
    assert_eq!(read(&log), vec![format!("filter handle {id} orders aware=True n=1"), "filter commit".into()]);
    f.db.drop_db().await;
}

/// A handler that runs past handler_timeout fails its stream, is interrupted
/// with TimeoutError inside Python, and the worker carries on.
async fn python_timeout_fails_the_stream_and_interrupts() {
    let dir = ConfigDir::new(&[]);
    let log = dir.path("calls.log");
    let f = setup(&[entry("sleepy", &log, "")]).await;
    let id = f.order("e1", "order.paid", "o1").await;
    let w = f.worker();
    w.run_once().await.unwrap();
    let (state, reason) = f.state(id).await;
    assert_eq!(state, StreamState::Error);
    assert!(reason.as_deref().unwrap().contains("timed out"), "{reason:?}");
    let mut tries = 0;
    while !read(&log).iter().any(|l| l.starts_with("sleepy interrupted")) && tries < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        tries += 1;
    }
    let lines = read(&log);
    assert!(
        lines.iter().any(|l| l == "sleepy interrupted: handler_timeout exceeded; interrupted by winchester-rs"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "sleepy rollback"), "{lines:?}");
    f.order("e2", "order.paid", "o2").await;
    assert_eq!(w.run_once().await.unwrap(), 1, "the worker goes on");
    f.db.drop_db().await;
}

/// A class path that does not import is reported at start-up, naming the
/// pipeline, the handler and Python's error.
async fn python_import_error_named_at_startup() {
    let dir = ConfigDir::new(&[]);
    let log = dir.path("calls.log");
    let f = setup(&[entry("missing", &log, "")]).await;
    let err = winchester::pipeline::PipelineRunner::new(f.registry.clone(), f.cfg.clone()).validate().unwrap_err();
    let err = err.to_string();
    assert!(err.contains("pipeline \"fire_p\"") && err.contains("(missing)"), "{err}");
    assert!(err.contains("cannot import Python class \"no_such_module:Handler\""), "{err}");
    assert!(err.contains("ModuleNotFoundError: No module named 'no_such_module'"), "{err}");
    f.db.drop_db().await;
}

/// The Python handler example of docs/handlers.md runs as documented.
async fn python_docs_example() {
    let pipelines = "fire_p:\n  - {name: tag_big, params: {min_memory_mb: 8192}}\nreceipt_p: [logger]\n";
    let extra = format!(
        "python_path: {:?}\npipeline_handlers: {{tag_big: 'big_instances:TagBigInstances'}}\n",
        fixture("python").display().to_string()
    );
    let f = Fixture::new(pipelines, &extra, winchester_cli::common::registry()).await;
    winchester_python::configure(&f.cfg.main).unwrap();
    let now = f.clock.now();
    let ev = |id: &str, ty: &str, mem: i64| {
        event(id, ty, now, &[("order_id", s("o1")), ("instance_id", s(id)), ("memory_mb", TraitValue::Int(mem))])
    };
    f.tm.add_event(ev("small", "order.created", 2048)).await.unwrap();
    f.tm.add_event(ev("big", "order.paid", 16384)).await.unwrap();
    assert_eq!(f.worker().run_once().await.unwrap(), 1);
    let summary =
        f.db.count(
            "SELECT count(*) FROM event WHERE event_type = 'instance.big.summary' \
             AND traits->'count'->>'int' = '1' AND traits->'instance_id'->>'string' = 'big'",
        )
        .await;
    assert_eq!(summary, 1);
    f.db.drop_db().await;
}

const DEFINITIONS: &str = r#"
- event_type: compute.instance.*
  traits:
    where:
      fields: [payload.host, payload.node]
      plugin: {name: joined, parameters: {prefix: "at:"}}
    order_id:
      fields: payload.order_id
"#;

/// A trait plugin class from `distiller_trait_plugins` gets the matched
/// (path, value) pairs and its parameters; an exception in it is a distill
/// failure naming the trait, the plugin and the traceback. Through the
/// trigger manager it runs off the async threads.
async fn python_trait_plugin() {
    let dir = ConfigDir::new(&[
        (
            "winchester.yaml",
            &format!(
                "python_path: {:?}\ndistiller_config: defs.yaml\ndistiller_trait_plugins:\n  joined: shop_handlers:JoinPlugin\n",
                fixture("python").display().to_string()
            ),
        ),
        ("defs.yaml", DEFINITIONS),
    ]);
    let cfg = winchester_core::LoadedConfig::load(&dir.config(), None).unwrap();
    let d = winchester_cli::common::load_distiller(&cfg).unwrap().expect("distiller_config is set");
    assert!(d.has_blocking_plugins());
    let n = |host: &str| {
        serde_json::json!({"event_type": "compute.instance.create.end", "message_id": format!("m-{host}"),
            "timestamp": "2026-01-01T12:00:00Z", "payload": {"host": host, "node": 7, "order_id": "o1"}})
    };
    let e = d.to_event(&n("h1")).unwrap().unwrap();
    assert_eq!(e.traits["where"], s("at:payload.host=h1;payload.node=7"));
    let err = d.to_event(&n("boom")).unwrap_err().to_string();
    assert!(err.contains("trait \"where\": plugin \"joined\" failed"), "{err}");
    assert!(err.contains("Traceback") && err.contains("KeyError: 'boom'") && err.contains("m-boom"), "{err}");
    // Through the trigger manager (ingest), on a blocking thread.
    let db = TestDb::new().await;
    let (tm, _clock) = manager(&db, "[]", t(2026, 1, 1, 12, 0, 0));
    let tm = tm.with_distiller(d);
    let out = tm.add_notifications(&[n("h2"), n("boom")]).await.unwrap();
    assert!(matches!(out[0], winchester::EventOutcome::Saved { .. }), "{out:?}");
    assert!(
        matches!(&out[1], winchester::EventOutcome::DistillFailed(e) if e.to_string().contains("KeyError")),
        "{out:?}"
    );
    db.drop_db().await;
}

crate::postgres_tests!(
    python_handlers_filter_add_and_commit,
    python_raise_in_handle_events_rolls_back,
    python_raise_in_commit,
    python_timeout_fails_the_stream_and_interrupts,
    python_import_error_named_at_startup,
    python_docs_example,
    python_trait_plugin,
);
