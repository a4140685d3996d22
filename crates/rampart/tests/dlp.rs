//! Data-loss prevention end to end: a real server on loopback with its
//! SQLite data directory, real clients with encrypted profiles, and the
//! organisation's policy set the way `rampart admin policy set` sets it.
//! Every action (block, warn, redact, audit) is followed from the sender's
//! decision to what the recipient gets and what the server recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use rampart_client::{Alert, Client, ClientError};
use rampart_policy::Policy;
use std::path::Path;
use std::time::Duration;
use support::*;

/// Validates a TOML policy as the admin command does and stores it.
async fn set_policy(server: &TestServer, toml: &str) -> u64 {
    let policy = Policy::parse(toml).expect("valid policy");
    rampart_server::set_dlp_policy(&server.data, &policy.to_json())
        .await
        .expect("policy stored")
}

async fn events(server: &TestServer) -> Vec<(String, String, String)> {
    let mut list: Vec<_> = rampart_server::dlp_events(&server.data, 100)
        .await
        .expect("events")
        .into_iter()
        .map(|e| (e.username.to_string(), e.rule, e.action))
        .collect();
    list.reverse();
    list
}

async fn pair(tmp: &Path) -> (TestServer, Client, Client) {
    let server = TestServer::start(&server_dir(tmp), loopback()).await;
    let alice = register(&server, tmp, "alice").await;
    let bob = register(&server, tmp, "bob").await;
    (server, alice, bob)
}

fn server_holds(server: &TestServer, needle: &str) -> bool {
    all_bytes(&server.data)
        .iter()
        .any(|(_, bytes)| contains(bytes, needle.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_text_never_leaves_the_sender() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut alice, mut bob) = pair(tmp.path()).await;
    set_policy(
        &server,
        "version = 1\n[detectors.card]\naction = \"block\"\n",
    )
    .await;
    alice.sync().await.unwrap();

    let canary = "canary-7Hq2 card 4532 0151 1283 0366 exp 09/29";
    let err = alice
        .send_text_with(&user("bob"), canary, None, true)
        .await
        .expect_err("blocked");
    let message = err.to_string();
    assert!(matches!(err, ClientError::Blocked(_)), "{err:?}");
    assert!(message.contains("rule card"), "{message}");
    assert!(message.contains("4532 **** **** 0366"), "{message}");
    assert!(
        !message.contains("0151"),
        "the refusal repeats the number: {message}"
    );

    // Nothing reached the server or bob; the event did, without content.
    assert!(received(&mut bob).await.is_empty());
    assert!(!server_holds(&server, "canary-7Hq2"));
    assert!(!server_holds(&server, "4532 0151 1283 0366"));
    assert_eq!(
        events(&server).await,
        vec![("alice".into(), "card".into(), "block".into())]
    );
    let record = &rampart_server::dlp_events(&server.data, 1).await.unwrap()[0];
    assert_eq!(
        record.group_id,
        rampart_proto::GroupId::direct(alice.username(), bob.username())
    );
    // A blocked first message does not even start the conversation.
    assert!(alice.groups().unwrap().is_empty());
    let conversation = format!("group:{}", hex::encode(record.group_id.as_bytes()));
    server.stop().await;

    // The organisation's audit log has the event from the real client, and
    // its chain verifies; never the content.
    let console = rampart_server::AdminConsole::open(&server_dir(tmp.path()))
        .await
        .unwrap();
    let query = rampart_proto::audit::AuditQuery {
        action: Some("dlp_block".into()),
        ..Default::default()
    };
    let blocks = console.audit_page(&query).await.unwrap().entries;
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0].actor.as_deref(), Some("alice"));
    assert_eq!(blocks[0].target.as_deref(), Some(conversation.as_str()));
    assert_eq!(blocks[0].detail["rule"], "card");
    let everything = console
        .audit_page(&Default::default())
        .await
        .unwrap()
        .entries;
    let text = serde_json::to_string(&everything).unwrap();
    // (The whole number: its digit groups alone turn up in hex hashes.)
    assert!(!text.contains("canary-7Hq2") && !text.contains("4532 0151 1283 0366"));
    assert!(console.audit_verify().await.unwrap().is_ok());
    console.close().await;
}

