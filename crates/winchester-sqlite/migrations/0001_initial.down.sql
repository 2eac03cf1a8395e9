DROP TABLE stream_event;
DROP TABLE stream;
DROP TABLE event;
