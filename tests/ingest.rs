//! The ingest path against PostgreSQL: dedup, atomicity, streams per key,
//! expiry, fire criteria, no late joiners, no injection.

use crate::support::*;
use chrono::Duration;
use winchester::EventOutcome;
use winchester_core::{Clock, TraitValue};
use winchester_storage::{Action, StreamFilter, StreamState};

fn stream_ids(o: &EventOutcome) -> Vec<i64> {
    match o {
        EventOutcome::Saved { stream_ids, .. } => stream_ids.clone(),
        other => panic!("not saved: {other:?}"),
    }
}

/// Invariant 1: a message_id is stored once; again it is a duplicate and changes nothing.
async fn duplicate_message_id_changes_nothing(backend: Backend) {
    let db = TestDb::on(backend).await;
    let now = t(2014, 8, 1, 20, 30, 0);
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, now);
    let e = event("m1", "compute.instance.update", t(2014, 8, 1, 20, 4, 0), &[("instance_id", s("i-1"))]);
    let first = tm.add_event(e.clone()).await.unwrap();
    assert_eq!(stream_ids(&first).len(), 1);
    let before = tm.storage().list_streams(&StreamFilter::default()).await.unwrap();
    assert_eq!(tm.add_event(e.clone()).await.unwrap(), EventOutcome::Duplicate);
    // Same id, different content: still a duplicate.
    let mut other = e.clone();
    other.event_type = "compute.instance.delete.end".into();
    assert_eq!(tm.add_event(other).await.unwrap(), EventOutcome::Duplicate);
    // In one batch, the repeat is the duplicate.
    let e2 = event("m2", "compute.instance.update", t(2014, 8, 1, 20, 5, 0), &[("instance_id", s("i-1"))]);
    let out = tm.add_events(vec![e2.clone(), e2]).await.unwrap();
    assert!(matches!(out[0], EventOutcome::Saved { .. }));
    assert_eq!(out[1], EventOutcome::Duplicate);
    assert_eq!(db.count("SELECT count(*) FROM event").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, 2);
    let after = tm.storage().list_streams(&StreamFilter::default()).await.unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(after[0].event_count, 2);
    // New events around a stored one and a repeat: each saved event gets its own row's id.
    let at = t(2014, 8, 1, 20, 6, 0);
    let (m3, m4) = (event("m3", "compute.instance.update", at, &[]), event("m4", "compute.instance.update", at, &[]));
    let out = tm.add_events(vec![m3.clone(), e, m4, m3]).await.unwrap();
    assert_eq!((&out[1], &out[3]), (&EventOutcome::Duplicate, &EventOutcome::Duplicate));
    for (o, message_id) in [(&out[0], "m3"), (&out[2], "m4")] {
        let EventOutcome::Saved { event_id, .. } = o else { panic!("{message_id} not saved: {o:?}") };
        let sql = format!("SELECT count(*) FROM event WHERE id = {event_id} AND message_id = '{message_id}'");
        assert_eq!(db.count(&sql).await, 1, "{message_id} got the id of another row");
    }
    assert_eq!(db.count("SELECT count(*) FROM event").await, 4);
    db.drop_db().await;
}

