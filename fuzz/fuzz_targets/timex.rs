//! Time expressions: parse, and evaluate at ordinary times and at the ends of
//! chrono's range.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use winchester_core::timex::{TimeExpr, Vars};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(expr) = TimeExpr::parse(text) else { return };
    let _ = expr.variables();
    let _ = expr.is_range();
    let ordinary = DateTime::<Utc>::from_timestamp(1_406_923_440, 0).unwrap_or_default();
    for (a, b) in [
        (ordinary, ordinary),
        (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC),
        (DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC),
    ] {
        let vars: Vars = [("first", a), ("last", b), ("timestamp", b), ("launched_at", a)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        if let Ok(v) = expr.eval(&vars) {
            let _ = v.timestamp();
            let _ = v.contains(a);
        }
    }
});
