//! The one narrow interface between the engine and its database.
//!
//! The engine (trigger manager, workers, CLI) talks to storage only through
//! [`Storage`]; no backend type crosses it. Backends: `winchester-postgres`,
//! `winchester-sqlite`; `winchester-backends` picks one from a database URL.
//!
//! Layout:
//! - [`Storage`], [`ReadyListener`]: the interface. `Storage` is made of
//!   narrow parts ([`IngestStore`], [`StreamStore`], [`EventStore`],
//!   [`QueryStore`], [`VersionStore`], [`Wakeups`]) that a backend implements
//!   each in the module that holds its SQL; any type with all of them is a
//!   `Storage`.
//! - [`backend`]: [`Backend`](backend::Backend), a connected backend's storage
//!   and schema migrations (status, upgrade, downgrade, their SQL scripts).
//! - [`stream`]: stream records, states and filters.
//! - [`plan`]: what ingest hands to storage (event + computed memberships).
//! - [`query`]: filters and results of the operations queries (events, counts, transitions).
//! - [`decode`]: decoding rows into these types, once for every backend (a
//!   backend implements [`decode::Columns`] for its row type).
//! - [`fold`]: folding a batch's events into a key's streams (shared by backends).
//! - [`rules`]: the state machine's readiness and finish rules (shared by backends).
//! - [`sql`]: the statements the SQL backends share ([`sql::SqlBackend`]: what a backend supplies).
//! - `conformance` (feature `conformance`): the checks every backend must pass.
//! - [`StorageError`]: errors, classified retryable or not; [`RetryPolicy`]: the one backoff.
//! - [`outage`]: whether the process is waiting for its database (for metrics).
//! - [`replica`]: reads from a hot standby ([`replica::ReadRouter`]), with the replica lag measured.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod decode;
pub mod fold;
pub mod outage;
pub mod plan;
pub mod query;
pub mod replica;
pub mod rules;
pub mod sql;
pub mod stream;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;
use winchester_core::{DefinitionVersion, Event};

pub use plan::{EventPlan, IngestOutcome, Membership, ReplayAt};
pub use query::{
    BulkOutcome, Count, EventFilter, NamePattern, Page, StoredEvent, StreamCount, StreamFilter, TraitFilter,
    Transition, TransitionKind, COUNT_CAP,
};
pub use stream::{Action, Stream, StreamState, TriggerScope};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database could not be reached or the connection broke; try again later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A transient conflict (deadlock, serialization failure, lost insert race); retry.
    #[error("transient conflict: {0}")]
    Conflict(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A batch call answered with a different number of outcomes than it was
    /// given items: a backend bug, never papered over.
    #[error("{what}: {got} outcomes for {expected} items")]
    OutcomeMismatch {
        /// The call.
        what: &'static str,
        /// Items given.
        expected: usize,
        /// Outcomes returned.
        got: usize,
    },
}

/// The one retry policy for storage errors that may pass
/// ([`StorageError::is_retryable`]: lost connections, a restarting or failing
/// over server, transient conflicts), shared by ingest daemons and workers:
/// capped exponential backoff (0.5 s doubling up to 30 s) with jitter (each
/// wait a random point in the upper half of its step, so processes that lost
/// the database together do not come back in step). [`failed`](Self::failed)
/// and [`succeeded`](Self::succeeded) log an outage once when it starts and
/// once when it ends.
///
/// [`RetryPolicy::conflicts`] is the same loop for one operation that may
/// lose a race (a deadlock, a unique key another writer took first): short
/// waits, a bounded number of tries, and only [`StorageError::Conflict`]
/// retried (an outage is the caller's policy's to wait out).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    first: Duration,
    max: Duration,
    next: Duration,
    /// Tries left before the error is returned (`None`: unbounded).
    tries_left: Option<u32>,
    /// Retry only conflicts, quietly.
    conflicts_only: bool,
    /// The current outage (process-wide, see [`outage`]) and how many tries failed in it.
    outage: Option<(outage::Outage, u32)>,
}

