//! The server's structured log: the real binary with `--log-format json
//! --log-level debug`, its stderr captured to a file, through a whole
//! scenario driven by the CLI (invites, registration, two-factor
//! enrolment, logins right and wrong, a message, a file, lookups of names
//! that do not exist, a session over plain HTTP). Every line must be a JSON
//! object with the stable fields, and no secret or user-written text may
//! appear anywhere in the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;

use binary::{
    INVITE_WAIT, ServerProcess, TwoFactor, data_invite, enable_two_factor, free_port, json_of,
    now_ms, ok, rampart_as, register_args,
};
use std::path::Path;
use std::process::Output;

const PASSPHRASE: &str = "logs test profile passphrase";
const ALICE_PASSWORD: &str = "Canary-Pw-7QX2-lime-otter-one";
const BOB_PASSWORD: &str = "Canary-Pw-93KD-fern-heron-two";
const WRONG_PASSWORD: &str = "Canary-Wrong-Pw-5ZT1-moss-crane";
const MESSAGE: &str = "canary message text 4f1c: meet at the north gate";
const CAPTION: &str = "canary caption 8d2e";
const FILE_NAME: &str = "canary-file-name-b71a.txt";
const FILE_CONTENT: &str = "canary file content 2c9f, quarterly numbers";
const GHOST_USER: &str = "ghostcanary61";
const GHOST_LOGIN: &str = "ghostlogin93";

fn rampart(profile: &Path, args: &[&str], password: &str) -> Output {
    rampart_as(profile, PASSPHRASE, password, args)
}

/// Over plain HTTP: a login of `username` (200 with a token, or refused).
async fn http_login(
    http: &reqwest::Client,
    url: &str,
    username: &str,
    password: &str,
    device_id: &str,
) -> reqwest::Response {
    http.post(format!("{url}/v1/login"))
        .json(&serde_json::json!({
            "username": username,
            "password": password,
            "device_id": device_id,
        }))
        .send()
        .await
        .unwrap()
}

