//! File sharing through a real server: uploads in parts, resume, downloads
//! with and without `Range`, who may read what, binding to real MLS
//! messages, limits and quota, expiry, recall, orphan collection, a full
//! disk and a restart. Time moves only when a test advances the server's
//! manual clock. The `s3` module runs the core flow against an
//! S3-compatible server when `RAMPART_TEST_S3_ENDPOINT` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use openmls::prelude::MlsGroup;
use rampart_proto::api::{BlobStatus, FilePolicy, NewBlob};
use rampart_proto::frame::{ClientFrame, SendMessage, ServerFrame};
use rampart_proto::limits::BLOB_PART_BYTES;
use rampart_proto::{BlobId, ErrorCode, GroupId, IdempotencyKey};
use rampart_server::{Clock, FilesConfig, Registration, ServerConfig};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PART: usize = BLOB_PART_BYTES;
const MIB: u64 = 1 << 20;

/// Deterministic bytes that differ by seed and position.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn config(files: FilesConfig) -> ServerConfig {
    ServerConfig {
        registration: Registration::Open,
        files,
        ..ServerConfig::default()
    }
}

/// Alice (admin) and Bob in group `g`; Carol and Alice in group `h`. Nobody
/// is connected.
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
    g: GroupId,
    ga: MlsGroup,
    h: GroupId,
    ha: MlsGroup,
}

async fn world(files: FilesConfig) -> World {
    let dir = tempfile::tempdir().unwrap();
    world_in(dir, config(files)).await
}

async fn world_in(dir: tempfile::TempDir, config: ServerConfig) -> World {
    let clock = Clock::manual();
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
    let g = GroupId::new_group([1; 31]);
    let (_, ga, _) = create_group_over_ws(&server, &alice, &a, g, &[(&b, bob.device)]).await;
    let h = GroupId::new_group([2; 31]);
    let (_, _, welcome) = create_group_over_ws(&server, &carol, &c, h, &[(&a, alice.device)]).await;
    let ha = a.join(&welcome);
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
        g,
        ga,
        h,
        ha,
    }
}

