//! A line of `winchester ingest` / the API: JSON text to an event, or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
            if let Ok(e) = winchester_core::Event::from_json(&v) {
                let _ = e.to_json();
            }
        }
    }
});
