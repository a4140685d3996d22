//! Reads a profile's database files the way a thief who also knows the
//! passphrase could: every page of `profile.db` and `profile.db-wal`,
//! decrypted, including free pages and stale log frames that SQL no longer
//! shows. Tests grep this to prove erased text is gone from the bytes, not
//! just hidden from queries.
//!
//! SQLCipher 4 defaults: 4096-byte pages, each encrypted with AES-256-CBC
//! under the raw key; the last 80 bytes of a page are its IV (16) and HMAC
//! (64); page 1 starts with the 16-byte salt, in the clear.

use aes::cipher::{BlockDecrypt as _, KeyInit as _, generic_array::GenericArray};
use std::path::Path;

const PAGE: usize = 4096;
const RESERVE: usize = 80;
const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

/// The profile key, derived from the passphrase as the client does.
fn profile_key(dir: &Path, passphrase: &str) -> [u8; 32] {
    let kdf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("kdf.json")).expect("kdf.json"))
            .expect("kdf json");
    let salt = hex::decode(kdf["salt"].as_str().expect("salt")).expect("salt hex");
    let param = |name: &str| u32::try_from(kdf[name].as_u64().expect(name)).expect(name);
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(
            param("m_cost_kib"),
            param("t_cost"),
            param("p_cost"),
            Some(32),
        )
        .expect("params"),
    );
    let mut key = [0u8; 32];
    argon
        .hash_password_into(passphrase.as_bytes(), &salt, &mut key)
        .expect("argon2");
    key
}

fn decrypt_page(cipher: &aes::Aes256, page: &[u8], first: bool, out: &mut Vec<u8>) {
    let start = if first { 16 } else { 0 };
    let iv = &page[PAGE - RESERVE..PAGE - RESERVE + 16];
    let mut previous: [u8; 16] = iv.try_into().expect("iv");
    for block in page[start..PAGE - RESERVE].chunks_exact(16) {
        let mut b = GenericArray::clone_from_slice(block);
        cipher.decrypt_block(&mut b);
        for (x, p) in b.iter_mut().zip(previous) {
            *x ^= p;
        }
        out.extend_from_slice(&b);
        previous = block.try_into().expect("block");
    }
}

/// Every page of the profile's database and write-ahead log, decrypted.
pub fn decrypted_profile(dir: &Path, passphrase: &str) -> Vec<u8> {
    let cipher = aes::Aes256::new(&profile_key(dir, passphrase).into());
    let mut out = vec![];
    let db = std::fs::read(dir.join("profile.db")).expect("profile.db");
    for (i, page) in db.chunks_exact(PAGE).enumerate() {
        decrypt_page(&cipher, page, i == 0, &mut out);
    }
    if let Ok(wal) = std::fs::read(dir.join("profile.db-wal"))
        && wal.len() > WAL_HEADER
    {
        for frame in wal[WAL_HEADER..].chunks_exact(FRAME_HEADER + PAGE) {
            let page_no = u32::from_be_bytes(frame[..4].try_into().expect("page number"));
            decrypt_page(&cipher, &frame[FRAME_HEADER..], page_no == 1, &mut out);
        }
    }
    out
}
