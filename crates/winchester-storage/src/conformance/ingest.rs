//! Ingest: dedup by `message_id`, a failed write leaving nothing behind, one
//! open stream per distinguishing key (racing ingesters included), the fold's
//! rules, and stored values coming back as they went in.

use super::*;
use crate::query::NamePattern;
use crate::{Action, EventFilter, Finish, Page, ReplayAt, StreamFilter, StreamState, TraitFilter};

use std::collections::{HashMap, HashSet};

/// The example triggers' shape: instance streams per day, fired by the
/// audit event (`.exists`), which joins the day its audit period begins
/// (`map_distinguished_by`).
pub const INSTANCE_TRIGGERS: &str = r#"
- name: instance_day
  distinguished_by: [instance_id, {timestamp: day}]
  expiration: "$last + 1h"
  fire_pipeline: fire_p
  expire_pipeline: expire_p
  match_criteria:
    - event_type: [compute.instance.*, "!compute.instance.exists"]
    - event_type: compute.instance.exists
      map_distinguished_by: {timestamp: audit_period_beginning}
  fire_criteria:
    - event_type: compute.instance.exists
"#;

/// A second trigger on every event with an `instance_id`.
const EVERY_INSTANCE_EVENT: &str = r#"
- name: second
  distinguished_by: [instance_id]
  expiration: "$last + 1d"
  fire_pipeline: p
  match_criteria: [{}]
  fire_criteria: [{number: 100}]
"#;

/// Beside `things`, streams per `key` of every `thing.*` event, expiring a
/// day after their first event, fired by the third event.
pub(super) const TALLY: &str = r#"
- name: tally
  distinguished_by: [key]
  expiration: "$first + 1d"
  fire_pipeline: p
  match_criteria: [{event_type: "thing.*"}]
  fire_criteria: [{event_type: "thing.*", number: 3}]
"#;

fn opened(outcome: &IngestOutcome) -> Vec<bool> {
    match outcome {
        IngestOutcome::Saved { opened, .. } => opened.clone(),
        other => panic!("not saved: {other:?}"),
    }
}

/// Ingests `batch` from a task of its own; a retryable error (a lost race
/// reported as a conflict) is retried, as the engine does.
async fn ingest_racing(storage: Arc<dyn Storage>, batch: Vec<EventPlan>, now: DateTime<Utc>) -> Vec<IngestOutcome> {
    for _ in 0..50 {
        match storage.ingest(&batch, now).await {
            Ok(out) => {
                assert_eq!(out.len(), batch.len(), "ingest: one outcome per event");
                return out;
            }
            Err(e) if e.is_retryable() => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            Err(e) => panic!("racing ingest: {e}"),
        }
    }
    panic!("racing ingest kept conflicting")
}

/// Invariant 1: a message_id is stored once; again (with any content, alone
/// or later in the same batch) it is a duplicate and changes nothing; each
/// saved event gets its own row's id.
pub async fn duplicate_message_id_changes_nothing(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(INSTANCE_TRIGGERS);
    let now = at(2014, 8, 1, 20, 30, 0);
    let i1 = [("instance_id", text("i-1"))];
    let e = event("m1", "compute.instance.update", at(2014, 8, 1, 20, 4, 0), &i1);
    let first = ingest(&*storage, &[plan_event(&set, e.clone())], now).await;
    assert_eq!(saved(&first[0]).1.len(), 1);
    let before = storage.list_streams(&StreamFilter::default()).await.expect("list");
    let again = ingest(&*storage, &[plan_event(&set, e.clone())], now).await;
    assert_eq!(again, vec![IngestOutcome::Duplicate]);
    // Same id, different content (an audit event that would fire the stream): still a duplicate.
    let mut other = e.clone();
    other.event_type = "compute.instance.exists".into();
    other.traits.insert("audit_period_beginning".into(), TraitValue::Datetime(at(2014, 8, 1, 0, 0, 0)));
    assert_eq!(ingest(&*storage, &[plan_event(&set, other)], now).await, vec![IngestOutcome::Duplicate]);
    let unchanged = storage.list_streams(&StreamFilter::default()).await.expect("list");
    assert_eq!(unchanged, before, "a duplicate changes no stream");
    // In one batch, the repeat is the duplicate.
    let e2 = event("m2", "compute.instance.update", at(2014, 8, 1, 20, 5, 0), &i1);
    let out = ingest(&*storage, &[plan_event(&set, e2.clone()), plan_event(&set, e2)], now).await;
    assert!(matches!(out[0], IngestOutcome::Saved { .. }));
    assert_eq!(out[1], IngestOutcome::Duplicate);
    assert_eq!(storage.count_events(&EventFilter::default()).await.expect("count"), 2);
    let after = storage.list_streams(&StreamFilter::default()).await.expect("list");
    assert_eq!(after.len(), before.len());
    assert_eq!(after[0].event_count, 2);
    assert_eq!(storage.load_events(&[after[0].id]).await.expect("load").len(), 2, "one membership per saved event");
}

