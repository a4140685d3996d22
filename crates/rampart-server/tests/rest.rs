//! The REST API against a real server and database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rampart_proto::api::{ClaimResponse, KeyPackageCount, Role, UserInfo, WhoAmI};
use rampart_server::{Registration, Server, ServerConfig, ServerError};
use serde_json::json;

#[tokio::test]
async fn public_address_without_tls_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().to_owned(),
        listen: "0.0.0.0:8448".parse().unwrap(),
        ..ServerConfig::default()
    };
    let err = Server::open(config).await.err().unwrap();
    assert!(matches!(err, ServerError::Config(_)));
    assert!(err.to_string().contains("--behind-tls-proxy"));
}

#[tokio::test]
async fn registration_with_invites() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Invite).await;
    let http = reqwest::Client::new();
    let invite = server.first_invite.clone().unwrap();

    let health: serde_json::Value = http
        .get(server.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    // No invite, then a wrong one.
    let (req, _) = register_request("alice", 1, None);
    let (status, body) = error_of(
        http.post(server.url("/v1/register"))
            .json(&req)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body.code.to_string().as_str()),
        (403, "invalid_invite")
    );
    let (req, _) = register_request("alice", 1, Some("deadbeef"));
    let (status, _) = error_of(
        http.post(server.url("/v1/register"))
            .json(&req)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);

    // The first-start invite makes the owner, once.
    let alice = register(&http, &server, "alice", 1, Some(&invite)).await;
    let me: WhoAmI = http
        .get(server.url("/v1/me"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me.role, Role::Owner);
    let (req, _) = register_request("bob", 2, Some(&invite));
    let (status, body) = error_of(
        http.post(server.url("/v1/register"))
            .json(&req)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body.code.to_string().as_str()),
        (403, "invalid_invite")
    );

    // A fresh invite from the admin path; the account is a member.
    let code = rampart_server::create_invite(dir.path()).await.unwrap();
    let bob = register(&http, &server, "bob", 2, Some(&code)).await;
    let me: WhoAmI = http
        .get(server.url("/v1/me"))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me.role, Role::Member);

    // Duplicate username (with a valid invite) and duplicate device id.
    let code = rampart_server::create_invite(dir.path()).await.unwrap();
    let (req, _) = register_request("Alice", 3, Some(&code));
    let (status, body) = error_of(
        http.post(server.url("/v1/register"))
            .json(&req)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.code.to_string().as_str()), (409, "conflict"));
    let (req, _) = register_request("carol", 1, Some(&code));
    let (status, _) = error_of(
        http.post(server.url("/v1/register"))
            .json(&req)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 409);
    // The invite was not consumed by the failed attempts.
    register(&http, &server, "carol", 3, Some(&code)).await;
    server.stop().await;
}

