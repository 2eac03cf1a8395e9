//! Distilling speed: turns every notification of a JSON-lines file into an
//! event with a definitions file, `--rounds` times, and prints the rate.
//! Only the distiller runs (no storage), so two builds can be timed against
//! each other on the same input (docs/performance.md, "Distilling").
//!
//! `cargo run --release -p winchester-core --example distill_rate -- etc/event_definitions.yaml notifications.jsonl [ROUNDS]`
//! (`winchester generate --count 20000 > notifications.jsonl` makes an input).

use std::process::ExitCode;
use std::time::Instant;
use winchester_core::distiller::Distiller;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(defs), Some(input)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: distill_rate DEFINITIONS.yaml NOTIFICATIONS.jsonl [ROUNDS]");
        return ExitCode::from(2);
    };
    let rounds: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(5);
    let distiller = match Distiller::load(defs, false) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = match std::fs::read_to_string(input) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let notifications: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let start = Instant::now();
    let (mut events, mut traits, mut failed) = (0usize, 0usize, 0usize);
    for _ in 0..rounds {
        for n in &notifications {
            match distiller.to_event(n) {
                Ok(Some(e)) => {
                    events += 1;
                    traits += e.traits.len();
                }
                Ok(None) => {}
                Err(_) => failed += 1,
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let done = notifications.len() * rounds;
    println!(
        "{done} notifications in {secs:.3} s: {:.0}/s ({events} events, {traits} traits, {failed} failed)",
        done as f64 / secs
    );
    ExitCode::SUCCESS
}