impl RetryPolicy {
    /// The first wait.
    pub const FIRST: Duration = Duration::from_millis(500);
    /// The longest wait.
    pub const MAX: Duration = Duration::from_secs(30);

    /// A fresh policy (next wait: [`RetryPolicy::FIRST`]).
    pub fn new() -> RetryPolicy {
        RetryPolicy {
            first: RetryPolicy::FIRST,
            max: RetryPolicy::MAX,
            next: RetryPolicy::FIRST,
            tries_left: None,
            conflicts_only: false,
            outage: None,
        }
    }

    /// A policy for transient conflicts within one operation: at most
    /// `tries` tries in all, waits from 5 ms doubling up to 80 ms (jittered
    /// as [`next_delay`](Self::next_delay) says), nothing but conflicts
    /// retried, each retry logged at debug level.
    pub fn conflicts(tries: u32) -> RetryPolicy {
        let first = Duration::from_millis(5);
        RetryPolicy {
            first,
            max: Duration::from_millis(80),
            next: first,
            tries_left: Some(tries.max(1)),
            conflicts_only: true,
            outage: None,
        }
    }

    /// How long to wait before the next try: the current step, jittered into
    /// its upper half; each call doubles the step after, up to [`RetryPolicy::MAX`].
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step / 2 + step.mul_f64(rand::random::<f64>() / 2.0)
    }

    /// After a success: the next failure waits about [`RetryPolicy::FIRST`] again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// A try of `what` failed with a retryable `error`: logs the start of the
    /// outage (a warning, once; later failures at debug level) and returns
    /// how long to wait.
    pub fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) -> Duration {
        let wait = self.next_delay();
        if self.conflicts_only {
            tracing::debug!(%error, "Conflict in {what}; trying again in {wait:?}.");
            return wait;
        }
        match &mut self.outage {
            None => {
                tracing::warn!(%error, "Database unavailable ({what}); retrying with backoff until it is back.");
                self.outage = Some((outage::Outage::begin(), 1));
            }
            Some((_, tries)) => {
                *tries += 1;
                tracing::debug!(%error, "Database still unavailable ({what}); retrying in {wait:?}.");
            }
        }
        wait
    }

    /// A try succeeded: ends an outage (logged once, with its length) and
    /// resets the backoff.
    pub fn succeeded(&mut self) {
        if let Some((outage, tries)) = self.outage.take() {
            tracing::info!(failed_tries = tries, "Database available again after {:.1?}.", outage.elapsed());
        }
        self.reset();
    }

    /// Runs `op` until it succeeds or fails for a reason waiting cannot fix:
    /// after each retryable failure it waits as [`failed`](Self::failed)
    /// says (logging the outage once), and a success logs its end
    /// ([`succeeded`](Self::succeeded)). `op` must be safe to repeat: a try
    /// that committed before its answer was lost is tried again (ingest
    /// absorbs that by `message_id` dedup, finishing by its compare-and-set).
    pub async fn retry<T, E, F, Fut>(&mut self, what: &str, mut op: F) -> std::result::Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, E>>,
        E: Retryable + std::fmt::Display,
    {
        loop {
            match op().await {
                Ok(v) => {
                    self.succeeded();
                    return Ok(v);
                }
                Err(e) if self.may_retry(&e) => {
                    let wait = self.failed(what, &e);
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl RetryPolicy {
    /// Whether `e` is retried by this policy, counting the try.
    fn may_retry<E: Retryable>(&mut self, e: &E) -> bool {
        let kind = if self.conflicts_only { e.is_conflict() } else { e.is_retryable() };
        match &mut self.tries_left {
            _ if !kind => false,
            None => true,
            Some(left) => {
                *left = left.saturating_sub(1);
                *left > 0
            }
        }
    }
}

/// An error that says whether the same operation may succeed if tried again
/// (what [`RetryPolicy::retry`] retries).
pub trait Retryable {
    /// Whether trying again may help (a lost connection, a restarting server, a transient conflict).
    fn is_retryable(&self) -> bool;

    /// Whether it is a transient conflict with another writer (what
    /// [`RetryPolicy::conflicts`] retries).
    fn is_conflict(&self) -> bool {
        false
    }
}

impl Retryable for StorageError {
    fn is_retryable(&self) -> bool {
        StorageError::is_retryable(self)
    }

    fn is_conflict(&self) -> bool {
        matches!(self, StorageError::Conflict(_))
    }
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy::new()
    }
}

/// Checks that a batch call returned one outcome per item.
pub fn one_for_one<T>(what: &'static str, expected: usize, outcomes: Vec<T>) -> Result<Vec<T>> {
    if outcomes.len() == expected {
        Ok(outcomes)
    } else {
        Err(StorageError::OutcomeMismatch { what, expected, got: outcomes.len() })
    }
}

/// Checks that a write returned one row per item it was given: `got` rows
/// of `what` for `expected` items is a corrupt answer, never papered over.
pub fn expect_written(got: usize, expected: usize, what: &str) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(StorageError::Corrupt(format!("{got} {what} written, {expected} expected")))
    }
}

impl StorageError {
    /// Whether the same operation may succeed if tried again. The one place that
    /// decides this; callers never inspect error text.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Unavailable(_) | StorageError::Conflict(_))
    }

    /// The same error for another waiter (several callers sharing one failed
    /// transaction): the same variant, so the same classification, with the
    /// cause kept as text.
    pub fn shared(&self) -> StorageError {
        let text = |e: &(dyn std::error::Error + Send + Sync)| -> Box<dyn std::error::Error + Send + Sync> {
            e.to_string().into()
        };
        match self {
            StorageError::Unavailable(e) => StorageError::Unavailable(text(e.as_ref())),
            StorageError::Conflict(e) => StorageError::Conflict(text(e.as_ref())),
            StorageError::Database(e) => StorageError::Database(text(e.as_ref())),
            StorageError::Corrupt(s) => StorageError::Corrupt(s.clone()),
            StorageError::OutcomeMismatch { what, expected, got } => {
                StorageError::OutcomeMismatch { what, expected: *expected, got: *got }
            }
        }
    }
}

