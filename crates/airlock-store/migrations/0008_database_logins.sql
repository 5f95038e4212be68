-- A sealed database login (JSON: protocol, host, port, database, user, tls, read_only):
-- the server signs in there with the credential's value; NULL for other credentials.
ALTER TABLE credentials ADD COLUMN database_login TEXT;
