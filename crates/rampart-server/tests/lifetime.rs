//! Message lifetime through a real server: expiry on deliveries, expired
//! messages never delivered and purged from disk, the organisation's maximum
//! retention, recall of undelivered copies, and the message policy route.
//! Time moves only when a test advances the server's manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use openmls::prelude::MlsGroup;
use rampart_proto::api::MessagePolicy;
use rampart_proto::frame::{
    ClientFrame, CommitBundle, Create, Delivery, DeliveryKind, SendMessage, ServerFrame,
};
use rampart_proto::limits::DEFAULT_RECALL_WINDOW_SECS;
use rampart_proto::{ErrorCode, GroupId, IdempotencyKey};
use rampart_server::{Clock, MessagesConfig, Registration, Server, ServerConfig, ServerError};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use std::path::Path;
use std::time::Duration;

const DAY: u32 = 24 * 3600;

/// Alice (the group's admin per its settings), Bob and Carol in one group
/// at epoch 1; each has joined from the Welcome, and nobody is connected.
struct World {
    dir: tempfile::TempDir,
    server: TestServer,
    clock: Clock,
    config: ServerConfig,
    http: reqwest::Client,
    alice: Account,
    bob: Account,
    carol: Account,
    a: MlsClient,
    b: MlsClient,
    c: MlsClient,
    group_id: GroupId,
    ga: MlsGroup,
    gb: MlsGroup,
    gc: MlsGroup,
}

fn config(messages: MessagesConfig) -> ServerConfig {
    ServerConfig {
        registration: Registration::Open,
        messages,
        ..ServerConfig::default()
    }
}

async fn world(messages: MessagesConfig) -> World {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual();
    let config = config(messages);
    let server = TestServer::start_with(config.clone(), dir.path(), clock.clone()).await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 0xa1, None).await;
    let bob = register(&http, &server, "bob", 0xb1, None).await;
    let carol = register(&http, &server, "carol", 0xc1, None).await;
    let (a, b, c) = (
        MlsClient::for_account(&alice),
        MlsClient::for_account(&bob),
        MlsClient::for_account(&carol),
    );
    let group_id = GroupId::new_group([9; 31]);
    let members = [(&b, bob.device), (&c, carol.device)];
    let (_, ga, welcome) = create_group_over_ws(&server, &alice, &a, group_id, &members).await;
    let gb = b.join(&welcome);
    let gc = c.join(&welcome);
    World {
        dir,
        server,
        clock,
        config,
        http,
        alice,
        bob,
        carol,
        a,
        b,
        c,
        group_id,
        ga,
        gb,
        gc,
    }
}

fn app(
    request_id: u32,
    k: IdempotencyKey,
    group: GroupId,
    message: Vec<u8>,
    expires_in: Option<u32>,
    recalls: Option<IdempotencyKey>,
) -> ClientFrame {
    ClientFrame::Send(SendMessage {
        request_id,
        key: k,
        group,
        expires_in,
        recalls,
        attachments: vec![],
        message,
    })
}

