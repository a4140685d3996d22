//! What the delivery service pays to check one handshake message (see
//! `delivery::inspect`), for `rampart bench handshakes`: a real OpenMLS
//! group of `members` devices, one commit, verified against the group's
//! stored state the way every commit bundle is.

use crate::delivery::inspect;
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use std::time::{Duration, Instant};

const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Mean times of the server's checks for one group size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HandshakeCost {
    pub members: usize,
    pub rounds: usize,
    /// Verifying a commit: the stored GroupInfo and its tree, then the
    /// commit against them, and the new GroupInfo against the result.
    pub commit_ms: f64,
    /// Verifying a GroupInfo's tree alone (a creating commit, or finding
    /// a revoked device's leaf).
    pub tree_ms: f64,
}

struct Member {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

fn member(n: usize) -> Result<Member, String> {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
        .map_err(|e| format!("key generation: {e:?}"))?;
    signer
        .store(provider.storage())
        .map_err(|e| format!("key storage: {e:?}"))?;
    let credential = CredentialWithKey {
        credential: BasicCredential::new(format!("member {n}").into_bytes()).into(),
        signature_key: signer.public().into(),
    };
    Ok(Member {
        provider,
        signer,
        credential,
    })
}

fn bytes(message: &MlsMessageOut) -> Result<Vec<u8>, String> {
    message
        .tls_serialize_detached()
        .map_err(|e| format!("encoding: {e:?}"))
}

/// Builds a group of `members` devices and measures `rounds` verifications.
pub fn measure(members: usize, rounds: usize) -> Result<HandshakeCost, String> {
    let members = members.max(2);
    let rounds = rounds.max(1);
    let creator = member(0)?;
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
        .build();
    let mut group = MlsGroup::new(
        &creator.provider,
        &creator.signer,
        &config,
        creator.credential.clone(),
    )
    .map_err(|e| format!("group creation: {e:?}"))?;
    let mut key_packages = Vec::with_capacity(members - 1);
    for n in 1..members {
        let m = member(n)?;
        let bundle = KeyPackage::builder()
            .build(CIPHERSUITE, &m.provider, &m.signer, m.credential.clone())
            .map_err(|e| format!("key package: {e:?}"))?;
        key_packages.push(bundle.key_package().clone());
    }
    let (_, _, previous) = group
        .add_members(&creator.provider, &creator.signer, &key_packages)
        .map_err(|e| format!("adding members: {e:?}"))?;
    group
        .merge_pending_commit(&creator.provider)
        .map_err(|e| format!("merging: {e:?}"))?;
    let previous = previous.ok_or("no group info")?;
    let previous = bytes(&previous.into())?;
    let (commit, _, next) = group
        .self_update(
            &creator.provider,
            &creator.signer,
            LeafNodeParameters::default(),
        )
        .map_err(|e| format!("self update: {e:?}"))?
        .into_contents();
    let commit = bytes(&commit)?;
    let next = bytes(&next.ok_or("no group info")?.into())?;

    let time = |work: &dyn Fn() -> Result<(), String>| -> Result<Duration, String> {
        let start = Instant::now();
        for _ in 0..rounds {
            work()?;
        }
        Ok(start.elapsed() / rounds as u32)
    };
    let commit_time = time(&|| {
        inspect::commit(&previous, &[], &commit, &next)
            .map(|_| ())
            .map_err(|r| r.message.to_owned())
    })?;
    let tree_time = time(&|| {
        inspect::members(&previous)
            .map(|_| ())
            .map_err(|r| r.message.to_owned())
    })?;
    Ok(HandshakeCost {
        members,
        rounds,
        commit_ms: commit_time.as_secs_f64() * 1e3,
        tree_ms: tree_time.as_secs_f64() * 1e3,
    })
}
