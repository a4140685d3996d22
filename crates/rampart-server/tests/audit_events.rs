//! The audit log against a real server on loopback with a manual clock:
//! every kind of entry is recorded by the action that causes it — once,
//! right after it, naming who did it to what and how it ended — and read
//! back through `GET /v1/admin/audit` as an owner does.
//!
//! Each check takes a mark (the newest entry's id) before an action and
//! reads what came after it ([`World::audited`]), so an entry that existed
//! before the action, or that the action recorded twice, fails the check. Listing the log is
//! itself an admin API call and is audited; those entries of the owner's
//! own listings are left out of what the checks compare (and checked on
//! their own in [`every_admin_api_call_with_a_session_is_audited_and_none_without`]).
//!
//! Then the whole log of a scenario that does everything is verified with
//! its signing key and checkpoints, and searched for the secrets and the
//! content the scenario used (passwords, codes, tokens, invite codes, TOTP
//! secrets, a message's plaintext and ciphertext, a DLP report's extra
//! fields): none may reach an audit row or the listing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::*;
use rampart_proto::admin::{AccessPolicy, Invite, SessionList};
use rampart_proto::api::{RecoveryCodes, SessionResponse, TotpSetup};
use rampart_proto::audit::{
    AuditCheckpoint, AuditCheckpointList, AuditEntry, AuditKey, AuditPage, CheckpointReason,
    GENESIS, Outcome,
};
use rampart_proto::frame::{ClientFrame, Create, ServerFrame};
use rampart_proto::group::{GroupRole, GroupSettings};
use rampart_proto::{DeviceId, GroupId, IdempotencyKey};
use rampart_server::{
    AdminConsole, Clock, PolicyHandle, RateLimits, Registration, Server, ServerConfig, totp,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::Digest as _;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// The password `register_request` gives every account.
const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a quite different passphrase";
/// The owner, who reads the log.
const OWNER: &str = "olive";
/// The target of the owner's own listings of the log.
const LISTING: &str = "route:GET /v1/admin/audit";
const LOOPBACK: &str = "127.0.0.1";

// ---- the world -----------------------------------------------------------------

/// A server with a manual clock, invite-only registration and an owner
/// (registered with the first-start invite).
struct World {
    dir: tempfile::TempDir,
    clock: Clock,
    config: ServerConfig,
    server: Option<TestServer>,
    policies: PolicyHandle,
    http: reqwest::Client,
    owner: Account,
    first_invite: String,
    last_device: Cell<u64>,
}

/// Opens and serves a server on `dir`; its DLP policy handle comes along.
async fn open(config: &ServerConfig, dir: &Path, clock: &Clock) -> (TestServer, PolicyHandle) {
    let config = ServerConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config.clone()
    };
    let server = Server::open_with_clock(config, clock.clone())
        .await
        .unwrap();
    let policies = server.policy_handle();
    (TestServer::serve(server).await, policies)
}

impl World {
    async fn new() -> Self {
        Self::with(ServerConfig::default()).await
    }

    async fn with(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual();
        let config = ServerConfig {
            registration: Registration::Invite,
            ..config
        };
        let (server, policies) = open(&config, dir.path(), &clock).await;
        let http = reqwest::Client::new();
        let first_invite = server
            .first_invite
            .clone()
            .expect("a fresh server makes a first invite");
        let owner = register(&http, &server, OWNER, 1, Some(&first_invite)).await;
        Self {
            dir,
            clock,
            config,
            server: Some(server),
            policies,
            http,
            owner,
            first_invite,
            last_device: Cell::new(1),
        }
    }

    fn s(&self) -> &TestServer {
        self.server.as_ref().expect("the server runs")
    }

    fn next_device(&self) -> u64 {
        self.last_device.set(self.last_device.get() + 1);
        self.last_device.get()
    }

    async fn stop_server(&mut self) {
        self.server.take().expect("the server runs").stop().await;
    }

    async fn start_server(&mut self) {
        assert!(self.server.is_none());
        let (server, policies) = open(&self.config, self.dir.path(), &self.clock).await;
        self.server = Some(server);
        self.policies = policies;
    }

    async fn restart(&mut self) {
        self.stop_server().await;
        self.start_server().await;
    }

    async fn req(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        call(&self.http, self.s(), method, path, token, body).await
    }

    /// A POST as the session of `token`.
    async fn post(&self, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
        self.req("POST", path, Some(token), body).await
    }

    /// A call as the owner that must answer 200 with `T`.
    async fn as_owner<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> T {
        ok(self.req(method, path, Some(&self.owner.token), body).await).await
    }

    async fn login(
        &self,
        name: &str,
        password: &str,
        device: DeviceId,
        code: Option<&str>,
    ) -> reqwest::Response {
        let mut body = json!({"username": name, "password": password, "device_id": device});
        if let Some(code) = code {
            body["totp"] = json!(code);
        }
        self.req("POST", "/v1/login", None, Some(body)).await
    }

    /// The owner signs in again (after the clock idled the session out).
    async fn owner_login(&mut self) {
        let session: SessionResponse =
            ok(self.login(OWNER, PASSWORD, self.owner.device, None).await).await;
        self.owner.token = session.token;
    }

    /// Invited by the owner with `role`, registered with a new device.
    async fn join(&self, name: &str, role: &str) -> Account {
        let invite: Invite = self
            .as_owner("POST", "/v1/admin/invites", Some(json!({ "role": role })))
            .await;
        let device = self.next_device();
        register(&self.http, self.s(), name, device, Some(&invite.code)).await
    }

    /// The current TOTP code.
    fn code(&self, secret: &[u8]) -> String {
        totp::code(secret, self.clock.unix_secs())
    }

    /// Moves the clock to the next TOTP step, so that a fresh code is usable.
    fn next_step(&self) {
        self.clock.advance(Duration::from_secs(totp::STEP_SECS));
    }

    /// Sets up and activates TOTP; returns the secret (raw and base32)
    /// and the recovery codes, with the clock on the next step.
    async fn enrol(&self, account: &Account, password: &str) -> (Vec<u8>, String, Vec<String>) {
        let body = json!({ "password": password });
        let resp = self.post("/v1/2fa/setup", &account.token, Some(body)).await;
        let setup: TotpSetup = ok(resp).await;
        let secret = totp::base32_decode(&setup.secret).unwrap();
        let body = json!({ "code": self.code(&secret) });
        let resp = self
            .post("/v1/2fa/activate", &account.token, Some(body))
            .await;
        let codes: RecoveryCodes = ok(resp).await;
        self.next_step();
        (secret, setup.secret, codes.codes)
    }

    // ---- reading the log ----

    async fn page_text(&self, query: &str) -> String {
        let resp = self
            .req(
                "GET",
                &format!("/v1/admin/audit{query}"),
                Some(&self.owner.token),
                None,
            )
            .await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        text
    }

    async fn page(&self, query: &str) -> AuditPage {
        serde_json::from_str(&self.page_text(query).await).unwrap()
    }

    /// The id of the newest entry (0 for none).
    async fn mark(&self) -> u64 {
        self.page("?newest_first=true&limit=1")
            .await
            .entries
            .first()
            .map_or(0, |e| e.id)
    }

    /// Every entry after `mark`, oldest first, the owner's listings included.
    async fn since_raw(&self, mark: u64) -> Vec<AuditEntry> {
        let mut out = Vec::new();
        let mut after = mark;
        loop {
            let page = self.page(&format!("?after={after}")).await;
            out.extend(page.entries);
            match page.next_after {
                Some(next) => after = next,
                None => return out,
            }
        }
    }

    /// Every entry after `mark`, oldest first, but the owner's listings.
    async fn since(&self, mark: u64) -> Vec<AuditEntry> {
        let mut all = self.since_raw(mark).await;
        all.retain(|e| !is_listing(e));
        all
    }

    /// [`Self::since`], whose actions (admin API calls aside) must be
    /// `actions`, in order.
    async fn since_expecting(&self, mark: u64, actions: &[&str]) -> Vec<AuditEntry> {
        let new = self.since(mark).await;
        assert_eq!(kinds(&new), actions, "{new:#?}");
        new
    }

