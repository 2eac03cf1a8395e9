//! The stream state machine's rules, written once for every backend: which
//! streams are ready for an action, when the next one is due, and where a
//! finished run leaves its stream. Backends render these into their SQL
//! dialect (only the bind-parameter syntax differs); no state number or
//! readiness condition is written in a backend.

use crate::stream::{Action, StreamState, TriggerScope};
use crate::Finish;

/// The column holding the moment a stream becomes ready by a [`ReadyRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// `fire_timestamp`: the fire criteria were met (and any delay passed).
    Fire,
    /// `expire_timestamp`: the stream's expiration.
    Expire,
    /// `lease_expires_at`: the worker holding it stopped renewing its lease.
    Lease,
}

impl Due {
    /// The column name.
    pub fn column(self) -> &'static str {
        match self {
            Due::Fire => "fire_timestamp",
            Due::Expire => "expire_timestamp",
            Due::Lease => "lease_expires_at",
        }
    }
}

/// One way a stream becomes ready for an action: it is in one of `states`
/// (with no fire time, if `unfired`) and its `due` moment has come.
#[derive(Debug, Clone, Copy)]
pub struct ReadyRule {
    /// The states it applies to.
    pub states: &'static [StreamState],
    /// Only streams whose fire criteria are not met (fire wins over expire).
    pub unfired: bool,
    /// When the stream becomes ready.
    pub due: Due,
}

const FIRE_RULES: &[ReadyRule] = &[
    ReadyRule { states: &[StreamState::Active, StreamState::RetryFire], unfired: false, due: Due::Fire },
    ReadyRule { states: &[StreamState::Firing], unfired: false, due: Due::Lease },
];

const EXPIRE_RULES: &[ReadyRule] = &[
    ReadyRule { states: &[StreamState::Active], unfired: true, due: Due::Expire },
    ReadyRule { states: &[StreamState::RetryExpire], unfired: false, due: Due::Expire },
    ReadyRule { states: &[StreamState::Expiring], unfired: false, due: Due::Lease },
];

impl Action {
    /// The rules that make a stream ready for this action. Each maps to one
    /// partial index, so every rule is one index range scan.
    pub fn ready_rules(self) -> &'static [ReadyRule] {
        match self {
            Action::Fire => FIRE_RULES,
            Action::Expire => EXPIRE_RULES,
        }
    }
}

impl ReadyRule {
    /// The SQL condition "ready by this rule", comparing the due column with
    /// `cmp` (`<=` for ready now, `>` for due later) against the bind parameter
    /// `now` (`$1`, `?1`).
    pub fn condition(&self, cmp: &str, now: &str) -> String {
        let states: Vec<String> = self.states.iter().map(|s| (*s as i16).to_string()).collect();
        let state = match states.as_slice() {
            [one] => format!("state = {one}"),
            many => format!("state IN ({})", many.join(", ")),
        };
        let unfired = if self.unfired { " AND fire_timestamp IS NULL" } else { "" };
        format!("{state}{unfired} AND {} {cmp} {now}", self.due.column())
    }
}

/// "Ready for `action`" as one SQL condition (any of its rules), against the
/// bind parameter `now`.
pub fn ready_condition(action: Action, now: &str) -> String {
    let parts: Vec<String> = action.ready_rules().iter().map(|r| format!("({})", r.condition("<=", now))).collect();
    parts.join(" OR ")
}

/// The assignments that claim a stream for `action`: working state, serial
/// bumped, closed to new events, leased until the bind parameter `lease`.
pub fn claim_assignments(action: Action, lease: &str) -> String {
    format!(
        "state = {}, state_serial_no = state_serial_no + 1, open = FALSE, lease_expires_at = {lease}, attempts = attempts + 1",
        action.working_state() as i16
    )
}

/// The condition (with a leading ` AND `, or empty for [`TriggerScope::All`])
/// restricting streams to `set`, given the dialect's test `member` ("the
/// stream's trigger_name is in the bound list", e.g. `trigger_name = ANY($4)`).
pub fn trigger_condition(set: TriggerScope<'_>, member: &str) -> String {
    match set {
        TriggerScope::All => String::new(),
        TriggerScope::Only(_) => format!(" AND {member}"),
        TriggerScope::Except(_) => format!(" AND NOT ({member})"),
    }
}

/// One sub-select per rule, each the oldest `limit` streams ready by it (one
/// partial-index range scan), named `r0`, `r1`, ... with columns `columns`
/// plus `due`. `filter` (see [`trigger_condition`]) restricts the streams;
/// `lock` is appended to each (`FOR UPDATE SKIP LOCKED` on PostgreSQL, empty
/// where a transaction already excludes other writers).
fn rule_scans(action: Action, columns: &str, now: &str, limit: &str, filter: &str, lock: &str) -> Vec<String> {
    action
        .ready_rules()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "r{i} AS (SELECT {columns}, {col} AS due FROM stream WHERE {}{filter} ORDER BY {col} LIMIT {limit}{lock})",
                r.condition("<=", now),
                col = r.due.column()
            )
        })
        .collect()
}

fn union_of(n: usize) -> String {
    (0..n).map(|i| format!("SELECT * FROM r{i}")).collect::<Vec<_>>().join(" UNION ALL ")
}

