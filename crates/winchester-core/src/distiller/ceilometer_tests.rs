//! The ceilometer flavour's rules, one test each.

use super::super::python::{py_eq, py_float_repr, py_split};
use super::super::{Distiller, Flavour, PluginRegistry};
use super::*;
use serde_json::json;
use std::path::Path;

fn load(yaml: &str) -> Distiller {
    load_catch_all(yaml, false)
}

fn load_catch_all(yaml: &str, catch_all: bool) -> Distiller {
    Distiller::from_yaml_str_flavoured(
        yaml,
        Path::new("d.yaml"),
        catch_all,
        Flavour::Ceilometer,
        &PluginRegistry::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(yaml: &str) -> String {
    Distiller::from_yaml_str_flavoured(
        yaml,
        Path::new("d.yaml"),
        false,
        Flavour::Ceilometer,
        &PluginRegistry::default(),
    )
    .unwrap_err()
    .to_string()
}

/// A wire notification as nova sends it.
fn wire() -> Json {
    json!({
        "message_id": "m-1",
        "event_type": "compute.instance.create.end",
        "timestamp": "2024-01-02 03:04:05.123456",
        "publisher_id": "compute.host-1",
        "priority": "INFO",
        "_unique_id": "u",
        "_context_request_id": "req-1",
        "_context_project_id": "ctx-project",
        "_context_user_id": "ctx-user",
        "_context_tenant": "ctx-tenant",
        "_context_msg_id": "gone",
        "_context_timestamp": "2020-01-01T00:00:00",
        "payload": {"instance_id": "i-1", "tenant_id": "p-1", "memory_mb": 512}
    })
}

fn traits(d: &Distiller, n: &Json) -> BTreeMap<String, TraitValue> {
    d.to_event(n).unwrap().expect("an event").traits
}

fn s(v: &str) -> TraitValue {
    TraitValue::String(v.into())
}

#[test]
fn body_is_what_oslo_messaging_hands_ceilometer() {
    let mut n = wire();
    n["_timeout"] = json!(30);
    let b = body(&n).unwrap();
    assert_eq!(
        b,
        json!({
            "ctxt": {"request_id": "req-1", "project_id": "ctx-project", "user_id": "ctx-user",
                     "tenant": "ctx-tenant", "timestamp": "2020-01-01T00:00:00", "client_timeout": 30},
            "publisher_id": "compute.host-1",
            "event_type": "compute.instance.create.end",
            "payload": {"instance_id": "i-1", "tenant_id": "p-1", "memory_mb": 512},
            "metadata": {"message_id": "m-1", "timestamp": "2024-01-02 03:04:05.123456"}
        })
    );
    // Absent keys are null; client_timeout is always there.
    let b = body(&json!({"event_type": "x"})).unwrap();
    assert_eq!(b["ctxt"], json!({"client_timeout": null}));
    assert_eq!(b["metadata"], json!({"message_id": null, "timestamp": null}));
}

#[test]
fn oslo_envelope_needs_both_keys_and_version_2_0() {
    let inner = serde_json::to_string(&wire()).unwrap();
    let b = body(&json!({"oslo.version": "2.0", "oslo.message": inner})).unwrap();
    assert_eq!(b["ctxt"]["request_id"], "req-1");
    // Only one of the keys: not an envelope, the message as it is.
    let b = body(&json!({"oslo.message": inner, "event_type": "x"})).unwrap();
    assert_eq!(b["event_type"], "x");
    for bad in [json!("3.0"), json!("2.1"), json!(2)] {
        let e = body(&json!({"oslo.version": bad, "oslo.message": inner})).unwrap_err();
        assert!(matches!(e, DistillError::BadEnvelope { .. }), "{e}");
    }
    assert!(matches!(
        body(&json!({"oslo.version": "2.0", "oslo.message": "{"})).unwrap_err(),
        DistillError::BadEnvelope { .. }
    ));
    assert_eq!(body(&json!([1])).unwrap_err(), DistillError::NotAnObject);
}

#[test]
fn default_traits_come_from_publisher_context_and_payload() {
    let d = load_catch_all("[]", true);
    let t = traits(&d, &wire());
    assert_eq!(t["service"], s("compute.host-1"));
    assert_eq!(t["request_id"], s("req-1"));
    assert_eq!(t["project_id"], s("p-1"));
    assert_eq!(t["tenant_id"], s("p-1"));
    assert_eq!(t["user_id"], s("ctx-user"));
    assert_eq!(t.len(), 5);
    // Without payload.tenant_id both fall back to the context's project_id,
    // never to `_context_tenant` (StackDistiller's fallback).
    let mut n = wire();
    n["payload"] = json!({"user_id": "p-user"});
    let t = traits(&d, &n);
    assert_eq!(
        (&t["project_id"], &t["tenant_id"], &t["user_id"]),
        (&s("ctx-project"), &s("ctx-project"), &s("p-user"))
    );
    n.as_object_mut().unwrap().remove("_context_project_id");
    let t = traits(&d, &n);
    assert!(!t.contains_key("tenant_id") && !t.contains_key("project_id"), "{t:?}");
}

#[test]
fn definitions_read_the_context_not_the_wire_keys() {
    let d = load(
        "- event_type: '*'
  traits:
    ctx_user: {fields: ctxt.user_id}
    trustor: {fields: ['ctxt.trustor_user_id', 'ctxt.user_id']}
    wire_key: {fields: _context_user_id}
    priority: {fields: priority}
    mid: {fields: metadata.message_id}
",
    );
    let mut n = wire();
    let t = traits(&d, &n);
    assert_eq!((&t["ctx_user"], &t["trustor"], &t["mid"]), (&s("ctx-user"), &s("ctx-user"), &s("m-1")));
    assert!(!t.contains_key("wire_key") && !t.contains_key("priority"), "{t:?}");
    n["_context_trustor_user_id"] = json!("trustor");
    assert_eq!(traits(&d, &n)["trustor"], s("trustor"));
}

#[test]
fn events_without_traits_are_kept() {
    let d = load("- event_type: '*'\n  traits: {}\n");
    let n = json!({"message_id": "m", "event_type": "a.b", "timestamp": "2024-01-01T00:00:00Z", "priority": "info"});
    let e = d.to_event(&n).unwrap().unwrap();
    assert!(e.traits.is_empty());
    assert_eq!(e.timestamp.to_rfc3339(), "2024-01-01T00:00:00+00:00");
}

#[test]
fn timestamp_is_the_notifications_only() {
    let d = load("- event_type: '*'\n  traits: {}\n");
    let mut n = wire();
    n.as_object_mut().unwrap().remove("timestamp");
    // `_context_timestamp` is context, not a fallback.
    assert!(matches!(d.to_event(&n).unwrap_err(), DistillError::MissingKey { key: "timestamp", .. }));
    n["timestamp"] = json!("soon");
    assert!(matches!(d.to_event(&n).unwrap_err(), DistillError::InvalidKey { key: "timestamp", .. }));
    // No definition: dropped before the timestamp is read.
    let d = load("- event_type: 'image.*'\n  traits: {}\n");
    assert_eq!(d.to_event(&n).unwrap(), None);
}

#[test]
fn missing_message_id_or_event_type_is_an_error() {
    let d = load_catch_all("[]", true);
    let mut n = wire();
    n.as_object_mut().unwrap().remove("message_id");
    assert!(matches!(d.to_event(&n).unwrap_err(), DistillError::MissingKey { key: "message_id", .. }));
    let mut n = wire();
    n.as_object_mut().unwrap().remove("event_type");
    assert!(matches!(d.to_event(&n).unwrap_err(), DistillError::MissingKey { key: "event_type", .. }));
    // No definition at all: nothing looks at the event type.
    assert_eq!(load("[]").to_event(&n).unwrap(), None);
}

#[test]
fn text_traits_are_cut_at_255_characters() {
    let d = load("- event_type: '*'\n  traits: {long: {fields: payload.long}}\n");
    let mut n = wire();
    n["payload"]["long"] = json!("é".repeat(300));
    assert_eq!(traits(&d, &n)["long"], s(&"é".repeat(255)));
}

#[test]
fn a_failed_conversion_fails_the_notification() {
    let d = load("- event_type: '*'\n  traits: {mem: {type: int, fields: payload.memory_mb}}\n");
    let mut n = wire();
    n["payload"]["memory_mb"] = json!("4.5");
    match d.to_event(&n).unwrap_err() {
        DistillError::Conversion { trait_name, to, message_id, .. } => {
            assert_eq!((trait_name.as_str(), to, message_id.as_deref()), ("mem", TraitType::Int, Some("m-1")))
        }
        other => panic!("{other}"),
    }
    // '' for a non-text trait: no trait, no error.
    n["payload"]["memory_mb"] = json!("");
    assert!(!traits(&d, &n).contains_key("mem"));
}

#[test]
fn values_convert_as_python_does() {
    let int = |v: Json| convert(&v, TraitType::Int);
    assert_eq!(int(json!(" 42 ")), Some(TraitValue::Int(42)));
    assert_eq!(int(json!("-1_000")), Some(TraitValue::Int(-1000)));
    assert_eq!(int(json!(3.9)), Some(TraitValue::Int(3)));
    assert_eq!(int(json!(-3.9)), Some(TraitValue::Int(-3)));
    assert_eq!(int(json!(true)), Some(TraitValue::Int(1)));
    for bad in [json!("4.5"), json!("1__0"), json!("_1"), json!("0x10"), json!([1]), json!({})] {
        assert_eq!(int(bad.clone()), None, "{bad}");
    }
    let float = |v: Json| convert(&v, TraitType::Float);
    assert_eq!(float(json!(" 1e3 ")), Some(TraitValue::Float(1000.0)));
    assert_eq!(float(json!("1_0.5")), Some(TraitValue::Float(10.5)));
    assert_eq!(float(json!(false)), Some(TraitValue::Float(0.0)));
    assert!(matches!(float(json!("-inf")), Some(TraitValue::Float(f)) if f == f64::NEG_INFINITY));
    assert_eq!(float(json!("1.5.5")), None);
    let text = |v: Json| convert(&v, TraitType::Text);
    assert_eq!(text(json!(1.0)), Some(s("1.0")));
    assert_eq!(text(json!(1e16)), Some(s("1e+16")));
    assert_eq!(text(json!(0.00001)), Some(s("1e-05")));
    assert_eq!(text(json!(true)), Some(s("True")));
    assert_eq!(text(json!({"a": [1, null, "it's"], "b": "x"})), Some(s(r#"{'a': [1, None, "it's"], 'b': 'x'}"#)));
    assert_eq!(text(json!(["a\nb", "\u{0}"])), Some(s(r"['a\nb', '\x00']")));
    assert!(matches!(convert(&json!("2024-01-02T03:04:05+01:00"), TraitType::Datetime),
        Some(TraitValue::Datetime(d)) if d.to_rfc3339() == "2024-01-02T02:04:05+00:00"));
    assert_eq!(convert(&json!(5), TraitType::Datetime), None);
}

#[test]
fn float_repr_matches_python() {
    for (f, want) in [
        (0.1, "0.1"),
        (100.0, "100.0"),
        (1e15, "1000000000000000.0"),
        (1e16, "1e+16"),
        (1.5e-7, "1.5e-07"),
        (0.0001, "0.0001"),
        (-2.5, "-2.5"),
        (1.2345e100, "1.2345e+100"),
        (123456789.123, "123456789.123"),
        (-0.0, "-0.0"),
    ] {
        assert_eq!(py_float_repr(f), want);
    }
}

#[test]
fn short_trait_form_case_insensitive_types_and_unknown_keys() {
    let d = load(
        "- event_type: '*'
  description: ignored
  traits:
    inst: payload.instance_id
    both: [payload.nope, payload.instance_id]
    mem: {type: INT, fields: payload.memory_mb, note: ignored}
",
    );
    let t = traits(&d, &wire());
    assert_eq!((&t["inst"], &t["both"], &t["mem"]), (&s("i-1"), &s("i-1"), &TraitValue::Int(512)));
}

#[test]
fn a_trait_named_like_a_default_takes_its_place() {
    let d = load("- event_type: '*'\n  traits: {service: {fields: payload.instance_id}}\n");
    let def = &d.definitions()[0];
    let names: Vec<&str> = def.traits.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["service", "request_id", "project_id", "user_id", "tenant_id"]);
    assert_eq!(traits(&d, &wire())["service"], s("i-1"));
}

#[test]
fn split_uses_the_first_match_that_has_the_segment() {
    let d = load(
        "- event_type: '*'
  traits:
    host:
      fields: [payload.short, publisher_id]
      plugin: {name: split, parameters: {segment: 1, max_split: 1}}
    last:
      fields: payload.words
      plugin: {name: split, parameters: {separator: ~, segment: -1}}
    num:
      fields: payload.memory_mb
      plugin: {name: split, parameters: {separator: '1'}}
",
    );
    let mut n = wire();
    n["payload"]["short"] = json!("nodots");
    n["payload"]["words"] = json!("  a  b\tc  ");
    n["payload"]["memory_mb"] = json!(5125);
    let t = traits(&d, &n);
    assert_eq!((&t["host"], &t["last"], &t["num"]), (&s("host-1"), &s("c"), &s("5")));
    assert_eq!(py_split("a b  c ", None, Some(1)), ["a", "b  c "]);
    assert_eq!(py_split("a.b.c", Some("."), Some(0)), ["a.b.c"]);
}

#[test]
fn bitfield_compares_the_last_match_as_python_does() {
    let d = load(
        "- event_type: '*'
  traits:
    flags:
      type: int
      fields: [payload.a, payload.b, payload.c]
      plugin:
        name: bitfield
        parameters:
          initial_bitfield: 256
          flags:
            - {path: payload.a, bit: 0, value: 1}
            - {path: payload.b, bit: '1'}
            - {path: payload.c, bit: 2, value: x, comment: ignored}
",
    );
    let mut n = wire();
    n["payload"] = json!({"a": true, "b": 0, "c": "y"});
    assert_eq!(traits(&d, &n)["flags"], TraitValue::Int(256 | 1 | 2));
    n["payload"] = json!({});
    assert_eq!(traits(&d, &n)["flags"], TraitValue::Int(256));
}

#[test]
fn timedelta_needs_two_datetimes() {
    let d = load(
        "- event_type: '*'
  traits:
    took: {type: float, fields: [payload.created_at, payload.launched_at], plugin: timedelta}
    took_text: {fields: [payload.launched_at, payload.created_at], plugin: timedelta}
",
    );
    let mut n = wire();
    n["payload"] = json!({"created_at": "2024-01-01T00:00:00Z", "launched_at": "2024-01-01 00:01:30.5"});
    let t = traits(&d, &n);
    assert_eq!((&t["took"], &t["took_text"]), (&TraitValue::Float(90.5), &s("90.5")));
    n["payload"]["launched_at"] = json!("");
    assert!(!traits(&d, &n).contains_key("took"));
    n["payload"].as_object_mut().unwrap().remove("launched_at");
    assert!(!traits(&d, &n).contains_key("took"));
}

#[test]
fn map_looks_values_up() {
    let d = load(
        "- event_type: '*'
  traits:
    state:
      fields: [payload.missing, payload.state]
      plugin: {name: map, parameters: {values: {ACTIVE: up, 1: one}, case_sensitive: false, default: other}}
    strict:
      fields: payload.state
      plugin: {name: map, parameters: {values: {ACTIVE: up}}}
    num:
      fields: payload.n
      plugin: {name: map, parameters: {values: {1: one, 2.0: two}}}
",
    );
    let mut n = wire();
    n["payload"] = json!({"state": "active", "n": 2});
    let t = traits(&d, &n);
    assert_eq!(t["state"], s("up"));
    assert!(!t.contains_key("strict"), "unknown value, no default: no trait");
    assert_eq!(t["num"], s("two"));
    n["payload"] = json!({"state": "gone", "n": true});
    let t = traits(&d, &n);
    assert_eq!((&t["state"], &t["num"]), (&s("other"), &s("one")));
    n["payload"]["state"] = json!(["unhashable"]);
    assert!(matches!(d.to_event(&n).unwrap_err(), DistillError::Plugin { plugin, .. } if plugin == "map"));
}

#[test]
fn plugin_parameter_errors() {
    let e = load_err("- event_type: '*'\n  traits: {x: {fields: a, plugin: map}}\n");
    assert!(e.contains("'values' parameter is required"), "{e}");
    let e = load_err("- event_type: '*'\n  traits: {x: {fields: a, plugin: {name: map, parameters: {values: [a]}}}}\n");
    assert!(e.contains("needs to be a map"), "{e}");
    let e =
        load_err("- event_type: '*'\n  traits: {x: {fields: a, plugin: {name: split, parameters: {segment: x}}}}\n");
    assert!(e.contains("segment must be an integer"), "{e}");
    let e = load_err("- event_type: '*'\n  traits: {x: {fields: a, plugin: nope}}\n");
    assert!(e.contains("known plugins: split, bitfield, timedelta, map"), "{e}");
    // Unknown parameters are ignored, as ceilometer's plugins' **kw does.
    load("- event_type: '*'\n  traits: {x: {fields: a, plugin: {name: split, parameters: {sep: x}}}}\n");
    // timedelta and map are ceilometer's: StackDistiller has neither.
    let e = Distiller::from_yaml_str(
        "- event_type: '*'\n  traits: {x: {fields: a, plugin: timedelta}}\n",
        Path::new("d"),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown plugin \"timedelta\""), "{e}");
}

#[test]
fn envelope_named_traits_are_skipped_after_conversion() {
    let d = load("- event_type: '*'\n  traits: {timestamp: {type: int, fields: payload.t}}\n");
    let mut n = wire();
    n["payload"]["t"] = json!(5);
    assert!(!traits(&d, &n).contains_key("timestamp"));
    n["payload"]["t"] = json!("x");
    assert!(matches!(d.to_event(&n).unwrap_err(), DistillError::Conversion { .. }));
}

#[test]
fn python_equality() {
    assert!(
        py_eq(&json!(1), &json!(1.0)) && py_eq(&json!(true), &json!(1)) && py_eq(&json!([1, "a"]), &json!([1.0, "a"]))
    );
    assert!(!py_eq(&json!("1"), &json!(1)) && !py_eq(&json!(1.5), &json!(1)) && !py_eq(&json!(null), &json!(false)));
}

#[test]
fn only_info_and_error_notifications_reach_the_converter() {
    let d = load_catch_all("[]", true);
    let mut n = wire();
    for p in ["info", "ERROR", "Info"] {
        n["priority"] = json!(p);
        assert!(d.to_event(&n).unwrap().is_some(), "{p}");
    }
    for p in ["WARN", "warn", "sample", "audit", "critical", "debug", ""] {
        n["priority"] = json!(p);
        assert_eq!(d.to_event(&n).unwrap(), None, "{p}");
    }
    n.as_object_mut().unwrap().remove("priority");
    assert_eq!(d.to_event(&n).unwrap(), None);
    n["priority"] = json!(null);
    assert!(matches!(d.to_event(&n).unwrap_err(), DistillError::InvalidKey { key: "priority", .. }));
}

#[test]
fn a_path_that_raises_fails_the_notification_in_both_flavours() {
    let yaml = "- event_type: '*'\n  traits: {host: {fields: ['payload.hosts[0]']}}\n";
    let mut n = wire();
    n["payload"]["hosts"] = json!(null);
    for flavour in [Flavour::StackDistiller, Flavour::Ceilometer] {
        let d =
            Distiller::from_yaml_str_flavoured(yaml, Path::new("d.yaml"), false, flavour, &PluginRegistry::default())
                .unwrap();
        match d.to_event(&n).unwrap_err() {
            DistillError::Path { trait_name, path, .. } => {
                assert_eq!((trait_name.as_str(), path.as_str()), ("host", "payload.hosts[0]"))
            }
            other => panic!("{flavour}: {other}"),
        }
    }
    n["payload"]["hosts"] = json!(["h1"]);
    assert_eq!(traits(&load(yaml), &n)["host"], s("h1"));
}

#[test]
fn jsonpath_rw_ext_additions_are_ceilometers_only() {
    let yaml = "- event_type: '*'\n  traits: {host: {fields: 'publisher_id.`split(., 1, 1)`'}}\n";
    assert_eq!(traits(&load(yaml), &wire())["host"], s("host-1"));
    let e = Distiller::from_yaml_str(yaml, Path::new("d.yaml"), false).unwrap_err().to_string();
    assert!(e.contains("`split(...)`, a jsonpath-rw-ext addition StackDistiller does not have"), "{e}");
    let filter = "- event_type: '*'\n  traits: {x: {fields: 'payload.list[?key=a].value'}}\n";
    assert!(Distiller::from_yaml_str(filter, Path::new("d.yaml"), false).unwrap_err().to_string().contains("filter"));
    load(filter);
}

#[test]
fn integer_fields_are_constants_and_none_is_text_without_empty_strings() {
    let d = load(
        "- event_type: '*'
  traits:
    answer: {fields: 42}
    seven: {type: int, fields: 7, plugin: {name: split}}
    flag: true
    untyped: {type: none, fields: payload.v}
",
    );
    let mut n = wire();
    n["payload"]["v"] = json!(1.5);
    let t = traits(&d, &n);
    assert_eq!((&t["answer"], &t["seven"], &t["flag"]), (&s("42"), &TraitValue::Int(7), &s("True")));
    assert_eq!(t["untyped"], s("1.5"));
    n["payload"]["v"] = json!("");
    assert!(!traits(&d, &n).contains_key("untyped"));
    // StackDistiller has neither.
    let e = Distiller::from_yaml_str(
        "- event_type: '*'\n  traits: {a: {fields: 42}, b: {type: none, fields: x}}\n",
        Path::new("d"),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("found 42") && e.contains("unknown trait type \"none\""), "{e}");
}
