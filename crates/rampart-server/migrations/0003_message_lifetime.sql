-- Message lifetime: disappearing messages, recall, and the group settings
-- the server mirrors to authorise recalls. Timestamps are milliseconds since
-- the Unix epoch (server clock).

-- `client_key`: the sender's idempotency key of an application message
-- (the official clients use the message's own random id), so a later recall
-- can name it. `expires_at`: when every stored copy is deleted; NULL for
-- messages that do not expire (and for handshakes).
ALTER TABLE messages ADD COLUMN client_key BLOB;
ALTER TABLE messages ADD COLUMN expires_at INTEGER;
CREATE INDEX messages_client_key ON messages(client_key) WHERE client_key IS NOT NULL;
CREATE INDEX messages_expires_at ON messages(expires_at) WHERE expires_at IS NOT NULL;

-- The encoded `GroupSettings` (admins, who may set the timer) read from the
-- GroupInfo of the group's latest commit; NULL when it carries none (1:1
-- conversations). Not verified: the server does not check MLS signatures.
ALTER TABLE groups ADD COLUMN settings BLOB;

-- `devices.acked_seq` is also raised past queue rows the server deletes
-- (expiry, recall), so sequence numbers are never handed out twice.
