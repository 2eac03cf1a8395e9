//! Using the engine as a library: load the example configuration, open
//! storage, add one event and see which streams it joined.
//!
//! Run: `cargo run --example add_event` (SQLite file in a temp dir), or with
//! `DATABASE_URL=postgres://...`.

use std::sync::Arc;
use winchester::{EventOutcome, TriggerManager};
use winchester_core::{Event, LoadedConfig, SystemClock};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = LoadedConfig::load("etc/winchester.yaml".as_ref(), None)?;
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", std::env::temp_dir().join("winchester-example.db").display()));
    // Connect (SQLite or PostgreSQL, by URL) and bring the schema to head.
    let (backend, _) =
        winchester_backends::migrated(&winchester_backends::DatabaseOptions::direct(url.as_str()), 2).await?;
    let tm = TriggerManager::new(backend.storage(), Arc::new(cfg.triggers), Arc::new(SystemClock));
    let event = Event::from_json(&serde_json::json!({
        "message_id": uuid::Uuid::new_v4().to_string(),
        "event_type": "compute.instance.create.end",
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "instance_id": "i-1",
        "request_id": "req-1",
    }))?;
    match tm.add_event(event).await? {
        EventOutcome::Saved { stream_ids, .. } => println!("joined streams {stream_ids:?}"),
        other => println!("{other:?}"),
    }
    Ok(())
}
