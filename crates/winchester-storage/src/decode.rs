//! Decoding result rows into storage types, written once for every backend.
//!
//! A backend implements [`Columns`] for its row type: how to read one typed
//! column (integers of the schema's widths, text, times, JSON, optional
//! values), with its dialect's conversions inside (SQLite keeps times as
//! INTEGER microseconds and JSON as text; PostgreSQL has `timestamptz`,
//! `jsonb` and arrays). The decoders here ([`stream`], [`event`],
//! [`transition`], ...) read the columns by name on top of it, so which
//! column means what, and what counts as a corrupt row, is decided once.

use crate::fold::StreamDraft;
use crate::{Count, Cursor, TriggerVersion};
use crate::{Result, StorageError, StoredEvent, Stream, StreamCount, StreamState, Transition, TransitionKind};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use winchester_core::{DefinitionVersion, Event, TraitValue};

/// Columns [`stream`] reads, for `SELECT` / `RETURNING`.
pub const STREAM_COLUMNS: &str = "id, trigger_name, state, state_serial_no, dist_traits, open, event_count, \
     first_event, last_event, fire_timestamp, expire_timestamp, lease_expires_at, attempts, last_error, version";

/// Columns [`stored_event`] reads (of the `event` table).
pub const EVENT_COLUMNS: &str = "id, message_id, event_type, generated, traits";

/// Columns [`transition`] reads (of the `stream_transition` table).
pub const TRANSITION_COLUMNS: &str = "id, stream_id, trigger_name, old_state, new_state, at";

/// Columns [`trigger_version`] reads (of the `trigger_version` table).
pub const VERSION_COLUMNS: &str = "trigger_name, version, definition, first_used";

/// How a backend reads typed columns (by name) of its row type `Row`. A
/// backend implements the nullable reads (a column's value, `None` for NULL)
/// with its dialect's conversions; the NOT NULL reads are built on them. The
/// integer widths are the schema's (`SMALLINT`, `INTEGER`, `BIGINT`): a
/// backend that stores integers wider narrows them, and reports a value out
/// of range as [`StorageError::Corrupt`], as it does a time or a JSON
/// document it cannot read.
pub trait Columns {
    /// The backend's result row.
    type Row;

    /// A `SMALLINT` column; by default the `BIGINT` read narrowed (for a
    /// backend that stores every integer at 64 bits).
    fn opt_i16(row: &Self::Row, col: &str) -> Result<Option<i16>> {
        narrow(Self::opt_i64(row, col)?, col)
    }
    /// An `INTEGER` column; by default the `BIGINT` read narrowed.
    fn opt_i32(row: &Self::Row, col: &str) -> Result<Option<i32>> {
        narrow(Self::opt_i64(row, col)?, col)
    }
    /// A `BIGINT` column.
    fn opt_i64(row: &Self::Row, col: &str) -> Result<Option<i64>>;
    /// A `BOOLEAN` column.
    fn opt_bool(row: &Self::Row, col: &str) -> Result<Option<bool>>;
    /// A text column.
    fn opt_text(row: &Self::Row, col: &str) -> Result<Option<String>>;
    /// A point in time.
    fn opt_time(row: &Self::Row, col: &str) -> Result<Option<DateTime<Utc>>>;
    /// A NOT NULL JSON document, deserialized.
    fn json<T: DeserializeOwned>(row: &Self::Row, col: &str) -> Result<T>;
    /// A NOT NULL list of `BIGINT`s (the fire criteria counts).
    fn i64s(row: &Self::Row, col: &str) -> Result<Vec<i64>>;

