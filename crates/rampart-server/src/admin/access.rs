//! The organisation's access policy: stored as JSON in `org_access`,
//! validated on every change, cached in the running server.

use super::{Caller, Ctx, admin_entry, check_administers, deny, record_own};
use crate::audit;
use crate::error::ApiError;
use rampart_proto::admin::{AccessPolicy, MAX_USERNAME_PATTERN_LEN};
use rampart_proto::api::{Role, SecurityEventKind};
use rampart_proto::{ErrorCode, Username};
use regex::{Regex, RegexBuilder};
use sqlx::SqlitePool;
use std::sync::{Arc, RwLock};

/// Most memory a compiled username pattern may take (the `regex` crate's
/// size limit): a short pattern can still expand enormously (`a{1000}{1000}`).
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;
/// Largest allowed `max_group_users`.
const MAX_GROUP_USERS_LIMIT: u32 = 1024;

/// The running server's copy of the policy; cheap to clone and to read.
#[derive(Clone, Debug, Default)]
pub(crate) struct AccessCache(Arc<RwLock<Arc<AccessPolicy>>>);

impl AccessCache {
    pub fn new(policy: AccessPolicy) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(policy))))
    }

    /// The current policy.
    pub fn get(&self) -> Arc<AccessPolicy> {
        // A writer cannot panic while holding the lock (it only swaps an
        // Arc), so a poisoned lock still holds a whole policy.
        match self.0.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, policy: AccessPolicy) {
        let policy = Arc::new(policy);
        match self.0.write() {
            Ok(mut p) => *p = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }
}

/// The stored policy; the defaults when none was ever set.
pub(crate) async fn try_load_access(pool: &SqlitePool) -> Result<AccessPolicy, sqlx::Error> {
    let document: Option<String> =
        sqlx::query_scalar("SELECT document FROM org_access WHERE id = 1")
            .fetch_optional(pool)
            .await?;
    Ok(match document {
        None => AccessPolicy::default(),
        // Validated when written; only a hand-edited row fails here.
        Some(json) => serde_json::from_str(&json).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the stored access policy is unreadable; using the defaults");
            AccessPolicy::default()
        }),
    })
}

/// [`try_load_access`] for callers that cannot stop on a database error
/// (the delivery actor): logs it and answers the defaults.
#[allow(
    dead_code,
    reason = "for the delivery actor, which reads the policy itself"
)]
pub(crate) async fn load_access(pool: &SqlitePool) -> AccessPolicy {
    match try_load_access(pool).await {
        Ok(policy) => policy,
        Err(e) => {
            tracing::error!(error = %e, "reading the access policy failed; using the defaults");
            AccessPolicy::default()
        }
    }
}

/// A username pattern as the server applies it: the whole name must match.
fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_USERNAME_PATTERN_LEN {
        return Err(format!(
            "username_pattern is longer than {MAX_USERNAME_PATTERN_LEN} bytes"
        ));
    }
    let build = |p: &str| {
        RegexBuilder::new(p)
            .size_limit(PATTERN_SIZE_LIMIT)
            .dfa_size_limit(PATTERN_SIZE_LIMIT)
            .build()
    };
    // Alone first: `a)|(b` is invalid, but valid once wrapped.
    build(pattern)
        .map_err(|e| format!("username_pattern is not a valid regular expression: {e}"))?;
    build(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("username_pattern is not a valid regular expression: {e}"))
}

/// Checks a policy before it is stored.
fn validate(policy: &AccessPolicy) -> Result<(), ApiError> {
    if !(1..=MAX_GROUP_USERS_LIMIT).contains(&policy.max_group_users) {
        return Err(ApiError::bad_request(format!(
            "max_group_users must be 1 to {MAX_GROUP_USERS_LIMIT}"
        )));
    }
    if let Some(pattern) = &policy.username_pattern {
        compile_pattern(pattern).map_err(ApiError::bad_request)?;
    }
    Ok(())
}

