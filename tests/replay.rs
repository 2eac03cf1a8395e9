//! Replay in exact batches (`winchester::replay`) gives the streams, fires and
//! expiries of the replay that commits each moment alone, stream by stream.

use crate::support::*;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use winchester_storage::{StreamFilter, StreamState};

/// One stream as compared: trigger, distinguishing traits, first and last
/// event, state, event count, fire time, and how often it was taken to fire
/// and to expire.
type StreamRow = (String, String, DateTime<Utc>, DateTime<Utc>, StreamState, i64, Option<DateTime<Utc>>, u32, u32);

async fn replayed(backend: Backend, per_moment: bool) -> (Vec<StreamRow>, winchester_demo::DemoSummary) {
    let db = TestDb::on(backend).await;
    let opts = winchester_demo::DemoOptions {
        generator: winchester_demo::GeneratorOptions {
            instances: 40,
            days: 2,
            tenants: 5,
            start: t(2026, 3, 1, 0, 0, 0),
            seed: 7,
        },
        database_url: Some(db.url.clone()),
        config: None,
        batch_size: 200,
        progress: false,
        per_moment,
    };
    let summary = winchester_demo::run(&opts).await.unwrap();
    let storage = db.storage.clone();
    let mut runs: BTreeMap<i64, (u32, u32)> = BTreeMap::new();
    for tr in storage.transitions_from(t(2000, 1, 1, 0, 0, 0), u32::MAX).await.unwrap() {
        let r = runs.entry(tr.stream_id).or_default();
        match tr.to {
            Some(StreamState::Firing) => r.0 += 1,
            Some(StreamState::Expiring) => r.1 += 1,
            _ => {}
        }
    }
    let mut rows: Vec<StreamRow> = storage
        .list_streams(&StreamFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|s| {
            let (fires, expires) = runs.get(&s.id).copied().unwrap_or_default();
            let dist = serde_json::to_string(&s.dist_traits).unwrap();
            (s.trigger, dist, s.first_event, s.last_event, s.state, s.event_count, s.fire_timestamp, fires, expires)
        })
        .collect();
    rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    db.drop_db().await;
    (rows, summary)
}

async fn batched_replay_is_exact(backend: Backend) {
    let (reference, ref_summary) = replayed(backend, true).await;
    let (batched, summary) = replayed(backend, false).await;
    // The workload exercises what batching could get wrong: streams that fire
    // and expire in the middle of what is now one batch.
    assert!(ref_summary.streams_fired > 50 && ref_summary.streams_expired > 10, "{ref_summary:?}");
    assert_eq!(summary.events_ingested, ref_summary.events_ingested);
    assert_eq!(batched.len(), reference.len(), "stream count");
    for (b, r) in batched.iter().zip(&reference) {
        assert_eq!(b, r);
    }
    assert_eq!(
        (summary.streams_fired, summary.streams_expired, summary.streams_created),
        (ref_summary.streams_fired, ref_summary.streams_expired, ref_summary.streams_created)
    );
}

crate::backend_tests!(batched_replay_is_exact);
