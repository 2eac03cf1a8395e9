-- Operations surface: a log of stream transitions (for `winchester tail`,
-- /v1/tail and the console's per-minute figures) filled by database triggers,
-- so no engine code path has to remember it, and NOTIFY on new events and
-- transitions so tails wake at once.
--
-- Cost: only the transitions that end a run or reset one are logged (to
-- error, expire_error, completed, retry_fire, retry_expire, and deletes): one
-- small INSERT per finished stream plus a NOTIFY. Claims are not logged.
-- Every 1000th entry deletes the entries older than one day (indexed by time).

CREATE TABLE stream_transition (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id    BIGINT      NOT NULL,
    trigger_name TEXT        NOT NULL,
    old_state    SMALLINT    NOT NULL,
    new_state    SMALLINT,
    at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX stream_transition_at_idx ON stream_transition (at);

-- new_state NULL: the row was deleted (purge_completed_streams, or an operator's purge).
CREATE FUNCTION winchester_log_transition() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    logged BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO stream_transition (stream_id, trigger_name, old_state, new_state)
        VALUES (OLD.id, OLD.trigger_name, OLD.state, NULL) RETURNING id INTO logged;
    ELSE
        INSERT INTO stream_transition (stream_id, trigger_name, old_state, new_state)
        VALUES (NEW.id, NEW.trigger_name, OLD.state, NEW.state) RETURNING id INTO logged;
    END IF;
    IF logged % 1000 = 0 THEN
        DELETE FROM stream_transition WHERE at < now() - interval '1 day';
    END IF;
    PERFORM pg_notify('winchester_changes', 't');
    RETURN NULL;
END $$;

CREATE TRIGGER stream_transition_update AFTER UPDATE OF state ON stream FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state AND NEW.state IN (4, 5, 6, 7, 8))
    EXECUTE FUNCTION winchester_log_transition();
CREATE TRIGGER stream_transition_delete AFTER DELETE ON stream FOR EACH ROW
    EXECUTE FUNCTION winchester_log_transition();

-- One notification per INSERT statement on event (however many rows).
CREATE FUNCTION winchester_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('winchester_changes', 'e');
    RETURN NULL;
END $$;
CREATE TRIGGER event_notify AFTER INSERT ON event FOR EACH STATEMENT
    EXECUTE FUNCTION winchester_notify_events();
