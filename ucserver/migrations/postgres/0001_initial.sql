-- Switchboard schema, PostgreSQL flavour. Keep in step with ../sqlite/0001_initial.sql: same
-- tables, columns, indexes and version numbers; only the types and the audit id differ.
-- Integers are BIGINT, booleans BIGINT 0/1, timestamps milliseconds since the epoch.

CREATE TABLE users (
    id            TEXT   NOT NULL PRIMARY KEY,
    password_hash TEXT   NOT NULL,
    display_name  TEXT   NOT NULL,
    home_server   TEXT   NOT NULL,
    admin         BIGINT NOT NULL,
    created_ms    BIGINT NOT NULL
);

CREATE TABLE user_groups (
    id           TEXT   NOT NULL PRIMARY KEY,
    display_name TEXT   NOT NULL,
    created_by   TEXT   NOT NULL,
    created_ms   BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES user_groups (id),
    user_id  TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id, group_id);

CREATE TABLE contacts (
    owner_id   TEXT NOT NULL REFERENCES users (id),
    contact_id TEXT NOT NULL REFERENCES users (id),
    label      TEXT NOT NULL,
    PRIMARY KEY (owner_id, contact_id)
);
CREATE INDEX contacts_by_contact ON contacts (contact_id, owner_id);

CREATE TABLE delegates (
    owner_id    TEXT NOT NULL REFERENCES users (id),
    delegate_id TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (owner_id, delegate_id)
);
CREATE INDEX delegates_by_delegate ON delegates (delegate_id, owner_id);

CREATE TABLE conversations (
    id               TEXT   NOT NULL PRIMARY KEY,
    kind             TEXT   NOT NULL,
    name             TEXT   NOT NULL,
    created_by       TEXT   NOT NULL,
    created_ms       BIGINT NOT NULL,
    -- seq of the newest message; appenders lock the row by updating it, which keeps seqs
    -- gap-free and unique.
    last_seq         BIGINT NOT NULL,
    -- sent_ms of the newest message, created_ms while empty: orders conversations_of.
    last_activity_ms BIGINT NOT NULL
);

CREATE TABLE conversation_members (
    conversation_id TEXT   NOT NULL REFERENCES conversations (id),
    user_id         TEXT   NOT NULL REFERENCES users (id),
    last_read_seq   BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_by_user ON conversation_members (user_id, conversation_id);

CREATE TABLE messages (
    conversation_id TEXT   NOT NULL REFERENCES conversations (id),
    seq             BIGINT NOT NULL,
    id              TEXT   NOT NULL,
    sender          TEXT   NOT NULL,
    body            TEXT   NOT NULL,
    sent_ms         BIGINT NOT NULL,
    client_id       TEXT,
    PRIMARY KEY (conversation_id, seq)
);
CREATE UNIQUE INDEX messages_client_id ON messages (conversation_id, sender, client_id)
    WHERE client_id IS NOT NULL;

CREATE TABLE journal (
    id              TEXT   NOT NULL PRIMARY KEY,
    user_id         TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    direction       TEXT   NOT NULL,
    party           TEXT   NOT NULL,
    conversation_id TEXT,
    started_ms      BIGINT NOT NULL,
    answered_ms     BIGINT,
    ended_ms        BIGINT,
    result          TEXT,
    messages        BIGINT NOT NULL,
    summary         TEXT,
    -- when the entry last changed (its newest timestamp): second sort key of `journal`.
    changed_ms      BIGINT NOT NULL
);
CREATE INDEX journal_by_user ON journal (user_id, started_ms, changed_ms);
CREATE INDEX journal_by_conversation ON journal (conversation_id);

CREATE TABLE licenses (
    kind     TEXT   NOT NULL PRIMARY KEY,
    capacity BIGINT NOT NULL
);

CREATE TABLE servers (
    id            TEXT   NOT NULL PRIMARY KEY,
    url           TEXT   NOT NULL,
    registered_ms BIGINT NOT NULL
);

CREATE TABLE media_servers (
    id          TEXT   NOT NULL PRIMARY KEY,
    control_url TEXT   NOT NULL,
    added_ms    BIGINT NOT NULL
);

CREATE TABLE audit (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms  BIGINT NOT NULL,
    actor  TEXT   NOT NULL,
    action TEXT   NOT NULL,
    detail TEXT   NOT NULL
);
CREATE INDEX audit_by_time ON audit (at_ms, id);
