//! The YAML loader against PyYAML: every case of tests/fixtures/yaml-cases.json
//! (written by scripts/distiller-oracle/yaml_cases.py from PyYAML's
//! `safe_load`) read by [`winchester_core::yaml::load`]: same value (or both
//! refuse), same duplicate keys. Every mismatch is listed; the ones kept on
//! purpose are in [`KEPT`] (and docs/compatibility.md).

use serde_json::{json, Value as J};
use serde_yaml::Value as Y;
use std::path::Path;

const ANCHOR: &str =
    "an anchor defined again is accepted with a warning (later aliases name the newest one); PyYAML refuses";
const EMPTY: &str = "a stream of just `...` is an empty document (YAML 1.2); PyYAML refuses";
const EMPTY_KEY: &str = "an empty implicit key (`: v`) is a null key (YAML 1.2); PyYAML refuses";
const FLOW: &str = "flow-context corner cases of the YAML 1.2 parser: `[:20]` and `[!]` are read";
const TAGS: &str = "!!binary, !!set, !!omap, !!pairs are refused (no config value has that type)";
const BIG: &str = "an integer past 64 bits is a float (serde_yaml's numbers are 64-bit)";

/// Cases where the loader deliberately differs from PyYAML, with why.
const KEPT: &[(&str, &str)] = &[
    ("duplicate anchor", ANCHOR),
    ("anchor on merge target redefined later", ANCHOR),
    ("document end only", EMPTY),
    ("null key", EMPTY_KEY),
    ("scalar key ''", EMPTY_KEY),
    ("scalar flow ':20'", FLOW),
    ("scalar flow '!'", FLOW),
    ("set", TAGS),
    ("omap", TAGS),
    ("pairs", TAGS),
    ("scalar value '!!binary aGVsbG8='", TAGS),
    ("scalar key '!!binary aGVsbG8='", TAGS),
    ("scalar flow '!!binary aGVsbG8='", TAGS),
    ("scalar value '18446744073709551616'", BIG),
    ("scalar key '18446744073709551616'", BIG),
    ("scalar flow '18446744073709551616'", BIG),
    ("scalar value '-9223372036854775809'", BIG),
    ("scalar key '-9223372036854775809'", BIG),
    ("scalar flow '-9223372036854775809'", BIG),
    ("scalar value '99999999999999999999999999999999999999999'", BIG),
    ("scalar key '99999999999999999999999999999999999999999'", BIG),
    ("scalar flow '99999999999999999999999999999999999999999'", BIG),
];

fn enc(v: &Y) -> J {
    match v {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.is_nan() {
                    json!({"$float": "nan"})
                } else if f.is_infinite() {
                    json!({"$float": if f > 0.0 { "inf" } else { "-inf" }})
                } else {
                    json!(f)
                }
            }
        }
        Y::String(s) => J::String(s.clone()),
        Y::Sequence(items) => J::Array(items.iter().map(enc).collect()),
        Y::Mapping(m) => json!({"$map": m.iter().map(|(k, v)| json!([enc(k), enc(v)])).collect::<Vec<_>>()}),
        Y::Tagged(t) => json!({"$tagged": [t.tag.to_string(), enc(&t.value)]}),
    }
}

/// PyYAML's value as the loader should give it: timestamps as written.
fn expected(j: &J) -> J {
    match j {
        J::Object(o) if o.len() == 1 && o.contains_key("$timestamp") => o["$timestamp"].clone(),
        J::Object(o) => J::Object(o.iter().map(|(k, v)| (k.clone(), expected(v))).collect()),
        J::Array(a) => J::Array(a.iter().map(expected).collect()),
        other => other.clone(),
    }
}

