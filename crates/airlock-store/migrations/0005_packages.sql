-- Python packages agents asked for (one row per normalized project name), and the
-- install runs that build the package environment from them.
CREATE TABLE packages (
    name              TEXT PRIMARY KEY,   -- normalized (PEP 503) project name
    spec              TEXT NOT NULL,      -- the requirement as requested, e.g. "pandas>=2"
    status            TEXT NOT NULL,      -- pending | installing | installed | failed
    installed_version TEXT,
    error             TEXT,
    requested_at      TEXT NOT NULL,
    install_id        TEXT NOT NULL       -- the install that last touched this row
);

CREATE TABLE package_installs (
    id           TEXT PRIMARY KEY,
    status       TEXT NOT NULL,           -- pending | installing | installed | failed
    specs        TEXT NOT NULL,           -- JSON array of requirement strings requested
    log          TEXT NOT NULL DEFAULT '',-- sanitized tail of the installer's output
    error        TEXT,
    created_at   TEXT NOT NULL,
    finished_at  TEXT
);
CREATE INDEX package_installs_by_created ON package_installs(created_at);
