-- Executions: one row per accepted script run, outputs already redacted.
CREATE TABLE executions (
    id                TEXT PRIMARY KEY NOT NULL,
    profile_id        TEXT NOT NULL,
    status            TEXT NOT NULL,
    script            TEXT NOT NULL,
    script_sha256     TEXT NOT NULL,
    timeout_secs      INTEGER NOT NULL,
    result            TEXT,
    stdout            TEXT NOT NULL DEFAULT '',
    stderr            TEXT NOT NULL DEFAULT '',
    error             TEXT,
    llm_request       TEXT,
    llm_exchanges     TEXT NOT NULL DEFAULT '[]',
    redactions        TEXT NOT NULL DEFAULT '[]',
    execution_time_ms INTEGER,
    created_at        TEXT NOT NULL,
    started_at        TEXT,
    completed_at      TEXT
);
CREATE INDEX executions_by_profile ON executions(profile_id, created_at DESC);
CREATE INDEX executions_by_created ON executions(created_at DESC);
CREATE INDEX executions_by_status ON executions(status);
