//! The engine's ingest path: group commit of concurrent `add_event` callers,
//! outcomes of planned batches, and SQLite's own ingest details. The storage
//! rules of ingest (dedup, atomicity, streams per key, expiry, fire criteria,
//! no late joiners, no injection) are conformance checks
//! (`winchester_storage::conformance`, run by tests/conformance.rs).

use crate::support::*;
use winchester::EventOutcome;
use winchester_core::TraitValue;

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

/// The engine's part of a long batch: planned on several threads, with
/// rejected events taken out before storage, every outcome still answers
/// for the event at its position across the planning chunks' boundaries
/// (storage's part, outcomes in order within what it is given, is the
/// conformance check `long_batch_outcomes_in_order`). Planning does not
/// depend on the backend: SQLite only.
#[tokio::test]
async fn planned_batch_outcomes_keep_their_place() {
    let db = TestDb::on(Backend::Sqlite).await;
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, t(2014, 8, 1, 20, 30, 0));
    let at = t(2014, 8, 1, 20, 4, 0);
    let batch: Vec<_> = (0..1000)
        .map(|i| {
            let mut e =
                event(&format!("m{i}"), "compute.instance.update", at, &[("instance_id", s(&format!("i-{}", i % 13)))]);
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
            EventOutcome::Saved { event_id, stream_ids } => {
                assert_ne!(i % 97, 5, "event {i} saved");
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

crate::backend_tests!(concurrent_add_event_group_commit);
