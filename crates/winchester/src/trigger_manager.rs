//! The ingest side: validate events, match them against every trigger, and save
//! each with all of its stream memberships in one transaction (concurrent
//! single calls share transactions: see [`crate::group_commit`]).

use crate::debug::{no_match_reason, TriggerDebug};
use crate::group_commit::{ingest_split, GroupCommit, QueueFull};
use std::sync::{Arc, OnceLock};
use winchester_core::distiller::{DistillError, Distiller};
use winchester_core::{Clock, Event, EventError, TriggerSet, TypeVerdicts};
use winchester_storage::{one_for_one, EventPlan, IngestOutcome, Membership, ReplayAt, Storage, StorageError};

use crate::error::EngineError;
use crate::live::Live;

/// What happened to one event given to [`TriggerManager::add_events`].
#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    /// Saved; the ids of the streams it joined (one per matching trigger).
    Saved {
        /// Its row id.
        event_id: i64,
        /// Streams joined.
        stream_ids: Vec<i64>,
    },
    /// Its `message_id` was already stored; nothing changed.
    Duplicate,
    /// Invalid; nothing saved.
    Rejected(EventError),
    /// The database refused this event (when a batch failed and its events were
    /// retried one by one); nothing of it was saved.
    Failed(String),
    /// A notification no event definition covers (and `catch_all_notifications`
    /// is off): dropped, as the original does.
    Undistilled {
        /// The notification's event_type.
        event_type: String,
    },
    /// A notification that could not be turned into an event.
    DistillFailed(DistillError),
}

impl EventOutcome {
    /// How the ingest counters count it.
    pub fn metric(&self) -> crate::metrics::Ingested {
        use crate::metrics::Ingested;
        match self {
            EventOutcome::Saved { .. } => Ingested::Saved,
            EventOutcome::Duplicate => Ingested::Duplicate,
            EventOutcome::Rejected(_) | EventOutcome::DistillFailed(_) => Ingested::Invalid,
            EventOutcome::Failed(_) => Ingested::Failed,
            EventOutcome::Undistilled { .. } => Ingested::Undistilled,
        }
    }

    /// Why the event was not saved, as reports print it; `None` when it was
    /// saved or already stored.
    pub fn rejection(&self) -> Option<String> {
        match self {
            EventOutcome::Saved { .. } | EventOutcome::Duplicate => None,
            EventOutcome::Rejected(e) => Some(e.to_string()),
            EventOutcome::Failed(reason) => Some(reason.clone()),
            EventOutcome::Undistilled { event_type } => {
                Some(format!("no event definition covers event_type {event_type:?}"))
            }
            EventOutcome::DistillFailed(e) => Some(e.to_string()),
        }
    }
}

/// What a manager matches with: the trigger definitions, the distiller and
/// the debug counters of those triggers. A reload swaps it whole.
#[derive(Debug)]
pub struct Definitions {
    /// Trigger definitions.
    pub triggers: Arc<TriggerSet>,
    /// Turns notifications into events.
    pub distiller: Option<Arc<Distiller>>,
    /// Debug counters of the triggers with a `debug_level`.
    pub debug: Arc<TriggerDebug>,
}

impl Definitions {
    fn new(triggers: Arc<TriggerSet>, distiller: Option<Arc<Distiller>>) -> Arc<Definitions> {
        let debug = Arc::new(TriggerDebug::new(&triggers));
        Arc::new(Definitions { triggers, distiller, debug })
    }
}

/// Matches events against triggers and saves them. Cheap to clone; clones
/// share the definitions, so [`TriggerManager::set_definitions`] reaches all.
#[derive(Debug, Clone)]
pub struct TriggerManager {
    storage: Arc<dyn Storage>,
    defs: Live<Definitions>,
    clock: Arc<dyn Clock>,
    source: &'static str,
    /// The group-commit batcher of [`TriggerManager::add_event`], started on
    /// first use (shared by clones with the same storage and clock).
    group: Arc<OnceLock<GroupCommit>>,
}

