//! File sharing end to end: real clients seal and upload to a real server on
//! loopback, which stores blobs under its data directory; recipients
//! download, verify and open them. Tampering is done to the server's own
//! files, as an attacker holding the server would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use rampart_client::{Client, ClientError, Clock, Progress, Silent};
use rampart_core::attachment::{Attachment, AttachmentError};
use rampart_core::content::Body;
use rampart_proto::ErrorCode;
use rampart_proto::limits::{ATTACHMENT_CHUNK_BYTES, BLOB_PART_BYTES};
use rampart_server::MessagesConfig;
use rampart_server::config::FilesConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// Recognisable bytes that must never appear on the server in the clear.
const CANARY: &[u8] = b"CANARY-7f3a-attachment-plaintext";

/// A file of `len` bytes of the canary repeated, written to `dir/name`.
fn make_file(dir: &Path, name: &str, len: usize) -> PathBuf {
    let bytes: Vec<u8> = CANARY.iter().copied().cycle().take(len).collect();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// The attachment of the newest file message `client` holds.
fn last_attachment(client: &Client) -> (String, Attachment) {
    let entry = client
        .inbox(true)
        .unwrap()
        .into_iter()
        .rev()
        .find(|e| e.kind == "file")
        .expect("a file message");
    let id = entry.id.clone();
    match client.find_message(&id).unwrap().body {
        Body::File(a) => (id, *a),
        other => panic!("not a file: {other:?}"),
    }
}

/// Every stored blob file of a server with the default (files) store.
fn blob_files(server_data: &Path) -> Vec<PathBuf> {
    let root = server_data.join("blobs");
    if !root.exists() {
        return vec![];
    }
    all_bytes(&root).into_iter().map(|(p, _)| p).collect()
}

fn blob_file(server_data: &Path, attachment: &Attachment) -> Option<PathBuf> {
    let id = attachment.blob.to_string();
    blob_files(server_data).into_iter().find(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains(&id))
    })
}

/// Files in `dir`, hidden ones included.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn alice_and_bob(server: &TestServer, tmp: &Path) -> (Client, Client) {
    let alice = register(server, tmp, "alice").await;
    let bob = register(server, tmp, "bob").await;
    (alice, bob)
}

#[tokio::test]
async fn files_of_every_size_round_trip_and_the_server_sees_no_plaintext() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(&tmp.path().join("server"), loopback()).await;
    let (mut alice, mut bob) = alice_and_bob(&server, tmp.path()).await;
    let files = tmp.path().join("files");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::create_dir_all(&out).unwrap();

    let sizes = [
        0,
        1,
        ATTACHMENT_CHUNK_BYTES,
        3 * ATTACHMENT_CHUNK_BYTES + 17,
        BLOB_PART_BYTES + 12_345,
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let name = format!("secret-plan-{i}.txt");
        let path = make_file(&files, &name, size);
        let sent = alice
            .send_file(&user("bob"), &path, "the plan", None, &mut Silent)
            .await
            .unwrap_or_else(|e| panic!("send {size}: {e}"));
        bob.sync().await.unwrap();
        let entry = bob
            .inbox(true)
            .unwrap()
            .into_iter()
            .find(|e| e.id == sent.id.to_string())
            .expect("bob got the message");
        let file = entry.file.expect("a file entry");
        assert_eq!(entry.kind, "file");
        assert_eq!(
            (file.name.as_str(), file.size),
            (name.as_str(), size as u64)
        );
        assert_eq!(file.media_type, "text/plain");
        assert_eq!(entry.text, "the plan");

        let got = bob
            .download(&entry.id, Some(&out), &mut Silent)
            .await
            .unwrap_or_else(|e| panic!("download {size}: {e}"));
        assert_eq!(got.path, out.join(&name));
        assert_eq!(
            std::fs::read(&got.path).unwrap(),
            std::fs::read(&path).unwrap()
        );
        assert_eq!(got.resumed_from, 0);
    }
    // A second download never overwrites the first.
    let (id, _) = last_attachment(&bob);
    let again = bob.download(&id, Some(&out), &mut Silent).await.unwrap();
    assert!(
        again
            .path
            .to_string_lossy()
            .ends_with("secret-plan-4 (1).txt")
    );
    // Nothing half-done is left behind.
    assert!(
        listing(&out).iter().all(|n| !n.starts_with('.')),
        "{:?}",
        listing(&out)
    );

    // The server holds ciphertext only: no canary, no file name anywhere.
    for (path, bytes) in all_bytes(&server.data) {
        assert!(!contains(&bytes, CANARY), "plaintext in {}", path.display());
        assert!(
            !contains(&bytes, b"secret-plan"),
            "file name in {}",
            path.display()
        );
    }
    // And the blobs are padded: no blob is as long as its file.
    let (_, a) = last_attachment(&alice);
    let stored = std::fs::metadata(blob_file(&server.data, &a).expect("blob file")).unwrap();
    assert!(stored.len() > a.size);
    server.stop().await;
}

