//! Decoding rows; times are INTEGER microseconds since the Unix epoch.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::collections::BTreeMap;
use winchester_core::{DistTraits, Event, TraitValue};
use winchester_storage::{Result, StorageError, Stream, StreamState};

use crate::storage_error;

pub(crate) const STREAM_COLUMNS: &str = "id, trigger_name, state, state_serial_no, dist_traits, open, event_count, \
     first_event, last_event, fire_timestamp, expire_timestamp, lease_expires_at, attempts, last_error, version";

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| StorageError::Corrupt(format!("time {v}")))
}

fn opt_time(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(time).transpose()
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<T> {
    let text: String = row.try_get(col).map_err(storage_error)?;
    serde_json::from_str(&text).map_err(|e| StorageError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn stream(row: &SqliteRow) -> Result<Stream> {
    let state: i64 = row.try_get("state").map_err(storage_error)?;
    let dist: DistTraits = json(row, "dist_traits")?;
    let open: i64 = row.try_get("open").map_err(storage_error)?;
    Ok(Stream {
        id: row.try_get("id").map_err(storage_error)?,
        trigger: row.try_get("trigger_name").map_err(storage_error)?,
        state: StreamState::from_i16(state as i16)
            .ok_or_else(|| StorageError::Corrupt(format!("stream state {state}")))?,
        state_serial_no: row.try_get::<i64, _>("state_serial_no").map_err(storage_error)? as i32,
        dist_traits: dist,
        open: open != 0,
        event_count: row.try_get("event_count").map_err(storage_error)?,
        first_event: time(row.try_get("first_event").map_err(storage_error)?)?,
        last_event: time(row.try_get("last_event").map_err(storage_error)?)?,
        fire_timestamp: opt_time(row.try_get("fire_timestamp").map_err(storage_error)?)?,
        expire_timestamp: time(row.try_get("expire_timestamp").map_err(storage_error)?)?,
        lease_expires_at: opt_time(row.try_get("lease_expires_at").map_err(storage_error)?)?,
        attempts: row.try_get::<i64, _>("attempts").map_err(storage_error)? as i32,
        last_error: row.try_get("last_error").map_err(storage_error)?,
        version: row.try_get("version").map_err(storage_error)?,
    })
}

pub(crate) fn event(row: &SqliteRow) -> Result<Event> {
    let traits: BTreeMap<String, TraitValue> = json(row, "traits")?;
    Ok(Event {
        message_id: row.try_get("message_id").map_err(storage_error)?,
        event_type: row.try_get("event_type").map_err(storage_error)?,
        timestamp: time(row.try_get("generated").map_err(storage_error)?)?,
        traits,
    })
}
