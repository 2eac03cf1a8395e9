-- Queries that stay fast over years of events (issue 32): an index for every
-- filter the API, the console and the CLI offer, so that none of them reads a
-- whole table or walks the primary key filtering row by row. What each costs
-- at ingest is measured by `winchester bench` (docs/performance.md).
--
-- - event_type_idx: events of one type, newest or oldest first (each daily
--   partition's part is walked in id order and the parts merged).
-- - event_traits_idx: trait equality (`traits @> {"name": {"type": value}}`).
-- - event_types: every event type ever stored (written at ingest, one row
--   per new type), so that a glob such as `compute.*` becomes the list of
--   types it matches, each read through event_type_idx.
-- - stream_state_idx, stream_trigger_state_idx (now with id): streams of one
--   state, or of one trigger in one state, newest or oldest first; the
--   per-trigger state counts skip through stream_trigger_state_idx. Streams
--   of one trigger alone are many (a deployment has a few triggers): walking
--   the primary key finds them at once, with no index of their own.
-- - stream_dist_traits_idx: streams by distinguishing trait.
-- - stream_first_event_idx, stream_last_event_idx: streams by time. The first
--   replaces 0004's stream_unfinished_idx (first_event of unfinished streams),
--   which trimming's "which streams may still need a day" reads as well
--   through it: one index on first_event instead of two.
--
-- Indexes on the partitioned tables are made on every partition, existing
-- and future; on a large existing database this migration takes a while
-- (docs/operations.md).

CREATE TABLE event_types (
    event_type TEXT PRIMARY KEY
);
INSERT INTO event_types (event_type) SELECT DISTINCT event_type FROM event;

-- IF NOT EXISTS: on a large database an operator may build these two
-- beforehand without blocking ingest (docs/operations.md, "Query indexes").
CREATE INDEX IF NOT EXISTS event_type_idx ON event (event_type, id);
CREATE INDEX IF NOT EXISTS event_traits_idx ON event USING gin (traits jsonb_path_ops);

CREATE INDEX stream_state_idx ON stream (state, id);
DROP INDEX stream_trigger_state_idx;
CREATE INDEX stream_trigger_state_idx ON stream (trigger_name, state, id);
CREATE INDEX stream_dist_traits_idx ON stream USING gin (dist_traits jsonb_path_ops);
CREATE INDEX stream_first_event_idx ON stream (first_event);
DROP INDEX stream_unfinished_idx;
CREATE INDEX stream_last_event_idx ON stream (last_event);
