//! Plans of every query the API, the console and the CLI run (issue 32), on
//! PostgreSQL populated with 200,000 events over 20 daily partitions, 40,000
//! streams and their memberships.
//!
//! The server runs on a real socket over a storage that explains each read
//! statement before running it ([`PgStorage::with_plan_log`]); every filter
//! of the API is requested alone and in combination, paged both ways with
//! marks and counted, and every console page is fetched. Then each recorded
//! plan (with the rows each step really read: `EXPLAIN ANALYZE`) must have
//! no scan of an event or membership partition, of `stream`, `event_key` or
//! `stream_transition` that read many rows to return few: no sequential scan
//! and no walk of a primary key testing every row for a rare value (every
//! filter has an index on its column, so such a scan means it was not used).
//!
//! A filter added to the API's parameter lists without a sample here fails
//! the test, so a new filter cannot go unchecked.

use crate::support::*;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use winchester_api::params::{Params, EVENT_FILTER_PARAMS, PAGE_PARAMS, STREAM_FILTER_PARAMS};
use winchester_api::{ApiState, ReadyCheck};
use winchester_core::TriggerSet;
use winchester_postgres::PgStorage;
use winchester_storage::sql::{PlanLog, Planned};
use winchester_storage::{EventFilter, NamePattern, QueryStore, StreamFilter, StreamState, TraitFilter};

/// Events, streams, days.
const EVENTS: i64 = 200_000;
const STREAMS: i64 = 40_000;
const DAYS: i64 = 20;

/// The population: event types from common to rare (`compute.instance.rescue`
/// is 1 in 10,000), `instance_id` of 5,000 instances, 97 tenants; streams of
/// four triggers, 1% in error, a third completed, distinguished by instance;
/// each event a member of one stream; 100,000 logged transitions.
const POPULATE: &str = r#"
SELECT winchester_event_partitions(date '2025-03-01', date '2025-03-01' + 19);
INSERT INTO event (id, message_id, event_type, generated, traits)
SELECT g, 'm-' || g,
  CASE WHEN g % 10000 = 7 THEN 'compute.instance.rescue'
       WHEN g % 50 = 3 THEN 'compute.instance.delete.end'
       WHEN g % 50 = 4 THEN 'compute.instance.delete.start'
       WHEN g % 10 < 6 THEN 'compute.instance.update'
       ELSE 'compute.instance.exists' END,
  timestamptz '2025-03-01 00:00:00+00' + (g - 1) * interval '8640 milliseconds',
  jsonb_build_object(
    'instance_id', jsonb_build_object('string', 'inst-' || (g % 5000)),
    'tenant_id', jsonb_build_object('string', 'tenant-' || (g % 97)),
    'memory_mb', jsonb_build_object('int', 512 * (1 + g % 8)),
    'host', jsonb_build_object('string', 'host-' || (g % 40)),
    'request_id', jsonb_build_object('string', md5(g::text)))
FROM generate_series(1, 200000) g;
INSERT INTO event_key (message_id, generated, event_id) SELECT message_id, generated, id FROM event;
INSERT INTO event_types (event_type) SELECT DISTINCT event_type FROM event;
SELECT setval('event_id_seq', 200001, false);
INSERT INTO stream (trigger_name, dist_key, dist_traits, open, state, first_event, last_event,
                    expire_timestamp, fire_timestamp, event_count, fire_counts)
SELECT (ARRAY['instance_day', 'request', 'tenant_hour', 'usage'])[1 + g % 4],
  'k' || g,
  jsonb_build_object('instance_id', jsonb_build_object('value', jsonb_build_object('string', 'inst-' || (g % 5000)))),
  NOT (g % 100 = 0 OR g % 3 = 0),
  CASE WHEN g % 100 = 0 THEN 4 WHEN g % 3 = 0 THEN 6 ELSE 1 END,
  timestamptz '2025-03-01 00:00:00+00' + g * interval '40 seconds',
  timestamptz '2025-03-01 01:00:00+00' + g * interval '40 seconds',
  timestamptz '2025-03-02 01:00:00+00' + g * interval '40 seconds',
  NULL, 5, '{0}'
FROM generate_series(1, 40000) g;
INSERT INTO stream_event (stream_id, event_id, generated) SELECT id % 40000 + 1, id, generated FROM event;
INSERT INTO stream_transition (stream_id, trigger_name, old_state, new_state, at)
SELECT g % 40000 + 1, 'request', 2, 4, now() - g * interval '100 milliseconds' FROM generate_series(1, 100000) g;
ANALYZE;
"#;

