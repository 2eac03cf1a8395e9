//! Hostile input (issue 14, section 6): property tests that throw generated
//! and mutated input at everything a user or a sender controls (event JSON,
//! the distiller's definitions and the notifications it reads, winchester.yaml,
//! triggers.yaml, pipelines.yaml, time expressions) and require an answer,
//! never a panic. Short runs here; the `fuzz/` targets run the same entry
//! points for longer (see docs/security.md).

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::Value as Json;
use std::path::Path;
use winchester_core::distiller::{Distiller, Flavour};
use winchester_core::pipeline_config::PipelineConfig;
use winchester_core::timex::{TimeExpr, Vars};
use winchester_core::{Event, TraitValue, TriggerSet, WinchesterConfig};

const ETC_TRIGGERS: &str = include_str!("../../../etc/triggers.yaml");
const ETC_PIPELINES: &str = include_str!("../../../etc/pipelines.yaml");
const ETC_DEFINITIONS: &str = include_str!("../../../etc/event_definitions.yaml");
const ETC_WINCHESTER: &str = include_str!("../../../etc/winchester.yaml");

/// Keys the loaders know, so generated documents get past the first check.
const KEYS: &[&str] = &[
    // triggers.yaml
    "name",
    "debug_level",
    "distinguished_by",
    "expiration",
    "fire_pipeline",
    "expire_pipeline",
    "fire_criteria",
    "match_criteria",
    "fire_delay",
    "load_criteria",
    "priority",
    "event_type",
    "number",
    "timestamp",
    "map_distinguished_by",
    "traits",
    "string",
    "int",
    "float",
    "datetime",
    // event definitions and notifications
    "fields",
    "type",
    "plugin",
    "parameters",
    "segment",
    "max_split",
    "payload",
    "message_id",
    "publisher_id",
    "oslo.message",
    "oslo.version",
    "_context_project_id",
    "instance_id",
    // winchester.yaml
    "config_path",
    "database",
    "url",
    "trigger_definitions",
    "pipeline_config",
    "distiller_config",
    "catch_all_notifications",
    "pipeline_handlers",
    "pipeline_worker_batch_size",
    "pipeline_worker_delay",
    "stream_lease_timeout",
    "handler_timeout",
    "trim_events_age",
    "amqp_ingest",
    "queues",
    "api",
    "listen",
    "tokens",
    "log_level",
    "metrics_listen",
];

/// Values that mean something somewhere, edge cases included.
const WORDS: &[&str] = &[
    "",
    "*",
    "!*",
    "compute.instance.*",
    "!compute.instance.exists",
    "*.end",
    "$first",
    "$last",
    "$timestamp",
    "$first + 1d",
    "$last + 10s",
    "day",
    "hour($launched_at)",
    "$first to $last",
    "$first @ 0h 0m 0s 0us + 1d 2h",
    "payload.a",
    "payload.*",
    "payload.'x.y'[0]",
    "payload[*].b",
    "int",
    "float",
    "datetime",
    "text",
    "split",
    "bitfield",
    "timedelta",
    "logger",
    "webhook",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "1e308",
    "NaN",
    "-1",
    "2014-08-01T20:04:00Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "+262143-12-31T23:59:59Z",
    "> 4096",
    "<= -1",
    "postgres://u:p@h/db",
    "sqlite://",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => "\\PC{0,16}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => proptest::sample::select(KEYS).prop_map(str::to_string), 1 => word()]
}

/// JSON trees shaped like events, notifications and configs.
fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(0i64), Just(-1i64)].prop_map(Json::from),
        word().prop_map(Json::from),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((key(), inner), 0..6).prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
}

/// A document as text: generated YAML, a mutated example file, or noise.
fn yaml_text(example: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        json().prop_map(|v| serde_yaml::to_string(&v).unwrap_or_default()),
        prop::collection::vec(json(), 0..4).prop_map(|v| serde_yaml::to_string(&v).unwrap_or_default()),
        mutated(example),
        "\\PC{0,64}",
    ]
}

/// `text` with a few bytes replaced, removed or inserted (kept UTF-8).
fn mutated(text: &'static str) -> impl Strategy<Value = String> {
    let edit = (any::<prop::sample::Index>(), 0u8..3, prop_oneof![word(), "[ \\n:{}\\[\\],&*<!|>'\"#-]{1,3}"]);
    prop::collection::vec(edit, 1..8).prop_map(move |edits| {
        let mut s = text.to_string();
        for (at, op, w) in edits {
            let mut i = at.index(s.len() + 1);
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            match op {
                0 => s.insert_str(i, &w),
                1 => {
                    let mut j = (i + w.len().max(1)).min(s.len());
                    while !s.is_char_boundary(j) {
                        j -= 1;
                    }
                    s.replace_range(i..j, "");
                }
                _ => {
                    let mut j = (i + w.len()).min(s.len());
                    while !s.is_char_boundary(j) {
                        j -= 1;
                    }
                    s.replace_range(i..j, &w);
                }
            }
        }
        s
    })
}

