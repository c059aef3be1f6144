-- Magic DNS custom records, per tenant (see PostgreSQL's 0005).

CREATE TABLE dns_records (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    record_type  TEXT NOT NULL CHECK (record_type IN ('A', 'AAAA', 'CNAME', 'TXT', 'SRV')),
    ttl          INTEGER NOT NULL CHECK (ttl BETWEEN 1 AND 86400),
    value        TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX dns_records_tenant_name ON dns_records (tenant_id, name, id);
