//! The audit log's records, as the admin API serves them and as
//! `rampart admin audit export` writes them (one JSON object per line), and
//! the exact bytes that chain and sign them.
//!
//! Every entry carries the SHA-256 hash of the entry before it, and its own
//! hash over [`AuditEntry::hash_input`]: change, delete, insert or reorder
//! one entry and every later link breaks. A hash chain alone can be
//! recomputed by whoever edits the table, so the server also signs the head
//! of the chain at intervals, on shutdown and before pruning
//! ([`AuditCheckpoint`]). The signature is checked outside this crate (it
//! does no public-key cryptography); the bytes it covers are defined here.
//!
//! What an entry may hold: who acted (a username, `server` or `operator`),
//! from which device and address, what they did, to what, the outcome, and
//! a few short named values (a role, a rule id, a count). Never message
//! content, passwords, codes, tokens or secrets.

use crate::{DeviceId, Millis};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Length of every hash in the chain.
pub const HASH_LEN: usize = 32;
/// The `prev_hash` of the very first entry.
pub const GENESIS: [u8; HASH_LEN] = [0; HASH_LEN];
/// Entries returned by one page of `GET /v1/admin/audit`.
pub const MAX_AUDIT_PAGE: usize = 1000;
/// Longest actor, action or target name stored; longer ones are cut.
pub const MAX_AUDIT_FIELD_LEN: usize = 256;

/// The actor of what the server does by itself (alerts, removals, pruning).
pub const ACTOR_SERVER: &str = "server";
/// The actor of `rampart admin … --data` on a stopped server.
pub const ACTOR_OPERATOR: &str = "operator";

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    /// Attempted and failed: a wrong password or code, a lockout.
    Failure,
    /// Refused for lack of a right.
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// One audit entry. The field names are stable: SIEMs index them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increases by one per entry, in the order entries were committed.
    pub id: u64,
    /// When it happened, in milliseconds since the Unix epoch.
    pub at: Millis,
    /// The same instant in RFC 3339 (UTC), for people and SIEMs; not hashed,
    /// but checked against `at` by verification.
    pub time: String,
    /// A username, [`ACTOR_SERVER`] or [`ACTOR_OPERATOR`]; absent when
    /// nobody was identified (a login for an unknown name).
    pub actor: Option<String>,
    /// The device that acted; for a device's own events (added, revoked)
    /// the device concerned.
    pub device: Option<DeviceId>,
    /// The client address as the server saw it.
    pub ip: Option<String>,
    /// What happened, in `snake_case`: `login_failed`, `role_changed`,
    /// `group_created`, `dlp_block`, `admin_api`, `alert_fired`, ...
    pub action: String,
    /// What it happened to, as `kind:name`: `user:alice`,
    /// `group:<hex id>`, `route:POST /v1/admin/access`, `rule:failed-logins`.
    pub target: Option<String>,
    pub outcome: Outcome,
    /// Short named values (`role`, `rule`, `status`, `added`, ...).
    #[serde(default)]
    pub detail: BTreeMap<String, String>,
    /// Hex SHA-256 of the previous entry ([`GENESIS`] for the first).
    #[serde(with = "hex_hash")]
    pub prev_hash: [u8; HASH_LEN],
    /// Hex SHA-256 of this entry, [`AuditEntry::compute_hash`].
    #[serde(with = "hex_hash")]
    pub hash: [u8; HASH_LEN],
}

/// A signature by the server's audit key over the chain's head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    /// The id of the last entry covered.
    pub last_id: u64,
    /// That entry's hash.
    #[serde(with = "hex_hash")]
    pub head_hash: [u8; HASH_LEN],
    pub at: Millis,
    pub time: String,
    pub reason: CheckpointReason,
    /// Hex Ed25519 public key that signed (must equal the key the verifier trusts).
    pub key: String,
    /// Hex Ed25519 signature over [`AuditCheckpoint::signed_message`].
    pub signature: String,
}

/// Why a checkpoint was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointReason {
    /// The periodic one.
    Interval,
    /// The server stopped.
    Shutdown,
    /// Entries up to `last_id` are about to be pruned: this checkpoint marks
    /// where the kept part of the log starts.
    Prune,
    /// An administrator asked for one.
    Requested,
}

impl CheckpointReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointReason::Interval => "interval",
            CheckpointReason::Shutdown => "shutdown",
            CheckpointReason::Prune => "prune",
            CheckpointReason::Requested => "requested",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "interval" => Some(CheckpointReason::Interval),
            "shutdown" => Some(CheckpointReason::Shutdown),
            "prune" => Some(CheckpointReason::Prune),
            "requested" => Some(CheckpointReason::Requested),
            _ => None,
        }
    }
}

