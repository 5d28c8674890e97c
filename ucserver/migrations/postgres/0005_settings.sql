-- Runtime settings (ucserver/src/settings/): a value per key, cluster-wide (scope 'global')
-- or for one server (scope = its id); each server applies them live and records what it
-- applied. Keep in step with ../sqlite/0005_settings.sql.
CREATE TABLE settings (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    -- JSON text.
    value TEXT NOT NULL,
    -- 1 at creation, one more with every change (If-Match).
    version BIGINT NOT NULL,
    -- The settings revision this value was written in.
    revision BIGINT NOT NULL,
    changed_by TEXT,
    changed_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
-- One row: grows by one with every change of any setting, so a server sees at a glance
-- whether it runs with the latest.
CREATE TABLE settings_revision (
    id BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL
);
INSERT INTO settings_revision (id, revision) VALUES (1, 0);
-- What each server applied last: the revision, when, and a JSON report (values it runs
-- with, its own configuration's defaults, values it refused with the reason).
CREATE TABLE settings_applied (
    server_id TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    applied_ms BIGINT NOT NULL,
    report TEXT NOT NULL
);
