//! Data-loss prevention against a real server: the policy endpoint, the
//! `PolicyChanged` push (from the admin command's data-dir path and from in
//! process), and the event reports with every refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rampart_proto::api::{DlpEvent, DlpEventBatch, OrgPolicy};
use rampart_proto::error::ErrorBody;
use rampart_proto::frame::ServerFrame;
use rampart_proto::limits::{MAX_DLP_EVENTS_PER_BATCH, MAX_POLICY_DOCUMENT_BYTES};
use rampart_proto::{GroupId, Username};
use rampart_server::{PolicyDocumentError, Registration, Server, ServerConfig};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const POLICY: &str = r#"{"version":1,"detectors":{"card":{"action":"block","min_confidence":"medium"}},"custom":[]}"#;

fn group() -> GroupId {
    GroupId::new_group([7; 31])
}

fn event(rule: &str, action: &str) -> serde_json::Value {
    json!({ "rule": rule, "action": action, "group_id": group(), "at": 1_700_000_000_123u64 })
}

async fn get_policy(http: &reqwest::Client, server: &TestServer, token: &str) -> OrgPolicy {
    let resp = http
        .get(server.url("/v1/policy/dlp"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn post_events(
    http: &reqwest::Client,
    server: &TestServer,
    token: Option<&str>,
    body: &serde_json::Value,
) -> (u16, Option<ErrorBody>) {
    let mut req = http.post(server.url("/v1/dlp/events")).json(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).ok())
}

/// Reads frames until `PolicyChanged`, which must come within `within`.
async fn expect_policy_changed(ws: &mut Ws, within: Duration) -> u64 {
    tokio::time::timeout(within, async {
        loop {
            match recv(ws).await {
                Some(ServerFrame::PolicyChanged { revision }) => return revision,
                Some(_) => continue,
                None => panic!("the connection closed"),
            }
        }
    })
    .await
    .expect("no PolicyChanged in time")
}

/// Connects and reads the (empty) backlog.
async fn connected(server: &TestServer, token: &str) -> Ws {
    let mut ws = connect(server, token).await;
    assert!(matches!(
        recv(&mut ws).await,
        Some(ServerFrame::BacklogDone { .. })
    ));
    ws
}

async fn stored_events(dir: &Path) -> Vec<rampart_server::DlpEventRecord> {
    rampart_server::dlp_events(dir, 1000).await.unwrap()
}

#[tokio::test]
async fn policy_needs_a_session_and_is_empty_until_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let http = reqwest::Client::new();
    let resp = http.get(server.url("/v1/policy/dlp")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let alice = register(&http, &server, "alice", 1, None).await;
    let policy = get_policy(&http, &server, &alice.token).await;
    assert_eq!(
        policy,
        OrgPolicy {
            revision: 0,
            document: None,
            updated_at: None
        }
    );
    // Nobody connected before a policy exists hears of one.
    let mut ws = connected(&server, &alice.token).await;
    quiet(&mut ws).await;
    server.stop().await;
}

#[tokio::test]
async fn a_policy_set_through_the_data_dir_reaches_connected_devices() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 1, None).await;
    let bob = register(&http, &server, "bob", 2, None).await;
    let mut alice_ws = connected(&server, &alice.token).await;
    let mut bob_ws = connected(&server, &bob.token).await;

    // The path `rampart admin policy set` takes: another pool on the same
    // database, while the server runs.
    let revision = rampart_server::set_dlp_policy(dir.path(), POLICY)
        .await
        .unwrap();
    assert_eq!(revision, 1);
    assert_eq!(
        expect_policy_changed(&mut alice_ws, Duration::from_secs(5)).await,
        1
    );
    assert_eq!(
        expect_policy_changed(&mut bob_ws, Duration::from_secs(5)).await,
        1
    );
    let policy = get_policy(&http, &server, &bob.token).await;
    assert_eq!(policy.revision, 1);
    assert_eq!(policy.document.as_deref(), Some(POLICY));
    assert!(policy.updated_at.is_some_and(|t| t > 1_600_000_000_000));
    assert_eq!(
        rampart_server::dlp_policy(dir.path()).await.unwrap(),
        policy
    );

    // Each change is a new revision, pushed once.
    let second = r#"{"version":1}"#;
    assert_eq!(
        rampart_server::set_dlp_policy(dir.path(), second)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        expect_policy_changed(&mut alice_ws, Duration::from_secs(5)).await,
        2
    );
    quiet(&mut alice_ws).await;
    assert_eq!(
        get_policy(&http, &server, &alice.token)
            .await
            .document
            .as_deref(),
        Some(second)
    );

    // A device that connects later is told the current revision right after
    // its backlog, in case it fetched the policy just before a change.
    drop(bob_ws);
    let mut bob_ws = connected(&server, &bob.token).await;
    assert_eq!(
        expect_policy_changed(&mut bob_ws, Duration::from_secs(2)).await,
        2
    );
    quiet(&mut bob_ws).await;
    server.stop().await;
}

