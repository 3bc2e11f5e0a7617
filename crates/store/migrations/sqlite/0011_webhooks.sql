-- Change events for readers and webhooks. Times are RFC 3339 text with fixed precision.

-- The order in which the relay published events: readers follow it (ids alone could be
-- committed out of order on a server database; here they follow it, and the old events
-- keep their id as their place).
ALTER TABLE outbox ADD COLUMN published_seq INTEGER;
UPDATE outbox SET published_seq = id WHERE published_at IS NOT NULL;
CREATE UNIQUE INDEX outbox_published_seq ON outbox (published_seq) WHERE published_seq IS NOT NULL;

-- Subscriptions. The secret signs deliveries, so it is kept as it is. Filters and the
-- creator's scope as JSON: event_types and carriers are arrays (empty: all), scope is
-- {"carriers": [...], "books": [...]} with an absent member being no restriction.
CREATE TABLE webhooks (
    -- AUTOINCREMENT: a deleted webhook's id is never given to another.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    url             TEXT NOT NULL,
    secret          TEXT NOT NULL,
    event_types     TEXT NOT NULL DEFAULT '[]',
    carriers        TEXT NOT NULL DEFAULT '[]',
    scope           TEXT NOT NULL DEFAULT '{}',
    description     TEXT,
    created_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    failing_since   TEXT,
    disabled_at     TEXT,
    disabled_reason TEXT
);
CREATE INDEX webhooks_by_creator ON webhooks (created_by, id);

-- The durable delivery queue: one row per (webhook, event), claimed with a lease.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    webhook_id      INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id        INTEGER NOT NULL REFERENCES outbox(id),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    lease_owner     TEXT,
    lease_until     TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) WHERE status = 'pending';

-- The delivery log: every attempt.
CREATE TABLE webhook_attempts (
    id              INTEGER PRIMARY KEY,
    delivery_id     INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    at              TEXT NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    duration_ms     INTEGER NOT NULL,
    next_attempt_at TEXT
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, attempt);
