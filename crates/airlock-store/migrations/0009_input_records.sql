-- Input records (profile option `record`): what each execution ran with and what
-- each HTTP request got back.
ALTER TABLE profiles ADD COLUMN record TEXT NOT NULL DEFAULT 'off';
-- JSON: script hash, interpreter, package versions, the execution's clock.
ALTER TABLE executions ADD COLUMN inputs TEXT;
ALTER TABLE egress_log ADD COLUMN status INTEGER;
ALTER TABLE egress_log ADD COLUMN body_sha256 TEXT;
