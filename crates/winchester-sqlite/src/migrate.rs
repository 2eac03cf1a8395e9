//! Schema migrations: this backend's own files in
//! `crates/winchester-sqlite/migrations`, embedded at build time;
//! `winchester-backends` applies them through the storage crate's `Backend`
//! interface.

use sqlx::migrate::Migrator;

/// This backend's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// sqlx's bookkeeping table on SQLite.
pub const BOOKKEEPING_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
);";

/// Bytes as a blob literal (`X'0a1b…'`).
pub fn bytes_literal(bytes: &[u8]) -> String {
    format!("X'{}'", winchester_storage::backend::hex(bytes))
}
