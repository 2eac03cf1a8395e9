//! The stream transition log: what is logged (the end of a run, a failure, a
//! reset, a delete), what is not (claims, renewals, ingest), and reading it
//! by id and by time.

use super::lifecycle::failed_streams;
use super::*;
use crate::{Finish, StreamState, Transition, TransitionKind};

/// `(stream, from, to, kind)` of logged transitions.
fn rows(log: &[Transition]) -> Vec<(i64, StreamState, Option<StreamState>, TransitionKind)> {
    log.iter().map(|t| (t.stream_id, t.from, t.to, t.kind)).collect()
}

/// Claims the one stream ready for `action` at `now`.
async fn claim_one(storage: &dyn Storage, action: Action, now: DateTime<Utc>) -> Stream {
    let mut c = claim_all(storage, action, now).await;
    assert_eq!(c.len(), 1, "{action:?} at {now}: {c:?}");
    c.remove(0)
}

/// Each finish, failure, reset and delete logs one row, in order, with the
/// stream, its trigger, the states before and after and what it means; the
/// time is the database's, in order.
pub async fn transitions_logged_for_each_end_and_reset(h: &dyn Harness) {
    let storage = h.storage();
    let started = Utc::now();
    let set = triggers();
    let batch = [
        plan(&set, "f1", "thing.done", "f1", t0()),
        plan(&set, "f2", "thing.done", "f2", t0()),
        plan(&set, "q1", "thing.start", "q1", t0() - mins(10)),
        plan(&set, "q2", "thing.start", "q2", t0() - mins(5)),
        plan(&set, "a", "thing.start", "a", t0() + mins(90)),
    ];
    let out = ingest(&*storage, &batch, t0()).await;
    let [f1, f2, q1, q2, a] = [0, 1, 2, 3, 4].map(|i| stream_of(&out[i]));
    let now = t0() + Duration::hours(2);
    // For each action: one run completes, one fails and is retried.
    for (action, claimed) in [(Action::Fire, [f1, f2]), (Action::Expire, [q1, q2])] {
        let mut c = claim_all(&*storage, action, now).await;
        c.sort_by_key(|s| s.id);
        assert_eq!(ids(&c), claimed, "{action:?}");
        finish(&*storage, &c[0], completed(), now).await;
        finish(&*storage, &c[1], Finish::Failed { reason: "x" }, now).await;
        storage.retry_stream(c[1].id).await.expect("retry");
    }
    let again = claim_one(&*storage, Action::Fire, now).await;
    finish(&*storage, &again, Finish::Completed { purge: true, new_events: &[] }, now).await;
    assert!(storage.purge_stream(a).await.expect("purge"));
    let ended = Utc::now();

    let log = storage.transitions_since(0, &[], 100).await.expect("log");
    use StreamState::*;
    use TransitionKind::{Expired, Failed, Fired, Purged, Reset};
    assert_eq!(
        rows(&log),
        [
            (f1, Firing, Some(Completed), Fired),
            (f2, Firing, Some(Error), Failed),
            (f2, Error, Some(RetryFire), Reset),
            (q1, Expiring, Some(Completed), Expired),
            (q2, Expiring, Some(ExpireError), Failed),
            (q2, ExpireError, Some(RetryExpire), Reset),
            (f2, Firing, None, Fired),
            (a, Active, None, Purged),
        ]
    );
    assert!(log.iter().all(|t| t.trigger == "things"));
    assert!(log.windows(2).all(|w| w[0].id < w[1].id && w[0].at <= w[1].at), "ids and times in order: {log:?}");
    let slack = Duration::minutes(5);
    for t in &log {
        assert!(t.at >= started - slack && t.at <= ended + slack, "logged at database time, not {}", t.at);
    }
}

