//! Identity keys and device certificates (DESIGN.md, Identity).
//!
//! Each user has one long-term Ed25519 identity key. Each device has its own MLS
//! signature key, certified by the identity key's signature over
//! (user, device id, device signature key). The certificate rides inside the
//! device's MLS credential, so every leaf of every group carries its own proof
//! and a client can check it without asking the server.

use crate::error::CoreError;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rampart_proto::codec::{Reader, Writer};
use rampart_proto::limits::{MAX_USERNAME_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use rampart_proto::{DeviceId, Username, device_certificate_message};
use zeroize::Zeroizing;

/// A user's long-term identity key. Never leaves the user's devices
/// unencrypted; zeroised on drop (ed25519-dalek's `SigningKey` does that).
pub struct IdentityKey(SigningKey);

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdentityKey(public {})", hex::encode(self.public()))
    }
}

impl IdentityKey {
    /// A fresh key from the OS RNG.
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// Restores a key from its 32 secret bytes.
    pub fn from_secret(bytes: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(bytes))
    }

    /// The secret bytes, for the encrypted local store only.
    pub fn dangerous_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half, published in the directory.
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Certifies a device's MLS signature key.
    pub fn certify(&self, user: &Username, device: DeviceId, signature_key: &[u8]) -> [u8; 64] {
        self.0
            .sign(&device_certificate_message(user, device, signature_key))
            .to_bytes()
    }
}

/// What a device's MLS credential says: who it belongs to and the proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCredential {
    pub user: Username,
    pub device: DeviceId,
    pub identity_key: [u8; 32],
    pub certificate: [u8; 64],
}

const CREDENTIAL_VERSION: u8 = 1;

impl DeviceCredential {
    /// The bytes placed in the MLS BasicCredential.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1 + 4 + MAX_USERNAME_LEN + 8 + 32 + 64);
        w.u8(CREDENTIAL_VERSION);
        w.string(self.user.as_str());
        w.u64(self.device.get());
        w.raw(&self.identity_key);
        w.raw(&self.certificate);
        w.buf
    }

    /// Parses a credential from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Self, CoreError> {
        let bad = |reason| CoreError::BadCertificate {
            user: "<unknown>".into(),
            reason,
        };
        let mut r = Reader::new(bytes);
        if r.u8("version").map_err(|_| bad("truncated"))? != CREDENTIAL_VERSION {
            return Err(bad("unknown credential version"));
        }
        let user = r
            .string("user", MAX_USERNAME_LEN)
            .ok()
            .and_then(|s| Username::parse(s).ok())
            .ok_or_else(|| bad("bad username"))?;
        let device = r
            .u64("device")
            .ok()
            .and_then(DeviceId::new)
            .ok_or_else(|| bad("bad device id"))?;
        let identity_key = r
            .array::<PUBLIC_KEY_LEN>("identity key")
            .map_err(|_| bad("truncated"))?;
        let certificate = r
            .array::<SIGNATURE_LEN>("certificate")
            .map_err(|_| bad("truncated"))?;
        r.finish().map_err(|_| bad("trailing bytes"))?;
        Ok(Self {
            user,
            device,
            identity_key,
            certificate,
        })
    }

    /// Checks that the identity key signed this device's `signature_key`.
    pub fn verify(&self, signature_key: &[u8]) -> Result<(), CoreError> {
        let bad = |reason| CoreError::BadCertificate {
            user: self.user.to_string(),
            reason,
        };
        let key =
            VerifyingKey::from_bytes(&self.identity_key).map_err(|_| bad("bad identity key"))?;
        let message = device_certificate_message(&self.user, self.device, signature_key);
        key.verify_strict(&message, &Signature::from_bytes(&self.certificate))
            .map_err(|_| bad("signature does not verify"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_bind_user_device_and_key() {
        let id = IdentityKey::generate();
        let alice = Username::parse("alice").unwrap();
        let dev = DeviceId::new(42).unwrap();
        let sig_key = [7u8; 32];
        let cred = DeviceCredential {
            user: alice.clone(),
            device: dev,
            identity_key: id.public(),
            certificate: id.certify(&alice, dev, &sig_key),
        };
        let decoded = DeviceCredential::decode(&cred.encode()).unwrap();
        assert_eq!(decoded, cred);
        decoded.verify(&sig_key).unwrap();
        assert!(decoded.verify(&[8u8; 32]).is_err(), "other key");
        let mut other_device = decoded.clone();
        other_device.device = DeviceId::new(43).unwrap();
        assert!(other_device.verify(&sig_key).is_err(), "other device");
        let mut other_user = decoded;
        other_user.user = Username::parse("mallory").unwrap();
        assert!(other_user.verify(&sig_key).is_err(), "other user");
    }

    #[test]
    fn malformed_credentials_are_errors() {
        for bytes in [
            &[][..],
            &[1],
            &[2, 0, 0, 0, 0],
            &[1, 0, 0, 0, 3, b'a', b'b', b'c'],
        ] {
            assert!(DeviceCredential::decode(bytes).is_err());
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let id = IdentityKey::generate();
        let secret = hex::encode(*id.dangerous_secret_bytes());
        assert!(!format!("{id:?}").contains(&secret));
    }
}
