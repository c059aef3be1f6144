-- Certificates keep naming their user and device after either is deleted; revocations gain
-- the kind `device` (see PostgreSQL's 0007). SQLite cannot drop a foreign key or change a
-- CHECK in place, so both tables are rebuilt with their rows.

CREATE TABLE ssh_certificates_new (
    tenant_id       BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    serial          INTEGER NOT NULL CHECK (serial > 0),
    kind            TEXT NOT NULL CHECK (kind IN ('user', 'host')),
    key_id          TEXT NOT NULL,
    user_id         BLOB,
    subject         TEXT NOT NULL,
    device_id       BLOB,
    principals      TEXT NOT NULL,
    key_fingerprint TEXT NOT NULL,
    ca_generation   INTEGER NOT NULL,
    valid_after     TEXT NOT NULL,
    valid_before    TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    revoked_at      TEXT,
    PRIMARY KEY (tenant_id, serial)
);
INSERT INTO ssh_certificates_new SELECT tenant_id, serial, kind, key_id, user_id, subject,
    device_id, principals, key_fingerprint, ca_generation, valid_after, valid_before,
    request_id, created_at, revoked_at FROM ssh_certificates;
DROP TABLE ssh_certificates;
ALTER TABLE ssh_certificates_new RENAME TO ssh_certificates;
CREATE INDEX ssh_certificates_key_id ON ssh_certificates (tenant_id, key_id);
CREATE INDEX ssh_certificates_user ON ssh_certificates (tenant_id, user_id);
CREATE INDEX ssh_certificates_device ON ssh_certificates (tenant_id, device_id);

CREATE TABLE ssh_revocations_new (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('serial', 'key_id', 'user', 'device')),
    value       TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
INSERT INTO ssh_revocations_new SELECT id, tenant_id, kind, value, reason, created_by,
    created_at FROM ssh_revocations;
DROP TABLE ssh_revocations;
ALTER TABLE ssh_revocations_new RENAME TO ssh_revocations;
CREATE INDEX ssh_revocations_tenant ON ssh_revocations (tenant_id, kind);