    /// Runs `act` between a mark and the read after it: returns what `act`
    /// returned and the entries it made (see [`Self::since_expecting`]).
    async fn audited<T>(
        &self,
        actions: &[&str],
        act: impl Future<Output = T>,
    ) -> (T, Vec<AuditEntry>) {
        let mark = self.mark().await;
        let out = act.await;
        (out, self.since_expecting(mark, actions).await)
    }

    /// [`Self::audited`] for an `act` that makes one entry of `action`
    /// (and perhaps its admin API call): returns that entry.
    async fn audited_one<T>(&self, action: &str, act: impl Future<Output = T>) -> (T, AuditEntry) {
        let (out, new) = self.audited(&[action], act).await;
        (out, only(&new, action).clone())
    }

    /// The whole log, oldest first, read in pages of `limit`.
    async fn everything(&self, limit: usize) -> Vec<AuditEntry> {
        let mut out = Vec::new();
        let mut query = format!("?limit={limit}");
        loop {
            let page = self.page(&query).await;
            out.extend(page.entries);
            match page.next_after {
                Some(next) => query = format!("?limit={limit}&after={next}"),
                None => return out,
            }
        }
    }
}

/// One of the owner's listings of the log (audited like any admin call).
fn is_listing(e: &AuditEntry) -> bool {
    e.action == "admin_api"
        && e.target.as_deref() == Some(LISTING)
        && e.actor.as_deref() == Some(OWNER)
}

/// The actions of `entries` but admin API calls, in order.
fn kinds(entries: &[AuditEntry]) -> Vec<&str> {
    entries
        .iter()
        .filter(|e| e.action != "admin_api")
        .map(|e| e.action.as_str())
        .collect()
}

/// The one entry of `action` among `entries`.
#[track_caller]
fn only<'a>(entries: &'a [AuditEntry], action: &str) -> &'a AuditEntry {
    let found: Vec<&AuditEntry> = entries.iter().filter(|e| e.action == action).collect();
    assert_eq!(found.len(), 1, "expected one {action}, got {entries:#?}");
    found[0]
}

fn all_of<'a>(entries: &'a [AuditEntry], action: &str) -> Vec<&'a AuditEntry> {
    entries.iter().filter(|e| e.action == action).collect()
}

/// Who, to what, how it ended.
#[track_caller]
fn expect(e: &AuditEntry, actor: Option<&str>, target: Option<&str>, outcome: Outcome) {
    assert_eq!(e.actor.as_deref(), actor, "actor of {e:#?}");
    assert_eq!(e.target.as_deref(), target, "target of {e:#?}");
    assert_eq!(e.outcome, outcome, "outcome of {e:#?}");
}

#[track_caller]
fn detail<'a>(e: &'a AuditEntry, key: &str) -> &'a str {
    e.detail
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {key} in {e:#?}"))
}

fn json_of(e: &AuditEntry) -> String {
    serde_json::to_string(e).unwrap()
}

/// The epoch, and the devices added and removed, of a commit's entry.
#[track_caller]
fn commit_detail(e: &AuditEntry) -> [&str; 3] {
    ["epoch", "added", "removed"].map(|k| detail(e, k))
}

fn group_target(id: &GroupId) -> String {
    format!("group:{}", hex::encode(id.as_bytes()))
}

fn user(name: &str) -> String {
    format!("user:{name}")
}

/// A code that none of the steps around now accepts.
fn wrong_code(secret: &[u8], clock: &Clock) -> String {
    let now = clock.unix_secs();
    let step = totp::STEP_SECS;
    let valid: Vec<String> = [now - 2 * step, now - step, now, now + step, now + 2 * step]
        .iter()
        .map(|t| totp::code(secret, *t))
        .collect();
    ["000000", "111111", "222222", "333333", "444444", "555555"]
        .into_iter()
        .find(|c| !valid.iter().any(|v| v == c))
        .unwrap()
        .to_owned()
}

// ---- MLS over the WebSocket --------------------------------------------------

/// Sends one frame as the session of `token` on a fresh connection (after
/// its backlog) and returns the answer.
async fn request(server: &TestServer, token: &str, frame: &ClientFrame) -> ServerFrame {
    let mut ws = connect(server, token).await;
    loop {
        match recv(&mut ws).await {
            Some(ServerFrame::BacklogDone { .. }) => break,
            Some(ServerFrame::Deliver(_) | ServerFrame::PolicyChanged { .. }) => {}
            other => panic!("expected the backlog, got {other:?}"),
        }
    }
    send(&mut ws, frame).await;
    let answer = answer_to(&mut ws, request_id(frame)).await;
    let _ = ws.close(None).await;
    answer
}

/// Sends and expects it accepted at `epoch` (of the group after a commit).
#[track_caller]
fn accepted(answer: &ServerFrame, epoch: u64) {
    assert!(
        matches!(answer, ServerFrame::Accepted { epoch: e, duplicate: false, .. } if *e == epoch),
        "{answer:?}"
    );
}

/// An application message to `group`.
fn text_frame(group: GroupId, message: Vec<u8>) -> ClientFrame {
    message_frame(group, IdempotencyKey(rand::random()), None, message)
}

// ---- security events -----------------------------------------------------------

