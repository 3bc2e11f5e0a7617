-- Mappings may now produce transactions on existing policies: the record kind's CHECK is
-- widened by rebuilding the table (SQLite cannot alter a CHECK). Foreign keys to it are
-- deferred: dropping the table orphans the submissions that refer to it, and inserting the
-- same rows into its successor of the same name resolves them again before the commit.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE mappings_copy AS SELECT * FROM mappings;
DROP TABLE mappings;
CREATE TABLE mappings (
    id          INTEGER PRIMARY KEY,
    carrier_id  TEXT NOT NULL REFERENCES carriers(id),
    name        TEXT NOT NULL,
    record_kind TEXT NOT NULL CHECK (record_kind IN ('policy', 'claim', 'transaction')),
    version     INTEGER NOT NULL,
    revision    INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (carrier_id, name, sha256),
    UNIQUE (carrier_id, name, revision)
);
INSERT INTO mappings (id, carrier_id, name, record_kind, version, revision, sha256, spec, created_at)
    SELECT id, carrier_id, name, record_kind, version, revision, sha256, spec, created_at FROM mappings_copy;
DROP TABLE mappings_copy;

-- The transactions applied to each policy, by the carrier's reference: the same transaction
-- sent again is recognised and not applied twice.
CREATE TABLE applied_transactions (
    policy_id      INTEGER NOT NULL REFERENCES policies(id),
    reference      TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    record         TEXT NOT NULL, -- the canonical transaction as JSON
    policy_version INTEGER NOT NULL, -- the version it produced
    submission_id  INTEGER NOT NULL REFERENCES submissions(id),
    record_number  INTEGER NOT NULL,
    applied_at     TEXT NOT NULL,
    PRIMARY KEY (policy_id, reference)
);
