-- The live view's seed reads the events of one UTC day among every published one
-- (`live_movements` from position 0): by the day's range on this index it reads that day's
-- events, not the whole outbox. (SQLite keeps no statistics here, so that query keeps it off
-- the positions' index itself; see `sqlite/live.rs`.)
CREATE INDEX outbox_created_at ON outbox (created_at);
