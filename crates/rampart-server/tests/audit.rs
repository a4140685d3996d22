//! The audit log's guarantees, on a real server and its real database:
//! the chain verifies; each kind of tampering done straight in SQLite is
//! caught by verification; pruning keeps it verifiable; alert rules fire
//! once per window and the webhook receives a correctly signed body; a
//! failing webhook holds nothing up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::*;
use hmac::Mac as _;
use rampart_proto::audit::{AuditEntry, AuditPage, AuditQuery, AuditRecord, CheckpointReason};
use rampart_server::audit::{AlertsConfig, Broken, Report, Verifier};
use rampart_server::{AdminConsole, Clock, Registration, ServerConfig};
use serde_json::json;
use sqlx::Row as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn open_config() -> ServerConfig {
    ServerConfig {
        registration: Registration::Open,
        ..ServerConfig::default()
    }
}

/// A password login from the account's first device (ids: owner and
/// alice 1, member 2).
async fn login(http: &reqwest::Client, server: &TestServer, name: &str, password: &str) -> u16 {
    let device = rampart_proto::DeviceId::new(if name == "member" { 2 } else { 1 });
    let body = json!({"username": name, "password": password, "device_id": device});
    let resp = call(http, server, "POST", "/v1/login", None, Some(body)).await;
    resp.status().as_u16()
}

/// A stopped server's log with some history: an owner, a member, failed
/// logins, a role change.
async fn history(dir: &Path, clock: &Clock) {
    let server = TestServer::start_with(open_config(), dir, clock.clone()).await;
    let http = reqwest::Client::new();
    let owner = register(&http, &server, "owner", 1, server.first_invite.as_deref()).await;
    register(&http, &server, "member", 2, None).await;
    for _ in 0..3 {
        assert_eq!(
            login(&http, &server, "member", "wrong password!").await,
            401
        );
        clock.advance(Duration::from_secs(1));
    }
    let resp = call(
        &http,
        &server,
        "POST",
        "/v1/admin/users/member/role",
        Some(&owner.token),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    server.stop().await;
}

async fn verify(dir: &Path) -> Result<Report, Broken> {
    let console = AdminConsole::open(dir).await.unwrap();
    let outcome = console.audit_verify().await.unwrap();
    console.close().await;
    outcome
}

async fn entries(dir: &Path) -> Vec<AuditEntry> {
    let console = AdminConsole::open(dir).await.unwrap();
    let page = console.audit_page(&AuditQuery::default()).await.unwrap();
    console.close().await;
    assert!(page.next_after.is_none());
    page.entries
}

/// Runs raw SQL on a stopped server's database, as an attacker with the
/// file would.
async fn tamper(dir: &Path, statements: &[&str]) {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join("rampart.db"));
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "server.lock" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn the_chain_verifies_and_every_kind_of_tampering_is_caught() {
    let base = tempfile::tempdir().unwrap();
    let clock = Clock::manual();
    history(base.path(), &clock).await;
    let report = verify(base.path()).await.unwrap();
    let all = entries(base.path()).await;
    assert_eq!(report.entries, all.len() as u64);
    assert!(report.entries >= 10, "{report:?}");
    assert_eq!(report.unsigned_tail, 0, "the shutdown signed the head");
    assert!(report.last_checkpoint.is_some());
    let first = all[0].id;
    let last = all.last().unwrap().id;
    let failed = all
        .iter()
        .find(|e| e.action == "login_failed")
        .expect("a failed login")
        .id;
    let middle = all[all.len() / 2].id;

    // (name, statements, the entry verification must name, words of the reason)
    let cases: Vec<(&str, Vec<String>, u64, &str)> = vec![
        (
            "edit a field",
            vec![format!(
                "UPDATE audit_log SET action = 'login_succeeded' WHERE id = {failed}"
            )],
            failed,
            "altered",
        ),
        (
            "edit the outcome to something never written",
            vec![format!(
                "UPDATE audit_log SET outcome = 'fine' WHERE id = {failed}"
            )],
            failed,
            "altered",
        ),
        (
            "edit the detail",
            vec![format!(
                "UPDATE audit_log SET detail = '{{\"role\":\"member\"}}' \
                 WHERE action = 'role_changed'"
            )],
            all.iter().find(|e| e.action == "role_changed").unwrap().id,
            "altered",
        ),
        (
            "delete a row",
            vec![format!("DELETE FROM audit_log WHERE id = {middle}")],
            middle + 1,
            "does not link",
        ),
        (
            "reorder two rows",
            vec![
                format!("UPDATE audit_log SET id = -1 WHERE id = {middle}"),
                format!(
                    "UPDATE audit_log SET id = {middle} WHERE id = {}",
                    middle + 1
                ),
                format!("UPDATE audit_log SET id = {} WHERE id = -1", middle + 1),
            ],
            middle,
            "altered",
        ),
        (
            "cut the tail",
            vec![format!("DELETE FROM audit_log WHERE id >= {}", last - 1)],
            last,
            "deleted from the end",
        ),
        (
            "cut the head",
            vec![format!("DELETE FROM audit_log WHERE id <= {}", first + 1)],
            first + 2,
            "earlier entries were deleted",
        ),
        (
            "forge a checkpoint",
            vec!["UPDATE audit_checkpoints SET last_id = last_id - 1".into()],
            last - 1,
            "invalid signature",
        ),
        (
            "replace a checkpoint's key",
            vec!["UPDATE audit_checkpoints SET public_key = zeroblob(32)".into()],
            last,
            "another key",
        ),
    ];
    for (name, statements, at, words) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
        tamper(dir.path(), &statements).await;
        let broken = verify(dir.path()).await.expect_err(name);
        assert_eq!(broken.id, at, "{name}: {broken}");
        assert!(broken.reason.contains(words), "{name}: {broken}");
    }
}

