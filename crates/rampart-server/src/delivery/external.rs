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
//! The leaf of a device is found in the ratchet tree that the latest
//! GroupInfo carries, by the device's signature key.

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    ExternalProposal, GroupEpoch, LeafNodeIndex, MlsMessageBodyIn, MlsMessageIn,
    SenderExtensionIndex, SignatureScheme,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use rampart_proto::{DeviceId, GroupId};
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

/// The leaf index of each of `devices` (by signature key) in the ratchet
/// tree of `group_info`; devices not found are left out. Reads the tree
/// without verifying it: a wrong answer only makes clients refuse the
/// proposal, since they check it against their own tree.
pub fn leaves_of(group_info: &[u8], devices: &[(DeviceId, Vec<u8>)]) -> Vec<(DeviceId, u32)> {
    let Ok(message) = MlsMessageIn::tls_deserialize_exact(group_info) else {
        return Vec::new();
    };
    let MlsMessageBodyIn::GroupInfo(info) = message.extract() else {
        return Vec::new();
    };
    let Some(tree) = info.extensions().ratchet_tree() else {
        return Vec::new();
    };
    let tree = tree.ratchet_tree();
    // `leaves()` skips blank nodes, so positions come from the serialised
    // node array (its entries are null for blanks): the n-th non-blank
    // leaf entry is the n-th item of `leaves()`, and a leaf at node
    // position p has leaf index p / 2.
    let Ok(serde_json::Value::Array(nodes)) = serde_json::to_value(tree) else {
        return Vec::new();
    };
    let positions = nodes.iter().enumerate().filter_map(|(p, node)| {
        node.as_object()
            .is_some_and(|n| n.contains_key("LeafNode"))
            .then_some(p)
    });
    let mut found = Vec::new();
    for (position, leaf) in positions.zip(tree.leaves()) {
        let key = leaf.signature_key().as_slice();
        if let Some((device, _)) = devices.iter().find(|(_, k)| k.as_slice() == key)
            && let Ok(index) = u32::try_from(position / 2)
        {
            found.push((*device, index));
        }
    }
    found
}
