//! Stream records and their state machine.

use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;
use winchester_core::DistTraits;

/// A stream's state. Numbers are stored in the database and match the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamState {
    /// Collecting events (until a worker takes it).
    Active = 1,
    /// A worker is running its fire pipeline.
    Firing = 2,
    /// A worker is running its expire pipeline.
    Expiring = 3,
    /// The fire pipeline failed.
    Error = 4,
    /// The expire pipeline failed.
    ExpireError = 5,
    /// Done (kept when `purge_completed_streams` is false).
    Completed = 6,
    /// Queued to fire again after an error.
    RetryFire = 7,
    /// Queued to expire again after an error.
    RetryExpire = 8,
}

impl StreamState {
    /// Every state.
    pub const ALL: [StreamState; 8] = [
        StreamState::Active,
        StreamState::Firing,
        StreamState::Expiring,
        StreamState::Error,
        StreamState::ExpireError,
        StreamState::Completed,
        StreamState::RetryFire,
        StreamState::RetryExpire,
    ];

    /// The state's name (`active`, `retry_fire`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Active => "active",
            StreamState::Firing => "firing",
            StreamState::Expiring => "expiring",
            StreamState::Error => "error",
            StreamState::ExpireError => "expire_error",
            StreamState::Completed => "completed",
            StreamState::RetryFire => "retry_fire",
            StreamState::RetryExpire => "retry_expire",
        }
    }

    /// The state `streams retry` moves a failed stream to: `error` ->
    /// `retry_fire`, `expire_error` -> `retry_expire`; `None` for other states.
    pub fn retry_state(self) -> Option<StreamState> {
        match self {
            StreamState::Error => Some(StreamState::RetryFire),
            StreamState::ExpireError => Some(StreamState::RetryExpire),
            _ => None,
        }
    }

    /// From the stored number.
    pub fn from_i16(n: i16) -> Option<StreamState> {
        StreamState::ALL.into_iter().find(|s| *s as i16 == n)
    }
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StreamState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StreamState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            format!("unknown stream state {s:?}; expected one of {}", StreamState::ALL.map(|s| s.as_str()).join(", "))
        })
    }
}

/// The stored state numbers as constants, for the text of SQL statements (a
/// state is never written as a bare number in a query).
pub mod state_no {
    use super::StreamState;
    /// `active`.
    pub const ACTIVE: i16 = StreamState::Active as i16;
    /// `firing`.
    pub const FIRING: i16 = StreamState::Firing as i16;
    /// `expiring`.
    pub const EXPIRING: i16 = StreamState::Expiring as i16;
    /// `error`.
    pub const ERROR: i16 = StreamState::Error as i16;
    /// `expire_error`.
    pub const EXPIRE_ERROR: i16 = StreamState::ExpireError as i16;
    /// `completed`.
    pub const COMPLETED: i16 = StreamState::Completed as i16;
    /// `retry_fire`.
    pub const RETRY_FIRE: i16 = StreamState::RetryFire as i16;
    /// `retry_expire`.
    pub const RETRY_EXPIRE: i16 = StreamState::RetryExpire as i16;
}

/// Whose streams a claim takes, by trigger name (how a worker serves triggers
/// of higher `priority` first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerScope<'a> {
    /// Every trigger's streams.
    All,
    /// Only the streams of these triggers.
    Only(&'a [String]),
    /// The streams of every trigger but these.
    Except(&'a [String]),
}

impl<'a> TriggerScope<'a> {
    /// The trigger names the set lists (none for `All`).
    pub fn names(&self) -> Option<&'a [String]> {
        match self {
            TriggerScope::All => None,
            TriggerScope::Only(n) | TriggerScope::Except(n) => Some(n),
        }
    }
}

/// What a worker does to a ready stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Run the fire pipeline.
    Fire,
    /// Run the expire pipeline.
    Expire,
}

impl Action {
    /// The state a stream is in while a worker holds it for this action.
    pub fn working_state(self) -> StreamState {
        match self {
            Action::Fire => StreamState::Firing,
            Action::Expire => StreamState::Expiring,
        }
    }
    /// The state a failed run leaves.
    pub fn error_state(self) -> StreamState {
        match self {
            Action::Fire => StreamState::Error,
            Action::Expire => StreamState::ExpireError,
        }
    }
    /// `fire` or `expire`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Fire => "fire",
            Action::Expire => "expire",
        }
    }
}

/// A stream record.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// Row id.
    pub id: i64,
    /// The trigger that created it.
    pub trigger: String,
    /// Its state.
    pub state: StreamState,
    /// Bumped by every state change; the compare-and-set token.
    pub state_serial_no: i32,
    /// The distinguishing traits.
    pub dist_traits: DistTraits,
    /// Whether it still accepts events.
    pub open: bool,
    /// Number of member events.
    pub event_count: i64,
    /// Earliest member event time.
    pub first_event: DateTime<Utc>,
    /// Latest member event time.
    pub last_event: DateTime<Utc>,
    /// When it is due to fire; `None` until its fire criteria are met.
    pub fire_timestamp: Option<DateTime<Utc>>,
    /// When it expires.
    pub expire_timestamp: DateTime<Utc>,
    /// While firing/expiring: when another worker may reclaim it.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How many times a worker has taken it.
    pub attempts: i32,
    /// Why the last run failed, if it did.
    pub last_error: Option<String>,
    /// The trigger definition version it was opened under (`None`: opened
    /// before versions were recorded; then the current definition applies).
    pub version: Option<String>,
}
