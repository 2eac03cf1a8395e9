//! The stream state machine: claims, fire over expire, finishes, retries and
//! the other compare-and-sets, `next_due`, lease renewal and reclaim.

use super::*;
use crate::{BulkOutcome, Finish, FinishOutcome, ReplayAt, StreamFilter, StreamState, TriggerScope};
use std::collections::HashSet;

/// A stream that failed its fire pipeline (`error`) and one that failed its
/// expire pipeline (`expire_error`), failed at `t0 + 2h`.
pub(super) async fn failed_streams(storage: &dyn Storage) -> (Stream, Stream) {
    let set = triggers();
    let batch = [plan(&set, "f", "thing.done", "fired", t0()), plan(&set, "q", "thing.start", "quiet", t0() - mins(5))];
    ingest(storage, &batch, t0()).await;
    let now = t0() + Duration::hours(2);
    let fired = claim_all(storage, Action::Fire, now).await;
    let quiet = claim_all(storage, Action::Expire, now).await;
    assert_eq!((fired.len(), quiet.len()), (1, 1));
    finish(storage, &fired[0], Finish::Failed { reason: "fire failed" }, now).await;
    finish(storage, &quiet[0], Finish::Failed { reason: "expire failed" }, now).await;
    (stream(storage, fired[0].id).await, stream(storage, quiet[0].id).await)
}

/// Two workers claiming at once take every ready stream exactly once; a claim
/// moves it to `firing`, bumps the serial, closes it and leases it.
pub async fn claim_ready_takes_each_stream_once(h: &dyn Harness) {
    let storage = h.storage();
    let ids = streams(&*storage, 40, true).await;
    let now = t0() + secs(5);
    let lease = now + secs(60);
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
    let later = lease + secs(1);
    let again = storage.claim_ready(Action::Fire, later, later + secs(60), 100).await.expect("reclaim");
    assert_eq!(again.len(), 40);
    assert!(again.iter().all(|c| c.reclaimed), "taken over after the lease ran out: a reclaim");
    assert!(again.iter().all(|c| c.stream.attempts == 2));
}

