//! The distiller: input `DEFINITIONS\0NOTIFICATION` loads the definitions (YAML)
//! and distills the notification (JSON) with them; input without a NUL is a
//! notification distilled with etc/event_definitions.yaml.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;
use winchester_core::distiller::Distiller;

const ETC: &str = include_str!("../../etc/event_definitions.yaml");

fn etc() -> &'static Distiller {
    static D: OnceLock<Distiller> = OnceLock::new();
    D.get_or_init(|| Distiller::from_yaml_str(ETC, Path::new("event_definitions.yaml"), true).expect("etc loads"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (defs, notification) = match text.split_once('\0') {
        Some((d, n)) => (Some(d), n),
        None => (None, text),
    };
    let loaded = defs.and_then(|d| Distiller::from_yaml_str(d, Path::new("event_definitions.yaml"), false).ok());
    let Ok(n) = serde_json::from_str::<serde_json::Value>(notification) else {
        return;
    };
    match &loaded {
        Some(d) => {
            let _ = d.to_event(&n);
        }
        None => {
            let _ = etc().to_event(&n);
        }
    }
});
