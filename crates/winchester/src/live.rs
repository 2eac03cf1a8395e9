//! Hot reload: a value every clone of its holder shares and a reload swaps
//! whole. Readers take a snapshot (an `Arc`) once per batch or pass and use
//! it to the end, so a swap never lands in the middle of one.

use crate::error::EngineError;
use std::sync::{Arc, RwLock};
use winchester_core::LoadedConfig;
use winchester_storage::Storage;

/// A shared, swappable `Arc<T>`.
#[derive(Debug)]
pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> Live<T> {
    /// A cell holding `value`.
    pub fn new(value: Arc<T>) -> Live<T> {
        Live(Arc::new(RwLock::new(value)))
    }

    /// The current value (a snapshot: later swaps do not change it).
    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in a new value for every holder of this cell.
    pub fn set(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

/// Records the definition versions of `cfg` (each the first time any process
/// loads it), which must happen before streams are opened under them.
pub async fn record_versions(
    storage: &dyn Storage,
    cfg: &LoadedConfig,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), EngineError> {
    let versions: Vec<_> = cfg.versions.values().cloned().collect();
    storage.record_versions(&versions, now).await?;
    Ok(())
}
