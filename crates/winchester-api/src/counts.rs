//! The stream counts per trigger and state that the console's overview and
//! `/v1/triggers` show, read at most once per [`FRESH_FOR`] by a server
//! however many clients ask.
//!
//! Counting is the dearest read these pages make (each pair is counted up to
//! [`COUNT_CAP`], so a large database reads tens of thousands of index
//! entries per request). Requests that arrive while a count is being read
//! wait for it and share its answer; an answer younger than [`FRESH_FOR`] is
//! served as it is. Counts may therefore be up to [`FRESH_FOR`] old, as the
//! pages say.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use winchester_storage::{QueryStore, StreamCount, COUNT_CAP};

/// How long one reading of the counts is served before the next.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// The last reading of the counts, shared by every request of a server.
#[derive(Debug, Default)]
pub struct SharedCounts {
    last: Mutex<Option<(Instant, Arc<Vec<StreamCount>>)>>,
}

impl SharedCounts {
    /// The counts, read now unless a reading younger than [`FRESH_FOR`]
    /// exists (one request reads; those arriving meanwhile wait for it).
    pub async fn get(&self, storage: &dyn QueryStore) -> winchester_storage::Result<Arc<Vec<StreamCount>>> {
        let mut last = self.last.lock().await;
        if let Some((at, counts)) = last.as_ref() {
            if at.elapsed() < FRESH_FOR {
                return Ok(counts.clone());
            }
        }
        let counts = Arc::new(storage.stream_counts_upto(Some(COUNT_CAP)).await?);
        *last = Some((Instant::now(), counts.clone()));
        Ok(counts)
    }

    /// Forgets the last reading, so the next request reads again (after
    /// this server changed streams).
    pub async fn forget(&self) {
        *self.last.lock().await = None;
    }
}
