-- Versioned trigger definitions (see the PostgreSQL migration 0003). Times are
-- INTEGER microseconds.

CREATE TABLE trigger_version (
    trigger_name TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    definition   TEXT    NOT NULL,
    first_used   INTEGER NOT NULL,
    PRIMARY KEY (trigger_name, version)
);

ALTER TABLE stream ADD COLUMN version TEXT;
