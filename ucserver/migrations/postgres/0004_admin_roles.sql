-- Several administrators: each one's role, disabled users, and a version on every user so
-- that two admins never overwrite each other silently (`If-Match`). Keep in step with
-- ../sqlite/0004_admin_roles.sql.
-- admin_role: 'full', 'users' or 'read_only' for administrators, NULL for everyone else.
ALTER TABLE users ADD COLUMN admin_role TEXT;
UPDATE users SET admin_role = 'full' WHERE admin <> 0;
ALTER TABLE users ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
-- Grows by one with every change made through the admin API.
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
-- The administrator who made the current version (NULL: made at creation by the server).
ALTER TABLE users ADD COLUMN changed_by TEXT;
ALTER TABLE users ADD COLUMN changed_ms BIGINT NOT NULL DEFAULT 0;
-- Where an admin action came from (the client address, behind trusted proxies the browser's).
ALTER TABLE audit ADD COLUMN client TEXT;
