-- Script approval (profile option `approval`): executions that wait for a person.
ALTER TABLE profiles ADD COLUMN approval TEXT NOT NULL DEFAULT 'off';
-- One row per execution that asked; under `first_run` an approved row is also the
-- grant that lets the same script (by SHA-256) run again.
CREATE TABLE approvals (
    execution_id TEXT PRIMARY KEY REFERENCES executions(id) ON DELETE CASCADE,
    profile_id TEXT NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
    script_sha256 TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    llm_timeout_secs INTEGER NOT NULL,
    reason TEXT,
    runs_left INTEGER,
    approved_until TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    decided_at TEXT
);
CREATE INDEX approvals_by_script ON approvals(profile_id, script_sha256, status);
CREATE INDEX approvals_by_status ON approvals(status, expires_at);