#[tokio::test]
async fn registration_validation() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let http = reqwest::Client::new();

    let (req, _) = register_request("alice", 1, None);
    let mut bad = serde_json::to_value(&req).unwrap();
    bad["username"] = json!("-bad name");
    let (status, body) = error_of(
        http.post(server.url("/v1/register"))
            .json(&bad)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body.code.to_string().as_str()),
        (400, "invalid_username")
    );

    let mut short = req.clone();
    short.password = "short".into();
    let (status, body) = error_of(
        http.post(server.url("/v1/register"))
            .json(&short)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body.code.to_string().as_str()),
        (400, "weak_password")
    );

    let mut forged = req.clone();
    forged.device.certificate[0] ^= 1;
    let (status, _) = error_of(
        http.post(server.url("/v1/register"))
            .json(&forged)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(status == 403 || status == 400, "{status}");

    let (status, body) = error_of(
        http.post(server.url("/v1/register"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body.code.to_string().as_str()),
        (400, "bad_request")
    );

    // Open registration: no invite needed; the first account is the owner.
    let alice = register(&http, &server, "alice", 1, None).await;
    let me: WhoAmI = http
        .get(server.url("/v1/me"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me.role, Role::Owner);
    server.stop().await;
}

#[tokio::test]
async fn login_logout_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 1, None).await;

    let wrong = http
        .post(server.url("/v1/login"))
        .json(&json!({"username": "alice", "password": "wrong password!", "device_id": alice.device.to_string()}))
        .send()
        .await
        .unwrap();
    let unknown = http
        .post(server.url("/v1/login"))
        .json(&json!({"username": "nobody", "password": "wrong password!", "device_id": alice.device.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.status(), unknown.status());
    assert_eq!(wrong.text().await.unwrap(), unknown.text().await.unwrap());

    let login: rampart_proto::api::SessionResponse = http
        .post(server.url("/v1/login"))
        .json(&json!({"username": "alice", "password": "correct horse battery", "device_id": alice.device.to_string()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(login.token, alice.token);

    // Every authenticated route refuses a missing or bogus token.
    for (method, path) in [
        ("POST", "/v1/logout"),
        ("GET", "/v1/me"),
        ("GET", "/v1/users/alice"),
        ("POST", "/v1/key-packages"),
        ("GET", "/v1/key-packages/count"),
        ("POST", "/v1/key-packages/claim"),
        ("GET", "/v1/groups"),
        ("GET", &format!("/v1/groups/{}", "00".repeat(32))),
        ("GET", "/v1/ws"),
    ] {
        for token in [None, Some("bogus")] {
            let mut req = http.request(method.parse().unwrap(), server.url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.json(&json!({})).send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} {token:?}");
        }
    }

    // Logout ends only that session.
    let resp = http
        .post(server.url("/v1/logout"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = http
        .get(server.url("/v1/me"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(server.url("/v1/me"))
        .bearer_auth(&login.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Directory.
    let info: UserInfo = http
        .get(server.url("/v1/users/alice"))
        .bearer_auth(&login.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info.devices.len(), 1);
    assert_eq!(
        info.identity_key,
        alice.identity.verifying_key().to_bytes().to_vec()
    );
    let resp = http
        .get(server.url("/v1/users/nobody"))
        .bearer_auth(&login.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn key_packages_upload_claim_and_last_resort() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 1, None).await;
    let bob = register(&http, &server, "bob", 2, None).await;
    let mls = MlsClient::for_account(&bob);

    let garbage = json!({"key_packages": [b64(b"not a key package")]});
    let (status, body) = error_of(
        http.post(server.url("/v1/key-packages"))
            .bearer_auth(&bob.token)
            .json(&garbage)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body.code.to_string().as_str()),
        (400, "malformed_mls")
    );

    let upload = json!({
        "key_packages": [b64(&mls.key_package_bytes()), b64(&mls.key_package_bytes())],
        "last_resort": b64(&mls.key_package_bytes()),
    });
    let count: KeyPackageCount = http
        .post(server.url("/v1/key-packages"))
        .bearer_auth(&bob.token)
        .json(&upload)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((count.count, count.has_last_resort), (2, true));

    let claim = json!({"users": ["bob"]});
    for expected_left in [1u32, 0, 0, 0] {
        let resp: ClaimResponse = http
            .post(server.url("/v1/key-packages/claim"))
            .bearer_auth(&alice.token)
            .json(&claim)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(resp.users[0].key_packages.len(), 1);
        assert_eq!(resp.users[0].key_packages[0].device_id, bob.device);
        let count: KeyPackageCount = http
            .get(server.url("/v1/key-packages/count"))
            .bearer_auth(&bob.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!((count.count, count.has_last_resort), (expected_left, true));
    }

    // Claiming yourself skips the calling device; unknown users are named.
    let resp: ClaimResponse = http
        .post(server.url("/v1/key-packages/claim"))
        .bearer_auth(&bob.token)
        .json(&claim)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(resp.users[0].key_packages.is_empty());
    let (status, body) = error_of(
        http.post(server.url("/v1/key-packages/claim"))
            .bearer_auth(&bob.token)
            .json(&json!({"users": ["zed"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert!(body.message.contains("zed"));

    // Too many in one upload.
    let many: Vec<String> = (0..201).map(|_| b64(b"x")).collect();
    let resp = http
        .post(server.url("/v1/key-packages"))
        .bearer_auth(&bob.token)
        .json(&json!({"key_packages": many}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    server.stop().await;
}
