-- Heartbeats update `devices.last_seen_at` for every active device about once a second (in
-- batches). With the column indexed, none of those updates could be HOT: each one wrote a new
-- heap tuple plus an entry in every index of the table, and the heap grew eightfold in under a
-- minute at 100,000 devices (docs/benchmarks.md). Lists filter on `last_seen_at` only within a
-- tenant's rows, which `(tenant_id, name)` already finds in page order, so the index goes.
-- Free space on every page (fillfactor 80) lets the new tuple version stay on its page.
DROP INDEX IF EXISTS devices_tenant_last_seen;
ALTER TABLE devices SET (fillfactor = 80);

-- Replicas keep an in-memory device index; this tells them what changed (crates/store/src/
-- changes.rs). Only the columns the index holds: heartbeats (`last_seen_at`) and host facts
-- would otherwise send tens of thousands of notifications a second.
CREATE FUNCTION watchgrid_notify_device_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('watchgrid_devices', COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER devices_notify_change
AFTER INSERT OR DELETE OR UPDATE OF tenant_id, name, kind, wg_public_key, overlay_ip, credential_hash, tags
ON devices
FOR EACH ROW EXECUTE FUNCTION watchgrid_notify_device_change();
