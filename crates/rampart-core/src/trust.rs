//! Whom to trust: identity keys pinned on first contact, verification by
//! safety number, and what happens when a contact's identity key changes
//! (DESIGN.md, Identity).
//!
//! A change is never silent. For a contact the user never verified, the new
//! key replaces the pin and the contact is flagged `changed` until the user
//! looks (`rampart verify`), as Signal does. For a contact the user *had*
//! verified, the pin becomes [`Trust::Broken`]: nothing is sent to a
//! conversation that contains them, and none of their devices is added, until
//! the user compares safety numbers again and confirms.

use crate::error::CoreError;
use crate::store::AppStore;
use rampart_proto::Username;
use sha2::{Digest, Sha512};

/// How far the user trusts a contact's identity key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Pinned on first use, never compared out of band.
    Unverified,
    /// The user compared safety numbers and confirmed.
    Verified,
    /// The key changed after the user verified it: sending is refused until
    /// they confirm again.
    Broken,
}

/// The identity key this device holds for a contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityPin {
    pub key: [u8; 32],
    pub trust: Trust,
    /// The key changed since the user last confirmed (or first saw) it.
    pub changed: bool,
}

/// What seeing a key did to the pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The pinned key, again.
    Same,
    /// First contact: pinned now.
    Pinned,
    /// Another key than the pinned one; the pin records the change.
    Changed { was_verified: bool },
}

/// Records that `user` presented identity `key`.
pub fn observe<A: AppStore>(
    app: &A,
    user: &Username,
    key: &[u8; 32],
) -> Result<Observed, CoreError> {
    let pin = app.identity_pin(user).map_err(CoreError::store)?;
    let (observed, new_pin) = match pin {
        Some(pin) if pin.key == *key => return Ok(Observed::Same),
        None => (
            Observed::Pinned,
            IdentityPin {
                key: *key,
                trust: Trust::Unverified,
                changed: false,
            },
        ),
        Some(pin) => {
            let was_verified = pin.trust != Trust::Unverified;
            (
                Observed::Changed { was_verified },
                IdentityPin {
                    key: *key,
                    trust: if was_verified {
                        Trust::Broken
                    } else {
                        Trust::Unverified
                    },
                    changed: true,
                },
            )
        }
    };
    app.put_identity_pin(user, &new_pin)
        .map_err(CoreError::store)?;
    Ok(observed)
}

/// The user compared safety numbers for `key` and confirms it.
pub fn confirm<A: AppStore>(app: &A, user: &Username, key: &[u8; 32]) -> Result<(), CoreError> {
    app.put_identity_pin(
        user,
        &IdentityPin {
            key: *key,
            trust: Trust::Verified,
            changed: false,
        },
    )
    .map_err(CoreError::store)
}

/// Digits per party: 6 chunks of 5 digits.
const FINGERPRINT_CHUNKS: usize = 6;
/// Hash iterations: makes finding a key whose fingerprint collides with a
/// victim's costly (the figure Signal uses).
const FINGERPRINT_ITERATIONS: usize = 5200;
const FINGERPRINT_VERSION: [u8; 2] = [0, 1];

/// 30 digits identifying one user's identity key.
fn fingerprint(user: &Username, key: &[u8; 32]) -> String {
    let mut hash = Sha512::new()
        .chain_update(FINGERPRINT_VERSION)
        .chain_update(key)
        .chain_update((user.as_str().len() as u32).to_be_bytes())
        .chain_update(user.as_str())
        .finalize();
    for _ in 1..FINGERPRINT_ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(key)
            .finalize();
    }
    let mut digits = String::with_capacity(FINGERPRINT_CHUNKS * 5);
    for chunk in hash.chunks_exact(5).take(FINGERPRINT_CHUNKS) {
        let n = chunk.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        digits.push_str(&format!("{:05}", n % 100_000));
    }
    digits
}

/// The safety number of two users: 60 digits, the same on both sides (the
/// two fingerprints in sorted order), computed from identity keys only, so
/// it stays the same when either user adds a device.
pub fn safety_number(a: (&Username, &[u8; 32]), b: (&Username, &[u8; 32])) -> SafetyNumber {
    let (fa, fb) = (fingerprint(a.0, a.1), fingerprint(b.0, b.1));
    let digits = if fa <= fb { fa + &fb } else { fb + &fa };
    SafetyNumber(digits)
}

/// 60 decimal digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyNumber(String);

impl SafetyNumber {
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// Twelve groups of five, as people read them aloud.
    pub fn grouped(&self) -> String {
        self.0
            .as_bytes()
            .chunks(5)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// What the QR code encodes; scanning the other side's code compares all 60 digits.
    pub fn qr_payload(&self) -> String {
        format!("rampart-safety:1:{}", self.0)
    }
}

impl std::fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.grouped())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> Username {
        Username::parse(s).unwrap()
    }

    #[test]
    fn safety_numbers_are_symmetric_and_change_with_either_key() {
        let (alice, bob) = (user("alice"), user("bob"));
        let (ka, kb, kc) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let ab = safety_number((&alice, &ka), (&bob, &kb));
        assert_eq!(ab, safety_number((&bob, &kb), (&alice, &ka)));
        assert_eq!(ab.digits().len(), 60);
        assert!(ab.digits().bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(ab.grouped().split(' ').count(), 12);
        assert_ne!(ab, safety_number((&alice, &ka), (&bob, &kc)));
        assert_ne!(ab, safety_number((&alice, &kc), (&bob, &kb)));
        // Bound to the names too: the same keys under other names differ.
        assert_ne!(ab, safety_number((&alice, &kb), (&bob, &ka)));
    }
}
