//! What deploy/ ships (issue 29, items 4 and 5).
//!
//! The monitoring kit (deploy/monitoring): the alerting rules pass `promtool
//! check rules` and their unit tests (`promtool test rules`), every alert is
//! unit-tested and has a runbook section in docs/operations.md, and a real
//! Prometheus scraping a worker, `serve` and `winchester-ingest` finds every
//! metric the dashboard and the rules query. promtool and prometheus come
//! from Debian's `prometheus` package (scripts/test installs it); without
//! them those parts are skipped, saying so.
//!
//! The service units (deploy/systemd): `systemd-analyze verify` accepts them
//! (skipped where it is missing), and they say what the programs do: SIGHUP
//! reloads, SIGTERM drains within TimeoutStopSec, restart on failure, sandboxed.

use crate::support::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn kit(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring").join(name)
}

/// A program found on `PATH` (or in /usr/bin), if installed.
fn installed(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rules file's alerts: (name, expression, annotations).
fn alerts() -> Vec<(String, String, serde_yaml::Mapping)> {
    let rules: serde_yaml::Value = serde_yaml::from_str(&read(&kit("winchester-alerts.yml"))).unwrap();
    let mut out = vec![];
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("only alerting rules").to_string();
            let expr = rule["expr"].as_str().expect("expr").to_string();
            let annotations = rule["annotations"].as_mapping().cloned().unwrap_or_default();
            out.push((name, expr, annotations));
        }
    }
    out
}

/// Every `expr` of the dashboard's panels.
fn dashboard_exprs() -> Vec<String> {
    let dash: serde_json::Value = serde_json::from_str(&read(&kit("winchester-dashboard.json"))).unwrap();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = vec![];
    walk(&dash, &mut out);
    out
}

/// The `winchester_*` metric names in PromQL expressions.
fn metric_names<'a>(exprs: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for e in exprs {
        let mut rest = e.as_str();
        while let Some(at) = rest.find("winchester_") {
            let name: String =
                rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
    }
    names
}

