-- Heartbeats update `devices.last_seen_at` for every active device about once a second (in
-- batches). With the column indexed, none of those updates could be HOT: each one wrote a new
-- heap tuple plus an entry in every index of the table, and the heap grew eightfold in under a
-- minute at 100,000 devices (docs/benchmarks.md). Lists filter on `last_seen_at` only within a
-- tenant's rows, which `(tenant_id, name)` already finds in page order, so the index goes.
-- Free space on every page (fillfactor 80) lets the new tuple version stay on its page.
DROP INDEX IF EXISTS devices_tenant_last_seen;
ALTER TABLE devices SET (fillfactor = 80);
