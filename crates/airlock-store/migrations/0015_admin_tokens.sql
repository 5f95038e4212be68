-- Admin API tokens for automation: `Authorization: Bearer atk_<id>.<secret>` on
-- /api/admin, limited by role. Only the SHA-256 of the secret is stored.
CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    last_used_at TEXT
);
