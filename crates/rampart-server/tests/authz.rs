//! The authorisation matrix of the REST API: every route of the OpenAPI
//! document (which a unit test keeps equal to `Server::router()`) × every
//! kind of caller, asserted by real requests to a real server on loopback.
//! A route without a row here, or a row without a route, fails the test.
//!
//! Group admins, read-only members and other organisations' users are
//! columns of the WebSocket (delivery service) matrix, which the delivery
//! tests own: over REST a group is only ever read, and only by its members
//! (`M` below).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rampart_proto::ErrorCode;
use rampart_proto::error::ErrorBody;
use rampart_server::Registration;
use serde_json::json;
use std::collections::BTreeSet;

/// What a caller gets from a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum E {
    /// Allowed: anything but 401 and 403 (made-up ids and bodies answer
    /// 400 or 404, which is fine).
    A,
    /// Denied: 401 or 403.
    D,
    /// Authenticated, then refused for not being a member of the (made-up)
    /// group: 403 `not_member`.
    M,
}
use E::*;

/// The callers, in the order of the matrix columns.
const CALLERS: [&str; 6] = [
    "anonymous",
    "disabled",
    "guest",
    "member",
    "org admin",
    "owner",
];

/// Public routes: the same for everyone.
const OPEN: [E; 6] = [A, A, A, A, A, A];
/// Any live session of an enabled account.
const SESSION: [E; 6] = [D, D, A, A, A, A];
/// Owners and admins.
const ADMIN: [E; 6] = [D, D, D, D, A, A];
/// Owners only.
const OWNER: [E; 6] = [D, D, D, D, D, A];
/// Members of the group only.
const GROUP_MEMBER: [E; 6] = [D, D, M, M, M, M];

#[rustfmt::skip]
const MATRIX: &[(&str, &str, [E; 6])] = &[
    ("GET", "/health", OPEN),
    ("GET", "/v1/openapi.json", OPEN),
    // No metrics token is configured and every caller here is on loopback;
    // tests/metrics.rs covers tokens and other addresses.
    ("GET", "/metrics", OPEN),
    ("POST", "/v1/register", OPEN),
    ("POST", "/v1/login", OPEN),
    ("GET", "/v1/me", SESSION),
    ("POST", "/v1/password", SESSION),
    ("GET", "/v1/2fa", SESSION),
    ("POST", "/v1/2fa/setup", SESSION),
    ("POST", "/v1/2fa/activate", SESSION),
    ("POST", "/v1/2fa/disable", SESSION),
    ("POST", "/v1/2fa/recovery-codes", SESSION),
    ("GET", "/v1/devices", SESSION),
    ("POST", "/v1/devices/{device_id}/revoke", SESSION),
    ("GET", "/v1/security-events", SESSION),
    ("POST", "/v1/link", OPEN),
    ("GET", "/v1/link/{link_id}", SESSION),
    ("POST", "/v1/link/{link_id}/approve", SESSION),
    ("POST", "/v1/link/{link_id}/poll", OPEN),
    ("GET", "/v1/users/{username}", SESSION),
    ("POST", "/v1/key-packages", SESSION),
    ("GET", "/v1/key-packages/count", SESSION),
    ("POST", "/v1/key-packages/claim", SESSION),
    ("GET", "/v1/groups", SESSION),
    ("GET", "/v1/groups/{group_id}", GROUP_MEMBER),
    ("GET", "/v1/policy/messages", SESSION),
    ("GET", "/v1/policy/files", SESSION),
    ("GET", "/v1/policy/dlp", SESSION),
    ("POST", "/v1/dlp/events", SESSION),
    ("POST", "/v1/blobs", SESSION),
    ("PUT", "/v1/blobs/{blob_id}", SESSION),
    ("GET", "/v1/blobs/{blob_id}", SESSION),
    ("DELETE", "/v1/blobs/{blob_id}", SESSION),
    ("GET", "/v1/blobs/{blob_id}/status", SESSION),
    ("GET", "/v1/ws", SESSION),
    ("GET", "/v1/admin/users", ADMIN),
    ("POST", "/v1/admin/invites", ADMIN),
    ("DELETE", "/v1/admin/users/{username}", ADMIN),
    ("POST", "/v1/admin/users/{username}/role", ADMIN),
    ("POST", "/v1/admin/users/{username}/disable", ADMIN),
    ("POST", "/v1/admin/users/{username}/enable", ADMIN),
    ("POST", "/v1/admin/users/{username}/2fa-reset", ADMIN),
    ("GET", "/v1/admin/groups", ADMIN),
    ("GET", "/v1/admin/access", ADMIN),
    ("PUT", "/v1/admin/access", OWNER),
    ("GET", "/v1/admin/sessions", ADMIN),
    ("POST", "/v1/admin/sessions/{session_id}/revoke", ADMIN),
    ("GET", "/v1/admin/audit", ADMIN),
    ("GET", "/v1/admin/audit/checkpoints", ADMIN),
    ("POST", "/v1/admin/audit/checkpoint", ADMIN),
    ("GET", "/v1/admin/audit/key", ADMIN),
    // Last: it ends the caller's session.
    ("POST", "/v1/logout", SESSION),
];

