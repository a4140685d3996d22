//! Disappearing messages, recall and edit through the real `rampart` binary
//! against a real server process: `timer`, `send --expire`, `recall`, `edit`,
//! `inbox --ids`/`--json`, and the organisation's `[messages]` limits from
//! the server's config file.
//!
//! The binary runs on the real clock, so this checks only what needs no
//! time to pass (expiry itself is covered with a manual clock in the core
//! and client tests).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;

use binary::{
    BIN, data_invite, fails, free_port, now_ms, ok, rampart_as, register_args, start_fresh_server,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const ALICE_PASSWORD: &str = "tulip-garden-41";
const BOB_PASSWORD: &str = "river-stone-913";

fn rampart(profile: &Path, args: &[&str], password: &str) -> Output {
    rampart_as(profile, "cli messages test passphrase", password, args)
}

fn json(profile: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(rampart(profile, &all, ""))).unwrap()
}

/// Registers alice (with the owner invite) and bob (with an admin invite).
fn register_alice_and_bob(data: &Path, url: &str, invite: &str, alice: &Path, bob: &Path) {
    let alice_args = register_args(url, "alice", invite);
    ok(rampart(alice, &alice_args, ALICE_PASSWORD));
    let bob_invite = data_invite(data);
    ok(rampart(
        bob,
        &register_args(url, "bob", &bob_invite),
        BOB_PASSWORD,
    ));
}

/// `profile` syncs, then its whole inbox as JSON.
fn synced_inbox(profile: &Path) -> Vec<Value> {
    ok(rampart(profile, &["sync"], ""));
    inbox(profile)
}

/// The whole inbox as JSON, without syncing.
fn inbox(profile: &Path) -> Vec<Value> {
    json(profile, &["inbox", "--all"])
        .as_array()
        .expect("inbox --json is an array")
        .clone()
}

/// The inbox entry with this id.
fn entry<'a>(inbox: &'a [Value], id: &str) -> &'a Value {
    inbox
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no entry {id} in {inbox:#?}"))
}

fn timer_entries(inbox: &[Value]) -> Vec<&Value> {
    inbox.iter().filter(|e| e["kind"] == "timer").collect()
}

/// Sends `text` from `profile` with extra arguments; returns the message id.
fn send(profile: &Path, target: &str, text: &str, extra: &[&str]) -> String {
    let mut args = vec!["send", target, text];
    args.extend_from_slice(extra);
    let sent = json(profile, &args);
    sent["id"]
        .as_str()
        .expect("send --json prints the id")
        .to_owned()
}

/// `expires_at` of an entry lies `secs` after a moment between `before`
/// and `after` (milliseconds; one second of slack for rounding).
fn assert_expires_in(entry: &Value, secs: u64, before: u64, after: u64) {
    let at = entry["expires_at"]
        .as_u64()
        .unwrap_or_else(|| panic!("no expires_at in {entry:#}"));
    let (low, high) = (before + secs * 1000 - 1000, after + secs * 1000 + 1000);
    assert!(
        (low..=high).contains(&at),
        "expires_at {at} is not {secs} s after sending ({low}..={high}): {entry:#}"
    );
}

