//! `winchester check`: validate every file the config names.

use crate::common::{load_config_quietly, ConfigArgs};
use std::process::ExitCode;
use winchester::pipeline::HandlerRegistry;

/// `winchester check` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Fail (exit 2) on warnings too: unknown keys, duplicate keys, ...
    #[arg(long)]
    pub strict: bool,
}

/// `winchester check`: prints the summary; with `--strict`, exit 2 when there
/// are warnings.
pub fn command(config: &ConfigArgs, registry: &HandlerRegistry, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let (summary, warnings) = run(config, registry)?;
    print!("{summary}");
    if args.strict && warnings > 0 {
        eprintln!("error: {warnings} warning{} (--strict)", if warnings == 1 { "" } else { "s" });
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// Validates the configuration: the summary to print and the number of
/// warnings in it; `Err` lists every problem.
pub fn run(args: &ConfigArgs, registry: &HandlerRegistry) -> anyhow::Result<(String, usize)> {
    let cfg = load_config_quietly(args, registry)?;
    let mut out = String::new();
    out.push_str(&format!("{}: OK\n", args.config.display()));
    if let Some(f) = &cfg.triggers_file {
        out.push_str(&format!("triggers ({}): {}\n", f.display(), cfg.triggers.len()));
        for t in cfg.triggers.iter() {
            out.push_str(&format!(
                "  {}: {} match criteria, {} fire criteria, distinguished by [{}], expiration {:?}, fire_pipeline {}, expire_pipeline {}\n",
                t.name,
                t.match_criteria.len(),
                t.fire_criteria.len(),
                t.distinguished_by.iter().map(|d| d.name()).collect::<Vec<_>>().join(", "),
                t.expiration.source(),
                t.fire_pipeline.as_deref().unwrap_or("-"),
                t.expire_pipeline.as_deref().unwrap_or("-"),
            ));
        }
    }
    if let Some(f) = &cfg.pipelines_file {
        out.push_str(&format!("pipelines ({}): {}\n", f.display(), cfg.pipelines.pipelines.len()));
        for (name, handlers) in &cfg.pipelines.pipelines {
            let hs: Vec<String> = handlers
                .iter()
                .map(|h| {
                    let ty = registry.canonical(cfg.handler_type(&h.name));
                    if ty == h.name {
                        h.name.clone()
                    } else {
                        format!("{} ({ty})", h.name)
                    }
                })
                .collect();
            out.push_str(&format!("  {name}: {}\n", hs.join(" -> ")));
        }
    }
    if let (Some(f), Some(d)) = (&cfg.distiller_file, crate::common::load_distiller(&cfg)?) {
        out.push_str(&format!("event definitions ({}): {}\n", f.display(), d.definitions().len()));
    }
    if !cfg.warnings.is_empty() {
        out.push_str(&format!("warnings: {}\n", cfg.warnings.len()));
        for w in &cfg.warnings {
            out.push_str(&format!("  - {w}\n"));
        }
    }
    Ok((out, cfg.warnings.len()))
}
