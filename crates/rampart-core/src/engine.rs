//! Conversations as MLS groups: create, add, remove, leave, self-update, send
//! and receive, each a pure step over a provider (crypto + storage) and an
//! [`AppStore`]. The driver owns the network, the clock and the transaction.
//!
//! Rules this module enforces (DESIGN.md, Cryptography):
//! - every leaf's device certificate is verified, and its identity key pinned on
//!   first use, before a Welcome is accepted or a commit merged; a changed key
//!   is reported ([`Event::IdentityChanged`]) and, for a contact the user had
//!   verified, blocks sending until they confirm again (see [`crate::trust`]);
//! - a 1:1 group may only contain devices of its two users;
//! - every commit and message is checked against the group's roles and
//!   rules in its context ([`GroupSettings`], see `access`), and the server,
//!   the only external sender a group may list, may only propose removals;
//! - our own commits are merged only after the server accepted them
//!   ([`Engine::commit_accepted`]); a rejected one is discarded
//!   ([`Engine::commit_rejected`]) and the caller retries after catching up.

use crate::content::{AppMessage, Body, MAX_GROUP_NAME_LEN};
use crate::error::CoreError;
use crate::identity::DeviceCredential;
use crate::provider::Provider;
use crate::store::{AppStore, Conversation, ConversationState, MessageId, StoredMessage};
use crate::trust::{self, Observed};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::storage::{CURRENT_VERSION, StorageProvider};
use rampart_proto::api::MessagePolicy;
use rampart_proto::frame::{CommitBundle, Create, Delivery, DeliveryKind};
use rampart_proto::group::{Action, GROUP_SETTINGS_EXTENSION, GroupRole, GroupSettings};
use rampart_proto::limits::{
    MAX_FILE_NAME_LEN, MAX_GROUP_DEVICES, MAX_MEDIA_TYPE_LEN, MAX_TEXT_LEN,
};
use rampart_proto::{BlobId, DeviceId, GroupId, GroupKind, IdempotencyKey, Millis, Username};
use rand::RngCore as _;
use std::ops::Not as _;

mod access;
mod lifecycle;

use lifecycle::group_settings;

/// MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 (0x0001).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Epochs whose secrets are kept so late application messages still decrypt.
const MAX_PAST_EPOCHS: usize = 5;
/// Application messages are padded to a multiple of this many bytes, so the
/// server learns less from ciphertext sizes.
const PADDING: usize = 64;

/// Something the user (or the driver) should know after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new message in a conversation's history.
    Message(StoredMessage),
    /// This device joined a conversation through a Welcome.
    Joined { group: GroupId, by: Username },
    /// Members were added or removed by a commit (ours or another's).
    MembersChanged {
        group: GroupId,
        added: Vec<Username>,
        removed: Vec<Username>,
    },
    /// A conversation got its display name.
    Renamed { group: GroupId, name: String },
    /// This device was removed from the conversation (or its leave completed).
    Removed { group: GroupId },
    /// A member proposed to leave; some member must commit it
    /// ([`Engine::commit_pending`]).
    ProposalQueued { group: GroupId },
    /// A contact's identity key changed (a loud warning). If the user had
    /// verified them, sending to them is blocked until they confirm again.
    IdentityChanged {
        user: Username,
        group: GroupId,
        was_verified: bool,
    },
    /// The conversation's disappearing-messages timer changed (`None`: off).
    TimerChanged {
        group: GroupId,
        by: Username,
        timer: Option<u32>,
    },
    /// A message was deleted for everyone by its sender or a group admin.
    Recalled {
        group: GroupId,
        id: MessageId,
        by: Username,
    },
    /// A message's text was replaced by its sender.
    Edited {
        group: GroupId,
        id: MessageId,
        by: Username,
    },
    /// The group's roles or settings changed (by one of its admins).
    SettingsChanged { group: GroupId, by: Username },
    /// A delivery was not applied (duplicate, unknown group, too old, invalid).
    /// Safe to acknowledge: retrying would fail the same way.
    Dropped { group: GroupId, reason: String },
}

#[derive(Clone)]
/// A KeyPackage whose certificate verified against its account's identity
/// key, which is pinned (now, if this is the first contact).
pub struct VerifiedKeyPackage {
    pub user: Username,
    pub device: DeviceId,
    /// The account's identity key differs from the pinned one (the user was
    /// never verified, so it is accepted; show the warning).
    pub identity_changed: bool,
    key_package: KeyPackage,
}

impl std::fmt::Debug for VerifiedKeyPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifiedKeyPackage({} {})", self.user, self.device)
    }
}

/// A commit built locally and not yet accepted by the server: send
/// `bundle`, then call [`Engine::commit_accepted`] or [`Engine::commit_rejected`].
#[derive(Debug)]
pub struct PendingCommit {
    pub bundle: CommitBundle,
    pub added: Vec<Username>,
    pub removed: Vec<Username>,
}

/// An application message ready to send: what the history keeps, the MLS
/// bytes, and what the envelope tells the server.
#[derive(Debug)]
pub struct Outgoing {
    pub stored: StoredMessage,
    pub mls: Vec<u8>,
    /// Seconds until the server deletes it (see [`crate::lifetime`]).
    pub expires_in: Option<u32>,
    /// For a recall: the message whose undelivered copies the server deletes.
    pub recalls: Option<MessageId>,
}

impl Outgoing {
    /// The blobs this message shares, which the server binds to it (so they
    /// expire and are recalled with it).
    pub fn attachments(&self) -> Vec<BlobId> {
        match &self.stored.body {
            Body::File(a) => vec![a.blob],
            _ => Vec::new(),
        }
    }
}

