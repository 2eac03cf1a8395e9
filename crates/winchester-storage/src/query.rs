//! Types of the operations queries (events and streams by filter, counts,
//! transitions, bulk actions): what `winchester serve`, the CLI and the metrics
//! ask storage, independent of the backend.

use chrono::{DateTime, Utc};
use std::fmt;
use winchester_core::event::parse_rfc3339;
use winchester_core::{Event, TraitValue};

use crate::stream::StreamState;

/// Which rows of a listing to return: a page after a mark, in id order.
///
/// Quincy's paging: the mark is the last row's id in hex; a leading `+` means
/// ascending (oldest first), otherwise rows come newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Page {
    /// Only rows after this id (in the page's direction).
    pub after: Option<i64>,
    /// Oldest first instead of newest first.
    pub ascending: bool,
    /// At most this many rows (default: all).
    pub limit: Option<u32>,
}

impl Page {
    /// Parses a quincy mark (`1f`, `+1f`, `+`) into a page of at most `limit` rows.
    pub fn from_mark(mark: Option<&str>, limit: Option<u32>) -> Result<Page, String> {
        let mut page = Page { limit, ..Page::default() };
        let Some(mark) = mark else { return Ok(page) };
        let hex = match mark.strip_prefix('+') {
            Some(rest) => {
                page.ascending = true;
                rest
            }
            None => mark,
        };
        if !hex.is_empty() {
            let id = i64::from_str_radix(hex, 16)
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(|| format!("{mark:?} is not a mark (a row id in hex, `+` in front for ascending)"))?;
            page.after = Some(id);
        }
        Ok(page)
    }

    /// The mark that continues after the row with id `last`.
    pub fn next_mark(&self, last: i64) -> String {
        format!("{}{last:x}", if self.ascending { "+" } else { "" })
    }
}

/// One `name:value` trait condition. The value is compared with the stored
/// trait's own type: `4096` matches an int 4096, a float 4096.0 and a string
/// "4096"; `true` matches a bool; a full RFC 3339 time matches a datetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraitFilter {
    /// Trait name (matched exactly).
    pub name: String,
    /// Value as given.
    pub value: String,
}

impl TraitFilter {
    /// Parses `k:v;k2:v2` (quincy) or `k:v,k2:v2` (klugman); `=` is accepted
    /// instead of `:`. The value may contain `:` (only the first one splits).
    pub fn parse_list(text: &str) -> Result<Vec<TraitFilter>, String> {
        text.split([';', ',']).map(str::trim).filter(|p| !p.is_empty()).map(TraitFilter::parse_one).collect()
    }

    /// Parses one `name:value` (or `name=value`) pair.
    pub fn parse_one(pair: &str) -> Result<TraitFilter, String> {
        let (name, value) = pair
            .split_once([':', '='])
            .ok_or_else(|| format!("{pair:?} is not name:value (pairs are separated by ; or ,)"))?;
        if name.trim().is_empty() {
            return Err(format!("{pair:?} has an empty trait name"));
        }
        Ok(TraitFilter { name: name.trim().to_string(), value: value.to_string() })
    }

    /// Every typed value the text may stand for (always at least the string).
    pub fn candidates(&self) -> Vec<TraitValue> {
        let v = self.value.as_str();
        let mut out = vec![TraitValue::String(v.to_string())];
        if let Ok(i) = v.parse::<i64>() {
            out.push(TraitValue::Int(i));
        }
        if let Ok(f) = v.parse::<f64>() {
            if f.is_finite() {
                out.push(TraitValue::Float(f));
            }
        }
        if let Some(d) = parse_rfc3339(v) {
            out.push(TraitValue::Datetime(d));
        }
        match v {
            "true" => out.push(TraitValue::Bool(true)),
            "false" => out.push(TraitValue::Bool(false)),
            _ => {}
        }
        out
    }
}

/// An event-name condition: exact, or a glob with `*` (any run) and `?` (one
/// character). Other characters (`[`, `%`, `_`, ...) are literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern(pub String);

impl NamePattern {
    /// Whether the pattern has wildcards.
    pub fn is_glob(&self) -> bool {
        self.0.contains(['*', '?'])
    }

