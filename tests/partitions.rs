//! Daily partitions of events and memberships on PostgreSQL (migration 0004):
//! created ahead and on demand, global message_id dedup across days, trimming
//! by whole days, the in-place upgrade from 0003.

use crate::cli::db_cmd;
use crate::support::*;
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use winchester::{EventOutcome, TriggerManager};
use winchester_core::{Clock, ManualClock};
use winchester_postgres::partitions::partition_days;
use winchester_postgres::PgStorage;
use winchester_storage::{Storage, StreamFilter};

/// Whether `table` exists.
async fn exists(db: &TestDb, table: &str) -> bool {
    db.count(&format!("SELECT count(*) FROM pg_class WHERE relname = '{table}'")).await == 1
}

/// The UTC day of `t` as partitions name it.
fn ymd(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d").to_string()
}

/// The migration makes today's and the next week's partitions; the first
/// event of an unseen day makes that day's and the week after it; its rows
/// land there, not in the default partition.
async fn partitions_are_created_ahead_and_on_demand() {
    let db = TestDb::new().await;
    let today = Utc::now();
    for d in [0, 7] {
        let day = ymd(today + Duration::days(d));
        assert!(exists(&db, &format!("event_p{day}")).await, "event_p{day} made by the migration");
        assert!(exists(&db, &format!("stream_event_p{day}")).await, "stream_event_p{day} made by the migration");
    }
    assert!(!exists(&db, "event_p20140801").await);
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, t(2014, 8, 1, 20, 30, 0));
    let e = event("m1", "compute.instance.update", t(2014, 8, 1, 20, 4, 0), &[("instance_id", s("i-1"))]);
    assert!(matches!(tm.add_event(e).await.unwrap(), EventOutcome::Saved { .. }));
    for day in ["20140801", "20140804", "20140808"] {
        assert!(exists(&db, &format!("event_p{day}")).await, "event_p{day}");
        assert!(exists(&db, &format!("stream_event_p{day}")).await, "stream_event_p{day}");
    }
    assert!(!exists(&db, "event_p20140809").await, "only a week ahead");
    assert_eq!(db.count("SELECT count(*) FROM event_p20140801").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM stream_event_p20140801").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM event_default").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM stream_event_default").await, 0);
    let days = partition_days(&PgStorage::from_pool(db.pool().clone())).await.unwrap();
    assert_eq!(days.first().map(|d| d.to_string()).as_deref(), Some("2014-08-01"), "{days:?}");
    // The event reads back through its key and its stream.
    let stored = db.storage.get_event("m1").await.unwrap().expect("m1 by message_id");
    let streams = db.storage.event_streams(stored.id).await.unwrap();
    assert_eq!(streams.len(), 1);
    let (events, _) = db.storage.stream_events(streams[0], None, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    db.drop_db().await;
}

/// Invariant 1 across partitions: a message_id stored on one day is a
/// duplicate on any other day, alone or in a batch.
async fn duplicate_message_id_across_days_is_rejected() {
    let db = TestDb::new().await;
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, t(2014, 8, 10, 0, 0, 0));
    let first = event("m1", "compute.instance.update", t(2014, 8, 1, 20, 4, 0), &[("instance_id", s("i-1"))]);
    assert!(matches!(tm.add_event(first).await.unwrap(), EventOutcome::Saved { .. }));
    let later = event("m1", "compute.instance.update", t(2014, 8, 5, 9, 0, 0), &[("instance_id", s("i-1"))]);
    assert_eq!(tm.add_event(later.clone()).await.unwrap(), EventOutcome::Duplicate);
    let other = event("m2", "compute.instance.update", t(2014, 8, 5, 9, 0, 0), &[("instance_id", s("i-2"))]);
    let again = event("m2", "compute.instance.update", t(2014, 8, 7, 9, 0, 0), &[("instance_id", s("i-2"))]);
    let out = tm.add_events(vec![later, other, again]).await.unwrap();
    assert_eq!(out[0], EventOutcome::Duplicate);
    assert!(matches!(out[1], EventOutcome::Saved { .. }), "{out:?}");
    assert_eq!(out[2], EventOutcome::Duplicate);
    assert_eq!(db.count("SELECT count(*) FROM event").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM event_key").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM event_p20140805").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM event_p20140807").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, 2);
    db.drop_db().await;
}