fn server_dir(tmp: &Path) -> std::path::PathBuf {
    tmp.join("server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_needs_confirmation() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut alice, mut bob) = pair(tmp.path()).await;
    // No policy set: the built-in defaults warn about card numbers.
    let text = "the company card is 5555 5555 5555 4444";
    let err = alice
        .send_text_with(&user("bob"), text, None, false)
        .await
        .expect_err("needs confirmation");
    match &err {
        ClientError::NeedsConfirmation { found } => {
            assert_eq!(
                found,
                &vec!["a payment card number (5555 **** **** 4444)".to_owned()]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("--confirm"));
    assert!(received(&mut bob).await.is_empty());
    alice.report_declined(&user("bob"), text).await;

    let (_, check) = alice
        .send_text_with(&user("bob"), text, None, true)
        .await
        .expect("sent once confirmed");
    assert_eq!(check.hits.len(), 1);
    assert_eq!(received(&mut bob).await, vec![format!("alice: {text}")]);
    assert_eq!(
        events(&server).await,
        vec![
            ("alice".into(), "card".into(), "warn".into()),
            ("alice".into(), "card".into(), "warn".into()),
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_masks_before_encryption_and_audit_sends_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut alice, mut bob) = pair(tmp.path()).await;
    set_policy(
        &server,
        "version = 1\n[detectors.card]\naction = \"redact\"\n[detectors.ssn]\naction = \"audit\"\n",
    )
    .await;
    alice.sync().await.unwrap();

    alice
        .send_text(
            &user("bob"),
            "pay with 4532\u{200B}0151\u{200B}1283\u{200B}0366 today",
        )
        .await
        .expect("sent redacted");
    alice
        .send_text(&user("bob"), "her ssn is 536-22-8172")
        .await
        .expect("sent and audited");
    assert_eq!(
        received(&mut bob).await,
        vec![
            "alice: pay with 4532********0366 today".to_owned(),
            "alice: her ssn is 536-22-8172".to_owned(),
        ]
    );
    // The sender's own copy is the masked one too.
    let own: Vec<String> = alice
        .inbox(true)
        .unwrap()
        .into_iter()
        .filter(|e| e.outgoing)
        .map(|e| e.text)
        .collect();
    assert_eq!(own[0], "pay with 4532********0366 today");
    assert_eq!(
        events(&server).await,
        vec![
            ("alice".into(), "card".into(), "redact".into()),
            ("alice".into(), "ssn".into(), "audit".into()),
        ]
    );
    // The server holds the events, never what they were about.
    assert!(!server_holds(&server, "536-22-8172"));
    assert!(!server_holds(&server, "4532015112830366"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_reaches_a_connected_client() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut alice, mut bob) = pair(tmp.path()).await;
    alice.send_text(&user("bob"), "hi bob").await.unwrap();
    bob.sync().await.unwrap();
    bob.take_alerts();
    assert_eq!(bob.guard().revision(), 0);

    // bob waits for live deliveries while the administrator changes the policy.
    let revision = set_policy(
        &server,
        r#"
version = 1
[[custom]]
id = "falcon"
description = "the code name of an unannounced product"
keywords = ["project falcon"]
action = "block"
"#,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while bob.guard().revision() != revision {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never arrived"
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), bob.next_events()).await;
    }
    assert!(
        bob.take_alerts()
            .contains(&Alert::PolicyUpdated { revision })
    );

    // The new rule holds at once, without a sync.
    let err = bob
        .send_text(&user("alice"), "the Project Falcon launch slipped")
        .await
        .expect_err("blocked by the new rule");
    let message = err.to_string();
    assert!(message.contains("custom.falcon"), "{message}");
    assert!(message.contains("unannounced product"), "{message}");
    assert!(!message.contains("launch slipped"), "{message}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_links_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut alice, mut bob) = pair(tmp.path()).await;
    set_policy(
        &server,
        "version = 1\n[links]\norg_domains = [\"example.com\"]\nblocked_domains = [\"evil.test\"]\n",
    )
    .await;
    alice
        .send_text(
            &user("bob"),
            "reset it at https://rnicrosoft.com/reset or [example.com](https://exarnple.com/login), wiki at https://wiki.example.com",
        )
        .await
        .unwrap();
    bob.sync().await.unwrap();
    let inbox = bob.inbox(false).unwrap();
    let risks: Vec<&str> = inbox[0].warnings.iter().map(|w| w.risk).collect();
    assert!(risks.contains(&"link.lookalike"), "{risks:?}");
    assert!(risks.contains(&"link.mismatched_text"), "{risks:?}");
    let explained = inbox[0].warnings.iter().any(|w| {
        w.explanation.contains("rnicrosoft.com") && w.explanation.contains("microsoft.com")
    });
    assert!(explained, "{:?}", inbox[0].warnings);
    // The sender's own copy has no warnings; the organisation's wiki is fine.
    assert!(
        alice
            .inbox(true)
            .unwrap()
            .iter()
            .all(|e| e.warnings.is_empty())
    );

    // A blocklisted link does not leave the sender.
    let err = bob
        .send_text(&user("alice"), "see http://login.evil.test/x")
        .await
        .expect_err("blocklisted");
    assert!(err.to_string().contains("link.blocklisted"), "{err}");
    server.stop().await;
}

/// A minimal 64-bit ELF header: what a Linux program starts with.
fn elf_bytes() -> Vec<u8> {
    let mut b = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    b.resize(4096, 0);
    b
}

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_checked_before_upload_and_before_they_are_saved() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut alice, mut bob) = pair(tmp.path()).await;
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let silent = &mut rampart_client::Silent;

    // A program dressed as a PDF: blocked before any byte is uploaded.
    set_policy(&server, "version = 1\n[files]\nexecutable = \"block\"\n").await;
    alice.sync().await.unwrap();
    let fake_pdf = files.join("invoice.pdf");
    std::fs::write(&fake_pdf, elf_bytes()).unwrap();
    let err = alice
        .send_file_with(&user("bob"), &fake_pdf, "", None, true, silent)
        .await
        .expect_err("blocked");
    assert!(matches!(err, ClientError::Blocked(_)), "{err:?}");
    assert!(err.to_string().contains("file.executable"), "{err}");
    let blobs = server.data.join("blobs");
    assert!(all_bytes_if_any(&blobs).is_empty(), "an upload started");

    // A text file with a secret: a finding the policy would mask in a
    // message blocks the file, which cannot be masked.
    set_policy(
        &server,
        "version = 1\n[detectors.github_token]\naction = \"redact\"\n",
    )
    .await;
    alice.sync().await.unwrap();
    let notes = files.join("notes.txt");
    let token = format!("ghp_{}", "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5");
    std::fs::write(&notes, format!("deploy with\n{token}\n")).unwrap();
    let err = alice
        .send_file_with(&user("bob"), &notes, "", None, true, silent)
        .await
        .expect_err("blocked");
    assert!(err.to_string().contains("in the file"), "{err}");
    assert!(!err.to_string().contains(&token[4..]), "{err}");

    // Warned about by default (a program), sent once confirmed; the caption
    // is screened like a message and masked by the policy.
    set_policy(
        &server,
        "version = 1\n[detectors.card]\naction = \"redact\"\n[files]\nexecutable = \"warn\"\neicar = \"allow\"\n",
    )
    .await;
    alice.sync().await.unwrap();
    let tool = files.join("tool");
    std::fs::write(&tool, elf_bytes()).unwrap();
    let err = alice
        .send_file_with(
            &user("bob"),
            &tool,
            "pay 4111 1111 1111 1111",
            None,
            false,
            silent,
        )
        .await
        .expect_err("needs confirmation");
    assert!(
        matches!(err, ClientError::NeedsConfirmation { .. }),
        "{err:?}"
    );
    alice
        .send_file_with(
            &user("bob"),
            &tool,
            "pay 4111 1111 1111 1111",
            None,
            true,
            silent,
        )
        .await
        .expect("sent once confirmed");
    let eicar = files.join("test.txt");
    std::fs::write(&eicar, EICAR).unwrap();
    alice
        .send_file(&user("bob"), &eicar, "", None, silent)
        .await
        .expect("allowed then");

    bob.sync().await.unwrap();
    let inbox = bob.inbox(false).unwrap();
    assert_eq!(inbox[0].text, "pay 4111 **** **** 1111");
    let out = tmp.path().join("downloads");
    std::fs::create_dir_all(&out).unwrap();
    let got = bob
        .download(&inbox[0].id, Some(&out), silent)
        .await
        .expect("a program may be saved, with a warning");
    let risks: Vec<&str> = got.warnings.iter().map(|w| w.risk).collect();
    assert!(risks.contains(&"file.executable"), "{risks:?}");

    // The policy changes before bob fetches the test virus: never saved.
    set_policy(&server, "version = 1\n[files]\neicar = \"block\"\n").await;
    bob.sync().await.unwrap();
    let err = bob
        .download(&inbox[1].id, Some(&out), silent)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("not saved"), "{err}");
    let saved: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(saved.len(), 1, "only the program was saved: {saved:?}");

    let fired = events(&server).await;
    for expected in [
        ("alice", "file.executable", "block"),
        ("alice", "github_token", "block"),
        ("alice", "file.executable", "warn"),
        ("alice", "card", "redact"),
        ("bob", "file.eicar", "block"),
    ] {
        let expected = (
            expected.0.to_owned(),
            expected.1.to_owned(),
            expected.2.to_owned(),
        );
        assert!(
            fired.contains(&expected),
            "{expected:?} missing from {fired:?}"
        );
    }
    server.stop().await;
}

fn all_bytes_if_any(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    if dir.exists() {
        all_bytes(dir)
    } else {
        Vec::new()
    }
}

/// A policy from a newer Rampart (a schema this client cannot read) stops
/// sending, with the reason, and never stops receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_this_version_cannot_read_stops_sends_not_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut alice, mut bob) = pair(tmp.path()).await;
    bob.send_text(&user("alice"), "before the change")
        .await
        .unwrap();
    rampart_server::set_dlp_policy(&server.data, r#"{"version": 2, "detectors": {}}"#)
        .await
        .unwrap();
    alice.sync().await.expect("receiving goes on");
    assert_eq!(
        received(&mut alice).await,
        vec!["bob: before the change".to_owned()]
    );
    let err = alice
        .send_text(&user("bob"), "hello")
        .await
        .expect_err("no send under an unreadable policy");
    assert!(err.to_string().contains("update Rampart"), "{err}");
    assert!(received(&mut bob).await.is_empty());
    server.stop().await;
}
