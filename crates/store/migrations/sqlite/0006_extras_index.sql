-- Extras (the source fields the canonical model has no place for) live in each version's
-- record JSON. So that `extra.KEY=VALUE` filters stay fast, every version's extras are also
-- rows indexed by key and value, written by triggers as versions are inserted (versions are
-- never updated, apart from valid_to).
CREATE TABLE policy_extras (
    policy_id INTEGER NOT NULL,
    version   INTEGER NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (policy_id, version, key),
    FOREIGN KEY (policy_id, version) REFERENCES policy_versions (policy_id, version)
);
CREATE INDEX policy_extras_by_value ON policy_extras (key, value);

INSERT INTO policy_extras (policy_id, version, key, value)
    SELECT v.policy_id, v.version, e.key, e.value
    FROM policy_versions v, json_each(v.record, '$.extras') e
    WHERE json_type(v.record, '$.extras') = 'object';

CREATE TRIGGER policy_versions_extras AFTER INSERT ON policy_versions
WHEN json_type(NEW.record, '$.extras') = 'object'
BEGIN
    INSERT INTO policy_extras (policy_id, version, key, value)
        SELECT NEW.policy_id, NEW.version, key, value FROM json_each(NEW.record, '$.extras');
END;

CREATE TABLE claim_extras (
    claim_id INTEGER NOT NULL,
    version  INTEGER NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (claim_id, version, key),
    FOREIGN KEY (claim_id, version) REFERENCES claim_versions (claim_id, version)
);
CREATE INDEX claim_extras_by_value ON claim_extras (key, value);

INSERT INTO claim_extras (claim_id, version, key, value)
    SELECT v.claim_id, v.version, e.key, e.value
    FROM claim_versions v, json_each(v.record, '$.extras') e
    WHERE json_type(v.record, '$.extras') = 'object';

CREATE TRIGGER claim_versions_extras AFTER INSERT ON claim_versions
WHEN json_type(NEW.record, '$.extras') = 'object'
BEGIN
    INSERT INTO claim_extras (claim_id, version, key, value)
        SELECT NEW.claim_id, NEW.version, key, value FROM json_each(NEW.record, '$.extras');
END;
