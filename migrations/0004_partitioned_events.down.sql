-- Back to the unpartitioned tables of 0001 (rows kept).
DROP TRIGGER IF EXISTS event_notify ON event;
DROP INDEX IF EXISTS stream_unfinished_idx;
ALTER TABLE stream_event RENAME TO stream_event_0004;
ALTER INDEX stream_event_pkey RENAME TO stream_event_0004_pkey;
ALTER INDEX stream_event_event_idx RENAME TO stream_event_0004_event_idx;
ALTER TABLE event RENAME TO event_0004;
ALTER INDEX event_pkey RENAME TO event_0004_pkey;
ALTER INDEX event_generated_idx RENAME TO event_0004_generated_idx;
ALTER SEQUENCE event_id_seq RENAME TO event_0004_id_seq;

CREATE TABLE event (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  TEXT        NOT NULL,
    event_type  TEXT        NOT NULL,
    generated   TIMESTAMPTZ NOT NULL,
    traits      JSONB       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT event_message_id_key UNIQUE (message_id)
);
CREATE INDEX event_generated_idx ON event (generated);
CREATE TABLE stream_event (
    stream_id BIGINT NOT NULL REFERENCES stream (id) ON DELETE CASCADE,
    event_id  BIGINT NOT NULL REFERENCES event (id) ON DELETE CASCADE,
    PRIMARY KEY (stream_id, event_id)
);
CREATE INDEX stream_event_event_idx ON stream_event (event_id);

INSERT INTO event (id, message_id, event_type, generated, traits) OVERRIDING SYSTEM VALUE
    SELECT id, message_id, event_type, generated, traits FROM event_0004 ORDER BY id
    ON CONFLICT (message_id) DO NOTHING;
INSERT INTO stream_event (stream_id, event_id)
    SELECT se.stream_id, se.event_id FROM stream_event_0004 se JOIN event e ON e.id = se.event_id
    ON CONFLICT DO NOTHING;
SELECT setval(pg_get_serial_sequence('event', 'id'),
    greatest((SELECT last_value FROM event_0004_id_seq), coalesce((SELECT max(id) FROM event), 1)));

DROP TABLE stream_event_0004;
DROP TABLE event_0004;
DROP TABLE event_key;
DROP TABLE event_key_cleanup;
DROP FUNCTION winchester_event_partitions(DATE, DATE);

CREATE TRIGGER event_notify AFTER INSERT ON event FOR EACH STATEMENT
    EXECUTE FUNCTION winchester_notify_events();