/// Refuses a new username the policy's pattern does not allow.
pub(crate) fn check_username(policy: &AccessPolicy, username: &Username) -> Result<(), ApiError> {
    let Some(pattern) = &policy.username_pattern else {
        return Ok(());
    };
    let allowed = match compile_pattern(pattern) {
        Ok(re) => re.is_match(username.as_str()),
        Err(e) => {
            // Validated when stored: refuse rather than let anything in.
            tracing::error!(error = %e, "the stored username pattern does not compile");
            false
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidUsername,
            format!("this organisation only allows usernames that match the pattern `{pattern}`"),
        ))
    }
}

/// `GET /v1/admin/access`: owners and admins.
pub(super) async fn get(ctx: &Ctx, caller: &Caller) -> Result<AccessPolicy, ApiError> {
    check_administers(ctx, caller).await?;
    Ok(try_load_access(&ctx.pool).await?)
}

/// `PUT /v1/admin/access`: owners only.
pub(super) async fn set(
    ctx: &Ctx,
    caller: &Caller,
    policy: AccessPolicy,
) -> Result<AccessPolicy, ApiError> {
    check_administers(ctx, caller).await?;
    if caller.role() != Role::Owner {
        return Err(deny(
            ctx,
            caller,
            None,
            "only owners may change the access policy".into(),
        )
        .await);
    }
    validate(&policy)?;
    let document = serde_json::to_string(&policy).map_err(ApiError::internal)?;
    let mut tx = ctx.pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "INSERT INTO org_access (id, document, updated_at) VALUES (1, ?1, ?2) \
         ON CONFLICT (id) DO UPDATE SET document = ?1, updated_at = ?2",
    )
    .bind(&document)
    .bind(ctx.now())
    .execute(&mut *tx)
    .await?;
    let kind = SecurityEventKind::AccessPolicyChanged;
    let entry = admin_entry(ctx, caller, kind)
        .target(audit::Target::Text("policy:access".into()))
        .detail(
            "document_sha256",
            hex::encode(crate::db::sha256(document.as_bytes())),
        );
    record_own(&mut tx, ctx, caller, kind, entry).await?;
    tx.commit().await?;
    ctx.access.set(policy.clone());
    tracing::info!(by = %super::by(caller), "access policy changed");
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_pattern(p: &str) -> AccessPolicy {
        AccessPolicy {
            username_pattern: Some(p.into()),
            ..AccessPolicy::default()
        }
    }

    #[test]
    fn patterns_match_whole_names_and_bad_ones_are_refused() {
        let policy = with_pattern(r"[a-z]+\.[a-z]+");
        assert!(validate(&policy).is_ok());
        let ok = Username::parse("ada.lovelace").unwrap();
        let bad = Username::parse("xada.lovelace-x").unwrap();
        assert!(check_username(&policy, &ok).is_ok());
        // Unanchored it would match inside; anchored it does not.
        let err = check_username(&with_pattern("ada"), &bad).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidUsername);
        assert!(err.message().contains("`ada`"));
        for invalid in ["a)|(b", "(", "a{1000}{1000}{1000}"] {
            assert!(validate(&with_pattern(invalid)).is_err(), "{invalid}");
        }
        assert!(validate(&with_pattern(&"a".repeat(MAX_USERNAME_PATTERN_LEN + 1))).is_err());
        for n in [0, MAX_GROUP_USERS_LIMIT + 1] {
            let p = AccessPolicy {
                max_group_users: n,
                ..AccessPolicy::default()
            };
            assert!(validate(&p).is_err());
        }
        assert!(check_username(&AccessPolicy::default(), &bad).is_ok());
    }

    #[test]
    fn the_cache_swaps_whole_policies() {
        let cache = AccessCache::new(AccessPolicy::default());
        let before = cache.get();
        cache.set(with_pattern("x+"));
        assert_eq!(before.username_pattern, None);
        assert_eq!(cache.get().username_pattern.as_deref(), Some("x+"));
    }
}