#[test]
fn timers_expiry_recall_and_edit_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (_server, invite) = start_fresh_server(&data, port, &[]);
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    register_alice_and_bob(&data, &url, &invite, &alice, &bob);

    // A conversation without a timer: messages do not expire.
    let plain = send(&alice, "@bob", "no timer yet", &[]);
    let bob_inbox = synced_inbox(&bob);
    assert_eq!(entry(&bob_inbox, &plain)["text"], "no timer yet");
    assert_eq!(entry(&bob_inbox, &plain)["kind"], "text");
    assert!(entry(&bob_inbox, &plain)["expires_at"].is_null());

    // `timer @bob 1h`: the line, then bob's timer entry.
    let out = ok(rampart(&alice, &["timer", "@bob", "1h"], ""));
    assert!(
        out.contains("set messages to disappear after 1 hour"),
        "{out}"
    );
    let bob_inbox = synced_inbox(&bob);
    let timers = timer_entries(&bob_inbox);
    assert_eq!(timers.len(), 1, "{bob_inbox:#?}");
    assert_eq!(timers[0]["timer_secs"], 3600);
    assert_eq!(timers[0]["sender"], "alice");
    let text = ok(rampart(&bob, &["inbox", "--all"], ""));
    assert!(
        text.contains("alice set messages to disappear after 1 hour"),
        "{text}"
    );

    // The next message lives one hour from sending.
    let before = now_ms();
    let timed = send(&alice, "@bob", "gone in an hour", &[]);
    let bob_inbox = synced_inbox(&bob);
    let after = now_ms();
    assert_eq!(entry(&bob_inbox, &timed)["text"], "gone in an hour");
    assert_expires_in(entry(&bob_inbox, &timed), 3600, before, after);
    // The sender's own copy expires too.
    assert_expires_in(entry(&inbox(&alice), &timed), 3600, before, after);
    // A timer never reaches back to messages sent before it.
    assert!(entry(&bob_inbox, &plain)["expires_at"].is_null());

    // `send --expire 5m` overrides the conversation's timer for one message.
    let before = now_ms();
    let short = send(&alice, "@bob", "gone in five minutes", &["--expire", "5m"]);
    let bob_inbox = synced_inbox(&bob);
    let after = now_ms();
    assert_eq!(entry(&bob_inbox, &short)["text"], "gone in five minutes");
    assert_expires_in(entry(&bob_inbox, &short), 300, before, after);

    // Bad durations fail with a clear message and change nothing.
    let alice_before = inbox(&alice);
    let bob_before = synced_inbox(&bob);
    let bad_timers: [(&[&str], &str); 7] = [
        (&["timer", "@bob", "0s"], "longer than zero"),
        (&["timer", "@bob", "--", "-5m"], "not a duration"),
        (&["timer", "@bob", "1.5h"], "not a duration"),
        (&["timer", "@bob", "99999999999s"], "99999999999s"),
        (&["timer", "@bob", "5w"], "4 weeks"),
        (&["timer", "@bob", "10s"], "30 seconds"),
        (&["timer", "@bob", "soon"], "not a duration"),
    ];
    for (args, expected) in bad_timers {
        let err = fails(rampart(&alice, args, ""));
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // Without `--`, a negative duration is refused by the argument parser.
    fails(rampart(&alice, &["timer", "@bob", "-5m"], ""));
    let bad_expiries: [(&str, &str); 6] = [
        ("--expire=0s", "longer than zero"),
        ("--expire=-5m", "not a duration"),
        ("--expire=1.5h", "not a duration"),
        ("--expire=99999999999s", "99999999999s"),
        ("--expire=5w", "4 weeks"),
        ("--expire=10s", "30 seconds"),
    ];
    for (flag, expected) in bad_expiries {
        let err = fails(rampart(&alice, &["send", "@bob", "never sent", flag], ""));
        assert!(err.contains(expected), "{flag}: {err}");
    }
    assert_eq!(
        inbox(&alice),
        alice_before,
        "refused commands change nothing"
    );
    assert_eq!(synced_inbox(&bob), bob_before, "nothing reached bob");

    // `timer @bob off`: a line, and the next message does not expire.
    let out = ok(rampart(&alice, &["timer", "@bob", "off"], ""));
    assert!(out.contains("turned off disappearing messages"), "{out}");
    let forever = send(&alice, "@bob", "no timer again", &[]);
    let bob_inbox = synced_inbox(&bob);
    let timers = timer_entries(&bob_inbox);
    assert_eq!(timers.len(), 2, "{bob_inbox:#?}");
    assert!(timers.iter().any(|t| t["timer_secs"].is_null()));
    assert!(entry(&bob_inbox, &forever)["expires_at"].is_null());

    // Recall. Ids show in `inbox --all --ids` on both sides.
    let secret = send(&alice, "@bob", "recall this canary", &[]);
    ok(rampart(&bob, &["sync"], ""));
    let listing = ok(rampart(&bob, &["inbox", "--all", "--ids"], ""));
    let line = listing
        .lines()
        .find(|l| l.contains("recall this canary"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(line.starts_with(&format!("{secret} ")), "{line}");
    let listing = ok(rampart(&alice, &["inbox", "--all", "--ids"], ""));
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with(&secret) && l.contains("recall this canary")),
        "{listing}"
    );
    // Without --ids there are none.
    let listing = ok(rampart(&bob, &["inbox", "--all"], ""));
    assert!(!listing.contains(&secret), "{listing}");

    // Bob may not recall alice's message; nothing changes.
    let err = fails(rampart(&bob, &["recall", &secret], ""));
    assert!(err.contains("only your own messages"), "{err}");
    // An unknown id is a clean error.
    let err = fails(rampart(
        &alice,
        &["recall", "0123456789abcdef0123456789abcdef"],
        "",
    ));
    assert!(err.contains("no message"), "{err}");
    assert!(err.contains("--ids"), "{err}");
    let bob_inbox = synced_inbox(&bob);
    assert_eq!(entry(&bob_inbox, &secret)["text"], "recall this canary");
    assert_eq!(entry(&bob_inbox, &secret)["recalled"], false);

    // Alice recalls: both sides show "(message deleted)", the text is gone.
    let out = ok(rampart(&alice, &["recall", &secret], ""));
    assert!(out.contains("deleted for everyone"), "{out}");
    let bob_inbox = synced_inbox(&bob);
    assert_eq!(entry(&bob_inbox, &secret)["recalled"], true);
    assert_ne!(entry(&bob_inbox, &secret)["text"], "recall this canary");
    for profile in [&bob, &alice] {
        let text = ok(rampart(profile, &["inbox", "--all"], ""));
        assert!(text.contains("alice: (message deleted)"), "{text}");
        assert!(!text.contains("recall this canary"), "{text}");
        let raw = serde_json::to_string(&inbox(profile)).unwrap();
        assert!(!raw.contains("recall this canary"), "{raw}");
    }
    // A recalled message cannot be recalled or edited again.
    fails(rampart(&alice, &["recall", &secret], ""));
    fails(rampart(
        &alice,
        &["edit", &secret, "back from the dead"],
        "",
    ));

    // Edit: only the sender, and recipients see "(edited)".
    let draft = send(&alice, "@bob", "first draft", &[]);
    ok(rampart(&bob, &["sync"], ""));
    let err = fails(rampart(&bob, &["edit", &draft, "bob's version"], ""));
    assert!(err.contains("only your own messages"), "{err}");
    let err = fails(rampart(
        &alice,
        &["edit", "0123456789abcdef0123456789abcdef", "x"],
        "",
    ));
    assert!(err.contains("no message"), "{err}");
    // A unique prefix of 8+ hex digits names a message too.
    let out = ok(rampart(&alice, &["edit", &draft[..8], "final text"], ""));
    assert!(out.contains("edited"), "{out}");
    let bob_inbox = synced_inbox(&bob);
    assert_eq!(entry(&bob_inbox, &draft)["text"], "final text");
    assert_eq!(entry(&bob_inbox, &draft)["edited"], true);
    let text = ok(rampart(&bob, &["inbox", "--all"], ""));
    assert!(text.contains("alice: final text (edited)"), "{text}");
    assert!(!text.contains("first draft"), "{text}");
    assert!(!text.contains("bob's version"), "{text}");
    assert_eq!(entry(&inbox(&alice), &draft)["text"], "final text");

    // Groups: with --admins-set-timer only the creator sets the timer, and
    // the creator (the group's admin) may recall anyone's message.
    ok(rampart(
        &alice,
        &[
            "group",
            "create",
            "ops",
            "--members",
            "bob",
            "--admins-set-timer",
        ],
        "",
    ));
    ok(rampart(&bob, &["sync"], ""));
    let err = fails(rampart(&bob, &["timer", "#ops", "1h"], ""));
    assert!(err.contains("admins"), "{err}");
    let out = ok(rampart(&alice, &["timer", "#ops", "1d"], ""));
    assert!(
        out.contains("set messages to disappear after 1 day"),
        "{out}"
    );
    ok(rampart(&bob, &["sync"], ""));
    let from_bob = send(&bob, "#ops", "bob says something", &[]);
    let from_alice = send(&alice, "#ops", "alice says something", &[]);
    ok(rampart(&bob, &["sync"], ""));
    let err = fails(rampart(&bob, &["recall", &from_alice], ""));
    assert!(err.contains("only your own messages"), "{err}");
    ok(rampart(&alice, &["sync"], ""));
    ok(rampart(&alice, &["recall", &from_bob], ""));
    let bob_inbox = synced_inbox(&bob);
    assert_eq!(entry(&bob_inbox, &from_bob)["recalled"], true);
    assert_eq!(entry(&bob_inbox, &from_alice)["recalled"], false);
    let text = ok(rampart(&bob, &["inbox", "--all"], ""));
    assert!(text.contains("#ops bob: (message deleted)"), "{text}");
    assert!(!text.contains("bob says something"), "{text}");
}

