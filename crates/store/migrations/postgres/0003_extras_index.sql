-- Extras (the source fields the canonical model has no place for) live in each version's
-- record. A GIN index on them answers `extra.KEY=VALUE` filters (`record -> 'extras' @> …`)
-- without scanning the versions.
CREATE INDEX policy_versions_extras ON policy_versions USING GIN ((record -> 'extras') jsonb_path_ops);
CREATE INDEX claim_versions_extras ON claim_versions USING GIN ((record -> 'extras') jsonb_path_ops);