#[tokio::test]
async fn a_policy_set_in_process_is_pushed_without_waiting_for_the_poll() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        registration: Registration::Open,
        ..ServerConfig::default()
    };
    let mut server = Server::open(config).await.unwrap();
    server.set_policy_poll_interval(Duration::from_secs(3600));
    let policies = server.policy_handle();
    let server = TestServer::serve(server).await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 1, None).await;
    let mut ws = connected(&server, &alice.token).await;

    assert_eq!(policies.set(POLICY).await.unwrap(), 1);
    assert_eq!(
        expect_policy_changed(&mut ws, Duration::from_secs(2)).await,
        1
    );
    assert_eq!(policies.get().await.unwrap().revision, 1);

    // With an hour between polls, a change from another process waits.
    rampart_server::set_dlp_policy(dir.path(), POLICY)
        .await
        .unwrap();
    quiet(&mut ws).await;
    server.stop().await;
}

#[tokio::test]
async fn a_socket_that_never_reads_holds_up_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 1, None).await;
    let bob = register(&http, &server, "bob", 2, None).await;
    // Bob's socket is open but never read from again.
    let _stuck = connected(&server, &bob.token).await;
    let mut ws = connected(&server, &alice.token).await;
    let mut last = 0;
    for _ in 0..50 {
        last = rampart_server::set_dlp_policy(dir.path(), POLICY)
            .await
            .unwrap();
    }
    // Alice ends at the latest revision; the changes in between coalesce.
    let mut seen = 0;
    while seen < last {
        seen = expect_policy_changed(&mut ws, Duration::from_secs(5)).await;
    }
    assert_eq!(seen, 50);
    server.stop().await;
}

#[tokio::test]
async fn bad_documents_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    rampart_server::set_dlp_policy(dir.path(), POLICY)
        .await
        .unwrap();
    for bad in ["[1]", "version = 1", ""] {
        let err = rampart_server::set_dlp_policy(dir.path(), bad)
            .await
            .unwrap_err();
        assert!(
            matches!(err, PolicyDocumentError::NotAnObject),
            "{bad:?}: {err}"
        );
    }
    let huge = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_POLICY_DOCUMENT_BYTES));
    assert!(matches!(
        rampart_server::set_dlp_policy(dir.path(), &huge).await,
        Err(PolicyDocumentError::TooLarge { .. })
    ));
    let policy = rampart_server::dlp_policy(dir.path()).await.unwrap();
    assert_eq!(policy.revision, 1);
    assert_eq!(policy.document.as_deref(), Some(POLICY));
}

#[tokio::test]
async fn the_policy_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 1, None).await;
    rampart_server::set_dlp_policy(dir.path(), POLICY)
        .await
        .unwrap();
    server.stop().await;

    let server = TestServer::start(dir.path(), Registration::Open).await;
    let policy = get_policy(&http, &server, &alice.token).await;
    assert_eq!(policy.revision, 1);
    assert_eq!(policy.document.as_deref(), Some(POLICY));
    let mut ws = connected(&server, &alice.token).await;
    assert_eq!(
        expect_policy_changed(&mut ws, Duration::from_secs(2)).await,
        1
    );
    // Numbering continues where it was.
    assert_eq!(
        rampart_server::set_dlp_policy(dir.path(), POLICY)
            .await
            .unwrap(),
        2
    );
    server.stop().await;
}

#[tokio::test]
async fn events_are_stored_with_who_sent_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 11, None).await;

    let batch = DlpEventBatch {
        events: vec![
            DlpEvent {
                rule: "card".into(),
                action: "block".into(),
                group_id: group(),
                at: 1_700_000_000_001,
            },
            DlpEvent {
                rule: "custom.project-falcon".into(),
                action: "warn".into(),
                group_id: GroupId::direct(
                    &Username::parse("alice").unwrap(),
                    &Username::parse("bob").unwrap(),
                ),
                at: 1_700_000_000_002,
            },
        ],
    };
    let resp = http
        .post(server.url("/v1/dlp/events"))
        .bearer_auth(&alice.token)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    // An empty batch is fine and stores nothing.
    let (status, _) = post_events(&http, &server, Some(&alice.token), &json!({"events": []})).await;
    assert_eq!(status, 204);

    let stored = stored_events(dir.path()).await;
    assert_eq!(stored.len(), 2);
    // Newest first.
    let (second, first) = (&stored[0], &stored[1]);
    assert_eq!(first.username.as_str(), "alice");
    assert_eq!(first.device_id, alice.device);
    assert_eq!(
        (first.rule.as_str(), first.action.as_str()),
        ("card", "block")
    );
    assert_eq!(first.group_id, group());
    assert_eq!(first.client_at, 1_700_000_000_001);
    assert!(first.received_at > 1_600_000_000_000);
    assert_eq!(second.rule, "custom.project-falcon");
    assert_eq!(second.group_id, batch.events[1].group_id);
    assert!(second.id > first.id);
    server.stop().await;
}

