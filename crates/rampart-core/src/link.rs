//! Linking a new device to an existing account (DESIGN.md, Identity: the
//! identity key never leaves the user's devices unencrypted).
//!
//! 1. The new device makes a [`LinkOffer`]: a fresh X25519 key and a secret
//!    that only ever travels in the code shown to the user. It posts its
//!    device id, name, MLS signature key and X25519 key to the server with an
//!    HMAC keyed by the secret, and shows `link id + secret` as a short code.
//! 2. On an existing device the user types the code ([`LinkCode`]). That
//!    device fetches the request, checks the HMAC — the server, which never
//!    sees the secret, cannot have swapped in its own keys — certifies the
//!    new device's signature key with the identity key, and seals the
//!    identity key to the new device's X25519 key ([`approve`]). The sealing
//!    key also mixes in the secret, so only the device showing the code can
//!    open it.
//! 3. The new device opens the result ([`LinkOffer::accept`]) and checks that
//!    the certificate it was given verifies under the identity key it received.
//!
//! The server relays and stores; it can refuse to link, but it cannot link a
//! device of its own or read the identity key.

use crate::error::CoreError;
use crate::identity::{DeviceCredential, IdentityKey};
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac as _};
use rampart_proto::api::{LinkApproval, LinkRequest, LinkResult, LinkStart};
use rampart_proto::codec::{Reader, Writer};
use rampart_proto::limits::{MAX_USERNAME_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use rampart_proto::{DeviceId, Username};
use rand::Rng as _;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Characters of link codes: no 0/O, 1/I/L or U/V look-alikes.
pub const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";
/// Characters of the server's link id (the code's first part).
pub const LINK_ID_LEN: usize = 8;
/// Characters of the secret (the code's second part): about 78 bits.
const SECRET_LEN: usize = 16;
const MAC_CONTEXT: &[u8] = b"rampart link request v1";
const SEAL_CONTEXT: &[u8] = b"rampart link seal v1";
const SEALED_VERSION: u8 = 1;
const QR_PREFIX: &str = "rampart-link:1:";

type HmacSha256 = Hmac<Sha256>;

fn link_error(reason: &'static str) -> CoreError {
    CoreError::Link(reason)
}

/// The MAC over what the new device asks the server to relay.
fn request_mac(
    secret: &str,
    device: DeviceId,
    name: &str,
    signature_key: &[u8],
    ephemeral_key: &[u8],
) -> Result<HmacSha256, CoreError> {
    let mut mac = <HmacSha256 as hmac::Mac>::new_from_slice(secret.as_bytes())
        .map_err(|_| link_error("bad secret length"))?;
    let mut w = Writer::with_capacity(128);
    w.raw(MAC_CONTEXT);
    w.u64(device.get());
    w.string(name);
    w.bytes(signature_key);
    w.bytes(ephemeral_key);
    mac.update(&w.buf);
    Ok(mac)
}

/// The one-time key sealing the identity key to the new device.
fn seal_key(
    secret: &str,
    shared: &x25519_dalek::SharedSecret,
    new_device_key: &PublicKey,
    approver_key: &PublicKey,
    device: DeviceId,
) -> Result<Zeroizing<[u8; 32]>, CoreError> {
    if !shared.was_contributory() {
        return Err(link_error("the other side's key is degenerate"));
    }
    let hk = hkdf::Hkdf::<Sha256>::new(Some(secret.as_bytes()), shared.as_bytes());
    let mut info = Vec::with_capacity(SEAL_CONTEXT.len() + 72);
    info.extend_from_slice(SEAL_CONTEXT);
    info.extend_from_slice(new_device_key.as_bytes());
    info.extend_from_slice(approver_key.as_bytes());
    info.extend_from_slice(&device.get().to_be_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand(&info, key.as_mut())
        .map_err(|_| link_error("key derivation"))?;
    Ok(key)
}

fn random_code_chars(n: usize) -> Zeroizing<String> {
    let mut rng = rand::rngs::OsRng;
    Zeroizing::new(
        (0..n)
            .map(|_| char::from(CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())]))
            .collect(),
    )
}

/// The new device's half of a link, held in memory until it is approved.
pub struct LinkOffer {
    secret: Zeroizing<String>,
    ephemeral: StaticSecret,
    device: DeviceId,
    name: String,
    signature_key: Vec<u8>,
}

impl std::fmt::Debug for LinkOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkOffer({})", self.device)
    }
}

impl LinkOffer {
    pub fn new(device: DeviceId, name: &str, signature_key: &[u8]) -> Self {
        Self {
            secret: random_code_chars(SECRET_LEN),
            ephemeral: StaticSecret::random_from_rng(rand::rngs::OsRng),
            device,
            name: name.to_owned(),
            signature_key: signature_key.to_vec(),
        }
    }

