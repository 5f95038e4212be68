-- How long each egress attempt lasted (a tunnel's or TCP connection's whole life), in
-- milliseconds; NULL for rows logged before it was recorded.
ALTER TABLE egress_log ADD COLUMN duration_ms INTEGER;
