//! `winchester test`: tests of the configured triggers and pipelines against
//! sample events, with no server. Each test gets a fresh in-memory SQLite
//! database, an event-time clock and an in-process worker; its events are
//! ingested in order with the clock at each one's timestamp, the clock then
//! runs on to `until`, and what exists and what ran is compared with `expect`.
//!
//! The file format is described in docs/testing.md. Problems with a file are
//! [`ConfigError`]s naming the file, line and key.

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use winchester::pipeline::{Env, Handler, HandlerError, HandlerRegistry, PipelineRunner};
use winchester::{TriggerManager, Worker, WorkerOptions};
use winchester_core::distiller::Distiller;
use winchester_core::event::{format_datetime, parse_rfc3339};
use winchester_core::{Clock, ConfigError, DistTraits, DistValue, Event, LoadedConfig, ManualClock, TriggerSet};
use winchester_storage::{Storage, StreamFilter, StreamState, TraitFilter, TransitionKind};

/// Handler types that reach the network: recorded instead of called unless
/// `--live-handlers`.
pub const NETWORK_HANDLERS: &[&str] = &["webhook", "amqp"];

/// One fixture file, validated.
#[derive(Debug, Clone)]
pub struct FixtureFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its tests, in file order.
    pub tests: Vec<FixtureTest>,
}

/// One test of a fixture file.
#[derive(Debug, Clone)]
pub struct FixtureTest {
    /// Its name.
    pub name: String,
    /// The events, in order (notifications already distilled; those no event
    /// definition covers are dropped, as ingest drops them).
    pub events: Vec<Event>,
    /// Where the clock runs on to after the last event.
    pub until: Option<DateTime<Utc>>,
    /// What should have happened.
    pub expect: Expect,
}

/// The `expect` section: each list given must match exactly (in any order).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The streams that exist at the end.
    #[serde(default)]
    pub streams: Option<Vec<ExpectedStream>>,
    /// The fire runs that completed.
    #[serde(default)]
    pub fired: Option<Vec<ExpectedStream>>,
    /// The expire runs that completed.
    #[serde(default)]
    pub expired: Option<Vec<ExpectedStream>>,
}

/// An expected stream (or fire/expire run); only the fields given are checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedStream {
    /// Its trigger.
    #[serde(default)]
    pub trigger: Option<TriggerName>,
    /// Its distinguishing traits (the keys given).
    #[serde(default)]
    pub distinguishing_traits: Option<BTreeMap<String, ExpectedValue>>,
    /// How many events it holds.
    #[serde(default)]
    pub events: Option<i64>,
    /// Its state (streams only).
    #[serde(default)]
    pub state: Option<State>,
}

/// A trigger name the configuration defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerName(pub String);

/// A stream state name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State(pub StreamState);

/// An expected distinguishing-trait value: a plain value, compared with the
/// stored one's own type (`4096` matches an int or the string "4096"), or a
/// time range as `{begin, end}` or as its begin.
#[derive(Debug, Clone, PartialEq)]
pub enum ExpectedValue {
    /// A scalar as written.
    Value(Value),
    /// A time range.
    Range {
        /// Its start.
        begin: DateTime<Utc>,
        /// Its end.
        end: DateTime<Utc>,
    },
}

/// What the file parser needs from the configuration. Kept in a thread-local
/// for the one `serde` pass, so errors found by these checks carry the line
/// serde_yaml knows.
struct ParseContext {
    triggers: HashSet<String>,
    distiller: Option<Arc<Distiller>>,
}

thread_local! {
    static CONTEXT: RefCell<Option<ParseContext>> = const { RefCell::new(None) };
}

/// A flat event, parsed and validated.
struct FlatEvent(Event);

impl<'de> Deserialize<'de> for FlatEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let e = Event::from_json(&v).map_err(D::Error::custom)?;
        e.validate().map_err(D::Error::custom)?;
        Ok(FlatEvent(e))
    }
}

/// A raw notification, distilled through the configuration's distiller
/// (`None`: no event definition covers it).
struct Notification(Option<Event>);

