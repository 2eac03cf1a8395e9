ALTER TABLE stream DROP COLUMN version;
DROP TABLE trigger_version;