/// New events around a stored one and a repeat, in one batch (or in a
/// finish's new events): the duplicates are reported in their places and
/// each saved event gets its own row's id.
pub async fn duplicates_amid_new_events_keep_their_places(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    let stored = ingest(&*storage, &[plan(&set, "e", "thing.done", "k", t0())], t0()).await;
    let batch = [
        plan(&set, "m3", "thing.start", "k3", t0()),
        plan(&set, "e", "thing.start", "k", t0()),
        plan(&set, "m4", "thing.start", "k4", t0()),
        plan(&set, "m3", "thing.start", "k3", t0()),
    ];
    let out = ingest(&*storage, &batch, t0()).await;
    assert_eq!((&out[1], &out[3]), (&IngestOutcome::Duplicate, &IngestOutcome::Duplicate));
    for (o, message_id) in [(&out[0], "m3"), (&out[2], "m4")] {
        let stored = storage.get_event(message_id).await.expect("get_event").expect("saved");
        assert_eq!(stored.id, saved(o).0, "{message_id} got the id of another row");
    }
    assert_eq!(storage.count_events(&EventFilter::default()).await.expect("count"), 3);
    let now = t0() + secs(5);
    let claimed = storage.claim(&stream(&*storage, stream_of(&stored[0])).await, Action::Fire, now, MINUTE).await;
    let claimed = claimed.expect("claim").expect("claimed");
    let made = [
        plan(&set, "m5", "thing.start", "k5", now),
        plan(&set, "m4", "thing.start", "k4", now),
        plan(&set, "m6", "thing.start", "k6", now),
    ];
    let out = finish(&*storage, &claimed, Finish::Completed { purge: false, new_events: &made }, now).await;
    assert_eq!(out[1], IngestOutcome::Duplicate);
    for (o, message_id) in [(&out[0], "m5"), (&out[2], "m6")] {
        let stored = storage.get_event(message_id).await.expect("get_event").expect("saved");
        assert_eq!(stored.id, saved(o).0, "{message_id} got the id of another row");
    }
}

/// Invariant 2: when any part of a write fails in the database, none of the
/// batch is saved (no event, stream or membership; a batch is one
/// transaction) and the failure is not one to retry; the same event without
/// the failing part is saved whole.
pub async fn event_and_memberships_commit_together(h: &dyn Harness) {
    let storage = h.storage();
    // A database-side failure for one key's streams only.
    h.refuse_stream_inserts_containing("i-bad").await;
    let set = triggers_from(&format!("{INSTANCE_TRIGGERS}{EVERY_INSTANCE_EVENT}"));
    let now = at(2014, 8, 1, 20, 30, 0);
    let when = at(2014, 8, 1, 20, 4, 0);
    let bad = plan_event(&set, event("bad", "compute.instance.update", when, &[("instance_id", text("i-bad"))]));
    let good = plan_event(&set, event("good", "compute.instance.update", when, &[("instance_id", text("i-good"))]));
    let err = storage.ingest(std::slice::from_ref(&bad), now).await.expect_err("the refused write fails");
    assert!(!err.is_retryable(), "a refused write is not retryable: {err}");
    nothing_saved(&*storage).await;
    storage.ingest(&[good.clone(), bad], now).await.expect_err("the batch with the refused write fails");
    nothing_saved(&*storage).await;
    let out = ingest(&*storage, &[good], now).await;
    let (event_id, mut stream_ids) = saved(&out[0]);
    assert_eq!(stream_ids.len(), 2);
    assert_eq!(storage.count_events(&EventFilter::default()).await.expect("count"), 1);
    assert_eq!(storage.count_streams(&StreamFilter::default()).await.expect("count"), 2);
    stream_ids.sort();
    assert_eq!(storage.event_streams(event_id).await.expect("memberships"), stream_ids);
}