/// The next answer to a request (deliveries in between are skipped).
async fn answer(ws: &mut Ws) -> ServerFrame {
    loop {
        match recv(ws).await {
            Some(f @ (ServerFrame::Accepted { .. } | ServerFrame::Rejected { .. })) => return f,
            Some(ServerFrame::Deliver(_)) => continue,
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}

/// Sends and expects acceptance.
async fn accepted(ws: &mut Ws, frame: ClientFrame) {
    send(ws, &frame).await;
    match answer(ws).await {
        ServerFrame::Accepted { .. } => {}
        other => panic!("expected acceptance, got {other:?}"),
    }
}

/// Sends and expects this refusal; returns its message.
async fn refused(ws: &mut Ws, frame: ClientFrame, code: ErrorCode) -> String {
    send(ws, &frame).await;
    match answer(ws).await {
        ServerFrame::Rejected {
            code: got, message, ..
        } if got == code => message,
        other => panic!("expected {code}, got {other:?}"),
    }
}

/// Connects and reads the whole backlog; returns its application messages.
async fn backlog_of(server: &TestServer, token: &str) -> (Ws, Vec<Delivery>) {
    let mut ws = connect(server, token).await;
    let mut apps = Vec::new();
    loop {
        match recv(&mut ws).await {
            Some(ServerFrame::Deliver(d)) if d.kind == DeliveryKind::Application => apps.push(d),
            Some(ServerFrame::Deliver(_)) => {}
            Some(ServerFrame::BacklogDone { .. }) => return (ws, apps),
            other => panic!("{other:?}"),
        }
    }
}

fn payloads(deliveries: &[Delivery]) -> Vec<&[u8]> {
    deliveries.iter().map(|d| d.payload.as_slice()).collect()
}

/// A second connection to the server's database, as an operator (or an
/// attacker with the disk) would open it.
async fn open_db(dir: &Path) -> SqlitePool {
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(dir.join("rampart.db")))
        .await
        .unwrap()
}

async fn stored_with_key(dir: &Path, k: IdempotencyKey) -> i64 {
    let db = open_db(dir).await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE client_key = ?")
        .bind(k.0.as_slice())
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    n
}

#[tokio::test]
async fn expiry_travels_with_live_and_backlog_deliveries() {
    let mut w = world(MessagesConfig::default()).await;
    // The server stamps with its own clock, not the system's.
    w.clock.advance(Duration::from_secs(3600));
    let (mut wa, _) = backlog_of(&w.server, &w.alice.token).await;
    let (mut wb, _) = backlog_of(&w.server, &w.bob.token).await;

    let timed = w.a.message(&mut w.ga, b"gone in a minute");
    let plain = w.a.message(&mut w.ga, b"stays");
    accepted(
        &mut wa,
        app(2, key(2), w.group_id, timed.clone(), Some(60), None),
    )
    .await;
    accepted(
        &mut wa,
        app(3, key(3), w.group_id, plain.clone(), None, None),
    )
    .await;
    let now = w.clock.now_ms();
    for (payload, expires_at) in [(&timed, Some(now + 60_000)), (&plain, None)] {
        match recv(&mut wb).await {
            Some(ServerFrame::Deliver(d)) => {
                assert_eq!(&d.payload, payload);
                assert_eq!(d.server_time, now);
                assert_eq!(d.expires_at, expires_at);
            }
            other => panic!("{other:?}"),
        }
    }
    // Carol was offline: her backlog carries the same expiry.
    let (_wc, apps) = backlog_of(&w.server, &w.carol.token).await;
    let got: Vec<_> = apps.iter().map(|d| (d.server_time, d.expires_at)).collect();
    assert_eq!(got, vec![(now, Some(now + 60_000)), (now, None)]);
    let _ = (&w.http, &w.b, &w.c, &w.gb, &w.gc, &w.dir, &w.config);
    w.server.stop().await;
}

#[tokio::test]
async fn expired_messages_are_never_delivered_and_the_purge_deletes_them() {
    let mut w = world(MessagesConfig::default()).await;
    let (mut wa, _) = backlog_of(&w.server, &w.alice.token).await;
    let forever = w.a.message(&mut w.ga, b"no timer");
    let minute = w.a.message(&mut w.ga, b"one minute");
    let hour = w.a.message(&mut w.ga, b"one hour");
    accepted(
        &mut wa,
        app(2, key(2), w.group_id, forever.clone(), None, None),
    )
    .await;
    accepted(
        &mut wa,
        app(3, key(3), w.group_id, minute.clone(), Some(60), None),
    )
    .await;
    accepted(
        &mut wa,
        app(4, key(4), w.group_id, hour.clone(), Some(3600), None),
    )
    .await;

    // Past the first expiry, before any purge: Bob, offline until now,
    // never sees the expired message.
    w.clock.advance(Duration::from_secs(61));
    let (wb, apps) = backlog_of(&w.server, &w.bob.token).await;
    assert_eq!(payloads(&apps), vec![forever.as_slice(), hour.as_slice()]);
    drop(wb);

    // The purge deletes it (and only it) from the database.
    w.server.purger.purge_now().await.unwrap();
    assert_eq!(stored_with_key(w.dir.path(), key(2)).await, 1);
    assert_eq!(stored_with_key(w.dir.path(), key(3)).await, 0);
    assert_eq!(stored_with_key(w.dir.path(), key(4)).await, 1);

    // Past the second expiry, after the purge ran: Carol gets only the
    // message without a timer, and so does Bob on reconnecting.
    w.clock.advance(Duration::from_secs(3600));
    w.server.purger.purge_now().await.unwrap();
    assert_eq!(stored_with_key(w.dir.path(), key(4)).await, 0);
    let (wc, apps) = backlog_of(&w.server, &w.carol.token).await;
    assert_eq!(payloads(&apps), vec![forever.as_slice()]);
    let (wb, apps) = backlog_of(&w.server, &w.bob.token).await;
    assert_eq!(payloads(&apps), vec![forever.as_slice()]);

    // Sequence numbers never restart below a purged one, even though the
    // purged messages were the last in Bob's queue.
    drop((wb, wc, wa));
    w.server.stop().await;
    let server = TestServer::start_with(w.config.clone(), w.dir.path(), w.clock.clone()).await;
    let mut wa = connect(&server, &w.alice.token).await;
    let _ = recv(&mut wa).await;
    let (mut wb, _) = backlog_of(&server, &w.bob.token).await;
    let next = w.a.message(&mut w.ga, b"after restart");
    accepted(&mut wa, app(5, key(5), w.group_id, next, None, None)).await;
    match recv(&mut wb).await {
        // Welcome 1, then messages 2, 3, 4 (3 and 4 purged): the next is 5.
        Some(ServerFrame::Deliver(d)) => assert_eq!(d.seq, 5),
        other => panic!("{other:?}"),
    }
    let _ = (&w.http, &w.b, &w.c, &w.gb, &w.gc);
    server.stop().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn read_or_empty(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// Regression guard for secure deletion: a purged ciphertext must not
/// survive in the database file or its write-ahead log.
#[tokio::test]
async fn canary_purged_ciphertext_is_gone_from_the_database_and_wal() {
    let mut w = world(MessagesConfig::default()).await;
    let (mut wa, _) = backlog_of(&w.server, &w.alice.token).await;
    let secret = w.a.message(&mut w.ga, b"canary: burn after reading");
    accepted(
        &mut wa,
        app(2, key(2), w.group_id, secret.clone(), Some(30), None),
    )
    .await;
    let other = w.a.message(&mut w.ga, b"a message that stays");
    accepted(
        &mut wa,
        app(3, key(3), w.group_id, other.clone(), None, None),
    )
    .await;

    // The ciphertext as stored, read back from rampart.db.
    let db = open_db(w.dir.path()).await;
    let stored: Vec<u8> = sqlx::query_scalar("SELECT payload FROM messages WHERE client_key = ?")
        .bind(key(2).0.as_slice())
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    assert_eq!(stored, secret);
    // Its last 32 bytes are AEAD ciphertext and tag: they occur nowhere else.
    let canary = &stored[stored.len() - 32..];
    let db_file = w.dir.path().join("rampart.db");
    let wal_file = w.dir.path().join("rampart.db-wal");

    // Positive control: on disk now, in the database or its log.
    let mut before = read_or_empty(&db_file);
    before.extend(read_or_empty(&wal_file));
    assert!(
        contains(&before, canary),
        "the stored ciphertext should be on disk before the purge"
    );

    w.clock.advance(Duration::from_secs(31));
    w.server.purger.purge_now().await.unwrap();
    assert!(
        !contains(&read_or_empty(&db_file), canary),
        "purged ciphertext left in rampart.db"
    );
    assert!(
        !contains(&read_or_empty(&wal_file), canary),
        "purged ciphertext left in rampart.db-wal"
    );
    // The message without a timer is still there.
    let (_wb, apps) = backlog_of(&w.server, &w.bob.token).await;
    assert_eq!(payloads(&apps), vec![other.as_slice()]);
    let _ = (&w.http, &w.b, &w.c, &w.gb, &w.gc, &w.config);
    w.server.stop().await;
}

#[tokio::test]
async fn the_organisation_maximum_retention_is_enforced() {
    let week = 7 * DAY;
    let mut w = world(MessagesConfig {
        max_retention_secs: Some(week),
        ..MessagesConfig::default()
    })
    .await;
    let (mut wa, _) = backlog_of(&w.server, &w.alice.token).await;
    let m = w.a.message(&mut w.ga, b"hello");

    let message = refused(
        &mut wa,
        app(2, key(2), w.group_id, m.clone(), None, None),
        ErrorCode::RetentionExceeded,
    )
    .await;
    assert_eq!(
        message,
        "this organisation keeps messages at most 7 days: set a disappearing-messages timer of at most 7d"
    );
    refused(
        &mut wa,
        app(3, key(3), w.group_id, m.clone(), Some(week + 1), None),
        ErrorCode::RetentionExceeded,
    )
    .await;
    refused(
        &mut wa,
        app(4, key(4), w.group_id, m.clone(), Some(29), None),
        ErrorCode::BadRequest,
    )
    .await;
    // Nothing refused was stored or delivered.
    let (_wb, apps) = backlog_of(&w.server, &w.bob.token).await;
    assert!(apps.is_empty());
    accepted(
        &mut wa,
        app(5, key(5), w.group_id, m.clone(), Some(week), None),
    )
    .await;

    // Proposals need no expiry, and may carry neither an expiry nor a recall.
    let proposal = w.a.proposal(&mut w.ga);
    refused(
        &mut wa,
        app(6, key(6), w.group_id, proposal.clone(), Some(60), None),
        ErrorCode::BadRequest,
    )
    .await;
    refused(
        &mut wa,
        app(7, key(7), w.group_id, proposal.clone(), None, Some(key(5))),
        ErrorCode::BadRequest,
    )
    .await;
    accepted(&mut wa, app(8, key(8), w.group_id, proposal, None, None)).await;
    let _ = (&w.http, &w.b, &w.c, &w.gb, &w.gc, &w.dir, &w.config);
    w.server.stop().await;
}

#[tokio::test]
async fn a_sender_recalls_within_the_window_and_the_offline_copy_is_gone() {
    let mut w = world(MessagesConfig::default()).await;
    let (mut wa, _) = backlog_of(&w.server, &w.alice.token).await;
    let original = w.a.message(&mut w.ga, b"oops, wrong group");
    accepted(
        &mut wa,
        app(2, key(2), w.group_id, original.clone(), None, None),
    )
    .await;
    w.clock.advance(Duration::from_secs(u64::from(DAY) - 1));
    let recall = w.a.message(&mut w.ga, b"recall");
    accepted(
        &mut wa,
        app(3, key(3), w.group_id, recall.clone(), None, Some(key(2))),
    )
    .await;
    assert_eq!(stored_with_key(w.dir.path(), key(2)).await, 0);
    // Bob and Carol come online later: only the recall reaches them.
    for token in [&w.bob.token, &w.carol.token] {
        let (_ws, apps) = backlog_of(&w.server, token).await;
        assert_eq!(payloads(&apps), vec![recall.as_slice()]);
    }
    let _ = (&w.http, &w.b, &w.c, &w.gb, &w.gc, &w.config);
    w.server.stop().await;
}

#[tokio::test]
async fn a_member_who_is_neither_sender_nor_admin_may_not_recall() {
    let mut w = world(MessagesConfig::default()).await;
    let (mut wa, _) = backlog_of(&w.server, &w.alice.token).await;
    let original = w.a.message(&mut w.ga, b"alice's words");
    accepted(
        &mut wa,
        app(2, key(2), w.group_id, original.clone(), None, None),
    )
    .await;
    let (mut wc, _) = backlog_of(&w.server, &w.carol.token).await;
    let recall = w.c.message(&mut w.gc, b"recall");
    let message = refused(
        &mut wc,
        app(3, key(3), w.group_id, recall, None, Some(key(2))),
        ErrorCode::Forbidden,
    )
    .await;
    assert_eq!(
        message,
        "only the sender, or an admin of the group, may recall this message"
    );
    // Nothing changed: Bob still gets the original, and no recall.
    assert_eq!(stored_with_key(w.dir.path(), key(2)).await, 1);
    let (_wb, apps) = backlog_of(&w.server, &w.bob.token).await;
    assert_eq!(payloads(&apps), vec![original.as_slice()]);
    let _ = (&w.http, &w.b, &w.gb, &w.config);
    w.server.stop().await;
}

#[tokio::test]
async fn a_recall_after_the_window_is_refused_and_changes_nothing() {
    let mut w = world(MessagesConfig::default()).await;
    // Bob is not an admin, so the window applies to him.
    let (mut wb, _) = backlog_of(&w.server, &w.bob.token).await;
    let original = w.b.message(&mut w.gb, b"bob's words");
    accepted(
        &mut wb,
        app(2, key(2), w.group_id, original.clone(), None, None),
    )
    .await;
    w.clock.advance(Duration::from_secs(
        u64::from(DEFAULT_RECALL_WINDOW_SECS) + 1,
    ));
    let recall = w.b.message(&mut w.gb, b"recall");
    let message = refused(
        &mut wb,
        app(3, key(3), w.group_id, recall, None, Some(key(2))),
        ErrorCode::WindowClosed,
    )
    .await;
    assert_eq!(
        message,
        "messages can be recalled for 24 hours after sending"
    );
    assert_eq!(stored_with_key(w.dir.path(), key(2)).await, 1);
    let (_wc, apps) = backlog_of(&w.server, &w.carol.token).await;
    assert_eq!(payloads(&apps), vec![original.as_slice()]);
    let _ = (&w.http, &w.a, &w.c, &w.ga, &w.gc, &w.config);
    w.server.stop().await;
}

#[tokio::test]
async fn a_group_admin_recalls_any_message_at_any_time_even_after_a_restart() {
    let mut w = world(MessagesConfig {
        recall_window_secs: 3600,
        ..MessagesConfig::default()
    })
    .await;
    let (mut wb, _) = backlog_of(&w.server, &w.bob.token).await;
    let original = w.b.message(&mut w.gb, b"bob's words");
    accepted(
        &mut wb,
        app(2, key(2), w.group_id, original.clone(), None, None),
    )
    .await;
    drop(wb);
    // Well past the window; the settings come back from the database.
    w.clock.advance(Duration::from_secs(2 * u64::from(DAY)));
    w.server.stop().await;
    let server = TestServer::start_with(w.config.clone(), w.dir.path(), w.clock.clone()).await;
    let (mut wa, _) = backlog_of(&server, &w.alice.token).await;
    let recall = w.a.message(&mut w.ga, b"recall");
    accepted(
        &mut wa,
        app(3, key(3), w.group_id, recall.clone(), None, Some(key(2))),
    )
    .await;
    assert_eq!(stored_with_key(w.dir.path(), key(2)).await, 0);
    let (_wc, apps) = backlog_of(&server, &w.carol.token).await;
    assert_eq!(payloads(&apps), vec![recall.as_slice()]);
    let _ = (&w.http, &w.c, &w.gc);
    server.stop().await;
}

#[tokio::test]
async fn a_recall_of_a_key_the_server_does_not_hold_is_accepted() {
    let mut w = world(MessagesConfig::default()).await;
    let (mut wc, _) = backlog_of(&w.server, &w.carol.token).await;
    let recall = w.c.message(&mut w.gc, b"recall");
    accepted(
        &mut wc,
        app(2, key(2), w.group_id, recall.clone(), None, Some(key(99))),
    )
    .await;
    let (_wb, apps) = backlog_of(&w.server, &w.bob.token).await;
    assert_eq!(payloads(&apps), vec![recall.as_slice()]);
    let _ = (&w.http, &w.a, &w.b, &w.ga, &w.gb, &w.dir, &w.config);
    w.server.stop().await;
}

#[tokio::test]
async fn malformed_group_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        config(MessagesConfig::default()),
        dir.path(),
        Clock::manual(),
    )
    .await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 0xa1, None).await;
    let a = MlsClient::for_account(&alice);
    let group_id = GroupId::new_group([4; 31]);
    let mut group = a.create_group_with_raw_settings(&group_id, vec![0xff, 0]);
    let (commit, group_info) = a.self_update(&mut group);
    let mut wa = connect(&server, &alice.token).await;
    let _ = recv(&mut wa).await;
    let message = refused(
        &mut wa,
        ClientFrame::Commit(CommitBundle {
            request_id: 1,
            key: key(1),
            group: group_id,
            epoch: 0,
            create: Some(Create::Group),
            commit,
            welcome: None,
            group_info,
            added: vec![],
            removed: vec![],
        }),
        ErrorCode::MalformedMls,
    )
    .await;
    assert_eq!(message, "the group settings extension is malformed");
    server.stop().await;
}

