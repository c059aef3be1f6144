-- Devices and the onboarding tokens that enroll them (see PostgreSQL's 0003).

CREATE TABLE onboarding_tokens (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    description  TEXT NOT NULL,
    token_hash   BLOB NOT NULL UNIQUE,
    max_uses     INTEGER NOT NULL CHECK (max_uses > 0),
    uses         INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
    tags         TEXT NOT NULL DEFAULT '[]',
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT
);
CREATE INDEX onboarding_tokens_tenant ON onboarding_tokens (tenant_id);

CREATE TABLE devices (
    id                   BLOB PRIMARY KEY,
    tenant_id            BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    hostname             TEXT NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('agent', 'plain')),
    os                   TEXT NOT NULL DEFAULT '',
    agent_version        TEXT NOT NULL DEFAULT '',
    wg_public_key        TEXT NOT NULL UNIQUE,
    overlay_ip           TEXT NOT NULL UNIQUE,
    credential_hash      BLOB,
    tags                 TEXT NOT NULL DEFAULT '[]',
    onboarding_token_id  BLOB REFERENCES onboarding_tokens (id) ON DELETE SET NULL,
    created_at           TEXT NOT NULL,
    last_seen_at         TEXT,
    UNIQUE (tenant_id, name)
);
CREATE INDEX devices_tenant_last_seen ON devices (tenant_id, last_seen_at);
