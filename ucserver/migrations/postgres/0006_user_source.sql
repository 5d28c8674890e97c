-- Users from outside (a directory sync): where each user comes from. Keep in step with
-- ../sqlite/0006_user_source.sql.
-- source: 'ldap' for users a directory sync made (the sync keeps them, deactivates them when
-- they vanish from the directory, and never touches a user whose source is NULL: made here).
ALTER TABLE users ADD COLUMN source TEXT;
