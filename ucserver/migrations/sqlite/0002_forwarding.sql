-- Call forwarding: at most one target per user and mode (always, busy, no_answer).
CREATE TABLE forwarding (
    user_id   TEXT NOT NULL REFERENCES users (id),
    mode      TEXT NOT NULL,
    target_id TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (user_id, mode)
);
CREATE INDEX forwarding_by_target ON forwarding (target_id);