/// A sample value of each API filter parameter (a rare one: the plans that
/// matter are those where a filter without an index would read everything).
fn sample(param: &str) -> Option<&'static str> {
    Some(match param {
        "event_name" => "compute.instance.rescue",
        "traits" => "instance_id:inst-42",
        "from_datetime" => "2025-03-05T10:00:00Z",
        "to_datetime" => "2025-03-05T11:00:00Z",
        "state" => "error",
        "trigger_name" | "name" => "request",
        "distinguishing_traits" => "instance_id:inst-42",
        "older_than" => "2025-03-02T00:00:00Z",
        "younger_than" => "2025-03-19T00:00:00Z",
        _ => return None,
    })
}

/// `a=x&b=y` of the sample values of `params`.
fn query_of(params: &[&str]) -> String {
    params
        .iter()
        .map(|p| format!("{p}={}", sample(p).unwrap_or_else(|| panic!("no sample value for the filter {p:?}"))))
        .collect::<Vec<_>>()
        .join("&")
}

/// Every non-empty combination of up to `k` of `params`.
fn combinations<'a>(params: &[&'a str], k: usize) -> Vec<Vec<&'a str>> {
    let mut out: Vec<Vec<&str>> = vec![vec![]];
    for p in params {
        let more: Vec<Vec<&str>> =
            out.iter().filter(|c| c.len() < k).map(|c| c.iter().copied().chain([*p]).collect()).collect();
        out.extend(more);
    }
    out.into_iter().filter(|c| !c.is_empty()).collect()
}

/// Rows a statement's scans may discard beyond [`DISCARD_RATIO`] times what
/// they return (5% of the events: a part of one day's partition, say).
const DISCARD_SLACK: f64 = 10_000.0;
/// Scans discarding more than this many rows per row returned (plus the
/// slack) read the table through rather than through an index.
const DISCARD_RATIO: f64 = 5.0;

/// A scan of an event, membership or stream table (or the key or
/// transition table) in a plan node and its children: (what, rows discarded,
/// rows returned, the leading column of an index it searches without a
/// condition on it), from `EXPLAIN ANALYZE`'s rows removed by the node's
/// filter or index recheck, its actual rows and its index condition.
fn scans(node: &Value, leading: &HashMap<String, String>, out: &mut Vec<(String, f64, f64, Option<String>)>) {
    let kind = node["Node Type"].as_str().unwrap_or("");
    let relation = node["Relation Name"].as_str().unwrap_or("");
    let watched = relation.starts_with("event")
        || relation.starts_with("stream_event")
        || ["stream", "event_key", "stream_transition"].contains(&relation);
    let number = |key: &str| node[key].as_f64().unwrap_or(0.0);
    let loops = number("Actual Loops").max(1.0);
    let index = node["Index Name"].as_str();
    if watched || index.is_some_and(|i| i.starts_with("event") || i.starts_with("stream")) {
        let via = index.map(|i| format!(" walking {i}")).unwrap_or_default();
        let discarded = (number("Rows Removed by Filter") + number("Rows Removed by Index Recheck")) * loops;
        // An index condition that leaves out the index's first column
        // (a time condition on the primary key `(id, generated)`, say) is
        // tested on every entry: the whole index is read, whatever the rows.
        let unled = match (index.and_then(|i| leading.get(i)), node["Index Cond"].as_str()) {
            (Some(first), Some(cond)) => {
                let mentioned = cond.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w == first);
                (!mentioned).then(|| first.clone())
            }
            _ => None,
        };
        let what = if relation.is_empty() { format!("{kind}{via}") } else { format!("{kind} of {relation}{via}") };
        out.push((what, discarded, number("Actual Rows") * loops, unled));
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        scans(child, leading, out);
    }
}

/// The first column of every index of the database, by index name.
async fn leading_columns(db: &TestDb) -> HashMap<String, String> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(db.pool())
    .await
    .expect("reading the indexes' first columns");
    rows.into_iter().collect()
}

