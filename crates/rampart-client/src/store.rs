//! The profile's encrypted store: one SQLCipher database holding OpenMLS state
//! (through `openmls_sqlite_storage`) and the app's own tables, so one
//! transaction covers both and a crash never leaves a torn group.
//!
//! The database key is derived from the passphrase with Argon2id; the salt and
//! parameters sit beside it in `kdf.json` (not secret). Without the passphrase
//! no message, key or token in the profile is readable. `secure_delete` makes
//! SQLite overwrite deleted content, so forward secrecy is not undone by stale
//! pages.

use crate::error::ClientError;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use rampart_core::attachment::Attachment;
use rampart_core::content::Body;
use rampart_core::{
    AppStore, Conversation, ConversationState, IdentityPin, MessageId, Provider, StoredMessage,
    Trust,
};
use rampart_proto::api::DlpEvent;
use rampart_proto::{BlobId, DeviceId, GroupId, GroupKind, Millis, Username};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::path::Path;
use zeroize::Zeroizing;

/// OpenMLS values are serialised with serde_json (self-describing, as 0.9 requires).
#[derive(Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    type Error = serde_json::Error;

    fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        serde_json::to_vec(value)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        serde_json::from_slice(slice)
    }
}

/// The OpenMLS storage of one transaction.
pub type MlsStorage<'a> = SqliteStorageProvider<JsonCodec, &'a Connection>;

#[derive(Serialize, Deserialize)]
struct KdfParams {
    version: u32,
    salt: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

const DB_FILE: &str = "profile.db";
const KDF_FILE: &str = "kdf.json";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    group_id BLOB PRIMARY KEY,
    kind INTEGER NOT NULL,
    name TEXT,
    peer TEXT,
    state INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_self_update INTEGER NOT NULL,
    timer INTEGER
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id BLOB NOT NULL,
    id BLOB NOT NULL,
    sender TEXT NOT NULL,
    sender_device INTEGER NOT NULL,
    sent_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    outgoing INTEGER NOT NULL,
    unread INTEGER NOT NULL,
    kind INTEGER NOT NULL DEFAULT 0,
    timer INTEGER,
    expires_in INTEGER,
    expires_at INTEGER,
    edits INTEGER NOT NULL DEFAULT 0,
    recalled INTEGER NOT NULL DEFAULT 0,
    attachment BLOB,
    UNIQUE (group_id, id)
);
CREATE INDEX IF NOT EXISTS messages_expiry ON messages(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_id ON messages(id);
-- Files being uploaded, so an interrupted upload resumes: the planned
-- attachment (blob id and key; its hash is filled in when sent) of one file
-- (path, size, modification time) to one conversation.
CREATE TABLE IF NOT EXISTS uploads (
    group_id BLOB NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    modified INTEGER NOT NULL,
    attachment BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, path)
);
-- DLP events (rule, action, conversation, time; never content) not yet
-- taken by the server.
CREATE TABLE IF NOT EXISTS dlp_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pins (
    username TEXT PRIMARY KEY,
    identity_key BLOB NOT NULL,
    trust INTEGER NOT NULL DEFAULT 0,
    changed INTEGER NOT NULL DEFAULT 0
);
"#;

/// Columns added after the first release, for profiles made before them:
/// (table, column, declaration).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("pins", "trust", "INTEGER NOT NULL DEFAULT 0"),
    ("pins", "changed", "INTEGER NOT NULL DEFAULT 0"),
    ("conversations", "timer", "INTEGER"),
    ("messages", "kind", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "timer", "INTEGER"),
    ("messages", "expires_in", "INTEGER"),
    ("messages", "expires_at", "INTEGER"),
    ("messages", "edits", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "recalled", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "attachment", "BLOB"),
];

/// `messages.kind`: a text, a conversation line about the timer, or a file
/// (`attachment` holds its encoded [`Attachment`], `body` its caption).
const KIND_TEXT: i64 = 0;
const KIND_TIMER: i64 = 1;
const KIND_FILE: i64 = 2;

fn trust_to_i64(t: Trust) -> i64 {
    match t {
        Trust::Unverified => 0,
        Trust::Verified => 1,
        Trust::Broken => 2,
    }
}

fn trust_from_i64(n: i64) -> Trust {
    match n {
        1 => Trust::Verified,
        2 => Trust::Broken,
        _ => Trust::Unverified,
    }
}