#[tokio::test]
async fn only_members_of_the_conversation_can_download() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(&tmp.path().join("server"), loopback()).await;
    let (mut alice, mut bob) = alice_and_bob(&server, tmp.path()).await;
    let mut carol = register(&server, tmp.path(), "carol").await;
    let path = make_file(tmp.path(), "memo.pdf", 5000);
    alice
        .send_file(&user("bob"), &path, "", None, &mut Silent)
        .await
        .unwrap();
    bob.sync().await.unwrap();
    let (_, a) = last_attachment(&bob);
    assert_eq!(a.media_type, "application/pdf");

    // Carol, with a valid session and the blob id, gets what a wrong id gets.
    carol.sync().await.unwrap();
    let refused = carol.http().get_blob(&a.blob, 0).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NotFound), "{refused}");
    let unknown = rampart_proto::BlobId::from_random([7; 32]);
    let missing = carol.http().get_blob(&unknown, 0).await.unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::NotFound));
    assert_eq!(refused.to_string(), missing.to_string());
    // Bob, a member, can.
    assert!(bob.http().get_blob(&a.blob, 0).await.is_ok());
    server.stop().await;
}

/// Downloads the newest file of `bob` into a fresh directory and expects it
/// to fail, leaving nothing there.
async fn expect_damaged(bob: &mut Client, dir: &Path) -> ClientError {
    std::fs::create_dir_all(dir).unwrap();
    let (id, _) = last_attachment(bob);
    let err = bob.download(&id, Some(dir), &mut Silent).await.unwrap_err();
    assert!(listing(dir).is_empty(), "left behind: {:?}", listing(dir));
    err
}

