-- Data-loss prevention: the organisation's policy, which clients fetch and
-- apply before encrypting, and the events they report when a rule fires.
-- Timestamps are milliseconds since the Unix epoch.

-- At most one row (id = 1). `document` is the canonical JSON written by
-- `rampart admin policy set`; the server does not interpret it. `revision`
-- grows by one with every change, and a running server polls it to tell
-- connected devices (the admin command writes here from another process).
CREATE TABLE org_policy (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    revision   INTEGER NOT NULL,
    document   TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- What a client reported: which rule fired, what it did, in which
-- conversation, and when by its own clock (`client_at`). Never content:
-- there is no column for it, and the server drops any other field.
CREATE TABLE dlp_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    device_id   INTEGER NOT NULL,
    group_id    BLOB    NOT NULL,
    rule        TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    client_at   INTEGER NOT NULL
);
