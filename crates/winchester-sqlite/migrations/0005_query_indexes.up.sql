-- Queries that stay fast (issue 32): the indexes SQLite's planner can use
-- for the filters the API, the console and the CLI offer. An index's key
-- ends with the rowid (`id`), so each one also reads its rows in id order.
-- Trait conditions (json_each over the traits text) have no index here; on
-- PostgreSQL they use GIN indexes (docs/scaling.md).
--
-- - event_types: every event type ever stored (written at ingest), so that
--   a glob becomes the list of types it matches, each read through
--   event_type_idx.

CREATE TABLE event_types (
    event_type TEXT PRIMARY KEY
) WITHOUT ROWID;
INSERT INTO event_types (event_type) SELECT DISTINCT event_type FROM event;

CREATE INDEX event_type_idx ON event (event_type);
CREATE INDEX stream_state_idx ON stream (state);
CREATE INDEX stream_first_event_idx ON stream (first_event);
CREATE INDEX stream_last_event_idx ON stream (last_event);