impl TriggerManager {
    /// A manager over `storage` with the given triggers and clock.
    pub fn new(storage: Arc<dyn Storage>, triggers: Arc<TriggerSet>, clock: Arc<dyn Clock>) -> TriggerManager {
        TriggerManager {
            storage,
            defs: Live::new(Definitions::new(triggers, None)),
            clock,
            source: "library",
            group: Arc::new(OnceLock::new()),
        }
    }

    /// Swaps in new trigger definitions and distiller for this manager and
    /// every clone of it. A batch already being matched finishes with the
    /// definitions it started with; the next batch uses the new ones.
    pub fn set_definitions(&self, triggers: Arc<TriggerSet>, distiller: Option<Arc<Distiller>>) {
        self.defs.set(Definitions::new(triggers, distiller));
    }

    /// The definitions in force (a snapshot).
    pub fn definitions(&self) -> Arc<Definitions> {
        self.defs.get()
    }

    /// Names where this manager's events come from (`cli`, `amqp`, ...): the
    /// `source` label of `winchester_events_received_total`.
    pub fn with_source(mut self, source: &'static str) -> TriggerManager {
        self.source = source;
        self
    }

    /// The same manager with another clock (e.g. a replay clock that follows
    /// event timestamps).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> TriggerManager {
        self.clock = clock;
        // The batcher judges events by its clock: this manager gets its own.
        self.group = Arc::new(OnceLock::new());
        self
    }

    /// Adds the distiller that [`TriggerManager::add_notification`] uses.
    pub fn with_distiller(mut self, distiller: Arc<Distiller>) -> TriggerManager {
        self.defs = Live::new(Definitions::new(self.triggers(), Some(distiller)));
        self
    }

    /// Turns a raw OpenStack notification (an oslo v2 envelope is unwrapped)
    /// into an event, without saving it. `Ok(None)`: no definition covers it.
    #[allow(clippy::result_large_err)] // DistillError carries the failing definition, path and value
    pub fn distill(&self, notification: &serde_json::Value) -> Result<Option<Event>, DistillError> {
        distill_with(&self.definitions(), notification)
    }

    /// Distills a raw notification and adds the event (see
    /// [`TriggerManager::add_event`]; concurrent calls share transactions).
    pub async fn add_notification(&self, notification: &serde_json::Value) -> Result<EventOutcome, EngineError> {
        let defs = self.definitions();
        let distilled = distill_batch_with(&defs, self.source, std::slice::from_ref(notification)).await;
        match one_for_one("distill", 1, distilled)?.remove(0) {
            Ok(event) => match plan_with(&defs, event) {
                Ok(plan) => self.add_planned(plan).await,
                Err(e) => Ok(self.counted(EventOutcome::Rejected(e))),
            },
            // Counted by distill_batch_with.
            Err(outcome) => Ok(outcome),
        }
    }

    /// Distills and adds a batch of notifications in one transaction; each gets
    /// its own outcome.
    #[allow(clippy::result_large_err)] // DistillError carries the failing definition, path and value
    pub async fn add_notifications(
        &self,
        notifications: &[serde_json::Value],
    ) -> Result<Vec<EventOutcome>, EngineError> {
        let defs = self.definitions();
        let mut outcomes: Vec<Option<EventOutcome>> = Vec::with_capacity(notifications.len());
        let mut events = Vec::new();
        let mut slots = Vec::new();
        for d in distill_batch_with(&defs, self.source, notifications).await {
            match d {
                Ok(e) => {
                    slots.push(outcomes.len());
                    outcomes.push(None);
                    events.push(e);
                }
                Err(o) => outcomes.push(Some(o)),
            }
        }
        let n = events.len();
        let events = events.into_iter().map(|e| (e, None)).collect();
        let added = one_for_one("add_events", n, self.add_events_in(&defs, events).await?)?;
        for (slot, o) in slots.into_iter().zip(added) {
            outcomes[slot] = Some(o);
        }
        filled(outcomes)
    }

    /// Distills a batch of raw notifications without saving them: each one's
    /// event, or the outcome it ends with (`Undistilled`, `DistillFailed`),
    /// which is counted in the ingest metrics here. Trait plugins that may
    /// block run off the async threads.
    #[allow(clippy::result_large_err)] // DistillError carries the failing definition, path and value
    pub async fn distill_batch(&self, notifications: &[serde_json::Value]) -> Vec<Result<Event, EventOutcome>> {
        distill_batch_with(&self.definitions(), self.source, notifications).await
    }

    /// Adds events through the group-commit batcher (see
    /// [`TriggerManager::add_event`]): they share transactions with every
    /// other caller's, at most [`crate::group_commit::MAX_GROUP`] events per
    /// transaction, and this returns once each has committed or failed.
    ///
    /// With a `queue_bound`, nothing is queued ([`QueueFull`]) when more than
    /// that many events would then be waiting for their commit (unless none
    /// is waiting). Every event gets its own outcome, in order: invalid ones
    /// `Rejected`, ones the database refuses alone `Failed`; `Err` is a
    /// transient failure (a lost connection, the database down) that left the
    /// event unsaved, free to be sent again (a retry of an event that did
    /// commit comes back `Duplicate`).
    pub async fn add_events_grouped(
        &self,
        events: Vec<Event>,
        queue_bound: Option<usize>,
    ) -> Result<Vec<Result<EventOutcome, StorageError>>, QueueFull> {
        let group = self.group();
        let reservation = match queue_bound {
            Some(bound) => group.try_reserve(events.len(), bound)?,
            None => group.reserve(events.len()),
        };
        let defs = self.definitions();
        let mut outcomes: Vec<Option<Result<EventOutcome, StorageError>>> = Vec::with_capacity(events.len());
        let mut slots = Vec::with_capacity(events.len());
        let mut plans = Vec::with_capacity(events.len());
        for (planned, ()) in plan_batch(&defs, events.into_iter().map(|e| (e, ())).collect()) {
            match planned {
                Ok(p) => {
                    slots.push(outcomes.len());
                    outcomes.push(None);
                    plans.push(p);
                }
                Err(e) => outcomes.push(Some(Ok(EventOutcome::Rejected(e)))),
            }
        }
        let results = reservation.ingest(plans).await;
        for (slot, (plan, r)) in slots.iter().zip(results) {
            outcomes[*slot] = Some(match r {
                Ok(r) => Ok(record(&defs, &plan, r)),
                Err(e) if e.is_retryable() => Err(e),
                Err(e) => {
                    tracing::warn!(message_id = %plan.event.message_id, error = %e, "Event not saved.");
                    Ok(EventOutcome::Failed(format!("message_id {:?}: {e}", plan.event.message_id)))
                }
            });
        }
        // A batcher that stopped without answering leaves slots empty: say
        // so for each (nothing is made up).
        let outcomes: Vec<Result<EventOutcome, StorageError>> = outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(StorageError::Unavailable("the ingest batcher stopped before answering".into()))
                })
            })
            .collect();
        crate::metrics::ingested(
            self.source,
            outcomes.iter().filter_map(|o| o.as_ref().ok()).map(EventOutcome::metric),
        );
        Ok(outcomes)
    }

    /// Events waiting in the group-commit queue for their commit.
    pub fn queued_events(&self) -> usize {
        self.group.get().map_or(0, GroupCommit::queued)
    }

    /// The group-commit batcher, started on first use.
    fn group(&self) -> &GroupCommit {
        self.group.get_or_init(|| GroupCommit::start(self.storage.clone(), self.clock.clone()))
    }

    /// The trigger definitions in force (a snapshot).
    pub fn triggers(&self) -> Arc<TriggerSet> {
        self.definitions().triggers.clone()
    }

    /// The storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Debug counters of the triggers with a `debug_level` (of the definitions in force).
    pub fn debug(&self) -> Arc<TriggerDebug> {
        self.definitions().debug.clone()
    }

    /// Validates an event and works out every stream it joins (no I/O).
    pub fn plan(&self, event: Event) -> Result<EventPlan, EventError> {
        plan_with(&self.definitions(), event)
    }

    /// Adds one event: saves it, appends it to the stream of every trigger it
    /// matches (opening streams as needed) and marks streams ready to fire.
    /// A duplicate `message_id` changes nothing and is reported as such.
    ///
    /// Group commit: calls made while an earlier one is committing share the
    /// next transaction (see [`crate::group_commit`]); this returns only once
    /// the event (with all its memberships) is committed, and a database error
    /// caused by this event reaches this caller alone.
    pub async fn add_event(&self, event: Event) -> Result<EventOutcome, EngineError> {
        let plan = self.plan(event).inspect_err(|e| {
            self.counted(EventOutcome::Rejected(e.clone()));
        })?;
        self.add_planned(plan).await
    }

    /// Saves one planned event through the group-commit batcher.
    async fn add_planned(&self, plan: EventPlan) -> Result<EventOutcome, EngineError> {
        let outcome = match self.group().ingest(plan).await {
            Ok((plan, r)) => record(&self.definitions(), &plan, r),
            Err(e) => {
                if !e.is_retryable() {
                    self.counted(EventOutcome::Failed(e.to_string()));
                }
                return Err(e.into());
            }
        };
        Ok(self.counted(outcome))
    }

    /// Counts one outcome in the metrics and hands it back.
    fn counted(&self, o: EventOutcome) -> EventOutcome {
        crate::metrics::ingested(self.source, [o.metric()]);
        o
    }

    /// Adds a batch in one transaction (one round trip per distinct stream, not
    /// per event). Invalid events are rejected without affecting the others. If
    /// the batch fails in the database for a reason other than a transient one,
    /// each event is retried alone so one bad event cannot sink the rest.
    pub async fn add_events(&self, events: Vec<Event>) -> Result<Vec<EventOutcome>, EngineError> {
        self.add_events_at(events.into_iter().map(|e| (e, None)).collect()).await
    }

    /// [`TriggerManager::add_events`], each event judged at its own replay
    /// arrival when it has one (see [`crate::replay`]).
    pub(crate) async fn add_events_at(
        &self,
        events: Vec<(Event, Option<ReplayAt>)>,
    ) -> Result<Vec<EventOutcome>, EngineError> {
        self.add_events_in(&self.definitions(), events).await
    }

    /// [`TriggerManager::add_events_at`] under the given definitions.
    async fn add_events_in(
        &self,
        defs: &Definitions,
        events: Vec<(Event, Option<ReplayAt>)>,
    ) -> Result<Vec<EventOutcome>, EngineError> {
        let mut outcomes: Vec<Option<EventOutcome>> = Vec::with_capacity(events.len());
        let mut plans = Vec::with_capacity(events.len());
        let mut slots = Vec::with_capacity(events.len());
        for (planned, replay) in plan_batch(defs, events) {
            match planned {
                Ok(mut p) => {
                    p.replay = replay;
                    slots.push(outcomes.len());
                    outcomes.push(None);
                    plans.push(p);
                }
                Err(e) => outcomes.push(Some(EventOutcome::Rejected(e))),
            }
        }
        let now = self.clock.now();
        match self.storage.ingest(&plans, now).await {
            Ok(res) => {
                let res = one_for_one("ingest", plans.len(), res)?;
                for ((slot, r), p) in slots.iter().zip(res).zip(&plans) {
                    outcomes[*slot] = Some(record(defs, p, r));
                }
            }
            Err(e) if e.is_retryable() || plans.len() == 1 => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, events = plans.len(), "Batch failed; retrying it in halves.");
                let mut results = Vec::with_capacity(plans.len());
                let (a, b) = plans.split_at(plans.len() / 2);
                results.extend(ingest_split(self.storage.as_ref(), a, now).await);
                results.extend(ingest_split(self.storage.as_ref(), b, now).await);
                for ((slot, p), r) in slots.iter().zip(&plans).zip(results) {
                    outcomes[*slot] = Some(match r {
                        Ok(r) => record(defs, p, r),
                        Err(e) if e.is_retryable() => return Err(e.into()),
                        Err(e) => {
                            tracing::warn!(message_id = %p.event.message_id, error = %e, "Event not saved.");
                            EventOutcome::Failed(format!("message_id {:?}: {e}", p.event.message_id))
                        }
                    });
                }
            }
        }
        free_elsewhere(plans);
        let outcomes = filled(outcomes)?;
        crate::metrics::ingested(self.source, outcomes.iter().map(EventOutcome::metric));
        Ok(outcomes)
    }
}