impl<'de> Deserialize<'de> for Notification {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let distiller = CONTEXT.with(|c| c.borrow().as_ref().and_then(|c| c.distiller.clone()));
        let distiller = distiller.ok_or_else(|| {
            D::Error::custom("notifications need distiller_config (an event_definitions.yaml) in the configuration")
        })?;
        let e = distiller.to_event(&v).map_err(D::Error::custom)?;
        if let Some(e) = &e {
            e.validate().map_err(D::Error::custom)?;
        }
        Ok(Notification(e))
    }
}

/// An RFC 3339 time with a zone.
struct Timestamp(DateTime<Utc>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_rfc3339(&s).map(Timestamp).ok_or_else(|| {
            D::Error::custom(format!("{s:?} is not an RFC 3339 date-time with a zone, e.g. 2026-11-23T10:00:00Z"))
        })
    }
}

impl<'de> Deserialize<'de> for TriggerName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CONTEXT.with(|c| match c.borrow().as_ref() {
            Some(ctx) if !ctx.triggers.contains(&s) => {
                let mut known: Vec<&str> = ctx.triggers.iter().map(String::as_str).collect();
                known.sort_unstable();
                Err(D::Error::custom(format!("unknown trigger {s:?}; the configuration defines {known:?}")))
            }
            _ => Ok(TriggerName(s)),
        })
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<StreamState>().map(State).map_err(D::Error::custom)
    }
}

impl<'de> Deserialize<'de> for ExpectedValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(m) => {
                let time = |k: &str| m.get(k).and_then(Value::as_str).and_then(parse_rfc3339);
                match (time("begin"), time("end"), m.len()) {
                    (Some(begin), Some(end), 2) => Ok(ExpectedValue::Range { begin, end }),
                    _ => Err(D::Error::custom(
                        "a time range must be {begin: <RFC 3339 time>, end: <RFC 3339 time>} (or just its begin)",
                    )),
                }
            }
            v @ (Value::String(_) | Value::Number(_) | Value::Bool(_)) => Ok(ExpectedValue::Value(v)),
            other => {
                Err(D::Error::custom(format!("expected a string, number, boolean or {{begin, end}}, found {other}")))
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tests: Vec<RawTest>,
}

#[derive(Deserialize)]
#[serde(try_from = "RawTestFields")]
struct RawTest(FixtureTest);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestFields {
    name: String,
    #[serde(default)]
    events: Option<Vec<FlatEvent>>,
    #[serde(default)]
    notifications: Option<Vec<Notification>>,
    #[serde(default)]
    until: Option<Timestamp>,
    #[serde(default)]
    expect: Expect,
}

impl TryFrom<RawTestFields> for RawTest {
    type Error = String;
    fn try_from(t: RawTestFields) -> Result<RawTest, String> {
        let events = match (t.events, t.notifications) {
            (Some(e), None) if e.is_empty() => return Err(format!("test {:?}: events is empty", t.name)),
            (Some(e), None) => e.into_iter().map(|e| e.0).collect(),
            (None, Some(n)) => n.into_iter().filter_map(|n| n.0).collect(),
            (Some(_), Some(_)) => return Err(format!("test {:?}: give events or notifications, not both", t.name)),
            (None, None) => return Err(format!("test {:?}: needs events (or notifications)", t.name)),
        };
        Ok(RawTest(FixtureTest { name: t.name, events, until: t.until.map(|u| u.0), expect: t.expect }))
    }
}

/// Parses and validates a fixture file's text against the configuration.
pub fn parse(
    text: &str,
    file: &Path,
    triggers: &TriggerSet,
    distiller: Option<Arc<Distiller>>,
) -> Result<FixtureFile, ConfigError> {
    let ctx = ParseContext { triggers: triggers.iter().map(|t| t.name.clone()).collect(), distiller };
    CONTEXT.with(|c| *c.borrow_mut() = Some(ctx));
    let parsed: Result<RawFile, _> = serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text));
    CONTEXT.with(|c| *c.borrow_mut() = None);
    let raw = parsed.map_err(|e| file_error(file, e))?;
    if raw.tests.is_empty() {
        return Err(ConfigError::new("no tests").in_file(file).key("tests"));
    }
    Ok(FixtureFile { path: file.to_path_buf(), tests: raw.tests.into_iter().map(|t| t.0).collect() })
}

