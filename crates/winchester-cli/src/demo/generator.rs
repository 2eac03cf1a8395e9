//! A generator of realistic OpenStack instance lifecycle notifications, for the
//! demo and for load tests (`winchester generate`).
//!
//! Instances are created, updated, resized, audited every midnight
//! (`compute.instance.exists` for the previous day) and deleted, across many
//! tenants and hosts; some API requests never finish (a `.start` without its
//! `.end`). Output is deterministic for a seed, in timestamp order.

use chrono::{DateTime, Duration, DurationRound, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    /// Instances to simulate.
    pub instances: usize,
    /// Simulated days (instances are audited at each midnight).
    pub days: u32,
    /// Tenants the instances belong to.
    pub tenants: usize,
    /// Start of the simulated period (rounded down to midnight).
    pub start: DateTime<Utc>,
    /// Random seed.
    pub seed: u64,
}

const FLAVORS: &[(&str, i64, i64, i64)] = &[("m1.tiny", 512, 1, 1), ("m1.small", 2048, 1, 20), ("m1.medium", 4096, 2, 40), ("m1.large", 8192, 4, 80), ("m1.xlarge", 16384, 8, 160)];
const DISTROS: &[&str] = &["ubuntu", "centos", "debian", "windows"];

struct Instance {
    id: String,
    tenant: String,
    user: String,
    host: String,
    flavor: usize,
    distro: &'static str,
    launched_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
}

fn os_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Generates the notifications (raw, oslo message shape), sorted by timestamp.
pub fn generate(opts: &GeneratorOptions) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let start = opts.start.duration_trunc(Duration::days(1)).unwrap_or(opts.start);
    let end = start + Duration::days(opts.days.max(1) as i64);
    let mut out: Vec<(DateTime<Utc>, Value)> = Vec::new();
    let uuid = |rng: &mut StdRng| uuid::Builder::from_random_bytes(rng.gen()).into_uuid().to_string();
    for n in 0..opts.instances {
        let tenant = format!("tenant-{:03}", rng.gen_range(0..opts.tenants.max(1)));
        let created = start + Duration::seconds(rng.gen_range(0..(end - start).num_seconds() * 2 / 3));
        let mut inst = Instance {
            id: format!("inst-{n:05}-{}", &uuid(&mut rng)[..8]),
            user: format!("user-{}", rng.gen_range(0..50)),
            tenant,
            host: format!("compute.host-{}", rng.gen_range(1..=20)),
            flavor: rng.gen_range(0..FLAVORS.len()),
            distro: DISTROS[rng.gen_range(0..DISTROS.len())],
            launched_at: created + Duration::seconds(rng.gen_range(3..8)),
            deleted_at: None,
        };
        let mut emit = |rng: &mut StdRng, inst: &Instance, ty: &str, at: DateTime<Utc>, request: &str, state: &str, extra: Value| {
            let (flavor, mem, vcpus, disk) = FLAVORS[inst.flavor];
            let mut payload = json!({
                "tenant_id": inst.tenant, "user_id": inst.user, "instance_id": inst.id,
                "instance_type": flavor, "memory_mb": mem, "vcpus": vcpus, "root_gb": disk, "disk_gb": disk,
                "state": state, "launched_at": os_time(inst.launched_at),
                "deleted_at": inst.deleted_at.map(os_time).unwrap_or_default(),
                "image_meta": {"org.openstack__1__os_distro": inst.distro, "org.openstack__1__architecture": "x64"},
            });
            if let (Value::Object(p), Value::Object(e)) = (&mut payload, extra) {
                p.extend(e);
            }
            out.push((
                at,
                json!({
                    "event_type": ty, "message_id": uuid(rng), "priority": "INFO",
                    "publisher_id": inst.host, "timestamp": os_time(at),
                    "_context_request_id": request, "_context_project_id": inst.tenant,
                    "payload": payload,
                }),
            ));
        };
        // Create: a request with start and (usually) end.
        let req = format!("req-{}", uuid(&mut rng));
        emit(&mut rng, &inst, "compute.instance.create.start", created, &req, "building", json!({}));
        if rng.gen_bool(0.03) {
            continue; // the build hung: a request that never finishes
        }
        emit(&mut rng, &inst, "compute.instance.create.end", inst.launched_at, &req, "active", json!({}));
        let lifetime = Duration::seconds(rng.gen_range(3600..(end - created).num_seconds().max(3601) * 2));
        let gone = inst.launched_at + lifetime;
        // Some updates and a resize now and then.
        let mut t = inst.launched_at;
        loop {
            t += Duration::seconds(rng.gen_range(1800..6 * 3600));
            if t >= gone.min(end) {
                break;
            }
            if rng.gen_bool(0.15) {
                let req = format!("req-{}", uuid(&mut rng));
                emit(&mut rng, &inst, "compute.instance.resize.start", t, &req, "resized", json!({}));
                inst.flavor = (inst.flavor + 1).min(FLAVORS.len() - 1);
                let done = t + Duration::seconds(rng.gen_range(2..8));
                emit(&mut rng, &inst, "compute.instance.resize.end", done, &req, "active", json!({}));
            } else {
                let req = format!("req-{}", uuid(&mut rng));
                emit(&mut rng, &inst, "compute.instance.update", t, &req, "active", json!({}));
            }
        }
        // Audits: at each midnight after launch while it lives, for the day before.
        let mut midnight = inst.launched_at.duration_trunc(Duration::days(1)).unwrap_or(inst.launched_at) + Duration::days(1);
        while midnight < end && midnight <= gone {
            let at = midnight + Duration::seconds(rng.gen_range(30..900));
            let req = format!("req-{}", uuid(&mut rng));
            emit(&mut rng, &inst, "compute.instance.exists", at, &req, "active", json!({
                "audit_period_beginning": os_time(midnight - Duration::days(1)),
                "audit_period_ending": os_time(midnight),
            }));
            midnight += Duration::days(1);
        }
        if gone < end {
            let req = format!("req-{}", uuid(&mut rng));
            emit(&mut rng, &inst, "compute.instance.delete.start", gone, &req, "deleting", json!({}));
            inst.deleted_at = Some(gone + Duration::seconds(rng.gen_range(2..8)));
            let done = inst.deleted_at.unwrap_or(gone);
            emit(&mut rng, &inst, "compute.instance.delete.end", done, &req, "deleted", json!({}));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_sorted_and_realistic() {
        let opts = GeneratorOptions { instances: 30, days: 3, tenants: 5, start: Utc::now(), seed: 7 };
        let a = generate(&opts);
        assert_eq!(a, generate(&opts));
        assert!(a.len() > 60);
        let times: Vec<&str> = a.iter().map(|n| n["timestamp"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        for ty in ["compute.instance.create.start", "compute.instance.create.end", "compute.instance.exists"] {
            assert!(a.iter().any(|n| n["event_type"] == ty), "{ty}");
        }
    }
}
