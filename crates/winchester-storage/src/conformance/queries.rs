//! The operations queries: every filter of the event and stream listings,
//! quincy's mark paging in both directions, counts, single lookups, the
//! tail's reads and a stream's events.

use super::ingest::TALLY;
use super::*;
use crate::query::NamePattern;
use crate::{
    all_stream_events, Count, EventFilter, Finish, Page, StoredEvent, StreamCount, StreamFilter, StreamState,
    TraitFilter,
};

use std::collections::BTreeSet;

/// The event with no stream memberships.
fn bare(event: Event) -> EventPlan {
    EventPlan { event, memberships: Vec::new(), replay: None }
}

/// Saves events that join no stream; returns them as stored, in order.
async fn save(storage: &dyn Storage, events: Vec<Event>) -> Vec<StoredEvent> {
    let batch: Vec<EventPlan> = events.into_iter().map(bare).collect();
    let out = ingest(storage, &batch, t0()).await;
    batch.into_iter().zip(&out).map(|(p, o)| StoredEvent { id: saved(o).0, event: p.event }).collect()
}

fn message_ids(events: &[StoredEvent]) -> BTreeSet<String> {
    events.iter().map(|e| e.event.message_id.clone()).collect()
}

fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Lists events with `filter` and checks the count agrees; returns the message ids.
async fn listed(storage: &dyn Storage, filter: &EventFilter) -> BTreeSet<String> {
    let rows = storage.list_events(filter).await.expect("list_events");
    assert_eq!(storage.count_events(filter).await.expect("count_events"), rows.len() as u64, "{filter:?}");
    message_ids(&rows)
}

/// Lists streams with `filter` and checks the count agrees; returns the ids.
async fn listed_streams(storage: &dyn Storage, filter: &StreamFilter) -> BTreeSet<i64> {
    let rows = storage.list_streams(filter).await.expect("list_streams");
    assert_eq!(storage.count_streams(filter).await.expect("count_streams"), rows.len() as u64, "{filter:?}");
    rows.iter().map(|s| s.id).collect()
}

fn trait_is(name: &str, value: &str) -> TraitFilter {
    TraitFilter { name: name.into(), value: value.into() }
}

/// Walks a listing page by page from `first` (a quincy mark), `limit` rows a
/// page, each next page from the mark after the last row. Returns the ids
/// and the size of each page.
async fn walk<F, Fut>(first: Option<&str>, limit: u32, mut list: F) -> (Vec<i64>, Vec<usize>)
where
    F: FnMut(Page) -> Fut,
    Fut: std::future::Future<Output = Vec<i64>>,
{
    let mut page = Page::from_mark(first, Some(limit)).expect("mark");
    let (mut ids, mut sizes) = (Vec::new(), Vec::new());
    loop {
        let rows = list(page).await;
        sizes.push(rows.len());
        ids.extend(&rows);
        match rows.last() {
            Some(last) if rows.len() == limit as usize => {
                page = Page::from_mark(Some(&page.next_mark(*last)), Some(limit)).expect("next mark");
            }
            _ => return (ids, sizes),
        }
    }
}

/// `from` is inclusive and `to` exclusive, to the microsecond.
pub async fn event_filter_by_time_range(h: &dyn Harness) {
    let storage = h.storage();
    let events = [3, 0, 5, 1, 4, 2].map(|m| event(&format!("e{m}"), "x.y", t0() + mins(m), &[])).to_vec();
    save(&*storage, events).await;
    let range =
        |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| EventFilter { from, to, ..EventFilter::default() };
    let cases = [
        (range(Some(t0() + mins(2)), None), set_of(&["e2", "e3", "e4", "e5"])),
        (range(None, Some(t0() + mins(2))), set_of(&["e0", "e1"])),
        (range(Some(t0() + mins(1)), Some(t0() + mins(4))), set_of(&["e1", "e2", "e3"])),
        (range(Some(t0() + mins(2) + Duration::microseconds(1)), None), set_of(&["e3", "e4", "e5"])),
        (range(None, Some(t0() + mins(2) + Duration::microseconds(1))), set_of(&["e0", "e1", "e2"])),
        (range(Some(t0() + mins(10)), None), set_of(&[])),
        (range(Some(t0() + mins(3)), Some(t0() + mins(3))), set_of(&[])),
    ];
    for (filter, want) in cases {
        assert_eq!(listed(&*storage, &filter).await, want, "{filter:?}");
    }
}

