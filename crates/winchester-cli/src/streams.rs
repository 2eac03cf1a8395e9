//! `winchester streams`: list, show, retry and purge streams.

use crate::common::{load_config, trigger_manager, ConfigArgs, Run};
use anyhow::anyhow;
use serde_json::Value;
use std::process::ExitCode;
use winchester::pipeline::HandlerRegistry;
use winchester_core::event::format_datetime;
use winchester_storage::{Storage, Stream, StreamFilter, StreamState};

/// A stream as the JSON object scripts read (and `winchester serve` returns).
pub use winchester::json::stream as stream_json;

fn dist_text(s: &Stream) -> String {
    s.dist_traits
        .0
        .iter()
        .map(|(k, v)| match v {
            winchester_core::DistValue::Value(v) => format!("{k}={v}"),
            winchester_core::DistValue::Timerange { begin, end } => {
                format!("{k}=[{}, {})", format_datetime(begin), format_datetime(end))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `winchester streams` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StreamsCommand {
    /// One row per stream.
    List {
        /// Only this trigger's streams.
        #[arg(long)]
        trigger: Option<String>,
        /// Only streams in this state (active, firing, expiring, error, expire_error, completed, retry_fire, retry_expire).
        #[arg(long)]
        state: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One stream with its events.
    Show {
        /// Stream id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Queue a failed stream again: error -> retry_fire, expire_error -> retry_expire.
    Retry {
        /// Stream id.
        id: Option<i64>,
        /// Every stream in error or expire_error.
        #[arg(long)]
        all_errors: bool,
    },
    /// Delete a stream (its events stay).
    Purge {
        /// Stream id.
        id: i64,
    },
    /// How many streams match.
    Count {
        /// Only this trigger's streams.
        #[arg(long)]
        trigger: Option<String>,
        /// Only streams in this state.
        #[arg(long)]
        state: Option<String>,
    },
}

/// Runs a `winchester streams` subcommand and prints what it returns.
pub async fn command(
    config: &ConfigArgs,
    registry: &HandlerRegistry,
    command: StreamsCommand,
) -> anyhow::Result<ExitCode> {
    let cfg = load_config(config, registry)?;
    let tm = trigger_manager(&cfg, config, 2, Run::OneShot).await?;
    let storage = tm.storage().as_ref();
    let out = match command {
        StreamsCommand::List { trigger, state, json } => list(storage, trigger, state, json).await?,
        StreamsCommand::Show { id, json } => show(storage, id, json).await?,
        StreamsCommand::Retry { id, all_errors } => retry(storage, id, all_errors).await?,
        StreamsCommand::Purge { id } => purge(storage, id).await?,
        StreamsCommand::Count { trigger, state } => count(storage, trigger, state).await?,
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// Renders streams as a table.
pub fn table(streams: &[Stream]) -> String {
    let mut rows = vec![[
        "ID",
        "TRIGGER",
        "STATE",
        "EVENTS",
        "FIRST",
        "LAST",
        "FIRE AT",
        "EXPIRES",
        "VERSION",
        "DISTINGUISHED BY",
    ]
    .map(String::from)
    .to_vec()];
    for s in streams {
        rows.push(vec![
            s.id.to_string(),
            s.trigger.clone(),
            s.state.to_string(),
            s.event_count.to_string(),
            format_datetime(&s.first_event),
            format_datetime(&s.last_event),
            s.fire_timestamp.as_ref().map(format_datetime).unwrap_or_else(|| "-".into()),
            format_datetime(&s.expire_timestamp),
            s.version.clone().unwrap_or_else(|| "-".into()),
            dist_text(s),
        ]);
    }
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `streams list`.
pub async fn list(
    storage: &dyn Storage,
    trigger: Option<String>,
    state: Option<String>,
    json_out: bool,
) -> anyhow::Result<String> {
    let state = state.map(|s| s.parse::<StreamState>()).transpose().map_err(|e| anyhow!(e))?;
    let streams = storage.list_streams(&StreamFilter { trigger, state, ..Default::default() }).await?;
    Ok(if json_out {
        serde_json::to_string_pretty(&Value::Array(streams.iter().map(stream_json).collect()))? + "\n"
    } else {
        table(&streams)
    })
}

/// `streams count`.
pub async fn count(storage: &dyn Storage, trigger: Option<String>, state: Option<String>) -> anyhow::Result<String> {
    let state = state.map(|s| s.parse::<StreamState>()).transpose().map_err(|e| anyhow!(e))?;
    Ok(format!("{}\n", storage.count_streams(&StreamFilter { trigger, state, ..Default::default() }).await?))
}

/// `streams show ID`: the stream and its events.
pub async fn show(storage: &dyn Storage, id: i64, json_out: bool) -> anyhow::Result<String> {
    let s = storage.get_stream(id).await?.ok_or_else(|| anyhow!("no stream with id {id}"))?;
    let events = winchester_storage::all_stream_events(storage, id, 1000).await?;
    if json_out {
        let mut v = stream_json(&s);
        v["events"] = Value::Array(events.iter().map(|e| e.to_json()).collect());
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let mut out = table(std::slice::from_ref(&s));
    if let Some(err) = &s.last_error {
        out.push_str(&format!("last error: {err}\n"));
    }
    out.push_str(&format!("events ({}):\n", events.len()));
    for e in &events {
        out.push_str(&format!("  {}  {}  {}\n", format_datetime(&e.timestamp), e.event_type, e.message_id));
    }
    Ok(out)
}

/// `streams retry ID` / `--all-errors`.
pub async fn retry(storage: &dyn Storage, id: Option<i64>, all_errors: bool) -> anyhow::Result<String> {
    let ids: Vec<i64> = match (id, all_errors) {
        (Some(id), false) => vec![id],
        (None, true) => {
            let mut ids = Vec::new();
            for st in [StreamState::Error, StreamState::ExpireError] {
                ids.extend(
                    storage
                        .list_streams(&StreamFilter { state: Some(st), ..Default::default() })
                        .await?
                        .iter()
                        .map(|s| s.id),
                );
            }
            ids
        }
        _ => return Err(anyhow!("give a stream id or --all-errors (not both)")),
    };
    let mut out = String::new();
    for id in ids {
        match storage.retry_stream(id).await? {
            None => return Err(anyhow!("no stream with id {id}")),
            Some(s) => out.push_str(&format!("stream {id}: {}\n", s.state)),
        }
    }
    if out.is_empty() {
        out.push_str("no streams in error\n");
    }
    Ok(out)
}

/// `streams purge ID`.
pub async fn purge(storage: &dyn Storage, id: i64) -> anyhow::Result<String> {
    if storage.purge_stream(id).await? {
        Ok(format!("stream {id}: purged\n"))
    } else {
        Err(anyhow!("no stream with id {id}"))
    }
}
