-- The embedded broker (crates/broker, `EmbeddedBroker`): one durable stream of messages read
-- by named consumer groups. It lives in the store's database so that a single process needs
-- no other service; the claim protocol is described in the broker's module documentation.

-- The stream. `sequence` is the publish order (AUTOINCREMENT: never reused); `message_id` is
-- the de-duplication id, kept for ever.
CREATE TABLE broker_messages (
    sequence     INTEGER PRIMARY KEY AUTOINCREMENT,
    subject      TEXT NOT NULL,
    message_id   TEXT NOT NULL UNIQUE,
    payload      BLOB NOT NULL,
    headers      TEXT NOT NULL DEFAULT '{}',
    published_at TEXT NOT NULL
);

-- Durable consumer groups. Every message below `next_sequence` that matches `filter` has
-- been handed out to the group (and is in broker_deliveries until it is settled).
CREATE TABLE broker_groups (
    name           TEXT PRIMARY KEY,
    filter         TEXT NOT NULL,
    next_sequence  INTEGER NOT NULL DEFAULT 1,
    ack_wait_ms    INTEGER NOT NULL,
    max_deliveries INTEGER NOT NULL,
    created_at     TEXT NOT NULL
);

-- Messages handed out to a group and not yet acknowledged: in flight until `visible_at`
-- (the ack wait's deadline), or waiting for a redelivery from `visible_at` on (after a nak).
-- A row whose `visible_at` has passed is handed out again.
CREATE TABLE broker_deliveries (
    group_name  TEXT NOT NULL REFERENCES broker_groups(name),
    sequence    INTEGER NOT NULL REFERENCES broker_messages(sequence),
    deliveries  INTEGER NOT NULL,
    visible_at  TEXT NOT NULL,
    last_reason TEXT,
    PRIMARY KEY (group_name, sequence)
);
CREATE INDEX broker_deliveries_due ON broker_deliveries (group_name, visible_at);

-- Messages a group gave up on, with a copy of the message so that a dead letter can be
-- shown and redriven on its own. AUTOINCREMENT: the id of a redriven (deleted) letter is
-- never given to another.
CREATE TABLE broker_dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name  TEXT NOT NULL,
    sequence    INTEGER NOT NULL,
    subject     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    payload     BLOB NOT NULL,
    headers     TEXT NOT NULL DEFAULT '{}',
    deliveries  INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    dead_at     TEXT NOT NULL
);
