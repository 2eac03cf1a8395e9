//! Schema migrations: the files in `migrations/` at the workspace root, embedded
//! at build time. They are plain sqlx-cli migrations (`sqlx migrate run` works
//! too); `winchester-backends` applies them through the storage crate's
//! `Backend` interface, with [`apply_pending`] and [`revert_to`]: the same
//! bookkeeping and lock as sqlx-cli, but every statement unnamed and every
//! step one transaction, so that they also run behind a transaction pooler.

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{Executor, PgConnection, PgPool, Postgres, Transaction};
use std::time::Instant;

/// The embedded migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// sqlx's bookkeeping table on PostgreSQL.
pub fn bookkeeping_table() -> String {
    winchester_storage::backend::bookkeeping_table("TIMESTAMPTZ NOT NULL DEFAULT now()", "BYTEA")
}

/// Bytes as a `bytea` literal (`'\x0a1b…'`).
pub fn bytes_literal(bytes: &[u8]) -> String {
    format!("'\\x{}'", winchester_storage::backend::hex(bytes))
}

/// The advisory lock key sqlx-cli takes for migrations on a database, so
/// that `sqlx migrate run` and `winchester-db` never migrate at once.
fn lock_key(database: &str) -> i64 {
    const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    0x3d32_ad9e * i64::from(CRC32.checksum(database.as_bytes()))
}

/// One migration step's transaction: holds the migration lock (until it
/// ends: a transaction-level lock, safe behind a transaction pooler where a
/// session lock would stay on a server connection someone else gets) with
/// the bookkeeping table in place.
async fn locked(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let database =
        sqlx::query_scalar!(r#"SELECT current_database() AS "name!""#).persistent(false).fetch_one(&mut *tx).await?;
    sqlx::query_scalar!("SELECT pg_advisory_xact_lock($1)", lock_key(&database))
        .persistent(false)
        .fetch_one(&mut *tx)
        .await?;
    tx.execute(bookkeeping_table().as_str()).await?;
    Ok(tx)
}

/// The bookkeeping rows: (version, checksum, success), oldest first.
async fn bookkeeping(tx: &mut PgConnection) -> Result<Vec<(i64, Vec<u8>, bool)>, sqlx::Error> {
    // Unchecked: sqlx's checked macros cannot leave a statement returning
    // several columns unnamed.
    sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
        .persistent(false)
        .fetch_all(tx)
        .await
}

/// The versions recorded as applied, oldest first (none without a
/// bookkeeping table; looking creates nothing).
///
/// Every statement of this module is unnamed and runs in a transaction of its
/// own per migration: the same code is right directly and behind a
/// transaction pooler (sqlx's own migrator names its statements and holds a
/// session lock).
pub async fn applied_versions(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let exists = sqlx::query_scalar!(r#"SELECT to_regclass('_sqlx_migrations') IS NOT NULL AS "exists!""#)
        .persistent(false)
        .fetch_one(&mut *tx)
        .await?;
    let rows = if exists { bookkeeping(&mut tx).await? } else { vec![] };
    tx.rollback().await?;
    Ok(rows.into_iter().map(|(v, _, _)| v).collect())
}

/// Checks the applied migrations against `migrator` as sqlx-cli does: none
/// left half-done, none changed since, none unknown.
fn check_applied(migrator: &Migrator, applied: &[(i64, Vec<u8>, bool)]) -> Result<(), MigrateError> {
    if let Some((v, _, _)) = applied.iter().find(|(_, _, ok)| !ok) {
        return Err(MigrateError::Dirty(*v));
    }
    for (version, checksum, _) in applied {
        match migrator.iter().find(|m| m.version == *version && m.migration_type.is_up_migration()) {
            Some(m) if *m.checksum != checksum[..] => return Err(MigrateError::VersionMismatch(*version)),
            Some(_) => {}
            None if migrator.ignore_missing => {}
            None => return Err(MigrateError::VersionMissing(*version)),
        }
    }
    Ok(())
}

/// Applies every pending migration of `migrator`, oldest first, each in a
/// transaction of its own together with its bookkeeping row; returns the
/// versions applied. Concurrent runs wait for each other and apply each
/// migration once.
pub async fn apply_pending(pool: &PgPool, migrator: &Migrator) -> Result<Vec<i64>, MigrateError> {
    let mut done = Vec::new();
    loop {
        let mut tx = locked(pool).await?;
        let applied = bookkeeping(&mut tx).await?;
        check_applied(migrator, &applied)?;
        let Some(m) = migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .find(|m| !applied.iter().any(|(v, _, _)| *v == m.version))
        else {
            tx.rollback().await?;
            return Ok(done);
        };
        if m.no_tx {
            return Err(MigrateError::Source(
                format!("migration {} asks to run outside a transaction, which this runner does not do", m.version)
                    .into(),
            ));
        }
        let start = Instant::now();
        // Unprepared (simple query protocol): a migration is many statements.
        tx.execute(&*m.sql).await.map_err(|e| MigrateError::ExecuteMigration(e, m.version))?;
        let took = i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX);
        sqlx::query!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, $2, TRUE, $3, $4)",
            m.version,
            &*m.description,
            &*m.checksum,
            took
        )
        .persistent(false)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        done.push(m.version);
    }
}

/// Reverts the applied migrations newer than `target`, newest first, each in
/// a transaction of its own with its bookkeeping row.
pub async fn revert_to(pool: &PgPool, migrator: &Migrator, target: i64) -> Result<Vec<i64>, MigrateError> {
    let mut done = Vec::new();
    loop {
        let mut tx = locked(pool).await?;
        let applied = bookkeeping(&mut tx).await?;
        check_applied(migrator, &applied)?;
        let Some((version, _, _)) = applied.iter().rev().find(|(v, _, _)| *v > target) else {
            tx.rollback().await?;
            return Ok(done);
        };
        let down = migrator
            .iter()
            .find(|m| m.version == *version && m.migration_type.is_down_migration())
            .ok_or(MigrateError::VersionNotPresent(*version))?;
        tx.execute(&*down.sql).await.map_err(|e| MigrateError::ExecuteMigration(e, *version))?;
        sqlx::query!("DELETE FROM _sqlx_migrations WHERE version = $1", version)
            .persistent(false)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        done.push(*version);
    }
}
