//! `winchester-db`: schema migrations.

use crate::common::{connect, connect_sqlite, database_url, is_sqlite, redact, ConfigArgs};
use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use winchester_core::WinchesterConfig;
use winchester_postgres::migrate;

/// Manage the winchester-rs database schema.
#[derive(Debug, Parser)]
#[command(name = "winchester-db", version)]
pub struct DbOpts {
    #[command(flatten)]
    /// Config and database flags.
    pub config: ConfigArgs,
    /// Print the SQL instead of running it.
    #[arg(long, global = true)]
    pub sql: bool,
    #[command(subcommand)]
    /// What to do.
    pub command: DbCommand,
}

/// `winchester-db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply migrations up to `head` (the only target).
    Upgrade {
        /// Target revision.
        #[arg(default_value = "head")]
        revision: String,
    },
    /// Revert migrations newer than REVISION (a version number, or `base` for all).
    Downgrade {
        /// Target revision.
        revision: String,
    },
    /// Show the applied version.
    Current,
    /// List every migration and whether it is applied.
    History,
}

/// Runs `winchester-db`; returns what to print.
pub async fn run(opts: &DbOpts) -> anyhow::Result<String> {
    let cfg_url = if opts.config.config.exists() {
        let (cfg, _) = WinchesterConfig::load(&opts.config.config).map_err(|e| anyhow!("{e}"))?;
        cfg.database_url
    } else if opts.config.database_url.is_none() {
        return Err(anyhow!(
            "config file {} not found (and no --database-url / DATABASE_URL given)",
            opts.config.config.display()
        ));
    } else {
        None
    };
    let url = database_url(cfg_url.as_deref(), &opts.config)?;
    if is_sqlite(&url) {
        return run_sqlite(opts, &url).await;
    }
    match &opts.command {
        DbCommand::Upgrade { revision } => {
            if revision != "head" {
                return Err(anyhow!("unknown revision {revision:?}: upgrade only goes to head"));
            }
            if opts.sql {
                // Offline when the database is unreachable: the full script from an empty schema.
                let applied = match connect(&url, 1).await {
                    Ok(s) => migrate::applied_versions(s.pool()).await.unwrap_or_default(),
                    Err(_) => vec![],
                };
                return Ok(migrate::upgrade_sql(&applied));
            }
            let storage = connect(&url, 2).await?;
            let applied =
                migrate::upgrade(storage.pool()).await.with_context(|| format!("migrating {}", redact(&url)))?;
            Ok(if applied.is_empty() {
                "database is up to date\n".to_string()
            } else {
                applied.iter().map(|v| format!("applied migration {v}\n")).collect()
            })
        }
        DbCommand::Downgrade { revision } => {
            let target: i64 = match revision.as_str() {
                "base" => 0,
                r => r.parse().map_err(|_| anyhow!("revision must be a version number or `base`, not {r:?}"))?,
            };
            let storage = connect(&url, 2).await?;
            if opts.sql {
                let mut out = String::from("BEGIN;\n");
                let applied = migrate::applied_versions(storage.pool()).await?;
                for m in migrate::MIGRATOR.iter().rev().filter(|m| {
                    m.migration_type.is_down_migration() && m.version > target && applied.contains(&m.version)
                }) {
                    out.push_str(&format!(
                        "\n-- Revert migration {} {}\n{}\nDELETE FROM _sqlx_migrations WHERE version = {};\n",
                        m.version,
                        m.description,
                        m.sql.trim_end(),
                        m.version
                    ));
                }
                out.push_str("\nCOMMIT;\n");
                return Ok(out);
            }
            migrate::downgrade(storage.pool(), target).await.context("downgrading")?;
            Ok(format!(
                "database downgraded to {}\n",
                if target == 0 { "base".to_string() } else { target.to_string() }
            ))
        }
        DbCommand::Current => {
            let storage = connect(&url, 1).await?;
            let status = migrate::status(storage.pool()).await?;
            Ok(match status.iter().rfind(|m| m.applied) {
                None => "base (no migrations applied)\n".to_string(),
                Some(m) => {
                    let head = status.iter().all(|s| s.applied);
                    format!("{} {}{}\n", m.version, m.description, if head { " (head)" } else { "" })
                }
            })
        }
        DbCommand::History => {
            let storage = connect(&url, 1).await?;
            let status = migrate::status(storage.pool()).await?;
            Ok(status
                .iter()
                .map(|m| format!("{} {} {}\n", m.version, m.description, if m.applied { "applied" } else { "pending" }))
                .collect())
        }
    }
}

/// `winchester-db` on an SQLite database (its own migrations).
async fn run_sqlite(opts: &DbOpts, url: &str) -> anyhow::Result<String> {
    use sqlx::migrate::Migrate;
    let storage = connect_sqlite(url, 1).await?;
    let mut conn = storage.pool().acquire().await?;
    conn.ensure_migrations_table().await?;
    let applied: Vec<i64> = conn.list_applied_migrations().await?.into_iter().map(|m| m.version).collect();
    drop(conn);
    let migrator = &winchester_sqlite::MIGRATOR;
    let describe = |applied_only: bool| -> Vec<(i64, String, bool)> {
        migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| (m.version, m.description.to_string(), applied.contains(&m.version)))
            .filter(|(_, _, a)| !applied_only || *a)
            .collect()
    };
    match &opts.command {
        DbCommand::Upgrade { revision } if revision != "head" => {
            Err(anyhow!("unknown revision {revision:?}: upgrade only goes to head"))
        }
        DbCommand::Upgrade { .. } if opts.sql => {
            let mut out = String::from("BEGIN;\n");
            for m in migrator.iter().filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version)) {
                out.push_str(&format!("\n-- Migration {} {}\n{}\n", m.version, m.description, m.sql.trim_end()));
            }
            out.push_str(
                "\nCOMMIT;\n-- Then record the versions with `winchester-db upgrade head`, or let it apply them.\n",
            );
            Ok(out)
        }
        DbCommand::Upgrade { .. } => {
            let done = storage.migrate().await.context("migrating")?;
            Ok(if done.is_empty() {
                "database is up to date\n".to_string()
            } else {
                done.iter().map(|v| format!("applied migration {v}\n")).collect()
            })
        }
        DbCommand::Downgrade { revision } => {
            let target: i64 = match revision.as_str() {
                "base" => 0,
                r => r.parse().map_err(|_| anyhow!("revision must be a version number or `base`, not {r:?}"))?,
            };
            migrator.undo(storage.pool(), target).await.context("downgrading")?;
            Ok(format!(
                "database downgraded to {}\n",
                if target == 0 { "base".to_string() } else { target.to_string() }
            ))
        }
        DbCommand::Current => Ok(match describe(true).last() {
            None => "base (no migrations applied)\n".to_string(),
            Some((v, d, _)) => format!("{v} {d}{}\n", if describe(false).iter().all(|m| m.2) { " (head)" } else { "" }),
        }),
        DbCommand::History => Ok(describe(false)
            .iter()
            .map(|(v, d, a)| format!("{v} {d} {}\n", if *a { "applied" } else { "pending" }))
            .collect()),
    }
}
