//! The organisation's data-loss prevention policy on this device: cached in
//! the profile (so it holds offline), fetched again when the server says it
//! changed, applied to every text before it is encrypted, and the events it
//! causes reported to the server (rule, action, conversation, time; never
//! the content). Events wait in the profile until the server took them, so
//! none is lost to a dropped connection.

use crate::client::{Client, Target};
use crate::error::ClientError;
use crate::store::AppDb;
use rampart_core::guard::{Guard, TextCheck};
use rampart_policy::Action;
use rampart_proto::api::{DlpEvent, DlpEventBatch, OrgPolicy};
use rampart_proto::limits::MAX_DLP_EVENTS_PER_BATCH;
use rampart_proto::{ErrorCode, GroupId};

/// The last policy fetched, as the server sent it (JSON of [`OrgPolicy`]).
const META_DLP_POLICY: &str = "dlp_policy";
/// A policy fetched longer ago than this is fetched again before a send.
/// Connected clients hear of changes at once; this covers a command-line
/// run that starts from the profile's cached copy, and missed pushes.
const POLICY_MAX_AGE_MS: u64 = 5 * 60 * 1000;

/// The policy cached in a profile, or the built-in defaults. A cached
/// document this build cannot read (a newer schema) also falls back to the
/// defaults, which warn about everything that matters.
pub(crate) fn cached_guard(app: &AppDb<'_>) -> Guard {
    let cached = app
        .meta(META_DLP_POLICY)
        .ok()
        .flatten()
        .and_then(|raw| serde_json::from_slice::<OrgPolicy>(&raw).ok());
    match cached {
        Some(OrgPolicy {
            revision,
            document: Some(document),
            ..
        }) => Guard::from_document(revision, &document).unwrap_or_else(|e| {
            tracing::warn!(revision, error = %e, "cached policy unreadable; using defaults");
            Guard::default()
        }),
        _ => Guard::default(),
    }
}

impl Client {
    /// The policy in force on this device.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Fetches the organisation's policy if it changed, and keeps it. A
    /// document this client cannot read (a newer schema) is an error, and
    /// stays one for every send until Rampart is updated: nothing is sent
    /// under rules older than the organisation's.
    pub async fn refresh_dlp_policy(&mut self) -> Result<(), ClientError> {
        let fetched: OrgPolicy = self.http.get("/v1/policy/dlp").await?;
        if fetched.revision == self.guard.revision() {
            self.dlp_stale = false;
            self.dlp_fetched_at = Some(self.now());
            return Ok(());
        }
        // Until the new one is in force, every send fetches it again.
        self.dlp_stale = true;
        let guard = match &fetched.document {
            Some(document) => Guard::from_document(fetched.revision, document).map_err(|e| {
                ClientError::Protocol(format!(
                    "the organisation's policy (revision {}) cannot be read by this version of Rampart ({e}); update Rampart",
                    fetched.revision
                ))
            })?,
            None => Guard::default(),
        };
        let raw = serde_json::to_vec(&fetched)
            .map_err(|_| ClientError::Protocol("encoding the policy".into()))?;
        self.store.app().set_meta(META_DLP_POLICY, &raw)?;
        tracing::debug!(revision = fetched.revision, "organisation policy updated");
        self.guard = guard;
        self.dlp_stale = false;
        self.dlp_fetched_at = Some(self.now());
        self.alerts.push(crate::client::Alert::PolicyUpdated {
            revision: fetched.revision,
        });
        Ok(())
    }

    /// [`Client::refresh_dlp_policy`] where receiving goes on regardless: a
    /// policy this version cannot read stops sends, not reading.
    pub(crate) async fn refresh_dlp_policy_for_sync(&mut self) -> Result<(), ClientError> {
        match self.refresh_dlp_policy().await {
            Err(ClientError::Protocol(reason)) => {
                tracing::warn!(%reason, "organisation policy not applied");
                Ok(())
            }
            other => other,
        }
    }

    /// Makes sure the policy about to be applied is the organisation's
    /// current one: fetched in this session, recently, and not announced as
    /// changed since.
    pub(crate) async fn ensure_current_policy(&mut self) -> Result<(), ClientError> {
        let fresh = self
            .dlp_fetched_at
            .is_some_and(|at| self.now().saturating_sub(at) < POLICY_MAX_AGE_MS);
        if self.dlp_stale || !fresh {
            self.refresh_dlp_policy().await?;
        }
        Ok(())
    }

