-- Account security: two-factor authentication, recovery codes, the security
-- event log and device linking. Timestamps are milliseconds since the Unix epoch.

-- TOTP secrets are stored only encrypted with the server key (server.key in
-- the data directory): a version byte, a 12-byte nonce and the
-- ChaCha20-Poly1305 ciphertext, with the user id as associated data.
CREATE TABLE two_factor (
    user_id        INTEGER PRIMARY KEY REFERENCES users(id),
    -- The active secret; NULL until enrolment is confirmed with a code.
    secret         BLOB,
    -- A secret handed out by /v1/2fa/setup, waiting for /v1/2fa/activate.
    pending_secret BLOB,
    -- The last TOTP step accepted: only later steps are accepted (no replay).
    last_step      INTEGER,
    enabled_at     INTEGER
);

-- Only HMAC-SHA-256 (keyed by the server key) of each recovery code is
-- stored; a used code is deleted.
CREATE TABLE recovery_codes (
    user_id    INTEGER NOT NULL REFERENCES users(id),
    code_hash  BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, code_hash)
) WITHOUT ROWID;

-- Never a password, code, token or secret; `user_id` is NULL for attempts
-- on accounts that do not exist (their names are not recorded).
CREATE TABLE security_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    user_id   INTEGER REFERENCES users(id),
    device_id INTEGER,
    kind      TEXT    NOT NULL,
    ip        TEXT
);
CREATE INDEX security_events_user ON security_events(user_id, id);

-- A new device asking to join an account. Only SHA-256 of the poll secret is
-- stored. Once approved, the approver's answer waits here for one poll.
CREATE TABLE link_requests (
    link_id            TEXT    PRIMARY KEY,
    poll_hash          BLOB    NOT NULL,
    device_id          INTEGER NOT NULL UNIQUE,
    name               TEXT    NOT NULL,
    signature_key      BLOB    NOT NULL,
    ephemeral_key      BLOB    NOT NULL,
    mac                BLOB    NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    approved_by        INTEGER REFERENCES users(id),
    certificate        BLOB,
    approver_ephemeral BLOB,
    sealed             BLOB
);
CREATE INDEX link_requests_expires ON link_requests(expires_at);

-- Idle sessions are found by age.
CREATE INDEX sessions_last_used ON sessions(last_used);