#[tokio::test]
async fn tampered_truncated_and_substituted_blobs_are_rejected_and_nothing_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(&tmp.path().join("server"), loopback()).await;
    let (mut alice, mut bob) = alice_and_bob(&server, tmp.path()).await;
    let size = 4 * ATTACHMENT_CHUNK_BYTES + 99;
    let first = make_file(tmp.path(), "first.bin", size);
    let second = make_file(tmp.path(), "second.bin", size);
    alice
        .send_file(&user("bob"), &second, "", None, &mut Silent)
        .await
        .unwrap();
    bob.sync().await.unwrap();
    let (_, other) = last_attachment(&bob);
    alice
        .send_file(&user("bob"), &first, "", None, &mut Silent)
        .await
        .unwrap();
    bob.sync().await.unwrap();
    let (_, target) = last_attachment(&bob);
    let stored = blob_file(&server.data, &target).expect("blob file");
    let original = std::fs::read(&stored).unwrap();

    // One flipped bit in the middle of a chunk.
    let mut bad = original.clone();
    bad[ATTACHMENT_CHUNK_BYTES + 1000] ^= 0x01;
    std::fs::write(&stored, &bad).unwrap();
    let err = expect_damaged(&mut bob, &tmp.path().join("flip")).await;
    assert!(
        matches!(err, ClientError::File(AttachmentError::BadChunk(1))),
        "{err}"
    );

    // Two chunks swapped.
    let sealed = ATTACHMENT_CHUNK_BYTES + 16;
    let mut swapped = original.clone();
    let (a, b) = swapped.split_at_mut(sealed);
    a.swap_with_slice(&mut b[..sealed]);
    std::fs::write(&stored, &swapped).unwrap();
    let err = expect_damaged(&mut bob, &tmp.path().join("swap")).await;
    assert!(
        matches!(err, ClientError::File(AttachmentError::BadChunk(0))),
        "{err}"
    );

    // Another file's blob of the same length put in its place.
    let other_bytes = std::fs::read(blob_file(&server.data, &other).unwrap()).unwrap();
    std::fs::write(&stored, &other_bytes).unwrap();
    let err = expect_damaged(&mut bob, &tmp.path().join("substitute")).await;
    assert!(
        matches!(err, ClientError::File(AttachmentError::BadChunk(0))),
        "{err}"
    );

    // Cut short at a chunk boundary: the server answers with fewer bytes.
    std::fs::write(&stored, &original[..2 * sealed]).unwrap();
    let err = expect_damaged(&mut bob, &tmp.path().join("truncated")).await;
    assert!(
        matches!(
            err,
            ClientError::CutOff { .. } | ClientError::File(AttachmentError::Truncated { .. })
        ),
        "{err}"
    );

    // Restored, it opens.
    std::fs::write(&stored, &original).unwrap();
    let dir = tmp.path().join("good");
    std::fs::create_dir_all(&dir).unwrap();
    let (id, _) = last_attachment(&bob);
    let got = bob.download(&id, Some(&dir), &mut Silent).await.unwrap();
    assert_eq!(
        std::fs::read(got.path).unwrap(),
        std::fs::read(&first).unwrap()
    );
    server.stop().await;
}

/// Records where a transfer started and signals once `stop_after` bytes moved.
#[derive(Clone, Default)]
struct Watch {
    started_at: Arc<Mutex<Option<u64>>>,
    moved: Arc<Mutex<u64>>,
    stop_after: u64,
    reached: Arc<tokio::sync::Notify>,
}

impl Progress for Watch {
    fn start(&mut self, _total: u64, done: u64) {
        *self.started_at.lock().unwrap() = Some(done);
    }

    fn advance(&mut self, bytes: u64) {
        let mut moved = self.moved.lock().unwrap();
        *moved += bytes;
        if self.stop_after > 0 && *moved >= self.stop_after {
            self.reached.notify_one();
        }
    }
}

#[tokio::test]
async fn an_interrupted_upload_and_download_resume_where_they_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(&tmp.path().join("server"), loopback()).await;
    let (mut alice, mut bob) = alice_and_bob(&server, tmp.path()).await;
    let size = 2 * BLOB_PART_BYTES + 4321;
    let path = make_file(tmp.path(), "big.bin", size);

    // The upload is abandoned once the server confirmed the first part.
    let mut watch = Watch {
        stop_after: BLOB_PART_BYTES as u64,
        ..Watch::default()
    };
    let reached = watch.reached.clone();
    let bob_target = user("bob");
    tokio::select! {
        r = alice.send_file(&bob_target, &path, "", None, &mut watch) => panic!("finished early: {r:?}"),
        () = reached.notified() => {}
    }
    // Run again: it starts after the confirmed part(s), not at zero.
    let mut again = Watch::default();
    let sent = alice
        .send_file(&user("bob"), &path, "big", None, &mut again)
        .await
        .unwrap();
    let resumed_at = again.started_at.lock().unwrap().unwrap();
    assert!(
        resumed_at >= BLOB_PART_BYTES as u64,
        "resumed at {resumed_at}"
    );
    assert_eq!(resumed_at % BLOB_PART_BYTES as u64, 0);

    // The download is abandoned after some bytes, then resumed.
    bob.sync().await.unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let id = sent.id.to_string();
    let mut watch = Watch {
        stop_after: 3 * 1024 * 1024,
        ..Watch::default()
    };
    let reached = watch.reached.clone();
    tokio::select! {
        r = bob.download(&id, Some(&out), &mut watch) => panic!("finished early: {r:?}"),
        () = reached.notified() => {}
    }
    let got = bob.download(&id, Some(&out), &mut Silent).await.unwrap();
    assert!(got.resumed_from > 0, "the second attempt started from zero");
    assert_eq!(
        std::fs::read(&got.path).unwrap(),
        std::fs::read(&path).unwrap()
    );
    assert_eq!(listing(&out), vec!["big.bin".to_owned()]);
    server.stop().await;
}

