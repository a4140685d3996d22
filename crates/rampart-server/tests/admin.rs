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
use rampart_proto::api::{
    RecoveryCodes, Role, SecurityEventKind, SecurityEventList, TotpSetup, WhoAmI,
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

async fn start(dir: &Path, registration: Registration, clock: &Clock) -> TestServer {
    let config = ServerConfig {
        registration,
        ..ServerConfig::default()
    };
    TestServer::start_with(config, dir, clock.clone()).await
}

/// Status, code and message of a refused call.
async fn refusal(resp: reqwest::Response) -> (u16, ErrorCode, String) {
    let (status, body) = error_of(resp).await;
    (status, body.code, body.message)
}

/// An admin call as `token` that must succeed with `T`.
async fn admin<T: DeserializeOwned>(
    http: &reqwest::Client,
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> T {
    ok(call(http, server, method, path, Some(token), body).await).await
}

/// An admin call as `token` that must be refused with 403 `forbidden`.
async fn refused(
    http: &reqwest::Client,
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> String {
    let (status, code, message) =
        refusal(call(http, server, method, path, Some(token), body).await).await;
    assert_eq!(
        (status, code),
        (403, ErrorCode::Forbidden),
        "{method} {path}: {message}"
    );
    message
}

async fn invite(
    http: &reqwest::Client,
    server: &TestServer,
    token: &str,
    role: &str,
    secs: Option<u64>,
) -> Invite {
    let mut body = json!({ "role": role });
    if let Some(secs) = secs {
        body["expires_in_secs"] = json!(secs);
    }
    admin(http, server, "POST", "/v1/admin/invites", token, Some(body)).await
}

async fn events(http: &reqwest::Client, server: &TestServer, token: &str) -> SecurityEventList {
    ok(call(
        http,
        server,
        "GET",
        "/v1/security-events",
        Some(token),
        None,
    )
    .await)
    .await
}

fn has_event(list: &SecurityEventList, kind: SecurityEventKind, subject: Option<&str>) -> bool {
    list.events
        .iter()
        .any(|e| e.kind == kind && e.subject.as_ref().map(Username::as_str) == subject)
}

async fn whoami(http: &reqwest::Client, server: &TestServer, token: &str) -> WhoAmI {
    ok(call(http, server, "GET", "/v1/me", Some(token), None).await).await
}

async fn login(
    http: &reqwest::Client,
    server: &TestServer,
    account: &Account,
    password: &str,
) -> reqwest::Response {
    let body = json!({
        "username": account.username, "password": password, "device_id": account.device,
    });
    call(http, server, "POST", "/v1/login", None, Some(body)).await
}

/// Turns on two-factor authentication for the account.
async fn enrol(http: &reqwest::Client, server: &TestServer, clock: &Clock, account: &Account) {
    let body = json!({"password": PASSWORD});
    let setup: TotpSetup = ok(call(
        http,
        server,
        "POST",
        "/v1/2fa/setup",
        Some(&account.token),
        Some(body),
    )
    .await)
    .await;
    let secret = totp::base32_decode(&setup.secret).unwrap();
    let body = json!({"code": totp::code(&secret, clock.unix_secs())});
    let _: RecoveryCodes = ok(call(
        http,
        server,
        "POST",
        "/v1/2fa/activate",
        Some(&account.token),
        Some(body),
    )
    .await)
    .await;
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
    let server = start(dir.path(), Registration::Invite, &clock).await;
    let http = reqwest::Client::new();
    let owner = register(&http, &server, "olive", 1, server.first_invite.as_deref()).await;

    // Invites carry their role into the account.
    let code = invite(&http, &server, &owner.token, "admin", None).await;
    assert_eq!(code.role, Role::Admin);
    let adam = register(&http, &server, "adam", 2, Some(&code.code)).await;
    assert_eq!(whoami(&http, &server, &adam.token).await.role, Role::Admin);
    let code = invite(&http, &server, &adam.token, "member", Some(600)).await;
    assert!(code.expires_at <= clock.now_ms() + 600_000);
    let mia = register(&http, &server, "mia", 3, Some(&code.code)).await;
    let code = invite(&http, &server, &adam.token, "guest", None).await;
    let gus = register(&http, &server, "gus", 4, Some(&code.code)).await;
    assert_eq!(whoami(&http, &server, &gus.token).await.role, Role::Guest);

    // Expiry: bounded, and an expired invite is refused.
    for secs in [0, 30 * 24 * 3600 + 1] {
        let resp = call(
            &http,
            &server,
            "POST",
            "/v1/admin/invites",
            Some(&owner.token),
            Some(json!({"role": "member", "expires_in_secs": secs})),
        )
        .await;
        assert_eq!(resp.status(), 400);
    }
    let code = invite(&http, &server, &owner.token, "member", Some(60)).await;
    clock.advance(Duration::from_secs(61));
    let (req, _) = register_request("late", 5, Some(&code.code));
    let resp = http
        .post(server.url("/v1/register"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(resp).await.1, ErrorCode::InvalidInvite);

    // A member promoting itself, or merely listing users: refused, recorded.
    let path = "/v1/admin/users/mia/role";
    refused(
        &http,
        &server,
        "POST",
        path,
        &mia.token,
        Some(json!({"role": "admin"})),
    )
    .await;
    refused(&http, &server, "GET", "/v1/admin/users", &gus.token, None).await;
    assert!(has_event(
        &events(&http, &server, &mia.token).await,
        SecurityEventKind::AccessDenied,
        None
    ));
    assert_eq!(whoami(&http, &server, &mia.token).await.role, Role::Member);

    // An admin granting admin, inviting an admin, touching an owner or
    // itself: refused, recorded naming the account aimed at.
    let why = refused(
        &http,
        &server,
        "POST",
        path,
        &adam.token,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert!(why.contains("only owners"), "{why}");
    refused(
        &http,
        &server,
        "POST",
        "/v1/admin/invites",
        &adam.token,
        Some(json!({"role": "owner"})),
    )
    .await;
    refused(
        &http,
        &server,
        "POST",
        "/v1/admin/users/olive/disable",
        &adam.token,
        None,
    )
    .await;
    refused(
        &http,
        &server,
        "POST",
        "/v1/admin/users/olive/2fa-reset",
        &adam.token,
        None,
    )
    .await;
    refused(
        &http,
        &server,
        "POST",
        "/v1/admin/users/adam/role",
        &adam.token,
        Some(json!({"role": "member"})),
    )
    .await;
    let log = events(&http, &server, &adam.token).await;
    assert!(has_event(
        &log,
        SecurityEventKind::AccessDenied,
        Some("mia")
    ));
    assert!(has_event(
        &log,
        SecurityEventKind::AccessDenied,
        Some("olive")
    ));
    // Nobody changes their own role, owners included.
    refused(
        &http,
        &server,
        "POST",
        "/v1/admin/users/olive/role",
        &owner.token,
        Some(json!({"role": "member"})),
    )
    .await;

    // Allowed changes, in both logs.
    let mia_now: UserSummary = admin(
        &http,
        &server,
        "POST",
        path,
        &adam.token,
        Some(json!({"role": "guest"})),
    )
    .await;
    assert_eq!(mia_now.role, Role::Guest);
    assert!(has_event(
        &events(&http, &server, &mia.token).await,
        SecurityEventKind::RoleChanged,
        Some("adam")
    ));
    assert!(has_event(
        &events(&http, &server, &adam.token).await,
        SecurityEventKind::RoleChanged,
        Some("mia")
    ));
    let unknown = call(
        &http,
        &server,
        "POST",
        "/v1/admin/users/nobody/role",
        Some(&owner.token),
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(unknown.status(), 404);

    // Owners do anything to others: a second owner can demote the first.
    let adam_now: UserSummary = admin(
        &http,
        &server,
        "POST",
        "/v1/admin/users/adam/role",
        &owner.token,
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(adam_now.role, Role::Owner);
    let _: UserSummary = admin(
        &http,
        &server,
        "POST",
        "/v1/admin/users/olive/role",
        &adam.token,
        Some(json!({"role": "member"})),
    )
    .await;

    let list: UserList = admin(&http, &server, "GET", "/v1/admin/users", &adam.token, None).await;
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
    refused(&http, &server, "GET", "/v1/admin/users", &owner.token, None).await;
    server.stop().await;
}

#[tokio::test]
async fn disable_enable_delete_and_two_factor_reset() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::system();
    let server = start(dir.path(), Registration::Open, &clock).await;
    let http = reqwest::Client::new();
    let owner = register(&http, &server, "olive", 1, None).await;
    let mia = register(&http, &server, "mia", 2, None).await;
    let bob = register(&http, &server, "bob", 3, None).await;
    let pool = db(dir.path()).await;

    // Disable: the socket closes, the old token and login are refused
    // with the reason, and only after a correct password.
    let mut ws = connect(&server, &mia.token).await;
    let disabled: UserSummary = admin(
        &http,
        &server,
        "POST",
        "/v1/admin/users/mia/disable",
        &owner.token,
        None,
    )
    .await;
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
    let (status, code, message) =
        refusal(call(&http, &server, "GET", "/v1/me", Some(&mia.token), None).await).await;
    assert_eq!((status, code), (403, ErrorCode::AccountDisabled));
    assert!(message.contains("disabled by an administrator"));
    assert!(try_connect(&server, Some(&mia.token)).await.is_err());
    assert_eq!(
        refusal(login(&http, &server, &mia, PASSWORD).await).await.1,
        ErrorCode::AccountDisabled
    );
    assert_eq!(
        refusal(login(&http, &server, &mia, "not the password").await)
            .await
            .1,
        ErrorCode::BadCredentials
    );
    let again: UserSummary = admin(
        &http,
        &server,
        "POST",
        "/v1/admin/users/mia/disable",
        &owner.token,
        None,
    )
    .await;
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
    let sessions: SessionList = admin(
        &http,
        &server,
        "GET",
        "/v1/admin/sessions",
        &owner.token,
        None,
    )
    .await;
    assert!(
        sessions
            .sessions
            .iter()
            .all(|s| s.username.as_str() != "mia")
    );
    // Nobody disables themselves, and the last owner stays.
    refused(
        &http,
        &server,
        "POST",
        "/v1/admin/users/olive/disable",
        &owner.token,
        None,
    )
    .await;

    // Enable: the account works again, its old devices do not.
    let enabled: UserSummary = admin(
        &http,
        &server,
        "POST",
        "/v1/admin/users/mia/enable",
        &owner.token,
        None,
    )
    .await;
    assert_eq!(enabled.status, AccountStatus::Active);
    let _: UserSummary = admin(
        &http,
        &server,
        "POST",
        "/v1/admin/users/mia/enable",
        &owner.token,
        None,
    )
    .await;
    assert_eq!(
        call(&http, &server, "GET", "/v1/me", Some(&mia.token), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        refusal(login(&http, &server, &mia, PASSWORD).await).await.1,
        ErrorCode::Forbidden
    );

    // 2FA reset: secret, codes and sessions go; both logs say so.
    enrol(&http, &server, &clock, &bob).await;
    let reset: UserSummary = admin(
        &http,
        &server,
        "POST",
        "/v1/admin/users/bob/2fa-reset",
        &owner.token,
        None,
    )
    .await;
    assert!(!reset.two_factor);
    assert_eq!(
        call(&http, &server, "GET", "/v1/me", Some(&bob.token), None)
            .await
            .status(),
        401
    );
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM two_factor) + (SELECT COUNT(*) FROM recovery_codes)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 0);
    let bob_token: rampart_proto::api::SessionResponse =
        ok(login(&http, &server, &bob, PASSWORD).await).await;
    assert!(has_event(
        &events(&http, &server, &bob_token.token).await,
        SecurityEventKind::TwoFactorReset,
        Some("olive")
    ));
    assert!(has_event(
        &events(&http, &server, &owner.token).await,
        SecurityEventKind::TwoFactorReset,
        Some("bob")
    ));

    // Delete: the data goes, the name can never come back.
    let resp = call(
        &http,
        &server,
        "DELETE",
        "/v1/admin/users/bob",
        Some(&owner.token),
        None,
    )
    .await;
    assert_eq!(resp.status(), 204);
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
    assert_eq!(
        call(
            &http,
            &server,
            "GET",
            "/v1/me",
            Some(&bob_token.token),
            None
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        refusal(login(&http, &server, &bob, PASSWORD).await).await.1,
        ErrorCode::BadCredentials
    );
    let (req, _) = register_request("bob", 33, None);
    let resp = http
        .post(server.url("/v1/register"))
        .json(&req)
        .send()
        .await
        .unwrap();
    let (status, _, message) = refusal(resp).await;
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("deleted account"));
    let users: UserList = admin(&http, &server, "GET", "/v1/admin/users", &owner.token, None).await;
    assert_eq!(users.users.len(), 2);
    assert!(has_event(
        &events(&http, &server, &owner.token).await,
        SecurityEventKind::AccountDeleted,
        None
    ));
    let resp = call(
        &http,
        &server,
        "DELETE",
        "/v1/admin/users/olive",
        Some(&owner.token),
        None,
    )
    .await;
    assert_eq!(resp.status(), 403);
    pool.close().await;
    server.stop().await;
}

#[tokio::test]
async fn access_policy_username_pattern_and_forced_two_factor() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual();
    let server = start(dir.path(), Registration::Open, &clock).await;
    let http = reqwest::Client::new();
    let owner = register(&http, &server, "olive", 1, None).await;
    let mia = register(&http, &server, "mia", 2, None).await;
    let _: UserSummary = admin(
        &http,
        &server,
        "POST",
        "/v1/admin/users/mia/role",
        &owner.token,
        Some(json!({"role": "admin"})),
    )
    .await;
    enrol(&http, &server, &clock, &owner).await;

    let policy: AccessPolicy =
        admin(&http, &server, "GET", "/v1/admin/access", &mia.token, None).await;
    assert_eq!(policy, AccessPolicy::default());
    // Only owners change it; bad documents are refused whole.
    refused(
        &http,
        &server,
        "PUT",
        "/v1/admin/access",
        &mia.token,
        Some(json!({})),
    )
    .await;
    for bad in [
        json!({"username_pattern": "("}),
        json!({"username_pattern": "a{1000}{1000}{1000}"}),
        json!({"max_group_users": 0}),
        json!({"max_group_users": 5000}),
        json!({"no_such_field": true}),
    ] {
        let resp = call(
            &http,
            &server,
            "PUT",
            "/v1/admin/access",
            Some(&owner.token),
            Some(bad.clone()),
        )
        .await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let set: AccessPolicy = admin(
        &http,
        &server,
        "PUT",
        "/v1/admin/access",
        &owner.token,
        Some(json!({"username_pattern": "[a-z]+", "members_may_create_groups": false})),
    )
    .await;
    assert_eq!(set.username_pattern.as_deref(), Some("[a-z]+"));

    let (req, _) = register_request("bad.name", 5, None);
    let resp = http
        .post(server.url("/v1/register"))
        .json(&req)
        .send()
        .await
        .unwrap();
    let (status, code, message) = refusal(resp).await;
    assert_eq!((status, code), (400, ErrorCode::InvalidUsername));
    assert!(message.contains("[a-z]+"), "{message}");
    let gus = register(&http, &server, "gus", 6, None).await;

    // Forced 2FA for admins: mia (admin) is held to enrolment, gus is not.
    let _: AccessPolicy = admin(
        &http,
        &server,
        "PUT",
        "/v1/admin/access",
        &owner.token,
        Some(json!({"require_two_factor": "admins"})),
    )
    .await;
    let (status, code, message) = refusal(
        call(
            &http,
            &server,
            "GET",
            "/v1/admin/users",
            Some(&mia.token),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((status, code), (403, ErrorCode::TwoFactorEnrolmentRequired));
    assert!(message.contains("rampart 2fa enable"), "{message}");
    let resp = call(&http, &server, "GET", "/v1/devices", Some(&mia.token), None).await;
    assert_eq!(refusal(resp).await.1, ErrorCode::TwoFactorEnrolmentRequired);
    assert!(try_connect(&server, Some(&mia.token)).await.is_err());
    assert_eq!(
        call(&http, &server, "GET", "/v1/devices", Some(&gus.token), None)
            .await
            .status(),
        200
    );
    assert_eq!(whoami(&http, &server, &mia.token).await.role, Role::Admin);
    assert_eq!(
        call(&http, &server, "GET", "/v1/2fa", Some(&mia.token), None)
            .await
            .status(),
        200
    );
    // Enrolling opens everything again.
    enrol(&http, &server, &clock, &mia).await;
    let users: UserList = admin(&http, &server, "GET", "/v1/admin/users", &mia.token, None).await;
    assert!(
        users
            .users
            .iter()
            .any(|u| u.username.as_str() == "mia" && u.two_factor)
    );
    // For everyone: gus is held too; the owner without 2FA as well.
    let _: AccessPolicy = admin(
        &http,
        &server,
        "PUT",
        "/v1/admin/access",
        &owner.token,
        Some(json!({"require_two_factor": "all"})),
    )
    .await;
    let resp = call(&http, &server, "GET", "/v1/devices", Some(&gus.token), None).await;
    assert_eq!(refusal(resp).await.1, ErrorCode::TwoFactorEnrolmentRequired);
    let _: AccessPolicy = admin(
        &http,
        &server,
        "GET",
        "/v1/admin/access",
        &owner.token,
        None,
    )
    .await;
    assert_eq!(
        call(&http, &server, "POST", "/v1/logout", Some(&gus.token), None)
            .await
            .status(),
        204
    );
    let events: SecurityEventList = ok(call(
        &http,
        &server,
        "GET",
        "/v1/security-events",
        Some(&mia.token),
        None,
    )
    .await)
    .await;
    assert!(has_event(&events, SecurityEventKind::AccessDenied, None));
    server.stop().await;

    // The policy survives a restart.
    let server = start(dir.path(), Registration::Open, &clock).await;
    let resp = call(&http, &server, "GET", "/v1/devices", Some(&gus.token), None).await;
    assert_eq!(resp.status(), 401, "logged out");
    let policy: AccessPolicy =
        admin(&http, &server, "GET", "/v1/admin/access", &mia.token, None).await;
    assert_eq!(policy.require_two_factor, TwoFactorRequirement::All);
    // PUT replaces the whole document: what the last one left out is default.
    assert!(policy.members_may_create_groups && policy.username_pattern.is_none());
    server.stop().await;
}

#[tokio::test]
async fn sessions_are_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::system();
    let server = start(dir.path(), Registration::Open, &clock).await;
    let http = reqwest::Client::new();
    let owner = register(&http, &server, "olive", 1, None).await;
    let mia = register(&http, &server, "mia", 2, None).await;
    let second: rampart_proto::api::SessionResponse =
        ok(login(&http, &server, &mia, PASSWORD).await).await;

    let all: SessionList = admin(
        &http,
        &server,
        "GET",
        "/v1/admin/sessions",
        &owner.token,
        None,
    )
    .await;
    assert_eq!(all.sessions.len(), 3);
    let mine: SessionList = admin(
        &http,
        &server,
        "GET",
        "/v1/admin/sessions?user=mia",
        &owner.token,
        None,
    )
    .await;
    assert_eq!(mine.sessions.len(), 2);
    assert!(
        mine.sessions
            .iter()
            .all(|s| s.session_id.len() == 16 && s.username.as_str() == "mia")
    );
    // Never the token itself.
    let text = call(
        &http,
        &server,
        "GET",
        "/v1/admin/sessions",
        Some(&owner.token),
        None,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(!text.contains(&mia.token) && !text.contains(&second.token));
    let resp = call(
        &http,
        &server,
        "GET",
        "/v1/admin/sessions?user=nobody",
        Some(&owner.token),
        None,
    )
    .await;
    assert_eq!(resp.status(), 404);

    // Revoke the newest (the second login's) session.
    let id = &mine.sessions[0].session_id;
    let resp = call(
        &http,
        &server,
        "POST",
        &format!("/v1/admin/sessions/{id}/revoke"),
        Some(&owner.token),
        None,
    )
    .await;
    assert_eq!(resp.status(), 204);
    let still = [&mia.token, &second.token];
    let mut alive = 0;
    for token in still {
        if call(&http, &server, "GET", "/v1/me", Some(token), None)
            .await
            .status()
            == 200
        {
            alive += 1;
        }
    }
    assert_eq!(alive, 1);
    for bad in [id.as_str(), "zz", "0123", &"f".repeat(65)] {
        let resp = call(
            &http,
            &server,
            "POST",
            &format!("/v1/admin/sessions/{bad}/revoke"),
            Some(&owner.token),
            None,
        )
        .await;
        assert_eq!(resp.status(), 404, "{bad}");
    }
    // An admin cannot end an owner's session; a member cannot list them.
    let _: UserSummary = admin(
        &http,
        &server,
        "POST",
        "/v1/admin/users/mia/role",
        &owner.token,
        Some(json!({"role": "admin"})),
    )
    .await;
    let owners: SessionList = admin(
        &http,
        &server,
        "GET",
        "/v1/admin/sessions?user=olive",
        &owner.token,
        None,
    )
    .await;
    let token = if call(&http, &server, "GET", "/v1/me", Some(&mia.token), None)
        .await
        .status()
        == 200
    {
        &mia.token
    } else {
        &second.token
    };
    let path = format!(
        "/v1/admin/sessions/{}/revoke",
        owners.sessions[0].session_id
    );
    refused(&http, &server, "POST", &path, token, None).await;
    let groups: AdminGroupList =
        admin(&http, &server, "GET", "/v1/admin/groups", token, None).await;
    assert!(groups.groups.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn console_needs_a_stopped_server_and_keeps_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::system();
    let server = start(dir.path(), Registration::Open, &clock).await;
    let http = reqwest::Client::new();
    let owner = register(&http, &server, "olive", 1, None).await;
    let mia = register(&http, &server, "mia", 2, None).await;

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
    server.stop().await;

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
    let server = start(dir.path(), Registration::Open, &clock).await;
    assert_eq!(
        call(&http, &server, "GET", "/v1/me", Some(&owner.token), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        refusal(login(&http, &server, &mia, PASSWORD).await).await.1,
        ErrorCode::BadCredentials
    );
    server.stop().await;
}
