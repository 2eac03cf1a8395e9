//! `winchester-ingest` against the real RabbitMQ on 127.0.0.1:5672 (guest/guest;
//! `WINCHESTER_TEST_AMQP_URL` overrides; scripts/test starts the broker). Each
//! test uses its own exchange and queues and deletes them at the end.

use crate::support::*;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn amqp_url() -> String {
    std::env::var("WINCHESTER_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

const DEFINITIONS: &str = r#"
- event_type: compute.instance.*
  traits: &instance_traits
    instance_id: {fields: payload.instance_id}
    memory_mb: {type: int, fields: payload.memory_mb}
    host: {fields: publisher_id, plugin: {name: split, parameters: {segment: 1, max_split: 1}}}
"#;

const TRIGGERS: &str = r#"
- name: per_instance
  distinguished_by: [instance_id]
  expiration: "$last + 1h"
  fire_pipeline: noop
  match_criteria: [{event_type: compute.instance.*}]
  fire_criteria: [{event_type: compute.instance.exists}]
"#;

/// One test's broker names and a channel to set them up, publish and inspect.
pub(crate) struct Broker {
    conn: Connection,
    ch: Channel,
    pub(crate) exchange: String,
    pub(crate) queue: String,
    dead_exchange: String,
    pub(crate) dead_queue: String,
}

impl Broker {
    pub(crate) async fn new() -> Broker {
        let url = amqp_url();
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("RabbitMQ at {url} does not answer ({e}); scripts/test starts it"));
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        let id = uuid::Uuid::new_v4().simple().to_string();
        let b = Broker {
            conn,
            ch,
            exchange: format!("wtest.{id}.nova"),
            queue: format!("wtest.{id}.notifications"),
            dead_exchange: format!("wtest.{id}.dead"),
            dead_queue: format!("wtest.{id}.deadq"),
        };
        // Declared as the daemon will (durable), so messages wait for it.
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        b.ch.exchange_declare(b.exchange.as_str().into(), ExchangeKind::Topic, durable, FieldTable::default())
            .await
            .expect("exchange");
        b.ch.queue_declare(
            b.queue.as_str().into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("queue");
        b.ch.queue_bind(
            b.queue.as_str().into(),
            b.exchange.as_str().into(),
            "notifications.info".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
        b
    }

    fn config(&self, db: &TestDb, batch_size: usize) -> ConfigDir {
        self.config_on(&db.url, batch_size)
    }

    /// The daemon's config on the database at `url`.
    pub(crate) fn config_on(&self, url: &str, batch_size: usize) -> ConfigDir {
        ConfigDir::new(&[
            (
                "winchester.yaml",
                &format!(
                    "database: {{url: '{}'}}\ntrigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\ndistiller_config: event_definitions.yaml\n\
                     pipeline_handlers: {{log_it: logger}}\nstatistics_period: 1\n\
                     amqp_ingest:\n  url: '{}'\n  queues:\n    - {{queue: '{}', exchange: '{}', routing_keys: [notifications.info]}}\n  \
                     prefetch: {}\n  batch_size: {batch_size}\n  batch_max_wait_ms: 50\n  dead_letter_exchange: '{}'\n  dead_letter_queue: '{}'\n",
                    url,
                    amqp_url(),
                    self.queue,
                    self.exchange,
                    batch_size * 2,
                    self.dead_exchange,
                    self.dead_queue
                ),
            ),
            ("event_definitions.yaml", DEFINITIONS),
            ("triggers.yaml", TRIGGERS),
            ("pipelines.yaml", "noop:\n  - log_it\n"),
        ])
    }

    /// Publishes raw bodies with routing key `notifications.info` and waits for
    /// the broker's confirms.
    pub(crate) async fn publish(&self, bodies: &[Vec<u8>]) {
        for chunk in bodies.chunks(1000) {
            for body in chunk {
                let props =
                    BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into());
                self.ch
                    .basic_publish(
                        self.exchange.as_str().into(),
                        "notifications.info".into(),
                        BasicPublishOptions::default(),
                        body,
                        props,
                    )
                    .await
                    .expect("publish");
            }
            self.ch.wait_for_confirms().await.expect("confirms");
        }
    }

    /// Ready messages in a queue.
    pub(crate) async fn ready(&self, queue: &str) -> u32 {
        let opts = QueueDeclareOptions { passive: true, ..Default::default() };
        match self.ch.queue_declare(queue.into(), opts, FieldTable::default()).await {
            Ok(q) => q.message_count(),
            Err(_) => 0,
        }
    }

    pub(crate) async fn cleanup(self) {
        for q in [&self.queue, &self.dead_queue] {
            let _ = self.ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        for x in [&self.exchange, &self.dead_exchange] {
            let _ = self.ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await;
        }
        let _ = self.conn.close(200, "done".into()).await;
    }
}

pub(crate) fn notification(i: usize) -> serde_json::Value {
    serde_json::json!({
        "event_type": if i % 10 == 9 { "compute.instance.exists" } else { "compute.instance.update" },
        "message_id": format!("msg-{i:05}"),
        "priority": "INFO",
        "publisher_id": format!("compute.host-{}", i % 7),
        "timestamp": format!("2026-03-01 10:{:02}:{:02}.{:06}", (i / 60) % 60, i % 60, i),
        "payload": {"instance_id": format!("i-{}", i % 50), "memory_mb": 512, "tenant_id": "t1"},
        "_context_request_id": format!("req-{i}"),
    })
}

/// As nova sends it: an oslo.messaging v2 envelope around the notification.
pub(crate) fn envelope(n: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"oslo.version": "2.0", "oslo.message": n.to_string()})
}

fn spawn(dir: &ConfigDir, db: &TestDb) -> Child {
    spawn_with(dir, db, &[])
}

fn spawn_with(dir: &ConfigDir, db: &TestDb, args: &[&str]) -> Child {
    Command::new(bin("winchester-ingest"))
        .arg("-c")
        .arg(dir.config())
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn,winchester_amqp=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn winchester-ingest")
}

fn stderr_of(child: Child) -> String {
    let out = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn header(props: &BasicProperties, name: &str) -> Option<String> {
    let h = props.headers().as_ref()?;
    match h.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// 10,000 notifications published; the daemon is killed with SIGKILL midway and
/// started again; the database ends with exactly 10,000 events (the redelivered
/// ones absorbed by message_id dedup). Poison messages end in the dead-letter
/// queue with their reason; SIGTERM stops the daemon cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_midway_loses_nothing_and_poison_is_dead_lettered() {
    let db = TestDb::new().await;
    let broker = Broker::new().await;
    let dir = broker.config(&db, 100);
    const N: usize = 10_000;
    let mut bodies: Vec<Vec<u8>> = Vec::with_capacity(N + 4);
    let poison: Vec<(Vec<u8>, &str)> = vec![
        (b"this is not json {".to_vec(), "not JSON"),
        (br#"{"event_type": "compute.instance.update", "timestamp": "2026-03-01T10:00:00Z", "payload": {"instance_id": "i-1"}}"#.to_vec(), "message_id"),
        (
            br#"{"event_type": "compute.instance.update", "message_id": "bad-memory", "timestamp": "2026-03-01T10:00:00Z", "payload": {"instance_id": "i-1", "memory_mb": "lots"}}"#.to_vec(),
            "memory_mb",
        ),
        (br#"{"event_type": "image.upload", "message_id": "uncovered", "timestamp": "2026-03-01T10:00:00Z", "payload": {}}"#.to_vec(), "no event definition covers"),
    ];
    for i in 0..N {
        let n = notification(i);
        let body = if i % 3 == 0 { envelope(&n) } else { n };
        bodies.push(serde_json::to_vec(&body).unwrap());
        if i % 2500 == 1000 {
            bodies.push(poison[i / 2500].0.clone());
        }
    }
    broker.publish(&bodies).await;

    // First run: killed with SIGKILL once some but not all events are in.
    let mut first = spawn(&dir, &db);
    let started = Instant::now();
    let at_kill = loop {
        let n = db.count("SELECT count(*) FROM event").await;
        if n > 0 {
            first.kill().expect("kill -9");
            break n;
        }
        if let Ok(Some(status)) = first.try_wait() {
            panic!("winchester-ingest exited early ({status}): {}", stderr_of(first));
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no event saved within 30 s: {}", {
            let _ = first.kill();
            stderr_of(first)
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let _ = first.wait();
    let after_kill = db.count("SELECT count(*) FROM event").await;
    assert!(after_kill < N as i64, "the daemon finished before it could be killed (saw {at_kill}, then {after_kill})");

    // Second run: picks up the rest, including the unacknowledged deliveries.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut second = spawn_with(&dir, &db, &["--metrics-listen", &format!("127.0.0.1:{port}")]);
    let started = Instant::now();
    loop {
        let events = db.count("SELECT count(*) FROM event").await;
        let dead = broker.ready(&broker.dead_queue).await;
        let left = broker.ready(&broker.queue).await;
        if events == N as i64 && dead as usize >= poison.len() && left == 0 {
            break;
        }
        if let Ok(Some(status)) = second.try_wait() {
            panic!("winchester-ingest exited ({status}): {}", stderr_of(second));
        }
        if started.elapsed() > Duration::from_secs(45) {
            let _ = second.kill();
            panic!("after 45 s: {events} events, {dead} dead letters, {left} messages left; {}", stderr_of(second));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its /metrics (Prometheus text) counted what this run received and saved.
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    let received = value("winchester_events_received_total", Some(("source", "amqp")));
    let saved = value("winchester_events_saved_total", None);
    assert!(saved > 0.0 && received >= saved, "{text}");
    assert_eq!(saved as i64, N as i64 - after_kill, "this run saved the rest: {text}");
    // SIGTERM: drains and exits 0.
    let status = Command::new("kill").args(["-TERM", &second.id().to_string()]).status().expect("kill -TERM");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(s) = second.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "winchester-ingest did not stop within 15 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let err = stderr_of(second);
    assert!(code.success(), "exit {code}: {err}");

    assert_eq!(db.count("SELECT count(*) FROM event").await, N as i64);
    assert_eq!(db.count("SELECT count(DISTINCT message_id) FROM event").await, N as i64);
    assert_eq!(db.count("SELECT count(*) FROM event WHERE message_id IN ('bad-memory', 'uncovered')").await, 0);
    // Distilled traits made it (envelopes unwrapped too).
    assert_eq!(db.count("SELECT count(*) FROM event WHERE traits->'host'->>'string' LIKE 'host-%' AND (traits->'memory_mb'->>'int')::int = 512").await, N as i64);
    // Every event is in its instance's stream.
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, N as i64);

    // Dead letters: each poison message once, with its reason and routing key.
    let mut dead = Vec::new();
    while let Some(m) = broker
        .ch
        .basic_get(broker.dead_queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        dead.push((
            m.delivery.data.clone(),
            header(&m.delivery.properties, "x-winchester-reason").unwrap_or_default(),
            header(&m.delivery.properties, "x-original-routing-key"),
        ));
    }
    for (body, needle) in &poison {
        let found: Vec<_> = dead.iter().filter(|(b, _, _)| b == body).collect();
        assert!(
            !found.is_empty(),
            "poison {:?} not dead-lettered; dead letters: {dead:?}",
            String::from_utf8_lossy(body)
        );
        for (_, reason, key) in &found {
            assert!(reason.contains(needle), "reason {reason:?} should mention {needle:?}");
            assert_eq!(key.as_deref(), Some("notifications.info"));
        }
    }
    assert!(dead.len() >= poison.len());
    broker.cleanup().await;
    db.drop_db().await;
}

/// A configuration error in amqp_ingest stops start-up naming the key; an
/// unreachable broker is retried (the daemon keeps running) and SIGTERM still
/// stops it with exit 0.
#[tokio::test]
async fn bad_config_is_named_and_unreachable_broker_is_retried() {
    let db = TestDb::new().await;
    let dir = ConfigDir::new(&[
        (
            "winchester.yaml",
            &format!(
                "database: {{url: '{}'}}\ntrigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\ndistiller_config: event_definitions.yaml\npipeline_handlers: {{log_it: logger}}\namqp_ingest: {{batch_size: 0, queues: [{{exchange: nova}}]}}\n",
                db.url
            ),
        ),
        ("event_definitions.yaml", DEFINITIONS),
        ("triggers.yaml", TRIGGERS),
        ("pipelines.yaml", "noop:\n  - log_it\n"),
    ]);
    let (code, _, err) = run(Command::new(bin("winchester-ingest")).arg("-c").arg(dir.config()));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("amqp_ingest.batch_size") && err.contains("amqp_ingest.queues[0].queue"), "{err}");

    // Nothing listens on port 1: the daemon logs and retries until told to stop.
    std::fs::write(
        dir.config(),
        format!("database: {{url: '{}'}}\ntrigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\ndistiller_config: event_definitions.yaml\npipeline_handlers: {{log_it: logger}}\n", db.url),
    )
    .unwrap();
    let child = Command::new(bin("winchester-ingest"))
        .arg("-c")
        .arg(dir.config())
        .args(["--amqp-url", "amqp://guest:guest@127.0.0.1:1/%2f"])
        .env("DATABASE_URL", &db.url)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut child = child;
    assert!(child.try_wait().expect("wait").is_none(), "the daemon gave up on an unreachable broker");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("AMQP broker unavailable") && err.contains("retrying"), "{err}");
    assert!(!err.contains("guest:guest"), "password leaked: {err}");
    db.drop_db().await;
}

/// `winchester publish`: JSON lines become persistent JSON messages carrying
/// their notification's message_id (envelopes looked into), sent to the broker
/// the config names; a line that is not JSON is rejected by line number (exit
/// 2) while the others go out; a routing key no queue is bound for is reported.
#[tokio::test]
async fn publish_sends_json_lines_and_rejects_the_rest_by_line_number() {
    let broker = Broker::new().await;
    // No --amqp-url: the URL comes from the config's amqp_ingest.url.
    let dir = ConfigDir::new(&[("winchester.yaml", &format!("amqp_ingest:\n  url: '{}'\n", amqp_url()))]);
    let publish = |args: &[&str]| {
        let mut cmd = Command::new(bin("winchester"));
        cmd.arg("-c")
            .arg(dir.config())
            .arg("publish")
            .args(["--exchange", &broker.exchange])
            .args(args)
            .env_remove("WINCHESTER_AMQP_URL");
        cmd
    };
    let lines = [notification(0).to_string(), envelope(&notification(1)).to_string(), notification(2).to_string()];
    std::fs::write(dir.path("good.jsonl"), format!("{}\n\n{}\n{}\n", lines[0], lines[1], lines[2])).unwrap();
    let (code, out, err) = run(&mut publish(&[dir.path("good.jsonl").to_str().unwrap()]));
    assert_eq!((code, out.as_str()), (0, "published: 3\n"), "{err}");
    for (i, line) in lines.iter().enumerate() {
        let m = broker
            .ch
            .basic_get(broker.queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
            .unwrap_or_else(|| panic!("message {i} missing"));
        let p = &m.delivery.properties;
        assert_eq!(String::from_utf8_lossy(&m.delivery.data), line.as_str());
        assert_eq!(p.message_id().as_ref().map(|s| s.as_str().to_string()), Some(format!("msg-{i:05}")));
        assert_eq!(p.content_type().as_ref().map(|s| s.as_str()), Some("application/json"));
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(m.delivery.routing_key.as_str(), "notifications.info");
    }
    assert_eq!(broker.ready(&broker.queue).await, 0);

    // From stdin, with a line that is not JSON: the others are published, exit 2.
    std::fs::write(dir.path("bad.jsonl"), format!("{}\nnot json {{\n{}\n", notification(3), notification(4))).unwrap();
    let out = publish(&["-"]).stdin(std::fs::File::open(dir.path("bad.jsonl")).unwrap()).output().expect("spawn");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.starts_with("published: 2\nrejected: 1\n  line 2: invalid JSON"), "{stdout}");
    assert_eq!(broker.ready(&broker.queue).await, 2);

    // Nothing bound for this routing key: the broker drops the message; said so, exit 2.
    let (code, out, err) =
        run(&mut publish(&["--routing-key", "nobody.listens", dir.path("good.jsonl").to_str().unwrap()]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("unroutable: 3"), "{out}");
    assert!(err.is_empty(), "lapin's per-message warnings should be quiet: {err}");
    broker.cleanup().await;
}

/// A live notification at `ts` (now): `exists` for every tenth.
fn live_notification(id: &str, i: usize, ts: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "event_type": if i % 10 == 9 { "compute.instance.exists" } else { "compute.instance.update" },
        "message_id": id,
        "publisher_id": "compute.host-1",
        "timestamp": ts.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        "payload": {"instance_id": format!("i-{}", i % 40), "memory_mb": 512},
    }))
    .unwrap()
}

/// The reload test's trigger, expiring `expire` after its last event.
fn reload_triggers(expire: &str) -> String {
    format!(
        "- name: per_instance\n  distinguished_by: [instance_id]\n  expiration: \"$last + {expire}\"\n  \
         fire_pipeline: fire_p\n  expire_pipeline: expire_p\n  match_criteria: [{{event_type: compute.instance.*}}]\n  \
         fire_criteria: [{{event_type: compute.instance.exists}}]\n"
    )
}

/// A counter from a process's /metrics.
async fn metric(port: u16, name: &str, label: (&str, &str)) -> f64 {
    let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else { return 0.0 };
    let text = resp.text().await.unwrap_or_default();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Waits until every process's reload counter with `result` reaches `n`.
async fn reloads(ports: &[u16], result: &str, n: f64, children: &mut [&mut Child]) {
    let started = Instant::now();
    for port in ports {
        while metric(*port, "winchester_config_reloads_total", ("result", result)).await < n {
            for c in children.iter_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("a process exited ({status})");
                }
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no {result} reload on :{port} within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Hot reload under load with real processes: one `winchester-ingest` and two
/// `pipeline-worker`s take SIGHUP (kill -HUP) while notifications flow. The new
/// definition version is recorded and used for every event after the reload;
/// streams of the old version finish by their own rules. Nothing is lost (every
/// event in exactly one stream), nothing fires twice (each stream completes
/// once; every stream with an `exists` completes by firing), no stream is left
/// open. Then an invalid set is refused whole (logged with file and key,
/// counted) and the configuration in force keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_under_load_loses_nothing_and_fires_nothing_twice() {
    let db = TestDb::new().await;
    let broker = Broker::new().await;
    let dir = ConfigDir::new(&[
        (
            "winchester.yaml",
            &format!(
                "database: {{url: '{}'}}\ntrigger_definitions: triggers.yaml\npipeline_config: pipelines.yaml\n\
                 distiller_config: event_definitions.yaml\npipeline_handlers: {{log_it: logger}}\n\
                 purge_completed_streams: false\npipeline_worker_delay: 0.2\n\
                 amqp_ingest:\n  url: '{}'\n  queues:\n    - {{queue: '{}', exchange: '{}', routing_keys: [notifications.info]}}\n  \
                 batch_size: 50\n  batch_max_wait_ms: 20\n",
                db.url,
                amqp_url(),
                broker.queue,
                broker.exchange
            ),
        ),
        ("event_definitions.yaml", DEFINITIONS),
        ("triggers.yaml", &reload_triggers("3s")),
        ("pipelines.yaml", "fire_p: [log_it]\nexpire_p: [log_it]\n"),
    ]);
    let ports: Vec<u16> =
        (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let start = |name: &str, port: u16| {
        KillOnDrop(
            program(name)
                .arg("-c")
                .arg(dir.config())
                .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn"),
        )
    };
    let mut ingest = start("winchester-ingest", ports[0]);
    let mut workers = [start("pipeline-worker", ports[1]), start("pipeline-worker", ports[2])];
    let hup = |c: &KillOnDrop| {
        assert!(Command::new("kill").args(["-HUP", &c.0.id().to_string()]).status().unwrap().success());
    };
    const HALF: usize = 1500;
    let b = &broker;
    let publish_half = |prefix: &'static str| {
        let bodies: Vec<Vec<u8>> =
            (0..HALF).map(|i| live_notification(&format!("{prefix}-{i:05}"), i, chrono::Utc::now())).collect();
        async move { b.publish(&bodies).await }
    };
    let wait_events = |n: i64| {
        let db = &db;
        async move {
            let started = Instant::now();
            while db.count("SELECT count(*) FROM event").await < n {
                assert!(started.elapsed() < Duration::from_secs(60), "events not ingested within 60 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    publish_half("a").await;
    // Reload mid-flow: a new expiration is a new version.
    wait_events(HALF as i64 / 3).await;
    std::fs::write(dir.path("triggers.yaml"), reload_triggers("4s")).unwrap();
    hup(&ingest);
    for w in &workers {
        hup(w);
    }
    {
        let [w1, w2] = &mut workers;
        reloads(&ports, "applied", 1.0, &mut [&mut ingest.0, &mut w1.0, &mut w2.0]).await;
    }
    publish_half("b").await;
    wait_events(2 * HALF as i64).await;

    // Every stream finishes (the last ones expire 4 s after their last event).
    let all_done = |n_events: i64| {
        let db = &db;
        async move {
            let started = Instant::now();
            loop {
                let unfinished = db.count("SELECT count(*) FROM stream WHERE state <> 6 OR open").await;
                let events = db.count("SELECT count(*) FROM event").await;
                if unfinished == 0 && events == n_events {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(60), "{unfinished} streams unfinished after 60 s");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    all_done(2 * HALF as i64).await;
    let versions: Vec<String> = {
        let v = db.storage.trigger_versions(Some("per_instance")).await.unwrap();
        v.into_iter().map(|v| v.definition.version).collect()
    };
    assert_eq!(versions.len(), 2, "both versions recorded");
    let checks = [
        // Nothing lost: every event in exactly one stream.
        ("SELECT count(*) FROM stream_event".to_string(), 2 * HALF as i64),
        ("SELECT count(DISTINCT event_id) FROM stream_event".into(), 2 * HALF as i64),
        // Every event published after the reload is in a stream of the new version.
        (
            format!(
                "SELECT count(*) FROM stream_event se JOIN event e ON e.id = se.event_id JOIN stream s ON s.id = se.stream_id \
                 WHERE e.message_id LIKE 'b-%' AND s.version <> '{}'",
                versions[1]
            ),
            0,
        ),
        // Nothing fired twice: each stream completed once ...
        (
            "SELECT count(*) FROM (SELECT stream_id FROM stream_transition WHERE new_state = 6 \
             GROUP BY stream_id HAVING count(*) > 1) x"
                .into(),
            0,
        ),
        ("SELECT count(*) FROM stream_transition WHERE new_state = 6".into(), db.count("SELECT count(*) FROM stream").await),
        // ... and every stream holding an exists event completed by firing.
        (
            "SELECT count(*) FROM stream s WHERE EXISTS (SELECT 1 FROM stream_event se JOIN event e ON e.id = se.event_id \
             WHERE se.stream_id = s.id AND e.event_type = 'compute.instance.exists') AND NOT EXISTS (SELECT 1 FROM \
             stream_transition t WHERE t.stream_id = s.id AND t.old_state = 2 AND t.new_state = 6)"
                .into(),
            0,
        ),
    ];
    for (sql, want) in &checks {
        assert_eq!(db.count(sql).await, *want, "{sql}");
    }
    assert!(db.count(&format!("SELECT count(*) FROM stream WHERE version = '{}'", versions[0])).await > 0);

    // An invalid set is refused whole; the version in force keeps running.
    std::fs::write(
        dir.path("triggers.yaml"),
        reload_triggers("5s").replace("fire_pipeline: fire_p", "fire_pipeline: nowhere\n  colour: red"),
    )
    .unwrap();
    hup(&ingest);
    hup(&workers[0]);
    {
        let [w1, w2] = &mut workers;
        reloads(&ports[..2], "refused", 1.0, &mut [&mut ingest.0, &mut w1.0, &mut w2.0]).await;
    }
    let bodies: Vec<Vec<u8>> =
        (0..20).map(|i| live_notification(&format!("c-{i:05}"), i, chrono::Utc::now())).collect();
    broker.publish(&bodies).await;
    all_done(2 * HALF as i64 + 20).await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM stream_event se JOIN event e ON e.id = se.event_id JOIN stream s ON s.id = se.stream_id \
             WHERE e.message_id LIKE 'c-%' AND s.version = '{}'",
            versions[1]
        ))
        .await,
        20,
        "matched under the version in force"
    );
    assert_eq!(db.storage.trigger_versions(None).await.unwrap().len(), 2, "nothing recorded for the refused set");
    for child in [&ingest, &workers[0]] {
        assert!(Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap().success());
    }
    let stderr = |c: KillOnDrop| {
        let mut c = c;
        let child = std::mem::replace(&mut c.0, Command::new("true").spawn().unwrap());
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned()
    };
    let [w1, _w2] = workers;
    for err in [stderr(ingest), stderr(w1)] {
        assert!(err.contains("Configuration reload refused"), "{err}");
        assert!(err.contains("triggers.yaml: trigger \"per_instance\": key \"colour\": unknown key"), "{err}");
    }
    broker.cleanup().await;
    db.drop_db().await;
}