#[test]
fn organisation_maximum_and_default_timer_from_the_server_config() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("rampart.toml");
    std::fs::write(
        &config,
        "[messages]\nmax_retention_secs = 86400\ndefault_timer_secs = 3600\n",
    )
    .unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (_server, invite) =
        start_fresh_server(&data, port, &["--config", config.to_str().unwrap()]);
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    register_alice_and_bob(&data, &url, &invite, &alice, &bob);

    // A new 1:1 starts with the organisation's default timer.
    let before = now_ms();
    let first = send(&alice, "@bob", "first words", &[]);
    let bob_inbox = synced_inbox(&bob);
    let after = now_ms();
    let timers = timer_entries(&bob_inbox);
    assert_eq!(timers.len(), 1, "{bob_inbox:#?}");
    assert_eq!(timers[0]["timer_secs"], 3600);
    assert_expires_in(entry(&bob_inbox, &first), 3600, before, after);
    for profile in [&alice, &bob] {
        let text = ok(rampart(profile, &["inbox", "--all"], ""));
        assert!(
            text.contains("set messages to disappear after 1 hour"),
            "{text}"
        );
    }

    // Longer than the maximum, or off: refused, naming the limit.
    let alice_before = inbox(&alice);
    let err = fails(rampart(&alice, &["timer", "@bob", "2d"], ""));
    assert!(err.contains("1 day"), "{err}");
    let err = fails(rampart(&alice, &["timer", "@bob", "off"], ""));
    assert!(err.contains("1 day"), "{err}");
    let err = fails(rampart(&bob, &["timer", "@alice", "off"], ""));
    assert!(err.contains("1 day"), "{err}");
    let err = fails(rampart(
        &alice,
        &["send", "@bob", "kept too long", "--expire", "2d"],
        "",
    ));
    assert!(err.contains("1 day"), "{err}");
    assert_eq!(
        inbox(&alice),
        alice_before,
        "refused commands change nothing"
    );
    assert_eq!(timer_entries(&synced_inbox(&bob)).len(), 1);

    // Up to the maximum is fine, and bob may set it too in a 1:1.
    let out = ok(rampart(&bob, &["timer", "@alice", "1d"], ""));
    assert!(
        out.contains("set messages to disappear after 1 day"),
        "{out}"
    );
    ok(rampart(&alice, &["sync"], ""));
    let before = now_ms();
    let later = send(&alice, "@bob", "kept one day", &[]);
    let bob_inbox = synced_inbox(&bob);
    let after = now_ms();
    assert_expires_in(entry(&bob_inbox, &later), 86_400, before, after);
}