/// Instants from ordinary to the ends of chrono's range.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        Just(DateTime::<Utc>::MIN_UTC),
        Just(DateTime::<Utc>::MAX_UTC),
        Just(Utc.with_ymd_and_hms(2014, 8, 1, 20, 4, 0).unwrap()),
        (-8_000_000_000_000i64..8_000_000_000_000i64).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or_default()),
    ]
}

/// Time expressions from the grammar's tokens (and some that are not).
fn timex_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        proptest::sample::select(
            &[
                "$first",
                "$last",
                "$timestamp",
                "$launched_at",
                "$",
                "to",
                "+",
                "-",
                "@",
                "(",
                ")",
                "day",
                "hour",
                "month",
                "year",
                "week",
                "minute",
                "second",
                "us",
                "s",
                "m",
                "h",
                "d",
                "mo",
                "y",
                "0",
                "1",
                "59",
                "1000000",
                "9223372036854775807",
                "99999999999999999999",
                "0h",
                "0m",
                "0s",
                "0us",
                "1d",
                "2h",
                "12mo",
                "-1y",
                "1 d",
                "é",
                ".",
                ",",
            ][..]
        )
        .prop_map(str::to_string),
        "\\PC{0,3}",
    ];
    (prop::collection::vec(token, 0..12), any::<bool>()).prop_map(|(t, spaced)| t.join(if spaced { " " } else { "" }))
}