/// A claim restricted to some triggers takes only their streams (`Only`), or
/// only the others' (`Except`), up to the limit.
pub async fn claim_ready_among_respects_trigger_scope(h: &dyn Harness) {
    let storage = h.storage();
    let yaml = format!("{TRIGGERS}{}", TRIGGERS.replace("name: things", "name: others").replace("thing.", "other."));
    let set = triggers_from(&yaml);
    let mut batch = Vec::new();
    for i in 0..6 {
        let at = t0() + secs(i);
        for kind in ["thing", "other"] {
            batch.push(plan(&set, &format!("{kind}-start-{i}"), &format!("{kind}.start"), &format!("k{i}"), at));
            batch.push(plan(&set, &format!("{kind}-done-{i}"), &format!("{kind}.done"), &format!("k{i}"), at));
        }
    }
    ingest(&*storage, &batch, t0()).await;
    let now = t0() + mins(1);
    let lease = now + secs(60);
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

/// A stream whose fire criteria are met is never ready to expire, even when
/// its expire time has passed; one that is not is expired.
pub async fn fire_wins_over_expire(h: &dyn Harness) {
    let storage = h.storage();
    let fired = streams(&*storage, 1, true).await[0];
    let set = triggers();
    let quiet = ingest(&*storage, &[plan(&set, "quiet", "thing.start", "quiet", t0() - mins(5))], t0()).await;
    let quiet = stream_of(&quiet[0]);
    let late = t0() + Duration::hours(3);
    let next = storage.next_due(t0() - Duration::hours(1)).await.expect("next_due");
    assert!(next.is_some(), "next_due sees the coming fire time");
    let ready = storage.ready_streams(Action::Expire, late, 10).await.expect("ready");
    assert_eq!(ids(&ready), vec![quiet], "the fired stream is not ready to expire");
    let expired = claim_all(&*storage, Action::Expire, late).await;
    assert_eq!(ids(&expired), vec![quiet]);
    assert_eq!(expired[0].state, StreamState::Expiring);
    let fire = claim_all(&*storage, Action::Fire, late).await;
    assert_eq!(ids(&fire), vec![fired]);
}

/// A claim of one stream takes it only while it is ready for that action and
/// its serial is the caller's; it leases it for the given time.
pub async fn claim_needs_readiness_and_the_current_serial(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    let batch = [plan(&set, "q", "thing.start", "quiet", t0()), plan(&set, "d", "thing.done", "due", t0())];
    let out = ingest(&*storage, &batch, t0()).await;
    let (quiet, due) = (stream(&*storage, stream_of(&out[0])).await, stream(&*storage, stream_of(&out[1])).await);
    for action in [Action::Fire, Action::Expire] {
        let got = storage.claim(&quiet, action, t0(), MINUTE).await.expect("claim");
        assert!(got.is_none(), "{action:?}: not due yet");
    }
    assert_eq!(stream(&*storage, quiet.id).await, quiet, "a refused claim changes nothing");
    let got = storage.claim(&due, Action::Expire, t0() + Duration::hours(2), MINUTE).await.expect("claim");
    assert!(got.is_none(), "ready to fire: never claimed to expire");
    let mut stale = due.clone();
    stale.state_serial_no += 1;
    assert!(storage.claim(&stale, Action::Fire, t0(), MINUTE).await.expect("claim").is_none(), "another serial");
    let now = t0() + secs(5);
    let c = storage.claim(&due, Action::Fire, now, MINUTE).await.expect("claim").expect("claimed");
    assert_eq!(
        (c.state, c.state_serial_no, c.open, c.attempts, c.lease_expires_at),
        (StreamState::Firing, due.state_serial_no + 1, false, 1, Some(now + secs(60)))
    );
    assert_eq!(stream(&*storage, due.id).await, c, "the claim answers the stream as stored");
    let e = storage.claim(&quiet, Action::Expire, t0() + mins(61), MINUTE).await.expect("claim").expect("claimed");
    assert_eq!((e.state, e.open), (StreamState::Expiring, false));
}

/// Ready streams come oldest due first (by fire time, or by expire time),
/// up to the limit; a stream is due at its time, not before; claims take the
/// oldest due.
pub async fn ready_streams_come_oldest_due_first(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    // Fired at minutes 3, 1, 4, 0, 2 (the ingest's now), in that order.
    for (i, minute) in [3, 1, 4, 0, 2].into_iter().enumerate() {
        let done = plan(&set, &format!("done-{i}"), "thing.done", &format!("k{i}"), t0());
        ingest(&*storage, &[done], t0() + mins(minute)).await;
    }
    let fire_times = |s: &[Stream]| s.iter().map(|s| s.fire_timestamp.expect("fired")).collect::<Vec<_>>();
    let ready = storage.ready_streams(Action::Fire, t0() + mins(10), 3).await.expect("ready");
    assert_eq!(fire_times(&ready), [t0(), t0() + mins(1), t0() + mins(2)]);
    let due_now = storage.ready_streams(Action::Fire, t0() + mins(1), 10).await.expect("ready");
    assert_eq!(fire_times(&due_now), [t0(), t0() + mins(1)], "due at the fire time itself, not before");
    let now = t0() + mins(10);
    let first = streams_of(storage.claim_ready(Action::Fire, now, now + mins(1), 2).await.expect("claim"));
    let mut times = fire_times(&first);
    times.sort();
    assert_eq!(times, [t0(), t0() + mins(1)], "the two oldest due");
    // Quiet streams expire by their last event: minutes 5, 1, 3.
    for (i, minute) in [5, 1, 3].into_iter().enumerate() {
        ingest(&*storage, &[plan(&set, &format!("q-{i}"), "thing.start", &format!("q{i}"), t0() + mins(minute))], t0())
            .await;
    }
    let ready = storage.ready_streams(Action::Expire, t0() + Duration::hours(2), 10).await.expect("ready");
    let expiries: Vec<_> = ready.iter().map(|s| s.expire_timestamp - Duration::hours(1)).collect();
    assert_eq!(expiries, [t0() + mins(1), t0() + mins(3), t0() + mins(5)]);
}

/// A claim takes the oldest due streams (answered in any order; a worker
/// runs a batch's streams side by side).
pub async fn claims_take_the_oldest_due(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    // Fired at shuffled minutes (each event's arrival is its fire time).
    let minutes: Vec<i64> = (0..60).map(|i| (i * 37) % 60).collect();
    let batch: Vec<EventPlan> = minutes
        .iter()
        .map(|m| EventPlan {
            replay: Some(ReplayAt { now: t0() + mins(*m), worker_ran: None }),
            ..plan(&set, &format!("done-{m}"), "thing.done", &format!("k{m}"), t0())
        })
        .collect();
    ingest(&*storage, &batch, t0()).await;
    let now = t0() + Duration::hours(2);
    for (limit, first) in [(25, 0), (35, 25)] {
        let claimed = storage.claim_ready(Action::Fire, now, now + mins(1), limit).await.expect("claim");
        let mut got: Vec<DateTime<Utc>> = claimed.iter().map(|c| c.stream.fire_timestamp.expect("fired")).collect();
        got.sort_unstable();
        let want: Vec<DateTime<Utc>> = (first..first + i64::from(limit)).map(|m| t0() + mins(m)).collect();
        assert_eq!(got, want, "claimed the oldest due");
    }
}

/// Completed and failed streams are never ready, however late.
pub async fn finished_and_failed_streams_are_never_ready(h: &dyn Harness) {
    let storage = h.storage();
    failed_streams(&*storage).await;
    let ids = streams(&*storage, 1, true).await;
    let c = claim_all(&*storage, Action::Fire, t0() + Duration::hours(3)).await;
    assert_eq!(self::ids(&c), ids);
    finish(&*storage, &c[0], completed(), t0() + Duration::hours(3)).await;
    let far = t0() + Duration::days(400);
    for action in [Action::Fire, Action::Expire] {
        assert!(storage.ready_streams(action, far, 10).await.expect("ready").is_empty(), "{action:?}");
        assert!(storage.claim_ready(action, far, far + mins(1), 10).await.expect("claim").is_empty(), "{action:?}");
    }
    assert_eq!(storage.next_due(t0()).await.expect("next_due"), None, "nothing will become due");
}

/// Renewals keep the serial and hold only while it matches; a batch of
/// finishes is one compare-and-set per stream with one outcome per run; new
/// events are saved only for runs whose compare-and-set held; retry moves a
/// failed stream on.
pub async fn renew_and_finish_many(h: &dyn Harness) {
    let storage = h.storage();
    let ids = streams(&*storage, 3, true).await;
    let now = t0() + secs(5);
    let mut claimed = streams_of(storage.claim_ready(Action::Fire, now, now + secs(10), 10).await.expect("claim"));
    claimed.sort_by_key(|s| s.id);
    assert_eq!(self::ids(&claimed), ids);
    let held: Vec<(i64, i32)> = claimed.iter().map(|s| (s.id, s.state_serial_no)).collect();
    let stale = (held[2].0, held[2].1 - 1);
    let until = now + secs(30);
    let mut renewed = storage.renew_leases(&[held[0], held[1], stale], until).await.expect("renew");
    renewed.sort();
    assert_eq!(renewed, vec![ids[0], ids[1]], "a stale serial is not renewed");
    let s0 = stream(&*storage, ids[0]).await;
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
    let s0 = stream(&*storage, ids[0]).await;
    assert_eq!((s0.state, s0.lease_expires_at), (StreamState::Completed, None));
    let s1 = stream(&*storage, ids[1]).await;
    assert_eq!((s1.state, s1.last_error.as_deref()), (StreamState::Error, Some("refused")));
    let dup = ingest(&*storage, &extra, now).await;
    assert_eq!(dup, vec![IngestOutcome::Duplicate], "the completed run's new event was saved");
    let fresh = ingest(&*storage, &lost_extra, now).await;
    assert!(matches!(fresh[0], IngestOutcome::Saved { .. }), "the lost run's new event was not saved");
    let retried = storage.retry_stream(ids[1]).await.expect("retry").expect("exists");
    assert_eq!(retried.state, StreamState::RetryFire);
    let purged = streams_of(storage.claim_ready(Action::Fire, now, now + secs(10), 10).await.expect("claim"));
    assert_eq!(self::ids(&purged), vec![ids[1]], "retry_fire is ready to fire");
    let out = storage
        .finish_many(&[(&purged[0], Finish::Completed { purge: true, new_events: &[] })], now)
        .await
        .expect("finish purge");
    assert!(matches!(out[0], FinishOutcome::Done(_)));
    assert!(storage.get_stream(ids[1]).await.expect("get").is_none(), "purged");
}

/// A failed run leaves `error` (fire) or `expire_error` (expire) with its
/// reason, unleased; a later successful run clears the reason.
pub async fn failed_runs_record_their_reason(h: &dyn Harness) {
    let storage = h.storage();
    let (fired, quiet) = failed_streams(&*storage).await;
    assert_eq!(
        (fired.state, fired.last_error.as_deref(), fired.lease_expires_at, fired.state_serial_no, fired.attempts),
        (StreamState::Error, Some("fire failed"), None, 2, 1)
    );
    assert_eq!(
        (quiet.state, quiet.last_error.as_deref(), quiet.lease_expires_at, quiet.state_serial_no),
        (StreamState::ExpireError, Some("expire failed"), None, 2)
    );
    let reason = "handler #2: 'quoted' \"text\" ☃\nsecond line";
    storage.retry_stream(fired.id).await.expect("retry").expect("exists");
    let now = t0() + Duration::hours(3);
    let again = claim_all(&*storage, Action::Fire, now).await;
    finish(&*storage, &again[0], Finish::Failed { reason }, now).await;
    assert_eq!(stream(&*storage, fired.id).await.last_error.as_deref(), Some(reason), "the reason as given");
    storage.retry_stream(fired.id).await.expect("retry").expect("exists");
    let again = claim_all(&*storage, Action::Fire, now).await;
    assert_eq!(again[0].attempts, 3);
    finish(&*storage, &again[0], completed(), now).await;
    let done = stream(&*storage, fired.id).await;
    assert_eq!((done.state, done.last_error), (StreamState::Completed, None), "success clears the last failure");
}

/// The claimed stream `c` was completed by one run: serial bumped once, no failure recorded.
async fn completed_once(storage: &dyn Storage, c: &Stream) {
    let s = stream(storage, c.id).await;
    assert_eq!((s.state, s.last_error, s.state_serial_no), (StreamState::Completed, None, c.state_serial_no + 1));
}

/// A run is recorded once: a second finish with the same claimed copy loses
/// and changes nothing.
pub async fn a_run_finishes_once(h: &dyn Harness) {
    let storage = h.storage();
    let (c, now) = (one_claimed(&*storage).await, claimed_at());
    finish(&*storage, &c, completed(), now).await;
    for late in [Finish::Failed { reason: "late" }, completed(), Finish::Completed { purge: true, new_events: &[] }] {
        let out = storage.finish(&c, late, now).await.expect("finish");
        assert!(matches!(out, FinishOutcome::LostLease), "{out:?}");
    }
    completed_once(&*storage, &c).await;
}

/// Two runs of one claim in the same batch of finishes: the first is
/// recorded, the second loses (each run is its own compare-and-set).
pub async fn one_claim_twice_in_a_batch_finishes_once(h: &dyn Harness) {
    let storage = h.storage();
    let (c, now) = (one_claimed(&*storage).await, claimed_at());
    let twice = [(&c, completed()), (&c, Finish::Failed { reason: "twice" })];
    let out = storage.finish_many(&twice, now).await.expect("finish_many");
    assert!(
        matches!(out.as_slice(), [FinishOutcome::Done(_), FinishOutcome::LostLease]),
        "the second run of one claim in a batch loses: {out:?}"
    );
    completed_once(&*storage, &c).await;
}

/// A completed run's new events are ingested like any others in the same
/// transaction: they open and join streams, fire them, and a repeated
/// message_id is a duplicate.
pub async fn finish_saves_pipeline_events_like_ingest(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    let ids = streams(&*storage, 2, true).await;
    let now = t0() + secs(5);
    let mut c = claim_all(&*storage, Action::Fire, now).await;
    c.sort_by_key(|s| s.id);
    let made = [
        plan(&set, "made-1", "thing.start", "fresh", now),
        plan(&set, "made-2", "thing.done", "fresh", now),
        plan(&set, "start-1", "thing.start", "k1", now), // a repeat of a stored event
    ];
    let out = finish(&*storage, &c[0], Finish::Completed { purge: false, new_events: &made }, now).await;
    assert_eq!(out.len(), 3, "one outcome per new event");
    assert_eq!(out[2], IngestOutcome::Duplicate);
    let fresh = stream_of(&out[0]);
    assert_eq!(stream_of(&out[1]), fresh);
    let f = stream(&*storage, fresh).await;
    assert_eq!((f.event_count, f.open, f.fire_timestamp), (2, true, Some(now)));
    // A purged run's new event for the key of the stream it purges opens a new stream.
    let again = [plan(&set, "made-3", "thing.start", "k1", now)];
    let out = finish(&*storage, &c[1], Finish::Completed { purge: true, new_events: &again }, now).await;
    let k1 = stream_of(&out[0]);
    assert_ne!(k1, ids[1]);
    assert!(storage.get_stream(ids[1]).await.expect("get").is_none(), "purged");
    assert_eq!(stream(&*storage, k1).await.event_count, 1);
    assert!(storage.get_event("made-3").await.expect("get").is_some());
}

/// `error` is retried to `retry_fire` (ready to fire, not to expire),
/// `expire_error` to `retry_expire` (ready to expire once its expire time
/// has come, not to fire); a claim from there is no reclaim.
pub async fn retry_moves_failed_streams_back_to_work(h: &dyn Harness) {
    let storage = h.storage();
    let (fired, quiet) = failed_streams(&*storage).await;
    let f = storage.retry_stream(fired.id).await.expect("retry").expect("exists");
    assert_eq!((f.state, f.state_serial_no), (StreamState::RetryFire, fired.state_serial_no + 1));
    let q = storage.retry_stream(quiet.id).await.expect("retry").expect("exists");
    assert_eq!((q.state, q.state_serial_no), (StreamState::RetryExpire, quiet.state_serial_no + 1));
    assert_eq!(stream(&*storage, fired.id).await, f, "the answer is the stream as stored");
    let now = t0() + Duration::hours(3);
    assert_eq!(ids(&storage.ready_streams(Action::Fire, now, 10).await.expect("ready")), vec![fired.id]);
    assert_eq!(ids(&storage.ready_streams(Action::Expire, now, 10).await.expect("ready")), vec![quiet.id]);
    for (action, id, state) in
        [(Action::Fire, fired.id, StreamState::Firing), (Action::Expire, quiet.id, StreamState::Expiring)]
    {
        let c = storage.claim_ready(action, now, now + mins(1), 10).await.expect("claim");
        assert_eq!(c.len(), 1, "{action:?}");
        assert_eq!((c[0].stream.id, c[0].stream.state, c[0].stream.attempts, c[0].reclaimed), (id, state, 2, false));
    }
}

/// Retry leaves a stream in any other state exactly as it is; a missing
/// stream is `None`.
pub async fn retry_leaves_other_states_alone(h: &dyn Harness) {
    let storage = h.storage();
    let (fired, _) = failed_streams(&*storage).await;
    let ids = streams(&*storage, 2, true).await;
    let active = ingest(&*storage, &[plan(&triggers(), "a", "thing.start", "active", t0())], t0()).await;
    let now = t0() + secs(5);
    let mut c = claim_all(&*storage, Action::Fire, now).await;
    c.sort_by_key(|s| s.id);
    assert_eq!(self::ids(&c), ids);
    finish(&*storage, &c[0], completed(), now).await;
    storage.retry_stream(fired.id).await.expect("retry"); // now retry_fire
    for id in [fired.id, ids[0], ids[1], stream_of(&active[0])] {
        let before = stream(&*storage, id).await;
        let after = storage.retry_stream(id).await.expect("retry").expect("exists");
        assert_eq!(after, before, "{}: unchanged", before.state);
        assert_eq!(stream(&*storage, id).await, before, "{}: unchanged", before.state);
    }
    assert!(storage.retry_stream(i64::MAX).await.expect("retry").is_none());
}

/// `set_state` moves a stream only while its serial is the caller's, bumping
/// it; a stale serial or a missing stream changes nothing.
pub async fn set_state_is_a_compare_and_set(h: &dyn Harness) {
    let storage = h.storage();
    let s = one_claimed(&*storage).await;
    let id = s.id;
    for serial in [s.state_serial_no + 1, s.state_serial_no - 1] {
        assert!(storage.set_state(id, serial, StreamState::Error).await.expect("cas").is_none(), "serial {serial}");
    }
    assert_eq!(stream(&*storage, id).await, s, "a lost compare-and-set changes nothing");
    let moved = storage.set_state(id, s.state_serial_no, StreamState::Error).await.expect("cas").expect("moved");
    assert_eq!((moved.state, moved.state_serial_no), (StreamState::Error, s.state_serial_no + 1));
    assert_eq!(moved, Stream { state: StreamState::Error, state_serial_no: s.state_serial_no + 1, ..s.clone() });
    assert_eq!(stream(&*storage, id).await, moved);
    let again = storage.set_state(id, s.state_serial_no, StreamState::RetryFire).await.expect("cas");
    assert!(again.is_none(), "the old serial is spent");
    assert!(storage.set_state(i64::MAX, 0, StreamState::Error).await.expect("cas").is_none(), "missing stream");
}

/// Bulk retry walks every stream matching the filter in pages and retries
/// the failed ones; it counts what matched and what changed.
pub async fn bulk_retry_by_filter(h: &dyn Harness) {
    let storage = h.storage();
    streams(&*storage, 5, true).await;
    let set = triggers();
    ingest(&*storage, &[plan(&set, "a", "thing.start", "a", t0()), plan(&set, "b", "thing.start", "b", t0())], t0())
        .await;
    let now = t0() + secs(5);
    let claimed = claim_all(&*storage, Action::Fire, now).await;
    assert_eq!(claimed.len(), 5);
    let runs: Vec<_> = claimed.iter().map(|s| (s, Finish::Failed { reason: "x" })).collect();
    storage.finish_many(&runs, now).await.expect("finish_many");
    let errors = StreamFilter { state: Some(StreamState::Error), ..StreamFilter::default() };
    assert_eq!(storage.retry_streams(&errors, 2).await.expect("retry"), BulkOutcome { matched: 5, changed: 5 });
    let retried = StreamFilter { state: Some(StreamState::RetryFire), ..StreamFilter::default() };
    assert_eq!(storage.count_streams(&retried).await.expect("count"), 5);
    let all = StreamFilter::default();
    assert_eq!(storage.retry_streams(&all, 2).await.expect("retry"), BulkOutcome { matched: 7, changed: 0 });
    let none = StreamFilter { trigger: Some("nope".into()), ..StreamFilter::default() };
    assert_eq!(storage.retry_streams(&none, 2).await.expect("retry"), BulkOutcome::default());
}

/// With no stream waiting for anything, `next_due` is `None`.
pub async fn next_due_is_none_when_nothing_waits(h: &dyn Harness) {
    let storage = h.storage();
    assert_eq!(storage.next_due(t0()).await.expect("next_due"), None, "empty");
    let c = one_claimed(&*storage).await;
    finish(&*storage, &c, completed(), claimed_at()).await;
    assert_eq!(storage.next_due(t0() - Duration::days(1)).await.expect("next_due"), None, "only a completed stream");
}

/// `next_due` is the earliest moment after `now` at which a stream becomes
/// ready: a fire time, the expire time of an unfired stream, a lease's end.
pub async fn next_due_is_the_earliest_coming_moment(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    ingest(&*storage, &[plan(&set, "q", "thing.start", "quiet", t0())], t0()).await; // expires at t0 + 1h
    ingest(&*storage, &[plan(&set, "f", "thing.done", "fired", t0())], t0() + mins(10)).await; // fires at t0 + 10m
    let due = |now| {
        let storage = storage.clone();
        async move { storage.next_due(now).await.expect("next_due") }
    };
    assert_eq!(due(t0()).await, Some(t0() + mins(10)), "the fire time");
    assert_eq!(due(t0() + mins(10)).await, Some(t0() + Duration::hours(1)), "after now only: the quiet one's expiry");
    assert_eq!(due(t0() + Duration::hours(1)).await, None, "a fired stream's expiry does not count");
    let now = t0() + Duration::hours(1);
    let lease_end = now + secs(90);
    let c = storage.claim_ready(Action::Expire, now, lease_end, 10).await.expect("claim");
    assert_eq!(c.len(), 1);
    assert_eq!(due(now).await, Some(lease_end), "the lease's end");
}

/// Invariants 6 and 7: a worker whose lease ran out loses its stream to another
/// worker; its late finish writes nothing, the new owner's finish counts.
pub async fn lease_expiry_reclaims_and_old_owner_loses(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    let now = t0();
    let id = stream_of(&ingest(&*storage, &[plan(&set, "e1", "thing.done", "o1", now)], now).await[0]);
    let ready = storage.ready_streams(Action::Fire, now, 10).await.expect("ready");
    let a = storage.claim(&ready[0], Action::Fire, now, MINUTE).await.expect("claim").expect("claimed");
    // Not reclaimable while the lease holds.
    assert!(storage.ready_streams(Action::Fire, now + secs(59), 10).await.expect("ready").is_empty());
    let later = now + secs(61);
    let stale = storage.ready_streams(Action::Fire, later, 10).await.expect("ready");
    assert_eq!(stale.len(), 1);
    let b = storage.claim(&stale[0], Action::Fire, later, MINUTE).await.expect("claim").expect("reclaimed");
    assert_eq!((b.state, b.state_serial_no, b.attempts), (StreamState::Firing, 2, 2));
    assert!(matches!(storage.finish(&a, completed(), later).await.expect("finish"), FinishOutcome::LostLease));
    assert!(matches!(storage.finish(&b, completed(), later).await.expect("finish"), FinishOutcome::Done(_)));
    let st = stream(&*storage, id).await;
    assert_eq!((st.state, st.state_serial_no), (StreamState::Completed, 3));
}

/// A renewed lease keeps the stream from being reclaimed until the new end;
/// once it has run out, a reclaim bumps the serial and the old owner's
/// renewals are refused.
pub async fn renewed_lease_defers_reclaim(h: &dyn Harness) {
    let storage = h.storage();
    let (c, now) = (one_claimed(&*storage).await, claimed_at());
    let id = c.id;
    let held = [(id, c.state_serial_no)];
    assert_eq!(storage.renew_leases(&held, now + secs(120)).await.expect("renew"), vec![id]);
    let s = stream(&*storage, id).await;
    assert_eq!(s, Stream { lease_expires_at: Some(now + secs(120)), ..c.clone() }, "only the lease moved");
    let mid = now + secs(90);
    assert!(storage.ready_streams(Action::Fire, mid, 10).await.expect("ready").is_empty(), "renewed: still held");
    assert!(storage.claim_ready(Action::Fire, mid, mid + mins(1), 10).await.expect("claim").is_empty());
    let late = now + secs(121);
    let taken = storage.claim_ready(Action::Fire, late, late + mins(1), 10).await.expect("claim");
    assert_eq!(taken.len(), 1);
    assert!(taken[0].reclaimed);
    assert_eq!((taken[0].stream.state_serial_no, taken[0].stream.attempts), (c.state_serial_no + 1, 2));
    assert!(storage.renew_leases(&held, late + mins(5)).await.expect("renew").is_empty(), "the old owner lost it");
    assert_eq!(stream(&*storage, id).await.lease_expires_at, Some(late + mins(1)));
}

/// Only streams in hand (firing or expiring, serial matching) are renewed.
pub async fn only_held_streams_renew(h: &dyn Harness) {
    let storage = h.storage();
    let (fired, quiet) = failed_streams(&*storage).await;
    let ids = streams(&*storage, 2, true).await;
    let active = ingest(&*storage, &[plan(&triggers(), "a", "thing.start", "active", t0())], t0()).await;
    let active = stream_of(&active[0]);
    let now = t0() + Duration::hours(3);
    let mut c = claim_all(&*storage, Action::Fire, now).await;
    c.sort_by_key(|s| s.id);
    assert_eq!(self::ids(&c), ids);
    finish(&*storage, &c[0], completed(), now).await;
    let done = stream(&*storage, ids[0]).await;
    let active = stream(&*storage, active).await;
    let held = [
        (fired.id, fired.state_serial_no),
        (quiet.id, quiet.state_serial_no),
        (done.id, done.state_serial_no),
        (active.id, active.state_serial_no),
        (c[1].id, c[1].state_serial_no),
        (i64::MAX, 0),
    ];
    let until = now + Duration::hours(1);
    assert_eq!(storage.renew_leases(&held, until).await.expect("renew"), vec![c[1].id]);
    for s in [fired, quiet, done, active] {
        assert_eq!(stream(&*storage, s.id).await, s, "{}: not renewed", s.state);
    }
    assert!(storage.renew_leases(&[], until).await.expect("renew").is_empty());
}

/// An expiring stream whose lease ran out is ready to expire again, never to fire.
pub async fn expiring_stream_is_reclaimed_for_expiry_only(h: &dyn Harness) {
    let storage = h.storage();
    let id = streams(&*storage, 1, false).await[0];
    let now = t0() + Duration::hours(2);
    let c = claim_all(&*storage, Action::Expire, now).await;
    assert_eq!(ids(&c), vec![id]);
    let late = now + mins(2);
    assert!(storage.ready_streams(Action::Fire, late, 10).await.expect("ready").is_empty());
    assert!(storage.claim_ready(Action::Fire, late, late + mins(1), 10).await.expect("claim").is_empty());
    assert_eq!(ids(&storage.ready_streams(Action::Expire, late, 10).await.expect("ready")), vec![id]);
    let again = storage.claim_ready(Action::Expire, late, late + mins(1), 10).await.expect("claim");
    assert_eq!(again.len(), 1);
    let s = &again[0].stream;
    assert!(again[0].reclaimed);
    assert_eq!((s.state, s.attempts, s.state_serial_no), (StreamState::Expiring, 2, c[0].state_serial_no + 1));
}
