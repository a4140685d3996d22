//! Walking the audit chain: the same check for the database, the admin API
//! and an exported file. Entries stream through one at a time (an export
//! may be larger than memory); checkpoints, far fewer, are read first.
//!
//! What it proves, given the audit key the verifier trusts:
//! - every entry's hash matches its contents (an edit shows);
//! - every entry names the hash of the one before (a deletion, insertion or
//!   reordering shows);
//! - every checkpoint is signed by the trusted key and names the hash the
//!   entry it covers really has (a chain rewritten after an edit shows);
//! - the log starts at the first entry ever, or where a signed pruning
//!   checkpoint says the kept part starts;
//! - no checkpoint covers an entry past the end (a cut tail shows).
//!
//! What it cannot prove: that entries after the last checkpoint were not
//! cut off or rewritten together. The server checkpoints at intervals and
//! on shutdown to keep that window short.

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use rampart_proto::Millis;
use rampart_proto::audit::{
    AuditCheckpoint, AuditEntry, CheckpointReason, GENESIS, HASH_LEN, rfc3339,
};
use std::collections::BTreeMap;

/// The chain is intact.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub entries: u64,
    pub first_id: Option<u64>,
    pub last_id: Option<u64>,
    /// The newest checkpoint: the entry it covers and when it was signed.
    pub last_checkpoint: Option<CheckpointSeen>,
    /// Entries after the last checkpoint: chained, not yet signed.
    pub unsigned_tail: u64,
    /// Where the kept part starts when older entries were pruned.
    pub pruned_before: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointSeen {
    pub last_id: u64,
    pub at: Millis,
}

/// The first broken link.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("broken at entry #{id}: {reason}")]
pub struct Broken {
    /// The entry (or, for a bad checkpoint, the entry it covers).
    pub id: u64,
    pub reason: String,
}

fn broken(id: u64, reason: impl Into<String>) -> Broken {
    Broken {
        id,
        reason: reason.into(),
    }
}

/// Checks entries fed in id order against the checkpoints given up front.
pub struct Verifier {
    /// Checkpoints by the entry they cover.
    checkpoints: BTreeMap<u64, Vec<AuditCheckpoint>>,
    prev: Option<(u64, [u8; HASH_LEN])>,
    entries: u64,
    first_id: Option<u64>,
    pruned_before: Option<u64>,
    /// The newest entry any checkpoint covers, and the entries after it.
    signed_through: Option<u64>,
    unsigned_tail: u64,
}

impl Verifier {
    /// Checks every checkpoint's signature against `key` first: one signed
    /// by another key, or not at all, is itself a break.
    pub fn new(key: &[u8; 32], checkpoints: Vec<AuditCheckpoint>) -> Result<Self, Broken> {
        let key = VerifyingKey::from_bytes(key)
            .map_err(|_| broken(0, "the trusted audit key is not an Ed25519 public key"))?;
        let key_hex = hex::encode(key.as_bytes());
        let mut by_entry: BTreeMap<u64, Vec<AuditCheckpoint>> = BTreeMap::new();
        for c in checkpoints {
            if c.key != key_hex {
                return Err(broken(
                    c.last_id,
                    format!(
                        "the checkpoint signed at {} names another key ({}) than the trusted one",
                        c.time, c.key
                    ),
                ));
            }
            let signature = hex::decode(&c.signature)
                .ok()
                .and_then(|b| Signature::from_slice(&b).ok());
            let valid = signature.is_some_and(|s| key.verify(&c.message(), &s).is_ok());
            if !valid {
                return Err(broken(
                    c.last_id,
                    format!(
                        "the checkpoint signed at {} has an invalid signature",
                        c.time
                    ),
                ));
            }
            if c.time != rfc3339(c.at) {
                return Err(broken(
                    c.last_id,
                    "a checkpoint's time does not match its timestamp",
                ));
            }
            by_entry.entry(c.last_id).or_default().push(c);
        }
        Ok(Self {
            signed_through: by_entry.keys().next_back().copied(),
            checkpoints: by_entry,
            prev: None,
            entries: 0,
            first_id: None,
            pruned_before: None,
            unsigned_tail: 0,
        })
    }