/// An open, unlocked profile database.
pub struct Store {
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(..)")
    }
}

fn derive_key(passphrase: &str, params: &KdfParams) -> Result<Zeroizing<[u8; 32]>, ClientError> {
    let salt = hex::decode(&params.salt)
        .map_err(|_| ClientError::Profile("kdf.json has a malformed salt".into()))?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
            .map_err(|_| ClientError::Profile("kdf.json has invalid parameters".into()))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), &salt, key.as_mut())
        .map_err(|_| ClientError::Profile("key derivation failed".into()))?;
    Ok(key)
}

impl Store {
    /// Whether `dir` holds a profile.
    pub fn exists(dir: &Path) -> bool {
        dir.join(DB_FILE).exists()
    }

    /// Creates a new profile in `dir` (which must not hold one).
    pub fn create(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        if Self::exists(dir) {
            return Err(ClientError::Profile(format!(
                "{} already holds a profile; use another --profile",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| ClientError::io("creating the profile directory", e))?;
        restrict_permissions(dir);
        let mut salt = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        let params = KdfParams {
            version: 1,
            salt: hex::encode(salt),
            // OWASP's Argon2id minimum (19 MiB, 2 passes): an unlock costs tens of ms.
            m_cost_kib: 19_456,
            t_cost: 2,
            p_cost: 1,
        };
        let json =
            serde_json::to_vec_pretty(&params).map_err(|_| ClientError::Profile("kdf".into()))?;
        std::fs::write(dir.join(KDF_FILE), json)
            .map_err(|e| ClientError::io("writing kdf.json", e))?;
        Self::open_with(dir, passphrase, &params)
    }

    /// Opens and unlocks an existing profile.
    pub fn open(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        if !Self::exists(dir) {
            return Err(ClientError::NoProfile(dir.to_path_buf()));
        }
        let raw = std::fs::read(dir.join(KDF_FILE))
            .map_err(|e| ClientError::io("reading kdf.json", e))?;
        let params: KdfParams = serde_json::from_slice(&raw)
            .map_err(|_| ClientError::Profile("kdf.json is malformed".into()))?;
        Self::open_with(dir, passphrase, &params)
    }

    fn open_with(dir: &Path, passphrase: &str, params: &KdfParams) -> Result<Self, ClientError> {
        let key = derive_key(passphrase, params)?;
        let mut conn = Connection::open(dir.join(DB_FILE)).map_err(ClientError::store)?;
        let pragma = Zeroizing::new(format!("x'{}'", hex::encode(key.as_ref())));
        conn.pragma_update(None, "key", pragma.as_str())
            .map_err(ClientError::store)?;
        // The first read fails if the key is wrong.
        if conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .is_err()
        {
            return Err(ClientError::WrongPassphrase);
        }
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON;",
        )
        .map_err(ClientError::store)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(ClientError::store)?;
        add_missing_columns(&conn)?;
        conn.execute_batch(SCHEMA).map_err(ClientError::store)?;
        SqliteStorageProvider::<JsonCodec, &mut Connection>::new(&mut conn)
            .run_migrations()
            .map_err(|e| ClientError::Profile(format!("migrating OpenMLS storage: {e}")))?;
        Ok(Self { conn })
    }

    /// Runs `f` in one transaction with an MLS provider and the app store;
    /// commits if `f` succeeds, rolls back otherwise.
    pub fn transact<T>(
        &mut self,
        f: impl FnOnce(&Provider<MlsStorage<'_>>, &AppDb<'_>) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let tx = self.conn.transaction().map_err(ClientError::store)?;
        let out = {
            let provider = Provider::new(MlsStorage::new(&tx));
            f(&provider, &AppDb(&tx))?
        };
        tx.commit().map_err(ClientError::store)?;
        Ok(out)
    }

    /// Read-only access outside a transaction.
    pub fn app(&self) -> AppDb<'_> {
        AppDb(&self.conn)
    }

    /// A provider for reads outside a transaction.
    pub fn provider(&self) -> Provider<MlsStorage<'_>> {
        Provider::new(MlsStorage::new(&self.conn))
    }
}

