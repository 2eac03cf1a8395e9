//! `usage`: OpenStack Nova instance-usage audit (the original's `UsageHandler`).
//!
//! The stream's events (in timestamp order) are split into blocks, each ended
//! by a `compute.instance.exists` event. Every (block, exists) pair is checked
//! and yields an optional `compute.instance.exists.warnings` event followed by
//! one `compute.instance.exists.verified` or `compute.instance.exists.failed`
//! event. Events after the last `.exists` yield one `.failed` event with code
//! `U0`. The handler returns the input events followed by the new ones.
//!
//! Checks (codes as in the original):
//! - `U0`: notifications but no `.exists` ending them.
//! - `U1`: `.exists` with `state` `active` but no `launched_at`.
//! - `U2`: a field differs between the `.exists` and the last
//!   rebuild/resize/rescue `.end` event of its block (or its single
//!   `compute.instance.delete.end`), or is present in only one of them.
//! - `U3`: `deleted_at` set but `state` is not `deleted`.
//! - `U4`: `deleted_at` before `launched_at` and no delete event.
//! - `U5`: `deleted_at` inside the audit period and no delete event.
//! - `U6`: delete events but no `deleted_at`.
//! - `U7`: more than one delete event.
//! - `U8`: active instance launched inside the audit period, but no events
//!   before the `.exists`.
//!
//! Deliberate differences from the original:
//! - New message ids are deterministic (UUIDv5), never random, so a re-run of
//!   the pipeline produces the same events, which deduplication then drops.
//!   The original used uuid4 for the warnings and `U0` events. Ids are strings
//!   (the original put `UUID` objects in `message_id`, a bug).
//! - No `error_code` trait when verification succeeds (the original set it to
//!   null; traits here cannot be null). `error` is still the string `"None"`.
//! - Warnings are reset for every block, so a warnings event lists only its own
//!   block's warnings (the original reset them once per `handle_events`, so a
//!   later block repeated an earlier block's warnings).
//! - Params: the original ignored any; this handler takes none and rejects
//!   unknown ones, so a typo in the pipeline config is reported.
//! - The warnings event carries `warnings` as one string joined with `"; "`
//!   (traits are scalars), plus `original_message_id`.

use async_trait::async_trait;
use chrono::{DateTime, NaiveTime, Utc};
use std::collections::BTreeMap;
use std::fmt;
use uuid::Uuid;
use winchester::pipeline::{Env, Handler, HandlerConfigError, HandlerError};
use winchester_core::event::{parse_rfc3339, MAX_STRING_LEN};
use winchester_core::{Event, TraitValue};

/// The event type that ends a block.
pub const EXISTS: &str = "compute.instance.exists";
/// Output type when a block verified.
pub const VERIFIED: &str = "compute.instance.exists.verified";
/// Output type when a block failed verification.
pub const FAILED: &str = "compute.instance.exists.failed";
/// Output type of the warnings event.
pub const WARNINGS: &str = "compute.instance.exists.warnings";
/// The delete event type.
pub const DELETE_END: &str = "compute.instance.delete.end";
/// Operation events whose fields must agree with the `.exists`.
pub const OPERATION_ENDS: [&str; 3] =
    ["compute.instance.rebuild.end", "compute.instance.finish_resize.end", "compute.instance.rescue.end"];
/// Fields compared between the `.exists` and the last operation event.
pub const VERIFY_FIELDS: [&str; 6] =
    ["launched_at", "instance_flavor_id", "tenant_id", "os_architecture", "os_version", "os_distro"];
/// Fields compared between the `.exists` and its single delete event.
pub const DELETE_FIELDS: [&str; 2] = ["launched_at", "deleted_at"];

const PUBLISHER_ID: &str = "stv3";

/// A failed check: code (`U0`..`U8`) and message.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageError {
    /// `U0` .. `U8`.
    pub code: &'static str,
    /// Human-readable reason.
    pub message: String,
}

