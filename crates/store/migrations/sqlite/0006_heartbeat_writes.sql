-- Heartbeats update `devices.last_seen_at` for every active device about once a second (in
-- batches); an index on it doubled the work of every such update. Lists filter on
-- `last_seen_at` only within a tenant's rows, which `(tenant_id, name)` already finds.
-- (PostgreSQL also sets a fillfactor for HOT updates; SQLite has no equivalent.)
DROP INDEX IF EXISTS devices_tenant_last_seen;