/// Invariant 2: when any part of an event's write fails, none of it is saved,
/// and the other events of the batch still are.
async fn event_and_memberships_commit_together(backend: Backend) {
    let db = TestDb::on(backend).await;
    // A database-side failure for one trigger's streams only.
    db.fail_stream_inserts_containing("i-bad").await;
    let yaml = format!(
        "{INSTANCE_TRIGGERS}\n- name: second\n  distinguished_by: [instance_id]\n  expiration: \"$last + 1d\"\n  fire_pipeline: p\n  match_criteria: [{{}}]\n  fire_criteria: [{{number: 100}}]\n"
    );
    let (tm, _) = manager(&db, &yaml, t(2014, 8, 1, 20, 30, 0));
    let bad = event("bad", "compute.instance.update", t(2014, 8, 1, 20, 4, 0), &[("instance_id", s("i-bad"))]);
    assert!(tm.add_event(bad.clone()).await.is_err());
    assert_eq!(db.count("SELECT count(*) FROM event").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM stream").await, 0);
    let good = event("good", "compute.instance.update", t(2014, 8, 1, 20, 4, 0), &[("instance_id", s("i-good"))]);
    let out = tm.add_events(vec![good, bad]).await.unwrap();
    assert_eq!(stream_ids(&out[0]).len(), 2);
    assert!(matches!(&out[1], EventOutcome::Failed(r) if r.contains("boom") && r.contains("bad")), "{out:?}");
    assert_eq!(db.count("SELECT count(*) FROM event").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM stream").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, 2);
    db.drop_db().await;
}

/// Streams split by instance and day; the exists event joins the day its audit
/// period begins (map_distinguished_by); fire timestamp set when it arrives.
async fn distinguishing_and_fire_criteria(backend: Backend) {
    let db = TestDb::on(backend).await;
    let now = t(2014, 8, 2, 0, 30, 0);
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, now);
    let i1 = ("instance_id", s("i-1"));
    let out = tm
        .add_events(vec![
            event("a", "compute.instance.create.start", t(2014, 8, 1, 23, 50, 0), &[i1.clone()]),
            event("b", "compute.instance.create.end", t(2014, 8, 1, 23, 55, 0), &[i1.clone()]),
            event("c", "compute.instance.update", t(2014, 8, 2, 0, 5, 0), &[i1.clone()]),
            event("d", "compute.instance.update", t(2014, 8, 1, 23, 59, 0), &[("instance_id", s("i-2"))]),
            event("nomatch", "compute.instance.update", t(2014, 8, 1, 23, 59, 0), &[]),
        ])
        .await
        .unwrap();
    let day1 = stream_ids(&out[0])[0];
    assert_eq!(stream_ids(&out[1]), vec![day1]);
    let day2 = stream_ids(&out[2])[0];
    assert_ne!(day1, day2);
    assert_ne!(stream_ids(&out[3])[0], day1);
    assert_eq!(stream_ids(&out[4]), Vec::<i64>::new());
    let s1 = tm.storage().get_stream(day1).await.unwrap().unwrap();
    assert_eq!(
        (s1.event_count, s1.first_event, s1.last_event),
        (2, t(2014, 8, 1, 23, 50, 0), t(2014, 8, 1, 23, 55, 0))
    );
    assert_eq!(s1.expire_timestamp, t(2014, 8, 2, 0, 55, 0));
    assert_eq!(s1.fire_timestamp, None);
    assert_eq!(
        s1.dist_traits.to_plain_json(),
        serde_json::json!({"instance_id": "i-1", "timestamp": {"begin": "2014-08-01T00:00:00Z", "end": "2014-08-02T00:00:00Z"}})
    );
    // The audit event arrives after midnight but belongs to day 1.
    let exists = event(
        "e",
        "compute.instance.exists",
        t(2014, 8, 2, 0, 10, 0),
        &[i1.clone(), ("audit_period_beginning", TraitValue::Datetime(t(2014, 8, 1, 0, 0, 0)))],
    );
    assert_eq!(stream_ids(&tm.add_event(exists).await.unwrap()), vec![day1]);
    let s1 = tm.storage().get_stream(day1).await.unwrap().unwrap();
    assert_eq!(s1.fire_timestamp, Some(now));
    assert_eq!((s1.event_count, s1.last_event), (3, t(2014, 8, 2, 0, 10, 0)));
    assert_eq!(s1.expire_timestamp, t(2014, 8, 2, 1, 10, 0));
    let s2 = tm.storage().get_stream(day2).await.unwrap().unwrap();
    assert_eq!(s2.fire_timestamp, None);
    // Ready to fire: only day 1.
    let ready = tm.storage().ready_streams(Action::Fire, now, 100).await.unwrap();
    assert_eq!(ready.iter().map(|s| s.id).collect::<Vec<_>>(), vec![day1]);
    db.drop_db().await;
}

/// fire_delay and `number`, and the fire timestamp is never moved once set.
async fn fire_delay_and_number(backend: Backend) {
    let db = TestDb::on(backend).await;
    let yaml = r#"
- name: pairs
  distinguished_by: [k]
  expiration: "$first + 1d"
  fire_pipeline: p
  fire_delay: 3600
  match_criteria: [{event_type: "test.*"}]
  fire_criteria: [{event_type: test.thing, number: 2}]
"#;
    let now = t(2014, 8, 1, 12, 0, 0);
    let (tm, clock) = manager(&db, yaml, now);
    let k = ("k", s("x"));
    let id = stream_ids(&tm.add_event(event("1", "test.foobar", now, &[k.clone()])).await.unwrap())[0];
    tm.add_event(event("2", "test.thing", now, &[k.clone()])).await.unwrap();
    assert_eq!(tm.storage().get_stream(id).await.unwrap().unwrap().fire_timestamp, None);
    tm.add_event(event("3", "test.thing", now, &[k.clone()])).await.unwrap();
    assert_eq!(tm.storage().get_stream(id).await.unwrap().unwrap().fire_timestamp, Some(now + Duration::hours(1)));
    clock.set(now + Duration::minutes(10));
    tm.add_event(event("4", "test.thing", now, &[k.clone()])).await.unwrap();
    let st = tm.storage().get_stream(id).await.unwrap().unwrap();
    assert_eq!((st.fire_timestamp, st.event_count), (Some(now + Duration::hours(1)), 4));
    assert!(tm.storage().ready_streams(Action::Fire, now + Duration::minutes(59), 10).await.unwrap().is_empty());
    assert_eq!(tm.storage().ready_streams(Action::Fire, now + Duration::minutes(61), 10).await.unwrap().len(), 1);
    db.drop_db().await;
}

/// Invariant 3: a stream whose expire time passed takes no more events; the
/// next event for its key opens a new stream while the old one waits to expire.
async fn expired_stream_takes_no_more_events(backend: Backend) {
    let db = TestDb::on(backend).await;
    let now = t(2014, 8, 1, 20, 30, 0);
    let (tm, clock) = manager(&db, INSTANCE_TRIGGERS, now);
    let i1 = ("instance_id", s("i-1"));
    let a = stream_ids(
        &tm.add_event(event("a", "compute.instance.update", t(2014, 8, 1, 20, 0, 0), &[i1.clone()])).await.unwrap(),
    )[0];
    clock.set(t(2014, 8, 1, 21, 1, 0)); // past $last + 1h
    let b = stream_ids(
        &tm.add_event(event("b", "compute.instance.update", t(2014, 8, 1, 20, 10, 0), &[i1.clone()])).await.unwrap(),
    )[0];
    assert_ne!(a, b);
    let old = tm.storage().get_stream(a).await.unwrap().unwrap();
    assert_eq!((old.state, old.open, old.event_count), (StreamState::Active, false, 1));
    let ready = tm.storage().ready_streams(Action::Expire, clock.now(), 10).await.unwrap();
    assert_eq!(ready.iter().map(|s| s.id).collect::<Vec<_>>(), vec![a]);
    // Replaying old events with a wall clock: each event opens its own stream
    // (the original's behaviour without time sync).
    clock.set(t(2014, 8, 2, 12, 0, 0));
    let c = stream_ids(
        &tm.add_event(event("c", "compute.instance.update", t(2014, 8, 1, 19, 0, 0), &[i1.clone()])).await.unwrap(),
    )[0];
    let d = stream_ids(
        &tm.add_event(event("d", "compute.instance.update", t(2014, 8, 1, 19, 1, 0), &[i1.clone()])).await.unwrap(),
    )[0];
    assert_ne!(c, d);
    assert_eq!(db.count("SELECT count(*) FROM stream WHERE open").await, 0);
    db.drop_db().await;
}

/// Invariant 4: once a worker has taken a stream, a new event for its key opens
/// a new stream; the taken stream's events do not change.
async fn no_late_joiners(backend: Backend) {
    let db = TestDb::on(backend).await;
    let now = t(2014, 8, 1, 20, 30, 0);
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, now);
    let i1 = ("instance_id", s("i-1"));
    let a = stream_ids(
        &tm.add_event(event("a", "compute.instance.update", t(2014, 8, 1, 20, 0, 0), &[i1.clone()])).await.unwrap(),
    )[0];
    db.exec("UPDATE stream SET fire_timestamp = first_event").await; // due to fire (a claim checks readiness)
    let st = tm.storage().get_stream(a).await.unwrap().unwrap();
    let claimed =
        tm.storage().claim(&st, Action::Fire, now, std::time::Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!((claimed.state, claimed.state_serial_no, claimed.open), (StreamState::Firing, 1, false));
    // A second claim with the stale copy loses.
    assert!(tm.storage().claim(&st, Action::Fire, now, std::time::Duration::from_secs(60)).await.unwrap().is_none());
    let b = stream_ids(
        &tm.add_event(event("b", "compute.instance.update", t(2014, 8, 1, 20, 1, 0), &[i1.clone()])).await.unwrap(),
    )[0];
    assert_ne!(a, b);
    assert_eq!(tm.storage().get_stream(a).await.unwrap().unwrap().event_count, 1);
    db.drop_db().await;
}

/// Invariant 13: user strings reach SQL only as parameters.
async fn hostile_strings_are_data(backend: Backend) {
    let db = TestDb::on(backend).await;
    let yaml = r#"
- name: "x'); DROP TABLE event; --"
  distinguished_by: ["k'; DELETE FROM stream; --"]
  expiration: "$last + 1h"
  fire_pipeline: p
  match_criteria: [{}]
  fire_criteria: [{}]
"#;
    let now = t(2014, 8, 1, 20, 30, 0);
    let (tm, _) = manager(&db, yaml, now);
    let evil = "'; DROP TABLE stream; --";
    let e = event(evil, "a.b", now, &[("k'; DELETE FROM stream; --", s(evil)), ("\"quoted\"", s("\\"))]);
    let id = stream_ids(&tm.add_event(e.clone()).await.unwrap())[0];
    let st = tm.storage().get_stream(id).await.unwrap().unwrap();
    assert_eq!(st.trigger, "x'); DROP TABLE event; --");
    let (events, _) = tm.storage().stream_events(id, None, 10).await.unwrap();
    assert_eq!(events, vec![e]);
    assert_eq!(db.count("SELECT count(*) FROM event").await, 1);
    db.drop_db().await;
}

/// Group commit: 64 concurrent `add_event` callers share transactions; each
/// gets its own outcome, duplicates (also within one shared transaction) are
/// reported as such, and the one event the database refuses fails for its
/// caller alone.
async fn concurrent_add_event_group_commit(backend: Backend) {
    let db = TestDb::on(backend).await;
    db.fail_stream_inserts_containing("i-bad").await;
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, t(2014, 8, 1, 20, 30, 0));
    // On PostgreSQL, hold the event table so the first commit waits and every
    // caller queues behind it: the rest must then share transactions.
    let gate = match backend {
        Backend::Postgres => {
            let mut tx = db.pool().begin().await.unwrap();
            sqlx::query("LOCK TABLE event IN EXCLUSIVE MODE").execute(&mut *tx).await.unwrap();
            Some(tx)
        }
        Backend::Sqlite => None,
    };
    let mut tasks = Vec::new();
    for c in 0..64u32 {
        let tm = tm.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = vec![format!("c{c}-0"), format!("c{c}-1")];
            if c < 8 {
                ids.push(format!("dup-{}", c % 4));
            }
            if c == 63 {
                ids.push("bad".into());
            }
            let mut out = Vec::new();
            for id in ids {
                let inst = if id == "bad" { "i-bad".to_string() } else { format!("i-{}", c % 8) };
                let e = event(&id, "compute.instance.update", t(2014, 8, 1, 20, 4, 0), &[("instance_id", s(&inst))]);
                out.push((id, tm.add_event(e).await));
            }
            out
        }));
    }
    if let Some(tx) = gate {
        // Wait (no deadline) until the first commit is blocked on the lock.
        while db
            .count(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND (query LIKE '%INSERT INTO event%' OR query LIKE '%winchester_event_partitions%')",
            )
            .await
            == 0
        {
            tokio::task::yield_now().await;
        }
        tx.commit().await.unwrap();
    }
    let mut saved = std::collections::BTreeMap::<String, u32>::new();
    let mut duplicates = 0;
    for task in tasks {
        for (id, r) in task.await.unwrap() {
            match r {
                Ok(EventOutcome::Saved { stream_ids, .. }) => {
                    assert_eq!(stream_ids.len(), 1, "{id}");
                    *saved.entry(id).or_default() += 1;
                }
                Ok(EventOutcome::Duplicate) => {
                    assert!(id.starts_with("dup-"), "{id} reported duplicate");
                    duplicates += 1;
                }
                Ok(other) => panic!("{id}: {other:?}"),
                Err(e) => assert!(id == "bad" && e.to_string().contains("boom"), "{id}: {e}"),
            }
        }
    }
    assert!(!saved.contains_key("bad"));
    assert_eq!(saved.len(), 64 * 2 + 4, "every good event saved once");
    assert!(saved.values().all(|n| *n == 1));
    assert_eq!(duplicates, 4);
    assert_eq!(db.count("SELECT count(*) FROM event").await, 132);
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, 132);
    assert_eq!(db.count("SELECT count(*) FROM stream").await, 8);
    assert_eq!(db.count("SELECT CAST(sum(event_count) AS BIGINT) FROM stream").await, 132);
    if backend == Backend::Postgres {
        // Events committed together share a transaction id.
        let txs = db.count("SELECT count(DISTINCT xmin::text) FROM event").await;
        assert!(txs < 64, "{txs} transactions for 132 events from 64 callers");
    }
    db.drop_db().await;
}