/// Reads and parses a fixture file.
pub fn load(file: &Path, triggers: &TriggerSet, distiller: Option<Arc<Distiller>>) -> Result<FixtureFile, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(format!("cannot read the file: {e}")).in_file(file))?;
    parse(&text, file, triggers, distiller)
}

/// A serde_yaml error as file, line, key and message.
fn file_error(file: &Path, e: serde_path_to_error::Error<serde_yaml::Error>) -> ConfigError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let mut message = inner.to_string();
    // serde_yaml says where itself ("<path>: <message> at line L column C"); we
    // give the line and key as fields.
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    if let Some((head, rest)) = message.split_once(": ") {
        if path.starts_with(head) {
            message = rest.to_string();
        }
    }
    let mut err = ConfigError::new(message).in_file(file);
    err.line = inner.location().map(|l| l.line());
    if path != "." && !path.is_empty() {
        err = err.key(path);
    }
    err
}

/// How tests run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Call webhook and amqp handlers instead of recording them.
    pub live_handlers: bool,
}

/// A network handler's commit that was recorded instead of made.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The handler type (`webhook`, `amqp`).
    pub handler: String,
    /// The stream's trigger.
    pub trigger: String,
    /// `fire` or `expire`.
    pub action: String,
    /// The stream's distinguishing traits.
    pub distinguishing_traits: Value,
    /// Events the handler was given.
    pub events: usize,
}

impl Recorded {
    fn to_json(&self) -> Value {
        json!({
            "handler": self.handler, "trigger": self.trigger, "action": self.action,
            "distinguishing_traits": self.distinguishing_traits, "events": self.events,
        })
    }
}

/// Wraps a network handler: runs its `handle_events` (which must not reach
/// outside) and records its commit instead of making it.
struct RecordingHandler {
    inner: Box<dyn Handler>,
    handler: String,
    events: usize,
    log: Arc<Mutex<Vec<Recorded>>>,
}

#[async_trait]
impl Handler for RecordingHandler {
    async fn handle_events(&mut self, events: Vec<Event>, env: &mut Env) -> Result<Vec<Event>, HandlerError> {
        self.events = events.len();
        self.inner.handle_events(events, env).await
    }

    async fn commit(&mut self, env: &Env) -> Result<(), HandlerError> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(Recorded {
            handler: self.handler.clone(),
            trigger: env.stream_name.clone(),
            action: env.action.as_str().to_string(),
            distinguishing_traits: env.distinguishing_traits.to_plain_json(),
            events: self.events,
        });
        Ok(())
    }

    async fn rollback(&mut self, env: &Env) -> Result<(), HandlerError> {
        self.inner.rollback(env).await
    }
}

/// `registry` with its network handlers recorded into `log`.
fn recording_registry(registry: &HandlerRegistry, log: &Arc<Mutex<Vec<Recorded>>>) -> HandlerRegistry {
    let mut out = registry.clone();
    for &ty in NETWORK_HANDLERS {
        if !registry.knows(ty) {
            continue;
        }
        let live = registry.clone();
        let log = log.clone();
        out.register(ty, move |params, context| {
            let inner = live.build(ty, params, context)?;
            Ok(Box::new(RecordingHandler { inner, handler: ty.to_string(), events: 0, log: log.clone() }) as _)
        });
    }
    out
}

/// One expectation list that did not match.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// `streams`, `fired` or `expired`.
    pub what: &'static str,
    /// The entries expected, as JSON.
    pub expected: Vec<Value>,
    /// What there was, as JSON.
    pub actual: Vec<Value>,
}

/// The result of one test.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// The file.
    pub file: PathBuf,
    /// The test's name.
    pub name: String,
    /// The expectations that failed.
    pub mismatches: Vec<Mismatch>,
    /// The test could not run (a database or pipeline setup error).
    pub error: Option<String>,
    /// Network handler commits recorded instead of made.
    pub recorded: Vec<Recorded>,
}

impl TestResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.error.is_none()
    }
}