#[test]
fn files_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (_server, invite) = start_fresh_server(&data, port, &[]);
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    register_alice_and_bob(&data, &url, &invite, &alice, &bob);

    let report = tmp.path().join("q3 report.pdf");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&report, &content).unwrap();
    let sent = json(
        &alice,
        &[
            "send-file",
            "@bob",
            report.to_str().unwrap(),
            "--caption",
            "numbers",
        ],
    );
    assert_eq!(sent["name"], "q3 report.pdf");
    assert_eq!(sent["size"], 200_000);
    let id = sent["id"].as_str().unwrap().to_owned();

    // The inbox shows the file, for people and for scripts.
    let bob_inbox = synced_inbox(&bob);
    let e = entry(&bob_inbox, &id);
    assert_eq!(e["kind"], "file");
    assert_eq!(e["text"], "numbers");
    assert_eq!(e["file"]["name"], "q3 report.pdf");
    assert_eq!(e["file"]["size"], 200_000);
    assert_eq!(e["file"]["media_type"], "application/pdf");
    let text = ok(rampart(&bob, &["inbox", "--all"], ""));
    assert!(
        text.contains("[file] q3 report.pdf (195.3 KiB, application/pdf) numbers"),
        "{text}"
    );

    // Download into a directory, then again: never over the first.
    let out = tmp.path().join("saved");
    std::fs::create_dir_all(&out).unwrap();
    let got = json(
        &bob,
        &["download", &id[..12], "--out", out.to_str().unwrap()],
    );
    let path = got["path"].as_str().unwrap().to_owned();
    assert_eq!(std::fs::read(&path).unwrap(), content);
    let again = ok(rampart(
        &bob,
        &["download", &id, "--out", out.to_str().unwrap()],
        "",
    ));
    assert!(again.contains("q3 report (1).pdf"), "{again}");
    // An explicit path that exists is refused, and says what to do.
    let err = fails(rampart(&bob, &["download", &id, "--out", &path], ""));
    assert!(err.contains("already exists"), "{err}");

    // Clear errors for what cannot work.
    let plain = send(&alice, "@bob", "just text", &[]);
    ok(rampart(&bob, &["sync"], ""));
    let err = fails(rampart(&bob, &["download", &plain], ""));
    assert!(err.contains("has no file attached"), "{err}");
    let err = fails(rampart(&alice, &["send-file", "@bob", "/no/such/file"], ""));
    assert!(err.contains("opening the file"), "{err}");
}