/// A long batch (planned on several threads) keeps every outcome in its
/// event's place: rejected events, duplicates and saved events each answer for
/// the event at their position, across the planning chunks' boundaries.
async fn long_batch_outcomes_in_order(backend: Backend) {
    let db = TestDb::on(backend).await;
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, t(2014, 8, 1, 20, 30, 0));
    let at = t(2014, 8, 1, 20, 4, 0);
    let batch: Vec<_> = (0..1000)
        .map(|i| {
            // Every 89th event repeats the one before it.
            let id = if i % 89 == 1 { format!("m{}", i - 1) } else { format!("m{i}") };
            let mut e = event(&id, "compute.instance.update", at, &[("instance_id", s(&format!("i-{}", i % 13)))]);
            if i % 97 == 5 {
                e.event_type = "not valid".into();
            }
            e
        })
        .collect();
    let out = tm.add_events(batch).await.unwrap();
    assert_eq!(out.len(), 1000);
    let mut saved = 0;
    for (i, o) in out.iter().enumerate() {
        match o {
            EventOutcome::Rejected(e) => assert_eq!(i % 97, 5, "event {i} rejected: {e}"),
            EventOutcome::Duplicate => assert_eq!(i % 89, 1, "event {i} reported duplicate"),
            EventOutcome::Saved { event_id, stream_ids } => {
                assert!(i % 97 != 5 && i % 89 != 1, "event {i} saved");
                assert_eq!(stream_ids.len(), 1, "event {i}");
                let sql = format!("SELECT count(*) FROM event WHERE id = {event_id} AND message_id = 'm{i}'");
                assert_eq!(db.count(&sql).await, 1, "event {i} got the id of another row");
                saved += 1;
            }
            other => panic!("event {i}: {other:?}"),
        }
    }
    assert_eq!(db.count("SELECT count(*) FROM event").await, saved);
    assert_eq!(db.count("SELECT count(*) FROM stream").await, 13);
    db.drop_db().await;
}

