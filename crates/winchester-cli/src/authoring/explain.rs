//! `winchester explain`: for one event, what each trigger makes of it: whether
//! it matches and which criterion decided, the distinguishing traits it would
//! get, the open stream it would join (read from the database, when one is
//! given) and whether that stream's fire criteria would be met after it.

use serde_json::{json, Value};
use std::sync::Arc;
use winchester_backends::DatabaseOptions;
use winchester_core::{DistTraits, DistValue, Event, TraitValue, TriggerDefinition, TriggerSet};
use winchester_storage::{Storage, Stream, StreamFilter, StreamState, TraitFilter};

/// What one trigger makes of the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The trigger.
    pub trigger: String,
    /// Whether the event joins one of its streams.
    pub matched: bool,
    /// Which criterion decided, with the values it saw.
    pub reason: String,
    /// The stream's distinguishing traits (when matched).
    pub distinguishing_traits: Option<DistTraits>,
    /// The open stream it would join (when matched and a database was read).
    pub stream_id: Option<i64>,
    /// Whether the stream's fire criteria are met after this event (when matched).
    pub would_fire: Option<bool>,
}

impl Explanation {
    /// `{"trigger", "matched", "reason", "distinguishing_traits", "stream_id", "would_fire"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "trigger": self.trigger,
            "matched": self.matched,
            "reason": self.reason,
            "distinguishing_traits": self.distinguishing_traits.as_ref().map(DistTraits::to_plain_json),
            "stream_id": self.stream_id,
            "would_fire": self.would_fire,
        })
    }
}

/// Explains `event` against every trigger; with `storage`, looks up the open
/// stream of each matched key (reads only).
pub async fn explain(
    triggers: &TriggerSet,
    storage: Option<&dyn Storage>,
    event: &Event,
) -> anyhow::Result<Vec<Explanation>> {
    let mut out = Vec::new();
    for t in triggers.iter() {
        let (verdict, reason) = t.explain_match(event);
        let mut x = Explanation {
            trigger: t.name.clone(),
            matched: verdict.is_ok(),
            reason,
            distinguishing_traits: None,
            stream_id: None,
            would_fire: None,
        };
        if let Ok((_, dist)) = verdict {
            let stream = match storage {
                Some(s) => open_stream(s, &t.name, &dist).await?,
                None => None,
            };
            // An open stream of another definition version is closed, not joined.
            let joins =
                |s: &Stream| winchester_storage::fold::joins_version(s.version.as_deref(), t.version.as_deref());
            let stream = stream.filter(joins);
            x.stream_id = stream.as_ref().map(|s| s.id);
            x.would_fire = Some(would_fire(storage, t, stream.as_ref(), event).await?);
            x.distinguishing_traits = Some(dist);
        }
        out.push(x);
    }
    Ok(out)
}

/// The open stream of `trigger` with these distinguishing traits, if any.
async fn open_stream(storage: &dyn Storage, trigger: &str, dist: &DistTraits) -> anyhow::Result<Option<Stream>> {
    // Narrow the read by the plain trait values; the key comparison decides.
    let dist_traits = dist
        .0
        .iter()
        .filter_map(|(name, v)| match v {
            DistValue::Value(TraitValue::String(s)) => Some(TraitFilter { name: name.clone(), value: s.clone() }),
            DistValue::Value(TraitValue::Int(i)) => Some(TraitFilter { name: name.clone(), value: i.to_string() }),
            _ => None,
        })
        .collect();
    let filter = StreamFilter {
        trigger: Some(trigger.to_string()),
        state: Some(StreamState::Active),
        dist_traits,
        ..StreamFilter::default()
    };
    let key = dist.key();
    Ok(storage.list_streams(&filter).await?.into_iter().find(|s| s.open && s.dist_traits.key() == key))
}

/// Whether the stream the event joins (the open one, or a new one) meets its
/// fire criteria once the event is in it.
async fn would_fire(
    storage: Option<&dyn Storage>,
    t: &TriggerDefinition,
    stream: Option<&Stream>,
    event: &Event,
) -> anyhow::Result<bool> {
    if stream.is_some_and(|s| s.fire_timestamp.is_some()) {
        return Ok(true);
    }
    let mut counts = vec![0i64; t.fire_criteria.len()];
    let mut add = |e: &Event| {
        for (c, hit) in counts.iter_mut().zip(t.fire_hits(e)) {
            *c += i64::from(hit);
        }
    };
    if let (Some(storage), Some(stream)) = (storage, stream) {
        const PAGE: u32 = 1000;
        for e in winchester_storage::all_stream_events(storage, stream.id, PAGE).await? {
            // An event explained again after it was stored counts once.
            if e.message_id != event.message_id {
                add(&e);
            }
        }
    }
    add(event);
    Ok(t.fire_ready(&counts))
}

