-- Submissions are processed by consumers of the broker: each claim counts, so a submission
-- whose workers keep dying or failing is dead-lettered after a limit, not retried for ever.
ALTER TABLE submissions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
-- The broker message whose processing committed the latest batch.
ALTER TABLE submissions ADD COLUMN message_id TEXT;
-- A carrier's unfinished submissions, oldest first: a submission waits for earlier ones.
CREATE INDEX submissions_unfinished_by_carrier ON submissions (carrier_id, id)
    WHERE status IN ('received', 'processing');

-- Named leases with one holder at a time (the outbox relay's); an expired one is taken over.
CREATE TABLE leases (
    name   TEXT COLLATE "C" PRIMARY KEY,
    owner  TEXT NOT NULL,
    until  TIMESTAMPTZ NOT NULL
);

-- A submission is now queued by its `submission.received` event: the ones left unfinished
-- before this upgrade get theirs, so they are processed like new ones.
INSERT INTO outbox (event_type, carrier_id, subject_id, payload, created_at)
SELECT 'submission.received', carrier_id, id,
       jsonb_build_object('submission_id', id, 'carrier', carrier_id, 'file_name', file_name),
       received_at
FROM submissions WHERE status IN ('received', 'processing') ORDER BY id;