    /// A NOT NULL `SMALLINT` column.
    fn i16(row: &Self::Row, col: &str) -> Result<i16> {
        not_null(col, Self::opt_i16(row, col)?)
    }
    /// A NOT NULL `INTEGER` column.
    fn i32(row: &Self::Row, col: &str) -> Result<i32> {
        not_null(col, Self::opt_i32(row, col)?)
    }
    /// A NOT NULL `BIGINT` column.
    fn i64(row: &Self::Row, col: &str) -> Result<i64> {
        not_null(col, Self::opt_i64(row, col)?)
    }
    /// A NOT NULL `BOOLEAN` column.
    fn bool(row: &Self::Row, col: &str) -> Result<bool> {
        not_null(col, Self::opt_bool(row, col)?)
    }
    /// A NOT NULL text column.
    fn text(row: &Self::Row, col: &str) -> Result<String> {
        not_null(col, Self::opt_text(row, col)?)
    }
    /// A NOT NULL point in time.
    fn time(row: &Self::Row, col: &str) -> Result<DateTime<Utc>> {
        not_null(col, Self::opt_time(row, col)?)
    }
}

/// A 64-bit integer narrowed to the schema's width of column `col`.
fn narrow<T: TryFrom<i64>>(wide: Option<i64>, col: &str) -> Result<Option<T>> {
    wide.map(|v| T::try_from(v).map_err(|_| StorageError::Corrupt(format!("{col}: {v} out of range")))).transpose()
}

/// The value of a NOT NULL column; NULL there is a corrupt row.
fn not_null<T>(col: &str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| StorageError::Corrupt(format!("{col} is NULL")))
}

/// A stored state number (of any integer width).
pub fn state(n: impl Into<i64>) -> Result<StreamState> {
    let n: i64 = n.into();
    i16::try_from(n)
        .ok()
        .and_then(StreamState::from_i16)
        .ok_or_else(|| StorageError::Corrupt(format!("stream state {n}")))
}

/// A stream ([`STREAM_COLUMNS`]).
pub fn stream<C: Columns>(row: &C::Row) -> Result<Stream> {
    Ok(Stream {
        id: C::i64(row, "id")?,
        trigger: C::text(row, "trigger_name")?,
        state: state(C::i16(row, "state")?)?,
        state_serial_no: C::i32(row, "state_serial_no")?,
        dist_traits: C::json(row, "dist_traits")?,
        open: C::bool(row, "open")?,
        event_count: C::i64(row, "event_count")?,
        first_event: C::time(row, "first_event")?,
        last_event: C::time(row, "last_event")?,
        fire_timestamp: C::opt_time(row, "fire_timestamp")?,
        expire_timestamp: C::time(row, "expire_timestamp")?,
        lease_expires_at: C::opt_time(row, "lease_expires_at")?,
        attempts: C::i32(row, "attempts")?,
        last_error: C::opt_text(row, "last_error")?,
        version: C::opt_text(row, "version")?,
    })
}

/// An event (`message_id, event_type, generated, traits`).
pub fn event<C: Columns>(row: &C::Row) -> Result<Event> {
    let message_id = C::text(row, "message_id")?;
    let traits: BTreeMap<String, TraitValue> = C::json(row, "traits").map_err(|e| match e {
        StorageError::Corrupt(m) => StorageError::Corrupt(format!("traits of event {message_id}: {m}")),
        other => other,
    })?;
    Ok(Event { event_type: C::text(row, "event_type")?, timestamp: C::time(row, "generated")?, traits, message_id })
}

/// An event and its row id ([`EVENT_COLUMNS`]).
pub fn stored_event<C: Columns>(row: &C::Row) -> Result<StoredEvent> {
    Ok(StoredEvent { id: C::i64(row, "id")?, event: event::<C>(row)? })
}

/// A stream's event: `stream_id` and the event's columns.
pub fn stream_event<C: Columns>(row: &C::Row) -> Result<(i64, Event)> {
    Ok((C::i64(row, "stream_id")?, event::<C>(row)?))
}

/// A page of a stream's events (the event's columns and its row `id`) and
/// the position of the last, for the next page.
pub fn event_page<C: Columns>(rows: &[C::Row]) -> Result<(Vec<Event>, Option<Cursor>)> {
    let mut last = None;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let e = event::<C>(r)?;
        last = Some((e.timestamp, C::i64(r, "id")?));
        out.push(e);
    }
    Ok((out, last))
}