/// Claims, reclaims, lease renewals, a compare-and-set to the same state and
/// ingest log nothing; a compare-and-set to a failed state does.
pub async fn claims_renewals_and_ingest_log_nothing(h: &dyn Harness) {
    let storage = h.storage();
    let ids = streams(&*storage, 2, true).await;
    ingest(&*storage, &[plan(&triggers(), "q", "thing.start", "quiet", t0())], t0()).await;
    let now = t0() + secs(5);
    let c = claim_all(&*storage, Action::Fire, now).await;
    assert_eq!(c.len(), 2);
    let held: Vec<(i64, i32)> = c.iter().map(|s| (s.id, s.state_serial_no)).collect();
    assert_eq!(storage.renew_leases(&held, now + mins(2)).await.expect("renew").len(), 2);
    let serial = c.iter().find(|s| s.id == ids[0]).expect("claimed").state_serial_no;
    let same = storage.set_state(ids[0], serial, StreamState::Firing).await.expect("cas").expect("held");
    let later = now + mins(3);
    let reclaimed = storage.claim_ready(Action::Fire, later, later + mins(1), 10).await.expect("reclaim");
    assert_eq!(reclaimed.len(), 2);
    claim_one(&*storage, Action::Expire, t0() + Duration::hours(2)).await;
    assert!(storage.transitions_since(0, &[], 100).await.expect("log").is_empty(), "nothing logged");
    assert!(storage.transitions_from(Utc::now() - Duration::days(1), 100).await.expect("log").is_empty());
    assert_eq!(storage.latest_ids().await.expect("latest").1, 0);
    let s = reclaimed.iter().find(|c| c.stream.id == same.id).expect("reclaimed").stream.clone();
    storage.set_state(s.id, s.state_serial_no, StreamState::Error).await.expect("cas").expect("moved");
    let log = storage.transitions_since(0, &[], 100).await.expect("log");
    assert_eq!(rows(&log), [(s.id, StreamState::Firing, Some(StreamState::Error), TransitionKind::Failed)]);
}

/// The log reads by id (above a mark, plus ids the caller saw skipped, up to
/// a limit) and by time (at or after a moment, oldest first, up to a limit).
pub async fn transition_log_reads_by_id_and_time(h: &dyn Harness) {
    let storage = h.storage();
    let started = Utc::now() - Duration::minutes(5);
    failed_streams(&*storage).await;
    streams(&*storage, 2, true).await;
    let now = t0() + Duration::hours(3);
    let c = claim_all(&*storage, Action::Fire, now).await;
    let runs: Vec<_> = c.iter().map(|s| (s, Finish::Failed { reason: "x" })).collect();
    storage.finish_many(&runs, now).await.expect("finish_many");
    let all = storage.transitions_since(0, &[], 100).await.expect("log");
    assert_eq!(all.len(), 4);
    let id = |ts: &[Transition]| ts.iter().map(|t| t.id).collect::<Vec<_>>();
    let also = [all[0].id, all[2].id];
    let since = storage.transitions_since(all[1].id, &also, 100).await.expect("since");
    assert_eq!(id(&since), [all[0].id, all[2].id, all[3].id], "above the mark, plus the skipped ids, once each");
    assert_eq!(since[0], all[0]);
    assert_eq!(id(&storage.transitions_since(all[1].id, &[], 1).await.expect("since")), [all[2].id], "the limit");
    assert!(storage.transitions_since(all[3].id, &[], 10).await.expect("since").is_empty());
    let from = storage.transitions_from(started, 100).await.expect("from");
    assert_eq!(from, all, "since a moment: oldest first");
    assert_eq!(id(&storage.transitions_from(started, 2).await.expect("from")), id(&all[..2]), "the limit");
    let last = storage.transitions_from(all[3].at, 100).await.expect("from");
    assert!(last.contains(&all[3]) && last.iter().all(|t| t.at >= all[3].at), "at or after the moment");
    assert!(storage.transitions_from(Utc::now() + Duration::hours(1), 10).await.expect("from").is_empty());
    assert_eq!(storage.latest_ids().await.expect("latest").1, all[3].id);
}

/// A failed stream whose state is set by hand to completed (an operator's
/// SQL) is logged as `completed`, and the log reads on past it.
pub async fn a_completion_by_hand_is_logged_and_read(h: &dyn Harness) {
    let storage = h.storage();
    let (fired, _) = failed_streams(&*storage).await;
    let done = storage.set_state(fired.id, fired.state_serial_no, StreamState::Completed).await.expect("cas");
    assert_eq!(done.expect("moved").state, StreamState::Completed);
    let log = storage.transitions_since(0, &[], 100).await.expect("the log reads past it");
    let last = rows(&log).pop().expect("logged");
    assert_eq!(last, (fired.id, StreamState::Error, Some(StreamState::Completed), TransitionKind::Completed));
    assert_eq!(TransitionKind::Completed.as_str(), "completed");
}
