//! The statements every SQL backend shares, written once.
//!
//! A backend implements [`SqlBackend`]: how it runs a [`Stmt`] (its
//! connection, transaction and error handling), how it binds the few values
//! whose encoding differs ([`Arg`]: times, id lists), the SQL that really
//! differs between dialects (trait conditions on JSON, event-name globs, the
//! join from memberships to events), and the operations whose whole shape
//! differs (claiming a batch, finishing runs, renewing leases, trimming,
//! recording versions). Everything else ([`StreamStore`], [`EventStore`],
//! [`QueryStore`], [`VersionStore`]) is implemented here for every
//! [`SqlBackend`], on the stream rules of [`crate::rules`] and the decoders of
//! [`crate::decode`].
//!
//! Placeholders are `$1`, `$2`, … on every backend (SQLite reads `$N` as the
//! N-th argument, as PostgreSQL does); [`Stmt::bind`] numbers them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;
use winchester_core::{DefinitionVersion, Event};

use crate::decode::{self, Columns, IdLog, EVENT_COLUMNS, STREAM_COLUMNS, TRANSITION_COLUMNS, VERSION_COLUMNS};
use crate::rules::{claim_assignments, next_due_sql, ready_condition, ready_sql};
use crate::{
    Action, Claimed, Count, Cursor, EventFilter, EventStore, Finish, FinishOutcome, NamePattern, Page, QueryStore,
    Result, StoredEvent, Stream, StreamCount, StreamFilter, StreamState, StreamStore, TraitFilter, Transition,
    TriggerScope, TriggerVersion, VersionStore,
};

/// A value bound to a statement, in the engine's terms; each backend encodes
/// it as its schema stores it (a time as `timestamptz` or as microseconds, a
/// list as an array or as JSON text).
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// An integer (ids, limits, states, serials).
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Text, or NULL.
    Text(Option<String>),
    /// A point in time, or NULL.
    Time(Option<DateTime<Utc>>),
    /// A list of ids.
    Ids(Vec<i64>),
    /// A list of JSON values (PostgreSQL's `jsonb[]`).
    Json(Vec<serde_json::Value>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_string()))
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_string))
    }
}

impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Arg {
        Arg::Time(Some(v))
    }
}

impl From<StreamState> for Arg {
    fn from(v: StreamState) -> Arg {
        Arg::Int(v as i64)
    }
}

/// A statement and its arguments, built like sqlx's `QueryBuilder`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stmt {
    /// The SQL, with `$N` placeholders.
    pub sql: String,
    /// The arguments, `$1` first.
    pub args: Vec<Arg>,
    /// Whether it writes (SQLite runs writes under `BEGIN IMMEDIATE`).
    pub writes: bool,
}

impl Stmt {
    /// A statement starting with `sql`.
    pub fn new(sql: impl Into<String>) -> Stmt {
        Stmt { sql: sql.into(), args: Vec::new(), writes: false }
    }

    /// The same statement, marked as one that writes.
    pub fn writing(self) -> Stmt {
        Stmt { writes: true, ..self }
    }

    /// Appends SQL text.
    pub fn push(&mut self, sql: &str) -> &mut Stmt {
        self.sql.push_str(sql);
        self
    }

    /// Adds an argument and returns its placeholder, without writing it.
    pub fn arg(&mut self, arg: impl Into<Arg>) -> String {
        self.args.push(arg.into());
        format!("${}", self.args.len())
    }

    /// Adds an argument and writes its placeholder.
    pub fn bind(&mut self, arg: impl Into<Arg>) -> &mut Stmt {
        let p = self.arg(arg);
        self.push(&p)
    }

    /// A statement of `sql` whose placeholders are `args`, in order.
    pub fn with(sql: impl Into<String>, args: impl IntoIterator<Item = Arg>) -> Stmt {
        Stmt { args: args.into_iter().collect(), ..Stmt::new(sql) }
    }
}

