//! The distiller against its oracles (issue 26, item 5).
//!
//! `tests/fixtures/distiller/expected/<defs>.<flavour>.json` holds what the
//! Python original (StackDistiller, or ceilometer 27.0.0's converter) made of
//! every sample in `notifications/` with `definitions/<defs>.yaml`: an event
//! (`event_type`, `message_id`, `timestamp`, `traits` as `{name, type,
//! value}`), `{"dropped": true}` or `{"error": "..."}`. Each expected file is
//! replayed with the same flavour and compared sample by sample; every
//! mismatch is printed, with counts per file, before the test fails.
//!
//! A trait of ceilometer's `none` type compares with our text trait of the
//! same value (events have no untyped traits; the value is the same).
//!
//! The oracles ran with each original's defaults: StackDistiller without a
//! catch-all, ceilometer with one (`drop_unmatched_notifications = False`).
//! Definitions the original could not load (`expected/INDEX.json`) must not
//! load here either. `WINCHESTER_DISTILLER_CORPUS` names another corpus
//! directory.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use winchester_core::distiller::{Distiller, Flavour, PluginRegistry};
use winchester_core::event::{Event, TraitValue};

fn corpus_dir() -> PathBuf {
    match std::env::var_os("WINCHESTER_DISTILLER_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/distiller"),
    }
}

/// `(file name, notification)` for every sample, in file-name order.
fn samples(dir: &Path) -> Vec<(String, Json)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("notifications")) else { return out };
    for entry in entries {
        let path = entry.expect("readable directory").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !name.ends_with(".json") || name == "SOURCES.json" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let n = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((name, n));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `(defs, flavour name, path)` for every expected file, in name order.
pub fn expected_files(dir: &Path) -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("expected")) else { return out };
    for entry in entries {
        let path = entry.expect("readable directory").path();
        let Some(stem) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        if let Some((defs, flavour)) = stem.rsplit_once('.') {
            out.push((defs.to_string(), flavour.to_string(), path.clone()));
        }
    }
    out.sort();
    out
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc))
}

fn show(v: &TraitValue) -> String {
    match v {
        TraitValue::String(s) => format!("text {s:?}"),
        TraitValue::Int(i) => format!("int {i}"),
        TraitValue::Float(f) => format!("float {f:?}"),
        TraitValue::Datetime(d) => format!("datetime {}", d.format("%Y-%m-%dT%H:%M:%S%.fZ")),
        TraitValue::Bool(b) => format!("bool {b}"),
    }
}

/// Whether our trait equals the oracle's `{type, value}`.
fn same_trait(ours: &TraitValue, ty: &str, value: &Json) -> bool {
    match (ty, ours) {
        // Ceilometer's `none` type is text-converted; events store it as text.
        ("text" | "none", TraitValue::String(s)) => value.as_str() == Some(s),
        ("int", TraitValue::Int(i)) => value.as_i64() == Some(*i),
        ("float", TraitValue::Float(f)) => match value {
            Json::Number(x) => x.as_f64() == Some(*f),
            // Non-finite floats: {"float": "nan" | "inf" | "-inf"}.
            Json::Object(m) => match m.get("float").and_then(Json::as_str) {
                Some("nan") => f.is_nan(),
                Some("inf") => *f == f64::INFINITY,
                Some("-inf") => *f == f64::NEG_INFINITY,
                _ => false,
            },
            _ => false,
        },
        ("datetime", TraitValue::Datetime(d)) => value.as_str().and_then(parse_time) == Some(*d),
        _ => false,
    }
}

/// The differences between our outcome and the oracle's (none when they agree).
fn compare(ours: &Result<Option<Event>, String>, want: &Json) -> Vec<String> {
    let mut diffs = Vec::new();
    let want_obj = want.as_object().cloned().unwrap_or_default();
    let want_kind = if want_obj.contains_key("error") {
        "error"
    } else if want_obj.contains_key("dropped") {
        "dropped"
    } else {
        "event"
    };
    let outcome = |o: &Result<Option<Event>, String>| match o {
        Ok(Some(_)) => "event".to_string(),
        Ok(None) => "dropped".to_string(),
        Err(e) => format!("error ({e})"),
    };
    let ours_kind = match ours {
        Ok(Some(_)) => "event",
        Ok(None) => "dropped",
        Err(_) => "error",
    };
    if ours_kind != want_kind {
        let want_text = match want_kind {
            "error" => format!("error ({})", want_obj["error"].as_str().unwrap_or_default()),
            k => k.to_string(),
        };
        diffs.push(format!("outcome: ours {}, oracle {want_text}", outcome(ours)));
        return diffs;
    }
    let Ok(Some(e)) = ours else { return diffs };
    if want_obj.get("event_type").and_then(Json::as_str) != Some(e.event_type.as_str()) {
        diffs.push(format!("event_type: ours {:?}, oracle {}", e.event_type, want_obj["event_type"]));
    }
    let want_mid = match want_obj.get("message_id") {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if want_mid.as_deref() != Some(e.message_id.as_str()) {
        diffs.push(format!("message_id: ours {:?}, oracle {}", e.message_id, want_obj["message_id"]));
    }
    if want_obj.get("timestamp").and_then(Json::as_str).and_then(parse_time) != Some(e.timestamp) {
        diffs.push(format!(
            "timestamp: ours {}, oracle {}",
            e.timestamp.format("%Y-%m-%dT%H:%M:%S%.fZ"),
            want_obj["timestamp"]
        ));
    }
    let mut want_traits: BTreeMap<String, (String, Json)> = BTreeMap::new();
    for t in want_obj.get("traits").and_then(Json::as_array).into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or_default().to_string();
        want_traits.insert(name, (t["type"].as_str().unwrap_or_default().to_string(), t["value"].clone()));
    }
    for (name, (ty, value)) in &want_traits {
        match e.traits.get(name) {
            None => diffs.push(format!("trait {name}: ours missing, oracle {ty} {value}")),
            Some(v) if !same_trait(v, ty, value) => {
                diffs.push(format!("trait {name}: ours {}, oracle {ty} {value}", show(v)))
            }
            Some(_) => {}
        }
    }
    for (name, v) in &e.traits {
        if !want_traits.contains_key(name) {
            diffs.push(format!("trait {name}: ours {}, oracle missing", show(v)));
        }
    }
    diffs
}

