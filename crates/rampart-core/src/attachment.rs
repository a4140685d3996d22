//! File attachments: sealed on the sending device, opened on the receiving
//! one; the server stores an opaque blob.
//!
//! Each file gets a fresh random AES-256-GCM key and a 7-byte nonce prefix.
//! Its bytes, followed by zero padding up to the Padmé length (so the blob's
//! length says little about the file's), are cut into chunks of
//! [`ATTACHMENT_CHUNK_BYTES`] and sealed one by one in the STREAM
//! construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015): chunk `i` is
//! sealed under the nonce `prefix ‖ i (u32, big-endian) ‖ last`, where
//! `last` is 1 only for the final chunk. Reordered chunks fail (the counter
//! is in the nonce), a truncated blob fails (its new final chunk was sealed
//! with `last` = 0), and chunks of another file fail (another key).
//!
//! The key, the prefix, the file's name, type and size and the SHA-256 of
//! the whole blob travel only inside the encrypted MLS message
//! ([`Attachment`]). A receiver checks every chunk's tag and, at the end,
//! the hash; until both pass, nothing it wrote may be shown as the file.
//!
//! [`Sealer`] and [`Opener`] are incremental and do no I/O: feed them any
//! slices, they append whole chunks to the caller's buffer, so memory stays
//! at about one chunk whatever the file's size.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use rampart_proto::BlobId;
use rampart_proto::codec::{DecodeError, Reader, Writer};
use rampart_proto::limits::{
    ATTACHMENT_CHUNK_BYTES, MAX_FILE_NAME_LEN, MAX_MEDIA_TYPE_LEN, MAX_TEXT_LEN,
};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Bytes of authentication tag after each chunk.
pub const TAG_BYTES: usize = 16;
/// Bytes of one sealed full chunk.
pub const SEALED_CHUNK_BYTES: usize = ATTACHMENT_CHUNK_BYTES + TAG_BYTES;
const CHUNK: u64 = ATTACHMENT_CHUNK_BYTES as u64;
const NONCE_PREFIX_BYTES: usize = 7;

/// Why a file could not be sealed or opened. Never carries file content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentError {
    #[error("the file is too large to send ({0} bytes)")]
    TooLarge(u64),
    #[error("the file changed while it was being read; send it again")]
    FileChanged,
    #[error("the download is damaged: chunk {0} does not verify (tampered with or corrupted)")]
    BadChunk(u64),
    #[error("the download is damaged: it ends early ({got} of {expected} bytes)")]
    Truncated { got: u64, expected: u64 },
    #[error("the download is damaged: it is longer than the file it claims to be")]
    TooLong,
    #[error("the download is damaged: its hash does not match the one the sender sent")]
    HashMismatch,
    #[error("the download is damaged: its padding is not zero")]
    BadPadding,
}

/// The secret that opens one file: an AES-256 key and the nonce prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct FileKey {
    key: Zeroizing<[u8; 32]>,
    nonce_prefix: [u8; NONCE_PREFIX_BYTES],
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(<redacted>)")
    }
}

impl FileKey {
    /// A fresh random key and prefix from the operating system.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_BYTES];
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        rand::rngs::OsRng.fill_bytes(&mut nonce_prefix);
        Self { key, nonce_prefix }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.as_ref().into())
    }

    fn write(&self, w: &mut Writer) {
        w.raw(self.key.as_ref());
        w.raw(&self.nonce_prefix);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            key: Zeroizing::new(r.array("file key")?),
            nonce_prefix: r.array("nonce prefix")?,
        })
    }
}

/// The padded length of a file of `len` bytes (Padmé, Nikitin et al. 2019):
/// at most 12% larger, and a length reveals O(log log len) bits.
pub fn padded_len(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = u64::from(63 - len.leading_zeros()); // floor(log2 len)
    let s = u64::from(64 - e.leading_zeros()); // floor(log2 e) + 1
    let mask = (1u64 << (e - s)) - 1;
    len.checked_add(mask).map_or(len, |l| l & !mask)
}

/// Chunks a file of `len` bytes is sealed in (at least one, so even an empty
/// file has a final chunk that proves nothing was cut off).
fn chunk_count(len: u64) -> u64 {
    padded_len(len).div_ceil(CHUNK).max(1)
}

/// The blob length of a file of `len` bytes: padded plaintext plus one tag
/// per chunk. `None` if it is too large to seal (over 2^32 chunks).
pub fn blob_len(len: u64) -> Option<u64> {
    let chunks = chunk_count(len);
    if chunks > u64::from(u32::MAX) {
        return None;
    }
    padded_len(len).checked_add(chunks * TAG_BYTES as u64)
}

