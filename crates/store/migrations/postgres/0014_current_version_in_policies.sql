-- A policy's current version lives in its `policies` row; `policy_history` keeps only the
-- versions a later one superseded (the layout of SQL:2011's system-versioned tables). A new
-- policy is then written once, not twice: the first load of a million policies writes a
-- million `policies` rows and no version rows. An update moves the row it replaces into
-- `policy_history` (valid_to = the update's time) and rewrites the `policies` row.
--
-- `policy_versions` becomes a view over both, with the columns the table had, so that every
-- read of history (versions, diffs, as-of lists and details, the warehouse, the live view)
-- reads it as before. PostgreSQL pushes a query's conditions into both halves of the
-- UNION ALL, and the CHECK below lets it skip `policy_history` for `valid_to IS NULL`.
--
-- The current version's `valid_from` is the row's `updated_at` (both are the time of the
-- batch that wrote the version). PostgreSQL only: the SQLite store keeps every version in
-- its `policy_versions` table (it writes each row in the same process, where the second
-- write costs little); both behave the same (tests/conformance.rs).

ALTER TABLE policies
    ADD COLUMN record        JSONB,
    ADD COLUMN submission_id BIGINT,
    ADD COLUMN record_number BIGINT,
    ADD COLUMN source_line   BIGINT;

UPDATE policies p SET
    record        = v.record,
    submission_id = v.submission_id,
    record_number = v.record_number,
    source_line   = v.source_line,
    updated_at    = v.valid_from
  FROM policy_versions v
 WHERE v.policy_id = p.id AND v.version = p.version;

ALTER TABLE policies
    ALTER COLUMN record        SET NOT NULL,
    ALTER COLUMN submission_id SET NOT NULL,
    ALTER COLUMN record_number SET NOT NULL,
    ALTER COLUMN source_line   SET NOT NULL;

-- `extra.KEY=VALUE` filters on current policies (see 0003).
CREATE INDEX policies_extras ON policies USING GIN ((record -> 'extras') jsonb_path_ops);

DELETE FROM policy_versions v USING policies p WHERE v.policy_id = p.id AND v.version = p.version;

ALTER TABLE policy_versions RENAME TO policy_history;
ALTER INDEX policy_versions_pkey RENAME TO policy_history_pkey;
ALTER INDEX policy_versions_as_of RENAME TO policy_history_as_of;
ALTER INDEX policy_versions_by_submission RENAME TO policy_history_by_submission;
ALTER INDEX policy_versions_extras RENAME TO policy_history_extras;
-- Exactly one open version per policy: the `policies` row; history holds closed ones only.
DROP INDEX policy_versions_one_open;
ALTER TABLE policy_history ALTER COLUMN valid_to SET NOT NULL;

CREATE VIEW policy_versions AS
SELECT policy_id, version, content_hash, record, submission_id, record_number, source_line,
       valid_from, valid_to, carrier_id, line_of_business, status, premium, currency
  FROM policy_history
UNION ALL
SELECT id, version, content_hash, record, submission_id, record_number, source_line,
       updated_at, NULL::timestamptz, carrier_id, line_of_business, status, premium, currency
  FROM policies;
ANALYZE policies;
ANALYZE policy_history;
