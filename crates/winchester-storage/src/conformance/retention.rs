//! What leaves the database: purged streams (one, or by filter) and trimmed
//! events.

use super::ingest::TALLY;
use super::*;
use crate::{BulkOutcome, EventFilter, Finish, StreamFilter, StreamState, TraitFilter};

/// The message ids of every stored event, sorted.
async fn stored_ids(storage: &dyn Storage) -> Vec<String> {
    let mut ids: Vec<String> = storage
        .list_events(&EventFilter::default())
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.event.message_id)
        .collect();
    ids.sort();
    ids
}

fn loose(id: &str, at: DateTime<Utc>) -> EventPlan {
    EventPlan { event: event(id, "misc.thing", at, &[]), memberships: Vec::new(), replay: None }
}

/// Purging a stream deletes it and its memberships, never its events; the
/// next event for its key opens a new stream; purging again (or a missing
/// stream) is false.
pub async fn purge_deletes_stream_and_memberships_not_events(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(&format!("{TRIGGERS}{TALLY}"));
    let batch = [plan(&set, "a", "thing.start", "k", t0()), plan(&set, "b", "thing.start", "k", t0() + secs(1))];
    let out = ingest(&*storage, &batch, t0()).await;
    let (a_id, joined) = saved(&out[0]);
    let (things, tally) = (joined[0], joined[1]);
    assert!(storage.purge_stream(things).await.expect("purge"));
    assert!(storage.get_stream(things).await.expect("get").is_none());
    assert!(!storage.purge_stream(things).await.expect("purge again"), "already gone");
    assert!(!storage.purge_stream(i64::MAX).await.expect("purge missing"));
    assert_eq!(storage.count_events(&EventFilter::default()).await.expect("count"), 2, "events stay");
    assert_eq!(storage.event_streams(a_id).await.expect("memberships"), vec![tally]);
    assert!(storage.load_events(&[things]).await.expect("load").is_empty());
    assert_eq!(storage.load_events(&[tally]).await.expect("load").len(), 2);
    let c = ingest(&*storage, &[plan(&set, "c", "thing.start", "k", t0() + secs(2))], t0()).await;
    let (_, joined) = saved(&c[0]);
    assert_ne!(joined[0], things, "a new stream for the purged one's key");
    assert_eq!(joined[1], tally);
    assert_eq!(stream(&*storage, joined[0]).await.event_count, 1);
}

/// Bulk purge deletes every stream matching the filter, page by page, and
/// counts them; the events stay.
pub async fn bulk_purge_by_filter(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(&format!("{TRIGGERS}{TALLY}"));
    let batch: Vec<EventPlan> =
        (0..5).map(|i| plan(&set, &format!("e{i}"), "thing.start", &format!("k{i}"), t0())).collect();
    ingest(&*storage, &batch, t0()).await;
    let tally = StreamFilter { trigger: Some("tally".into()), ..StreamFilter::default() };
    assert_eq!(storage.purge_streams(&tally, 2).await.expect("purge"), BulkOutcome { matched: 5, changed: 5 });
    assert_eq!(storage.purge_streams(&tally, 2).await.expect("purge"), BulkOutcome::default());
    let rest = storage.list_streams(&StreamFilter::default()).await.expect("list");
    assert_eq!(rest.len(), 5);
    assert!(rest.iter().all(|s| s.trigger == "things"));
    let one = StreamFilter {
        trigger: Some("things".into()),
        dist_traits: vec![TraitFilter { name: "key".into(), value: "k1".into() }],
        ..StreamFilter::default()
    };
    assert_eq!(storage.purge_streams(&one, 10).await.expect("purge"), BulkOutcome { matched: 1, changed: 1 });
    let left: Vec<String> =
        storage.list_streams(&StreamFilter::default()).await.expect("list").iter().map(key_of).collect();
    assert!(!left.contains(&"k1".to_string()) && left.len() == 4, "{left:?}");
    assert_eq!(storage.count_events(&EventFilter::default()).await.expect("count"), 5, "events stay");
}

