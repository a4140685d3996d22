//! Organisation administration against a real server on loopback: invites
//! with roles and expiry, role changes and escalation attempts, disable,
//! enable, delete, 2FA reset, forced 2FA, the username pattern, sessions,
//! and the console on a stopped server's data directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rampart_proto::admin::{
    AccessPolicy, AccountStatus, AdminGroupList, Invite, SessionList, TwoFactorRequirement,
    UserList, UserSummary,
};
use rampart_proto::api::SecurityEventKind::{
    AccessDenied, AccountDeleted, RoleChanged, TwoFactorReset,
};
use rampart_proto::api::{
    RecoveryCodes, Role, SecurityEventKind, SecurityEventList, SessionResponse, TotpSetup, WhoAmI,
};
use rampart_proto::{ErrorCode, Username};
use rampart_server::admin::Console;
use rampart_server::{Clock, Registration, Server, ServerConfig, ServerError, totp};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sqlx::SqlitePool;
use std::path::Path;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

async fn start(dir: &Path, registration: Registration, clock: &Clock) -> Api {
    let config = ServerConfig {
        registration,
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(config, dir, clock.clone()).await;
    Api {
        http: reqwest::Client::new(),
        server,
    }
}

/// A fresh data directory and an open server on it, with `olive`, its
/// owner (the first account), and `mia`, a member.
async fn olive_and_mia(clock: &Clock) -> (tempfile::TempDir, Api, Account, Account) {
    let dir = tempfile::tempdir().unwrap();
    let api = start(dir.path(), Registration::Open, clock).await;
    let owner = api.register("olive", 1, None).await;
    let mia = api.register("mia", 2, None).await;
    (dir, api, owner, mia)
}

/// Status, code and message of a refused call.
async fn refusal(resp: reqwest::Response) -> (u16, ErrorCode, String) {
    let (status, body) = error_of(resp).await;
    (status, body.code, body.message)
}

fn has_event(list: &SecurityEventList, kind: SecurityEventKind, subject: Option<&str>) -> bool {
    list.events
        .iter()
        .any(|e| e.kind == kind && e.subject.as_ref().map(Username::as_str) == subject)
}

/// A running server and an HTTP client for its REST API.
struct Api {
    http: reqwest::Client,
    server: TestServer,
}

impl Api {
    async fn stop(self) {
        self.server.stop().await;
    }

    /// A call as `token`, whatever it answers.
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        call(&self.http, &self.server, method, path, Some(token), body).await
    }

    /// A call as `token` that must succeed with `T`.
    async fn ok<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> T {
        ok(self.call(method, path, token, body).await).await
    }

    /// A call as `token` that must be refused with 403 `forbidden`.
    async fn refused(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> String {
        let (status, code, message) = refusal(self.call(method, path, token, body).await).await;
        assert_eq!(
            (status, code),
            (403, ErrorCode::Forbidden),
            "{method} {path}: {message}"
        );
        message
    }

    /// Asserts the status of a call without a body as `token`.
    async fn assert_status(&self, method: &str, path: &str, token: &str, expected: u16) {
        let resp = self.call(method, path, token, None).await;
        assert_eq!(resp.status(), expected, "{method} {path}");
    }

    /// The status of `GET /v1/me` as `token`: whether the session still works.
    async fn me_status(&self, token: &str) -> u16 {
        let resp = self.call("GET", "/v1/me", token, None).await;
        resp.status().as_u16()
    }

    async fn whoami(&self, token: &str) -> WhoAmI {
        self.ok("GET", "/v1/me", token, None).await
    }

    async fn register(&self, name: &str, device: u64, invite: Option<&str>) -> Account {
        register(&self.http, &self.server, name, device, invite).await
    }

    /// Status, code and message of a refused registration.
    async fn register_refused(
        &self,
        name: &str,
        device: u64,
        invite: Option<&str>,
    ) -> (u16, ErrorCode, String) {
        let (req, _) = register_request(name, device, invite);
        let resp = self
            .http
            .post(self.server.url("/v1/register"))
            .json(&req)
            .send()
            .await
            .unwrap();
        refusal(resp).await
    }

    async fn login(&self, account: &Account, password: &str) -> reqwest::Response {
        let body = json!({
            "username": account.username, "password": password, "device_id": account.device,
        });
        call(
            &self.http,
            &self.server,
            "POST",
            "/v1/login",
            None,
            Some(body),
        )
        .await
    }

    /// The error code of a refused login.
    async fn login_refused(&self, account: &Account, password: &str) -> ErrorCode {
        refusal(self.login(account, password).await).await.1
    }

    /// Turns on two-factor authentication for the account.
    async fn enrol(&self, clock: &Clock, account: &Account) {
        let body = json!({"password": PASSWORD});
        let setup: TotpSetup = self
            .ok("POST", "/v1/2fa/setup", &account.token, Some(body))
            .await;
        let secret = totp::base32_decode(&setup.secret).unwrap();
        let body = json!({"code": totp::code(&secret, clock.unix_secs())});
        let _: RecoveryCodes = self
            .ok("POST", "/v1/2fa/activate", &account.token, Some(body))
            .await;
    }

    async fn events(&self, token: &str) -> SecurityEventList {
        self.ok("GET", "/v1/security-events", token, None).await
    }

    /// Asserts that the security log `token` sees holds an event of `kind`
    /// naming `subject` (the other account involved, if any).
    async fn assert_event(&self, token: &str, kind: SecurityEventKind, subject: Option<&str>) {
        let log = self.events(token).await;
        assert!(
            has_event(&log, kind, subject),
            "{kind:?} {subject:?}: {log:?}"
        );
    }

    async fn invite(&self, token: &str, role: &str, secs: Option<u64>) -> Invite {
        let mut body = json!({ "role": role });
        if let Some(secs) = secs {
            body["expires_in_secs"] = json!(secs);
        }
        self.ok("POST", "/v1/admin/invites", token, Some(body))
            .await
    }

    /// `POST /v1/admin/users/{user}/role` as `token`, which must succeed.
    async fn set_role(&self, token: &str, user: &str, role: &str) -> UserSummary {
        let path = format!("/v1/admin/users/{user}/role");
        self.ok("POST", &path, token, Some(json!({ "role": role })))
            .await
    }

    /// [`Api::set_role`] that must be refused (see [`Api::refused`]).
    async fn set_role_refused(&self, token: &str, user: &str, role: &str) -> String {
        let path = format!("/v1/admin/users/{user}/role");
        self.refused("POST", &path, token, Some(json!({ "role": role })))
            .await
    }

    /// `POST /v1/admin/users/{user}/{action}` (`disable`, `enable`,
    /// `2fa-reset`) as `token`, which must succeed.
    async fn on_user(&self, token: &str, user: &str, action: &str) -> UserSummary {
        let path = format!("/v1/admin/users/{user}/{action}");
        self.ok("POST", &path, token, None).await
    }

    async fn users(&self, token: &str) -> UserList {
        self.ok("GET", "/v1/admin/users", token, None).await
    }

    /// `GET /v1/admin/sessions` with `query` (empty or `?user=…`).
    async fn sessions(&self, token: &str, query: &str) -> SessionList {
        let path = format!("/v1/admin/sessions{query}");
        self.ok("GET", &path, token, None).await
    }

    async fn access(&self, token: &str) -> AccessPolicy {
        self.ok("GET", "/v1/admin/access", token, None).await
    }

    /// Replaces the access policy (`PUT /v1/admin/access`).
    async fn set_access(&self, token: &str, policy: Value) -> AccessPolicy {
        self.ok("PUT", "/v1/admin/access", token, Some(policy))
            .await
    }
}

/// The data directory's database, opened beside the server (WAL allows it).
async fn db(dir: &Path) -> SqlitePool {
    SqlitePool::connect(&format!("sqlite://{}", dir.join("rampart.db").display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn invites_roles_and_escalation_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual();
    let api = start(dir.path(), Registration::Invite, &clock).await;
    let first = api.server.first_invite.as_deref();
    let owner = api.register("olive", 1, first).await;

    // Invites carry their role into the account.
    let code = api.invite(&owner.token, "admin", None).await;
    assert_eq!(code.role, Role::Admin);
    let adam = api.register("adam", 2, Some(&code.code)).await;
    assert_eq!(api.whoami(&adam.token).await.role, Role::Admin);
    let code = api.invite(&adam.token, "member", Some(600)).await;
    assert!(code.expires_at <= clock.now_ms() + 600_000);
    let mia = api.register("mia", 3, Some(&code.code)).await;
    let code = api.invite(&adam.token, "guest", None).await;
    let gus = api.register("gus", 4, Some(&code.code)).await;
    assert_eq!(api.whoami(&gus.token).await.role, Role::Guest);

    // Expiry: bounded, and an expired invite is refused.
    for secs in [0, 30 * 24 * 3600 + 1] {
        let resp = api
            .call(
                "POST",
                "/v1/admin/invites",
                &owner.token,
                Some(json!({"role": "member", "expires_in_secs": secs})),
            )
            .await;
        assert_eq!(resp.status(), 400);
    }
    let code = api.invite(&owner.token, "member", Some(60)).await;
    clock.advance(Duration::from_secs(61));
    let (_, code, _) = api.register_refused("late", 5, Some(&code.code)).await;
    assert_eq!(code, ErrorCode::InvalidInvite);

    // A member promoting itself, or merely listing users: refused, recorded.
    api.set_role_refused(&mia.token, "mia", "admin").await;
    api.refused("GET", "/v1/admin/users", &gus.token, None)
        .await;
    api.assert_event(&mia.token, AccessDenied, None).await;
    assert_eq!(api.whoami(&mia.token).await.role, Role::Member);

    // An admin granting admin, inviting an admin, touching an owner or
    // itself: refused, recorded naming the account aimed at.
    let why = api.set_role_refused(&adam.token, "mia", "admin").await;
    assert!(why.contains("only owners"), "{why}");
    for (path, body) in [
        ("/v1/admin/invites", Some(json!({"role": "owner"}))),
        ("/v1/admin/users/olive/disable", None),
        ("/v1/admin/users/olive/2fa-reset", None),
        ("/v1/admin/users/adam/role", Some(json!({"role": "member"}))),
    ] {
        api.refused("POST", path, &adam.token, body).await;
    }
    let log = api.events(&adam.token).await;
    assert!(has_event(&log, AccessDenied, Some("mia")));
    assert!(has_event(&log, AccessDenied, Some("olive")));
    // Nobody changes their own role, owners included.
    api.set_role_refused(&owner.token, "olive", "member").await;

    // Allowed changes, in both logs.
    let mia_now = api.set_role(&adam.token, "mia", "guest").await;
    assert_eq!(mia_now.role, Role::Guest);
    api.assert_event(&mia.token, RoleChanged, Some("adam"))
        .await;
    api.assert_event(&adam.token, RoleChanged, Some("mia"))
        .await;
    let unknown = api
        .call(
            "POST",
            "/v1/admin/users/nobody/role",
            &owner.token,
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(unknown.status(), 404);

    // Owners do anything to others: a second owner can demote the first.
    let adam_now = api.set_role(&owner.token, "adam", "owner").await;
    assert_eq!(adam_now.role, Role::Owner);
    api.set_role(&adam.token, "olive", "member").await;

    let list = api.users(&adam.token).await;
    let names: Vec<_> = list
        .users
        .iter()
        .map(|u| (u.username.as_str(), u.role))
        .collect();
    assert_eq!(
        names,
        [
            ("adam", Role::Owner),
            ("gus", Role::Guest),
            ("mia", Role::Guest),
            ("olive", Role::Member)
        ]
    );
    assert!(
        list.users
            .iter()
            .all(|u| u.status == AccountStatus::Active && u.devices == 1)
    );
    // The demoted owner lost the admin API at once.
    api.refused("GET", "/v1/admin/users", &owner.token, None)
        .await;
    api.stop().await;
}

#[tokio::test]
async fn disable_enable_delete_and_two_factor_reset() {
    let clock = Clock::system();
    let (dir, api, owner, mia) = olive_and_mia(&clock).await;
    let bob = api.register("bob", 3, None).await;
    let pool = db(dir.path()).await;

    // Disable: the socket closes, the old token and login are refused
    // with the reason, and only after a correct password.
    let mut ws = connect(&api.server, &mia.token).await;
    let disabled = api.on_user(&owner.token, "mia", "disable").await;
    assert_eq!(
        (disabled.status, disabled.devices),
        (AccountStatus::Disabled, 0)
    );
    let mut closed = false;
    for _ in 0..16 {
        if recv(&mut ws).await.is_none() {
            closed = true;
            break;
        }
    }
    assert!(closed, "the WebSocket must close");
    let (status, code, message) = refusal(api.call("GET", "/v1/me", &mia.token, None).await).await;
    assert_eq!((status, code), (403, ErrorCode::AccountDisabled));
    assert!(message.contains("disabled by an administrator"));
    assert!(try_connect(&api.server, Some(&mia.token)).await.is_err());
    assert_eq!(
        api.login_refused(&mia, PASSWORD).await,
        ErrorCode::AccountDisabled
    );
    assert_eq!(
        api.login_refused(&mia, "not the password").await,
        ErrorCode::BadCredentials
    );
    let again = api.on_user(&owner.token, "mia", "disable").await;
    assert_eq!(again.status, AccountStatus::Disabled);
    let denied: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM security_events e JOIN users u ON u.id = e.user_id \
         WHERE u.username = 'mia' AND e.kind = 'access_denied'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        denied >= 2,
        "old tokens and logins of a disabled account are recorded"
    );
    let all = api.sessions(&owner.token, "").await;
    assert!(all.sessions.iter().all(|s| s.username.as_str() != "mia"));
    // Nobody disables themselves, and the last owner stays.
    api.refused("POST", "/v1/admin/users/olive/disable", &owner.token, None)
        .await;

    // Enable: the account works again, its old devices do not.
    let enabled = api.on_user(&owner.token, "mia", "enable").await;
    assert_eq!(enabled.status, AccountStatus::Active);
    api.on_user(&owner.token, "mia", "enable").await;
    assert_eq!(api.me_status(&mia.token).await, 401);
    assert_eq!(
        api.login_refused(&mia, PASSWORD).await,
        ErrorCode::Forbidden
    );

    // 2FA reset: secret, codes and sessions go; both logs say so.
    api.enrol(&clock, &bob).await;
    let reset = api.on_user(&owner.token, "bob", "2fa-reset").await;
    assert!(!reset.two_factor);
    assert_eq!(api.me_status(&bob.token).await, 401);
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM two_factor) + (SELECT COUNT(*) FROM recovery_codes)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 0);
    let bob_token: SessionResponse = ok(api.login(&bob, PASSWORD).await).await;
    api.assert_event(&bob_token.token, TwoFactorReset, Some("olive"))
        .await;
    api.assert_event(&owner.token, TwoFactorReset, Some("bob"))
        .await;

    // Delete: the data goes, the name can never come back.
    api.assert_status("DELETE", "/v1/admin/users/bob", &owner.token, 204)
        .await;
    for (table, sql) in [
        (
            "users",
            "SELECT COUNT(*) FROM users WHERE username = 'bob' OR deleted_at IS NOT NULL",
        ),
        ("devices", "SELECT COUNT(*) FROM devices WHERE id = 3"),
        (
            "sessions",
            "SELECT COUNT(*) FROM sessions WHERE device_id = 3",
        ),
        (
            "security_events",
            "SELECT COUNT(*) FROM security_events WHERE device_id = 3",
        ),
        (
            "subjects",
            "SELECT COUNT(*) FROM security_events WHERE subject_user IS NOT NULL AND kind = 'two_factor_reset'",
        ),
    ] {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let tombstones: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deleted_usernames")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(tombstones >= 1);
    assert_eq!(api.me_status(&bob_token.token).await, 401);
    assert_eq!(
        api.login_refused(&bob, PASSWORD).await,
        ErrorCode::BadCredentials
    );
    let (status, _, message) = api.register_refused("bob", 33, None).await;
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("deleted account"));
    assert_eq!(api.users(&owner.token).await.users.len(), 2);
    api.assert_event(&owner.token, AccountDeleted, None).await;
    api.assert_status("DELETE", "/v1/admin/users/olive", &owner.token, 403)
        .await;
    pool.close().await;
    api.stop().await;
}

#[tokio::test]
async fn access_policy_username_pattern_and_forced_two_factor() {
    let clock = Clock::manual();
    let (dir, api, owner, mia) = olive_and_mia(&clock).await;
    api.set_role(&owner.token, "mia", "admin").await;
    api.enrol(&clock, &owner).await;

    let policy = api.access(&mia.token).await;
    assert_eq!(policy, AccessPolicy::default());
    // Only owners change it; bad documents are refused whole.
    api.refused("PUT", "/v1/admin/access", &mia.token, Some(json!({})))
        .await;
    for bad in [
        json!({"username_pattern": "("}),
        json!({"username_pattern": "a{1000}{1000}{1000}"}),
        json!({"max_group_users": 0}),
        json!({"max_group_users": 5000}),
        json!({"no_such_field": true}),
    ] {
        let resp = api
            .call("PUT", "/v1/admin/access", &owner.token, Some(bad.clone()))
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let set = api
        .set_access(
            &owner.token,
            json!({"username_pattern": "[a-z]+", "members_may_create_groups": false}),
        )
        .await;
    assert_eq!(set.username_pattern.as_deref(), Some("[a-z]+"));

    let (status, code, message) = api.register_refused("bad.name", 5, None).await;
    assert_eq!((status, code), (400, ErrorCode::InvalidUsername));
    assert!(message.contains("[a-z]+"), "{message}");
    let gus = api.register("gus", 6, None).await;

    // Forced 2FA for admins: mia (admin) is held to enrolment, gus is not.
    api.set_access(&owner.token, json!({"require_two_factor": "admins"}))
        .await;
    let resp = api.call("GET", "/v1/admin/users", &mia.token, None).await;
    let (status, code, message) = refusal(resp).await;
    assert_eq!((status, code), (403, ErrorCode::TwoFactorEnrolmentRequired));
    assert!(message.contains("rampart 2fa enable"), "{message}");
    let resp = api.call("GET", "/v1/devices", &mia.token, None).await;
    assert_eq!(refusal(resp).await.1, ErrorCode::TwoFactorEnrolmentRequired);
    assert!(try_connect(&api.server, Some(&mia.token)).await.is_err());
    api.assert_status("GET", "/v1/devices", &gus.token, 200)
        .await;
    assert_eq!(api.whoami(&mia.token).await.role, Role::Admin);
    api.assert_status("GET", "/v1/2fa", &mia.token, 200).await;
    // Enrolling opens everything again.
    api.enrol(&clock, &mia).await;
    let list = api.users(&mia.token).await;
    assert!(
        list.users
            .iter()
            .any(|u| u.username.as_str() == "mia" && u.two_factor)
    );
    // For everyone: gus is held too; the owner without 2FA as well.
    api.set_access(&owner.token, json!({"require_two_factor": "all"}))
        .await;
    let resp = api.call("GET", "/v1/devices", &gus.token, None).await;
    assert_eq!(refusal(resp).await.1, ErrorCode::TwoFactorEnrolmentRequired);
    api.access(&owner.token).await;
    api.assert_status("POST", "/v1/logout", &gus.token, 204)
        .await;
    api.assert_event(&mia.token, AccessDenied, None).await;
    api.stop().await;

    // The policy survives a restart.
    let api = start(dir.path(), Registration::Open, &clock).await;
    let resp = api.call("GET", "/v1/devices", &gus.token, None).await;
    assert_eq!(resp.status(), 401, "logged out");
    let policy = api.access(&mia.token).await;
    assert_eq!(policy.require_two_factor, TwoFactorRequirement::All);
    // PUT replaces the whole document: what the last one left out is default.
    assert!(policy.members_may_create_groups && policy.username_pattern.is_none());
    api.stop().await;
}

#[tokio::test]
async fn sessions_are_listed_and_revoked() {
    let clock = Clock::system();
    let (_dir, api, owner, mia) = olive_and_mia(&clock).await;
    let second: SessionResponse = ok(api.login(&mia, PASSWORD).await).await;

    let all = api.sessions(&owner.token, "").await;
    assert_eq!(all.sessions.len(), 3);
    let mine = api.sessions(&owner.token, "?user=mia").await;
    assert_eq!(mine.sessions.len(), 2);
    assert!(
        mine.sessions
            .iter()
            .all(|s| s.session_id.len() == 16 && s.username.as_str() == "mia")
    );
    // Never the token itself.
    let text = api
        .call("GET", "/v1/admin/sessions", &owner.token, None)
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains(&mia.token) && !text.contains(&second.token));
    api.assert_status("GET", "/v1/admin/sessions?user=nobody", &owner.token, 404)
        .await;

    // Revoke the newest (the second login's) session.
    let id = &mine.sessions[0].session_id;
    let path = format!("/v1/admin/sessions/{id}/revoke");
    api.assert_status("POST", &path, &owner.token, 204).await;
    let still = [&mia.token, &second.token];
    let mut alive = 0;
    for token in still {
        if api.me_status(token).await == 200 {
            alive += 1;
        }
    }
    assert_eq!(alive, 1);
    for bad in [id.as_str(), "zz", "0123", &"f".repeat(65)] {
        let path = format!("/v1/admin/sessions/{bad}/revoke");
        api.assert_status("POST", &path, &owner.token, 404).await;
    }
    // An admin cannot end an owner's session; a member cannot list them.
    api.set_role(&owner.token, "mia", "admin").await;
    let owners = api.sessions(&owner.token, "?user=olive").await;
    let token = if api.me_status(&mia.token).await == 200 {
        &mia.token
    } else {
        &second.token
    };
    let path = format!(
        "/v1/admin/sessions/{}/revoke",
        owners.sessions[0].session_id
    );
    api.refused("POST", &path, token, None).await;
    let groups: AdminGroupList = api.ok("GET", "/v1/admin/groups", token, None).await;
    assert!(groups.groups.is_empty());
    api.stop().await;
}

#[tokio::test]
async fn console_needs_a_stopped_server_and_keeps_the_rules() {
    let clock = Clock::system();
    let (dir, api, owner, mia) = olive_and_mia(&clock).await;

    // While it runs: the console and a second server both refuse.
    let err = Console::open(dir.path()).await.unwrap_err();
    assert!(matches!(err, ServerError::InUse(_)), "{err}");
    assert!(err.to_string().contains("running Rampart server"), "{err}");
    let config = ServerConfig {
        data_dir: dir.path().to_owned(),
        ..ServerConfig::default()
    };
    let err = Server::open(config).await.unwrap_err();
    assert!(matches!(err, ServerError::InUse(_)), "{err}");
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Console::open(empty.path()).await.unwrap_err(),
        ServerError::NoDatabase(_)
    ));
    api.stop().await;

    let console = Console::open(dir.path()).await.unwrap();
    let olive = Username::parse("olive").unwrap();
    let mia_name = Username::parse("mia").unwrap();
    let users = console.users().await.unwrap();
    assert_eq!(users.users.len(), 2);
    // The operator is like an owner, but the last owner stays.
    for err in [
        console.set_role(&olive, Role::Member).await.unwrap_err(),
        console.disable(&olive).await.unwrap_err(),
        console.delete(&olive).await.unwrap_err(),
    ] {
        assert_eq!(err.code(), ErrorCode::Forbidden);
        assert!(
            err.message().contains("last active owner"),
            "{}",
            err.message()
        );
    }
    assert_eq!(
        console.set_role(&mia_name, Role::Admin).await.unwrap().role,
        Role::Admin
    );
    assert_eq!(
        console.disable(&mia_name).await.unwrap().status,
        AccountStatus::Disabled
    );
    assert_eq!(
        console.enable(&mia_name).await.unwrap().status,
        AccountStatus::Active
    );
    let code = console
        .invite(rampart_proto::admin::NewInvite {
            role: Role::Guest,
            expires_in_secs: None,
        })
        .await
        .unwrap();
    assert_eq!(code.role, Role::Guest);
    let policy = AccessPolicy {
        max_group_users: 8,
        ..AccessPolicy::default()
    };
    assert_eq!(console.set_access(policy.clone()).await.unwrap(), policy);
    assert_eq!(console.access().await.unwrap(), policy);
    assert_eq!(
        console.sessions(Some(&olive)).await.unwrap().sessions.len(),
        1
    );
    let id = console.sessions(Some(&olive)).await.unwrap().sessions[0]
        .session_id
        .clone();
    console.revoke_session(&id).await.unwrap();
    assert!(console.groups().await.unwrap().groups.is_empty());
    console.delete(&mia_name).await.unwrap();
    assert_eq!(console.users().await.unwrap().users.len(), 1);
    let unknown = Username::parse("nobody").unwrap();
    assert_eq!(
        console.disable(&unknown).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    // A second console waits for the first.
    assert!(matches!(
        Console::open(dir.path()).await.unwrap_err(),
        ServerError::InUse(_)
    ));
    console.close().await;

    // The server starts again and sees it all.
    let api = start(dir.path(), Registration::Open, &clock).await;
    assert_eq!(api.me_status(&owner.token).await, 401);
    assert_eq!(
        api.login_refused(&mia, PASSWORD).await,
        ErrorCode::BadCredentials
    );
    api.stop().await;
}
