//! `GET /metrics` on a real server on loopback: the documented names, the
//! counters moving with real traffic (logins, an MLS message relayed
//! between two devices, DLP reports, a lockout, request latencies), and who
//! may scrape (a token when one is configured, the separate listen
//! address, a TLS proxy in front).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use rampart_proto::ErrorCode;
use rampart_proto::GroupId;
use rampart_proto::api::{BlobStatus, NewBlob};
use rampart_proto::frame::{ClientFrame, DeliveryKind, SendMessage, ServerFrame};
use rampart_server::config::Secret;
use rampart_server::{
    Clock, ConfigError, MetricsConfig, RateLimits, Registration, Server, ServerConfig, ServerError,
};
use serde_json::json;
use std::collections::BTreeMap;

/// The names the README documents.
const DOCUMENTED: [&str; 12] = [
    "rampart_build_info",
    "rampart_websocket_connections",
    "rampart_messages_relayed_total",
    "rampart_handshake_messages_accepted_total",
    "rampart_queued_messages",
    "rampart_devices_with_queued_messages",
    "rampart_blobs_stored",
    "rampart_blob_stored_bytes",
    "rampart_logins_total",
    "rampart_rate_limited_total",
    "rampart_dlp_events_total",
    "rampart_http_request_duration_seconds",
];

/// Samples by `name{labels}` (as written), with the raw text.
struct Scrape {
    text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// A sample's value; a missing one is 0 (series appear on first use).
    fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }
}

fn parse(text: String) -> Scrape {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        samples.insert(series.to_owned(), value.parse().unwrap());
    }
    Scrape { text, samples }
}

