-- Certificate issuance status per custom domain (ACME), shown by the API.
CREATE TABLE domain_status (
    domain      TEXT PRIMARY KEY REFERENCES domains(domain) ON DELETE CASCADE,
    state       TEXT NOT NULL,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_try_at INTEGER,
    updated_at  INTEGER NOT NULL
);