/// The JSON column a trait condition looks into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraitColumn {
    /// `event.traits`: name → typed value.
    EventTraits,
    /// `stream.dist_traits`: name → `{"value": typed value, …}`.
    DistTraits,
}

/// A statement's plan, as the backend explained it.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The statement.
    pub sql: String,
    /// Its plan (PostgreSQL: `EXPLAIN (ANALYZE, FORMAT JSON)`).
    pub plan: serde_json::Value,
}

/// The plans of the read statements a backend ran, when it is asked to
/// record them (`PgStorage::with_plan_log`): what the plan tests check, and a
/// way to see why a query is slow.
#[derive(Debug, Default)]
pub struct PlanLog(std::sync::Mutex<Vec<Planned>>);

impl PlanLog {
    /// Records one statement's plan.
    pub fn record(&self, sql: &str, plan: serde_json::Value) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(Planned { sql: sql.to_string(), plan });
    }

    /// The plans recorded since the last call, oldest first.
    pub fn take(&self) -> Vec<Planned> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What [`SqlBackend::claim_batch`] claims: the oldest `limit` streams of
/// `triggers` ready for `action` at `now`, leased until `lease_until`.
#[derive(Debug, Clone, Copy)]
pub struct ClaimBatch<'a> {
    /// Fire or expire.
    pub action: Action,
    /// The time readiness is judged at.
    pub now: DateTime<Utc>,
    /// The claims' lease end.
    pub lease_until: DateTime<Utc>,
    /// At most this many streams.
    pub limit: u32,
    /// The triggers whose streams may be claimed.
    pub triggers: TriggerScope<'a>,
}