async fn nothing_saved(storage: &dyn Storage) {
    assert_eq!(storage.count_events(&EventFilter::default()).await.expect("count"), 0, "no event saved");
    assert_eq!(storage.count_streams(&StreamFilter::default()).await.expect("count"), 0, "no stream saved");
    assert!(storage.get_event("good").await.expect("get").is_none());
}

/// An event no trigger matches is saved with no stream.
pub async fn events_of_no_trigger_are_saved_alone(h: &dyn Harness) {
    let storage = h.storage();
    let loose = event("loose", "misc.thing", t0(), &[("key", text("k"))]);
    let out = ingest(&*storage, &[plan_event(&triggers(), loose.clone())], t0()).await;
    let IngestOutcome::Saved { event_id, stream_ids, opened } = &out[0] else { panic!("{out:?}") };
    assert!(stream_ids.is_empty() && opened.is_empty(), "{out:?}");
    let stored = storage.get_event("loose").await.expect("get_event").expect("saved");
    assert_eq!((stored.id, stored.event), (*event_id, loose));
    assert!(storage.event_streams(*event_id).await.expect("memberships").is_empty());
    assert_eq!(storage.count_streams(&StreamFilter::default()).await.expect("count"), 0);
}

/// An event joins one stream per trigger it matches, reported in trigger
/// order, with which of them it opened; each stream follows its own
/// trigger's expiration and fire criteria.
pub async fn one_event_joins_a_stream_of_each_trigger(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(&format!("{TRIGGERS}{TALLY}"));
    let a = ingest(&*storage, &[plan(&set, "a", "thing.start", "k", t0())], t0()).await;
    let (a_id, ids) = saved(&a[0]);
    assert_eq!((ids.len(), opened(&a[0])), (2, vec![true, true]));
    let (things, tally) = (ids[0], ids[1]);
    assert_ne!(things, tally);
    assert_eq!(stream(&*storage, things).await.trigger, "things");
    assert_eq!(stream(&*storage, tally).await.trigger, "tally");
    let b = ingest(&*storage, &[plan(&set, "b", "thing.start", "k", t0() + mins(1))], t0()).await;
    assert_eq!((saved(&b[0]).1, opened(&b[0])), (vec![things, tally], vec![false, false]));
    let mut both = vec![things, tally];
    both.sort();
    assert_eq!(storage.event_streams(a_id).await.expect("memberships"), both);
    ingest(&*storage, &[plan(&set, "c", "thing.start", "k", t0() + mins(2))], t0() + mins(5)).await;
    let (things, tally) = (stream(&*storage, things).await, stream(&*storage, tally).await);
    assert_eq!(things.expire_timestamp, t0() + mins(2) + Duration::hours(1), "things: $last + 1h");
    assert_eq!(tally.expire_timestamp, t0() + Duration::days(1), "tally: $first + 1d");
    assert_eq!(things.fire_timestamp, None, "no thing.done yet");
    assert_eq!(tally.fire_timestamp, Some(t0() + mins(5)), "the third event fires the tally at ingest's now");
}

/// A batch's events of one key go to one stream (the first event opens it);
/// a new stream starts active, open, unclaimed, with serial 0.
pub async fn a_batch_folds_each_key_into_one_stream(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    let keys = ["k1", "k2", "k1", "k1", "k2", "k1", "k2", "k1"];
    let batch: Vec<EventPlan> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| plan(&set, &format!("e{i}"), "thing.start", k, t0() + secs(i as i64)))
        .collect();
    let out = ingest(&*storage, &batch, t0()).await;
    let (k1, k2) = (stream_of(&out[0]), stream_of(&out[1]));
    assert_ne!(k1, k2);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(stream_of(&out[i]), if *k == "k1" { k1 } else { k2 }, "event {i}");
        assert_eq!(opened(&out[i]), vec![i < 2], "event {i}: only each key's first event opens its stream");
    }
    let s1 = stream(&*storage, k1).await;
    let expected = Stream {
        id: k1,
        trigger: "things".into(),
        state: StreamState::Active,
        state_serial_no: 0,
        dist_traits: batch[0].memberships[0].dist.clone(),
        open: true,
        event_count: 5,
        first_event: t0(),
        last_event: t0() + secs(7),
        fire_timestamp: None,
        expire_timestamp: t0() + secs(7) + Duration::hours(1),
        lease_expires_at: None,
        attempts: 0,
        last_error: None,
        version: None,
    };
    assert_eq!(s1, expected);
    let s2 = stream(&*storage, k2).await;
    assert_eq!((s2.event_count, s2.first_event, s2.last_event), (3, t0() + secs(1), t0() + secs(6)));
}

