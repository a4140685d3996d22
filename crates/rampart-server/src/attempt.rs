//! A credential check as the rate limiter and the security log see it: the
//! keys it counts against (the account and the client address, or only the
//! address), and what to record when it fails or starts a lock.

use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::ratelimit::Key;
use crate::security_events::{self, Event};
use crate::state::AppState;
use rampart_proto::Username;
use rampart_proto::api::SecurityEventKind;

pub struct Attempt {
    account: Option<Key>,
    ip_key: Key,
    ip: ClientIp,
    user_id: Option<i64>,
}

impl Attempt {
    /// A check of one account's credentials (by name, known or not).
    pub fn account(username: &Username, ip: ClientIp) -> Self {
        Self {
            account: Some(Key::Account(username.as_str().to_owned())),
            ip_key: Key::Ip(ip.key()),
            ip,
            user_id: None,
        }
    }

    /// A check that belongs to no account (invite codes, link poll secrets).
    pub fn address(ip: ClientIp) -> Self {
        Self {
            account: None,
            ip_key: Key::Ip(ip.key()),
            ip,
            user_id: None,
        }
    }

    /// The account exists: its events are recorded under this user.
    pub fn user(mut self, user_id: i64) -> Self {
        self.user_id = Some(user_id);
        self
    }

    fn keys(&self) -> Vec<&Key> {
        self.account.iter().chain([&self.ip_key]).collect()
    }

    /// `429 rate_limited` while the account or the address is locked. Call
    /// it before looking at any credential.
    pub fn check(&self, state: &AppState) -> Result<(), ApiError> {
        match state.limiter.locked(&self.keys(), state.clock.now_ms()) {
            Some(secs) => Err(ApiError::rate_limited(secs)),
            None => Ok(()),
        }
    }

    /// Counts a failure against every key and records `kind` (if any) and
    /// a `locked` event for each lock this failure started.
    pub async fn failed(&self, state: &AppState, kind: Option<SecurityEventKind>) {
        let started = state.limiter.failed(&self.keys(), state.clock.now_ms());
        if let Some(kind) = kind {
            security_events::record_logged(state, &Event::new(kind, self.user_id, self.ip)).await;
        }
        for key in started {
            let (user_id, locked) = match key {
                Key::Account(_) => (self.user_id, "account"),
                Key::Ip(_) => (None, "address"),
            };
            tracing::info!(
                account = matches!(key, Key::Account(_)),
                "credential failures: lock started"
            );
            let event =
                Event::new(SecurityEventKind::Locked, user_id, self.ip).detail("locked", locked);
            security_events::record_logged(state, &event).await;
        }
    }

    /// The credentials were right: the account's failures are forgotten
    /// (the address keeps its count; it may be guessing other accounts).
    pub fn succeeded(&self, state: &AppState) {
        if let Some(key) = &self.account {
            state.limiter.succeeded(key);
        }
    }
}
