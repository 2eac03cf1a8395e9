//! Differential tests of the notification timestamp parser against Python's
//! `iso8601` 2.1.0, the parser of the original StackDistiller.
//!
//! - `committed_cases`: every case in `tests/fixtures/distiller/iso8601-cases.json`
//!   (written by `scripts/distiller-oracle/iso8601_cases.py`) must give the
//!   recorded result.
//! - `live_oracle`: with `WINCHESTER_ORACLE_PYTHON` set to a python that has
//!   `iso8601==2.1.0`, fresh random strings are parsed by both and compared
//!   (`WINCHESTER_ORACLE_SEED` and `WINCHESTER_ORACLE_COUNT` choose the batch).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;
use winchester_core::distiller::parse_iso8601;

fn ours(s: &str) -> Option<String> {
    parse_iso8601(s).map(|d| d.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
}

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

/// Compares `ours` with the expected results and panics listing every mismatch.
fn assert_all_equal(what: &str, cases: &[(String, Option<String>)]) {
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|(input, expected)| {
            let got = ours(input);
            (got != *expected).then(|| format!("  {input:?}: python {expected:?}, ours {got:?}"))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{what}: {} of {} cases differ from iso8601 2.1.0:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

#[test]
fn committed_cases() {
    let path = repo_file("tests/fixtures/distiller/iso8601-cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: Value = serde_json::from_str(&text).unwrap();
    let cases: Vec<(String, Option<String>)> = file["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().to_owned(), c[1].as_str().map(str::to_owned)))
        .collect();
    assert!(cases.len() > 1000, "{} cases", cases.len());
    assert_all_equal("committed cases", &cases);
}

/// A small deterministic generator (xorshift64*), so a failing batch can be
/// re-run from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }
    fn num(&mut self, lo: usize, hi: usize, width: usize) -> String {
        format!("{:0width$}", lo + self.below(hi - lo + 1))
    }
}

const BASES: &[&str] = &[
    "2015-09-25 15:41:14.634363",
    "2015-09-25 1541:14.634363",
    "2014-08-01T20:04:00Z",
    "2015-01-30T16:38:43.233621",
    "2014-08-01T20:04:00.123+02:00",
    "2014-08-01T20:04:00-0130",
    "20150925T154114,5+0530",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999-00:30",
    "2016-02-29",
];

const ALPHABET: &[char] = &[
    '0',
    '1',
    '2',
    '3',
    '4',
    '5',
    '6',
    '7',
    '8',
    '9',
    '0',
    '1',
    '2',
    '5',
    '9',
    ' ',
    ':',
    '-',
    '+',
    '.',
    ',',
    'T',
    't',
    'Z',
    'z',
    '\n',
    '\t',
    '\u{663}',
    '\u{ff10}',
    '\u{1d7d9}',
    'é',
    '\u{a0}',
    '\0',
    '\u{2212}',
];

fn mutate(rng: &mut Rng, s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let i = rng.below(chars.len() + 1);
        match rng.below(4) {
            0 if !chars.is_empty() => {
                chars.remove(i.min(chars.len() - 1));
            }
            1 => chars.insert(i, rng.pick(ALPHABET)),
            2 if !chars.is_empty() => {
                let j = i.min(chars.len() - 1);
                chars[j] = rng.pick(ALPHABET);
            }
            _ if chars.len() >= 2 => {
                let j = i.min(chars.len() - 2);
                chars.swap(j, j + 1);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// A string from the grammar's pieces: mostly well-formed, with odd widths and values.
fn structured(rng: &mut Rng) -> String {
    let mut s = if rng.chance(85) { rng.num(1990, 2030, 4) } else { rng.num(0, 9999, 4) };
    if rng.chance(3) {
        return s;
    }
    let dash = |rng: &mut Rng| if rng.chance(85) { "-" } else { "" };
    let colon = |rng: &mut Rng| if rng.chance(85) { ":" } else { "" };
    let two = |rng: &mut Rng, hi: usize| match rng.below(10) {
        0 => rng.num(0, 9, 1),
        1 => rng.num(0, 99, 2),
        _ => rng.num(0, hi, 2),
    };
    s += dash(rng);
    s += &two(rng, 12);
    if rng.chance(3) {
        return s;
    }
    s += dash(rng);
    s += &two(rng, 31);
    if rng.chance(7) {
        return s;
    }
    s += rng.pick(&["T", " ", "T", " ", "T", " ", "t", "  "]);
    s += &two(rng, 23);
    if rng.chance(90) {
        s += colon(rng);
        s += &two(rng, 59);
    }
    if rng.chance(80) {
        s += colon(rng);
        s += &two(rng, 59);
        if rng.chance(70) {
            let n = rng.pick(&[0, 1, 3, 6, 6, 6, 6, 7, 9, 12, 21, 22, 25, 30]);
            let frac = match rng.below(10) {
                0 => "9".repeat(n),
                1 => "999999".chars().chain(std::iter::repeat('9')).take(n.saturating_sub(1)).collect::<String>() + "5",
                _ => rng.digits(n),
            };
            s += rng.pick(&[".", ".", ".", ","]);
            s += &frac;
        }
    }
    match rng.below(10) {
        0..=2 => s += rng.pick(&["Z", "Z", "Z", "z"]),
        3..=6 => {
            s += rng.pick(&["+", "-"]);
            s += &two(rng, 14);
            if rng.chance(85) {
                s += colon(rng);
                if rng.chance(90) {
                    s += &two(rng, 59);
                }
            }
        }
        _ => {}
    }
    s
}

#[test]
fn live_oracle() {
    let Some(python) = std::env::var_os("WINCHESTER_ORACLE_PYTHON") else {
        println!("skipped: set WINCHESTER_ORACLE_PYTHON to a python with iso8601==2.1.0 to compare with it live");
        return;
    };
    let seed: u64 = std::env::var("WINCHESTER_ORACLE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let count: usize = std::env::var("WINCHESTER_ORACLE_COUNT").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    println!("live oracle: {count} strings, WINCHESTER_ORACLE_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let inputs: Vec<String> = (0..count)
        .map(|_| match rng.below(10) {
            0..=3 => {
                let base = rng.pick(BASES);
                mutate(&mut rng, base)
            }
            4..=8 => {
                let s = structured(&mut rng);
                if rng.chance(25) {
                    mutate(&mut rng, &s)
                } else {
                    s
                }
            }
            _ => {
                let s = structured(&mut rng);
                let s = mutate(&mut rng, &s);
                mutate(&mut rng, &s)
            }
        })
        .collect();

    let script = repo_file("scripts/distiller-oracle/iso8601_cases.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let payload = serde_json::to_vec(&inputs).unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&payload));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "oracle failed: {:?}", out.status);
    let results: Vec<Option<String>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), inputs.len());
    let accepted = results.iter().filter(|r| r.is_some()).count();
    println!("live oracle: python accepted {accepted} of {count}");
    let cases: Vec<(String, Option<String>)> = inputs.into_iter().zip(results).collect();
    assert_all_equal(&format!("live oracle (WINCHESTER_ORACLE_SEED={seed})"), &cases);
}