    /// The pattern as SQL `LIKE` text with `\` as the escape character.
    pub fn to_like(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 4);
        for c in self.0.chars() {
            match c {
                '*' => out.push('%'),
                '?' => out.push('_'),
                '%' | '_' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out
    }

    /// The pattern as SQLite `GLOB` text (`[` made literal).
    pub fn to_sqlite_glob(&self) -> String {
        self.0.replace('[', "[[]")
    }

    /// Whether `name` matches (the same rule the databases apply).
    pub fn matches(&self, name: &str) -> bool {
        fn go(p: &[char], s: &[char]) -> bool {
            match p.split_first() {
                None => s.is_empty(),
                Some(('*', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
                Some(('?', rest)) => !s.is_empty() && go(rest, &s[1..]),
                Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
            }
        }
        let p: Vec<char> = self.0.chars().collect();
        let s: Vec<char> = name.chars().collect();
        go(&p, &s)
    }
}

/// Selects events.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events generated at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events generated before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only events whose type matches.
    pub event_name: Option<NamePattern>,
    /// Only events with all these traits (typed comparison).
    pub traits: Vec<TraitFilter>,
    /// Which page (ignored by counts).
    pub page: Page,
}

/// An event with its row id (the mark, and the tail's cursor).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Row id.
    pub id: i64,
    /// The event.
    pub event: Event,
}

/// How many streams of a trigger are in a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCount {
    /// Trigger name.
    pub trigger: String,
    /// State.
    pub state: StreamState,
    /// Number of streams (capped when counted up to a cap).
    pub count: Count,
}

/// A count that may have been capped: counting stops after `cap` rows, so
/// that a count over millions costs what counting `cap` costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// The number counted (the cap when not `exact`).
    pub n: u64,
    /// False when there are more than `n`.
    pub exact: bool,
}

/// Zero, exactly.
impl Default for Count {
    fn default() -> Count {
        Count { n: 0, exact: true }
    }
}

impl Count {
    /// `n` rows counted up to `cap` (`None`: no cap) by a statement that
    /// stopped after `cap + 1` ([`Count::over`]).
    pub fn capped(n: u64, cap: Option<u64>) -> Count {
        match cap {
            Some(cap) if n > cap => Count { n: cap, exact: false },
            _ => Count { n, exact: true },
        }
    }

    /// Where a count up to `cap` stops: one row past it, so that more than
    /// `cap` can be told from exactly `cap`.
    pub fn over(cap: u64) -> i64 {
        i64::try_from(cap.saturating_add(1)).unwrap_or(i64::MAX)
    }

    /// The sum of several counts (exact when all are).
    pub fn sum(counts: impl IntoIterator<Item = Count>) -> Count {
        counts.into_iter().fold(Count::default(), |a, b| Count { n: a.n + b.n, exact: a.exact && b.exact })
    }
}

/// `N`, or `N+` when there are more.
impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.n, if self.exact { "" } else { "+" })
    }
}

/// The cap of the counts the API and the console show (`"exact": false`
/// beyond it).
pub const COUNT_CAP: u64 = 10_000;

/// What happened to a stream, as logged by the database (migration 0002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionKind {
    /// The fire pipeline completed.
    Fired,
    /// The expire pipeline completed.
    Expired,
    /// A pipeline failed (error / expire_error).
    Failed,
    /// A failed stream was queued again (retry_fire / retry_expire).
    Reset,
    /// The stream was deleted by an operator.
    Purged,
    /// The stream was marked completed outside a pipeline run (its state set
    /// by hand, e.g. an operator's SQL on a failed stream).
    Completed,
}