/// The explanations as text: one block per trigger.
pub fn render(explanations: &[Explanation], database: bool) -> String {
    let mut out = String::new();
    for x in explanations {
        let verdict = if x.matched { "matches" } else { "does not match" };
        out.push_str(&format!("{}: {verdict}\n  reason: {}\n", x.trigger, x.reason));
        if let Some(d) = &x.distinguishing_traits {
            out.push_str(&format!("  distinguishing traits: {}\n", d.to_plain_json()));
            let stream = match (x.stream_id, database) {
                (Some(id), _) => format!("open stream {id}"),
                (None, true) => "no open stream: a new one would be opened".to_string(),
                (None, false) => "not looked up (no database)".to_string(),
            };
            out.push_str(&format!("  stream: {stream}\n"));
        }
        if let Some(f) = x.would_fire {
            out.push_str(&format!("  would fire: {}\n", if f { "yes" } else { "no" }));
        }
    }
    out
}

/// `winchester explain` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// A JSON event (or raw notification, with --notification), or - for standard input.
    pub file: String,
    /// The input is a raw notification, distilled through distiller_config.
    #[arg(long)]
    pub notification: bool,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Do not look up open streams in the configured database.
    #[arg(long)]
    pub no_database: bool,
}

/// `winchester explain`: reads the event (or notification) from `args.file`
/// (`-`: standard input) and prints the explanations as text (or JSON).
pub async fn command(
    config: &crate::common::ConfigArgs,
    registry: &winchester::pipeline::HandlerRegistry,
    args: &ExplainArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let cfg = crate::common::load_config(config, registry)?;
    let event = read_event(&cfg, &args.file, args.notification)?;
    let storage = if args.no_database {
        None
    } else {
        open_read_only(&cfg, config.database_wait(crate::common::Run::OneShot)).await?
    };
    let xs = explain(&cfg.triggers, storage.as_deref(), &event).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&Value::Array(xs.iter().map(Explanation::to_json).collect()))?);
    } else {
        print!("{}", render(&xs, storage.is_some()));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The event in `file` (`-`: standard input), validated; with
/// `notification`, a raw notification distilled through distiller_config.
fn read_event(cfg: &winchester_core::LoadedConfig, file: &str, notification: bool) -> anyhow::Result<Event> {
    use anyhow::{anyhow, bail, Context};
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    let value: Value = serde_json::from_str(&text).with_context(|| format!("{file}: not a JSON document"))?;
    let event = if notification {
        let d = cfg
            .distiller_file
            .as_ref()
            .ok_or_else(|| anyhow!("--notification needs distiller_config (an event_definitions.yaml)"))?;
        let distiller = winchester_core::distiller::Distiller::load_flavoured(
            d,
            cfg.main.catch_all_notifications,
            cfg.main.distiller,
            &Default::default(),
        )
        .map_err(|e| anyhow!("{e}"))?;
        match distiller.to_event(&value).map_err(|e| anyhow!("{file}: {e}"))? {
            Some(e) => e,
            None => bail!(
                "{file}: no event definition covers event_type {} (and catch_all_notifications is off)",
                value.get("event_type").unwrap_or(&Value::Null)
            ),
        }
    } else {
        Event::from_json(&value).map_err(|e| anyhow!("{file}: {e}"))?
    };
    event.validate().map_err(|e| anyhow!("{file}: {e}"))?;
    Ok(event)
}

/// The configured database, if there is one, opened to read: an SQLite file
/// that is not there is an error, never created.
async fn open_read_only(
    cfg: &winchester_core::LoadedConfig,
    wait: crate::common::WaitForDatabase,
) -> anyhow::Result<Option<Arc<dyn Storage>>> {
    let Some(url) = &cfg.main.database_url else { return Ok(None) };
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if !std::path::Path::new(path).exists() {
            anyhow::bail!("no SQLite database at {path}");
        }
    }
    Ok(Some(crate::common::open_storage(&DatabaseOptions::new(url.as_str(), cfg.main.pooler), 1, wait).await?))
}
