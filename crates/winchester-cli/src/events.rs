//! `winchester events list|count|show` and `winchester tail`.

use crate::common::{load_config, trigger_manager, ConfigArgs, Run};
use anyhow::anyhow;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use winchester::pipeline::HandlerRegistry;
use winchester::tail::{Tail, TailFilter, TailItem};
use winchester_api::params::parse_time;
use winchester_core::event::format_datetime;
use winchester_storage::{EventFilter, NamePattern, Page, Storage, StoredEvent, TraitFilter};

/// The event filters of `events list` / `events count`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EventArgs {
    /// Only events generated at or after this time (ISO 8601).
    #[arg(long)]
    pub from: Option<String>,
    /// Only events generated before this time (ISO 8601).
    #[arg(long)]
    pub to: Option<String>,
    /// Only events of this type (exact, or a glob with * and ?).
    #[arg(long = "event-name")]
    pub event_name: Option<String>,
    /// Only events with this trait value, as NAME=VALUE (typed: memory_mb=4096 matches an int). Repeatable.
    #[arg(long = "trait", value_name = "NAME=VALUE")]
    pub traits: Vec<String>,
}

/// `winchester events` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Events matching the filters, newest first.
    List {
        #[command(flatten)]
        /// Which events.
        filter: EventArgs,
        /// At most this many.
        #[arg(long, default_value_t = 200)]
        limit: u32,
        /// Continue after this mark (printed at the end of a full page; + for oldest first).
        #[arg(long)]
        mark: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// How many events match the filters.
    Count {
        #[command(flatten)]
        /// Which events.
        filter: EventArgs,
    },
    /// One event and the streams it belongs to.
    Show {
        /// The event's message_id.
        message_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `winchester events` subcommand and prints what it returns.
pub async fn command(
    config: &ConfigArgs,
    registry: &HandlerRegistry,
    command: EventsCommand,
) -> anyhow::Result<ExitCode> {
    let cfg = load_config(config, registry)?;
    let tm = trigger_manager(&cfg, config, 2, Run::OneShot).await?;
    let storage = tm.storage().as_ref();
    let out = match command {
        EventsCommand::List { filter, limit, mark, json } => {
            list(storage, &filter, limit, mark.as_deref(), json).await?
        }
        EventsCommand::Count { filter } => count(storage, &filter).await?,
        EventsCommand::Show { message_id, json } => show(storage, &message_id, json).await?,
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `winchester tail` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// Only events of this type (exact, or a glob with * and ?).
    #[arg(long = "event-name")]
    pub event_name: Option<String>,
    /// Only events with this trait value, as NAME=VALUE. Repeatable.
    #[arg(long = "trait", value_name = "NAME=VALUE")]
    pub traits: Vec<String>,
    /// Also print stream transitions (fired, expired, failed, reset, purged).
    #[arg(long)]
    pub streams: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// `winchester tail`: [`tail`] with the flags' filter, until SIGINT/SIGTERM.
pub async fn tail_command(config: &ConfigArgs, registry: &HandlerRegistry, args: TailArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(config, registry)?;
    let tm = trigger_manager(&cfg, config, 2, Run::OneShot).await?;
    let filter = TailFilter {
        event_name: args.event_name.map(NamePattern),
        traits: trait_filters(&args.traits)?,
        trigger: None,
        events: true,
        streams: args.streams,
    };
    tail(tm.storage().clone(), filter, args.json, crate::worker::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

fn time(flag: &str, v: &Option<String>) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    v.as_deref()
        .map(|s| parse_time(s).ok_or_else(|| anyhow!("--{flag}: {s:?} is not an ISO 8601 date-time")))
        .transpose()
}

/// `--trait` flags as filters.
pub fn trait_filters(traits: &[String]) -> anyhow::Result<Vec<TraitFilter>> {
    traits.iter().map(|t| TraitFilter::parse_one(t).map_err(|e| anyhow!("--trait: {e}"))).collect()
}

impl EventArgs {
    /// As a storage filter.
    pub fn filter(&self) -> anyhow::Result<EventFilter> {
        Ok(EventFilter {
            from: time("from", &self.from)?,
            to: time("to", &self.to)?,
            event_name: self.event_name.clone().map(NamePattern),
            traits: trait_filters(&self.traits)?,
            page: Page::default(),
        })
    }
}

fn line(e: &StoredEvent) -> String {
    let traits: Vec<String> = e.event.traits.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}  {}  {}  {}",
        format_datetime(&e.event.timestamp),
        e.event.event_type,
        e.event.message_id,
        traits.join(" ")
    )
    .trim_end()
    .to_string()
}

/// `events list`: newest first, at most `limit` (a `mark` continues a listing).
pub async fn list(
    storage: &dyn Storage,
    args: &EventArgs,
    limit: u32,
    mark: Option<&str>,
    json: bool,
) -> anyhow::Result<String> {
    let mut filter = args.filter()?;
    filter.page = Page::from_mark(mark, Some(limit)).map_err(|e| anyhow!("--mark: {e}"))?;
    let events = storage.list_events(&filter).await?;
    let mut out = String::new();
    if json {
        let arr: Vec<_> = events.iter().map(|e| e.event.to_json()).collect();
        out = serde_json::to_string_pretty(&arr)? + "\n";
    } else {
        for e in &events {
            out.push_str(&line(e));
            out.push('\n');
        }
        if let Some(last) = events.last() {
            if events.len() as u32 == limit {
                out.push_str(&format!("(more: --mark {})\n", filter.page.next_mark(last.id)));
            }
        }
    }
    Ok(out)
}

/// `events count`.
pub async fn count(storage: &dyn Storage, args: &EventArgs) -> anyhow::Result<String> {
    Ok(format!("{}\n", storage.count_events(&args.filter()?).await?))
}

/// `events show MESSAGE_ID`: the event and the streams it belongs to.
pub async fn show(storage: &dyn Storage, message_id: &str, json: bool) -> anyhow::Result<String> {
    let e = storage.get_event(message_id).await?.ok_or_else(|| anyhow!("no event with message_id {message_id:?}"))?;
    let streams = storage.event_streams(e.id).await?;
    if json {
        let v = serde_json::json!({ "event": e.event.to_json(), "streams": streams });
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let mut out = serde_json::to_string_pretty(&e.event.to_json())? + "\n";
    let ids: Vec<String> = streams.iter().map(i64::to_string).collect();
    out.push_str(&format!("streams: {}\n", if ids.is_empty() { "-".to_string() } else { ids.join(", ") }));
    Ok(out)
}

/// `winchester tail`: prints new events (and with `streams`, stream
/// transitions) as they are committed, until `stop` completes.
pub async fn tail(
    storage: Arc<dyn Storage>,
    filter: TailFilter,
    json: bool,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut tail = Tail::start(storage).await?;
    tokio::pin!(stop);
    let mut out = std::io::stdout();
    loop {
        let items = tokio::select! {
            r = tail.next() => r?,
            _ = &mut stop => return Ok(()),
        };
        for item in items.iter().filter(|i| filter.matches(i)) {
            let text = if json {
                let mut v = item.to_json();
                if let TailItem::Transition(_) = item {
                    v["kind"] = "stream".into();
                }
                v.to_string()
            } else {
                match item {
                    TailItem::Event(e) => line(e),
                    TailItem::Transition(t) => format!(
                        "{}  stream {} ({}) {}: {} -> {}",
                        format_datetime(&t.at),
                        t.stream_id,
                        t.trigger,
                        t.kind,
                        t.from,
                        t.to.map(|s| s.as_str()).unwrap_or("deleted")
                    ),
                }
            };
            if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
                return Ok(()); // stdout closed (| head)
            }
        }
    }
}
