-- Foreign keys on the tables every ingested policy writes, which the batch writer already
-- guarantees. PostgreSQL checks a foreign key with one query per inserted row (and a row lock
-- on the referenced row): on an ingest that is about a quarter of the database's work, for
-- rows whose references cannot be missing. PostgreSQL only; SQLite keeps them (its checks are
-- an index probe in the same process).
--
-- Why each is redundant (crates/store/src/postgres.rs, `apply_batch`):
--   * policies → carriers: a batch checks that every carrier its records name exists (one
--     query per batch, in `BatchState::load`), and carriers are never deleted.
--   * policy_versions → policies: a version is written only for a policy the same transaction
--     inserted first (`write_policies` runs before `write_versions`) or holds locked
--     (`lock_rows`); policies are never deleted and their ids never change.
--   * policy_versions → submissions, premium_transactions → submissions: the batch locks its
--     submission row (`check_lease`, `FOR UPDATE`) before writing, so it exists; submissions
--     are never deleted.
--   * premium_transactions → policies, premium_transactions → policy_versions: a premium
--     transaction is derived from a version of the same batch and written after it, in the
--     same transaction (`write_premiums` after `write_versions`), with that version's
--     (policy, version); versions are never deleted.
-- The claim side keeps its foreign keys: a claim refers to a policy it does not lock, and
-- the key check is what holds that policy for the claim's transaction.
ALTER TABLE policies DROP CONSTRAINT policies_carrier_id_fkey;
ALTER TABLE policy_versions DROP CONSTRAINT policy_versions_policy_id_fkey;
ALTER TABLE policy_versions DROP CONSTRAINT policy_versions_submission_id_fkey;
ALTER TABLE premium_transactions DROP CONSTRAINT premium_transactions_policy_id_fkey;
ALTER TABLE premium_transactions DROP CONSTRAINT premium_transactions_submission_id_fkey;
ALTER TABLE premium_transactions DROP CONSTRAINT premium_transactions_policy_id_policy_version_fkey;
