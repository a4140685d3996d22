-- File sharing: uploaded blobs (opaque ciphertext; the keys travel inside
-- MLS messages the server cannot read). Timestamps are milliseconds since the
-- Unix epoch (server clock); sizes are bytes.
--
-- A blob is created by `POST /v1/blobs`, filled part by part, marked
-- `complete` once the store has made it visible, and bound to the first
-- application message that lists it (`message_key`, the sender's
-- idempotency key, which is what a recall names). It goes when that message
-- expires (`expires_at`) or is recalled, or, never sent, after the orphan
-- grace period.
CREATE TABLE blobs (
    id              BLOB    PRIMARY KEY,
    group_id        BLOB    NOT NULL,
    uploader_user   INTEGER NOT NULL REFERENCES users(id),
    uploader_device INTEGER NOT NULL REFERENCES devices(id),
    -- The exact length declared at creation; counts against the quota at once.
    size            INTEGER NOT NULL,
    -- How much is stored durably: the offset the next part goes to.
    received        INTEGER NOT NULL DEFAULT 0,
    -- The store's handle on the upload in progress (the S3 multipart upload
    -- id); NULL before the store answered and for the files store.
    upload          TEXT,
    complete        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    message_key     BLOB,
    attached_at     INTEGER,
    -- NULL: the message that shares it does not expire (or none does yet).
    expires_at      INTEGER
);
-- Quota: the bytes one account holds.
CREATE INDEX blobs_uploader ON blobs(uploader_user, complete);
-- Recall: the blobs a message shares.
CREATE INDEX blobs_message ON blobs(group_id, message_key) WHERE message_key IS NOT NULL;
-- Expiry purge.
CREATE INDEX blobs_expires_at ON blobs(expires_at) WHERE expires_at IS NOT NULL;
-- Orphans: never sent, by age.
CREATE INDEX blobs_unattached ON blobs(created_at) WHERE message_key IS NULL;

-- What the store answered for each part (S3 ETags), needed to complete a
-- multipart upload, possibly after a restart. Empty for the files store.
CREATE TABLE blob_parts (
    blob_id BLOB    NOT NULL REFERENCES blobs(id) ON DELETE CASCADE,
    idx     INTEGER NOT NULL,
    tag     TEXT    NOT NULL,
    PRIMARY KEY (blob_id, idx)
) WITHOUT ROWID;
