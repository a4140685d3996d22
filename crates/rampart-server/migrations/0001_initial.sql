-- Rampart server schema, version 1. The server stores only routing metadata
-- and ciphertext: every payload column holds MLS bytes it cannot read.
-- Timestamps are milliseconds since the Unix epoch.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    identity_key  BLOB    NOT NULL,
    role          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

-- `id` is the client-chosen u64 DeviceId stored as the i64 with the same bits.
CREATE TABLE devices (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id),
    name          TEXT    NOT NULL,
    signature_key BLOB    NOT NULL,
    certificate   BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    acked_seq     INTEGER NOT NULL DEFAULT 0,
    revoked       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX devices_user ON devices(user_id);

-- Only SHA-256 of the bearer token is stored.
CREATE TABLE sessions (
    token_hash BLOB    PRIMARY KEY,
    device_id  INTEGER NOT NULL REFERENCES devices(id),
    created_at INTEGER NOT NULL,
    last_used  INTEGER NOT NULL
);
CREATE INDEX sessions_device ON sessions(device_id);

-- Only SHA-256 of the invite code is stored.
CREATE TABLE invites (
    code_hash  BLOB    PRIMARY KEY,
    role       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_by    INTEGER REFERENCES users(id)
);

CREATE TABLE key_packages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   INTEGER NOT NULL REFERENCES devices(id),
    data        BLOB    NOT NULL,
    last_resort INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX key_packages_device ON key_packages(device_id, last_resort, id);

CREATE TABLE groups (
    id                BLOB    PRIMARY KEY,
    kind              TEXT    NOT NULL,
    epoch             INTEGER NOT NULL,
    group_info        BLOB    NOT NULL,
    created_by_device INTEGER NOT NULL,
    created_at        INTEGER NOT NULL
);

CREATE TABLE group_members (
    group_id  BLOB    NOT NULL REFERENCES groups(id),
    device_id INTEGER NOT NULL REFERENCES devices(id),
    PRIMARY KEY (group_id, device_id)
);
CREATE INDEX group_members_device ON group_members(device_id);

-- The id order is each group's ordered log. A message is stored once and
-- fanned out by reference through `queue`.
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id      BLOB    NOT NULL,
    sender_device INTEGER NOT NULL,
    kind          INTEGER NOT NULL,
    epoch         INTEGER NOT NULL,
    server_time   INTEGER NOT NULL,
    payload       BLOB    NOT NULL
);

CREATE TABLE queue (
    device_id  INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX queue_message ON queue(message_id);

CREATE TABLE idempotency (
    device_id            INTEGER NOT NULL,
    key                  BLOB    NOT NULL,
    request_result_epoch INTEGER NOT NULL,
    created_at           INTEGER NOT NULL,
    PRIMARY KEY (device_id, key)
);
CREATE INDEX idempotency_created ON idempotency(created_at);
