-- TLS certificates of sites' custom domains (the operator's own certificates
-- come from the node's configuration, not from here).
-- The private key is stored sealed with the node key, never in clear.
CREATE TABLE certs (
    domain      TEXT PRIMARY KEY,
    site        TEXT NOT NULL REFERENCES sites(name) ON DELETE CASCADE,
    chain_pem   TEXT NOT NULL,
    sealed_key  BLOB NOT NULL,
    not_after   INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    source      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX certs_site ON certs(site);