async fn get_metrics(http: &reqwest::Client, url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = http.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

async fn scrape(http: &reqwest::Client, server: &TestServer) -> Scrape {
    let resp = get_metrics(http, &server.url("/metrics"), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse(resp.text().await.unwrap())
}

async fn login(
    http: &reqwest::Client,
    server: &TestServer,
    account: &Account,
    password: &str,
) -> u16 {
    let body = json!({
        "username": account.username,
        "password": password,
        "device_id": account.device,
    });
    call(http, server, "POST", "/v1/login", None, Some(body))
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn counters_move_with_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        registration: Registration::Open,
        rate_limits: RateLimits {
            account_free_failures: 2,
            ..RateLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(config, dir.path(), Clock::system()).await;
    let http = reqwest::Client::new();

    let before = scrape(&http, &server).await;
    for name in DOCUMENTED {
        assert!(
            before.text.contains(&format!("# HELP {name} ")),
            "{name} is not announced:\n{}",
            before.text
        );
        assert!(before.text.contains(&format!("# TYPE {name} ")), "{name}");
    }
    assert_eq!(before.get("rampart_messages_relayed_total"), 0.0);
    assert_eq!(before.get("rampart_websocket_connections"), 0.0);

    // Logins: one right, one wrong; then a third account locks itself
    // out (two free failures) and is refused unchecked, even with the
    // right password.
    let alice = register(&http, &server, "alice", 0xa1, None).await;
    let bob = register(&http, &server, "bob", 0xb1, None).await;
    let mallory = register(&http, &server, "mallory", 0xc1, None).await;
    assert_eq!(
        login(&http, &server, &alice, "correct horse battery").await,
        200
    );
    assert_eq!(
        login(&http, &server, &bob, "wrong horse battery").await,
        401
    );
    assert_eq!(login(&http, &server, &mallory, "wrong 1").await, 401);
    assert_eq!(login(&http, &server, &mallory, "wrong 2").await, 401);
    assert_eq!(login(&http, &server, &mallory, "wrong 3").await, 429);
    assert_eq!(
        login(&http, &server, &mallory, "correct horse battery").await,
        429
    );

    // A directory lookup of a name that does not exist: counted under its
    // route template, the name itself nowhere.
    let resp = call(
        &http,
        &server,
        "GET",
        "/v1/users/nosuchperson",
        Some(&alice.token),
        None,
    )
    .await;
    assert_eq!(resp.status(), 404);

    // Alice creates a group with Bob (a commit) and sends him a message.
    let (a, b) = (MlsClient::for_account(&alice), MlsClient::for_account(&bob));
    let group_id = GroupId::new_group([7; 31]);
    let (mut wa, mut group, _) =
        create_group_over_ws(&server, &alice, &a, group_id, &[(&b, bob.device)]).await;
    let mut wb = connect(&server, &bob.token).await;
    assert!(
        matches!(recv(&mut wb).await, Some(ServerFrame::Deliver(d)) if d.kind == DeliveryKind::Welcome)
    );
    assert_eq!(
        recv(&mut wb).await,
        Some(ServerFrame::BacklogDone { up_to: 1 })
    );
    let message = a.message(&mut group, b"hello bob");
    for _ in 0..2 {
        // The resend is answered as a duplicate and not counted again.
        send(
            &mut wa,
            &ClientFrame::Send(SendMessage {
                request_id: 2,
                key: key(2),
                group: group_id,
                expires_in: None,
                recalls: None,
                attachments: vec![],
                message: message.clone(),
            }),
        )
        .await;
        assert!(matches!(
            recv(&mut wa).await,
            Some(ServerFrame::Accepted { request_id: 2, .. })
        ));
    }
    match recv(&mut wb).await {
        Some(ServerFrame::Deliver(d)) => assert_eq!(d.kind, DeliveryKind::Application),
        other => panic!("expected the message, got {other:?}"),
    }

    // A blob of 1,000 bytes in the group.
    let resp = http
        .post(server.url("/v1/blobs"))
        .bearer_auth(&alice.token)
        .json(&NewBlob {
            group: group_id,
            size: 1000,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let blob: BlobStatus = resp.json().await.unwrap();
    let resp = http
        .put(server.url(&format!("/v1/blobs/{}?offset=0", blob.id)))
        .bearer_auth(&alice.token)
        .body(vec![0u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // DLP reports: what clients did, by action.
    let event = |action: &str| json!({"rule": "card", "action": action, "group_id": group_id, "at": 1_700_000_000_000u64});
    let resp = call(
        &http,
        &server,
        "POST",
        "/v1/dlp/events",
        Some(&bob.token),
        Some(json!({"events": [event("block"), event("redact"), event("redact")]})),
    )
    .await;
    assert_eq!(resp.status(), 204);

    let after = scrape(&http, &server).await;
    let delta = |series: &str| after.get(series) - before.get(series);
    for (series, want) in [
        ("rampart_logins_total{outcome=\"success\"}", 1.0),
        ("rampart_logins_total{outcome=\"bad_password\"}", 3.0),
        ("rampart_logins_total{outcome=\"locked\"}", 2.0),
        ("rampart_logins_total{outcome=\"bad_code\"}", 0.0),
        ("rampart_rate_limited_total{limit=\"lockout\"}", 2.0),
        ("rampart_messages_relayed_total", 1.0),
        ("rampart_handshake_messages_accepted_total", 1.0),
        ("rampart_dlp_events_total{action=\"block\"}", 1.0),
        ("rampart_dlp_events_total{action=\"redact\"}", 2.0),
        ("rampart_dlp_events_total{action=\"warn\"}", 0.0),
        (
            "rampart_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/login\",status=\"2xx\"}",
            1.0,
        ),
        (
            "rampart_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/login\",status=\"4xx\"}",
            5.0,
        ),
        (
            "rampart_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/users/{username}\",status=\"4xx\"}",
            1.0,
        ),
        // The scrape before this one.
        (
            "rampart_http_request_duration_seconds_count{method=\"GET\",route=\"/metrics\",status=\"2xx\"}",
            1.0,
        ),
    ] {
        assert_eq!(delta(series), want, "{series}\n{}", after.text);
    }
    // Read at scrape time: both devices online, Bob's two unacknowledged
    // deliveries (Welcome and message) queued, the blob's bytes stored.
    for (series, want) in [
        ("rampart_websocket_connections", 2.0),
        ("rampart_queued_messages", 2.0),
        ("rampart_devices_with_queued_messages", 1.0),
        ("rampart_blobs_stored", 1.0),
        ("rampart_blob_stored_bytes", 1000.0),
    ] {
        assert_eq!(after.get(series), want, "{series}\n{}", after.text);
    }
    // Histograms are cumulative and their count is the +Inf bucket.
    let login_ok = "method=\"POST\",route=\"/v1/login\",status=\"2xx\"";
    assert_eq!(
        after.get(&format!(
            "rampart_http_request_duration_seconds_bucket{{{login_ok},le=\"+Inf\"}}"
        )),
        1.0
    );
    assert!(
        after.get(&format!(
            "rampart_http_request_duration_seconds_sum{{{login_ok}}}"
        )) > 0.0
    );
    // Raw paths and ids never become labels.
    for secret in ["nosuchperson", "alice", "mallory", &blob.id.to_string()] {
        assert!(!after.text.contains(secret), "{secret} in\n{}", after.text);
    }

    // Bob acknowledges: his queue empties; he goes offline: one socket.
    send(&mut wb, &ClientFrame::Ack { up_to: 2 }).await;
    drop(wb);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = scrape(&http, &server).await;
        if now.get("rampart_queued_messages") == 0.0
            && now.get("rampart_websocket_connections") == 1.0
        {
            assert_eq!(now.get("rampart_devices_with_queued_messages"), 0.0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", now.text);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(wa);
    server.stop().await;
}

#[tokio::test]
async fn a_configured_token_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let token = "metrics-token-0123456789";
    let config = ServerConfig {
        metrics: MetricsConfig {
            listen: None,
            token: Some(Secret::new(token)),
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(config, dir.path(), Clock::system()).await;
    let http = reqwest::Client::new();
    let url = server.url("/metrics");
    // Loopback is not enough once a token is configured.
    for wrong in [None, Some("wrong-token"), Some("metrics-token-012345678")] {
        let (status, body) = error_of(get_metrics(&http, &url, wrong).await).await;
        assert_eq!(
            (status, body.code),
            (401, ErrorCode::Unauthorized),
            "{wrong:?}"
        );
        assert!(body.message.contains("token"), "{}", body.message);
    }
    let resp = get_metrics(&http, &url, Some(token)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("# TYPE rampart_logins_total counter"));
    assert!(!text.contains(token));
    server.stop().await;
}

#[tokio::test]
async fn a_separate_listen_address_serves_metrics_alone() {
    let dir = tempfile::tempdir().unwrap();
    // A non-loopback metrics address without a token is refused at start.
    let open = Server::open(ServerConfig {
        data_dir: dir.path().to_owned(),
        metrics: MetricsConfig {
            listen: Some("0.0.0.0:0".parse().unwrap()),
            token: None,
        },
        ..ServerConfig::default()
    })
    .await;
    match open {
        Err(ServerError::Config(ConfigError::Metrics(msg))) => {
            assert!(msg.contains("metrics.token"), "{msg}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Behind a TLS proxy, the main address's loopback peers are the proxy:
    // refused there, served on the metrics address.
    let server = Server::open(ServerConfig {
        data_dir: dir.path().to_owned(),
        behind_tls_proxy: true,
        metrics: MetricsConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            token: None,
        },
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let metrics_addr = server.metrics_addr().unwrap();
    assert!(metrics_addr.ip().is_loopback() && metrics_addr.port() != 0);
    let server = TestServer::serve(server).await;
    let http = reqwest::Client::new();
    let separate = format!("http://{metrics_addr}/metrics");

    let resp = get_metrics(&http, &separate, None).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("# TYPE rampart_queued_messages gauge")
    );
    // The main address: a loopback peer, but X-Forwarded-For is never
    // believed and the proxy's own address does not count.
    let resp = http
        .get(server.url("/metrics"))
        .header("x-forwarded-for", "127.0.0.1")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(resp).await;
    assert_eq!((status, body.code), (403, ErrorCode::Forbidden));
    assert!(body.message.contains("[metrics] token"), "{}", body.message);
    // Nothing else is served on the metrics address.
    for path in ["/health", "/v1/login", "/v1/openapi.json"] {
        let resp = http
            .get(format!("http://{metrics_addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    // It stops with the server.
    server.stop().await;
    assert!(
        tokio::net::TcpStream::connect(metrics_addr).await.is_err(),
        "the metrics address still accepts connections"
    );
}
