//! A simulated OpenStack compute cloud: the one source of instance lifecycle
//! data for `winchester demo`, `winchester generate` and `winchester bench`.
//!
//! From a seed, [`Simulation::run`] creates instances across tenants and
//! compute hosts (one host per 20 instances) during the first two thirds of the
//! simulated days, and plays out their lives:
//!
//! - a build: `create.start`, `create.end` a few seconds later; 3% of builds
//!   hang (a request that never finishes) and the instance does nothing more;
//! - every 2 to 22 hours an action: an `update` (65%); a resize (10%:
//!   `resize.prep.start/.end`, `resize.start/.end` in one request, the flavor
//!   changing, then `resize.confirm.start/.end` in another request up to half an
//!   hour later); a power cycle (15%: `power_off.start/.end`, then
//!   `power_on.start/.end` 2 to 30 minutes later); or a snapshot (10%:
//!   `snapshot.start/.end`; 5% of them never end);
//! - a `compute.instance.exists` audit shortly after every midnight it lives
//!   through, for the day before (`audit_period_beginning`/`_ending`);
//! - a lifetime of an hour up to twice the rest of the period: about half of
//!   the instances are deleted (`delete.start/.end`) before it ends.
//!
//! Every request but the hung ones ends within seconds, and every notification
//! carries the request id, as nova's do. Output is deterministic for a seed.
//!
//! A simulation renders two ways, both in timestamp order:
//! - [`Simulation::notifications`]: raw notifications in the oslo message shape
//!   (`event_type`, `message_id`, `timestamp` as `YYYY-MM-DD HH:MM:SS.ffffff`,
//!   `publisher_id`, `_context_*`, `payload`), for the demo and `generate`;
//!   `etc/event_definitions.yaml` distils every one of them.
//! - [`Simulation::events`]: the flat events distilling them gives (traits
//!   `service`, `request_id`, `tenant_id`, `user_id`, `instance_id`, `host`,
//!   `instance_type`, `memory_mb`, `vcpus`, `root_gb`, `os_distro`, `state`,
//!   `launched_at`, `deleted_at`, `audit_period_beginning/ending`), for the
//!   bench, which ingests events without a distiller. A test checks that both
//!   renderings agree.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use chrono::{DateTime, Duration, DurationRound, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use winchester_core::{Event, TraitValue};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Instances to simulate.
    pub instances: usize,
    /// Simulated days (instances are audited at each midnight).
    pub days: u32,
    /// Tenants the instances belong to.
    pub tenants: usize,
    /// Start of the simulated period (rounded down to midnight UTC).
    pub start: DateTime<Utc>,
    /// Random seed.
    pub seed: u64,
}

/// Flavors: name, memory (MB), vCPUs, disk (GB).
const FLAVORS: &[(&str, i64, i64, i64)] = &[
    ("m1.tiny", 512, 1, 1),
    ("m1.small", 2048, 1, 20),
    ("m1.medium", 4096, 2, 40),
    ("m1.large", 8192, 4, 80),
    ("m1.xlarge", 16384, 8, 160),
];
/// Image distributions (`os_distro`); Ubuntu is the most common.
const DISTROS: &[&str] = &["ubuntu", "ubuntu", "centos", "debian", "windows"];
const INSTANCES_PER_HOST: usize = 20;
const USERS_PER_TENANT: usize = 4;
/// Builds that never finish.
const HUNG_BUILDS: f64 = 0.03;
/// Snapshots that never finish.
const HUNG_SNAPSHOTS: f64 = 0.05;

/// What never changes about an instance.
struct Instance {
    id: String,
    tenant: String,
    user: String,
    /// `host-NNN`; the notifications' publisher is `compute.host-NNN`.
    host: String,
    publisher: String,
    distro: &'static str,
}