/// A stream at the end of a test.
#[derive(Debug, Clone)]
struct Actual {
    id: i64,
    trigger: String,
    dist: DistTraits,
    events: i64,
    state: StreamState,
}

impl Actual {
    fn to_json(&self, with_state: bool) -> Value {
        let mut v = json!({
            "trigger": self.trigger,
            "distinguishing_traits": self.dist.to_plain_json(),
            "events": self.events,
        });
        if with_state {
            v["state"] = json!(self.state.as_str());
        }
        v
    }
}

impl ExpectedValue {
    fn matches(&self, actual: &DistValue) -> bool {
        match (self, actual) {
            (ExpectedValue::Range { begin, end }, DistValue::Timerange { begin: b, end: e }) => begin == b && end == e,
            (ExpectedValue::Range { .. }, DistValue::Value(_)) => false,
            (ExpectedValue::Value(v), DistValue::Timerange { begin, .. }) => {
                v.as_str().and_then(parse_rfc3339).is_some_and(|t| t == *begin)
            }
            (ExpectedValue::Value(v), DistValue::Value(tv)) => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                TraitFilter { name: String::new(), value: text }.candidates().contains(tv)
            }
        }
    }

    fn to_json(&self) -> Value {
        match self {
            ExpectedValue::Value(v) => v.clone(),
            ExpectedValue::Range { begin, end } => {
                json!({"begin": format_datetime(begin), "end": format_datetime(end)})
            }
        }
    }
}

impl ExpectedStream {
    fn matches(&self, a: &Actual) -> bool {
        self.trigger.as_ref().is_none_or(|t| t.0 == a.trigger)
            && self.events.is_none_or(|n| n == a.events)
            && self.state.is_none_or(|s| s.0 == a.state)
            && self
                .distinguishing_traits
                .as_ref()
                .is_none_or(|want| want.iter().all(|(k, v)| a.dist.0.get(k).is_some_and(|actual| v.matches(actual))))
    }

    fn to_json(&self) -> Value {
        let mut v = serde_json::Map::new();
        if let Some(t) = &self.trigger {
            v.insert("trigger".into(), json!(t.0));
        }
        if let Some(d) = &self.distinguishing_traits {
            v.insert("distinguishing_traits".into(), d.iter().map(|(k, x)| (k.clone(), x.to_json())).collect());
        }
        if let Some(n) = self.events {
            v.insert("events".into(), json!(n));
        }
        if let Some(s) = self.state {
            v.insert("state".into(), json!(s.0.as_str()));
        }
        Value::Object(v)
    }
}

/// Whether every expected entry can be paired with its own actual entry and
/// none is left over (a bipartite perfect matching, by augmenting paths).
fn matches_exactly(expected: &[ExpectedStream], actual: &[&Actual]) -> bool {
    if expected.len() != actual.len() {
        return false;
    }
    fn augment(
        e: usize,
        expected: &[ExpectedStream],
        actual: &[&Actual],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for (a, act) in actual.iter().enumerate() {
            if seen[a] || !expected[e].matches(act) {
                continue;
            }
            seen[a] = true;
            if owner[a].is_none_or(|o| augment(o, expected, actual, seen, owner)) {
                owner[a] = Some(e);
                return true;
            }
        }
        false
    }
    let mut owner = vec![None; actual.len()];
    (0..expected.len()).all(|e| augment(e, expected, actual, &mut vec![false; actual.len()], &mut owner))
}

/// Runs one test on a fresh in-memory database.
pub async fn run_test(
    cfg: &LoadedConfig,
    registry: &HandlerRegistry,
    file: &Path,
    test: &FixtureTest,
    opts: &RunOptions,
) -> TestResult {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut result = TestResult {
        file: file.to_path_buf(),
        name: test.name.clone(),
        mismatches: Vec::new(),
        error: None,
        recorded: Vec::new(),
    };
    let registry = if opts.live_handlers { registry.clone() } else { recording_registry(registry, &log) };
    match run_events(cfg, registry, test).await {
        Ok((streams, runs)) => result.mismatches = compare(&test.expect, &streams, &runs),
        Err(e) => result.error = Some(format!("{e:#}")),
    }
    result.recorded = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    result
}

