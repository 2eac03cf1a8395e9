//! The storage conformance suite: the checks every backend must pass, written
//! once against [`Storage`] only, so any backend (one outside this workspace
//! too) runs the same contract. Enabled by the `conformance` feature.
//!
//! Each check takes a [`Harness`] (a fresh, migrated, empty database of the
//! backend under test) and panics, like a test assertion, when the backend
//! breaks a rule. The checks are grouped by what they hold:
//!
//! - `ingest`: dedup by `message_id`, a failed write leaving nothing behind,
//!   one open stream per distinguishing key (racing ingesters included), the
//!   fold's rules (first/last event, expiry, fire criteria, `fire_delay`,
//!   replayed arrivals), no late joiners, traits and hostile strings as data;
//! - `lifecycle`: claims, fire over expire, finishes, retries and other
//!   compare-and-sets, `next_due`, lease renewal and reclaim;
//! - `log`: the stream transition log;
//! - `queries`: every filter of the event and stream queries, mark paging in
//!   both directions, counts, the tail's reads, a stream's events;
//! - `retention`: purge (one stream, or by filter) and trim;
//! - `versions`: recorded trigger definition versions and streams that keep
//!   theirs.
//!
//! # Running the suite on a backend
//!
//! One macro call generates one `#[test]` per check
//! ([`storage_conformance_tests!`](crate::storage_conformance_tests), from
//! the list in [`CHECKS`]); call it inside a module per backend. Its argument
//! is an expression, evaluated once per check, of a future that makes a fresh
//! database and yields its [`Harness`]:
//!
//! ```ignore
//! use std::sync::Arc;
//! use winchester_storage::conformance::{async_trait, Harness};
//! use winchester_storage::Storage;
//!
//! struct MyDb { storage: Arc<dyn Storage> /* , the database's name, ... */ }
//!
//! impl MyDb {
//!     /// A new, empty database with the schema applied.
//!     async fn fresh() -> MyDb { /* ... */ }
//! }
//!
//! #[async_trait]
//! impl Harness for MyDb {
//!     fn storage(&self) -> Arc<dyn Storage> {
//!         self.storage.clone()
//!     }
//!     async fn refuse_stream_inserts_containing(&self, needle: &str) {
//!         // e.g. a BEFORE INSERT trigger on `stream` raising an error when
//!         // the distinguishing traits' text contains `needle`
//!     }
//!     async fn cleanup(self: Box<Self>) {
//!         // drop the database
//!     }
//! }
//!
//! mod my_backend {
//!     winchester_storage::storage_conformance_tests!(crate::MyDb::fresh());
//! }
//! ```
//!
//! The tests are named after the checks (`my_backend::claim_ready_takes_each_stream_once`),
//! so `cargo test my_backend::` runs the suite. Checks the backend knowingly
//! fails are listed after the expression, each with its reason
//! (`storage_conformance_tests!(MyDb::fresh(), ignore { check = "why" })`),
//! and generated `#[ignore = "why"]`. Each runs on a tokio runtime
//! of its own (two worker threads) and takes well under a second besides
//! making its database. The workspace runs it for PostgreSQL and SQLite in
//! `tests/conformance.rs`.

use crate::{Action, Claimed, EventPlan, Finish, FinishOutcome, IngestOutcome, Membership, Storage, Stream};
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use winchester_core::{Event, TraitValue, TriggerSet};

pub use async_trait::async_trait;

mod ingest;
mod lifecycle;
mod log;
mod queries;
mod retention;
mod versions;

pub use ingest::*;
pub use lifecycle::*;
pub use log::*;
pub use queries::*;
pub use retention::*;
pub use versions::*;

/// A fresh, migrated, empty database of the backend under test, for one
/// check: its storage, the one fault the suite injects, and its cleanup.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The storage on the database.
    fn storage(&self) -> Arc<dyn Storage>;

    /// From now on, makes the database itself refuse, inside the write, to
    /// insert a stream whose stored distinguishing traits contain `needle`
    /// (a database trigger raising an error does it). The suite uses it to
    /// check that a failed write leaves nothing behind.
    async fn refuse_stream_inserts_containing(&self, needle: &str);

    /// Drops the database (called after a check passed; a failed check
    /// leaves it for inspection).
    async fn cleanup(self: Box<Self>);
}

