//! Field paths against jsonpath-rw-ext 1.2.2 (what ceilometer uses): the
//! recorded cases of `tests/fixtures/distiller/jsonpath-cases.json` (made by
//! `scripts/distiller-oracle/jsonpath_cases.py`), and, when
//! `WINCHESTER_ORACLE_PYTHON` names a Python with jsonpath-rw-ext installed,
//! fresh random cases from the same script.
//!
//! Agreement: a path Python refuses is refused; otherwise the matches (full
//! path text and value, in order) are equal. Where Python raises while
//! finding, ours must fail too (`try_find` error) or refuse the path. A path
//! Python accepts may be refused only with a "not supported" reason; those
//! are counted and listed.

use serde_json::Value;
use std::path::{Path, PathBuf};
use winchester_core::distiller::FieldPath;

struct Outcome {
    mismatches: Vec<String>,
    refused: Vec<String>,
    total: usize,
}

fn compare(data: &Value) -> Outcome {
    let docs = data["docs"].as_array().expect("docs");
    let cases = data["cases"].as_array().expect("cases");
    let mut out = Outcome { mismatches: Vec::new(), refused: Vec::new(), total: cases.len() };
    for c in cases {
        let path = c["path"].as_str().expect("path");
        let doc = &docs[c["doc"].as_u64().expect("doc") as usize];
        let show = || format!("path {path:?} on {}", serde_json::to_string(doc).unwrap_or_default());
        let parsed = FieldPath::parse(path);
        if c.get("parse_error").is_some() {
            if parsed.is_ok() {
                out.mismatches.push(format!("{}: Python refuses the path, ours accepts it", show()));
            }
            continue;
        }
        let fp = match parsed {
            Ok(fp) => fp,
            Err(e) if e.reason.contains("not supported") => {
                out.refused.push(format!("{path:?}: {e}"));
                continue;
            }
            Err(e) => {
                if c.get("find_error").is_none() {
                    out.mismatches.push(format!("{}: Python accepts the path, ours refuses: {e}", show()));
                }
                continue;
            }
        };
        let found = fp.try_find(doc);
        match (c.get("find_error"), found) {
            (Some(_), Err(_)) => {}
            (Some(err), Ok(m)) => {
                let ours: Vec<(String, Value)> = m.into_iter().map(|m| (m.path, m.value.into_owned())).collect();
                out.mismatches.push(format!("{}: Python raises {err}, ours finds {ours:?}", show()));
            }
            (None, Err(e)) => {
                if e.0.contains("not supported") {
                    out.refused.push(format!("{path:?}: {}", e.0));
                } else {
                    out.mismatches.push(format!("{}: Python finds {}, ours fails: {}", show(), c["matches"], e.0));
                }
            }
            (None, Ok(m)) => {
                let ours: Vec<Value> =
                    m.into_iter().map(|m| Value::Array(vec![Value::String(m.path), m.value.into_owned()])).collect();
                let want = c["matches"].as_array().cloned().unwrap_or_default();
                if ours != want {
                    out.mismatches.push(format!(
                        "{}: Python finds {}, ours {}",
                        show(),
                        Value::Array(want),
                        Value::Array(ours)
                    ));
                }
            }
        }
    }
    out
}

fn report(what: &str, o: &Outcome) {
    println!(
        "{what}: {} cases, {} mismatches, {} refused as not supported",
        o.total,
        o.mismatches.len(),
        o.refused.len()
    );
    let mut refused = o.refused.clone();
    refused.dedup();
    for r in &refused {
        println!("  refused: {r}");
    }
    for m in &o.mismatches {
        println!("  MISMATCH: {m}");
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn recorded_cases_agree_with_jsonpath_rw_ext() {
    let file = repo_root().join("tests/fixtures/distiller/jsonpath-cases.json");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let data: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let o = compare(&data);
    report("recorded", &o);
    assert!(o.total > 1000, "too few cases");
    assert!(o.mismatches.is_empty(), "{} of {} cases differ from jsonpath-rw-ext", o.mismatches.len(), o.total);
}

/// `WINCHESTER_ORACLE_CASES=file.json`: check a file the script wrote (e.g. with `--live`).
#[test]
fn cases_file_agrees_with_jsonpath_rw_ext() {
    let Ok(file) = std::env::var("WINCHESTER_ORACLE_CASES") else {
        println!("skipped: set WINCHESTER_ORACLE_CASES to a cases file to check it");
        return;
    };
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let data: Value = serde_json::from_str(&text).expect("cases file is JSON");
    let o = compare(&data);
    report(&file, &o);
    assert!(o.mismatches.is_empty(), "{} of {} cases differ", o.mismatches.len(), o.total);
}

#[test]
fn live_random_cases_agree_with_jsonpath_rw_ext() {
    let Ok(python) = std::env::var("WINCHESTER_ORACLE_PYTHON") else {
        println!(
            "skipped: set WINCHESTER_ORACLE_PYTHON to a python with jsonpath-rw-ext==1.2.2 to run live random cases"
        );
        return;
    };
    let seed: u64 = std::env::var("WINCHESTER_ORACLE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs())
    });
    let script = repo_root().join("scripts/distiller-oracle/jsonpath_cases.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .args(["--live", &seed.to_string(), "1500"])
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(out.status.success(), "oracle failed: {}", String::from_utf8_lossy(&out.stderr));
    let data: Value = serde_json::from_slice(&out.stdout).expect("oracle output is JSON");
    let o = compare(&data);
    report(&format!("live (seed {seed})"), &o);
    assert!(o.mismatches.is_empty(), "{} of {} cases differ (seed {seed})", o.mismatches.len(), o.total);
}
