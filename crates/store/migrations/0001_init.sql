-- Ledge metadata schema, version 1.
CREATE TABLE sites (
    name            TEXT PRIMARY KEY,
    created_at      INTEGER NOT NULL,
    published       TEXT,
    -- seq of the newest production deploy that was auto-published; an older
    -- deploy finishing later never replaces it.
    last_prod_seq   INTEGER NOT NULL DEFAULT 0,
    locked          INTEGER NOT NULL DEFAULT 0,
    settings        TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE domains (
    domain  TEXT PRIMARY KEY,
    site    TEXT NOT NULL REFERENCES sites(name) ON DELETE CASCADE
);
CREATE INDEX domains_site ON domains(site);

CREATE TABLE tokens (
    hash        TEXT PRIMARY KEY,
    site        TEXT REFERENCES sites(name) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE deploys (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    site        TEXT NOT NULL REFERENCES sites(name) ON DELETE CASCADE,
    state       TEXT NOT NULL,
    prod        INTEGER NOT NULL,
    alias       TEXT,
    message     TEXT,
    created_at  INTEGER NOT NULL,
    ready_at    INTEGER,
    files       TEXT NOT NULL,
    file_count  INTEGER NOT NULL,
    required_count INTEGER NOT NULL,
    error       TEXT,
    diagnostics TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX deploys_site ON deploys(site, seq);

CREATE TABLE deploy_missing (
    deploy  TEXT NOT NULL REFERENCES deploys(id) ON DELETE CASCADE,
    digest  TEXT NOT NULL,
    PRIMARY KEY (deploy, digest)
) WITHOUT ROWID;

CREATE TABLE site_blobs (
    site    TEXT NOT NULL REFERENCES sites(name) ON DELETE CASCADE,
    digest  TEXT NOT NULL,
    PRIMARY KEY (site, digest)
) WITHOUT ROWID;

CREATE TABLE aliases (
    site        TEXT NOT NULL REFERENCES sites(name) ON DELETE CASCADE,
    alias       TEXT NOT NULL,
    deploy      TEXT NOT NULL,
    deploy_seq  INTEGER NOT NULL,
    PRIMARY KEY (site, alias)
) WITHOUT ROWID;

CREATE TABLE publishes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    site    TEXT NOT NULL REFERENCES sites(name) ON DELETE CASCADE,
    deploy  TEXT NOT NULL,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL
);
CREATE INDEX publishes_site ON publishes(site, seq);

CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    site    TEXT NOT NULL,
    payload TEXT NOT NULL
);