/// One line of an export: an entry or a checkpoint, told apart by `type`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditRecord {
    Entry(AuditEntry),
    Checkpoint(AuditCheckpoint),
}

/// `GET /v1/admin/audit`: entries in id order, and where the next page starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// The query of `GET /v1/admin/audit`; every field narrows the listing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries with a larger id only (the cursor going forward).
    pub after: Option<u64>,
    /// Entries with a smaller id only (the cursor going back).
    pub before: Option<u64>,
    /// At or after this instant.
    pub since: Option<Millis>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Newest first (for "the latest N").
    #[serde(default)]
    pub newest_first: bool,
    /// At most [`MAX_AUDIT_PAGE`] (the default).
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// `?after=…&actor=…` (empty without filters), values percent-encoded.
    pub fn to_query_string(&self) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let numbers = [
            ("after", self.after),
            ("before", self.before),
            ("since", self.since),
            ("limit", self.limit.map(|l| l as u64)),
        ];
        for (name, value) in numbers {
            if let Some(v) = value {
                pairs.push((name, v.to_string()));
            }
        }
        if let Some(actor) = &self.actor {
            pairs.push(("actor", percent_encode(actor)));
        }
        if let Some(action) = &self.action {
            pairs.push(("action", percent_encode(action)));
        }
        if self.newest_first {
            pairs.push(("newest_first", "true".into()));
        }
        if pairs.is_empty() {
            return String::new();
        }
        let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("?{}", joined.join("&"))
    }
}

/// Everything but RFC 3986's unreserved characters as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /v1/admin/audit/checkpoints`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditCheckpointList {
    pub checkpoints: Vec<AuditCheckpoint>,
}

/// `GET /v1/admin/audit/key`: the public key checkpoints are signed with.
/// Write it down when the server is set up: a verifier that trusts only
/// the key the server serves trusts the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditKey {
    /// Hex Ed25519 public key.
    pub key: String,
}

