-- Egress log: one row per connection attempt through the egress proxy (plain HTTP
-- request or CONNECT tunnel), allowed or refused, with bytes each way.
CREATE TABLE egress_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id  TEXT NOT NULL,
    at            TEXT NOT NULL,
    host          TEXT NOT NULL,
    port          INTEGER NOT NULL,
    method        TEXT NOT NULL,
    path          TEXT,
    bytes_up      INTEGER NOT NULL DEFAULT 0,
    bytes_down    INTEGER NOT NULL DEFAULT 0,
    allowed       INTEGER NOT NULL,
    reason        TEXT NOT NULL
);
CREATE INDEX egress_log_by_execution ON egress_log(execution_id, id);
CREATE INDEX egress_log_by_at ON egress_log(at);
