-- Idempotency keys: a request sent again with the same `Idempotency-Key` gets the first
-- response instead of creating a second submission. A row is either in flight (`token` and
-- `locked_until` set, no response yet) or completed (the response, no token).
CREATE TABLE idempotency_keys (
    scope        TEXT COLLATE "C" NOT NULL,
    key          TEXT COLLATE "C" NOT NULL,
    -- A hash of the request that first used the key; another request with it is refused.
    fingerprint  TEXT NOT NULL,
    -- The claim of the request in flight, and until when it holds (after that it was
    -- abandoned and the next request takes the key over).
    token        TEXT,
    locked_until TIMESTAMPTZ,
    -- The response to replay: status, headers as [[name, value], …], body.
    status       INTEGER,
    headers      JSONB,
    body         BYTEA,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, key),
    CHECK ((status IS NULL) = (token IS NOT NULL))
);
-- Expired keys are removed in expiry order.
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
