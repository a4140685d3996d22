//! The server key: 32 random bytes in `data_dir/server.key` (hex, mode 0600),
//! created on first start. It encrypts TOTP secrets at rest
//! (ChaCha20-Poly1305, random nonce, the user id as associated data so a
//! ciphertext cannot be moved to another account) and keys the HMAC under
//! which recovery codes are stored.
//!
//! Whoever holds the database *and* this file can recover TOTP secrets; the
//! database alone (a backup, a stolen disk image without the key) cannot.
//! Keep the key out of database backups, or back it up separately.

use crate::error::ServerError;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use rand::rngs::OsRng;
use sha2::Sha256;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The key file inside the data directory.
pub const KEY_FILE: &str = "server.key";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// Version byte in front of every sealed TOTP secret.
const SEALED_V1: u8 = 1;

/// Keys derived from the server key, one per purpose. No `Debug` output of
/// the bytes; zeroed on drop.
pub struct ServerKey {
    totp: Zeroizing<[u8; KEY_LEN]>,
    recovery: Zeroizing<[u8; KEY_LEN]>,
    /// The seed of the delivery service's MLS signing key (external sender).
    delivery: Zeroizing<[u8; KEY_LEN]>,
    /// The seed of the key that signs audit checkpoints.
    audit: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(<redacted>)")
    }
}

fn key_error(path: &Path, what: impl std::fmt::Display) -> ServerError {
    ServerError::ServerKey(format!("{}: {what}", path.display()))
}

impl ServerKey {
    /// Reads `data_dir/server.key`, or creates it (mode 0600) if it does not
    /// exist. A file that is not 64 hex digits is refused: guessing would
    /// make every stored TOTP secret unreadable.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, ServerError> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(&path),
            Err(e) => Err(key_error(&path, format!("cannot read: {e}"))),
        }
    }

    /// Reads `data_dir/server.key`, which must exist (administration of a
    /// stopped server: a new key would not open what the old one sealed).
    pub fn load(data_dir: &Path) -> Result<Self, ServerError> {
        let path = data_dir.join(KEY_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            key_error(
                &path,
                format!("cannot read: {e}. Restore the server key from where it was backed up"),
            )
        })?;
        Self::parse(&path, &bytes)
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ServerError> {
        let bytes = Zeroizing::new(bytes.to_vec());
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| key_error(path, "malformed: expected 64 hex digits"))?
            .trim();
        let mut master = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(text, master.as_mut()).map_err(|_| {
            key_error(
                path,
                "malformed: expected 64 hex digits. Restore the original file; \
                 without it the stored two-factor secrets cannot be read",
            )
        })?;
        warn_if_readable_by_others(path);
        Ok(Self::derive(&master))
    }

    /// Writes the key to a temporary file and links it into place, so a
    /// crash never leaves a half-written key and a concurrent start never
    /// overwrites one.
    fn create(path: &Path) -> Result<Self, ServerError> {
        let mut master = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(master.as_mut());
        let text = Zeroizing::new(format!("{}\n", hex::encode(master.as_ref())));
        let tmp = temp_path(path);
        let written = (|| {
            let mut file = create_private(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::hard_link(&tmp, path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => Ok(Self::derive(&master)),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(path)
                    .map_err(|e| key_error(path, format!("cannot read: {e}")))?;
                Self::parse(path, &bytes)
            }
            Err(e) => Err(key_error(path, format!("cannot create: {e}"))),
        }
    }

    fn derive(master: &[u8; KEY_LEN]) -> Self {
        Self {
            totp: derive(master, b"rampart server key: totp secrets v1"),
            recovery: derive(master, b"rampart server key: recovery codes v1"),
            delivery: derive(master, b"rampart server key: delivery service signing v1"),
            audit: derive(master, b"rampart server key: audit checkpoint signing v1"),
        }
    }

    /// The seed of the Ed25519 key with which the server signs MLS
    /// proposals as the groups' external sender.
    pub fn delivery_seed(&self) -> &[u8; KEY_LEN] {
        &self.delivery
    }

    /// The seed of the Ed25519 key with which the server signs the audit
    /// log's checkpoints.
    pub fn audit_seed(&self) -> &[u8; KEY_LEN] {
        &self.audit
    }

    /// Encrypts a TOTP secret for one user: version, nonce, ciphertext.
    pub fn seal_totp(&self, user_id: i64, secret: &[u8]) -> Result<Vec<u8>, SealError> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(self.totp.as_ref()));
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = totp_aad(user_id);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`ServerKey::seal_totp`] produced for the same user.
    pub fn open_totp(&self, user_id: i64, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError)?;
        if version != SEALED_V1 || rest.len() < NONCE_LEN {
            return Err(SealError);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(self.totp.as_ref()));
        let aad = totp_aad(user_id);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError)
    }

    /// HMAC-SHA-256 of a normalised recovery code: what the database keeps.
    pub fn recovery_hash(&self, normalised: &str) -> Vec<u8> {
        hmac_sha256(self.recovery.as_ref(), normalised.as_bytes())
    }
}

/// A TOTP secret could not be sealed or opened (wrong key, wrong user,
/// corrupt row). Carries no detail on purpose.
#[derive(Debug, thiserror::Error)]
#[error("a stored secret could not be decrypted with the server key")]
pub struct SealError;

fn totp_aad(user_id: i64) -> Vec<u8> {
    let mut aad = b"rampart totp secret v1\0".to_vec();
    aad.extend_from_slice(&user_id.to_be_bytes());
    aad
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this never fails.
    match <Hmac<Sha256> as hmac::Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn derive(master: &[u8; KEY_LEN], label: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    let digest = Zeroizing::new(hmac_sha256(master, label));
    if digest.len() == KEY_LEN {
        out.copy_from_slice(&digest);
    }
    out
}

fn temp_path(path: &Path) -> PathBuf {
    let mut random = [0u8; 8];
    OsRng.fill_bytes(&mut random);
    path.with_extension(format!("key.tmp-{}", hex::encode(random)))
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the server key is readable by other users; run chmod 600 on it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerKey::load_or_create(dir.path()).unwrap();
        let sealed = first.seal_totp(7, b"secret bytes").unwrap();
        let second = ServerKey::load_or_create(dir.path()).unwrap();
        assert_eq!(
            second.open_totp(7, &sealed).unwrap().as_slice(),
            b"secret bytes"
        );
        assert_eq!(first.recovery_hash("abc"), second.recovery_hash("abc"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn sealed_secret_is_bound_to_user_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::load_or_create(dir.path()).unwrap();
        let sealed = key.seal_totp(1, b"twenty bytes secret!").unwrap();
        assert!(key.open_totp(2, &sealed).is_err());
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert!(key.open_totp(1, &tampered).is_err());
        assert!(key.open_totp(1, &[]).is_err());
        let other_dir = tempfile::tempdir().unwrap();
        let other = ServerKey::load_or_create(other_dir.path()).unwrap();
        assert!(other.open_totp(1, &sealed).is_err());
        assert!(
            !sealed
                .windows(b"twenty bytes secret!".len())
                .any(|w| w == b"twenty bytes secret!")
        );
    }

    #[test]
    fn malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "not hex at all").unwrap();
        let err = ServerKey::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("malformed"), "{err}");
        std::fs::write(dir.path().join(KEY_FILE), "abcd").unwrap();
        assert!(ServerKey::load_or_create(dir.path()).is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::load_or_create(dir.path()).unwrap();
        assert_eq!(format!("{key:?}"), "ServerKey(<redacted>)");
    }
}
