-- As-of reads: "what did the portfolio look like at instant T?" reads the version of each
-- policy and claim that was current at T (valid_from <= T < valid_to, or valid_to NULL).
-- The same change as migrations/sqlite/0005_as_of_reads.sql.
--
-- The values the as-of lists filter on and the portfolio sums are copied out of each
-- version's JSONB record into columns (the writers set them on every new version), and one
-- index per versions table holds them beside (id, valid_from, valid_to): an as-of list walks
-- it in id order (keyset pagination) and filters without reading the records, and the
-- as-of portfolio can be answered from the index alone. Existing versions are backfilled.

ALTER TABLE policy_versions
    ADD COLUMN carrier_id       TEXT COLLATE "C",
    ADD COLUMN line_of_business TEXT,
    ADD COLUMN status           TEXT,
    ADD COLUMN premium          NUMERIC,
    ADD COLUMN currency         TEXT;

UPDATE policy_versions SET
    carrier_id       = record ->> 'carrier',
    line_of_business = record -> 'line_of_business' ->> 'value',
    status           = record -> 'status' ->> 'value',
    premium          = (record -> 'premium' ->> 'amount')::numeric,
    currency         = record -> 'premium' ->> 'currency';

ALTER TABLE policy_versions
    ALTER COLUMN carrier_id       SET NOT NULL,
    ALTER COLUMN line_of_business SET NOT NULL,
    ALTER COLUMN status           SET NOT NULL,
    ALTER COLUMN premium          SET NOT NULL,
    ALTER COLUMN currency         SET NOT NULL;

CREATE INDEX policy_versions_as_of ON policy_versions (policy_id, valid_from, valid_to)
    INCLUDE (carrier_id, line_of_business, status, currency, premium);

-- A claim version's policy is the one its record names (a later version may name another).
ALTER TABLE claim_versions
    ADD COLUMN carrier_id TEXT COLLATE "C",
    ADD COLUMN status     TEXT,
    ADD COLUMN policy_id  BIGINT REFERENCES policies(id);

UPDATE claim_versions v SET
    carrier_id = v.record ->> 'carrier',
    status     = v.record -> 'status' ->> 'value',
    policy_id  = COALESCE(
        (SELECT p.id FROM policies p
          WHERE p.carrier_id = v.record ->> 'carrier'
            AND p.policy_number = v.record ->> 'policy_number'),
        (SELECT c.policy_id FROM claims c WHERE c.id = v.claim_id));

ALTER TABLE claim_versions
    ALTER COLUMN carrier_id SET NOT NULL,
    ALTER COLUMN status     SET NOT NULL,
    ALTER COLUMN policy_id  SET NOT NULL;

CREATE INDEX claim_versions_as_of ON claim_versions (claim_id, valid_from, valid_to)
    INCLUDE (carrier_id, status, policy_id);
CREATE INDEX claim_versions_by_policy ON claim_versions (policy_id, claim_id, valid_from);
