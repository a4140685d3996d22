//! Sharing files: sealing and uploading a file, downloading and opening one.
//!
//! Both directions stream in constant memory, whatever the file's size: a
//! blocking thread reads and seals (or opens and writes) while the async
//! side talks to the server, with a bounded channel between them, so the
//! CPU work and the network overlap.
//!
//! Both resume. An upload is remembered in the profile (`uploads`) with its
//! blob id and key; sending the same file to the same conversation again
//! asks the server how far it got and sends only the parts after that (the
//! parts before are sealed again locally, which is deterministic, to
//! recompute the hash). A download keeps the ciphertext received so far in
//! `downloads/<blob>.part` in the profile directory and asks for the rest
//! with a `Range` request.
//!
//! A download is written to a hidden temporary file beside its destination
//! and renamed into place only after every chunk's tag and the blob's hash
//! verified. If anything fails the temporary file is deleted, so no
//! unverified plaintext is left on disk.

use crate::client::{Client, Target};
use crate::error::ClientError;
use bytes::Bytes;
use rampart_core::StoredMessage;
use rampart_core::attachment::{
    self, Attachment, AttachmentError, FileKey, Opener, Sealer, safe_file_name,
};
use rampart_core::content::Body;
use rampart_core::guard::{Guard, TextCheck, Warning};
use rampart_policy::file::{FileAction, FileFacts};
use rampart_proto::api::{BlobStatus, NewBlob};
use rampart_proto::limits::{BLOB_PART_BYTES, MAX_TEXT_LEN};
use rampart_proto::{BlobId, ErrorCode};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, oneshot};

/// Bytes read from disk at a time.
const READ_BYTES: usize = 1024 * 1024;
/// The first bytes of a file that the file rules look at (magic numbers,
/// the names inside a ZIP's first entries, EICAR).
const HEAD_BYTES: usize = 64 * 1024;
/// How much of a text file is scanned like a message before it is sent.
const MAX_SCANNED_TEXT: usize = 16 * 1024 * 1024;
/// Received pieces buffered between the network and the opening thread.
const DOWNLOAD_QUEUE: usize = 64;
const DOWNLOADS_DIR: &str = "downloads";

/// Told how a transfer advances (the CLI draws a progress bar).
pub trait Progress: Send {
    /// A transfer of `total` bytes starts; `done` of them were transferred
    /// by an earlier, interrupted attempt.
    fn start(&mut self, total: u64, done: u64);
    /// `bytes` more were transferred.
    fn advance(&mut self, bytes: u64);
}

/// No progress reporting.
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _total: u64, _done: u64) {}
    fn advance(&mut self, _bytes: u64) {}
}

/// A finished download.
#[derive(Clone, Debug, Serialize)]
pub struct Downloaded {
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    pub media_type: String,
    /// Blob bytes an earlier, interrupted attempt had already fetched.
    pub resumed_from: u64,
    /// What the organisation's file rules say about what it really is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

/// One part of a blob ready to upload, or the blob's hash at the end.
enum Piece {
    Part { offset: u64, bytes: Vec<u8> },
    Done([u8; 32]),
}

impl Client {
    /// Seals `path` with a fresh key, uploads it (resuming an interrupted
    /// upload of the same file to the same conversation) and sends the
    /// message that shares it. `expire_secs` as for a text.
    pub async fn send_file(
        &mut self,
        target: &Target,
        path: &Path,
        caption: &str,
        expire_secs: Option<u32>,
        progress: &mut dyn Progress,
    ) -> Result<StoredMessage, ClientError> {
        self.send_file_with(target, path, caption, expire_secs, false, progress)
            .await
            .map(|(sent, _)| sent)
    }

