-- Records a mapping deliberately leaves out ([[skip]] rules, route.skip values) are counted
-- apart from rejections, so `received = inserted + updated + unchanged + rejected + skipped`.
ALTER TABLE submissions ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;

-- A replay processes an earlier submission's document again, usually with a newer mapping.
ALTER TABLE submissions ADD COLUMN replay_of INTEGER REFERENCES submissions(id);