    /// What the policy makes of `text` (nothing is sent or reported).
    pub fn check_text(&self, text: &str) -> TextCheck {
        self.guard.check_text(text)
    }

    /// The conversation a target names, without creating it: a blocked
    /// first message must not start a conversation, yet its event names one.
    pub(crate) fn target_group(&self, target: &Target) -> Result<GroupId, ClientError> {
        match target {
            Target::User(peer) => Ok(GroupId::direct(&self.username, peer)),
            Target::Group(name) => self.resolve_group(name),
        }
    }

    /// Applies the policy to a text for `group`. Blocked: reports it and
    /// refuses. Warnings without `confirmed`: refuses, saying what was found
    /// (the caller asks the user and tries again). Otherwise returns the
    /// check, whose `text_to_send` is what may be encrypted; report it with
    /// [`Client::report_dlp`] once the message was accepted.
    pub(crate) async fn screen(
        &mut self,
        group: GroupId,
        text: &str,
        confirmed: bool,
    ) -> Result<TextCheck, ClientError> {
        let check = self.guard.check_text(text);
        self.judge(group, check, confirmed).await
    }

    /// The verdict of [`Client::screen`] on a check already made.
    pub(crate) async fn judge(
        &mut self,
        group: GroupId,
        check: TextCheck,
        confirmed: bool,
    ) -> Result<TextCheck, ClientError> {
        if let Some(message) = check.block_message() {
            self.report_dlp(group, &check).await;
            return Err(ClientError::Blocked(message));
        }
        if !confirmed && check.warnings().next().is_some() {
            return Err(ClientError::NeedsConfirmation {
                found: check.warnings().map(|h| h.describe()).collect(),
            });
        }
        Ok(check)
    }

    /// Reports that the user chose not to send a text they were warned
    /// about (the warning is an event too).
    pub async fn report_declined(&mut self, target: &Target, text: &str) {
        let check = self.guard.check_text(text);
        let Ok(group) = self.target_group(target) else {
            return;
        };
        let warned = TextCheck {
            hits: check
                .hits
                .into_iter()
                .filter(|h| h.action == Action::Warn)
                .collect(),
        };
        self.report_dlp(group, &warned).await;
    }

    /// Queues one event per rule that fired and tries to hand the queue to
    /// the server. Never fails the send it belongs to: what cannot be
    /// delivered now waits in the profile for the next attempt.
    pub(crate) async fn report_dlp(&mut self, group: GroupId, check: &TextCheck) {
        self.report_rules(group, &check.rule_actions()).await;
    }

    /// [`Client::report_dlp`] for rules and actions directly.
    pub(crate) async fn report_rules(&mut self, group: GroupId, fired: &[(String, Action)]) {
        let at = self.now();
        let events: Vec<DlpEvent> = fired
            .iter()
            .map(|(rule, action)| DlpEvent {
                rule: rule.clone(),
                action: action.as_str().to_owned(),
                group_id: group,
                at,
            })
            .filter(|e| e.validate().is_ok())
            .collect();
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.store.app().queue_dlp_events(&events) {
            tracing::warn!(error = %e, "could not queue DLP events");
            return;
        }
        if let Err(e) = self.flush_dlp_events().await {
            tracing::debug!(error = %e, "DLP events kept for later");
        }
    }

    /// Sends the queued events, oldest first, in batches.
    pub async fn flush_dlp_events(&mut self) -> Result<(), ClientError> {
        loop {
            let queued = self.store.app().dlp_outbox(MAX_DLP_EVENTS_PER_BATCH)?;
            let Some(&(last, _)) = queued.last() else {
                return Ok(());
            };
            let batch = DlpEventBatch {
                events: queued.into_iter().map(|(_, e)| e).collect(),
            };
            match self
                .http
                .post::<_, serde_json::Value>("/v1/dlp/events", &batch)
                .await
            {
                Ok(_) => {}
                // Refused as malformed: retrying cannot help.
                Err(e) if e.code() == Some(ErrorCode::BadRequest) => {
                    tracing::warn!(error = %e, "the server refused DLP events; dropping them");
                }
                Err(e) => return Err(e),
            }
            self.store.app().delete_dlp_outbox(last)?;
        }
    }
}
