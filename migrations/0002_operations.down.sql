DROP TRIGGER IF EXISTS event_notify ON event;
DROP FUNCTION IF EXISTS winchester_notify_events();
DROP TRIGGER IF EXISTS stream_transition_delete ON stream;
DROP TRIGGER IF EXISTS stream_transition_update ON stream;
DROP FUNCTION IF EXISTS winchester_log_transition();
DROP TABLE IF EXISTS stream_transition;
