//! Loading winchester.yaml, triggers.yaml and pipelines.yaml (the first byte
//! picks which); a loaded trigger set also judges one event and computes its
//! expiry and fire times at the ends of chrono's range.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use winchester_core::pipeline_config::PipelineConfig;
use winchester_core::{Event, TraitValue, TriggerSet, WinchesterConfig};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match which % 3 {
        0 => {
            let _ = WinchesterConfig::from_yaml_str(text, Path::new("winchester.yaml"));
        }
        1 => {
            let _ = PipelineConfig::from_yaml_str(text, Path::new("pipelines.yaml"));
        }
        _ => {
            let Ok((set, _)) = TriggerSet::from_yaml_str(text, Path::new("triggers.yaml")) else { return };
            let traits = [
                ("instance_id".to_string(), TraitValue::String("i-1".into())),
                ("memory_mb".to_string(), TraitValue::Int(4096)),
            ];
            for at in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::UNIX_EPOCH, DateTime::<Utc>::MAX_UTC] {
                let Ok(e) = Event::new("m-1", "compute.instance.exists", at, traits.clone().into()) else { continue };
                for t in set.iter() {
                    let _ = t.explain_match(&e);
                    let _ = t.fire_hits(&e);
                    let _ = t.expire_at(at, at);
                    let _ = t.fire_timestamp(at);
                }
            }
        }
    }
});