/// Trimming drops a day whose memberships no unfinished stream holds (its
/// dedup keys go too, so its message_ids are new again); a day an unfinished
/// stream still needs keeps its partition and loses only the events no
/// unfinished stream holds, row by row; days after the cutoff are untouched.
async fn trim_drops_whole_days_no_unfinished_stream_needs() {
    let db = TestDb::new().await;
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, t(2014, 8, 10, 0, 0, 0));
    let ev = |id: &str, day: u32, inst: &str| {
        event(id, "compute.instance.update", t(2014, 8, day, 12, 0, 0), &[("instance_id", s(inst))])
    };
    // Day 1: a stream that completes, and a stream-less event (no instance_id).
    // Day 2: an active stream's event and a completed stream's event.
    // Day 3: after the cutoff.
    let loose = event("d1-loose", "misc.thing", t(2014, 8, 1, 13, 0, 0), &[]);
    for e in
        [ev("d1-a", 1, "i-done"), ev("d1-b", 1, "i-done"), loose, ev("d2-a", 2, "i-open"), ev("d2-b", 2, "i-done2")]
    {
        tm.add_event(e).await.unwrap();
    }
    tm.add_event(ev("d3-a", 3, "i-late")).await.unwrap();
    db.exec("UPDATE stream SET state = 6, open = FALSE WHERE dist_key LIKE '%i-done%'").await;
    assert_eq!(db.count("SELECT count(*) FROM stream WHERE state <> 6").await, 2);
    let trimmed = db.storage.trim_events(t(2014, 8, 3, 0, 0, 0), 100).await.unwrap();
    assert_eq!(trimmed, 4, "day 1 whole (3) and the completed stream's event of day 2");
    assert!(!exists(&db, "event_p20140801").await && !exists(&db, "stream_event_p20140801").await);
    assert!(exists(&db, "event_p20140802").await && exists(&db, "stream_event_p20140802").await);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT message_id FROM event ORDER BY message_id").fetch_all(db.pool()).await.unwrap();
    assert_eq!(left, ["d2-a", "d3-a"]);
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM event_key").await, 2, "keys of trimmed events deleted");
    assert_eq!(db.count("SELECT count(*) FROM event_key_cleanup").await, 0, "the dropped day's keys are done");
    // The active stream still reads its event.
    let open = db.storage.list_streams(&StreamFilter::default()).await.unwrap();
    let active = open.iter().find(|s| s.state == winchester_storage::StreamState::Active && s.event_count == 1);
    let (events, _) = db.storage.stream_events(active.expect("active stream").id, None, 10).await.unwrap();
    assert!(events.iter().any(|e| e.message_id == "d2-a" || e.message_id == "d3-a"), "{events:?}");
    // A trimmed message_id is new again; a late event of the dropped day is saved.
    assert!(matches!(tm.add_event(ev("d1-a", 1, "i-done")).await.unwrap(), EventOutcome::Saved { .. }));
    assert_eq!(db.count("SELECT count(*) FROM event WHERE message_id = 'd1-a'").await, 1);
    // Once its stream completes, day 2 goes whole.
    db.exec("UPDATE stream SET state = 6, open = FALSE").await;
    let trimmed = db.storage.trim_events(t(2014, 8, 3, 0, 0, 0), 100).await.unwrap();
    assert_eq!(trimmed, 2, "day 2 (1) and the late day-1 event (1)");
    assert!(!exists(&db, "event_p20140802").await);
    assert!(exists(&db, "event_p20140803").await);
    assert_eq!(db.count("SELECT count(*) FROM event").await, 1);
    db.drop_db().await;
}

/// Many ingesters (each with its own pool and day cache) seeing the same new
/// days at once all succeed; each day gets its partitions once, and no row
/// falls into a default partition.
async fn concurrent_ingesters_create_the_same_days() {
    let db = TestDb::new().await;
    let mut tasks = Vec::new();
    for n in 0..6 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let storage: Arc<dyn Storage> = Arc::new(PgStorage::connect(&url.parse().unwrap(), 2).await.unwrap());
            let clock = Arc::new(ManualClock::new(t(2015, 3, 20, 0, 0, 0)));
            let tm = TriggerManager::new(storage, triggers(INSTANCE_TRIGGERS), clock as Arc<dyn Clock>);
            let mut saved = 0;
            for day in 1..=12u32 {
                let e = event(
                    &format!("c{n}-{day}"),
                    "compute.instance.update",
                    t(2015, 3, day, 10, n, 0),
                    &[("instance_id", s(&format!("i-{n}")))],
                );
                if matches!(tm.add_event(e).await.unwrap(), EventOutcome::Saved { .. }) {
                    saved += 1;
                }
            }
            saved
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 12);
    }
    assert_eq!(db.count("SELECT count(*) FROM event").await, 72);
    assert_eq!(db.count("SELECT count(*) FROM event_default").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM stream_event_default").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname ~ '^event_p201503'").await, 16);
    assert_eq!(db.count("SELECT count(*) FROM event_p20150305").await, 6);
    db.drop_db().await;
}