/// Brings an older profile's tables up to [`ADDED_COLUMNS`] (before the
/// schema's indexes, which may name new columns).
fn add_missing_columns(conn: &Connection) -> Result<(), ClientError> {
    for (table, column, declaration) in ADDED_COLUMNS {
        let table_exists: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .map_err(ClientError::store)?;
        let has_column: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
                [table, column],
                |r| r.get(0),
            )
            .map_err(ClientError::store)?;
        if table_exists > 0 && has_column == 0 {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {declaration};"
            ))
            .map_err(ClientError::store)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn restrict_permissions(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(not(unix))]
fn restrict_permissions(_dir: &Path) {}

/// The app tables on one connection or transaction.
pub struct AppDb<'a>(&'a Connection);

fn kind_to_i64(kind: GroupKind) -> i64 {
    match kind {
        GroupKind::Group => 0,
        GroupKind::Direct => 1,
    }
}

fn state_to_i64(state: ConversationState) -> i64 {
    match state {
        ConversationState::Pending => 0,
        ConversationState::Active => 1,
        ConversationState::Left => 2,
    }
}

fn row_to_conversation(row: &rusqlite::Row<'_>) -> rusqlite::Result<Conversation> {
    let group: Vec<u8> = row.get(0)?;
    let group = GroupId::from_slice(&group).map_err(|_| rusqlite::Error::InvalidQuery)?;
    let peer: Option<String> = row.get(3)?;
    Ok(Conversation {
        group,
        kind: if row.get::<_, i64>(1)? == 1 {
            GroupKind::Direct
        } else {
            GroupKind::Group
        },
        name: row.get(2)?,
        peer: peer.and_then(|p| Username::parse(&p).ok()),
        state: match row.get::<_, i64>(4)? {
            0 => ConversationState::Pending,
            1 => ConversationState::Active,
            _ => ConversationState::Left,
        },
        created_at: row.get::<_, i64>(5)? as u64,
        last_self_update: row.get::<_, i64>(6)? as u64,
        timer: row
            .get::<_, Option<i64>>(7)?
            .and_then(|t| u32::try_from(t).ok()),
    })
}

/// A message row as the history shows it: a text (possibly edited or
/// recalled) or a line saying who set the timer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub group: GroupId,
    pub id: String,
    pub sender: Username,
    pub sent_at: u64,
    pub received_at: u64,
    /// `text`, `file` (then see `file`), or `timer` for a timer change
    /// (then see `timer`).
    pub kind: &'static str,
    /// The text, or a file's caption. Empty when recalled.
    pub text: String,
    /// For `file` entries: what was shared (`rampart download ID` fetches it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileEntry>,
    /// For `timer` lines: the new timer in seconds (`None`: off).
    pub timer: Option<u32>,
    pub outgoing: bool,
    pub unread: bool,
    pub edited: bool,
    /// Deleted for everyone by its sender or an admin.
    pub recalled: bool,
    /// When this device deletes it (ms since the Unix epoch).
    pub expires_at: Option<u64>,
    /// What the recipient should know about its links and file (filled in
    /// by the client from the organisation's policy; never for own messages).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<rampart_core::guard::Warning>,
}

/// A shared file as the history shows it (never its key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub media_type: String,
}

const MESSAGE_COLUMNS: &str = "group_id, id, sender, sender_device, sent_at, received_at, body, \
     outgoing, kind, timer, expires_in, expires_at, edits, recalled, attachment";

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let g: Vec<u8> = r.get(0)?;
    let id: Vec<u8> = r.get(1)?;
    let sender: String = r.get(2)?;
    let timer = r
        .get::<_, Option<i64>>(9)?
        .and_then(|t| u32::try_from(t).ok());
    Ok(StoredMessage {
        group: GroupId::from_slice(&g).map_err(|_| rusqlite::Error::InvalidQuery)?,
        id: MessageId(id.try_into().map_err(|_| rusqlite::Error::InvalidQuery)?),
        sender: Username::parse(&sender).map_err(|_| rusqlite::Error::InvalidQuery)?,
        sender_device: device_from_i64(r.get(3)?).ok_or(rusqlite::Error::InvalidQuery)?,
        sent_at: r.get::<_, i64>(4)? as u64,
        received_at: r.get::<_, i64>(5)? as u64,
        body: match r.get::<_, i64>(8)? {
            KIND_TIMER => Body::Timer(timer),
            KIND_FILE => match r.get::<_, Option<Vec<u8>>>(14)? {
                Some(raw) => Body::File(Box::new(
                    Attachment::decode(&raw).map_err(|_| rusqlite::Error::InvalidQuery)?,
                )),
                // Recalled: the key is gone, the caption too.
                None => Body::Text(String::new()),
            },
            _ => Body::Text(r.get(6)?),
        },
        outgoing: r.get::<_, i64>(7)? != 0,
        expires_in: r
            .get::<_, Option<i64>>(10)?
            .and_then(|t| u32::try_from(t).ok()),
        expires_at: r.get::<_, Option<i64>>(11)?.map(|t| t as u64),
        edits: u32::try_from(r.get::<_, i64>(12)?).unwrap_or(0),
        recalled: r.get::<_, i64>(13)? != 0,
    })
}

