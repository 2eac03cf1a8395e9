//! The storage conformance suite: checks every backend must pass, written
//! once against [`Storage`] only, so any backend (including one outside this
//! workspace) can run them. Enabled by the `conformance` feature.
//!
//! Each check takes a fresh, migrated, empty storage and panics (like a test
//! assertion) when the backend breaks a rule. The workspace runs them for
//! PostgreSQL and SQLite in `tests/conformance.rs`.

use crate::{
    Action, Claimed, EventPlan, Finish, FinishOutcome, IngestOutcome, Membership, Storage, Stream, StreamState,
    TriggerScope,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use winchester_core::{DefinitionVersion, Event, TraitValue, TriggerSet};

/// The suite's trigger: streams per `key`, fired by `thing.done`, expiring an
/// hour after their last event.
pub const TRIGGERS: &str = r#"
- name: things
  distinguished_by: [key]
  expiration: "$last + 1h"
  fire_pipeline: p
  expire_pipeline: p
  match_criteria: [{event_type: "thing.*"}]
  fire_criteria: [{event_type: thing.done}]
"#;

/// The moment the suite's events happen.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).single().expect("valid time")
}

fn plan(triggers: &TriggerSet, id: &str, ty: &str, key: &str, at: DateTime<Utc>) -> EventPlan {
    let traits: BTreeMap<String, TraitValue> = [("key".to_string(), TraitValue::String(key.into()))].into();
    let event = Event::new(id, ty, at, traits).expect("valid event");
    let memberships = triggers
        .iter()
        .filter_map(|t| {
            let (_, dist) = t.match_event(&event).ok()?;
            Some(Membership { trigger: t.clone(), dist_key: dist.key(), dist, fire_hits: t.fire_hits(&event) })
        })
        .collect();
    EventPlan { event, memberships, replay: None }
}

fn triggers() -> TriggerSet {
    TriggerSet::from_yaml_str(TRIGGERS, Path::new("conformance-triggers.yaml")).expect("suite triggers").0
}

/// Ingests `n` streams, each with a `thing.start` and (when `done`) a
/// `thing.done` event. Returns the stream ids in key order.
async fn streams(storage: &dyn Storage, n: usize, done: bool) -> Vec<i64> {
    let set = triggers();
    let mut batch = Vec::new();
    for i in 0..n {
        batch.push(plan(&set, &format!("start-{i}"), "thing.start", &format!("k{i}"), t0()));
        if done {
            batch.push(plan(&set, &format!("done-{i}"), "thing.done", &format!("k{i}"), t0() + Duration::seconds(1)));
        }
    }
    let out = storage.ingest(&batch, t0()).await.expect("ingest");
    assert_eq!(out.len(), batch.len(), "ingest: one outcome per event");
    let mut ids: Vec<i64> = out
        .iter()
        .step_by(if done { 2 } else { 1 })
        .map(|o| match o {
            IngestOutcome::Saved { stream_ids, .. } => stream_ids[0],
            other => panic!("ingest: {other:?}"),
        })
        .collect();
    ids.dedup();
    ids
}

/// The streams of a claimed batch.
fn streams_of(claimed: Vec<Claimed>) -> Vec<Stream> {
    claimed.into_iter().map(|c| c.stream).collect()
}