fn nonce(
    prefix: &[u8; NONCE_PREFIX_BYTES],
    counter: u64,
    last: bool,
) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[..NONCE_PREFIX_BYTES].copy_from_slice(prefix);
    // Callers keep counter < 2^32 (checked by `blob_len`).
    n[NONCE_PREFIX_BYTES..11].copy_from_slice(&(counter as u32).to_be_bytes());
    n[11] = u8::from(last);
    n.into()
}

/// Seals a file of a length known up front, chunk by chunk.
pub struct Sealer {
    cipher: Aes256Gcm,
    prefix: [u8; NONCE_PREFIX_BYTES],
    chunks: u64,
    /// Index of the chunk being filled.
    next: u64,
    /// File bytes still expected.
    file_left: u64,
    /// Zero bytes to append after the file.
    padding: u64,
    /// Plaintext of the chunk being filled.
    pending: Zeroizing<Vec<u8>>,
    hasher: Sha256,
    blob_len: u64,
}

impl Sealer {
    pub fn new(key: &FileKey, file_len: u64) -> Result<Self, AttachmentError> {
        let blob_len = blob_len(file_len).ok_or(AttachmentError::TooLarge(file_len))?;
        Ok(Self {
            cipher: key.cipher(),
            prefix: key.nonce_prefix,
            chunks: chunk_count(file_len),
            next: 0,
            file_left: file_len,
            padding: padded_len(file_len) - file_len,
            pending: Zeroizing::new(Vec::with_capacity(ATTACHMENT_CHUNK_BYTES)),
            hasher: Sha256::new(),
            blob_len,
        })
    }

    /// The exact length of the blob this produces.
    pub fn blob_len(&self) -> u64 {
        self.blob_len
    }

    /// Feeds file bytes, appending every chunk they complete to `out`.
    pub fn update(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        if data.len() as u64 > self.file_left {
            return Err(AttachmentError::FileChanged);
        }
        self.file_left -= data.len() as u64;
        while !data.is_empty() {
            let take = self.room().min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.seal_if_full(out);
        }
        Ok(())
    }

    /// Zero bytes still to come after the file; see [`Sealer::pad`].
    pub fn padding_left(&self) -> u64 {
        self.padding
    }

    /// Appends up to `max` bytes of the padding (once the whole file was
    /// fed), so a caller can flush between pieces of a large padding.
    pub fn pad(&mut self, max: u64, out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        if self.file_left != 0 {
            return Err(AttachmentError::FileChanged);
        }
        let mut left = max.min(self.padding);
        self.padding -= left;
        while left > 0 {
            let take = (self.room() as u64).min(left);
            let len = self.pending.len() + take as usize;
            self.pending.resize(len, 0);
            left -= take;
            self.seal_if_full(out);
        }
        Ok(())
    }

    /// Bytes the chunk being filled still takes.
    fn room(&self) -> usize {
        ATTACHMENT_CHUNK_BYTES - self.pending.len()
    }

    /// Seals the chunk being filled once it is full, unless it is the final
    /// one (sealed by [`Sealer::finish`] with the last flag).
    fn seal_if_full(&mut self, out: &mut Vec<u8>) {
        if self.pending.len() == ATTACHMENT_CHUNK_BYTES && self.next + 1 < self.chunks {
            self.seal_pending(out, false);
        }
    }

    /// Appends the rest of the padding and the final chunk; returns the
    /// blob's SHA-256. Fails if the file was shorter than announced.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<[u8; 32], AttachmentError> {
        self.pad(self.padding, out)?;
        self.seal_pending(out, true);
        debug_assert_eq!(self.next, self.chunks);
        Ok(self.hasher.finalize().into())
    }

    fn seal_pending(&mut self, out: &mut Vec<u8>, last: bool) {
        let start = out.len();
        out.extend_from_slice(&self.pending);
        self.pending.clear();
        let nonce = nonce(&self.prefix, self.next, last);
        // Sealing a buffer of at most one chunk cannot fail (the limit is 64 GiB).
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce, b"", &mut out[start..])
            .unwrap_or_default();
        out.extend_from_slice(&tag);
        self.hasher.update(&out[start..]);
        self.next += 1;
    }
}