/// SQLite: the WAL is copied back into the database file by a background
/// checkpoint, not by the commits. The batch writes far fewer pages than the
/// writers' automatic checkpoint waits for, so only the background one can
/// grow the database file.
#[tokio::test]
async fn sqlite_wal_is_checkpointed_in_the_background() {
    let db = TestDb::on(Backend::Sqlite).await;
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, t(2014, 8, 1, 20, 30, 0));
    let at = t(2014, 8, 1, 20, 4, 0);
    // Let the migrations' pages settle first.
    tokio::time::sleep(winchester_sqlite::checkpointer::CHECKPOINT_INTERVAL * 2).await;
    let size = || std::fs::metadata(db.sqlite_file()).expect("database file").len();
    let before = size();
    let batch: Vec<_> = (0..500)
        .map(|i| {
            let traits = [("instance_id", s(&format!("i-{}", i % 50))), ("payload", s(&"x".repeat(400)))];
            event(&format!("m{i}"), "compute.instance.update", at, &traits)
        })
        .collect();
    tm.add_events(batch).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() < before + 200_000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(size() >= before + 200_000, "the database file stayed at {} bytes (was {before})", size());
    db.drop_db().await;
}

/// SQLite ingest writes through a connection that does not check foreign
/// keys (see winchester-sqlite's `ingest` module). Every membership must
/// still name a stream and an event that exist, and each stream's count must
/// match its memberships: over batches that open streams, add to open ones,
/// make some ready to fire and repeat message_ids.
#[tokio::test]
async fn sqlite_memberships_reference_their_rows() {
    let db = TestDb::on(Backend::Sqlite).await;
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, t(2014, 8, 1, 20, 30, 0));
    let mut saved = 0;
    for round in 0..4u32 {
        let at = t(2014, 8, 1, 20, round, 0);
        let mut batch: Vec<_> = (0..200)
            .map(|i| {
                let instance = s(&format!("i-{}", (i * 7 + round) % 40));
                event(&format!("m{round}-{i}"), "compute.instance.update", at, &[("instance_id", instance)])
            })
            .collect();
        // The day's audit event of a few instances: their streams become ready to fire.
        for i in 0..3 {
            let traits = [
                ("instance_id", s(&format!("i-{}", round * 3 + i))),
                ("audit_period_beginning", TraitValue::Datetime(at)),
            ];
            batch.push(event(&format!("x{round}-{i}"), "compute.instance.exists", at, &traits));
        }
        // A repeat from this batch and one from the one before.
        batch.push(batch[0].clone());
        if round > 0 {
            batch.push(event(&format!("m{}-5", round - 1), "compute.instance.update", at, &[]));
        }
        let out = tm.add_events(batch).await.unwrap();
        saved += out.iter().filter(|o| matches!(o, EventOutcome::Saved { .. })).count() as i64;
    }
    assert_eq!(saved, 4 * 203);
    assert_eq!(db.count("SELECT count(*) FROM pragma_foreign_key_check").await, 0, "dangling memberships");
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, saved);
    assert_eq!(db.count("SELECT sum(event_count) FROM stream").await, saved);
    db.drop_db().await;
}