/// The deliberate differences from the originals (docs/compatibility.md,
/// "Distiller flavours"): when the oracle's outcome for `name` is the one the
/// difference describes, the error text we give instead.
/// - No `message_id`: ceilometer makes an event whose message_id is null; an
///   event here needs one (it is the deduplication key).
/// - Neither `timestamp` nor `_context_timestamp`: StackDistiller stamps the
///   event with the current time; here it is refused, so that distilling the
///   same notification twice gives the same event.
fn deliberate(name: &str, want: &Json) -> Option<&'static str> {
    let event = want.get("event_type").is_some();
    match name {
        "edge--no-message-id.json" if event && want["message_id"].is_null() => Some("has no \"message_id\""),
        "edge--no-timestamp-at-all.json" if event && want["timestamp"] == "NOW" => Some("has no \"timestamp\""),
        _ => None,
    }
}

#[test]
fn distiller_matches_the_oracles() {
    let dir = corpus_dir();
    let files = expected_files(&dir);
    if files.is_empty() {
        eprintln!("no expected files under {}: nothing to compare", dir.join("expected").display());
        return;
    }
    let samples = samples(&dir);
    assert!(!samples.is_empty(), "no samples under {}", dir.join("notifications").display());
    let mut summary = String::new();
    let mut details = String::new();
    let mut total_mismatches = 0;
    for (defs, flavour_name, path) in &files {
        let label = format!("{defs}.{flavour_name}");
        let Some(flavour) = Flavour::from_name(flavour_name) else {
            let _ = writeln!(summary, "{label}: unknown flavour {flavour_name:?}");
            total_mismatches += 1;
            continue;
        };
        let expected: Map<String, Json> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let defs_path = dir.join("definitions").join(format!("{defs}.yaml"));
        let catch_all = flavour == Flavour::Ceilometer;
        let distiller = Distiller::load_flavoured(&defs_path, catch_all, flavour, &PluginRegistry::default());
        let distiller = match distiller {
            Ok(d) => d,
            Err(e) => {
                let _ = writeln!(summary, "{label}: {} samples, definitions do not load: {e}", samples.len());
                let _ = writeln!(details, "== {label}: definitions do not load:\n{e}");
                total_mismatches += samples.len();
                continue;
            }
        };
        let (mut matched, mut mismatched, mut deliberate_count) = (0, 0, 0);
        let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, n) in &samples {
            let ours = distiller.to_event(n).map_err(|e| e.to_string());
            let diffs = match expected.get(name) {
                Some(want) => match deliberate(name, want) {
                    // Asserted both ways: the oracle did what the difference
                    // says, and we refuse as documented.
                    Some(refusal) => match &ours {
                        Err(e) if e.contains(refusal) => {
                            deliberate_count += 1;
                            vec![]
                        }
                        other => vec![format!("deliberate difference: ours {other:?}, want an error with {refusal:?}")],
                    },
                    None => compare(&ours, want),
                },
                None => vec!["no oracle outcome for this sample".to_string()],
            };
            if diffs.is_empty() {
                matched += 1;
            } else {
                mismatched += 1;
                let kind = if diffs[0].starts_with("outcome") { "outcome" } else { "traits/envelope" };
                *by_kind.entry(kind).or_default() += 1;
                let _ = writeln!(details, "== {label} / {name}");
                for d in diffs {
                    let _ = writeln!(details, "   {d}");
                }
            }
        }
        let _ = writeln!(
            summary,
            "{label}: {} samples, {matched} match ({deliberate_count} of them deliberate differences, asserted), \
             {mismatched} mismatch {by_kind:?}",
            samples.len()
        );
        total_mismatches += mismatched;
    }
    // Definitions the original could not load must not load here either.
    let index: Json = std::fs::read_to_string(dir.join("expected/INDEX.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Json::Null);
    for (pair, info) in index["pairs"].as_object().into_iter().flatten() {
        let Some(error) = info.get("error").and_then(Json::as_str) else { continue };
        let Some((defs, flavour_name)) = pair.split_once(" under ") else { continue };
        let Some(flavour) = Flavour::from_name(flavour_name) else { continue };
        let label = format!("{}.{flavour_name}", defs.trim_end_matches(".yaml"));
        let catch_all = flavour == Flavour::Ceilometer;
        let loaded = Distiller::load_flavoured(
            dir.join("definitions").join(defs),
            catch_all,
            flavour,
            &PluginRegistry::default(),
        );
        if loaded.is_ok() {
            let _ = writeln!(summary, "{label}: loads, the original does not ({error})");
            let _ = writeln!(details, "== {label}: loads, the original does not: {error}");
            total_mismatches += 1;
        } else {
            let _ = writeln!(summary, "{label}: does not load, as in the original");
        }
    }
    if total_mismatches > 0 {
        panic!("{details}\n{summary}{total_mismatches} mismatches in all");
    }
    eprintln!("{summary}");
}
