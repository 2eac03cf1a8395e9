//! [`HandlerContext`]: what the handlers of one worker share.

use async_trait::async_trait;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A resource the handlers of a [`HandlerContext`] share, e.g. an HTTP
/// client or a pool of broker connections (the handler crate defines them,
/// so the engine names no network library).
#[async_trait]
pub trait SharedResource: Send + Sync + 'static {
    /// Releases what the resource holds (closes connections, stops its
    /// threads), when its context shuts down. Runs in async context: it must
    /// not block. Default: nothing (dropping it is enough).
    async fn shutdown(&self) {}
}

/// One resource, kept both as itself (to hand out) and as a [`SharedResource`]
/// (to shut down).
struct Slot {
    any: Arc<dyn Any + Send + Sync>,
    resource: Arc<dyn SharedResource>,
}

/// The resources the handlers of one worker share (the built-in handlers: one
/// HTTP client, one pool of AMQP connections), each created on first use and
/// released by [`HandlerContext::shutdown`]. Factories get it when a handler
/// is built ([`HandlerFactory`](super::HandlerFactory)); a
/// [`PipelineRunner`](super::PipelineRunner) holds one and the
/// [`Worker`](crate::Worker) that owns the runner shuts it down when it
/// stops. Clones share the resources; separate contexts share nothing.
#[derive(Clone, Default)]
pub struct HandlerContext {
    slots: Arc<Mutex<HashMap<TypeId, Slot>>>,
}

impl std::fmt::Debug for HandlerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerContext").field("resources", &self.lock().len()).finish()
    }
}

impl HandlerContext {
    /// A context with no resources yet.
    pub fn new() -> HandlerContext {
        HandlerContext::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TypeId, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The context's `T`, made by `init` the first time it is asked for (and
    /// again after a shutdown). `init` runs under the context's lock: keep it
    /// short and synchronous.
    pub fn resource<T: SharedResource, E>(&self, init: impl FnOnce() -> Result<T, E>) -> Result<Arc<T>, E> {
        let mut slots = self.lock();
        if let Some(found) = slots.get(&TypeId::of::<T>()).and_then(|s| s.any.clone().downcast::<T>().ok()) {
            return Ok(found);
        }
        let made = Arc::new(init()?);
        slots.insert(TypeId::of::<T>(), Slot { any: made.clone(), resource: made.clone() });
        Ok(made)
    }

    /// The context's `T`, if it has been made (and not shut down since).
    pub fn get<T: SharedResource>(&self) -> Option<Arc<T>> {
        self.lock().get(&TypeId::of::<T>()).and_then(|s| s.any.clone().downcast::<T>().ok())
    }

    /// Shuts every resource down and forgets it; a handler that asks for one
    /// afterwards gets a new one.
    pub async fn shutdown(&self) {
        let slots: Vec<Slot> = self.lock().drain().map(|(_, s)| s).collect();
        for slot in slots {
            slot.resource.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counter {
        shutdowns: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl SharedResource for Counter {
        async fn shutdown(&self) {
            self.shutdowns.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Other;
    impl SharedResource for Other {}

    #[tokio::test]
    async fn one_resource_per_type_per_context_until_shutdown() {
        let shutdowns = Arc::new(AtomicUsize::new(0));
        let ctx = HandlerContext::new();
        let make = || Ok::<_, ()>(Counter { shutdowns: shutdowns.clone() });
        let first = ctx.resource(make).unwrap();
        assert!(Arc::ptr_eq(&first, &ctx.resource(make).unwrap()), "made once");
        assert!(Arc::ptr_eq(&first, &ctx.clone().get::<Counter>().unwrap()), "clones share");
        assert!(ctx.get::<Other>().is_none());
        ctx.resource(|| Ok::<_, ()>(Other)).unwrap();
        assert_eq!(ctx.resource(|| Err::<Other, _>("unused")).map(|_| ()), Ok(()));
        let other = HandlerContext::new();
        assert!(other.get::<Counter>().is_none(), "separate contexts share nothing");
        assert_eq!(other.resource(|| Err::<Counter, _>("no")).err(), Some("no"));

        ctx.shutdown().await;
        assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
        assert!(ctx.get::<Counter>().is_none() && ctx.get::<Other>().is_none());
        let again = ctx.resource(make).unwrap();
        assert!(!Arc::ptr_eq(&first, &again), "a new one after shutdown");
        other.shutdown().await;
        assert_eq!(shutdowns.load(Ordering::SeqCst), 1, "the other context had none");
    }
}