/// One notification, before rendering: the instance's state when it was sent.
struct Record {
    at: DateTime<Utc>,
    event_type: &'static str,
    message_id: String,
    request_id: String,
    instance: usize,
    flavor: usize,
    state: &'static str,
    launched_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
    audit_period: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A finished simulation: its notifications in timestamp order, to render as
/// raw notifications or as flat events.
pub struct Simulation {
    instances: Vec<Instance>,
    records: Vec<Record>,
}

fn uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid().to_string()
}

/// A random duration in `lo..hi`, to the microsecond (`lo` if the range is empty).
fn between(rng: &mut StdRng, lo: Duration, hi: Duration) -> Duration {
    let (lo, hi) = (lo.num_microseconds().unwrap_or(0), hi.num_microseconds().unwrap_or(i64::MAX));
    if hi <= lo {
        return Duration::microseconds(lo);
    }
    Duration::microseconds(rng.gen_range(lo..hi))
}

fn os_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// The life of one instance being played out.
struct Life<'a> {
    rng: &'a mut StdRng,
    records: &'a mut Vec<Record>,
    instance: usize,
    flavor: usize,
    launched_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
}

impl Life<'_> {
    fn request(&mut self) -> String {
        format!("req-{}", uuid(self.rng))
    }

    /// The time one step of a request takes.
    fn quick(&mut self) -> Duration {
        between(self.rng, Duration::seconds(2), Duration::seconds(8))
    }

    fn push(
        &mut self,
        at: DateTime<Utc>,
        event_type: &'static str,
        request_id: &str,
        state: &'static str,
        audit_period: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) {
        let message_id = uuid(self.rng);
        self.records.push(Record {
            at,
            event_type,
            message_id,
            request_id: request_id.to_string(),
            instance: self.instance,
            flavor: self.flavor,
            state,
            launched_at: self.launched_at,
            deleted_at: self.deleted_at,
            audit_period,
        });
    }

    fn emit(&mut self, at: DateTime<Utc>, event_type: &'static str, request_id: &str, state: &'static str) {
        self.push(at, event_type, request_id, state, None);
    }

    /// One request of a start and an end; returns when it ended.
    fn request_pair(
        &mut self,
        at: DateTime<Utc>,
        types: [&'static str; 2],
        states: [&'static str; 2],
    ) -> DateTime<Utc> {
        let req = self.request();
        self.emit(at, types[0], &req, states[0]);
        let end = at + self.quick();
        self.emit(end, types[1], &req, states[1]);
        end
    }

    /// Plays out the instance's life from its creation to its deletion or `end`.
    fn live(&mut self, created: DateTime<Utc>, end: DateTime<Utc>) {
        let req = self.request();
        self.emit(created, "compute.instance.create.start", &req, "building");
        if self.rng.gen_bool(HUNG_BUILDS) {
            return;
        }
        let launched = created + self.quick();
        self.launched_at = Some(launched);
        self.emit(launched, "compute.instance.create.end", &req, "active");
        let gone = launched + between(self.rng, Duration::hours(1), (end - created) * 2);
        // Actions take at most about half an hour: none starts in the last hour.
        let last_action = gone.min(end) - Duration::hours(1);
        let mut next = launched + self.gap();
        let mut midnight = launched.duration_trunc(Duration::days(1)).unwrap_or(launched) + Duration::days(1);
        let mut audit_at = midnight + self.audit_delay();
        loop {
            let audit_due = midnight < end && audit_at < gone;
            let action_due = next < last_action;
            if audit_due && (!action_due || audit_at <= next) {
                let req = self.request();
                self.push(
                    audit_at,
                    "compute.instance.exists",
                    &req,
                    "active",
                    Some((midnight - Duration::days(1), midnight)),
                );
                midnight += Duration::days(1);
                audit_at = midnight + self.audit_delay();
            } else if action_due {
                let done = self.act(next);
                next = done + self.gap();
            } else {
                break;
            }
        }
        if gone < end {
            let req = self.request();
            self.emit(gone, "compute.instance.delete.start", &req, "active");
            let done = gone + self.quick();
            self.deleted_at = Some(done);
            self.emit(done, "compute.instance.delete.end", &req, "deleted");
        }
    }

    /// Time to the next action.
    fn gap(&mut self) -> Duration {
        between(self.rng, Duration::hours(2), Duration::hours(22))
    }

    /// When the nightly audit reports an instance, after midnight.
    fn audit_delay(&mut self) -> Duration {
        between(self.rng, Duration::seconds(30), Duration::minutes(15))
    }

    /// One action at `at`; returns when it finished.
    fn act(&mut self, at: DateTime<Utc>) -> DateTime<Utc> {
        match self.rng.gen_range(0..100) {
            0..=64 => {
                let req = self.request();
                self.emit(at, "compute.instance.update", &req, "active");
                at
            }
            65..=74 => self.resize(at),
            75..=89 => {
                let off = self.request_pair(
                    at,
                    ["compute.instance.power_off.start", "compute.instance.power_off.end"],
                    ["active", "stopped"],
                );
                let on = off + between(self.rng, Duration::minutes(2), Duration::minutes(30));
                self.request_pair(
                    on,
                    ["compute.instance.power_on.start", "compute.instance.power_on.end"],
                    ["stopped", "active"],
                )
            }
            _ => {
                let req = self.request();
                self.emit(at, "compute.instance.snapshot.start", &req, "active");
                if self.rng.gen_bool(HUNG_SNAPSHOTS) {
                    return at;
                }
                let done = at + self.quick();
                self.emit(done, "compute.instance.snapshot.end", &req, "active");
                done
            }
        }
    }

    /// A resize to the next flavor (the largest goes down one), confirmed later.
    fn resize(&mut self, at: DateTime<Utc>) -> DateTime<Utc> {
        let req = self.request();
        self.emit(at, "compute.instance.resize.prep.start", &req, "active");
        let t = at + between(self.rng, Duration::milliseconds(500), Duration::seconds(2));
        self.emit(t, "compute.instance.resize.prep.end", &req, "active");
        let t = t + between(self.rng, Duration::milliseconds(100), Duration::seconds(1));
        self.emit(t, "compute.instance.resize.start", &req, "active");
        let t = t + between(self.rng, Duration::seconds(1), Duration::seconds(4));
        self.flavor = if self.flavor + 1 < FLAVORS.len() { self.flavor + 1 } else { self.flavor.saturating_sub(1) };
        self.emit(t, "compute.instance.resize.end", &req, "resized");
        let confirm = t + between(self.rng, Duration::minutes(1), Duration::minutes(30));
        self.request_pair(
            confirm,
            ["compute.instance.resize.confirm.start", "compute.instance.resize.confirm.end"],
            ["resized", "active"],
        )
    }
}

impl Simulation {
    /// Simulates `opts`.
    pub fn run(opts: &SimOptions) -> Simulation {
        let mut rng = StdRng::seed_from_u64(opts.seed);
        let start = opts.start.duration_trunc(Duration::days(1)).unwrap_or(opts.start);
        let end = start + Duration::days(opts.days.max(1) as i64);
        let tenants = opts.tenants.max(1);
        let hosts = (opts.instances / INSTANCES_PER_HOST).max(1);
        let mut instances = Vec::with_capacity(opts.instances);
        let mut records = Vec::new();
        for n in 0..opts.instances {
            let tenant = rng.gen_range(0..tenants);
            let host = format!("host-{:03}", rng.gen_range(0..hosts));
            instances.push(Instance {
                id: uuid(&mut rng),
                tenant: format!("tenant-{tenant:04}"),
                user: format!("user-{tenant:04}-{}", rng.gen_range(0..USERS_PER_TENANT)),
                publisher: format!("compute.{host}"),
                host,
                distro: DISTROS[rng.gen_range(0..DISTROS.len())],
            });
            let flavor = rng.gen_range(0..FLAVORS.len());
            let created = start + between(&mut rng, Duration::zero(), (end - start) * 2 / 3);
            Life { rng: &mut rng, records: &mut records, instance: n, flavor, launched_at: None, deleted_at: None }
                .live(created, end);
        }
        // Stable: an instance's notifications keep their order at equal times.
        records.sort_by_key(|r| r.at);
        Simulation { instances, records }
    }

    /// Notifications simulated.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing was simulated.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Keeps the earliest `n` notifications.
    pub fn truncate(&mut self, n: usize) {
        self.records.truncate(n);
    }

    /// When the last notification was sent.
    pub fn last_time(&self) -> Option<DateTime<Utc>> {
        self.records.last().map(|r| r.at)
    }

    /// The raw notifications (oslo message shape), in timestamp order.
    pub fn notifications(&self) -> Vec<Value> {
        self.records.iter().map(|r| self.notification(r)).collect()
    }

    /// The flat events the notifications distil to with
    /// `etc/event_definitions.yaml`, in timestamp order.
    pub fn events(&self) -> Vec<Event> {
        self.records.iter().map(|r| self.event(r)).collect()
    }

    fn notification(&self, r: &Record) -> Value {
        let inst = &self.instances[r.instance];
        let (flavor, mem, vcpus, disk) = FLAVORS[r.flavor];
        let mut payload = json!({
            "tenant_id": inst.tenant, "user_id": inst.user, "instance_id": inst.id,
            "instance_type": flavor, "memory_mb": mem, "vcpus": vcpus, "root_gb": disk, "disk_gb": disk,
            "state": r.state,
            "launched_at": r.launched_at.map(os_time).unwrap_or_default(),
            "deleted_at": r.deleted_at.map(os_time).unwrap_or_default(),
            "image_meta": {"org.openstack__1__os_distro": inst.distro, "org.openstack__1__architecture": "x64"},
        });
        if let (Some((beginning, ending)), Some(p)) = (r.audit_period, payload.as_object_mut()) {
            p.insert("audit_period_beginning".into(), Value::String(os_time(beginning)));
            p.insert("audit_period_ending".into(), Value::String(os_time(ending)));
        }
        json!({
            "event_type": r.event_type, "message_id": r.message_id, "priority": "INFO",
            "publisher_id": inst.publisher, "timestamp": os_time(r.at),
            "_context_request_id": r.request_id, "_context_project_id": inst.tenant, "_context_user_id": inst.user,
            "payload": payload,
        })
    }

    fn event(&self, r: &Record) -> Event {
        let inst = &self.instances[r.instance];
        let (flavor, mem, vcpus, disk) = FLAVORS[r.flavor];
        let s = |v: &str| TraitValue::String(v.to_string());
        let mut traits: BTreeMap<String, TraitValue> = [
            ("service", s(&inst.publisher)),
            ("request_id", s(&r.request_id)),
            ("tenant_id", s(&inst.tenant)),
            ("user_id", s(&inst.user)),
            ("instance_id", s(&inst.id)),
            ("host", s(&inst.host)),
            ("instance_type", s(flavor)),
            ("memory_mb", TraitValue::Int(mem)),
            ("vcpus", TraitValue::Int(vcpus)),
            ("root_gb", TraitValue::Int(disk)),
            ("os_distro", s(inst.distro)),
            ("state", s(r.state)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let times = [
            ("launched_at", r.launched_at),
            ("deleted_at", r.deleted_at),
            ("audit_period_beginning", r.audit_period.map(|p| p.0)),
            ("audit_period_ending", r.audit_period.map(|p| p.1)),
        ];
        for (k, v) in times {
            if let Some(v) = v {
                traits.insert(k.to_string(), TraitValue::Datetime(v));
            }
        }
        Event { message_id: r.message_id.clone(), event_type: r.event_type.to_string(), timestamp: r.at, traits }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::{BTreeSet, HashMap};
    use winchester_core::distiller::Distiller;

    fn opts(instances: usize, days: u32, seed: u64) -> SimOptions {
        SimOptions { instances, days, tenants: 5, start: Utc.with_ymd_and_hms(2030, 1, 1, 7, 0, 0).unwrap(), seed }
    }

    #[test]
    fn deterministic_sorted_and_realistic() {
        let o = opts(60, 4, 7);
        let sim = Simulation::run(&o);
        let a = sim.notifications();
        assert_eq!(a, Simulation::run(&o).notifications());
        assert_ne!(a, Simulation::run(&SimOptions { seed: 8, ..o.clone() }).notifications());
        assert!(a.len() > 200, "{}", a.len());
        let times: Vec<&str> = a.iter().map(|n| n["timestamp"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times[0] >= "2030-01-01 00:00:00" && *times.last().unwrap() < "2030-01-05 00:00:00");
        let types: BTreeSet<&str> = a.iter().map(|n| n["event_type"].as_str().unwrap()).collect();
        for ty in [
            "create.start",
            "create.end",
            "update",
            "exists",
            "resize.prep.start",
            "resize.end",
            "resize.confirm.end",
            "power_off.end",
            "power_on.end",
            "snapshot.end",
            "delete.end",
        ] {
            assert!(types.contains(format!("compute.instance.{ty}").as_str()), "{ty}: {types:?}");
        }
        let ids: BTreeSet<&str> = a.iter().map(|n| n["message_id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), a.len(), "message ids are unique");
        // Audits cover the day before, just after midnight.
        for n in a.iter().filter(|n| n["event_type"] == "compute.instance.exists") {
            let (b, e) = (
                n["payload"]["audit_period_beginning"].as_str().unwrap(),
                n["payload"]["audit_period_ending"].as_str().unwrap(),
            );
            assert!(b.ends_with("00:00:00.000000") && e.ends_with("00:00:00.000000") && b < e, "{n}");
            assert!(n["timestamp"].as_str().unwrap().starts_with(&e[..13]), "{n}");
        }
    }

    /// Each request's events span seconds (a resize's confirmation is a
    /// request of its own), and some requests hang (a start without an end).
    #[test]
    fn requests_finish_within_seconds_unless_hung() {
        let sim = Simulation::run(&opts(200, 3, 3));
        let mut by_request: HashMap<&str, Vec<&Record>> = HashMap::new();
        for r in &sim.records {
            by_request.entry(&r.request_id).or_default().push(r);
        }
        let mut hung = 0;
        for rs in by_request.values() {
            assert!(rs.iter().all(|r| r.instance == rs[0].instance));
            assert!(
                rs.last().unwrap().at - rs[0].at < Duration::seconds(10),
                "{:?}",
                rs.iter().map(|r| r.event_type).collect::<Vec<_>>()
            );
            if rs[0].event_type.ends_with(".start") && !rs.last().unwrap().event_type.ends_with(".end") {
                hung += 1;
            }
        }
        assert!(hung > 0, "some requests hang");
    }

    /// The flat rendering is exactly what the example distiller makes of the raw one.
    #[test]
    fn events_are_the_distilled_notifications() {
        let text = include_str!("../../../etc/event_definitions.yaml");
        let distiller =
            Distiller::from_yaml_str(text, std::path::Path::new("etc/event_definitions.yaml"), false).unwrap();
        let sim = Simulation::run(&opts(80, 5, 11));
        let events = sim.events();
        for (n, e) in sim.notifications().iter().zip(&events) {
            let distilled = distiller.to_event(n).unwrap().unwrap_or_else(|| panic!("not distilled: {n}"));
            assert_eq!(&distilled, e);
            assert!(e.validate().is_ok());
        }
        assert_eq!(events.len(), sim.len());
    }

    #[test]
    fn truncate_keeps_the_earliest() {
        let mut sim = Simulation::run(&opts(20, 2, 1));
        let all = sim.events();
        sim.truncate(10);
        assert_eq!(sim.events(), all[..10]);
        assert_eq!(sim.last_time(), Some(all[9].timestamp));
        let empty = Simulation::run(&opts(0, 2, 1));
        assert!(empty.is_empty() && empty.last_time().is_none());
    }
}
