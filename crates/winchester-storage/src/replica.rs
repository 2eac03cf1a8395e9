//! Reads from a hot standby (`database.read_url`): [`ReadRouter`], a
//! [`QueryStore`] that answers from the standby while its replica lag is
//! within a bound, and from the primary otherwise.
//!
//! The lag is measured, not asked of the standby: every
//! [`LAG_PROBE_PERIOD`] the router reads the primary's WAL position (the
//! position written so far) and the standby's (the position replayed, see
//! [`WalPosition`]). The standby holds everything the primary had written at
//! the newest probe whose position it has replayed, so the lag is the time
//! since that probe, 0 when it has replayed the latest; an upper bound, to
//! within one probe period. It works the same on a quiet primary (no false
//! lag from an old last transaction) and behind HAProxy or PgBouncer.
//!
//! Reads go to the primary, and this is logged once when it starts and once
//! when it ends, while the lag is beyond the bound, while the standby cannot
//! be reached, and while the primary cannot (then the lag is unknown; the
//! reads fail as they would without a standby). A read that fails on the
//! standby with a retryable error (the server went away, a query cancelled
//! by recovery) is answered by the primary at once, so that losing the
//! standby costs no request an error.
//!
//! Only the [`QueryStore`] part is routed: writes, the live tail and every
//! read made before a write stay on the primary by taking the primary's
//! [`Storage`] (the caller decides which it needs).

use crate::query::{Count, EventFilter, StoredEvent, StreamCount, StreamFilter, Transition};
use crate::{QueryStore, Result, Storage, StorageError, Stream};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the replica lag is measured.
pub const LAG_PROBE_PERIOD: Duration = Duration::from_secs(1);

/// Longest wait for one side's WAL position; a server that does not answer
/// within it counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes kept while the standby has not replayed them (an hour at one a
/// second); older ones are dropped, the lag keeps growing from the newest
/// replayed.
const MAX_SAMPLES: usize = 3600;

/// Where a server's data stands in the write-ahead log.
#[async_trait]
pub trait WalPosition: Send + Sync {
    /// A byte position in the WAL: on a primary, what it has written; on a
    /// standby (in recovery), what it has replayed.
    async fn wal_position(&self) -> Result<u64>;
}

/// Which server answers the reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTarget {
    /// The hot standby (`database.read_url`).
    Standby,
    /// The primary (`database.url`).
    Primary,
}

impl ReadTarget {
    /// `standby` or `primary`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadTarget::Standby => "standby",
            ReadTarget::Primary => "primary",
        }
    }
}

/// Why reads went to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The lag is beyond `max_read_lag`.
    Lagging,
    /// The standby could not be reached (or its position read).
    StandbyUnreachable,
    /// The primary could not be reached, so the lag is unknown.
    PrimaryUnreachable,
}

/// The standby as last measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    /// The replica lag; `None` while unknown (one side unreachable, or not
    /// measured yet).
    pub lag: Option<Duration>,
    /// Where reads go now.
    pub target: ReadTarget,
    /// Why the primary, when it is.
    pub fallback: Option<Fallback>,
    /// What went wrong, when something did (for `/readyz` and the console).
    pub detail: Option<String>,
}

impl ReplicaStatus {
    fn unknown() -> ReplicaStatus {
        ReplicaStatus {
            lag: None,
            target: ReadTarget::Primary,
            fallback: Some(Fallback::StandbyUnreachable),
            detail: Some("not measured yet".into()),
        }
    }

    /// One line for a log or a page: where reads go and why.
    pub fn describe(&self, max_lag: Duration) -> String {
        let lag = self.lag.map_or("unknown".to_string(), |l| format!("{:.1}s", l.as_secs_f64()));
        match self.fallback {
            None => format!("reads from the standby (replica lag {lag})"),
            Some(Fallback::Lagging) => {
                format!(
                    "reads from the primary: replica lag {lag} is beyond max_read_lag {:.1}s",
                    max_lag.as_secs_f64()
                )
            }
            Some(Fallback::StandbyUnreachable) => format!(
                "reads from the primary: the standby is unreachable ({})",
                self.detail.as_deref().unwrap_or("no answer")
            ),
            Some(Fallback::PrimaryUnreachable) => format!(
                "reads from the primary: the primary is unreachable, replica lag unknown ({})",
                self.detail.as_deref().unwrap_or("no answer")
            ),
        }
    }
}

/// Probes taken and not yet replayed by the standby, oldest first, and the
/// time of the newest one it has replayed.
#[derive(Debug, Default)]
struct Samples {
    pending: VecDeque<(Instant, u64)>,
    replayed_at: Option<Instant>,
    /// When the first probe since the primary was last reachable was taken.
    since: Option<Instant>,
}