/// Events arriving out of order move the first and last event times both
/// ways, and the expire time follows (from `$last` or `$first`).
pub async fn streams_track_first_last_count_and_expiry(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(&format!("{TRIGGERS}{TALLY}"));
    let one = |id: &str, when| [plan(&set, id, "thing.start", "k", when)];
    let out = ingest(&*storage, &one("now", t0()), t0()).await;
    let (things, tally) = (saved(&out[0]).1[0], saved(&out[0]).1[1]);
    ingest(&*storage, &one("earlier", t0() - mins(10)), t0()).await;
    let (s, t) = (stream(&*storage, things).await, stream(&*storage, tally).await);
    assert_eq!((s.event_count, s.first_event, s.last_event), (2, t0() - mins(10), t0()));
    assert_eq!(s.expire_timestamp, t0() + Duration::hours(1), "$last + 1h: unchanged by an earlier event");
    assert_eq!(t.expire_timestamp, t0() - mins(10) + Duration::days(1), "$first + 1d: moved earlier");
    ingest(&*storage, &one("later", t0() + mins(20)), t0()).await;
    let (s, t) = (stream(&*storage, things).await, stream(&*storage, tally).await);
    assert_eq!((s.event_count, s.first_event, s.last_event), (3, t0() - mins(10), t0() + mins(20)));
    assert_eq!(s.expire_timestamp, t0() + mins(80), "$last + 1h: moved later");
    assert_eq!(t.expire_timestamp, t0() - mins(10) + Duration::days(1));
}

/// Invariant 3 under concurrency: ingest calls racing on one new key (each
/// its own task, released together) end with one stream holding every event,
/// opened by exactly one of them.
pub async fn racing_ingesters_share_one_stream_per_key(h: &dyn Harness) {
    let storage = h.storage();
    let set = Arc::new(triggers());
    const RACERS: usize = 8;
    for round in 0..3 {
        let key = format!("race-{round}");
        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let (storage, set, start, key) = (storage.clone(), set.clone(), start.clone(), key.clone());
                tokio::spawn(async move {
                    let batch = vec![plan(&set, &format!("{key}-{i}"), "thing.start", &key, t0())];
                    start.wait().await;
                    ingest_racing(storage, batch, t0()).await
                })
            })
            .collect();
        let (mut joined, mut openers) = (HashSet::new(), 0);
        for task in tasks {
            let out = task.await.expect("racing task");
            joined.insert(stream_of(&out[0]));
            openers += opened(&out[0])[0] as usize;
        }
        assert_eq!(joined.len(), 1, "round {round}: one stream for the key, got {joined:?}");
        assert_eq!(openers, 1, "round {round}: exactly one event opened it");
        let s = stream(&*storage, *joined.iter().next().expect("one")).await;
        assert_eq!((s.event_count, s.open), (RACERS as i64, true), "round {round}");
    }
    assert_eq!(storage.count_streams(&StreamFilter::default()).await.expect("count"), 3);
}

/// Batches racing over the same keys, each taking them in another order,
/// end with one stream per key holding every event (and none deadlocks for
/// good).
pub async fn racing_batches_share_one_stream_per_key(h: &dyn Harness) {
    let storage = h.storage();
    let set = Arc::new(triggers());
    let keys: Vec<String> = (0..10).map(|k| format!("k{k}")).collect();
    let (tasks_n, rounds) = (4, 3);
    let start = Arc::new(tokio::sync::Barrier::new(tasks_n));
    let tasks: Vec<_> = (0..tasks_n)
        .map(|task| {
            let (storage, set, start) = (storage.clone(), set.clone(), start.clone());
            let mut order = keys.clone();
            order.rotate_left(task * 3);
            if task % 2 == 1 {
                order.reverse();
            }
            tokio::spawn(async move {
                start.wait().await;
                let mut joined = Vec::new();
                for round in 0..rounds {
                    let batch: Vec<EventPlan> = order
                        .iter()
                        .map(|k| plan(&set, &format!("t{task}-r{round}-{k}"), "thing.start", k, t0()))
                        .collect();
                    let out = ingest_racing(storage.clone(), batch, t0()).await;
                    joined.extend(order.iter().cloned().zip(out.iter().map(stream_of)));
                }
                joined
            })
        })
        .collect();
    let mut by_key: HashMap<String, HashSet<i64>> = HashMap::new();
    for task in tasks {
        for (key, id) in task.await.expect("racing task") {
            by_key.entry(key).or_default().insert(id);
        }
    }
    let streams = storage.list_streams(&StreamFilter::default()).await.expect("list");
    assert_eq!(streams.len(), keys.len(), "one stream per key");
    for s in &streams {
        assert_eq!(by_key[&key_of(s)], HashSet::from([s.id]), "every event of {} joined its stream", key_of(s));
        assert_eq!((s.event_count, s.open), ((tasks_n * rounds) as i64, true), "{}", key_of(s));
    }
}

