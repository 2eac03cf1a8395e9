use super::*;
use serde_json::json;
use std::path::PathBuf;

/// A copy of the sample `event_definitions.yaml` shipped with Winchester.
const SAMPLE: &str = r#"---
- event_type: compute.instance.*
  traits: &instance_traits
    tenant_id:
      fields: payload.tenant_id
    user_id:
      fields: payload.user_id
    instance_id:
      fields: payload.instance_id
    host:
      fields: publisher_id
      plugin:
        name: split
        parameters:
          segment: 1
          max_split: 1
    service:
      fields: publisher_id
      plugin: split
    memory_mb:
      type: int
      fields: payload.memory_mb
    disk_gb:
      type: int
      fields: payload.disk_gb
    root_gb:
      type: int
      fields: payload.root_gb
    ephemeral_gb:
      type: int
      fields: payload.ephemeral_gb
    vcpus:
      type: int
      fields: payload.vcpus
    instance_type_id:
      type: int
      fields: payload.instance_type_id
    instance_type:
      fields: payload.instance_type
    state:
      fields: payload.state
    os_architecture:
      fields: payload.image_meta.'org.openstack__1__architecture'
    os_version:
      fields: payload.image_meta.'org.openstack__1__os_version'
    os_distro:
      fields: payload.image_meta.'org.openstack__1__os_distro'
    launched_at:
      type: datetime
      fields: payload.launched_at
    deleted_at:
      type: datetime
      fields: payload.deleted_at
- event_type: compute.instance.exists
  traits:
    <<: *instance_traits
    audit_period_beginning:
      type: datetime
      fields: payload.audit_period_beginning
    audit_period_ending:
      type: datetime
      fields: payload.audit_period_ending
"#;

fn file() -> PathBuf {
    PathBuf::from("event_definitions.yaml")
}

fn sample(catch_all: bool) -> Distiller {
    Distiller::from_yaml_str(SAMPLE, &file(), catch_all).unwrap()
}

fn load_err(text: &str) -> ConfigErrors {
    Distiller::from_yaml_str(text, &file(), false).unwrap_err()
}

fn dt(s: &str) -> TraitValue {
    TraitValue::Datetime(parse_iso8601(s).unwrap())
}

fn s(v: &str) -> TraitValue {
    TraitValue::String(v.into())
}

fn notification(event_type: &str, payload: Json) -> Json {
    json!({
        "event_type": event_type,
        "message_id": "4f0b9a51-0c8c-4e0b-9c43-4b4a9c1f0a11",
        "priority": "INFO",
        "publisher_id": "compute.host-1-2-3",
        "timestamp": "2014-08-01 20:04:30.803826",
        "_context_request_id": "req-abc",
        "_context_tenant": "ctx-tenant",
        "payload": payload,
    })
}

fn instance_payload() -> Json {
    json!({
        "tenant_id": "tenant-7",
        "user_id": "user-9",
        "instance_id": "inst-1",
        "memory_mb": 2048,
        "disk_gb": 20,
        "root_gb": "20",
        "ephemeral_gb": "",
        "vcpus": 2.0,
        "instance_type_id": 5,
        "instance_type": "m1.small",
        "state": "active",
        "launched_at": "2014-08-01 20:04:00.123456",
        "deleted_at": "",
        "image_meta": {
            "org.openstack__1__os_distro": "ubuntu",
            "org.openstack__1__architecture": "x86_64",
            "base_image_ref": "img-1"
        },
        "extra": {"nested": [1, 2]}
    })
}

