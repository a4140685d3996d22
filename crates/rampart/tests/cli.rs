//! The real `rampart` binary in temp directories: server with invites, the
//! client commands with --json, and a server killed with SIGKILL losing nothing
//! it had acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;

use binary::{
    BIN, ServerProcess, data_invite, enable_two_factor, free_port, json_of, ok, rampart_as,
    register_args, start_fresh_server,
};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PASSPHRASE: &str = "cli test passphrase";

fn rampart(profile: &Path, args: &[&str], password: &str) -> Output {
    rampart_as(profile, PASSPHRASE, password, args)
}

#[test]
fn cli_round_trip_with_invites_and_a_sigkilled_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (mut server, invite) = start_fresh_server(&data, port, &[]);
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");

    // Registration needs an invite, and each invite works once.
    let out = rampart(
        &bob,
        &["register", "--server", &url, "--username", "bob"],
        "river-stone-913",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invite"),
        "{:?}",
        out
    );
    assert!(
        !bob.join("profile.db").exists(),
        "a refused registration leaves no profile behind"
    );
    let alice_args = register_args(&url, "alice", &invite);
    ok(rampart(&alice, &alice_args, "tulip-garden-41"));
    let out = rampart(
        &bob,
        &register_args(&url, "bob", &invite),
        "river-stone-913",
    );
    assert!(!out.status.success(), "an invite is single-use");
    let bob_invite = data_invite(&data);
    let bob_args = register_args(&url, "bob", &bob_invite);
    ok(rampart(&bob, &bob_args, "river-stone-913"));

    let who: serde_json::Value =
        serde_json::from_str(&ok(rampart(&alice, &["--json", "whoami"], ""))).unwrap();
    assert_eq!(who["username"], "alice");
    assert_eq!(who["session_valid"], true);
    assert_eq!(who["role"], "owner");

    // Alice sends; the server acknowledged it, then dies by SIGKILL.
    let sent: serde_json::Value = serde_json::from_str(&ok(rampart(
        &alice,
        &["--json", "send", "@bob", "survives a crash"],
        "",
    )))
    .unwrap();
    assert!(sent["id"].is_string());
    server.kill(); // SIGKILL on Unix

    let mut server = ServerProcess::start(&data, port, &[]);
    assert!(
        server.invite(Duration::from_millis(500)).is_none(),
        "only the very first start prints an owner invite"
    );
    let synced: serde_json::Value =
        serde_json::from_str(&ok(rampart(&bob, &["--json", "sync"], ""))).unwrap();
    assert_eq!(synced["new_messages"], 1);
    let inbox: serde_json::Value =
        serde_json::from_str(&ok(rampart(&bob, &["--json", "inbox", "--all"], ""))).unwrap();
    assert_eq!(inbox[0]["text"], "survives a crash");
    assert_eq!(inbox[0]["sender"], "alice");
    assert_eq!(inbox[0]["conversation"], "@alice");

    // Groups through the CLI.
    ok(rampart(
        &alice,
        &["group", "create", "ops", "--members", "bob"],
        "",
    ));
    ok(rampart(&alice, &["send", "#ops", "group hello"], ""));
    ok(rampart(&bob, &["sync"], ""));
    let text = ok(rampart(&bob, &["inbox"], ""));
    assert!(text.contains("#ops alice: group hello"), "{text}");
    let members: serde_json::Value = serde_json::from_str(&ok(rampart(
        &bob,
        &["--json", "group", "members", "ops"],
        "",
    )))
    .unwrap();
    assert_eq!(members.as_array().map(|a| a.len()), Some(2));

    // Logout ends the session; login brings it back.
    ok(rampart(&bob, &["logout"], ""));
    let out = rampart(&bob, &["sync"], "");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("login"),
        "{:?}",
        out
    );
    ok(rampart(&bob, &["login"], "river-stone-913"));
    ok(rampart(&bob, &["sync"], ""));

    // A wrong passphrase is a clean error that reveals nothing.
    let out = Command::new(BIN)
        .args(["--profile", alice.to_str().unwrap(), "inbox"])
        .env("RAMPART_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(!err.contains("not the passphrase"));

    // Plain HTTP on a public address is refused with advice.
    let out = Command::new(BIN)
        .args([
            "server",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-cert"),
        "{:?}",
        out
    );

    server.kill();
}

#[test]
fn demo_runs_and_the_server_never_sees_plaintext() {
    let out = Command::new(BIN).arg("demo").output().unwrap();
    let text = ok(out);
    assert!(
        text.contains("@bob reads in @alice: @alice says \"the launch code is 0000\""),
        "{text}"
    );
    assert!(text.contains("carol's new messages: 0"), "{text}");
    assert!(!text.contains("YES"), "plaintext found on disk:\n{text}");
}

/// A self-signed certificate for 127.0.0.1 made with the `openssl` command
/// (`.ci/run` installs it); `None` when it is not installed here.
fn self_signed_cert(dir: &Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then_some((cert, key))
}

#[test]
fn server_serves_https_with_the_given_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed_cert(tmp.path()) else {
        eprintln!("SKIPPED: the `openssl` command is not installed (.ci/run installs it)");
        return;
    };
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "server",
            "--data",
            tmp.path().join("data").to_str().unwrap(),
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = ServerProcess::adopt(child);
    let pem = std::fs::read(&cert).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match client
                .get(format!("https://127.0.0.1:{port}/health"))
                .send()
                .await
            {
                Ok(resp) => {
                    assert_eq!(resp.status(), 200);
                    let body: serde_json::Value = resp.json().await.unwrap();
                    assert_eq!(body["status"], "ok");
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("https /health failed: {e}"),
            }
        }
        // Plain HTTP to the TLS port gets no answer.
        let plain = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await;
        assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    });
}