impl TransitionKind {
    /// `fired`, `expired`, `failed`, `reset`, `purged`, `completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Fired => "fired",
            TransitionKind::Expired => "expired",
            TransitionKind::Failed => "failed",
            TransitionKind::Reset => "reset",
            TransitionKind::Purged => "purged",
            TransitionKind::Completed => "completed",
        }
    }

    /// Classifies a logged change; `new` is `None` when the row was deleted
    /// (a deleted firing/expiring stream was completed with
    /// `purge_completed_streams`).
    pub fn classify(old: StreamState, new: Option<StreamState>) -> Option<TransitionKind> {
        use StreamState::*;
        Some(match (old, new) {
            (Firing, Some(Completed) | None) => TransitionKind::Fired,
            (Expiring, Some(Completed) | None) => TransitionKind::Expired,
            (_, Some(Error | ExpireError)) => TransitionKind::Failed,
            (_, Some(RetryFire | RetryExpire)) => TransitionKind::Reset,
            (_, None) => TransitionKind::Purged,
            (_, Some(Completed)) => TransitionKind::Completed,
            _ => return None,
        })
    }
}

impl fmt::Display for TransitionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One logged stream transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Row id of the log entry (the tail's cursor).
    pub id: i64,
    /// The stream (which may no longer exist).
    pub stream_id: i64,
    /// Its trigger.
    pub trigger: String,
    /// State before.
    pub from: StreamState,
    /// State after; `None` when the stream was deleted.
    pub to: Option<StreamState>,
    /// What it means.
    pub kind: TransitionKind,
    /// When (database time).
    pub at: DateTime<Utc>,
}

/// What a bulk retry or purge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BulkOutcome {
    /// Streams that matched the filter.
    pub matched: u64,
    /// Streams changed (retried from an error state, or deleted).
    pub changed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks() {
        assert_eq!(Page::from_mark(None, Some(5)).unwrap(), Page { after: None, ascending: false, limit: Some(5) });
        assert_eq!(Page::from_mark(Some("1f"), None).unwrap().after, Some(31));
        let p = Page::from_mark(Some("+1f"), None).unwrap();
        assert!(p.ascending && p.after == Some(31));
        assert_eq!(p.next_mark(255), "+ff");
        assert!(Page::from_mark(Some("+"), None).unwrap().ascending);
        assert!(Page::from_mark(Some("zz"), None).is_err());
        assert!(Page::from_mark(Some("-1"), None).is_err());
    }

    #[test]
    fn trait_lists() {
        let f = TraitFilter::parse_list("a:1;b:x:y, c=z").unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!((f[1].name.as_str(), f[1].value.as_str()), ("b", "x:y"));
        assert!(TraitFilter::parse_list("nocolon").is_err());
        assert!(TraitFilter::parse_list(":v").is_err());
        let c = TraitFilter { name: "m".into(), value: "4096".into() }.candidates();
        assert!(c.contains(&TraitValue::Int(4096)) && c.contains(&TraitValue::Float(4096.0)));
    }

    #[test]
    fn globs() {
        let p = NamePattern("compute.*.end".into());
        assert!(p.is_glob() && p.matches("compute.instance.create.end") && !p.matches("compute.x.start"));
        assert_eq!(NamePattern("a_%\\*".into()).to_like(), "a\\_\\%\\\\%");
        assert_eq!(NamePattern("a[b]*".into()).to_sqlite_glob(), "a[[]b]*");
        assert!(NamePattern("a?c".into()).matches("abc"));
    }
}

/// Selects streams for listing, counting and bulk actions.
#[derive(Debug, Clone, Default)]
pub struct StreamFilter {
    /// Only this trigger's streams.
    pub trigger: Option<String>,
    /// Only streams in this state.
    pub state: Option<StreamState>,
    /// At most this many (default: all); listing only.
    pub limit: Option<u32>,
    /// Only streams whose first event is before this time.
    pub older_than: Option<DateTime<Utc>>,
    /// Only streams whose last event is after this time.
    pub younger_than: Option<DateTime<Utc>>,
    /// Only streams with these distinguishing trait values (typed comparison).
    pub dist_traits: Vec<TraitFilter>,
    /// Paging: after this id; ascending (oldest first) instead of newest first.
    /// The page's own limit, when set, is used instead of [`StreamFilter::limit`].
    pub page: Page,
}

impl StreamFilter {
    /// The row limit in force.
    pub fn row_limit(&self) -> Option<u32> {
        self.page.limit.or(self.limit)
    }
}
