//! Group commit: concurrent [`TriggerManager::add_event`](crate::TriggerManager::add_event)
//! calls share transactions.
//!
//! One batcher task per trigger manager (and clock) takes the plans that
//! callers hand it: it commits whatever has queued up (at most
//! [`MAX_GROUP`] plans, after yielding while more keep arriving) in one
//! [`Storage::ingest`](winchester_storage::IngestStore::ingest), and while that commit runs, the next callers queue. Each caller awaits its own outcome, sent only
//! after the transaction holding its event committed. A batch that fails for a
//! reason other than a transient one is split in halves and each half retried
//! ([`ingest_split`]), so only the failing event's caller gets the error.
//!
//! A caller may hand in many plans at once ([`Reservation::ingest`], which
//! `POST /v1/events` uses): they ride in the same groups, in jobs of at most
//! [`MAX_GROUP`]. The number of events waiting for their commit is counted,
//! so that such a caller can be refused ([`QueueFull`]) instead of queueing
//! without bound.

use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use winchester_core::Clock;
use winchester_storage::{one_for_one, EventPlan, IngestOutcome, Storage, StorageError};

/// Most plans one group commit holds.
pub const MAX_GROUP: usize = 1000;

/// Most times the batcher yields to let more callers queue before it commits
/// (it stops as soon as a round brings nothing new): a lone caller waits
/// only for one yield.
const GATHER_ROUNDS: usize = 8;

/// One event's outcome from a (possibly split) batch.
pub(crate) type PlanResult = Result<IngestOutcome, StorageError>;

/// Up to [`MAX_GROUP`] plans of one caller, answered together.
struct Job {
    plans: Vec<EventPlan>,
    reply: oneshot::Sender<Vec<(EventPlan, PlanResult)>>,
}

/// The commit queue already holds as many events as its bound allows: nothing
/// was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the commit queue holds {queued} events waiting for their commit; {adding} more would pass its bound of {bound}"
)]
pub struct QueueFull {
    /// Events waiting for their commit.
    pub queued: usize,
    /// Events that asked to join them.
    pub adding: usize,
    /// The bound.
    pub bound: usize,
}

/// The handle callers send plans through; the batcher task ends when the last
/// handle is dropped.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    jobs: mpsc::UnboundedSender<Job>,
    /// Events handed to the batcher (or reserved for it) and not yet answered.
    queued: Arc<AtomicUsize>,
    /// For saving directly once the batcher is gone (its runtime shut down).
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("plans", &self.plans.len()).finish()
    }
}

/// Room for some events in the commit queue ([`GroupCommit::reserve`]);
/// what is not used is given back when it is dropped.
#[derive(Debug)]
pub(crate) struct Reservation<'a> {
    group: &'a GroupCommit,
    held: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.group.queued.fetch_sub(self.held, Ordering::SeqCst);
    }
}

impl Reservation<'_> {
    /// Saves `plans` (at most the reserved number) in the next group
    /// commits, [`MAX_GROUP`] at most per job; returns once every one has
    /// committed or failed, each plan handed back with its result, in order.
    pub(crate) async fn ingest(mut self, plans: Vec<EventPlan>) -> Vec<(EventPlan, PlanResult)> {
        let group = self.group;
        // What is sent is the batcher's to give back, as it answers.
        let sent = plans.len().min(self.held);
        self.held -= sent;
        drop(self);
        let mut answers = Vec::new();
        let mut plans = plans.into_iter();
        // Every job is sent before the first answer is awaited, so a caller
        // that gives up cannot leave part of its events unsent.
        loop {
            let chunk: Vec<EventPlan> = plans.by_ref().take(MAX_GROUP).collect();
            if chunk.is_empty() {
                break;
            }
            let (reply, answer) = oneshot::channel();
            answers.push(match group.jobs.send(Job { plans: chunk, reply }) {
                Ok(()) => Ok(answer),
                Err(mpsc::error::SendError(job)) => Err(job.plans),
            });
        }
        let mut out = Vec::with_capacity(sent);
        for a in answers {
            match a {
                Ok(answer) => match answer.await {
                    Ok(results) => out.extend(results),
                    // The batcher dropped the job unanswered: its plans are lost to us.
                    Err(_) => return out,
                },
                // The batcher is gone (its runtime shut down): save them here.
                Err(plans) => {
                    let results = ingest_split(group.storage.as_ref(), &plans, group.clock.now()).await;
                    group.queued.fetch_sub(plans.len(), Ordering::SeqCst);
                    out.extend(plans.into_iter().zip(results));
                }
            }
        }
        out
    }
}

