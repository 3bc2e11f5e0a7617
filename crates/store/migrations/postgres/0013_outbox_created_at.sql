-- The live view's seed reads the events of one UTC day among every published one
-- (`live_movements` from position 0): by the day's range on this index it reads that day's
-- events, not the whole outbox (the planner picks it over the positions' index when the
-- day holds fewer events; pages of a few positions keep using `outbox_published_seq`).
CREATE INDEX outbox_created_at ON outbox (created_at);
