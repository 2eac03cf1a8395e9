-- winchester-rs schema for SQLite: the same tables as PostgreSQL.
-- Times are INTEGER microseconds since the Unix epoch (UTC); JSON is TEXT.

CREATE TABLE event (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT    NOT NULL UNIQUE,
    event_type  TEXT    NOT NULL,
    generated   INTEGER NOT NULL,
    traits      TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX event_generated_idx ON event (generated);

-- state: 1 active, 2 firing, 3 expiring, 4 error, 5 expire_error,
--        6 completed, 7 retry_fire, 8 retry_expire.
CREATE TABLE stream (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger_name     TEXT    NOT NULL,
    dist_key         TEXT    NOT NULL,
    dist_traits      TEXT    NOT NULL,
    open             INTEGER NOT NULL,
    state            INTEGER NOT NULL DEFAULT 1 CHECK (state BETWEEN 1 AND 8),
    state_serial_no  INTEGER NOT NULL DEFAULT 0,
    first_event      INTEGER NOT NULL,
    last_event       INTEGER NOT NULL,
    expire_timestamp INTEGER NOT NULL,
    fire_timestamp   INTEGER,
    event_count      INTEGER NOT NULL DEFAULT 0,
    fire_counts      TEXT    NOT NULL,
    lease_expires_at INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    CHECK (open = 0 OR state = 1)
);
CREATE UNIQUE INDEX stream_open_key ON stream (trigger_name, dist_key) WHERE open = 1;
CREATE INDEX stream_fire_ready_idx ON stream (fire_timestamp) WHERE state IN (1, 7);
CREATE INDEX stream_expire_ready_idx ON stream (expire_timestamp) WHERE state IN (1, 8);
CREATE INDEX stream_lease_idx ON stream (lease_expires_at) WHERE state IN (2, 3);
CREATE INDEX stream_trigger_state_idx ON stream (trigger_name, state);

CREATE TABLE stream_event (
    stream_id INTEGER NOT NULL REFERENCES stream (id) ON DELETE CASCADE,
    event_id  INTEGER NOT NULL REFERENCES event (id) ON DELETE CASCADE,
    PRIMARY KEY (stream_id, event_id)
);
CREATE INDEX stream_event_event_idx ON stream_event (event_id);