#[tokio::test]
async fn the_message_policy_needs_a_session_and_follows_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let messages = MessagesConfig {
        max_retention_secs: Some(30 * DAY),
        default_timer_secs: Some(DAY),
        recall_window_secs: 600,
    };
    let server = TestServer::start_with(config(messages), dir.path(), Clock::manual()).await;
    let http = reqwest::Client::new();
    let resp = http
        .get(server.url("/v1/policy/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(server.url("/v1/policy/messages"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let alice = register(&http, &server, "alice", 0xa1, None).await;
    let policy: MessagePolicy = http
        .get(server.url("/v1/policy/messages"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        policy,
        MessagePolicy {
            max_retention_secs: Some(30 * DAY),
            default_timer_secs: Some(DAY),
            recall_window_secs: 600,
        }
    );
    server.stop().await;

    // Defaults: no maximum, no timer, a 24-hour recall window.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    let bob = register(&http, &server, "bob", 0xb1, None).await;
    let policy: MessagePolicy = http
        .get(server.url("/v1/policy/messages"))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(policy, MessagePolicy::default());
    server.stop().await;
}

#[tokio::test]
async fn absurd_message_settings_are_refused_at_startup() {
    for messages in [
        MessagesConfig {
            max_retention_secs: Some(0),
            ..MessagesConfig::default()
        },
        MessagesConfig {
            default_timer_secs: Some(u32::MAX),
            ..MessagesConfig::default()
        },
        MessagesConfig {
            max_retention_secs: Some(DAY),
            default_timer_secs: Some(7 * DAY),
            ..MessagesConfig::default()
        },
        MessagesConfig {
            recall_window_secs: 0,
            ..MessagesConfig::default()
        },
        MessagesConfig {
            recall_window_secs: u32::MAX,
            ..MessagesConfig::default()
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            messages: messages.clone(),
            ..ServerConfig::default()
        };
        match Server::open(config).await {
            Err(ServerError::Config(e)) => {
                let text = e.to_string();
                assert!(text.starts_with("messages."), "{messages:?}: {text}");
            }
            Err(e) => panic!("{messages:?}: {e}"),
            Ok(_) => panic!("{messages:?} was accepted"),
        }
    }
}
