//! Schema migrations: the files in `migrations/` at the workspace root, embedded
//! at build time. They are plain sqlx-cli migrations (`sqlx migrate run` works
//! too); `winchester-db` wraps them.

use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::PgPool;

/// The embedded migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// A migration known to the binary, and whether the database has it.
#[derive(Debug, Clone)]
pub struct MigrationStatus {
    /// Version number.
    pub version: i64,
    /// Description.
    pub description: String,
    /// Applied to the database.
    pub applied: bool,
}

/// Applies every pending migration. Harmless when there are none.
pub async fn upgrade(pool: &PgPool) -> Result<Vec<i64>, MigrateError> {
    let before = applied_versions(pool).await?;
    MIGRATOR.run(pool).await?;
    let after = applied_versions(pool).await?;
    Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
}

/// Reverts migrations newer than `target` (0 reverts everything).
pub async fn downgrade(pool: &PgPool, target: i64) -> Result<(), MigrateError> {
    MIGRATOR.undo(pool, target).await
}

/// Each migration and whether it is applied.
pub async fn status(pool: &PgPool) -> Result<Vec<MigrationStatus>, MigrateError> {
    let applied = applied_versions(pool).await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| MigrationStatus {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.contains(&m.version),
        })
        .collect())
}

/// Versions recorded as applied (empty for a fresh database).
pub async fn applied_versions(pool: &PgPool) -> Result<Vec<i64>, MigrateError> {
    let mut conn = pool.acquire().await?;
    conn.ensure_migrations_table().await?;
    Ok(conn.list_applied_migrations().await?.into_iter().map(|m| m.version).collect())
}

/// The SQL that brings a database from `applied` to head, including the
/// bookkeeping rows, so a database upgraded by running this script by hand
/// is one `winchester-db upgrade head` considers up to date.
pub fn upgrade_sql(applied: &[i64]) -> String {
    let mut out = String::from(
        "BEGIN;\n\nCREATE TABLE IF NOT EXISTS _sqlx_migrations (\n    version BIGINT PRIMARY KEY,\n    description TEXT NOT NULL,\n    \
         installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),\n    success BOOLEAN NOT NULL,\n    checksum BYTEA NOT NULL,\n    \
         execution_time BIGINT NOT NULL\n);\n",
    );
    for m in MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version)) {
        let checksum: String = m.checksum.iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(&format!("\n-- Migration {} {}\n{}\n", m.version, m.description, m.sql.trim_end()));
        out.push_str(&format!(
            "\nINSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)\n    VALUES ({}, '{}', TRUE, '\\x{checksum}', -1);\n",
            m.version,
            m.description.replace('\'', "''")
        ));
    }
    out.push_str("\nCOMMIT;\n");
    out
}