/// Editing an entry and recomputing every later hash makes a consistent
/// chain: only the signed checkpoint tells.
#[tokio::test]
async fn a_rewritten_chain_is_caught_by_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual();
    history(dir.path(), &clock).await;
    let mut all = entries(dir.path()).await;
    let at = all.iter().position(|e| e.action == "login_failed").unwrap();
    all[at].action = "login_succeeded".into();
    let mut prev = all[at].prev_hash;
    let mut statements = Vec::new();
    for e in &mut all[at..] {
        e.prev_hash = prev;
        e.hash = e.compute_hash();
        prev = e.hash;
        statements.push(format!(
            "UPDATE audit_log SET action = '{}', prev_hash = x'{}', hash = x'{}' WHERE id = {}",
            e.action,
            hex::encode(e.prev_hash),
            hex::encode(e.hash),
            e.id
        ));
    }
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    tamper(dir.path(), &statements).await;
    let broken = verify(dir.path()).await.unwrap_err();
    assert!(broken.reason.contains("rewritten"), "{broken}");
}

#[tokio::test]
async fn pruning_keeps_the_rest_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual();
    let server = TestServer::start_with(open_config(), dir.path(), clock.clone()).await;
    let http = reqwest::Client::new();
    register(&http, &server, "owner", 1, server.first_invite.as_deref()).await;
    for _ in 0..3 {
        login(&http, &server, "owner", "not the password").await;
    }
    server
        .audit
        .checkpoint(CheckpointReason::Requested)
        .await
        .unwrap();
    clock.advance(Duration::from_secs(10 * 86_400));
    let cutoff = clock.now_ms() as i64;
    login(&http, &server, "owner", "still not it").await;
    let pruned = server.audit.prune_before(cutoff).await.unwrap();
    assert!(pruned >= 5, "{pruned}");
    let report = server.audit.verify().await.unwrap().unwrap();
    assert!(report.pruned_before.is_some(), "{report:?}");
    // Security events of that age went with them.
    server.stop().await;
    let kept = entries(dir.path()).await;
    assert!(
        kept.iter()
            .all(|e| e.at >= cutoff as u64 || e.action == "audit_pruned")
    );
    assert!(kept.iter().any(|e| e.action == "audit_pruned"));
    assert!(verify(dir.path()).await.is_ok());

    // Without the checkpoints that sign where the kept part starts, its
    // start is unexplained.
    tamper(
        dir.path(),
        &["DELETE FROM audit_checkpoints WHERE last_id < (SELECT MIN(id) FROM audit_log)"],
    )
    .await;
    let broken = verify(dir.path()).await.unwrap_err();
    assert!(
        broken.reason.contains("earlier entries were deleted"),
        "{broken}"
    );
}

/// What the webhook receiver got: headers and body of each POST.
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(got): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    got.lock().unwrap().push((headers, body));
                    "ok"
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

const SECRET: &str = "an hmac secret for the test";

fn alerting(url: &str) -> ServerConfig {
    let mut config = open_config();
    config.rate_limits.account_free_failures = 1000;
    config.rate_limits.ip_free_failures = 1000;
    config.alerts = AlertsConfig {
        webhook_url: Some(url.to_owned()),
        webhook_secret: Some(SECRET.to_owned()),
        ..AlertsConfig::default()
    };
    config
}

/// The POSTs of one `X-Rampart-Event` (`alert` or `checkpoint`).
fn of_event(got: &Received, event: &str) -> Vec<(HeaderMap, Bytes)> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(headers, _)| headers["x-rampart-event"] == event)
        .cloned()
        .collect()
}

