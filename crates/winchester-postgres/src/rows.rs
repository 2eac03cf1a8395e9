//! How this backend reads typed columns ([`Columns`]): every type as the
//! schema declares it, decoded by sqlx. The decoders built on it are
//! [`winchester_storage::decode`]'s.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Decode, Postgres, Row, Type};
use winchester_storage::decode::Columns;
use winchester_storage::{Result, StorageError};

use crate::errors::storage_error;

/// PostgreSQL's columns.
pub struct Pg;

/// A column of a type sqlx decodes as it is.
fn get<'r, T: Decode<'r, Postgres> + Type<Postgres>>(row: &'r PgRow, col: &str) -> Result<T> {
    row.try_get(col).map_err(storage_error)
}

impl Columns for Pg {
    type Row = PgRow;

    fn opt_i16(row: &PgRow, col: &str) -> Result<Option<i16>> {
        get(row, col)
    }

    fn opt_i32(row: &PgRow, col: &str) -> Result<Option<i32>> {
        get(row, col)
    }

    fn opt_i64(row: &PgRow, col: &str) -> Result<Option<i64>> {
        get(row, col)
    }

    fn opt_bool(row: &PgRow, col: &str) -> Result<Option<bool>> {
        get(row, col)
    }

    fn opt_text(row: &PgRow, col: &str) -> Result<Option<String>> {
        get(row, col)
    }

    fn opt_time(row: &PgRow, col: &str) -> Result<Option<DateTime<Utc>>> {
        get(row, col)
    }

    /// `jsonb`; a document that does not deserialize is corrupt.
    fn json<T: DeserializeOwned>(row: &PgRow, col: &str) -> Result<T> {
        match row.try_get::<Json<T>, _>(col) {
            Ok(Json(v)) => Ok(v),
            Err(e @ sqlx::Error::ColumnDecode { .. }) => Err(StorageError::Corrupt(format!("{col}: {e}"))),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// `BIGINT[]`.
    fn i64s(row: &PgRow, col: &str) -> Result<Vec<i64>> {
        get(row, col)
    }
}