/// Event names match exactly, or as globs (`*` any run, `?` one character;
/// `%`, `_`, `[` and `\` literal; case counts), as [`NamePattern::matches`] says.
pub async fn event_filter_by_name(h: &dyn Harness) {
    let storage = h.storage();
    let types = [
        "compute.instance.create.start",
        "compute.instance.create.end",
        "compute.instance.delete.end",
        "compute_instance.x",
        "computeXinstance.y",
        "a%b",
        "a_b",
        "axb",
        "x[1].y",
        "Compute.instance.Upper",
        "back\\slash",
    ];
    let events = types.iter().enumerate().map(|(i, ty)| event(&format!("e{i}"), ty, t0(), &[])).collect();
    save(&*storage, events).await;
    let patterns = [
        "compute.instance.create.end",
        "compute.instance.*.end",
        "compute.instance.*",
        "compute?instance.*",
        "a_*",
        "a%*",
        "a_b",
        "a?b",
        "x[1]*",
        "x[1].y",
        "[ax]*",
        "*Upper",
        "compute.INSTANCE.*",
        "back\\*",
        "*",
        "?",
        "nothing*",
    ];
    for p in patterns {
        let pattern = NamePattern(p.to_string());
        let want: BTreeSet<String> =
            types.iter().enumerate().filter(|(_, ty)| pattern.matches(ty)).map(|(i, _)| format!("e{i}")).collect();
        let filter = EventFilter { event_name: Some(pattern), ..EventFilter::default() };
        assert_eq!(listed(&*storage, &filter).await, want, "pattern {p:?}");
    }
    // The reference matcher itself, on the cases that tell dialects apart.
    let count = |p: &str| types.iter().filter(|ty| NamePattern(p.to_string()).matches(ty)).count();
    assert_eq!([count("a_*"), count("compute?instance.*"), count("a?b"), count("compute.INSTANCE.*")], [1, 5, 3, 0]);
}

/// Trait conditions compare with the stored trait's own type (`4096` is an
/// int, a float and a string; `true` a bool and a string; a time is the same
/// instant in any offset); several conditions must all hold.
pub async fn event_filter_by_typed_traits(h: &dyn Harness) {
    let storage = h.storage();
    let when = t0() + Duration::microseconds(123_456);
    let events = vec![
        event("n-int", "x", t0(), &[("memory_mb", TraitValue::Int(4096))]),
        event("n-float", "x", t0(), &[("memory_mb", TraitValue::Float(4096.0))]),
        event("n-string", "x", t0(), &[("memory_mb", text("4096"))]),
        event("n-other", "x", t0(), &[("memory_mb", TraitValue::Int(2048))]),
        event("b-true", "x", t0(), &[("ok", TraitValue::Bool(true))]),
        event("b-false", "x", t0(), &[("ok", TraitValue::Bool(false))]),
        event("b-string", "x", t0(), &[("ok", text("true"))]),
        event("d-time", "x", t0(), &[("when", TraitValue::Datetime(when))]),
        event("d-other", "x", t0(), &[("when", TraitValue::Datetime(when + Duration::microseconds(1)))]),
        event("multi", "x", t0(), &[("host", text("h1")), ("memory_mb", TraitValue::Int(4096))]),
        event("half", "x", t0(), &[("ratio", TraitValue::Float(0.5)), ("host", text("h2"))]),
    ];
    save(&*storage, events).await;
    let cases: [(Vec<TraitFilter>, &[&str]); 11] = [
        (vec![trait_is("memory_mb", "4096")], &["n-int", "n-float", "n-string", "multi"]),
        (vec![trait_is("memory_mb", "2048")], &["n-other"]),
        (vec![trait_is("memory_mb", "4096.0")], &["n-float"]),
        (vec![trait_is("ok", "true")], &["b-true", "b-string"]),
        (vec![trait_is("ok", "false")], &["b-false"]),
        (vec![trait_is("when", "2026-01-01T12:00:00.123456Z")], &["d-time"]),
        (vec![trait_is("when", "2026-01-01T14:00:00.123456+02:00")], &["d-time"]),
        (vec![trait_is("host", "h1"), trait_is("memory_mb", "4096")], &["multi"]),
        (vec![trait_is("host", "h2"), trait_is("memory_mb", "4096")], &[]),
        (vec![trait_is("ratio", "0.5")], &["half"]),
        (vec![trait_is("missing", "1")], &[]),
    ];
    for (traits, want) in cases {
        let filter = EventFilter { traits: traits.clone(), ..EventFilter::default() };
        assert_eq!(listed(&*storage, &filter).await, set_of(want), "{traits:?}");
    }
}

