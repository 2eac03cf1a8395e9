//! The command-line programs: `winchester` (check, ingest, streams),
//! `winchester-db` (migrations) and `pipeline-worker`. The binaries in `bin/`
//! parse arguments and call into these modules; `winchester bench`, `demo`
//! and `generate` call into the crates winchester-bench and winchester-demo.
//!
//! Layout:
//! - [`common`]: shared flags, config loading, database connection, error reporting.
//! - [`check`], [`ingest`], [`streams`], [`events`] (and tail), [`serve`]: `winchester` subcommands.
//! - [`authoring`]: trigger authoring, [`authoring::fixture`] (`winchester test`)
//!   and [`authoring::explain`].
//! - [`db`]: the `winchester-db` program.
//! - [`worker`]: the `pipeline-worker` program.
//! - [`amqp_ingest`]: `winchester-ingest`, the AMQP ingest daemon.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// Every program allocates with mimalloc: the engine's planning, folding and
/// statement building allocate many small, short-lived values, and glibc's
/// allocator took a sixth of a batched ingest's time on the caller's thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod amqp_ingest;
pub mod app;
pub mod authoring;
pub mod bench;
pub mod check;
pub mod common;
pub mod db;
pub mod demo;
pub mod events;
pub mod ingest;
pub mod publish;
pub mod serve;
pub mod streams;
pub mod triggers;
pub mod worker;