/// A long batch keeps every outcome in its event's place: duplicates, events
/// matching no trigger and saved events each answer for the event at their
/// position, and each saved event's id is its own row's.
pub async fn long_batch_outcomes_in_order(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(INSTANCE_TRIGGERS);
    let when = at(2014, 8, 1, 20, 4, 0);
    let batch: Vec<EventPlan> = (0..1000)
        .map(|i| {
            // Every 89th event repeats the one before it; every 97th matches no trigger.
            let id = if i % 89 == 1 { format!("m{}", i - 1) } else { format!("m{i}") };
            let ty = if i % 97 == 5 { "misc.unmatched" } else { "compute.instance.update" };
            plan_event(&set, event(&id, ty, when, &[("instance_id", text(&format!("i-{}", i % 13)))]))
        })
        .collect();
    let out = ingest(&*storage, &batch, at(2014, 8, 1, 20, 30, 0)).await;
    let all = EventFilter { page: Page { ascending: true, ..Page::default() }, ..EventFilter::default() };
    let rows: HashMap<String, i64> =
        storage.list_events(&all).await.expect("list").into_iter().map(|e| (e.event.message_id, e.id)).collect();
    let (mut saved_n, mut members) = (0, 0);
    for (i, o) in out.iter().enumerate() {
        match o {
            IngestOutcome::Duplicate => assert_eq!(i % 89, 1, "event {i} reported duplicate"),
            IngestOutcome::Saved { event_id, stream_ids, .. } => {
                assert_ne!(i % 89, 1, "event {i} saved");
                assert_eq!(stream_ids.len(), usize::from(i % 97 != 5), "event {i}");
                assert_eq!(rows.get(&format!("m{i}")), Some(event_id), "event {i} got the id of another row");
                saved_n += 1;
                members += stream_ids.len() as i64;
            }
        }
    }
    assert_eq!(storage.count_events(&EventFilter::default()).await.expect("count"), saved_n);
    let streams = storage.list_streams(&StreamFilter::default()).await.expect("list");
    assert_eq!(streams.len(), 13);
    assert_eq!(streams.iter().map(|s| s.event_count).sum::<i64>(), members);
}

/// Streams split by instance and day; the exists event joins the day its audit
/// period begins (map_distinguished_by); the fire time is set when it arrives.
pub async fn distinguishing_and_fire_criteria(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(INSTANCE_TRIGGERS);
    let now = at(2014, 8, 2, 0, 30, 0);
    let i1 = [("instance_id", text("i-1"))];
    let batch: Vec<EventPlan> = [
        event("a", "compute.instance.create.start", at(2014, 8, 1, 23, 50, 0), &i1),
        event("b", "compute.instance.create.end", at(2014, 8, 1, 23, 55, 0), &i1),
        event("c", "compute.instance.update", at(2014, 8, 2, 0, 5, 0), &i1),
        event("d", "compute.instance.update", at(2014, 8, 1, 23, 59, 0), &[("instance_id", text("i-2"))]),
        event("nomatch", "compute.instance.update", at(2014, 8, 1, 23, 59, 0), &[]),
    ]
    .into_iter()
    .map(|e| plan_event(&set, e))
    .collect();
    let out = ingest(&*storage, &batch, now).await;
    let day1 = stream_of(&out[0]);
    assert_eq!(saved(&out[1]).1, vec![day1]);
    let day2 = stream_of(&out[2]);
    assert_ne!(day1, day2);
    assert_ne!(stream_of(&out[3]), day1);
    assert_eq!(saved(&out[4]).1, Vec::<i64>::new());
    let s1 = stream(&*storage, day1).await;
    assert_eq!(
        (s1.event_count, s1.first_event, s1.last_event),
        (2, at(2014, 8, 1, 23, 50, 0), at(2014, 8, 1, 23, 55, 0))
    );
    assert_eq!(s1.expire_timestamp, at(2014, 8, 2, 0, 55, 0));
    assert_eq!(s1.fire_timestamp, None);
    assert_eq!(
        s1.dist_traits.to_plain_json(),
        serde_json::json!({"instance_id": "i-1", "timestamp": {"begin": "2014-08-01T00:00:00Z", "end": "2014-08-02T00:00:00Z"}})
    );
    // The audit event arrives after midnight but belongs to day 1.
    let exists = event(
        "e",
        "compute.instance.exists",
        at(2014, 8, 2, 0, 10, 0),
        &[i1[0].clone(), ("audit_period_beginning", TraitValue::Datetime(at(2014, 8, 1, 0, 0, 0)))],
    );
    let out = ingest(&*storage, &[plan_event(&set, exists)], now).await;
    assert_eq!(saved(&out[0]).1, vec![day1]);
    let s1 = stream(&*storage, day1).await;
    assert_eq!(s1.fire_timestamp, Some(now));
    assert_eq!((s1.event_count, s1.last_event), (3, at(2014, 8, 2, 0, 10, 0)));
    assert_eq!(s1.expire_timestamp, at(2014, 8, 2, 1, 10, 0));
    assert_eq!(stream(&*storage, day2).await.fire_timestamp, None);
    // Ready to fire: only day 1.
    let ready = storage.ready_streams(Action::Fire, now, 100).await.expect("ready");
    assert_eq!(ids(&ready), vec![day1]);
}

