//! Who may do what in a group, checked on every device: the roles and
//! rules of [`GroupSettings`] in the group context (which only an admin's
//! commit can change), and the server's standing as the group's external
//! sender, from which only removals are accepted.
//!
//! The server enforces the same rules before storing anything; these checks
//! are what makes them hold against a server or client that does not.

use super::{
    CoreError, DeviceCredential, Engine, Event, PendingCommit, device_credential_of,
    external_senders_ok, group_extensions, group_settings,
};

use crate::provider::Provider;
use crate::store::AppStore;
use openmls::prelude::*;
use openmls_traits::storage::{CURRENT_VERSION, StorageProvider};
use rampart_proto::group::{Action, GROUP_SETTINGS_EXTENSION, GroupSettings};
use rampart_proto::{GroupId, GroupKind};

impl Engine {
    /// Whether the committer of `staged` had the right to each change it
    /// makes, by the settings of the epoch it was made in:
    ///
    /// - adding a user not yet in the group, or removing another user's
    ///   device, needs `AddRemove` (committing a member's own leave or a
    ///   removal the server proposed is open to every member);
    /// - changing the group context needs `ChangeSettings`, must keep the
    ///   settings readable with at least one admin, and must keep the
    ///   server as the only external sender.
    ///
    /// Returns whether the settings changed.
    pub(super) fn check_commit_rights(
        &self,
        group: &GroupId,
        mls: &MlsGroup,
        committer: &DeviceCredential,
        staged: &StagedCommit,
        members_before: &[(LeafNodeIndex, DeviceCredential)],
    ) -> Result<bool, CoreError> {
        let new_context = staged.queued_proposals().find_map(|p| match p.proposal() {
            Proposal::GroupContextExtensions(e) => Some(e.extensions()),
            _ => None,
        });
        if group.kind() == GroupKind::Direct {
            return match new_context {
                Some(_) => Err(CoreError::Invalid(
                    "a 1:1 conversation has no settings to change",
                )),
                None => Ok(false),
            };
        }
        let Some(before) = group_settings(mls) else {
            // A group made without settings has no rules to break.
            return Ok(false);
        };
        let may = |action| before.allows(&committer.user, action);
        for add in staged.add_proposals() {
            let user =
                device_credential_of(add.add_proposal().key_package().leaf_node().credential())?
                    .user;
            let new_user = !members_before.iter().any(|(_, c)| c.user == user);
            if new_user && !may(Action::AddRemove) {
                return Err(CoreError::NotAllowed(
                    "a commit adds a member without the right to",
                ));
            }
        }
        for remove in staged.remove_proposals() {
            let removed = remove.remove_proposal().removed();
            let allowed = match remove.sender() {
                Sender::External(_) => true,
                Sender::Member(proposer) if *proposer == removed => true,
                _ => {
                    members_before
                        .iter()
                        .any(|(i, c)| *i == removed && c.user == committer.user)
                        || may(Action::AddRemove)
                }
            };
            if !allowed {
                return Err(CoreError::NotAllowed(
                    "a commit removes a member without the right to",
                ));
            }
        }
        let Some(context) = new_context else {
            return Ok(false);
        };
        if !may(Action::ChangeSettings) {
            return Err(CoreError::NotAllowed(
                "a commit changes the group's settings without the right to",
            ));
        }
        let after = context
            .unknown(GROUP_SETTINGS_EXTENSION)
            .and_then(|e| GroupSettings::decode(&e.0).ok())
            .ok_or(CoreError::Invalid(
                "a commit removes or garbles the group's settings",
            ))?;
        if after.admins().next().is_none() {
            return Err(CoreError::Invalid(
                "a commit leaves the group without admins",
            ));
        }
        if !external_senders_ok(context, self.delivery_key.as_deref()) {
            return Err(CoreError::Invalid(
                "a commit changes who may propose as the server",
            ));
        }
        Ok(true)
    }

    /// A proposal from the server (the group's external sender): a removal
    /// of a revoked device, queued for the next commit; anything else is
    /// refused.
    pub(super) fn queue_server_removal<S>(
        &self,
        provider: &Provider<S>,
        mls: &mut MlsGroup,
        group: GroupId,
        processed: ProcessedMessage,
    ) -> Result<Vec<Event>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
    {
        let ProcessedMessageContent::ProposalMessage(proposal) = processed.into_content() else {
            return Err(CoreError::Invalid("the server may only propose removals"));
        };
        let Proposal::Remove(remove) = proposal.proposal() else {
            return Err(CoreError::Invalid("the server may only propose removals"));
        };
        let removed = remove.removed();
        let already_queued = mls
            .pending_proposals()
            .any(|p| matches!(p.proposal(), Proposal::Remove(r) if r.removed() == removed));
        if already_queued {
            return Err(CoreError::Invalid("duplicate proposal"));
        }
        mls.store_pending_proposal(provider.storage(), *proposal)
            .map_err(CoreError::store)?;
        Ok(vec![Event::ProposalQueued { group }])
    }

    /// Replaces a group's settings (roles and rules) by a commit; only its
    /// admins may, and an admin must remain. Members check the same when
    /// they process it.
    pub fn update_settings<S, A>(
        &self,
        provider: &Provider<S>,
        _app: &A,
        group: &GroupId,
        settings: GroupSettings,
    ) -> Result<PendingCommit, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        if group.kind() == GroupKind::Direct {
            return Err(CoreError::Invalid("a 1:1 conversation has no settings"));
        }
        let mut mls = Self::load_group(provider, group)?;
        if !mls.is_active() {
            return Err(CoreError::NotMember(*group));
        }
        let before = group_settings(&mls)
            .ok_or(CoreError::Invalid("this group was made without settings"))?;
        if !before.allows(&self.user, Action::ChangeSettings) {
            return Err(CoreError::NotAllowed(
                "only the group's admins may change its roles or settings",
            ));
        }
        if settings.admins().next().is_none() {
            return Err(CoreError::Invalid("a group must keep at least one admin"));
        }
        if settings == before {
            return Err(CoreError::Invalid("nothing to change"));
        }
        // Keep the external sender the group has (the server).
        let delivery_key = mls
            .extensions()
            .external_senders()
            .and(self.delivery_key.as_deref());
        let extensions = group_extensions(Some(&settings), delivery_key)?;
        let (commit, welcome, group_info) = mls
            .update_group_context_extensions(provider, extensions, &self.signer)
            .map_err(CoreError::mls("change settings"))?;
        self.bundle(provider, &mls, *group, None, commit, welcome, group_info)
    }
}