#[test]
fn create_end() {
    let d = sample(false);
    let e = d.to_event(&notification("compute.instance.create.end", instance_payload())).unwrap().unwrap();
    assert_eq!(e.message_id, "4f0b9a51-0c8c-4e0b-9c43-4b4a9c1f0a11");
    assert_eq!(e.event_type, "compute.instance.create.end");
    assert_eq!(TraitValue::Datetime(e.timestamp), dt("2014-08-01T20:04:30.803826Z"));
    let t = &e.traits;
    assert_eq!(t["tenant_id"], s("tenant-7"));
    assert_eq!(t["user_id"], s("user-9"));
    assert_eq!(t["instance_id"], s("inst-1"));
    assert_eq!(t["host"], s("host-1-2-3"));
    assert_eq!(t["service"], s("compute"));
    assert_eq!(t["request_id"], s("req-abc"));
    assert_eq!(t["memory_mb"], TraitValue::Int(2048));
    assert_eq!(t["disk_gb"], TraitValue::Int(20));
    assert_eq!(t["root_gb"], TraitValue::Int(20), "int from a string");
    assert_eq!(t["vcpus"], TraitValue::Int(2), "int from an integral float");
    assert!(!t.contains_key("ephemeral_gb"), "empty string for int is omitted");
    assert!(!t.contains_key("deleted_at"), "empty string for datetime is omitted");
    assert!(!t.contains_key("os_version"), "missing field is omitted");
    assert_eq!(t["os_distro"], s("ubuntu"));
    assert_eq!(t["os_architecture"], s("x86_64"));
    assert_eq!(t["launched_at"], dt("2014-08-01T20:04:00.123456Z"));
    assert!(!t.contains_key("audit_period_beginning"));
    assert_eq!(t.len(), 16);
}

#[test]
fn exists_gets_merged_traits() {
    let d = sample(false);
    let mut p = instance_payload();
    p["audit_period_beginning"] = json!("2014-08-01 00:00:00");
    p["audit_period_ending"] = json!("2014-08-02T00:00:00Z");
    let e = d.to_event(&notification("compute.instance.exists", p)).unwrap().unwrap();
    assert_eq!(e.traits["audit_period_beginning"], dt("2014-08-01T00:00:00Z"));
    assert_eq!(e.traits["audit_period_ending"], dt("2014-08-02T00:00:00Z"));
    // The merged instance traits are there too.
    assert_eq!(e.traits["instance_id"], s("inst-1"));
    assert_eq!(e.traits["host"], s("host-1-2-3"));
    assert_eq!(e.traits["memory_mb"], TraitValue::Int(2048));
}

#[test]
fn delete_end() {
    let d = sample(false);
    let mut p = instance_payload();
    p["deleted_at"] = json!("2014-08-01T21:00:00.5+02:00");
    p["state"] = json!("deleted");
    let e = d.to_event(&notification("compute.instance.delete.end", p)).unwrap().unwrap();
    assert_eq!(e.traits["deleted_at"], dt("2014-08-01T19:00:00.5Z"));
    assert_eq!(e.traits["state"], s("deleted"));
}