/// A logged stream transition ([`TRANSITION_COLUMNS`]).
pub fn transition<C: Columns>(row: &C::Row) -> Result<Transition> {
    let from = state(C::i16(row, "old_state")?)?;
    let to = C::opt_i16(row, "new_state")?.map(state).transpose()?;
    Ok(Transition {
        id: C::i64(row, "id")?,
        stream_id: C::i64(row, "stream_id")?,
        trigger: C::text(row, "trigger_name")?,
        kind: TransitionKind::classify(from, to)
            .ok_or_else(|| StorageError::Corrupt(format!("transition {from} -> {to:?} is not logged")))?,
        from,
        to,
        at: C::time(row, "at")?,
    })
}

/// The number of streams of a trigger in a state (`trigger_name, state, n`),
/// counted up to `cap`.
pub fn stream_count<C: Columns>(row: &C::Row, cap: Option<u64>) -> Result<StreamCount> {
    Ok(StreamCount {
        trigger: C::text(row, "trigger_name")?,
        state: state(C::i16(row, "state")?)?,
        count: Count::capped(C::i64(row, "n")?.max(0) as u64, cap),
    })
}

/// A log read by ascending row id (what a tail follows): its table, the
/// columns its decoder reads, and the decoder.
pub trait IdLog: Sized {
    /// The table.
    const TABLE: &'static str;
    /// The columns [`IdLog::decode`] reads.
    const COLUMNS: &'static str;
    /// Decodes one row.
    fn decode<C: Columns>(row: &C::Row) -> Result<Self>;
}

impl IdLog for StoredEvent {
    const TABLE: &'static str = "event";
    const COLUMNS: &'static str = EVENT_COLUMNS;
    fn decode<C: Columns>(row: &C::Row) -> Result<StoredEvent> {
        stored_event::<C>(row)
    }
}

impl IdLog for Transition {
    const TABLE: &'static str = "stream_transition";
    const COLUMNS: &'static str = TRANSITION_COLUMNS;
    fn decode<C: Columns>(row: &C::Row) -> Result<Transition> {
        transition::<C>(row)
    }
}

/// A recorded trigger definition version ([`VERSION_COLUMNS`]).
pub fn trigger_version<C: Columns>(row: &C::Row) -> Result<TriggerVersion> {
    Ok(TriggerVersion {
        definition: DefinitionVersion {
            trigger: C::text(row, "trigger_name")?,
            version: C::text(row, "version")?,
            text: C::text(row, "definition")?,
        },
        first_used: C::time(row, "first_used")?,
    })
}

