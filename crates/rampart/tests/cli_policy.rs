//! `rampart admin policy` and `rampart admin dlp-events` through the real
//! binary, against a real server process: a valid policy file is stored and
//! pushed to a connected device, an invalid one is refused with its line and
//! changes nothing, and reported events are listed without content.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;

use binary::{BIN, ServerProcess, fails, free_port, json_of, ok};
use ed25519_dalek::{Signer as _, SigningKey};
use futures_util::StreamExt as _;
use rampart_proto::api::{NewDevice, OrgPolicy, RegisterRequest, SessionResponse};
use rampart_proto::frame::ServerFrame;
use rampart_proto::{DeviceId, GroupId, Username};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const VALID: &str = r#"version = 1

[detectors.card]
action = "block"

[[custom]]
id = "project-falcon"
keywords = ["project falcon"]
action = "warn"
"#;

/// Line 4 holds an action that does not exist.
const INVALID: &str = r#"version = 1

[detectors.card]
action = "blok"
"#;

/// `rampart server` with open registration, once it accepts connections.
fn start_server(data: &Path, port: u16) -> ServerProcess {
    ServerProcess::start(data, port, &["--registration", "open"])
}

fn admin(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("admin")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Registers `alice` over HTTP with a properly signed device certificate;
/// returns the session token.
async fn register_alice(http: &reqwest::Client, url: &str) -> String {
    let identity = SigningKey::from_bytes(&[7; 32]);
    let username = Username::parse("alice").unwrap();
    let device_id = DeviceId::new(1).unwrap();
    let signature_key = vec![1; 32];
    let certificate = identity.sign(&rampart_proto::device_certificate_message(
        &username,
        device_id,
        &signature_key,
    ));
    let req = RegisterRequest {
        username,
        password: "correct horse battery".into(),
        invite: None,
        identity_key: identity.verifying_key().to_bytes().to_vec(),
        device: NewDevice {
            device_id,
            name: "test".into(),
            signature_key,
            certificate: certificate.to_bytes().to_vec(),
        },
    };
    let resp = http
        .post(format!("{url}/v1/register"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<SessionResponse>().await.unwrap().token
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_policy_and_dlp_events_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_arg = data.to_str().unwrap();
    let valid = tmp.path().join("policy.toml");
    std::fs::write(&valid, VALID).unwrap();
    let invalid = tmp.path().join("broken.toml");
    std::fs::write(&invalid, INVALID).unwrap();

    // A wrong --data is refused rather than a fresh database created.
    let err = fails(admin(&["policy", "show", "--data", data_arg]));
    assert!(err.contains("does not exist"), "{err}");
    assert!(!data.exists());

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = start_server(&data, port);
    let http = reqwest::Client::new();
    let token = register_alice(&http, &url).await;

    // Nothing set yet.
    let shown = json_of(admin(&["--json", "policy", "show", "--data", data_arg]));
    assert_eq!(shown["revision"], 0);
    assert!(shown["document"].is_null());
    let text = ok(admin(&["policy", "show", "--data", data_arg]));
    assert!(text.contains("no policy has been set"), "{text}");

    // A device connected to the running server.
    let mut req = format!("ws://127.0.0.1:{port}/v1/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();

    // A valid file is stored while the server runs, and the device hears of it.
    let out = ok(admin(&[
        "policy",
        "set",
        valid.to_str().unwrap(),
        "--data",
        data_arg,
    ]));
    assert!(out.contains("revision 1"), "{out}");
    let pushed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    if let Ok(ServerFrame::PolicyChanged { revision }) = ServerFrame::decode(&b) {
                        return revision;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("no PolicyChanged within 5 s");
    assert_eq!(pushed, 1);

    // What clients fetch is what `show` shows: the canonical JSON.
    let fetched: OrgPolicy = http
        .get(format!("{url}/v1/policy/dlp"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched.revision, 1);
    let document: Value = serde_json::from_str(fetched.document.as_deref().unwrap()).unwrap();
    let shown = json_of(admin(&["policy", "show", "--data", data_arg, "--json"]));
    assert_eq!(shown["revision"], 1);
    assert_eq!(shown["updated_at"], json!(fetched.updated_at));
    assert_eq!(shown["document"], document);
    assert_eq!(shown["document"]["detectors"]["card"]["action"], "block");
    assert_eq!(shown["document"]["custom"][0]["id"], "project-falcon");
    let text = ok(admin(&["policy", "show", "--data", data_arg]));
    assert!(text.starts_with("revision 1, set "), "{text}");
    assert!(text.contains("\"project-falcon\""), "{text}");

    // An invalid file: the error names the line, and nothing changes.
    let err = fails(admin(&[
        "policy",
        "set",
        invalid.to_str().unwrap(),
        "--data",
        data_arg,
    ]));
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("broken.toml"), "{err}");
    let err = fails(admin(&[
        "policy",
        "set",
        tmp.path().join("missing.toml").to_str().unwrap(),
        "--data",
        data_arg,
    ]));
    assert!(err.contains("cannot read"), "{err}");
    let shown = json_of(admin(&["--json", "policy", "show", "--data", data_arg]));
    assert_eq!(shown["revision"], 1);

    let set = json_of(admin(&[
        "--json",
        "policy",
        "set",
        valid.to_str().unwrap(),
        "--data",
        data_arg,
    ]));
    assert_eq!(set, json!({ "revision": 2 }));

    // Reported events are listed: who, where, which rule, what was done.
    let events = json_of(admin(&["--json", "dlp-events", "--data", data_arg]));
    assert_eq!(events, json!([]));
    assert!(ok(admin(&["dlp-events", "--data", data_arg])).contains("no DLP events"));
    let group = GroupId::new_group([3; 31]);
    let resp = http
        .post(format!("{url}/v1/dlp/events"))
        .bearer_auth(&token)
        .json(&json!({ "events": [
            { "rule": "card", "action": "block", "group_id": group, "at": 1_700_000_000_000u64 },
            { "rule": "custom.project-falcon", "action": "warn", "group_id": group, "at": 1_700_000_000_001u64 },
        ] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let events = json_of(admin(&["--json", "dlp-events", "--data", data_arg]));
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["rule"], "custom.project-falcon");
    assert_eq!(events[0]["action"], "warn");
    assert_eq!(events[0]["username"], "alice");
    assert_eq!(events[0]["group_id"], json!(group));
    assert_eq!(events[0]["client_at"], 1_700_000_000_001u64);
    assert_eq!(events[1]["rule"], "card");
    let text = ok(admin(&["dlp-events", "--data", data_arg, "--limit", "1"]));
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("@alice"), "{text}");
    assert!(text.contains(&group.short()), "{text}");
    assert!(text.contains("custom.project-falcon"), "{text}");
    assert!(text.contains("warn"), "{text}");
}

#[test]
fn admin_policy_help_explains_the_commands() {
    let help = ok(admin(&["policy", "set", "--help"]));
    assert!(help.contains("TOML"), "{help}");
    assert!(help.contains("[detectors.card]"), "{help}");
    let help = ok(admin(&["dlp-events", "--help"]));
    assert!(help.contains("Never the content"), "{help}");
    assert!(help.contains("--limit"), "{help}");
}
