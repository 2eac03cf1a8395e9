//! Database helpers for `winchester bench`: scratch databases, the COPY limit,
//! ready-made streams for worker runs. Admin SQL of the bench only; the
//! engine's SQL stays in the backend crates.

use futures::TryStreamExt;
use sqlx::{Connection, PgConnection, PgPool, Row};
use std::time::{Duration, Instant};

/// A fresh database (`wbench_<uuid>`) on a server reached through an admin URL.
#[derive(Debug, Clone)]
pub struct ScratchDb {
    /// The admin URL it was created through.
    pub admin_url: String,
    /// The database name.
    pub name: String,
    /// The URL of the new database.
    pub url: String,
}

impl ScratchDb {
    /// Creates a database named `wbench_<uuid>` and, when `migrated`, applies the schema.
    pub async fn create(admin_url: &str, migrated: bool) -> Result<ScratchDb, sqlx::Error> {
        let name = format!("wbench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await?;
        conn.close().await?;
        let db = ScratchDb { admin_url: admin_url.to_string(), url: with_database(admin_url, &name), name };
        if migrated {
            let pool = winchester_postgres::PgOptions::direct(&db.url)?.pool(1).await?;
            winchester_postgres::migrate::apply_pending(&pool, &winchester_postgres::MIGRATOR)
                .await
                .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
            pool.close().await;
        }
        Ok(db)
    }

    /// Drops the database (forcing off any remaining connection).
    pub async fn drop_db(&self) -> Result<(), sqlx::Error> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).execute(&mut conn).await?;
        conn.close().await
    }
}

/// `url` with its database name replaced by `db` (query string kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..].find('/').map(|i| i + scheme_end).unwrap_or(base.len());
    format!("{}/{}{}", &base[..host_end], db, query)
}

/// The server's version string (`SHOW server_version`).
pub async fn server_version(pool: &PgPool) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SHOW server_version").fetch_one(pool).await
}

/// The rows an engine wrote, in COPY text format, ids included.
#[derive(Debug, Clone, Default)]
pub struct EngineRows {
    /// `event` rows.
    pub event: Vec<u8>,
    /// `stream` rows.
    pub stream: Vec<u8>,
    /// `stream_event` rows.
    pub stream_event: Vec<u8>,
    /// `event_key` rows (the message_id dedup keys).
    pub event_key: Vec<u8>,
    /// Row counts: events, streams, memberships.
    pub counts: (u64, u64, u64),
    /// The first and last UTC day of the events (their partitions are made
    /// before a load is timed, as the engine makes them ahead).
    pub days: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
}

impl EngineRows {
    /// All rows (dedup keys not counted: one per event).
    pub fn total(&self) -> u64 {
        self.counts.0 + self.counts.1 + self.counts.2
    }
}

const EVENT_COLS: &str = "id, message_id, event_type, generated, traits";
const STREAM_COLS: &str =
    "id, trigger_name, dist_key, dist_traits, open, state, state_serial_no, first_event, last_event, \
     expire_timestamp, fire_timestamp, event_count, fire_counts, lease_expires_at, attempts, last_error";
const STREAM_EVENT_COLS: &str = "stream_id, event_id, generated";
const EVENT_KEY_COLS: &str = "message_id, generated, event_id";

async fn copy_out(
    conn: &mut PgConnection,
    table: &str,
    cols: &str,
    order: &str,
) -> Result<(Vec<u8>, u64), sqlx::Error> {
    let mut out = Vec::new();
    {
        let mut s = conn.copy_out_raw(&format!("COPY (SELECT {cols} FROM {table} ORDER BY {order}) TO STDOUT")).await?;
        while let Some(chunk) = s.try_next().await? {
            out.extend_from_slice(&chunk);
        }
    }
    // Text format: one line per row (newlines inside values are escaped).
    let rows = out.iter().filter(|b| **b == b'\n').count() as u64;
    Ok((out, rows))
}

