//! What a handshake message really does, read the way a delivery service
//! can without any group secret: openmls's `PublicGroup` rebuilds the
//! group's public state (the ratchet tree and group context) from the
//! GroupInfo stored with the previous commit, verifies it, and then
//! verifies and stages a PublicMessage commit or proposal against it.
//!
//! The actor then checks the rights of the change that *is* made, not the
//! one a bundle declares: the leaves added and removed (by signature key,
//! which the server knows for every device) must be exactly the devices
//! the bundle names, the committer's leaf must be the connected device's,
//! and the new GroupInfo the bundle uploads (from which the server mirrors
//! the settings and which joiners use) must describe the very state the
//! commit makes. Costs one tree verification per handshake message (a
//! signature per member), run off the async workers; messages never pay it.

use super::mls::Refusal;
use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    LeafNodeIndex, MlsMessageBodyIn, MlsMessageIn, ProcessedMessageContent, Proposal,
    ProposalStore, ProtocolMessage, PublicGroup, Sender,
};
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider as _;
use rampart_proto::ErrorCode;

fn malformed(message: &'static str) -> Refusal {
    Refusal {
        code: ErrorCode::MalformedMls,
        message,
    }
}

/// What a verified commit does, by the signature keys of the leaves.
#[derive(Debug, Default)]
pub struct CommitEffects {
    /// The committer's leaf in the tree before the commit.
    pub committer: Vec<u8>,
    pub added: Vec<Vec<u8>>,
    pub removed: Vec<Vec<u8>>,
}

fn group_info(bytes: &[u8]) -> Result<VerifiableGroupInfo, Refusal> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|_| malformed("the group info is not an MLS message"))?;
    match message.extract() {
        MlsMessageBodyIn::GroupInfo(info) => Ok(info),
        _ => Err(malformed(
            "the group info field does not carry an MLS GroupInfo",
        )),
    }
}

fn protocol(bytes: &[u8]) -> Result<ProtocolMessage, Refusal> {
    MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|_| malformed("the payload is not an MLS message"))?
        .try_into_protocol_message()
        .map_err(|_| malformed("the payload is not an MLS PublicMessage"))
}

/// The verified public state a GroupInfo describes (it must carry the
/// ratchet tree, as Rampart clients' GroupInfos do).
fn public_group(provider: &OpenMlsRustCrypto, bytes: &[u8]) -> Result<PublicGroup, Refusal> {
    let info = group_info(bytes)?;
    let tree = info
        .extensions()
        .ratchet_tree()
        .ok_or(malformed("the group info carries no ratchet tree"))?
        .ratchet_tree()
        .clone();
    PublicGroup::from_external(
        provider.crypto(),
        provider.storage(),
        tree,
        info,
        ProposalStore::new(),
    )
    .map(|(group, _)| group)
    .map_err(|_| malformed("the group info or its ratchet tree does not verify"))
}

fn leaf_key(group: &PublicGroup, leaf: LeafNodeIndex) -> Option<Vec<u8>> {
    group
        .leaf(leaf)
        .map(|l| l.signature_key().as_slice().to_vec())
}

/// The signature keys of every member of the group a GroupInfo describes,
/// verified (for a creating commit, whose group the server has no earlier
/// state of; and to find a device's leaf).
pub fn members(group_info: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, Refusal> {
    let provider = OpenMlsRustCrypto::default();
    let group = public_group(&provider, group_info)?;
    Ok(group
        .members()
        .map(|m| (m.index.u32(), m.signature_key))
        .collect())
}

/// Verifies `commit` against the state of `previous` (the GroupInfo stored
/// for the epoch it was made in) with the `proposals` relayed in that
/// epoch, and checks that `new_group_info` describes the state it makes.
pub fn commit(
    previous: &[u8],
    proposals: &[Vec<u8>],
    commit: &[u8],
    new_group_info: &[u8],
) -> Result<CommitEffects, Refusal> {
    let provider = OpenMlsRustCrypto::default();
    let mut group = public_group(&provider, previous)?;
    for proposal in proposals {
        // What the server relayed was checked then; one that no longer
        // verifies cannot be committed by reference either.
        let Ok(message) = protocol(proposal) else {
            continue;
        };
        if let Ok(processed) = group.process_message(provider.crypto(), message)
            && let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content()
        {
            let _ = group.add_proposal(provider.storage(), *queued);
        }
    }
    let processed = group
        .process_message(provider.crypto(), protocol(commit)?)
        .map_err(|_| malformed("the commit does not verify against the group's state"))?;
    let Sender::Member(committer) = *processed.sender() else {
        return Err(malformed("only members commit"));
    };
    let committer = leaf_key(&group, committer).ok_or(malformed("unknown committer"))?;
    let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
        return Err(malformed("the commit field does not carry a commit"));
    };
    let added = staged
        .add_proposals()
        .map(|a| {
            a.add_proposal()
                .key_package()
                .leaf_node()
                .signature_key()
                .as_slice()
                .to_vec()
        })
        .collect();
    let mut removed = Vec::new();
    for r in staged.remove_proposals() {
        removed.push(
            leaf_key(&group, r.remove_proposal().removed())
                .ok_or(malformed("the commit removes an empty leaf"))?,
        );
    }
    if group_info(new_group_info)?.group_context() != staged.group_context() {
        return Err(malformed(
            "the group info does not describe the state the commit makes",
        ));
    }
    Ok(CommitEffects {
        committer,
        added,
        removed,
    })
}

/// A proposal from a member must be that member's own removal (leaving);
/// returns the proposer's signature key.
pub fn leave(current: &[u8], proposal: &[u8]) -> Result<Vec<u8>, Refusal> {
    let provider = OpenMlsRustCrypto::default();
    let group = public_group(&provider, current)?;
    let processed = group
        .process_message(provider.crypto(), protocol(proposal)?)
        .map_err(|_| malformed("the proposal does not verify against the group's state"))?;
    let Sender::Member(sender) = *processed.sender() else {
        return Err(malformed("only members propose"));
    };
    let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
        return Err(malformed("the message is not a proposal"));
    };
    match queued.proposal() {
        Proposal::Remove(r) if r.removed() == sender => {
            leaf_key(&group, sender).ok_or(malformed("unknown proposer"))
        }
        _ => Err(Refusal {
            code: ErrorCode::Forbidden,
            message: "members may only propose their own removal (leaving)",
        }),
    }
}