/// SQLite ingest builds a batch's memberships with the ids its new streams
/// are about to get (AUTOINCREMENT counts on from `sqlite_sequence`) while
/// SQLite writes them. Where the sequence does not predict them (lowered by
/// hand below, so SQLite numbers on from the largest id instead), the
/// memberships are worked out again with the ids the streams got. Either
/// way every membership is its event's outcome and counts in its stream.
#[tokio::test]
async fn sqlite_new_stream_ids_match_memberships() {
    let db = TestDb::on(Backend::Sqlite).await;
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, t(2014, 8, 1, 20, 30, 0));
    let mut pairs: Vec<(i64, i64)> = Vec::new();
    for round in 0..3u32 {
        if round == 2 {
            db.exec("UPDATE sqlite_sequence SET seq = 1 WHERE name = 'stream'").await;
        }
        let at = t(2014, 8, 1, 20, round, 0);
        // Half the instances seen before (open streams), half new ones.
        let batch: Vec<_> = (0..120)
            .map(|i| {
                let instance = s(&format!("i-{}", (i % 40) + round * 20));
                event(&format!("m{round}-{i}"), "compute.instance.update", at, &[("instance_id", instance)])
            })
            .collect();
        for o in tm.add_events(batch).await.unwrap() {
            let EventOutcome::Saved { event_id, stream_ids } = o else { panic!("not saved: {o:?}") };
            pairs.extend(stream_ids.into_iter().map(|sid| (sid, event_id)));
        }
    }
    assert_eq!(db.count("SELECT count(*) FROM stream").await, 80, "one stream per instance");
    let values = pairs.iter().map(|(sid, eid)| format!("({sid}, {eid})")).collect::<Vec<_>>().join(", ");
    let matched = format!(
        "SELECT count(*) FROM stream_event m JOIN (VALUES {values}) o ON m.stream_id = o.column1 AND m.event_id = o.column2"
    );
    assert_eq!(db.count(&matched).await, pairs.len() as i64, "a membership of the outcomes is missing");
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, pairs.len() as i64);
    let miscounted =
        "SELECT count(*) FROM stream s WHERE event_count <> (SELECT count(*) FROM stream_event WHERE stream_id = s.id)";
    assert_eq!(db.count(miscounted).await, 0, "memberships in the wrong streams");
    db.drop_db().await;
}

