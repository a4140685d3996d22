//! TOTP (RFC 6238) over HOTP (RFC 4226) with HMAC-SHA-1, 6 digits and a
//! 30-second step — what every authenticator app speaks — plus the base32
//! (RFC 4648, no padding) those apps read secrets in.
//!
//! Public so that tests and other crates can compute codes. This module does
//! no I/O and keeps no state: replay protection (each step accepted at most
//! once) is the caller's job, see [`verify`].

use hmac::{Hmac, Mac as _};
use sha1::Sha1;
use subtle::ConstantTimeEq as _;

/// Seconds per TOTP step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one (clock skew, slow typing).
pub const WINDOW: u64 = 1;
/// Bytes of a newly generated secret (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;

/// The RFC 4648 base32 alphabet.
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The HOTP value of `counter` with `digits` digits (RFC 4226, section 5.3).
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    // HMAC accepts keys of any length, so this never fails.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return 0;
    };
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10u32.pow(digits.min(9))
}

/// The TOTP step a Unix time falls in.
pub fn step(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// The 6-digit code of one step, zero-padded.
pub fn code_at_step(secret: &[u8], step: u64) -> String {
    format!(
        "{:0width$}",
        hotp(secret, step, DIGITS),
        width = DIGITS as usize
    )
}

/// The 6-digit code for a Unix time, zero-padded, as an authenticator shows it.
pub fn code(secret: &[u8], unix_secs: u64) -> String {
    code_at_step(secret, step(unix_secs))
}

/// Whether `input` has the shape of a TOTP code (six ASCII digits, spaces
/// ignored). Anything else offered as a second factor is a recovery code.
pub fn looks_like_code(input: &str) -> bool {
    let mut digits = 0;
    for c in input.chars().filter(|c| !c.is_whitespace()) {
        if !c.is_ascii_digit() {
            return false;
        }
        digits += 1;
    }
    digits == DIGITS as usize
}

/// Checks `input` against the steps around `unix_secs` and returns the step
/// it matched. Only steps greater than `last_used` count, so a code that was
/// already accepted (or an older one) is refused: store the returned step
/// and pass it as `last_used` next time. Comparisons are constant-time.
pub fn verify(secret: &[u8], unix_secs: u64, input: &str, last_used: Option<u64>) -> Option<u64> {
    if !looks_like_code(input) {
        return None;
    }
    let typed: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    let now = step(unix_secs);
    let mut matched = None;
    // Every candidate is computed and compared, matching or not.
    for candidate in now.saturating_sub(WINDOW)..=now.saturating_add(WINDOW) {
        let expected = code_at_step(secret, candidate);
        let fresh = last_used.is_none_or(|last| candidate > last);
        if bool::from(expected.as_bytes().ct_eq(typed.as_bytes())) && fresh && matched.is_none() {
            matched = Some(candidate);
        }
    }
    matched
}

/// Base32 without padding, upper case.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes base32 in either case; spaces, dashes and trailing `=` padding are
/// ignored. `None` for any other character or leftover bits that are not zero.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    let trimmed = text.trim_end_matches('=');
    for c in trimmed.chars() {
        if c == ' ' || c == '-' {
            continue;
        }
        let upper = c.to_ascii_uppercase();
        let value = BASE32.iter().position(|&a| char::from(a) == upper)?;
        buffer = (buffer << 5) | value as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be padding zeros, and at most 4 of them.
    (bits < 5 && buffer == 0).then_some(out)
}

/// The `otpauth://` URI authenticator apps import (usually from a QR code).
pub fn otpauth_uri(username: &str, secret_b32: &str) -> String {
    format!(
        "otpauth://totp/Rampart:{username}?secret={secret_b32}&issuer=Rampart&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 column (8 digits).
        for (time, expected) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let eight = format!("{:08}", hotp(RFC_SECRET, step(time), 8));
            assert_eq!(eight, expected, "t = {time}");
            assert_eq!(code(RFC_SECRET, time), expected[2..], "t = {time}");
        }
    }

    #[test]
    fn rfc4226_hotp_vectors() {
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, value) in expected.iter().enumerate() {
            assert_eq!(hotp(RFC_SECRET, counter as u64, 6), *value);
        }
    }

    #[test]
    fn base32_round_trips_and_matches_rfc4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()), encoded);
            assert_eq!(base32_decode(encoded), Some(plain.as_bytes().to_vec()));
        }
        assert_eq!(base32_decode("mzxw6ytboi======"), Some(b"foobar".to_vec()));
        assert_eq!(base32_decode("MZXW 6YTB-OI"), Some(b"foobar".to_vec()));
        assert_eq!(base32_decode("MZ1"), None);
        let secret: Vec<u8> = (0..20).collect();
        assert_eq!(base32_decode(&base32_encode(&secret)), Some(secret));
    }

    #[test]
    fn window_and_replay() {
        let t = 1_700_000_000;
        let now = step(t);
        let code_now = code(RFC_SECRET, t);
        assert_eq!(verify(RFC_SECRET, t, &code_now, None), Some(now));
        assert_eq!(verify(RFC_SECRET, t, &code_now, Some(now)), None);
        let prev = code(RFC_SECRET, t - 30);
        let next = code(RFC_SECRET, t + 30);
        assert_eq!(verify(RFC_SECRET, t, &prev, None), Some(now - 1));
        assert_eq!(verify(RFC_SECRET, t, &next, None), Some(now + 1));
        // A later step used first makes the earlier one stale.
        assert_eq!(verify(RFC_SECRET, t, &prev, Some(now)), None);
        let far = code(RFC_SECRET, t + 60);
        if far != code_now && far != next && far != prev {
            assert_eq!(verify(RFC_SECRET, t, &far, None), None);
        }
        assert_eq!(verify(RFC_SECRET, t, "12345", None), None);
        assert_eq!(verify(RFC_SECRET, t, "abcdef", None), None);
        let spaced = format!("{} {}", &code_now[..3], &code_now[3..]);
        assert_eq!(verify(RFC_SECRET, t, &spaced, None), Some(now));
    }

    #[test]
    fn uri_format() {
        assert_eq!(
            otpauth_uri("alice", "ABC"),
            "otpauth://totp/Rampart:alice?secret=ABC&issuer=Rampart&algorithm=SHA1&digits=6&period=30"
        );
    }
}