/// One device's view of its conversations.
pub struct Engine {
    user: Username,
    device: DeviceId,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    /// The organisation's rules for message lifetime, recall and edit.
    policy: MessagePolicy,
    /// The server's key as the groups' external sender (pinned by the
    /// driver). With it, new groups list the server as external sender, and
    /// groups that list anyone else are refused.
    delivery_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({} {})", self.user, self.device)
    }
}

/// What every leaf declares it supports beyond the defaults: our group
/// settings extension (RFC 9420 wants members to support the group
/// context's extensions).
fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        Some(&[ExtensionType::Unknown(GROUP_SETTINGS_EXTENSION)]),
        None,
        None,
    )
}

/// The identity in the server's external-sender credential.
const DELIVERY_SERVICE_IDENTITY: &[u8] = b"rampart delivery service";

/// The group context extensions of a group: its settings, if it has any,
/// and the server as its only external sender, if its key is known.
fn group_extensions(
    settings: Option<&GroupSettings>,
    delivery_key: Option<&[u8]>,
) -> Result<Extensions<GroupContext>, CoreError> {
    let mut list = Vec::with_capacity(3);
    if let Some(s) = settings {
        list.push(Extension::Unknown(
            GROUP_SETTINGS_EXTENSION,
            UnknownExtension(s.encode()),
        ));
        // Every member must understand the settings (and openmls lets a
        // commit change only extensions the group requires).
        list.push(Extension::RequiredCapabilities(
            RequiredCapabilitiesExtension::new(
                &[ExtensionType::Unknown(GROUP_SETTINGS_EXTENSION)],
                &[],
                &[],
            ),
        ));
    }
    if let Some(key) = delivery_key {
        list.push(Extension::ExternalSenders(vec![delivery_sender(key)]));
    }
    Extensions::from_vec(list).map_err(CoreError::mls("group context extensions"))
}

/// Whether a group's external senders are exactly the server (or, when
/// this engine knows no server key, anyone: tests without a server).
fn external_senders_ok(extensions: &Extensions<GroupContext>, delivery_key: Option<&[u8]>) -> bool {
    let Some(key) = delivery_key else {
        return true;
    };
    extensions
        .external_senders()
        .is_some_and(|senders| senders.as_slice() == [delivery_sender(key)])
}

/// The server as an external sender: its key and credential.
fn delivery_sender(key: &[u8]) -> ExternalSender {
    ExternalSender::new(
        key.to_vec().into(),
        BasicCredential::new(DELIVERY_SERVICE_IDENTITY.to_vec()).into(),
    )
}

fn create_config(extensions: Extensions<GroupContext>) -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .capabilities(capabilities())
        .with_group_context_extensions(extensions)
        .use_ratchet_tree_extension(true)
        // Handshakes in the clear (PublicMessage) so the server can check
        // membership; application messages are always PrivateMessage.
        .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .padding_size(PADDING)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(64, 10_000))
        .build()
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .padding_size(PADDING)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(64, 10_000))
        .build()
}

fn random_key() -> IdempotencyKey {
    let mut k = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut k);
    IdempotencyKey(k)
}

/// A random id for a new device of this account (zero is not an id).
pub fn new_device_id() -> DeviceId {
    loop {
        if let Some(d) = DeviceId::new(rand::rngs::OsRng.next_u64()) {
            return d;
        }
    }
}

/// A new random message id.
pub fn new_message_id() -> MessageId {
    let mut k = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut k);
    MessageId(k)
}

fn serialize<T: tls_codec::Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, CoreError> {
    value.tls_serialize_detached().map_err(CoreError::mls(what))
}

fn device_credential_of(credential: &Credential) -> Result<DeviceCredential, CoreError> {
    let basic =
        BasicCredential::try_from(credential.clone()).map_err(|_| CoreError::BadCertificate {
            user: "<unknown>".into(),
            reason: "not a basic credential",
        })?;
    DeviceCredential::decode(basic.identity())
}

