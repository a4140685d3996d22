-- Access control and administration: disabled and deleted accounts, the
-- organisation's access policy, and who an administrative event concerns.
-- Timestamps are milliseconds since the Unix epoch.

-- NULL: the account may be used. Set by an administrator: login refused,
-- devices revoked; an old token is answered `account_disabled`.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
-- Set when an administrator deleted the account. What is left is a husk
-- with a random `deleted-…` name and no password, identity key or role
-- worth anything, kept only while some of its (revoked) devices are still
-- leaves of MLS groups, so that they can be removed from them; the hourly
-- cleanup drops it once they are gone.
ALTER TABLE users ADD COLUMN deleted_at INTEGER;

-- At most one row (id = 1): the JSON of `rampart_proto::admin::AccessPolicy`.
-- No row means the defaults.
CREATE TABLE org_access (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    document   TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Usernames of deleted accounts, which can never be registered again:
-- other users' clients pinned the identity key that went with the name.
-- Only SHA-256 of the (domain-separated) name is kept, so the table does
-- not list who was deleted at a glance; usernames are short, so the hash
-- hides them from a casual reader, not from a determined one.
CREATE TABLE deleted_usernames (
    name_hash  BLOB    PRIMARY KEY,
    deleted_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The other account an event concerns: for an administrator's action, the
-- account acted on (in the administrator's log) and the administrator (in
-- the account's log). Cleared when that account is deleted.
ALTER TABLE security_events ADD COLUMN subject_user INTEGER REFERENCES users(id) ON DELETE SET NULL;

-- Sessions are found by the prefix of their hash through the primary key;
-- these serve the lists and the cleanup of deleted accounts.
CREATE INDEX users_disabled ON users(disabled_at) WHERE disabled_at IS NOT NULL;
CREATE INDEX users_deleted ON users(deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX security_events_subject ON security_events(subject_user) WHERE subject_user IS NOT NULL;