/// Drops a saved batch's plans (every event's traits and memberships: a
/// thousand events take a millisecond or two to free) on a thread of the
/// runtime's blocking pool, so the caller has its outcomes without waiting
/// for that; without a runtime, here.
fn free_elsewhere<T: Send + 'static>(garbage: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(move || drop(garbage))),
        Err(_) => drop(garbage),
    }
}

/// Events per thread below which a batch is planned on the calling thread
/// alone (starting a thread costs about as much as planning a few dozen events).
const PLAN_CHUNK_MIN: usize = 128;

/// [`plan_with`] for every event of a batch, each with its tag, in order.
/// Storage has nothing to do until planning ends, so a long batch is planned
/// on all of the machine's cores.
fn plan_batch<T: Send>(defs: &Definitions, events: Vec<(Event, T)>) -> Vec<(Result<EventPlan, EventError>, T)> {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = cores.min(events.len() / PLAN_CHUNK_MIN).max(1);
    let plan_all = |events: Vec<(Event, T)>| -> Vec<_> {
        let mut types = TypeVerdicts::new(&defs.triggers);
        events
            .into_iter()
            .map(|(e, tag)| {
                let verdicts = types.get(&e.event_type);
                (plan_given_types(defs, verdicts, e), tag)
            })
            .collect()
    };
    if threads == 1 {
        return plan_all(events);
    }
    let mut chunks = split_in(events, threads).into_iter();
    let first = chunks.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let others: Vec<_> = chunks.map(|c| scope.spawn(move || plan_all(c))).collect();
        let mut planned = plan_all(first);
        for other in others {
            planned.extend(other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        planned
    })
}

