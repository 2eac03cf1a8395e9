-- Time-partitioned event storage is PostgreSQL's (see the PostgreSQL
-- migration 0004); SQLite keeps its tables and trims row by row. This no-op
-- keeps both backends' migration lists alike.
SELECT 1;