/// Opens a blob chunk by chunk, checking every tag, the padding and finally
/// the hash. Output is plaintext that has passed its chunk's tag; callers
/// must still treat it as unconfirmed until [`Opener::finish`] succeeds.
pub struct Opener {
    cipher: Aes256Gcm,
    prefix: [u8; NONCE_PREFIX_BYTES],
    chunks: u64,
    next: u64,
    /// File bytes not yet emitted; what follows them is padding.
    file_left: u64,
    blob_len: u64,
    seen: u64,
    /// Ciphertext of the chunk being filled.
    pending: Vec<u8>,
    hasher: Sha256,
}

impl Opener {
    pub fn new(key: &FileKey, file_len: u64) -> Result<Self, AttachmentError> {
        let blob_len = blob_len(file_len).ok_or(AttachmentError::TooLarge(file_len))?;
        Ok(Self {
            cipher: key.cipher(),
            prefix: key.nonce_prefix,
            chunks: chunk_count(file_len),
            next: 0,
            file_left: file_len,
            blob_len,
            seen: 0,
            pending: Vec::with_capacity(SEALED_CHUNK_BYTES),
            hasher: Sha256::new(),
        })
    }

    /// The exact blob length this expects.
    pub fn blob_len(&self) -> u64 {
        self.blob_len
    }

    /// Feeds blob bytes, appending the plaintext of every chunk they complete
    /// to `out`. A chunk that fails its tag is an error at once.
    pub fn update(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        if data.len() as u64 > self.blob_len - self.seen {
            return Err(AttachmentError::TooLong);
        }
        self.seen += data.len() as u64;
        self.hasher.update(data);
        while !data.is_empty() {
            let want = self.chunk_len() - self.pending.len();
            let take = want.min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == self.chunk_len() {
                self.open_pending(out)?;
            }
        }
        Ok(())
    }

    /// Checks that the whole blob arrived and that its SHA-256 is `expected`.
    pub fn finish(self, expected: &[u8; 32]) -> Result<(), AttachmentError> {
        if self.next != self.chunks {
            return Err(AttachmentError::Truncated {
                got: self.seen,
                expected: self.blob_len,
            });
        }
        let digest: [u8; 32] = self.hasher.finalize().into();
        if digest != *expected {
            return Err(AttachmentError::HashMismatch);
        }
        Ok(())
    }

    /// Sealed length of the chunk being filled.
    fn chunk_len(&self) -> usize {
        if self.next + 1 < self.chunks {
            SEALED_CHUNK_BYTES
        } else {
            // The final chunk: whatever the blob has left.
            (self.blob_len - (self.chunks - 1) * SEALED_CHUNK_BYTES as u64) as usize
        }
    }

    fn open_pending(&mut self, out: &mut Vec<u8>) -> Result<(), AttachmentError> {
        let last = self.next + 1 == self.chunks;
        let body_len = self.pending.len() - TAG_BYTES;
        let tag = Tag::clone_from_slice(&self.pending[body_len..]);
        let start = out.len();
        out.extend_from_slice(&self.pending[..body_len]);
        self.pending.clear();
        let nonce = nonce(&self.prefix, self.next, last);
        if self
            .cipher
            .decrypt_in_place_detached(&nonce, b"", &mut out[start..], &tag)
            .is_err()
        {
            // Never hand out bytes that failed their tag.
            out.truncate(start);
            return Err(AttachmentError::BadChunk(self.next));
        }
        self.next += 1;
        let keep = (body_len as u64).min(self.file_left) as usize;
        self.file_left -= keep as u64;
        if out[start + keep..].iter().any(|b| *b != 0) {
            out.truncate(start);
            return Err(AttachmentError::BadPadding);
        }
        out.truncate(start + keep);
        Ok(())
    }
}

/// A shared file as its message describes it. Inside the encryption only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Where the server keeps the blob.
    pub blob: BlobId,
    pub key: FileKey,
    /// SHA-256 of the whole blob.
    pub sha256: [u8; 32],
    /// The file's length in bytes (the blob is longer: padding and tags).
    pub size: u64,
    /// The sender's file name, without directories (see [`safe_file_name`]).
    pub name: String,
    /// Media type the sending device guessed, e.g. `image/png`.
    pub media_type: String,
    /// Text sent with the file; may be empty.
    pub caption: String,
}