/// Two workers claiming at once take every ready stream exactly once; a claim
/// moves it to `firing`, bumps the serial, closes it and leases it.
pub async fn claim_ready_takes_each_stream_once(storage: Arc<dyn Storage>) {
    let ids = streams(&*storage, 40, true).await;
    let now = t0() + Duration::seconds(5);
    let lease = now + Duration::seconds(60);
    let (a, b) = tokio::join!(
        storage.claim_ready(Action::Fire, now, lease, 25),
        storage.claim_ready(Action::Fire, now, lease, 25)
    );
    let (a, b) = (a.expect("claim a"), b.expect("claim b"));
    assert!(a.iter().chain(&b).all(|c| !c.reclaimed), "a first claim is no reclaim");
    let (a, b) = (streams_of(a), streams_of(b));
    let mut seen = HashSet::new();
    for s in a.iter().chain(&b) {
        assert!(seen.insert(s.id), "stream {} claimed twice", s.id);
        assert_eq!((s.state, s.open, s.attempts, s.lease_expires_at), (StreamState::Firing, false, 1, Some(lease)));
    }
    let rest = streams_of(storage.claim_ready(Action::Fire, now, lease, 100).await.expect("claim rest"));
    for s in &rest {
        assert!(seen.insert(s.id), "stream {} claimed twice", s.id);
    }
    assert_eq!(seen, ids.into_iter().collect(), "every ready stream claimed");
    assert!(storage.ready_streams(Action::Fire, now, 100).await.expect("ready").is_empty());
    // Reclaimable once the lease has run out, with the serial bumped again.
    let later = lease + Duration::seconds(1);
    let again = storage.claim_ready(Action::Fire, later, later + Duration::seconds(60), 100).await.expect("reclaim");
    assert_eq!(again.len(), 40);
    assert!(again.iter().all(|c| c.reclaimed), "taken over after the lease ran out: a reclaim");
    assert!(again.iter().all(|c| c.stream.attempts == 2));
}

/// A claim restricted to some triggers takes only their streams (`Only`), or
/// only the others' (`Except`), up to the limit.
pub async fn claim_ready_among_respects_trigger_scope(storage: Arc<dyn Storage>) {
    let yaml = format!("{TRIGGERS}{}", TRIGGERS.replace("name: things", "name: others").replace("thing.", "other."));
    let set = TriggerSet::from_yaml_str(&yaml, Path::new("conformance-triggers.yaml")).expect("two triggers").0;
    let mut batch = Vec::new();
    for i in 0..6 {
        let at = t0() + Duration::seconds(i);
        for kind in ["thing", "other"] {
            batch.push(plan(&set, &format!("{kind}-start-{i}"), &format!("{kind}.start"), &format!("k{i}"), at));
            batch.push(plan(&set, &format!("{kind}-done-{i}"), &format!("{kind}.done"), &format!("k{i}"), at));
        }
    }
    storage.ingest(&batch, t0()).await.expect("ingest");
    let now = t0() + Duration::minutes(1);
    let lease = now + Duration::seconds(60);
    let names = |c: &[Claimed]| c.iter().map(|c| c.stream.trigger.clone()).collect::<Vec<_>>();
    let others = ["others".to_string()];
    let first =
        storage.claim_ready_among(Action::Fire, now, lease, 4, TriggerScope::Only(&others)).await.expect("only");
    assert_eq!(names(&first), ["others"; 4], "Only takes only the named triggers' streams, up to the limit");
    let rest =
        storage.claim_ready_among(Action::Fire, now, lease, 100, TriggerScope::Except(&others)).await.expect("except");
    assert_eq!(names(&rest), ["things"; 6], "Except takes every other trigger's streams");
    let left = storage.claim_ready(Action::Fire, now, lease, 100).await.expect("all");
    assert_eq!(names(&left), ["others"; 2], "All takes what is left");
}

/// A stream whose fire criteria are met is never claimed for expiry, even when
/// its expire time has passed; one that is not is expired, oldest due first.
pub async fn fire_wins_over_expire(storage: Arc<dyn Storage>) {
    let fired = streams(&*storage, 1, true).await[0];
    let set = triggers();
    let quiet = storage
        .ingest(&[plan(&set, "quiet", "thing.start", "quiet", t0() - Duration::minutes(5))], t0())
        .await
        .expect("ingest");
    let IngestOutcome::Saved { stream_ids, .. } = &quiet[0] else { panic!("{quiet:?}") };
    let quiet = stream_ids[0];
    let late = t0() + Duration::hours(3);
    let next = storage.next_due(t0() - Duration::hours(1)).await.expect("next_due");
    assert!(next.is_some(), "next_due sees the coming fire time");
    let expired =
        streams_of(storage.claim_ready(Action::Expire, late, late + Duration::seconds(60), 10).await.expect("expire"));
    assert_eq!(expired.iter().map(|s| s.id).collect::<Vec<_>>(), vec![quiet]);
    assert_eq!(expired[0].state, StreamState::Expiring);
    let fire =
        streams_of(storage.claim_ready(Action::Fire, late, late + Duration::seconds(60), 10).await.expect("fire"));
    assert_eq!(fire.iter().map(|s| s.id).collect::<Vec<_>>(), vec![fired]);
}