impl UsageError {
    fn new(code: &'static str, message: impl Into<String>) -> UsageError {
        UsageError { code, message: message.into() }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The `usage` handler. Takes no params. Has no side effects: commit and
/// rollback do nothing.
#[derive(Debug, Default)]
pub struct UsageHandler;

impl UsageHandler {
    /// Takes no params; unknown ones are rejected (the original ignored them).
    pub fn from_params(params: &serde_yaml::Mapping) -> Result<UsageHandler, HandlerConfigError> {
        winchester::pipeline::params::none(params)?;
        Ok(UsageHandler)
    }
}

#[async_trait]
impl Handler for UsageHandler {
    async fn handle_events(&mut self, events: Vec<Event>, env: &mut Env) -> Result<Vec<Event>, HandlerError> {
        let new = audit(&events, env.stream_id)?;
        let mut out = events;
        out.extend(new);
        Ok(out)
    }
}

/// Runs the audit over `events`, returning only the new events.
pub fn audit(events: &[Event], stream_id: i64) -> Result<Vec<Event>, HandlerError> {
    let mut new = Vec::new();
    let mut start = 0;
    for (i, e) in events.iter().enumerate() {
        if is_exists(e) {
            new.extend(process_block(&events[start..i], e, stream_id)?);
            start = i + 1;
        }
    }
    let trailing = &events[start..];
    if !trailing.is_empty() {
        new.push(no_exists_event(trailing, stream_id)?);
    }
    Ok(new)
}

// ---- event accessors ------------------------------------------------------

/// A datetime trait: a datetime value, or a string in RFC 3339 form.
fn datetime(e: &Event, name: &str) -> Option<DateTime<Utc>> {
    match e.traits.get(name)? {
        TraitValue::Datetime(d) => Some(*d),
        TraitValue::String(s) => parse_rfc3339(s),
        _ => None,
    }
}

/// Whether a trait is set: present and not an empty string (Nova sends `""`
/// for an unset `deleted_at`).
fn is_set(e: &Event, name: &str) -> bool {
    match e.traits.get(name) {
        None => false,
        Some(TraitValue::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

fn string_trait<'a>(e: &'a Event, name: &str) -> Option<&'a str> {
    match e.traits.get(name)? {
        TraitValue::String(s) => Some(s),
        _ => None,
    }
}

/// `(audit_period_beginning, audit_period_ending)`, `None` for a missing one.
pub fn audit_period(e: &Event) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    (datetime(e, "audit_period_beginning"), datetime(e, "audit_period_ending"))
}

/// Whether `e` is a `compute.instance.exists`.
pub fn is_exists(e: &Event) -> bool {
    e.event_type == EXISTS
}

/// An `.exists` whose audit period is not one calendar day apart (by date).
pub fn is_non_eod_exists(e: &Event) -> bool {
    if !is_exists(e) {
        return false;
    }
    match audit_period(e) {
        (Some(b), Some(end)) => Some(end.date_naive()) != b.date_naive().succ_opt(),
        _ => false,
    }
}

/// An end-of-day `.exists`: both audit times at midnight, ending the day after
/// beginning. (The checks themselves only need [`is_non_eod_exists`], as in the
/// original; this is its stricter counterpart, kept for spec parity and tests.)
#[cfg_attr(not(test), allow(dead_code))]
pub fn is_eod_exists(e: &Event) -> bool {
    if !is_exists(e) {
        return false;
    }
    match audit_period(e) {
        (Some(b), Some(end)) => {
            b.time() == NaiveTime::MIN
                && end.time() == NaiveTime::MIN
                && Some(end.date_naive()) == b.date_naive().succ_opt()
        }
        _ => false,
    }
}

/// The `.exists`'s `launched_at`; `U1` if missing (or not a datetime).
pub fn launched_at(exists: &Event) -> Result<DateTime<Utc>, UsageError> {
    datetime(exists, "launched_at").ok_or_else(|| {
        UsageError::new("U1", format!(".exists (message_id {}) has no valid launched_at value.", exists.message_id))
    })
}

/// The events of `block` whose type is one of `types`, in block order.
pub fn find_events<'a>(block: &'a [Event], types: &[&str]) -> Vec<&'a Event> {
    block.iter().filter(|e| types.contains(&e.event_type.as_str())).collect()
}