/// Result alias for storage calls.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// How a finished pipeline run is recorded.
#[derive(Debug)]
pub enum Finish<'a> {
    /// Every handler succeeded: save the pipeline's new events and complete (or
    /// purge) the stream, in one transaction.
    Completed {
        /// Delete the stream instead of marking it completed.
        purge: bool,
        /// Events the pipeline added, already planned against the triggers.
        new_events: &'a [EventPlan],
    },
    /// The pipeline failed: move the stream to `error` / `expire_error` with the reason.
    Failed {
        /// Why, recorded on the stream.
        reason: &'a str,
    },
}

/// What [`StreamStore::finish`] did.
#[derive(Debug)]
pub enum FinishOutcome {
    /// Recorded; for a completed stream, the outcome of each new event.
    Done(Vec<IngestOutcome>),
    /// The stream's serial moved on (its lease expired and another worker took
    /// it): nothing was written.
    LostLease,
}

/// A stream taken by [`StreamStore::claim_ready`].
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The stream as claimed (working state, serial bumped, leased).
    pub stream: Stream,
    /// It was already in its working state: the lease of the worker that held
    /// it ran out, and this claim takes the stream over.
    pub reclaimed: bool,
}

/// A recorded trigger definition version and when it was first used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerVersion {
    /// Trigger name, version and definition text.
    pub definition: DefinitionVersion,
    /// When a process first loaded it (began matching or working with it).
    pub first_used: DateTime<Utc>,
}

/// Saving events: the part of [`Storage`] a backend implements where its ingest
/// SQL lives.
#[async_trait]
pub trait IngestStore: Send + Sync {
    /// Saves a batch of events and their stream memberships. Each event and all of
    /// its memberships and stream updates commit together; duplicates (by
    /// `message_id`) change nothing and are reported as such.
    async fn ingest(&self, batch: &[EventPlan], now: DateTime<Utc>) -> Result<Vec<IngestOutcome>>;
}