    /// [`Client::send_file`] once the organisation's policy has checked the
    /// file before anything is uploaded: its real type, name and hash by the
    /// file rules, a text file's content and the caption like a message.
    /// Blocked, or warned about without `confirmed`, it is refused as a text
    /// would be ([`Client::send_text_with`]).
    pub async fn send_file_with(
        &mut self,
        target: &Target,
        path: &Path,
        caption: &str,
        expire_secs: Option<u32>,
        confirmed: bool,
        progress: &mut dyn Progress,
    ) -> Result<(StoredMessage, TextCheck), ClientError> {
        if caption.len() > MAX_TEXT_LEN {
            return Err(ClientError::Usage(format!(
                "a caption is at most {MAX_TEXT_LEN} bytes"
            )));
        }
        let path =
            std::fs::canonicalize(path).map_err(|e| ClientError::io("opening the file", e))?;
        let meta = std::fs::metadata(&path).map_err(|e| ClientError::io("opening the file", e))?;
        if !meta.is_file() {
            return Err(ClientError::Usage(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let size = meta.len();
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        let blob_len = attachment::blob_len(size).ok_or(AttachmentError::TooLarge(size))?;

        self.ensure_current_policy().await?;
        let check = {
            let (reading, want_hash) = (path.clone(), self.guard.wants_file_hash());
            let inspected = tokio::task::spawn_blocking(move || inspect(&reading, want_hash))
                .await
                .map_err(|_| {
                    ClientError::Protocol("reading the file stopped unexpectedly".into())
                })??;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let facts = FileFacts {
                name: &name,
                head: &inspected.head,
                size,
                sha256: inspected.sha256,
            };
            self.guard
                .check_file(&facts, inspected.text.as_deref(), caption)
        };
        let check = self
            .judge(self.target_group(target)?, check, confirmed)
            .await?;
        let caption = check.text_to_send(caption).into_owned();

        let group = self.conversation_for(target).await?;
        let path_key = path.to_string_lossy().into_owned();

        let (planned, received) = match self
            .resumable(&group, &path_key, size, modified, blob_len)
            .await?
        {
            Some(found) => found,
            None => {
                let status: BlobStatus = self
                    .http
                    .post(
                        "/v1/blobs",
                        &NewBlob {
                            group,
                            size: blob_len,
                        },
                    )
                    .await?;
                let name = safe_file_name(
                    &path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
                let planned = Attachment {
                    blob: status.id,
                    key: FileKey::generate(),
                    sha256: [0; 32],
                    size,
                    media_type: attachment::media_type_for(&name).to_owned(),
                    name,
                    caption: String::new(),
                };
                self.store.app().put_upload(
                    &group,
                    &path_key,
                    size,
                    modified,
                    &planned,
                    self.now(),
                )?;
                (planned, 0)
            }
        };

        progress.start(blob_len, received);
        let sha256 = upload(self, &path, &planned, received, progress).await?;
        let shared = Attachment {
            sha256,
            caption,
            ..planned
        };
        let now = self.now();
        let engine = &self.engine;
        let out = self.store.transact(|p, app| {
            Ok(engine.send(
                p,
                app,
                &group,
                Body::File(Box::new(shared)),
                now,
                expire_secs,
            )?)
        })?;
        let stored = self.deliver(out).await?;
        self.store.app().delete_upload(&group, &path_key)?;
        self.report_dlp(group, &check).await;
        Ok((stored, check))
    }

    /// The earlier upload of this file to this conversation and how much of
    /// it the server holds, if the server still has it.
    async fn resumable(
        &mut self,
        group: &rampart_proto::GroupId,
        path_key: &str,
        size: u64,
        modified: i64,
        blob_len: u64,
    ) -> Result<Option<(Attachment, u64)>, ClientError> {
        let Some(planned) = self.store.app().upload(group, path_key, size, modified)? else {
            return Ok(None);
        };
        match self
            .http
            .get::<BlobStatus>(&format!("/v1/blobs/{}/status", planned.blob))
            .await
        {
            Ok(status) if status.size == blob_len => Ok(Some((planned, status.received))),
            // Collected as an orphan, or not ours to resume: start again.
            Ok(_)
            | Err(ClientError::Server {
                code: ErrorCode::NotFound,
                ..
            }) => {
                self.store.app().delete_upload(group, path_key)?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Downloads the file shared by message `id_prefix` (as `inbox --ids`
    /// shows it), verifies it and writes it to `out`: a file path, a
    /// directory, or (`None`) the current directory under the sender's file
    /// name. An existing file is never overwritten.
    pub async fn download(
        &mut self,
        id_prefix: &str,
        out: Option<&Path>,
        progress: &mut dyn Progress,
    ) -> Result<Downloaded, ClientError> {
        let message =
            self.store.app().find_message(id_prefix)?.ok_or_else(|| {
                ClientError::Usage(format!("no message {id_prefix} on this device"))
            })?;
        let shared = match message.body {
            Body::File(a) if !message.recalled => *a,
            _ if message.recalled => {
                return Err(ClientError::Usage(format!(
                    "message {id_prefix} was deleted by its sender"
                )));
            }
            _ => {
                return Err(ClientError::Usage(format!(
                    "message {id_prefix} has no file attached"
                )));
            }
        };
        let dest = destination(out, &shared.name)?;
        let parts_dir = self.dir.join(DOWNLOADS_DIR);
        std::fs::create_dir_all(&parts_dir)
            .map_err(|e| ClientError::io("creating the downloads folder", e))?;
        let part = parts_dir.join(format!("{}.part", shared.blob));
        let blob_len =
            attachment::blob_len(shared.size).ok_or(AttachmentError::TooLarge(shared.size))?;

        let (bytes_tx, bytes_rx) = mpsc::channel::<Bytes>(DOWNLOAD_QUEUE);
        let (have_tx, have_rx) = oneshot::channel();
        let job = OpenJob {
            shared: shared.clone(),
            part: part.clone(),
            dest: dest.clone(),
            guard: self.guard.clone(),
        };
        let worker = tokio::task::spawn_blocking(move || job.run(have_tx, bytes_rx));
        // The worker says how much an earlier attempt left (or fails first).
        let Ok(have) = have_rx.await else {
            return Err(join(worker.await).err().unwrap_or(ClientError::Protocol(
                "the download stopped unexpectedly".into(),
            )));
        };
        progress.start(blob_len, have);
        let fetched = fetch(self, &shared.blob, have, blob_len, bytes_tx, progress).await;
        let opened = join(worker.await);
        // A network failure explains a truncated blob: report it, keep the part.
        match (fetched, opened) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => {
                if let ClientError::Refused { rule, .. } = &e {
                    self.report_rules(
                        message.group,
                        &[(rule.clone(), rampart_policy::Action::Block)],
                    )
                    .await;
                }
                Err(e)
            }
            (Ok(()), Ok((path, warnings))) => Ok(Downloaded {
                path,
                name: shared.name,
                size: shared.size,
                media_type: shared.media_type,
                resumed_from: have,
                warnings,
            }),
        }
    }

    /// Deletes partial downloads whose message is gone (expired or recalled).
    pub(crate) fn sweep_downloads(&self) -> Result<(), ClientError> {
        let Ok(entries) = std::fs::read_dir(self.dir.join(DOWNLOADS_DIR)) else {
            return Ok(());
        };
        let live = self.store.app().referenced_blobs()?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let blob = name
                .to_str()
                .and_then(|n| n.strip_suffix(".part"))
                .and_then(|n| BlobId::parse(n).ok());
            if blob.is_none_or(|b| !live.contains(&b)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// Seals the file on a blocking thread and uploads its parts from
/// `received` on; returns the blob's hash.
async fn upload(
    client: &Client,
    path: &Path,
    planned: &Attachment,
    received: u64,
    progress: &mut dyn Progress,
) -> Result<[u8; 32], ClientError> {
    // Two parts in flight between the threads: one sealed while one uploads.
    let (tx, mut rx) = mpsc::channel::<Result<Piece, ClientError>>(2);
    let (path, key, size) = (path.to_owned(), planned.key.clone(), planned.size);
    let sealer = tokio::task::spawn_blocking(move || {
        if let Err(e) = seal_file(&path, &key, size, received, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let mut hash = None;
    while let Some(piece) = rx.recv().await {
        match piece? {
            Piece::Part { offset, bytes } => {
                let n = bytes.len() as u64;
                client
                    .http
                    .put_blob_part(&planned.blob, offset, bytes)
                    .await?;
                progress.advance(n);
            }
            Piece::Done(h) => hash = Some(h),
        }
    }
    let _ = sealer.await;
    hash.ok_or_else(|| ClientError::Protocol("sealing the file stopped unexpectedly".into()))
}

/// Reads and seals the file, handing over every part from offset `skip` on
/// (earlier parts are only hashed), then the hash. Stops quietly when the
/// receiver is gone (the upload failed or was abandoned).
fn seal_file(
    path: &Path,
    key: &FileKey,
    size: u64,
    skip: u64,
    tx: &mpsc::Sender<Result<Piece, ClientError>>,
) -> Result<(), ClientError> {
    let mut file = File::open(path).map_err(|e| ClientError::io("reading the file", e))?;
    let mut sealer = Sealer::new(key, size)?;
    let mut buf = vec![0u8; READ_BYTES];
    let mut sealed =
        Vec::with_capacity(BLOB_PART_BYTES + READ_BYTES + attachment::SEALED_CHUNK_BYTES);
    let mut offset = 0u64;
    // Hands over every whole part in `sealed`; false once nobody listens.
    let flush = |sealed: &mut Vec<u8>, offset: &mut u64, all: bool| -> bool {
        while sealed.len() >= BLOB_PART_BYTES || (all && !sealed.is_empty()) {
            let rest = sealed.split_off(sealed.len().min(BLOB_PART_BYTES));
            let bytes = std::mem::replace(sealed, rest);
            let len = bytes.len() as u64;
            if *offset >= skip
                && tx
                    .blocking_send(Ok(Piece::Part {
                        offset: *offset,
                        bytes,
                    }))
                    .is_err()
            {
                return false;
            }
            *offset += len;
        }
        true
    };
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ClientError::io("reading the file", e))?;
        if n == 0 {
            break;
        }
        sealer.update(&buf[..n], &mut sealed)?;
        if !flush(&mut sealed, &mut offset, false) {
            return Ok(());
        }
    }
    while sealer.padding_left() > 0 {
        sealer.pad(READ_BYTES as u64, &mut sealed)?;
        if !flush(&mut sealed, &mut offset, false) {
            return Ok(());
        }
    }
    let hash = sealer.finish(&mut sealed)?;
    if !flush(&mut sealed, &mut offset, true) {
        return Ok(());
    }
    let _ = tx.blocking_send(Ok(Piece::Done(hash)));
    Ok(())
}

/// Streams the blob from `from` into `tx`, checking the server sends
/// exactly the rest of a blob of `blob_len` bytes.
async fn fetch(
    client: &Client,
    blob: &BlobId,
    from: u64,
    blob_len: u64,
    tx: mpsc::Sender<Bytes>,
    progress: &mut dyn Progress,
) -> Result<(), ClientError> {
    if from >= blob_len {
        return Ok(());
    }
    let mut resp = client.http.get_blob(blob, from).await?;
    if resp.content_length().is_some_and(|n| n != blob_len - from) {
        return Err(AttachmentError::Truncated {
            got: from + resp.content_length().unwrap_or(0),
            expected: blob_len,
        }
        .into());
    }
    let mut got = from;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => {
                return Err(ClientError::CutOff {
                    got,
                    expected: blob_len,
                });
            }
        };
        let n = chunk.len() as u64;
        got += n;
        if tx.send(chunk).await.is_err() {
            // The opening thread stopped; its error is the one to report.
            break;
        }
        progress.advance(n);
    }
    Ok(())
}

/// The opening side of a download, on a blocking thread.
struct OpenJob {
    shared: Attachment,
    part: PathBuf,
    dest: PathBuf,
    /// The file rules, applied to what the file really is before it is saved.
    guard: Guard,
}

impl OpenJob {
    fn run(
        self,
        have_tx: oneshot::Sender<u64>,
        mut rx: mpsc::Receiver<Bytes>,
    ) -> Result<(PathBuf, Vec<Warning>), ClientError> {
        let io = |what| move |e| ClientError::io(what, e);
        let mut part = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.part)
            .map_err(io("opening the partial download"))?;
        // One attempt at a time per blob: an abandoned attempt may still be
        // draining what it received.
        part.lock().map_err(io("locking the partial download"))?;
        let mut opener = Opener::new(&self.shared.key, self.shared.size)?;
        let mut have = part
            .metadata()
            .map_err(io("reading the partial download"))?
            .len();
        if have > opener.blob_len() {
            part.set_len(0)
                .map_err(io("resetting the partial download"))?;
            have = 0;
        }
        let mut plain = TempFile::beside(&self.dest)?;
        let mut seen = Seen::new(self.guard.wants_file_hash());
        let result = (|| {
            let mut out = Vec::with_capacity(READ_BYTES + attachment::SEALED_CHUNK_BYTES);
            // What an earlier attempt fetched, verified again.
            part.rewind().map_err(io("reading the partial download"))?;
            let mut buf = vec![0u8; READ_BYTES];
            let mut left = have;
            while left > 0 {
                let n = part
                    .read(&mut buf)
                    .map_err(io("reading the partial download"))?;
                if n == 0 {
                    break;
                }
                let n = n.min(left as usize);
                left -= n as u64;
                opener.update(&buf[..n], &mut out)?;
                seen.update(&out);
                plain.write(&out)?;
                out.clear();
            }
            let _ = have_tx.send(have);
            while let Some(bytes) = rx.blocking_recv() {
                part.write_all(&bytes)
                    .map_err(io("saving the partial download"))?;
                opener.update(&bytes, &mut out)?;
                seen.update(&out);
                plain.write(&out)?;
                out.clear();
            }
            opener.finish(&self.shared.sha256)?;
            Ok::<_, ClientError>(())
        })();
        match result {
            Ok(()) => {
                let _ = std::fs::remove_file(&self.part);
                // What it really is decides whether it is saved at all.
                let (head, sha256) = seen.finish();
                let facts = FileFacts {
                    name: &self.shared.name,
                    head: &head,
                    size: self.shared.size,
                    sha256,
                };
                let warnings = self.guard.check_received_file(&facts);
                if let Some(w) = warnings.iter().find(|w| w.action == FileAction::Block) {
                    // `plain` is deleted when dropped.
                    return Err(ClientError::Refused {
                        rule: w.risk.id().to_owned(),
                        message: format!(
                            "not saved: {} (rule {}); your organisation does not allow this",
                            w.explanation,
                            w.risk.id()
                        ),
                    });
                }
                let path = plain.persist(&self.dest)?;
                Ok((path, warnings.into_iter().map(Warning::from).collect()))
            }
            Err(e) => {
                // Damaged data is not worth resuming from; a cut-off transfer is.
                if !matches!(e, ClientError::File(AttachmentError::Truncated { .. })) {
                    let _ = std::fs::remove_file(&self.part);
                }
                Err(e)
            }
        }
    }
}

/// What the file rules need of a received file, gathered as it is written:
/// its first bytes and, when the policy blocklists hashes, its SHA-256.
struct Seen {
    head: Vec<u8>,
    hasher: Option<Sha256>,
}

impl Seen {
    fn new(hash: bool) -> Self {
        Seen {
            head: Vec::with_capacity(HEAD_BYTES),
            hasher: hash.then(Sha256::new),
        }
    }

    fn update(&mut self, plain: &[u8]) {
        let room = HEAD_BYTES - self.head.len();
        self.head.extend_from_slice(&plain[..plain.len().min(room)]);
        if let Some(h) = &mut self.hasher {
            h.update(plain);
        }
    }

    fn finish(self) -> (Vec<u8>, Option<[u8; 32]>) {
        (self.head, self.hasher.map(|h| h.finalize().into()))
    }
}

/// What the policy needs of a file about to be sent.
struct Inspected {
    head: Vec<u8>,
    sha256: Option<[u8; 32]>,
    /// The content, if it is text (the first [`MAX_SCANNED_TEXT`] bytes).
    text: Option<String>,
}

/// Reads as much of the file as the policy needs: the head always, the
/// text of a text file, and the whole file only for a hash blocklist.
fn inspect(path: &Path, want_hash: bool) -> Result<Inspected, ClientError> {
    let io = |e| ClientError::io("reading the file", e);
    let mut file = File::open(path).map_err(io)?;
    let mut buf = vec![0u8; READ_BYTES];
    let mut seen = Seen::new(want_hash);
    let mut text: Option<Vec<u8>> = None;
    let mut first = true;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        let bytes = &buf[..n];
        seen.update(bytes);
        if first {
            first = false;
            if looks_like_text(&seen.head) {
                text = Some(Vec::new());
            }
        }
        if let Some(t) = &mut text {
            let room = MAX_SCANNED_TEXT - t.len();
            t.extend_from_slice(&bytes[..n.min(room)]);
        }
        let text_full = text.as_ref().is_none_or(|t| t.len() >= MAX_SCANNED_TEXT);
        if text_full && seen.head.len() >= HEAD_BYTES && !want_hash {
            break;
        }
    }
    let (head, sha256) = seen.finish();
    Ok(Inspected {
        head,
        sha256,
        text: text.map(|t| String::from_utf8_lossy(&t).into_owned()),
    })
}

/// UTF-8 without NUL bytes and of no binary type the rules know.
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) || rampart_policy::file::sniff(head).is_some() {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // Cut inside a character at the end of the head: still text.
        Err(e) => e.error_len().is_none(),
    }
}

/// A hidden file beside the destination, deleted when dropped unless persisted.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    fn beside(dest: &Path) -> Result<Self, ClientError> {
        let dir = dest
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Short enough that the prefix and suffix keep it under NAME_MAX.
        let name: String = dest
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(48).collect())
            .unwrap_or_default();
        let mut random = [0u8; 6];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        let path = dir.join(format!(".{name}.{}.rampart-partial", hex::encode(random)));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&path)
            .map_err(|e| ClientError::io("creating the downloaded file", e))?;
        Ok(Self {
            path,
            file: Some(file),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        if let Some(f) = &mut self.file {
            f.write_all(bytes)
                .map_err(|e| ClientError::io("writing the downloaded file", e))?;
        }
        Ok(())
    }

    /// Flushes to disk and moves the file into place, never over an
    /// existing file.
    fn persist(mut self, dest: &Path) -> Result<PathBuf, ClientError> {
        let io = |e| ClientError::io("saving the downloaded file", e);
        if let Some(f) = self.file.take() {
            f.sync_all().map_err(io)?;
        }
        // A hard link fails if `dest` exists, unlike a rename.
        std::fs::hard_link(&self.path, dest).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                ClientError::Usage(format!(
                    "{} already exists; choose another --out",
                    dest.display()
                ))
            } else {
                io(e)
            }
        })?;
        Ok(dest.to_path_buf())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Where a download goes: `out` if it is a new path, `out/name` if it is a
/// directory, else `name` in the current directory; " (1)", " (2)"… are
/// added rather than overwrite a file the user did not name.
fn destination(out: Option<&Path>, name: &str) -> Result<PathBuf, ClientError> {
    let dir = match out {
        Some(p) if p.is_dir() => p.to_path_buf(),
        Some(p) if p.exists() => {
            return Err(ClientError::Usage(format!(
                "{} already exists; remove it or choose another --out",
                p.display()
            )));
        }
        Some(p) => return Ok(p.to_path_buf()),
        None => PathBuf::from("."),
    };
    let candidate = dir.join(name);
    if !candidate.exists() {
        return Ok(candidate);
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    (1..1000)
        .map(|i| dir.join(format!("{stem} ({i}){ext}")))
        .find(|p| !p.exists())
        .ok_or_else(|| ClientError::Usage(format!("too many files named {name}; pass --out")))
}

fn join<T>(r: Result<Result<T, ClientError>, tokio::task::JoinError>) -> Result<T, ClientError> {
    r.map_err(|_| ClientError::Protocol("a file transfer thread failed".into()))?
}
