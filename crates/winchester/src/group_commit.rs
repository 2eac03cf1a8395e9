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

use chrono::{DateTime, Utc};
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

struct Job {
    plan: EventPlan,
    reply: oneshot::Sender<(EventPlan, PlanResult)>,
}

/// The handle callers send plans through; the batcher task ends when the last
/// handle is dropped.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("message_id", &self.plan.event.message_id).finish()
    }
}

impl GroupCommit {
    /// Starts the batcher task on the current tokio runtime.
    pub(crate) fn start(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> GroupCommit {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(batcher(storage, clock, rx));
        GroupCommit { jobs }
    }

    /// Saves one plan in the next group commit; returns once it committed (or
    /// failed), handing the plan back with its result. `Err(plan)`: the
    /// batcher is gone (its runtime shut down); nothing was saved.
    #[allow(clippy::type_complexity)]
    pub(crate) async fn ingest(
        &self,
        plan: EventPlan,
    ) -> Result<Result<(EventPlan, IngestOutcome), StorageError>, EventPlan> {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(Job { plan, reply }) {
            return Err(job.plan);
        }
        Ok(match answer.await {
            Ok((plan, r)) => r.map(|o| (plan, o)),
            Err(_) => Err(StorageError::Unavailable("the ingest batcher stopped before answering".into())),
        })
    }
}

async fn batcher(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        // The short wait: let callers that were just answered (or are about
        // to call) queue their next event, as long as more keep arriving.
        for _ in 0..GATHER_ROUNDS {
            tokio::task::yield_now().await;
            let before = jobs.len();
            while jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            if jobs.len() == before || jobs.len() >= MAX_GROUP {
                break;
            }
        }
        let (plans, replies): (Vec<EventPlan>, Vec<oneshot::Sender<(EventPlan, PlanResult)>>) =
            jobs.into_iter().map(|j| (j.plan, j.reply)).unzip();
        tracing::trace!(events = plans.len(), "Group commit.");
        let results = ingest_split(storage.as_ref(), &plans, clock.now()).await;
        for ((reply, plan), r) in replies.into_iter().zip(plans).zip(results) {
            // A caller that gave up (its future dropped) is not waiting.
            let _ = reply.send((plan, r));
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