/// The statements whose scans read many rows to return few, each with its
/// worst scans. A walk of a primary key testing every row for a rare value,
/// a sequential scan with a filter, or a search of an index by a condition
/// on one of its later columns only is such a read; a walk through rows most
/// of which match, or a scan cut short by a limit, is not.
fn check_plans(plans: &[Planned], leading: &HashMap<String, String>) -> Vec<String> {
    let mut bad = Vec::new();
    for p in plans {
        let mut found = Vec::new();
        scans(&p.plan[0]["Plan"], leading, &mut found);
        let discarded: f64 = found.iter().map(|s| s.1).sum();
        let returned: f64 = found.iter().map(|s| s.2).sum();
        let unled: Vec<String> = found
            .iter()
            .filter_map(|(what, _, _, first)| {
                first.as_ref().map(|c| format!("{what} without a condition on its first column, {c}"))
            })
            .collect();
        if discarded > DISCARD_SLACK + DISCARD_RATIO * returned {
            found.sort_by(|a, b| b.1.total_cmp(&a.1));
            let worst: Vec<String> =
                found.iter().take(3).map(|(what, d, r, _)| format!("{what} read {d} rows to return {r}")).collect();
            bad.push(format!(
                "{}
  {discarded} rows discarded for {returned}: {}",
                p.sql,
                worst.join("; ")
            ));
        } else if !unled.is_empty() {
            bad.push(format!("{}\n  {}", p.sql, unled.join("; ")));
        }
    }
    bad
}

