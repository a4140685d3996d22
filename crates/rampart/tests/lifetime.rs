//! Disappearing messages, recall and edit, end to end: a real server on
//! loopback with a manual clock, real clients whose clocks move with it, and
//! the bytes of both sides' database files checked for the erased text.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use rampart_client::{Client, Clock, Event, HistoryEntry};
use rampart_server::MessagesConfig;
use std::path::Path;
use std::time::Duration;
use support::pages::decrypted_profile;
use support::*;

/// One clock for the server and one shared by every client, moved together.
struct Time {
    server: rampart_server::Clock,
    clients: Clock,
}

impl Time {
    fn new() -> Self {
        Self {
            server: rampart_server::Clock::manual(),
            clients: Clock::manual(),
        }
    }

    fn advance(&self, secs: u64) {
        self.server.advance(Duration::from_secs(secs));
        self.clients.advance(Duration::from_secs(secs));
    }
}

async fn start(tmp: &Path, time: &Time, messages: MessagesConfig) -> TestServer {
    TestServer::start_with(
        &tmp.join("server"),
        loopback(),
        time.server.clone(),
        messages,
    )
    .await
}

async fn person(server: &TestServer, tmp: &Path, name: &str, time: &Time) -> Client {
    let mut client = register(server, tmp, name).await;
    client.set_clock(time.clients.clone());
    client
}

/// alice, bob and carol in a group "ops" that alice created (so she is its admin).
async fn ops_group(server: &TestServer, tmp: &Path, time: &Time) -> (Client, Client, Client) {
    let mut alice = person(server, tmp, "alice", time).await;
    let mut bob = person(server, tmp, "bob", time).await;
    let mut carol = person(server, tmp, "carol", time).await;
    form_group(&mut alice, "ops", &mut [&mut bob, &mut carol]).await;
    (alice, bob, carol)
}

/// The whole history of `client`, without marking anything read.
fn history(client: &Client) -> Vec<HistoryEntry> {
    client.inbox(true).unwrap()
}

fn texts(client: &Client) -> Vec<String> {
    history(client)
        .into_iter()
        .filter(|e| e.kind == "text" && !e.recalled)
        .map(|e| e.text)
        .collect()
}

/// The server's database and log, as bytes.
fn server_bytes(server: &TestServer) -> Vec<u8> {
    let mut all = vec![];
    for file in ["rampart.db", "rampart.db-wal"] {
        if let Ok(bytes) = std::fs::read(server.data.join(file)) {
            all.extend(bytes);
        }
    }
    all
}

