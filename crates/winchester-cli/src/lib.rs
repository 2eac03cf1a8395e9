//! The command-line programs: `winchester` (check, ingest, streams, ...),
//! `winchester-db` (migrations), `pipeline-worker` and `winchester-ingest`.
//! Each binary in `bin/` only parses its top-level flags, calls one `run` of
//! this library and reports an error with [`common::report`]; every
//! subcommand's flags (clap derives, with the `--help` text) and work live in
//! a module here. `winchester bench`, `demo` and `generate` call into the
//! crates winchester-bench and winchester-demo.
//!
//! Layout:
//! - [`common`]: shared flags, config loading, database connection, error reporting.
//! - [`app`]: the `winchester` program: its flags ([`app::Opts`]), its
//!   subcommands ([`app::Command`]) and [`app::run`], which dispatches them to
//!   the modules below.
//! - `winchester` subcommands: [`check`], [`ingest`], [`bench`](mod@bench), [`demo`]
//!   (`demo` and `generate`), [`publish`], [`streams`], [`triggers`],
//!   [`events`] (`events` and `tail`), [`serve`].
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