/// Every API filter alone and in pairs (lists, pages both ways, counts),
/// every console page and the CLI's queries: no plan reads a table through.
async fn every_query_uses_an_index() {
    let db = TestDb::new().await;
    for stmt in POPULATE.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        db.exec(stmt).await;
    }
    assert_eq!(db.count("SELECT count(*) FROM event").await, EVENTS);
    assert_eq!(db.count("SELECT count(*) FROM stream").await, STREAMS);
    assert_eq!(db.count("SELECT count(*) FROM event_default").await, 0, "every event in its day's partition");
    let days = db
        .count("SELECT count(*) FROM pg_class WHERE relname LIKE 'event_p2025%' AND relkind = 'r' AND reltuples > 0")
        .await;
    assert_eq!(days, DAYS);

    let log = Arc::new(PlanLog::default());
    let storage = Arc::new(PgStorage::from_pool(db.pool().clone()).with_plan_log(log.clone()));
    let ready: ReadyCheck = Arc::new(|| Box::pin(async { Ok(()) }));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = ApiState::new(storage.clone(), Arc::new(TriggerSet::default()), None, true, ready, stop_rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(winchester_api::serve(listener, state, stop_tx, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let mut paths: Vec<String> = Vec::new();
    let mut requested: BTreeSet<String> = BTreeSet::new();
    for (list, params) in [("/v1/events", EVENT_FILTER_PARAMS), ("/v1/streams", STREAM_FILTER_PARAMS)] {
        // `name` is `trigger_name`'s other spelling; one of them at a time.
        let params: Vec<&str> = params.iter().copied().filter(|p| *p != "name").collect();
        for combo in combinations(&params, 2) {
            let q = query_of(&combo);
            requested.extend(combo.iter().map(|p| p.to_string()));
            paths.push(format!("{list}?{q}&limit=100"));
            paths.push(format!("{list}/count?{q}"));
        }
    }
    paths.push(format!("/v1/streams?{}&limit=10", query_of(&["name"])));
    requested.insert("name".into());
    for p in EVENT_FILTER_PARAMS.iter().chain(STREAM_FILTER_PARAMS) {
        assert!(requested.contains(*p), "the filter {p:?} is not requested");
    }
    paths.extend(
        [
            "/v1/events?limit=100",
            "/v1/events?event_name=compute.instance.delete.*&limit=100",
            "/v1/events?event_name=compute.instance.delete.*&traits=instance_id:inst-42&limit=100",
            "/v1/events?event_name=compute.instance.update&limit=100",
            "/v1/events/count?event_name=compute.instance.delete.*",
            "/v1/events/m-4242",
            "/v1/streams?limit=100",
            "/v1/streams?state=active&limit=100",
            "/v1/streams/4242?details=true",
            "/v1/triggers",
            "/",
            "/streams",
            "/streams?state=error",
            "/streams?trigger_name=request&state=error",
            "/streams/4242",
            "/events",
            "/events?event_name=compute.instance.rescue",
            "/events?traits=instance_id:inst-42",
            "/events/m-4242",
        ]
        .map(String::from),
    );
    for path in &paths {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        let status = r.status();
        let mark = r.headers().get("x-next-mark").and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(status, 200, "{path}: {}", r.text().await.unwrap_or_default());
        // The next page, and the page above it (oldest first from a mark).
        if let Some(mark) = mark {
            let sep = if path.contains('?') { '&' } else { '?' };
            for m in [mark.clone(), format!("+{}", mark.trim_start_matches('+'))] {
                let next = format!("{base}{path}{sep}mark={}", m.replace('+', "%2B"));
                assert_eq!(http.get(&next).send().await.unwrap().status(), 200, "{next}");
            }
        }
    }
    // The CLI's queries (`winchester events|streams list|count`), and the tail's.
    let rare = EventFilter { event_name: Some(NamePattern("compute.instance.rescue".into())), ..Default::default() };
    storage.list_events(&rare).await.unwrap();
    storage.count_events(&rare).await.unwrap();
    let errors = StreamFilter { state: Some(StreamState::Error), ..Default::default() };
    storage.list_streams(&errors).await.unwrap();
    storage.count_streams(&errors).await.unwrap();
    storage.events_since(EVENTS - 50, &[10, 20], 100).await.unwrap();
    storage.transitions_since(250, &[3], 100).await.unwrap();

    let plans = log.take();
    assert!(plans.len() > paths.len(), "{} plans recorded for {} requests", plans.len(), paths.len());
    let bad = check_plans(&plans, &leading_columns(&db).await);
    assert!(bad.is_empty(), "{} of {} plans read a table through:\n{}", bad.len(), plans.len(), bad.join("\n\n"));
    let _ = tx.send(());
    db.drop_db().await;
}

/// The check itself: a plan of a filter without an index fails it.
async fn a_filter_without_an_index_fails_the_check() {
    let db = TestDb::new().await;
    for stmt in POPULATE.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        db.exec(stmt).await;
    }
    db.exec("DROP INDEX event_type_idx").await;
    db.exec("DROP INDEX stream_dist_traits_idx").await;
    let log = Arc::new(PlanLog::default());
    let storage = PgStorage::from_pool(db.pool().clone()).with_plan_log(log.clone());
    let rare = EventFilter { event_name: Some(NamePattern("compute.instance.rescue".into())), ..Default::default() };
    assert_eq!(storage.list_events(&rare).await.unwrap().len(), 20);
    let dist = TraitFilter { name: "instance_id".into(), value: "inst-42".into() };
    let by_instance = StreamFilter { dist_traits: vec![dist], ..Default::default() };
    assert_eq!(storage.count_streams(&by_instance).await.unwrap(), 8);
    let bad = check_plans(&log.take(), &leading_columns(&db).await);
    assert_eq!(bad.len(), 2, "{bad:#?}");
    db.drop_db().await;
}

/// The check itself: an index searched by a later column only fails it,
/// whatever the rows. The plan is the one PostgreSQL chose at 10 million
/// events for an hour's events before the time index held ids: the primary
/// key `(id, generated)` walked backwards, its time tested on every entry
/// (nothing counts as discarded: the test is inside the index).
#[test]
fn an_index_searched_by_a_later_column_fails_the_check() {
    let walk = serde_json::json!([{"Plan": {"Node Type": "Limit", "Actual Rows": 100.0, "Plans": [{
        "Node Type": "Index Scan", "Relation Name": "event_p20261122", "Index Name": "event_p20261122_pkey",
        "Index Cond": "((generated >= '2026-11-22 05:00:00+00'::timestamp with time zone) AND \
                       (generated < '2026-11-22 06:00:00+00'::timestamp with time zone))",
        "Actual Rows": 100.0, "Actual Loops": 1.0}]}}]);
    let by_time = serde_json::json!([{"Plan": {"Node Type": "Index Only Scan", "Relation Name": "event_p20261122",
        "Index Name": "event_p20261122_generated_id_idx", "Actual Rows": 13888.0, "Actual Loops": 1.0,
        "Index Cond": "((generated >= '2026-11-22 05:00:00+00'::timestamp with time zone))"}}]);
    let leading: HashMap<String, String> =
        [("event_p20261122_pkey", "id"), ("event_p20261122_generated_id_idx", "generated")]
            .into_iter()
            .map(|(i, c)| (i.to_string(), c.to_string()))
            .collect();
    let planned = |plan| Planned { sql: "SELECT ...".into(), plan };
    let bad = check_plans(&[planned(walk), planned(by_time)], &leading);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert!(bad[0].contains("event_p20261122_pkey without a condition on its first column, id"), "{bad:#?}");
}

/// The same population on SQLite (times in microseconds, JSON as text).
const POPULATE_SQLITE: &str = r#"
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 200000)
INSERT INTO event (id, message_id, event_type, generated, traits)
SELECT n, 'm-' || n,
  CASE WHEN n % 10000 = 7 THEN 'compute.instance.rescue'
       WHEN n % 50 = 3 THEN 'compute.instance.delete.end'
       WHEN n % 50 = 4 THEN 'compute.instance.delete.start'
       WHEN n % 10 < 6 THEN 'compute.instance.update'
       ELSE 'compute.instance.exists' END,
  1740787200000000 + (n - 1) * 8640000,
  json_object('instance_id', json_object('string', 'inst-' || (n % 5000)),
              'tenant_id', json_object('string', 'tenant-' || (n % 97)))