#[test]
fn cli_two_factor_devices_and_safety_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (_server, invite) = start_fresh_server(&data, port, &[]);
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    let alice_args = register_args(&url, "alice", &invite);
    ok(rampart(&alice, &alice_args, "tulip-garden-41"));
    let bob_invite = data_invite(&data);
    let bob_args = register_args(&url, "bob", &bob_invite);
    ok(rampart(&bob, &bob_args, "river-stone-913"));

    // A common password is refused with a clear reason.
    let carol_invite = data_invite(&data);
    let carol_args = register_args(&url, "carol", &carol_invite);
    let weak = rampart(&tmp.path().join("carol"), &carol_args, "qwertyuiop123");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("weak_password"));

    // `2fa enable`: the secret comes out, the code goes in on stdin.
    let two_factor = enable_two_factor(&alice, PASSPHRASE, "tulip-garden-41");
    assert_eq!(two_factor.recovery_codes.len(), 10);

    // The password alone no longer logs in; password and code do.
    ok(rampart(&alice, &["logout"], ""));
    let refused = rampart(&alice, &["login"], "tulip-garden-41");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--totp"));
    let next = rampart_server::totp::code(&two_factor.secret, two_factor.at + 30);
    ok(rampart(
        &alice,
        &["login", "--totp", &next],
        "tulip-garden-41",
    ));
    let status = json_of(rampart(&alice, &["--json", "2fa", "status"], ""));
    assert_eq!(status["enabled"], true);

    // Devices and security events.
    let devices = json_of(rampart(&alice, &["--json", "devices"], ""));
    let devices = devices.as_array().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["current"], true);
    assert_eq!(devices[0]["certified"], true);
    let events = ok(rampart(&alice, &["--json", "security-events"], ""));
    assert!(events.contains("two_factor_enabled"));
    assert!(!events.contains(&next));

    // Safety numbers agree on both sides; confirming marks bob verified.
    let from_alice = json_of(rampart(&alice, &["--json", "verify", "@bob"], ""));
    let from_bob = json_of(rampart(&bob, &["--json", "verify", "@alice"], ""));
    assert_eq!(from_alice["safety_number"], from_bob["safety_number"]);
    assert_eq!(from_alice["safety_number"].as_str().unwrap().len(), 60);
    assert_eq!(from_alice["verified"], false);
    let confirmed = json_of(rampart(
        &alice,
        &["--json", "verify", "@bob", "--confirm"],
        "",
    ));
    assert_eq!(confirmed["verified"], true);
    let text = ok(rampart(&alice, &["verify", "@bob"], ""));
    assert!(text.contains("state: verified"), "{text}");
}
