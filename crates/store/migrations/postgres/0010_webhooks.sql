-- Change events for readers and webhooks.

-- The order in which the relay published events: readers follow it, not ids, which
-- concurrent transactions commit out of order. The events published before keep their id as
-- their place (the relay published them in id order).
ALTER TABLE outbox ADD COLUMN published_seq BIGINT;
UPDATE outbox SET published_seq = id WHERE published_at IS NOT NULL;
CREATE UNIQUE INDEX outbox_published_seq ON outbox (published_seq) WHERE published_seq IS NOT NULL;

-- Subscriptions. The secret signs deliveries, so it is kept as it is. event_types and
-- carriers: empty means all; scope: the creator's, {"carriers": [...], "books": [...]}.
CREATE TABLE webhooks (
    id              BIGSERIAL PRIMARY KEY,
    url             TEXT NOT NULL,
    secret          TEXT NOT NULL,
    event_types     TEXT[] NOT NULL DEFAULT '{}',
    carriers        TEXT[] NOT NULL DEFAULT '{}',
    scope           JSONB NOT NULL DEFAULT '{}',
    description     TEXT,
    created_by      TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    failing_since   TIMESTAMPTZ,
    disabled_at     TIMESTAMPTZ,
    disabled_reason TEXT
);
CREATE INDEX webhooks_by_creator ON webhooks (created_by, id);

-- The durable delivery queue: one row per (webhook, event), claimed with a lease.
CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    webhook_id      BIGINT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id        BIGINT NOT NULL REFERENCES outbox(id),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    lease_owner     TEXT,
    lease_until     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    delivered_at    TIMESTAMPTZ,
    last_status     INTEGER,
    last_error      TEXT,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) WHERE status = 'pending';

-- The delivery log: every attempt.
CREATE TABLE webhook_attempts (
    id              BIGSERIAL PRIMARY KEY,
    delivery_id     BIGINT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    at              TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    status_code     INTEGER,
    error           TEXT,
    duration_ms     BIGINT NOT NULL,
    next_attempt_at TIMESTAMPTZ
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, attempt);
