-- The installation's identity: one row, created by the first server that migrates the database.
-- Support bundles and (later) cluster membership name the installation by this id.
CREATE TABLE instance (
    singleton   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    installation_id UUID NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