fn put_field(out: &mut Vec<u8>, field: Option<&str>) {
    match field {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

impl AuditEntry {
    /// The bytes hashed into [`AuditEntry::hash`]: domain-separated,
    /// length-prefixed, every field but `time` and `hash` (the id and the
    /// previous hash included, so an entry cannot move).
    pub fn hash_input(&self) -> Vec<u8> {
        const DOMAIN: &[u8] = b"rampart audit entry v1\0";
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(DOMAIN);
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.at.to_be_bytes());
        put_field(&mut out, self.actor.as_deref());
        match self.device {
            None => out.push(0),
            Some(d) => {
                out.push(1);
                out.extend_from_slice(&d.get().to_be_bytes());
            }
        }
        put_field(&mut out, self.ip.as_deref());
        put_field(&mut out, Some(&self.action));
        put_field(&mut out, self.target.as_deref());
        put_field(&mut out, Some(self.outcome.as_str()));
        out.extend_from_slice(&(self.detail.len() as u32).to_be_bytes());
        for (k, v) in &self.detail {
            put_field(&mut out, Some(k));
            put_field(&mut out, Some(v));
        }
        out
    }

    /// SHA-256 of [`AuditEntry::hash_input`].
    pub fn compute_hash(&self) -> [u8; HASH_LEN] {
        Sha256::digest(self.hash_input()).into()
    }
}

impl AuditCheckpoint {
    /// The bytes the audit key signs.
    pub fn signed_message(
        last_id: u64,
        head_hash: &[u8; HASH_LEN],
        at: Millis,
        reason: CheckpointReason,
    ) -> Vec<u8> {
        const DOMAIN: &[u8] = b"rampart audit checkpoint v1\0";
        let mut out = Vec::with_capacity(DOMAIN.len() + 8 + HASH_LEN + 8 + 16);
        out.extend_from_slice(DOMAIN);
        out.extend_from_slice(&last_id.to_be_bytes());
        out.extend_from_slice(head_hash);
        out.extend_from_slice(&at.to_be_bytes());
        put_field(&mut out, Some(reason.as_str()));
        out
    }

    /// [`AuditCheckpoint::signed_message`] of this checkpoint.
    pub fn message(&self) -> Vec<u8> {
        Self::signed_message(self.last_id, &self.head_hash, self.at, self.reason)
    }
}

/// `at` (milliseconds since the Unix epoch) in RFC 3339, UTC, to the
/// millisecond: `2026-12-01T03:04:05.678Z`.
pub fn rfc3339(at: Millis) -> String {
    let secs = at / 1000;
    let millis = at % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

mod hex_hash {
    use super::HASH_LEN;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(hash: &[u8; HASH_LEN], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; HASH_LEN], D::Error> {
        let text = <&str>::deserialize(d)?;
        let mut out = [0u8; HASH_LEN];
        hex::decode_to_slice(text, &mut out)
            .map_err(|_| D::Error::custom("expected 64 hex digits"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
            id: 7,
            at: 1_764_558_245_678,
            time: rfc3339(1_764_558_245_678),
            actor: Some("alice".into()),
            device: DeviceId::new(42),
            ip: Some("127.0.0.1".into()),
            action: "login_succeeded".into(),
            target: None,
            outcome: Outcome::Success,
            detail: BTreeMap::from([("role".into(), "admin".into())]),
            prev_hash: GENESIS,
            hash: GENESIS,
        }
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_558_245_678), "2025-12-01T03:04:05.678Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn every_hashed_field_changes_the_hash() {
        let base = entry().compute_hash();
        type Change = Box<dyn Fn(&mut AuditEntry)>;
        let variants: Vec<Change> = vec![
            Box::new(|e| e.id += 1),
            Box::new(|e| e.at += 1),
            Box::new(|e| e.actor = Some("alicf".into())),
            Box::new(|e| e.actor = None),
            Box::new(|e| e.device = DeviceId::new(43)),
            Box::new(|e| e.ip = None),
            Box::new(|e| e.action = "login_failed".into()),
            Box::new(|e| e.target = Some("user:bob".into())),
            Box::new(|e| e.outcome = Outcome::Failure),
            Box::new(|e| {
                e.detail.insert("role".into(), "member".into());
            }),
            Box::new(|e| e.prev_hash[0] = 1),
        ];
        for change in variants {
            let mut e = entry();
            change(&mut e);
            assert_ne!(e.compute_hash(), base);
        }
        // `time` and `hash` are not hashed.
        let mut e = entry();
        e.time = "whenever".into();
        e.hash = [9; HASH_LEN];
        assert_eq!(e.compute_hash(), base);
    }

    #[test]
    fn fields_cannot_be_shifted_into_each_other() {
        let mut a = entry();
        a.actor = Some("ab".into());
        a.ip = Some("c".into());
        let mut b = entry();
        b.actor = Some("a".into());
        b.ip = Some("bc".into());
        assert_ne!(a.compute_hash(), b.compute_hash());
    }

    #[test]
    fn records_round_trip_through_json_lines() {
        let mut e = entry();
        e.hash = e.compute_hash();
        let record = AuditRecord::Entry(e);
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.starts_with(r#"{"type":"entry","id":7,"at":1764558245678,"#));
        assert_eq!(serde_json::from_str::<AuditRecord>(&line).unwrap(), record);
        let checkpoint = AuditRecord::Checkpoint(AuditCheckpoint {
            last_id: 7,
            head_hash: [3; HASH_LEN],
            at: 5,
            time: rfc3339(5),
            reason: CheckpointReason::Prune,
            key: "00".repeat(32),
            signature: "11".repeat(64),
        });
        let line = serde_json::to_string(&checkpoint).unwrap();
        assert!(line.contains(r#""type":"checkpoint""#));
        assert!(line.contains(r#""reason":"prune""#));
        assert_eq!(
            serde_json::from_str::<AuditRecord>(&line).unwrap(),
            checkpoint
        );
    }

    #[test]
    fn bad_hashes_are_refused() {
        let mut e = entry();
        e.hash = e.compute_hash();
        let line = serde_json::to_string(&AuditRecord::Entry(e)).unwrap();
        let broken = line.replace(&hex::encode(GENESIS), "zz");
        assert!(serde_json::from_str::<AuditRecord>(&broken).is_err());
    }

    #[test]
    fn queries_encode_their_filters() {
        assert_eq!(AuditQuery::default().to_query_string(), "");
        let q = AuditQuery {
            after: Some(5),
            since: Some(7),
            actor: Some("a b&c".into()),
            action: Some("login_failed".into()),
            newest_first: true,
            limit: Some(10),
            ..AuditQuery::default()
        };
        assert_eq!(
            q.to_query_string(),
            "?after=5&since=7&limit=10&actor=a%20b%26c&action=login_failed&newest_first=true"
        );
    }

    #[test]
    fn checkpoint_messages_bind_every_field() {
        let base = AuditCheckpoint::signed_message(1, &GENESIS, 2, CheckpointReason::Interval);
        assert_ne!(
            base,
            AuditCheckpoint::signed_message(2, &GENESIS, 2, CheckpointReason::Interval)
        );
        assert_ne!(
            base,
            AuditCheckpoint::signed_message(1, &[1; HASH_LEN], 2, CheckpointReason::Interval)
        );
        assert_ne!(
            base,
            AuditCheckpoint::signed_message(1, &GENESIS, 3, CheckpointReason::Interval)
        );
        assert_ne!(
            base,
            AuditCheckpoint::signed_message(1, &GENESIS, 2, CheckpointReason::Prune)
        );
    }
}