/// fire_delay and `number`, and the fire timestamp is never moved once set.
pub async fn fire_delay_and_number(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(
        r#"
- name: pairs
  distinguished_by: [k]
  expiration: "$first + 1d"
  fire_pipeline: p
  fire_delay: 3600
  match_criteria: [{event_type: "test.*"}]
  fire_criteria: [{event_type: test.thing, number: 2}]
"#,
    );
    let now = at(2014, 8, 1, 12, 0, 0);
    let one = |id: &str, ty: &str| [plan_event(&set, event(id, ty, now, &[("k", text("x"))]))];
    let id = stream_of(&ingest(&*storage, &one("1", "test.foobar"), now).await[0]);
    ingest(&*storage, &one("2", "test.thing"), now).await;
    assert_eq!(stream(&*storage, id).await.fire_timestamp, None);
    ingest(&*storage, &one("3", "test.thing"), now).await;
    assert_eq!(stream(&*storage, id).await.fire_timestamp, Some(now + Duration::hours(1)));
    ingest(&*storage, &one("4", "test.thing"), now + mins(10)).await;
    let st = stream(&*storage, id).await;
    assert_eq!((st.fire_timestamp, st.event_count), (Some(now + Duration::hours(1)), 4));
    assert!(storage.ready_streams(Action::Fire, now + mins(59), 10).await.expect("ready").is_empty());
    assert_eq!(storage.ready_streams(Action::Fire, now + mins(61), 10).await.expect("ready").len(), 1);
}

/// Invariant 3: a stream whose expire time passed takes no more events; the
/// next event for its key opens a new stream while the old one waits to expire.
pub async fn expired_stream_takes_no_more_events(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(INSTANCE_TRIGGERS);
    let i1 = [("instance_id", text("i-1"))];
    let one = |id: &str, when| [plan_event(&set, event(id, "compute.instance.update", when, &i1))];
    let a = stream_of(&ingest(&*storage, &one("a", at(2014, 8, 1, 20, 0, 0)), at(2014, 8, 1, 20, 30, 0)).await[0]);
    let now = at(2014, 8, 1, 21, 1, 0); // past $last + 1h
    let b = stream_of(&ingest(&*storage, &one("b", at(2014, 8, 1, 20, 10, 0)), now).await[0]);
    assert_ne!(a, b);
    let old = stream(&*storage, a).await;
    assert_eq!((old.state, old.open, old.event_count), (StreamState::Active, false, 1));
    let ready = storage.ready_streams(Action::Expire, now, 10).await.expect("ready");
    assert_eq!(ids(&ready), vec![a]);
    // Replaying old events with a wall clock: each event opens its own stream
    // (the original's behaviour without time sync).
    let now = at(2014, 8, 2, 12, 0, 0);
    let c = stream_of(&ingest(&*storage, &one("c", at(2014, 8, 1, 19, 0, 0)), now).await[0]);
    let d = stream_of(&ingest(&*storage, &one("d", at(2014, 8, 1, 19, 1, 0)), now).await[0]);
    assert_ne!(c, d);
    let streams = storage.list_streams(&StreamFilter::default()).await.expect("list");
    assert!(streams.iter().all(|s| !s.open), "no stream is open: {streams:?}");
}

