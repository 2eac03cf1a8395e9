//! The command-line programs: `winchester` (check, ingest, streams),
//! `winchester-db` (migrations) and `pipeline-worker`. The binaries in `bin/`
//! parse arguments and call into these modules.
//!
//! Layout:
//! - [`common`]: shared flags, config loading, database connection, error reporting.
//! - [`check`], [`ingest`], [`streams`], [`events`] (and tail), [`serve`]: `winchester` subcommands.
//! - [`bench`]: `winchester bench`, the benchmark.
//! - [`db`]: the `winchester-db` program.
//! - [`demo`]: `winchester demo` and `winchester generate`.
//! - [`openstack_sim`]: the simulated OpenStack cloud both the demo (raw
//!   notifications) and the bench (flat events) get their data from.
//! - [`worker`]: the `pipeline-worker` program.
//! - [`amqp_ingest`]: `winchester-ingest`, the AMQP ingest daemon.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod amqp_ingest;
pub mod bench;
pub mod check;
pub mod common;
pub mod db;
pub mod demo;
pub mod events;
pub mod ingest;
pub mod openstack_sim;
pub mod serve;
pub mod streams;
pub mod worker;
