//! The bench's workload: OpenStack instance lifecycle events, generated from a
//! seed, and the triggers and configuration files they run against.

use chrono::{DateTime, Duration, DurationRound, Utc};
use std::collections::BTreeMap;
use winchester_core::{Event, TraitValue};

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
# A resize, from prep to confirmation.
- name: resize_flow
  distinguished_by: [request_id]
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

/// A small deterministic generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A UUID-shaped string.
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!("{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff, (b >> 48) & 0x3fff | 0x8000, b & 0xffff_ffff_ffff)
    }
}

const FLAVORS: &[(&str, i64, i64, i64)] = &[
    ("m1.tiny", 512, 1, 1),
    ("m1.small", 2048, 1, 20),
    ("m1.medium", 4096, 2, 40),
    ("m1.large", 8192, 4, 80),
    ("m1.xlarge", 16384, 8, 160),
];
const DISTROS: &[&str] = &["ubuntu", "ubuntu", "centos", "debian", "windows"];

struct Instance {
    id: String,
    tenant: String,
    user: String,
    host: String,
    flavor: usize,
    distro: &'static str,
    launched: DateTime<Utc>,
    deleted: bool,
}

/// Everything one generation makes: the events, sorted by time.
pub struct Workload {
    /// Events in timestamp order.
    pub events: Vec<Event>,
    /// Days the workload spans.
    pub days: u32,
}

struct Gen<'a> {
    rng: &'a mut Rng,
    out: Vec<Event>,
    seq: u64,
    seed: u64,
}

impl Gen<'_> {
    fn emit(&mut self, inst: &Instance, event_type: &str, ts: DateTime<Utc>, request_id: Option<&str>, extra: &[(&str, TraitValue)]) {
        let (flavor, mem, vcpus, disk) = FLAVORS[inst.flavor];
        let mut t: BTreeMap<String, TraitValue> = BTreeMap::new();
        let s = |v: &str| TraitValue::String(v.to_string());
        t.insert("service".into(), s("compute"));
        t.insert("host".into(), s(&inst.host));
        t.insert("instance_id".into(), s(&inst.id));
        t.insert("tenant_id".into(), s(&inst.tenant));
        t.insert("user_id".into(), s(&inst.user));
        t.insert("instance_type".into(), s(flavor));
        t.insert("memory_mb".into(), TraitValue::Int(mem));
        t.insert("vcpus".into(), TraitValue::Int(vcpus));
        t.insert("root_gb".into(), TraitValue::Int(disk));
        t.insert("os_distro".into(), s(inst.distro));
        t.insert("launched_at".into(), TraitValue::Datetime(inst.launched));
        if let Some(r) = request_id {
            t.insert("request_id".into(), s(r));
        }
        for (k, v) in extra {
            t.insert(k.to_string(), v.clone());
        }
        self.seq += 1;
        let message_id = format!("bench-{:x}-{:08}", self.seed, self.seq);
        self.out.push(Event { message_id, event_type: event_type.into(), timestamp: ts, traits: t });
    }

    /// A start/end pair of one request, `gap` seconds apart.
    fn pair(&mut self, inst: &Instance, prefix: &str, ts: DateTime<Utc>, gap: i64, extra: &[(&str, TraitValue)]) -> DateTime<Utc> {
        let req = format!("req-{}", self.rng.uuid());
        self.emit(inst, &format!("{prefix}.start"), ts, Some(&req), extra);
        let end = ts + Duration::seconds(gap);
        self.emit(inst, &format!("{prefix}.end"), end, Some(&req), extra);
        end
    }
}

/// The first day of the workload: midnight UTC two days from `now`, so that no
/// stream expires while the bench runs on the wall clock.
pub fn base_day(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(Duration::days(1)).unwrap_or(now) + Duration::days(2)
}

/// Generates `events` events for `instances` instances from `seed`, starting at
/// `base`: create (start/end) on day one, then every day an `exists` audit
/// event for the day before and, by chance, updates, resizes, power cycles and
/// snapshots; some instances are deleted on the last day. Days are added until
/// there are enough events; the earliest `events` are kept.
pub fn generate(events: usize, instances: usize, seed: u64, base: DateTime<Utc>) -> Workload {
    let instances = instances.max(1);
    let per_instance = events as f64 / instances as f64;
    // ~4 events on the first day, ~3 a day after that.
    let mut days = ((per_instance - 4.0) / 3.0).ceil().max(1.0) as u32 + 1;
    loop {
        let w = generate_days(instances, seed, base, days);
        if w.len() >= events || days >= 3650 {
            let mut w = w;
            w.truncate(events);
            return Workload { events: w, days };
        }
        days += 1 + days / 4;
    }
}

