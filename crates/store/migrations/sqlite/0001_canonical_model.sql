-- Canonical model v1 for the embedded (SQLite) store.
-- Money is TEXT holding an exact decimal (never REAL); dates are ISO 8601 TEXT;
-- timestamps are RFC 3339 UTC TEXT with fixed precision so that they sort.

CREATE TABLE carriers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- Every mapping a submission used, kept verbatim: replaying a submission with the same
-- mapping gives the same records.
CREATE TABLE mappings (
    id          INTEGER PRIMARY KEY,
    carrier_id  TEXT NOT NULL REFERENCES carriers(id),
    name        TEXT NOT NULL,
    record_kind TEXT NOT NULL CHECK (record_kind IN ('policy', 'claim')),
    version     INTEGER NOT NULL,
    revision    INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (carrier_id, name, sha256),
    UNIQUE (carrier_id, name, revision)
);

-- Raw payloads, content-addressed: the bytes live under documents/sha256/ in the data directory.
CREATE TABLE documents (
    sha256      TEXT PRIMARY KEY,
    size_bytes  INTEGER NOT NULL,
    stored_at   TEXT NOT NULL
);

CREATE TABLE submissions (
    id               INTEGER PRIMARY KEY,
    carrier_id       TEXT NOT NULL REFERENCES carriers(id),
    mapping_id       INTEGER NOT NULL REFERENCES mappings(id),
    file_name        TEXT NOT NULL,
    document_sha256  TEXT NOT NULL REFERENCES documents(sha256),
    received_via     TEXT NOT NULL,
    received_at      TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('received', 'processing', 'completed', 'failed')),
    error            TEXT,
    started_at       TEXT,
    finished_at      TEXT,
    records          INTEGER NOT NULL DEFAULT 0,
    inserted         INTEGER NOT NULL DEFAULT 0,
    updated          INTEGER NOT NULL DEFAULT 0,
    unchanged        INTEGER NOT NULL DEFAULT 0,
    rejected         INTEGER NOT NULL DEFAULT 0,
    -- Records of the payload already committed: a resumed submission skips them.
    committed_through INTEGER NOT NULL DEFAULT 0,
    -- The worker processing the submission, and until when its claim holds; an expired
    -- claim (a crashed worker) lets another worker resume.
    lease_owner      TEXT,
    lease_until      TEXT
);
CREATE INDEX submissions_by_carrier ON submissions (carrier_id, id);
CREATE INDEX submissions_by_status ON submissions (status, id);

-- The current version of each policy, denormalised for filtering and listing.
CREATE TABLE policies (
    id                        INTEGER PRIMARY KEY,
    carrier_id                TEXT NOT NULL REFERENCES carriers(id),
    policy_number             TEXT NOT NULL,
    version                   INTEGER NOT NULL,
    content_hash              TEXT NOT NULL,
    line_of_business          TEXT NOT NULL,
    line_of_business_original TEXT NOT NULL,
    status                    TEXT NOT NULL,
    status_original           TEXT NOT NULL,
    effective_date            TEXT NOT NULL,
    expiration_date           TEXT NOT NULL,
    premium                   TEXT NOT NULL,
    currency                  TEXT NOT NULL,
    producer                  TEXT,
    insured_name              TEXT NOT NULL,
    created_at                TEXT NOT NULL,
    updated_at                TEXT NOT NULL,
    UNIQUE (carrier_id, policy_number)
);
CREATE INDEX policies_by_line ON policies (line_of_business, id);
CREATE INDEX policies_by_status ON policies (status, id);

-- Every version ever seen, with its lineage: the submission and the record it came from.
CREATE TABLE policy_versions (
    policy_id      INTEGER NOT NULL REFERENCES policies(id),
    version        INTEGER NOT NULL,
    content_hash   TEXT NOT NULL,
    record         TEXT NOT NULL, -- the canonical policy as JSON, coverages and insured included
    submission_id  INTEGER NOT NULL REFERENCES submissions(id),
    record_number  INTEGER NOT NULL,
    source_line    INTEGER NOT NULL,
    valid_from     TEXT NOT NULL,
    valid_to       TEXT,
    PRIMARY KEY (policy_id, version)
);
CREATE INDEX policy_versions_by_submission ON policy_versions (submission_id);

CREATE TABLE premium_transactions (
    id              INTEGER PRIMARY KEY,
    policy_id       INTEGER NOT NULL REFERENCES policies(id),
    policy_version  INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    amount          TEXT NOT NULL,
    currency        TEXT NOT NULL,
    effective_date  TEXT NOT NULL,
    submission_id   INTEGER NOT NULL REFERENCES submissions(id),
    recorded_at     TEXT NOT NULL
);
CREATE INDEX premium_transactions_by_policy ON premium_transactions (policy_id, id);

CREATE TABLE claims (
    id               INTEGER PRIMARY KEY,
    carrier_id       TEXT NOT NULL REFERENCES carriers(id),
    claim_number     TEXT NOT NULL,
    policy_id        INTEGER NOT NULL REFERENCES policies(id),
    version          INTEGER NOT NULL,
    content_hash     TEXT NOT NULL,
    loss_date        TEXT NOT NULL,
    reported_date    TEXT NOT NULL,
    status           TEXT NOT NULL,
    status_original  TEXT NOT NULL,
    cause            TEXT,
    paid             TEXT NOT NULL,
    reserve          TEXT NOT NULL,
    currency         TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (carrier_id, claim_number)
);
CREATE INDEX claims_by_policy ON claims (policy_id, id);
CREATE INDEX claims_by_status ON claims (status, id);

CREATE TABLE claim_versions (
    claim_id       INTEGER NOT NULL REFERENCES claims(id),
    version        INTEGER NOT NULL,
    content_hash   TEXT NOT NULL,
    record         TEXT NOT NULL,
    submission_id  INTEGER NOT NULL REFERENCES submissions(id),
    record_number  INTEGER NOT NULL,
    source_line    INTEGER NOT NULL,
    valid_from     TEXT NOT NULL,
    valid_to       TEXT,
    PRIMARY KEY (claim_id, version)
);

CREATE TABLE claim_transactions (
    id             INTEGER PRIMARY KEY,
    claim_id       INTEGER NOT NULL REFERENCES claims(id),
    claim_version  INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    amount         TEXT NOT NULL,
    currency       TEXT NOT NULL,
    submission_id  INTEGER NOT NULL REFERENCES submissions(id),
    recorded_at    TEXT NOT NULL
);
CREATE INDEX claim_transactions_by_claim ON claim_transactions (claim_id, id);

-- Records that did not make it, with where they came from and why. Nothing is dropped silently.
CREATE TABLE rejections (
    id             INTEGER PRIMARY KEY,
    submission_id  INTEGER NOT NULL REFERENCES submissions(id),
    record_number  INTEGER NOT NULL,
    source_line    INTEGER NOT NULL,
    field          TEXT,
    source_column  TEXT,
    value          TEXT,
    reason         TEXT NOT NULL
);
CREATE INDEX rejections_by_submission ON rejections (submission_id, id);

-- Change events written in the same transaction as the change (transactional outbox);
-- a relay publishes them to the broker.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY,
    event_type    TEXT NOT NULL,
    carrier_id    TEXT NOT NULL,
    subject_id    INTEGER NOT NULL,
    payload       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    published_at  TEXT
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
