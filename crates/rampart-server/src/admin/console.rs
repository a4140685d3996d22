//! Administration of a stopped server, straight on its data directory.

use super::{AccessCache, Caller, Ctx, access, groups, sessions, try_load_access, users};
use crate::audit::{self, Audit, alerts::Alerts};
use crate::client_ip::ClientIp;
use crate::clock::Clock;
use crate::error::{ApiError, ServerError};
use rampart_proto::Username;
use rampart_proto::admin::{
    AccessPolicy, AdminGroupList, Invite, NewInvite, SessionList, UserList, UserSummary,
};
use rampart_proto::api::Role;
use rampart_proto::audit::{AuditCheckpoint, AuditPage, CheckpointReason};
use std::fs::File;
use std::path::Path;

/// The lock file a running server (or an open console) holds.
pub(crate) const LOCK_FILE: &str = "server.lock";

/// Takes the data directory's lock, or says who holds it.
pub(crate) fn lock_data_dir(data_dir: &Path) -> Result<File, ServerError> {
    let path = data_dir.join(LOCK_FILE);
    let data_dir_error = |source| ServerError::DataDir {
        path: path.clone(),
        source,
    };
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(data_dir_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServerError::InUse(data_dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(data_dir_error(e)),
    }
}

/// The administration of a **stopped** server, on its data directory:
/// what `rampart admin …` uses without a session. It acts as the server's
/// operator, with an owner's rights (the rules for the last owner still
/// hold), and holds the data directory's lock while open, so the server
/// cannot start meanwhile. Every method is the same code as the HTTP admin
/// API; see [`rampart_proto::admin`] for what each does.
///
/// With the server stopped nobody is connected: revoked devices' queues are
/// emptied in the database, and deleted accounts' blob objects are removed
/// by the orphan collector when the server starts again.
pub struct Console {
    ctx: Ctx,
    audit: Audit,
    _lock: File,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Console {
    /// Opens the data directory of a stopped server. Refuses
    /// ([`ServerError::InUse`]) while a server runs on it, and
    /// ([`ServerError::NoDatabase`]) if it holds no Rampart database.
    pub async fn open(data_dir: &Path) -> Result<Console, ServerError> {
        if !data_dir.join(crate::db::DB_FILE).is_file() {
            return Err(ServerError::NoDatabase(data_dir.to_owned()));
        }
        let lock = lock_data_dir(data_dir)?;
        let key = crate::secrets::ServerKey::load(data_dir)?;
        let pool = crate::db::open(data_dir).await?;
        let access = AccessCache::new(try_load_access(&pool).await?);
        // No alert rules here: a stopped server has nobody to alert.
        let audit = Audit::new(
            pool.clone(),
            Clock::system(),
            key.audit_seed(),
            Alerts::none(),
        );
        Ok(Console {
            audit,
            ctx: Ctx {
                pool,
                clock: Clock::system(),
                ip: ClientIp(None),
                access,
                live: None,
            },
            _lock: lock,
        })
    }

    /// Every account, sorted by username.
    pub async fn users(&self) -> Result<UserList, ApiError> {
        users::list(&self.ctx, &Caller::Operator).await
    }

    /// A new single-use invite code for `new.role`.
    pub async fn invite(&self, new: NewInvite) -> Result<Invite, ApiError> {
        users::invite(&self.ctx, &Caller::Operator, new).await
    }

    pub async fn set_role(&self, username: &Username, role: Role) -> Result<UserSummary, ApiError> {
        users::set_role(&self.ctx, &Caller::Operator, username, role).await
    }

    pub async fn disable(&self, username: &Username) -> Result<UserSummary, ApiError> {
        users::disable(&self.ctx, &Caller::Operator, username).await
    }

    pub async fn enable(&self, username: &Username) -> Result<UserSummary, ApiError> {
        users::enable(&self.ctx, &Caller::Operator, username).await
    }

    pub async fn delete(&self, username: &Username) -> Result<(), ApiError> {
        users::delete(&self.ctx, &Caller::Operator, username).await
    }

    pub async fn reset_two_factor(&self, username: &Username) -> Result<UserSummary, ApiError> {
        users::reset_two_factor(&self.ctx, &Caller::Operator, username).await
    }

    pub async fn groups(&self) -> Result<AdminGroupList, ApiError> {
        groups::list(&self.ctx, &Caller::Operator).await
    }

    pub async fn access(&self) -> Result<AccessPolicy, ApiError> {
        access::get(&self.ctx, &Caller::Operator).await
    }

    /// Validates and stores the policy; the server reads it when it starts.
    pub async fn set_access(&self, policy: AccessPolicy) -> Result<AccessPolicy, ApiError> {
        access::set(&self.ctx, &Caller::Operator, policy).await
    }

    /// Usable sessions, of one account or all, newest first.
    pub async fn sessions(&self, user: Option<&Username>) -> Result<SessionList, ApiError> {
        sessions::list(&self.ctx, &Caller::Operator, user).await
    }

    /// Ends the session named by `session_id` (as [`Console::sessions`] lists it).
    pub async fn revoke_session(&self, session_id: &str) -> Result<(), ApiError> {
        sessions::revoke(&self.ctx, &Caller::Operator, session_id).await
    }

    /// Audit entries matching `query` (see [`crate::audit::Query`]).
    pub async fn audit_page(&self, query: &audit::Query) -> Result<AuditPage, ServerError> {
        Ok(self.audit.page(query).await?)
    }

    /// Every audit checkpoint, oldest first.
    pub async fn audit_checkpoints(&self) -> Result<Vec<AuditCheckpoint>, ServerError> {
        Ok(self.audit.checkpoints().await?)
    }

    /// The public key audit checkpoints are signed with.
    pub fn audit_key(&self) -> [u8; 32] {
        self.audit.public_key()
    }

    /// Signs the audit chain's head now.
    pub async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, ServerError> {
        Ok(self.audit.checkpoint(CheckpointReason::Requested).await?)
    }

    /// Walks the whole audit chain against this data directory's key.
    pub async fn audit_verify(&self) -> Result<Result<audit::Report, audit::Broken>, ServerError> {
        Ok(self.audit.verify().await?)
    }

    /// Seals and signs what this console appended, closes the database
    /// cleanly and releases the lock.
    pub async fn close(self) {
        if let Err(e) = self.audit.checkpoint(CheckpointReason::Shutdown).await {
            tracing::error!(error = %e, "signing the audit log failed");
        }
        self.ctx.pool.close().await;
    }
}
