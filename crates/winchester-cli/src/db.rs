//! `winchester-db`: schema migrations.

use crate::common::{database_url, redact, ConfigArgs, Run};
use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use winchester_backends::{wait_for_database, DatabaseOptions};
use winchester_core::config::Pooler;
use winchester_core::WinchesterConfig;
use winchester_storage::backend::MigrationStatus;

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

/// Runs `winchester-db`; returns what to print. The same for every backend:
/// [`Backend`](winchester_storage::backend::Backend) does the work,
/// [`Schema`](winchester_storage::backend::Schema) writes the `--sql` scripts.
pub async fn run(opts: &DbOpts) -> anyhow::Result<String> {
    let (cfg_url, pooler) = if opts.config.config.exists() {
        let (cfg, _) = WinchesterConfig::load(&opts.config.config).map_err(|e| anyhow!("{e}"))?;
        (cfg.database_url, cfg.pooler)
    } else if opts.config.database_url.is_none() {
        return Err(anyhow!(
            "config file {} not found (and no --database-url / DATABASE_URL given)",
            opts.config.config.display()
        ));
    } else {
        (None, Pooler::None)
    };
    let db = DatabaseOptions::new(database_url(cfg_url.as_deref(), &opts.config)?, pooler);
    let url = db.url.clone();
    let kind = db.kind()?;
    let wait = opts.config.database_wait(Run::OneShot);
    let db = &db;
    // Waits for the database at start, as long as --wait-for-database allows.
    let connect =
        |max_connections| wait_for_database(db, wait, move || winchester_backends::connect(db, max_connections));
    match &opts.command {
        DbCommand::Upgrade { revision } if revision != "head" => {
            Err(anyhow!("unknown revision {revision:?}: upgrade only goes to head"))
        }
        DbCommand::Upgrade { .. } if opts.sql => {
            // Offline when the database is unreachable (no waiting): the full script from an empty schema.
            let applied = match winchester_backends::connect(db, 1).await {
                Ok(b) => b.applied_versions().await.unwrap_or_default(),
                Err(_) => vec![],
            };
            Ok(kind.schema().upgrade_sql(&applied))
        }
        DbCommand::Upgrade { .. } => {
            let backend = connect(2).await?;
            let applied = backend.upgrade().await.with_context(|| format!("migrating {}", redact(&url)))?;
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
            let backend = connect(2).await?;
            if opts.sql {
                let applied = backend.applied_versions().await.context("reading the applied migrations")?;
                return kind.schema().downgrade_sql(&applied, target).map_err(|e| anyhow!("{e}"));
            }
            backend.downgrade(target).await.context("downgrading")?;
            Ok(format!(
                "database downgraded to {}\n",
                if target == 0 { "base".to_string() } else { target.to_string() }
            ))
        }
        DbCommand::Current => {
            let status = connect(1).await?.status().await.context("reading the applied migrations")?;
            Ok(current(&status))
        }
        DbCommand::History => {
            let status = connect(1).await?.status().await.context("reading the applied migrations")?;
            Ok(status
                .iter()
                .map(|m| format!("{} {} {}\n", m.version, m.description, if m.applied { "applied" } else { "pending" }))
                .collect())
        }
    }
}

/// `winchester-db current`: the newest applied migration, `(head)` when none is pending.
fn current(status: &[MigrationStatus]) -> String {
    match status.iter().rfind(|m| m.applied) {
        None => "base (no migrations applied)\n".to_string(),
        Some(m) => {
            let head = status.iter().all(|s| s.applied);
            format!("{} {}{}\n", m.version, m.description, if head { " (head)" } else { "" })
        }
    }
}
