-- API keys and the audit log.

-- A key's secret is never stored: only the SHA-256 of the key's whole text (`chk_<id>_<secret>`).
CREATE TABLE api_keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'analyst', 'carrier')),
    -- The carriers and books the key may see: {"carriers": [...], "books": [...]}, an absent
    -- member being no restriction.
    scope         JSONB NOT NULL DEFAULT '{}',
    description   TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    created_by    TEXT NOT NULL,
    expires_at    TIMESTAMPTZ,
    -- Set once: revoking again keeps the first time.
    revoked_at    TIMESTAMPTZ,
    -- Per route class: {"reads": {"limit": 100, "window_secs": 60}, ...}.
    rate_limits   JSONB NOT NULL DEFAULT '{}'
);

-- Writes, key changes and denied requests. Listed newest first by id (the primary key, read
-- backwards), by actor, or only the denied ones; purged by age.
CREATE TABLE audit_log (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    actor      TEXT COLLATE "C" NOT NULL,
    role       TEXT,
    action     TEXT NOT NULL,
    target     TEXT,
    status     INTEGER NOT NULL,
    client     TEXT,
    request_id TEXT,
    detail     TEXT
);
CREATE INDEX audit_log_by_actor ON audit_log (actor, id DESC);
CREATE INDEX audit_log_denied ON audit_log (id DESC) WHERE status IN (401, 403, 429);
CREATE INDEX audit_log_at ON audit_log (at);
