-- Per-site traffic statistics: one row per (site, bucket width, start),
-- the bucket serialised by the telemetry crate (counters and sketches).
CREATE TABLE stats_buckets (
    site       TEXT NOT NULL,
    resolution TEXT NOT NULL,
    start      INTEGER NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (site, resolution, start)
) WITHOUT ROWID;
CREATE INDEX stats_buckets_by_start ON stats_buckets (resolution, start);
