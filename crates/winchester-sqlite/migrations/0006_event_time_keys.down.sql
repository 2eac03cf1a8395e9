-- No-op: see 0006_event_time_keys.up.sql.
SELECT 1;