/// Event listings are newest first, or oldest first from a `+` mark; walking
/// the marks page by page (also under a filter) visits every row once; a
/// count ignores the page.
pub async fn event_paging_both_directions_with_marks(h: &dyn Harness) {
    let storage = h.storage();
    let events: Vec<Event> = (0..12)
        .map(|i| event(&format!("e{i}"), if i % 2 == 0 { "thing.start" } else { "thing.done" }, t0() + secs(i), &[]))
        .collect();
    let stored = save(&*storage, events).await;
    let mut ascending: Vec<i64> = stored.iter().map(|e| e.id).collect();
    ascending.sort();
    let descending: Vec<i64> = ascending.iter().rev().copied().collect();
    let list = |filter: EventFilter| {
        let storage = storage.clone();
        move |page: Page| {
            let (storage, filter) = (storage.clone(), EventFilter { page, ..filter.clone() });
            async move { storage.list_events(&filter).await.expect("list").iter().map(|e| e.id).collect::<Vec<_>>() }
        }
    };
    let newest_first = storage.list_events(&EventFilter::default()).await.expect("list");
    assert_eq!(newest_first.iter().map(|e| e.id).collect::<Vec<_>>(), descending, "newest first by default");
    let all = EventFilter::default();
    assert_eq!(walk(None, 5, list(all.clone())).await, (descending.clone(), vec![5, 5, 2]));
    assert_eq!(walk(Some("+"), 5, list(all.clone())).await, (ascending.clone(), vec![5, 5, 2]));
    let done = EventFilter { event_name: Some(NamePattern("thing.done".into())), ..EventFilter::default() };
    let done_ids: Vec<i64> = stored
        .iter()
        .filter(|e| e.event.event_type == "thing.done")
        .map(|e| e.id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(walk(Some("+"), 4, list(done.clone())).await, (done_ids, vec![4, 2]));
    let middle = descending[5];
    let below = Page::from_mark(Some(&format!("{middle:x}")), None).expect("mark");
    let rows = storage.list_events(&EventFilter { page: below, ..all.clone() }).await.expect("list");
    assert_eq!(rows.iter().map(|e| e.id).collect::<Vec<_>>(), descending[6..].to_vec(), "after a mark, newest first");
    let above = Page::from_mark(Some(&format!("+{middle:x}")), Some(2)).expect("mark");
    let rows = storage.list_events(&EventFilter { page: above, ..all.clone() }).await.expect("list");
    let mut want = descending[..5].to_vec();
    want.reverse();
    assert_eq!(rows.iter().map(|e| e.id).collect::<Vec<_>>(), want[..2].to_vec(), "after a + mark, oldest first");
    let paged = EventFilter { page: above, ..done };
    assert_eq!(storage.count_events(&paged).await.expect("count"), 6, "a count ignores the page");
}

/// A glob matching several types pages in id order across them, both ways,
/// with marks, as one type does; with a trait condition too; a type first
/// stored by a later batch is matched.
pub async fn glob_pages_in_id_order_across_types(h: &dyn Harness) {
    let storage = h.storage();
    let types = ["a.start", "a.end", "b.start", "a.error"];
    let events: Vec<Event> = (0..15)
        .map(|i| {
            let key = if i % 3 == 0 { "x" } else { "y" };
            event(&format!("e{i}"), types[i % 3], t0() + secs(i as i64), &[("key", text(key))])
        })
        .collect();
    let mut stored = save(&*storage, events).await;
    // A fourth type, first seen now.
    stored.extend(save(&*storage, vec![event("late", types[3], t0(), &[("key", text("x"))])]).await);
    let list = |filter: EventFilter| {
        let storage = storage.clone();
        move |page: Page| {
            let (storage, filter) = (storage.clone(), EventFilter { page, ..filter.clone() });
            async move { storage.list_events(&filter).await.expect("list").iter().map(|e| e.id).collect::<Vec<_>>() }
        }
    };
    let cases = [("a.*", None), ("a.*", Some("x")), ("?.start", None), ("*", Some("y")), ("c.*", None)];
    for (glob, key) in cases {
        let pattern = NamePattern(glob.into());
        let want: Vec<i64> = stored
            .iter()
            .filter(|e| pattern.matches(&e.event.event_type))
            .filter(|e| key.is_none_or(|k| e.event.traits.get("key") == Some(&text(k))))
            .map(|e| e.id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let traits = key.map(|k| vec![trait_is("key", k)]).unwrap_or_default();
        let filter = EventFilter { event_name: Some(pattern), traits, ..EventFilter::default() };
        let (up, _) = walk(Some("+"), 2, list(filter.clone())).await;
        assert_eq!(up, want, "{glob} {key:?}, oldest first");
        let (down, _) = walk(None, 3, list(filter.clone())).await;
        assert_eq!(down, want.iter().rev().copied().collect::<Vec<_>>(), "{glob} {key:?}, newest first");
        let n = want.len() as u64;
        assert_eq!(storage.count_events(&filter).await.expect("count"), n, "{glob} {key:?}");
    }
}

/// A capped count stops at its cap and says so; at or under the cap it is
/// exact. Streams per trigger and state are capped alike.
pub async fn counts_stop_at_a_cap(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    let batch: Vec<EventPlan> =
        (0..5).map(|i| plan(&set, &format!("e{i}"), "thing.start", &format!("k{i}"), t0())).collect();
    ingest(&*storage, &batch, t0()).await;
    let events = EventFilter::default();
    let streams = StreamFilter::default();
    for (cap, n, exact) in
        [(Some(3), 3, false), (Some(4), 4, false), (Some(5), 5, true), (Some(9), 5, true), (None, 5, true)]
    {
        let want = Count { n, exact };
        assert_eq!(storage.count_events_upto(&events, cap).await.expect("count"), want, "events, cap {cap:?}");
        assert_eq!(storage.count_streams_upto(&streams, cap).await.expect("count"), want, "streams, cap {cap:?}");
        let counts = storage.stream_counts_upto(cap).await.expect("counts");
        let one = counts.iter().map(|c| (c.trigger.as_str(), c.state, c.count.n, c.count.exact)).collect::<Vec<_>>();
        assert_eq!(one, [("things", StreamState::Active, n, exact)], "stream counts, cap {cap:?}");
    }
    let none = EventFilter { event_name: Some(NamePattern("nothing".into())), ..EventFilter::default() };
    assert_eq!(storage.count_events_upto(&none, Some(3)).await.expect("count"), Count { n: 0, exact: true });
}

/// One event by its message_id, with its row id; the streams an event
/// belongs to, ascending, without purged ones.
pub async fn get_event_and_its_streams(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(&format!("{TRIGGERS}{TALLY}"));
    let a = event("a", "thing.start", t0(), &[("key", text("k"))]);
    let b = event("b", "misc.thing", t0(), &[("key", text("k"))]);
    let out = ingest(&*storage, &[plan_event(&set, a.clone()), plan_event(&set, b.clone())], t0()).await;
    let ((a_id, a_streams), (b_id, _)) = (saved(&out[0]), saved(&out[1]));
    assert_eq!(storage.get_event("a").await.expect("get"), Some(StoredEvent { id: a_id, event: a }));
    assert_eq!(storage.get_event("b").await.expect("get"), Some(StoredEvent { id: b_id, event: b }));
    assert_eq!(storage.get_event("A").await.expect("get"), None, "message ids are matched exactly");
    let mut sorted = a_streams.clone();
    sorted.sort();
    assert_eq!(storage.event_streams(a_id).await.expect("streams"), sorted);
    assert!(storage.event_streams(b_id).await.expect("streams").is_empty());
    assert!(storage.event_streams(i64::MAX).await.expect("streams").is_empty());
    assert!(storage.purge_stream(sorted[0]).await.expect("purge"));
    assert_eq!(storage.event_streams(a_id).await.expect("streams"), sorted[1..].to_vec());
}

/// The tail's read: events above an id or among ids it saw skipped,
/// ascending, once each, up to a limit.
pub async fn events_since_takes_skipped_ids(h: &dyn Harness) {
    let storage = h.storage();
    let mut all = save(&*storage, (0..8).map(|i| event(&format!("e{i}"), "x", t0() + secs(i), &[])).collect()).await;
    all.sort_by_key(|e| e.id);
    let id = |events: &[StoredEvent]| events.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(storage.events_since(0, &[], 100).await.expect("since"), all, "every event, ascending");
    let since = storage.events_since(all[4].id, &[all[1].id, all[2].id, all[6].id], 100).await.expect("since");
    assert_eq!(id(&since), [1, 2, 5, 6, 7].map(|i| all[i].id), "skipped ids and those above, once each");
    assert_eq!(since[0], all[1]);
    assert_eq!(id(&storage.events_since(all[4].id, &[], 2).await.expect("since")), [all[5].id, all[6].id]);
    assert!(storage.events_since(all[7].id, &[], 10).await.expect("since").is_empty());
    assert_eq!(storage.latest_ids().await.expect("latest").0, all[7].id);
}

/// The latest event time is the greatest timestamp (not the last saved);
/// the latest ids are the highest event and transition ids, 0 when none.
pub async fn latest_event_time_and_ids(h: &dyn Harness) {
    let storage = h.storage();
    assert_eq!(storage.latest_event_time().await.expect("latest"), None);
    assert_eq!(storage.latest_ids().await.expect("latest"), (0, 0));
    let mut ids = Vec::new();
    for (i, at) in [t0() + mins(5), t0() - Duration::days(1), t0() + mins(1)].into_iter().enumerate() {
        ids.push(save(&*storage, vec![event(&format!("e{i}"), "x", at, &[])]).await[0].id);
    }
    assert_eq!(storage.latest_event_time().await.expect("latest"), Some(t0() + mins(5)));
    let highest = *ids.iter().max().expect("ids");
    assert_eq!(storage.latest_ids().await.expect("latest"), (highest, 0));
    let c = one_claimed(&*storage).await;
    finish(&*storage, &c, Finish::Failed { reason: "x" }, claimed_at()).await;
    let log = storage.transitions_since(0, &[], 10).await.expect("log");
    assert_eq!(log.len(), 1);
    let (events, transitions) = storage.latest_ids().await.expect("latest");
    assert!(events > highest, "the stream's event");
    assert_eq!(transitions, log[0].id);
}

/// Streams filter by trigger, state, first event before (`older_than`) and
/// last event after (`younger_than`), strictly, alone and together;
/// listings are newest first.
pub async fn stream_filter_by_trigger_state_and_age(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(&format!("{TRIGGERS}{TALLY}"));
    let times = [t0() - Duration::hours(3), t0() - Duration::hours(1), t0()];
    let batch: Vec<EventPlan> = times
        .iter()
        .enumerate()
        .map(|(i, at)| plan(&set, &format!("e{i}"), "thing.start", &format!("k{i}"), *at))
        .collect();
    let out = ingest(&*storage, &batch, t0()).await;
    // [things, tally] per key; things/k0 fails to expire, tally/k1 is expiring.
    let s: Vec<Vec<i64>> = out.iter().map(|o| saved(o).1).collect();
    let now = t0() - mins(90);
    let c = storage.claim(&stream(&*storage, s[0][0]).await, Action::Expire, now, MINUTE).await.expect("claim");
    finish(&*storage, &c.expect("claimed"), Finish::Failed { reason: "x" }, now).await;
    let now = times[1] + Duration::days(1);
    let c = storage.claim(&stream(&*storage, s[1][1]).await, Action::Expire, now, MINUTE).await.expect("claim");
    assert!(c.is_some());
    let f = |trigger: Option<&str>,
             state: Option<StreamState>,
             older: Option<DateTime<Utc>>,
             younger: Option<DateTime<Utc>>| {
        StreamFilter {
            trigger: trigger.map(str::to_string),
            state,
            older_than: older,
            younger_than: younger,
            ..StreamFilter::default()
        }
    };
    let tiny = Duration::microseconds(1);
    let cases = [
        (f(Some("things"), None, None, None), vec![s[0][0], s[1][0], s[2][0]]),
        (f(Some("tally"), None, None, None), vec![s[0][1], s[1][1], s[2][1]]),
        (f(Some("nope"), None, None, None), vec![]),
        (f(None, Some(StreamState::ExpireError), None, None), vec![s[0][0]]),
        (f(None, Some(StreamState::Active), None, None), vec![s[0][1], s[1][0], s[2][0], s[2][1]]),
        (f(Some("tally"), Some(StreamState::Expiring), None, None), vec![s[1][1]]),
        (f(Some("things"), Some(StreamState::Expiring), None, None), vec![]),
        (f(None, None, Some(times[1]), None), vec![s[0][0], s[0][1]]),
        (f(None, None, Some(times[0]), None), vec![]),
        (f(None, None, None, Some(times[1])), vec![s[2][0], s[2][1]]),
        (f(None, None, None, Some(times[1] - tiny)), vec![s[1][0], s[1][1], s[2][0], s[2][1]]),
        (f(Some("things"), None, Some(times[2]), Some(times[0])), vec![s[1][0]]),
    ];
    for (filter, want) in cases {
        assert_eq!(listed_streams(&*storage, &filter).await, want.into_iter().collect(), "{filter:?}");
    }
    let all = storage.list_streams(&StreamFilter::default()).await.expect("list");
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
}

/// Streams filter by distinguishing trait values, compared with the stored
/// value's own type; every condition must hold; other traits do not count.
pub async fn stream_filter_by_distinguishing_traits(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers_from(
        r#"
- name: hosts
  distinguished_by: [host, memory_mb, ok]
  expiration: "$last + 1h"
  fire_pipeline: p
  match_criteria: [{event_type: "vm.*"}]
  fire_criteria: [{event_type: vm.done}]
"#,
    );
    let vm = |id: &str, host: &str, mem: TraitValue, ok: TraitValue| {
        plan_event(
            &set,
            event(id, "vm.start", t0(), &[("host", text(host)), ("memory_mb", mem), ("ok", ok), ("extra", text("x"))]),
        )
    };
    let batch = [
        vm("s1", "h1", TraitValue::Int(4096), TraitValue::Bool(true)),
        vm("s2", "h1", TraitValue::Float(4096.0), TraitValue::Bool(false)),
        vm("s3", "h2", text("4096"), text("true")),
        vm("s4", "h2", TraitValue::Int(2048), TraitValue::Bool(true)),
    ];
    let out = ingest(&*storage, &batch, t0()).await;
    let s: Vec<i64> = out.iter().map(stream_of).collect();
    let cases: [(Vec<TraitFilter>, Vec<i64>); 8] = [
        (vec![trait_is("host", "h1")], vec![s[0], s[1]]),
        (vec![trait_is("memory_mb", "4096")], vec![s[0], s[1], s[2]]),
        (vec![trait_is("memory_mb", "4096"), trait_is("ok", "true")], vec![s[0], s[2]]),
        (vec![trait_is("ok", "false")], vec![s[1]]),
        (vec![trait_is("memory_mb", "2048"), trait_is("host", "h2")], vec![s[3]]),
        (vec![trait_is("memory_mb", "2048"), trait_is("host", "h1")], vec![]),
        (vec![trait_is("host", "h3")], vec![]),
        (vec![trait_is("extra", "x")], vec![]),
    ];
    for (dist_traits, want) in cases {
        let filter = StreamFilter { dist_traits: dist_traits.clone(), ..StreamFilter::default() };
        assert_eq!(listed_streams(&*storage, &filter).await, want.into_iter().collect(), "{dist_traits:?}");
    }
}

/// Stream listings page by mark in both directions; the page's own limit
/// wins over the filter's; a count ignores both.
pub async fn stream_paging_both_directions_and_limits(h: &dyn Harness) {
    let storage = h.storage();
    let mut ascending = streams(&*storage, 7, false).await;
    ascending.sort();
    let descending: Vec<i64> = ascending.iter().rev().copied().collect();
    let list = |page: Page| {
        let storage = storage.clone();
        async move {
            let filter = StreamFilter { page, ..StreamFilter::default() };
            storage.list_streams(&filter).await.expect("list").iter().map(|s| s.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(walk(None, 3, list).await, (descending.clone(), vec![3, 3, 1]));
    assert_eq!(walk(Some("+"), 3, list).await, (ascending.clone(), vec![3, 3, 1]));
    let limited = StreamFilter { limit: Some(2), ..StreamFilter::default() };
    assert_eq!(ids(&storage.list_streams(&limited).await.expect("list")), descending[..2].to_vec());
    let page = Page { limit: Some(4), ..Page::default() };
    let both = StreamFilter { limit: Some(2), page, ..StreamFilter::default() };
    assert_eq!(ids(&storage.list_streams(&both).await.expect("list")), descending[..4].to_vec(), "the page's limit");
    let after =
        StreamFilter { limit: Some(1), page: Page { after: Some(descending[2]), ..page }, ..StreamFilter::default() };
    assert_eq!(ids(&storage.list_streams(&after).await.expect("list")), descending[3..7].to_vec());
    assert_eq!(storage.count_streams(&after).await.expect("count"), 7, "a count ignores limits and pages");
}

/// The number of streams per trigger and state, for every pair that has any.
pub async fn stream_counts_per_trigger_and_state(h: &dyn Harness) {
    let storage = h.storage();
    assert!(storage.stream_counts().await.expect("counts").is_empty());
    let set = triggers_from(&format!("{TRIGGERS}{TALLY}"));
    let batch: Vec<EventPlan> =
        (0..3).map(|i| plan(&set, &format!("e{i}"), "thing.start", &format!("k{i}"), t0())).collect();
    let out = ingest(&*storage, &batch, t0()).await;
    // things/k0 fails to expire, tally/k1 is expiring.
    let now = t0() + Duration::hours(2);
    let c = storage.claim(&stream(&*storage, saved(&out[0]).1[0]).await, Action::Expire, now, MINUTE).await;
    finish(&*storage, &c.expect("claim").expect("claimed"), Finish::Failed { reason: "x" }, now).await;
    let now = t0() + Duration::days(2);
    let c = storage.claim(&stream(&*storage, saved(&out[1]).1[1]).await, Action::Expire, now, MINUTE).await;
    assert!(c.expect("claim").is_some());
    let mut counts = storage.stream_counts().await.expect("counts");
    counts.sort_by_key(|c| (c.trigger.clone(), c.state as i16));
    let count = |trigger: &str, state, count| StreamCount {
        trigger: trigger.into(),
        state,
        count: Count { n: count, exact: true },
    };
    assert_eq!(
        counts,
        [
            count("tally", StreamState::Active, 2),
            count("tally", StreamState::Expiring, 1),
            count("things", StreamState::Active, 2),
            count("things", StreamState::ExpireError, 1),
        ]
    );
    // Capped: the same pairs, in the same order, from a skip scan.
    let capped = storage.stream_counts_upto(Some(1)).await.expect("counts");
    let flags: Vec<(u64, bool)> = capped.iter().map(|c| (c.count.n, c.count.exact)).collect();
    assert_eq!(flags, [(1, false), (1, true), (1, false), (1, true)]);
    let pairs = |cs: &[StreamCount]| cs.iter().map(|c| (c.trigger.clone(), c.state)).collect::<Vec<_>>();
    assert_eq!(pairs(&capped), pairs(&counts));
}

/// A stream's events come a page at a time in (timestamp, row id) order,
/// each page ending at the cursor the next starts after.
pub async fn stream_events_page_in_timestamp_order(h: &dyn Harness) {
    let storage = h.storage();
    let set = triggers();
    let seconds = [3, 1, 1, 5, 0, 3, 2];
    let plans: Vec<EventPlan> = seconds
        .iter()
        .enumerate()
        .map(|(i, s)| plan(&set, &format!("e{i}"), "thing.start", "k", t0() + secs(*s)))
        .collect();
    let mut out = ingest(&*storage, &plans[..4], t0()).await;
    out.extend(ingest(&*storage, &plans[4..], t0()).await);
    let id = stream_of(&out[0]);
    let mut want: Vec<(DateTime<Utc>, i64, String)> =
        plans.iter().zip(&out).map(|(p, o)| (p.event.timestamp, saved(o).0, p.event.message_id.clone())).collect();
    want.sort();
    let (mut after, mut got, mut sizes) = (None, Vec::new(), Vec::new());
    loop {
        let (events, cursor) = storage.stream_events(id, after, 3).await.expect("page");
        sizes.push(events.len());
        let Some(last) = events.last() else { break };
        let expected = want[got.len() + events.len() - 1].clone();
        assert_eq!(cursor, Some((expected.0, expected.1)), "the cursor is the page's last (timestamp, id)");
        assert_eq!(last.message_id, expected.2);
        got.extend(events.iter().map(|e| e.message_id.clone()));
        if events.len() < 3 {
            break;
        }
        after = cursor;
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(got, want.iter().map(|w| w.2.clone()).collect::<Vec<_>>());
    let whole = all_stream_events(&*storage, id, 2).await.expect("all");
    assert_eq!(whole.iter().map(|e| e.message_id.clone()).collect::<Vec<_>>(), got);
    assert_eq!(storage.stream_events(i64::MAX, None, 10).await.expect("page"), (vec![], None));
}

/// Events of several streams come back in one call, each stream's in
/// timestamp order.
pub async fn load_events_of_several_streams(h: &dyn Harness) {
    let storage = h.storage();
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
