//! Schema migrations: this backend's own files in
//! `crates/winchester-sqlite/migrations`, embedded at build time;
//! `winchester-backends` applies them through the storage crate's `Backend`
//! interface.

use sqlx::migrate::Migrator;

/// This backend's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// sqlx's bookkeeping table on SQLite.
pub fn bookkeeping_table() -> String {
    winchester_storage::backend::bookkeeping_table("TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP", "BLOB")
}

/// Bytes as a blob literal (`X'0a1b…'`).
pub fn bytes_literal(bytes: &[u8]) -> String {
    format!("X'{}'", winchester_storage::backend::hex(bytes))
}
