-- API tokens act on their creator's authority: every request caps a token at its creator's
-- current role in the token's tenant. NULL means the creator is gone, and the token is refused.
-- Same as PostgreSQL's 0007; UUIDs are BLOBs and timestamps RFC 3339 TEXT.
ALTER TABLE api_tokens ADD COLUMN creator_id BLOB REFERENCES users (id) ON DELETE SET NULL;
-- Tokens made before this column: their creator by name (a token made by a token stays NULL,
-- as its creator cannot be traced).
UPDATE api_tokens SET creator_id = (SELECT u.id FROM users u WHERE u.username = api_tokens.created_by);
CREATE INDEX api_tokens_creator ON api_tokens (creator_id);

-- Refresh tokens a session has rotated away from. One presented again was copied: the session
-- is revoked (theft detection). Rows go with their session, and once the session has expired.
CREATE TABLE retired_refresh_tokens (
    refresh_hash  BLOB PRIMARY KEY,
    session_id    BLOB NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at    TEXT NOT NULL
);
CREATE INDEX retired_refresh_tokens_session ON retired_refresh_tokens (session_id);
CREATE INDEX retired_refresh_tokens_expires ON retired_refresh_tokens (expires_at);