/// Made-up values for path parameters: well formed, naming nothing.
fn fill(path: &str) -> String {
    path.replace("{device_id}", "00000000000000ff")
        .replace("{link_id}", "nolink")
        .replace("{username}", "nobody")
        .replace("{group_id}", &format!("00{}", "ab".repeat(31)))
        .replace("{blob_id}", &"cd".repeat(32))
        .replace("{session_id}", &"0".repeat(16))
}

fn documented_routes() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    let mut routes = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

#[tokio::test]
async fn every_route_by_every_kind_of_caller() {
    // Every route has exactly one row.
    let rows: BTreeSet<_> = MATRIX
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(rows.len(), MATRIX.len(), "a route has two rows");
    let documented = documented_routes();
    let missing: Vec<_> = documented.difference(&rows).collect();
    let extra: Vec<_> = rows.difference(&documented).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without a matrix row: {missing:?}; rows without a route: {extra:?}"
    );

    // One account per kind, each created once (Argon2 is slow).
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let http = reqwest::Client::new();
    let owner = register(&http, &server, "olive", 1, None).await;
    let admin = register(&http, &server, "adam", 2, None).await;
    let member = register(&http, &server, "mia", 3, None).await;
    let guest = register(&http, &server, "gus", 4, None).await;
    let disabled = register(&http, &server, "dora", 5, None).await;
    for (name, action, body) in [
        ("adam", "role", Some(json!({"role": "admin"}))),
        ("gus", "role", Some(json!({"role": "guest"}))),
        ("dora", "disable", None),
    ] {
        let mut req = http
            .post(server.url(&format!("/v1/admin/users/{name}/{action}")))
            .bearer_auth(&owner.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        assert_eq!(req.send().await.unwrap().status(), 200);
    }
    let tokens: [Option<&str>; 6] = [
        None,
        Some(&disabled.token),
        Some(&guest.token),
        Some(&member.token),
        Some(&admin.token),
        Some(&owner.token),
    ];

    let mut failures = Vec::new();
    for (method, path, expected) in MATRIX {
        for (column, token) in tokens.iter().enumerate() {
            let want = expected[column];
            let got = if *path == "/v1/ws" {
                // A real upgrade: a plain GET would not get that far.
                match try_connect(&server, *token).await {
                    Ok(mut ws) => {
                        let _ = futures_util::SinkExt::close(&mut ws).await;
                        (200, None)
                    }
                    Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                        (resp.status().as_u16(), None)
                    }
                    Err(e) => panic!("{e}"),
                }
            } else {
                let mut req = http.request(method.parse().unwrap(), server.url(&fill(path)));
                if let Some(token) = token {
                    req = req.bearer_auth(token);
                }
                if *method != "GET" && *method != "DELETE" {
                    req = req.json(&json!({}));
                }
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let code = resp.json::<ErrorBody>().await.ok().map(|b| b.code);
                (status, code)
            };
            let denied = got.0 == 401 || got.0 == 403;
            let fine = match want {
                A => !denied,
                D => denied,
                M => got == (403, Some(ErrorCode::NotMember)),
            };
            if !fine {
                failures.push(format!(
                    "{method} {path} as {}: expected {want:?}, got {} {:?}",
                    CALLERS[column], got.0, got.1
                ));
            }
            // A disabled account is told why, not just refused.
            if column == 1
                && want == D
                && *path != "/v1/ws"
                && got.1 != Some(ErrorCode::AccountDisabled)
            {
                failures.push(format!("{method} {path} as disabled: got {:?}", got.1));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    server.stop().await;
}