impl Samples {
    /// Records the primary's position at `at`; returns the lag given the
    /// standby's `replayed` position.
    fn lag(&mut self, at: Instant, primary: u64, replayed: u64) -> Duration {
        self.since.get_or_insert(at);
        self.pending.push_back((at, primary));
        if self.pending.len() > MAX_SAMPLES {
            self.pending.pop_front();
        }
        while let Some(&(t, pos)) = self.pending.front() {
            if pos > replayed {
                break;
            }
            self.replayed_at = Some(t);
            self.pending.pop_front();
        }
        if self.pending.is_empty() {
            return Duration::ZERO;
        }
        // Behind: everything up to the newest replayed probe is there.
        self.replayed_at.or(self.since).map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Forgets every probe (the primary went away: the next may be another server).
    fn reset(&mut self) {
        *self = Samples::default();
    }
}

/// The reads of `winchester serve` (listings, counts, event queries,
/// console pages): from the standby while its lag is within `max_lag`,
/// else from the primary. See the module docs.
pub struct ReadRouter {
    primary: Arc<dyn Storage>,
    standby: Arc<dyn Storage>,
    primary_wal: Arc<dyn WalPosition>,
    standby_wal: Arc<dyn WalPosition>,
    max_lag: Duration,
    samples: Mutex<Samples>,
    status: watch::Sender<ReplicaStatus>,
    /// The standby's name for logs (its URL, password hidden).
    name: String,
    /// Whether a measurement has been made (the first is always logged).
    measured: AtomicBool,
}

impl std::fmt::Debug for ReadRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadRouter").field("standby", &self.name).field("max_lag", &self.max_lag).finish()
    }
}

impl ReadRouter {
    /// A router over `primary` and `standby` (named `name` in logs), with
    /// their WAL positions; reads go to the primary until [`ReadRouter::probe`]
    /// has measured the standby.
    pub fn new(
        primary: (Arc<dyn Storage>, Arc<dyn WalPosition>),
        standby: (Arc<dyn Storage>, Arc<dyn WalPosition>),
        max_lag: Duration,
        name: impl Into<String>,
    ) -> ReadRouter {
        ReadRouter {
            primary: primary.0,
            primary_wal: primary.1,
            standby: standby.0,
            standby_wal: standby.1,
            max_lag,
            samples: Mutex::default(),
            status: watch::channel(ReplicaStatus::unknown()).0,
            name: name.into(),
            measured: AtomicBool::new(false),
        }
    }

    /// The bound on the lag (`database.max_read_lag`).
    pub fn max_lag(&self) -> Duration {
        self.max_lag
    }

    /// The standby as last measured.
    pub fn status(&self) -> ReplicaStatus {
        self.status.borrow().clone()
    }

    /// Tells of every new measurement.
    pub fn subscribe(&self) -> watch::Receiver<ReplicaStatus> {
        self.status.subscribe()
    }

    /// Measures the lag once and decides where reads go.
    pub async fn probe(&self) {
        let at = Instant::now();
        let primary = match tokio::time::timeout(PROBE_TIMEOUT, self.primary_wal.wal_position()).await {
            Ok(Ok(p)) => p,
            failed => {
                self.lock().reset();
                return self.set(None, Some(Fallback::PrimaryUnreachable), Some(probe_error(failed)));
            }
        };
        let replayed = match tokio::time::timeout(PROBE_TIMEOUT, self.standby_wal.wal_position()).await {
            Ok(Ok(r)) => r,
            failed => return self.set(None, Some(Fallback::StandbyUnreachable), Some(probe_error(failed))),
        };
        let lag = self.lock().lag(at, primary, replayed);
        let fallback = (lag > self.max_lag).then_some(Fallback::Lagging);
        self.set(Some(lag), fallback, None);
    }

