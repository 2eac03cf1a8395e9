//! What a database backend offers besides [`Storage`]: its schema migrations,
//! applied, reverted and printed the same way on every backend.
//!
//! A backend describes its schema once ([`Schema`]: the migrations it ships and
//! the few pieces of SQL dialect their bookkeeping needs) and implements
//! [`Backend`] on a connection: which migrations are applied, apply the
//! pending ones, revert down to a version. Everything built on top (status,
//! the pending check, the `--sql` scripts of `winchester-db`) lives here, so
//! both backends give the same answers in the same shape.

use crate::{Result, Storage};
use async_trait::async_trait;
use std::sync::Arc;

/// One schema migration a backend ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Version number (the file's numeric prefix).
    pub version: i64,
    /// Description (the rest of the file name).
    pub description: String,
    /// The SQL that applies it.
    pub up_sql: String,
    /// The SQL that reverts it, when there is a down file.
    pub down_sql: Option<String>,
    /// Checksum of `up_sql` as the bookkeeping table records it.
    pub checksum: Vec<u8>,
}

/// One entry of a backend's embedded migration list, as its migration tool
/// stores it: up and down scripts are separate entries of the same version.
#[derive(Debug, Clone, Copy)]
pub struct MigrationEntry<'a> {
    /// Version number.
    pub version: i64,
    /// Description.
    pub description: &'a str,
    /// Whether this entry applies (up) or reverts (down) the version.
    pub up: bool,
    /// The SQL.
    pub sql: &'a str,
    /// Checksum of the SQL.
    pub checksum: &'a [u8],
}

/// A migration and whether a database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Version number.
    pub version: i64,
    /// Description.
    pub description: String,
    /// Applied to the database.
    pub applied: bool,
}

/// A backend's schema, known without a connection: its name, its migrations,
/// and the dialect of the bookkeeping table (`_sqlx_migrations`) that records
/// which are applied.
#[derive(Debug, Clone)]
pub struct Schema {
    /// `postgres` or `sqlite`.
    pub backend: &'static str,
    /// Every migration, oldest first.
    pub migrations: Vec<Migration>,
    /// `CREATE TABLE IF NOT EXISTS _sqlx_migrations (…)` in this dialect
    /// (see [`bookkeeping_table`]).
    pub bookkeeping_table: String,
    /// Writes bytes as a literal of this dialect (for the checksum column).
    pub bytes_literal: fn(&[u8]) -> String,
}

impl Schema {
    /// Pairs up a migration tool's entries (up and down of the same version)
    /// into [`Migration`]s, oldest first.
    pub fn migrations_from<'a>(entries: impl IntoIterator<Item = MigrationEntry<'a>>) -> Vec<Migration> {
        let entries: Vec<MigrationEntry<'a>> = entries.into_iter().collect();
        let mut out: Vec<Migration> = entries
            .iter()
            .filter(|e| e.up)
            .map(|e| Migration {
                version: e.version,
                description: e.description.to_string(),
                up_sql: e.sql.to_string(),
                down_sql: entries.iter().find(|d| !d.up && d.version == e.version).map(|d| d.sql.to_string()),
                checksum: e.checksum.to_vec(),
            })
            .collect();
        out.sort_by_key(|m| m.version);
        out
    }

    /// Every migration and whether `applied` lists it.
    pub fn status(&self, applied: &[i64]) -> Vec<MigrationStatus> {
        self.migrations
            .iter()
            .map(|m| MigrationStatus {
                version: m.version,
                description: m.description.clone(),
                applied: applied.contains(&m.version),
            })
            .collect()
    }

    /// Versions this build ships that `applied` lacks, oldest first.
    pub fn pending(&self, applied: &[i64]) -> Vec<i64> {
        self.migrations.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect()
    }

    /// The script that brings a database from `applied` to head, bookkeeping
    /// rows included, so a database upgraded by running it by hand is one
    /// [`Backend::upgrade`] considers up to date. One transaction.
    pub fn upgrade_sql(&self, applied: &[i64]) -> String {
        let mut out = format!("BEGIN;\n\n{}\n", self.bookkeeping_table.trim_end());
        for m in self.migrations.iter().filter(|m| !applied.contains(&m.version)) {
            out.push_str(&format!("\n-- Migration {} {}\n{}\n", m.version, m.description, m.up_sql.trim_end()));
            out.push_str(&format!(
                "\nINSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)\n    VALUES ({}, {}, TRUE, {}, -1);\n",
                m.version,
                sql_string(&m.description),
                (self.bytes_literal)(&m.checksum)
            ));
        }
        out.push_str("\nCOMMIT;\n");
        out
    }

    /// The script that reverts the applied migrations newer than `target`
    /// (0: all), newest first, bookkeeping rows included. One transaction.
    /// Errors name a migration that cannot be reverted (no down file).
    pub fn downgrade_sql(&self, applied: &[i64], target: i64) -> std::result::Result<String, String> {
        let mut out = String::from("BEGIN;\n");
        for m in self.migrations.iter().rev().filter(|m| m.version > target && applied.contains(&m.version)) {
            let down = m
                .down_sql
                .as_deref()
                .ok_or_else(|| format!("migration {} {} has no down script", m.version, m.description))?;
            out.push_str(&format!(
                "\n-- Revert migration {} {}\n{}\n\nDELETE FROM _sqlx_migrations WHERE version = {};\n",
                m.version,
                m.description,
                down.trim_end(),
                m.version
            ));
        }
        out.push_str("\nCOMMIT;\n");
        Ok(out)
    }
}