    /// Checks the next entry.
    pub fn entry(&mut self, e: &AuditEntry) -> Result<(), Broken> {
        if e.compute_hash() != e.hash {
            return Err(broken(
                e.id,
                "its contents do not match its hash: the entry was altered",
            ));
        }
        if e.time != rfc3339(e.at) {
            return Err(broken(e.id, "its time does not match its timestamp"));
        }
        match self.prev {
            None => {
                if e.prev_hash != GENESIS {
                    // The kept part of a pruned log starts where a signed
                    // pruning checkpoint says.
                    let anchored = self
                        .checkpoints
                        .range(..e.id)
                        .flat_map(|(_, cs)| cs)
                        .any(|c| c.head_hash == e.prev_hash);
                    if !anchored {
                        return Err(broken(
                            e.id,
                            "the log starts here, but no signed checkpoint marks this as where \
                             pruning stopped: earlier entries were deleted",
                        ));
                    }
                    self.pruned_before = Some(e.id);
                }
                self.first_id = Some(e.id);
            }
            Some((prev_id, prev_hash)) => {
                if e.id <= prev_id {
                    return Err(broken(
                        e.id,
                        format!("it follows entry #{prev_id}: entries are out of order"),
                    ));
                }
                if e.prev_hash != prev_hash {
                    return Err(broken(
                        e.id,
                        format!(
                            "it does not link to entry #{prev_id}: an entry was deleted, \
                             inserted or reordered"
                        ),
                    ));
                }
                if let Some((&missing, _)) = self.checkpoints.range(prev_id + 1..e.id).next() {
                    return Err(broken(
                        missing,
                        "a signed checkpoint covers this entry, but it is missing",
                    ));
                }
            }
        }
        if let Some(covering) = self.checkpoints.get(&e.id)
            && let Some(c) = covering.iter().find(|c| c.head_hash != e.hash)
        {
            return Err(broken(
                e.id,
                format!(
                    "the checkpoint signed at {} covered a different entry: the log up to \
                     here was rewritten",
                    c.time
                ),
            ));
        }
        self.prev = Some((e.id, e.hash));
        self.entries += 1;
        if self.signed_through.is_none_or(|through| e.id > through) {
            self.unsigned_tail += 1;
        }
        Ok(())
    }

    /// After the last entry: a checkpoint past the end means a cut tail.
    pub fn finish(self) -> Result<Report, Broken> {
        let last_id = self.prev.map(|(id, _)| id);
        let past_end = match last_id {
            Some(last) => self.checkpoints.range(last + 1..).next(),
            // An empty log: only a pruning anchor may remain.
            None => self
                .checkpoints
                .iter()
                .find(|(_, cs)| cs.iter().any(|c| c.reason != CheckpointReason::Prune)),
        };
        if let Some((&id, _)) = past_end {
            return Err(broken(
                id,
                format!(
                    "a signed checkpoint covers entries up to #{id}, but the log ends {}: \
                     entries were deleted from the end",
                    last_id.map_or("before it starts".to_owned(), |l| format!("at #{l}"))
                ),
            ));
        }
        let last_checkpoint = self
            .checkpoints
            .iter()
            .next_back()
            .and_then(|(_, cs)| cs.iter().max_by_key(|c| c.at))
            .map(|c| CheckpointSeen {
                last_id: c.last_id,
                at: c.at,
            });
        Ok(Report {
            entries: self.entries,
            first_id: self.first_id,
            last_id,
            last_checkpoint,
            unsigned_tail: self.unsigned_tail,
            pruned_before: self.pruned_before,
        })
    }
}