/// Reads back every event, stream and membership row of an engine's database.
pub async fn dump_rows(url: &str) -> Result<EngineRows, sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    let (event, e) = copy_out(&mut conn, "event", EVENT_COLS, "id").await?;
    let (stream, s) = copy_out(&mut conn, "stream", STREAM_COLS, "id").await?;
    let (stream_event, m) = copy_out(&mut conn, "stream_event", STREAM_EVENT_COLS, "stream_id, event_id").await?;
    let (event_key, _) = copy_out(&mut conn, "event_key", EVENT_KEY_COLS, "event_id").await?;
    let days: (Option<chrono::NaiveDate>, Option<chrono::NaiveDate>) = sqlx::query_as(
        "SELECT min((generated AT TIME ZONE 'UTC')::date), max((generated AT TIME ZONE 'UTC')::date) FROM event",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    let days = days.0.zip(days.1);
    Ok(EngineRows { event, stream, stream_event, event_key, counts: (e, s, m), days })
}

/// Makes the daily partitions of `first..=last` (the engine's own SQL
/// function, migration 0004).
pub async fn make_partitions(
    conn: &mut PgConnection,
    first: chrono::NaiveDate,
    last: chrono::NaiveDate,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT winchester_event_partitions($1, $2)").bind(first).bind(last).execute(conn).await.map(drop)
}

/// Loads `rows` into the (empty, migrated) database at `url` with `COPY FROM
/// STDIN`, all four tables in one transaction, and returns the time from
/// `BEGIN` to `COMMIT` (the days' partitions are made before). The id columns are copied as they are: `COPY FROM`
/// writes identity columns from its input even when they are `GENERATED
/// ALWAYS` (as `OVERRIDING SYSTEM VALUE` would), so memberships keep pointing
/// at the right rows; every index, constraint and foreign key of the schema is
/// in place and checked.
pub async fn copy_load(url: &str, rows: &EngineRows) -> Result<Duration, sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    if let Some((first, last)) = rows.days {
        make_partitions(&mut conn, first, last).await?;
    }
    let start = Instant::now();
    let mut tx = conn.begin().await?;
    for (table, cols, data) in [
        ("event", EVENT_COLS, &rows.event),
        ("event_key", EVENT_KEY_COLS, &rows.event_key),
        ("stream", STREAM_COLS, &rows.stream),
        ("stream_event", STREAM_EVENT_COLS, &rows.stream_event),
    ] {
        let mut copy = tx.copy_in_raw(&format!("COPY {table} ({cols}) FROM STDIN")).await?;
        copy.send(data.as_slice()).await?;
        copy.finish().await?;
    }
    tx.commit().await?;
    let took = start.elapsed();
    conn.close().await?;
    Ok(took)
}

/// Writes `streams` streams of `trigger`, each with `events_per_stream` events
/// (type `event_type`), all ready to fire now: the state a burst of completed
/// streams leaves behind. Set-based SQL, so it takes a second, not the time of
/// an ingest.
pub async fn fill_ready_streams(
    pool: &PgPool,
    trigger: &str,
    event_type: &str,
    streams: u64,
    events_per_stream: u64,
) -> Result<(), sqlx::Error> {
    let n = (streams * events_per_stream) as i64;
    let eps = events_per_stream.max(1) as i64;
    let mut tx = pool.begin().await?;
    let today = chrono::Utc::now().date_naive();
    make_partitions(&mut tx, today.pred_opt().unwrap_or(today), today).await?;
    sqlx::query(
        "INSERT INTO event (message_id, event_type, generated, traits) \
         SELECT 'ready-' || g, $2, now() - interval '1 hour' + g * interval '1 ms', \
           jsonb_build_object( \
             'instance_id', jsonb_build_object('string', 'ready-instance-' || (g / $3)), \
             'tenant_id', jsonb_build_object('string', 'tenant-' || (g / $3 % 97)), \
             'memory_mb', jsonb_build_object('int', 2048), \
             'host', jsonb_build_object('string', 'compute-' || (g % 31)), \
             'state', jsonb_build_object('string', 'active')) \
         FROM generate_series(0, $1 - 1) g",
    )
    .bind(n)
    .bind(event_type)
    .bind(eps)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO stream (trigger_name, dist_key, dist_traits, open, first_event, last_event, expire_timestamp, \
           fire_timestamp, event_count, fire_counts) \
         SELECT $1, 'ready-' || s, \
           jsonb_build_object('instance_id', jsonb_build_object('value', jsonb_build_object('string', 'ready-instance-' || s))), \
           FALSE, now() - interval '1 hour', now(), now() + interval '1 day', now() - interval '1 second', $3, ARRAY[1]::bigint[] \
         FROM generate_series(0, $2 - 1) s",
    )
    .bind(trigger)
    .bind(streams as i64)
    .bind(eps)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO event_key (message_id, generated, event_id) \
         SELECT message_id, generated, id FROM event WHERE message_id LIKE 'ready-%'",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO stream_event (stream_id, event_id, generated) \
         SELECT s.id, e.id, e.generated FROM event e \
         JOIN stream s ON s.trigger_name = $1 AND s.dist_key = 'ready-' || (substr(e.message_id, 7)::bigint / $2) \
         WHERE e.message_id LIKE 'ready-%'",
    )
    .bind(trigger)
    .bind(eps)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