impl Attachment {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(self.blob.as_bytes());
        self.key.write(w);
        w.raw(&self.sha256);
        w.u64(self.size);
        w.string(&self.name);
        w.string(&self.media_type);
        w.string(&self.caption);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let blob = BlobId::from_random(r.array("blob id")?);
        let key = FileKey::read(r)?;
        let sha256 = r.array("file hash")?;
        let size = r.u64("file size")?;
        let name = r.string("file name", MAX_FILE_NAME_LEN)?;
        let media_type = r.string("media type", MAX_MEDIA_TYPE_LEN)?.to_owned();
        let caption = r.string("caption", MAX_TEXT_LEN)?.to_owned();
        if blob_len(size).is_none() {
            return Err(DecodeError::Invalid("file size"));
        }
        Ok(Self {
            blob,
            key,
            sha256,
            size,
            name: safe_file_name(name),
            media_type,
            caption,
        })
    }

    /// The encoded form, for a device's own store.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128 + self.name.len() + self.caption.len());
        self.write(&mut w);
        w.buf
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let a = Self::read(&mut r)?;
        r.finish()?;
        Ok(a)
    }
}

/// A file name a sender chose, made safe to create in a directory: the last
/// path component only, no control characters, not hidden, never empty,
/// at most [`MAX_FILE_NAME_LEN`] bytes. A peer controls it, so a download
/// can never write outside the folder the user picked.
pub fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut clean: String = base
        .chars()
        .map(|c| if c.is_control() || c == ':' { '_' } else { c })
        .collect::<String>()
        .trim()
        .trim_start_matches('.')
        .to_owned();
    if clean.is_empty() {
        clean = "file".to_owned();
    }
    while clean.len() > MAX_FILE_NAME_LEN {
        clean.pop();
    }
    clean
}