/// Generates one `#[test]` per conformance check (the list in [`CHECKS`]),
/// each on its own fresh database. The first argument is an expression of a
/// future yielding a [`Harness`], evaluated once per check; see the
/// [module](crate::conformance) documentation. A backend that knowingly
/// fails some checks lists them, each with its reason, after `ignore`:
/// those tests are generated `#[ignore = "reason"]`.
///
/// ```ignore
/// winchester_storage::storage_conformance_tests!(MyDb::fresh(), ignore {
///     long_batch_outcomes_in_order = "ids of a batch with duplicates: issue 12",
/// });
/// ```
///
/// The list of checks lives here, once: the `@checks` rule hands it to the
/// rule that makes the tests and to the one that names them ([`CHECKS`]).
#[macro_export]
macro_rules! storage_conformance_tests {
    ($fresh:expr $(, ignore { $($skip:ident = $why:literal),* $(,)? })? $(,)?) => {
        $crate::storage_conformance_tests! { @define ($) ($fresh) [$($($skip = $why),*)?] }
    };
    // One test per check: a local macro with an arm per ignored check (a
    // name matches only itself) and one for the rest; `$d` is a `$`, so the
    // local macro can have metavariables of its own.
    (@define ($d:tt) ($fresh:expr) [$($skip:ident = $why:literal),*]) => {
        macro_rules! __storage_conformance_test {
            $(($skip) => { $crate::storage_conformance_tests! { @test ($fresh) $skip #[ignore = $why] } };)*
            ($d check:ident) => { $crate::storage_conformance_tests! { @test ($fresh) $d check } };
        }
        $crate::storage_conformance_tests! { @checks each () }
    };
    (@each () $($check:ident,)*) => {
        $(__storage_conformance_test!($check);)*
    };
    (@test ($fresh:expr) $check:ident $(#[$meta:meta])*) => {
        #[test]
        $(#[$meta])*
        fn $check() {
            $crate::conformance::block_on(async {
                let harness = $fresh.await;
                $crate::conformance::$check(&harness).await;
                $crate::conformance::Harness::cleanup(::std::boxed::Box::new(harness)).await;
            });
        }
    };
    (@names () $($check:ident,)*) => {
        &[$(::std::stringify!($check)),*]
    };
    (@checks $rule:ident $args:tt) => {
        $crate::storage_conformance_tests! { @$rule $args
            // ingest
            duplicate_message_id_changes_nothing,
            duplicates_amid_new_events_keep_their_places,
            event_and_memberships_commit_together,
            events_of_no_trigger_are_saved_alone,
            one_event_joins_a_stream_of_each_trigger,
            a_batch_folds_each_key_into_one_stream,
            streams_track_first_last_count_and_expiry,
            racing_ingesters_share_one_stream_per_key,
            racing_batches_share_one_stream_per_key,
            long_batch_outcomes_in_order,
            distinguishing_and_fire_criteria,
            fire_delay_and_number,
            expired_stream_takes_no_more_events,
            no_late_joiners,
            replayed_events_are_judged_at_their_own_arrival,
            typed_traits_round_trip,
            hostile_strings_are_data,
            // lifecycle
            claim_ready_takes_each_stream_once,
            claim_ready_among_respects_trigger_scope,
            fire_wins_over_expire,
            claim_needs_readiness_and_the_current_serial,
            ready_streams_come_oldest_due_first,
            claims_take_the_oldest_due,
            finished_and_failed_streams_are_never_ready,
            renew_and_finish_many,
            failed_runs_record_their_reason,
            a_run_finishes_once,
            one_claim_twice_in_a_batch_finishes_once,
            finish_saves_pipeline_events_like_ingest,
            retry_moves_failed_streams_back_to_work,
            retry_leaves_other_states_alone,
            set_state_is_a_compare_and_set,
            bulk_retry_by_filter,
            next_due_is_none_when_nothing_waits,
            next_due_is_the_earliest_coming_moment,
            lease_expiry_reclaims_and_old_owner_loses,
            renewed_lease_defers_reclaim,
            only_held_streams_renew,
            expiring_stream_is_reclaimed_for_expiry_only,
            // log
            transitions_logged_for_each_end_and_reset,
            a_completion_by_hand_is_logged_and_read,
            claims_renewals_and_ingest_log_nothing,
            transition_log_reads_by_id_and_time,
            // queries
            event_filter_by_time_range,
            event_filter_by_name,
            event_filter_by_typed_traits,
            event_paging_both_directions_with_marks,
            glob_pages_in_id_order_across_types,
            counts_stop_at_a_cap,
            get_event_and_its_streams,
            events_since_takes_skipped_ids,
            latest_event_time_and_ids,
            stream_filter_by_trigger_state_and_age,
            stream_filter_by_distinguishing_traits,
            stream_paging_both_directions_and_limits,
            stream_counts_per_trigger_and_state,
            stream_events_page_in_timestamp_order,
            load_events_of_several_streams,
            // retention
            purge_deletes_stream_and_memberships_not_events,
            bulk_purge_by_filter,
            trim_keeps_events_of_unfinished_streams,
            trim_takes_oldest_first_up_to_limit,
            trim_until_done_removes_every_old_finished_event,
            // versions
            streams_keep_their_definition_version,
            versions_listed_by_trigger_then_first_use,
            unversioned_streams_join_any_version,
        }
    };
}

/// The name of every check, in the order the suite lists them.
pub const CHECKS: &[&str] = crate::storage_conformance_tests!(@checks names ());

/// Runs a check's future on a tokio runtime of its own (two worker threads,
/// so racing calls really run side by side). Used by
/// [`storage_conformance_tests!`](crate::storage_conformance_tests).
#[doc(hidden)]
pub fn block_on(check: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the check")
        .block_on(check)
}

/// The suite's trigger: streams per `key`, fired by `thing.done`, expiring an
/// hour after their last event.
pub const TRIGGERS: &str = r#"
- name: things
  distinguished_by: [key]
  expiration: "$last + 1h"
  fire_pipeline: p
  expire_pipeline: p
  match_criteria: [{event_type: "thing.*"}]
  fire_criteria: [{event_type: thing.done}]
"#;

/// The moment the suite's events happen.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).single().expect("valid time")
}

/// A moment given by its parts (UTC).
fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().expect("valid time")
}

/// A lease of a minute, for [`StreamStore::claim`](crate::StreamStore::claim).
const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

fn mins(n: i64) -> Duration {
    Duration::minutes(n)
}

/// A string trait value.
fn text(v: &str) -> TraitValue {
    TraitValue::String(v.to_string())
}

/// An event with the given traits.
fn event(id: &str, ty: &str, at: DateTime<Utc>, traits: &[(&str, TraitValue)]) -> Event {
    let traits: BTreeMap<String, TraitValue> = traits.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    Event::new(id, ty, at, traits).expect("valid event")
}

/// The event as the engine plans it: one membership per trigger it matches.
fn plan_event(triggers: &TriggerSet, event: Event) -> EventPlan {
    let memberships = triggers
        .iter()
        .filter_map(|t| {
            let (_, dist) = t.match_event(&event).ok()?;
            Some(Membership { trigger: t.clone(), dist_key: dist.key(), dist, fire_hits: t.fire_hits(&event) })
        })
        .collect();
    EventPlan { event, memberships, replay: None }
}

/// An event of type `ty` for stream key `key`, planned.
fn plan(triggers: &TriggerSet, id: &str, ty: &str, key: &str, at: DateTime<Utc>) -> EventPlan {
    plan_event(triggers, event(id, ty, at, &[("key", text(key))]))
}

fn triggers_from(yaml: &str) -> TriggerSet {
    TriggerSet::from_yaml_str(yaml, Path::new("conformance-triggers.yaml")).expect("suite triggers").0
}

fn triggers() -> TriggerSet {
    triggers_from(TRIGGERS)
}

/// Ingests a batch that must succeed, with one outcome per event.
async fn ingest(storage: &dyn Storage, batch: &[EventPlan], now: DateTime<Utc>) -> Vec<IngestOutcome> {
    let out = storage.ingest(batch, now).await.expect("ingest");
    assert_eq!(out.len(), batch.len(), "ingest: one outcome per event");
    out
}

/// The event id and stream ids of a saved event.
fn saved(outcome: &IngestOutcome) -> (i64, Vec<i64>) {
    match outcome {
        IngestOutcome::Saved { event_id, stream_ids, .. } => (*event_id, stream_ids.clone()),
        other => panic!("not saved: {other:?}"),
    }
}

/// The one stream a saved event joined.
fn stream_of(outcome: &IngestOutcome) -> i64 {
    match saved(outcome).1.as_slice() {
        [one] => *one,
        many => panic!("joined {} streams, expected one", many.len()),
    }
}

/// A stream that must exist.
async fn stream(storage: &dyn Storage, id: i64) -> Stream {
    storage.get_stream(id).await.expect("get_stream").unwrap_or_else(|| panic!("stream {id} is gone"))
}

/// Ingests `n` streams, each with a `thing.start` and (when `done`) a
/// `thing.done` event. Returns the stream ids in key order.
async fn streams(storage: &dyn Storage, n: usize, done: bool) -> Vec<i64> {
    let set = triggers();
    let mut batch = Vec::new();
    for i in 0..n {
        batch.push(plan(&set, &format!("start-{i}"), "thing.start", &format!("k{i}"), t0()));
        if done {
            batch.push(plan(&set, &format!("done-{i}"), "thing.done", &format!("k{i}"), t0() + secs(1)));
        }
    }
    let out = ingest(storage, &batch, t0()).await;
    let mut ids: Vec<i64> = out.iter().step_by(if done { 2 } else { 1 }).map(stream_of).collect();
    ids.dedup();
    ids
}

/// The `key` a stream of the suite's triggers is distinguished by.
fn key_of(s: &Stream) -> String {
    match s.dist_traits.0.get("key") {
        Some(winchester_core::DistValue::Value(TraitValue::String(k))) => k.clone(),
        other => panic!("stream {} has key {other:?}", s.id),
    }
}

/// A run that completed without new events.
fn completed() -> Finish<'static> {
    Finish::Completed { purge: false, new_events: &[] }
}

/// Finishes a claimed stream, which must still be held; the outcomes of the
/// run's new events.
async fn finish(storage: &dyn Storage, claimed: &Stream, how: Finish<'_>, now: DateTime<Utc>) -> Vec<IngestOutcome> {
    match storage.finish(claimed, how, now).await.expect("finish") {
        FinishOutcome::Done(saved) => saved,
        FinishOutcome::LostLease => panic!("stream {} was no longer held", claimed.id),
    }
}

/// The moment [`one_claimed`] claims its stream.
fn claimed_at() -> DateTime<Utc> {
    t0() + secs(5)
}

/// One stream, fired at `t0` and claimed at [`claimed_at`] (leased for a minute).
async fn one_claimed(storage: &dyn Storage) -> Stream {
    streams(storage, 1, true).await;
    let mut claimed = claim_all(storage, Action::Fire, claimed_at()).await;
    assert_eq!(claimed.len(), 1, "one stream claimed");
    claimed.remove(0)
}

/// The streams of a claimed batch.
fn streams_of(claimed: Vec<Claimed>) -> Vec<Stream> {
    claimed.into_iter().map(|c| c.stream).collect()
}

/// The ids of some streams.
fn ids(streams: &[Stream]) -> Vec<i64> {
    streams.iter().map(|s| s.id).collect()
}

/// Claims every stream ready for `action` at `now`, leased for a minute.
async fn claim_all(storage: &dyn Storage, action: Action, now: DateTime<Utc>) -> Vec<Stream> {
    streams_of(storage.claim_ready(action, now, now + mins(1), 1000).await.expect("claim_ready"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_suite_has_forty_checks_or_more_each_named_once() {
        let names: std::collections::HashSet<&str> = super::CHECKS.iter().copied().collect();
        assert_eq!(names.len(), super::CHECKS.len(), "a check listed twice");
        assert!(super::CHECKS.len() >= 40, "{} checks", super::CHECKS.len());
    }
}