fn values_equal(a: &TraitValue, b: &TraitValue) -> bool {
    match (a, b) {
        (TraitValue::Datetime(x), TraitValue::String(s)) | (TraitValue::String(s), TraitValue::Datetime(x)) => {
            parse_rfc3339(s) == Some(*x)
        }
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

fn show(v: Option<&TraitValue>) -> String {
    match v {
        Some(v) => format!("'{v}'"),
        None => "(absent)".into(),
    }
}

/// Each of `fields` must be absent from both events or equal in both; `U2`
/// otherwise.
pub fn verify_fields(this: &Event, that: &Event, fields: &[&str]) -> Result<(), UsageError> {
    for field in fields {
        let (a, b) = (this.traits.get(*field), that.traits.get(*field));
        let ok = match (a, b) {
            (None, None) => true,
            (Some(x), Some(y)) => values_equal(x, y),
            _ => false,
        };
        if !ok {
            return Err(UsageError::new(
                "U2",
                format!(
                    "Conflicting '{field}' values: {} in {} ({}) vs {} in {} ({}).",
                    show(a),
                    this.event_type,
                    this.message_id,
                    show(b),
                    that.event_type,
                    that.message_id
                ),
            ));
        }
    }
    Ok(())
}

fn in_period(t: DateTime<Utc>, period: (Option<DateTime<Utc>>, Option<DateTime<Utc>>)) -> bool {
    matches!(period, (Some(b), Some(e)) if b <= t && t <= e)
}

/// Checks `deleted_at` and `state` of the `.exists` against the block's
/// delete events (`U3`..`U7`, `U2`).
pub fn confirm_delete(exists: &Event, deletes: &[&Event]) -> Result<(), UsageError> {
    let has_deleted_at = is_set(exists, "deleted_at");
    let state = string_trait(exists, "state");
    if !deletes.is_empty() && !has_deleted_at {
        return Err(UsageError::new(
            "U6",
            format!(".deleted events found but .exists (message_id {}) has no deleted_at value.", exists.message_id),
        ));
    }
    if has_deleted_at && state != Some("deleted") {
        return Err(UsageError::new(
            "U3",
            format!(
                ".exists (message_id {}) has deleted_at set but state is {}, not 'deleted'.",
                exists.message_id,
                state.map(|s| format!("'{s}'")).unwrap_or_else(|| "absent".into())
            ),
        ));
    }
    if has_deleted_at && deletes.is_empty() {
        if let Some(deleted_at) = datetime(exists, "deleted_at") {
            if let Some(launched) = datetime(exists, "launched_at") {
                if deleted_at < launched {
                    return Err(UsageError::new(
                        "U4",
                        format!(
                            ".exists (message_id {}) deleted_at {} is before launched_at {}.",
                            exists.message_id,
                            winchester_core::event::format_datetime(&deleted_at),
                            winchester_core::event::format_datetime(&launched)
                        ),
                    ));
                }
            }
            if in_period(deleted_at, audit_period(exists)) {
                return Err(UsageError::new(
                    "U5",
                    format!(
                        ".exists (message_id {}) deleted_at {} is inside the audit period, but no .deleted event was found.",
                        exists.message_id,
                        winchester_core::event::format_datetime(&deleted_at)
                    ),
                ));
            }
        }
    }
    match deletes {
        [] => Ok(()),
        [one] => verify_fields(exists, one, &DELETE_FIELDS),
        many => Err(UsageError::new(
            "U7",
            format!(
                "{} .deleted events found for .exists (message_id {}); expected at most one.",
                many.len(),
                exists.message_id
            ),
        )),
    }
}

/// For an active instance: `launched_at` must be set (`U1`), and if it lies in
/// the audit period the block must not be empty (`U8`).
pub fn confirm_launched_at(block: &[Event], exists: &Event) -> Result<(), UsageError> {
    if string_trait(exists, "state") != Some("active") {
        return Ok(());
    }
    let launched = launched_at(exists)?;
    if block.is_empty() && in_period(launched, audit_period(exists)) {
        return Err(UsageError::new(
            "U8",
            format!(
                ".exists (message_id {}) launched in the audit period, but no related events found.",
                exists.message_id
            ),
        ));
    }
    Ok(())
}

/// All checks of one block; warnings are appended to `warnings`.
pub fn do_checks(block: &[Event], exists: &Event, warnings: &mut Vec<String>) -> Result<(), UsageError> {
    confirm_launched_at(block, exists)?;
    let ops = find_events(block, &OPERATION_ENDS);
    if let Some(last) = ops.last() {
        verify_fields(exists, last, &VERIFY_FIELDS)?;
    } else if is_non_eod_exists(exists) {
        warnings.push(format!("Non-EOD .exists found (message_id {}) with no operation event.", exists.message_id));
    }
    confirm_delete(exists, &find_events(block, &[DELETE_END]))
}

/// The namespace new ids of an `.exists` are derived in: its message_id when
/// that is a UUID, else a UUIDv5 of it.
fn id_namespace(original: &str) -> Uuid {
    Uuid::parse_str(original).unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_OID, original.as_bytes()))
}