/// Verifies a whole log held in memory (tests, small exports).
pub fn verify(
    key: &[u8; 32],
    checkpoints: Vec<AuditCheckpoint>,
    entries: &[AuditEntry],
) -> Result<Report, Broken> {
    let mut v = Verifier::new(key, checkpoints)?;
    for e in entries {
        v.entry(e)?;
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use rampart_proto::audit::Outcome;

    const KEY: [u8; 32] = [7; 32];

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|id| {
                let mut e = AuditEntry {
                    id,
                    at: id * 1000,
                    time: rfc3339(id * 1000),
                    actor: Some("alice".into()),
                    device: None,
                    ip: None,
                    action: "login_succeeded".into(),
                    target: None,
                    outcome: Outcome::Success,
                    detail: Default::default(),
                    prev_hash: prev,
                    hash: GENESIS,
                };
                e.hash = e.compute_hash();
                prev = e.hash;
                e
            })
            .collect()
    }

    fn checkpoint(of: &AuditEntry, reason: CheckpointReason) -> AuditCheckpoint {
        let key = SigningKey::from_bytes(&KEY);
        let at = of.at + 1;
        let message = AuditCheckpoint::signed_message(of.id, &of.hash, at, reason);
        AuditCheckpoint {
            last_id: of.id,
            head_hash: of.hash,
            at,
            time: rfc3339(at),
            reason,
            key: hex::encode(key.verifying_key().to_bytes()),
            signature: hex::encode(key.sign(&message).to_bytes()),
        }
    }

    fn public() -> [u8; 32] {
        SigningKey::from_bytes(&KEY).verifying_key().to_bytes()
    }

    #[test]
    fn an_intact_chain_reports_its_signed_and_unsigned_parts() {
        let log = chain(5);
        let report = verify(
            &public(),
            vec![checkpoint(&log[2], CheckpointReason::Interval)],
            &log,
        )
        .unwrap();
        assert_eq!(report.entries, 5);
        assert_eq!((report.first_id, report.last_id), (Some(1), Some(5)));
        assert_eq!(report.last_checkpoint.unwrap().last_id, 3);
        assert_eq!(report.unsigned_tail, 2);
        assert_eq!(report.pruned_before, None);
        let empty = verify(&public(), Vec::new(), &[]).unwrap();
        assert_eq!((empty.entries, empty.unsigned_tail), (0, 0));
    }

    #[test]
    fn a_pruned_log_starts_at_its_anchor() {
        let log = chain(6);
        let anchor = checkpoint(&log[2], CheckpointReason::Prune);
        let report = verify(&public(), vec![anchor], &log[3..]).unwrap();
        assert_eq!(report.pruned_before, Some(4));
        assert_eq!(report.unsigned_tail, 3);
        let broken = verify(&public(), Vec::new(), &log[3..]).unwrap_err();
        assert_eq!(broken.id, 4);
    }

    #[test]
    fn each_break_is_named_at_its_entry() {
        let log = chain(6);
        let signed = || vec![checkpoint(&log[5], CheckpointReason::Shutdown)];
        let mut edited = log.clone();
        edited[2].actor = Some("mallory".into());
        assert_eq!(verify(&public(), signed(), &edited).unwrap_err().id, 3);
        let mut dropped = log.clone();
        dropped.remove(3);
        assert_eq!(verify(&public(), signed(), &dropped).unwrap_err().id, 5);
        let mut swapped = log.clone();
        swapped.swap(1, 2);
        assert_eq!(verify(&public(), signed(), &swapped).unwrap_err().id, 3);
        let cut = verify(&public(), signed(), &log[..4]).unwrap_err();
        assert!(cut.reason.contains("deleted from the end"), "{cut}");
        let mut late = log.clone();
        late[1].time = rfc3339(0);
        assert_eq!(verify(&public(), signed(), &late).unwrap_err().id, 2);
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
        assert!(
            verify(&other, signed(), &log)
                .unwrap_err()
                .reason
                .contains("another key")
        );
        let mut forged = signed();
        forged[0].at += 1;
        forged[0].time = rfc3339(forged[0].at);
        assert!(
            verify(&public(), forged, &log)
                .unwrap_err()
                .reason
                .contains("invalid signature")
        );
        // A checkpoint over an entry that is gone from the middle.
        let mut gap = log.clone();
        gap.remove(2);
        let over_gap = vec![checkpoint(&log[2], CheckpointReason::Interval)];
        let broken = verify(&public(), over_gap, &gap).unwrap_err();
        assert_eq!(broken.id, 4, "the link breaks first: {broken}");
    }
}