/// `items` cut into `n` consecutive chunks of nearly equal length (fewer when
/// there are fewer items), in order.
fn split_in<T>(mut items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let per_chunk = items.len().div_ceil(n.max(1)).max(1);
    let mut chunks = Vec::with_capacity(n);
    while items.len() > per_chunk {
        let last_start = (items.len() - 1) / per_chunk * per_chunk;
        chunks.push(items.split_off(last_start));
    }
    chunks.push(items);
    chunks.reverse();
    chunks
}

/// Validates an event and works out every stream it joins under `defs` (no I/O).
fn plan_with(defs: &Definitions, event: Event) -> Result<EventPlan, EventError> {
    plan_given_types(defs, &defs.triggers.type_verdicts(&event.event_type), event)
}

/// [`plan_with`], given each trigger's verdicts on the event's type
/// ([`TriggerSet::type_verdicts`], or a batch's [`TypeVerdicts`]).
fn plan_given_types(defs: &Definitions, verdicts: &[Vec<bool>], event: Event) -> Result<EventPlan, EventError> {
    event.validate()?;
    let mut memberships = Vec::new();
    for (trigger, types) in defs.triggers.iter().zip(verdicts) {
        match trigger.match_event_given_types(&event, types) {
            Ok((_, dist)) => {
                let fire_hits = trigger.fire_hits_given_types(&event, types);
                defs.debug.check(&trigger.name, "Match", true, String::new);
                for (i, hit) in fire_hits.iter().enumerate() {
                    defs.debug.check(&trigger.name, "Fire", *hit, || {
                        format!("fire_criteria[{i}]: not matched by {}", event.event_type)
                    });
                }
                memberships.push(Membership { trigger: trigger.clone(), dist_key: dist.key(), dist, fire_hits });
            }
            Err(reason) => {
                defs.debug.check(&trigger.name, "Match", false, || no_match_reason(&reason));
            }
        }
    }
    Ok(EventPlan { event, memberships, replay: None })
}