impl Engine {
    /// Builds the engine of a device whose MLS signer and certificate exist.
    pub fn new(credential: DeviceCredential, signer: SignatureKeyPair) -> Self {
        let user = credential.user.clone();
        let device = credential.device;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(credential.encode()).into(),
            signature_key: signer.public().into(),
        };
        Self {
            user,
            device,
            signer,
            credential,
            policy: MessagePolicy::default(),
            delivery_key: None,
        }
    }

    /// Sets the server's external-sender key (see [`Engine`]'s field docs).
    pub fn set_delivery_key(&mut self, key: Vec<u8>) {
        self.delivery_key = Some(key);
    }

    pub fn has_delivery_key(&self) -> bool {
        self.delivery_key.is_some()
    }

    /// Sets the organisation's message policy (fetched from the server).
    pub fn set_policy(&mut self, policy: MessagePolicy) {
        self.policy = policy;
    }

    pub fn policy(&self) -> &MessagePolicy {
        &self.policy
    }

    /// A fresh MLS signature key pair for a new device; store it with
    /// [`Engine::store_signer`] in the device's first transaction.
    pub fn generate_signer() -> Result<SignatureKeyPair, CoreError> {
        SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
            .map_err(CoreError::mls("signature key generation"))
    }

    /// Persists the signer in OpenMLS storage.
    pub fn store_signer<S: StorageProvider<CURRENT_VERSION>>(
        signer: &SignatureKeyPair,
        provider: &Provider<S>,
    ) -> Result<(), CoreError>
    where
        S::Error: Send + Sync + 'static,
    {
        signer.store(provider.storage()).map_err(CoreError::store)
    }

    /// Loads the signer whose public key is `public`.
    pub fn load_signer<S: StorageProvider<CURRENT_VERSION>>(
        public: &[u8],
        provider: &Provider<S>,
    ) -> Result<SignatureKeyPair, CoreError>
    where
        S::Error: Send + Sync + 'static,
    {
        SignatureKeyPair::read(
            provider.storage(),
            public,
            CIPHERSUITE.signature_algorithm(),
        )
        .ok_or(CoreError::Invalid(
            "this profile's device signing key is missing from the local store",
        ))
    }

    pub fn user(&self) -> &Username {
        &self.user
    }

    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// `n` fresh KeyPackages (their private init keys go to storage).
    pub fn key_packages<S>(
        &self,
        provider: &Provider<S>,
        n: usize,
        last_resort: bool,
    ) -> Result<Vec<Vec<u8>>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
    {
        (0..n)
            .map(|_| {
                let mut builder = KeyPackage::builder().leaf_node_capabilities(capabilities());
                if last_resort {
                    builder = builder.mark_as_last_resort();
                }
                let bundle = builder
                    .build(CIPHERSUITE, provider, &self.signer, self.credential.clone())
                    .map_err(CoreError::mls("key package creation"))?;
                serialize(bundle.key_package(), "key package encoding")
            })
            .collect()
    }

    /// Checks a leaf: its certificate must verify against its identity key,
    /// which is pinned on first contact. A changed key is recorded in the pin
    /// and reported in `events`.
    fn check_leaf<A: AppStore>(
        &self,
        app: &A,
        credential: &Credential,
        signature_key: &[u8],
        group: GroupId,
        events: &mut Vec<Event>,
    ) -> Result<DeviceCredential, CoreError> {
        let cred = device_credential_of(credential)?;
        cred.verify(signature_key)?;
        if let Observed::Changed { was_verified } =
            trust::observe(app, &cred.user, &cred.identity_key)?
        {
            events.push(Event::IdentityChanged {
                user: cred.user.clone(),
                group,
                was_verified,
            });
        }
        Ok(cred)
    }

    /// Validates a claimed KeyPackage: MLS signature, ciphersuite, our device
    /// certificate, that it belongs to `device` of `user` and is certified by
    /// `account_key` (the identity key the directory gives for `user`), and the
    /// identity pin: a key that changed after the user verified it is refused.
    pub fn verify_key_package<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        user: &Username,
        account_key: &[u8; 32],
        device: DeviceId,
        bytes: &[u8],
    ) -> Result<VerifiedKeyPackage, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        A: AppStore,
    {
        let kp_in = KeyPackageIn::tls_deserialize_exact(bytes)
            .map_err(|_| CoreError::Malformed("key package"))?;
        let key_package = kp_in
            .validate(provider.crypto(), ProtocolVersion::Mls10)
            .map_err(|_| CoreError::Malformed("key package (signature or lifetime)"))?;
        if key_package.ciphersuite() != CIPHERSUITE {
            return Err(CoreError::Malformed("key package ciphersuite"));
        }
        let leaf = key_package.leaf_node();
        let cred = device_credential_of(leaf.credential())?;
        cred.verify(leaf.signature_key().as_slice())?;
        if &cred.user != user || cred.device != device {
            return Err(CoreError::WrongKeyPackage { expected: device });
        }
        // One account, one identity key: a device certified by another key was
        // not made by the account's owner, whatever the server says.
        if cred.identity_key != *account_key {
            return Err(CoreError::ForeignDevice(cred.user));
        }
        let identity_changed = match trust::observe(app, &cred.user, &cred.identity_key)? {
            Observed::Changed { was_verified: true } => {
                return Err(CoreError::VerificationRequired(cred.user));
            }
            Observed::Changed {
                was_verified: false,
            } => true,
            Observed::Same | Observed::Pinned => {
                let pin = app.identity_pin(&cred.user).map_err(CoreError::store)?;
                if pin.is_some_and(|p| p.trust == trust::Trust::Broken) {
                    return Err(CoreError::VerificationRequired(cred.user));
                }
                false
            }
        };
        Ok(VerifiedKeyPackage {
            user: cred.user,
            device,
            identity_changed,
            key_package,
        })
    }

    fn load_group<S: StorageProvider<CURRENT_VERSION>>(
        provider: &Provider<S>,
        group: &GroupId,
    ) -> Result<MlsGroup, CoreError>
    where
        S::Error: Send + Sync + 'static,
    {
        MlsGroup::load(
            provider.storage(),
            &openmls::group::GroupId::from_slice(group.as_bytes()),
        )
        .map_err(CoreError::store)?
        .ok_or(CoreError::UnknownGroup(*group))
    }

    /// (leaf index, credential) of every member, in leaf order.
    fn members(group: &MlsGroup) -> Vec<(LeafNodeIndex, DeviceCredential)> {
        group
            .members()
            .filter_map(|m| {
                device_credential_of(&m.credential)
                    .ok()
                    .map(|c| (m.index, c))
            })
            .collect()
    }

    /// Creates a conversation with the given members' devices. For a 1:1
    /// conversation pass `Create::Direct` and the id from [`GroupId::direct`].
    /// The group exists locally as `Pending` until the server accepts.
    #[allow(clippy::too_many_arguments)]
    pub fn create_group<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        group: GroupId,
        create: Create,
        name: Option<String>,
        settings: Option<GroupSettings>,
        members: Vec<VerifiedKeyPackage>,
        now: Millis,
    ) -> Result<PendingCommit, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let peer = match (&create, group.kind()) {
            (Create::Direct { peer }, GroupKind::Direct)
                if GroupId::direct(&self.user, peer) == group =>
            {
                Some(peer.clone())
            }
            (Create::Group, GroupKind::Group) => None,
            _ => {
                return Err(CoreError::Invalid(
                    "group id does not match the conversation kind",
                ));
            }
        };
        if let Some(name) = &name
            && name.len() > MAX_GROUP_NAME_LEN
        {
            return Err(CoreError::Invalid("group names are at most 64 bytes"));
        }
        if members.len() + 1 > MAX_GROUP_DEVICES {
            return Err(CoreError::Invalid("too many devices for one group"));
        }
        if let Some(peer) = &peer
            && members
                .iter()
                .any(|m| m.user != self.user && m.user != *peer)
        {
            return Err(CoreError::Invalid(
                "a 1:1 conversation holds only its two people",
            ));
        }
        // A named group starts with its creator among the admins; a 1:1 has
        // no settings (both people may do everything).
        let settings = match (&peer, settings) {
            (Some(_), Some(_)) => {
                return Err(CoreError::Invalid(
                    "a 1:1 conversation has no group settings",
                ));
            }
            (Some(_), None) => None,
            (None, None) => Some(GroupSettings::created_by(&self.user)),
            (None, Some(mut s)) => {
                s.set_role(&self.user, GroupRole::Admin);
                Some(s)
            }
        };
        let mut mls = MlsGroup::new_with_group_id(
            provider,
            &self.signer,
            &create_config(group_extensions(
                settings.as_ref(),
                self.delivery_key.as_deref(),
            )?),
            openmls::group::GroupId::from_slice(group.as_bytes()),
            self.credential.clone(),
        )
        .map_err(CoreError::mls("group creation"))?;
        app.put_conversation(&Conversation {
            group,
            kind: group.kind(),
            name,
            peer,
            state: ConversationState::Pending,
            created_at: now,
            last_self_update: now,
            timer: self.policy.default_timer_secs,
        })
        .map_err(CoreError::store)?;
        if members.is_empty() {
            // A group of one: commit an empty self-update so the server still
            // sees a creating commit for epoch 0.
            let (commit, _, group_info) = mls
                .self_update(provider, &self.signer, LeafNodeParameters::default())
                .map_err(CoreError::mls("self update"))?
                .into_contents();
            return self.bundle(
                provider,
                &mls,
                group,
                Some(create),
                commit,
                None,
                group_info,
            );
        }
        self.add_to(provider, &mut mls, group, Some(create), members)
    }

    /// Adds devices to an existing conversation.
    pub fn add_members<S, A>(
        &self,
        provider: &Provider<S>,
        _app: &A,
        group: &GroupId,
        members: Vec<VerifiedKeyPackage>,
    ) -> Result<PendingCommit, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let mut mls = Self::load_group(provider, group)?;
        if !mls.is_active() {
            return Err(CoreError::NotMember(*group));
        }
        if group.kind() == GroupKind::Direct {
            let allowed = Self::members(&mls)
                .into_iter()
                .map(|(_, c)| c.user)
                .collect::<Vec<_>>();
            if members.iter().any(|m| !allowed.contains(&m.user)) {
                return Err(CoreError::Invalid(
                    "a 1:1 conversation cannot get other people; create a group",
                ));
            }
        }
        if members.is_empty() {
            return Err(CoreError::Invalid("nothing to add"));
        }
        let present: Vec<Username> = Self::members(&mls)
            .into_iter()
            .map(|(_, c)| c.user)
            .collect();
        if members.iter().any(|m| !present.contains(&m.user))
            && group_settings(&mls).is_some_and(|s| !s.allows(&self.user, Action::AddRemove))
        {
            return Err(CoreError::NotAllowed(
                "only the group's admins may add people to it",
            ));
        }
        if mls.members().count() + members.len() > MAX_GROUP_DEVICES {
            return Err(CoreError::Invalid("too many devices for one group"));
        }
        self.add_to(provider, &mut mls, *group, None, members)
    }

    fn add_to<S>(
        &self,
        provider: &Provider<S>,
        mls: &mut MlsGroup,
        group: GroupId,
        create: Option<Create>,
        members: Vec<VerifiedKeyPackage>,
    ) -> Result<PendingCommit, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
    {
        let kps: Vec<KeyPackage> = members.into_iter().map(|m| m.key_package).collect();
        let (commit, welcome, group_info) = mls
            .add_members(provider, &self.signer, &kps)
            .map_err(CoreError::mls("add members"))?;
        self.bundle(
            provider,
            mls,
            group,
            create,
            commit,
            Some(welcome),
            group_info,
        )
    }

    /// Packs our staged commit for the server. Added and removed devices are
    /// read from the commit OpenMLS actually built (which also sweeps in any
    /// queued proposals), never from what the caller asked for, so the
    /// server's routing always matches the MLS group.
    #[allow(clippy::too_many_arguments)]
    fn bundle<S>(
        &self,
        provider: &Provider<S>,
        mls: &MlsGroup,
        group: GroupId,
        create: Option<Create>,
        commit: MlsMessageOut,
        welcome: Option<MlsMessageOut>,
        group_info: Option<openmls::messages::group_info::GroupInfo>,
    ) -> Result<PendingCommit, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
    {
        let staged = mls
            .pending_commit()
            .ok_or(CoreError::Invalid("no staged commit to send"))?;
        let mut added = vec![];
        let mut added_users = vec![];
        for add in staged.add_proposals() {
            let cred =
                device_credential_of(add.add_proposal().key_package().leaf_node().credential())?;
            if !added.contains(&cred.device) {
                added.push(cred.device);
            }
            if !added_users.contains(&cred.user) {
                added_users.push(cred.user);
            }
        }
        let members = Self::members(mls);
        // A user who was in already only gained a device (a linked one).
        added_users.retain(|u| !members.iter().any(|(_, c)| &c.user == u));
        let mut removed = vec![];
        let mut removed_users = vec![];
        for r in staged.remove_proposals() {
            let idx = r.remove_proposal().removed();
            if let Some((_, c)) = members.iter().find(|(i, _)| *i == idx) {
                if !removed.contains(&c.device) {
                    removed.push(c.device);
                }
                if !removed_users.contains(&c.user) {
                    removed_users.push(c.user.clone());
                }
            }
        }
        // Users who keep another device in the group have not left it.
        removed_users.retain(|u| {
            members
                .iter()
                .any(|(_, c)| &c.user == u && !removed.contains(&c.device))
                .not()
        });
        let welcome = if added.is_empty() { None } else { welcome };
        let group_info = match group_info {
            Some(gi) => serialize(&MlsMessageOut::from(gi), "group info")?,
            None => serialize(
                &mls.export_group_info(provider.crypto(), &self.signer, true)
                    .map_err(CoreError::mls("group info export"))?,
                "group info",
            )?,
        };
        Ok(PendingCommit {
            bundle: CommitBundle {
                request_id: 0,
                key: random_key(),
                group,
                epoch: mls.epoch().as_u64(),
                create,
                commit: serialize(&commit, "commit")?,
                welcome: welcome.map(|w| serialize(&w, "welcome")).transpose()?,
                group_info,
                added,
                removed,
            },
            added: added_users,
            removed: removed_users,
        })
    }

    /// Removes every device of `users` from a conversation.
    pub fn remove_users<S, A>(
        &self,
        provider: &Provider<S>,
        _app: &A,
        group: &GroupId,
        users: &[Username],
    ) -> Result<PendingCommit, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let mut mls = Self::load_group(provider, group)?;
        if !mls.is_active() {
            return Err(CoreError::NotMember(*group));
        }
        let targets: Vec<(LeafNodeIndex, DeviceCredential)> = Self::members(&mls)
            .into_iter()
            .filter(|(_, c)| users.contains(&c.user))
            .collect();
        if targets.is_empty() {
            return Err(CoreError::Invalid("none of these users is a member"));
        }
        if targets.iter().any(|(_, c)| c.device == self.device) {
            return Err(CoreError::Invalid("to remove yourself, leave the group"));
        }
        if targets.iter().any(|(_, c)| c.user != self.user)
            && group_settings(&mls).is_some_and(|s| !s.allows(&self.user, Action::AddRemove))
        {
            return Err(CoreError::NotAllowed(
                "only the group's admins may remove people from it",
            ));
        }
        let leaves: Vec<LeafNodeIndex> = targets.iter().map(|(i, _)| *i).collect();
        let (commit, welcome, group_info) = mls
            .remove_members(provider, &self.signer, &leaves)
            .map_err(CoreError::mls("remove members"))?;
        self.bundle(provider, &mls, *group, None, commit, welcome, group_info)
    }

    /// Removes the given devices (e.g. one of our own, just revoked) from a
    /// conversation. `Ok(None)` if none of them is in it.
    pub fn remove_devices<S, A>(
        &self,
        provider: &Provider<S>,
        _app: &A,
        group: &GroupId,
        devices: &[DeviceId],
    ) -> Result<Option<PendingCommit>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let mut mls = Self::load_group(provider, group)?;
        if !mls.is_active() {
            return Err(CoreError::NotMember(*group));
        }
        if devices.contains(&self.device) {
            return Err(CoreError::Invalid("to remove this device, leave the group"));
        }
        let leaves: Vec<LeafNodeIndex> = Self::members(&mls)
            .into_iter()
            .filter(|(_, c)| devices.contains(&c.device))
            .map(|(i, _)| i)
            .collect();
        if leaves.is_empty() {
            return Ok(None);
        }
        let (commit, welcome, group_info) = mls
            .remove_members(provider, &self.signer, &leaves)
            .map_err(CoreError::mls("remove devices"))?;
        self.bundle(provider, &mls, *group, None, commit, welcome, group_info)
            .map(Some)
    }

    /// Whether other members queued proposals (e.g. a leave) that some member
    /// must commit.
    pub fn has_pending_proposals<S>(
        &self,
        provider: &Provider<S>,
        group: &GroupId,
    ) -> Result<bool, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
    {
        let mls = Self::load_group(provider, group)?;
        Ok(mls.is_active() && mls.pending_proposals().next().is_some())
    }

    /// Commits the proposals other members queued (e.g. someone leaving).
    pub fn commit_pending<S, A>(
        &self,
        provider: &Provider<S>,
        _app: &A,
        group: &GroupId,
    ) -> Result<Option<PendingCommit>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let mut mls = Self::load_group(provider, group)?;
        if !mls.is_active() || mls.pending_proposals().next().is_none() {
            return Ok(None);
        }
        let (commit, welcome, group_info) = mls
            .commit_to_pending_proposals(provider, &self.signer)
            .map_err(CoreError::mls("commit pending proposals"))?;
        self.bundle(provider, &mls, *group, None, commit, welcome, group_info)
            .map(Some)
    }

    /// Refreshes this device's leaf keys (post-compromise security heals only
    /// through commits).
    pub fn self_update<S, A>(
        &self,
        provider: &Provider<S>,
        _app: &A,
        group: &GroupId,
    ) -> Result<PendingCommit, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let mut mls = Self::load_group(provider, group)?;
        if !mls.is_active() {
            return Err(CoreError::NotMember(*group));
        }
        // A self-update adds nobody, so it never has a Welcome.
        let (commit, _welcome, group_info) = mls
            .self_update(provider, &self.signer, LeafNodeParameters::default())
            .map_err(CoreError::mls("self update"))?
            .into_contents();
        self.bundle(provider, &mls, *group, None, commit, None, group_info)
    }

    /// Proposes to remove this device from a conversation. Another member's
    /// client commits it; the conversation is marked left here at once.
    pub fn leave<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        group: &GroupId,
    ) -> Result<Vec<u8>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let mut mls = Self::load_group(provider, group)?;
        let proposal = mls
            .leave_group(provider, &self.signer)
            .map_err(CoreError::mls("leave"))?;
        if let Some(mut c) = app.conversation(group).map_err(CoreError::store)? {
            c.state = ConversationState::Left;
            app.put_conversation(&c).map_err(CoreError::store)?;
        }
        serialize(&proposal, "leave proposal")
    }

    /// Forgets this device's MLS state of a conversation whose group it can
    /// no longer be in (its leaf was removed while it was revoked); the
    /// history stays, marked left. A member can add the account's new
    /// device back, which then joins by a fresh Welcome.
    pub fn forget_group<S, A>(
        provider: &Provider<S>,
        app: &A,
        group: &GroupId,
    ) -> Result<(), CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        if let Ok(mut mls) = Self::load_group(provider, group) {
            mls.delete(provider.storage()).map_err(CoreError::store)?;
        }
        if let Some(mut c) = app.conversation(group).map_err(CoreError::store)? {
            c.state = ConversationState::Left;
            app.put_conversation(&c).map_err(CoreError::store)?;
        }
        Ok(())
    }

    /// The server accepted our commit: merge it.
    pub fn commit_accepted<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        pending: &PendingCommit,
        now: Millis,
    ) -> Result<Vec<Event>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let group = pending.bundle.group;
        let mut mls = Self::load_group(provider, &group)?;
        mls.merge_pending_commit(provider)
            .map_err(CoreError::mls("merge own commit"))?;
        if let Some(mut c) = app.conversation(&group).map_err(CoreError::store)? {
            if c.state == ConversationState::Pending {
                c.state = ConversationState::Active;
            }
            if pending.added.is_empty() && pending.removed.is_empty() {
                c.last_self_update = now;
            }
            app.put_conversation(&c).map_err(CoreError::store)?;
        }
        if pending.added.is_empty() && pending.removed.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![Event::MembersChanged {
            group,
            added: pending.added.clone(),
            removed: pending.removed.clone(),
        }])
    }

    /// The server refused our commit: discard it. A group that was being
    /// created is deleted again (someone else created it first; their Welcome
    /// is on its way).
    pub fn commit_rejected<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        group: &GroupId,
    ) -> Result<(), CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let mut mls = match Self::load_group(provider, group) {
            Ok(g) => g,
            Err(CoreError::UnknownGroup(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let pending_creation = app
            .conversation(group)
            .map_err(CoreError::store)?
            .is_some_and(|c| c.state == ConversationState::Pending);
        if pending_creation {
            mls.delete(provider.storage()).map_err(CoreError::store)?;
            app.delete_conversation(group).map_err(CoreError::store)?;
        } else {
            mls.clear_pending_commit(provider.storage())
                .map_err(CoreError::store)?;
        }
        Ok(())
    }

    /// The current epoch of a conversation, if this device is in it.
    pub fn epoch<S>(
        &self,
        provider: &Provider<S>,
        group: &GroupId,
    ) -> Result<Option<u64>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
    {
        match Self::load_group(provider, group) {
            Ok(g) if g.is_active() => Ok(Some(g.epoch().as_u64())),
            Ok(_) | Err(CoreError::UnknownGroup(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The members of a conversation as (user, device).
    pub fn member_devices<S>(
        &self,
        provider: &Provider<S>,
        group: &GroupId,
    ) -> Result<Vec<(Username, DeviceId)>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
    {
        let mls = Self::load_group(provider, group)?;
        Ok(Self::members(&mls)
            .into_iter()
            .map(|(_, c)| (c.user, c.device))
            .collect())
    }

    /// Encrypts an application message. It lives as long as `expire_override`
    /// says (seconds), else as long as the conversation's timer says, capped
    /// by the organisation's maximum. Once the server accepted it, call
    /// [`Engine::record_sent`] to put it in the history.
    pub fn send<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        group: &GroupId,
        body: Body,
        now: Millis,
        expire_override: Option<u32>,
    ) -> Result<Outgoing, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        match &body {
            Body::Text(t) if t.len() > MAX_TEXT_LEN => return Err(CoreError::TextTooLong(t.len())),
            Body::File(a) if a.caption.len() > MAX_TEXT_LEN => {
                return Err(CoreError::TextTooLong(a.caption.len()));
            }
            Body::File(a)
                if a.name.len() > MAX_FILE_NAME_LEN || a.media_type.len() > MAX_MEDIA_TYPE_LEN =>
            {
                return Err(CoreError::Invalid("file name or media type too long"));
            }
            _ => {}
        }
        let timer = app
            .conversation(group)
            .map_err(CoreError::store)?
            .ok_or(CoreError::UnknownGroup(*group))?
            .timer;
        let expires_in = crate::lifetime::message_lifetime(timer, expire_override, &self.policy)?;
        self.send_with_lifetime(provider, app, group, body, now, expires_in)
    }

    /// [`Engine::send`] with the lifetime already decided.
    fn send_with_lifetime<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        group: &GroupId,
        body: Body,
        now: Millis,
        expires_in: Option<u32>,
    ) -> Result<Outgoing, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let message = AppMessage {
            id: new_message_id(),
            sent_at: now,
            expires_in,
            body,
        };
        let mls = self.encrypt(provider, app, group, &message)?;
        let recalls = match &message.body {
            Body::Recall(target) => Some(*target),
            _ => None,
        };
        let stored = StoredMessage {
            id: message.id,
            group: *group,
            sender: self.user.clone(),
            sender_device: self.device,
            sent_at: now,
            received_at: now,
            body: message.body,
            outgoing: true,
            expires_in,
            expires_at: crate::lifetime::send_expiry(expires_in, now),
            edits: 0,
            recalled: false,
        };
        Ok(Outgoing {
            stored,
            mls,
            expires_in,
            recalls,
        })
    }

    /// Encrypts an already sent message again, in the group's current epoch:
    /// for a send the server refused because a commit got there first (the
    /// members that commit added could not have read the old epoch's copy).
    /// Same id, so recipients and the history see one message.
    pub fn encrypt_again<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        stored: &StoredMessage,
    ) -> Result<Vec<u8>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let message = AppMessage {
            id: stored.id,
            sent_at: stored.sent_at,
            expires_in: stored.expires_in,
            body: stored.body.clone(),
        };
        self.encrypt(provider, app, &stored.group, &message)
    }

    /// Encrypts for the current members, unless one of them is a contact whose
    /// identity key changed after the user verified it.
    fn encrypt<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        group: &GroupId,
        message: &AppMessage,
    ) -> Result<Vec<u8>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let mut mls = Self::load_group(provider, group)?;
        if !mls.is_active() {
            return Err(CoreError::NotMember(*group));
        }
        if let Some(settings) = group_settings(&mls) {
            if !settings.allows(&self.user, Action::Post) {
                return Err(CoreError::NotAllowed(
                    if settings.role_of(&self.user) == GroupRole::ReadOnly {
                        "you are a read-only member of this group"
                    } else {
                        "only the group's admins may post in this announcement group"
                    },
                ));
            }
            if matches!(message.body, Body::GroupName(_))
                && !settings.allows(&self.user, Action::Rename)
            {
                return Err(CoreError::NotAllowed(
                    "only the group's admins may rename this group",
                ));
            }
        }
        let broken = app.broken_pins().map_err(CoreError::store)?;
        if !broken.is_empty()
            && let Some((_, c)) = Self::members(&mls)
                .into_iter()
                .find(|(_, c)| broken.contains(&c.user))
        {
            return Err(CoreError::VerificationRequired(c.user));
        }
        let out = mls
            .create_message(provider, &self.signer, &message.encode())
            .map_err(CoreError::mls("encrypt"))?;
        serialize(&out, "message")
    }

    /// Applies one delivery from the server. Errors are reserved for local
    /// failures (storage); anything wrong with the delivery itself becomes
    /// [`Event::Dropped`] or [`Event::IdentityChanged`] so the driver can
    /// acknowledge it and move on.
    pub fn receive<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        delivery: &Delivery,
        now: Millis,
    ) -> Result<Vec<Event>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let group = delivery.group;
        let result = match delivery.kind {
            DeliveryKind::Welcome => self.receive_welcome(provider, app, delivery, now),
            _ => self.receive_protocol(provider, app, delivery, now),
        };
        match result {
            Ok(events) => Ok(events),
            Err(CoreError::Store(e)) => Err(CoreError::Store(e)),
            Err(e) => Ok(vec![Event::Dropped {
                group,
                reason: e.to_string(),
            }]),
        }
    }

    fn receive_welcome<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        delivery: &Delivery,
        now: Millis,
    ) -> Result<Vec<Event>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let group = delivery.group;
        // Our own creation of this group may still be pending: it lost the race,
        // and this Welcome is the winner's. Then the Welcome replaces it.
        let pending_creation = app
            .conversation(&group)
            .map_err(CoreError::store)?
            .is_some_and(|c| c.state == ConversationState::Pending);
        if !pending_creation && Self::load_group(provider, &group).is_ok_and(|g| g.is_active()) {
            return Err(CoreError::Invalid(
                "welcome for a group this device is already in",
            ));
        }
        let message = MlsMessageIn::tls_deserialize_exact(delivery.payload.as_slice())
            .map_err(|_| CoreError::Malformed("welcome"))?;
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            return Err(CoreError::Malformed("welcome"));
        };
        // A pending creation that lost the race, or an old membership we were
        // removed from, is replaced by the group this Welcome describes.
        if let Ok(mut old) = Self::load_group(provider, &group) {
            old.delete(provider.storage()).map_err(CoreError::store)?;
        }
        let staged = StagedWelcome::new_from_welcome(provider, &join_config(), welcome, None)
            .map_err(CoreError::mls("welcome"))?;
        if staged.group_context().group_id().as_slice() != group.as_bytes() {
            return Err(CoreError::Malformed("welcome for another group"));
        }
        if staged.group_context().ciphersuite() != CIPHERSUITE {
            return Err(CoreError::Malformed("welcome ciphersuite"));
        }
        if !external_senders_ok(
            staged.group_context().extensions(),
            self.delivery_key.as_deref(),
        ) {
            return Err(CoreError::Invalid(
                "the group does not list this server as its only external sender",
            ));
        }
        let mut users = vec![];
        let mut events = vec![];
        for member in staged.members() {
            let cred = self.check_leaf(
                app,
                &member.credential,
                &member.signature_key,
                group,
                &mut events,
            )?;
            if !users.contains(&cred.user) {
                users.push(cred.user);
            }
        }
        let sender = staged
            .welcome_sender()
            .map_err(CoreError::mls("welcome sender"))
            .and_then(|leaf| device_credential_of(leaf.credential()))?
            .user;
        let peer = match group.kind() {
            GroupKind::Direct => {
                let peer = users
                    .iter()
                    .find(|u| **u != self.user)
                    .cloned()
                    .unwrap_or_else(|| self.user.clone());
                if GroupId::direct(&self.user, &peer) != group
                    || users.iter().any(|u| *u != self.user && *u != peer)
                {
                    return Err(CoreError::Invalid(
                        "1:1 conversation with members it cannot have",
                    ));
                }
                Some(peer)
            }
            GroupKind::Group => None,
        };
        staged
            .into_group(provider)
            .map_err(CoreError::mls("join"))?;
        let old = app.conversation(&group).map_err(CoreError::store)?;
        let name = old.as_ref().and_then(|c| c.name.clone());
        app.put_conversation(&Conversation {
            group,
            kind: group.kind(),
            name,
            peer,
            state: ConversationState::Active,
            created_at: now,
            // Refresh our leaf soon: a fresh joiner's tree is sparse.
            last_self_update: 0,
            // Set by the timer message that follows in the group's log.
            timer: old.as_ref().and_then(|c| c.timer),
        })
        .map_err(CoreError::store)?;
        events.insert(0, Event::Joined { group, by: sender });
        Ok(events)
    }

    fn receive_protocol<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        delivery: &Delivery,
        now: Millis,
    ) -> Result<Vec<Event>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let group = delivery.group;
        let message = MlsMessageIn::tls_deserialize_exact(delivery.payload.as_slice())
            .map_err(|_| CoreError::Malformed("message"))?;
        let protocol = message
            .try_into_protocol_message()
            .map_err(|_| CoreError::Malformed("message"))?;
        if protocol.group_id().as_slice() != group.as_bytes() {
            return Err(CoreError::Malformed("message for another group"));
        }
        let mut mls = Self::load_group(provider, &group)?;
        if protocol.epoch() < mls.epoch() && protocol.content_type() == ContentType::Commit {
            return Err(CoreError::Invalid(
                "commit of an epoch already left (duplicate)",
            ));
        }
        let members_before = Self::members(&mls);
        let processed = mls
            .process_message(provider, protocol)
            .map_err(CoreError::mls("process message"))?;
        if let Sender::External(_) = processed.sender() {
            // openmls checked the signature against the group's external
            // senders, which are the server alone (checked at join and on
            // every settings change). From it only removals are accepted.
            return self.queue_server_removal(provider, &mut mls, group, processed);
        }
        let sender = device_credential_of(processed.credential())?;
        if sender.user != delivery.sender {
            return Err(CoreError::Invalid(
                "server-claimed sender differs from the MLS sender",
            ));
        }
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app_msg) => {
                let decoded = AppMessage::decode(&app_msg.into_bytes())
                    .map_err(|_| CoreError::Malformed("message content"))?;
                self.apply_application(app, &mls, delivery, sender, decoded, now)
            }
            ProcessedMessageContent::ProposalMessage(proposal) => {
                // Only self-removals (leaving) are accepted from members; other
                // proposals would let one member reshape the group silently.
                let is_self_remove = matches!(
                    (proposal.proposal(), proposal.sender()),
                    (Proposal::Remove(r), Sender::Member(s)) if r.removed() == *s
                );
                if !is_self_remove {
                    return Err(CoreError::Invalid("only leave proposals are accepted"));
                }
                let already_queued = mls.pending_proposals().any(|p| {
                    matches!((p.proposal(), proposal.proposal()), (Proposal::Remove(a), Proposal::Remove(b)) if a.removed() == b.removed())
                });
                if already_queued {
                    return Err(CoreError::Invalid("duplicate proposal"));
                }
                mls.store_pending_proposal(provider.storage(), *proposal)
                    .map_err(CoreError::store)?;
                Ok(vec![Event::ProposalQueued { group }])
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let mut added = vec![];
                let mut events = vec![];
                for add in staged.add_proposals() {
                    let leaf = add.add_proposal().key_package().leaf_node();
                    let cred = self.check_leaf(
                        app,
                        leaf.credential(),
                        leaf.signature_key().as_slice(),
                        group,
                        &mut events,
                    )?;
                    // A 1:1 only ever holds devices of its two users (a
                    // newly linked device of either is fine).
                    if group.kind() == GroupKind::Direct
                        && !members_before.iter().any(|(_, c)| c.user == cred.user)
                    {
                        return Err(CoreError::Invalid(
                            "commit adds a third person to a 1:1 conversation",
                        ));
                    }
                    if !added.contains(&cred.user) {
                        added.push(cred.user);
                    }
                }
                for update in staged.update_proposals() {
                    let leaf = update.update_proposal().leaf_node();
                    self.check_leaf(
                        app,
                        leaf.credential(),
                        leaf.signature_key().as_slice(),
                        group,
                        &mut events,
                    )?;
                }
                if let Some(leaf) = staged.update_path_leaf_node() {
                    let cred = self.check_leaf(
                        app,
                        leaf.credential(),
                        leaf.signature_key().as_slice(),
                        group,
                        &mut events,
                    )?;
                    if cred.device != sender.device || cred.user != sender.user {
                        return Err(CoreError::Invalid(
                            "commit changes the committer's identity",
                        ));
                    }
                }
                let mut removed = vec![];
                for r in staged.remove_proposals() {
                    let idx = r.remove_proposal().removed();
                    if let Some((_, c)) = members_before.iter().find(|(i, _)| *i == idx)
                        && !removed.contains(&c.user)
                    {
                        removed.push(c.user.clone());
                    }
                }
                let settings_changed =
                    self.check_commit_rights(&group, &mls, &sender, &staged, &members_before)?;
                let self_removed = staged.self_removed();
                mls.merge_staged_commit(provider, *staged)
                    .map_err(CoreError::mls("merge commit"))?;
                if self_removed {
                    mls.delete(provider.storage()).map_err(CoreError::store)?;
                    if let Some(mut c) = app.conversation(&group).map_err(CoreError::store)? {
                        c.state = ConversationState::Left;
                        app.put_conversation(&c).map_err(CoreError::store)?;
                    }
                    events.push(Event::Removed { group });
                    return Ok(events);
                }
                // Users who still have another device in the group did not leave.
                let still: Vec<Username> = Self::members(&mls)
                    .into_iter()
                    .map(|(_, c)| c.user)
                    .collect();
                removed.retain(|u| !still.contains(u));
                added.retain(|u| !members_before.iter().any(|(_, c)| &c.user == u));
                if !added.is_empty() || !removed.is_empty() {
                    events.push(Event::MembersChanged {
                        group,
                        added,
                        removed,
                    });
                }
                if settings_changed {
                    events.push(Event::SettingsChanged {
                        group,
                        by: sender.user,
                    });
                }
                Ok(events)
            }
            ProcessedMessageContent::ExternalJoinProposalMessage(_) => {
                Err(CoreError::Invalid("external joins are not accepted"))
            }
            ProcessedMessageContent::OwnPendingCommit
            | ProcessedMessageContent::OwnPrivateMessage => {
                Err(CoreError::Invalid("echo of this device's own message"))
            }
        }
    }
}