/// Invariant 4: once a worker has taken a stream, a new event for its key
/// opens a new stream; the taken stream's events do not change, and a second
/// claim with the stale copy loses.
pub async fn no_late_joiners(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    let now = t0();
    let a = stream_of(&ingest(&*storage, &[plan(&set, "a", "thing.done", "k", now)], now).await[0]);
    let st = stream(&*storage, a).await;
    let lease = std::time::Duration::from_secs(60);
    let claimed = storage.claim(&st, Action::Fire, now, lease).await.expect("claim").expect("claimed");
    assert_eq!((claimed.state, claimed.state_serial_no, claimed.open), (StreamState::Firing, 1, false));
    assert!(storage.claim(&st, Action::Fire, now, lease).await.expect("claim").is_none(), "a stale claim loses");
    let b = stream_of(&ingest(&*storage, &[plan(&set, "b", "thing.start", "k", now + secs(1))], now).await[0]);
    assert_ne!(a, b);
    assert_eq!(stream(&*storage, a).await.event_count, 1);
    assert_eq!(storage.load_events(&[a]).await.expect("load").len(), 1);
}

/// A replayed event is judged at its own arrival (`ReplayAt`), not the
/// batch's `now`: it opens a new stream when the key's stream had expired by
/// then, or had been taken by the worker run before it (its fire time had
/// come by then); the fire time is its arrival.
pub async fn replayed_events_are_judged_at_their_own_arrival(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    let arrive = |id: &str, ty: &str, key: &str, minute: i64, worker_ran: Option<i64>| EventPlan {
        replay: Some(ReplayAt { now: t0() + mins(minute), worker_ran: worker_ran.map(|m| t0() + mins(m)) }),
        ..plan(&set, id, ty, key, t0() + mins(minute))
    };
    let batch = [
        // a: the second event arrives after the first one's stream expired.
        arrive("a1", "thing.start", "a", 0, None),
        arrive("a2", "thing.start", "a", 90, None),
        // b: ready to fire at minute 1, taken by the worker run at minute 2.
        arrive("b1", "thing.start", "b", 0, None),
        arrive("b2", "thing.done", "b", 1, None),
        arrive("b3", "thing.start", "b", 3, Some(2)),
        // c: ready to fire at minute 5, after the worker ran: still takes events.
        arrive("c1", "thing.done", "c", 5, Some(2)),
        arrive("c2", "thing.start", "c", 6, Some(2)),
    ];
    let out = ingest(&*storage, &batch, t0() + Duration::hours(5)).await;
    let s: Vec<i64> = out.iter().map(stream_of).collect();
    assert_ne!(s[0], s[1], "a2 arrived after a1's stream expired");
    assert_eq!(s[2], s[3]);
    assert_ne!(s[3], s[4], "b3 arrived after the worker took b's stream");
    assert_eq!(s[5], s[6], "c's stream was due after the worker ran");
    let (a1, a2) = (stream(&*storage, s[0]).await, stream(&*storage, s[1]).await);
    assert_eq!((a1.open, a1.event_count, a2.open), (false, 1, true));
    let b = stream(&*storage, s[2]).await;
    assert_eq!((b.open, b.event_count, b.fire_timestamp), (false, 2, Some(t0() + mins(1))), "fired at b2's arrival");
    let c = stream(&*storage, s[5]).await;
    assert_eq!((c.open, c.event_count, c.fire_timestamp), (true, 2, Some(t0() + mins(5))));
}

