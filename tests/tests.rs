//! Integration tests: real PostgreSQL, real processes. Each test makes its own
//! database (see `support::TestDb`).

#![allow(clippy::cloned_ref_to_slice_refs)] // `&[x.clone()]` reads better in test data

mod support;

mod amqp_ingest;
mod api;
mod architecture;
mod authoring;
mod bench;
mod cli;
mod compat;
mod concurrency;
mod conformance;
mod console;
mod db_restart;
mod demo;
mod deploy;
mod ha;
mod handlers;
mod http_ingest;
mod ingest;
mod notifications;
mod partitions;
mod pooler;
mod processes;
#[cfg(feature = "python")]
mod python_handlers;
mod query_plans;
mod reload;
mod replay;
mod replica;
mod worker;
