//! `rampart admin audit list|export|verify|key|checkpoint` through the real
//! binary against a real server process: over HTTP with an owner's profile
//! (a member is refused), an export that round-trips and verifies, a
//! tampered export and a tampered database that do not, and the same
//! commands on the stopped server's data directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;

use binary::{fails, free_port, json_of, ok, rampart_as, register_args, start_fresh_server};
use rampart_proto::audit::AuditRecord;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

const PASSPHRASE: &str = "cli audit passphrase";
const PASSWORD: &str = "marigold-canary-7731";

fn rampart(profile: &Path, args: &[&str]) -> Output {
    rampart_as(profile, PASSPHRASE, PASSWORD, args)
}

fn admin(profile: &Path, args: &[&str]) -> Output {
    rampart(profile, &[&["admin"], args].concat())
}

/// `rampart admin audit verify --file FILE --key KEY…` as PROFILE.
fn verify_file(profile: &Path, file: &Path, key: &[&str]) -> Output {
    let file = file.to_str().unwrap();
    admin(
        profile,
        &[&["audit", "verify", "--file", file], key].concat(),
    )
}

fn actions(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn audit_commands_over_http_and_on_the_stopped_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let (server, owner_invite) = start_fresh_server(&data, port, &[]);
    let url = format!("http://127.0.0.1:{port}");
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    let register = |profile: &Path, name: &str, invite: &str| {
        ok(rampart(profile, &register_args(&url, name, invite)));
    };
    register(&alice, "alice", &owner_invite);
    let invite = json_of(admin(
        &alice,
        &["--json", "users", "invite", "--role", "member"],
    ));
    let bob_invite = invite["code"].as_str().unwrap().to_owned();
    register(&bob, "bob", &bob_invite);

    // A member may not read the log; the refusal is itself audited.
    let err = fails(admin(&bob, &["audit", "list"]));
    assert!(err.contains("only owners and admins"), "{err}");
    // A wrong password, then a role change.
    ok(rampart(&bob, &["logout"]));
    let err = fails(rampart_as(
        &bob,
        PASSPHRASE,
        "not-bobs-password-1",
        &["login"],
    ));
    assert!(err.to_lowercase().contains("password"), "{err}");
    ok(admin(&alice, &["users", "role", "bob", "admin"]));

    let list = json_of(admin(
        &alice,
        &["--json", "audit", "list", "--limit", "200"],
    ));
    let seen = actions(&list);
    for action in [
        "server_started",
        "registered",
        "invite_created",
        "access_denied",
        "login_failed",
        "role_changed",
        "admin_api",
    ] {
        assert!(seen.iter().any(|a| a == action), "no {action} in {seen:?}");
    }
    let changed = json_of(admin(
        &alice,
        &["--json", "audit", "list", "--action", "role_changed"],
    ));
    let changed = changed.as_array().unwrap();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["actor"], "alice");
    assert_eq!(changed[0]["target"], "user:bob");
    assert_eq!(changed[0]["detail"]["role"], "admin");
    let by_bob = json_of(admin(
        &alice,
        &["--json", "audit", "list", "--actor", "bob"],
    ));
    assert!(
        by_bob
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "bob")
    );
    let text = ok(admin(&alice, &["audit", "list", "--since", "1h"]));
    assert!(text.contains("role_changed → user:bob"), "{text}");
    let err = fails(admin(&alice, &["audit", "list", "--since", "someday"]));
    assert!(err.contains("a duration ago"), "{err}");

    // Export, and check the export against the key written down at setup.
    let key = ok(admin(&alice, &["audit", "key"])).trim().to_owned();
    assert_eq!(key.len(), 64);
    let export = tmp.path().join("audit.jsonl");
    ok(admin(
        &alice,
        &[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--output",
            export.to_str().unwrap(),
        ],
    ));
    let text = std::fs::read_to_string(&export).unwrap();
    let mut entries = 0;
    for line in text.lines() {
        // Stable field names, and a lossless round trip.
        let record: AuditRecord = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&record).unwrap(), line);
        let raw: Value = serde_json::from_str(line).unwrap();
        if raw["type"] == "entry" {
            entries += 1;
            for field in ["id", "at", "time", "action", "outcome", "prev_hash", "hash"] {
                assert!(raw.get(field).is_some(), "{field} missing: {line}");
            }
        }
    }
    assert!(text.contains(r#""type":"checkpoint""#));
    // Never a password or an invite code.
    for canary in [PASSWORD, "not-bobs-password-1", &bob_invite, &owner_invite] {
        assert!(!text.contains(canary), "{canary} in the export");
    }
    let out = ok(verify_file(&alice, &export, &["--key", &key]));
    assert!(
        out.starts_with(&format!("intact: {entries} entries")),
        "{out}"
    );
    // The live log over HTTP, checked against the same key.
    let out = json_of(admin(&alice, &["--json", "audit", "verify", "--key", &key]));
    assert_eq!(out["intact"], true, "{out}");

    // A changed line, or another key, does not verify.
    let tampered = tmp.path().join("tampered.jsonl");
    std::fs::write(
        &tampered,
        text.replacen(
            r#""action":"login_failed""#,
            r#""action":"login_succeeded""#,
            1,
        ),
    )
    .unwrap();
    let err = fails(verify_file(&alice, &tampered, &["--key", &key]));
    assert!(
        err.contains("broken at entry #") && err.contains("altered"),
        "{err}"
    );
    let other = "11".repeat(32);
    let err = fails(verify_file(&alice, &export, &["--key", &other]));
    assert!(err.contains("another key"), "{err}");
    let err = fails(verify_file(&alice, &export, &[]));
    assert!(err.contains("--key"), "{err}");

    // On the stopped server's data directory: the same log, its own key.
    server.stop();
    let data_arg = data.to_str().unwrap();
    let out = ok(admin(&alice, &["audit", "verify", "--data", data_arg]));
    assert!(out.starts_with("intact: "), "{out}");
    assert_eq!(
        ok(admin(&alice, &["audit", "key", "--data", data_arg])).trim(),
        key
    );
    let text = ok(admin(
        &alice,
        &[
            "audit",
            "list",
            "--data",
            data_arg,
            "--action",
            "server_stopped",
        ],
    ));
    assert!(text.contains("server_stopped"), "{text}");

    // An entry edited straight in the database.
    let db = rusqlite::Connection::open(data.join("rampart.db")).unwrap();
    db.execute(
        "UPDATE audit_log SET actor = 'mallory' WHERE action = 'role_changed'",
        [],
    )
    .unwrap();
    drop(db);
    let out = admin(&alice, &["--json", "audit", "verify", "--data", data_arg]);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["intact"], false, "{report}");
    assert!(
        report["broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("altered"),
        "{report}"
    );
}

/// What the server acknowledged is in the audit log after a SIGKILL: the
/// entry commits with the action, and the next start seals it into the
/// chain, which still verifies against the key written down before.
#[test]
fn acknowledged_actions_stay_audited_across_a_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let (mut server, owner_invite) = start_fresh_server(&data, port, &[]);
    let url = format!("http://127.0.0.1:{port}");
    let alice = tmp.path().join("alice");
    ok(rampart(
        &alice,
        &register_args(&url, "alice", &owner_invite),
    ));
    let key = ok(admin(&alice, &["audit", "key"])).trim().to_owned();
    // Answered, then killed at once: no shutdown, no final checkpoint.
    ok(admin(&alice, &["users", "invite", "--role", "guest"]));
    server.kill();

    let server = binary::ServerProcess::start(&data, port, &[]);
    let list = json_of(admin(
        &alice,
        &[
            "--json",
            "audit",
            "list",
            "--action",
            "invite_created",
            "--actor",
            "alice",
        ],
    ));
    let invites = list.as_array().unwrap();
    assert_eq!(invites.len(), 1, "{list}");
    assert_eq!(invites[0]["detail"]["role"], "guest");
    let started = json_of(admin(
        &alice,
        &["--json", "audit", "list", "--action", "server_started"],
    ));
    assert_eq!(started.as_array().unwrap().len(), 2, "{started}");
    let out = json_of(admin(&alice, &["--json", "audit", "verify", "--key", &key]));
    assert_eq!(out["intact"], true, "{out}");
    server.stop();
}