const CONVERSATION_COLUMNS: &str =
    "group_id, kind, name, peer, state, created_at, last_self_update, timer";

impl AppDb<'_> {
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        self.0
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(ClientError::store)
    }

    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), ClientError> {
        self.0
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(ClientError::store)
    }

    pub fn delete_meta(&self, key: &str) -> Result<(), ClientError> {
        self.0
            .execute("DELETE FROM meta WHERE key = ?1", [key])
            .map(|_| ())
            .map_err(ClientError::store)
    }

    /// Contacts whose identity key changed and who were not confirmed since.
    pub fn changed_contacts(&self) -> Result<Vec<(Username, Trust)>, ClientError> {
        let mut stmt = self
            .0
            .prepare("SELECT username, trust FROM pins WHERE changed = 1 ORDER BY username")
            .map_err(ClientError::store)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(ClientError::store)?;
        let mut out = vec![];
        for row in rows {
            let (name, trust) = row.map_err(ClientError::store)?;
            if let Ok(u) = Username::parse(&name) {
                out.push((u, trust_from_i64(trust)));
            }
        }
        Ok(out)
    }

    pub fn conversations(&self) -> Result<Vec<Conversation>, ClientError> {
        let mut stmt = self
            .0
            .prepare(&format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations ORDER BY created_at"
            ))
            .map_err(ClientError::store)?;
        let rows = stmt
            .query_map([], row_to_conversation)
            .map_err(ClientError::store)?;
        rows.collect::<Result<_, _>>().map_err(ClientError::store)
    }

    /// Messages in arrival order; only unread ones unless `all`. Marks them read
    /// when `mark_read`.
    pub fn history(
        &self,
        group: Option<&GroupId>,
        all: bool,
        mark_read: bool,
    ) -> Result<Vec<HistoryEntry>, ClientError> {
        let mut sql = format!("SELECT {MESSAGE_COLUMNS}, unread, seq FROM messages WHERE 1=1");
        if group.is_some() {
            sql.push_str(" AND group_id = ?1");
        }
        if !all {
            sql.push_str(" AND unread = 1");
        }
        sql.push_str(" ORDER BY seq");
        let mut stmt = self.0.prepare(&sql).map_err(ClientError::store)?;
        let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(HistoryEntry, i64)> {
            let m = row_to_message(r)?;
            let file_row = r.get::<_, i64>(8)? == KIND_FILE;
            let (kind, text, timer, file) = match m.body {
                Body::Timer(t) => ("timer", String::new(), t, None),
                Body::File(a) => (
                    "file",
                    a.caption,
                    None,
                    Some(FileEntry {
                        name: a.name,
                        size: a.size,
                        media_type: a.media_type,
                    }),
                ),
                Body::Text(_) if file_row => ("file", String::new(), None, None),
                Body::Text(t) => ("text", t, None, None),
                _ => ("text", String::new(), None, None),
            };
            Ok((
                HistoryEntry {
                    group: m.group,
                    id: m.id.to_string(),
                    sender: m.sender,
                    sent_at: m.sent_at,
                    received_at: m.received_at,
                    kind,
                    text,
                    file,
                    timer,
                    outgoing: m.outgoing,
                    unread: r.get::<_, i64>(15)? != 0,
                    edited: m.edits > 0,
                    recalled: m.recalled,
                    expires_at: m.expires_at,
                    warnings: Vec::new(),
                },
                r.get(16)?,
            ))
        };
        let rows: Vec<(HistoryEntry, i64)> = match group {
            Some(g) => stmt.query_map([g.as_bytes().as_slice()], map),
            None => stmt.query_map([], map),
        }
        .map_err(ClientError::store)?
        .collect::<Result<_, _>>()
        .map_err(ClientError::store)?;
        if mark_read && let Some(last) = rows.iter().map(|(_, seq)| *seq).max() {
            match group {
                Some(g) => self.0.execute(
                    "UPDATE messages SET unread = 0 WHERE unread = 1 AND seq <= ?1 AND group_id = ?2",
                    params![last, g.as_bytes().as_slice()],
                ),
                None => self.0.execute("UPDATE messages SET unread = 0 WHERE unread = 1 AND seq <= ?1", [last]),
            }
            .map_err(ClientError::store)?;
        }
        Ok(rows.into_iter().map(|(e, _)| e).collect())
    }

    /// The message whose id (in hex) is or starts with `prefix` (at least 8
    /// characters), wherever it is.
    pub fn find_message(&self, prefix: &str) -> Result<Option<StoredMessage>, ClientError> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.len() < 8 || prefix.len() > 32 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ClientError::Usage(
                "a message id is 8 to 32 hex digits, as `rampart inbox --all --ids` shows".into(),
            ));
        }
        // hex(id) sorts like id, so a range over the blob finds the prefix.
        let low = hex::decode(if prefix.len() % 2 == 1 {
            format!("{prefix}0")
        } else {
            prefix.clone()
        })
        .map_err(|_| ClientError::Usage("malformed message id".into()))?;
        let mut stmt = self
            .0
            .prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id >= ?1 ORDER BY id LIMIT 2"
            ))
            .map_err(ClientError::store)?;
        let candidates: Vec<StoredMessage> = stmt
            .query_map([low.as_slice()], row_to_message)
            .map_err(ClientError::store)?
            .collect::<Result<_, _>>()
            .map_err(ClientError::store)?;
        let matching: Vec<StoredMessage> = candidates
            .into_iter()
            .filter(|m| m.id.to_string().starts_with(&prefix))
            .collect();
        match matching.len() {
            0 => Ok(None),
            1 => Ok(matching.into_iter().next()),
            _ => Err(ClientError::Usage(format!(
                "several messages start with {prefix}; give more of the id"
            ))),
        }
    }

    /// Deletes expired messages for good and clears the write-ahead log, so
    /// their text survives nowhere in the profile's files. Returns how many.
    pub fn purge_expired(&self, now: Millis) -> Result<u64, ClientError> {
        let n = AppStore::delete_expired(self, now).map_err(ClientError::store)?;
        if n > 0 {
            checkpoint(self.0);
        }
        Ok(n)
    }

    /// The upload of `path` to `group` begun earlier, if it was of the same
    /// file (size and modification time).
    pub fn upload(
        &self,
        group: &GroupId,
        path: &str,
        size: u64,
        modified: i64,
    ) -> Result<Option<Attachment>, ClientError> {
        let raw: Option<Vec<u8>> = self
            .0
            .query_row(
                "SELECT attachment FROM uploads WHERE group_id = ?1 AND path = ?2 AND size = ?3 AND modified = ?4",
                params![group.as_bytes().as_slice(), path, size as i64, modified],
                |r| r.get(0),
            )
            .optional()
            .map_err(ClientError::store)?;
        Ok(raw.and_then(|raw| Attachment::decode(&raw).ok()))
    }

    /// Remembers an upload in progress (replacing an older one of the path).
    pub fn put_upload(
        &self,
        group: &GroupId,
        path: &str,
        size: u64,
        modified: i64,
        planned: &Attachment,
        now: Millis,
    ) -> Result<(), ClientError> {
        self.0
            .execute(
                "INSERT OR REPLACE INTO uploads (group_id, path, size, modified, attachment, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    group.as_bytes().as_slice(),
                    path,
                    size as i64,
                    modified,
                    planned.encode(),
                    now as i64
                ],
            )
            .map(|_| ())
            .map_err(ClientError::store)
    }

    /// Forgets an upload (sent, or abandoned).
    pub fn delete_upload(&self, group: &GroupId, path: &str) -> Result<(), ClientError> {
        self.0
            .execute(
                "DELETE FROM uploads WHERE group_id = ?1 AND path = ?2",
                params![group.as_bytes().as_slice(), path],
            )
            .map(|_| ())
            .map_err(ClientError::store)
    }

    /// Forgets uploads begun before `before` (the server collects blobs
    /// never sent long before; their keys need not stay either).
    pub fn forget_uploads_before(&self, before: Millis) -> Result<(), ClientError> {
        self.0
            .execute("DELETE FROM uploads WHERE created_at < ?1", [before as i64])
            .map(|_| ())
            .map_err(ClientError::store)
    }

    /// Queues DLP events for the server.
    pub fn queue_dlp_events(&self, events: &[DlpEvent]) -> Result<(), ClientError> {
        for event in events {
            let json = serde_json::to_string(event).map_err(ClientError::store)?;
            self.0
                .execute("INSERT INTO dlp_outbox (event) VALUES (?1)", [json])
                .map_err(ClientError::store)?;
        }
        Ok(())
    }

    /// The oldest queued DLP events (with their queue ids), at most `limit`.
    /// Rows that no longer parse are skipped (and deleted with the batch).
    pub fn dlp_outbox(&self, limit: usize) -> Result<Vec<(i64, DlpEvent)>, ClientError> {
        let mut stmt = self
            .0
            .prepare("SELECT id, event FROM dlp_outbox ORDER BY id LIMIT ?1")
            .map_err(ClientError::store)?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(ClientError::store)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(ClientError::store)?;
            if let Ok(event) = serde_json::from_str(&json) {
                out.push((id, event));
            }
        }
        Ok(out)
    }

    /// Forgets the queued events up to and including `last`.
    pub fn delete_dlp_outbox(&self, last: i64) -> Result<(), ClientError> {
        self.0
            .execute("DELETE FROM dlp_outbox WHERE id <= ?1", [last])
            .map(|_| ())
            .map_err(ClientError::store)
    }

    /// Blobs of files still in the history (not expired or recalled).
    pub fn referenced_blobs(&self) -> Result<Vec<BlobId>, ClientError> {
        let mut stmt = self
            .0
            .prepare("SELECT attachment FROM messages WHERE kind = ?1 AND attachment IS NOT NULL")
            .map_err(ClientError::store)?;
        let rows = stmt
            .query_map([KIND_FILE], |r| r.get::<_, Vec<u8>>(0))
            .map_err(ClientError::store)?;
        let mut out = vec![];
        for raw in rows {
            if let Ok(a) = Attachment::decode(&raw.map_err(ClientError::store)?) {
                out.push(a.blob);
            }
        }
        Ok(out)
    }

    /// Clears the write-ahead log after content was erased (see [`checkpoint`]).
    pub fn checkpoint(&self) {
        checkpoint(self.0);
    }
}

