-- The agent requests inbox: what an agent asked for (a profile, a credential slot,
-- packages) and what the operator answered. One row per subject: a profile id, a
-- credential name, or a package install id. Items the operator made have no row.
CREATE TABLE agent_requests (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    reason TEXT,
    created_at TEXT NOT NULL,
    decided_at TEXT,
    PRIMARY KEY (kind, subject)
);
CREATE INDEX agent_requests_by_status ON agent_requests(status, created_at);
-- Requests that were in the "Waiting for you" card before this table existed:
-- unlocked profiles an agent may have made wait as pending requests.
INSERT INTO agent_requests(kind, subject, message, status, created_at)
    SELECT 'profile', id, '', 'pending', created_at FROM profiles
    WHERE locked = 0 AND revoked = 0;
