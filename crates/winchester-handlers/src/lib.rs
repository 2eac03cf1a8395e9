//! Built-in pipeline handlers that reach outside the engine.
//!
//! Layout:
//! - [`webhook`]: POSTs each fired/expired stream as one JSON document (the
//!   original's AtomPubHandler).
//! - [`amqp`]: publishes notifications to a RabbitMQ exchange (the original's NotabeneHandler).
//! - [`command`]: runs a program per stream (handlers in any language).
//! - `usage`: OpenStack instance-usage audit (the original's UsageHandler).
//!
//! [`registry`] returns a [`HandlerRegistry`] with these and the engine's own
//! (`logger`). Each reads its `params` into a serde struct and validates it
//! with `winchester::pipeline::params`; webhook and amqp share an HTTP client
//! ([`webhook::HttpClient`]) and broker connections ([`amqp::AmqpPool`])
//! through the worker's `HandlerContext`, which closes them when it stops.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod amqp;
pub mod command;
mod usage;
pub mod webhook;

use winchester::pipeline::HandlerRegistry;

/// The engine's built-ins plus this crate's handlers.
pub fn registry() -> HandlerRegistry {
    let mut r = HandlerRegistry::with_builtins();
    register(&mut r);
    r
}

/// Registers this crate's handler types on `r`.
pub fn register(r: &mut HandlerRegistry) {
    r.register("usage", |p, _| usage::UsageHandler::from_params(p).map(|h| Box::new(h) as _));
    r.register_never_adding("webhook", |p, ctx| webhook::WebhookHandler::from_params(p, ctx).map(|h| Box::new(h) as _));
    r.register("command", |p, _| command::CommandHandler::from_params(p).map(|h| Box::new(h) as _));
    r.register_never_adding("amqp", |p, ctx| amqp::AmqpHandler::from_params(p, ctx).map(|h| Box::new(h) as _));
}
