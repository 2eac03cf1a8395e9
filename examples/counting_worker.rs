//! A pipeline worker with a handler type of its own, registered in a few lines.
//!
//! The `counting` handler records every commit in the table `handler_commits`
//! (which must exist: `stream_id BIGINT, action TEXT, pid INT`) of the
//! worker's database (`COUNTING_SINK_URL`, else `DATABASE_URL`: PostgreSQL or SQLite). Params: `sleep_ms` (pause inside
//! `handle_events`, default 0) and `fail` (bool: fail in `handle_events`).
//! The integration tests run several of these processes against one database.
//!
//! Run: `cargo run --example counting_worker -- -c etc/winchester.yaml`.

use async_trait::async_trait;
use clap::Parser;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{PgPool, SqlitePool};
use std::process::ExitCode;
use std::time::Duration;
use winchester::pipeline::params::{self, Checked, Raw};
use winchester::pipeline::{Env, Handler, HandlerError};
use winchester_cli::common::{init_tracing, report};
use winchester_cli::worker::{run, WorkerOpts};
use winchester_core::Event;

/// Where commits are recorded: the worker's own database, PostgreSQL or SQLite.
#[derive(Clone)]
enum Sink {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// The `counting` handler's params as written (checked in `main`).
#[derive(serde::Deserialize)]
struct CountingParams {
    sleep_ms: Option<Raw<u64>>,
    fail: Option<Raw<bool>>,
}

struct Counting {
    pool: Sink,
    sleep: Duration,
    fail: bool,
}

#[async_trait]
impl Handler for Counting {
    async fn handle_events(&mut self, events: Vec<Event>, _env: &mut Env) -> Result<Vec<Event>, HandlerError> {
        tokio::time::sleep(self.sleep).await;
        if self.fail {
            return Err("told to fail".into());
        }
        Ok(events)
    }

    async fn commit(&mut self, env: &Env) -> Result<(), HandlerError> {
        let (id, action, pid) = (env.stream_id, env.action.as_str(), std::process::id() as i32);
        match &self.pool {
            Sink::Pg(p) => {
                sqlx::query("INSERT INTO handler_commits (stream_id, action, pid) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(action)
                    .bind(pid)
                    .execute(p)
                    .await?;
            }
            Sink::Sqlite(p) => {
                sqlx::query("INSERT INTO handler_commits (stream_id, action, pid) VALUES (?, ?, ?)")
                    .bind(id)
                    .bind(action)
                    .bind(pid)
                    .execute(p)
                    .await?;
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = WorkerOpts::parse();
    init_tracing("info");
    // The table may live elsewhere than the engine's database URL (a test
    // running the worker through a pooler records commits directly).
    let url = std::env::var("COUNTING_SINK_URL").or_else(|_| std::env::var("DATABASE_URL")).unwrap_or_default();
    let pool = if url.starts_with("sqlite:") {
        let opts = match url.parse::<sqlx::sqlite::SqliteConnectOptions>() {
            Ok(o) => o.busy_timeout(Duration::from_secs(30)),
            Err(e) => return report(&anyhow::anyhow!("DATABASE_URL: {e}")),
        };
        Sink::Sqlite(SqlitePoolOptions::new().max_connections(1).connect_lazy_with(opts))
    } else {
        match PgPoolOptions::new().max_connections(2).connect_lazy(&url) {
            Ok(p) => Sink::Pg(p),
            Err(e) => return report(&anyhow::anyhow!("DATABASE_URL: {e}")),
        }
    };
    let mut registry = winchester_handlers::registry();
    registry.register("counting", move |p, _context| {
        let p: CountingParams = params::read(p)?;
        let mut c = Checked::default();
        let sleep_ms = c.get("sleep_ms", p.sleep_ms, "must be a number of milliseconds", |_| true);
        let fail = c.boolean("fail", p.fail, false);
        params::finish(c)?;
        let sleep = Duration::from_millis(sleep_ms.unwrap_or(0));
        Ok(Box::new(Counting { pool: pool.clone(), sleep, fail }) as Box<dyn Handler>)
    });
    match run(&opts, registry).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}