/// SQLite: a database the backend creates has `PAGE_SIZE` pages; one
/// created before with SQLite's default 4 KiB pages keeps them, and ingest
/// works on it as on any other.
#[tokio::test]
async fn sqlite_page_size_new_and_existing() {
    use sqlx::Connection;
    let page_size = "SELECT page_size FROM pragma_page_size";
    let db = TestDb::on(Backend::Sqlite).await;
    assert_eq!(db.count(page_size).await, i64::from(winchester_sqlite::PAGE_SIZE));
    db.drop_db().await;

    // A file made by SQLite's defaults (4 KiB pages, WAL) before the backend opens it.
    let path = std::env::temp_dir().join(format!("wtest_{}.db", uuid::Uuid::new_v4().simple()));
    let mut old = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
    sqlx::raw_sql("PRAGMA journal_mode = WAL; CREATE TABLE made_before (x)").execute(&mut old).await.unwrap();
    old.close().await.unwrap();
    let db = TestDb::sqlite_at(path, true).await;
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, t(2014, 8, 1, 20, 30, 0));
    let at = t(2014, 8, 1, 20, 4, 0);
    let batch = (0..50).map(|i| event(&format!("m{i}"), "compute.instance.update", at, &[("instance_id", s("i-1"))]));
    let out = tm.add_events(batch.collect()).await.unwrap();
    assert!(out.iter().all(|o| matches!(o, EventOutcome::Saved { .. })), "{out:?}");
    assert_eq!(db.count(page_size).await, 4096, "an existing database keeps its page size");
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, 50);
    db.drop_db().await;
}

crate::backend_tests!(
    long_batch_outcomes_in_order,
    concurrent_add_event_group_commit,
    duplicate_message_id_changes_nothing,
    event_and_memberships_commit_together,
    distinguishing_and_fire_criteria,
    fire_delay_and_number,
    expired_stream_takes_no_more_events,
    no_late_joiners,
    hostile_strings_are_data
);