/// The organisation's policy at the command line: a warning refuses to send
/// without a terminal and says how to confirm, `--confirm` sends, a policy
/// set with `admin policy set` while the server runs applies to the very
/// next command, a blocked text exits non-zero without sending, and links
/// in received messages are explained in `inbox`.
#[test]
fn dlp_confirmation_block_and_link_warnings_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (_server, invite) = start_fresh_server(&data, port, &[]);
    register_alice_and_bob(&data, &url, &invite, &alice, &bob);

    let card = "the card is 4111 1111 1111 1111";
    let err = fails(rampart(&alice, &["send", "@bob", card], ""));
    assert!(err.contains("--confirm"), "{err}");
    assert!(err.contains("4111 **** **** 1111"), "{err}");
    assert!(!err.contains("4111 1111 1111 1111"), "{err}");
    let sent = json(&alice, &["send", "@bob", card, "--confirm"]);
    assert_eq!(
        sent["dlp"],
        serde_json::json!([{"rule": "card", "action": "warn"}])
    );
    let got = synced_inbox(&bob);
    assert_eq!(entry(&got, sent["id"].as_str().unwrap())["text"], card);

    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "version = 1\n[detectors.card]\naction = \"block\"\n",
    )
    .unwrap();
    let set = Command::new(BIN)
        .args(["admin", "policy", "set"])
        .arg(&policy)
        .args(["--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    ok(set);
    let err = fails(rampart(&alice, &["send", "@bob", card, "--confirm"], ""));
    assert!(
        err.contains("not sent") && err.contains("rule card"),
        "{err}"
    );

    ok(rampart(
        &alice,
        &[
            "send",
            "@bob",
            "new login page: https://rnicrosoft.com/login",
        ],
        "",
    ));
    ok(rampart(&bob, &["sync"], ""));
    let shown = ok(rampart(&bob, &["inbox", "--all"], ""));
    assert!(
        shown.contains("rnicrosoft.com, which imitates microsoft.com"),
        "{shown}"
    );
    let got = inbox(&bob);
    let last = got.last().unwrap();
    assert_eq!(last["warnings"][0]["risk"], "link.lookalike", "{last:#}");

    let listed = Command::new(BIN)
        .args([
            "--json",
            "admin",
            "dlp-events",
            "--data",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_str(&ok(listed)).unwrap();
    let actions: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["block", "warn", "warn"], "{listed:#}");
    assert!(!listed.to_string().contains("4111"), "{listed:#}");
}

#[test]
fn group_roles_and_announcements_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (_server, invite) = start_fresh_server(&data, port, &[]);
    register_alice_and_bob(&data, &url, &invite, &alice, &bob);
    ok(rampart(
        &alice,
        &["group", "create", "board", "--members", "bob"],
        "",
    ));
    ok(rampart(&bob, &["sync"], ""));

    let info = json(&bob, &["group", "info", "board"]);
    assert_eq!(info["roles"], serde_json::json!({"alice": "admin"}));
    assert_eq!(info["post"], "members");
    let err = fails(rampart(
        &bob,
        &["group", "settings", "board", "--post", "admins"],
        "",
    ));
    assert!(err.contains("admins"), "{err}");
    let err = fails(rampart(
        &alice,
        &["group", "role", "board", "@bob", "boss"],
        "",
    ));
    assert!(err.contains("admin, member or read-only"), "{err}");

    let out = ok(rampart(
        &alice,
        &["group", "role", "board", "@bob", "read-only"],
        "",
    ));
    assert!(out.contains("@bob is now read-only in #board"), "{out}");
    ok(rampart(&bob, &["sync"], ""));
    let err = fails(rampart(&bob, &["send", "#board", "hello"], ""));
    assert!(err.contains("read-only"), "{err}");

    ok(rampart(
        &alice,
        &["group", "role", "board", "@bob", "member"],
        "",
    ));
    let settings = json(&alice, &["group", "settings", "board", "--post", "admins"]);
    assert_eq!(settings["post"], "admins");
    ok(rampart(&bob, &["sync"], ""));
    let err = fails(rampart(&bob, &["send", "#board", "hello"], ""));
    assert!(err.contains("announcement"), "{err}");
    let text = ok(rampart(&bob, &["group", "info", "board"], ""));
    assert!(text.contains("post                     admins"), "{text}");
    send(&alice, "#board", "office closed friday", &[]);
    let got = synced_inbox(&bob);
    assert!(
        got.iter().any(|e| e["text"] == "office closed friday"),
        "{got:?}"
    );
}