#[tokio::test]
async fn size_limit_and_quota_are_enforced_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let files = FilesConfig {
        max_file_bytes: 300 * 1024,
        quota_bytes: 500 * 1024,
        ..FilesConfig::default()
    };
    let server = TestServer::start_full(
        &tmp.path().join("server"),
        loopback(),
        rampart_server::Clock::system(),
        MessagesConfig::default(),
        files,
    )
    .await;
    let (mut alice, _bob) = alice_and_bob(&server, tmp.path()).await;
    let big = make_file(tmp.path(), "big.bin", 400 * 1024);
    let err = alice
        .send_file(&user("bob"), &big, "", None, &mut Silent)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooLarge), "{err}");

    let ok = make_file(tmp.path(), "ok.bin", 200 * 1024);
    alice
        .send_file(&user("bob"), &ok, "", None, &mut Silent)
        .await
        .unwrap();
    alice
        .send_file(&user("bob"), &ok, "", None, &mut Silent)
        .await
        .unwrap();
    let err = alice
        .send_file(&user("bob"), &ok, "", None, &mut Silent)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::QuotaExceeded), "{err}");
    assert!(err.to_string().contains("quota"), "{err}");
    server.stop().await;
}

/// One clock for the server and one for the clients, moved together.
fn clocks() -> (rampart_server::Clock, Clock) {
    (rampart_server::Clock::manual(), Clock::manual())
}

#[tokio::test]
async fn expiry_and_recall_delete_the_blob_from_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let (server_clock, client_clock) = clocks();
    let server = TestServer::start_with(
        &tmp.path().join("server"),
        loopback(),
        server_clock.clone(),
        MessagesConfig::default(),
    )
    .await;
    let (mut alice, mut bob) = alice_and_bob(&server, tmp.path()).await;
    alice.set_clock(client_clock.clone());
    bob.set_clock(client_clock.clone());
    let path = make_file(tmp.path(), "short-lived.txt", 70_000);

    // Expiry: gone from the server once its time is up, and from bob.
    alice
        .send_file(&user("bob"), &path, "", Some(60), &mut Silent)
        .await
        .unwrap();
    bob.sync().await.unwrap();
    let (id, expiring) = last_attachment(&bob);
    assert!(blob_file(&server.data, &expiring).is_some());
    server_clock.advance(Duration::from_secs(61));
    client_clock.advance(Duration::from_secs(61));
    server.purger.purge_now().await.unwrap();
    assert!(
        blob_file(&server.data, &expiring).is_none(),
        "expired blob still stored"
    );
    let refused = alice.http().get_blob(&expiring.blob, 0).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NotFound));
    bob.sync().await.unwrap();
    assert!(bob.download(&id, None, &mut Silent).await.is_err());

    // Recall after delivery: the blob goes at once.
    let sent = alice
        .send_file(&user("bob"), &path, "oops", None, &mut Silent)
        .await
        .unwrap();
    bob.sync().await.unwrap();
    let (_, recalled) = last_attachment(&bob);
    assert!(blob_file(&server.data, &recalled).is_some());
    alice.recall(&sent.id.to_string()).await.unwrap();
    assert!(
        blob_file(&server.data, &recalled).is_none(),
        "recalled blob still stored"
    );
    bob.sync().await.unwrap();
    let err = bob
        .download(&sent.id.to_string(), None, &mut Silent)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("deleted"), "{err}");
    server.stop().await;
}
