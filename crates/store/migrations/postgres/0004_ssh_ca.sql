-- The SSH certificate authority: per-tenant CA keys (their fingerprints; the keys themselves
-- are files under WATCHGRID_SSH_CA_DIR), per-tenant settings and serial counter, who may be
-- which Unix principal, every certificate issued, and revocations.

-- One row per CA key. `generation` grows with each rotation; `state` is `active` (signs new
-- certificates), `retiring` (still trusted until `retire_at`) or `retired`.
CREATE TABLE ssh_cas (
    tenant_id    UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('user', 'host')),
    generation   INTEGER NOT NULL CHECK (generation > 0),
    file_name    TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('active', 'retiring', 'retired')),
    created_at   TIMESTAMPTZ NOT NULL,
    retire_at    TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, kind, generation)
);

-- Per-tenant validity bounds for user certificates, the serial counter (serials are unique
-- per tenant across both CAs) and the KRL version.
CREATE TABLE ssh_settings (
    tenant_id              UUID PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    default_validity_secs  BIGINT NOT NULL CHECK (default_validity_secs > 0),
    max_validity_secs      BIGINT NOT NULL CHECK (max_validity_secs >= default_validity_secs),
    next_serial            BIGINT NOT NULL DEFAULT 1 CHECK (next_serial > 0),
    krl_version            BIGINT NOT NULL DEFAULT 0,
    updated_at             TIMESTAMPTZ NOT NULL
);

-- The Unix principals a user, or every member with a role, may get certificates for.
-- Exactly one of `user_id` and `role` is set.
CREATE TABLE ssh_principal_grants (
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     UUID REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT CHECK (role IN ('owner', 'admin', 'operator', 'viewer')),
    principals  JSONB NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CHECK ((user_id IS NULL) <> (role IS NULL)),
    UNIQUE (tenant_id, user_id),
    UNIQUE (tenant_id, role)
);

-- Every certificate issued. `kind` is `user` or `host`; user certificates name the user,
-- host certificates the device.
CREATE TABLE ssh_certificates (
    tenant_id       UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    serial          BIGINT NOT NULL CHECK (serial > 0),
    kind            TEXT NOT NULL CHECK (kind IN ('user', 'host')),
    key_id          TEXT NOT NULL,
    user_id         UUID REFERENCES users (id) ON DELETE SET NULL,
    subject         TEXT NOT NULL,
    device_id       UUID REFERENCES devices (id) ON DELETE SET NULL,
    principals      JSONB NOT NULL,
    key_fingerprint TEXT NOT NULL,
    ca_generation   INTEGER NOT NULL,
    valid_after     TIMESTAMPTZ NOT NULL,
    valid_before    TIMESTAMPTZ NOT NULL,
    request_id      TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, serial)
);
CREATE INDEX ssh_certificates_key_id ON ssh_certificates (tenant_id, key_id);
CREATE INDEX ssh_certificates_user ON ssh_certificates (tenant_id, user_id);

-- What an administrator revoked: a serial, a key id (revoked for every certificate with it,
-- also ones issued later) or all of a user's certificates at that time.
CREATE TABLE ssh_revocations (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('serial', 'key_id', 'user')),
    value       TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX ssh_revocations_tenant ON ssh_revocations (tenant_id, kind);