/// Streams not yet done: active, firing, expiring or queued for retry.
pub async fn unfinished_streams(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM stream WHERE state IN (1, 2, 3, 7, 8)").fetch_one(pool).await
}

/// Streams in each state, as (state number, count).
pub async fn stream_states(pool: &PgPool) -> Result<Vec<(i16, i64)>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT state, count(*) AS n FROM stream GROUP BY state ORDER BY state").fetch_all(pool).await?;
    rows.iter().map(|r| Ok((r.try_get("state")?, r.try_get("n")?))).collect()
}

/// The limit a worker is measured against: every ready stream finished by
/// set-based SQL in one transaction — claim them all (one UPDATE), read all
/// their events (one SELECT, rows fetched to the client), complete them all
/// (one UPDATE). Returns how many streams it finished.
pub async fn finish_ready_set_based(pool: &PgPool) -> Result<u64, sqlx::Error> {
    use winchester_storage::stream::state_no::{ACTIVE, COMPLETED, FIRING, RETRY_FIRE};
    let mut tx = pool.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(&format!(
        "UPDATE stream SET state = {FIRING}, state_serial_no = state_serial_no + 1, open = FALSE, \
         lease_expires_at = now() + interval '5 minutes', attempts = attempts + 1 \
         WHERE state IN ({ACTIVE}, {RETRY_FIRE}) AND fire_timestamp <= now() RETURNING id"
    ))
    .fetch_all(&mut *tx)
    .await?;
    let events = sqlx::query(
        "SELECT se.stream_id, e.message_id, e.event_type, e.generated, e.traits \
         FROM stream_event se CROSS JOIN LATERAL (SELECT * FROM event e \
           WHERE e.id = se.event_id AND e.generated = se.generated LIMIT 1) e \
         WHERE se.stream_id = ANY($1) ORDER BY se.stream_id, e.generated, e.id",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    std::hint::black_box(events.len());
    sqlx::query(&format!(
        "UPDATE stream SET state = {COMPLETED}, state_serial_no = state_serial_no + 1, lease_expires_at = NULL \
         WHERE id = ANY($1)"
    ))
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ids.len() as u64)
}

/// Migrations 0005 and 0006 (the query indexes of issue 32), as compiled in:
/// the bench measures ingest with and without the indexes they create.
pub const QUERY_INDEXES_SQL: &str = concat!(
    include_str!("../../../migrations/0005_query_indexes.up.sql"),
    "\n",
    include_str!("../../../migrations/0006_event_time_keys.up.sql")
);