/// The streams ready for `action`, oldest due first (read only).
pub fn ready_sql(action: Action, columns: &str, now: &str, limit: &str) -> String {
    let scans = rule_scans(action, columns, now, limit, "", "");
    format!(
        "WITH {} SELECT {columns} FROM ({}) AS ready ORDER BY due LIMIT {limit}",
        scans.join(", "),
        union_of(scans.len())
    )
}

/// `WITH ..., picked AS (...)`: the oldest `limit` streams ready for `action`,
/// as `picked_id` and `picked_reclaim` (the stream was already in its working
/// state: the lease of the worker holding it ran out).
fn picked_cte(action: Action, now: &str, limit: &str, filter: &str, lock: &str) -> String {
    let scans = rule_scans(action, "id, state", now, limit, filter, lock);
    format!(
        "WITH {}, picked AS (SELECT id AS picked_id, state = {} AS picked_reclaim FROM ({}) AS ready \
         ORDER BY due LIMIT {limit})",
        scans.join(", "),
        action.working_state() as i16,
        union_of(scans.len()),
    )
}

/// Claims the oldest `limit` streams ready for `action` in one statement and
/// returns them (`columns`) and `picked_reclaim` (see [`pick_ready_sql`]), in
/// no particular order.
/// `filter` and `lock` as for the per-rule scans. Needs a dialect whose `RETURNING` sees
/// the `FROM` list (PostgreSQL); elsewhere use [`pick_ready_sql`] then
/// [`claim_assignments`] in one transaction.
pub fn claim_ready_sql(
    action: Action,
    columns: &str,
    now: &str,
    lease: &str,
    limit: &str,
    filter: &str,
    lock: &str,
) -> String {
    format!(
        "{} UPDATE stream SET {} FROM picked WHERE id = picked_id RETURNING {columns}, picked_reclaim",
        picked_cte(action, now, limit, filter, lock),
        claim_assignments(action, lease)
    )
}

/// The ids of the oldest `limit` streams ready for `action`, each with
/// whether claiming it is a reclaim (read only; claim them in the same
/// write transaction). `filter` as for [`claim_ready_sql`].
pub fn pick_ready_sql(action: Action, now: &str, limit: &str, filter: &str) -> String {
    format!("{} SELECT picked_id, picked_reclaim FROM picked", picked_cte(action, now, limit, filter, ""))
}

/// Every rule of both actions.
pub fn all_ready_rules() -> impl Iterator<Item = &'static ReadyRule> {
    FIRE_RULES.iter().chain(EXPIRE_RULES)
}

/// One query (the same text on both backends, which share column names)
/// giving the earliest future moment any stream becomes ready, with `now` as
/// bind parameter `now`, as column `due`: what an idle worker sleeps until.
pub fn next_due_sql(now: &str) -> String {
    let parts: Vec<String> = all_ready_rules()
        .map(|r| format!("SELECT min({col}) AS t FROM stream WHERE {}", r.condition(">", now), col = r.due.column()))
        .collect();
    format!("SELECT min(t) AS due FROM ({}) AS due_times", parts.join(" UNION ALL "))
}

impl Finish<'_> {
    /// Where this run leaves a stream claimed in `working` state: `None` deletes
    /// it (a completed run with purge).
    pub fn target(&self, working: StreamState) -> Option<StreamState> {
        match self {
            Finish::Completed { purge: true, .. } => None,
            Finish::Completed { purge: false, .. } => Some(StreamState::Completed),
            Finish::Failed { .. } => Some(match working {
                StreamState::Expiring => StreamState::ExpireError,
                _ => StreamState::Error,
            }),
        }
    }

    /// The reason recorded on the stream (failures only).
    pub fn reason(&self) -> Option<&str> {
        match self {
            Finish::Failed { reason } => Some(reason),
            Finish::Completed { .. } => None,
        }
    }

    /// The events the run adds.
    pub fn new_events(&self) -> &[crate::EventPlan] {
        match self {
            Finish::Completed { new_events, .. } => new_events,
            Finish::Failed { .. } => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_name_states_by_number_and_respect_fire_over_expire() {
        let fire: Vec<String> = Action::Fire.ready_rules().iter().map(|r| r.condition("<=", "$1")).collect();
        assert_eq!(fire, ["state IN (1, 7) AND fire_timestamp <= $1", "state = 2 AND lease_expires_at <= $1"]);
        let expire: Vec<String> = Action::Expire.ready_rules().iter().map(|r| r.condition("<=", "?1")).collect();
        assert_eq!(
            expire,
            [
                "state = 1 AND fire_timestamp IS NULL AND expire_timestamp <= ?1",
                "state = 8 AND expire_timestamp <= ?1",
                "state = 3 AND lease_expires_at <= ?1"
            ]
        );
    }

    #[test]
    fn finish_targets() {
        let done = Finish::Completed { purge: false, new_events: &[] };
        assert_eq!(done.target(StreamState::Firing), Some(StreamState::Completed));
        assert_eq!(Finish::Completed { purge: true, new_events: &[] }.target(StreamState::Expiring), None);
        let failed = Finish::Failed { reason: "x" };
        assert_eq!(failed.target(StreamState::Firing), Some(StreamState::Error));
        assert_eq!(failed.target(StreamState::Expiring), Some(StreamState::ExpireError));
    }
}