/// [`TriggerManager::distill_batch`] under `defs`, counted as from `source`.
#[allow(clippy::result_large_err)] // DistillError carries the failing definition, path and value
async fn distill_batch_with(
    defs: &Definitions,
    source: &'static str,
    notifications: &[serde_json::Value],
) -> Vec<Result<Event, EventOutcome>> {
    let distilled: Vec<Result<Option<Event>, DistillError>> = match &defs.distiller {
        // Plugins that may block (a Python interpreter lock) run off the async threads.
        Some(d) if d.has_blocking_plugins() => {
            let (d, batch) = (d.clone(), notifications.to_vec());
            match tokio::task::spawn_blocking(move || batch.iter().map(|n| d.to_event(n)).collect()).await {
                Ok(v) => v,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => {
                    let reason = format!("distilling was cancelled: {e}");
                    notifications.iter().map(|_| Err(DistillError::BadEnvelope { reason: reason.clone() })).collect()
                }
            }
        }
        _ => notifications.iter().map(|n| distill_with(defs, n)).collect(),
    };
    let out: Vec<Result<Event, EventOutcome>> = notifications
        .iter()
        .zip(distilled)
        .map(|(n, d)| match d {
            Ok(Some(e)) => Ok(e),
            Ok(None) => {
                let event_type = n.get("event_type").and_then(|v| v.as_str()).unwrap_or("?").to_string();
                tracing::info!(%event_type, "Dropping notification no event definition covers.");
                Err(EventOutcome::Undistilled { event_type })
            }
            Err(e) => Err(EventOutcome::DistillFailed(e)),
        })
        .collect();
    // Adding the events counts them; count the notifications that never became one.
    crate::metrics::ingested(source, out.iter().filter_map(|o| o.as_ref().err()).map(EventOutcome::metric));
    out
}

