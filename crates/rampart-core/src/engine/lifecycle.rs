//! What happens to messages after they are sent: the conversation timer,
//! recall ("delete for everyone") and edit, on the sending side and on the
//! receiving side. The receiving side checks every rule again, since only
//! the MLS sender is trustworthy: a recall or edit is applied only if it
//! comes from the message's sender within the window, or (recall only) from
//! an admin of the group according to the group's MLS context.

use super::{Engine, Event, Outgoing};
use crate::content::{AppMessage, Body};
use crate::error::CoreError;
use crate::identity::DeviceCredential;
use crate::lifetime;
use crate::provider::Provider;
use crate::store::{AppStore, MessageId, StoredMessage};
use openmls::prelude::MlsGroup;
use openmls_traits::storage::{CURRENT_VERSION, StorageProvider};
use rampart_proto::frame::Delivery;
use rampart_proto::group::{Action, GROUP_SETTINGS_EXTENSION, GroupSettings};
use rampart_proto::limits::{MAX_EDITS, MAX_TEXT_LEN, MIN_TIMER_SECS};
use rampart_proto::{GroupId, GroupKind, Millis, Username};

/// The settings in a group's context; `None` for a 1:1 (or a group made
/// without them, which then has no admins).
pub(super) fn group_settings(mls: &MlsGroup) -> Option<GroupSettings> {
    let ext = mls.extensions().unknown(GROUP_SETTINGS_EXTENSION)?;
    GroupSettings::decode(&ext.0).ok()
}

/// Whether `user` may change the timer: anyone in a 1:1, in a group as the
/// settings say.
fn may_set_timer(group: &GroupId, mls: &MlsGroup, user: &Username) -> bool {
    match group.kind() {
        GroupKind::Direct => true,
        GroupKind::Group => group_settings(mls).is_some_and(|s| s.may_set_timer(user)),
    }
}

fn is_admin(mls: &MlsGroup, user: &Username) -> bool {
    group_settings(mls).is_some_and(|s| s.is_admin(user))
}

impl Engine {
    /// The group's settings as every member sees them (`None` for a 1:1).
    pub fn settings<S>(
        &self,
        provider: &Provider<S>,
        group: &GroupId,
    ) -> Result<Option<GroupSettings>, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
    {
        Ok(group_settings(&Self::load_group(provider, group)?))
    }

    /// Applies, on this device, what an application message this device sent
    /// does, once the server accepted it: a text or timer line joins the
    /// history, a timer takes effect, a recall erases, an edit replaces.
    /// (Only after acceptance, so a refused request changes nothing here.)
    pub fn record_sent<A: AppStore>(&self, app: &A, out: &Outgoing) -> Result<(), CoreError> {
        let group = &out.stored.group;
        match &out.stored.body {
            Body::Text(_) | Body::File(_) => {
                app.insert_message(&out.stored).map_err(CoreError::store)?;
            }
            Body::Timer(timer) => {
                if let Some(mut c) = app.conversation(group).map_err(CoreError::store)? {
                    c.timer = *timer;
                    app.put_conversation(&c).map_err(CoreError::store)?;
                }
                app.insert_message(&out.stored).map_err(CoreError::store)?;
            }
            Body::Recall(id) => app.recall_message(group, id).map_err(CoreError::store)?,
            Body::Edit { target, text } => app
                .edit_message(group, target, text)
                .map_err(CoreError::store)?,
            Body::GroupName(_) => {}
        }
        Ok(())
    }

