-- Devices and the onboarding tokens that enroll them.

CREATE TABLE onboarding_tokens (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    description  TEXT NOT NULL,
    token_hash   BYTEA NOT NULL UNIQUE,
    max_uses     INTEGER NOT NULL CHECK (max_uses > 0),
    uses         INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
    tags         JSONB NOT NULL DEFAULT '[]',
    created_by   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX onboarding_tokens_tenant ON onboarding_tokens (tenant_id);

-- One row per device. `overlay_ip` and `wg_public_key` are unique across all tenants: they
-- are the WireGuard hub's peers. Agents authenticate with a credential stored only as SHA-256.
CREATE TABLE devices (
    id                   UUID PRIMARY KEY,
    tenant_id            UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    hostname             TEXT NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('agent', 'plain')),
    os                   TEXT NOT NULL DEFAULT '',
    agent_version        TEXT NOT NULL DEFAULT '',
    wg_public_key        TEXT NOT NULL UNIQUE,
    overlay_ip           TEXT NOT NULL UNIQUE,
    credential_hash      BYTEA,
    tags                 JSONB NOT NULL DEFAULT '[]',
    onboarding_token_id  UUID REFERENCES onboarding_tokens (id) ON DELETE SET NULL,
    created_at           TIMESTAMPTZ NOT NULL,
    last_seen_at         TIMESTAMPTZ,
    UNIQUE (tenant_id, name)
);
CREATE INDEX devices_tenant_last_seen ON devices (tenant_id, last_seen_at);
