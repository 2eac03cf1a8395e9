-- SQLite's time index already ends with the rowid (the event's id), so it
-- holds the keys PostgreSQL's migration 0006 adds. This no-op keeps both
-- backends' migration lists alike.
SELECT 1;
