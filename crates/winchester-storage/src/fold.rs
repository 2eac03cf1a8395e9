//! Folding a batch's events into a key's streams: the backend-independent part
//! of ingest. A backend locks the key's open stream, calls [`fold_group`], and
//! writes the resulting drafts back.

use crate::plan::{EventPlan, IngestOutcome, ReplayAt};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use winchester_core::TriggerDefinition;

/// A stream as a batch leaves it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDraft {
    /// Row id; `None` for a stream this batch opens.
    pub id: Option<i64>,
    /// Earliest event time.
    pub first: DateTime<Utc>,
    /// Latest event time.
    pub last: DateTime<Utc>,
    /// Expire time (from the trigger's expiration).
    pub expire: DateTime<Utc>,
    /// Fire time, once the fire criteria are met.
    pub fire: Option<DateTime<Utc>>,
    /// Number of member events.
    pub count: i64,
    /// Matches per fire criteria.
    pub counts: Vec<i64>,
    /// Whether it still accepts events.
    pub open: bool,
    /// The trigger definition version it was opened under (`None`: opened
    /// before versions were recorded).
    pub version: Option<String>,
}

impl StreamDraft {
    /// A new, empty stream opened by an event at `ts`.
    pub fn new(trigger: &TriggerDefinition, ts: DateTime<Utc>) -> StreamDraft {
        StreamDraft {
            id: None,
            first: ts,
            last: ts,
            expire: trigger.expire_at(ts, ts),
            fire: None,
            count: 0,
            counts: vec![0; trigger.fire_criteria.len()],
            open: true,
            version: trigger.version.clone(),
        }
    }

    /// Whether the stream takes an event arriving at `at`: open, not yet
    /// expired, and (in a replay) not taken by the worker run of
    /// `at.worker_ran` (its fire time had come by then).
    pub fn accepts(&self, at: ReplayAt) -> bool {
        self.open && self.expire > at.now && !matches!((self.fire, at.worker_ran), (Some(f), Some(w)) if f <= w)
    }

    /// Whether it takes an event of `trigger`'s current definition arriving at
    /// `at`: it accepts events and was opened under the same version (a stream
    /// or a definition without a version matches any). A stream of another
    /// version is closed and finishes by its own version's rules.
    pub fn accepts_for(&self, trigger: &TriggerDefinition, at: ReplayAt) -> bool {
        self.accepts(at) && joins_version(self.version.as_deref(), trigger.version.as_deref())
    }

    /// Adds one event; true when this made the stream ready to fire.
    pub fn add(&mut self, trigger: &TriggerDefinition, ts: DateTime<Utc>, hits: &[bool], now: DateTime<Utc>) -> bool {
        self.first = self.first.min(ts);
        self.last = self.last.max(ts);
        self.expire = trigger.expire_at(self.first, self.last);
        self.count += 1;
        if self.counts.len() < hits.len() {
            self.counts.resize(hits.len(), 0);
        }
        for (c, h) in self.counts.iter_mut().zip(hits) {
            *c += *h as i64;
        }
        if self.fire.is_none() && trigger.fire_ready(&self.counts) {
            self.fire = Some(trigger.fire_timestamp(now));
            return true;
        }
        false
    }
}

/// Whether an event matched by definition version `definition` may join an
/// open stream opened under `stream`: the same version, or either has none
/// (streams from before versions were recorded, definitions loaded alone).
pub fn joins_version(stream: Option<&str>, definition: Option<&str>) -> bool {
    match (stream, definition) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// The outcome of folding one key's events.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedGroup {
    /// The existing open stream (if any) first, then streams opened by the
    /// batch, in order; every one but possibly the last is closed.
    pub drafts: Vec<StreamDraft>,
    /// For each event, the index of its draft.
    pub assignment: Vec<usize>,
    /// For each event, whether it opened its draft's stream (the first event of
    /// a stream this batch opens).
    pub opens: Vec<bool>,
    /// Whether some stream became ready to fire.
    pub ready: bool,
}

