//! Built-in handlers.
//!
//! | type | original class | what it does |
//! |---|---|---|
//! | `logger` | `LoggingHandler` | logs the events it sees |

mod logger;

pub use logger::LoggingHandler;

use super::HandlerRegistry;

pub(crate) fn register_builtins(r: &mut HandlerRegistry) {
    r.register_never_adding("logger", |p| LoggingHandler::from_params(p).map(|h| Box::new(h) as _));
}

/// Rejects params other than `allowed`, naming the unknown one (for handler constructors).
pub fn check_params(params: &serde_yaml::Mapping, allowed: &[&str]) -> Result<(), String> {
    for k in params.keys() {
        let name = k.as_str().unwrap_or("?");
        if !allowed.contains(&name) {
            return Err(if allowed.is_empty() {
                format!("unknown param {name:?}; this handler takes none")
            } else {
                format!("unknown param {name:?}; expected {}", allowed.join(", "))
            });
        }
    }
    Ok(())
}
