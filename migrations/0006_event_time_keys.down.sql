CREATE INDEX event_generated_idx ON event (generated);
DROP INDEX event_generated_id_idx;
