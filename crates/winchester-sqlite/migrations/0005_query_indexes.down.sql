DROP INDEX stream_last_event_idx;
DROP INDEX stream_first_event_idx;
DROP INDEX stream_state_idx;
DROP INDEX event_type_idx;
DROP TABLE event_types;
