-- Hot reload with versioned trigger definitions: every version of a trigger's
-- definition (its canonical text with the pipelines it names, see
-- docs/configuration.md) is recorded the first time a process loads it, and
-- each stream records the version it was opened under, so it fires and
-- expires by that version's rules after a reload. Streams from before this
-- migration have no version (NULL): the current definition applies to them.

CREATE TABLE trigger_version (
    trigger_name TEXT        NOT NULL,
    version      TEXT        NOT NULL,
    definition   TEXT        NOT NULL,
    first_used   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (trigger_name, version)
);

ALTER TABLE stream ADD COLUMN version TEXT;