    /// Probes every [`LAG_PROBE_PERIOD`] until the router is dropped.
    pub fn spawn_probe(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let router: Weak<ReadRouter> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(r) = router.upgrade() else { return };
                r.probe().await;
                drop(r);
                tokio::time::sleep(LAG_PROBE_PERIOD).await;
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a measurement; logs when where reads go (or why) changes.
    fn set(&self, lag: Option<Duration>, fallback: Option<Fallback>, detail: Option<String>) {
        let target = if fallback.is_some() { ReadTarget::Primary } else { ReadTarget::Standby };
        let new = ReplicaStatus { lag, target, fallback, detail };
        let max_lag = self.max_lag;
        let name = &self.name;
        let first = !self.measured.swap(true, Ordering::Relaxed);
        self.status.send_modify(|old| {
            if first || old.fallback != new.fallback {
                match new.fallback {
                    None => tracing::info!(standby = %name, "{}.", capitalized(&new.describe(max_lag))),
                    Some(_) => tracing::warn!(standby = %name, "{}.", capitalized(&new.describe(max_lag))),
                }
            }
            *old = new;
        });
    }

    /// The store a read goes to now.
    fn target(&self) -> Option<&dyn Storage> {
        (self.status.borrow().target == ReadTarget::Standby).then_some(self.standby.as_ref())
    }

    /// A read on the standby failed with `e`: a server gone means reads go
    /// to the primary until a probe finds it again.
    fn standby_failed(&self, e: &StorageError) {
        if matches!(e, StorageError::Unavailable(_)) {
            let lag = self.status.borrow().lag;
            self.set(lag, Some(Fallback::StandbyUnreachable), Some(e.to_string()));
        }
    }
}

fn probe_error(failed: std::result::Result<Result<u64>, tokio::time::error::Elapsed>) -> String {
    match failed {
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
        Ok(Ok(_)) => String::new(),
    }
}

fn capitalized(text: &str) -> String {
    let mut c = text.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// Runs `$call` (an expression on `$s: &dyn Storage`) on the standby when
/// reads go there, once more on the primary when that failed retryably.
macro_rules! routed {
    ($router:expr, |$s:ident| $call:expr) => {{
        let router = $router;
        match router.target() {
            Some($s) => match $call.await {
                Err(e) if e.is_retryable() => {
                    router.standby_failed(&e);
                    let $s = router.primary.as_ref();
                    $call.await
                }
                r => r,
            },
            None => {
                let $s = router.primary.as_ref();
                $call.await
            }
        }
    }};
}

#[async_trait]
impl QueryStore for ReadRouter {
    async fn list_streams(&self, filter: &StreamFilter) -> Result<Vec<Stream>> {
        routed!(self, |s| s.list_streams(filter))
    }

    async fn count_streams_upto(&self, filter: &StreamFilter, cap: Option<u64>) -> Result<Count> {
        routed!(self, |s| s.count_streams_upto(filter, cap))
    }

    async fn stream_counts_upto(&self, cap: Option<u64>) -> Result<Vec<StreamCount>> {
        routed!(self, |s| s.stream_counts_upto(cap))
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>> {
        routed!(self, |s| s.list_events(filter))
    }

    async fn count_events_upto(&self, filter: &EventFilter, cap: Option<u64>) -> Result<Count> {
        routed!(self, |s| s.count_events_upto(filter, cap))
    }

    async fn get_event(&self, message_id: &str) -> Result<Option<StoredEvent>> {
        routed!(self, |s| s.get_event(message_id))
    }

    async fn event_streams(&self, event_id: i64) -> Result<Vec<i64>> {
        routed!(self, |s| s.event_streams(event_id))
    }

    async fn events_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<StoredEvent>> {
        routed!(self, |s| s.events_since(after, also, limit))
    }

    async fn transitions_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<Transition>> {
        routed!(self, |s| s.transitions_since(after, also, limit))
    }

    async fn transitions_from(&self, since: DateTime<Utc>, limit: u32) -> Result<Vec<Transition>> {
        routed!(self, |s| s.transitions_from(since, limit))
    }

    async fn latest_ids(&self) -> Result<(i64, i64)> {
        routed!(self, |s| s.latest_ids())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lag is the time since the newest probe the standby has replayed;
    /// 0 once it has replayed the latest.
    #[test]
    fn lag_is_the_age_of_the_newest_replayed_probe() {
        let mut s = Samples::default();
        let t0 = Instant::now() - Duration::from_secs(10);
        assert_eq!(s.lag(t0, 100, 100), Duration::ZERO, "caught up");
        let t1 = t0 + Duration::from_secs(1);
        let behind = s.lag(t1, 200, 100);
        assert!(behind >= Duration::from_secs(8) && behind < Duration::from_secs(11), "{behind:?}");
        let t2 = t0 + Duration::from_secs(5);
        let behind = s.lag(t2, 300, 250);
        assert!(behind >= Duration::from_secs(8) && behind < Duration::from_secs(10), "from t1: {behind:?}");
        assert_eq!(s.lag(Instant::now(), 300, 300), Duration::ZERO);
        // A quiet primary (the position does not move) shows no lag.
        assert_eq!(s.lag(Instant::now(), 300, 300), Duration::ZERO);
    }

    /// Behind from the first probe: the lag counts from it.
    #[test]
    fn behind_from_the_first_probe_counts_from_it() {
        let mut s = Samples::default();
        let t0 = Instant::now() - Duration::from_secs(3);
        let lag = s.lag(t0, 500, 100);
        assert!(lag >= Duration::from_secs(3), "{lag:?}");
        s.reset();
        assert_eq!(s.lag(Instant::now(), 50, 100), Duration::ZERO);
    }

    #[test]
    fn describe_says_where_and_why() {
        let max = Duration::from_secs(5);
        let mut st = ReplicaStatus {
            lag: Some(Duration::from_millis(1200)),
            target: ReadTarget::Standby,
            fallback: None,
            detail: None,
        };
        assert_eq!(st.describe(max), "reads from the standby (replica lag 1.2s)");
        st.fallback = Some(Fallback::Lagging);
        st.lag = Some(Duration::from_secs(7));
        assert_eq!(st.describe(max), "reads from the primary: replica lag 7.0s is beyond max_read_lag 5.0s");
        st.fallback = Some(Fallback::StandbyUnreachable);
        st.detail = Some("refused".into());
        assert!(st.describe(max).contains("standby is unreachable (refused)"));
    }
}