/// Every trait type, Unicode and awkward characters come back exactly as
/// they went in, through every read (microsecond times included).
pub async fn typed_traits_round_trip(h: &dyn Harness) {
    let storage = h.storage();
    let traits = [
        ("key", text("k")),
        ("s", text("naïve ☃ 𝄞 \"double\" 'single' back\\slash\nnew line\ttab %_*?[]")),
        ("empty", text("")),
        ("imax", TraitValue::Int(i64::MAX)),
        ("imin", TraitValue::Int(i64::MIN)),
        ("zero", TraitValue::Int(0)),
        ("tenth", TraitValue::Float(0.1)),
        ("negative", TraitValue::Float(-2.5)),
        ("whole", TraitValue::Float(4096.0)),
        ("yes", TraitValue::Bool(true)),
        ("no", TraitValue::Bool(false)),
        ("when", TraitValue::Datetime(t0() + Duration::microseconds(123_456))),
        ("ünïcödé name ☃", text("x")),
    ];
    let e = event("ïd-☃-'\"", "thing.ünïcode", t0() + Duration::microseconds(654_321), &traits);
    let out = ingest(&*storage, &[plan_event(&triggers(), e.clone())], t0()).await;
    let (event_id, streams) = saved(&out[0]);
    let stored = storage.get_event(&e.message_id).await.expect("get_event").expect("saved");
    assert_eq!((stored.id, &stored.event), (event_id, &e), "get_event");
    assert_eq!(storage.load_events(&streams).await.expect("load"), vec![(streams[0], e.clone())], "load_events");
    assert_eq!(storage.stream_events(streams[0], None, 10).await.expect("page").0, vec![e.clone()], "stream_events");
    let listed = storage.list_events(&EventFilter::default()).await.expect("list");
    assert_eq!(listed, vec![stored.clone()], "list_events");
    assert_eq!(storage.events_since(0, &[], 10).await.expect("since"), vec![stored], "events_since");
    assert_eq!(storage.latest_event_time().await.expect("latest"), Some(e.timestamp));
    let by_name = EventFilter { event_name: Some(NamePattern(e.event_type.clone())), ..EventFilter::default() };
    assert_eq!(storage.count_events(&by_name).await.expect("count"), 1, "an exact Unicode event type");
}

/// Invariant 13: user strings reach the database only as data: in trigger
/// and trait names, message ids, values and every query filter.
pub async fn hostile_strings_are_data(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(
        r#"
- name: "x'); DROP TABLE event; --"
  distinguished_by: ["k'; DELETE FROM stream; --"]
  expiration: "$last + 1h"
  fire_pipeline: p
  match_criteria: [{}]
  fire_criteria: [{}]
"#,
    );
    let now = at(2014, 8, 1, 20, 30, 0);
    let evil = "'; DROP TABLE stream; --";
    let e = event(evil, "a.b", now, &[("k'; DELETE FROM stream; --", text(evil)), ("\"quoted\"", text("\\"))]);
    let id = stream_of(&ingest(&*storage, &[plan_event(&set, e.clone())], now).await[0]);
    let st = stream(&*storage, id).await;
    assert_eq!(st.trigger, "x'); DROP TABLE event; --");
    let (events, _) = storage.stream_events(id, None, 10).await.expect("page");
    assert_eq!(events, vec![e.clone()]);
    assert_eq!(storage.get_event(evil).await.expect("get").map(|s| s.event), Some(e));
    let trait_is = |name: &str, value: &str| vec![TraitFilter { name: name.into(), value: value.into() }];
    // Filters holding the strings find the rows...
    let by_trigger = StreamFilter { trigger: Some(st.trigger.clone()), ..StreamFilter::default() };
    assert_eq!(storage.count_streams(&by_trigger).await.expect("count"), 1);
    let by_dist = StreamFilter { dist_traits: trait_is("k'; DELETE FROM stream; --", evil), ..StreamFilter::default() };
    assert_eq!(storage.count_streams(&by_dist).await.expect("count"), 1);
    let by_trait = EventFilter { traits: trait_is("\"quoted\"", "\\"), ..EventFilter::default() };
    assert_eq!(storage.count_events(&by_trait).await.expect("count"), 1);
    // ... and strings written to break out of them find nothing.
    let escapes = ["' OR '1'='1", "\" OR 1=1 --", "') OR 1=1 --", "*' OR '*", "$.x') OR 1=1 --", "\\"];
    for s in escapes {
        let f = EventFilter { event_name: Some(NamePattern(s.into())), ..EventFilter::default() };
        assert_eq!(storage.count_events(&f).await.expect("count"), 0, "event name {s:?}");
        let f = EventFilter { traits: trait_is(s, "1"), ..EventFilter::default() };
        assert_eq!(storage.count_events(&f).await.expect("count"), 0, "trait name {s:?}");
        let f = StreamFilter { trigger: Some(s.into()), ..StreamFilter::default() };
        assert_eq!(storage.count_streams(&f).await.expect("count"), 0, "trigger {s:?}");
        let f = StreamFilter { dist_traits: trait_is(s, "1"), ..StreamFilter::default() };
        assert_eq!(storage.count_streams(&f).await.expect("count"), 0, "distinguishing trait {s:?}");
        assert!(storage.get_event(s).await.expect("get").is_none(), "message id {s:?}");
    }
    assert_eq!(storage.count_events(&EventFilter::default()).await.expect("count"), 1);
    assert_eq!(storage.count_streams(&StreamFilter::default()).await.expect("count"), 1);
}
