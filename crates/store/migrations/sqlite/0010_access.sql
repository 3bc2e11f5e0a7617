-- API keys and the audit log. Times are RFC 3339 text with fixed precision, so text order is
-- time order.

-- A key's secret is never stored: only the SHA-256 of the key's whole text (`chk_<id>_<secret>`).
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'analyst', 'carrier')),
    -- The carriers and books the key may see, as JSON: {"carriers": [...], "books": [...]},
    -- an absent member being no restriction.
    scope         TEXT NOT NULL DEFAULT '{}',
    description   TEXT,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    expires_at    TEXT,
    -- Set once: revoking again keeps the first time.
    revoked_at    TEXT,
    -- Per route class, as JSON: {"reads": {"limit": 100, "window_secs": 60}, ...}.
    rate_limits   TEXT NOT NULL DEFAULT '{}'
);

-- Writes, key changes and denied requests. Listed newest first by id (the rowid: no index
-- of its own), by actor, or only the denied ones; purged by age.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    role       TEXT,
    action     TEXT NOT NULL,
    target     TEXT,
    status     INTEGER NOT NULL,
    client     TEXT,
    request_id TEXT,
    detail     TEXT
);
CREATE INDEX audit_log_by_actor ON audit_log (actor, id);
CREATE INDEX audit_log_denied ON audit_log (id) WHERE status IN (401, 403, 429);
CREATE INDEX audit_log_at ON audit_log (at);