/// `winchester-db upgrade head` converts a 0003 database with events,
/// streams and memberships in place, and `downgrade 3` converts it back:
/// every row kept, dedup and reads working, new ids above the old.
async fn upgrade_in_place_keeps_the_data() {
    let db = TestDb::empty().await;
    assert_eq!(db_cmd(&db.url, &["upgrade", "head"]).0, 0);
    let (code, out, err) = db_cmd(&db.url, &["downgrade", "3"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!exists(&db, "event_key").await);
    // A 0003 database with data: 40 events over 20 days, two streams.
    db.exec(
        "INSERT INTO event (message_id, event_type, generated, traits) \
         SELECT 'old-' || g, 'compute.instance.update', timestamptz '2014-08-01 00:00+00' + g * interval '12 hours', \
           jsonb_build_object('instance_id', jsonb_build_object('string', 'i-' || (g % 2))) \
         FROM generate_series(1, 40) g; \
         INSERT INTO stream (trigger_name, dist_key, dist_traits, open, first_event, last_event, expire_timestamp, \
           event_count, fire_counts) \
         SELECT 'instance_day', 'k' || n, '{}', TRUE, '2014-08-01', '2014-08-21', '2030-01-01', 20, '{0}' \
         FROM generate_series(0, 1) n; \
         INSERT INTO stream_event (stream_id, event_id) \
         SELECT s.id, e.id FROM event e JOIN stream s ON s.dist_key = 'k' || (e.id % 2);",
    )
    .await;
    let max_old = db.count("SELECT max(id) FROM event").await;
    let (code, out, err) = db_cmd(&db.url, &["upgrade", "head"]);
    assert_eq!((code, out.trim()), (0, "applied migration 4\napplied migration 5\napplied migration 6"), "{err}");
    assert_eq!(db.count("SELECT count(*) FROM event").await, 40);
    assert_eq!(db.count("SELECT count(*) FROM event_key").await, 40);
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, 40);
    assert_eq!(db.count("SELECT count(*) FROM event_default").await, 0, "every old day has its partition");
    assert_eq!(db.count("SELECT count(*) FROM event_p20140805").await, 2);
    let stream: i64 = db.count("SELECT min(id) FROM stream").await;
    let (events, _) = db.storage.stream_events(stream, None, 100).await.unwrap();
    assert_eq!(events.len(), 20);
    assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    // Dedup holds for the old rows; new rows get new ids.
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, t(2014, 8, 21, 0, 0, 0));
    let old = event("old-7", "compute.instance.update", t(2014, 8, 4, 12, 0, 0), &[("instance_id", s("i-1"))]);
    assert_eq!(tm.add_event(old).await.unwrap(), EventOutcome::Duplicate);
    let new = event("new-1", "compute.instance.update", t(2014, 8, 21, 1, 0, 0), &[("instance_id", s("i-1"))]);
    assert!(matches!(tm.add_event(new).await.unwrap(), EventOutcome::Saved { .. }));
    let new_id = db.storage.get_event("new-1").await.unwrap().expect("new-1").id;
    assert!(new_id > max_old, "{new_id} <= {max_old}");
    // And back: every row in the 0003 tables.
    let (code, out, err) = db_cmd(&db.url, &["downgrade", "3"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(db.count("SELECT count(*) FROM event").await, 41);
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, 41);
    assert!(!exists(&db, "event_key").await && !exists(&db, "event_default").await);
    db.drop_db().await;
}

crate::postgres_tests!(
    partitions_are_created_ahead_and_on_demand,
    duplicate_message_id_across_days_is_rejected,
    trim_drops_whole_days_no_unfinished_stream_needs,
    concurrent_ingesters_create_the_same_days,
    upgrade_in_place_keeps_the_data,
);