#[test]
fn json_logs_are_parseable_and_hold_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("server.log");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let server = ServerProcess::start_logging_to(
        &data,
        port,
        &["--log-format", "json", "--log-level", "debug"],
        &log,
    );
    let owner_invite = server
        .invite(INVITE_WAIT)
        .expect("the first start prints the owner invite on stdout");
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    let alice_args = register_args(&url, "alice", &owner_invite);
    ok(rampart(&alice, &alice_args, ALICE_PASSWORD));
    let bob_invite = data_invite(&data);
    let bob_args = register_args(&url, "bob", &bob_invite);
    ok(rampart(&bob, &bob_args, BOB_PASSWORD));

    // Two-factor enrolment, then a login with password and code.
    let TwoFactor {
        shown: totp_shown,
        secret: totp_secret,
        code: enrol_code,
        recovery_codes,
        ..
    } = enable_two_factor(&alice, PASSPHRASE, ALICE_PASSWORD);
    ok(rampart(&alice, &["logout"], ""));
    let login_code = rampart_server::totp::code(&totp_secret, now_ms() / 1000 + 30);
    ok(rampart(
        &alice,
        &["login", "--totp", &login_code],
        ALICE_PASSWORD,
    ));
    // A wrong password.
    let refused = rampart(&bob, &["login"], WRONG_PASSWORD);
    assert!(!refused.status.success());

    // A message and a file, received by Bob.
    ok(rampart(&alice, &["send", "@bob", MESSAGE], ""));
    let file = tmp.path().join(FILE_NAME);
    std::fs::write(&file, FILE_CONTENT).unwrap();
    ok(rampart(
        &alice,
        &[
            "send-file",
            "@bob",
            file.to_str().unwrap(),
            "--caption",
            CAPTION,
        ],
        "",
    ));
    ok(rampart(&bob, &["sync"], ""));
    let inbox = ok(rampart(&bob, &["inbox", "--all"], ""));
    assert!(inbox.contains(MESSAGE), "{inbox}");
    assert!(inbox.contains(FILE_NAME), "{inbox}");
    // A name typed for an account that does not exist.
    assert!(
        !rampart(&alice, &["send", &format!("@{GHOST_USER}"), "hi"], "")
            .status
            .success()
    );

    // A session over plain HTTP, whose token the test knows; and a login
    // attempt for an account that does not exist.
    let bob_device = json_of(rampart(&bob, &["--json", "whoami"], ""))["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = runtime.block_on(async {
        let http = reqwest::Client::new();
        let resp = http_login(&http, &url, "bob", BOB_PASSWORD, &bob_device).await;
        assert_eq!(resp.status(), 200);
        let session: serde_json::Value = resp.json().await.unwrap();
        let token = session["token"].as_str().unwrap().to_owned();
        let me = http
            .get(format!("{url}/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
        let ghost = http_login(&http, &url, GHOST_LOGIN, WRONG_PASSWORD, &bob_device).await;
        assert_eq!(ghost.status(), 401);
        let lookup = http
            .get(format!("{url}/v1/users/{GHOST_USER}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(lookup.status(), 404);
        token
    });
    server.stop();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 20, "a short log:\n{text}");
    let mut levels = std::collections::BTreeSet::new();
    let mut routes = std::collections::BTreeSet::new();
    for line in &lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let timestamp = entry["timestamp"]
            .as_str()
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            timestamp.len() >= 20 && timestamp.as_bytes()[10] == b'T',
            "{line}"
        );
        let level = entry["level"].as_str().unwrap_or_else(|| panic!("{line}"));
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "{line}"
        );
        levels.insert(level.to_owned());
        assert!(entry["fields"].is_object(), "{line}");
        let target = entry["target"].as_str().unwrap_or_else(|| panic!("{line}"));
        // Every event of ours has a message (a library's may not: sqlx
        // logs statements as fields alone).
        if target.starts_with("rampart") {
            assert!(entry["fields"]["message"].is_string(), "{line}");
        }
        if entry["fields"]["message"] == "handled" {
            let route = entry["span"]["route"]
                .as_str()
                .unwrap_or_else(|| panic!("{line}"));
            routes.insert(route.to_owned());
            assert!(entry["fields"]["status"].is_u64(), "{line}");
        }
    }
    assert!(
        levels.contains("DEBUG") && levels.contains("INFO"),
        "{levels:?}"
    );
    // Requests are logged by route template, never by path.
    for route in [
        "/v1/login",
        "/v1/register",
        "/v1/users/{username}",
        "/v1/ws",
    ] {
        assert!(routes.contains(route), "{route} not in {routes:?}");
    }
    assert!(
        text.contains("rampart server listening"),
        "the start-up notice is logged"
    );

    let mut canaries = vec![
        ALICE_PASSWORD.to_owned(),
        BOB_PASSWORD.to_owned(),
        WRONG_PASSWORD.to_owned(),
        owner_invite,
        bob_invite,
        MESSAGE.to_owned(),
        "north gate".to_owned(),
        CAPTION.to_owned(),
        FILE_NAME.to_owned(),
        "canary-file-name".to_owned(),
        FILE_CONTENT.to_owned(),
        "quarterly numbers".to_owned(),
        GHOST_USER.to_owned(),
        GHOST_LOGIN.to_owned(),
        totp_shown,
        token,
    ];
    canaries.extend(recovery_codes);
    // Six-digit codes: looked for as whole numbers, since timestamps and
    // durations are full of digits.
    for code in [&enrol_code, &login_code] {
        let whole = text.match_indices(code.as_str()).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + code.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_digit())
                && !after.is_some_and(|c| c.is_ascii_digit())
        });
        assert!(!whole, "the log holds the code {code}");
    }
    for canary in &canaries {
        assert!(!canary.is_empty());
        assert!(
            !text.contains(canary.as_str()),
            "the log holds {canary:?}:\n{}",
            lines
                .iter()
                .filter(|l| l.contains(canary.as_str()))
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
