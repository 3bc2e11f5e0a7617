-- The embedded broker (crates/broker, `EmbeddedBroker`): the tables of
-- migrations/sqlite/0007_broker.sql, in PostgreSQL's types. The claim protocol is described
-- in the broker's module documentation.

-- The stream's sequence counter, one row. A publisher takes the next sequence by updating
-- this row in its own transaction: the row lock makes publishers commit in sequence order,
-- so a consumer group's cursor never passes a sequence that is still to commit (an identity
-- column could commit 11 before 10, and a group reading 11 would skip 10 for ever).
CREATE TABLE broker_stream (
    singleton     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    last_sequence BIGINT NOT NULL
);
INSERT INTO broker_stream (singleton, last_sequence) VALUES (TRUE, 0);

-- The stream; `message_id` is the de-duplication id, kept for ever.
CREATE TABLE broker_messages (
    sequence     BIGINT PRIMARY KEY,
    subject      TEXT COLLATE "C" NOT NULL,
    message_id   TEXT COLLATE "C" NOT NULL UNIQUE,
    payload      BYTEA NOT NULL,
    headers      JSONB NOT NULL DEFAULT '{}',
    published_at TIMESTAMPTZ NOT NULL
);

-- Durable consumer groups. Every message below `next_sequence` that matches `filter` has
-- been handed out to the group (and is in broker_deliveries until it is settled).
CREATE TABLE broker_groups (
    name           TEXT COLLATE "C" PRIMARY KEY,
    filter         TEXT COLLATE "C" NOT NULL,
    next_sequence  BIGINT NOT NULL DEFAULT 1,
    ack_wait_ms    BIGINT NOT NULL,
    max_deliveries BIGINT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);

-- Messages handed out to a group and not yet acknowledged: in flight until `visible_at`
-- (the ack wait's deadline), or waiting for a redelivery from `visible_at` on (after a nak).
-- A row whose `visible_at` has passed is handed out again.
CREATE TABLE broker_deliveries (
    group_name  TEXT COLLATE "C" NOT NULL REFERENCES broker_groups(name),
    sequence    BIGINT NOT NULL REFERENCES broker_messages(sequence),
    deliveries  BIGINT NOT NULL,
    visible_at  TIMESTAMPTZ NOT NULL,
    last_reason TEXT,
    PRIMARY KEY (group_name, sequence)
);
CREATE INDEX broker_deliveries_due ON broker_deliveries (group_name, visible_at);

-- Messages a group gave up on, with a copy of the message so that a dead letter can be
-- shown and redriven on its own.
CREATE TABLE broker_dead_letters (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_name  TEXT COLLATE "C" NOT NULL,
    sequence    BIGINT NOT NULL,
    subject     TEXT COLLATE "C" NOT NULL,
    message_id  TEXT COLLATE "C" NOT NULL,
    payload     BYTEA NOT NULL,
    headers     JSONB NOT NULL DEFAULT '{}',
    deliveries  BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    dead_at     TIMESTAMPTZ NOT NULL
);