/// The media type for a file name's extension (what the sender's device
/// says; receivers warn about risky types by content, not by this).
pub fn media_type_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "md" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "7z" => "application/x-7z-compressed",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt" => "application/vnd.ms-powerpoint",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "odt" => "application/vnd.oasis.opendocument.text",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(key: &FileKey, data: &[u8], piece: usize) -> (Vec<u8>, [u8; 32]) {
        let mut sealer = Sealer::new(key, data.len() as u64).unwrap();
        let mut out = Vec::new();
        for part in data.chunks(piece.max(1)) {
            sealer.update(part, &mut out).unwrap();
        }
        let expected_len = sealer.blob_len();
        let hash = sealer.finish(&mut out).unwrap();
        assert_eq!(out.len() as u64, expected_len);
        (out, hash)
    }

    fn open(
        key: &FileKey,
        len: u64,
        blob: &[u8],
        hash: &[u8; 32],
        piece: usize,
    ) -> Result<Vec<u8>, AttachmentError> {
        let mut opener = Opener::new(key, len)?;
        let mut out = Vec::new();
        for part in blob.chunks(piece.max(1)) {
            opener.update(part, &mut out)?;
        }
        opener.finish(hash)?;
        Ok(out)
    }

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn padme_pads_by_at_most_12_percent() {
        assert_eq!(padded_len(0), 0);
        assert_eq!(padded_len(1), 1);
        assert_eq!(padded_len(1000), 1024);
        for len in [3u64, 9, 100, 12_345, 1 << 20, 999_999_999, 1 << 40] {
            let p = padded_len(len);
            assert!(p >= len && p - len <= len * 12 / 100 + 1, "{len} -> {p}");
            assert_eq!(padded_len(p), p, "padded lengths are fixed points");
        }
    }

    #[test]
    fn round_trips_at_every_boundary_and_any_slicing() {
        let key = FileKey::generate();
        for len in [
            0,
            1,
            ATTACHMENT_CHUNK_BYTES - 1,
            ATTACHMENT_CHUNK_BYTES,
            ATTACHMENT_CHUNK_BYTES + 1,
            3 * ATTACHMENT_CHUNK_BYTES + 17,
        ] {
            let data = file(len);
            for piece in [1000, ATTACHMENT_CHUNK_BYTES, usize::MAX] {
                let piece = if piece == 1000 && len > 10_000 {
                    7919
                } else {
                    piece
                };
                let (blob, hash) = seal(&key, &data, piece);
                assert_eq!(blob.len() as u64, blob_len(len as u64).unwrap());
                assert_eq!(
                    open(&key, len as u64, &blob, &hash, piece).unwrap(),
                    data,
                    "len {len}"
                );
                assert_eq!(
                    open(&key, len as u64, &blob, &hash, 1 + piece / 3).unwrap(),
                    data
                );
            }
        }
    }

    #[test]
    fn same_file_twice_gives_different_blobs() {
        let data = file(100);
        let (a, _) = seal(&FileKey::generate(), &data, usize::MAX);
        let (b, _) = seal(&FileKey::generate(), &data, usize::MAX);
        assert_ne!(a, b);
    }

    #[test]
    fn every_kind_of_tampering_is_detected() {
        let key = FileKey::generate();
        let len = 3 * ATTACHMENT_CHUNK_BYTES + 5;
        let data = file(len);
        let (blob, hash) = seal(&key, &data, usize::MAX);
        let n = len as u64;
        let open_all = |b: &[u8]| open(&key, n, b, &hash, usize::MAX);

        // A flipped bit anywhere.
        for at in [0, 100, SEALED_CHUNK_BYTES + 3, blob.len() - 1] {
            let mut bad = blob.clone();
            bad[at] ^= 1;
            assert!(
                matches!(open_all(&bad), Err(AttachmentError::BadChunk(_))),
                "flip at {at}"
            );
        }
        // Truncated at a chunk boundary: the new last chunk lacks the last flag.
        let cut = &blob[..2 * SEALED_CHUNK_BYTES];
        assert!(matches!(
            open_all(cut),
            Err(AttachmentError::Truncated { .. })
        ));
        let mut short = Opener::new(&key, n).unwrap();
        let mut out = Vec::new();
        short.update(cut, &mut out).unwrap();
        assert!(matches!(
            short.finish(&hash),
            Err(AttachmentError::Truncated { .. })
        ));
        // Truncated, then claimed to be a shorter file: the last flag catches it.
        let short_len = 2 * ATTACHMENT_CHUNK_BYTES as u64;
        let mut o = Opener::new(&key, short_len).unwrap();
        let mut sink = Vec::new();
        let r = o.update(&blob[..o.blob_len() as usize], &mut sink);
        assert!(matches!(r, Err(AttachmentError::BadChunk(_))));
        // Reordered chunks.
        let mut swapped = blob.clone();
        let (a, b) = swapped.split_at_mut(SEALED_CHUNK_BYTES);
        a.swap_with_slice(&mut b[..SEALED_CHUNK_BYTES]);
        assert!(matches!(
            open_all(&swapped),
            Err(AttachmentError::BadChunk(0))
        ));
        // Extended.
        let mut long = blob.clone();
        long.push(0);
        assert_eq!(open_all(&long), Err(AttachmentError::TooLong));
        // A chunk from another file of the same length.
        let (other, _) = seal(&FileKey::generate(), &data, usize::MAX);
        let mut mixed = blob.clone();
        mixed[..SEALED_CHUNK_BYTES].copy_from_slice(&other[..SEALED_CHUNK_BYTES]);
        assert!(matches!(
            open_all(&mixed),
            Err(AttachmentError::BadChunk(0))
        ));
        // The wrong key, and the right blob with the wrong hash.
        assert!(open(&FileKey::generate(), n, &blob, &hash, usize::MAX).is_err());
        assert_eq!(
            open(&key, n, &blob, &[0; 32], usize::MAX),
            Err(AttachmentError::HashMismatch)
        );
    }

    #[test]
    fn a_file_that_grows_or_shrinks_while_read_is_refused() {
        let key = FileKey::generate();
        let mut s = Sealer::new(&key, 10).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            s.update(&[0; 11], &mut out),
            Err(AttachmentError::FileChanged)
        );
        let mut s = Sealer::new(&key, 10).unwrap();
        s.update(&[0; 9], &mut out).unwrap();
        assert_eq!(s.finish(&mut out), Err(AttachmentError::FileChanged));
    }

    #[test]
    fn names_from_peers_cannot_escape_the_folder() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("C:\\Users\\x\\evil.exe"), "evil.exe");
        assert_eq!(safe_file_name(".bashrc"), "bashrc");
        assert_eq!(safe_file_name(".."), "file");
        assert_eq!(safe_file_name("a\u{0}b\nc"), "a_b_c");
        assert_eq!(safe_file_name(""), "file");
        assert!(safe_file_name(&"é".repeat(300)).len() <= MAX_FILE_NAME_LEN);
    }

    #[test]
    fn attachment_metadata_round_trips() {
        let a = Attachment {
            blob: BlobId::from_random([3; 32]),
            key: FileKey::generate(),
            sha256: [9; 32],
            size: 12345,
            name: "report.pdf".into(),
            media_type: media_type_for("report.pdf").into(),
            caption: "Q3".into(),
        };
        assert_eq!(a.media_type, "application/pdf");
        let bytes = a.encode();
        assert_eq!(Attachment::decode(&bytes).unwrap(), a);
        for cut in 0..bytes.len() {
            assert!(Attachment::decode(&bytes[..cut]).is_err());
        }
        assert!(format!("{a:?}").contains("FileKey(<redacted>)"));
    }
}
