-- choreograph transactional outbox and inbox: SQLite (3.35+: the inbox claim uses RETURNING). Idempotent: safe to run again.
-- Keep in step with choreograph.outbox.tables (the SQLAlchemy metadata of the same tables).

CREATE TABLE IF NOT EXISTS choreograph_outbox (
    position INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    event_id VARCHAR(64) NOT NULL UNIQUE,
    topic VARCHAR(249) NOT NULL,
    partition_key TEXT,
    lane INTEGER NOT NULL,
    payload BLOB NOT NULL,
    created_at DOUBLE NOT NULL,
    shipped_at DOUBLE
);

CREATE INDEX IF NOT EXISTS choreograph_outbox_pending ON choreograph_outbox (lane, position) WHERE shipped_at IS NULL;

CREATE INDEX IF NOT EXISTS choreograph_outbox_shipped ON choreograph_outbox (shipped_at);

CREATE TABLE IF NOT EXISTS choreograph_outbox_lane (
    lane INTEGER NOT NULL PRIMARY KEY
);

INSERT OR IGNORE INTO choreograph_outbox_lane (lane) VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9), (10), (11), (12), (13), (14), (15), (16), (17), (18), (19), (20), (21), (22), (23), (24), (25), (26), (27), (28), (29), (30), (31), (32), (33), (34), (35), (36), (37), (38), (39), (40), (41), (42), (43), (44), (45), (46), (47), (48), (49), (50), (51), (52), (53), (54), (55), (56), (57), (58), (59), (60), (61), (62), (63);

CREATE TABLE IF NOT EXISTS choreograph_outbox_lease (
    name VARCHAR(64) NOT NULL PRIMARY KEY,  -- NOT NULL: SQLite lets a non-integer key be NULL
    owner VARCHAR(64),
    expires_at DOUBLE NOT NULL
);

INSERT OR IGNORE INTO choreograph_outbox_lease (name, owner, expires_at) VALUES ('relay', NULL, 0);

CREATE TABLE IF NOT EXISTS choreograph_inbox (
    consumer_group VARCHAR(249) NOT NULL,
    dedupe_key TEXT NOT NULL,
    handled_at DOUBLE NOT NULL,
    PRIMARY KEY (consumer_group, dedupe_key)
);

CREATE INDEX IF NOT EXISTS choreograph_inbox_handled ON choreograph_inbox (handled_at);