/// A 32-byte piece of the ciphertext the server stores for the newest
/// application message in its queues.
async fn newest_stored_ciphertext(server: &TestServer) -> Vec<u8> {
    let conn = rusqlite::Connection::open(server.data.join("rampart.db")).unwrap();
    let payload: Vec<u8> = conn
        .query_row(
            "SELECT payload FROM messages WHERE kind = 1 ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    payload[payload.len() / 2..payload.len() / 2 + 32].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_second_message_is_gone_from_every_store_and_never_reaches_an_offline_recipient() {
    let tmp = tempfile::tempdir().unwrap();
    let time = Time::new();
    let server = start(tmp.path(), &time, MessagesConfig::default()).await;
    let (mut alice, mut bob, mut carol) = ops_group(&server, tmp.path(), &time).await;

    // The timer change reaches everyone as a line in the conversation.
    alice.set_timer(&group("ops"), Some(30)).await.unwrap();
    let events = bob.sync().await.unwrap();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::TimerChanged { timer: Some(30), by, .. } if by.as_str() == "alice"
        )),
        "{events:?}"
    );
    let line = history(&bob)
        .into_iter()
        .find(|e| e.kind == "timer")
        .unwrap();
    assert_eq!(line.timer, Some(30));

    let canary = "EXPIRY-CANARY-3f9a1c";
    alice
        .send_text(&group("ops"), &format!("launch code {canary}"))
        .await
        .unwrap();
    // Bob reads it in time; carol stays offline.
    bob.sync().await.unwrap();
    assert!(texts(&bob).iter().any(|t| t.contains(canary)));
    let ciphertext = newest_stored_ciphertext(&server).await;
    // Positive controls: the decryptor and the grep work, so the checks
    // below can fail.
    assert!(contains(
        &decrypted_profile(&tmp.path().join("alice"), PASSPHRASE),
        canary.as_bytes()
    ));
    assert!(contains(&server_bytes(&server), &ciphertext));

    time.advance(31);
    assert!(server.purger.purge_now().await.unwrap() >= 1);
    assert_eq!(alice.purge_expired().unwrap(), 1);
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    for client in [&alice, &bob, &carol] {
        assert!(
            !texts(client).iter().any(|t| t.contains(canary)),
            "@{} still has it",
            client.username()
        );
    }
    // Carol, offline at the time, never received it at all.
    assert!(
        !carol
            .take_events()
            .iter()
            .any(|e| matches!(e, Event::Message(_)))
    );
    for name in ["alice", "bob", "carol"] {
        assert!(
            !contains(
                &decrypted_profile(&tmp.path().join(name), PASSPHRASE),
                canary.as_bytes()
            ),
            "the text survives in the bytes of {name}'s profile"
        );
    }
    assert!(
        !contains(&server_bytes(&server), &ciphertext),
        "the ciphertext survives in the server's files"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_expired_while_the_program_was_closed_are_deleted_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let time = Time::new();
    let server = start(tmp.path(), &time, MessagesConfig::default()).await;
    let mut alice = person(&server, tmp.path(), "alice", &time).await;
    let mut bob = person(&server, tmp.path(), "bob", &time).await;
    let canary = "CLOSED-CANARY-71be";
    // A per-message expiry, with the conversation's timer off.
    alice
        .send_text_expiring(&user("bob"), canary, Some(300))
        .await
        .unwrap();
    alice.send_text(&user("bob"), "stays").await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(texts(&bob), vec![canary.to_owned(), "stays".to_owned()]);
    let entry = history(&bob)
        .into_iter()
        .find(|e| e.text == canary)
        .unwrap();
    assert!(entry.expires_at.is_some());
    bob.close().await;

    time.advance(301);
    let bob =
        Client::open_with_clock(&tmp.path().join("bob"), PASSPHRASE, time.clients.clone()).unwrap();
    assert_eq!(texts(&bob), vec!["stays".to_owned()]);
    assert!(!contains(
        &decrypted_profile(&tmp.path().join("bob"), PASSPHRASE),
        canary.as_bytes()
    ));
    drop(alice);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recalled_message_is_gone_everywhere_and_a_late_recipient_never_sees_it() {
    let tmp = tempfile::tempdir().unwrap();
    let time = Time::new();
    let server = start(tmp.path(), &time, MessagesConfig::default()).await;
    let (mut alice, mut bob, mut carol) = ops_group(&server, tmp.path(), &time).await;
    let canary = "RECALL-CANARY-c0ffee";
    let sent = alice.send_text(&group("ops"), canary).await.unwrap();
    bob.sync().await.unwrap();
    assert!(texts(&bob).contains(&canary.to_owned()));
    let ciphertext = newest_stored_ciphertext(&server).await;
    assert!(contains(&server_bytes(&server), &ciphertext));

    // Someone else's message cannot be recalled by a member who is not admin.
    let err = bob.recall(&sent.id.to_string()).await.unwrap_err();
    assert!(err.to_string().contains("only your own"), "{err}");
    time.advance(3600);
    alice.recall(&sent.id.to_string()).await.unwrap();

    let events = bob.sync().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Recalled { id, .. } if *id == sent.id)),
        "{events:?}"
    );
    // Carol was offline: the server dropped her undelivered copy.
    carol.sync().await.unwrap();
    assert!(
        !carol
            .take_events()
            .iter()
            .any(|e| matches!(e, Event::Message(_)))
    );
    for client in [&alice, &bob, &carol] {
        assert!(!texts(client).contains(&canary.to_owned()));
        let tombstone = history(client)
            .into_iter()
            .find(|e| e.id == sent.id.to_string())
            .unwrap_or_else(|| panic!("@{} shows no 'message deleted'", client.username()));
        assert!(tombstone.recalled && tombstone.text.is_empty());
    }
    for name in ["alice", "bob", "carol"] {
        assert!(
            !contains(
                &decrypted_profile(&tmp.path().join(name), PASSPHRASE),
                canary.as_bytes()
            ),
            "the recalled text survives in the bytes of {name}'s profile"
        );
    }
    server.purger.purge_now().await.unwrap();
    assert!(!contains(&server_bytes(&server), &ciphertext));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reach_every_member_and_the_window_and_limit_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let time = Time::new();
    let server = start(tmp.path(), &time, MessagesConfig::default()).await;
    let (mut alice, mut bob, mut carol) = ops_group(&server, tmp.path(), &time).await;
    let sent = alice.send_text(&group("ops"), "meet at 10").await.unwrap();
    let id = sent.id.to_string();
    bob.sync().await.unwrap();
    alice.edit(&id[..8], "meet at 11").await.unwrap();
    for client in [&mut bob, &mut carol] {
        client.sync().await.unwrap();
        let entry = history(client).into_iter().find(|e| e.id == id).unwrap();
        assert_eq!(entry.text, "meet at 11");
        assert!(entry.edited);
    }
    assert!(
        history(&alice)
            .into_iter()
            .any(|e| e.id == id && e.edited && e.text == "meet at 11")
    );
    // Someone else's message cannot be edited.
    let err = bob.edit(&id, "hijacked").await.unwrap_err();
    assert!(err.to_string().contains("only your own"), "{err}");
    // At most ten edits.
    for n in 2..=10 {
        alice.edit(&id, &format!("meet at {n}")).await.unwrap();
    }
    let err = alice.edit(&id, "one too many").await.unwrap_err();
    assert!(err.to_string().contains("at most 10"), "{err}");
    carol.sync().await.unwrap();
    assert!(texts(&carol).contains(&"meet at 10".to_owned()));

    // After the window, a member (not admin) can neither edit nor recall,
    // and nothing changes.
    let later = bob.send_text(&group("ops"), "final").await.unwrap();
    time.advance(24 * 3600 + 1);
    let err = bob
        .edit(&later.id.to_string(), "changed")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("within 1 day"), "{err}");
    let err = bob.recall(&later.id.to_string()).await.unwrap_err();
    assert!(err.to_string().contains("within 1 day"), "{err}");
    // An unknown id is a clear error too.
    let err = bob
        .recall("00112233445566778899aabbccddeeff")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no message"), "{err}");
    carol.sync().await.unwrap();
    assert!(texts(&carol).contains(&"final".to_owned()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_admin_recalls_any_message_at_any_time() {
    let tmp = tempfile::tempdir().unwrap();
    let time = Time::new();
    let server = start(tmp.path(), &time, MessagesConfig::default()).await;
    let (mut alice, mut bob, mut carol) = ops_group(&server, tmp.path(), &time).await;
    let sent = bob
        .send_text(&group("ops"), "oops, a password")
        .await
        .unwrap();
    carol.sync().await.unwrap();
    alice.sync().await.unwrap();
    time.advance(3 * 24 * 3600);
    // Carol is no admin; alice created the group and is.
    assert!(carol.recall(&sent.id.to_string()).await.is_err());
    alice.recall(&sent.id.to_string()).await.unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    for client in [&alice, &bob, &carol] {
        assert!(
            !texts(client).contains(&"oops, a password".to_owned()),
            "@{} still shows it",
            client.username()
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organisation_maximum_caps_timers_and_its_default_starts_conversations() {
    let tmp = tempfile::tempdir().unwrap();
    let time = Time::new();
    let rules = MessagesConfig {
        max_retention_secs: Some(24 * 3600),
        default_timer_secs: Some(3600),
        ..MessagesConfig::default()
    };
    let server = start(tmp.path(), &time, rules).await;
    let mut alice = person(&server, tmp.path(), "alice", &time).await;
    let mut bob = person(&server, tmp.path(), "bob", &time).await;
    assert_eq!(alice.policy().max_retention_secs, Some(24 * 3600));

    // A new conversation starts with the organisation's default timer.
    let sent = alice.send_text(&user("bob"), "hi").await.unwrap();
    assert_eq!(sent.expires_in, Some(3600));
    let events = bob.sync().await.unwrap();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::TimerChanged {
                timer: Some(3600),
                ..
            }
        )),
        "{events:?}"
    );

    // Longer than the maximum, or off: refused with the limit named, and
    // the timer stays.
    for timer in [Some(2 * 24 * 3600), None] {
        let err = alice.set_timer(&user("bob"), timer).await.unwrap_err();
        assert!(err.to_string().contains("at most 1 day"), "{err}");
    }
    let err = alice
        .send_text_expiring(&user("bob"), "long", Some(3 * 24 * 3600))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 1 day"), "{err}");
    alice
        .set_timer(&user("bob"), Some(12 * 3600))
        .await
        .unwrap();
    let sent = alice.send_text(&user("bob"), "later").await.unwrap();
    assert_eq!(sent.expires_in, Some(12 * 3600));

    // Everything is gone after the maximum, whatever anyone asked for.
    time.advance(24 * 3600 + 1);
    server.purger.purge_now().await.unwrap();
    bob.sync().await.unwrap();
    alice.purge_expired().unwrap();
    assert!(texts(&alice).is_empty() && texts(&bob).is_empty());
    server.stop().await;
}