/// Registration, logins (good, bad, unknown name), the whole second-factor
/// life, a password change, a device linked and revoked, a lockout and a
/// member knocking on the admin API: each recorded once, by the account
/// that acted (nobody for an unknown name), from loopback.
#[tokio::test]
async fn security_events_are_audited_by_the_action_that_causes_them() {
    let mut w = World::new().await;

    // Registering: the account and its first device.
    let registering = w.join("alice", "member");
    let (alice, new) = w
        .audited(
            &["invite_created", "registered", "device_added"],
            registering,
        )
        .await;
    for action in ["registered", "device_added"] {
        let e = only(&new, action);
        expect(e, Some("alice"), None, Outcome::Success);
        assert_eq!(e.device, Some(alice.device));
        assert_eq!(e.ip.as_deref(), Some(LOOPBACK));
    }

    // A login.
    let login = w.login("alice", PASSWORD, alice.device, None);
    let (resp, e) = w.audited_one("login_succeeded", login).await;
    let _: SessionResponse = ok(resp).await;
    expect(&e, Some("alice"), None, Outcome::Success);
    assert_eq!(e.device, Some(alice.device));
    assert_eq!(e.ip.as_deref(), Some(LOOPBACK));

    // A login for a name nobody has: nobody acted, and the name is not kept.
    let login = w.login("nobody7", "some password!", alice.device, None);
    let (resp, e) = w.audited_one("login_failed", login).await;
    assert_eq!(error_of(resp).await.0, 401);
    expect(&e, None, None, Outcome::Failure);
    assert_eq!(e.ip.as_deref(), Some(LOOPBACK));
    assert!(!json_of(&e).contains("nobody7"), "{e:#?}");

    // A wrong password for a real account.
    let login = w.login("alice", "wrong password!!", alice.device, None);
    let (resp, e) = w.audited_one("login_failed", login).await;
    assert_eq!(error_of(resp).await.0, 401);
    expect(&e, Some("alice"), None, Outcome::Failure);

    // Two-factor enrolment: starting it records nothing; a wrong code is a
    // failure; the right one enables it.
    let password = Some(json!({ "password": PASSWORD }));
    let starting = w.post("/v1/2fa/setup", &alice.token, password);
    let (resp, _) = w.audited(&[], starting).await;
    let setup: TotpSetup = ok(resp).await;
    let secret = totp::base32_decode(&setup.secret).unwrap();
    let activate = |code: String| {
        let body = Some(json!({ "code": code }));
        w.post("/v1/2fa/activate", &alice.token, body)
    };
    let wrong = activate(wrong_code(&secret, &w.clock));
    let (resp, e) = w.audited_one("two_factor_failed", wrong).await;
    assert_eq!(resp.status(), 401);
    expect(&e, Some("alice"), None, Outcome::Failure);
    assert_eq!(e.ip.as_deref(), Some(LOOPBACK));

    let right = activate(w.code(&secret));
    let (resp, e) = w.audited_one("two_factor_enabled", right).await;
    let _: RecoveryCodes = ok(resp).await;
    expect(&e, Some("alice"), None, Outcome::Success);
    assert_eq!(e.device, Some(alice.device));
    w.next_step();

    // A wrong code at login.
    let wrong = wrong_code(&secret, &w.clock);
    let login = w.login("alice", PASSWORD, alice.device, Some(&wrong));
    let (resp, e) = w.audited_one("two_factor_failed", login).await;
    assert_eq!(resp.status(), 401);
    expect(&e, Some("alice"), None, Outcome::Failure);

    // New recovery codes.
    let body = Some(json!({ "code": w.code(&secret) }));
    let regenerate = w.post("/v1/2fa/recovery-codes", &alice.token, body);
    let (resp, e) = w
        .audited_one("recovery_codes_regenerated", regenerate)
        .await;
    let codes: RecoveryCodes = ok(resp).await;
    expect(&e, Some("alice"), None, Outcome::Success);
    assert_eq!(e.device, Some(alice.device));
    w.next_step();

    // A login with one of them.
    let login = w.login("alice", PASSWORD, alice.device, Some(&codes.codes[0]));
    let (resp, new) = w
        .audited(&["recovery_code_used", "login_succeeded"], login)
        .await;
    let _: SessionResponse = ok(resp).await;
    let e = only(&new, "recovery_code_used");
    expect(e, Some("alice"), None, Outcome::Success);
    assert_eq!(e.device, Some(alice.device));

    // Turning two-factor authentication off.
    let body = Some(json!({ "password": PASSWORD, "code": w.code(&secret) }));
    let disable = w.post("/v1/2fa/disable", &alice.token, body);
    let (resp, e) = w.audited_one("two_factor_disabled", disable).await;
    assert_eq!(resp.status(), 204);
    expect(&e, Some("alice"), None, Outcome::Success);
    assert_eq!(e.device, Some(alice.device));
    w.next_step();

    // A new password.
    let body = Some(json!({ "old_password": PASSWORD, "new_password": NEW_PASSWORD }));
    let change = w.post("/v1/password", &alice.token, body);
    let (resp, e) = w.audited_one("password_changed", change).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    expect(&e, Some("alice"), None, Outcome::Success);
    assert_eq!(e.device, Some(alice.device));
    assert_eq!(e.ip.as_deref(), Some(LOOPBACK));

    // A device linked, then revoked by the account itself.
    let phone = w.next_device();
    let phone_id = DeviceId::new(phone).unwrap();
    let link = link_device(&w.http, w.s(), &alice, phone);
    let (_phone_token, e) = w.audited_one("device_added", link).await;
    expect(&e, Some("alice"), None, Outcome::Success);
    assert_eq!(e.device, Some(phone_id));

    let path = format!("/v1/devices/{phone_id}/revoke");
    let revoke = w.post(&path, &alice.token, None);
    let (resp, e) = w.audited_one("device_revoked", revoke).await;
    assert_eq!(resp.status(), 204);
    expect(&e, Some("alice"), None, Outcome::Success);
    assert_eq!(e.device, Some(phone_id));

    // Repeated failures lock the account: five failures, one lock; the
    // refused attempt while locked is not a failure (nothing was checked).
    let bob = w.join("bob", "member").await;
    let m = w.mark().await;
    for _ in 0..5 {
        let resp = w.login("bob", "wrong password!!", bob.device, None).await;
        assert_eq!(resp.status(), 401);
    }
    let resp = w.login("bob", PASSWORD, bob.device, None).await;
    assert_eq!(resp.status(), 429);
    let new = w.since(m).await;
    let security: Vec<&str> = kinds(&new)
        .into_iter()
        .filter(|k| *k != "alert_fired")
        .collect();
    assert_eq!(
        security,
        [
            "login_failed",
            "login_failed",
            "login_failed",
            "login_failed",
            "login_failed",
            "locked"
        ],
        "{new:#?}"
    );
    for e in all_of(&new, "login_failed") {
        expect(e, Some("bob"), None, Outcome::Failure);
    }
    let e = only(&new, "locked");
    expect(e, Some("bob"), None, Outcome::Failure);
    assert_eq!(e.ip.as_deref(), Some(LOOPBACK));
    assert_eq!(detail(e, "locked"), "account");

    // A member calling the admin API: refused, as the account's refusal and
    // as the call.
    let listing = w.req("GET", "/v1/admin/users", Some(&alice.token), None);
    let (resp, new) = w.audited(&["access_denied"], listing).await;
    assert_eq!(error_of(resp).await.0, 403);
    let e = only(&new, "access_denied");
    expect(e, Some("alice"), None, Outcome::Denied);
    assert_eq!(e.device, Some(alice.device));
    assert_eq!(e.ip.as_deref(), Some(LOOPBACK));
    let call = only(&new, "admin_api");
    expect(
        call,
        Some("alice"),
        Some("route:GET /v1/admin/users"),
        Outcome::Denied,
    );
    assert_eq!(detail(call, "status"), "403");
    assert!(call.id > e.id);

    w.stop_server().await;
}

/// Sessions idle for longer than allowed expire when next used, and that
/// is recorded once, for the account, from where it was used.
#[tokio::test]
async fn an_idle_session_expiring_is_audited_when_next_used() {
    let mut w = World::with(ServerConfig {
        session_idle_secs: 3600,
        ..ServerConfig::default()
    })
    .await;
    let alice = w.join("alice", "member").await;
    let m = w.mark().await;
    w.clock.advance(Duration::from_secs(3601));
    for _ in 0..2 {
        let (status, _) = error_of(w.req("GET", "/v1/me", Some(&alice.token), None).await).await;
        assert_eq!(status, 401);
    }
    // The owner's session idled out too; reading the log needs a new one.
    w.owner_login().await;
    let new = w
        .since_expecting(m, &["session_expired", "login_succeeded"])
        .await;
    let e = only(&new, "session_expired");
    expect(e, Some("alice"), None, Outcome::Success);
    assert_eq!(e.device, Some(alice.device));
    assert_eq!(e.ip.as_deref(), Some(LOOPBACK));
    w.stop_server().await;
}

// ---- administration ------------------------------------------------------------