impl GroupCommit {
    /// Starts the batcher task on the current tokio runtime.
    pub(crate) fn start(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> GroupCommit {
        let (jobs, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(batcher(storage.clone(), clock.clone(), rx, queued.clone()));
        GroupCommit { jobs, queued, storage, clock }
    }

    /// Events waiting for their commit.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Room for `n` events, however many are waiting.
    pub(crate) fn reserve(&self, n: usize) -> Reservation<'_> {
        self.queued.fetch_add(n, Ordering::SeqCst);
        Reservation { group: self, held: n }
    }

    /// Room for `n` events, refused when the queue would then hold more than
    /// `bound` events, unless it is empty (so a request larger than the bound
    /// is still taken, alone).
    pub(crate) fn try_reserve(&self, n: usize, bound: usize) -> Result<Reservation<'_>, QueueFull> {
        self.queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q == 0 || q.saturating_add(n) <= bound).then_some(q + n)
            })
            .map_err(|queued| QueueFull { queued, adding: n, bound })?;
        Ok(Reservation { group: self, held: n })
    }

    /// Saves one plan in the next group commit; returns once it committed (or
    /// failed), handing the plan back with its result.
    pub(crate) async fn ingest(&self, plan: EventPlan) -> Result<(EventPlan, IngestOutcome), StorageError> {
        match self.reserve(1).ingest(vec![plan]).await.pop() {
            Some((plan, r)) => r.map(|o| (plan, o)),
            None => Err(StorageError::Unavailable("the ingest batcher stopped before answering".into())),
        }
    }
}

async fn batcher(
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    queued: Arc<AtomicUsize>,
) {
    // A job that did not fit in the last group opens the next one.
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => break,
            },
        };
        let mut size = first.plans.len();
        let mut jobs = vec![first];
        // The short wait: let callers that were just answered (or are about
        // to call) queue their next events, as long as more keep arriving.
        for _ in 0..GATHER_ROUNDS {
            tokio::task::yield_now().await;
            let before = size;
            while size < MAX_GROUP && carried.is_none() {
                match rx.try_recv() {
                    Ok(j) if size + j.plans.len() > MAX_GROUP => carried = Some(j),
                    Ok(j) => {
                        size += j.plans.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            if size == before || size >= MAX_GROUP || carried.is_some() {
                break;
            }
        }
        let mut plans = Vec::with_capacity(size);
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            replies.push((job.plans.len(), job.reply));
            plans.extend(job.plans);
        }
        tracing::trace!(events = plans.len(), "Group commit.");
        let results = ingest_split(storage.as_ref(), &plans, clock.now()).await;
        let mut answered = plans.into_iter().zip(results);
        for (n, reply) in replies {
            let answer: Vec<(EventPlan, PlanResult)> = answered.by_ref().take(n).collect();
            queued.fetch_sub(n, Ordering::SeqCst);
            // A caller that gave up (its future dropped) is not waiting.
            let _ = reply.send(answer);
        }
    }
}

/// Saves `plans` in one transaction; if that fails for a reason other than a
/// transient one, splits the batch in halves and retries each, down to single
/// events, so one bad event cannot sink the rest. One result per plan.
pub(crate) async fn ingest_split(storage: &dyn Storage, plans: &[EventPlan], now: DateTime<Utc>) -> Vec<PlanResult> {
    match storage.ingest(plans, now).await.and_then(|r| one_for_one("ingest", plans.len(), r)) {
        Ok(res) => res.into_iter().map(Ok).collect(),
        Err(e) if plans.len() <= 1 => vec![Err(e)],
        Err(e) if e.is_retryable() => plans.iter().map(|_| Err(e.shared())).collect(),
        Err(e) => {
            tracing::warn!(error = %e, events = plans.len(), "Batch failed; retrying it in halves.");
            let (a, b) = plans.split_at(plans.len() / 2);
            let mut out = Box::pin(ingest_split(storage, a, now)).await;
            out.extend(Box::pin(ingest_split(storage, b, now)).await);
            out
        }
    }
}
