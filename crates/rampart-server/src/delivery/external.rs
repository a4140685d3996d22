//! The delivery service as an MLS external sender (RFC 9420 §12.1.8.1).
//!
//! Every group lists the server's signature key in its `external_senders`
//! extension; clients pin that key when they sign in. When a device is
//! revoked (lost, or its account disabled or deleted) while it is still a
//! leaf of some group, the server signs a Remove proposal for it in the
//! group's current epoch and queues it to the other members; the first of
//! them to process it commits it, which is what takes the device out of the
//! group's keys. A proposal is only valid in its epoch, so after every
//! accepted commit that leaves a revoked device in, the server proposes
//! again. Until the commit lands the revoked device receives nothing: the
//! actor queues nothing for it.
//!
//! The server can only *propose* removals: clients accept nothing else from
//! it, and adding someone still needs a member's commit with a Welcome.
//!
//! The leaf of a device is found, by its signature key, in the verified
//! ratchet tree of the latest GroupInfo (see [`super::inspect::members`]).

use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{
    ExternalProposal, GroupEpoch, LeafNodeIndex, SenderExtensionIndex, SignatureScheme,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use rampart_proto::GroupId;
use zeroize::Zeroizing;

/// The server's MLS signing key as an external sender, derived from the
/// server key (so it is as durable as `server.key` and needs no file).
pub struct DeliverySigner {
    keys: SignatureKeyPair,
}

impl std::fmt::Debug for DeliverySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverySigner")
            .field("public", &hex::encode(self.keys.public()))
            .finish_non_exhaustive()
    }
}

impl DeliverySigner {
    /// The Ed25519 key whose secret half is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = signing.verifying_key().to_bytes().to_vec();
        let private = Zeroizing::new(signing.to_bytes());
        Self {
            keys: SignatureKeyPair::from_raw(SignatureScheme::ED25519, private.to_vec(), public),
        }
    }

    /// The public key clients list as the group's external sender.
    pub fn public_key(&self) -> &[u8] {
        self.keys.public()
    }

    /// A Remove proposal for `leaf`, signed by the server as external sender
    /// 0, valid in `epoch` only.
    pub fn remove_proposal(
        &self,
        group: &GroupId,
        epoch: u64,
        leaf: u32,
    ) -> Result<Vec<u8>, &'static str> {
        let message = ExternalProposal::new_remove::<OpenMlsRustCrypto>(
            LeafNodeIndex::new(leaf),
            openmls::group::GroupId::from_slice(group.as_bytes()),
            GroupEpoch::from(epoch),
            &self.keys,
            SenderExtensionIndex::new(0),
        )
        .map_err(|_| "signing a remove proposal failed")?;
        message
            .tls_serialize_detached()
            .map_err(|_| "encoding a remove proposal failed")
    }
}