#[tokio::test]
async fn bad_event_batches_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 1, None).await;
    let token = Some(alice.token.as_str());

    let good = json!({ "events": [event("card", "block")] });
    let (status, _) = post_events(&http, &server, None, &good).await;
    assert_eq!(status, 401);
    let (status, _) = post_events(&http, &server, Some("not-a-token"), &good).await;
    assert_eq!(status, 401);

    let secret = "4111 1111 1111 1111";
    let cases = [
        // (event, what the message must say)
        (event("card", "delete"), "action"),
        (event("card", "off"), "action"),
        (event("card", secret), "action"),
        (event(&"a".repeat(65), "block"), "rule ids"),
        (event("", "block"), "rule ids"),
        (event("Card", "block"), "rule ids"),
        (event(secret, "block"), "rule ids"),
        (event("card\u{301}", "audit"), "rule ids"),
    ];
    for (bad, says) in cases {
        // A good event first: nothing of a refused batch is stored.
        let body = json!({ "events": [event("card", "block"), bad] });
        let (status, err) = post_events(&http, &server, token, &body).await;
        assert_eq!(status, 400, "{bad}");
        let err = err.unwrap();
        assert_eq!(err.code.to_string(), "bad_request");
        assert!(err.message.starts_with("event 1: "), "{}", err.message);
        assert!(err.message.contains(says), "{}", err.message);
        assert!(!err.message.contains("4111"), "{}", err.message);
    }

    // Too many events in one batch.
    let many: Vec<_> = (0..=MAX_DLP_EVENTS_PER_BATCH)
        .map(|_| event("card", "audit"))
        .collect();
    let (status, err) = post_events(&http, &server, token, &json!({ "events": many })).await;
    assert_eq!(status, 400);
    assert!(err.unwrap().message.contains("at most 100"));
    // Exactly the limit is fine.
    let full: Vec<_> = (0..MAX_DLP_EVENTS_PER_BATCH)
        .map(|_| event("card", "audit"))
        .collect();
    let (status, _) = post_events(&http, &server, token, &json!({ "events": full })).await;
    assert_eq!(status, 204);

    // Malformed fields and bodies.
    for body in [
        json!({}),
        json!({ "events": [{ "rule": "card", "action": "block", "at": 1 }] }),
        json!({ "events": [{ "rule": "card", "action": "block", "group_id": "zz", "at": 1 }] }),
        json!({ "events": [{ "rule": "card", "action": "block", "group_id": group(), "at": -1 }] }),
    ] {
        let (status, _) = post_events(&http, &server, token, &body).await;
        assert_eq!(status, 400, "{body}");
    }
    // The body is capped well below the general JSON limit.
    let padded = json!({ "events": [], "padding": "x".repeat(100 * 1024) });
    let (status, err) = post_events(&http, &server, token, &padded).await;
    assert_eq!(status, 413);
    assert_eq!(err.unwrap().code.to_string(), "too_large");

    assert_eq!(
        stored_events(dir.path()).await.len(),
        MAX_DLP_EVENTS_PER_BATCH
    );
    server.stop().await;
}

#[tokio::test]
async fn reports_are_throttled_per_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 1, None).await;
    let bob = register(&http, &server, "bob", 2, None).await;
    let empty = json!({ "events": [] });
    let mut limited = None;
    for i in 0..100 {
        let (status, err) = post_events(&http, &server, Some(&alice.token), &empty).await;
        if status == 429 {
            limited = Some((i, err.unwrap()));
            break;
        }
        assert_eq!(status, 204);
    }
    let (after, err) = limited.expect("never throttled");
    assert_eq!(after, 30);
    assert_eq!(err.code.to_string(), "rate_limited");
    assert!(err.retry_after.is_some_and(|s| (1..=60).contains(&s)));
    // Another device is not affected.
    let (status, _) = post_events(&http, &server, Some(&bob.token), &empty).await;
    assert_eq!(status, 204);
    server.stop().await;
}

/// Every byte the server keeps on disk: the database, its WAL and its
/// shared-memory index.
fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut all = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("rampart.db"))
        {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

#[tokio::test]
async fn nothing_but_the_checked_fields_is_stored_canary() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 1, None).await;
    // A client that sends more than it should: the text, the match, extra
    // fields at every level. Accepted, and all of it dropped.
    const CANARY: &str = "CANARY-5f3a9d-4111111111111111";
    let body = json!({
        "events": [{
            "rule": "card",
            "action": "redact",
            "group_id": group(),
            "at": 1_700_000_000_000u64,
            "text": CANARY,
            "match": CANARY,
            "context": { "before": CANARY },
        }],
        "note": CANARY,
    });
    let (status, err) = post_events(&http, &server, Some(&alice.token), &body).await;
    assert_eq!(status, 204, "{err:?}");
    let stored = stored_events(dir.path()).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].rule.as_str(), stored[0].action.as_str()),
        ("card", "redact")
    );
    assert!(
        !contains(&database_bytes(dir.path()), CANARY.as_bytes()),
        "the canary reached the database files"
    );
    server.stop().await;
    assert!(!contains(&database_bytes(dir.path()), CANARY.as_bytes()));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