    /// What to post to `/v1/link`.
    pub fn request(&self) -> Result<LinkStart, CoreError> {
        let ephemeral_key = PublicKey::from(&self.ephemeral).as_bytes().to_vec();
        let mac = request_mac(
            &self.secret,
            self.device,
            &self.name,
            &self.signature_key,
            &ephemeral_key,
        )?
        .finalize()
        .into_bytes()
        .to_vec();
        Ok(LinkStart {
            device_id: self.device,
            name: self.name.clone(),
            signature_key: self.signature_key.clone(),
            ephemeral_key,
            mac,
        })
    }

    /// The code to show, in groups of four: `link id` then the secret.
    pub fn code(&self, link_id: &str) -> String {
        let all = format!("{link_id}{}", self.secret.as_str());
        all.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// What the QR code encodes (the same code, for scanning).
    pub fn qr_payload(&self, link_id: &str) -> String {
        format!("{QR_PREFIX}{link_id}{}", self.secret.as_str())
    }

    /// Opens an approval: the account's name, its identity key, and this
    /// device's certificate (checked to verify under that key).
    pub fn accept(
        &self,
        result: &LinkResult,
    ) -> Result<(Username, IdentityKey, [u8; 64]), CoreError> {
        let approver: [u8; PUBLIC_KEY_LEN] = result
            .ephemeral_key
            .as_slice()
            .try_into()
            .map_err(|_| link_error("approver key is not 32 bytes"))?;
        let approver = PublicKey::from(approver);
        let certificate: [u8; SIGNATURE_LEN] = result
            .certificate
            .as_slice()
            .try_into()
            .map_err(|_| link_error("certificate is not 64 bytes"))?;
        let shared = self.ephemeral.diffie_hellman(&approver);
        let own = PublicKey::from(&self.ephemeral);
        let key = seal_key(&self.secret, &shared, &own, &approver, self.device)?;
        let plain = Zeroizing::new(
            ChaCha20Poly1305::new(Key::from_slice(key.as_ref()))
                .decrypt(
                    Nonce::from_slice(&[0u8; 12]),
                    Payload {
                        msg: &result.sealed,
                        aad: &certificate,
                    },
                )
                .map_err(|_| {
                    link_error(
                        "the approval was not sealed for this code (wrong code, or tampered)",
                    )
                })?,
        );
        let mut r = Reader::new(&plain);
        if r.u8("version").map_err(|_| link_error("truncated"))? != SEALED_VERSION {
            return Err(link_error("unknown sealed version"));
        }
        let user = r
            .string("user", MAX_USERNAME_LEN)
            .ok()
            .and_then(|s| Username::parse(s).ok())
            .ok_or_else(|| link_error("bad username"))?;
        let secret = Zeroizing::new(
            r.array::<32>("identity")
                .map_err(|_| link_error("truncated"))?,
        );
        r.finish().map_err(|_| link_error("trailing bytes"))?;
        let identity = IdentityKey::from_secret(&secret);
        if result.session.username != user || result.session.device_id != self.device {
            return Err(link_error("the session is for another account or device"));
        }
        DeviceCredential {
            user: user.clone(),
            device: self.device,
            identity_key: identity.public(),
            certificate,
        }
        .verify(&self.signature_key)?;
        Ok((user, identity, certificate))
    }
}

/// A code as typed (or scanned) on the approving device.
pub struct LinkCode {
    link_id: String,
    secret: Zeroizing<String>,
}

impl std::fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkCode({}-<secret>)", self.link_id)
    }
}

impl LinkCode {
    /// Accepts `ABCD-EFGH-…` in any case, with or without separators, or the
    /// QR payload.
    pub fn parse(input: &str) -> Result<Self, CoreError> {
        let input = input.trim();
        let input = input.strip_prefix(QR_PREFIX).unwrap_or(input);
        let chars: String = input
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bad = || {
            CoreError::Link(
                "that is not a link code: it has 24 letters and digits, as the new device shows it",
            )
        };
        if chars.len() != LINK_ID_LEN + SECRET_LEN
            || !chars.bytes().all(|b| CODE_ALPHABET.contains(&b))
        {
            return Err(bad());
        }
        let (id, secret) = chars.split_at(LINK_ID_LEN);
        Ok(Self {
            link_id: id.to_owned(),
            secret: Zeroizing::new(secret.to_owned()),
        })
    }

    /// The part the server knows.
    pub fn link_id(&self) -> &str {
        &self.link_id
    }
}

