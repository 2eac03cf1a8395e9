-- Operations surface: a log of stream transitions filled by triggers (see the
-- PostgreSQL migration 0002 for what is logged and why). Times are INTEGER
-- microseconds. Every 1000th entry deletes the entries older than one day.

CREATE TABLE stream_transition (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id    INTEGER NOT NULL,
    trigger_name TEXT    NOT NULL,
    old_state    INTEGER NOT NULL,
    new_state    INTEGER,
    at           INTEGER NOT NULL
);
CREATE INDEX stream_transition_at_idx ON stream_transition (at);

CREATE TRIGGER stream_transition_update AFTER UPDATE OF state ON stream
    WHEN OLD.state IS NOT NEW.state AND NEW.state IN (4, 5, 6, 7, 8)
BEGIN
    INSERT INTO stream_transition (stream_id, trigger_name, old_state, new_state, at)
    VALUES (NEW.id, NEW.trigger_name, OLD.state, NEW.state,
            CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));
END;

CREATE TRIGGER stream_transition_delete AFTER DELETE ON stream
BEGIN
    INSERT INTO stream_transition (stream_id, trigger_name, old_state, new_state, at)
    VALUES (OLD.id, OLD.trigger_name, OLD.state, NULL,
            CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER));
END;

CREATE TRIGGER stream_transition_trim AFTER INSERT ON stream_transition
    WHEN NEW.id % 1000 = 0
BEGIN
    DELETE FROM stream_transition WHERE at < NEW.at - 86400000000;
END;
