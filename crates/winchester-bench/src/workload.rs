//! The bench's workload: the flat events of a simulated OpenStack cloud
//! ([`winchester_sim`]), sized to `--events`, and the triggers and
//! configuration files they run against.

use chrono::{DateTime, Duration, DurationRound, Utc};
use std::collections::BTreeMap;
use winchester_core::{Event, TraitValue};
use winchester_sim::{SimOptions, Simulation};

/// The trigger definitions: the example `instance_day` trigger plus ten more
/// that each match a fraction of the events, so most events join 1 to 3 streams.
pub const TRIGGERS_YAML: &str = r#"
# Everything that happens to one instance in one UTC day; fired by the day's
# exists (audit) event, expired an hour after the last event otherwise.
- name: instance_day
  distinguished_by: [instance_id, {timestamp: day}]
  expiration: "$last + 1h"
  fire_pipeline: bench_sink
  expire_pipeline: bench_sink
  match_criteria:
    - event_type: [compute.instance.*, "!compute.instance.exists"]
    - event_type: compute.instance.exists
      map_distinguished_by: {timestamp: audit_period_beginning}
  fire_criteria:
    - event_type: compute.instance.exists
# One API request creating an instance: fired once start and end are both in.
- name: create_trace
  distinguished_by: [request_id]
  expiration: "$last + 10m"
  fire_pipeline: bench_sink
  expire_pipeline: bench_sink
  match_criteria:
    - event_type: compute.instance.create.*
  fire_criteria:
    - event_type: compute.instance.create.start
    - event_type: compute.instance.create.end
# A resize of one instance, from prep to confirmation (a request of its own).
- name: resize_flow
  distinguished_by: [instance_id]
  expiration: "$last + 1h"
  fire_pipeline: bench_sink
  expire_pipeline: bench_sink
  match_criteria:
    - event_type: compute.instance.resize.*
  fire_criteria:
    - event_type: compute.instance.resize.confirm.end
# Power cycles of one instance.
- name: power_cycle
  distinguished_by: [instance_id]
  expiration: "$last + 1h"
  fire_pipeline: bench_sink
  expire_pipeline: bench_sink
  match_criteria:
    - event_type: [compute.instance.power_off.*, compute.instance.power_on.*]
  fire_criteria:
    - event_type: compute.instance.power_on.end
# Snapshots, per request.
- name: snapshot_trace
  distinguished_by: [request_id]
  expiration: "$last + 30m"
  fire_pipeline: bench_sink
  expire_pipeline: bench_sink
  match_criteria:
    - event_type: compute.instance.snapshot.*
  fire_criteria:
    - event_type: compute.instance.snapshot.end
# Large instances created, per tenant: three of them fire.
- name: big_instances
  distinguished_by: [tenant_id]
  expiration: "$first + 1d"
  fire_pipeline: bench_sink
  expire_pipeline: bench_sink
  match_criteria:
    - event_type: compute.instance.create.end
      traits:
        memory_mb: {int: ">= 4096"}
  fire_criteria:
    - number: 3
# Builds per compute host.
- name: host_builds
  distinguished_by: [host]
  expiration: "$first + 1d"
  fire_pipeline: bench_sink
  expire_pipeline: bench_sink
  match_criteria:
    - event_type: compute.instance.create.end
  fire_criteria:
    - number: 10
# Deletions per tenant.
- name: tenant_deletes
  distinguished_by: [tenant_id]
  expiration: "$first + 1d"
  fire_pipeline: bench_sink
  expire_pipeline: bench_sink
  match_criteria:
    - event_type: compute.instance.delete.end
  fire_criteria:
    - number: 5
# Daily usage of big flavors, per tenant and audit day.
- name: large_usage
  distinguished_by: [tenant_id, {timestamp: day}]
  expiration: "$last + 1h"
  fire_pipeline: bench_sink
  expire_pipeline: bench_sink
  match_criteria:
    - event_type: compute.instance.exists
      map_distinguished_by: {timestamp: audit_period_beginning}
      traits:
        vcpus: {int: ">= 4"}
  fire_criteria:
    - number: 5
# Audit events of Ubuntu instances, per tenant.
- name: ubuntu_exists
  distinguished_by: [tenant_id]
  expiration: "$first + 1d"
  fire_pipeline: bench_sink
  expire_pipeline: bench_sink
  match_criteria:
    - event_type: compute.instance.exists
      traits:
        os_distro: {string: ubuntu}
  fire_criteria:
    - number: 10
# Updates of Windows instances, per instance.
- name: windows_updates
  distinguished_by: [instance_id]
  expiration: "$last + 1d"
  fire_pipeline: bench_sink
  expire_pipeline: bench_sink
  match_criteria:
    - event_type: compute.instance.update
      traits:
        os_distro: {string: windows}
  fire_criteria:
    - number: 3
"#;

/// `pipelines.yaml`: one pipeline with one handler named `sink`.
pub const PIPELINES_YAML: &str = "bench_sink:\n  - sink\n";