/// Ingests the test's events on an event-time clock with a worker pass
/// before and after each, runs the clock on to `until` and returns the
/// streams and the completed runs (`fired`/`expired`, by stream id).
async fn run_events(
    cfg: &LoadedConfig,
    registry: HandlerRegistry,
    test: &FixtureTest,
) -> anyhow::Result<(Vec<Actual>, Vec<(TransitionKind, i64)>)> {
    // One connection: every connection to `sqlite::memory:` is a database of its own.
    let (backend, _) =
        winchester_backends::migrated(&winchester_backends::DatabaseOptions::direct("sqlite::memory:"), 1).await?;
    let storage = backend.storage();
    let start = test.events.first().map(|e| e.timestamp).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let clock = Arc::new(ManualClock::new(start));
    let tm = TriggerManager::new(storage.clone(), Arc::new(cfg.triggers.clone()), clock.clone() as Arc<dyn Clock>);
    let runner = PipelineRunner::new(registry, cfg.clone());
    runner.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut wopts = WorkerOptions::from_config(&cfg.main);
    // Keep completed streams to compare; trimming would remove their events.
    wopts.purge_completed = false;
    wopts.trim = None;
    let worker = Worker::new(tm.clone(), runner, wopts);
    let settle = || async {
        while worker.run_once().await? > 0 {}
        anyhow::Ok(())
    };
    for event in &test.events {
        clock.advance_to(event.timestamp);
        settle().await?;
        let message_id = event.message_id.clone();
        tm.add_events(vec![event.clone()]).await.with_context(|| format!("ingesting {message_id:?}"))?;
        settle().await?;
    }
    let last = test.events.iter().map(|e| e.timestamp).max().unwrap_or(start);
    clock.advance_to(test.until.unwrap_or(last + Duration::days(1)));
    settle().await?;
    worker.close().await;
    Ok((streams_of(storage.as_ref()).await?, runs_of(storage.as_ref()).await?))
}

async fn streams_of(storage: &dyn Storage) -> anyhow::Result<Vec<Actual>> {
    let mut streams = storage.list_streams(&StreamFilter::default()).await?;
    streams.sort_by_key(|s| s.id);
    Ok(streams
        .into_iter()
        .map(|s| Actual { id: s.id, trigger: s.trigger, dist: s.dist_traits, events: s.event_count, state: s.state })
        .collect())
}

async fn runs_of(storage: &dyn Storage) -> anyhow::Result<Vec<(TransitionKind, i64)>> {
    const PAGE: u32 = 1000;
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = storage.transitions_since(after, &[], PAGE).await?;
        let full = page.len() == PAGE as usize;
        for t in page {
            after = after.max(t.id);
            if matches!(t.kind, TransitionKind::Fired | TransitionKind::Expired) {
                out.push((t.kind, t.stream_id));
            }
        }
        if !full {
            return Ok(out);
        }
    }
}

fn compare(expect: &Expect, streams: &[Actual], runs: &[(TransitionKind, i64)]) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let all: Vec<&Actual> = streams.iter().collect();
    let ran = |kind: TransitionKind| -> Vec<&Actual> {
        runs.iter().filter(|(k, _)| *k == kind).filter_map(|(_, id)| streams.iter().find(|s| s.id == *id)).collect()
    };
    let lists = [
        ("streams", &expect.streams, all, true),
        ("fired", &expect.fired, ran(TransitionKind::Fired), false),
        ("expired", &expect.expired, ran(TransitionKind::Expired), false),
    ];
    for (what, expected, actual, with_state) in lists {
        let Some(expected) = expected else { continue };
        if !matches_exactly(expected, &actual) {
            out.push(Mismatch {
                what,
                expected: expected.iter().map(ExpectedStream::to_json).collect(),
                actual: actual.iter().map(|a| a.to_json(with_state)).collect(),
            });
        }
    }
    out
}

/// Every fixture file named: files as given, directories as their `*.yaml`
/// and `*.yml` files in name order.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p)
                .map_err(|e| ConfigError::new(format!("cannot read the directory: {e}")).in_file(p))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(ConfigError::new("no *.yaml fixture files in this directory").in_file(p));
            }
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// The results of a `winchester test` run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One per test, in file order.
    pub results: Vec<TestResult>,
}