/// The approving device's step: checks the request against the code,
/// certifies the new device and seals the identity key to it.
pub fn approve(
    code: &LinkCode,
    request: &LinkRequest,
    user: &Username,
    identity: &IdentityKey,
) -> Result<LinkApproval, CoreError> {
    request_mac(
        &code.secret,
        request.device_id,
        &request.name,
        &request.signature_key,
        &request.ephemeral_key,
    )?
    .verify_slice(&request.mac)
    .map_err(|_| {
        link_error("the request does not match the code: check the code on the new device (or the server tampered with it)")
    })?;
    if request.signature_key.len() != PUBLIC_KEY_LEN {
        return Err(link_error("the new device's signature key is not 32 bytes"));
    }
    let new_device: [u8; PUBLIC_KEY_LEN] = request
        .ephemeral_key
        .as_slice()
        .try_into()
        .map_err(|_| link_error("the new device's key is not 32 bytes"))?;
    let new_device = PublicKey::from(new_device);
    let ephemeral = StaticSecret::random_from_rng(rand::rngs::OsRng);
    let own = PublicKey::from(&ephemeral);
    let shared = ephemeral.diffie_hellman(&new_device);
    let key = seal_key(&code.secret, &shared, &new_device, &own, request.device_id)?;
    let certificate = identity.certify(user, request.device_id, &request.signature_key);
    let mut w = Writer::with_capacity(1 + 4 + MAX_USERNAME_LEN + 32);
    w.u8(SEALED_VERSION);
    w.string(user.as_str());
    w.raw(identity.dangerous_secret_bytes().as_slice());
    let plain = Zeroizing::new(w.buf);
    let sealed = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()))
        .encrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: &plain,
                aad: &certificate,
            },
        )
        .map_err(|_| link_error("sealing failed"))?;
    Ok(LinkApproval {
        certificate: certificate.to_vec(),
        ephemeral_key: own.as_bytes().to_vec(),
        sealed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_proto::api::{Role, SessionResponse};

    fn setup() -> (LinkOffer, LinkRequest, Username, IdentityKey) {
        let device = DeviceId::new(7).unwrap();
        let offer = LinkOffer::new(device, "laptop", &[5u8; 32]);
        let start = offer.request().unwrap();
        let request = LinkRequest {
            device_id: start.device_id,
            name: start.name,
            signature_key: start.signature_key,
            ephemeral_key: start.ephemeral_key,
            mac: start.mac,
            expires_at: 0,
        };
        (
            offer,
            request,
            Username::parse("alice").unwrap(),
            IdentityKey::generate(),
        )
    }

    fn result_of(approval: LinkApproval, user: &Username) -> LinkResult {
        LinkResult {
            session: SessionResponse {
                token: "t".into(),
                username: user.clone(),
                device_id: DeviceId::new(7).unwrap(),
                role: Role::Member,
            },
            certificate: approval.certificate,
            ephemeral_key: approval.ephemeral_key,
            sealed: approval.sealed,
        }
    }

    #[test]
    fn round_trip_transfers_the_identity() {
        let (offer, request, alice, identity) = setup();
        let shown = offer.code("ABCDEFGH");
        assert_eq!(shown.len(), 24 + 5);
        let code = LinkCode::parse(&shown.to_lowercase()).unwrap();
        assert_eq!(code.link_id(), "ABCDEFGH");
        assert_eq!(
            LinkCode::parse(&offer.qr_payload("ABCDEFGH"))
                .unwrap()
                .link_id(),
            "ABCDEFGH"
        );
        let approval = approve(&code, &request, &alice, &identity).unwrap();
        let (user, got, _) = offer.accept(&result_of(approval, &alice)).unwrap();
        assert_eq!(user, alice);
        assert_eq!(got.public(), identity.public());
    }

    #[test]
    fn a_swapped_key_or_wrong_code_is_refused() {
        let (offer, request, alice, identity) = setup();
        let code = LinkCode::parse(&offer.code("ABCDEFGH")).unwrap();
        // The server swaps in its own X25519 key: the MAC no longer matches.
        let mut swapped = request.clone();
        swapped.ephemeral_key = [9u8; 32].to_vec();
        assert!(matches!(
            approve(&code, &swapped, &alice, &identity),
            Err(CoreError::Link(_))
        ));
        // A code with another secret.
        let other = LinkOffer::new(DeviceId::new(7).unwrap(), "laptop", &[5u8; 32]);
        let wrong = LinkCode::parse(&other.code("ABCDEFGH")).unwrap();
        assert!(approve(&wrong, &request, &alice, &identity).is_err());
        // A tampered sealed box or certificate.
        let approval = approve(&code, &request, &alice, &identity).unwrap();
        let mut tampered = result_of(approval.clone(), &alice);
        tampered.sealed[0] ^= 1;
        assert!(offer.accept(&tampered).is_err());
        let mut tampered = result_of(approval, &alice);
        tampered.certificate[0] ^= 1;
        assert!(offer.accept(&tampered).is_err());
    }

    #[test]
    fn malformed_codes_are_errors() {
        for bad in [
            "",
            "ABCD",
            "ABCD-EFGH-IJKL-MNOP-QRST-UVW0",
            &"A".repeat(200),
        ] {
            assert!(LinkCode::parse(bad).is_err(), "{bad}");
        }
    }
}