fn vars(first: DateTime<Utc>, last: DateTime<Utc>, now: DateTime<Utc>) -> Vars {
    [("first", first), ("last", last), ("timestamp", now), ("launched_at", first)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Everything the engine does with a loaded trigger set and one event, short of storage.
fn exercise_triggers(set: &TriggerSet, event: &Event, now: DateTime<Utc>) {
    for t in set.iter() {
        let _ = t.explain_match(event);
        if let Ok((_, dist)) = t.match_event(event) {
            let _ = dist;
        }
        let _ = t.fire_hits(event);
        let _ = t.expire_at(event.timestamp, event.timestamp);
        let _ = t.fire_timestamp(now);
    }
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig { cases: n, max_shrink_iters: 2000, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(cases(384))]

    /// Event JSON: any object (or anything at all) is an event or an error.
    #[test]
    fn event_json_never_panics(v in json(), ts in word(), id in word()) {
        let _ = Event::from_json(&v);
        let mut obj = match v { Json::Object(o) => o, other => [("x".to_string(), other)].into_iter().collect() };
        obj.insert("message_id".into(), Json::from(id));
        obj.insert("event_type".into(), Json::from("compute.instance.update"));
        obj.insert("timestamp".into(), Json::from(ts));
        let _ = Event::from_json(&Json::Object(obj));
    }

    /// Event lines as text: not JSON, or JSON that is not an event, is an error.
    #[test]
    fn event_lines_never_panic(line in prop_oneof!["\\PC{0,80}".boxed(), json().prop_map(|v| v.to_string()).boxed()]) {
        if let Ok(v) = serde_json::from_str::<Json>(&line) {
            let _ = Event::from_json(&v);
        }
    }

    /// Time expressions: parse, and evaluate anywhere in chrono's range.
    #[test]
    fn time_expressions_never_panic(text in timex_text(), a in instant(), b in instant(), now in instant()) {
        if let Ok(expr) = TimeExpr::parse(&text) {
            let _ = expr.variables();
            let _ = expr.is_range();
            if let Ok(v) = expr.eval(&vars(a, b, now)) {
                let _ = v.timestamp();
                let _ = v.contains(now);
            }
        }
    }

    /// The distiller: generated or mutated definitions load or fail with
    /// errors; whatever loads distills generated notifications without panics.
    #[test]
    fn distiller_never_panics(defs in yaml_text(ETC_DEFINITIONS), n in json(), inner in json(), catch_all in any::<bool>()) {
        let file = Path::new("event_definitions.yaml");
        let loaded = Distiller::from_yaml_str(&defs, file, catch_all).ok();
        let etc = Distiller::from_yaml_str(ETC_DEFINITIONS, file, catch_all).expect("etc/event_definitions.yaml loads");
        let mut wrapped = serde_json::Map::new();
        wrapped.insert("oslo.version".into(), Json::from("2.0"));
        wrapped.insert("oslo.message".into(), Json::from(inner.to_string()));
        let mut typed = match n.clone() { Json::Object(o) => o, other => [("payload".to_string(), other)].into_iter().collect() };
        typed.insert("event_type".into(), Json::from("compute.instance.exists"));
        typed.insert("message_id".into(), Json::from("m-1"));
        typed.insert("priority".into(), Json::from("INFO"));
        let flavoured = |f| Distiller::from_yaml_str_flavoured(&defs, file, catch_all, f, &Default::default()).ok();
        let ceilometer = flavoured(Flavour::Ceilometer);
        let etc_ceilometer = Distiller::from_yaml_str_flavoured(ETC_DEFINITIONS, file, catch_all, Flavour::Ceilometer, &Default::default())
            .expect("etc/event_definitions.yaml loads as ceilometer");
        for d in loaded.iter().chain(ceilometer.iter()).chain([&etc, &etc_ceilometer]) {
            for notification in [&n, &Json::Object(wrapped.clone()), &Json::Object(typed.clone())] {
                let _ = d.to_event(notification);
            }
        }
    }

    /// triggers.yaml: loads or fails with errors; a loaded set judges events.
    #[test]
    fn triggers_yaml_never_panics(text in yaml_text(ETC_TRIGGERS), e in json(), now in instant()) {
        if let Ok((set, _warnings)) = TriggerSet::from_yaml_str(&text, Path::new("triggers.yaml")) {
            let mut obj = match e { Json::Object(o) => o, _ => serde_json::Map::new() };
            obj.insert("message_id".into(), Json::from("m-1"));
            obj.insert("event_type".into(), Json::from("compute.instance.exists"));
            obj.insert("timestamp".into(), Json::from(now.to_rfc3339()));
            if let Ok(event) = Event::from_json(&Json::Object(obj)) {
                exercise_triggers(&set, &event, now);
            }
        }
    }

    /// pipelines.yaml and winchester.yaml: load or fail with errors.
    #[test]
    fn configs_never_panic(pipelines in yaml_text(ETC_PIPELINES), winchester in yaml_text(ETC_WINCHESTER)) {
        let _ = PipelineConfig::from_yaml_str(&pipelines, Path::new("pipelines.yaml"));
        let _ = WinchesterConfig::from_yaml_str(&winchester, Path::new("winchester.yaml"));
    }
}

/// Regression and limit cases found or feared while fuzzing.
mod cases {
    use super::*;

    /// Deep nesting: a parenthesized time expression and nested YAML are
    /// refused or handled, not a stack overflow.
    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}$first{}", "day(".repeat(5_000), ")".repeat(5_000));
        assert!(TimeExpr::parse(&deep).is_err());
        let parens = format!("{}$first{}", "(".repeat(5_000), ")".repeat(5_000));
        assert!(TimeExpr::parse(&parens).is_err());
        let chain = format!("$first{}", " + 1s".repeat(5_000));
        assert!(TimeExpr::parse(&chain).unwrap_err().to_string().contains("too long"));
        assert!(TimeExpr::parse(&format!("$first{}", " + 1s".repeat(50))).is_ok());
        let yaml = format!("{}x{}", "[".repeat(5_000), "]".repeat(5_000));
        assert!(TriggerSet::from_yaml_str(&yaml, Path::new("triggers.yaml")).is_err());
        assert!(Distiller::from_yaml_str(&yaml, Path::new("d.yaml"), false).is_err());
        assert!(PipelineConfig::from_yaml_str(&yaml, Path::new("p.yaml")).is_err());
        assert!(WinchesterConfig::from_yaml_str(&yaml, Path::new("w.yaml")).is_err());
    }

    /// Extreme numbers in a trigger are refused or saturate: a stream of an
    /// event at the end of time does not panic the ingester or the worker.
    #[test]
    fn extreme_trigger_numbers() {
        let now = Utc.with_ymd_and_hms(2014, 8, 1, 20, 4, 0).unwrap();
        for fire_delay in ["9223372036854775807", "1e300", "-1", "99999999999999999999"] {
            let yaml = format!(
                "- name: t\n  distinguished_by: [instance_id]\n  expiration: $last + 9223372036854775807us\n  fire_delay: {fire_delay}\n  fire_pipeline: p\n  expire_pipeline: p\n  match_criteria: [{{event_type: '*'}}]\n  fire_criteria: [{{event_type: '*'}}]\n"
            );
            let Ok((set, _)) = TriggerSet::from_yaml_str(&yaml, Path::new("triggers.yaml")) else { continue };
            for at in [now, DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC] {
                let e = Event::new("m", "x", at, [("instance_id".to_string(), TraitValue::String("i".into()))].into())
                    .unwrap();
                exercise_triggers(&set, &e, at);
            }
        }
    }

    /// A "billion laughs" of YAML aliases is an error, not minutes of work
    /// and gigabytes of memory.
    #[test]
    fn alias_bomb_is_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let list = format!("- {}", doc.replace('\n', "\n  "));
        assert!(Distiller::from_yaml_str(&list, Path::new("d.yaml"), false).is_err());
        assert!(TriggerSet::from_yaml_str(&list, Path::new("t.yaml")).is_err());
        assert!(WinchesterConfig::from_yaml_str(&doc, Path::new("w.yaml")).is_err());
    }
}
