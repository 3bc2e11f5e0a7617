-- As-of reads: "what did the portfolio look like at instant T?" reads the version of each
-- policy and claim that was current at T (valid_from <= T < valid_to, or valid_to NULL).
--
-- The values the as-of lists filter on and the portfolio sums are copied out of each
-- version's JSON record into columns (the writers set them on every new version), and one
-- index per versions table holds them beside (id, valid_from, valid_to): an as-of list walks
-- it in id order (keyset pagination) and filters without reading the records, and the
-- as-of portfolio reads nothing else. Existing versions are backfilled from their records.

ALTER TABLE policy_versions ADD COLUMN carrier_id TEXT NOT NULL DEFAULT '';
ALTER TABLE policy_versions ADD COLUMN line_of_business TEXT NOT NULL DEFAULT '';
ALTER TABLE policy_versions ADD COLUMN status TEXT NOT NULL DEFAULT '';
ALTER TABLE policy_versions ADD COLUMN premium TEXT NOT NULL DEFAULT '0'; -- exact decimal, as policies.premium
ALTER TABLE policy_versions ADD COLUMN currency TEXT NOT NULL DEFAULT '';

UPDATE policy_versions SET
    carrier_id       = json_extract(record, '$.carrier'),
    line_of_business = json_extract(record, '$.line_of_business.value'),
    status           = json_extract(record, '$.status.value'),
    premium          = json_extract(record, '$.premium.amount'),
    currency         = json_extract(record, '$.premium.currency');

CREATE INDEX policy_versions_as_of ON policy_versions
    (policy_id, valid_from, valid_to, carrier_id, line_of_business, status, currency, premium);

-- A claim version's policy is the one its record names (a later version may name another).
ALTER TABLE claim_versions ADD COLUMN carrier_id TEXT NOT NULL DEFAULT '';
ALTER TABLE claim_versions ADD COLUMN status TEXT NOT NULL DEFAULT '';
ALTER TABLE claim_versions ADD COLUMN policy_id INTEGER REFERENCES policies(id);

UPDATE claim_versions SET
    carrier_id = json_extract(record, '$.carrier'),
    status     = json_extract(record, '$.status.value'),
    policy_id  = COALESCE(
        (SELECT p.id FROM policies p
          WHERE p.carrier_id = json_extract(claim_versions.record, '$.carrier')
            AND p.policy_number = json_extract(claim_versions.record, '$.policy_number')),
        (SELECT c.policy_id FROM claims c WHERE c.id = claim_versions.claim_id));

CREATE INDEX claim_versions_as_of ON claim_versions
    (claim_id, valid_from, valid_to, carrier_id, status, policy_id);
CREATE INDEX claim_versions_by_policy ON claim_versions (policy_id, claim_id, valid_from);