    /// A message setting the conversation's disappearing-messages timer
    /// (`None`: off), shown to every member as a line; it takes effect here
    /// with [`Engine::record_sent`].
    pub fn set_timer<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        group: &GroupId,
        timer: Option<u32>,
        now: Millis,
    ) -> Result<Outgoing, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        lifetime::check_timer(timer, &self.policy)?;
        let mls = Self::load_group(provider, group)?;
        if !may_set_timer(group, &mls, &self.user) {
            return Err(CoreError::NotAllowed(
                "only the group's admins may change its timer",
            ));
        }
        // The change must reach members who were away longer than either
        // timer, or they would keep sending under the old one: the line is
        // kept as long as the organisation allows, not by a timer.
        let expires_in = self.policy.max_retention_secs;
        self.send_with_lifetime(provider, app, group, Body::Timer(timer), now, expires_in)
    }

    /// A message of this user that may still be recalled or edited, or one
    /// an admin may recall.
    fn own_text<A: AppStore>(
        &self,
        app: &A,
        group: &GroupId,
        id: &MessageId,
    ) -> Result<StoredMessage, CoreError> {
        let target = app
            .message(group, id)
            .map_err(CoreError::store)?
            .filter(|m| !m.recalled)
            .ok_or(CoreError::UnknownMessage(*id))?;
        if !matches!(target.body, Body::Text(_) | Body::File(_)) {
            return Err(CoreError::NotAllowed(
                "only text messages and files can be recalled or edited",
            ));
        }
        Ok(target)
    }

    /// A message deleting `id` for everyone: allowed to its sender within the
    /// recall window and to a group admin at any time. Erased here by
    /// [`Engine::record_sent`].
    pub fn recall<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        group: &GroupId,
        id: &MessageId,
        now: Millis,
    ) -> Result<Outgoing, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        let target = self.own_text(app, group, id)?;
        let mls = Self::load_group(provider, group)?;
        let admin = is_admin(&mls, &self.user);
        if target.sender != self.user && !admin {
            return Err(CoreError::NotAllowed(
                "you can recall only your own messages (a group admin can recall any)",
            ));
        }
        if !admin && !lifetime::within_window(target.sent_at, now, &self.policy) {
            return Err(CoreError::WindowClosed {
                window_secs: self.policy.recall_window_secs,
            });
        }
        let expires_in = self.follow_up_lifetime(&target, now);
        self.send_with_lifetime(provider, app, group, Body::Recall(*id), now, expires_in)
    }

    /// A message replacing the text of one of this user's messages, within
    /// the window and at most [`MAX_EDITS`] times. Replaced here by
    /// [`Engine::record_sent`].
    pub fn edit<S, A>(
        &self,
        provider: &Provider<S>,
        app: &A,
        group: &GroupId,
        id: &MessageId,
        text: &str,
        now: Millis,
    ) -> Result<Outgoing, CoreError>
    where
        S: StorageProvider<CURRENT_VERSION>,
        S::Error: Send + Sync + 'static,
        A: AppStore,
    {
        if text.len() > MAX_TEXT_LEN {
            return Err(CoreError::TextTooLong(text.len()));
        }
        let target = self.own_text(app, group, id)?;
        if target.sender != self.user {
            return Err(CoreError::NotAllowed("you can edit only your own messages"));
        }
        if !matches!(target.body, Body::Text(_)) {
            return Err(CoreError::NotAllowed(
                "only text can be edited (recall the file and send it again)",
            ));
        }
        if !lifetime::within_window(target.sent_at, now, &self.policy) {
            return Err(CoreError::WindowClosed {
                window_secs: self.policy.recall_window_secs,
            });
        }
        if target.edits >= MAX_EDITS {
            return Err(CoreError::TooManyEdits);
        }
        let expires_in = self.follow_up_lifetime(&target, now);
        let body = Body::Edit {
            target: *id,
            text: text.to_owned(),
        };
        self.send_with_lifetime(provider, app, group, body, now, expires_in)
    }

    /// How long a recall or edit of `target` lives: as long as the target
    /// (a member who still holds it must get it, however long they were
    /// away), and no longer, so an edit's new text does not outlive it.
    fn follow_up_lifetime(&self, target: &StoredMessage, now: Millis) -> Option<u32> {
        match target.expires_at {
            Some(at) => {
                let left = at.saturating_sub(now).div_ceil(1000);
                Some(u32::try_from(left).unwrap_or(u32::MAX).max(MIN_TIMER_SECS))
            }
            None => self.policy.max_retention_secs,
        }
    }

    /// Applies a decrypted application message from `sender`.
    pub(super) fn apply_application<A: AppStore>(
        &self,
        app: &A,
        mls: &MlsGroup,
        delivery: &Delivery,
        sender: DeviceCredential,
        message: AppMessage,
        now: Millis,
    ) -> Result<Vec<Event>, CoreError> {
        let group = delivery.group;
        let dropped = |reason: &str| {
            Ok(vec![Event::Dropped {
                group,
                reason: reason.into(),
            }])
        };
        let expires_at = lifetime::receive_expiry(message.expires_in, delivery.server_time, now);
        if expires_at.is_some_and(|at| at <= now) {
            return dropped("expired before it arrived");
        }
        let stored = |body: Body| StoredMessage {
            id: message.id,
            group,
            sender: sender.user.clone(),
            sender_device: sender.device,
            sent_at: message.sent_at,
            received_at: now,
            body,
            // Sent by this account (from another of its devices).
            outgoing: sender.user == self.user,
            expires_in: message.expires_in,
            expires_at,
            edits: 0,
            recalled: false,
        };
        // The group's rules, as its context says: what the server should
        // have refused already is dropped here too.
        if let Some(settings) = group_settings(mls) {
            if !settings.allows(&sender.user, Action::Post) {
                return dropped("a message from a member who may not post in this group");
            }
            if matches!(message.body, Body::GroupName(_))
                && !settings.allows(&sender.user, Action::Rename)
            {
                return dropped("a rename by a member the group does not allow");
            }
        }
        match message.body {
            Body::GroupName(name) => {
                let Some(mut c) = app.conversation(&group).map_err(CoreError::store)? else {
                    return Ok(vec![]);
                };
                if c.name.as_deref() == Some(name.as_str()) {
                    return Ok(vec![]);
                }
                c.name = Some(name.clone());
                app.put_conversation(&c).map_err(CoreError::store)?;
                Ok(vec![Event::Renamed { group, name }])
            }
            body @ (Body::Text(_) | Body::File(_)) => {
                let stored = stored(body);
                if app.insert_message(&stored).map_err(CoreError::store)? {
                    Ok(vec![Event::Message(stored)])
                } else {
                    dropped("duplicate message")
                }
            }
            Body::Timer(timer) => {
                if !may_set_timer(&group, mls, &sender.user) {
                    return dropped("timer change by a member the group does not allow");
                }
                if timer.is_some_and(|t| t < MIN_TIMER_SECS) {
                    return dropped("timer shorter than the minimum");
                }
                let Some(mut c) = app.conversation(&group).map_err(CoreError::store)? else {
                    return Ok(vec![]);
                };
                if !app
                    .insert_message(&stored(Body::Timer(timer)))
                    .map_err(CoreError::store)?
                {
                    return dropped("duplicate message");
                }
                c.timer = timer;
                app.put_conversation(&c).map_err(CoreError::store)?;
                Ok(vec![Event::TimerChanged {
                    group,
                    by: sender.user,
                    timer,
                }])
            }
            Body::Recall(id) => {
                let target = app.message(&group, &id).map_err(CoreError::store)?;
                let Some(target) = target else {
                    // Never seen (the server dropped the undelivered copy):
                    // keep a tombstone so a late copy is never shown.
                    let mut tombstone = stored(Body::Text(String::new()));
                    tombstone.id = id;
                    tombstone.recalled = true;
                    app.insert_message(&tombstone).map_err(CoreError::store)?;
                    return Ok(vec![Event::Recalled {
                        group,
                        id,
                        by: sender.user,
                    }]);
                };
                if target.recalled {
                    return dropped("already recalled");
                }
                let by_sender = target.sender == sender.user
                    && matches!(target.body, Body::Text(_) | Body::File(_))
                    && lifetime::within_window(target.sent_at, message.sent_at, &self.policy);
                if !by_sender && !is_admin(mls, &sender.user) {
                    return dropped("recall by someone who may not recall that message");
                }
                app.recall_message(&group, &id).map_err(CoreError::store)?;
                Ok(vec![Event::Recalled {
                    group,
                    id,
                    by: sender.user,
                }])
            }
            Body::Edit { target: id, text } => {
                let Some(target) = app.message(&group, &id).map_err(CoreError::store)? else {
                    return dropped("edit of an unknown message");
                };
                if target.recalled
                    || target.sender != sender.user
                    || !matches!(target.body, Body::Text(_))
                    || target.edits >= MAX_EDITS
                    || !lifetime::within_window(target.sent_at, message.sent_at, &self.policy)
                {
                    return dropped("edit that is not allowed");
                }
                app.edit_message(&group, &id, &text)
                    .map_err(CoreError::store)?;
                Ok(vec![Event::Edited {
                    group,
                    id,
                    by: sender.user,
                }])
            }
        }
    }
}