/// Copies the write-ahead log into the database and truncates it: old page
/// images in the log would otherwise still hold erased text.
fn checkpoint(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::debug!(error = %e, "checkpoint after erasing messages failed");
    }
}

impl AppStore for AppDb<'_> {
    type Error = rusqlite::Error;

    fn conversation(&self, group: &GroupId) -> Result<Option<Conversation>, Self::Error> {
        self.0
            .query_row(
                &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE group_id = ?1"),
                [group.as_bytes().as_slice()],
                row_to_conversation,
            )
            .optional()
    }

    fn put_conversation(&self, c: &Conversation) -> Result<(), Self::Error> {
        self.0.execute(
            "INSERT INTO conversations (group_id, kind, name, peer, state, created_at, last_self_update, timer)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(group_id) DO UPDATE SET kind = excluded.kind, name = excluded.name, peer = excluded.peer,
               state = excluded.state, last_self_update = excluded.last_self_update, timer = excluded.timer",
            params![
                c.group.as_bytes().as_slice(),
                kind_to_i64(c.kind),
                c.name,
                c.peer.as_ref().map(|p| p.as_str().to_owned()),
                state_to_i64(c.state),
                c.created_at as i64,
                c.last_self_update as i64,
                c.timer.map(i64::from)
            ],
        )?;
        Ok(())
    }

    fn delete_conversation(&self, group: &GroupId) -> Result<(), Self::Error> {
        self.0.execute(
            "DELETE FROM conversations WHERE group_id = ?1",
            [group.as_bytes().as_slice()],
        )?;
        Ok(())
    }

    fn insert_message(&self, m: &StoredMessage) -> Result<bool, Self::Error> {
        let (kind, text, timer, attachment) = match &m.body {
            Body::Text(text) => (KIND_TEXT, text.as_str(), None, None),
            Body::Timer(timer) => (KIND_TIMER, "", *timer, None),
            Body::File(a) => (KIND_FILE, a.caption.as_str(), None, Some(a.encode())),
            _ => return Ok(false),
        };
        let n = self.0.execute(
            "INSERT OR IGNORE INTO messages (group_id, id, sender, sender_device, sent_at, received_at, body,
               outgoing, unread, kind, timer, expires_in, expires_at, edits, recalled, attachment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            params![
                m.group.as_bytes().as_slice(),
                m.id.0.as_slice(),
                m.sender.as_str(),
                m.sender_device.get() as i64,
                m.sent_at as i64,
                m.received_at as i64,
                text,
                m.outgoing as i64,
                (!m.outgoing) as i64,
                kind,
                timer.map(i64::from),
                m.expires_in.map(i64::from),
                m.expires_at.map(|t| t as i64),
                i64::from(m.edits),
                m.recalled as i64,
                attachment
            ],
        )?;
        Ok(n == 1)
    }

    fn message(
        &self,
        group: &GroupId,
        id: &MessageId,
    ) -> Result<Option<StoredMessage>, Self::Error> {
        self.0
            .query_row(
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE group_id = ?1 AND id = ?2"),
                params![group.as_bytes().as_slice(), id.0.as_slice()],
                row_to_message,
            )
            .optional()
    }

    fn edit_message(&self, group: &GroupId, id: &MessageId, text: &str) -> Result<(), Self::Error> {
        self.0.execute(
            "UPDATE messages SET body = ?3, edits = edits + 1, unread = (outgoing = 0)
             WHERE group_id = ?1 AND id = ?2 AND kind = 0 AND recalled = 0",
            params![group.as_bytes().as_slice(), id.0.as_slice(), text],
        )?;
        Ok(())
    }

    fn recall_message(&self, group: &GroupId, id: &MessageId) -> Result<(), Self::Error> {
        // secure_delete overwrites the old text where it lay.
        self.0.execute(
            "UPDATE messages SET body = '', attachment = NULL, recalled = 1 WHERE group_id = ?1 AND id = ?2",
            params![group.as_bytes().as_slice(), id.0.as_slice()],
        )?;
        Ok(())
    }

    fn delete_expired(&self, now: Millis) -> Result<u64, Self::Error> {
        let n = self.0.execute(
            "DELETE FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ?1",
            [now as i64],
        )?;
        Ok(n as u64)
    }

    fn identity_pin(&self, user: &Username) -> Result<Option<IdentityPin>, Self::Error> {
        let row: Option<(Vec<u8>, i64, i64)> = self
            .0
            .query_row(
                "SELECT identity_key, trust, changed FROM pins WHERE username = ?1",
                [user.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(row.and_then(|(key, trust, changed)| {
            Some(IdentityPin {
                key: key.try_into().ok()?,
                trust: trust_from_i64(trust),
                changed: changed != 0,
            })
        }))
    }

    fn put_identity_pin(&self, user: &Username, pin: &IdentityPin) -> Result<(), Self::Error> {
        self.0.execute(
            "INSERT INTO pins (username, identity_key, trust, changed) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(username) DO UPDATE SET identity_key = excluded.identity_key,
               trust = excluded.trust, changed = excluded.changed",
            params![
                user.as_str(),
                pin.key.as_slice(),
                trust_to_i64(pin.trust),
                pin.changed as i64
            ],
        )?;
        Ok(())
    }

    fn broken_pins(&self) -> Result<Vec<Username>, Self::Error> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT username FROM pins WHERE trust = 2")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = vec![];
        for name in rows {
            if let Ok(u) = Username::parse(&name?) {
                out.push(u);
            }
        }
        Ok(out)
    }
}

/// Parses a device id stored as i64.
pub fn device_from_i64(n: i64) -> Option<DeviceId> {
    DeviceId::new(n as u64)
}

/// Hex form of a message id, as shown to users.
pub fn message_id_hex(id: &MessageId) -> String {
    id.to_string()
}
