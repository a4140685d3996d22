//! `rampart admin users|2fa-reset|groups|access|sessions` through the real
//! binary against a real server process: over HTTP with an owner's profile
//! (and a member's, which is refused), then on the stopped server's data
//! directory, which is refused while the server runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;

use binary::{
    BIN, enable_two_factor, fails, free_port, json_of, now_ms, ok, rampart_as, register_args,
    start_fresh_server,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PASSPHRASE: &str = "cli admin passphrase";
const PASSWORD: &str = "tulip-garden-41";

/// `rampart --profile PROFILE ARGS…` with the secrets in the environment
/// and no terminal.
fn rampart(profile: &Path, args: &[&str]) -> Output {
    rampart_as(profile, PASSPHRASE, PASSWORD, args)
}

/// `rampart admin ARGS…` as PROFILE.
fn admin(profile: &Path, args: &[&str]) -> Output {
    rampart(profile, &[&["admin"], args].concat())
}

/// The user named `name` in a `users list --json`.
fn user_of(list: &Value, name: &str) -> Value {
    list["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

struct World {
    url: String,
    data: PathBuf,
    alice: PathBuf,
    bob: PathBuf,
    gina: PathBuf,
}

impl World {
    fn register(&self, profile: &Path, name: &str, invite: &str) {
        ok(rampart(profile, &register_args(&self.url, name, invite)));
    }
}

#[test]
fn admin_commands_over_http_and_on_the_stopped_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let (server, owner_invite) = start_fresh_server(&data, port, &[]);
    let w = World {
        url: format!("http://127.0.0.1:{port}"),
        data: data.clone(),
        alice: tmp.path().join("alice"),
        bob: tmp.path().join("bob"),
        gina: tmp.path().join("gina"),
    };
    let data_arg = w.data.to_str().unwrap();
    w.register(&w.alice, "alice", &owner_invite);

    // An owner invites a guest with an expiry, and a member with the default.
    let before = now_ms();
    let invite = json_of(admin(
        &w.alice,
        &[
            "--json",
            "users",
            "invite",
            "--role",
            "guest",
            "--expires",
            "24h",
        ],
    ));
    assert_eq!(invite["role"], "guest");
    let expires_at = invite["expires_at"].as_u64().unwrap();
    let day = 24 * 3600 * 1000;
    assert!(
        expires_at >= before + day - 60_000 && expires_at <= now_ms() + day + 60_000,
        "{invite}"
    );
    w.register(&w.gina, "gina", invite["code"].as_str().unwrap());
    let text = ok(admin(&w.alice, &["users", "invite", "--role", "member"]));
    assert!(text.contains("role         member"), "{text}");
    assert!(text.contains(&w.url), "{text}");
    let code = text
        .lines()
        .find_map(|l| l.strip_prefix("invite code  "))
        .unwrap()
        .trim()
        .to_owned();
    w.register(&w.bob, "bob", &code);
    // Bad input is refused before anything is sent.
    let err = fails(admin(
        &w.alice,
        &["users", "invite", "--role", "root", "--expires", "1h"],
    ));
    assert!(err.contains("owner, admin, member, guest or bot"), "{err}");
    let err = fails(admin(
        &w.alice,
        &["users", "invite", "--role", "guest", "--expires", "60d"],
    ));
    assert!(err.contains("at most 30d"), "{err}");

    // Users, as JSON and as an aligned table.
    let list = json_of(admin(&w.alice, &["--json", "users", "list"]));
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "gina"]);
    assert_eq!(user_of(&list, "alice")["role"], "owner");
    assert_eq!(user_of(&list, "bob")["role"], "member");
    assert_eq!(user_of(&list, "gina")["role"], "guest");
    assert_eq!(user_of(&list, "gina")["status"], "active");
    assert_eq!(user_of(&list, "gina")["devices"], 1);
    let table = ok(admin(&w.alice, &["users", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("USER "), "{table}");
    assert!(
        lines[0].contains("ROLE") && lines[0].contains("2FA"),
        "{table}"
    );
    let role_col = lines[0].find("ROLE").unwrap();
    for (line, role) in lines[1..].iter().zip(["owner", "member", "guest"]) {
        assert_eq!(&line[role_col..role_col + role.len()], role, "{table}");
    }

    // A group, seen with its size and admins but never its name.
    ok(rampart(
        &w.alice,
        &["group", "create", "falcon-plans", "--members", "bob,gina"],
    ));
    let groups = json_of(admin(&w.alice, &["--json", "groups", "list"]));
    let groups = groups["groups"].as_array().unwrap();
    let g = groups
        .iter()
        .find(|g| g["kind"] == "group")
        .unwrap_or_else(|| panic!("{groups:?}"));
    assert_eq!(g["users"], 3);
    assert_eq!(g["devices"], 3);
    assert_eq!(g["admins"], serde_json::json!(["alice"]));
    let text = ok(admin(&w.alice, &["groups", "list"]));
    assert!(text.starts_with("GROUP "), "{text}");
    assert!(text.contains("@alice"), "{text}");
    assert!(!text.contains("falcon-plans"), "{text}");

    // A role change by the owner.
    let changed = json_of(admin(
        &w.alice,
        &["--json", "users", "role", "@gina", "member"],
    ));
    assert_eq!(changed["role"], "member");
    let text = ok(admin(&w.alice, &["users", "role", "gina", "guest"]));
    assert_eq!(text.trim(), "@gina is now guest");

    // A member may not: clear refusal, non-zero exit, nothing changed.
    let err = fails(admin(&w.bob, &["users", "role", "gina", "admin"]));
    assert!(err.contains("forbidden"), "{err}");
    assert!(err.contains("only owners and admins"), "{err}");
    let err = fails(admin(&w.bob, &["users", "role", "bob", "owner"]));
    assert!(err.contains("forbidden"), "{err}");
    let err = fails(admin(&w.bob, &["users", "list"]));
    assert!(err.contains("forbidden"), "{err}");
    let list = json_of(admin(&w.alice, &["--json", "users", "list"]));
    assert_eq!(user_of(&list, "gina")["role"], "guest");
    assert_eq!(user_of(&list, "bob")["role"], "member");

    // An admin manages members but not owners, and reads but does not
    // change the access policy.
    ok(admin(&w.alice, &["users", "role", "bob", "admin"]));
    let list = json_of(admin(&w.bob, &["--json", "users", "list"]));
    assert_eq!(user_of(&list, "bob")["role"], "admin");
    ok(admin(&w.bob, &["access", "show"]));
    let err = fails(admin(&w.bob, &["access", "set", "--max-group-users", "9"]));
    assert!(err.contains("forbidden"), "{err}");
    let err = fails(admin(&w.bob, &["users", "role", "alice", "member"]));
    assert!(err.contains("forbidden"), "{err}");
    let err = fails(admin(&w.bob, &["users", "invite", "--role", "owner"]));
    assert!(err.contains("forbidden"), "{err}");

    // While the server runs, --data is refused with what to do instead.
    let err = fails(admin(&w.alice, &["users", "list", "--data", data_arg]));
    assert!(err.contains("running"), "{err}");
    assert!(err.contains("admin's profile"), "{err}");
    let err = fails(admin(
        &w.alice,
        &[
            "users",
            "list",
            "--data",
            tmp.path().join("nowhere").to_str().unwrap(),
        ],
    ));
    assert!(err.contains("does not exist"), "{err}");

    // Disable: gina's session is gone and login is refused, clearly.
    let disabled = json_of(admin(&w.alice, &["--json", "users", "disable", "gina"]));
    assert_eq!(disabled["status"], "disabled");
    let err = fails(rampart(&w.gina, &["sync"]));
    assert!(err.contains("disabled"), "{err}");
    let err = fails(rampart(&w.gina, &["login"]));
    assert!(err.contains("disabled"), "{err}");
    let text = ok(admin(&w.alice, &["users", "list"]));
    assert!(
        text.lines()
            .any(|l| l.starts_with("@gina") && l.contains("disabled")),
        "{text}"
    );
    // Enable: the account is active again. Its devices stay revoked (the
    // user signs in again as a new device), so the old profile is told
    // that, not that the account is disabled.
    let enabled = json_of(admin(&w.alice, &["--json", "users", "enable", "@gina"]));
    assert_eq!(enabled["status"], "active");
    let err = fails(rampart(&w.gina, &["login"]));
    assert!(!err.contains("disabled"), "{err}");

    // 2FA reset: bob enrols, the owner resets it, bob logs in with the
    // password alone.
    enable_two_factor(&w.bob, PASSPHRASE, PASSWORD);
    let list = json_of(admin(&w.alice, &["--json", "users", "list"]));
    assert_eq!(user_of(&list, "bob")["two_factor"], true);
    let reset = json_of(admin(&w.alice, &["--json", "2fa-reset", "bob"]));
    assert_eq!(reset["two_factor"], false);
    ok(rampart(&w.bob, &["logout"]));
    ok(rampart(&w.bob, &["login"]));

    // Access policy: show, change some fields, the rest stays.
    let shown = json_of(admin(&w.alice, &["--json", "access", "show"]));
    assert_eq!(shown["members_may_create_groups"], true);
    assert_eq!(shown["require_two_factor"], "off");
    let set = json_of(admin(
        &w.alice,
        &[
            "--json",
            "access",
            "set",
            "--members-create-groups",
            "false",
            "--max-group-users",
            "50",
            "--username-pattern",
            "[a-z]+",
        ],
    ));
    assert_eq!(set["members_may_create_groups"], false);
    assert_eq!(set["max_group_users"], 50);
    assert_eq!(set["username_pattern"], "[a-z]+");
    assert_eq!(set["guests_may_be_added"], shown["guests_may_be_added"]);
    assert_eq!(json_of(admin(&w.alice, &["--json", "access", "show"])), set);
    let text = ok(admin(
        &w.alice,
        &[
            "access",
            "set",
            "--no-username-pattern",
            "--guests-may-be-added",
            "false",
        ],
    ));
    assert!(text.contains("access policy updated"), "{text}");
    assert!(text.contains("max group users            50"), "{text}");
    assert!(text.contains("(any valid username)"), "{text}");
    let err = fails(admin(&w.alice, &["access", "set"]));
    assert!(err.contains("nothing to change"), "{err}");

    // Sessions: listed per user, and one revoked ends that device's session.
    let all = json_of(admin(&w.alice, &["--json", "sessions", "list"]));
    let all = all["sessions"].as_array().unwrap();
    for name in ["alice", "bob"] {
        assert!(all.iter().any(|s| s["username"] == name), "{all:?}");
    }
    let bobs = json_of(admin(
        &w.alice,
        &["--json", "sessions", "list", "--user", "@bob"],
    ));
    let bobs = bobs["sessions"].as_array().unwrap();
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    let id = bobs[0]["session_id"].as_str().unwrap().to_owned();
    let text = ok(admin(&w.alice, &["sessions", "list", "--user", "bob"]));
    assert!(text.starts_with("SESSION "), "{text}");
    assert!(text.contains(&id) && text.contains("@bob"), "{text}");
    let text = ok(admin(&w.alice, &["sessions", "revoke", &id]));
    assert!(text.contains("revoked"), "{text}");
    let err = fails(rampart(&w.bob, &["sync"]));
    assert!(err.contains("rampart login"), "{err}");
    let bobs = json_of(admin(
        &w.alice,
        &["--json", "sessions", "list", "--user", "bob"],
    ));
    assert_eq!(bobs["sessions"], serde_json::json!([]));
    let err = fails(admin(&w.alice, &["sessions", "revoke", "../users"]));
    assert!(err.contains("not a session id"), "{err}");

    // Stopped: the same commands on the data directory.
    server.stop();
    let list = json_of(admin(
        &w.alice,
        &["--json", "users", "list", "--data", data_arg],
    ));
    assert_eq!(user_of(&list, "gina")["role"], "guest");
    let table = ok(admin(&w.alice, &["users", "list", "--data", data_arg]));
    assert!(table.starts_with("USER "), "{table}");
    let shown = json_of(admin(
        &w.alice,
        &["--json", "access", "show", "--data", data_arg],
    ));
    assert_eq!(shown["max_group_users"], 50);
    let text = ok(admin(
        &w.alice,
        &["users", "role", "gina", "member", "--data", data_arg],
    ));
    assert_eq!(text.trim(), "@gina is now member");
    let groups = json_of(admin(
        &w.alice,
        &["--json", "groups", "list", "--data", data_arg],
    ));
    assert!(!groups["groups"].as_array().unwrap().is_empty());
    // Deleting asks; with no terminal, only --yes does it.
    let err = fails(admin(
        &w.alice,
        &["users", "delete", "gina", "--data", data_arg],
    ));
    assert!(err.contains("--yes"), "{err}");
    let deleted = json_of(admin(
        &w.alice,
        &[
            "--json", "users", "delete", "gina", "--yes", "--data", data_arg,
        ],
    ));
    assert_eq!(deleted["deleted"], "gina");
    let list = json_of(admin(
        &w.alice,
        &["--json", "users", "list", "--data", data_arg],
    ));
    assert!(
        list["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["username"] != "gina"),
        "{list}"
    );
}

#[test]
fn admin_help_says_where_commands_run() {
    let out = Command::new(BIN)
        .args(["admin", "users", "list", "--help"])
        .output()
        .unwrap();
    let help = ok(out);
    assert!(help.contains("--data"), "{help}");
    assert!(help.contains("stopped server"), "{help}");
    assert!(help.contains("owner's or an admin's"), "{help}");
    let out = Command::new(BIN)
        .args(["admin", "users", "delete", "--help"])
        .output()
        .unwrap();
    assert!(ok(out).contains("--yes"));
    let out = Command::new(BIN)
        .args(["admin", "access", "set", "--help"])
        .output()
        .unwrap();
    let help = ok(out);
    for flag in [
        "--members-create-groups",
        "--max-group-users",
        "--guests-may-be-added",
        "--username-pattern",
        "--no-username-pattern",
        "--require-2fa",
    ] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}