FROM g;
INSERT INTO event_types (event_type) SELECT DISTINCT event_type FROM event;
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 40000)
INSERT INTO stream (id, trigger_name, dist_key, dist_traits, open, state, first_event, last_event,
                    expire_timestamp, fire_timestamp, event_count, fire_counts)
SELECT n, CASE n % 4 WHEN 0 THEN 'instance_day' WHEN 1 THEN 'request' WHEN 2 THEN 'tenant_hour' ELSE 'usage' END,
  'k' || n, json_object('instance_id', json_object('value', json_object('string', 'inst-' || (n % 5000)))),
  NOT (n % 100 = 0 OR n % 3 = 0),
  CASE WHEN n % 100 = 0 THEN 4 WHEN n % 3 = 0 THEN 6 ELSE 1 END,
  1740787200000000 + n * 40000000, 1740790800000000 + n * 40000000, 1740873600000000 + n * 40000000,
  NULL, 5, '[0]'
FROM g;
INSERT INTO stream_event (stream_id, event_id) SELECT id % 40000 + 1, id FROM event;
ANALYZE;
"#;

/// SQLite's plans (`EXPLAIN QUERY PLAN`) of every filter alone and in pairs,
/// listed both ways and counted: each reads its table by an index search,
/// never by a scan of the table or of a whole index. Left out, as
/// docs/scaling.md says: trait conditions (no index on SQLite: json_each over
/// the text), and event times alone, which SQLite answers by walking the
/// events in id order (no partitions to prune; a range near the newest or
/// oldest events, where a page starts, is found at once).
async fn sqlite_filters_search_an_index() {
    let db = TestDb::on(Backend::Sqlite).await;
    let log = Arc::new(PlanLog::default());
    let storage = winchester_sqlite::SqliteStorage::connect(&db.url, 2).await.unwrap().with_plan_log(log.clone());
    for stmt in POPULATE_SQLITE.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::query(stmt).execute(storage.pool()).await.unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    let indexed = |p: &&str| !p.contains("traits") && !p.ends_with("_datetime");
    let mut listed = 0;
    for (params, events) in [(EVENT_FILTER_PARAMS, true), (STREAM_FILTER_PARAMS, false)] {
        let params: Vec<&str> = params.iter().copied().filter(|p| *p != "name").filter(indexed).collect();
        for combo in combinations(&params, 2) {
            for page in ["&limit=100", "&limit=100&mark=%2B0"] {
                let q = format!("{}{page}", query_of(&combo));
                let p =
                    Params::from_query(Some(&q), &[EVENT_FILTER_PARAMS, STREAM_FILTER_PARAMS, PAGE_PARAMS]).unwrap();
                if events {
                    let f = EventFilter { page: p.page().unwrap(), ..p.event_filter().unwrap() };
                    listed += storage.list_events(&f).await.unwrap().len();
                    storage.count_events_upto(&f, Some(10_000)).await.unwrap();
                } else {
                    let f = StreamFilter { page: p.page().unwrap(), ..p.stream_filter().unwrap() };
                    listed += storage.list_streams(&f).await.unwrap().len();
                    storage.count_streams_upto(&f, Some(10_000)).await.unwrap();
                }
            }
        }
    }
    storage.stream_counts_upto(Some(10_000)).await.unwrap();
    assert!(listed > 0, "the filters match something");
    let mut bad = Vec::new();
    for p in log.take() {
        let steps: Vec<&str> = p.plan.as_array().unwrap().iter().filter_map(Value::as_str).collect();
        // The skip scan's first step reads the index's first entry.
        let first_pair = "SCAN stream USING COVERING INDEX stream_trigger_state_idx";
        let scans: Vec<&&str> = steps
            .iter()
            .filter(|l| ["SCAN event", "SCAN stream", "SCAN s ", "SCAN stream_event"].iter().any(|t| l.starts_with(t)))
            .filter(|l| **l != first_pair)
            .collect();
        if !scans.is_empty() {
            bad.push(format!("{}\n  {scans:?}", p.sql));
        }
    }
    assert!(bad.is_empty(), "{} plans scan a table:\n{}", bad.len(), bad.join("\n"));
    db.drop_db().await;
}

crate::postgres_tests!(every_query_uses_an_index, a_filter_without_an_index_fails_the_check);

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_filters_search_an_index() {
        super::sqlite_filters_search_an_index().await
    }
}