/// Each administrative action is one entry by the administrator, naming
/// the account it was done to (the account's own copy in its security log
/// is not audited again); refusals are the administrator's
/// `access_denied`; the alerts on granting admin and disabling fire.
#[tokio::test]
async fn administrative_actions_are_audited_once_by_the_administrator() {
    let mut w = World::new().await;
    let mia = w.join("mia", "member").await;
    let phone = w.next_device();
    let phone_id = DeviceId::new(phone).unwrap();
    let _phone_token = link_device(&w.http, w.s(), &mia, phone).await;
    let mia_target = user("mia");
    let owner_device = w.owner.device;
    let by_owner = |e: &AuditEntry| {
        expect(e, Some(OWNER), Some(&mia_target), Outcome::Success);
        // A revocation names the device revoked instead.
        if e.action != "device_revoked" {
            assert_eq!(e.device, Some(owner_device), "the administrator's: {e:#?}");
        }
    };
    let role = |role: &str| Some(json!({ "role": role }));

    // An invite: its role and lifetime, never its code.
    let body = Some(json!({ "role": "guest", "expires_in_secs": 3600 }));
    let inviting = w.as_owner::<Invite>("POST", "/v1/admin/invites", body);
    let (invite, new) = w.audited(&["invite_created"], inviting).await;
    let e = only(&new, "invite_created");
    expect(e, Some(OWNER), None, Outcome::Success);
    assert_eq!(e.device, Some(owner_device));
    assert_eq!(detail(e, "role"), "guest");
    assert_eq!(detail(e, "expires_in_secs"), "3600");
    assert_eq!(e.ip.as_deref(), Some(LOOPBACK));
    for entry in &new {
        assert!(!json_of(entry).contains(&invite.code), "{entry:#?}");
    }

    // The operator's invite through the data directory, while the server
    // runs (`rampart admin invite --data`).
    let inviting = rampart_server::create_invite(w.dir.path());
    let (code, e) = w.audited_one("invite_created", inviting).await;
    let code = code.unwrap();
    expect(&e, Some("operator"), None, Outcome::Success);
    assert_eq!(detail(&e, "role"), "member");
    assert!(!json_of(&e).contains(&code), "{e:#?}");

    // Granting admin: the change, and the alert on it.
    let granting = w.as_owner::<Value>("POST", "/v1/admin/users/mia/role", role("admin"));
    let (_, new) = w.audited(&["role_changed", "alert_fired"], granting).await;
    let e = only(&new, "role_changed");
    by_owner(e);
    assert_eq!((detail(e, "role"), detail(e, "from")), ("admin", "member"));
    assert_eq!(e.ip.as_deref(), Some(LOOPBACK));
    let alert = only(&new, "alert_fired");
    expect(
        alert,
        Some("server"),
        Some("rule:admin-role-granted"),
        Outcome::Success,
    );
    assert_eq!(detail(alert, "key"), user("mia"));
    assert_eq!(detail(alert, "last_entry"), e.id.to_string());

    // Back to member: no alert.
    let demoting = w.as_owner::<Value>("POST", "/v1/admin/users/mia/role", role("member"));
    let (_, e) = w.audited_one("role_changed", demoting).await;
    by_owner(&e);
    assert_eq!(
        (detail(&e, "role"), detail(&e, "from")),
        ("member", "admin")
    );

    // A refused action: the administrator's access_denied, naming the
    // account aimed at, and no change.
    let path = "/v1/admin/users/olive/role";
    let refused = w.post(path, &w.owner.token, role("member"));
    let (resp, new) = w.audited(&["access_denied"], refused).await;
    assert_eq!(error_of(resp).await.0, 403);
    let e = only(&new, "access_denied");
    expect(e, Some(OWNER), Some(&user(OWNER)), Outcome::Denied);
    assert!(!detail(e, "reason").is_empty());
    let call = only(&new, "admin_api");
    expect(
        call,
        Some(OWNER),
        Some("route:POST /v1/admin/users/olive/role"),
        Outcome::Denied,
    );

    // Ending one of mia's sessions.
    let sessions: SessionList = w.as_owner("GET", "/v1/admin/sessions?user=mia", None).await;
    let on_phone = sessions
        .sessions
        .iter()
        .find(|s| s.device_id == phone_id)
        .unwrap();
    let path = format!("/v1/admin/sessions/{}/revoke", on_phone.session_id);
    let ending = w.post(&path, &w.owner.token, None);
    let (resp, e) = w.audited_one("session_revoked", ending).await;
    assert_eq!(resp.status(), 204);
    by_owner(&e);

    // Resetting her second factor (which ends her sessions).
    let (_secret, _, _) = w.enrol(&mia, PASSWORD).await;
    let resetting = w.as_owner::<Value>("POST", "/v1/admin/users/mia/2fa-reset", None);
    let (_, e) = w.audited_one("two_factor_reset", resetting).await;
    by_owner(&e);

    // Disabling: the account, each device it revoked (by the
    // administrator, not the account), and the alert on it.
    let m = w.mark().await;
    let _: Value = w
        .as_owner("POST", "/v1/admin/users/mia/disable", None)
        .await;
    let new = w.since(m).await;
    let mut sorted = kinds(&new);
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "account_disabled",
            "alert_fired",
            "device_revoked",
            "device_revoked"
        ],
        "{new:#?}"
    );
    by_owner(only(&new, "account_disabled"));
    let revoked = all_of(&new, "device_revoked");
    for r in &revoked {
        by_owner(r);
    }
    let devices: BTreeSet<DeviceId> = revoked.iter().filter_map(|r| r.device).collect();
    assert_eq!(devices, BTreeSet::from([mia.device, phone_id]));
    let alert = only(&new, "alert_fired");
    expect(
        alert,
        Some("server"),
        Some("rule:user-disabled"),
        Outcome::Success,
    );
    assert_eq!(detail(alert, "key"), user("mia"));

    // Disabling again changes nothing and records nothing but the call.
    let disabling = w.as_owner::<Value>("POST", "/v1/admin/users/mia/disable", None);
    w.audited(&[], disabling).await;

    // Enabling.
    let enabling = w.as_owner::<Value>("POST", "/v1/admin/users/mia/enable", None);
    let (_, e) = w.audited_one("account_enabled", enabling).await;
    by_owner(&e);

    // The access policy: which document, by its hash.
    let policy = AccessPolicy {
        members_may_create_groups: false,
        ..AccessPolicy::default()
    };
    let body = Some(serde_json::to_value(&policy).unwrap());
    let setting = w.as_owner::<AccessPolicy>("PUT", "/v1/admin/access", body);
    let (stored, e) = w.audited_one("access_policy_changed", setting).await;
    expect(&e, Some(OWNER), Some("policy:access"), Outcome::Success);
    let document = serde_json::to_string(&stored).unwrap();
    assert_eq!(
        detail(&e, "document_sha256"),
        hex::encode(sha2::Sha256::digest(document.as_bytes()))
    );

    // Deleting an account with a live device: the device, then the account,
    // by its name (the row is renamed to a husk).
    let dan = w.join("dan", "member").await;
    let deleting = w.req("DELETE", "/v1/admin/users/dan", Some(&w.owner.token), None);
    let (resp, new) = w
        .audited(&["device_revoked", "account_deleted"], deleting)
        .await;
    assert_eq!(resp.status(), 204);
    let e = only(&new, "device_revoked");
    expect(e, Some(OWNER), Some(&user("dan")), Outcome::Success);
    assert_eq!(e.device, Some(dan.device));
    let e = only(&new, "account_deleted");
    expect(e, Some(OWNER), Some(&user("dan")), Outcome::Success);
    for entry in &new {
        assert!(!json_of(entry).contains("deleted-"), "{entry:#?}");
    }

    w.stop_server().await;
}

/// A session calling the admin API, and who the audit log should name.
struct Caller {
    token: String,
    name: &'static str,
    device: DeviceId,
}

impl Caller {
    fn new(token: &str, name: &'static str, device: DeviceId) -> Self {
        Self {
            token: token.to_owned(),
            name,
            device,
        }
    }

    fn call(&self, method: &'static str, path: &str, body: Option<Value>, status: u16) -> Call {
        Call {
            token: Some(self.token.clone()),
            audited_as: Some((self.name, self.device)),
            method,
            path: path.to_owned(),
            body,
            status,
        }
    }
}

