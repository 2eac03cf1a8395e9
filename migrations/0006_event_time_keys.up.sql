-- Events by time range (issue 32): the time index also holds each event's id,
-- so that the events of a range are found from the index alone (no table
-- row is read until the page is cut) and the page, newest or oldest first by
-- id, is cut from those keys. With the time alone in the index, a range
-- either read every matching row, or the planner walked the primary key
-- backwards testing the time of every entry, up to a whole day's partition.
-- Trimming by time reads this index as it read the old one.
--
-- IF NOT EXISTS: on a large database an operator may build it beforehand
-- (docs/operations.md, "Query indexes"); the index it replaces is dropped
-- after it exists.

CREATE INDEX IF NOT EXISTS event_generated_id_idx ON event (generated, id);
DROP INDEX IF EXISTS event_generated_idx;
