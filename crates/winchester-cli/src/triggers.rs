//! `winchester triggers`: the recorded definition versions of the triggers.

use crate::common::{load_config, trigger_manager, ConfigArgs, Run};
use serde_json::Value;
use std::process::ExitCode;
use winchester::pipeline::HandlerRegistry;
use winchester_core::event::format_datetime;
use winchester_storage::Storage;

/// `winchester triggers` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TriggersCommand {
    /// Every recorded definition version of the triggers (or of one), oldest
    /// first, with when each was first used and which one is in force.
    History {
        /// Only this trigger's versions.
        #[arg(long)]
        trigger: Option<String>,
        /// Print JSON (with each version's definition).
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `winchester triggers` subcommand and prints what it returns.
pub async fn command(
    config: &ConfigArgs,
    registry: &HandlerRegistry,
    command: TriggersCommand,
) -> anyhow::Result<ExitCode> {
    let TriggersCommand::History { trigger, json } = command;
    let cfg = load_config(config, registry)?;
    let tm = trigger_manager(&cfg, config, 2, Run::OneShot).await?;
    print!("{}", history(tm.storage().as_ref(), &cfg, trigger.as_deref(), json).await?);
    Ok(ExitCode::SUCCESS)
}

/// `triggers history`: every recorded definition version, oldest first per
/// trigger, and which one the configuration in force uses.
pub async fn history(
    storage: &dyn Storage,
    cfg: &winchester_core::LoadedConfig,
    trigger: Option<&str>,
    json_out: bool,
) -> anyhow::Result<String> {
    let versions = storage.trigger_versions(trigger).await?;
    let current = |v: &winchester_storage::TriggerVersion| {
        cfg.versions.get(&v.definition.trigger).is_some_and(|c| c.version == v.definition.version)
    };
    if json_out {
        let out: Vec<Value> = versions
            .iter()
            .map(|v| {
                serde_json::json!({
                    "trigger": v.definition.trigger,
                    "version": v.definition.version,
                    "first_used": format_datetime(&v.first_used),
                    "current": current(v),
                    "definition": serde_json::from_str::<Value>(&v.definition.text).unwrap_or(Value::Null),
                })
            })
            .collect();
        return Ok(format!("{}\n", serde_json::to_string_pretty(&out)?));
    }
    let mut rows = vec![["TRIGGER", "VERSION", "FIRST USED", "CURRENT"].map(String::from)];
    for v in &versions {
        rows.push([
            v.definition.trigger.clone(),
            v.definition.version.clone(),
            format_datetime(&v.first_used),
            if current(v) { "yes" } else { "" }.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..4).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    Ok(out)
}