/// The stream state machine's storage: readiness, claims, finishes and the
/// other compare-and-set state changes (every one on the stream's
/// `state_serial_no`). Part of [`Storage`].
#[async_trait]
pub trait StreamStore: Send + Sync {
    /// Streams ready for `action` at `now`, oldest due first: ready and not yet
    /// taken, or taken by a worker whose lease has run out.
    async fn ready_streams(&self, action: Action, now: DateTime<Utc>, limit: u32) -> Result<Vec<Stream>>;

    /// Takes a ready stream for `action` (compare-and-set on its serial), closing it
    /// to new events and leasing it until `now + lease`. `None` when another worker
    /// got there first.
    async fn claim(
        &self,
        stream: &Stream,
        action: Action,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Stream>>;

    /// Claims up to `limit` streams ready for `action` at `now` (see
    /// [`Action::ready_rules`]), the oldest due (answered in no particular
    /// order), in one statement: each is
    /// moved to its working state (serial bumped), closed to new events and
    /// leased until `lease_until`. Streams another worker is claiming at the same
    /// moment are skipped, never waited for.
    async fn claim_ready(
        &self,
        action: Action,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Claimed>> {
        self.claim_ready_among(action, now, lease_until, limit, TriggerScope::All).await
    }

    /// [`StreamStore::claim_ready`] restricted to the streams of `triggers`.
    async fn claim_ready_among(
        &self,
        action: Action,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        triggers: TriggerScope<'_>,
    ) -> Result<Vec<Claimed>>;

    /// Records the ends of pipeline runs on claimed streams in one transaction;
    /// each is its own compare-and-set on the stream's serial (see
    /// [`Finish::target`]), and a completed stream's new events are saved only if
    /// its compare-and-set held. One outcome per run, in order.
    async fn finish_many(&self, runs: &[(&Stream, Finish<'_>)], now: DateTime<Utc>) -> Result<Vec<FinishOutcome>>;

    /// Records the end of a pipeline run on a claimed stream.
    async fn finish(&self, claimed: &Stream, outcome: Finish<'_>, now: DateTime<Utc>) -> Result<FinishOutcome> {
        let out = one_for_one("finish", 1, self.finish_many(&[(claimed, outcome)], now).await?)?;
        Ok(out.into_iter().next().expect("one outcome"))
    }

    /// Moves stream `id` to `to` if its serial is still `serial` (bumping it).
    /// Returns the stream afterwards, `None` if the serial moved on (or it is gone).
    async fn set_state(&self, id: i64, serial: i32, to: StreamState) -> Result<Option<Stream>>;

    /// Extends the leases of streams a worker holds to `until`, each only while
    /// its serial still matches (`held` is `(id, state_serial_no)` of each claimed
    /// stream). A renewal is not a state change: the serial stays. Returns the ids
    /// renewed; an id missing from the answer is no longer held by this worker.
    async fn renew_leases(&self, held: &[(i64, i32)], until: DateTime<Utc>) -> Result<Vec<i64>>;

    /// One stream.
    async fn get_stream(&self, id: i64) -> Result<Option<Stream>>;

    /// `error` -> `retry_fire`, `expire_error` -> `retry_expire`. Returns the stream
    /// afterwards, `None` if it does not exist; other states are left as they are.
    async fn retry_stream(&self, id: i64) -> Result<Option<Stream>> {
        for _ in 0..10 {
            let Some(s) = self.get_stream(id).await? else { return Ok(None) };
            let Some(to) = s.state.retry_state() else { return Ok(Some(s)) };
            if let Some(moved) = self.set_state(id, s.state_serial_no, to).await? {
                return Ok(Some(moved));
            }
        }
        Err(StorageError::Conflict(format!("stream {id} kept changing while retrying it").into()))
    }

    /// Deletes a stream and its memberships (not its events). False if absent.
    async fn purge_stream(&self, id: i64) -> Result<bool>;

    /// The earliest future moment a stream becomes ready (fire time, expire time or
    /// lease end), so an idle worker knows when to wake.
    async fn next_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>>;
}

/// Reading and trimming a stream's events. Part of [`Storage`].
#[async_trait]
pub trait EventStore: Send + Sync {
    /// A page of a stream's events in timestamp order, after the `(timestamp, id)`
    /// position `after` (exclusive). Returns the events and the position of the last.
    async fn stream_events(
        &self,
        stream_id: i64,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<(Vec<Event>, Option<Cursor>)>;

    /// Every event of the given streams in one query: `(stream id, event)` in
    /// `(timestamp, id)` order within each stream.
    async fn load_events(&self, stream_ids: &[i64]) -> Result<Vec<(i64, Event)>>;

    /// Deletes up to `limit` events older than `cutoff` that belong to no
    /// unfinished stream (with their memberships). A backend that stores
    /// events by day (PostgreSQL) also drops, beyond `limit`, every whole day
    /// before `cutoff` that no unfinished stream needs. Returns how many
    /// events were deleted.
    async fn trim_events(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<u64>;

    /// The latest event timestamp stored (`None` when there is no event): "now"
    /// for a worker replaying archived events (`pipeline-worker --event-time`).
    async fn latest_event_time(&self) -> Result<Option<DateTime<Utc>>>;
}

/// The operations queries (`winchester serve`, the CLI, metrics): streams and
/// events by filter, counts, the transition log. Part of [`Storage`].
#[async_trait]
pub trait QueryStore: Send + Sync {
    /// Streams matching a filter, newest first.
    async fn list_streams(&self, filter: &StreamFilter) -> Result<Vec<Stream>>;

    /// How many streams match a filter (its page is ignored), exactly.
    async fn count_streams(&self, filter: &StreamFilter) -> Result<u64> {
        Ok(self.count_streams_upto(filter, None).await?.n)
    }

    /// How many streams match a filter, counting at most `cap` (`None`: exact).
    async fn count_streams_upto(&self, filter: &StreamFilter, cap: Option<u64>) -> Result<Count>;

    /// The number of streams per (trigger, state), for every pair that has
    /// any, exactly.
    async fn stream_counts(&self) -> Result<Vec<StreamCount>> {
        self.stream_counts_upto(None).await
    }

    /// The number of streams per (trigger, state), each counted up to `cap`
    /// (`None`: exact); the pairs are found by a skip scan of an index, not by
    /// reading every stream.
    async fn stream_counts_upto(&self, cap: Option<u64>) -> Result<Vec<StreamCount>>;

    /// Events matching a filter, a page at a time (newest first unless ascending).
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>>;

    /// How many events match a filter (its page is ignored), exactly.
    async fn count_events(&self, filter: &EventFilter) -> Result<u64> {
        Ok(self.count_events_upto(filter, None).await?.n)
    }

    /// How many events match a filter, counting at most `cap` (`None`: exact).
    async fn count_events_upto(&self, filter: &EventFilter, cap: Option<u64>) -> Result<Count>;

    /// One event by its `message_id`.
    async fn get_event(&self, message_id: &str) -> Result<Option<StoredEvent>>;

    /// The ids of the streams an event (by row id) belongs to, ascending.
    async fn event_streams(&self, event_id: i64) -> Result<Vec<i64>>;

    /// Events with an id above `after` or in `also` (ids the caller saw
    /// skipped, which a slower transaction may still commit), ascending, at most `limit`.
    async fn events_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<StoredEvent>>;

    /// Logged stream transitions with an id above `after` or in `also`, ascending, at most `limit`.
    async fn transitions_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<Transition>>;

    /// The logged stream transitions at or after `since`, oldest first, at most `limit`.
    async fn transitions_from(&self, since: DateTime<Utc>, limit: u32) -> Result<Vec<Transition>>;

    /// The highest event id and the highest transition id (0 when none): where a tail starts.
    async fn latest_ids(&self) -> Result<(i64, i64)>;
}

/// Recorded trigger definition versions. Part of [`Storage`].
#[async_trait]
pub trait VersionStore: Send + Sync {
    /// Records trigger definition versions, each with `now` as its first use;
    /// a version already recorded keeps its row (text and first use).
    async fn record_versions(&self, versions: &[DefinitionVersion], now: DateTime<Utc>) -> Result<()>;

    /// One recorded version of a trigger's definition.
    async fn trigger_version(&self, trigger: &str, version: &str) -> Result<Option<TriggerVersion>>;

    /// The recorded versions (of one trigger, or all), by trigger name, then
    /// first use (oldest first).
    async fn trigger_versions(&self, trigger: Option<&str>) -> Result<Vec<TriggerVersion>>;
}

/// What wakes an idle worker or a tail early. Part of [`Storage`].
#[async_trait]
pub trait Wakeups: Send + Sync {
    /// A listener that wakes when an ingester marks a stream ready to fire.
    async fn ready_listener(&self) -> Result<Box<dyn ReadyListener>>;

    /// A listener that wakes when events are saved or streams change state
    /// (PostgreSQL: NOTIFY from database triggers; SQLite: polling).
    async fn change_listener(&self) -> Result<Box<dyn ReadyListener>>;
}

/// The storage interface the engine uses: every part a backend implements
/// ([`IngestStore`], [`StreamStore`], [`EventStore`], [`QueryStore`],
/// [`VersionStore`], [`Wakeups`]), and the bulk operations built on them.
/// Implemented for every type that implements the parts; every state change
/// is a compare-and-set on the stream's `state_serial_no`.
#[async_trait]
pub trait Storage:
    IngestStore + StreamStore + EventStore + QueryStore + VersionStore + Wakeups + std::fmt::Debug + 'static
{
    /// This storage as its [`QueryStore`] part (for code that takes reads
    /// from either the primary or a [`replica::ReadRouter`]).
    fn queries(&self) -> &dyn QueryStore;

    /// Retries (see [`StreamStore::retry_stream`]) every stream matching `filter`,
    /// `page_size` streams at a time.
    async fn retry_streams(&self, filter: &StreamFilter, page_size: u32) -> Result<BulkOutcome> {
        let (matched, changed) = for_each_page(self, filter, page_size, |ids| async move {
            let mut changed = 0;
            for id in ids {
                let Some(before) = self.get_stream(id).await? else { continue };
                let Some(to) = before.state.retry_state() else { continue };
                if self.retry_stream(id).await?.is_some_and(|s| s.state == to) {
                    changed += 1;
                }
            }
            Ok(changed)
        })
        .await?;
        Ok(BulkOutcome { matched, changed })
    }

    /// Purges (see [`StreamStore::purge_stream`]) every stream matching `filter`,
    /// `page_size` streams at a time.
    async fn purge_streams(&self, filter: &StreamFilter, page_size: u32) -> Result<BulkOutcome> {
        let (matched, changed) = for_each_page(self, filter, page_size, |ids| async move {
            let mut changed = 0;
            for id in ids {
                if self.purge_stream(id).await? {
                    changed += 1;
                }
            }
            Ok(changed)
        })
        .await?;
        Ok(BulkOutcome { matched, changed })
    }
}

#[async_trait]
impl<T> Storage for T
where
    T: IngestStore + StreamStore + EventStore + QueryStore + VersionStore + Wakeups + std::fmt::Debug + 'static,
{
    fn queries(&self) -> &dyn QueryStore {
        self
    }
}

/// Where a page of a stream's events ends: `(timestamp, id)` of its last event.
pub type Cursor = (DateTime<Utc>, i64);

/// Every event of a stream in timestamp order, read `page` at a time.
pub async fn all_stream_events<S: Storage + ?Sized>(storage: &S, stream_id: i64, page: u32) -> Result<Vec<Event>> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let (rows, last) = storage.stream_events(stream_id, after, page).await?;
        let done = (rows.len() as u32) < page;
        all.extend(rows);
        if done || last.is_none() {
            return Ok(all);
        }
        after = last;
    }
}

/// Walks the streams matching `filter` in ascending id pages of `page_size`,
/// handing each page's ids to `f` (which returns how many it changed).
/// Returns (matched, changed).
async fn for_each_page<S, F, Fut>(storage: &S, filter: &StreamFilter, page_size: u32, f: F) -> Result<(u64, u64)>
where
    S: Storage + ?Sized,
    F: Fn(Vec<i64>) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<u64>> + Send,
{
    let mut filter = filter.clone();
    filter.limit = None;
    filter.page = Page { after: None, ascending: true, limit: Some(page_size.max(1)) };
    let (mut matched, mut changed) = (0, 0);
    loop {
        let ids: Vec<i64> = storage.list_streams(&filter).await?.iter().map(|s| s.id).collect();
        let Some(&last) = ids.last() else { break };
        let full = ids.len() as u32 >= page_size.max(1);
        matched += ids.len() as u64;
        changed += f(ids).await?;
        if !full {
            break;
        }
        filter.page.after = Some(last);
    }
    Ok((matched, changed))
}

/// Wakes an idle worker early.
#[async_trait]
pub trait ReadyListener: Send {
    /// Waits until a notification arrives or `timeout` passes. Returns true when
    /// woken by a notification.
    async fn wait(&mut self, timeout: Duration) -> Result<bool>;
}

/// Stands in for NOTIFY where there is none (SQLite; PostgreSQL behind a
/// transaction pooler): wakes after at most the interval it holds.
#[derive(Debug, Clone, Copy)]
pub struct PollingListener(pub Duration);

#[async_trait]
impl ReadyListener for PollingListener {
    async fn wait(&mut self, timeout: Duration) -> Result<bool> {
        tokio::time::sleep(timeout.min(self.0)).await;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_write_is_corrupt() {
        assert!(expect_written(2, 2, "new streams").is_ok());
        assert_eq!(
            expect_written(1, 2, "new streams").unwrap_err().to_string(),
            "corrupt row: 1 new streams written, 2 expected"
        );
    }

    #[test]
    fn delays_double_in_their_upper_half_up_to_the_cap_and_reset() {
        let mut p = RetryPolicy::new();
        let mut step = RetryPolicy::FIRST;
        for _ in 0..12 {
            let d = p.next_delay();
            assert!(d >= step / 2 && d <= step, "{d:?} for step {step:?}");
            step = (step * 2).min(RetryPolicy::MAX);
        }
        assert_eq!(step, RetryPolicy::MAX);
        p.reset();
        assert!(p.next_delay() <= RetryPolicy::FIRST);
    }

    #[tokio::test]
    async fn retry_repeats_what_may_pass_and_returns_what_will_not() {
        let unavailable = || StorageError::Unavailable("connection refused".into());
        let mut tries = 0;
        let mut p = RetryPolicy::new();
        let got = p
            .retry("test", || {
                tries += 1;
                let r = if tries == 1 { Err(unavailable()) } else { Ok(tries) };
                async move { r }
            })
            .await;
        assert_eq!(got.unwrap(), 2);
        assert!(p.outage.is_none(), "a success ends the outage");

        let mut tries = 0;
        let got: Result<()> = RetryPolicy::new()
            .retry("test", || {
                tries += 1;
                async { Err(StorageError::Corrupt("bad row".into())) }
            })
            .await;
        assert!(matches!(got, Err(StorageError::Corrupt(_))));
        assert_eq!(tries, 1, "not retried");

        // Conflicts: bounded, and an outage is not a conflict.
        let mut tries = 0;
        let got: Result<()> = RetryPolicy::conflicts(3)
            .retry("test", || {
                tries += 1;
                async { Err(StorageError::Conflict("deadlock detected".into())) }
            })
            .await;
        assert!(matches!(got, Err(StorageError::Conflict(_))));
        assert_eq!(tries, 3, "three tries in all");
        let mut tries = 0;
        let got: Result<()> = RetryPolicy::conflicts(3)
            .retry("test", || {
                tries += 1;
                async { Err(unavailable()) }
            })
            .await;
        assert!(matches!(got, Err(StorageError::Unavailable(_))));
        assert_eq!(tries, 1, "an outage is the caller's to wait out");
    }
}