/// Renewals keep the serial and hold only while it matches; a batch of
/// finishes is one compare-and-set per stream with one outcome per run; new
/// events are saved only for runs whose compare-and-set held; retry moves a
/// failed stream on.
pub async fn renew_and_finish_many(storage: Arc<dyn Storage>) {
    let ids = streams(&*storage, 3, true).await;
    let now = t0() + Duration::seconds(5);
    let mut claimed =
        streams_of(storage.claim_ready(Action::Fire, now, now + Duration::seconds(10), 10).await.expect("claim"));
    claimed.sort_by_key(|s| s.id);
    assert_eq!(claimed.iter().map(|s| s.id).collect::<Vec<_>>(), ids);
    let held: Vec<(i64, i32)> = claimed.iter().map(|s| (s.id, s.state_serial_no)).collect();
    let stale = (held[2].0, held[2].1 - 1);
    let until = now + Duration::seconds(30);
    let mut renewed = storage.renew_leases(&[held[0], held[1], stale], until).await.expect("renew");
    renewed.sort();
    assert_eq!(renewed, vec![ids[0], ids[1]], "a stale serial is not renewed");
    let s0 = storage.get_stream(ids[0]).await.expect("get").expect("exists");
    assert_eq!((s0.state_serial_no, s0.lease_expires_at), (claimed[0].state_serial_no, Some(until)));

    // Stream 2 is taken over (its serial moves) before the batch is recorded.
    let taken = storage.set_state(ids[2], claimed[2].state_serial_no, StreamState::Firing).await.expect("cas");
    assert!(taken.is_some());
    let set = triggers();
    let extra = [plan(&set, "extra-0", "thing.start", "extra-0", now)];
    let lost_extra = [plan(&set, "extra-2", "thing.start", "extra-2", now)];
    let runs = [
        (&claimed[0], Finish::Completed { purge: false, new_events: &extra }),
        (&claimed[1], Finish::Failed { reason: "refused" }),
        (&claimed[2], Finish::Completed { purge: false, new_events: &lost_extra }),
    ];
    let out = storage.finish_many(&runs, now).await.expect("finish_many");
    assert_eq!(out.len(), 3, "one outcome per run");
    assert!(matches!(&out[0], FinishOutcome::Done(saved) if saved.len() == 1));
    assert!(matches!(&out[1], FinishOutcome::Done(saved) if saved.is_empty()));
    assert!(matches!(out[2], FinishOutcome::LostLease));
    let s0 = storage.get_stream(ids[0]).await.expect("get").expect("exists");
    assert_eq!((s0.state, s0.lease_expires_at), (StreamState::Completed, None));
    let s1 = storage.get_stream(ids[1]).await.expect("get").expect("exists");
    assert_eq!((s1.state, s1.last_error.as_deref()), (StreamState::Error, Some("refused")));
    let dup = storage.ingest(&extra, now).await.expect("ingest");
    assert_eq!(dup, vec![IngestOutcome::Duplicate], "the completed run's new event was saved");
    let fresh = storage.ingest(&lost_extra, now).await.expect("ingest");
    assert!(matches!(fresh[0], IngestOutcome::Saved { .. }), "the lost run's new event was not saved");
    let retried = storage.retry_stream(ids[1]).await.expect("retry").expect("exists");
    assert_eq!(retried.state, StreamState::RetryFire);
    let purged =
        streams_of(storage.claim_ready(Action::Fire, now, now + Duration::seconds(10), 10).await.expect("claim"));
    assert_eq!(purged.iter().map(|s| s.id).collect::<Vec<_>>(), vec![ids[1]], "retry_fire is ready to fire");
    let out = storage
        .finish_many(&[(&purged[0], Finish::Completed { purge: true, new_events: &[] })], now)
        .await
        .expect("finish purge");
    assert!(matches!(out[0], FinishOutcome::Done(_)));
    assert!(storage.get_stream(ids[1]).await.expect("get").is_none(), "purged");
}

