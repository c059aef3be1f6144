-- Magic DNS custom records, per tenant. `name` is relative to the tenant's zone
-- (`www`, `_http._tcp.api`), lower case; `value` is the record data in zone-file form
-- (`192.0.2.10`, `web.acme.watchgrid.internal.`, the TXT text, `10 5 8080 web.acme.watchgrid.internal.`).
-- The server validates every record set before it is stored and loads them all at start-up.

CREATE TABLE dns_records (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    record_type  TEXT NOT NULL CHECK (record_type IN ('A', 'AAAA', 'CNAME', 'TXT', 'SRV')),
    ttl          INTEGER NOT NULL CHECK (ttl BETWEEN 1 AND 86400),
    value        TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX dns_records_tenant_name ON dns_records (tenant_id, name, id);

-- Replicas keep the Magic DNS zone in memory; this tells them that tenants or records changed
-- (crates/store/src/dns.rs, DnsChanges). The payload is the tenant's id.
CREATE FUNCTION watchgrid_notify_dns_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('watchgrid_dns', COALESCE(NEW.tenant_id, OLD.tenant_id)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER dns_records_notify_change
AFTER INSERT OR DELETE OR UPDATE ON dns_records
FOR EACH ROW EXECUTE FUNCTION watchgrid_notify_dns_change();

CREATE FUNCTION watchgrid_notify_tenant_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('watchgrid_dns', COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER tenants_notify_dns_change
AFTER INSERT OR DELETE ON tenants
FOR EACH ROW EXECUTE FUNCTION watchgrid_notify_tenant_change();
