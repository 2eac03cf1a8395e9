-- No-op: see 0004_partitioned_events.up.sql.
SELECT 1;
