-- Cache purge generations: a purge bumps a counter, cached entries remember
-- the counters they were stored under. `tag` is '' for "the whole site".
-- Kept when a site is deleted, so a site created again under the same name
-- never sees the old one's cached responses.
CREATE TABLE purge_generations (
    site       TEXT NOT NULL,
    tag        TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (site, tag)
) WITHOUT ROWID;
