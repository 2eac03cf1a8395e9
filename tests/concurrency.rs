//! Several ingesters at once.

use crate::support::*;
use winchester::EventOutcome;
use winchester_storage::{StreamFilter, StreamState};

/// Invariant 3 under concurrency: 4 tasks ingesting interleaved events for the
/// same keys end with exactly one stream per key holding every event.
async fn concurrent_ingesters_share_one_stream_per_key(backend: Backend) {
    let db = TestDb::on(backend).await;
    let now = t(2014, 8, 1, 20, 30, 0);
    let (tm, _) = manager(&db, INSTANCE_TRIGGERS, now);
    let keys = 20;
    let per_task = 200;
    let mut tasks = Vec::new();
    for task in 0..4 {
        let tm = tm.clone();
        tasks.push(tokio::spawn(async move {
            let mut saved = 0;
            for chunk in 0..(per_task / 10) {
                let batch: Vec<_> = (0..10)
                    .map(|j| {
                        let n = chunk * 10 + j;
                        event(
                            &format!("t{task}-{n}"),
                            "compute.instance.update",
                            t(2014, 8, 1, 20, (n % 60) as u32, 0),
                            &[("instance_id", s(&format!("i-{}", (n + task) % keys)))],
                        )
                    })
                    .collect();
                // Single adds too, so both paths race.
                if chunk % 2 == 0 {
                    for e in batch {
                        saved += matches!(tm.add_event(e).await.unwrap(), EventOutcome::Saved { .. }) as usize;
                    }
                } else {
                    saved += tm
                        .add_events(batch)
                        .await
                        .unwrap()
                        .iter()
                        .filter(|o| matches!(o, EventOutcome::Saved { .. }))
                        .count();
                }
            }
            saved
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 4 * per_task);
    let streams = tm.storage().list_streams(&StreamFilter::default()).await.unwrap();
    assert_eq!(streams.len(), keys, "one stream per key");
    assert!(streams.iter().all(|s| s.state == StreamState::Active && s.open));
    assert_eq!(streams.iter().map(|s| s.event_count).sum::<i64>(), (4 * per_task) as i64);
    assert_eq!(db.count("SELECT count(*) FROM stream_event").await, (4 * per_task) as i64);
    assert_eq!(
        db.count("SELECT count(*) FROM stream s WHERE event_count <> (SELECT count(*) FROM stream_event se WHERE se.stream_id = s.id)").await,
        0
    );
    db.drop_db().await;
}

crate::backend_tests!(concurrent_ingesters_share_one_stream_per_key);
