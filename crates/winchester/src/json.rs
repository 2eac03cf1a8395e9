//! The JSON shapes operators see, shared by the CLI (`--json`), `winchester
//! serve` and the tail: one place, so they cannot drift apart.

use serde_json::{json, Value};
use winchester_core::event::format_datetime;
use winchester_storage::{Stream, Transition};

/// A stream object. `name` repeats `trigger` for the original's clients
/// (quincy called the trigger's name `name`).
pub fn stream(s: &Stream) -> Value {
    json!({
        "id": s.id,
        "trigger": s.trigger,
        "name": s.trigger,
        "state": s.state.as_str(),
        "state_serial_no": s.state_serial_no,
        "open": s.open,
        "distinguishing_traits": s.dist_traits.to_plain_json(),
        "event_count": s.event_count,
        "first_event": format_datetime(&s.first_event),
        "last_event": format_datetime(&s.last_event),
        "fire_timestamp": s.fire_timestamp.as_ref().map(format_datetime),
        "expire_timestamp": format_datetime(&s.expire_timestamp),
        "lease_expires_at": s.lease_expires_at.as_ref().map(format_datetime),
        "attempts": s.attempts,
        "last_error": s.last_error,
        "version": s.version,
    })
}

/// A logged stream transition.
pub fn transition(t: &Transition) -> Value {
    json!({
        "id": t.id,
        "stream_id": t.stream_id,
        "trigger": t.trigger,
        "transition": t.kind.as_str(),
        "from": t.from.as_str(),
        "to": t.to.map(|s| s.as_str()),
        "at": format_datetime(&t.at),
    })
}
