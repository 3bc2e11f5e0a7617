-- The bytes of raw payloads, so that every process on this database can read a document
-- whichever machine received it: an API replica receives a file, a worker elsewhere
-- processes it. The data directory of each machine is then only a cache.
--
-- Content-addressed like `documents`: stored once however often it is sent. In chunks,
-- because a `bytea` value is read and written whole: neither storing nor fetching a file of
-- gigabytes may need it in memory. A document's chunks are written in one transaction, so a
-- document has all of them or none; chunk 0 always exists (empty for an empty document), and
-- its presence says the content is stored. Documents received before this migration have
-- no chunks: they stay in the data directory that received them.
CREATE TABLE document_chunks (
    sha256  TEXT NOT NULL REFERENCES documents(sha256),
    seq     INTEGER NOT NULL,
    bytes   BYTEA NOT NULL,
    PRIMARY KEY (sha256, seq)
);
