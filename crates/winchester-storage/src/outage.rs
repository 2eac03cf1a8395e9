//! Whether this process is waiting for its database, process-wide: every
//! loop that finds the database unavailable holds an [`Outage`] until it is
//! back (the [`RetryPolicy`](crate::RetryPolicy) of each retrying loop, the
//! wait at start, the stream gauge). The process is in an outage while at
//! least one is held; an [`observe`]r (the metrics) hears when the first
//! begins and the last ends.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A change of the process-wide state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageChange {
    /// A part of the process found the database unavailable; none had before.
    Began,
    /// The last part waiting got through, after this long.
    Ended(Duration),
}

/// How many parts wait, and since when the first did.
static STATE: Mutex<(usize, Option<Instant>)> = Mutex::new((0, None));
static OBSERVER: OnceLock<fn(OutageChange)> = OnceLock::new();

/// Sets the one function told of every [`OutageChange`] (later calls are
/// ignored). It is called with the state locked: it must not hold an
/// [`Outage`] itself.
pub fn observe(observer: fn(OutageChange)) {
    let _ = OBSERVER.set(observer);
}

/// Whether some part of this process is waiting for the database now.
pub fn waiting() -> bool {
    lock().0 > 0
}

fn lock() -> std::sync::MutexGuard<'static, (usize, Option<Instant>)> {
    STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tell(change: OutageChange) {
    if let Some(observer) = OBSERVER.get() {
        observer(change);
    }
}

/// One part of the process waiting for the database, from [`Outage::begin`]
/// until dropped.
#[derive(Debug)]
pub struct Outage {
    since: Instant,
}

impl Outage {
    /// This part found the database unavailable.
    pub fn begin() -> Outage {
        Outage::since(Instant::now())
    }

    fn since(since: Instant) -> Outage {
        let mut state = lock();
        state.0 += 1;
        if state.0 == 1 {
            state.1 = Some(since);
            tell(OutageChange::Began);
        }
        Outage { since }
    }

    /// How long this part has been waiting.
    pub fn elapsed(&self) -> Duration {
        self.since.elapsed()
    }
}

/// Another part waiting since the same moment.
impl Clone for Outage {
    fn clone(&self) -> Outage {
        Outage::since(self.since)
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        let mut state = lock();
        state.0 = state.0.saturating_sub(1);
        if state.0 == 0 {
            let length = state.1.take().map(|s| s.elapsed()).unwrap_or_default();
            tell(OutageChange::Ended(length));
        }
    }
}
