//! Schema migrations: the files in `migrations/` at the workspace root, embedded
//! at build time. They are plain sqlx-cli migrations (`sqlx migrate run` works
//! too); `winchester-backends` applies them through the storage crate's
//! `Backend` interface.

use sqlx::migrate::Migrator;

/// The embedded migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// sqlx's bookkeeping table on PostgreSQL.
pub const BOOKKEEPING_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
);";

/// Bytes as a `bytea` literal (`'\x0a1b…'`).
pub fn bytes_literal(bytes: &[u8]) -> String {
    format!("'\\x{}'", winchester_storage::backend::hex(bytes))
}
