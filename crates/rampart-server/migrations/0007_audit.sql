-- The audit log: every security-relevant event, append-only and hash-chained,
-- with signed checkpoints. Never content, passwords, codes or tokens.
-- Timestamps are milliseconds since the Unix epoch.

-- Entries are inserted by the action they record, inside its transaction,
-- with `prev_hash` and `hash` NULL. SQLite admits one writer at a time, so
-- ids grow in commit order; the server's sealer then fills in the chain in
-- id order within a second (see `audit::Audit::seal`). `detail` is a JSON
-- object of short strings (a role, a rule id, a count).
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    actor     TEXT,
    device_id INTEGER,
    ip        TEXT,
    action    TEXT    NOT NULL,
    target    TEXT,
    outcome   TEXT    NOT NULL,
    detail    TEXT    NOT NULL DEFAULT '{}',
    prev_hash BLOB,
    hash      BLOB
);
CREATE INDEX audit_log_unsealed ON audit_log(id) WHERE hash IS NULL;
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_actor ON audit_log(actor, id);
CREATE INDEX audit_log_action ON audit_log(action, id);

-- The server's Ed25519 signature over the chain's head at `last_id`.
CREATE TABLE audit_checkpoints (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    last_id   INTEGER NOT NULL,
    head_hash BLOB    NOT NULL,
    at        INTEGER NOT NULL,
    reason    TEXT    NOT NULL,
    public_key BLOB   NOT NULL,
    signature BLOB    NOT NULL
);
CREATE INDEX audit_checkpoints_last ON audit_checkpoints(last_id);

-- What was recorded before the audit log existed starts it, oldest first.
INSERT INTO audit_log (at, actor, device_id, ip, action, target, outcome, detail)
SELECT at, actor, device_id, ip, action, target, outcome, detail FROM (
    SELECT e.at AS at, u.username AS actor, e.device_id AS device_id, e.ip AS ip,
           e.kind AS action,
           CASE WHEN s.username IS NULL THEN NULL ELSE 'user:' || s.username END AS target,
           CASE
               WHEN e.kind IN ('login_failed', 'two_factor_failed', 'locked') THEN 'failure'
               WHEN e.kind = 'access_denied' THEN 'denied'
               ELSE 'success'
           END AS outcome,
           '{}' AS detail, 0 AS source, e.id AS source_id
    FROM security_events e
    LEFT JOIN users u ON u.id = e.user_id
    LEFT JOIN users s ON s.id = e.subject_user
    UNION ALL
    SELECT e.received_at, u.username, e.device_id, NULL, 'dlp_' || e.action,
           'group:' || lower(hex(e.group_id)), 'success', json_object('rule', e.rule),
           1, e.id
    FROM dlp_events e
    JOIN users u ON u.id = e.user_id
)
ORDER BY at, source, source_id;
