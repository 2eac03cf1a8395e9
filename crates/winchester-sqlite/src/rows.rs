//! How this backend stores and reads typed columns ([`Columns`]): times are
//! INTEGER microseconds since the Unix epoch, booleans and every integer
//! width are INTEGER, JSON documents (and the fire criteria counts) are TEXT.
//! The decoders built on it are [`winchester_storage::decode`]'s.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Row, Sqlite, Type};
use winchester_storage::decode::Columns;
use winchester_storage::{Result, StorageError};

use crate::storage_error;

/// A list as JSON text (for `json_each`); building the JSON value first
/// makes writing it infallible.
pub(crate) fn json(v: impl Into<serde_json::Value>) -> String {
    v.into().to_string()
}

/// A time as stored.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A stored time.
pub(crate) fn time(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| StorageError::Corrupt(format!("time {v}")))
}

/// SQLite's columns.
pub struct Lite;

/// A column of a type sqlx decodes as it is.
fn get<'r, T: Decode<'r, Sqlite> + Type<Sqlite>>(row: &'r SqliteRow, col: &str) -> Result<T> {
    row.try_get(col).map_err(storage_error)
}

impl Columns for Lite {
    type Row = SqliteRow;

    fn opt_i64(row: &SqliteRow, col: &str) -> Result<Option<i64>> {
        get(row, col)
    }

    /// INTEGER 0 or 1.
    fn opt_bool(row: &SqliteRow, col: &str) -> Result<Option<bool>> {
        Ok(get::<Option<i64>>(row, col)?.map(|v| v != 0))
    }

    fn opt_text(row: &SqliteRow, col: &str) -> Result<Option<String>> {
        get(row, col)
    }

    fn opt_time(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>> {
        get::<Option<i64>>(row, col)?.map(time).transpose()
    }

    /// JSON text.
    fn json<T: DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<T> {
        let text: String = get(row, col)?;
        serde_json::from_str(&text).map_err(|e| StorageError::Corrupt(format!("{col}: {e}")))
    }

    /// A JSON array as text.
    fn i64s(row: &SqliteRow, col: &str) -> Result<Vec<i64>> {
        Lite::json(row, col)
    }
}

/// Rows read as JSON arrays: a query that returns many rows at once hands
/// them over as one `json_group_array(json_array(...))` value (JSON columns
/// embedded with `json(...)`), read with the names of its columns in order.
/// sqlx copies every value of every row it returns one by one, which costs
/// more than SQLite building and serde reading one JSON text.
pub(crate) struct LiteJson;

/// A JSON-array row and the names of its columns.
pub(crate) struct JsonRow {
    pub(crate) names: &'static [&'static str],
    pub(crate) values: Vec<serde_json::Value>,
}

impl JsonRow {
    /// The rows of a `json_group_array(json_array(...))` text whose columns are `names`.
    pub(crate) fn parse_all(names: &'static [&'static str], text: &str) -> Result<Vec<JsonRow>> {
        let rows: Vec<Vec<serde_json::Value>> =
            serde_json::from_str(text).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        Ok(rows.into_iter().map(|values| JsonRow { names, values }).collect())
    }

    fn value(&self, col: &str) -> Result<&serde_json::Value> {
        self.names
            .iter()
            .position(|n| *n == col)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StorageError::Corrupt(format!("no column {col}")))
    }
}

impl Columns for LiteJson {
    type Row = JsonRow;

    fn opt_i64(row: &JsonRow, col: &str) -> Result<Option<i64>> {
        match row.value(col)? {
            serde_json::Value::Null => Ok(None),
            v => v.as_i64().map(Some).ok_or_else(|| StorageError::Corrupt(format!("{col}: {v} is not an integer"))),
        }
    }

    fn opt_bool(row: &JsonRow, col: &str) -> Result<Option<bool>> {
        Ok(LiteJson::opt_i64(row, col)?.map(|v| v != 0))
    }

    fn opt_text(row: &JsonRow, col: &str) -> Result<Option<String>> {
        match row.value(col)? {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(s) => Ok(Some(s.clone())),
            v => Err(StorageError::Corrupt(format!("{col}: {v} is not text"))),
        }
    }

    fn opt_time(row: &JsonRow, col: &str) -> Result<Option<DateTime<Utc>>> {
        LiteJson::opt_i64(row, col)?.map(time).transpose()
    }

    /// Embedded JSON.
    fn json<T: DeserializeOwned>(row: &JsonRow, col: &str) -> Result<T> {
        T::deserialize(row.value(col)?).map_err(|e| StorageError::Corrupt(format!("{col}: {e}")))
    }

    fn i64s(row: &JsonRow, col: &str) -> Result<Vec<i64>> {
        LiteJson::json(row, col)
    }
}
