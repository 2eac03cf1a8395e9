DROP TRIGGER IF EXISTS stream_transition_trim;
DROP TRIGGER IF EXISTS stream_transition_delete;
DROP TRIGGER IF EXISTS stream_transition_update;
DROP TABLE IF EXISTS stream_transition;