#[test]
fn bad_int_names_trait_and_path() {
    let d = sample(false);
    let mut p = instance_payload();
    p["memory_mb"] = json!("abc");
    let err = d.to_event(&notification("compute.instance.create.end", p)).unwrap_err();
    match &err {
        DistillError::Conversion { definition, trait_name, path, value, to, message_id } => {
            assert_eq!(definition, "compute.instance.*");
            assert_eq!(trait_name, "memory_mb");
            assert_eq!(path, "payload.memory_mb");
            assert_eq!(value, "\"abc\"");
            assert_eq!(*to, TraitType::Int);
            assert_eq!(message_id.as_deref(), Some("4f0b9a51-0c8c-4e0b-9c43-4b4a9c1f0a11"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("memory_mb") && msg.contains("abc") && msg.contains("4f0b9a51"), "{msg}");
    let mut p = instance_payload();
    p["launched_at"] = json!("yesterday");
    let err = d.to_event(&notification("compute.instance.create.end", p)).unwrap_err();
    assert!(matches!(err, DistillError::Conversion { ref trait_name, .. } if trait_name == "launched_at"));
    // Python's int(): a float truncates, a decimal string does not convert.
    let mut p = instance_payload();
    p["memory_mb"] = json!(1.5);
    let e = d.to_event(&notification("compute.instance.create.end", p)).unwrap().unwrap();
    assert_eq!(e.traits["memory_mb"], TraitValue::Int(1));
    let mut p = instance_payload();
    p["memory_mb"] = json!("1.5");
    assert!(d.to_event(&notification("compute.instance.create.end", p)).is_err());
}

#[test]
fn oslo_v2_envelope() {
    let d = sample(false);
    let inner = notification("compute.instance.create.end", instance_payload());
    let wrapped = json!({"oslo.version": "2.0", "oslo.message": inner.to_string()});
    let a = d.to_event(&wrapped).unwrap().unwrap();
    let b = d.to_event(&inner).unwrap().unwrap();
    assert_eq!(a, b);
    let bad = json!({"oslo.version": "2.0", "oslo.message": "{not json"});
    assert!(matches!(d.to_event(&bad), Err(DistillError::BadEnvelope { .. })));
    let bad = json!({"oslo.version": "2.0"});
    assert!(matches!(d.to_event(&bad), Err(DistillError::BadEnvelope { .. })));
}

#[test]
fn envelope_errors() {
    let d = sample(true);
    let mut n = notification("compute.instance.create.end", json!({}));
    n.as_object_mut().unwrap().remove("message_id");
    let e = d.to_event(&n).unwrap_err();
    assert!(matches!(e, DistillError::MissingKey { key: "message_id", .. }));
    assert!(e.to_string().contains("message_id"));
    let mut n = notification("compute.instance.create.end", json!({}));
    n.as_object_mut().unwrap().remove("event_type");
    let e = d.to_event(&n).unwrap_err();
    assert!(matches!(e, DistillError::MissingKey { key: "event_type", .. }));
    assert_eq!(e.message_id(), Some("4f0b9a51-0c8c-4e0b-9c43-4b4a9c1f0a11"));
    // timestamp falls back to _context_timestamp, then is an error.
    let mut n = notification("compute.instance.create.end", json!({}));
    n.as_object_mut().unwrap().remove("timestamp");
    n["_context_timestamp"] = json!("2014-08-01T20:04:00Z");
    let ev = d.to_event(&n).unwrap().unwrap();
    assert_eq!(TraitValue::Datetime(ev.timestamp), dt("2014-08-01T20:04:00Z"));
    n.as_object_mut().unwrap().remove("_context_timestamp");
    assert!(matches!(d.to_event(&n), Err(DistillError::MissingKey { key: "timestamp", .. })));
    n["timestamp"] = json!("garbage");
    assert!(matches!(d.to_event(&n), Err(DistillError::InvalidKey { key: "timestamp", .. })));
    assert_eq!(d.to_event(&json!([1])), Err(DistillError::NotAnObject));
    // Over-long values fail validation, naming the message_id.
    let n = notification("compute.instance.create.end", json!({"user_id": "u".repeat(9000)}));
    let e = d.to_event(&n).unwrap_err();
    assert!(matches!(e, DistillError::InvalidEvent { .. }));
    assert!(e.to_string().contains("4f0b9a51"), "{e}");
}

#[test]
fn unmatched_and_catch_all() {
    let n = notification("image.upload", json!({"tenant_id": "t1", "size": 5}));
    assert_eq!(sample(false).to_event(&n).unwrap(), None);
    let d = sample(true);
    assert!(d.implicit_catch_all().is_some());
    let e = d.to_event(&n).unwrap().unwrap();
    let names: Vec<&str> = e.traits.keys().map(String::as_str).collect();
    assert_eq!(names, ["request_id", "service", "tenant_id"]);
    assert_eq!(e.traits["service"], s("compute.host-1-2-3"));
    assert_eq!(e.traits["tenant_id"], s("t1"));
    // tenant_id falls back to _context_tenant.
    let n = notification("image.upload", json!({}));
    assert_eq!(d.to_event(&n).unwrap().unwrap().traits["tenant_id"], s("ctx-tenant"));
    // An explicit catch-all suppresses the implicit one.
    let text = "- event_type: '*'\n  traits: {}\n";
    let d = Distiller::from_yaml_str(text, &file(), true).unwrap();
    assert!(d.implicit_catch_all().is_none());
    // One with an exclude does not.
    let text = "- event_type: ['*', '!image.*']\n  traits: {}\n";
    let d = Distiller::from_yaml_str(text, &file(), true).unwrap();
    assert!(d.implicit_catch_all().is_some());
    let ev = d.to_event(&notification("image.upload", json!({}))).unwrap().unwrap();
    assert_eq!(ev.traits.len(), 3);
}

#[test]
fn last_listed_match_wins() {
    let text = r#"
- event_type: '*'
  traits:
    which: {fields: payload.a}
- event_type: compute.instance.create.*
  traits:
    which: {fields: payload.b}
    service: {fields: payload.svc}
"#;
    let d = Distiller::from_yaml_str(text, &file(), true).unwrap();
    assert!(d.implicit_catch_all().is_none());
    let p = json!({"a": "generic", "b": "specific", "svc": "mine"});
    let e = d.to_event(&notification("compute.instance.create.end", p.clone())).unwrap().unwrap();
    assert_eq!(e.traits["which"], s("specific"));
    assert_eq!(e.traits["service"], s("mine"), "default trait overridden by name");
    let e = d.to_event(&notification("compute.instance.delete.end", p)).unwrap().unwrap();
    assert_eq!(e.traits["which"], s("generic"));
    assert_eq!(e.traits["service"], s("compute.host-1-2-3"));
}

#[test]
fn envelope_named_traits_are_skipped() {
    let text = r#"
- event_type: '*'
  traits:
    timestamp: {fields: payload.when, type: datetime}
    message_id: {fields: payload.id}
"#;
    let d = Distiller::from_yaml_str(text, &file(), false).unwrap();
    let n = notification("x.y", json!({"when": "2020-01-01T00:00:00Z", "id": "other"}));
    let e = d.to_event(&n).unwrap().unwrap();
    assert_eq!(e.message_id, "4f0b9a51-0c8c-4e0b-9c43-4b4a9c1f0a11");
    assert_eq!(TraitValue::Datetime(e.timestamp), dt("2014-08-01T20:04:30.803826Z"));
    assert!(!e.traits.contains_key("timestamp") && !e.traits.contains_key("message_id"));
}

#[test]
fn fields_lists_types_and_wildcards() {
    let text = r#"
- event_type: test.*
  traits:
    first:
      fields: [payload.missing, payload.nulled, "payload['b']", payload.a]
    weight: {fields: payload.weight, type: float}
    wstr: {fields: payload.wstr, type: float}
    flag: {fields: payload.flag}
    num_text: {fields: payload.weight}
    any_tag: {fields: 'payload.tags.*'}
    first_tag: {fields: 'payload.tags[*]'}
    second: {fields: '$.payload.list[1]'}
    obj: {fields: payload.obj}
"#;
    let d = Distiller::from_yaml_str(text, &file(), false).unwrap();
    let p = json!({"nulled": null, "a": "A", "b": "B", "weight": 3.5, "wstr": " 2.25", "flag": true,
                   "tags": ["t0", "t1"], "list": [1, 2], "obj": {"k": 1}});
    let e = d.to_event(&notification("test.x", p)).unwrap().unwrap();
    assert_eq!(e.traits["first"], s("B"));
    assert_eq!(e.traits["weight"], TraitValue::Float(3.5));
    assert_eq!(e.traits["wstr"], TraitValue::Float(2.25));
    // Text is Python's str() of the value, as in StackDistiller.
    assert_eq!(e.traits["flag"], s("True"));
    assert_eq!(e.traits["num_text"], s("3.5"));
    // As in jsonpath-rw, `*` selects the fields of an object, nothing of a list; `[*]` the elements.
    assert!(!e.traits.contains_key("any_tag"));
    assert_eq!(e.traits["first_tag"], s("t0"));
    assert_eq!(e.traits["second"], s("2"));
    assert_eq!(e.traits["obj"], s("{'k': 1}"));
}

#[test]
fn split_plugin() {
    let text = r#"
- event_type: '*'
  traits:
    first: {fields: publisher_id, plugin: split}
    rest:
      fields: publisher_id
      plugin: {name: split, parameters: {segment: 1, max_split: 1}}
    second:
      fields: publisher_id
      plugin: {name: split, parameters: {segment: 1}}
    dash:
      fields: publisher_id
      plugin: {name: split, parameters: {separator: '-', segment: -1}}
    oob:
      fields: publisher_id
      plugin: {name: split, parameters: {segment: 9}}
    none:
      fields: payload.nothing
      plugin: split
"#;
    let d = Distiller::from_yaml_str(text, &file(), false).unwrap();
    let mut n = notification("x.y", json!({}));
    n["publisher_id"] = json!("compute.host-1-2-3.example");
    let e = d.to_event(&n).unwrap().unwrap();
    assert_eq!(e.traits["first"], s("compute"));
    assert_eq!(e.traits["rest"], s("host-1-2-3.example"));
    assert_eq!(e.traits["second"], s("host-1-2-3"));
    assert_eq!(e.traits["dash"], s("3.example"));
    assert!(!e.traits.contains_key("oob"));
    assert!(!e.traits.contains_key("none"));
}

#[test]
fn bitfield_plugin() {
    let text = r#"
- event_type: '*'
  traits:
    bits:
      type: int
      fields: [payload.a, payload.b, payload.c, payload.d, "payload['e.f']"]
      plugin:
        name: bitfield
        parameters:
          initial_bitfield: 0x400
          flags:
            - {path: payload.a, bit: 1}
            - {path: payload.b, bit: 4, value: 7}
            - {path: payload.c, bit: 5, value: nope}
            - {path: payload.zz, bit: 6}
            - {path: "payload.'e.f'", bit: 0, value: "yes"}
    empty:
      type: int
      fields: payload.none
      plugin: {name: bitfield, parameters: {initial_bitfield: 3}}
    as_text:
      fields: payload.a
      plugin: {name: bitfield, parameters: {flags: [{path: payload.a, bit: 3}]}}
"#;
    let d = Distiller::from_yaml_str(text, &file(), false).unwrap();
    let p = json!({"a": "x", "b": 7.0, "c": "yes", "e.f": "yes"});
    let e = d.to_event(&notification("x.y", p)).unwrap().unwrap();
    assert_eq!(e.traits["bits"], TraitValue::Int(0x413));
    assert_eq!(e.traits["empty"], TraitValue::Int(3));
    assert_eq!(e.traits["as_text"], s("8"));
    let p = json!({"a": "x", "b": 7});
    let e = d.to_event(&notification("x.y", p)).unwrap().unwrap();
    assert_eq!(e.traits["bits"], TraitValue::Int(0x412));
}

fn messages(errs: &ConfigErrors) -> Vec<String> {
    errs.0.iter().map(ToString::to_string).collect()
}

#[test]
fn definition_errors() {
    let one = |text: &str, needle: &str| {
        let errs = load_err(text);
        let all = messages(&errs).join("\n");
        assert!(all.contains(needle), "expected {needle:?} in:\n{all}");
        assert!(all.contains("event_definitions.yaml"), "{all}");
        all
    };
    let all = one("- event_type: a.b\n  traits:\n    t: {fields: payload.x, type: string}\n", "unknown trait type");
    assert!(all.contains("traits.t.type") && all.contains("event definition #1") && all.contains("a.b"), "{all}");
    let all =
        one("- event_type: a.b\n  traits:\n    t: {fields: payload.x, plugin: shout}\n", "unknown plugin \"shout\"");
    assert!(all.contains("traits.t.plugin"), "{all}");
    one("- event_type: a.b\n  traits:\n    t: {fields: payload.x, plugin: {parameters: {}}}\n", "plugin has no name");
    let all = one("- event_type: a.b\n  traits:\n    t: {fields: \"payload.'x\"}\n", "unterminated");
    assert!(all.contains("traits.t.fields") && all.contains("payload.'x"), "{all}");
    let all = one("- event_type: a.b\n  traits:\n    t: {fields: [ok, 'bad[']}\n", "invalid field path");
    assert!(all.contains("traits.t.fields[1]"), "{all}");
    one("- event_type: a.b\n  traits:\n    t: {type: int}\n", "missing required key fields");
    one("- event_type: a.b\n  traits:\n    t: {fields: x, color: red}\n", "unknown key \"color\"");
    one("- traits: {}\n", "missing required key event_type");
    one("- event_type: a.b\n", "missing required key traits");
    one("- event_type: a.b\n  traits: {}\n  extra: 1\n", "unknown key \"extra\"");
    one("- event_type: a.b\n  traits: {}\n  7: 1\n", "unknown key 7");
    let all = one("- event_type: a.b\n  traits:\n    t: {fields: x, type: 5}\n", "unknown trait type 5");
    assert!(all.contains("traits.t.type"), "{all}");
    one("- event_type: 5\n  traits: {}\n", "event_type");
    one("- event_type: a.b\n  traits: []\n", "traits must be a map");
    one("event_type: a.b\n", "must be a list");
    one(
        "- event_type: a.b\n  traits:\n    t: {fields: x, plugin: {name: split, parameters: {separator: ''}}}\n",
        "separator",
    );
    one(
        "- event_type: a.b\n  traits:\n    t: {fields: x, plugin: {name: split, parameters: {segmnt: 1}}}\n",
        "unknown split parameter",
    );
    one("- event_type: a.b\n  traits:\n    t: {fields: x, plugin: {name: bitfield, parameters: {flags: [{path: x}]}}}\n", "flag has no bit");
    one("- event_type: a.b\n  traits:\n    t: {fields: x, plugin: {name: bitfield, parameters: {flags: [{path: x, bit: 64}]}}}\n", "bit must be");
    one("- event_type: a.b\n  traits:\n    t: {fields: x, plugin: {name: bitfield, parameters: {flags: [{path: 'x.*', bit: 1}]}}}\n", "wildcards");
    one("- event_type: a.b\n  traits: [\n", "invalid YAML");
    // Several problems are all reported, in different definitions.
    let errs = load_err("- event_type: a.b\n  traits:\n    t: {fields: x, type: nope}\n- event_type: c.d\n  traits:\n    u: {fields: y, plugin: nope}\n");
    assert_eq!(errs.0.len(), 2);
    assert!(messages(&errs)[1].contains("event definition #2"));
    // Empty file: no definitions.
    assert!(Distiller::from_yaml_str("", &file(), false).unwrap().definitions().is_empty());
}

#[test]
fn iso8601() {
    let p = |s: &str| parse_iso8601(s).map(|d| crate::event::format_datetime(&d));
    assert_eq!(p("2013-08-08 21:06:37.803826").as_deref(), Some("2013-08-08T21:06:37.803826Z"));
    assert_eq!(p("2014-08-01T20:04:00Z").as_deref(), Some("2014-08-01T20:04:00Z"));
    assert_eq!(p("2014-08-01T20:04:00.123+02:00").as_deref(), Some("2014-08-01T18:04:00.123Z"));
    assert_eq!(p("2014-08-01T20:04:00-0130").as_deref(), Some("2014-08-01T21:34:00Z"));
    assert_eq!(p("2014-08-01T20:04").as_deref(), Some("2014-08-01T20:04:00Z"));
    assert_eq!(p("2014-08-01").as_deref(), Some("2014-08-01T00:00:00Z"));
    for bad in [
        "",
        "yesterday",
        "2014-08-01X20:04:00",
        "2014-13-01 00:00:00",
        "2014-08-01T25:00:00",
        "2014-08-01T20:04:00+2",
        "2014-08-01T20:04:00é",
    ] {
        assert_eq!(p(bad), None, "{bad:?}");
    }
}

#[test]
fn shared_sample_file() {
    let path =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/winchester-etc/event_definitions.yaml"));
    if !path.exists() {
        println!("skipped: {} not found", path.display());
        return;
    }
    let d = Distiller::load(&path, false).unwrap();
    assert_eq!(d.definitions().len(), 2);
    let mut p = instance_payload();
    p["audit_period_beginning"] = json!("2014-08-01 00:00:00");
    let e = d.to_event(&notification("compute.instance.exists", p)).unwrap().unwrap();
    assert_eq!(e.traits["audit_period_beginning"], dt("2014-08-01T00:00:00Z"));
    assert_eq!(e.traits["host"], s("host-1-2-3"));
    assert_eq!(
        e,
        sample(false)
            .to_event(&notification("compute.instance.exists", {
                let mut p = instance_payload();
                p["audit_period_beginning"] = json!("2014-08-01 00:00:00");
                p
            }))
            .unwrap()
            .unwrap()
    );
    assert!(Distiller::load(path.with_file_name("does-not-exist.yaml"), false).is_err());
}

/// A plugin from outside: counts the matches, or fails when told to.
#[derive(Debug)]
struct Count {
    fail_on: Option<String>,
}

impl TraitPlugin for Count {
    fn trait_value(&self, matches: &[(String, Json)]) -> Result<Option<Json>, String> {
        if matches.iter().any(|(_, v)| Some(v.to_string()) == self.fail_on) {
            return Err("refused".into());
        }
        Ok((!matches.is_empty()).then(|| json!(matches.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join("+"))))
    }
    fn blocking(&self) -> bool {
        false
    }
}

/// Registered plugins get their parameters and the (path, value) matches,
/// override built-ins of the same name, and their failures name the trait.
#[test]
fn external_plugins() {
    let mut reg = PluginRegistry::default();
    let factory: PluginFactory = std::sync::Arc::new(|params| match params.get("fail_on") {
        Some(Json::String(s)) => Ok(std::sync::Arc::new(Count { fail_on: Some(format!("{s:?}")) }) as _),
        None => Ok(std::sync::Arc::new(Count { fail_on: None }) as _),
        Some(other) => Err(format!("fail_on must be a string, found {other}")),
    });
    reg.register("count", factory.clone()).register("split", factory);
    let yaml = r#"
- event_type: compute.*
  traits:
    paths: {fields: [payload.a, payload.b], plugin: {name: count, parameters: {fail_on: bad}}}
    overridden: {fields: payload.a, plugin: split}
"#;
    let d = Distiller::from_yaml_str_with(yaml, &file(), false, &reg).unwrap();
    assert!(!d.has_blocking_plugins());
    let e = d.to_event(&notification("compute.x", json!({"a": "1", "b": 2}))).unwrap().unwrap();
    assert_eq!(e.traits["paths"], s("payload.a+payload.b"));
    assert_eq!(e.traits["overridden"], s("payload.a"));
    let err = d.to_event(&notification("compute.x", json!({"a": "bad"}))).unwrap_err();
    assert!(
        matches!(&err, DistillError::Plugin { trait_name, plugin, .. } if trait_name == "paths" && plugin == "count")
    );
    assert!(err.to_string().contains("refused"), "{err}");
    let bad = Distiller::from_yaml_str_with(
        "- {event_type: x, traits: {t: {fields: a, plugin: {name: count, parameters: {fail_on: 1}}}}}\n- {event_type: y, traits: {t: {fields: a, plugin: nope}}}\n",
        &file(),
        false,
        &reg,
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("plugin \"count\": fail_on must be a string"), "{bad}");
    assert!(bad.contains("unknown plugin \"nope\" (known plugins: split, bitfield, count)"), "{bad}");
}
