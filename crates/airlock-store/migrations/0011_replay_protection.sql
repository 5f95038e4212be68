-- Replay-protected signatures (profile option `replay_protection`): the signed
-- message covers a timestamp and a nonce as well as the script. Profiles made
-- before this keep the script-only form; new ones are created with it on.
ALTER TABLE profiles ADD COLUMN replay_protection INTEGER NOT NULL DEFAULT 0;
-- Nonces seen per profile, kept until their timestamp leaves the window.
CREATE TABLE request_nonces (
    profile_id TEXT NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
    nonce TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (profile_id, nonce)
) WITHOUT ROWID;
CREATE INDEX request_nonces_expiry ON request_nonces(expires_at);
