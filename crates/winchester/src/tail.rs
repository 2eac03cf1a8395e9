//! Following the database live: new events and stream transitions as they
//! are committed (`winchester tail`, `GET /v1/tail`).
//!
//! A tail reads rows with an id above the last one it saw. Ids are handed out
//! when a row is inserted, not when it commits, so a slow transaction can
//! commit id 10 after a fast one committed 11: a plain `id > last` would skip
//! 10 forever. [`IdCursor`] remembers the ids it jumped over and asks for them
//! again until they appear or [`GAP_GRACE`] passes (ids of rolled-back
//! transactions and of duplicates never appear).

use crate::json;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use winchester_core::TraitValue;
use winchester_storage::{NamePattern, ReadyListener, Result, Storage, StoredEvent, TraitFilter, Transition};

/// How long a skipped id is asked for again.
pub const GAP_GRACE: Duration = Duration::from_secs(30);
/// At most this many skipped ids are remembered (the oldest are forgotten).
pub const MAX_GAPS: usize = 10_000;
/// At most this many skipped ids are asked for per query.
const GAPS_PER_QUERY: usize = 500;
/// Rows read per query.
const BATCH: u32 = 1000;
/// Longest wait between polls (a NOTIFY wakes a PostgreSQL tail sooner).
pub const POLL: Duration = Duration::from_millis(500);

/// The position of a tail in one id sequence.
#[derive(Debug, Clone, Default)]
pub struct IdCursor {
    last: i64,
    gaps: BTreeMap<i64, Instant>,
}

impl IdCursor {
    /// Starts after `last`.
    pub fn new(last: i64) -> IdCursor {
        IdCursor { last, gaps: BTreeMap::new() }
    }

    /// The highest id seen.
    pub fn last(&self) -> i64 {
        self.last
    }

    /// Skipped ids still worth asking for (newest first), forgetting expired ones.
    pub fn pending(&mut self, now: Instant) -> Vec<i64> {
        self.gaps.retain(|_, seen| now.duration_since(*seen) < GAP_GRACE);
        self.gaps.keys().rev().take(GAPS_PER_QUERY).copied().collect()
    }

    /// Records a row id that was read. Returns false when it was already delivered.
    pub fn observe(&mut self, id: i64, now: Instant) -> bool {
        if id > self.last {
            let from = (self.last + 1).max(id - MAX_GAPS as i64);
            for gap in from..id {
                self.gaps.insert(gap, now);
            }
            while self.gaps.len() > MAX_GAPS {
                self.gaps.pop_first();
            }
            self.last = id;
            true
        } else {
            self.gaps.remove(&id).is_some()
        }
    }
}

/// Something a tail delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum TailItem {
    /// A saved event.
    Event(StoredEvent),
    /// A stream transition (fired, expired, failed, reset, purged).
    Transition(Transition),
}

impl TailItem {
    /// The SSE event name: `event` or `stream`.
    pub fn kind(&self) -> &'static str {
        match self {
            TailItem::Event(_) => "event",
            TailItem::Transition(_) => "stream",
        }
    }

    /// The SSE id: `e<id>` or `t<id>`.
    pub fn id(&self) -> String {
        match self {
            TailItem::Event(e) => format!("e{}", e.id),
            TailItem::Transition(t) => format!("t{}", t.id),
        }
    }

    /// The JSON: an event in the ingest format, or a transition.
    pub fn to_json(&self) -> Value {
        match self {
            TailItem::Event(e) => e.event.to_json(),
            TailItem::Transition(t) => json::transition(t),
        }
    }
}

/// What a tail client wants.
#[derive(Debug, Clone, Default)]
pub struct TailFilter {
    /// Only events whose type matches.
    pub event_name: Option<NamePattern>,
    /// Only events with all these traits.
    pub traits: Vec<TraitFilter>,
    /// Only transitions of this trigger.
    pub trigger: Option<String>,
    /// Deliver events.
    pub events: bool,
    /// Deliver stream transitions.
    pub streams: bool,
}

