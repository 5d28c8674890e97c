-- Client sessions, so that a token outlives a restart of its server. Only a SHA-256 of the
-- token is kept: reading this table does not let anyone sign in.
CREATE TABLE sessions (
    token_hash   TEXT   NOT NULL PRIMARY KEY,
    user_id      TEXT   NOT NULL REFERENCES users (id),
    device_id    TEXT   NOT NULL,
    admin        BIGINT NOT NULL,
    console_only BIGINT NOT NULL,
    issued_ms    BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