/// Each alert has a summary, a description and a runbook link to a section
/// of docs/operations.md that exists; the unit tests cover every alert; the
/// dashboard queries what the issue asks for.
#[test]
fn every_alert_has_annotations_a_runbook_and_a_unit_test() {
    let operations = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"));
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| {
            h.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let tests = read(&kit("winchester-alerts.test.yml"));
    let all = alerts();
    assert!(all.len() >= 6, "{all:?}");
    for (name, _, annotations) in &all {
        for key in ["summary", "description", "runbook_url"] {
            let text = annotations.get(key).and_then(|v| v.as_str()).unwrap_or_default();
            assert!(!text.trim().is_empty(), "{name}: no {key}");
        }
        let runbook = annotations["runbook_url"].as_str().unwrap();
        let anchor = runbook.strip_prefix("docs/operations.md#").unwrap_or_else(|| panic!("{name}: {runbook}"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: the runbook section is named after the alert");
        assert!(anchors.contains(anchor), "{name}: no section #{anchor} in docs/operations.md");
        assert!(
            tests.contains(&format!("alertname: {name}\n        exp_alerts:\n          - exp_labels")),
            "{name}: no unit test where it fires"
        );
    }
    let dashboard = metric_names(&dashboard_exprs());
    for wanted in [
        "winchester_events_received_total",
        "winchester_streams_finished_total",
        "winchester_handler_errors_total",
        "winchester_oldest_ready_seconds",
        "winchester_lease_reclaims_total",
        "winchester_fire_delay_seconds_bucket",
        "winchester_database_outages_total",
        "winchester_database_up",
        "winchester_read_replica_lag_seconds",
    ] {
        assert!(dashboard.contains(wanted), "the dashboard does not show {wanted}: {dashboard:?}");
    }
}

/// `promtool check rules` and `promtool test rules` (the unit tests with
/// input series for every alert) pass.
#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    let Some(promtool) = installed("promtool") else {
        eprintln!("skipped: promtool not installed (Debian package prometheus; scripts/test installs it)");
        return;
    };
    for args in [["check", "rules", "winchester-alerts.yml"], ["test", "rules", "winchester-alerts.test.yml"]] {
        let (code, out, err) = run(Command::new(&promtool).args(args).current_dir(kit("")));
        assert_eq!(code, 0, "promtool {args:?}:\n{out}{err}");
        assert!(out.contains("SUCCESS"), "promtool {args:?}:\n{out}{err}");
    }
}

/// A real Prometheus scrapes a `pipeline-worker`, `winchester serve` and
/// `winchester-ingest` that have ingested notifications (one a duplicate,
/// one not JSON, one no definition covers) and fired and failed streams;
/// every `winchester_*` metric the dashboard or the rules query is then in
/// Prometheus (a missing one, or a misspelt one, fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_metric_the_dashboard_and_alerts_use() {
    use crate::amqp_ingest::{envelope, notification, Broker};
    let Some(prometheus) = installed("prometheus") else {
        eprintln!("skipped: prometheus not installed (Debian package prometheus; scripts/test installs it)");
        return;
    };
    let mut wanted = metric_names(&dashboard_exprs());
    wanted.extend(metric_names(&alerts().iter().map(|(_, e, _)| e.clone()).collect::<Vec<_>>()));

    let db = TestDb::new().await;
    let broker = Broker::new().await;
    let dir = broker.config_on(&db.url, 20);
    // A second trigger on the same events whose pipeline always fails.
    let triggers = std::fs::read_to_string(dir.path("triggers.yaml")).unwrap()
        + "- name: failing\n  distinguished_by: [instance_id]\n  expiration: \"$last + 1h\"\n  fire_pipeline: broken\n  \
           match_criteria: [{event_type: compute.instance.exists}]\n  fire_criteria: [{event_type: compute.instance.exists}]\n";
    std::fs::write(dir.path("triggers.yaml"), triggers).unwrap();
    // Its handler fails in handle_events and succeeds in rollback.
    let broken = r#"{name: command, params: {command: [sh, -c, '[ "$1" = --rollback ]', broken]}}"#;
    std::fs::write(dir.path("pipelines.yaml"), format!("noop:\n  - log_it\nbroken:\n  - {broken}\n")).unwrap();
    // serve reads from a "standby" (the database itself, never behind), so
    // that it exports the replica lag.
    let main = std::fs::read_to_string(dir.config()).unwrap();
    let with_replica = main.replace(
        &format!("database: {{url: '{}'}}", db.url),
        &format!("database: {{url: '{0}', read_url: '{0}'}}", db.url),
    );
    assert_ne!(main, with_replica, "the config names the database as expected");
    std::fs::write(dir.config(), with_replica).unwrap();
    let (worker_port, ingest_port) = (free_port(), free_port());
    let spawn = |name: &str, port: u16| {
        KillOnDrop(
            program(name)
                .arg("-c")
                .arg(dir.config())
                .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {name}: {e}")),
        )
    };
    let mut ingest = spawn("winchester-ingest", ingest_port);
    let mut worker = spawn("pipeline-worker", worker_port);
    let (mut serve, base) = spawn_serve(&dir.config()).await;

    let mut bodies: Vec<Vec<u8>> = (0..100).map(|i| serde_json::to_vec(&envelope(&notification(i))).unwrap()).collect();
    bodies.push(bodies[0].clone());
    bodies.push(b"not json".to_vec());
    let mut uncovered = notification(1000);
    uncovered["event_type"] = "image.upload".into();
    bodies.push(serde_json::to_vec(&envelope(&uncovered)).unwrap());
    broker.publish(&bodies).await;
    let start = Instant::now();
    // 10 streams of each trigger fire: 10 complete, 10 fail.
    while db.count("SELECT count(*) FROM stream WHERE trigger_name = 'failing' AND state = 4").await < 10 {
        for (child, name) in
            [(&mut ingest, "winchester-ingest"), (&mut worker, "pipeline-worker"), (&mut serve, "serve")]
        {
            assert!(child.0.try_wait().unwrap().is_none(), "{name} exited");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the failing streams did not fail");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let data = std::env::temp_dir().join(format!("winchester-prometheus-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data).unwrap();
    let host = base.trim_start_matches("http://").to_string();
    std::fs::write(
        data.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: winchester\n    static_configs:\n      \
             - targets: ['127.0.0.1:{worker_port}', '127.0.0.1:{ingest_port}', '{host}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(data.join("prometheus.log")).unwrap();
    let _prometheus = KillOnDrop(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", data.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", data.join("tsdb").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let http = reqwest::Client::new();
    let start = Instant::now();
    let missing = loop {
        let names: BTreeSet<String> = match http.get(format!("http://{web}/api/v1/label/__name__/values")).send().await
        {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["data"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Err(_) => BTreeSet::new(),
        };
        let missing: Vec<&String> = wanted.iter().filter(|n| !names.contains(*n)).collect();
        if missing.is_empty() || start.elapsed() > Duration::from_secs(45) {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let targets: serde_json::Value =
        http.get(format!("http://{web}/api/v1/targets")).send().await.unwrap().json().await.unwrap();
    assert!(
        missing.is_empty(),
        "metrics the dashboard or the rules query that Prometheus did not find: {missing:?}\ntargets: {targets}\n{}",
        std::fs::read_to_string(data.join("prometheus.log")).unwrap_or_default()
    );
    let up =
        targets["data"]["activeTargets"].as_array().map_or(0, |t| t.iter().filter(|t| t["health"] == "up").count());
    assert_eq!(up, 3, "{targets}");
    drop((_prometheus, ingest, worker, serve));
    let _ = std::fs::remove_dir_all(&data);
    broker.cleanup().await;
    db.drop_db().await;
}

/// The units of deploy/systemd: (file name, the program's binary name, text).
fn units() -> Vec<(String, &'static str, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd");
    [
        ("winchester-worker.service", "pipeline-worker"),
        ("winchester-ingest.service", "winchester-ingest"),
        ("winchester-serve.service", "winchester"),
    ]
    .into_iter()
    .map(|(unit, program)| (unit.to_string(), program, read(&dir.join(unit))))
    .collect()
}

/// The value of `key=` in a unit (the last one, as systemd reads it).
fn unit_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().rev().find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// Each unit runs its program, reloads with SIGHUP (which all three handle),
/// stops with SIGTERM within a TimeoutStopSec longer than the program's
/// drain (the worker: a handler call, handler_timeout; serve: a request,
/// the API's request timeout), restarts on failure, and is sandboxed.
#[test]
fn service_units_reload_drain_restart_and_are_sandboxed() {
    let (defaults, _) = {
        let dir = ConfigDir::new(&[("winchester.yaml", "{}\n")]);
        winchester_core::WinchesterConfig::load(&dir.config()).expect("an empty winchester.yaml loads")
    };
    for (unit, program, text) in units() {
        let exec = unit_value(&text, "ExecStart").unwrap_or_else(|| panic!("{unit}: no ExecStart"));
        assert!(exec.split(' ').next().unwrap().ends_with(&format!("/{program}")), "{unit}: {exec}");
        assert!(exec.contains("-c /etc/winchester/winchester.yaml"), "{unit}: {exec}");
        for (key, want) in [
            ("ExecReload", "/bin/kill -HUP $MAINPID"),
            ("KillSignal", "SIGTERM"),
            ("Restart", "on-failure"),
            ("ProtectSystem", "strict"),
            ("NoNewPrivileges", "yes"),
            ("PrivateTmp", "yes"),
        ] {
            assert_eq!(unit_value(&text, key), Some(want), "{unit}: {key}");
        }
        let stop: u64 = unit_value(&text, "TimeoutStopSec")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: TimeoutStopSec in seconds"));
        let drain = match program {
            "pipeline-worker" => defaults.handler_timeout,
            "winchester" => winchester_api::REQUEST_TIMEOUT,
            _ => Duration::from_secs(5),
        };
        assert!(
            Duration::from_secs(stop) > drain,
            "{unit}: TimeoutStopSec={stop} is not longer than the drain ({drain:?})"
        );
    }
}

/// `systemd-analyze verify` accepts every unit, with no warning (an unknown
/// or misspelt key is only a warning to it), with ExecStart pointed at the
/// programs just built.
#[test]
fn systemd_analyze_verifies_the_service_units() {
    let Some(analyze) = installed("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze not installed");
        return;
    };
    let dir = ConfigDir::new(&[]);
    let mut files = vec![];
    for (unit, program, text) in units() {
        let text = text.replace(&format!("/usr/local/bin/{program} "), &format!("{} ", bin(program).display()));
        std::fs::write(dir.path(&unit), text).unwrap();
        files.push(dir.path(&unit));
    }
    let (code, out, err) = run(Command::new(analyze).args(["verify", "--man=no"]).args(&files));
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.trim().is_empty() && out.trim().is_empty(), "systemd-analyze verify warns:\n{out}{err}");
}