fn truncate(mut s: String) -> String {
    if s.chars().count() > MAX_STRING_LEN {
        s = s.chars().take(MAX_STRING_LEN).collect();
    }
    s
}

/// Checks one block and builds its output events: an optional warnings event,
/// then `.verified` or `.failed`.
pub fn process_block(block: &[Event], exists: &Event, stream_id: i64) -> Result<Vec<Event>, HandlerError> {
    let mut warnings = Vec::new();
    let result = do_checks(block, exists, &mut warnings);
    let ns = id_namespace(&exists.message_id);
    let mut out = Vec::new();

    if !warnings.is_empty() {
        let mut traits = BTreeMap::new();
        traits.insert("publisher_id".into(), TraitValue::String(PUBLISHER_ID.into()));
        traits.insert("stream_id".into(), TraitValue::Int(stream_id));
        traits.insert("original_message_id".into(), TraitValue::String(exists.message_id.clone()));
        let instance_id = exists.traits.get("instance_id").cloned().unwrap_or(TraitValue::String("n/a".into()));
        traits.insert("instance_id".into(), instance_id);
        traits.insert("warnings".into(), TraitValue::String(truncate(warnings.join("; "))));
        let id = Uuid::new_v5(&ns, WARNINGS.as_bytes()).to_string();
        out.push(Event::new(id, WARNINGS, exists.timestamp, traits)?);
    }

    let event_type = if result.is_ok() { VERIFIED } else { FAILED };
    let mut traits = exists.traits.clone();
    traits.entry("bandwidth_in".into()).or_insert(TraitValue::Int(0));
    traits.entry("bandwidth_out".into()).or_insert(TraitValue::Int(0));
    traits.entry("rax_options".into()).or_insert(TraitValue::String("0".into()));
    traits.insert("original_message_id".into(), TraitValue::String(exists.message_id.clone()));
    traits.insert("publisher_id".into(), TraitValue::String(PUBLISHER_ID.into()));
    traits.insert("stream_id".into(), TraitValue::Int(stream_id));
    match &result {
        Ok(()) => {
            traits.insert("error".into(), TraitValue::String("None".into()));
            // The original's null error_code: no trait at all here.
            traits.remove("error_code");
        }
        Err(err) => {
            tracing::warn!(code = err.code, message_id = %exists.message_id, "usage audit failed: {err}");
            traits.insert("error".into(), TraitValue::String(truncate(err.message.clone())));
            traits.insert("error_code".into(), TraitValue::String(err.code.into()));
        }
    }
    let id = Uuid::new_v5(&ns, event_type.as_bytes()).to_string();
    out.push(Event::new(id, event_type, exists.timestamp, traits)?);
    Ok(out)
}

