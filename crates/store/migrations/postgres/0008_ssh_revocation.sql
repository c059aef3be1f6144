-- Certificates keep naming their user and device after either is deleted, so that a deleted
-- user's certificates stay listed and revocable by user, and a deleted device's host
-- certificates stay revoked by device (0004 set both columns to NULL on deletion). Revocations
-- gain the kind `device`: every host certificate of a deleted device.

ALTER TABLE ssh_certificates DROP CONSTRAINT ssh_certificates_user_id_fkey;
ALTER TABLE ssh_certificates DROP CONSTRAINT ssh_certificates_device_id_fkey;
CREATE INDEX ssh_certificates_device ON ssh_certificates (tenant_id, device_id);

ALTER TABLE ssh_revocations DROP CONSTRAINT ssh_revocations_kind_check;
ALTER TABLE ssh_revocations ADD CONSTRAINT ssh_revocations_kind_check
    CHECK (kind IN ('serial', 'key_id', 'user', 'device'));