/// Folds events `(timestamp, fire hits, arrival)` of one (trigger, key), in
/// order, into the key's open stream `existing`: an event joins the last
/// stream while it accepts events of this definition version (at the event's
/// arrival, see [`EventPlan::arrival`]), otherwise that stream is closed and a
/// new one opened. `now` is the batch's; a stream stays open if it accepts
/// events at the arrival of the group's last event.
pub fn fold_group<'a>(
    trigger: &TriggerDefinition,
    existing: Option<StreamDraft>,
    events: impl IntoIterator<Item = (DateTime<Utc>, &'a [bool], ReplayAt)>,
    now: DateTime<Utc>,
) -> FoldedGroup {
    let mut drafts: Vec<StreamDraft> = existing.into_iter().collect();
    let mut assignment = Vec::new();
    let mut opens = Vec::new();
    let mut ready = false;
    let mut last = ReplayAt { now, worker_ran: None };
    for (ts, hits, at) in events {
        last = at;
        let opening = !drafts.last().map(|d| d.accepts_for(trigger, at)).unwrap_or(false);
        if opening {
            if let Some(d) = drafts.last_mut() {
                d.open = false;
            }
            drafts.push(StreamDraft::new(trigger, ts));
        }
        opens.push(opening);
        let d = drafts.last_mut().expect("pushed above");
        ready |= d.add(trigger, ts, hits, at.now);
        assignment.push(drafts.len() - 1);
    }
    for d in &mut drafts {
        d.open = d.accepts(last);
    }
    FoldedGroup { drafts, assignment, opens, ready }
}

/// One (event, membership) of a batch: indexes into the batch and the event's memberships.
pub type Entry = (usize, usize);

/// The memberships of the saved events (`event_ids[i]` is `Some`), grouped by
/// (trigger, distinguishing key) in sorted key order, each group in batch order:
/// the order backends lock keys in, so concurrent batches lock alike.
pub fn group_by_key<'a>(batch: &'a [EventPlan], event_ids: &[Option<i64>]) -> BTreeMap<(&'a str, &'a str), Vec<Entry>> {
    let mut groups: BTreeMap<(&str, &str), Vec<Entry>> = BTreeMap::new();
    for (i, p) in batch.iter().enumerate() {
        if event_ids[i].is_some() {
            for (j, m) in p.memberships.iter().enumerate() {
                groups.entry((m.trigger.name.as_str(), m.dist_key.as_str())).or_default().push((i, j));
            }
        }
    }
    groups
}

/// Records the stream each of a key's `entries` joined (`folded` is their
/// fold; `id_of(k)` is draft `k`'s stream id) in `stream_of`, and the entries
/// that opened theirs in `opened`: what [`outcomes`] and the memberships are
/// built from.
pub fn assign_streams(
    entries: &[Entry],
    folded: &FoldedGroup,
    id_of: impl Fn(usize) -> i64,
    stream_of: &mut HashMap<Entry, i64>,
    opened: &mut HashSet<Entry>,
) {
    for ((entry, &k), &opens) in entries.iter().zip(&folded.assignment).zip(&folded.opens) {
        stream_of.insert(*entry, id_of(k));
        if opens {
            opened.insert(*entry);
        }
    }
}

/// Each event's outcome: a duplicate where it was not inserted, else its id and
/// the stream of each of its memberships (`stream_of` must hold every entry of
/// a saved event) and whether it opened that stream (the entries in `opened`).
pub fn outcomes(
    batch: &[EventPlan],
    event_ids: &[Option<i64>],
    stream_of: &HashMap<Entry, i64>,
    opened: &HashSet<Entry>,
) -> Vec<IngestOutcome> {
    batch
        .iter()
        .enumerate()
        .map(|(i, p)| match event_ids[i] {
            None => IngestOutcome::Duplicate,
            Some(event_id) => IngestOutcome::Saved {
                event_id,
                stream_ids: (0..p.memberships.len()).map(|j| stream_of[&(i, j)]).collect(),
                opened: (0..p.memberships.len()).map(|j| opened.contains(&(i, j))).collect(),
            },
        })
        .collect()
}