/// An open stream as ingest folds into it, under its key `(trigger_name,
/// dist_key)`: `id, trigger_name, dist_key, first_event, last_event,
/// expire_timestamp, fire_timestamp, event_count, fire_counts, version`.
pub fn open_stream<C: Columns>(row: &C::Row) -> Result<((String, String), StreamDraft)> {
    let key = (C::text(row, "trigger_name")?, C::text(row, "dist_key")?);
    let draft = StreamDraft {
        id: Some(C::i64(row, "id")?),
        first: C::time(row, "first_event")?,
        last: C::time(row, "last_event")?,
        expire: C::time(row, "expire_timestamp")?,
        fire: C::opt_time(row, "fire_timestamp")?,
        count: C::i64(row, "event_count")?,
        counts: C::i64s(row, "fire_counts")?,
        open: true,
        version: C::opt_text(row, "version")?,
    };
    Ok((key, draft))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A row of a test "backend": every value as JSON.
    struct Json;

    impl Json {
        fn get(row: &HashMap<&str, serde_json::Value>, col: &str) -> Result<serde_json::Value> {
            row.get(col).cloned().ok_or_else(|| StorageError::Database(format!("no column {col}").into()))
        }
        fn of<T: DeserializeOwned>(row: &HashMap<&str, serde_json::Value>, col: &str) -> Result<T> {
            serde_json::from_value(Json::get(row, col)?).map_err(|e| StorageError::Corrupt(format!("{col}: {e}")))
        }
    }

    impl Columns for Json {
        type Row = HashMap<&'static str, serde_json::Value>;
        fn opt_i64(row: &Self::Row, col: &str) -> Result<Option<i64>> {
            Json::of(row, col)
        }
        fn opt_bool(row: &Self::Row, col: &str) -> Result<Option<bool>> {
            Json::of(row, col)
        }
        fn opt_text(row: &Self::Row, col: &str) -> Result<Option<String>> {
            Json::of(row, col)
        }
        fn opt_time(row: &Self::Row, col: &str) -> Result<Option<DateTime<Utc>>> {
            Json::of(row, col)
        }
        fn json<T: DeserializeOwned>(row: &Self::Row, col: &str) -> Result<T> {
            Json::of(row, col)
        }
        fn i64s(row: &Self::Row, col: &str) -> Result<Vec<i64>> {
            Json::of(row, col)
        }
    }

    fn event_row(id: i64, message_id: &str, traits: serde_json::Value) -> HashMap<&'static str, serde_json::Value> {
        HashMap::from([
            ("id", id.into()),
            ("message_id", message_id.into()),
            ("event_type", "compute.instance.exists".into()),
            ("generated", format!("2026-01-0{id}T00:00:00Z").into()),
            ("traits", traits),
        ])
    }

    #[test]
    fn narrower_integers_are_the_bigint_read_narrowed() {
        let row = HashMap::from([("small", 7.into()), ("big", 40_000.into()), ("none", serde_json::Value::Null)]);
        assert_eq!(Json::opt_i16(&row, "small").unwrap(), Some(7));
        assert_eq!(Json::opt_i32(&row, "big").unwrap(), Some(40_000));
        assert_eq!(Json::opt_i16(&row, "none").unwrap(), None);
        let e = Json::opt_i16(&row, "big").unwrap_err();
        assert!(matches!(&e, StorageError::Corrupt(m) if m == "big: 40000 out of range"), "{e:?}");
    }

    #[test]
    fn a_page_of_events_ends_at_its_last_event() {
        let rows = [event_row(1, "a", serde_json::json!({})), event_row(2, "b", serde_json::json!({}))];
        let (events, last) = event_page::<Json>(&rows).unwrap();
        assert_eq!(events.iter().map(|e| e.message_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(last, Some(("2026-01-02T00:00:00Z".parse().unwrap(), 2)));
        assert_eq!(event_page::<Json>(&[]).unwrap(), (vec![], None));
    }

    #[test]
    fn corrupt_traits_name_their_event_and_a_missing_column_stays_a_database_error() {
        let bad = event_row(1, "m-1", serde_json::json!("not an object"));
        let err = event::<Json>(&bad).unwrap_err().to_string();
        assert!(err.starts_with("corrupt row: traits of event m-1: traits: "), "{err}");
        let mut missing = event_row(1, "m-1", serde_json::json!({}));
        missing.remove("traits");
        assert!(matches!(event::<Json>(&missing), Err(StorageError::Database(_))));
    }

    #[test]
    fn unknown_state_numbers_and_unlogged_transitions_are_corrupt() {
        let row = |old: i16, new: Option<i16>| {
            HashMap::from([
                ("id", 7.into()),
                ("stream_id", 3.into()),
                ("trigger_name", "t".into()),
                ("old_state", old.into()),
                ("new_state", serde_json::to_value(new).unwrap()),
                ("at", "2026-01-01T00:00:00Z".into()),
            ])
        };
        let t = transition::<Json>(&row(2, Some(6))).unwrap();
        assert_eq!((t.from, t.to, t.kind), (StreamState::Firing, Some(StreamState::Completed), TransitionKind::Fired));
        let err = transition::<Json>(&row(9, Some(6))).unwrap_err().to_string();
        assert_eq!(err, "corrupt row: stream state 9");
        let err = transition::<Json>(&row(1, Some(2))).unwrap_err().to_string();
        assert_eq!(err, "corrupt row: transition active -> Some(Firing) is not logged");
    }

    #[test]
    fn null_in_a_not_null_column_is_corrupt() {
        let mut row = event_row(1, "m-1", serde_json::json!({}));
        row.insert("generated", serde_json::Value::Null);
        assert_eq!(event::<Json>(&row).unwrap_err().to_string(), "corrupt row: generated is NULL");
    }
}