#[allow(clippy::result_large_err)] // DistillError carries the failing definition, path and value
fn distill_with(defs: &Definitions, notification: &serde_json::Value) -> Result<Option<Event>, DistillError> {
    match &defs.distiller {
        Some(d) => d.to_event(notification),
        None => Err(DistillError::BadEnvelope { reason: "no distiller_config is configured".into() }),
    }
}

/// Every slot of a batch's outcomes, or an error naming the gap (never a
/// made-up outcome).
fn filled(outcomes: Vec<Option<EventOutcome>>) -> Result<Vec<EventOutcome>, EngineError> {
    let expected = outcomes.len();
    let got: Vec<EventOutcome> = outcomes.into_iter().flatten().collect();
    Ok(one_for_one("event batch", expected, got)?)
}

/// The engine's outcome for a stored event, counted for debugging.
fn record(defs: &Definitions, plan: &EventPlan, o: IngestOutcome) -> EventOutcome {
    match o {
        IngestOutcome::Saved { event_id, stream_ids, opened } => {
            for (m, opened) in plan.memberships.iter().zip(opened) {
                defs.debug.bump(&m.trigger.name, "Added events", 1);
                if opened {
                    crate::metrics::stream_created(&m.trigger.name);
                }
            }
            EventOutcome::Saved { event_id, stream_ids }
        }
        IngestOutcome::Duplicate => EventOutcome::Duplicate,
    }
}

#[cfg(test)]
mod tests {
    use super::split_in;

    #[test]
    fn split_in_keeps_order_and_balances() {
        for len in [0usize, 1, 5, 7, 256, 1000, 1001] {
            for n in 1..=5 {
                let chunks = split_in((0..len).collect(), n);
                assert!(chunks.len() <= n.max(1), "{len} in {n}: {} chunks", chunks.len());
                let longest = chunks.iter().map(Vec::len).max().unwrap_or(0);
                assert!(chunks.iter().all(|c| longest - c.len() <= n), "{len} in {n}: {chunks:?}");
                assert_eq!(chunks.concat(), (0..len).collect::<Vec<_>>(), "{len} in {n}");
            }
        }
        assert_eq!(split_in((0..1000).collect(), 3).iter().map(Vec::len).collect::<Vec<_>>(), [334, 334, 332]);
    }
}