/// sqlx's bookkeeping table of applied migrations, `_sqlx_migrations`, with
/// the dialect's column type (and default) of `installed_on` and type of
/// `checksum`.
pub fn bookkeeping_table(installed_on: &str, checksum: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on {installed_on},
    success BOOLEAN NOT NULL,
    checksum {checksum} NOT NULL,
    execution_time BIGINT NOT NULL
);"
    )
}

/// Lower-case hex digits of `bytes` (for the dialects' byte literals).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `text` as an SQL string literal (standard quoting, the same in both dialects).
fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A connected backend: its [`Storage`] and its schema migrations.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The schema this build ships for the backend.
    fn schema(&self) -> Schema;

    /// The storage on this connection.
    fn storage(&self) -> Arc<dyn Storage>;

    /// Versions recorded as applied (empty for a fresh database).
    async fn applied_versions(&self) -> Result<Vec<i64>>;

    /// Applies every pending migration, each in its own transaction.
    async fn apply_pending(&self) -> Result<()>;

    /// Reverts applied migrations newer than `target` (0: all), newest first.
    async fn revert_to(&self, target: i64) -> Result<()>;

    /// `postgres` or `sqlite`.
    fn name(&self) -> &'static str {
        self.schema().backend
    }

    /// Applies every pending migration; returns the versions applied (none
    /// when the schema is current).
    async fn upgrade(&self) -> Result<Vec<i64>> {
        let before = self.applied_versions().await?;
        self.apply_pending().await?;
        let after = self.applied_versions().await?;
        Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
    }

    /// Reverts migrations newer than `target`; returns the versions reverted.
    async fn downgrade(&self, target: i64) -> Result<Vec<i64>> {
        let before = self.applied_versions().await?;
        self.revert_to(target).await?;
        let after = self.applied_versions().await?;
        Ok(before.into_iter().filter(|v| !after.contains(v)).collect())
    }

    /// Every migration and whether this database has it.
    async fn status(&self) -> Result<Vec<MigrationStatus>> {
        Ok(self.schema().status(&self.applied_versions().await?))
    }

    /// Migrations this build ships that the database lacks.
    async fn pending(&self) -> Result<Vec<i64>> {
        Ok(self.schema().pending(&self.applied_versions().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        let entries = [
            MigrationEntry { version: 2, description: "more", up: true, sql: "CREATE TABLE b ();", checksum: &[1] },
            MigrationEntry {
                version: 1,
                description: "it's first",
                up: true,
                sql: "CREATE TABLE a ();\n",
                checksum: &[0xab, 0x01],
            },
            MigrationEntry { version: 1, description: "it's first", up: false, sql: "DROP TABLE a;", checksum: &[] },
        ];
        Schema {
            backend: "test",
            migrations: Schema::migrations_from(entries),
            bookkeeping_table: "CREATE TABLE IF NOT EXISTS _sqlx_migrations ();\n".to_string(),
            bytes_literal: |b| format!("X'{}'", hex(b)),
        }
    }

    #[test]
    fn entries_pair_up_oldest_first() {
        let s = schema();
        assert_eq!(s.migrations.iter().map(|m| m.version).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(s.migrations[0].down_sql.as_deref(), Some("DROP TABLE a;"));
        assert_eq!(s.migrations[1].down_sql, None);
        assert_eq!(s.pending(&[1]), vec![2]);
        assert_eq!(s.status(&[2]).iter().map(|m| m.applied).collect::<Vec<_>>(), vec![false, true]);
    }

    #[test]
    fn upgrade_script_applies_and_records_only_what_is_pending() {
        let s = schema();
        assert_eq!(
            s.upgrade_sql(&[]),
            "BEGIN;\n\nCREATE TABLE IF NOT EXISTS _sqlx_migrations ();\n\
             \n-- Migration 1 it's first\nCREATE TABLE a ();\n\
             \nINSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)\n    VALUES (1, 'it''s first', TRUE, X'ab01', -1);\n\
             \n-- Migration 2 more\nCREATE TABLE b ();\n\
             \nINSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)\n    VALUES (2, 'more', TRUE, X'01', -1);\n\
             \nCOMMIT;\n"
        );
        let current = s.upgrade_sql(&[1, 2]);
        assert!(!current.contains("-- Migration"), "{current}");
    }

    #[test]
    fn downgrade_script_reverts_newest_first_and_names_what_cannot_be_reverted() {
        let s = schema();
        assert_eq!(
            s.downgrade_sql(&[1], 0).unwrap(),
            "BEGIN;\n\n-- Revert migration 1 it's first\nDROP TABLE a;\n\nDELETE FROM _sqlx_migrations WHERE version = 1;\n\nCOMMIT;\n"
        );
        assert_eq!(s.downgrade_sql(&[1, 2], 1).unwrap_err(), "migration 2 more has no down script");
        assert_eq!(s.downgrade_sql(&[1, 2], 2).unwrap(), "BEGIN;\n\nCOMMIT;\n");
    }
}
