//! `winchester`: check configuration, ingest events, operate streams.
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use winchester_bench as bench;
use winchester_cli::common::{init_tracing, load_config, report, trigger_manager, ConfigArgs};
use winchester_cli::{check, events, ingest, streams};

/// winchester-rs: a stream-trigger engine.
#[derive(Debug, Parser)]
#[command(name = "winchester", version)]
struct Opts {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum TriggersCommand {
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate winchester.yaml and every file it names; print a summary
    /// with the warnings. Exit 1 on errors; with --strict, exit 2 when there
    /// are warnings (and no errors).
    Check {
        /// Fail (exit 2) on warnings too: unknown keys, duplicate keys, ...
        #[arg(long)]
        strict: bool,
    },
    /// Ingest JSON lines of events (or, with --notifications, raw OpenStack
    /// notifications) from FILE (or - for stdin).
    Ingest {
        /// Input file, or - for standard input.
        file: String,
        /// Events per transaction.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Lines are raw notifications (oslo envelopes included), distilled
        /// through distiller_config.
        #[arg(long)]
        notifications: bool,
        /// Replay: "now" follows the events' timestamps instead of the wall clock.
        #[arg(long)]
        event_time: bool,
        /// Standard input or another pipe: save what was read once no line
        /// has arrived for this many milliseconds, without waiting for a full batch.
        #[arg(long, value_name = "MS", default_value_t = 200)]
        flush_after_ms: u64,
    },
    /// Measure the engine against PostgreSQL's COPY limit (creates and drops scratch databases).
    Bench(bench::BenchOpts),
    /// Generate OpenStack notifications, ingest them with the example configs and
    /// fire/expire the streams on an event-time clock; print a summary. Uses an
    /// SQLite file in a temp dir unless --database-url is given.
    Demo {
        #[command(flatten)]
        sim: SimArgs,
        /// Use this winchester.yaml instead of the built-in examples.
        #[arg(long = "demo-config")]
        demo_config: Option<PathBuf>,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
        /// Commit each distinct timestamp alone with a worker run after each
        /// (the slow reference replay) instead of in exact batches.
        #[arg(long)]
        per_moment: bool,
    },
    /// Print generated OpenStack instance lifecycle notifications as JSON lines.
    Generate {
        #[command(flatten)]
        sim: SimArgs,
        /// Print exactly N notifications (more instances than --instances when
        /// it takes more to make N; stderr says how many).
        #[arg(long)]
        count: Option<usize>,
    },
    /// Publish JSON lines of raw notifications from FILE (or - for stdin) to an
    /// AMQP exchange, as persistent messages with publisher confirms (replay an
    /// archive into a broker). Exit 2 if a line was rejected or not routed.
    Publish {
        /// Input file, or - for standard input.
        file: String,
        /// Broker URL [default: the config's amqp_ingest.url, else amqp://guest:guest@127.0.0.1:5672/%2f].
        #[arg(long = "amqp-url", env = "WINCHESTER_AMQP_URL")]
        amqp_url: Option<String>,
        /// Exchange to publish to (declared if absent).
        #[arg(long, default_value = "nova")]
        exchange: String,
        /// Exchange type when declaring it [default: the config's amqp_ingest queue on that exchange, else topic].
        #[arg(long)]
        exchange_type: Option<String>,
        /// Declare the exchange durable (true/false) [default: the config's amqp_ingest queue on that exchange, else true].
        #[arg(long)]
        durable: Option<bool>,
        /// Routing key of every message.
        #[arg(long, default_value = "notifications.info")]
        routing_key: String,
    },
    /// Inspect and operate streams.
    Streams {
        #[command(subcommand)]
        command: StreamsCommand,
    },
    /// Trigger definitions: `history` lists every recorded version.
    Triggers {
        #[command(subcommand)]
        command: TriggersCommand,
    },
    /// Query stored events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Serve the HTTP API (Quincy v1 compatible), the live tail and /metrics.
    Serve(winchester_cli::serve::ServeArgs),
    /// Run tests of the configured triggers and pipelines against sample
    /// events, with no server (in-memory SQLite, an event-time clock, an
    /// in-process worker). Exit 1 if a test failed, 2 if a file is bad.
    Test {
        /// Fixture files, or directories of *.yaml fixture files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the results as one JSON object.
        #[arg(long)]
        json: bool,
        /// Call network handlers (webhook, amqp) instead of recording their calls.
        #[arg(long)]
        live_handlers: bool,
    },
    /// Explain what each trigger makes of one event: match (and why), the
    /// distinguishing traits, the open stream it would join, whether it would fire.
    Explain {
        /// A JSON event (or raw notification, with --notification), or - for standard input.
        file: String,
        /// The input is a raw notification, distilled through distiller_config.
        #[arg(long)]
        notification: bool,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
        /// Do not look up open streams in the configured database.
        #[arg(long)]
        no_database: bool,
    },
    /// Print events (and with --streams, stream transitions) as they are committed, until interrupted.
    Tail {
        /// Only events of this type (exact, or a glob with * and ?).
        #[arg(long = "event-name")]
        event_name: Option<String>,
        /// Only events with this trait value, as NAME=VALUE. Repeatable.
        #[arg(long = "trait", value_name = "NAME=VALUE")]
        traits: Vec<String>,
        /// Also print stream transitions (fired, expired, failed, reset, purged).
        #[arg(long)]
        streams: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Events matching the filters, newest first.
    List {
        #[command(flatten)]
        filter: winchester_cli::events::EventArgs,
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
        filter: winchester_cli::events::EventArgs,
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

/// What to simulate.
#[derive(Debug, Clone, clap::Args)]
struct SimArgs {
    /// Instances to simulate.
    #[arg(long, default_value_t = 300)]
    instances: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 3)]
    days: u32,
    /// Tenants.
    #[arg(long, default_value_t = 25)]
    tenants: usize,
    /// Random seed (same seed, same notifications).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl SimArgs {
    fn generator(&self) -> winchester_demo::GeneratorOptions {
        winchester_demo::GeneratorOptions {
            instances: self.instances,
            days: self.days,
            tenants: self.tenants,
            start: winchester_demo::default_start(self.days),
            seed: self.seed,
        }
    }
}

#[derive(Debug, Subcommand)]
enum StreamsCommand {
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

async fn run(opts: Opts) -> anyhow::Result<ExitCode> {
    let registry = winchester_cli::common::registry();
    match opts.command {
        Command::Check { strict } => {
            let (summary, warnings) = check::run(&opts.config, &registry)?;
            print!("{summary}");
            if strict && warnings > 0 {
                eprintln!("error: {warnings} warning{} (--strict)", if warnings == 1 { "" } else { "s" });
                return Ok(ExitCode::from(2));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest { file, batch_size, notifications, event_time, flush_after_ms } => {
            let cfg = winchester_cli::common::load_ingest_config(&opts.config)?;
            let mut tm = trigger_manager(&cfg, &opts.config, 2).await?.with_source("cli");
            winchester_cli::common::record_versions(&tm, &cfg).await?;
            if notifications && cfg.distiller_file.is_none() {
                anyhow::bail!(
                    "{}: --notifications needs distiller_config (an event_definitions.yaml)",
                    opts.config.config.display()
                );
            }
            let mut ingest_opts = ingest::IngestOptions::new(batch_size);
            ingest_opts.notifications = notifications;
            if event_time {
                let clock = std::sync::Arc::new(winchester_core::ManualClock::new(ingest::replay_epoch()));
                tm = tm.with_clock(clock.clone());
                ingest_opts.event_time = Some(clock);
            }
            ingest_opts.flush_after = std::time::Duration::from_millis(flush_after_ms);
            let report = if file == "-" {
                ingest_opts.progress = ingest::progress_bar(None);
                ingest::run_pipe(&tm, std::io::BufReader::new(std::io::stdin()), &ingest_opts).await?
            } else {
                let path = PathBuf::from(&file);
                let f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                let regular = f.metadata().ok().filter(|m| m.is_file());
                ingest_opts.progress = ingest::progress_bar(regular.as_ref().map(|m| m.len()));
                if regular.is_some() {
                    ingest::run_with(&tm, std::io::BufReader::new(f), &ingest_opts).await?
                } else {
                    // A named pipe or a device: it may pause like stdin.
                    ingest::run_pipe(&tm, std::io::BufReader::new(f), &ingest_opts).await?
                }
            };
            print!("{}", report.render());
            // Triggers with a debug_level asked for their counters.
            for line in tm.debug().dump() {
                eprintln!("{line}");
            }
            Ok(if report.rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::Bench(b) => {
            print!("{}", bench::run(&b, opts.config.database_url.clone()).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { sim, demo_config, json, per_moment } => {
            use std::io::IsTerminal;
            let demo = winchester_demo::DemoOptions {
                generator: sim.generator(),
                database_url: opts.config.database_url.clone(),
                config: demo_config,
                batch_size: 1000,
                progress: !json && std::io::stderr().is_terminal(),
                per_moment,
            };
            let summary = winchester_demo::run(&demo).await?;
            if json {
                println!("{}", summary.to_json());
            } else {
                print!("{}", summary.table());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate { sim, count } => {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut gen = sim.generator();
            let mut notifications = winchester_demo::generate(&gen);
            // `--count N`: exactly N, with as many more instances as it takes.
            if let Some(n) = count {
                while notifications.len() < n && !notifications.is_empty() {
                    let per_instance = notifications.len() as f64 / gen.instances.max(1) as f64;
                    gen.instances = ((n as f64 / per_instance).ceil() as usize).max(gen.instances + 1);
                    notifications = winchester_demo::generate(&gen);
                }
                if gen.instances != sim.instances {
                    eprintln!("generate: {} instances to reach {n} notifications", gen.instances);
                }
            }
            for n in notifications.iter().take(count.unwrap_or(usize::MAX)) {
                writeln!(out, "{n}")?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish { file, amqp_url, exchange, exchange_type, durable, routing_key } => {
            use winchester_amqp::publish::{publish_lines, PublishTarget};
            // Defaults from the config's amqp_ingest section, when there is a config.
            let amqp = if opts.config.config.exists() {
                Some(
                    winchester_core::WinchesterConfig::load(&opts.config.config)
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .0
                        .amqp_ingest,
                )
            } else {
                None
            };
            let bound = amqp.as_ref().and_then(|a| a.queues.iter().find(|q| q.exchange == exchange));
            let target = PublishTarget {
                url: amqp_url.or(amqp.as_ref().map(|a| a.url.clone())).unwrap_or_else(|| PublishTarget::default().url),
                exchange_type: exchange_type
                    .or(bound.map(|q| q.exchange_type.clone()))
                    .unwrap_or_else(|| "topic".into()),
                durable: durable.or(bound.map(|q| q.durable)).unwrap_or(true),
                exchange,
                routing_key,
            };
            let report = if file == "-" {
                publish_lines(target, tokio::io::BufReader::new(tokio::io::stdin())).await?
            } else {
                let f = tokio::fs::File::open(&file).await.with_context(|| format!("opening {file}"))?;
                publish_lines(target, tokio::io::BufReader::new(f)).await?
            };
            print!("{}", report.render());
            Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::Streams { command } => {
            let cfg = load_config(&opts.config, &registry)?;
            let tm = trigger_manager(&cfg, &opts.config, 2).await?;
            let storage = tm.storage().as_ref();
            let out = match command {
                StreamsCommand::List { trigger, state, json } => streams::list(storage, trigger, state, json).await?,
                StreamsCommand::Show { id, json } => streams::show(storage, id, json).await?,
                StreamsCommand::Retry { id, all_errors } => streams::retry(storage, id, all_errors).await?,
                StreamsCommand::Purge { id } => streams::purge(storage, id).await?,
                StreamsCommand::Count { trigger, state } => streams::count(storage, trigger, state).await?,
            };
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Triggers { command: TriggersCommand::History { trigger, json } } => {
            let cfg = load_config(&opts.config, &registry)?;
            let tm = trigger_manager(&cfg, &opts.config, 2).await?;
            print!("{}", streams::history(tm.storage().as_ref(), &cfg, trigger.as_deref(), json).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Events { command } => {
            let cfg = load_config(&opts.config, &registry)?;
            let tm = trigger_manager(&cfg, &opts.config, 2).await?;
            let storage = tm.storage().as_ref();
            let out = match command {
                EventsCommand::List { filter, limit, mark, json } => {
                    events::list(storage, &filter, limit, mark.as_deref(), json).await?
                }
                EventsCommand::Count { filter } => events::count(storage, &filter).await?,
                EventsCommand::Show { message_id, json } => events::show(storage, &message_id, json).await?,
            };
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            winchester_cli::serve::run(&args, &opts.config, &registry).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { files, json, live_handlers } => {
            let run = winchester_cli::authoring::fixture::RunOptions { live_handlers };
            Ok(winchester_cli::authoring::fixture::command(&opts.config, &registry, &files, json, &run).await)
        }
        Command::Explain { file, notification, json, no_database } => {
            print!(
                "{}",
                winchester_cli::authoring::explain::command(
                    &opts.config,
                    &registry,
                    &file,
                    notification,
                    json,
                    no_database
                )
                .await?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Tail { event_name, traits, streams, json } => {
            let cfg = load_config(&opts.config, &registry)?;
            let tm = trigger_manager(&cfg, &opts.config, 2).await?;
            let filter = winchester::tail::TailFilter {
                event_name: event_name.map(winchester_storage::NamePattern),
                traits: events::trait_filters(&traits)?,
                trigger: None,
                events: true,
                streams,
            };
            events::tail(tm.storage().clone(), filter, json, winchester_cli::worker::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = Opts::parse();
    // publish reports broker trouble itself; lapin would log each returned message.
    init_tracing(if matches!(opts.command, Command::Publish { .. }) { "warn,lapin=off" } else { "warn" });
    match run(opts).await {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}
