//! The `winchester` program: its top-level flags ([`Opts`]), its subcommands
//! ([`Command`]) and [`run`], which hands each subcommand to the module that
//! defines its flags and does its work.

use crate::common::ConfigArgs;
use crate::{authoring, bench, check, demo, events, ingest, publish, serve, streams, triggers};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// winchester-rs: a stream-trigger engine.
#[derive(Debug, Parser)]
#[command(name = "winchester", version)]
pub struct Opts {
    #[command(flatten)]
    /// Config and database flags.
    pub config: ConfigArgs,
    #[command(subcommand)]
    /// What to do.
    pub command: Command,
}

impl Opts {
    /// The log level (for [`init_tracing`](crate::common::init_tracing)):
    /// publish reports broker trouble itself, and lapin would log each
    /// returned message.
    pub fn log_filter(&self) -> &'static str {
        if matches!(self.command, Command::Publish(_)) {
            "warn,lapin=off"
        } else {
            "warn"
        }
    }
}

/// `winchester` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate winchester.yaml and every file it names; print a summary
    /// with the warnings. Exit 1 on errors; with --strict, exit 2 when there
    /// are warnings (and no errors).
    Check(check::CheckArgs),
    /// Ingest JSON lines of events (or, with --notifications, raw OpenStack
    /// notifications) from FILE (or - for stdin).
    Ingest(ingest::IngestArgs),
    /// Measure the engine against PostgreSQL's COPY limit (creates and drops scratch databases).
    Bench(winchester_bench::BenchOpts),
    /// Generate OpenStack notifications, ingest them with the example configs and
    /// fire/expire the streams on an event-time clock; print a summary. Uses an
    /// SQLite file in a temp dir unless --database-url is given.
    Demo(demo::DemoArgs),
    /// Print generated OpenStack instance lifecycle notifications as JSON lines.
    Generate(demo::GenerateArgs),
    /// Publish JSON lines of raw notifications from FILE (or - for stdin) to an
    /// AMQP exchange, as persistent messages with publisher confirms (replay an
    /// archive into a broker). Exit 2 if a line was rejected or not routed.
    Publish(publish::PublishArgs),
    /// Inspect and operate streams.
    Streams {
        #[command(subcommand)]
        /// What to do.
        command: streams::StreamsCommand,
    },
    /// Trigger definitions: `history` lists every recorded version.
    Triggers {
        #[command(subcommand)]
        /// What to do.
        command: triggers::TriggersCommand,
    },
    /// Query stored events.
    Events {
        #[command(subcommand)]
        /// What to do.
        command: events::EventsCommand,
    },
    /// Serve the HTTP API (Quincy v1 compatible), the live tail and /metrics.
    Serve(serve::ServeArgs),
    /// Run tests of the configured triggers and pipelines against sample
    /// events, with no server (in-memory SQLite, an event-time clock, an
    /// in-process worker). Exit 1 if a test failed, 2 if a file is bad.
    Test(authoring::fixture::TestArgs),
    /// Explain what each trigger makes of one event: match (and why), the
    /// distinguishing traits, the open stream it would join, whether it would fire.
    Explain(authoring::explain::ExplainArgs),
    /// Print events (and with --streams, stream transitions) as they are committed, until interrupted.
    Tail(events::TailArgs),
}

/// Runs one `winchester` subcommand; returns the exit code (errors are for
/// [`report`](crate::common::report)).
pub async fn run(opts: Opts) -> anyhow::Result<ExitCode> {
    let registry = crate::common::registry();
    let config = &opts.config;
    match opts.command {
        Command::Check(args) => check::command(config, &registry, &args),
        Command::Ingest(args) => ingest::command(config, &args).await,
        Command::Bench(args) => bench::command(config, &args).await,
        Command::Demo(args) => demo::demo(config, args).await,
        Command::Generate(args) => demo::generate(&args),
        Command::Publish(args) => publish::command(config, args).await,
        Command::Streams { command } => streams::command(config, &registry, command).await,
        Command::Triggers { command } => triggers::command(config, &registry, command).await,
        Command::Events { command } => events::command(config, &registry, command).await,
        Command::Serve(args) => serve::command(config, &registry, &args).await,
        Command::Test(args) => Ok(authoring::fixture::command(config, &registry, &args).await),
        Command::Explain(args) => authoring::explain::command(config, &registry, &args).await,
        Command::Tail(args) => events::tail_command(config, &registry, args).await,
    }
}