/// Events of several streams come back in one call, each stream's in
/// timestamp order.
pub async fn load_events_of_several_streams(storage: Arc<dyn Storage>) {
    let ids = streams(&*storage, 3, true).await;
    let got = storage.load_events(&ids[..2]).await.expect("load_events");
    let mut want = Vec::new();
    for (i, id) in ids[..2].iter().enumerate() {
        want.push((*id, format!("start-{i}")));
        want.push((*id, format!("done-{i}")));
    }
    let mut got: Vec<(i64, String)> = got.into_iter().map(|(id, e)| (id, e.message_id)).collect();
    got.sort_by_key(|(id, _)| *id);
    assert_eq!(got, want);
    assert!(storage.load_events(&[]).await.expect("empty").is_empty());
}

/// Versions are recorded once (the first use stays); a stream records the
/// version it was opened under; an event of another version closes the key's
/// open stream and opens one of its own version, whose fire counts start anew.
pub async fn streams_keep_their_definition_version(storage: Arc<dyn Storage>) {
    let versioned = |set: &mut TriggerSet, v: &str| {
        set.update(|t| t.version = Some(v.to_string()));
        DefinitionVersion { trigger: "things".into(), version: v.into(), text: format!("{{\"v\":\"{v}\"}}") }
    };
    let (mut v1_set, mut v2_set) = (triggers(), triggers());
    let (v1, v2) = (versioned(&mut v1_set, "v1"), versioned(&mut v2_set, "v2"));
    storage.record_versions(std::slice::from_ref(&v1), t0()).await.expect("record v1");
    storage.record_versions(&[v1.clone(), v2.clone()], t0() + Duration::hours(1)).await.expect("record v1 again, v2");
    let all = storage.trigger_versions(None).await.expect("versions");
    let got: Vec<(&str, DateTime<Utc>)> = all.iter().map(|v| (v.definition.version.as_str(), v.first_used)).collect();
    assert_eq!(got, [("v1", t0()), ("v2", t0() + Duration::hours(1))], "first use kept, oldest first");
    assert_eq!(all[0].definition, v1);
    assert_eq!(storage.trigger_version("things", "v2").await.expect("get").map(|v| v.definition), Some(v2));
    assert!(storage.trigger_version("things", "v3").await.expect("get").is_none());
    assert!(storage.trigger_versions(Some("others")).await.expect("none").is_empty());

    let stream_of = |o: &IngestOutcome| match o {
        IngestOutcome::Saved { stream_ids, .. } => stream_ids[0],
        other => panic!("ingest: {other:?}"),
    };
    let a = storage.ingest(&[plan(&v1_set, "a", "thing.start", "k", t0())], t0()).await.expect("v1 event");
    let b = storage.ingest(&[plan(&v1_set, "b", "thing.start", "k", t0())], t0()).await.expect("v1 again");
    assert_eq!(stream_of(&a[0]), stream_of(&b[0]), "same version: same stream");
    let c = storage
        .ingest(&[plan(&v2_set, "c", "thing.start", "k", t0()), plan(&v2_set, "d", "thing.done", "k", t0())], t0())
        .await
        .expect("v2 events");
    let (old, new) = (stream_of(&a[0]), stream_of(&c[0]));
    assert_ne!(old, new, "another version: a new stream");
    assert_eq!(stream_of(&c[1]), new);
    let old = storage.get_stream(old).await.expect("get").expect("old stream");
    let new = storage.get_stream(new).await.expect("get").expect("new stream");
    assert_eq!((old.version.as_deref(), old.open, old.event_count, old.fire_timestamp), (Some("v1"), false, 2, None));
    assert_eq!((new.version.as_deref(), new.open, new.event_count), (Some("v2"), true, 2));
    assert!(new.fire_timestamp.is_some(), "fire criteria counted under v2 only");
    // The closed v1 stream still expires by its own expiration.
    let due = storage.ready_streams(Action::Expire, old.expire_timestamp, 10).await.expect("ready");
    assert!(due.iter().any(|s| s.id == old.id), "closed older version expires when due");
}

/// Runs every check, each on a fresh storage from `fresh`.
pub async fn run_all<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Storage>>,
{
    claim_ready_takes_each_stream_once(fresh().await).await;
    fire_wins_over_expire(fresh().await).await;
    renew_and_finish_many(fresh().await).await;
    load_events_of_several_streams(fresh().await).await;
    streams_keep_their_definition_version(fresh().await).await;
}