/// The next answer to a request (deliveries in between are skipped).
async fn answer(ws: &mut Ws) -> ServerFrame {
    loop {
        match recv(ws).await {
            Some(f @ (ServerFrame::Accepted { .. } | ServerFrame::Rejected { .. })) => return f,
            Some(ServerFrame::Deliver(_) | ServerFrame::BacklogDone { .. }) => continue,
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}

fn share(
    k: IdempotencyKey,
    group: GroupId,
    message: Vec<u8>,
    attachments: Vec<BlobId>,
    expires_in: Option<u32>,
) -> ClientFrame {
    ClientFrame::Send(SendMessage {
        request_id: u32::from(k.0[0]),
        key: k,
        group,
        expires_in,
        recalls: None,
        attachments,
        message,
    })
}

/// Connects and reads the whole backlog.
async fn connected(server: &TestServer, token: &str) -> Ws {
    let mut ws = connect(server, token).await;
    loop {
        match recv(&mut ws).await {
            Some(ServerFrame::BacklogDone { .. }) => return ws,
            Some(ServerFrame::Deliver(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// Sends on a fresh connection and returns the answer.
async fn send_once(server: &TestServer, token: &str, frame: ClientFrame) -> ServerFrame {
    let mut ws = connect(server, token).await;
    send(&mut ws, &frame).await;
    answer(&mut ws).await
}

impl World {
    /// Stops the server gracefully and starts it again on the same data.
    async fn restart(self) -> World {
        let World {
            dir,
            server,
            clock,
            config,
            http,
            alice,
            bob,
            carol,
            a,
            g,
            ga,
            h,
            ha,
        } = self;
        server.stop().await;
        let server = TestServer::start_with(config.clone(), dir.path(), clock.clone()).await;
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
            g,
            ga,
            h,
            ha,
        }
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    async fn create(&self, token: &str, group: GroupId, size: u64) -> reqwest::Response {
        self.http
            .post(self.url("/v1/blobs"))
            .bearer_auth(token)
            .json(&NewBlob { group, size })
            .send()
            .await
            .unwrap()
    }

    async fn created(&self, token: &str, group: GroupId, size: u64) -> BlobId {
        let resp = self.create(token, group, size).await;
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        let status: BlobStatus = resp.json().await.unwrap();
        assert_eq!(
            (status.size, status.received, status.complete),
            (size, 0, false)
        );
        status.id
    }

    async fn put(&self, token: &str, id: BlobId, offset: usize, body: &[u8]) -> reqwest::Response {
        self.http
            .put(self.url(&format!("/v1/blobs/{id}?offset={offset}")))
            .bearer_auth(token)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Sends the part at `offset` of `data` and expects it stored.
    async fn part(&self, token: &str, id: BlobId, data: &[u8], offset: usize) -> BlobStatus {
        let end = (offset + PART).min(data.len());
        let resp = self.put(token, id, offset, &data[offset..end]).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        let status: BlobStatus = resp.json().await.unwrap();
        assert_eq!(status.received, end as u64);
        assert_eq!(status.complete, end == data.len());
        status
    }

    /// Uploads all of `data` (from `from`).
    async fn upload_from(&self, token: &str, id: BlobId, data: &[u8], from: usize) {
        let mut offset = from;
        while offset < data.len() {
            self.part(token, id, data, offset).await;
            offset += PART;
        }
    }

    async fn uploaded(&self, token: &str, group: GroupId, data: &[u8]) -> BlobId {
        let id = self.created(token, group, data.len() as u64).await;
        self.upload_from(token, id, data, 0).await;
        id
    }

    async fn status(&self, token: &str, id: BlobId) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/v1/blobs/{id}/status")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn status_of(&self, token: &str, id: BlobId) -> BlobStatus {
        let resp = self.status(token, id).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn get(&self, token: &str, id: BlobId, range: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .get(self.url(&format!("/v1/blobs/{id}")))
            .bearer_auth(token);
        if let Some(range) = range {
            req = req.header("range", range);
        }
        req.send().await.unwrap()
    }

    async fn downloaded(&self, token: &str, id: BlobId) -> Vec<u8> {
        let resp = self.get(token, id, None).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap().to_vec()
    }

    async fn assert_unreadable(&self, token: &str, id: BlobId) {
        let (status, body) = error_of(self.get(token, id, None).await).await;
        assert_eq!((status, body.code), (404, ErrorCode::NotFound));
    }

    async fn policy(&self, token: &str) -> FilePolicy {
        self.http
            .get(self.url("/v1/policy/files"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn rows(&self, id: BlobId) -> i64 {
        let db = open_db(self.dir.path()).await;
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM blobs WHERE id = ?")
            .bind(id.as_bytes().as_slice())
            .fetch_one(&db)
            .await
            .unwrap();
        db.close().await;
        n
    }

    fn complete_dir(&self) -> PathBuf {
        self.dir.path().join("blobs/complete")
    }

    fn complete_file(&self, id: BlobId) -> PathBuf {
        self.complete_dir()
            .join(&id.to_string()[..2])
            .join(id.to_string())
    }

    fn upload_file(&self, id: BlobId) -> PathBuf {
        self.dir.path().join("blobs/uploads").join(id.to_string())
    }
}

async fn open_db(dir: &Path) -> SqlitePool {
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(dir.join("rampart.db")))
        .await
        .unwrap()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Waits (briefly) until `path` is gone: stored objects are deleted just
/// after the transaction that deleted their rows.
async fn gone(path: &Path) -> bool {
    for _ in 0..100 {
        if !path.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn one_byte_one_part_and_several_parts_round_trip() {
    let w = world(FilesConfig::default()).await;
    for (len, seed) in [(1, 1), (PART, 2), (2 * PART + PART / 2, 3)] {
        let data = bytes(len, seed);
        let id = w.uploaded(&w.alice.token, w.g, &data).await;
        assert_eq!(w.downloaded(&w.alice.token, id).await, data, "{len} bytes");
        assert!(w.complete_file(id).exists());
        assert!(!w.upload_file(id).exists());
    }
    let _ = (
        &w.bob, &w.carol, &w.a, &w.ga, &w.h, &w.ha, &w.clock, &w.config,
    );
    w.server.stop().await;
}

#[tokio::test]
async fn downloads_resume_with_a_range() {
    let w = world(FilesConfig::default()).await;
    let data = bytes(PART + 1000, 4);
    let id = w.uploaded(&w.alice.token, w.g, &data).await;
    let size = data.len();

    let resp = w.get(&w.alice.token, id, None).await;
    assert_eq!(resp.headers()["content-length"], size.to_string().as_str());
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(resp.bytes().await.unwrap(), data);

    for start in [0, 1, PART - 1, PART, size - 1] {
        let resp = w
            .get(&w.alice.token, id, Some(&format!("bytes={start}-")))
            .await;
        assert_eq!(resp.status(), 206);
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes {start}-{}/{size}", size - 1).as_str()
        );
        assert_eq!(
            resp.headers()["content-length"],
            (size - start).to_string().as_str()
        );
        assert_eq!(resp.bytes().await.unwrap(), &data[start..]);
    }
    // A closed range is served too.
    let resp = w.get(&w.alice.token, id, Some("bytes=10-19")).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 10-19/{size}").as_str()
    );
    assert_eq!(resp.bytes().await.unwrap(), &data[10..20]);

    let resp = w
        .get(&w.alice.token, id, Some(&format!("bytes={size}-")))
        .await;
    assert_eq!(resp.status(), 416);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    for bad in ["bytes=-5", "bytes=1-2,5-6", "lines=1-", "bytes=x-"] {
        let (status, body) = error_of(w.get(&w.alice.token, id, Some(bad)).await).await;
        assert_eq!((status, body.code), (400, ErrorCode::BadRequest), "{bad}");
    }
    let _ = (
        &w.bob, &w.carol, &w.a, &w.ga, &w.h, &w.ha, &w.clock, &w.config,
    );
    w.server.stop().await;
}

#[tokio::test]
async fn an_interrupted_upload_resumes_where_the_server_says() {
    let w = world(FilesConfig::default()).await;
    let data = bytes(2 * PART + 12345, 5);
    let id = w.created(&w.alice.token, w.g, data.len() as u64).await;
    w.part(&w.alice.token, id, &data, 0).await;

    // "Interrupted": the client asks where to go on.
    let status = w.status_of(&w.alice.token, id).await;
    assert_eq!((status.received, status.complete), (PART as u64, false));

    // A retried part 0 (its answer was lost) changes nothing.
    let resp = w.put(&w.alice.token, id, 0, &data[..PART]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<BlobStatus>().await.unwrap(), status);

    // Any other offset is a conflict naming the offset to resume at.
    for offset in [2 * PART, PART + 1, 7] {
        let (code, body) = error_of(w.put(&w.alice.token, id, offset, &data[..10]).await).await;
        assert_eq!((code, body.code), (409, ErrorCode::Conflict));
        assert!(
            body.message.contains(&format!("resume at offset {PART}")),
            "{}",
            body.message
        );
    }
    // Without an offset: a bad request that says what to add.
    let resp = w
        .http
        .put(w.url(&format!("/v1/blobs/{id}")))
        .bearer_auth(&w.alice.token)
        .body(data[PART..2 * PART].to_vec())
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp).await;
    assert_eq!((code, body.code), (400, ErrorCode::BadRequest));
    assert!(body.message.contains("?offset="), "{}", body.message);

    w.upload_from(&w.alice.token, id, &data, PART).await;
    assert!(w.status_of(&w.alice.token, id).await.complete);
    // Once complete, a retried last part still answers the status.
    let resp = w.put(&w.alice.token, id, 2 * PART, &data[2 * PART..]).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.json::<BlobStatus>().await.unwrap().complete);
    assert_eq!(w.downloaded(&w.alice.token, id).await, data);
    let _ = (
        &w.bob, &w.carol, &w.a, &w.ga, &w.h, &w.ha, &w.clock, &w.config,
    );
    w.server.stop().await;
}

#[tokio::test]
async fn a_half_uploaded_blob_is_not_downloadable_and_never_in_the_complete_directory() {
    let w = world(FilesConfig::default()).await;
    let data = bytes(PART + 10, 6);
    let id = w.created(&w.alice.token, w.g, data.len() as u64).await;
    w.part(&w.alice.token, id, &data, 0).await;
    w.assert_unreadable(&w.alice.token, id).await;
    assert!(files_under(&w.complete_dir()).is_empty());
    assert_eq!(
        std::fs::metadata(w.upload_file(id)).unwrap().len(),
        PART as u64
    );
    w.part(&w.alice.token, id, &data, PART).await;
    assert_eq!(files_under(&w.complete_dir()), vec![w.complete_file(id)]);
    assert!(!w.upload_file(id).exists());
    let _ = (
        &w.bob, &w.carol, &w.a, &w.ga, &w.h, &w.ha, &w.clock, &w.config,
    );
    w.server.stop().await;
}

#[tokio::test]
async fn only_the_uploader_reads_an_unsent_blob_and_members_a_sent_one() {
    let mut w = world(FilesConfig::default()).await;
    let data = bytes(1000, 7);
    let id = w.uploaded(&w.alice.token, w.g, &data).await;

    // Unsent: Bob (a member), Carol (a member of another group) and a
    // made-up id all get the same 404.
    w.assert_unreadable(&w.bob.token, id).await;
    w.assert_unreadable(&w.carol.token, id).await;
    w.assert_unreadable(&w.alice.token, BlobId::from_random([9; 32]))
        .await;
    // Nobody else sees or touches the upload.
    for token in [&w.bob.token, &w.carol.token] {
        assert_eq!(w.status(token, id).await.status(), 404);
        assert_eq!(w.put(token, id, 0, &data).await.status(), 404);
        let resp = w
            .http
            .delete(w.url(&format!("/v1/blobs/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }
    // Without a session, nothing at all.
    let resp = w
        .http
        .get(w.url(&format!("/v1/blobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Alice shares it in a real MLS message to the group.
    let m = w.a.message(&mut w.ga, b"here is the file");
    let answer = send_once(
        &w.server,
        &w.alice.token,
        share(key(10), w.g, m, vec![id], None),
    )
    .await;
    assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
    assert_eq!(w.downloaded(&w.bob.token, id).await, data);
    assert_eq!(w.downloaded(&w.alice.token, id).await, data);
    w.assert_unreadable(&w.carol.token, id).await;

    // A sent file is deleted with its message, not by DELETE.
    let resp = w
        .http
        .delete(w.url(&format!("/v1/blobs/{id}")))
        .bearer_auth(&w.alice.token)
        .send()
        .await
        .unwrap();
    let (code, body) = error_of(resp).await;
    assert_eq!((code, body.code), (409, ErrorCode::Conflict));
    assert!(body.message.contains("recall"), "{}", body.message);

    // Resending the same message (same key) is fine; another message
    // sharing the same file is not.
    let again = w.a.message(&mut w.ga, b"here is the file");
    let answer = send_once(
        &w.server,
        &w.alice.token,
        share(key(10), w.g, again, vec![id], None),
    )
    .await;
    assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
    let other = w.a.message(&mut w.ga, b"and again");
    let answer = send_once(
        &w.server,
        &w.alice.token,
        share(key(11), w.g, other, vec![id], None),
    )
    .await;
    assert!(
        matches!(
            answer,
            ServerFrame::Rejected {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{answer:?}"
    );
    let _ = (&w.h, &w.ha, &w.clock, &w.config);
    w.server.stop().await;
}

#[tokio::test]
async fn attaching_someone_elses_or_another_groups_blob_is_refused() {
    let mut w = world(FilesConfig::default()).await;
    let bobs = w.uploaded(&w.bob.token, w.g, &bytes(100, 8)).await;
    let other_group = w.uploaded(&w.alice.token, w.h, &bytes(100, 9)).await;
    let unfinished = w.created(&w.alice.token, w.g, 100).await;
    let mine = w.uploaded(&w.alice.token, w.g, &bytes(100, 10)).await;
    let mut wb = connected(&w.server, &w.bob.token).await;

    for (n, bad) in [bobs, other_group, unfinished, BlobId::from_random([7; 32])]
        .into_iter()
        .enumerate()
    {
        let m = w.a.message(&mut w.ga, b"not mine to share");
        let k = key(20 + n as u8);
        // A good file alongside does not help: the whole message is refused.
        let answer = send_once(
            &w.server,
            &w.alice.token,
            share(k, w.g, m, vec![mine, bad], None),
        )
        .await;
        match answer {
            ServerFrame::Rejected { code, message, .. } => {
                assert_eq!(code, ErrorCode::NotFound);
                assert_eq!(
                    message,
                    "that file was not uploaded by you to this conversation, or has been deleted"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // Nothing was delivered, and nothing became readable.
    quiet(&mut wb).await;
    w.assert_unreadable(&w.bob.token, mine).await;
    w.assert_unreadable(&w.carol.token, other_group).await;

    // A proposal cannot share files.
    let proposal = w.a.proposal(&mut w.ga);
    let answer = send_once(
        &w.server,
        &w.alice.token,
        share(key(30), w.g, proposal, vec![mine], None),
    )
    .await;
    assert!(
        matches!(
            answer,
            ServerFrame::Rejected {
                code: ErrorCode::BadRequest,
                ..
            }
        ),
        "{answer:?}"
    );
    let _ = (&w.ha, &w.clock, &w.config);
    w.server.stop().await;
}

#[tokio::test]
async fn size_limit_and_quota_give_codes_and_messages_that_say_what_to_do() {
    let w = world(FilesConfig {
        max_file_bytes: 20 * MIB,
        quota_bytes: 30 * MIB,
        ..FilesConfig::default()
    })
    .await;
    let (code, body) = error_of(w.create(&w.alice.token, w.g, 21 * MIB).await).await;
    assert_eq!((code, body.code), (413, ErrorCode::TooLarge));
    assert_eq!(
        body.message,
        "files are at most 20 MiB on this server, and this one is 21 MiB"
    );
    // Just over: the exact sizes, where the rounded ones would be equal.
    let (_, body) = error_of(w.create(&w.alice.token, w.g, 20 * MIB + 1).await).await;
    assert_eq!(
        body.message,
        "files are at most 20 MiB (20971520 bytes) on this server, and this one is 20971521 bytes"
    );
    let (code, body) = error_of(w.create(&w.alice.token, w.g, 0).await).await;
    assert_eq!((code, body.code), (400, ErrorCode::BadRequest));
    // Not a member of the group.
    let (code, body) = error_of(w.create(&w.carol.token, w.g, 10).await).await;
    assert_eq!((code, body.code), (403, ErrorCode::NotMember));

    let first = w.created(&w.alice.token, w.g, 20 * MIB).await;
    let (code, body) = error_of(w.create(&w.alice.token, w.g, 15 * MIB).await).await;
    assert_eq!((code, body.code), (413, ErrorCode::QuotaExceeded));
    assert_eq!(
        body.message,
        "this file (15 MiB) does not fit in your file quota: 10 MiB of 30 MiB free. Delete \
         uploads you did not send, recall sent files you no longer need, or wait until they expire"
    );
    assert_eq!(
        w.policy(&w.alice.token).await,
        FilePolicy {
            max_file_bytes: 20 * MIB,
            quota_bytes: 30 * MIB,
            used_bytes: 20 * MIB,
        }
    );
    // Bob's quota is his own.
    w.created(&w.bob.token, w.g, 15 * MIB).await;

    // Deleting the unsent upload frees its space at once.
    let resp = w
        .http
        .delete(w.url(&format!("/v1/blobs/{first}")))
        .bearer_auth(&w.alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(w.rows(first).await, 0);
    assert!(!w.upload_file(first).exists());
    assert_eq!(w.policy(&w.alice.token).await.used_bytes, 0);
    w.created(&w.alice.token, w.g, 15 * MIB).await;

    let resp = w.http.get(w.url("/v1/policy/files")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let _ = (&w.a, &w.ga, &w.h, &w.ha, &w.clock, &w.config);
    w.server.stop().await;
}

#[tokio::test]
async fn concurrent_uploads_cannot_overshoot_the_quota() {
    let w = world(FilesConfig {
        quota_bytes: 3000,
        ..FilesConfig::default()
    })
    .await;
    let tries = (0..10).map(|_| w.create(&w.alice.token, w.g, 1000));
    let results = futures_util::future::join_all(tries).await;
    let mut created = 0;
    for resp in results {
        match resp.status().as_u16() {
            201 => created += 1,
            413 => assert_eq!(error_of(resp).await.1.code, ErrorCode::QuotaExceeded),
            other => panic!("{other}"),
        }
    }
    assert_eq!(created, 3);
    assert_eq!(w.policy(&w.alice.token).await.used_bytes, 3000);
    let _ = (
        &w.a, &w.ga, &w.h, &w.ha, &w.clock, &w.config, &w.bob, &w.carol,
    );
    w.server.stop().await;
}

#[tokio::test]
async fn unfinished_uploads_per_account_are_capped() {
    let w = world(FilesConfig::default()).await;
    for _ in 0..16 {
        w.created(&w.alice.token, w.g, 10).await;
    }
    let (code, body) = error_of(w.create(&w.alice.token, w.g, 10).await).await;
    assert_eq!((code, body.code), (413, ErrorCode::QuotaExceeded));
    assert!(
        body.message.contains("16 uploads in progress"),
        "{}",
        body.message
    );
    let _ = (
        &w.a, &w.ga, &w.h, &w.ha, &w.clock, &w.config, &w.bob, &w.carol,
    );
    w.server.stop().await;
}

#[tokio::test]
async fn a_part_longer_or_shorter_than_declared_is_refused_and_received_is_unchanged() {
    let w = world(FilesConfig::default()).await;
    let small = w.created(&w.alice.token, w.g, 10).await;
    let (code, body) = error_of(w.put(&w.alice.token, small, 0, &[1; 11]).await).await;
    assert_eq!((code, body.code), (413, ErrorCode::TooLarge));
    assert!(body.message.contains("declared size"), "{}", body.message);
    let (code, body) = error_of(w.put(&w.alice.token, small, 0, &[1; 9]).await).await;
    assert_eq!((code, body.code), (400, ErrorCode::BadRequest));
    assert_eq!(w.status_of(&w.alice.token, small).await.received, 0);
    w.part(&w.alice.token, small, &[1; 10], 0).await;

    // A part of a large file is exactly one part long.
    let data = bytes(2 * PART, 11);
    let big = w.created(&w.alice.token, w.g, data.len() as u64).await;
    let mut long = data[..PART].to_vec();
    long.push(0);
    let (code, body) = error_of(w.put(&w.alice.token, big, 0, &long).await).await;
    assert_eq!((code, body.code), (413, ErrorCode::TooLarge));
    let (code, _) = error_of(w.put(&w.alice.token, big, 0, &data[..PART - 1]).await).await;
    assert_eq!(code, 400);
    assert_eq!(w.status_of(&w.alice.token, big).await.received, 0);
    assert_eq!(std::fs::metadata(w.upload_file(big)).unwrap().len(), 0);
    w.upload_from(&w.alice.token, big, &data, 0).await;
    assert_eq!(w.downloaded(&w.alice.token, big).await, data);
    let _ = (
        &w.a, &w.ga, &w.h, &w.ha, &w.clock, &w.config, &w.bob, &w.carol,
    );
    w.server.stop().await;
}

#[tokio::test]
async fn expiry_deletes_the_row_and_the_file() {
    let mut w = world(FilesConfig::default()).await;
    let data = bytes(5000, 12);
    let timed = w.uploaded(&w.alice.token, w.g, &data).await;
    let forever = w.uploaded(&w.alice.token, w.g, &data).await;
    let m = w.a.message(&mut w.ga, b"gone in a minute");
    let answer = send_once(
        &w.server,
        &w.alice.token,
        share(key(40), w.g, m, vec![timed], Some(60)),
    )
    .await;
    assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
    let m = w.a.message(&mut w.ga, b"stays");
    let answer = send_once(
        &w.server,
        &w.alice.token,
        share(key(41), w.g, m, vec![forever], None),
    )
    .await;
    assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
    assert_eq!(w.downloaded(&w.bob.token, timed).await, data);
    assert_eq!(w.policy(&w.alice.token).await.used_bytes, 10_000);

    w.clock.advance(Duration::from_secs(61));
    // Expired: unreadable at once, before any purge.
    w.assert_unreadable(&w.bob.token, timed).await;
    w.assert_unreadable(&w.alice.token, timed).await;
    assert_eq!(w.rows(timed).await, 1);
    w.server.purger.purge_now().await.unwrap();
    assert_eq!(w.rows(timed).await, 0);
    assert!(!w.complete_file(timed).exists());
    assert_eq!(w.policy(&w.alice.token).await.used_bytes, 5000);
    // The file without a timer stays.
    assert_eq!(w.downloaded(&w.bob.token, forever).await, data);
    let _ = (&w.h, &w.ha, &w.config, &w.carol);
    w.server.stop().await;
}

#[tokio::test]
async fn a_recall_after_delivery_deletes_the_blob() {
    let mut w = world(FilesConfig::default()).await;
    let data = bytes(3000, 13);
    let id = w.uploaded(&w.alice.token, w.g, &data).await;
    let mut wb = connected(&w.server, &w.bob.token).await;
    let m = w.a.message(&mut w.ga, b"the file");
    let answer = send_once(
        &w.server,
        &w.alice.token,
        share(key(50), w.g, m, vec![id], None),
    )
    .await;
    assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
    // Delivered and acknowledged: no undelivered copy is left.
    let seq = match recv(&mut wb).await {
        Some(ServerFrame::Deliver(d)) => d.seq,
        other => panic!("{other:?}"),
    };
    send(&mut wb, &ClientFrame::Ack { up_to: seq }).await;
    let db = open_db(w.dir.path()).await;
    for _ in 0..100 {
        let queued: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM queue q JOIN messages m ON m.id = q.message_id \
             WHERE m.client_key = ?",
        )
        .bind(key(50).0.as_slice())
        .fetch_one(&db)
        .await
        .unwrap();
        if queued == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db.close().await;
    assert_eq!(w.downloaded(&w.bob.token, id).await, data);

    // Bob is neither the sender nor an admin: refused, nothing deleted.
    // (The server cannot tell who encrypted the MLS message; it goes by
    // the session.)
    let mut recall = ClientFrame::Send(SendMessage {
        request_id: 51,
        key: key(51),
        group: w.g,
        expires_in: None,
        recalls: Some(key(50)),
        attachments: vec![],
        message: w.a.message(&mut w.ga, b"recall (as bob)"),
    });
    match send_once(&w.server, &w.bob.token, recall.clone()).await {
        ServerFrame::Rejected { code, .. } => assert_eq!(code, ErrorCode::Forbidden),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.rows(id).await, 1);

    // Alice recalls within the window: the file goes.
    if let ClientFrame::Send(s) = &mut recall {
        s.request_id = 52;
        s.key = key(52);
        s.message = w.a.message(&mut w.ga, b"recall");
    }
    let answer = send_once(&w.server, &w.alice.token, recall).await;
    assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
    assert_eq!(w.rows(id).await, 0);
    assert!(
        gone(&w.complete_file(id)).await,
        "the recalled file is still on disk"
    );
    w.assert_unreadable(&w.bob.token, id).await;
    assert_eq!(w.policy(&w.alice.token).await.used_bytes, 0);
    let _ = (&w.h, &w.ha, &w.clock, &w.config, &w.carol);
    w.server.stop().await;
}

#[tokio::test]
async fn a_recall_after_the_window_keeps_the_file_but_an_admin_may_recall_it() {
    let mut w = world(FilesConfig::default()).await;
    // Alice is an admin of `g` but not of `h` (Carol is).
    let id = w.uploaded(&w.alice.token, w.h, &bytes(10, 14)).await;
    let m = w.a.message(&mut w.ha, b"file");
    let answer = send_once(
        &w.server,
        &w.alice.token,
        share(key(60), w.h, m, vec![id], None),
    )
    .await;
    assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
    w.clock.advance(Duration::from_secs(24 * 3600 + 1));
    let mut recall = SendMessage {
        request_id: 61,
        key: key(61),
        group: w.h,
        expires_in: None,
        recalls: Some(key(60)),
        attachments: vec![],
        message: w.a.message(&mut w.ha, b"recall"),
    };
    match send_once(&w.server, &w.alice.token, ClientFrame::Send(recall.clone())).await {
        ServerFrame::Rejected { code, .. } => assert_eq!(code, ErrorCode::WindowClosed),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.rows(id).await, 1);
    assert!(w.complete_file(id).exists());

    // Carol administers `h`: she may recall it at any time.
    recall.key = key(62);
    recall.message = w.a.message(&mut w.ha, b"admin recall");
    let answer = send_once(&w.server, &w.carol.token, ClientFrame::Send(recall)).await;
    assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
    assert_eq!(w.rows(id).await, 0);
    assert!(gone(&w.complete_file(id)).await);
    let _ = (&w.ga, &w.bob, &w.config, &w.g);
    w.server.stop().await;
}

#[tokio::test]
async fn orphans_are_collected_after_the_grace_period() {
    let mut w = world(FilesConfig {
        orphan_grace_secs: 3600,
        ..FilesConfig::default()
    })
    .await;
    let data = bytes(PART + 5, 15);
    let unsent = w.uploaded(&w.alice.token, w.g, &data[..100]).await;
    let half = w.created(&w.alice.token, w.g, data.len() as u64).await;
    w.part(&w.alice.token, half, &data, 0).await;
    let sent = w.uploaded(&w.alice.token, w.g, &data[..200]).await;
    let m = w.a.message(&mut w.ga, b"sent");
    let answer = send_once(
        &w.server,
        &w.alice.token,
        share(key(70), w.g, m, vec![sent], None),
    )
    .await;
    assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
    // A stored object without a row (a crash between deleting a row and
    // its file), and a file that is not a blob at all.
    let stray = BlobId::from_random([0xee; 32]);
    let stray_path = w.complete_file(stray);
    std::fs::create_dir_all(stray_path.parent().unwrap()).unwrap();
    std::fs::write(&stray_path, b"left behind").unwrap();
    let foreign = w.complete_dir().join("README");
    std::fs::write(&foreign, b"an operator's note").unwrap();

    w.clock.advance(Duration::from_secs(3500));
    w.server.purger.purge_now().await.unwrap();
    for id in [unsent, half, sent] {
        assert_eq!(w.rows(id).await, 1);
    }
    assert!(stray_path.exists());

    w.clock.advance(Duration::from_secs(200));
    w.server.purger.purge_now().await.unwrap();
    assert_eq!(w.rows(unsent).await, 0);
    assert_eq!(w.rows(half).await, 0);
    assert!(!w.complete_file(unsent).exists());
    assert!(!w.upload_file(half).exists());
    assert!(!stray_path.exists());
    assert!(foreign.exists());
    // Sent files are not orphans.
    assert_eq!(w.rows(sent).await, 1);
    assert_eq!(w.downloaded(&w.bob.token, sent).await, &data[..200]);
    assert_eq!(w.policy(&w.alice.token).await.used_bytes, 200);
    let _ = (&w.h, &w.ha, &w.config, &w.carol);
    w.server.stop().await;
}

#[tokio::test]
async fn unfinished_uploads_of_a_revoked_device_go_at_once_but_its_sent_files_stay() {
    let mut w = world(FilesConfig::default()).await;
    let phone = link_device(&w.http, &w.server, &w.alice, 0xa2).await;
    let data = bytes(PART + 1, 18);
    let unfinished = w.created(&w.alice.token, w.g, data.len() as u64).await;
    w.part(&w.alice.token, unfinished, &data, 0).await;
    let sent = w.uploaded(&w.alice.token, w.g, &data[..10]).await;
    let m = w.a.message(&mut w.ga, b"sent before the laptop was lost");
    let answer = send_once(
        &w.server,
        &w.alice.token,
        share(key(90), w.g, m, vec![sent], None),
    )
    .await;
    assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");

    let resp = w
        .http
        .post(w.url(&format!("/v1/devices/{}/revoke", w.alice.device)))
        .bearer_auth(&phone)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    // No grace period for a revoked device's unfinished uploads.
    w.server.purger.purge_now().await.unwrap();
    assert_eq!(w.rows(unfinished).await, 0);
    assert!(!w.upload_file(unfinished).exists());
    assert_eq!(w.downloaded(&w.bob.token, sent).await, &data[..10]);
    let _ = (&w.h, &w.ha, &w.clock, &w.config, &w.carol);
    w.server.stop().await;
}

#[tokio::test]
async fn a_full_disk_is_a_507_and_the_upload_continues_afterwards() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full on this system");
        return;
    }
    let w = world(FilesConfig::default()).await;
    let data = bytes(2 * PART + 3, 16);
    let id = w.created(&w.alice.token, w.g, data.len() as u64).await;
    w.part(&w.alice.token, id, &data, 0).await;

    // Every write to the upload's file now fails with ENOSPC from the kernel.
    let file = w.upload_file(id);
    let aside = file.with_extension("aside");
    std::fs::rename(&file, &aside).unwrap();
    std::os::unix::fs::symlink("/dev/full", &file).unwrap();
    let (code, body) = error_of(w.put(&w.alice.token, id, PART, &data[PART..2 * PART]).await).await;
    assert_eq!((code, body.code), (507, ErrorCode::StorageFull));
    assert!(body.message.contains("try again later"), "{}", body.message);
    let status = w.status_of(&w.alice.token, id).await;
    assert_eq!((status.received, status.complete), (PART as u64, false));
    assert!(files_under(&w.complete_dir()).is_empty());

    // Space again: the upload goes on from where it was.
    std::fs::remove_file(&file).unwrap();
    std::fs::rename(&aside, &file).unwrap();
    w.upload_from(&w.alice.token, id, &data, PART).await;
    assert_eq!(w.downloaded(&w.alice.token, id).await, data);
    let _ = (
        &w.a, &w.ga, &w.h, &w.ha, &w.clock, &w.config, &w.bob, &w.carol,
    );
    w.server.stop().await;
}

#[tokio::test]
async fn an_upload_continues_after_a_restart() {
    let w = world(FilesConfig::default()).await;
    let data = bytes(2 * PART + 77, 17);
    let id = w.created(&w.alice.token, w.g, data.len() as u64).await;
    w.part(&w.alice.token, id, &data, 0).await;
    let before = w.status_of(&w.alice.token, id).await;

    let w = w.restart().await;
    assert_eq!(w.status_of(&w.alice.token, id).await, before);
    w.upload_from(&w.alice.token, id, &data, PART).await;
    assert_eq!(w.downloaded(&w.alice.token, id).await, data);
    let _ = (&w.a, &w.ga, &w.h, &w.ha, &w.config, &w.bob, &w.carol);
    w.server.stop().await;
}

#[tokio::test]
async fn bad_s3_settings_are_refused_at_startup() {
    use rampart_server::{S3Config, Server, ServerError, StoreKind};
    let s3 = |endpoint: &str, allow_http: bool| S3Config {
        bucket: "b".into(),
        endpoint: Some(endpoint.into()),
        region: "us-east-1".into(),
        access_key_id: None,
        secret_access_key: None,
        allow_http,
    };
    for files in [
        FilesConfig {
            store: StoreKind::S3,
            s3: None,
            ..FilesConfig::default()
        },
        FilesConfig {
            store: StoreKind::S3,
            s3: Some(s3("http://127.0.0.1:1", false)),
            ..FilesConfig::default()
        },
        FilesConfig {
            store: StoreKind::Files,
            s3: Some(s3("https://s3.example", false)),
            ..FilesConfig::default()
        },
        FilesConfig {
            max_file_bytes: 0,
            ..FilesConfig::default()
        },
        FilesConfig {
            orphan_grace_secs: 1,
            ..FilesConfig::default()
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            files: files.clone(),
            ..ServerConfig::default()
        };
        match Server::open(config).await {
            Err(ServerError::Config(e)) => {
                let text = e.to_string();
                assert!(text.contains("files."), "{files:?}: {text}");
            }
            Err(e) => panic!("{files:?}: {e}"),
            Ok(_) => panic!("{files:?} was accepted"),
        }
    }
    // A store that cannot be reached stops the server at startup.
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        files: FilesConfig {
            store: StoreKind::S3,
            s3: Some(S3Config {
                access_key_id: Some("k".into()),
                secret_access_key: Some(rampart_server::config::Secret::new("s")),
                ..s3("http://127.0.0.1:1", true)
            }),
            ..FilesConfig::default()
        },
        ..ServerConfig::default()
    };
    match Server::open(config).await {
        Err(ServerError::BlobStore(text)) => assert!(text.contains("[files.s3]"), "{text}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("an unreachable S3 store was accepted"),
    }
}

/// The core flow against an S3-compatible server (moto in CI; see
/// `.ci/run`): parts, resume after a restart, downloads with a range,
/// deletion on expiry, and an unsent upload aborted after the grace period.
mod s3 {
    use super::*;
    use rampart_server::{S3Config, StoreKind};

    fn endpoint() -> Option<String> {
        let endpoint = std::env::var("RAMPART_TEST_S3_ENDPOINT").ok()?;
        Some(endpoint.trim_end_matches('/').to_owned())
    }

    /// A fresh bucket (moto accepts unsigned requests).
    async fn bucket(http: &reqwest::Client, endpoint: &str) -> String {
        let name = format!("rampart-test-{}", hex::encode(rand::random::<[u8; 6]>()));
        let resp = http.put(format!("{endpoint}/{name}")).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        name
    }

    async fn listing(http: &reqwest::Client, endpoint: &str, bucket: &str, query: &str) -> String {
        http.get(format!("{endpoint}/{bucket}?{query}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn files(endpoint: &str, bucket: &str) -> FilesConfig {
        FilesConfig {
            store: StoreKind::S3,
            orphan_grace_secs: 3600,
            s3: Some(S3Config {
                bucket: bucket.into(),
                endpoint: Some(endpoint.into()),
                region: "us-east-1".into(),
                access_key_id: Some("testing".into()),
                secret_access_key: Some(rampart_server::config::Secret::new("testing")),
                allow_http: true,
            }),
            ..FilesConfig::default()
        }
    }

    #[tokio::test]
    async fn the_core_flow_works_against_s3() {
        let Some(endpoint) = endpoint() else {
            eprintln!("skipped: set RAMPART_TEST_S3_ENDPOINT (see .ci/run)");
            return;
        };
        let http = reqwest::Client::new();
        let bucket = bucket(&http, &endpoint).await;
        let w = world(files(&endpoint, &bucket)).await;
        assert!(!w.dir.path().join("blobs").exists());

        // Three parts, the last short; interrupted after the first.
        let data = bytes(2 * PART + 4321, 21);
        let id = w.created(&w.alice.token, w.g, data.len() as u64).await;
        w.part(&w.alice.token, id, &data, 0).await;
        // Not visible while the multipart upload is open.
        w.assert_unreadable(&w.alice.token, id).await;
        assert!(
            !listing(&http, &endpoint, &bucket, "list-type=2")
                .await
                .contains(&id.to_string())
        );

        // The server restarts; the upload goes on from the recorded parts.
        let mut w = w.restart().await;
        assert_eq!(w.status_of(&w.alice.token, id).await.received, PART as u64);
        let resp = w.put(&w.alice.token, id, 0, &data[..PART]).await;
        assert_eq!(resp.status(), 200);
        let (code, _) =
            error_of(w.put(&w.alice.token, id, 2 * PART, &data[2 * PART..]).await).await;
        assert_eq!(code, 409);
        w.upload_from(&w.alice.token, id, &data, PART).await;
        assert!(
            listing(&http, &endpoint, &bucket, "list-type=2")
                .await
                .contains(&id.to_string())
        );

        assert_eq!(w.downloaded(&w.alice.token, id).await, data);
        let start = PART + 17;
        let resp = w
            .get(&w.alice.token, id, Some(&format!("bytes={start}-")))
            .await;
        assert_eq!(resp.status(), 206);
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes {start}-{}/{}", data.len() - 1, data.len()).as_str()
        );
        assert_eq!(resp.bytes().await.unwrap(), &data[start..]);

        // Shared with a timer; Bob reads it; it expires and is deleted.
        let m = w.a.message(&mut w.ga, b"s3 file");
        let answer = send_once(
            &w.server,
            &w.alice.token,
            share(key(80), w.g, m, vec![id], Some(60)),
        )
        .await;
        assert!(matches!(answer, ServerFrame::Accepted { .. }), "{answer:?}");
        assert_eq!(w.downloaded(&w.bob.token, id).await, data);

        // An unsent upload in progress, for the collector.
        let unsent = w.created(&w.alice.token, w.g, 2 * PART as u64).await;
        w.part(&w.alice.token, unsent, &bytes(2 * PART, 22), 0)
            .await;
        assert!(
            listing(&http, &endpoint, &bucket, "uploads")
                .await
                .contains(&unsent.to_string())
        );

        w.clock.advance(Duration::from_secs(61));
        w.server.purger.purge_now().await.unwrap();
        assert_eq!(w.rows(id).await, 0);
        assert!(
            !listing(&http, &endpoint, &bucket, "list-type=2")
                .await
                .contains(&id.to_string())
        );
        w.assert_unreadable(&w.bob.token, id).await;

        w.clock.advance(Duration::from_secs(3600));
        w.server.purger.purge_now().await.unwrap();
        assert_eq!(w.rows(unsent).await, 0);
        assert!(
            !listing(&http, &endpoint, &bucket, "uploads")
                .await
                .contains(&unsent.to_string())
        );
        let _ = (&w.h, &w.ha, &w.carol);
        w.server.stop().await;
    }
}
