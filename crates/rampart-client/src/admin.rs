//! The administration API over HTTP, with an owner's or admin's session:
//! users, invites, roles, the access policy, sessions and a content-free
//! view of groups (see [`rampart_proto::admin`] for the routes and who may
//! do what).
//!
//! The server decides every request: an [`AdminClient`] held by a member
//! gets `forbidden` refusals, each with the server's reason, in
//! [`ClientError::Server`]. Nothing here can read a message: the API has no
//! route that returns content, and the server holds none it could read.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rampart_client::ClientError> {
//! use rampart_client::Client;
//! use rampart_proto::admin::NewInvite;
//! use rampart_proto::api::Role;
//! let owner = Client::open(std::path::Path::new("/tmp/owner"), "profile passphrase")?;
//! let admin = owner.admin();
//! let invite = admin
//!     .invite(NewInvite { role: Role::Guest, expires_in_secs: Some(24 * 3600) })
//!     .await?;
//! for user in admin.users().await?.users {
//!     println!("@{} {:?}", user.username, user.role);
//! }
//! # let _ = invite;
//! # Ok(()) }
//! ```

use crate::client::Client;
use crate::error::ClientError;
use crate::transport::Http;
use rampart_proto::Username;
use rampart_proto::admin::{
    AccessPolicy, AdminGroupList, Invite, NewInvite, RoleChange, SessionList, UserList, UserSummary,
};
use rampart_proto::api::Role;
use rampart_proto::audit::{AuditCheckpoint, AuditCheckpointList, AuditKey, AuditPage, AuditQuery};

/// Longest session id accepted before asking the server (ids are short
/// prefixes of a hash; this only keeps a pasted token out of a URL).
const MAX_SESSION_ID_LEN: usize = 128;

/// The admin API of one server, called with one session. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AdminClient {
    http: Http,
}

impl Client {
    /// The admin API with this profile's session. Whether the account may
    /// use it is for the server to say, request by request.
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(self.http.clone())
    }
}

impl AdminClient {
    /// An admin client over `http`, which should carry an owner's or
    /// admin's session token.
    pub fn new(http: Http) -> Self {
        Self { http }
    }

    /// Every account, sorted by username.
    pub async fn users(&self) -> Result<UserList, ClientError> {
        self.http.get("/v1/admin/users").await
    }

    /// A new single-use invite code for an account of `invite.role`.
    pub async fn invite(&self, invite: NewInvite) -> Result<Invite, ClientError> {
        self.http.post("/v1/admin/invites", &invite).await
    }

    /// Gives `user` the organisation role `role`.
    pub async fn set_role(&self, user: &Username, role: Role) -> Result<UserSummary, ClientError> {
        self.http
            .post(
                &format!("/v1/admin/users/{user}/role"),
                &RoleChange { role },
            )
            .await
    }

    /// Disables `user`: login refused, every session revoked, every device
    /// removed from its groups.
    pub async fn disable(&self, user: &Username) -> Result<UserSummary, ClientError> {
        self.http
            .post(&format!("/v1/admin/users/{user}/disable"), &empty())
            .await
    }

    /// Lets a disabled `user` log in again (their devices rejoin groups
    /// only when someone adds them back).
    pub async fn enable(&self, user: &Username) -> Result<UserSummary, ClientError> {
        self.http
            .post(&format!("/v1/admin/users/{user}/enable"), &empty())
            .await
    }

    /// Deletes `user` and purges their account data. Cannot be undone.
    pub async fn delete(&self, user: &Username) -> Result<(), ClientError> {
        self.http.delete(&format!("/v1/admin/users/{user}")).await
    }

    /// Removes `user`'s second factor (they enrol again); audited.
    pub async fn reset_two_factor(&self, user: &Username) -> Result<UserSummary, ClientError> {
        self.http
            .post(&format!("/v1/admin/users/{user}/2fa-reset"), &empty())
            .await
    }

    /// Every group: sizes and admins, never names or content.
    pub async fn groups(&self) -> Result<AdminGroupList, ClientError> {
        self.http.get("/v1/admin/groups").await
    }

    /// The organisation's access policy.
    pub async fn access(&self) -> Result<AccessPolicy, ClientError> {
        self.http.get("/v1/admin/access").await
    }

    /// Replaces the access policy (owners only); returns what was stored.
    pub async fn set_access(&self, policy: AccessPolicy) -> Result<AccessPolicy, ClientError> {
        self.http.put("/v1/admin/access", &policy).await
    }

    /// Live sessions, newest first; only `user`'s if given.
    pub async fn sessions(&self, user: Option<&Username>) -> Result<SessionList, ClientError> {
        match user {
            Some(user) => {
                self.http
                    .get(&format!("/v1/admin/sessions?user={user}"))
                    .await
            }
            None => self.http.get("/v1/admin/sessions").await,
        }
    }

    /// One page of the audit log (see [`AuditQuery`]).
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditPage, ClientError> {
        self.http
            .get(&format!("/v1/admin/audit{}", query.to_query_string()))
            .await
    }

    /// Every audit checkpoint, oldest first.
    pub async fn audit_checkpoints(&self) -> Result<Vec<AuditCheckpoint>, ClientError> {
        let list: AuditCheckpointList = self.http.get("/v1/admin/audit/checkpoints").await?;
        Ok(list.checkpoints)
    }

    /// Asks the server to sign the audit chain's head now.
    pub async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, ClientError> {
        self.http.post("/v1/admin/audit/checkpoint", &empty()).await
    }

    /// The key the server signs audit checkpoints with, as it says. Verify
    /// against a key written down earlier rather than trusting this.
    pub async fn audit_key(&self) -> Result<AuditKey, ClientError> {
        self.http.get("/v1/admin/audit/key").await
    }

    /// Revokes one session (its id from [`AdminClient::sessions`]).
    pub async fn revoke_session(&self, session_id: &str) -> Result<(), ClientError> {
        let id = session_path_segment(session_id)?;
        self.http
            .post::<_, serde_json::Value>(&format!("/v1/admin/sessions/{id}/revoke"), &empty())
            .await
            .map(|_| ())
    }
}

/// The `{}` body of the routes that take none.
fn empty() -> serde_json::Value {
    serde_json::json!({})
}

/// A session id as a path segment: ids are hexadecimal, so anything else
/// is refused here rather than sent somewhere unexpected.
fn session_path_segment(id: &str) -> Result<&str, ClientError> {
    let id = id.trim();
    if id.is_empty()
        || id.len() > MAX_SESSION_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ClientError::Usage(format!(
            "{id:?} is not a session id; `rampart admin sessions list` shows them"
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_stay_one_path_segment() {
        assert_eq!(session_path_segment(" 3fa9c2d1 ").unwrap(), "3fa9c2d1");
        for bad in ["", "../users", "a/b", "a?b", "a b", &"a".repeat(129)] {
            assert!(session_path_segment(bad).is_err(), "{bad:?}");
        }
    }
}