/// Where `got` first differs from `want`, briefly.
fn diff(got: &J, want: &J, at: String) -> String {
    let short = |j: &J| {
        let s = j.to_string();
        if s.len() > 200 {
            format!("{}…", &s[..s.char_indices().nth(200).map_or(s.len(), |(i, _)| i)])
        } else {
            s
        }
    };
    let entries = |j: &J| j.get("$map").and_then(J::as_array).cloned();
    match (got, want) {
        (J::Array(a), J::Array(b)) if a.len() == b.len() => {
            if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
                return diff(&a[i], &b[i], format!("{at}[{i}]"));
            }
        }
        (J::Object(_), J::Object(_)) => {
            if let (Some(a), Some(b)) = (entries(got), entries(want)) {
                if a.len() == b.len() {
                    if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
                        if a[i][0] != b[i][0] {
                            return diff(&a[i][0], &b[i][0], format!("{at} key #{i}"));
                        }
                        return diff(&a[i][1], &b[i][1], format!("{at}.{}", short(&a[i][0])));
                    }
                }
            }
        }
        _ => {}
    }
    format!("at {}: we read {}, PyYAML reads {}", if at.is_empty() { "the top" } else { &at }, short(got), short(want))
}

#[test]
fn yaml_reads_as_pyyaml() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/yaml-cases.json");
    let doc: J = serde_json::from_str(&std::fs::read_to_string(&path).expect("yaml-cases.json")).expect("JSON");
    let cases = doc["cases"].as_array().expect("cases");
    let (mut same, mut both_refuse, mut dup_cases) = (0, 0, 0);
    let mut mismatches: Vec<(String, String)> = Vec::new();
    for c in cases {
        let name = c["name"].as_str().expect("name").to_string();
        let text = c["text"].as_str().expect("text");
        let ours = winchester_core::yaml::load(text, Path::new("case.yaml"));
        let want_dups: Vec<(u64, u64)> = c["duplicates"]
            .as_array()
            .expect("duplicates")
            .iter()
            .map(|d| (d[0].as_u64().expect("line"), d[1].as_u64().expect("line")))
            .collect();
        let problem = match (&ours, c.get("error")) {
            (Err(_), Some(_)) => {
                both_refuse += 1;
                None
            }
            (Err(e), None) => Some(format!("we refuse ({e}), PyYAML reads {}", expected(&c["expect"]))),
            (Ok((v, _)), Some(err)) => Some(format!(
                "we read {}, PyYAML refuses ({})",
                diff(&enc(v), &J::Null, String::new())
                    .rsplit("we read ")
                    .next()
                    .unwrap_or("")
                    .split(", PyYAML")
                    .next()
                    .unwrap_or(""),
                err.as_str().unwrap_or("").lines().next().unwrap_or("")
            )),
            (Ok((v, warnings)), None) => {
                let got = enc(v);
                let want = expected(&c["expect"]);
                let mut dups: Vec<(u64, u64)> = warnings
                    .iter()
                    .filter(|w| w.message.starts_with("duplicate key"))
                    .filter_map(|w| {
                        let first = w.message.rsplit("first at line ").next()?.parse().ok()?;
                        Some((w.line? as u64, first))
                    })
                    .collect();
                dups.sort_unstable();
                if !want_dups.is_empty() {
                    dup_cases += 1;
                }
                if got != want {
                    Some(diff(&got, &want, String::new()))
                } else if dups != want_dups {
                    Some(format!("duplicate keys (line, first line): ours {dups:?}, PyYAML's {want_dups:?}"))
                } else {
                    same += 1;
                    None
                }
            }
        };
        if let Some(p) = problem {
            mismatches.push((name, p));
        }
    }
    let unexpected: Vec<_> = mismatches.iter().filter(|(n, _)| !KEPT.iter().any(|(k, _)| k == n)).collect();
    let stale: Vec<_> = KEPT.iter().filter(|(k, _)| !mismatches.iter().any(|(n, _)| n == k)).collect();
    eprintln!(
        "{} cases: {same} read alike, {both_refuse} refused by both, {dup_cases} with duplicate keys; {} kept mismatches",
        cases.len(),
        mismatches.len() - unexpected.len()
    );
    for (n, p) in &mismatches {
        eprintln!("  {n}: {p}");
    }
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "{} unexpected mismatches: {unexpected:#?}\nkept but no longer differing: {stale:?}",
        unexpected.len()
    );
    assert!(cases.len() > 500 && same > 400, "the oracle's cases are missing");
}
