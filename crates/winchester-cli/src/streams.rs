//! `winchester streams`: list, show, retry and purge streams.

use anyhow::anyhow;
use serde_json::Value;
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
