-- Sealed credentials: the script gets a placeholder and the egress proxy substitutes
-- the real value only in requests to the hosts bound to the credential.
ALTER TABLE credentials ADD COLUMN mode TEXT NOT NULL DEFAULT 'plain';
-- JSON list of host patterns (allowed_hosts syntax).
ALTER TABLE credentials ADD COLUMN bound_hosts TEXT NOT NULL DEFAULT '[]';
-- JSON list of HTTP methods, or NULL for any method.
ALTER TABLE credentials ADD COLUMN bound_methods TEXT;
-- The only request header the value may be substituted in (NULL: any header).
ALTER TABLE credentials ADD COLUMN bound_header TEXT;
-- Also substitute in the URL query and the request body.
ALTER TABLE credentials ADD COLUMN substitute_body INTEGER NOT NULL DEFAULT 0;
-- Revoke the profile when its placeholder is sent anywhere else.
ALTER TABLE credentials ADD COLUMN revoke_on_violation INTEGER NOT NULL DEFAULT 0;

-- A request that carried a sealed placeholder where it does not belong.
ALTER TABLE egress_log ADD COLUMN violation INTEGER NOT NULL DEFAULT 0;
-- JSON list of credential names substituted into the request.
ALTER TABLE egress_log ADD COLUMN substituted TEXT NOT NULL DEFAULT '[]';