/// Trimming deletes old events, but never those of an unfinished stream.
pub async fn trim_keeps_events_of_unfinished_streams(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    let old = t0() - Duration::days(3);
    let batch = [
        plan(&set, "old-active", "thing.start", "o1", old), // will fail to expire: unfinished
        plan(&set, "old-done", "thing.done", "o2", old),    // fires and completes
        loose("old-loose", old),
    ];
    ingest(&*storage, &batch, old).await;
    let fired = claim_all(&*storage, Action::Fire, old + secs(1)).await;
    assert_eq!(fired.len(), 1);
    finish(&*storage, &fired[0], completed(), old).await;
    let expiring = claim_all(&*storage, Action::Expire, old + Duration::hours(2)).await;
    assert_eq!(expiring.len(), 1);
    finish(&*storage, &expiring[0], Finish::Failed { reason: "x" }, old).await;
    ingest(&*storage, &[loose("new-loose", t0())], t0()).await;
    assert_eq!(storage.trim_events(t0() - Duration::days(1), 10).await.expect("trim"), 2);
    assert_eq!(stored_ids(&*storage).await, ["new-loose", "old-active"]);
    let unfinished = StreamFilter { state: Some(StreamState::ExpireError), ..StreamFilter::default() };
    assert_eq!(storage.count_streams(&unfinished).await.expect("count"), 1);
}

/// Row by row, trim deletes the oldest events before the cutoff first, at
/// most `limit` a call; events at or after the cutoff stay.
pub async fn trim_takes_oldest_first_up_to_limit(h: &dyn Harness) {
    let storage = h.storage();
    // All on the cutoff's own day, saved out of time order.
    let hours = [-1, -3, 1, -2, 0];
    let batch: Vec<EventPlan> = hours.iter().map(|h| loose(&format!("h{h}"), t0() + Duration::hours(*h))).collect();
    ingest(&*storage, &batch, t0()).await;
    assert_eq!(storage.trim_events(t0(), 2).await.expect("trim"), 2);
    assert_eq!(stored_ids(&*storage).await, ["h-1", "h0", "h1"], "the two oldest went first");
    assert_eq!(storage.trim_events(t0(), 2).await.expect("trim"), 1);
    assert_eq!(stored_ids(&*storage).await, ["h0", "h1"], "the cutoff itself is not before the cutoff");
    assert_eq!(storage.trim_events(t0(), 2).await.expect("trim"), 0);
}

/// Trimming again and again until nothing is left removes every event
/// before the cutoff that no unfinished stream holds, over several days
/// (whatever a backend deletes per call); a completed stream stays, without
/// its trimmed events.
pub async fn trim_until_done_removes_every_old_finished_event(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    let day = |n: i64| t0() - Duration::days(n);
    ingest(&*storage, &[loose("a1", day(5)), loose("a2", day(5) + Duration::hours(1))], day(5)).await;
    let done =
        [plan(&set, "s-start", "thing.start", "done", day(4)), plan(&set, "s-done", "thing.done", "done", day(4))];
    let s = stream_of(&ingest(&*storage, &done, day(4)).await[0]);
    let c = claim_all(&*storage, Action::Fire, day(4) + secs(1)).await;
    assert_eq!(ids(&c), vec![s]);
    finish(&*storage, &c[0], completed(), day(4)).await;
    let u = stream_of(&ingest(&*storage, &[plan(&set, "u-start", "thing.start", "open", day(3))], day(3)).await[0]);
    ingest(&*storage, &[loose("b1", day(2))], day(2)).await;
    ingest(&*storage, &[loose("recent", t0())], t0()).await;
    let (mut total, mut calls) = (0, 0);
    loop {
        let n = storage.trim_events(day(1), 1).await.expect("trim");
        if n == 0 {
            break;
        }
        total += n;
        calls += 1;
        assert!(calls <= 10, "trim keeps finding events");
    }
    assert_eq!(total, 5);
    assert_eq!(stored_ids(&*storage).await, ["recent", "u-start"]);
    assert_eq!(stream(&*storage, s).await.state, StreamState::Completed, "the stream stays");
    assert!(storage.load_events(&[s]).await.expect("load").is_empty(), "without its trimmed events");
    assert_eq!(storage.load_events(&[u]).await.expect("load").len(), 1);
}