/// Whether a stored trait value equals what a filter's text stands for.
pub fn trait_matches(f: &TraitFilter, value: &TraitValue) -> bool {
    f.candidates().iter().any(|c| match (c, value) {
        (TraitValue::Float(a), TraitValue::Int(b)) | (TraitValue::Int(b), TraitValue::Float(a)) => *a == *b as f64,
        (a, b) => a == b,
    })
}

impl TailFilter {
    /// Whether `item` passes.
    pub fn matches(&self, item: &TailItem) -> bool {
        match item {
            TailItem::Event(e) => {
                self.events
                    && self.event_name.as_ref().is_none_or(|p| p.matches(&e.event.event_type))
                    && self.traits.iter().all(|f| e.event.get(&f.name).is_some_and(|v| trait_matches(f, &v)))
            }
            TailItem::Transition(t) => self.streams && self.trigger.as_ref().is_none_or(|n| n == &t.trigger),
        }
    }
}

/// A live reader of new events and transitions.
pub struct Tail {
    storage: Arc<dyn Storage>,
    events: IdCursor,
    transitions: IdCursor,
    listener: Option<Box<dyn ReadyListener>>,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail").field("events", &self.events).field("transitions", &self.transitions).finish()
    }
}

impl Tail {
    /// A tail that starts now: rows committed from here on.
    pub async fn start(storage: Arc<dyn Storage>) -> Result<Tail> {
        // Listen first, so nothing committed between the two calls is missed.
        let listener = storage.change_listener().await?;
        let (e, t) = storage.latest_ids().await?;
        Ok(Tail { storage, events: IdCursor::new(e), transitions: IdCursor::new(t), listener: Some(listener) })
    }

    /// A tail that starts after the given event and transition ids.
    pub fn after(storage: Arc<dyn Storage>, events: i64, transitions: i64) -> Tail {
        Tail { storage, events: IdCursor::new(events), transitions: IdCursor::new(transitions), listener: None }
    }

    /// The next rows, oldest first; waits up to [`POLL`] (or a notification) when there are none.
    pub async fn next(&mut self) -> Result<Vec<TailItem>> {
        let items = self.read().await?;
        if !items.is_empty() {
            return Ok(items);
        }
        if self.listener.is_none() {
            self.listener = self.storage.change_listener().await.ok();
        }
        match self.listener.as_mut() {
            Some(l) => {
                if l.wait(POLL).await.is_err() {
                    self.listener = None;
                }
            }
            None => tokio::time::sleep(POLL).await,
        }
        self.read().await
    }

    async fn read(&mut self) -> Result<Vec<TailItem>> {
        let now = Instant::now();
        let mut out = Vec::new();
        let gaps = self.events.pending(now);
        for e in self.storage.events_since(self.events.last(), &gaps, BATCH).await? {
            if self.events.observe(e.id, now) {
                out.push(TailItem::Event(e));
            }
        }
        let gaps = self.transitions.pending(now);
        for t in self.storage.transitions_since(self.transitions.last(), &gaps, BATCH).await? {
            if self.transitions.observe(t.id, now) {
                out.push(TailItem::Transition(t));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_remembers_skipped_ids() {
        let now = Instant::now();
        let mut c = IdCursor::new(5);
        assert!(c.observe(8, now));
        assert_eq!(c.pending(now), vec![7, 6]);
        assert!(c.observe(6, now), "a late commit is delivered");
        assert!(!c.observe(6, now), "once");
        assert!(!c.observe(8, now));
        assert_eq!(c.pending(now), vec![7]);
        assert!(c.pending(now + GAP_GRACE).is_empty(), "forgotten after the grace period");
        let mut big = IdCursor::new(0);
        big.observe(1_000_000, now);
        assert_eq!(big.gaps.len(), MAX_GAPS);
    }

    #[test]
    fn typed_trait_match() {
        let f = TraitFilter { name: "m".into(), value: "4096".into() };
        assert!(trait_matches(&f, &TraitValue::Int(4096)));
        assert!(trait_matches(&f, &TraitValue::Float(4096.0)));
        assert!(trait_matches(&f, &TraitValue::String("4096".into())));
        assert!(!trait_matches(&f, &TraitValue::Int(4095)));
    }
}
