-- Airlock schema v1: admin, sessions, credentials, profiles.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);

CREATE TABLE admin_sessions (
    token_hash   TEXT PRIMARY KEY NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);

CREATE TABLE credentials (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    value       BLOB,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE profiles (
    id            TEXT PRIMARY KEY NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    key_id        TEXT UNIQUE,
    secret        BLOB,
    locked        INTEGER NOT NULL DEFAULT 0,
    revoked       INTEGER NOT NULL DEFAULT 0,
    expires_at    TEXT,
    allowed_hosts TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    last_used_at  TEXT
);

CREATE TABLE profile_credentials (
    profile_id    TEXT NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
    credential_id TEXT NOT NULL REFERENCES credentials(id) ON DELETE RESTRICT,
    PRIMARY KEY (profile_id, credential_id)
);
CREATE INDEX profile_credentials_by_credential ON profile_credentials(credential_id);
