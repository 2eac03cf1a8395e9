//! A clock for replays: "now" is the latest event timestamp stored in the
//! database, so a worker fires and expires archived streams as they were fired
//! and expired live (the original's time_sync, without its HTTP endpoint).

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use winchester_core::Clock;
use winchester_storage::{Storage, StorageError};

/// Shows the latest event timestamp in storage as of its last
/// [`refresh`](StoredEventClock::refresh); never moves backward. Before the
/// first event it shows the earliest representable time, so nothing is due.
///
/// [`Clock::now`] is synchronous and does no I/O: the worker refreshes the
/// clock once before each pass (see [`Worker::with_event_clock`](crate::Worker::with_event_clock)),
/// so one pass sees one "now".
#[derive(Debug)]
pub struct StoredEventClock {
    storage: Arc<dyn Storage>,
    now: Mutex<DateTime<Utc>>,
}

impl StoredEventClock {
    /// A clock reading `storage`; call [`refresh`](StoredEventClock::refresh) before use.
    pub fn new(storage: Arc<dyn Storage>) -> StoredEventClock {
        StoredEventClock { storage, now: Mutex::new(DateTime::<Utc>::MIN_UTC) }
    }

    /// Reads the latest event timestamp and moves the clock forward to it.
    /// Returns the time shown afterwards.
    pub async fn refresh(&self) -> Result<DateTime<Utc>, StorageError> {
        let latest = self.storage.latest_event_time().await?;
        let mut g = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = latest {
            if t > *g {
                *g = t;
            }
        }
        Ok(*g)
    }
}

impl Clock for StoredEventClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}