/// A SQL database the engine stores in: how statements run and what of the
/// dialect differs. [`StreamStore`], [`EventStore`], [`QueryStore`] and
/// [`VersionStore`] follow for it.
#[async_trait]
pub trait SqlBackend: Send + Sync + std::fmt::Debug + 'static {
    /// How its rows are read.
    type Columns: Columns;

    /// Runs a statement and returns its rows (writes under the backend's
    /// write transaction).
    async fn rows(&self, stmt: Stmt) -> Result<Vec<<Self::Columns as Columns>::Row>>;

    /// Runs a statement and returns how many rows it changed.
    async fn execute(&self, stmt: Stmt) -> Result<u64>;

    /// Appends ` AND <condition>`: the trait `f.name` in `column` equals one
    /// of the typed candidates of `f`'s value.
    fn push_trait(stmt: &mut Stmt, column: TraitColumn, f: &TraitFilter);

    /// Appends ` AND event_type` matching the glob `p` (`*`, `?`).
    fn push_event_type_glob(stmt: &mut Stmt, p: &NamePattern);

    /// `<column> IN <ids>` in this dialect.
    fn in_ids(stmt: &mut Stmt, column: &str, ids: &[i64]) -> String;

    /// `FROM stream_event se <join> e`: each membership's event as `e`.
    const MEMBER_EVENT: &'static str;

    /// Ends a subquery so that the planner plans it for all its rows, not
    /// for the outer query's `LIMIT` (an `OFFSET 0` in this dialect).
    const FENCE: &'static str;

    /// `<join> e` after `FROM <keys> k`: the event whose `id` and
    /// `generated` are `k`'s, as `e`.
    const KEYED_EVENT: &'static str;

    /// The event with a `message_id` (`$1`), as [`EVENT_COLUMNS`].
    const EVENT_BY_MESSAGE_ID: &'static str;

    /// `ORDER BY` of the version listing (trigger names in byte order).
    const VERSION_ORDER: &'static str;

    /// Claims a batch of ready streams (see [`StreamStore::claim_ready_among`]).
    async fn claim_batch(&self, batch: ClaimBatch<'_>) -> Result<Vec<Claimed>>;

    /// See [`StreamStore::finish_many`].
    async fn finish_many(&self, runs: &[(&Stream, Finish<'_>)], now: DateTime<Utc>) -> Result<Vec<FinishOutcome>>;

    /// See [`StreamStore::renew_leases`].
    async fn renew_leases(&self, held: &[(i64, i32)], until: DateTime<Utc>) -> Result<Vec<i64>>;

    /// See [`EventStore::trim_events`].
    async fn trim_events(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<u64>;

    /// See [`VersionStore::record_versions`].
    async fn record_versions(&self, versions: &[DefinitionVersion], now: DateTime<Utc>) -> Result<()>;
}

type RowOf<B> = <<B as SqlBackend>::Columns as Columns>::Row;

/// Runs `stmt` and decodes every row.
async fn all<B: SqlBackend, T>(db: &B, stmt: Stmt, decode: fn(&RowOf<B>) -> Result<T>) -> Result<Vec<T>> {
    db.rows(stmt).await?.iter().map(decode).collect()
}

/// Runs `stmt` and decodes its first row, if any.
async fn first<B: SqlBackend, T>(db: &B, stmt: Stmt, decode: fn(&RowOf<B>) -> Result<T>) -> Result<Option<T>> {
    db.rows(stmt).await?.first().map(decode).transpose()
}

/// ` AND id >/< mark ORDER BY id … LIMIT n`.
fn push_page(s: &mut Stmt, page: &Page, limit: Option<u32>) {
    push_mark(s, page);
    push_order(s, page, limit);
}

/// ` AND id >/< mark`: the rows after the page's mark.
fn push_mark(s: &mut Stmt, page: &Page) {
    if let Some(after) = page.after {
        s.push(if page.ascending { " AND id > " } else { " AND id < " }).bind(after);
    }
}

/// ` ORDER BY id … LIMIT n`.
fn push_order(s: &mut Stmt, page: &Page, limit: Option<u32>) {
    s.push(if page.ascending { " ORDER BY id ASC" } else { " ORDER BY id DESC" });
    if let Some(limit) = limit {
        s.push(" LIMIT ").bind(i64::from(limit));
    }
}

/// Appends a page of `columns` of `table` whose `WHERE` clause `push_filter`
/// writes.
///
/// `by_match`: the filter has a condition whose index cannot read rows in id
/// order (a distinguishing trait, a stream's times). Then every match is read
/// through that index first (a materialized step, so the planner cannot
/// choose instead to walk the primary key testing each row, hoping a match
/// comes soon; with a rare value, none does) and the page is cut from the
/// matches. Its cost follows the number of matches, not the table's size.
fn push_filtered_page(
    s: &mut Stmt,
    table: &str,
    columns: &str,
    page: &Page,
    limit: Option<u32>,
    by_match: bool,
    push_filter: impl FnOnce(&mut Stmt),
) {
    if by_match {
        s.push(&format!("WITH matched AS MATERIALIZED (SELECT {columns} FROM {table}"));
        push_filter(s);
        push_mark(s, page);
        s.push(&format!(") SELECT {columns} FROM matched"));
        push_order(s, page, limit);
    } else {
        s.push(&format!("SELECT {columns} FROM {table}"));
        push_filter(s);
        push_page(s, page, limit);
    }
}

fn push_stream_filter<B: SqlBackend>(s: &mut Stmt, f: &StreamFilter) {
    s.push(" WHERE TRUE");
    if let Some(t) = &f.trigger {
        s.push(" AND trigger_name = ").bind(t.as_str());
    }
    if let Some(state) = f.state {
        s.push(" AND state = ").bind(state);
    }
    if let Some(t) = f.older_than {
        s.push(" AND first_event < ").bind(t);
    }
    if let Some(t) = f.younger_than {
        s.push(" AND last_event > ").bind(t);
    }
    for d in &f.dist_traits {
        B::push_trait(s, TraitColumn::DistTraits, d);
    }
}

/// The event types an [`EventFilter`]'s `event_name` stands for.
#[derive(Debug, Clone, PartialEq)]
enum EventTypes {
    /// No condition on the type.
    All,
    /// One type.
    Exact(String),
    /// The stored types a glob matches (from the `event_types` catalog).
    Among(Vec<String>),
}

/// At most this many types of a glob are read one by one (each through the
/// type index, newest first, then merged); a glob matching more reads them
/// together, as a broad filter does.
const MERGED_TYPES: usize = 32;

/// What `f.event_name` stands for: a glob is resolved against the catalog of
/// the types ever stored, so that every type it matches is read through the
/// type index instead of testing the pattern on every event.
async fn event_types<B: SqlBackend>(db: &B, f: &EventFilter) -> Result<EventTypes> {
    Ok(match &f.event_name {
        None => EventTypes::All,
        Some(p) if !p.is_glob() => EventTypes::Exact(p.0.clone()),
        Some(p) => {
            let mut s = Stmt::new("SELECT event_type FROM event_types WHERE TRUE");
            B::push_event_type_glob(&mut s, p);
            s.push(" ORDER BY event_type");
            EventTypes::Among(all(db, s, |r| B::Columns::text(r, "event_type")).await?)
        }
    })
}

fn push_event_filter<B: SqlBackend>(s: &mut Stmt, f: &EventFilter, types: &EventTypes) {
    s.push(" WHERE TRUE");
    if let Some(t) = f.from {
        s.push(" AND generated >= ").bind(t);
    }
    if let Some(t) = f.to {
        s.push(" AND generated < ").bind(t);
    }
    match types {
        EventTypes::All => {}
        EventTypes::Exact(t) => {
            s.push(" AND event_type = ").bind(t.as_str());
        }
        EventTypes::Among(ts) if ts.is_empty() => {
            s.push(" AND FALSE");
        }
        EventTypes::Among(ts) => {
            s.push(" AND event_type IN (");
            for (i, t) in ts.iter().enumerate() {
                s.push(if i > 0 { ", " } else { "" }).bind(t.as_str());
            }
            s.push(")");
        }
    }
    for t in &f.traits {
        B::push_trait(s, TraitColumn::EventTraits, t);
    }
}

/// A page of events: one statement, or for a glob matching a few types (and
/// no trait or time condition), one page per type (each read in id order
/// through the type index) merged.
fn events_page<B: SqlBackend>(f: &EventFilter, types: &EventTypes) -> Stmt {
    let mut s = Stmt::default();
    if !f.traits.is_empty() || f.from.is_some() || f.to.is_some() {
        push_event_keys_page::<B>(&mut s, f, types);
        return s;
    }
    let page = |s: &mut Stmt, t: &EventTypes| {
        push_filtered_page(s, "event", EVENT_COLUMNS, &f.page, f.page.limit, false, |s| push_event_filter::<B>(s, f, t))
    };
    match types {
        EventTypes::Among(ts) if ts.len() > 1 && ts.len() <= MERGED_TYPES => {
            s.push(&format!("SELECT {EVENT_COLUMNS} FROM ("));
            for (i, t) in ts.iter().enumerate() {
                s.push(if i > 0 { " UNION ALL SELECT * FROM (" } else { "SELECT * FROM (" });
                page(&mut s, &EventTypes::Exact(t.clone()));
                s.push(&format!(") AS t{i}"));
            }
            s.push(") AS merged WHERE TRUE");
            push_order(&mut s, &f.page, f.page.limit);
        }
        _ => page(&mut s, types),
    }
    s
}

/// A page of events with a condition whose index cannot read them in id
/// order (a trait, a time range): the keys (`id`, `generated`) of every match
/// are read (for a time range from the time index alone) straight into a
/// top-n sort, fenced ([`SqlBackend::FENCE`]) so that the planner cannot
/// choose instead to walk the primary key testing each row, hoping the page
/// fills soon (with matches clustered in time, it may read a whole day);
/// then only the page's events are read whole. Its cost follows the number
/// of matches, not the table's size.
fn push_event_keys_page<B: SqlBackend>(s: &mut Stmt, f: &EventFilter, types: &EventTypes) {
    s.push("WITH page AS MATERIALIZED (SELECT id, generated FROM (SELECT id, generated FROM event");
    push_event_filter::<B>(s, f, types);
    push_mark(s, &f.page);
    s.push(B::FENCE).push(") AS matched");
    push_order(s, &f.page, f.page.limit);
    let columns: Vec<String> = EVENT_COLUMNS.split(", ").map(|c| format!("e.{c}")).collect();
    s.push(&format!(") SELECT {} FROM page k {}", columns.join(", "), B::KEYED_EVENT));
    s.push(if f.page.ascending { " ORDER BY e.id ASC" } else { " ORDER BY e.id DESC" });
}

/// `SELECT count(*) AS n` of the rows `rows` selects, stopping after `cap`.
async fn count_upto<B: SqlBackend>(db: &B, rows: Stmt, cap: Option<u64>) -> Result<Count> {
    let mut s = Stmt { sql: format!("SELECT count(*) AS n FROM ({}", rows.sql), ..rows };
    if let Some(cap) = cap {
        s.push(" LIMIT ").bind(Count::over(cap));
    }
    s.push(") AS counted");
    let n = first(db, s, |r| B::Columns::i64(r, "n")).await?.unwrap_or(0).max(0) as u64;
    Ok(Count::capped(n, cap))
}

/// The streams per (trigger, state) pair, each pair's count stopping after
/// `$1`. The pairs are found by skipping through the `(trigger_name, state,
/// id)` index, one probe per step, not by reading every stream: the next
/// state of the same trigger, else the first state of the next trigger
/// (each a `min` the index answers at once; a row comparison `(trigger_name,
/// state) > (..)` would be searched by `trigger_name` alone on SQLite,
/// walking the trigger's every stream).
const CAPPED_STREAM_COUNTS: &str = "WITH RECURSIVE pairs(trigger_name, state) AS (\
    SELECT trigger_name, state FROM (SELECT trigger_name, state FROM stream \
      ORDER BY trigger_name, state LIMIT 1) AS lowest \
    UNION ALL \
    SELECT COALESCE(CASE WHEN (SELECT min(s.state) FROM stream s \
                               WHERE s.trigger_name = p.trigger_name AND s.state > p.state) IS NOT NULL \
                         THEN p.trigger_name END, \
                    (SELECT min(s.trigger_name) FROM stream s WHERE s.trigger_name > p.trigger_name)), \
           COALESCE((SELECT min(s.state) FROM stream s WHERE s.trigger_name = p.trigger_name AND s.state > p.state), \
                    (SELECT min(s.state) FROM stream s WHERE s.trigger_name = \
                       (SELECT min(s2.trigger_name) FROM stream s2 WHERE s2.trigger_name > p.trigger_name))) \
    FROM pairs p WHERE p.trigger_name IS NOT NULL) \
  SELECT p.trigger_name, p.state, (SELECT count(*) FROM (SELECT 1 FROM stream s \
      WHERE s.trigger_name = p.trigger_name AND s.state = p.state LIMIT $1) AS c) AS n \
  FROM pairs p WHERE p.trigger_name IS NOT NULL ORDER BY p.trigger_name, p.state";

/// The rows of a log with an id above `after` or in `also`, ascending: the
/// first `limit` above `after` (a primary-key range) and those listed (one
/// probe each), merged.
async fn since<B: SqlBackend, T: IdLog>(db: &B, after: i64, also: &[i64], limit: u32) -> Result<Vec<T>> {
    let mut s = Stmt::default();
    let (after, limit) = (s.arg(after), s.arg(i64::from(limit)));
    let listed = B::in_ids(&mut s, "id", also);
    let (columns, table) = (T::COLUMNS, T::TABLE);
    s.push(&format!(
        "SELECT * FROM (SELECT * FROM (SELECT {columns} FROM {table} WHERE id > {after} ORDER BY id LIMIT {limit}) \
         AS above UNION ALL SELECT {columns} FROM {table} WHERE {listed} AND id <= {after}) AS rows \
         ORDER BY id LIMIT {limit}"
    ));
    all(db, s, T::decode::<B::Columns>).await
}

/// A claim's lease end: `now + lease` (a day if `lease` does not fit).
fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::days(1))
}

#[async_trait]
impl<B: SqlBackend> StreamStore for B {
    async fn ready_streams(&self, action: Action, now: DateTime<Utc>, limit: u32) -> Result<Vec<Stream>> {
        let mut s = Stmt::default();
        let (now, limit) = (s.arg(now), s.arg(i64::from(limit)));
        s.push(&ready_sql(action, STREAM_COLUMNS, &now, &limit));
        all(self, s, decode::stream::<B::Columns>).await
    }

    async fn claim(
        &self,
        stream: &Stream,
        action: Action,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Stream>> {
        // Still ready for `action` (an expire claim must not take a stream that
        // became ready to fire since it was read).
        let mut s = Stmt::default().writing();
        let args =
            [s.arg(stream.id), s.arg(i64::from(stream.state_serial_no)), s.arg(now), s.arg(lease_end(now, lease))];
        s.push(&format!(
            "UPDATE stream SET {} WHERE id = {} AND state_serial_no = {} AND ({}) RETURNING {STREAM_COLUMNS}",
            claim_assignments(action, &args[3]),
            args[0],
            args[1],
            ready_condition(action, &args[2])
        ));
        first(self, s, decode::stream::<B::Columns>).await
    }

    async fn claim_ready_among(
        &self,
        action: Action,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        triggers: TriggerScope<'_>,
    ) -> Result<Vec<Claimed>> {
        self.claim_batch(ClaimBatch { action, now, lease_until, limit, triggers }).await
    }

    async fn finish_many(&self, runs: &[(&Stream, Finish<'_>)], now: DateTime<Utc>) -> Result<Vec<FinishOutcome>> {
        SqlBackend::finish_many(self, runs, now).await
    }

    async fn set_state(&self, id: i64, serial: i32, to: StreamState) -> Result<Option<Stream>> {
        let s = Stmt::with(
            format!(
                "UPDATE stream SET state = $3, state_serial_no = state_serial_no + 1 \
                 WHERE id = $1 AND state_serial_no = $2 RETURNING {STREAM_COLUMNS}"
            ),
            [Arg::Int(id), Arg::Int(serial.into()), to.into()],
        )
        .writing();
        first(self, s, decode::stream::<B::Columns>).await
    }

    async fn renew_leases(&self, held: &[(i64, i32)], until: DateTime<Utc>) -> Result<Vec<i64>> {
        if held.is_empty() {
            return Ok(vec![]);
        }
        SqlBackend::renew_leases(self, held, until).await
    }

    async fn get_stream(&self, id: i64) -> Result<Option<Stream>> {
        let s = Stmt::with(format!("SELECT {STREAM_COLUMNS} FROM stream WHERE id = $1"), [Arg::Int(id)]);
        first(self, s, decode::stream::<B::Columns>).await
    }

    async fn purge_stream(&self, id: i64) -> Result<bool> {
        let s = Stmt::with("DELETE FROM stream WHERE id = $1", [Arg::Int(id)]).writing();
        Ok(self.execute(s).await? == 1)
    }

    async fn next_due(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let s = Stmt::with(next_due_sql("$1"), [now.into()]);
        Ok(first(self, s, |r| B::Columns::opt_time(r, "due")).await?.flatten())
    }
}

#[async_trait]
impl<B: SqlBackend> EventStore for B {
    async fn stream_events(
        &self,
        stream_id: i64,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<(Vec<Event>, Option<Cursor>)> {
        let (after_time, after_id) = (after.map(|a| a.0), after.map_or(0, |a| a.1));
        let s = Stmt::with(
            format!(
                "SELECT e.id, e.message_id, e.event_type, e.generated, e.traits {} \
                 WHERE se.stream_id = $1 AND ($2 IS NULL OR (e.generated, e.id) > ($2, $3)) \
                 ORDER BY e.generated, e.id LIMIT $4",
                B::MEMBER_EVENT
            ),
            [Arg::Int(stream_id), Arg::Time(after_time), Arg::Int(after_id), Arg::Int(limit.into())],
        );
        decode::event_page::<B::Columns>(&self.rows(s).await?)
    }

    async fn load_events(&self, stream_ids: &[i64]) -> Result<Vec<(i64, Event)>> {
        if stream_ids.is_empty() {
            return Ok(vec![]);
        }
        let mut s = Stmt::default();
        let member = B::in_ids(&mut s, "se.stream_id", stream_ids);
        s.push(&format!(
            "SELECT se.stream_id, e.message_id, e.event_type, e.generated, e.traits {} \
             WHERE {member} ORDER BY se.stream_id, e.generated, e.id",
            B::MEMBER_EVENT
        ));
        all(self, s, decode::stream_event::<B::Columns>).await
    }

    async fn trim_events(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<u64> {
        SqlBackend::trim_events(self, cutoff, limit).await
    }

    async fn latest_event_time(&self) -> Result<Option<DateTime<Utc>>> {
        let s = Stmt::new("SELECT max(generated) AS latest FROM event");
        Ok(first(self, s, |r| B::Columns::opt_time(r, "latest")).await?.flatten())
    }
}

#[async_trait]
impl<B: SqlBackend> QueryStore for B {
    async fn list_streams(&self, f: &StreamFilter) -> Result<Vec<Stream>> {
        let by_match = !f.dist_traits.is_empty() || f.older_than.is_some() || f.younger_than.is_some();
        let mut s = Stmt::default();
        push_filtered_page(&mut s, "stream", STREAM_COLUMNS, &f.page, f.row_limit(), by_match, |s| {
            push_stream_filter::<B>(s, f)
        });
        all(self, s, decode::stream::<B::Columns>).await
    }

    async fn count_streams_upto(&self, f: &StreamFilter, cap: Option<u64>) -> Result<Count> {
        let mut s = Stmt::new("SELECT 1 FROM stream");
        push_stream_filter::<B>(&mut s, f);
        count_upto(self, s, cap).await
    }

    async fn stream_counts_upto(&self, cap: Option<u64>) -> Result<Vec<StreamCount>> {
        let rows = match cap {
            None => {
                self.rows(Stmt::new(
                    "SELECT trigger_name, state, count(*) AS n FROM stream GROUP BY trigger_name, state \
                     ORDER BY trigger_name, state",
                ))
                .await?
            }
            Some(cap) => self.rows(Stmt::with(CAPPED_STREAM_COUNTS, [Arg::Int(Count::over(cap))])).await?,
        };
        rows.iter().map(|r| decode::stream_count::<B::Columns>(r, cap)).collect()
    }

    async fn list_events(&self, f: &EventFilter) -> Result<Vec<StoredEvent>> {
        let types = event_types(self, f).await?;
        all(self, events_page::<B>(f, &types), decode::stored_event::<B::Columns>).await
    }

    async fn count_events_upto(&self, f: &EventFilter, cap: Option<u64>) -> Result<Count> {
        let types = event_types(self, f).await?;
        let mut s = Stmt::new("SELECT 1 FROM event");
        push_event_filter::<B>(&mut s, f, &types);
        count_upto(self, s, cap).await
    }

    async fn get_event(&self, message_id: &str) -> Result<Option<StoredEvent>> {
        let s = Stmt::with(B::EVENT_BY_MESSAGE_ID, [message_id.into()]);
        first(self, s, decode::stored_event::<B::Columns>).await
    }

    async fn event_streams(&self, event_id: i64) -> Result<Vec<i64>> {
        let s =
            Stmt::with("SELECT stream_id FROM stream_event WHERE event_id = $1 ORDER BY stream_id", [event_id.into()]);
        all(self, s, |r| B::Columns::i64(r, "stream_id")).await
    }

    async fn events_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<StoredEvent>> {
        since(self, after, also, limit).await
    }

    async fn transitions_since(&self, after: i64, also: &[i64], limit: u32) -> Result<Vec<Transition>> {
        since(self, after, also, limit).await
    }

    async fn transitions_from(&self, since: DateTime<Utc>, limit: u32) -> Result<Vec<Transition>> {
        let s = Stmt::with(
            format!("SELECT {TRANSITION_COLUMNS} FROM stream_transition WHERE at >= $1 ORDER BY at, id LIMIT $2"),
            [since.into(), Arg::Int(limit.into())],
        );
        all(self, s, decode::transition::<B::Columns>).await
    }

    async fn latest_ids(&self) -> Result<(i64, i64)> {
        let s = Stmt::new(
            "SELECT (SELECT coalesce(max(id), 0) FROM event) AS events, \
             (SELECT coalesce(max(id), 0) FROM stream_transition) AS transitions",
        );
        let ids = first(self, s, |r| Ok((B::Columns::i64(r, "events")?, B::Columns::i64(r, "transitions")?)));
        Ok(ids.await?.unwrap_or((0, 0)))
    }
}

#[async_trait]
impl<B: SqlBackend> VersionStore for B {
    async fn record_versions(&self, versions: &[DefinitionVersion], now: DateTime<Utc>) -> Result<()> {
        if versions.is_empty() {
            return Ok(());
        }
        SqlBackend::record_versions(self, versions, now).await
    }

    async fn trigger_version(&self, trigger: &str, version: &str) -> Result<Option<TriggerVersion>> {
        let s = Stmt::with(
            format!("SELECT {VERSION_COLUMNS} FROM trigger_version WHERE trigger_name = $1 AND version = $2"),
            [trigger.into(), version.into()],
        );
        first(self, s, decode::trigger_version::<B::Columns>).await
    }

    async fn trigger_versions(&self, trigger: Option<&str>) -> Result<Vec<TriggerVersion>> {
        let s = Stmt::with(
            format!(
                "SELECT {VERSION_COLUMNS} FROM trigger_version WHERE $1 IS NULL OR trigger_name = $1 ORDER BY {}",
                B::VERSION_ORDER
            ),
            [trigger.into()],
        );
        all(self, s, decode::trigger_version::<B::Columns>).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_binding_order() {
        let mut s = Stmt::new("SELECT 1 WHERE a = ");
        s.bind(1).push(" AND b = ").bind("x");
        let p = s.arg(Arg::Ids(vec![1, 2]));
        assert_eq!(p, "$3");
        assert_eq!(s.sql, "SELECT 1 WHERE a = $1 AND b = $2");
        assert_eq!(s.args, vec![Arg::Int(1), Arg::Text(Some("x".into())), Arg::Ids(vec![1, 2])]);
        assert!(!s.writes && Stmt::new("DELETE").writing().writes);
    }

    #[test]
    fn a_page_is_a_mark_an_order_and_a_limit() {
        let mut s = Stmt::new("SELECT id FROM t WHERE TRUE");
        push_page(&mut s, &Page { after: Some(7), ascending: true, limit: None }, Some(5));
        assert_eq!(s.sql, "SELECT id FROM t WHERE TRUE AND id > $1 ORDER BY id ASC LIMIT $2");
        let mut s = Stmt::new("");
        push_page(&mut s, &Page { after: None, ascending: false, limit: None }, None);
        assert_eq!(s.sql, " ORDER BY id DESC");
    }

    #[test]
    fn a_page_by_match_is_cut_from_the_materialized_matches() {
        let page = Page { after: Some(9), ascending: false, limit: None };
        let mut s = Stmt::new("SELECT * FROM (");
        s.bind(7).push(") AS u UNION ALL ");
        push_filtered_page(&mut s, "t", "id", &page, Some(3), true, |s| {
            s.push(" WHERE a = ").bind(1);
        });
        assert_eq!(
            s.sql,
            "SELECT * FROM ($1) AS u UNION ALL WITH matched AS MATERIALIZED (SELECT id FROM t WHERE a = $2 \
             AND id < $3) SELECT id FROM matched ORDER BY id DESC LIMIT $4",
            "appended after what is bound, numbered on"
        );
    }
}
