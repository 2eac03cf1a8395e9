//! `logger`: logs one line per stream with its events; passes them through.

use crate::pipeline::{params, Env, Handler, HandlerConfigError, HandlerError};
use async_trait::async_trait;
use winchester_core::Event;

/// Logs "Received N events" with each `event_type: message_id`.
#[derive(Debug, Default)]
pub struct LoggingHandler;

impl LoggingHandler {
    /// Takes no params.
    pub fn from_params(params: &serde_yaml::Mapping) -> Result<LoggingHandler, HandlerConfigError> {
        params::none(params)?;
        Ok(LoggingHandler)
    }
}

#[async_trait]
impl Handler for LoggingHandler {
    async fn handle_events(&mut self, events: Vec<Event>, env: &mut Env) -> Result<Vec<Event>, HandlerError> {
        let list: Vec<String> = events.iter().map(|e| format!("{}: {}", e.event_type, e.message_id)).collect();
        tracing::info!(
            stream_id = env.stream_id,
            stream = %env.stream_name,
            action = env.action.as_str(),
            "Received {} events: {}",
            events.len(),
            list.join(", ")
        );
        Ok(events)
    }
}
