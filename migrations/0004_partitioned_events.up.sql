-- Time-partitioned event storage (issue 14, section 4): events and stream
-- memberships live in daily partitions (UTC days) so that trimming a day is a
-- DROP TABLE, not millions of row deletes. Converts an existing database in
-- place: the 0003 tables are renamed, their rows copied into the partitioned
-- tables, then dropped.
--
-- - event: PARTITION BY RANGE (generated), one partition per UTC day named
--   event_pYYYYMMDD, plus event_default for any time without a partition (an
--   insert never fails for a missing day). Ids still come from one sequence;
--   the primary key is (id, generated) because a partitioned table's unique
--   constraints must include the partition key.
-- - stream_event: partitioned the same way by its event's time (the column
--   generated, copied from the event), so a day's memberships drop with the
--   day's events. Its foreign key to stream stays (purging a stream deletes
--   its memberships); the one to event is gone (a day is dropped whole, and
--   row-wise trimming deletes memberships explicitly).
-- - event_key: message_id dedup. A partitioned table cannot have a unique
--   index on message_id alone, so every event also writes its message_id
--   here, in the same statement; ON CONFLICT on this primary key is the
--   dedup. Keys of a dropped day are deleted afterwards in batches (days
--   listed in event_key_cleanup), so dedup holds for the retention window
--   and a little beyond, never less.
-- - winchester_event_partitions(first, last): creates the missing partitions
--   of those days (both tables, or neither), serialized by a transaction
--   advisory lock; a day whose rows already sit in a default partition keeps
--   them there (creating its partition would conflict) and is skipped.

DROP TRIGGER event_notify ON event;
ALTER TABLE stream_event RENAME TO stream_event_0003;
ALTER INDEX stream_event_pkey RENAME TO stream_event_0003_pkey;
ALTER INDEX stream_event_event_idx RENAME TO stream_event_0003_event_idx;
ALTER TABLE event RENAME TO event_0003;
ALTER INDEX event_pkey RENAME TO event_0003_pkey;
ALTER INDEX event_message_id_key RENAME TO event_0003_message_id_key;
ALTER INDEX event_generated_idx RENAME TO event_0003_generated_idx;

CREATE TABLE event (
    id          BIGINT      NOT NULL,
    message_id  TEXT        NOT NULL,
    event_type  TEXT        NOT NULL,
    generated   TIMESTAMPTZ NOT NULL,
    traits      JSONB       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT event_pkey PRIMARY KEY (id, generated)
) PARTITION BY RANGE (generated);
CREATE INDEX event_generated_idx ON event (generated);
CREATE TABLE event_default PARTITION OF event DEFAULT;

CREATE TABLE stream_event (
    stream_id BIGINT      NOT NULL REFERENCES stream (id) ON DELETE CASCADE,
    event_id  BIGINT      NOT NULL,
    generated TIMESTAMPTZ NOT NULL,
    CONSTRAINT stream_event_pkey PRIMARY KEY (stream_id, event_id, generated)
) PARTITION BY RANGE (generated);
CREATE INDEX stream_event_event_idx ON stream_event (event_id);
CREATE TABLE stream_event_default PARTITION OF stream_event DEFAULT;

CREATE TABLE event_key (
    message_id TEXT        NOT NULL,
    generated  TIMESTAMPTZ NOT NULL,
    event_id   BIGINT      NOT NULL,
    CONSTRAINT event_key_pkey PRIMARY KEY (message_id)
);
CREATE INDEX event_key_generated_idx ON event_key (generated);

-- Days whose partitions were dropped and whose keys are still to be deleted.
CREATE TABLE event_key_cleanup (
    day DATE PRIMARY KEY
);

-- Unfinished streams by first event: which streams may still need a day.
CREATE INDEX stream_unfinished_idx ON stream (first_event) WHERE state <> 6;

CREATE FUNCTION winchester_event_partitions(first_day DATE, last_day DATE) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    d       DATE := first_day;
    created INTEGER := 0;
    lo      TEXT;
    hi      TEXT;
BEGIN
    -- One creator at a time (any lock key would do; this one is ours).
    PERFORM pg_advisory_xact_lock(7305767361142702001);
    WHILE d <= last_day LOOP
        IF to_regclass('event_p' || to_char(d, 'YYYYMMDD')) IS NULL THEN
            lo := to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00';
            hi := to_char(d + 1, 'YYYY-MM-DD') || ' 00:00:00+00';
            BEGIN
                EXECUTE format('CREATE TABLE %I PARTITION OF event FOR VALUES FROM (%L) TO (%L)',
                    'event_p' || to_char(d, 'YYYYMMDD'), lo, hi);
                EXECUTE format('CREATE TABLE %I PARTITION OF stream_event FOR VALUES FROM (%L) TO (%L)',
                    'stream_event_p' || to_char(d, 'YYYYMMDD'), lo, hi);
                created := created + 1;
            EXCEPTION
                -- A default partition holds rows of this day: they stay there.
                WHEN check_violation THEN
                    RAISE NOTICE 'events of % stay in the default partition', d;
                WHEN duplicate_table THEN
                    NULL;
            END;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN created;
END $$;

-- Partitions for every day with events, and the next week.
SELECT winchester_event_partitions(d, d)
    FROM (SELECT DISTINCT (generated AT TIME ZONE 'UTC')::date AS d FROM event_0003) AS days;
SELECT winchester_event_partitions((now() AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date + 7);

INSERT INTO event (id, message_id, event_type, generated, traits)
    SELECT id, message_id, event_type, generated, traits FROM event_0003;
INSERT INTO event_key (message_id, generated, event_id)
    SELECT message_id, generated, id FROM event_0003;
INSERT INTO stream_event (stream_id, event_id, generated)
    SELECT se.stream_id, se.event_id, e.generated
    FROM stream_event_0003 se JOIN event_0003 e ON e.id = se.event_id;

DROP TABLE stream_event_0003;
DROP TABLE event_0003;

-- Ids continue where the old identity column left off.
CREATE SEQUENCE event_id_seq AS BIGINT OWNED BY event.id;
SELECT setval('event_id_seq', coalesce((SELECT max(id) FROM event), 0) + 1, false);
ALTER TABLE event ALTER COLUMN id SET DEFAULT nextval('event_id_seq');

CREATE TRIGGER event_notify AFTER INSERT ON event FOR EACH STATEMENT
    EXECUTE FUNCTION winchester_notify_events();