/// One call and the status it must get; `audited_as` is `None` when it
/// must not be audited.
struct Call {
    token: Option<String>,
    audited_as: Option<(&'static str, DeviceId)>,
    method: &'static str,
    path: String,
    body: Option<Value>,
    status: u16,
}

impl Call {
    fn unaudited(
        token: Option<&str>,
        method: &'static str,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Self {
        Self {
            token: token.map(str::to_owned),
            audited_as: None,
            method,
            path: path.to_owned(),
            body,
            status,
        }
    }
}

/// Every call of `/v1/admin/…` made with a session is one `admin_api`
/// entry: the caller, the method and path (never the query), the status;
/// refusals are `denied`, other errors `failure`. Calls without a valid
/// session, and calls outside the admin API, are not audited.
#[tokio::test]
async fn every_admin_api_call_with_a_session_is_audited_and_none_without() {
    let mut w = World::new().await;
    let oscar = w.join("oscar", "admin").await;
    let alice = w.join("alice", "member").await;
    let _dora = w.join("dora", "member").await;
    let mia = w.join("mia", "member").await;
    let sessions: SessionList = w.as_owner("GET", "/v1/admin/sessions?user=mia", None).await;
    let mia_session = sessions.sessions[0].session_id.clone();
    let owner = Caller::new(&w.owner.token, OWNER, w.owner.device);
    let oscar = Caller::new(&oscar.token, "oscar", oscar.device);
    let alice = Caller::new(&alice.token, "alice", alice.device);
    let policy = serde_json::to_value(AccessPolicy::default()).unwrap();
    let member = json!({"role": "member"});

    let calls = vec![
        owner.call("GET", "/v1/admin/users", None, 200),
        owner.call("POST", "/v1/admin/invites", Some(member.clone()), 200),
        owner.call(
            "POST",
            "/v1/admin/users/dora/role",
            Some(json!({"role": "guest"})),
            200,
        ),
        owner.call("POST", "/v1/admin/users/dora/disable", None, 200),
        owner.call("POST", "/v1/admin/users/dora/enable", None, 200),
        owner.call("POST", "/v1/admin/users/dora/2fa-reset", None, 200),
        owner.call("GET", "/v1/admin/groups", None, 200),
        owner.call("GET", "/v1/admin/access", None, 200),
        owner.call("PUT", "/v1/admin/access", Some(policy.clone()), 200),
        owner.call("GET", "/v1/admin/sessions?user=olive", None, 200),
        owner.call(
            "POST",
            &format!("/v1/admin/sessions/{mia_session}/revoke"),
            None,
            204,
        ),
        owner.call(
            "GET",
            "/v1/admin/audit?action=registered&newest_first=true",
            None,
            200,
        ),
        owner.call("GET", "/v1/admin/audit/checkpoints", None, 200),
        owner.call("POST", "/v1/admin/audit/checkpoint", None, 200),
        owner.call("GET", "/v1/admin/audit/key", None, 200),
        owner.call("DELETE", "/v1/admin/users/mia", None, 204),
        // An error that is not a refusal.
        owner.call("POST", "/v1/admin/users/nobody7/disable", None, 404),
        // An admin where only owners may; a member anywhere.
        oscar.call("PUT", "/v1/admin/access", Some(policy), 403),
        alice.call("GET", "/v1/admin/users", None, 403),
        alice.call("GET", "/v1/admin/audit", None, 403),
        // No session, a bogus one, an ended one (mia was deleted): not audited.
        Call::unaudited(None, "GET", "/v1/admin/users", None, 401),
        Call::unaudited(Some("bogus"), "GET", "/v1/admin/audit", None, 401),
        Call::unaudited(
            Some(&mia.token),
            "POST",
            "/v1/admin/invites",
            Some(member),
            401,
        ),
        // Outside the admin API, with a session: not an admin call.
        Call::unaudited(Some(&w.owner.token), "GET", "/v1/me", None, 200),
    ];

    for Call {
        token,
        audited_as,
        method,
        path,
        body,
        status,
    } in calls
    {
        let m = w.mark().await;
        let resp = w.req(method, &path, token.as_deref(), body).await;
        let got = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(got, status, "{method} {path}: {text}");
        let new = w.since_raw(m).await;
        // First the listing that took the mark.
        let (first, rest) = new.split_first().expect("the mark's listing");
        assert!(is_listing(first), "{first:#?}");
        let audited: Vec<&AuditEntry> = rest.iter().filter(|e| e.action == "admin_api").collect();
        let Some((name, device)) = audited_as else {
            assert!(audited.is_empty(), "{method} {path}: {audited:#?}");
            continue;
        };
        assert_eq!(audited.len(), 1, "{method} {path}: {new:#?}");
        let e = audited[0];
        let route = format!("route:{method} {}", path.split('?').next().unwrap());
        let outcome = match status {
            200..=299 => Outcome::Success,
            401 | 403 => Outcome::Denied,
            _ => Outcome::Failure,
        };
        expect(e, Some(name), Some(&route), outcome);
        assert_eq!(detail(e, "status"), status.to_string());
        assert_eq!(e.device, Some(device));
        assert_eq!(e.ip.as_deref(), Some(LOOPBACK));
        assert_eq!(e.detail.len(), 1, "{e:#?}");
        // The call's own effects come before it (alerts follow when the
        // log is next sealed).
        assert!(
            rest.iter()
                .filter(|x| x.action != "admin_api" && x.action != "alert_fired")
                .all(|x| x.id < e.id),
            "{method} {path}: {new:#?}"
        );
    }

    // The owner's listing of the log is itself audited.
    let m = w.mark().await;
    let new = w.since_raw(m).await;
    assert_eq!(new.len(), 1, "{new:#?}");
    expect(&new[0], Some(OWNER), Some(LISTING), Outcome::Success);
    assert_eq!(detail(&new[0], "status"), "200");
    w.stop_server().await;
}

// ---- DLP -----------------------------------------------------------------------

/// The DLP policy set by the operator (through the data directory and in
/// process) and each DLP report, by action, with the rule and the group,
/// never the content; a refused batch records nothing.
#[tokio::test]
async fn dlp_policy_changes_and_reports_are_audited() {
    let mut w = World::new().await;
    let alice = w.join("alice", "member").await;

    const POLICY: &str = r#"{"version":1,"detectors":{"card":{"action":"block","min_confidence":"medium"}},"custom":[]}"#;
    let setting = rampart_server::set_dlp_policy(w.dir.path(), POLICY);
    let (revision, e) = w.audited_one("dlp_policy_changed", setting).await;
    assert_eq!(revision.unwrap(), 1);
    expect(&e, Some("operator"), Some("policy:dlp"), Outcome::Success);
    assert_eq!(detail(&e, "revision"), "1");
    assert_eq!(
        detail(&e, "document_sha256"),
        hex::encode(sha2::Sha256::digest(POLICY.as_bytes()))
    );

    let setting = w.policies.set(r#"{"version":1}"#);
    let (revision, e) = w.audited_one("dlp_policy_changed", setting).await;
    assert_eq!(revision.unwrap(), 2);
    expect(&e, Some("operator"), Some("policy:dlp"), Outcome::Success);
    assert_eq!(detail(&e, "revision"), "2");

    // One report of each action.
    let group = GroupId::new_group([7; 31]);
    let rules = [
        ("card", "block"),
        ("custom.project-falcon", "warn"),
        ("iban", "redact"),
        ("email", "audit"),
    ];
    let events: Vec<Value> = rules
        .iter()
        .map(|(rule, action)| {
            json!({"rule": rule, "action": action, "group_id": group, "at": 1_700_000_000_001u64})
        })
        .collect();
    let body = Some(json!({ "events": events }));
    let reporting = w.post("/v1/dlp/events", &alice.token, body);
    let (resp, new) = w
        .audited(
            &["dlp_block", "dlp_warn", "dlp_redact", "dlp_audit"],
            reporting,
        )
        .await;
    assert_eq!(resp.status(), 204);
    for (e, (rule, _)) in new.iter().zip(rules) {
        expect(
            e,
            Some("alice"),
            Some(&group_target(&group)),
            Outcome::Success,
        );
        assert_eq!(e.device, Some(alice.device));
        assert_eq!(
            e.detail,
            BTreeMap::from([("rule".to_owned(), rule.to_owned())])
        );
    }

    // A batch with one bad event is refused whole; without a session too.
    let bad = json!({"events": [
        {"rule": "card", "action": "block", "group_id": group, "at": 1u64},
        {"rule": "card", "action": "shred", "group_id": group, "at": 2u64},
    ]});
    let refused = async {
        let resp = w
            .post("/v1/dlp/events", &alice.token, Some(bad.clone()))
            .await;
        assert_eq!(resp.status(), 400);
        let resp = w.req("POST", "/v1/dlp/events", None, Some(bad)).await;
        assert_eq!(resp.status(), 401);
    };
    w.audited(&[], refused).await;
    w.stop_server().await;
}

// ---- groups --------------------------------------------------------------------

/// Accepted commits over the WebSocket: creating a group, adding and
/// removing members, changing its settings — each once, by the committer's
/// account and device, with the new epoch and the devices added and
/// removed. A self-update and an application message are not audited.
#[tokio::test]
async fn group_commits_are_audited_with_epoch_and_devices() {
    let mut w = World::new().await;
    let ada = w.join("ada", "member").await;
    let gil = w.join("gil", "member").await;
    let meg = w.join("meg", "member").await;
    let bea = w.join("bea", "member").await;
    let (ada_mls, gil_mls, meg_mls, bea_mls) = (
        MlsClient::for_account(&ada),
        MlsClient::for_account(&gil),
        MlsClient::for_account(&meg),
        MlsClient::for_account(&bea),
    );
    let id = GroupId::new_group(rand::random());
    let target = group_target(&id);
    let mut settings = GroupSettings::created_by(&ada.username);
    let mut group = new_mls_group(&ada_mls, &id, Some(&settings));
    let by_ada = |e: &AuditEntry| {
        expect(e, Some("ada"), Some(&target), Outcome::Success);
        assert_eq!(e.device, Some(ada.device));
    };
    // Created with two members.
    let kps = [gil_mls.key_package(), meg_mls.key_package()];
    let b = add(&ada_mls, &mut group, &kps);
    let added = vec![gil.device, meg.device];
    let frame = commit_frame(id, 0, Some(Create::Group), b, added, vec![]);
    let (answer, e) = w
        .audited_one("group_created", request(w.s(), &ada.token, &frame))
        .await;
    accepted(&answer, 1);
    ada_mls.merge(&mut group);
    by_ada(&e);
    let added = format!("{},{}", gil.device, meg.device);
    assert_eq!(commit_detail(&e), ["1", &added, ""]);

    // A member added.
    let b = add(&ada_mls, &mut group, &[bea_mls.key_package()]);
    let frame = commit_frame(id, 1, None, b, vec![bea.device], vec![]);
    let (answer, e) = w
        .audited_one("group_members_changed", request(w.s(), &ada.token, &frame))
        .await;
    accepted(&answer, 2);
    ada_mls.merge(&mut group);
    by_ada(&e);
    assert_eq!(commit_detail(&e), ["2", &bea.device.to_string(), ""]);

    // A member removed.
    let b = remove(&ada_mls, &mut group, &gil_mls);
    let frame = commit_frame(id, 2, None, b, vec![], vec![gil.device]);
    let (answer, e) = w
        .audited_one("group_members_changed", request(w.s(), &ada.token, &frame))
        .await;
    accepted(&answer, 3);
    ada_mls.merge(&mut group);
    by_ada(&e);
    assert_eq!(commit_detail(&e), ["3", "", &gil.device.to_string()]);

    // The settings changed: meg made an admin.
    settings.set_role(&meg.username, GroupRole::Admin);
    let b = change_settings(&ada_mls, &mut group, &settings);
    let frame = commit_frame(id, 3, None, b, vec![], vec![]);
    let (answer, e) = w
        .audited_one("group_settings_changed", request(w.s(), &ada.token, &frame))
        .await;
    accepted(&answer, 4);
    ada_mls.merge(&mut group);
    by_ada(&e);
    assert_eq!(commit_detail(&e), ["4", "", ""]);

    // Routine: a self-update and a message.
    let routine = async {
        let b = self_update(&ada_mls, &mut group);
        let frame = commit_frame(id, 4, None, b, vec![], vec![]);
        accepted(&request(w.s(), &ada.token, &frame).await, 5);
        ada_mls.merge(&mut group);
        let frame = text_frame(id, ada_mls.message(&mut group, b"hello"));
        let answer = request(w.s(), &ada.token, &frame).await;
        assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
    };
    w.audited(&[], routine).await;
    w.stop_server().await;
}

// ---- the server itself ---------------------------------------------------------

/// A fresh data directory's log starts with the owner invite the server
/// made for itself (never its code), then `server_started`; a graceful
/// stop records `server_stopped` as the last entry, covered by the
/// shutdown checkpoint; the next start follows it.
#[tokio::test]
async fn server_start_and_stop_are_audited() {
    let mut w = World::new().await;
    let all = w.since(0).await;
    let invite = &all[0];
    assert_eq!(invite.action, "invite_created", "{all:#?}");
    assert_eq!(invite.prev_hash, GENESIS);
    expect(invite, Some("server"), None, Outcome::Success);
    assert_eq!(detail(invite, "role"), "owner");
    let started = &all[1];
    assert_eq!(started.action, "server_started", "{all:#?}");
    expect(started, Some("server"), None, Outcome::Success);
    assert_eq!(detail(started, "version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(all_of(&all, "server_started").len(), 1);
    assert!(all_of(&all, "server_stopped").is_empty());

    w.stop_server().await;
    let console = AdminConsole::open(w.dir.path()).await.unwrap();
    let newest = console
        .audit_page(&rampart_server::audit::Query {
            newest_first: true,
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let stopped = &newest.entries[0];
    assert_eq!(stopped.action, "server_stopped", "{stopped:#?}");
    expect(stopped, Some("server"), None, Outcome::Success);
    let checkpoints = console.audit_checkpoints().await.unwrap();
    let last = checkpoints.last().unwrap();
    assert_eq!(
        (last.reason, last.last_id, last.head_hash),
        (CheckpointReason::Shutdown, stopped.id, stopped.hash)
    );
    console.close().await;

    w.start_server().await;
    let all = w.since(0).await;
    let lifecycle: Vec<&str> = all
        .iter()
        .map(|e| e.action.as_str())
        .filter(|a| a.starts_with("server_"))
        .collect();
    assert_eq!(
        lifecycle,
        ["server_started", "server_stopped", "server_started"]
    );
    let restarted = all_of(&all, "server_started")[1];
    assert!(restarted.id > stopped.id);
    w.stop_server().await;
}

// ---- alerts --------------------------------------------------------------------

/// Seven failed logins for one account within ten minutes fire the
/// failed-logins alert once, naming the account and the entries counted;
/// once the failures are forgotten, five more fire it again.
#[tokio::test]
async fn failed_logins_fire_one_alert_per_account_and_window() {
    // The lockout this counts on, spelled out: five free failures, then
    // 30 s doubling, forgotten after an hour.
    let mut w = World::with(ServerConfig {
        rate_limits: RateLimits {
            account_free_failures: 5,
            ip_free_failures: 50,
            lock_secs: 30,
            decay_secs: 3600,
            ..RateLimits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let bob = w.join("bob", "member").await;
    let m = w.mark().await;
    for _ in 0..5 {
        let resp = w.login("bob", "wrong password!!", bob.device, None).await;
        assert_eq!(resp.status(), 401);
    }
    // Locked for 30 s, then 60 s: wait each out, fail again.
    w.clock.advance(Duration::from_secs(31));
    assert_eq!(
        w.login("bob", "wrong password!!", bob.device, None)
            .await
            .status(),
        401
    );
    w.clock.advance(Duration::from_secs(61));
    assert_eq!(
        w.login("bob", "wrong password!!", bob.device, None)
            .await
            .status(),
        401
    );
    let new = w.since(m).await;
    let failures = all_of(&new, "login_failed");
    assert_eq!(failures.len(), 7, "{new:#?}");
    let alerts: Vec<&AuditEntry> = all_of(&new, "alert_fired")
        .into_iter()
        .filter(|e| e.target.as_deref() == Some("rule:failed-logins-account"))
        .collect();
    assert_eq!(alerts.len(), 1, "{new:#?}");
    let alert = alerts[0];
    expect(
        alert,
        Some("server"),
        Some("rule:failed-logins-account"),
        Outcome::Success,
    );
    assert_eq!(detail(alert, "key"), "actor:bob");
    assert_eq!(detail(alert, "count"), "5");
    assert_eq!(detail(alert, "window_secs"), "600");
    assert_eq!(detail(alert, "first_entry"), failures[0].id.to_string());
    assert_eq!(detail(alert, "last_entry"), failures[4].id.to_string());
    assert!(alert.id > failures[4].id);
    // Nothing else fired (twelve failures from one address stay under its
    // threshold of twenty).
    assert_eq!(all_of(&new, "alert_fired").len(), 1, "{new:#?}");

    // An hour without failures: the lock and the window are over.
    w.clock.advance(Duration::from_secs(3601));
    let m = w.mark().await;
    for _ in 0..5 {
        let resp = w.login("bob", "wrong password!!", bob.device, None).await;
        assert_eq!(resp.status(), 401);
    }
    let new = w.since(m).await;
    let alert = only(&new, "alert_fired");
    assert_eq!(detail(alert, "key"), "actor:bob");
    w.stop_server().await;
}

// ---- the whole log -------------------------------------------------------------

/// Every action the scenario below makes the log record.
const EVERY_ACTION: [&str; 34] = [
    "server_started",
    "server_stopped",
    "registered",
    "device_added",
    "login_succeeded",
    "login_failed",
    "two_factor_enabled",
    "two_factor_failed",
    "two_factor_disabled",
    "recovery_codes_regenerated",
    "recovery_code_used",
    "password_changed",
    "device_revoked",
    "locked",
    "session_expired",
    "access_denied",
    "invite_created",
    "role_changed",
    "account_disabled",
    "account_enabled",
    "account_deleted",
    "two_factor_reset",
    "session_revoked",
    "access_policy_changed",
    "admin_api",
    "dlp_policy_changed",
    "dlp_block",
    "dlp_warn",
    "dlp_redact",
    "dlp_audit",
    "group_created",
    "group_members_changed",
    "group_settings_changed",
    "alert_fired",
];

const CANARY_PASSWORD: &str = "Canary-Passw0rd-7c1e9b-horse";
const CANARY_NEW_PASSWORD: &str = "Canary-NewPass-7c1e9b-staple";
const CANARY_WRONG_PASSWORD: &str = "Canary-Wrong-7c1e9b-battery";
/// A name nobody has, typed at login.
const CANARY_GHOST: &str = "canaryghost7c1e9b";
const CANARY_PLAINTEXT: &str = "CANARY-PLAINTEXT-7c1e9b: the merger closes on Friday";
/// What a careless client puts in a DLP report beside the rule.
const CANARY_DLP: &str = "CANARY-DLP-7c1e9b-4111111111111111";
/// Inside the DLP policy document (its hash is audited, not its text).
const CANARY_POLICY: &str = "CANARY-POLICY-7c1e9b";

/// The secrets and content a scenario used.
#[derive(Default)]
struct Canaries {
    /// As text: they would show as they are.
    text: Vec<String>,
    /// Binary: they would show raw, in hex or in base64.
    bytes: Vec<Vec<u8>>,
    /// One-time codes: six digits, so compared with whole field values only.
    codes: Vec<String>,
}

impl Canaries {
    /// Keeps a one-time code the scenario is about to use, and returns it.
    fn code(&mut self, code: String) -> String {
        self.codes.push(code.clone());
        code
    }
}

/// Does everything the audit log records (see [`EVERY_ACTION`]), with
/// distinctive secrets and content, and a restart and a requested
/// checkpoint in between; returns the secrets and content.
async fn scenario(w: &mut World) -> Canaries {
    let mut c = Canaries::default();
    c.text.push(w.first_invite.clone());
    c.text.push(w.owner.token.clone());
    for canary in [
        CANARY_PASSWORD,
        CANARY_NEW_PASSWORD,
        CANARY_WRONG_PASSWORD,
        CANARY_GHOST,
        CANARY_PLAINTEXT,
        CANARY_DLP,
        CANARY_POLICY,
    ] {
        c.text.push(canary.into());
    }

    // cara: invited, registered with a distinctive password.
    let body = Some(json!({ "role": "member" }));
    let invite: Invite = w.as_owner("POST", "/v1/admin/invites", body).await;
    c.text.push(invite.code.clone());
    let device = w.next_device();
    let (mut req, identity) = register_request("cara", device, Some(&invite.code));
    req.password = CANARY_PASSWORD.into();
    let registering = w.http.post(w.s().url("/v1/register")).json(&req).send();
    let session: SessionResponse = ok(registering.await.unwrap()).await;
    c.text.push(session.token.clone());
    let cara = Account {
        username: session.username,
        device: session.device_id,
        token: session.token,
        identity,
    };

    // Failed logins, then a good one.
    for name in [CANARY_GHOST, "cara"] {
        let resp = w
            .login(name, CANARY_WRONG_PASSWORD, cara.device, None)
            .await;
        assert_eq!(resp.status(), 401);
    }
    let resp = w.login("cara", CANARY_PASSWORD, cara.device, None).await;
    c.text.push(ok::<SessionResponse>(resp).await.token);

    // Two-factor authentication: enrolled, a wrong code, a login with a
    // code and one with a recovery code, new recovery codes, a password
    // change, turned off, and on again.
    let (secret, base32, codes) = w.enrol(&cara, CANARY_PASSWORD).await;
    c.bytes.push(secret.clone());
    c.text.push(base32);
    c.text.extend(codes.iter().cloned());
    let wrong = wrong_code(&secret, &w.clock);
    let resp = w
        .login("cara", CANARY_PASSWORD, cara.device, Some(&wrong))
        .await;
    assert_eq!(resp.status(), 401);
    let code = c.code(w.code(&secret));
    let resp = w
        .login("cara", CANARY_PASSWORD, cara.device, Some(&code))
        .await;
    c.text.push(ok::<SessionResponse>(resp).await.token);
    w.next_step();
    let resp = w
        .login("cara", CANARY_PASSWORD, cara.device, Some(&codes[0]))
        .await;
    c.text.push(ok::<SessionResponse>(resp).await.token);
    let body = json!({ "code": c.code(w.code(&secret)) });
    let resp = w
        .post("/v1/2fa/recovery-codes", &cara.token, Some(body))
        .await;
    c.text.extend(ok::<RecoveryCodes>(resp).await.codes);
    w.next_step();
    let body = json!({
        "old_password": CANARY_PASSWORD,
        "new_password": CANARY_NEW_PASSWORD,
        "totp": c.code(w.code(&secret)),
    });
    let resp = w.post("/v1/password", &cara.token, Some(body)).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    w.next_step();
    let body = json!({ "password": CANARY_NEW_PASSWORD, "code": c.code(w.code(&secret)) });
    let resp = w.post("/v1/2fa/disable", &cara.token, Some(body)).await;
    assert_eq!(resp.status(), 204);
    w.next_step();
    let (secret, base32, codes) = w.enrol(&cara, CANARY_NEW_PASSWORD).await;
    c.bytes.push(secret);
    c.text.push(base32);
    c.text.extend(codes);

    // dan links a second device and revokes it.
    let dan = w.join("dan", "member").await;
    c.text.push(dan.token.clone());
    let eve = w.join("eve", "member").await;
    c.text.push(eve.token.clone());
    let phone = w.next_device();
    c.text.push(link_device(&w.http, w.s(), &dan, phone).await);
    let path = format!("/v1/devices/{}/revoke", DeviceId::new(phone).unwrap());
    let resp = w.post(&path, &dan.token, None).await;
    assert_eq!(resp.status(), 204);

    // A group: created with dan, its settings changed, a message, dan removed.
    let (cara_mls, dan_mls) = (MlsClient::for_account(&cara), MlsClient::for_account(&dan));
    let id = GroupId::new_group(rand::random());
    let mut settings = GroupSettings::created_by(&cara.username);
    let mut group = new_mls_group(&cara_mls, &id, Some(&settings));
    let b = add(&cara_mls, &mut group, &[dan_mls.key_package()]);
    let frame = commit_frame(id, 0, Some(Create::Group), b, vec![dan.device], vec![]);
    accepted(&request(w.s(), &cara.token, &frame).await, 1);
    cara_mls.merge(&mut group);
    settings.set_role(&dan.username, GroupRole::Admin);
    let b = change_settings(&cara_mls, &mut group, &settings);
    let frame = commit_frame(id, 1, None, b, vec![], vec![]);
    accepted(&request(w.s(), &cara.token, &frame).await, 2);
    cara_mls.merge(&mut group);
    let message = cara_mls.message(&mut group, CANARY_PLAINTEXT.as_bytes());
    c.bytes.push(message[message.len() - 32..].to_vec());
    let answer = request(w.s(), &cara.token, &text_frame(id, message)).await;
    assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
    let b = remove(&cara_mls, &mut group, &dan_mls);
    let frame = commit_frame(id, 2, None, b, vec![], vec![dan.device]);
    accepted(&request(w.s(), &cara.token, &frame).await, 3);
    cara_mls.merge(&mut group);

    // DLP: a policy, and reports with more in them than they should carry.
    let policy = format!(r#"{{"version":1,"note":"{CANARY_POLICY}"}}"#);
    rampart_server::set_dlp_policy(w.dir.path(), &policy)
        .await
        .unwrap();
    let events: Vec<Value> = ["block", "warn", "redact", "audit"]
        .iter()
        .map(|action| {
            json!({
                "rule": "card", "action": action, "group_id": id, "at": 1_700_000_000_000u64,
                "text": CANARY_DLP, "match": CANARY_DLP, "context": { "before": CANARY_DLP },
            })
        })
        .collect();
    let body = json!({ "events": events, "note": CANARY_DLP });
    let resp = w.post("/v1/dlp/events", &cara.token, Some(body)).await;
    assert_eq!(resp.status(), 204);

    // Administration: a member refused, roles, the access policy, a
    // second-factor reset, a session ended, an account disabled, enabled,
    // locked out by failed logins and deleted, an operator's invite.
    let resp = w
        .req("GET", "/v1/admin/users", Some(&cara.token), None)
        .await;
    assert_eq!(resp.status(), 403);
    for role in ["admin", "member"] {
        let body = Some(json!({ "role": role }));
        let _: Value = w.as_owner("POST", "/v1/admin/users/cara/role", body).await;
    }
    let access = AccessPolicy {
        guests_may_be_added: false,
        ..AccessPolicy::default()
    };
    let body = Some(serde_json::to_value(&access).unwrap());
    let _: AccessPolicy = w.as_owner("PUT", "/v1/admin/access", body).await;
    let _: Value = w
        .as_owner("POST", "/v1/admin/users/cara/2fa-reset", None)
        .await;
    let sessions: SessionList = w.as_owner("GET", "/v1/admin/sessions?user=dan", None).await;
    let path = format!(
        "/v1/admin/sessions/{}/revoke",
        sessions.sessions[0].session_id
    );
    let resp = w.post(&path, &w.owner.token, None).await;
    assert_eq!(resp.status(), 204);
    for action in ["disable", "enable"] {
        let path = format!("/v1/admin/users/dan/{action}");
        let _: Value = w.as_owner("POST", &path, None).await;
    }
    for _ in 0..5 {
        let resp = w
            .login("dan", CANARY_WRONG_PASSWORD, dan.device, None)
            .await;
        assert_eq!(resp.status(), 401);
    }
    let resp = w
        .req("DELETE", "/v1/admin/users/dan", Some(&w.owner.token), None)
        .await;
    assert_eq!(resp.status(), 204);
    c.text
        .push(rampart_server::create_invite(w.dir.path()).await.unwrap());

    // A month later eve's unused session has expired (and the owner's).
    w.clock.advance(Duration::from_secs(
        rampart_server::config::DEFAULT_SESSION_IDLE_SECS + 3600,
    ));
    let resp = w.req("GET", "/v1/me", Some(&eve.token), None).await;
    assert_eq!(resp.status(), 401);
    w.owner_login().await;
    c.text.push(w.owner.token.clone());

    // A restart, a checkpoint on request, and one more call after it.
    w.restart().await;
    let made: Option<AuditCheckpoint> =
        w.as_owner("POST", "/v1/admin/audit/checkpoint", None).await;
    assert!(made.is_some());
    let _: Value = w.as_owner("GET", "/v1/admin/users", None).await;
    c
}

/// After everything above, the log as the admin API serves it verifies
/// against the served key and checkpoints (a restart's shutdown checkpoint
/// and a requested one among them), from the first entry to the last,
/// and holds every kind of entry. Changing or dropping one entry breaks it.
#[tokio::test]
async fn the_whole_log_verifies_after_every_kind_of_action() {
    let mut w = World::new().await;
    let _ = scenario(&mut w).await;

    let key: AuditKey = w.as_owner("GET", "/v1/admin/audit/key", None).await;
    let key: [u8; 32] = hex::decode(&key.key).unwrap().try_into().unwrap();
    let checkpoints = w
        .as_owner::<AuditCheckpointList>("GET", "/v1/admin/audit/checkpoints", None)
        .await
        .checkpoints;
    let reasons: BTreeSet<&str> = checkpoints.iter().map(|c| c.reason.as_str()).collect();
    assert!(
        reasons.contains("shutdown") && reasons.contains("requested"),
        "{reasons:?}"
    );
    // In pages of 25, to cross page boundaries.
    let entries = w.everything(25).await;
    assert!(entries.len() > 50, "{}", entries.len());
    assert!(entries.windows(2).all(|p| p[1].id == p[0].id + 1));
    assert_eq!(entries[0].prev_hash, GENESIS);

    let report = rampart_server::audit::verify::verify(&key, checkpoints.clone(), &entries)
        .expect("the log verifies");
    assert_eq!(report.entries, entries.len() as u64);
    assert_eq!(report.first_id, Some(entries[0].id));
    assert_eq!(report.last_id, Some(entries[entries.len() - 1].id));
    assert_eq!(report.pruned_before, None);
    let signed = report.last_checkpoint.expect("a checkpoint");
    assert!(signed.last_id < entries[entries.len() - 1].id);
    assert!(report.unsigned_tail > 0);

    let actions: BTreeSet<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for action in EVERY_ACTION {
        assert!(actions.contains(action), "no {action} in {actions:?}");
    }

    // The check is not vacuous.
    let k = entries.len() / 2;
    let mut edited = entries.clone();
    edited[k].outcome = Outcome::Success;
    edited[k].actor = Some("mallory".into());
    let broken = rampart_server::audit::verify::verify(&key, checkpoints.clone(), &edited)
        .expect_err("an edited entry");
    assert_eq!(broken.id, entries[k].id);
    let mut cut = entries.clone();
    cut.remove(k);
    assert!(rampart_server::audit::verify::verify(&key, checkpoints.clone(), &cut).is_err());
    let other = [7u8; 32];
    assert!(
        rampart_server::audit::verify::verify(
            &ed25519_dalek::SigningKey::from_bytes(&other)
                .verifying_key()
                .to_bytes(),
            checkpoints,
            &entries
        )
        .is_err()
    );

    // The stopped server's own walk agrees (and covers the stop).
    w.stop_server().await;
    let console = AdminConsole::open(w.dir.path()).await.unwrap();
    let report = console
        .audit_verify()
        .await
        .unwrap()
        .expect("the stopped server's log verifies");
    assert!(report.entries > entries.len() as u64);
    assert_eq!(report.unsigned_tail, 0);
    console.close().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The ways binary data would show in text.
fn spellings(bytes: &[u8]) -> Vec<String> {
    vec![
        hex::encode(bytes),
        hex::encode_upper(bytes),
        base64::engine::general_purpose::STANDARD.encode(bytes),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ]
}

/// Passwords (right, wrong and new), a name typed at login, invite codes,
/// session tokens, TOTP secrets, recovery and one-time codes, a message's
/// plaintext and ciphertext, a DLP policy's text and what a DLP report
/// carried beside its rule: none of it is in any stored audit row, nor in
/// the listing the admin API serves.
#[tokio::test]
async fn no_secret_or_content_reaches_the_audit_log_canary() {
    let mut w = World::new().await;
    let c = scenario(&mut w).await;

    // The listing, exactly as served.
    let mut listing = String::new();
    let mut query = "?limit=100".to_owned();
    loop {
        let text = w.page_text(&query).await;
        let page: AuditPage = serde_json::from_str(&text).unwrap();
        listing.push_str(&text);
        match page.next_after {
            Some(next) => query = format!("?limit=100&after={next}"),
            None => break,
        }
    }
    let entries = w.everything(1000).await;
    w.stop_server().await;

    // Every stored row, every column, as SQLite holds it.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        w.dir.path().join("rampart.db").display()
    ))
    .await
    .unwrap();
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT CAST(quote(id) || '|' || quote(at) || '|' || quote(actor) || '|' || \
         quote(device_id) || '|' || quote(ip) || '|' || quote(action) || '|' || \
         quote(target) || '|' || quote(outcome) || '|' || quote(detail) || '|' || \
         quote(prev_hash) || '|' || quote(hash) AS BLOB) FROM audit_log ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    assert!(rows.len() > entries.len(), "{} rows", rows.len());
    // The dump holds what the rows hold (so the searches below can find).
    let cara = entries
        .iter()
        .find(|e| e.action == "password_changed")
        .unwrap();
    let dumped = String::from_utf8_lossy(&rows[cara.id as usize - 1]).into_owned();
    assert!(
        dumped.starts_with(&format!("{}|", cara.id))
            && dumped.contains("'cara'")
            && dumped.contains("'password_changed'")
            && dumped.contains(&hex::encode_upper(cara.hash)),
        "{dumped}"
    );

    for canary in &c.text {
        assert!(!listing.contains(canary.as_str()), "{canary:?} is listed");
        for row in &rows {
            assert!(
                !contains(row, canary.as_bytes()),
                "{canary:?} is stored: {}",
                String::from_utf8_lossy(row)
            );
        }
    }
    for secret in &c.bytes {
        for spelling in spellings(secret) {
            assert!(!listing.contains(&spelling), "{spelling} is listed");
            for row in &rows {
                assert!(!contains(row, spelling.as_bytes()), "{spelling} is stored");
            }
        }
        for row in &rows {
            assert!(!contains(row, secret), "raw bytes are stored");
        }
    }
    for e in &entries {
        let fields = [&e.actor, &e.ip, &e.target]
            .into_iter()
            .flatten()
            .chain([&e.action])
            .chain(e.detail.keys())
            .chain(e.detail.values());
        for field in fields {
            assert!(!c.codes.contains(field), "a code is in {e:#?}");
        }
        for key in e.detail.keys() {
            for bad in [
                "password", "code", "token", "secret", "text", "content", "message",
            ] {
                assert!(!key.contains(bad), "{key} in {e:#?}");
            }
        }
    }
}
