//! Per-trigger debugging, switched on by a trigger's `debug_level`: how many
//! match and fire checks passed, why the others failed (level 2), and counters
//! of what happened to its streams. Dumped (and reset) every statistics period
//! in the original's format.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use winchester_core::trigger::NoMatch;
use winchester_core::TriggerSet;

#[derive(Debug, Default)]
struct Group {
    checks: u64,
    passed: u64,
    reasons: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Stats {
    groups: BTreeMap<&'static str, Group>,
    counters: BTreeMap<String, u64>,
}

/// Debug counters of every trigger whose `debug_level` is above 0.
#[derive(Debug, Default)]
pub struct TriggerDebug {
    levels: HashMap<String, u8>,
    stats: Mutex<BTreeMap<String, Stats>>,
}

/// Why an event did not match, in the original's words.
pub fn no_match_reason(reason: &NoMatch) -> String {
    match reason {
        NoMatch::NoMatchingCriteria => "No matching criteria".into(),
        NoMatch::MissingDistinguishingTrait(t) => format!("not '{t}'"),
        NoMatch::BadDistinguishingTrait(t) => format!("Bad distinguishing trait '{t}'"),
    }
}

impl TriggerDebug {
    /// Debugging for the triggers of `set` that ask for it.
    pub fn new(set: &TriggerSet) -> TriggerDebug {
        TriggerDebug {
            levels: set.iter().filter(|t| t.debug_level > 0).map(|t| (t.name.clone(), t.debug_level)).collect(),
            stats: Mutex::new(BTreeMap::new()),
        }
    }

    /// The trigger's debug level (0 when off or unknown).
    pub fn level(&self, trigger: &str) -> u8 {
        self.levels.get(trigger).copied().unwrap_or(0)
    }

    fn with(&self, trigger: &str, f: impl FnOnce(&mut Stats)) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        f(stats.entry(trigger.to_string()).or_default());
    }

    /// Records one check in `group` (`Match` or `Fire`); `reason` is kept at level 2.
    pub fn check(&self, trigger: &str, group: &'static str, passed: bool, reason: impl FnOnce() -> String) {
        let level = self.level(trigger);
        if level == 0 {
            return;
        }
        crate::metrics::trigger_check(trigger, group, passed);
        let reason = (!passed && level > 1).then(reason);
        self.with(trigger, |s| {
            let g = s.groups.entry(group).or_default();
            g.checks += 1;
            g.passed += passed as u64;
            if let Some(r) = reason {
                *g.reasons.entry(r).or_default() += 1;
            }
        });
    }

    /// Adds `n` to a named counter (`Added events`, `Streams fired`, `Locked`, ...).
    pub fn bump(&self, trigger: &str, counter: &str, n: u64) {
        if self.level(trigger) > 0 && n > 0 {
            crate::metrics::trigger_debug(trigger, counter, n);
            self.with(trigger, |s| *s.counters.entry(counter.to_string()).or_default() += n);
        }
    }

    /// The report lines since the last dump, then resets. Empty when nothing was recorded.
    pub fn dump(&self) -> Vec<String> {
        let taken = std::mem::take(&mut *self.stats.lock().unwrap_or_else(|e| e.into_inner()));
        let mut lines = Vec::new();
        for (trigger, s) in taken {
            lines.push(format!("---- Trigger Definition: {trigger} ----"));
            for (name, g) in &s.groups {
                lines.push(format!("{name} Criteria: {} checks, {} passed", g.checks, g.passed));
                for (reason, n) in &g.reasons {
                    lines.push(format!(" - {reason} = {n}"));
                }
            }
            for (name, n) in &s.counters {
                lines.push(format!("Counter \"{name}\" = {n}"));
            }
            lines.push("-".repeat(28));
        }
        lines
    }

    /// Logs [`TriggerDebug::dump`] at info level.
    pub fn log_dump(&self) {
        for line in self.dump() {
            tracing::info!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn levels_and_format() {
        let yaml = "- {name: one, debug_level: 1, expiration: \"$last + 1h\", fire_pipeline: p, match_criteria: [{}], fire_criteria: [{}]}\n\
                    - {name: two, debug_level: 2, expiration: \"$last + 1h\", fire_pipeline: p, match_criteria: [{}], fire_criteria: [{}]}\n\
                    - {name: 'off', expiration: \"$last + 1h\", fire_pipeline: p, match_criteria: [{}], fire_criteria: [{}]}\n";
        let (set, _) = TriggerSet::from_yaml_str(yaml, Path::new("t.yaml")).unwrap();
        let d = TriggerDebug::new(&set);
        for t in ["one", "two", "off"] {
            d.check(t, "Match", true, || unreachable!());
            d.check(t, "Match", false, || "No matching criteria".into());
            d.bump(t, "Added events", 3);
        }
        let lines = d.dump();
        assert_eq!(
            lines,
            [
                "---- Trigger Definition: one ----",
                "Match Criteria: 2 checks, 1 passed",
                "Counter \"Added events\" = 3",
                "----------------------------",
                "---- Trigger Definition: two ----",
                "Match Criteria: 2 checks, 1 passed",
                " - No matching criteria = 1",
                "Counter \"Added events\" = 3",
                "----------------------------",
            ]
        );
        assert!(d.dump().is_empty(), "dump resets");
    }
}
