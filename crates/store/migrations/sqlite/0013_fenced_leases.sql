-- Fenced leases: one holder at a time, and a token that grows by one whenever the lease
-- changes hands, so a holder that was replaced while it worked can tell (the warehouse
-- writer's, one per warehouse location).
CREATE TABLE fenced_leases (
    name   TEXT PRIMARY KEY,
    owner  TEXT NOT NULL,
    token  INTEGER NOT NULL,
    until  TEXT NOT NULL
);