/// The `U0` event for events with no `.exists` after them.
fn no_exists_event(trailing: &[Event], stream_id: i64) -> Result<Event, HandlerError> {
    let first = &trailing[0];
    let mut traits = BTreeMap::new();
    traits.insert("stream_id".into(), TraitValue::Int(stream_id));
    if let Some(id) = trailing.iter().find_map(|e| e.traits.get("instance_id")) {
        traits.insert("instance_id".into(), id.clone());
    }
    traits.insert("error".into(), TraitValue::String("notifications but no .exists".into()));
    traits.insert("error_code".into(), TraitValue::String("U0".into()));
    let ns =
        Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("winchester-usage:{stream_id}:{}", first.message_id).as_bytes());
    let id = Uuid::new_v5(&ns, FAILED.as_bytes()).to_string();
    Ok(Event::new(id, FAILED, first.timestamp, traits)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use winchester::storage::Action;
    use winchester_core::DistTraits;

    fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn ev(id: &str, ty: &str, traits: &[(&str, TraitValue)]) -> Event {
        Event::new(id, ty, t(2026, 1, 2, 0, 30), traits.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
            .unwrap()
    }

    fn s(v: &str) -> TraitValue {
        TraitValue::String(v.into())
    }
    fn d(v: DateTime<Utc>) -> TraitValue {
        TraitValue::Datetime(v)
    }

    /// An EOD `.exists` for 2026-01-01 with `state` and extra traits.
    fn exists(id: &str, extra: &[(&str, TraitValue)]) -> Event {
        let mut tr = vec![
            ("audit_period_beginning", d(t(2026, 1, 1, 0, 0))),
            ("audit_period_ending", d(t(2026, 1, 2, 0, 0))),
            ("instance_id", s("inst-1")),
        ];
        tr.extend(extra.iter().cloned());
        ev(id, EXISTS, &tr)
    }

    fn env() -> Env {
        Env {
            stream_id: 42,
            stream_name: "instance".into(),
            action: Action::Fire,
            distinguishing_traits: DistTraits::default(),
            idempotency_key: "k".into(),
            values: BTreeMap::new(),
        }
    }

    fn code(r: Result<(), UsageError>) -> &'static str {
        r.unwrap_err().code
    }

    /// An audit period at the end of chrono's range is not end-of-day, not a panic.
    #[test]
    fn audit_period_at_the_end_of_time() {
        let max = DateTime::<Utc>::MAX_UTC;
        let e = exists("m", &[("audit_period_beginning", d(max)), ("audit_period_ending", d(max))]);
        assert!(is_non_eod_exists(&e));
        assert!(!is_eod_exists(&e));
    }

    // 84
    #[test]
    fn audit_period_getter() {
        let e = exists("x", &[]);
        assert_eq!(audit_period(&e), (Some(t(2026, 1, 1, 0, 0)), Some(t(2026, 1, 2, 0, 0))));
        let e = ev("y", EXISTS, &[("audit_period_ending", s("2026-01-02T00:00:00Z"))]);
        assert_eq!(audit_period(&e), (None, Some(t(2026, 1, 2, 0, 0))));
        assert_eq!(audit_period(&ev("z", "foo", &[])), (None, None));
    }

    // 85
    #[test]
    fn is_exists_only_for_exists() {
        assert!(is_exists(&exists("x", &[])));
        assert!(!is_exists(&ev("y", "compute.instance.exists.verified", &[])));
        assert!(!is_exists(&ev("y", "foo", &[])));
    }

    fn period(b: DateTime<Utc>, e: DateTime<Utc>, ty: &str) -> Event {
        ev("p", ty, &[("audit_period_beginning", d(b)), ("audit_period_ending", d(e))])
    }

    // 86
    #[test]
    fn non_eod_detection() {
        assert!(!is_non_eod_exists(&period(t(2026, 1, 1, 0, 0), t(2026, 1, 2, 0, 0), EXISTS)));
        assert!(is_non_eod_exists(&period(t(2026, 1, 1, 10, 0), t(2026, 1, 1, 11, 0), EXISTS)));
        assert!(!is_non_eod_exists(&period(t(2026, 1, 1, 10, 0), t(2026, 1, 1, 11, 0), "foo")));
        assert!(!is_non_eod_exists(&ev("x", EXISTS, &[])));
    }

    // 87
    #[test]
    fn eod_detection() {
        assert!(is_eod_exists(&period(t(2026, 1, 1, 0, 0), t(2026, 1, 2, 0, 0), EXISTS)));
        assert!(is_eod_exists(&period(t(2025, 12, 31, 0, 0), t(2026, 1, 1, 0, 0), EXISTS)));
        assert!(!is_eod_exists(&period(t(2026, 1, 1, 0, 0), t(2026, 1, 2, 0, 1), EXISTS)));
        assert!(!is_eod_exists(&period(t(2026, 1, 1, 10, 0), t(2026, 1, 1, 11, 0), EXISTS)));
        assert!(!is_eod_exists(&period(t(2026, 1, 1, 0, 0), t(2026, 1, 3, 0, 0), EXISTS)));
        assert!(!is_eod_exists(&period(t(2026, 1, 1, 0, 0), t(2026, 1, 2, 0, 0), "foo")));
    }

    // 88
    #[test]
    fn launched_at_required() {
        assert_eq!(launched_at(&exists("x", &[])).unwrap_err().code, "U1");
        let e = exists("x", &[("launched_at", d(t(2025, 5, 1, 0, 0)))]);
        assert_eq!(launched_at(&e).unwrap(), t(2025, 5, 1, 0, 0));
    }

    // 89
    #[test]
    fn find_events_keeps_order() {
        let block = vec![
            ev("1", "compute.instance.rescue.end", &[]),
            ev("2", "foo", &[]),
            ev("3", "compute.instance.rebuild.end", &[]),
            ev("4", "compute.instance.finish_resize.end", &[]),
        ];
        let ids: Vec<&str> = find_events(&block, &OPERATION_ENDS).iter().map(|e| e.message_id.as_str()).collect();
        assert_eq!(ids, ["1", "3", "4"]);
        assert!(find_events(&block, &[DELETE_END]).is_empty());
    }

    // 90
    #[test]
    fn verify_fields_cases() {
        let a = ev("a", "x", &[("a", s("1")), ("b", TraitValue::Int(2)), ("c", d(t(2026, 1, 1, 0, 0)))]);
        let b = ev("b", "y", &[("a", s("1")), ("b", TraitValue::Float(2.0)), ("c", s("2026-01-01T00:00:00Z"))]);
        verify_fields(&a, &b, &["a", "b", "c", "absent"]).unwrap();
        let c = ev("c", "y", &[("a", s("2"))]);
        let err = verify_fields(&a, &c, &["a"]).unwrap_err();
        assert_eq!(err.code, "U2");
        assert!(err.message.contains("'a'") && err.message.contains("'1'") && err.message.contains("'2'"), "{err}");
        let err = verify_fields(&a, &c, &["b"]).unwrap_err();
        assert_eq!(err.code, "U2");
        assert!(err.message.contains("(absent)"), "{err}");
    }

    // 91
    #[test]
    fn confirm_delete_cases() {
        let launched = ("launched_at", d(t(2025, 6, 1, 0, 0)));
        // Empty inputs are fine; "" deleted_at counts as unset.
        confirm_delete(&exists("x", &[]), &[]).unwrap();
        confirm_delete(&exists("x", &[("deleted_at", s("")), ("state", s("active"))]), &[]).unwrap();
        // U3
        let e = exists("x", &[("deleted_at", d(t(2025, 7, 1, 0, 0))), ("state", s("active")), launched.clone()]);
        assert_eq!(code(confirm_delete(&e, &[])), "U3");
        // U4
        let e = exists("x", &[("deleted_at", d(t(2025, 5, 1, 0, 0))), ("state", s("deleted")), launched.clone()]);
        assert_eq!(code(confirm_delete(&e, &[])), "U4");
        // U5
        let e = exists("x", &[("deleted_at", d(t(2026, 1, 1, 5, 0))), ("state", s("deleted")), launched.clone()]);
        assert_eq!(code(confirm_delete(&e, &[])), "U5");
        // deleted before the period, no delete event: fine.
        let e = exists("x", &[("deleted_at", d(t(2025, 7, 1, 0, 0))), ("state", s("deleted")), launched.clone()]);
        confirm_delete(&e, &[]).unwrap();
        // U6
        let del = ev("d1", DELETE_END, &[launched.clone(), ("deleted_at", d(t(2026, 1, 1, 5, 0)))]);
        assert_eq!(code(confirm_delete(&exists("x", std::slice::from_ref(&launched)), &[&del])), "U6");
        // U7
        let e = exists("x", &[("deleted_at", d(t(2026, 1, 1, 5, 0))), ("state", s("deleted")), launched.clone()]);
        assert_eq!(code(confirm_delete(&e, &[&del, &del])), "U7");
        // One delete event: fields verified.
        confirm_delete(&e, &[&del]).unwrap();
        let other = ev("d2", DELETE_END, &[launched.clone(), ("deleted_at", d(t(2026, 1, 1, 6, 0)))]);
        let err = confirm_delete(&e, &[&other]).unwrap_err();
        assert_eq!(err.code, "U2");
        assert!(err.message.contains("deleted_at"));
    }

    // 92
    #[test]
    fn confirm_launched_at_cases() {
        let inside = ("launched_at", d(t(2026, 1, 1, 3, 0)));
        // Not active: nothing checked, not even launched_at.
        confirm_launched_at(&[], &exists("x", &[("state", s("deleted"))])).unwrap();
        confirm_launched_at(&[], &exists("x", &[])).unwrap();
        // Active without launched_at: U1.
        assert_eq!(code(confirm_launched_at(&[], &exists("x", &[("state", s("active"))]))), "U1");
        // Active, launched in the period, empty block: U8.
        let e = exists("x", &[("state", s("active")), inside.clone()]);
        assert_eq!(code(confirm_launched_at(&[], &e)), "U8");
        confirm_launched_at(&[ev("f", "foo", &[])], &e).unwrap();
        // Launched before the period: fine.
        let e = exists("x", &[("state", s("active")), ("launched_at", d(t(2025, 1, 1, 0, 0)))]);
        confirm_launched_at(&[], &e).unwrap();
    }

    // 93
    #[test]
    fn process_block_success() {
        let e = exists(
            "6f9619ff-8b86-d011-b42d-00cf4fc964ff",
            &[("state", s("active")), ("launched_at", d(t(2025, 1, 1, 0, 0))), ("error_code", s("stale"))],
        );
        let out = process_block(&[], &e, 42).unwrap();
        assert_eq!(out.len(), 1);
        let v = &out[0];
        assert_eq!(v.event_type, VERIFIED);
        assert_eq!(v.timestamp, e.timestamp);
        assert_eq!(v.traits["stream_id"], TraitValue::Int(42));
        assert_eq!(v.traits["instance_id"], s("inst-1"));
        assert_eq!(v.traits["error"], s("None"));
        assert!(!v.traits.contains_key("error_code"));
        assert_eq!(v.traits["original_message_id"], s(&e.message_id));
        assert_eq!(v.traits["publisher_id"], s("stv3"));
        assert_eq!(v.traits["bandwidth_in"], TraitValue::Int(0));
        assert_eq!(v.traits["bandwidth_out"], TraitValue::Int(0));
        assert_eq!(v.traits["rax_options"], s("0"));
        assert_eq!(v.traits["launched_at"], d(t(2025, 1, 1, 0, 0)));
        let ns = Uuid::parse_str(&e.message_id).unwrap();
        assert_eq!(v.message_id, Uuid::new_v5(&ns, VERIFIED.as_bytes()).to_string());
    }

    #[test]
    fn process_block_keeps_existing_defaults() {
        let e = exists("x", &[("bandwidth_in", TraitValue::Int(5)), ("rax_options", s("4"))]);
        let v = &process_block(&[], &e, 1).unwrap()[0];
        assert_eq!(v.traits["bandwidth_in"], TraitValue::Int(5));
        assert_eq!(v.traits["bandwidth_out"], TraitValue::Int(0));
        assert_eq!(v.traits["rax_options"], s("4"));
    }

    #[test]
    fn process_block_failure() {
        let e = exists("x", &[("state", s("active"))]);
        let out = process_block(&[], &e, 42).unwrap();
        assert_eq!(out.len(), 1);
        let f = &out[0];
        assert_eq!(f.event_type, FAILED);
        assert_eq!(f.traits["error_code"], s("U1"));
        assert_eq!(f.traits["error"], s(&launched_at(&e).unwrap_err().message));
        assert_eq!(f.traits["stream_id"], TraitValue::Int(42));
        assert_eq!(f.timestamp, e.timestamp);
    }

    #[test]
    fn process_block_with_warnings() {
        let e = ev(
            "x",
            EXISTS,
            &[
                ("audit_period_beginning", d(t(2026, 1, 1, 10, 0))),
                ("audit_period_ending", d(t(2026, 1, 1, 11, 0))),
                ("instance_id", s("inst-1")),
            ],
        );
        let out = process_block(&[], &e, 42).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].event_type, WARNINGS);
        assert_eq!(out[0].traits["instance_id"], s("inst-1"));
        assert_eq!(out[0].traits["stream_id"], TraitValue::Int(42));
        assert!(matches!(&out[0].traits["warnings"], TraitValue::String(w) if w.contains("Non-EOD")));
        assert_eq!(out[1].event_type, VERIFIED);
        assert_ne!(out[0].message_id, out[1].message_id);
        // The ids are UUIDs.
        Uuid::parse_str(&out[0].message_id).unwrap();
        Uuid::parse_str(&out[1].message_id).unwrap();
    }

    // 94
    #[test]
    fn do_checks_cases() {
        let mut w = Vec::new();
        // No interesting events + EOD: no warnings, no field verification.
        let e = exists("x", &[("tenant_id", s("t1"))]);
        do_checks(&[ev("f", "foo", &[("tenant_id", s("other"))])], &e, &mut w).unwrap();
        assert!(w.is_empty());
        // Non-EOD: one warning.
        let ne = ev(
            "x",
            EXISTS,
            &[
                ("audit_period_beginning", d(t(2026, 1, 1, 10, 0))),
                ("audit_period_ending", d(t(2026, 1, 1, 11, 0))),
                ("tenant_id", s("t1")),
            ],
        );
        do_checks(&[], &ne, &mut w).unwrap();
        assert_eq!(w.len(), 1);
        // An interesting event: fields verified, no warning.
        let mut w = Vec::new();
        do_checks(&[ev("r", "compute.instance.rebuild.end", &[("tenant_id", s("t1"))])], &ne, &mut w).unwrap();
        assert!(w.is_empty());
        let err =
            do_checks(&[ev("r", "compute.instance.rebuild.end", &[("tenant_id", s("t2"))])], &ne, &mut w).unwrap_err();
        assert_eq!(err.code, "U2");
        assert!(w.is_empty());
        // Only the last interesting event counts.
        let block = vec![
            ev("r1", "compute.instance.rebuild.end", &[("tenant_id", s("t2"))]),
            ev("r2", "compute.instance.rescue.end", &[("tenant_id", s("t1"))]),
        ];
        do_checks(&block, &ne, &mut w).unwrap();
    }

    // 95
    #[tokio::test]
    async fn handle_events_empty() {
        let mut h = UsageHandler;
        assert!(h.handle_events(vec![], &mut env()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn handle_events_no_exists() {
        let mut h = UsageHandler;
        let foo = ev("foo-1", "foo", &[("instance_id", s("inst-1"))]);
        let out = h.handle_events(vec![foo.clone()], &mut env()).await.unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], foo);
        let f = &out[1];
        assert_eq!(f.event_type, FAILED);
        assert_eq!(f.traits["error_code"], s("U0"));
        assert_eq!(f.traits["error"], s("notifications but no .exists"));
        assert_eq!(f.traits["instance_id"], s("inst-1"));
        assert_eq!(f.traits["stream_id"], TraitValue::Int(42));
        assert_eq!(f.timestamp, foo.timestamp);
    }

    #[tokio::test]
    async fn handle_events_blocks() {
        let mut h = UsageHandler;
        let foo = ev("foo-1", "foo", &[]);
        let ex = exists("ex-1", &[]);
        let out = h.handle_events(vec![foo.clone(), ex.clone()], &mut env()).await.unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(&out[..2], &[foo.clone(), ex.clone()]);
        assert_eq!(out[2].event_type, VERIFIED);
        assert_eq!(out[2].traits["original_message_id"], s("ex-1"));

        let foo2 = ev("foo-2", "foo", &[]);
        let out = h.handle_events(vec![foo.clone(), ex.clone(), foo2.clone()], &mut env()).await.unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(out[3].event_type, VERIFIED);
        assert_eq!(out[4].event_type, FAILED);
        assert_eq!(out[4].traits["error_code"], s("U0"));

        // Two blocks: each checked against its own events only.
        let ex2 = exists("ex-2", &[("state", s("active")), ("launched_at", d(t(2026, 1, 1, 3, 0)))]);
        let out = h.handle_events(vec![foo, ex, ex2], &mut env()).await.unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(out[3].event_type, VERIFIED);
        assert_eq!(out[4].event_type, FAILED);
        assert_eq!(out[4].traits["error_code"], s("U8"));
    }

    #[tokio::test]
    async fn ids_are_deterministic() {
        let events = vec![
            ev("foo-1", "foo", &[]),
            ev(
                "ex-1",
                EXISTS,
                &[
                    ("audit_period_beginning", d(t(2026, 1, 1, 10, 0))),
                    ("audit_period_ending", d(t(2026, 1, 1, 11, 0))),
                ],
            ),
            ev("foo-2", "foo", &[]),
        ];
        let a = UsageHandler.handle_events(events.clone(), &mut env()).await.unwrap();
        let b = UsageHandler.handle_events(events.clone(), &mut env()).await.unwrap();
        assert_eq!(a.len(), 6);
        assert_eq!(a, b);
        let mut ids: Vec<&str> = a.iter().map(|e| e.message_id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 6, "ids must be distinct");
        // Another stream gets another U0 id.
        let mut other = env();
        other.stream_id = 43;
        let c = UsageHandler.handle_events(events, &mut other).await.unwrap();
        assert_ne!(a[5].message_id, c[5].message_id);
        assert_eq!(a[4].message_id, c[4].message_id);
    }

    #[test]
    fn params() {
        assert!(UsageHandler::from_params(&serde_yaml::Mapping::new()).is_ok());
        let mut m = serde_yaml::Mapping::new();
        m.insert("foo".into(), 1.into());
        assert!(UsageHandler::from_params(&m).unwrap_err().to_string().contains("foo"));
    }
}
