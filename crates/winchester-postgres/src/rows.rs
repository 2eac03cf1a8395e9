//! Decoding rows.

use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;
use std::collections::BTreeMap;
use winchester_core::{DistTraits, Event, TraitValue};
use winchester_storage::{Result, StorageError, Stream, StreamState};

use crate::errors::storage_error;

/// Columns [`stream`] reads, for `SELECT`/`RETURNING`.
pub(crate) const STREAM_COLUMNS: &str = "id, trigger_name, state, state_serial_no, dist_traits, open, event_count, \
     first_event, last_event, fire_timestamp, expire_timestamp, lease_expires_at, attempts, last_error, version";

pub(crate) fn stream(row: &PgRow) -> Result<Stream> {
    let state: i16 = row.try_get("state").map_err(storage_error)?;
    let Json(dist): Json<DistTraits> = row.try_get("dist_traits").map_err(storage_error)?;
    Ok(Stream {
        id: row.try_get("id").map_err(storage_error)?,
        trigger: row.try_get("trigger_name").map_err(storage_error)?,
        state: StreamState::from_i16(state).ok_or_else(|| StorageError::Corrupt(format!("stream state {state}")))?,
        state_serial_no: row.try_get("state_serial_no").map_err(storage_error)?,
        dist_traits: dist,
        open: row.try_get("open").map_err(storage_error)?,
        event_count: row.try_get("event_count").map_err(storage_error)?,
        first_event: row.try_get("first_event").map_err(storage_error)?,
        last_event: row.try_get("last_event").map_err(storage_error)?,
        fire_timestamp: row.try_get("fire_timestamp").map_err(storage_error)?,
        expire_timestamp: row.try_get("expire_timestamp").map_err(storage_error)?,
        lease_expires_at: row.try_get("lease_expires_at").map_err(storage_error)?,
        attempts: row.try_get("attempts").map_err(storage_error)?,
        last_error: row.try_get("last_error").map_err(storage_error)?,
        version: row.try_get("version").map_err(storage_error)?,
    })
}

pub(crate) fn event(row: &PgRow) -> Result<Event> {
    let message_id: String = row.try_get("message_id").map_err(storage_error)?;
    let Json(traits): Json<BTreeMap<String, TraitValue>> =
        row.try_get("traits").map_err(|e| StorageError::Corrupt(format!("traits of event {message_id}: {e}")))?;
    Ok(Event {
        message_id,
        event_type: row.try_get("event_type").map_err(storage_error)?,
        timestamp: row.try_get("generated").map_err(storage_error)?,
        traits,
    })
}
