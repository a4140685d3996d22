//! What the delivery service can check in MLS framing without any keys:
//! wire format, content type, group id and epoch, and the group settings in
//! a commit's GroupInfo. Done in the connection task (not the actor) so
//! parsing cost is spread over connections.

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{ContentType, MlsMessageBodyIn, MlsMessageIn, ProtocolMessage};
use rampart_proto::ErrorCode;
use rampart_proto::GroupId;
use rampart_proto::frame::{CommitBundle, DeliveryKind, SendMessage};
use rampart_proto::group::{GROUP_SETTINGS_EXTENSION, GroupSettings};

/// A request the server refuses before storing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: &'static str,
}

fn malformed(message: &'static str) -> Refusal {
    Refusal {
        code: ErrorCode::MalformedMls,
        message,
    }
}

fn protocol_message(bytes: &[u8], group: &GroupId) -> Result<ProtocolMessage, Refusal> {
    let msg = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|_| malformed("the payload is not an MLS message"))?
        .try_into_protocol_message()
        .map_err(|_| malformed("the payload is not an MLS PublicMessage or PrivateMessage"))?;
    if msg.group_id().as_slice() != group.as_bytes() {
        return Err(malformed("the MLS message belongs to another group"));
    }
    Ok(msg)
}

/// A send must be an encrypted application message or a public proposal.
/// Returns its kind and the epoch it was made in.
pub fn check_send(msg: &SendMessage) -> Result<(DeliveryKind, u64), Refusal> {
    match protocol_message(&msg.message, &msg.group)? {
        ProtocolMessage::PrivateMessage(m) if m.content_type() == ContentType::Application => {
            Ok((DeliveryKind::Application, m.epoch().as_u64()))
        }
        ProtocolMessage::PublicMessage(m) if m.content_type() == ContentType::Proposal => {
            Ok((DeliveryKind::Proposal, m.epoch().as_u64()))
        }
        _ => Err(malformed(
            "send carries application messages as PrivateMessage or proposals as PublicMessage; commits go in a commit bundle",
        )),
    }
}

/// A commit bundle's commit must be a public commit for the stated group and
/// epoch, its Welcome (if any) a Welcome, and its GroupInfo a GroupInfo of
/// that group. Returns the group settings the GroupInfo's group context
/// carries (`None` if it carries none).
pub fn check_commit(bundle: &CommitBundle) -> Result<Option<GroupSettings>, Refusal> {
    let ProtocolMessage::PublicMessage(commit) = protocol_message(&bundle.commit, &bundle.group)?
    else {
        return Err(malformed("commits must be sent as MLS PublicMessage"));
    };
    if commit.content_type() != ContentType::Commit {
        return Err(malformed("the commit field does not carry a commit"));
    }
    if commit.epoch().as_u64() != bundle.epoch {
        return Err(malformed(
            "the commit's epoch differs from the bundle's epoch",
        ));
    }
    match (&bundle.welcome, bundle.added.is_empty()) {
        (Some(welcome), false) => {
            let parsed = MlsMessageIn::tls_deserialize_exact(welcome.as_slice())
                .map_err(|_| malformed("the welcome is not an MLS message"))?;
            if !matches!(parsed.extract(), MlsMessageBodyIn::Welcome(_)) {
                return Err(malformed("the welcome field does not carry an MLS Welcome"));
            }
        }
        (None, true) => {}
        (Some(_), true) => {
            return Err(Refusal {
                code: ErrorCode::BadRequest,
                message: "a welcome was given but no devices are added",
            });
        }
        (None, false) => {
            return Err(Refusal {
                code: ErrorCode::BadRequest,
                message: "devices are added but no welcome was given",
            });
        }
    }
    group_settings(&bundle.group_info, &bundle.group)
}

/// The [`GroupSettings`] extension in a GroupInfo's group context.
///
/// The server checks no MLS signature, so this is what the committer *says*
/// the new settings are. The actor accepts a change only from a member the
/// settings before the commit make an admin, so a member cannot name
/// themselves admin here. What the server cannot see is a GroupInfo that
/// disagrees with its own commit; members judge the commit itself (their
/// clients check every change against the settings in their group context),
/// so such a lie fools only the server's mirror, never the group.
fn group_settings(group_info: &[u8], group: &GroupId) -> Result<Option<GroupSettings>, Refusal> {
    let parsed = MlsMessageIn::tls_deserialize_exact(group_info)
        .map_err(|_| malformed("the group info is not an MLS message"))?;
    let MlsMessageBodyIn::GroupInfo(info) = parsed.extract() else {
        return Err(malformed(
            "the group info field does not carry an MLS GroupInfo",
        ));
    };
    if info.group_id().as_slice() != group.as_bytes() {
        return Err(malformed("the group info belongs to another group"));
    }
    match info
        .group_context()
        .extensions()
        .unknown(GROUP_SETTINGS_EXTENSION)
    {
        None => Ok(None),
        Some(ext) => GroupSettings::decode(&ext.0)
            .map(Some)
            .map_err(|_| malformed("the group settings extension is malformed")),
    }
}
