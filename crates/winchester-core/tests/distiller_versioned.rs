//! `etc/event_definitions.versioned.yaml` on nova's versioned notifications
//! (issue 26, item 6): every `instance.*` sample of the corpus whose payload
//! is a versioned object (`payload.'nova_object.data'`), plus one written
//! here, distilled with both flavours; the key traits must equal the
//! payload's fields.

use chrono::{DateTime, Utc};
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};
use winchester_core::distiller::{Distiller, Flavour, PluginRegistry};
use winchester_core::event::TraitValue;

const DEFINITIONS: &str = include_str!("../../../etc/event_definitions.versioned.yaml");

fn corpus_dir() -> PathBuf {
    match std::env::var_os("WINCHESTER_DISTILLER_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/distiller"),
    }
}

/// The message inside an oslo v2 envelope, or the notification itself.
fn unwrap(n: &Json) -> Json {
    match n.get("oslo.message").and_then(Json::as_str) {
        Some(inner) => serde_json::from_str(inner).expect("envelope holds JSON"),
        None => n.clone(),
    }
}

/// `(name, notification)` for the corpus's versioned `instance.*` samples.
fn corpus_samples() -> Vec<(String, Json)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(corpus_dir().join("notifications")) else { return out };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".json") || name == "SOURCES.json" {
            continue;
        }
        let n: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let m = unwrap(&n);
        let versioned = m["payload"].get("nova_object.data").is_some();
        if versioned && m["event_type"].as_str().is_some_and(|t| t.starts_with("instance.")) {
            out.push((name, n));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A versioned instance.update, in an oslo v2 envelope.
fn written_sample() -> Json {
    let message = json!({
        "priority": "INFO",
        "event_type": "instance.update",
        "publisher_id": "nova-compute:cmp-1",
        "message_id": "7e3f0a52-1e0c-4c3e-8a44-3f4a3c1b2d10",
        "timestamp": "2024-05-06 07:08:09.101112",
        "payload": {
            "nova_object.name": "InstanceUpdatePayload",
            "nova_object.namespace": "nova",
            "nova_object.version": "2.1",
            "nova_object.data": {
                "uuid": "0b9b4a55-2bd0-4b38-9d6c-6b5d0b0c6a11",
                "tenant_id": "a1b2c3",
                "user_id": "u-9",
                "host": "cmp-1",
                "state": "active",
                "task_state": null,
                "launched_at": "2024-05-06T07:08:00Z",
                "deleted_at": null,
                "flavor": {"nova_object.data": {"name": "m1.small", "memory_mb": 2048, "vcpus": 1, "root_gb": 20}},
                "state_update": {"nova_object.data": {"old_state": "building", "state": "active"}},
                "audit_period": {"nova_object.data": {
                    "audit_period_beginning": "2024-05-01T00:00:00Z",
                    "audit_period_ending": "2024-05-06T07:08:09Z"
                }}
            }
        }
    });
    json!({"oslo.version": "2.0", "oslo.message": message.to_string()})
}

fn text(v: &Json) -> Option<TraitValue> {
    v.as_str().map(|s| TraitValue::String(s.to_string()))
}

fn when(v: &Json) -> Option<TraitValue> {
    let s = v.as_str().filter(|s| !s.is_empty())?;
    let d = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    Some(TraitValue::Datetime(d))
}

/// Checks the key traits of one distilled sample; returns what differs.
fn check(d: &Distiller, name: &str, n: &Json) -> Vec<String> {
    let m = unwrap(n);
    let data = &m["payload"]["nova_object.data"];
    let e = match d.to_event(n) {
        Ok(Some(e)) => e,
        other => return vec![format!("{name}: no event: {other:?}")],
    };
    let flavor = &data["flavor"]["nova_object.data"];
    let expect: Vec<(&str, Option<TraitValue>)> = vec![
        ("instance_id", text(&data["uuid"])),
        ("tenant_id", text(&data["tenant_id"])),
        ("user_id", text(&data["user_id"])),
        ("host", text(&data["host"])),
        ("state", text(&data["state"])),
        ("instance_type", text(&flavor["name"])),
        ("memory_mb", flavor["memory_mb"].as_i64().map(TraitValue::Int)),
        ("vcpus", flavor["vcpus"].as_i64().map(TraitValue::Int)),
        ("launched_at", when(&data["launched_at"])),
        ("deleted_at", when(&data["deleted_at"])),
    ];
    let mut expect = expect;
    match m["event_type"].as_str() {
        Some("instance.update") => {
            expect.push(("old_state", text(&data["state_update"]["nova_object.data"]["old_state"])));
        }
        Some("instance.exists") => {
            let period = &data["audit_period"]["nova_object.data"];
            expect.push(("audit_period_beginning", when(&period["audit_period_beginning"])));
            expect.push(("audit_period_ending", when(&period["audit_period_ending"])));
        }
        Some(t) if t.ends_with(".error") => {
            expect.push(("fault", text(&data["fault"]["nova_object.data"]["exception"])));
        }
        _ => {}
    }
    let mut diffs = Vec::new();
    for (trait_name, want) in expect {
        let got = e.traits.get(trait_name).cloned();
        if got != want {
            diffs.push(format!("{name} ({}): {trait_name}: got {got:?}, want {want:?}", d.flavour()));
        }
    }
    diffs
}

#[test]
fn versioned_definitions_distill_nova_samples() {
    let corpus = corpus_samples();
    let mut all = corpus.clone();
    all.push(("written instance.update".to_string(), written_sample()));
    let mut diffs = Vec::new();
    for flavour in [Flavour::StackDistiller, Flavour::Ceilometer] {
        let d = Distiller::from_yaml_str_flavoured(
            DEFINITIONS,
            Path::new("etc/event_definitions.versioned.yaml"),
            false,
            flavour,
            &PluginRegistry::default(),
        )
        .unwrap_or_else(|e| panic!("{flavour}: {e}"));
        for (name, n) in &all {
            diffs.extend(check(&d, name, n));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    eprintln!("{} corpus samples and 1 written sample checked with both flavours", corpus.len());
}

/// The written sample in detail, so the test means something without the corpus.
#[test]
fn written_sample_traits() {
    for flavour in [Flavour::StackDistiller, Flavour::Ceilometer] {
        let d =
            Distiller::from_yaml_str_flavoured(DEFINITIONS, Path::new("v.yaml"), false, flavour, &Default::default())
                .unwrap();
        let e = d.to_event(&written_sample()).unwrap().unwrap();
        let s = |v: &str| TraitValue::String(v.into());
        assert_eq!(e.event_type, "instance.update");
        assert_eq!(e.traits["instance_id"], s("0b9b4a55-2bd0-4b38-9d6c-6b5d0b0c6a11"));
        assert_eq!(e.traits["tenant_id"], s("a1b2c3"));
        assert_eq!(e.traits["state"], s("active"));
        assert_eq!(e.traits["old_state"], s("building"));
        assert_eq!(e.traits["memory_mb"], TraitValue::Int(2048));
        assert_eq!(e.traits["instance_type"], s("m1.small"));
        assert_eq!(e.traits["payload_name"], s("InstanceUpdatePayload"));
        assert!(!e.traits.contains_key("task_state") && !e.traits.contains_key("deleted_at"));
        assert!(matches!(e.traits["audit_period_ending"], TraitValue::Datetime(_)));
    }
}
