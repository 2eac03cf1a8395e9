//! Built-in handlers.
//!
//! | type | original class | what it does |
//! |---|---|---|
//! | `logger` | `LoggingHandler` | logs the events it sees |

mod logger;

pub use logger::LoggingHandler;

use super::HandlerRegistry;

pub(crate) fn register_builtins(r: &mut HandlerRegistry) {
    r.register_never_adding("logger", |p, _| LoggingHandler::from_params(p).map(|h| Box::new(h) as _));
}
