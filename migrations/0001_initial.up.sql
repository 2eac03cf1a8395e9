-- winchester-rs schema: events, streams, stream membership.
-- Traits live in one typed JSONB column per event ({"name": {"int": 5}, ...}).

CREATE TABLE event (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  TEXT        NOT NULL,
    event_type  TEXT        NOT NULL,
    generated   TIMESTAMPTZ NOT NULL,
    traits      JSONB       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT event_message_id_key UNIQUE (message_id)
);
CREATE INDEX event_generated_idx ON event (generated);

-- state: 1 active, 2 firing, 3 expiring, 4 error, 5 expire_error,
--        6 completed, 7 retry_fire, 8 retry_expire.
-- open: the stream accepts events. At most one open stream per
-- (trigger_name, dist_key): enforced by stream_open_key.
CREATE TABLE stream (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trigger_name     TEXT        NOT NULL,
    dist_key         TEXT        NOT NULL,
    dist_traits      JSONB       NOT NULL,
    open             BOOLEAN     NOT NULL,
    state            SMALLINT    NOT NULL DEFAULT 1,
    state_serial_no  INTEGER     NOT NULL DEFAULT 0,
    first_event      TIMESTAMPTZ NOT NULL,
    last_event       TIMESTAMPTZ NOT NULL,
    expire_timestamp TIMESTAMPTZ NOT NULL,
    fire_timestamp   TIMESTAMPTZ,
    event_count      BIGINT      NOT NULL DEFAULT 0,
    fire_counts      BIGINT[]    NOT NULL,
    lease_expires_at TIMESTAMPTZ,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    last_error       TEXT,
    CONSTRAINT stream_state_check CHECK (state BETWEEN 1 AND 8),
    CONSTRAINT stream_open_is_active CHECK (NOT open OR state = 1)
);
CREATE UNIQUE INDEX stream_open_key ON stream (trigger_name, dist_key) WHERE open;
CREATE INDEX stream_fire_ready_idx ON stream (fire_timestamp) WHERE state IN (1, 7);
CREATE INDEX stream_expire_ready_idx ON stream (expire_timestamp) WHERE state IN (1, 8);
CREATE INDEX stream_lease_idx ON stream (lease_expires_at) WHERE state IN (2, 3);
CREATE INDEX stream_trigger_state_idx ON stream (trigger_name, state);

CREATE TABLE stream_event (
    stream_id BIGINT NOT NULL REFERENCES stream (id) ON DELETE CASCADE,
    event_id  BIGINT NOT NULL REFERENCES event (id) ON DELETE CASCADE,
    PRIMARY KEY (stream_id, event_id)
);
CREATE INDEX stream_event_event_idx ON stream_event (event_id);