/// A `winchester.yaml` whose handler `sink` is of type `sink_type`.
pub fn winchester_yaml(sink_type: &str) -> String {
    format!(
        "log_level: warn\n\
         statistics_period: 3600\n\
         pipeline_worker_batch_size: 1000\n\
         pipeline_worker_delay: 10\n\
         stream_lease_timeout: 120\n\
         handler_timeout: 30\n\
         purge_completed_streams: false\n\
         trim_events: false\n\
         trigger_definitions: triggers.yaml\n\
         pipeline_config: pipelines.yaml\n\
         pipeline_handlers:\n  sink: {sink_type}\n"
    )
}

/// Everything one generation makes: the events, sorted by time.
pub struct Workload {
    /// Events in timestamp order.
    pub events: Vec<Event>,
    /// Days the events span.
    pub days: u32,
}

/// The first day of the workload: midnight UTC two days from `now`, so that no
/// stream expires while the bench runs on the wall clock.
pub fn base_day(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(Duration::days(1)).unwrap_or(now) + Duration::days(2)
}

/// Longest simulated period.
const MAX_DAYS: u32 = 3650;

/// `events` events about `instances` instances (8 per tenant) from `seed`,
/// starting at `base`: the flat events of a [`winchester_sim`] simulation over
/// as many days as it takes to make that many (the earliest `events` are kept).
pub fn generate(events: usize, instances: usize, seed: u64, base: DateTime<Utc>) -> Workload {
    let instances = instances.max(1);
    let mut days = 1;
    loop {
        let mut sim =
            Simulation::run(&SimOptions { instances, days, tenants: (instances / 8).max(1), start: base, seed });
        if sim.len() >= events || days >= MAX_DAYS {
            sim.truncate(events);
            let days = sim.last_time().map(|t| (t - base).num_days().max(0) as u32 + 1).unwrap_or(1);
            return Workload { events: sim.events(), days };
        }
        days += 1 + days / 8;
    }
}

/// An event of the latency and cost-growth phases.
pub fn probe_event(
    message_id: String,
    event_type: &str,
    instance_id: &str,
    ts: DateTime<Utc>,
    extra: &[(&str, TraitValue)],
) -> Event {
    let mut t: BTreeMap<String, TraitValue> = BTreeMap::new();
    t.insert("instance_id".into(), TraitValue::String(instance_id.into()));
    t.insert("tenant_id".into(), TraitValue::String("tenant-probe".into()));
    t.insert("host".into(), TraitValue::String("compute-probe".into()));
    t.insert("memory_mb".into(), TraitValue::Int(2048));
    t.insert("vcpus".into(), TraitValue::Int(1));
    t.insert("os_distro".into(), TraitValue::String("debian".into()));
    for (k, v) in extra {
        t.insert(k.to_string(), v.clone());
    }
    Event { message_id, event_type: event_type.into(), timestamp: ts, traits: t }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn deterministic_and_sized() {
        let base = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let a = generate(2000, 100, 7, base);
        let b = generate(2000, 100, 7, base);
        assert_eq!(a.events.len(), 2000);
        assert_eq!(a.events, b.events);
        assert!(a.days >= 2);
        let instances: std::collections::BTreeSet<String> =
            a.events.iter().map(|e| format!("{:?}", e.traits.get("instance_id"))).collect();
        assert!(instances.len() > 90, "{}", instances.len());
        assert_eq!(generate(10, 100, 7, base).events.len(), 10);
        assert!(a.events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(a.events.iter().all(|e| e.validate().is_ok()));
    }

    /// Every event joins `instance_day`, most join one to three streams, and
    /// every trigger gets events.
    #[test]
    fn most_events_join_one_to_three_streams() {
        let (triggers, _) =
            winchester_core::TriggerSet::from_yaml_str(TRIGGERS_YAML, std::path::Path::new("triggers.yaml")).unwrap();
        let base = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let w = generate(20_000, 1_000, 42, base);
        let mut per_event = [0usize; 12];
        let mut keys = std::collections::BTreeSet::new();
        let mut per_trigger = std::collections::BTreeMap::new();
        for e in &w.events {
            let (mut n, mut day) = (0, false);
            for t in triggers.iter() {
                if let Ok((_, d)) = t.match_event(e) {
                    n += 1;
                    day |= t.name == "instance_day";
                    keys.insert(format!("{}{d:?}", t.name));
                    *per_trigger.entry(t.name.clone()).or_insert(0) += 1;
                }
            }
            assert!(day, "{e:?}");
            per_event[n] += 1;
        }
        let memberships: usize = per_trigger.values().sum();
        println!("{} days; events per stream count {per_event:?}; {memberships} memberships; {} stream keys; {per_trigger:?}", w.days, keys.len());
        assert_eq!(per_trigger.len(), triggers.len(), "{per_trigger:?}");
        assert!(per_event[1..=3].iter().sum::<usize>() * 10 >= w.events.len() * 9, "{per_event:?}");
    }
}