/// The statements of `sql`: `--` comments stripped, whitespace collapsed,
/// split at `;`, empty ones left out.
pub fn statements(sql: &str) -> Vec<String> {
    let code: String = sql.lines().map(|l| l.split("--").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    code.split(';').map(|st| st.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|st| !st.is_empty()).collect()
}

/// The name of the index `stmt` creates (`CREATE [UNIQUE] INDEX
/// [CONCURRENTLY] [IF NOT EXISTS] name ...`), if it creates a named one.
pub fn created_index(stmt: &str) -> Option<String> {
    let words: Vec<&str> = stmt.split_whitespace().collect();
    let is = |i: usize, w: &str| words.get(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
    let mut j = if is(0, "CREATE") { 1 } else { return None };
    j += usize::from(is(j, "UNIQUE"));
    if !is(j, "INDEX") {
        return None;
    }
    j += 1;
    j += usize::from(is(j, "CONCURRENTLY"));
    if is(j, "IF") && is(j + 1, "NOT") && is(j + 2, "EXISTS") {
        j += 3;
    }
    // `CREATE INDEX ON t (...)` has no name to drop.
    words.get(j).filter(|_| !is(j, "ON")).map(|name| name.trim_matches('"').to_string())
}

/// The name of every index `sql` creates, in order.
pub fn created_index_names(sql: &str) -> Vec<String> {
    statements(sql).iter().filter_map(|st| created_index(st)).collect()
}

/// The indexes migration 0005 creates ([`QUERY_INDEXES_SQL`]).
pub fn query_index_names() -> Vec<String> {
    created_index_names(QUERY_INDEXES_SQL)
}

/// The revert of migrations 0006 and 0005: the indexes it recreates are those they replaced.
pub const QUERY_INDEXES_DOWN_SQL: &str = concat!(
    include_str!("../../../migrations/0006_event_time_keys.down.sql"),
    "\n",
    include_str!("../../../migrations/0005_query_indexes.down.sql")
);

/// The statement of the revert that recreates index `name` as it was before
/// migration 0005 (an index 0005 replaced), if any.
fn index_before(name: &str) -> Option<String> {
    statements(QUERY_INDEXES_DOWN_SQL).into_iter().find(|stmt| created_index(stmt).as_deref() == Some(name))
}

/// Drops `names` (indexes) from the database at `url`, leaving an index that
/// migration 0005 replaced as it was before; on a partitioned table the
/// partitions' indexes go with their parent's.
pub async fn drop_indexes(url: &str, names: &[String]) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    for name in names {
        sqlx::query(&format!("DROP INDEX IF EXISTS \"{}\"", name.replace('"', "\"\""))).execute(&mut conn).await?;
        if let Some(before) = index_before(name) {
            sqlx::query(&before).execute(&mut conn).await?;
        }
    }
    // Without all of them, the schema is the one before migration 0005: the
    // indexes 0005 dropped come back too.
    if query_index_names().iter().all(|n| names.contains(n)) {
        for stmt in statements(QUERY_INDEXES_DOWN_SQL) {
            if let Some(rest) = stmt.strip_prefix("CREATE INDEX ") {
                sqlx::query(&format!("CREATE INDEX IF NOT EXISTS {rest}")).execute(&mut conn).await?;
            }
        }
    }
    conn.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_index_is_restored_as_it_was() {
        assert_eq!(
            index_before("stream_trigger_state_idx").as_deref(),
            Some("CREATE INDEX stream_trigger_state_idx ON stream (trigger_name, state)")
        );
        assert_eq!(index_before("event_type_idx"), None);
    }

    #[test]
    fn index_names_are_read_from_the_migration() {
        let names = query_index_names();
        assert!(names.contains(&"event_type_idx".to_string()), "{names:?}");
        assert!(!names.iter().any(|n| n.eq_ignore_ascii_case("on") || n.contains('(')), "{names:?}");
        let sql = "-- CREATE INDEX commented ON x (a);\nCREATE UNIQUE INDEX IF NOT EXISTS \"a_idx\" ON t (a);\n\
                   create index concurrently b_idx on t (b); CREATE INDEX ON t (c);\nCREATE TABLE x (y INT);";
        assert_eq!(created_index_names(sql), vec!["a_idx".to_string(), "b_idx".to_string()]);
    }
}