impl Report {
    /// Tests that passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed()).count()
    }

    /// Tests that failed.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// One line per test, expected against actual under each failure, and a
    /// closing `tests: N passed, N failed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for r in &self.results {
            let mark = if r.passed() { "ok  " } else { "FAIL" };
            out.push_str(&format!("{mark} {}: {}\n", r.file.display(), r.name));
            if let Some(e) = &r.error {
                out.push_str(&format!("     error: {e}\n"));
            }
            for m in &r.mismatches {
                out.push_str(&format!("     {}: expected and actual differ\n", m.what));
                for (label, items) in [("expected", &m.expected), ("actual", &m.actual)] {
                    out.push_str(&format!("       {label}:\n"));
                    for i in items {
                        out.push_str(&format!("         - {i}\n"));
                    }
                }
            }
        }
        out.push_str(&format!("tests: {} passed, {} failed\n", self.passed(), self.failed()));
        out
    }

    /// The results as one JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "tests": self.results.iter().map(|r| json!({
                "file": r.file.display().to_string(),
                "name": r.name,
                "passed": r.passed(),
                "error": r.error,
                "failures": r.mismatches.iter().map(|m| json!({
                    "what": m.what, "expected": m.expected, "actual": m.actual,
                })).collect::<Vec<_>>(),
                "recorded": r.recorded.iter().map(Recorded::to_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "passed": self.passed(),
            "failed": self.failed(),
        })
    }
}

/// A [`ConfigError`] as JSON (`file`, `line`, `key`, `message`).
pub fn error_json(e: &ConfigError) -> Value {
    json!({
        "file": e.file.as_ref().map(|f| f.display().to_string()),
        "line": e.line,
        "key": e.key,
        "message": e.message,
    })
}

/// Loads every file (all problems at once), then runs every test.
pub async fn run_files(
    cfg: &LoadedConfig,
    registry: &HandlerRegistry,
    paths: &[PathBuf],
    opts: &RunOptions,
) -> Result<Report, Vec<ConfigError>> {
    let distiller = match &cfg.distiller_file {
        Some(f) => Some(Arc::new(
            Distiller::load_flavoured(f, cfg.main.catch_all_notifications, cfg.main.distiller, &Default::default())
                .map_err(|e| e.0)?,
        )),
        None => None,
    };
    let files = expand(paths).map_err(|e| vec![e])?;
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for f in &files {
        match load(f, &cfg.triggers, distiller.clone()) {
            Ok(l) => loaded.push(l),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut report = Report::default();
    for file in &loaded {
        for test in &file.tests {
            report.results.push(run_test(cfg, registry, &file.path, test, opts).await);
        }
    }
    Ok(report)
}

/// `winchester test` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// Fixture files, or directories of *.yaml fixture files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Call network handlers (webhook, amqp) instead of recording their calls.
    #[arg(long)]
    pub live_handlers: bool,
}

/// `winchester test`: exit 0 when every test passed, 1 when one failed, 2
/// when the configuration or a fixture file is bad.
pub async fn command(
    args: &crate::common::ConfigArgs,
    registry: &HandlerRegistry,
    test: &TestArgs,
) -> std::process::ExitCode {
    let (files, json, opts) = (&test.files, test.json, &RunOptions { live_handlers: test.live_handlers });
    let bad = |errors: Vec<Value>, text: Vec<String>| {
        if json {
            println!("{}", json!({ "errors": errors }));
        } else {
            for t in text {
                eprintln!("error: {t}");
            }
        }
        std::process::ExitCode::from(2)
    };
    let cfg = match crate::common::load_config(args, registry) {
        Ok(c) => c,
        Err(e) => return bad(vec![json!({ "message": format!("{e:#}") })], vec![format!("{e:#}")]),
    };
    match run_files(&cfg, registry, files, opts).await {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.render());
            }
            std::process::ExitCode::from(if report.failed() == 0 { 0 } else { 1 })
        }
        Err(errors) => bad(errors.iter().map(error_json).collect(), errors.iter().map(|e| e.to_string()).collect()),
    }
}