fn generate_days(instances: usize, seed: u64, base: DateTime<Utc>, days: u32) -> Vec<Event> {
    let mut rng = Rng::new(seed);
    let tenants = (instances / 8).max(1) as u64;
    let mut g = Gen { rng: &mut Rng::new(seed ^ 0x5eed), out: Vec::new(), seq: 0, seed };
    for _ in 0..instances {
        let created = base + Duration::seconds(rng.below(86_400 - 7200) as i64);
        let inst = Instance {
            id: rng.uuid(),
            tenant: format!("tenant-{:04}", rng.below(tenants)),
            user: format!("user-{:05}", rng.below(tenants * 3)),
            host: format!("compute-{:03}", rng.below(50)),
            flavor: rng.below(FLAVORS.len() as u64) as usize,
            distro: DISTROS[rng.below(DISTROS.len() as u64) as usize],
            launched: created + Duration::seconds(60 + rng.below(120) as i64),
            deleted: days > 1 && rng.chance(0.3),
        };
        let mut inst = inst;
        let building = [("state", TraitValue::String("building".into()))];
        let launched = g.pair(&inst, "compute.instance.create", created, (inst.launched - created).num_seconds(), &building);
        for day in 0..days {
            let day_start = base + Duration::days(day as i64);
            let day_end = day_start + Duration::days(1);
            let active = [("state", TraitValue::String("active".into()))];
            // Activity during the day, after the launch on day one.
            let from = if day == 0 { launched + Duration::seconds(60) } else { day_start };
            let span = (day_end - Duration::hours(2) - from).num_seconds().max(60) as u64;
            let at = |rng: &mut Rng| from + Duration::seconds(rng.below(span) as i64);
            if g.rng.chance(0.8) {
                let ts = at(g.rng);
                g.emit(&inst, "compute.instance.update", ts, None, &active);
            }
            if g.rng.chance(0.15) {
                let ts = at(g.rng);
                let prep = g.pair(&inst, "compute.instance.resize.prep", ts, 5, &active);
                let new_flavor = (inst.flavor + 1) % FLAVORS.len();
                let r = format!("req-{}", g.rng.uuid());
                g.emit(&inst, "compute.instance.resize.start", prep + Duration::seconds(5), Some(&r), &active);
                inst.flavor = new_flavor;
                g.emit(&inst, "compute.instance.resize.confirm.end", prep + Duration::seconds(90), Some(&r), &active);
            }
            if g.rng.chance(0.1) {
                let ts = at(g.rng);
                let off = g.pair(&inst, "compute.instance.power_off", ts, 10, &[("state", TraitValue::String("stopped".into()))]);
                g.pair(&inst, "compute.instance.power_on", off + Duration::seconds(600), 15, &active);
            }
            if g.rng.chance(0.05) {
                let ts = at(g.rng);
                g.pair(&inst, "compute.instance.snapshot", ts, 120, &active);
            }
            if inst.deleted && day + 1 == days {
                let ts = day_end - Duration::minutes(90);
                g.pair(&inst, "compute.instance.delete", ts, 30, &[("state", TraitValue::String("deleted".into()))]);
            }
            // The audit event for the day, shortly after midnight.
            let ts = day_end + Duration::seconds(g.rng.below(600) as i64);
            g.emit(
                &inst,
                "compute.instance.exists",
                ts,
                None,
                &[
                    ("audit_period_beginning", TraitValue::Datetime(day_start)),
                    ("audit_period_ending", TraitValue::Datetime(day_end)),
                    ("state", TraitValue::String(if inst.deleted && day + 1 == days { "deleted" } else { "active" }.into())),
                ],
            );
        }
    }
    let mut out = g.out;
    out.sort_by(|a, b| a.timestamp.cmp(&b.timestamp).then_with(|| a.message_id.cmp(&b.message_id)));
    out
}

/// An event of the latency and cost-growth phases.
pub fn probe_event(message_id: String, event_type: &str, instance_id: &str, ts: DateTime<Utc>, extra: &[(&str, TraitValue)]) -> Event {
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
        assert!(a.events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(a.events.iter().all(|e| e.validate().is_ok()));
    }
}