async fn wait_for(got: &Received, event: &str, n: usize) -> Vec<(HeaderMap, Bytes)> {
    for _ in 0..100 {
        let posts = of_event(got, event);
        if posts.len() >= n {
            return posts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the webhook received {:?}", got.lock().unwrap());
}

/// Checks `X-Rampart-Signature` against the shared secret.
fn signed_with_secret(headers: &HeaderMap, body: &[u8]) -> bool {
    let signature = headers["x-rampart-signature"].to_str().unwrap();
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&hex::decode(v1).unwrap()).is_ok()
}

async fn alerts_fired(server: &TestServer) -> Vec<AuditEntry> {
    server.audit.seal().await.unwrap();
    let page: AuditPage = server
        .audit
        .page(&AuditQuery {
            action: Some("alert_fired".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    page.entries
}

#[tokio::test]
async fn an_alert_fires_once_per_window_with_a_signed_webhook() {
    let (url, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual();
    let server = TestServer::start_with(alerting(&url), dir.path(), clock.clone()).await;
    let http = reqwest::Client::new();
    register(&http, &server, "alice", 1, server.first_invite.as_deref()).await;

    // Seven failures in a minute: the rule (5 in 10 minutes) fires once.
    for _ in 0..7 {
        assert_eq!(login(&http, &server, "alice", "guessing wrong").await, 401);
        clock.advance(Duration::from_secs(5));
    }
    let fired = alerts_fired(&server).await;
    let account: Vec<_> = fired
        .iter()
        .filter(|e| e.target.as_deref() == Some("rule:failed-logins-account"))
        .collect();
    assert_eq!(account.len(), 1, "{fired:?}");
    assert_eq!(account[0].actor.as_deref(), Some("server"));
    assert_eq!(account[0].detail["key"], "actor:alice");
    let (headers, body) = wait_for(&got, "alert", 1).await.remove(0);
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["rule"], "failed-logins-account");
    assert_eq!(sent["key"], "actor:alice");
    assert_eq!(sent["count"], 5);
    assert!(signed_with_secret(&headers, &body));
    // A body changed in transit does not verify.
    assert!(!signed_with_secret(&headers, &body[1..]));

    // More failures within the window: quiet.
    for _ in 0..6 {
        login(&http, &server, "alice", "guessing wrong").await;
    }
    assert_eq!(alerts_fired(&server).await.len(), 1);
    // The next window fires again.
    clock.advance(Duration::from_secs(601));
    for _ in 0..5 {
        login(&http, &server, "alice", "guessing wrong").await;
    }
    assert_eq!(alerts_fired(&server).await.len(), 2);
    wait_for(&got, "alert", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(of_event(&got, "alert").len(), 2);

    // Each checkpoint goes out too: a signed head kept outside the server.
    let made = server
        .audit
        .checkpoint(CheckpointReason::Requested)
        .await
        .unwrap()
        .unwrap();
    let (headers, body) = wait_for(&got, "checkpoint", 1).await.remove(0);
    assert!(signed_with_secret(&headers, &body));
    let AuditRecord::Checkpoint(sent) = serde_json::from_slice(&body).unwrap() else {
        panic!("not a checkpoint");
    };
    assert_eq!(sent, made);
    Verifier::new(&server.audit.public_key(), vec![sent]).expect("its signature verifies");
    server.stop().await;
}

#[tokio::test]
async fn a_failing_webhook_holds_nothing_up() {
    // An address nobody listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual();
    let server = TestServer::start_with(alerting(&url), dir.path(), clock.clone()).await;
    let http = reqwest::Client::new();
    register(&http, &server, "alice", 1, server.first_invite.as_deref()).await;
    for _ in 0..5 {
        login(&http, &server, "alice", "guessing wrong").await;
    }
    assert_eq!(alerts_fired(&server).await.len(), 1);
    // The webhook is retrying in the background, pausing seconds between
    // attempts; meanwhile the server answers and the log keeps sealing.
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let resp = call(&http, &server, "GET", "/health", None, None).await;
        assert_eq!(resp.status(), 200);
        server.audit.seal().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        login(&http, &server, "alice", "guessing wrong").await;
    }
    server.stop().await;
    assert!(verify(dir.path()).await.is_ok());
}

#[tokio::test]
async fn unsealed_rows_left_by_another_process_are_sealed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual();
    history(dir.path(), &clock).await;
    // `rampart admin policy set` writes from another process while the
    // server runs or not; its entry waits unsealed for the next sealer.
    rampart_server::set_dlp_policy(dir.path(), r#"{"version":1}"#)
        .await
        .unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("rampart.db"));
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let unsealed: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE hash IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
    pool.close().await;
    assert_eq!(unsealed, 1);
    let report = verify(dir.path()).await.unwrap();
    let last = entries(dir.path()).await.pop().unwrap();
    assert_eq!(last.action, "dlp_policy_changed");
    assert_eq!(last.actor.as_deref(), Some("operator"));
    assert_eq!(report.last_id, Some(last.id));
}
