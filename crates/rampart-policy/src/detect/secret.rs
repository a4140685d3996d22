//! Secrets: cloud and SaaS credentials, private keys, tokens, passwords.
//!
//! One Aho-Corasick pass over the text finds every fixed prefix (`AKIA`,
//! `ghp_`, `-----BEGIN `, `eyJ`, …) and every key name (`password`,
//! `aws_secret_access_key`, …). Each hit is then checked by hand: the
//! format, an entropy floor where the format alone is weak, and filters for
//! placeholders and documentation samples. A check reads either a bounded
//! number of bytes after its hit, or bytes that no later hit reads again
//! (PEM bodies, JWT segments), so a scan is linear in the length of the
//! text whatever it holds.
//!
//! What it does not do: verify a credential with its issuer. That would
//! send the secret, and the fact that someone shared it, to a third party.

use super::{Candidate, is_word_byte};
use crate::finding::{Confidence, Detector};
use aho_corasick::AhoCorasick;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use std::sync::LazyLock;

/// What a hit of the automaton is the start of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hit {
    AwsAccessKey,
    /// A name for the AWS secret access key; the value follows it.
    AwsSecretName,
    PemBegin,
    GithubClassic,
    GithubFineGrained,
    SlackToken,
    SlackWebhook,
    StripeLive,
    StripeTest,
    GoogleApiKey,
    Jwt,
    /// A password-like key name: `password`, `secret`, `token`, …
    KeyName,
    /// A short key name (`pass`, `pwd`) that must start a word and that
    /// does not take the prose form "… is …".
    ShortKeyName,
}

/// The patterns of the automaton, which matches ASCII case-insensitively;
/// `true` means the hit must also match the pattern's case exactly.
const PATTERNS: &[(&str, Hit, bool)] = &[
    ("AKIA", Hit::AwsAccessKey, true),
    ("ASIA", Hit::AwsAccessKey, true),
    ("ABIA", Hit::AwsAccessKey, true),
    ("ACCA", Hit::AwsAccessKey, true),
    ("aws_secret", Hit::AwsSecretName, false),
    ("aws-secret", Hit::AwsSecretName, false),
    ("aws secret", Hit::AwsSecretName, false),
    ("awssecret", Hit::AwsSecretName, false),
    ("secret_access_key", Hit::AwsSecretName, false),
    ("secret-access-key", Hit::AwsSecretName, false),
    ("secret access key", Hit::AwsSecretName, false),
    ("secretaccesskey", Hit::AwsSecretName, false),
    ("-----BEGIN ", Hit::PemBegin, true),
    ("ghp_", Hit::GithubClassic, true),
    ("gho_", Hit::GithubClassic, true),
    ("ghu_", Hit::GithubClassic, true),
    ("ghs_", Hit::GithubClassic, true),
    ("ghr_", Hit::GithubClassic, true),
    ("github_pat_", Hit::GithubFineGrained, true),
    ("xoxb-", Hit::SlackToken, true),
    ("xoxp-", Hit::SlackToken, true),
    ("xoxa-", Hit::SlackToken, true),
    ("xoxr-", Hit::SlackToken, true),
    ("xoxs-", Hit::SlackToken, true),
    ("xoxe-", Hit::SlackToken, true),
    ("hooks.slack.com/services/", Hit::SlackWebhook, false),
    ("sk_live_", Hit::StripeLive, true),
    ("rk_live_", Hit::StripeLive, true),
    ("sk_test_", Hit::StripeTest, true),
    ("rk_test_", Hit::StripeTest, true),
    ("AIza", Hit::GoogleApiKey, true),
    ("eyJ", Hit::Jwt, true),
    ("password", Hit::KeyName, false),
    ("passwd", Hit::KeyName, false),
    ("passphrase", Hit::KeyName, false),
    ("secret", Hit::KeyName, false),
    ("token", Hit::KeyName, false),
    ("api_key", Hit::KeyName, false),
    ("api-key", Hit::KeyName, false),
    ("apikey", Hit::KeyName, false),
    ("private_key", Hit::KeyName, false),
    ("private-key", Hit::KeyName, false),
    ("privatekey", Hit::KeyName, false),
    // The same names in the languages of the organisations using Rampart.
    ("passwort", Hit::KeyName, false),
    ("kennwort", Hit::KeyName, false),
    ("wachtwoord", Hit::KeyName, false),
    ("mot de passe", Hit::KeyName, false),
    ("contraseña", Hit::KeyName, false),
    ("senha", Hit::KeyName, false),
    ("пароль", Hit::KeyName, false),
    ("パスワード", Hit::KeyName, false),
    ("pass", Hit::ShortKeyName, false),
    ("pwd", Hit::ShortKeyName, false),
];

/// Built once; `None` only if the constant patterns above were refused,
/// which the tests rule out. Leftmost-longest and not overlapping: of key
/// names that share text the longest speaks (`aws_secret_access_key` is an
/// AWS name, not also a generic `secret`), and every byte is read once.
static AUTOMATON: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        // A full DFA: some fifty short patterns, scanned over every message.
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
        .build(PATTERNS.iter().map(|p| p.0))
        .ok()
});

/// Base64url as JWTs use it: no padding, and lenient about unused bits.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The secret access key of the AWS documentation.
const AWS_DOC_SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// The test key printed throughout Stripe's documentation.
const STRIPE_DOC_TEST_KEY: &[u8] = b"4eC39HqLyjWDarjtT1zdp7dc";

/// How far after an AWS secret key name its value may start.
const AWS_SECRET_WINDOW: usize = 100;
/// Longest identifier tail after a key name (`password` in
/// `db_password_hash`, the tail is `_hash`).
const MAX_NAME_TAIL: usize = 24;
/// Longest assigned value considered; longer runs are something else.
const MAX_VALUE_LEN: usize = 200;
/// Longest Stripe key, Slack token and PEM label read.
const MAX_TOKEN_LEN: usize = 256;
const MAX_PEM_LABEL: usize = 40;
/// Least base64 in a PEM body for it to be a key rather than a sample.
const MIN_PEM_BODY: usize = 64;
/// Longest armor header line (`DEK-Info: AES-256-CBC,…`).
const MAX_ARMOR_LINE: usize = 128;
/// Most blanks around an assignment operator.
const MAX_BLANKS: usize = 16;

/// Finds the secrets in `text`; each (detector, span) once.
pub(crate) fn find(text: &str, out: &mut Vec<Candidate>) {
    let Some(ac) = AUTOMATON.as_ref() else {
        return;
    };
    let b = text.as_bytes();
    let first = out.len();
    // PEM bodies and JWT segments are read once: hits inside a block that
    // was already read are skipped.
    let mut pem_done = 0;
    let mut jwt_done = 0;
    for m in ac.find_iter(text) {
        let Some(&(pattern, hit, exact)) = PATTERNS.get(m.pattern().as_usize()) else {
            continue;
        };
        let (s, e) = (m.start(), m.end());
        if exact && b.get(s..e) != Some(pattern.as_bytes()) {
            continue;
        }
        match hit {
            Hit::AwsAccessKey => aws_access_key(b, s, e, out),
            Hit::AwsSecretName => aws_secret_key(b, e, out),
            Hit::PemBegin if s >= pem_done => pem_done = private_key(b, s, e, out),
            Hit::PemBegin => {}
            Hit::GithubClassic => github(b, s, e, 36, false, out),
            Hit::GithubFineGrained => github(b, s, e, 82, true, out),
            Hit::SlackToken => slack_token(b, s, e, out),
            Hit::SlackWebhook => slack_webhook(b, s, e, out),
            Hit::StripeLive => stripe(b, s, e, true, out),
            Hit::StripeTest => stripe(b, s, e, false, out),
            Hit::GoogleApiKey => google_api_key(b, s, e, out),
            Hit::Jwt if s >= jwt_done => jwt_done = jwt(b, s, out).unwrap_or(jwt_done),
            Hit::Jwt => {}
            Hit::KeyName => assignment(text, s, e, false, out),
            Hit::ShortKeyName => assignment(text, s, e, true, out),
        }
    }
    // Two key names before one value (`secret: token = …`) can find it
    // twice; keep one candidate per detector and span.
    let mut mine = out.split_off(first);
    mine.sort_by_key(|c| (c.start, c.end, c.detector));
    mine.dedup_by_key(|c| (c.start, c.end, c.detector));
    out.append(&mut mine);
}

fn push(
    out: &mut Vec<Candidate>,
    detector: Detector,
    start: usize,
    end: usize,
    confidence: Confidence,
    why: &'static str,
) {
    out.push(Candidate {
        detector,
        start,
        end,
        confidence,
        why,
    });
}

// ---------------------------------------------------------------------------
// Fixed-prefix tokens

/// `AKIA…`: 16 characters of base32 after the prefix, a whole word.
fn aws_access_key(b: &[u8], s: usize, e: usize, out: &mut Vec<Candidate>) {
    let end = e + 16;
    let Some(body) = b.get(e..end) else {
        return;
    };
    if !starts_word(b, s)
        || !ends_word(b, end)
        || !body.iter().all(|&c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c))
        || body.ends_with(b"EXAMPLE")
        || is_placeholder_token(body)
        // Random 16-character base32 falls under 2.5 bits about once in
        // 100,000; `AKIAAAAABBBBCCCCDDDD` and the like do not clear it.
        || entropy(body) < 2.5
    {
        return;
    }
    push(
        out,
        Detector::AwsAccessKey,
        s,
        end,
        Confidence::High,
        "AWS access key id (AKIA/ASIA prefix and base32 body)",
    );
}

/// A 40-character base64 value within a short window after an AWS secret
/// key name (`aws_secret_access_key = …`, "AWS secret: …", or the CSV that
/// the console exports, where the value is on the next line).
fn aws_secret_key(b: &[u8], e: usize, out: &mut Vec<Candidate>) {
    let in_set = |i: usize| {
        b.get(i)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'/' || c == b'+')
    };
    // Every loop stops at the window's end (a run may finish 40 bytes
    // past it), so one name reads a bounded number of bytes.
    let window_end = e + AWS_SECRET_WINDOW;
    let mut i = e;
    // A run touching the name is the rest of the name, not a value.
    while in_set(i) && i < window_end {
        i += 1;
    }
    while i < window_end && i < b.len() {
        if !in_set(i) {
            i += 1;
            continue;
        }
        let start = i;
        while in_set(i) && i - start <= 40 {
            i += 1;
        }
        if i - start > 40 {
            // Too long to be the key: skip the rest of the run.
            while in_set(i) && i < window_end {
                i += 1;
            }
            continue;
        }
        let Some(value) = b.get(start..i) else {
            return;
        };
        if value.len() == 40
            && b.get(i) != Some(&b'=')
            && value != AWS_DOC_SECRET
            && !value.iter().all(u8::is_ascii_hexdigit)
            && !is_placeholder_token(value)
            && entropy(value) >= 4.0
        {
            push(
                out,
                Detector::AwsSecretKey,
                start,
                i,
                Confidence::High,
                "AWS secret access key next to its key name",
            );
            return;
        }
    }
}

/// `ghp_` and friends with 36 alphanumerics; `github_pat_` with 82
/// characters of `[A-Za-z0-9_]`.
fn github(b: &[u8], s: usize, e: usize, len: usize, fine_grained: bool, out: &mut Vec<Candidate>) {
    let end = e + len;
    let Some(body) = b.get(e..end) else {
        return;
    };
    let body_ok = if fine_grained {
        body.iter().all(|&c| is_word_byte(c))
    } else {
        body.iter().all(u8::is_ascii_alphanumeric)
    };
    if !body_ok
        || !starts_word(b, s)
        || !ends_word(b, end)
        || is_placeholder_token(body)
        || entropy(body) < 3.0
    {
        return;
    }
    let why = if fine_grained {
        "GitHub fine-grained personal access token (github_pat_ prefix)"
    } else {
        "GitHub token (ghp_/gho_/ghu_/ghs_/ghr_ prefix and 36-character body)"
    };
    push(out, Detector::GithubToken, s, end, Confidence::High, why);
}

/// `xoxb-123-456-abc…`: dash-separated alphanumeric segments, the first
/// all digits, the last a long random part.
fn slack_token(b: &[u8], s: usize, e: usize, out: &mut Vec<Candidate>) {
    // `xoxe.xoxp-1-…` (a refresh token's access part) starts after a dot.
    let before_ok = s
        .checked_sub(1)
        .and_then(|i| b.get(i))
        .is_none_or(|&c| !is_word_byte(c) && c != b'-');
    if !before_ok {
        return;
    }
    let mut end = e;
    while b
        .get(end)
        .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'-')
    {
        end += 1;
        if end - e > MAX_TOKEN_LEN {
            return;
        }
    }
    while end > e && b.get(end - 1) == Some(&b'-') {
        end -= 1;
    }
    if !ends_word(b, end) && b.get(end) != Some(&b'-') {
        return;
    }
    let Some(body) = b.get(e..end) else {
        return;
    };
    let segments: Vec<&[u8]> = body.split(|&c| c == b'-').collect();
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        return;
    };
    if segments.len() < 2
        || body.len() < 20
        || segments.iter().any(|seg| seg.is_empty())
        || !first.iter().all(u8::is_ascii_digit)
        || last.len() < 8
        || is_placeholder_token(last)
        || entropy(body) < 3.0
    {
        return;
    }
    push(
        out,
        Detector::SlackToken,
        s,
        end,
        Confidence::High,
        "Slack token (xox prefix and numeric segments)",
    );
}

/// `https://hooks.slack.com/services/T…/B…/…`, reported from the scheme.
fn slack_webhook(b: &[u8], s: usize, e: usize, out: &mut Vec<Candidate>) {
    let start = [&b"https://"[..], b"http://"]
        .iter()
        .find_map(|scheme| {
            let at = s.checked_sub(scheme.len())?;
            b.get(at..s)?.eq_ignore_ascii_case(scheme).then_some(at)
        })
        .unwrap_or(s);
    // `foo.hooks.slack.com` is not Slack's host.
    let before = start.checked_sub(1).and_then(|i| b.get(i));
    if before.is_some_and(|&c| is_word_byte(c) || c == b'.') {
        return;
    }
    let id = |at: usize, lead: u8| -> Option<usize> {
        if b.get(at) != Some(&lead) {
            return None;
        }
        let mut i = at + 1;
        while b
            .get(i)
            .is_some_and(|&c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && i - at <= 16
        {
            i += 1;
        }
        (b.get(i) == Some(&b'/') && (9..=16).contains(&(i - at))).then_some(i + 1)
    };
    let Some(after_team) = id(e, b'T') else {
        return;
    };
    let Some(secret_start) = id(after_team, b'B') else {
        return;
    };
    let mut end = secret_start;
    while b.get(end).is_some_and(u8::is_ascii_alphanumeric) && end - secret_start <= 40 {
        end += 1;
    }
    let Some(secret) = b.get(secret_start..end) else {
        return;
    };
    if !(20..=40).contains(&secret.len())
        || !ends_word(b, end)
        || is_placeholder_token(secret)
        || entropy(secret) < 3.0
    {
        return;
    }
    push(
        out,
        Detector::SlackToken,
        start,
        end,
        Confidence::High,
        "Slack incoming-webhook URL",
    );
}

/// `sk_live_…`/`rk_live_…` (High) and `sk_test_…`/`rk_test_…` (Medium):
/// at least 24 alphanumerics.
fn stripe(b: &[u8], s: usize, e: usize, live: bool, out: &mut Vec<Candidate>) {
    if !starts_word(b, s) {
        return;
    }
    let mut end = e;
    while b.get(end).is_some_and(u8::is_ascii_alphanumeric) {
        end += 1;
        if end - e > MAX_TOKEN_LEN {
            return;
        }
    }
    let Some(body) = b.get(e..end) else {
        return;
    };
    if body.len() < 24
        || !ends_word(b, end)
        || body == STRIPE_DOC_TEST_KEY
        || is_placeholder_token(body)
        || entropy(body) < 3.0
    {
        return;
    }
    if live {
        push(
            out,
            Detector::StripeKey,
            s,
            end,
            Confidence::High,
            "Stripe live secret or restricted key",
        );
    } else {
        push(
            out,
            Detector::StripeKey,
            s,
            end,
            Confidence::Medium,
            "Stripe test-mode secret or restricted key",
        );
    }
}

/// `AIza` and 35 characters of `[A-Za-z0-9_-]`.
fn google_api_key(b: &[u8], s: usize, e: usize, out: &mut Vec<Candidate>) {
    let end = e + 35;
    let Some(body) = b.get(e..end) else {
        return;
    };
    let before_ok = s
        .checked_sub(1)
        .and_then(|i| b.get(i))
        .is_none_or(|&c| !is_base64url(c));
    if !before_ok
        || !body.iter().all(|&c| is_base64url(c))
        || b.get(end).is_some_and(|&c| is_base64url(c))
        || is_placeholder_token(body)
        || entropy(body) < 3.5
    {
        return;
    }
    push(
        out,
        Detector::GoogleApiKey,
        s,
        end,
        Confidence::High,
        "Google API key (AIza prefix)",
    );
}

// ---------------------------------------------------------------------------
// PEM private keys

/// The labels of private-key PEM blocks (RFC 7468, OpenSSH, OpenPGP armor).
const PEM_PRIVATE_LABELS: &[&[u8]] = &[
    b"PRIVATE KEY",
    b"RSA PRIVATE KEY",
    b"EC PRIVATE KEY",
    b"DSA PRIVATE KEY",
    b"OPENSSH PRIVATE KEY",
    b"ENCRYPTED PRIVATE KEY",
    b"PGP PRIVATE KEY BLOCK",
    b"PGP PRIVATE KEY",
];

/// Reads `-----BEGIN <label>-----` at `s` and the body after it; reports
/// the block from its header through its footer, or through the end of the
/// base64 body when there is no footer. Returns where reading stopped, so
/// hits before it are skipped.
fn private_key(b: &[u8], s: usize, e: usize, out: &mut Vec<Candidate>) -> usize {
    let Some(label_end) = pem_label_end(b, e) else {
        return e;
    };
    if !b
        .get(e..label_end)
        .is_some_and(|l| PEM_PRIVATE_LABELS.contains(&l))
    {
        return e;
    }
    let mut i = label_end + 5;
    let mut body = 0usize;
    // End of the last body word that is certainly key material.
    let mut body_end = None;
    let mut footer_end = None;
    loop {
        while b
            .get(i)
            .is_some_and(|&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            break;
        };
        if c == b'-' {
            if b.get(i..).is_some_and(|r| r.starts_with(b"-----END ")) {
                let label_start = i + 9;
                if let Some(end) = pem_label_end(b, label_start) {
                    let private = b.get(label_start..end).is_some_and(|l| {
                        l.ends_with(b"PRIVATE KEY") || l.ends_with(b"PRIVATE KEY BLOCK")
                    });
                    if private {
                        footer_end = Some(end + 5);
                        i = end + 5;
                    }
                }
            }
            break;
        }
        // Armor headers (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: …`,
        // `Version: …`) come before the body; skip their line.
        if body == 0 && is_armor_header(b, i) {
            let line = b
                .get(i..(i + MAX_ARMOR_LINE).min(b.len()))
                .unwrap_or_default();
            match memchr::memchr(b'\n', line) {
                Some(n) => {
                    i += n + 1;
                    continue;
                }
                // Not a line of its own (a flattened paste): give up on
                // the body rather than skip over what follows.
                None => break,
            }
        }
        let word = i;
        while b.get(i).is_some_and(|&c| is_base64(c)) {
            i += 1;
        }
        let ends_cleanly = b
            .get(i)
            .is_none_or(|&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'-'));
        if i == word || !ends_cleanly {
            // Not base64: the body ended before this word.
            i = word;
            break;
        }
        let w = b.get(word..i).unwrap_or_default();
        body += w.len();
        // A long line, a padded one, or one that is not a plain word is
        // key material; a short all-letter word may be the prose that
        // follows a truncated paste.
        if w.len() >= 16 || !w.iter().all(u8::is_ascii_alphabetic) {
            body_end = Some(i);
        }
    }
    if body < MIN_PEM_BODY {
        return i.max(e);
    }
    match (footer_end, body_end) {
        (Some(end), _) => {
            push(
                out,
                Detector::PrivateKey,
                s,
                end,
                Confidence::High,
                "PEM private key block",
            );
        }
        (None, Some(end)) => {
            push(
                out,
                Detector::PrivateKey,
                s,
                end,
                Confidence::High,
                "PEM private key block without its END line (truncated)",
            );
        }
        (None, None) => {}
    }
    i.max(e)
}

/// Where the `-----` closing a PEM label that starts at `at` begins.
fn pem_label_end(b: &[u8], at: usize) -> Option<usize> {
    let window = b.get(at..(at + MAX_PEM_LABEL + 5).min(b.len()))?;
    let dashes = memchr::memmem::find(window, b"-----")?;
    let label = window.get(..dashes)?;
    label
        .iter()
        .all(|&c| c.is_ascii_uppercase() || c == b' ')
        .then_some(at + dashes)
}

/// `Name-With-Dashes:` at `at`.
fn is_armor_header(b: &[u8], at: usize) -> bool {
    let mut i = at;
    while b
        .get(i)
        .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'-')
        && i - at < 24
    {
        i += 1;
    }
    i > at && b.get(i) == Some(&b':')
}

// ---------------------------------------------------------------------------
// JSON Web Tokens

/// `eyJ….….…` whose header decodes to a JSON object with `alg`, whose
/// payload decodes to a JSON object and whose signature decodes. Returns
/// the end of the token when one is reported.
fn jwt(b: &[u8], s: usize, out: &mut Vec<Candidate>) -> Option<usize> {
    let before_ok = s
        .checked_sub(1)
        .and_then(|i| b.get(i))
        .is_none_or(|&c| !is_base64url(c));
    if !before_ok {
        return None;
    }
    let run = |from: usize| {
        let mut i = from;
        while b.get(i).is_some_and(|&c| is_base64url(c)) {
            i += 1;
        }
        i
    };
    let header_end = run(s);
    let payload_start = header_end + 1;
    if b.get(header_end) != Some(&b'.') {
        return None;
    }
    let payload_end = run(payload_start);
    let sig_start = payload_end + 1;
    if payload_end == payload_start || b.get(payload_end) != Some(&b'.') {
        return None;
    }
    let end = run(sig_start);
    if end == sig_start {
        return None;
    }
    // A fourth segment makes it a JWE or something else, not a JWS.
    if b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(|&c| is_base64url(c)) {
        return None;
    }
    let header = BASE64URL.decode(b.get(s..header_end)?).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).ok()?;
    if !header.contains_key("alg") {
        return None;
    }
    let payload = BASE64URL.decode(b.get(payload_start..payload_end)?).ok()?;
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&payload).ok()?;
    BASE64URL.decode(b.get(sig_start..end)?).ok()?;
    push(
        out,
        Detector::Jwt,
        s,
        end,
        Confidence::High,
        "JSON Web Token whose header and payload decode",
    );
    Some(end)
}

// ---------------------------------------------------------------------------
// `password = …` assignments

/// A key name at `s..e`, then the rest of an identifier, an assignment
/// operator and a value; reports the value only.
fn assignment(text: &str, s: usize, e: usize, short: bool, out: &mut Vec<Candidate>) {
    let b = text.as_bytes();
    let (Some(&first), Some(&last)) = (b.get(s), e.checked_sub(1).and_then(|i| b.get(i))) else {
        return;
    };
    // `tokenizer`, `passport`, `secretary` are other words; `dbPassword`,
    // `DB_PASS` and `passwordHash` are still key names.
    let same_case_letter =
        |c: u8, k: u8| c.is_ascii_alphabetic() && c.is_ascii_uppercase() == k.is_ascii_uppercase();
    if b.get(e).is_some_and(|&c| same_case_letter(c, last)) {
        return;
    }
    if short
        && s.checked_sub(1)
            .and_then(|i| b.get(i))
            .is_some_and(|&c| same_case_letter(c, first) || c.is_ascii_digit())
    {
        return;
    }
    let mut i = e;
    while b
        .get(i)
        .is_some_and(|&c| is_word_byte(c) || c == b'.' || c == b'-')
    {
        i += 1;
        if i - e > MAX_NAME_TAIL {
            return;
        }
    }
    if b.get(e..i).is_some_and(is_benign_name_tail) {
        return;
    }
    // `"password": …` in JSON.
    if matches!(b.get(i), Some(b'"' | b'\'' | b'`')) {
        i += 1;
    }
    let before_blank = i;
    i = skip_blank(b, i);
    match b.get(i) {
        Some(b'=') => {
            i += 1;
            if matches!(b.get(i), Some(b'>' | b'=')) {
                i += 1;
            }
        }
        Some(b':') => {
            i += 1;
            if b.get(i) == Some(&b'=') {
                i += 1;
            }
        }
        Some(b'i' | b'I')
            if !short
                && i > before_blank
                && b.get(i + 1).is_some_and(|c| c.eq_ignore_ascii_case(&b's'))
                && b.get(i + 2)
                    .is_some_and(|&c| matches!(c, b' ' | b'\t' | b':')) =>
        {
            // "… is X" and "… is: X".
            i += 2;
            if b.get(i) == Some(&b':') {
                i += 1;
            }
        }
        _ => return,
    }
    i = skip_blank(b, i);
    let quoted = matches!(b.get(i), Some(b'"' | b'\'' | b'`'));
    if quoted {
        i += 1;
    }
    let start = i;
    while b
        .get(i)
        .is_some_and(|&c| !c.is_ascii_whitespace() && !matches!(c, b'"' | b'\'' | b'`'))
    {
        i += 1;
        if i - start > MAX_VALUE_LEN {
            return;
        }
    }
    let Some(raw) = text.get(start..i) else {
        return;
    };
    let value = if quoted {
        raw
    } else {
        raw.trim_end_matches([',', ';', '.', ')', ']', '}'])
    };
    let Some(confidence) = assess_value(raw, value, quoted) else {
        return;
    };
    let why = match confidence {
        Confidence::High => "high-entropy value assigned to a password or secret name",
        _ => "value assigned to a password or secret name",
    };
    push(
        out,
        Detector::PasswordAssignment,
        start,
        start + value.len(),
        confidence,
        why,
    );
}

/// Tails of key names that name something about a secret rather than the
/// secret: `password_length`, `token_type`, `secret_name`, `api_key_id`.
fn is_benign_name_tail(tail: &[u8]) -> bool {
    const BENIGN: &[&str] = &[
        "name", "names", "type", "id", "ids", "file", "path", "dir", "url", "uri", "len", "length",
        "size", "count", "min", "max", "expiry", "expires", "ttl", "policy", "hint", "field",
        "label", "prompt", "ref", "regex", "pattern", "format", "endpoint", "header", "env", "var",
    ];
    let mut segment = String::new();
    let mut benign = false;
    let mut check = |segment: &mut String| {
        benign |= BENIGN.contains(&segment.as_str());
        segment.clear();
    };
    let mut prev_lower = false;
    for &c in tail {
        if !c.is_ascii_alphanumeric() {
            check(&mut segment);
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower {
            check(&mut segment);
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        segment.push(char::from(c.to_ascii_lowercase()));
    }
    check(&mut segment);
    benign
}

/// The confidence of an assigned value, or `None` when it is not a secret:
/// too short, letters only, low entropy, a placeholder, a template, a code
/// reference, a path, a URL or a UUID. `raw` is the value before trailing
/// punctuation was trimmed from an unquoted value.
fn assess_value(raw: &str, value: &str, quoted: bool) -> Option<Confidence> {
    let len = value.chars().count();
    if len < 8 || is_placeholder_value(raw) || is_placeholder_value(value) {
        return None;
    }
    if !quoted && looks_like_code(value) {
        return None;
    }
    if value.chars().all(char::is_alphabetic) || is_uuid(value) || value.contains("://") {
        return None;
    }
    let lower = value.to_ascii_lowercase();
    if ["/", "~/", "./", "../"]
        .iter()
        .any(|p| lower.starts_with(p))
        || (value.as_bytes().get(1..3) == Some(b":\\"))
    {
        return None;
    }
    // The floor scales with length: a string of n characters measures at
    // most log2(n) bits each, so a fixed 3.0 would refuse every strong
    // 8-to-12-character password. Below 0.8 of the maximum is repetitive.
    let h = entropy_str(value);
    let chars = value.chars().count() as f64;
    if h < (0.8 * chars.log2()).min(3.0) || is_sequential(value) {
        return None;
    }
    let classes = [
        value.chars().any(|c| c.is_lowercase()),
        value.chars().any(|c| c.is_uppercase()),
        value.chars().any(|c| c.is_numeric()),
        value.chars().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|&&x| x)
    .count();
    Some(if h >= 3.5 && classes >= 3 {
        Confidence::High
    } else {
        Confidence::Medium
    })
}

/// Stopwords, masks, templates and the "your password here" family.
fn is_placeholder_value(v: &str) -> bool {
    const EXACT: &[&str] = &[
        "true",
        "false",
        "null",
        "none",
        "nil",
        "undefined",
        "empty",
        "changeme",
        "password",
        "passwd",
        "secret",
        "example",
        "redacted",
        "required",
        "optional",
        "hidden",
        "masked",
        "your_password_here",
    ];
    const CONTAINS: &[&str] = &[
        "example",
        "changeme",
        "change_me",
        "change-me",
        "redacted",
        "placeholder",
        "your_",
        "your-",
        "yourpassword",
        "yoursecret",
        "yourtoken",
        "_here",
        "-here",
        "xxxx",
        "***",
        "{{",
        "${",
        "$(",
        "dummy",
        "sample",
    ];
    let lower = v.to_ascii_lowercase();
    let first = v.chars().next();
    EXACT.contains(&lower.as_str())
        || CONTAINS.iter().any(|p| lower.contains(p))
        || matches!(first, Some('<' | '[' | '{'))
        // `$VAR`, `$db_pass`, but not `$ecr3t!`.
        || (first == Some('$') && v.bytes().skip(1).all(is_word_byte))
        // `%VAR%`, `%(password)s`, `%s`.
        || (first == Some('%') && (v.ends_with('%') || v.starts_with("%(") || v.len() <= 3))
}

/// A reference in code rather than a literal: `get_password()`,
/// `os.environ[`, `config.db.password`.
fn looks_like_code(v: &str) -> bool {
    let b = v.as_bytes();
    if !b
        .first()
        .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_')
    {
        return false;
    }
    let ident_end = b
        .iter()
        .position(|&c| !(is_word_byte(c) || c == b'.'))
        .unwrap_or(b.len());
    match b.get(ident_end) {
        Some(b'(' | b'[') => true,
        Some(_) => false,
        // All identifier characters: a dotted path of identifiers without
        // digits is a reference (`settings.SECRET_KEY`).
        None => {
            v.contains('.')
                && v.split('.').all(|seg| {
                    seg.bytes()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
                        && !seg.bytes().any(|c| c.is_ascii_digit())
                })
        }
    }
}

/// 8-4-4-4-12 hex.
fn is_uuid(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// At most two runs of consecutive characters (`12345678`, `abcdefgh`,
/// `abcd1234`, `87654321`).
fn is_sequential(v: &str) -> bool {
    let mut runs = 1;
    let mut step = 0i64;
    let mut prev: Option<i64> = None;
    for c in v.chars() {
        let c = i64::from(u32::from(c.to_ascii_lowercase()));
        if let Some(p) = prev {
            let d = c - p;
            if (d == 1 || d == -1) && (step == 0 || step == d) {
                step = d;
            } else {
                runs += 1;
                step = 0;
            }
        }
        prev = Some(c);
    }
    runs <= 2
}

// ---------------------------------------------------------------------------
// Shared helpers

/// A token body that is a placeholder: a run of five equal characters
/// (`XXXXX`, `00000`), six consecutive ones (`abcdef`, `123456`), or a word
/// that only placeholders contain.
fn is_placeholder_token(body: &[u8]) -> bool {
    let mut same = 1;
    let mut up = 1;
    let mut down = 1;
    for pair in body.windows(2) {
        let (a, c) = match pair {
            [a, c] => (a.to_ascii_lowercase(), c.to_ascii_lowercase()),
            _ => continue,
        };
        same = if a == c { same + 1 } else { 1 };
        up = if a.checked_add(1) == Some(c) {
            up + 1
        } else {
            1
        };
        down = if c.checked_add(1) == Some(a) {
            down + 1
        } else {
            1
        };
        if same >= 5 || up >= 6 || down >= 6 {
            return true;
        }
    }
    const WORDS: &[&[u8]] = &[b"example", b"placeholder", b"redacted", b"dummy", b"sample"];
    WORDS
        .iter()
        .any(|w| body.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w)))
}

/// Shannon entropy in bits per byte.
fn entropy(s: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in s {
        if let Some(n) = counts.get_mut(usize::from(c)) {
            *n += 1;
        }
    }
    shannon(counts.iter().copied(), s.len())
}

/// Shannon entropy in bits per character.
fn entropy_str(s: &str) -> f64 {
    let mut chars: Vec<char> = s.chars().collect();
    chars.sort_unstable();
    let n = chars.len();
    let runs = chars.chunk_by(|a, c| a == c).map(|r| r.len() as u32);
    shannon(runs, n)
}

fn shannon(counts: impl Iterator<Item = u32>, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    counts
        .filter(|&c| c > 0)
        .map(|c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn is_base64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'='
}

fn is_base64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// No word character just before `at`.
fn starts_word(b: &[u8], at: usize) -> bool {
    at.checked_sub(1)
        .and_then(|i| b.get(i))
        .is_none_or(|&c| !is_word_byte(c))
}

/// No word character at `at`.
fn ends_word(b: &[u8], at: usize) -> bool {
    b.get(at).is_none_or(|&c| !is_word_byte(c))
}

/// Past at most `MAX_BLANKS` spaces and tabs.
fn skip_blank(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while b.get(i).is_some_and(|&c| c == b' ' || c == b'\t') && i - from < MAX_BLANKS {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (detector, matched text, confidence) of every candidate.
    fn scan(text: &str) -> Vec<(Detector, &str, Confidence)> {
        let mut out = Vec::new();
        find(text, &mut out);
        out.iter()
            .map(|c| {
                assert!(text.is_char_boundary(c.start) && text.is_char_boundary(c.end));
                let matched = &text[c.start..c.end];
                assert!(!c.why.contains(matched), "why leaks the match");
                (c.detector, matched, c.confidence)
            })
            .collect()
    }

    fn only(text: &str, d: Detector) -> Vec<(&str, Confidence)> {
        scan(text)
            .into_iter()
            .filter(|f| f.0 == d)
            .map(|f| (f.1, f.2))
            .collect()
    }

    fn b64url(s: &str) -> String {
        BASE64URL.encode(s)
    }

    // Fixtures are assembled at run time so that this file holds no
    // string a repository secret scanner would flag.
    const AWS_BODY: &str = "QYLPMN5HHHFPZAM2";
    const AWS_SECRET: &str = concat!("Zx9aQ7+vR2mK/pL4", "tN8wB1cE6hJ3yU5oS0dFGk2R");
    const GH_BODY: &str = concat!("aB3dE5gH7jK9mN1pQ", "rS2tU4vW6xY8zA0bC2d");

    #[test]
    fn automaton_builds() {
        assert!(AUTOMATON.is_some());
    }

    #[test]
    fn aws_access_keys() {
        for prefix in ["AKIA", "ASIA", "ABIA", "ACCA"] {
            let key = format!("{prefix}{AWS_BODY}");
            let text = format!("id={key}, region=eu-west-1");
            assert_eq!(
                only(&text, Detector::AwsAccessKey),
                [(key.as_str(), Confidence::High)]
            );
        }
        let negatives = [
            format!("AKIA{}", "IOSFODNN7EXAMPLE"),
            format!("AKIA{}", "XXXXXXXXXXXXXXXX"),
            format!("AKIA{}", "ABCDEFGHIJKLMNOP"),
            format!("XAKIA{AWS_BODY}"),
            format!("AKIA{AWS_BODY}Q"),
            format!("AKIA{}", &AWS_BODY[..15]),
            format!("AKIA{}", AWS_BODY.to_lowercase()),
            format!("akia{AWS_BODY}"),
            format!("AKIA{}", "QYLPMN1HHHFPZAM2"),
        ];
        for text in &negatives {
            assert!(only(text, Detector::AwsAccessKey).is_empty(), "{text}");
        }
    }

    #[test]
    fn aws_secret_keys() {
        for text in [
            format!("aws_secret_access_key = {AWS_SECRET}\n"),
            format!("AWS_SECRET_ACCESS_KEY=\"{AWS_SECRET}\""),
            format!("\"SecretAccessKey\": \"{AWS_SECRET}\","),
            format!("my aws secret: {AWS_SECRET}"),
            format!("Access key ID,Secret access key\nAKIA{AWS_BODY},{AWS_SECRET}\n"),
        ] {
            assert_eq!(
                only(&text, Detector::AwsSecretKey),
                [(AWS_SECRET, Confidence::High)],
                "{text}"
            );
        }
        let sha = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
        for text in [
            format!(
                "aws_secret_access_key = {}",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
            ),
            format!("aws_secret_access_key = {sha}"),
            format!("aws_secret_access_key = {AWS_SECRET}A"),
            format!("aws_secret_access_key = {}", "x".repeat(40)),
            // No key name near it.
            format!("here is a value {AWS_SECRET}"),
            // Too far from the name.
            format!("aws secret {} {AWS_SECRET}", "word ".repeat(30)),
        ] {
            assert!(only(&text, Detector::AwsSecretKey).is_empty(), "{text}");
        }
    }

    fn pem_body() -> String {
        // 3 lines of 64 base64 characters and a short padded one.
        let line = "MIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi+Xa1bC2dE3fG4hI5jK6lM7nO8";
        format!("{line}\n{line}\n{line}\nq1w2e3r4==")
    }

    #[test]
    fn private_key_is_reported_header_to_footer() {
        let begin = concat!("-----BEGIN RSA ", "PRIVATE KEY-----");
        let end = concat!("-----END RSA ", "PRIVATE KEY-----");
        let block = format!("{begin}\n{}\n{end}", pem_body());
        let text = format!("here you go:\n{block}\nthanks");
        assert_eq!(
            only(&text, Detector::PrivateKey),
            [(block.as_str(), Confidence::High)]
        );

        for label in ["", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED ", "PGP "] {
            let block = format!(
                "-----BEGIN {label}PRIVATE KEY-----\n{}\n-----END {label}PRIVATE KEY-----",
                pem_body()
            );
            assert_eq!(only(&block, Detector::PrivateKey).len(), 1, "{label}");
        }
        let pgp = format!(
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\n{}\n=AbCd\n-----END PGP PRIVATE KEY BLOCK-----",
            pem_body()
        );
        assert_eq!(
            only(&pgp, Detector::PrivateKey),
            [(pgp.as_str(), Confidence::High)]
        );
    }

    #[test]
    fn private_key_encrypted_and_flattened() {
        let block = format!(
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\n{}\n-----END RSA PRIVATE KEY-----",
            pem_body()
        );
        assert_eq!(
            only(&block, Detector::PrivateKey),
            [(block.as_str(), Confidence::High)]
        );
        // A chat client that folded the newlines into spaces.
        let flat = format!(
            "-----BEGIN PRIVATE KEY----- {} -----END PRIVATE KEY-----",
            pem_body().replace('\n', " ")
        );
        assert_eq!(
            only(&flat, Detector::PrivateKey),
            [(flat.as_str(), Confidence::High)]
        );
    }

    #[test]
    fn truncated_private_key_is_reported_to_the_end_of_its_body() {
        let body = pem_body();
        let text = format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\nthanks, more later");
        let expected = format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}");
        assert_eq!(
            only(&text, Detector::PrivateKey),
            [(expected.as_str(), Confidence::High)]
        );
        // A last word of plain letters may be prose and is left out.
        let text = format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\nthanks");
        assert_eq!(
            only(&text, Detector::PrivateKey),
            [(expected.as_str(), Confidence::High)]
        );
    }

    #[test]
    fn not_private_keys() {
        let body = pem_body();
        for text in [
            format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----"),
            format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----"),
            format!("-----BEGIN RSA PUBLIC KEY-----\n{body}\n-----END RSA PUBLIC KEY-----"),
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
                .to_owned(),
            "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----".to_owned(),
            "-----BEGIN PRIVATE KEY-----\n<your key here>\n-----END PRIVATE KEY-----".to_owned(),
            "paste it between -----BEGIN PRIVATE KEY----- and -----END PRIVATE KEY-----".to_owned(),
        ] {
            assert!(only(&text, Detector::PrivateKey).is_empty(), "{text}");
        }
    }

    #[test]
    fn github_tokens() {
        for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
            let token = format!("{prefix}{GH_BODY}");
            let text = format!("export GH=\"{token}\"");
            assert_eq!(
                only(&text, Detector::GithubToken),
                [(token.as_str(), Confidence::High)]
            );
        }
        let pat = format!(
            "github_pat_{}_{}",
            "11AQZ7KD3F0xY7zQ2wE4rT",
            &format!("{GH_BODY}{GH_BODY}")[..59]
        );
        assert_eq!(pat.len(), 11 + 82);
        assert_eq!(
            only(&pat, Detector::GithubToken),
            [(pat.as_str(), Confidence::High)]
        );
        for text in [
            format!("ghp_{}", &GH_BODY[..35]),
            format!("ghp_{GH_BODY}x"),
            format!("xghp_{GH_BODY}"),
            format!("ghp_{}", "x".repeat(36)),
            format!("ghx_{GH_BODY}"),
            "ghp_YOUR_TOKEN_HERE".to_owned(),
            format!("{}x", pat),
        ] {
            assert!(only(&text, Detector::GithubToken).is_empty(), "{text}");
        }
    }

    #[test]
    fn slack_tokens_and_webhooks() {
        let bot = concat!(
            "xoxb-",
            "176536724810-1987469832300-pdFZKVeTuE8sk7oOcBrzbqgy"
        );
        let user = concat!(
            "xoxp-",
            "4186613214-4186613223-4186624518-77c3a7c8f7a3e6f9e1f5d0c5a7e1c7a1"
        );
        let refresh = concat!("xoxe.", "xoxp-1-Mi0yLTM0MzQ5NjM5MTk2NC0xNzMyNjg");
        for (text, token) in [
            (format!("SLACK_BOT_TOKEN={bot}"), bot),
            (format!("token: {user}."), user),
            (refresh.to_owned(), &refresh[5..]),
        ] {
            assert_eq!(
                only(&text, Detector::SlackToken),
                [(token, Confidence::High)],
                "{text}"
            );
        }
        let hook = concat!(
            "https://hooks.slack.com/services/",
            "T0A1B2C3D/B4E5F6G7H/",
            "Qw8eRt6yUi4oPa2sDf0gHj1k"
        );
        let text = format!("post to {hook} please");
        assert_eq!(
            only(&text, Detector::SlackToken),
            [(hook, Confidence::High)]
        );
        for text in [
            "xoxb-your-token-here".to_owned(),
            "xoxb-1234-5678".to_owned(),
            format!("x{bot}"),
            concat!(
                "https://hooks.slack.com/services/",
                "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
            )
            .to_owned(),
            "https://hooks.slack.com/services/T0A1B2C3D/B4E5F6G7H/short".to_owned(),
            format!("https://evil.example/{}", &hook[8..]).replace("/hooks.", ".hooks."),
        ] {
            assert!(only(&text, Detector::SlackToken).is_empty(), "{text}");
        }
    }

    #[test]
    fn stripe_keys() {
        let body = "51HqLyjWDarjtT1zdp7dcKw3Nf";
        for (prefix, conf) in [
            ("sk_live_", Confidence::High),
            ("rk_live_", Confidence::High),
            ("sk_test_", Confidence::Medium),
            ("rk_test_", Confidence::Medium),
        ] {
            let key = format!("{prefix}{body}");
            assert_eq!(
                only(&format!("STRIPE={key}"), Detector::StripeKey),
                [(key.as_str(), conf)]
            );
        }
        for text in [
            format!("pk_live_{body}"),
            format!("pk_test_{body}"),
            format!("sk_live_{}", &body[..23]),
            format!("sk_test_{}", "4eC39HqLyjWDarjtT1zdp7dc"),
            format!("sk_live_{}", "x".repeat(30)),
            format!("mask_live_{body}"),
        ] {
            assert!(only(&text, Detector::StripeKey).is_empty(), "{text}");
        }
    }

    #[test]
    fn google_api_keys() {
        let key = concat!("AIza", "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY");
        assert_eq!(key.len(), 39);
        let text = format!("maps?key={key}&v=3");
        assert_eq!(
            only(&text, Detector::GoogleApiKey),
            [(key, Confidence::High)]
        );
        for text in [
            key[..38].to_owned(),
            format!("{key}A"),
            format!("x{key}"),
            format!("AIza{}", "x".repeat(35)),
        ] {
            assert!(only(&text, Detector::GoogleApiKey).is_empty(), "{text}");
        }
    }

    #[test]
    fn jwts_must_decode() {
        let header = b64url(r#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = b64url(r#"{"sub":"1234567890","name":"Ada","iat":1516239022}"#);
        let sig = "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        let token = format!("{header}.{payload}.{sig}");
        let text = format!("Authorization: Bearer {token}. Thanks");
        assert_eq!(
            only(&text, Detector::Jwt),
            [(token.as_str(), Confidence::High)]
        );

        let no_alg = b64url(r#"{"typ":"JWT"}"#);
        let not_json = b64url("{\"sub\": oops");
        let array = b64url("[1,2]");
        for text in [
            format!("{no_alg}.{payload}.{sig}"),
            format!("{header}.{not_json}.{sig}"),
            format!("{header}.{array}.{sig}"),
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
            format!("{header}.{payload}.{sig}.{sig}"),
            format!("{header}.{payload}.a"),
            format!("x{token}"),
            "eyJhbGciOi.eyJzdWIi.c2ln".to_owned(),
            "eyJ.eyJ.eyJ".to_owned(),
        ] {
            assert!(only(&text, Detector::Jwt).is_empty(), "{text}");
        }
    }

    #[test]
    fn password_assignments_report_the_value_only() {
        for (text, value, conf) in [
            (
                "password=Xk9#mP2$vL7q!Zr",
                "Xk9#mP2$vL7q!Zr",
                Confidence::High,
            ),
            // Ten distinct characters cannot reach 3.5 bits: Medium.
            ("password=Xk9#mP2$vL", "Xk9#mP2$vL", Confidence::Medium),
            (
                "DB_PASSWORD: 'Tr0ub4dor&3'",
                "Tr0ub4dor&3",
                Confidence::Medium,
            ),
            (
                "DB_PASSWORD: 'Tr0ub4dor&3-Xq9!zK'",
                "Tr0ub4dor&3-Xq9!zK",
                Confidence::High,
            ),
            (
                r#"{"password": "S3cr3t!Pass", "user": "ada"}"#,
                "S3cr3t!Pass",
                Confidence::Medium,
            ),
            (
                "my password is hunter2-42ab, ok?",
                "hunter2-42ab",
                Confidence::Medium,
            ),
            (
                "My Password is: hunter42xyz!",
                "hunter42xyz!",
                Confidence::High,
            ),
            (
                "client_secret := \"a8f5f167f44f4964e6c998dee827110c\"",
                "a8f5f167f44f4964e6c998dee827110c",
                Confidence::Medium,
            ),
            (
                "'api_key' => 'k3y-9f8e7d6c5b',",
                "k3y-9f8e7d6c5b",
                Confidence::High,
            ),
            ("--pass=n0t-so-s3cret;", "n0t-so-s3cret", Confidence::Medium),
            ("dbPassword = Xk9#mP2$vL.", "Xk9#mP2$vL", Confidence::Medium),
            (
                "private_key: 0x4c0883a69102937d6231471b5dbb6204fe512961708279",
                "0x4c0883a69102937d6231471b5dbb6204fe512961708279",
                Confidence::Medium,
            ),
            ("GITHUB_TOKEN=83729104", "83729104", Confidence::Medium),
        ] {
            assert_eq!(
                only(text, Detector::PasswordAssignment),
                [(value, conf)],
                "{text}"
            );
        }
    }

    #[test]
    fn password_placeholders_and_prose_are_not_findings() {
        for text in [
            "I forgot my password again",
            "the password is correct",
            "my password is hunter2",
            "password: ********",
            "password = ${DB_PASSWORD}",
            "password=$DB_PASSWORD",
            "password: {{ vault_db_password }}",
            "password=%DB_PASSWORD%",
            "password: <your password>",
            "password = \"your_password_here\"",
            "password: changeme",
            "password: password",
            "password=true",
            "password: null",
            "password: example123",
            "password: [REDACTED]",
            "password: xxxxxxxxxx",
            "password: aaaaaaaaaa",
            "password: 12345678",
            "password: abcdefgh",
            "password: abcd1234",
            "password = get_password()",
            "password = os.environ['DB_PASSWORD']",
            "password: settings.DB_PASSWORD",
            "password_min_length = 12",
            "token_type: bearer",
            "secret_name: db-secret-2",
            "passport: AB1234567",
            "tokenizer=wordpiece-v2",
            "bypass=fa1l-0pen",
            "PWD=/home/ada/src",
            "token: 123e4567-e89b-12d3-a456-426614174000",
            "token_url: https://auth.example.org/x",
            "secret: abcdefghijklmnop",
            "pass is AB12CD34EF",
        ] {
            assert!(
                only(text, Detector::PasswordAssignment).is_empty(),
                "{text}"
            );
        }
    }

    #[test]
    fn one_candidate_per_span_when_names_overlap() {
        let text = format!("aws_secret_access_key = {AWS_SECRET}");
        let all = scan(&text);
        assert_eq!(
            all.iter().filter(|f| f.0 == Detector::AwsSecretKey).count(),
            1
        );
        assert!(
            all.iter()
                .filter(|f| f.0 == Detector::PasswordAssignment)
                .count()
                <= 1
        );
    }

    #[test]
    fn hard_negatives() {
        for text in [
            "request 123e4567-e89b-12d3-a456-426614174000 failed",
            "fixed in da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ada@laptop",
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEb4cqXNnnrwJmNCl1N+rzXv6RfXbI\n-----END PUBLIC KEY-----",
            "AKIAIOSFODNN7EXAMPLE",
            "password: ********",
            "password = ${DB_PASSWORD}",
            "I forgot my password again",
            "see https://example.com/path?q=eyJ",
        ] {
            assert_eq!(scan(text), [], "{text}");
        }
    }

    #[test]
    fn multibyte_text_never_panics() {
        let text = format!(
            "ünïcödé password=Pässwört9! 🔑 ghp_{GH_BODY}é eyJé.eyJ€.ä AKIA{AWS_BODY}ß -----BEGIN PRIVATE KEY-----\nÄÖÜ\n"
        );
        for (i, _) in text.char_indices() {
            scan(&text[i..]);
            scan(&text[..i]);
        }
        assert_eq!(
            only("password=Pässwört9!", Detector::PasswordAssignment),
            [("Pässwört9!", Confidence::Medium)]
        );
    }

    #[test]
    fn adversarial_input_runs() {
        const MIB: usize = 1 << 20;
        for unit in [
            "eyJ.eyJ.",
            "eyJ",
            "ghp_",
            "@",
            "password=",
            "password ",
            "passwordpassword",
            "awssecret",
            "aws secret ",
            "AKIA",
            "xoxb-1-",
            "sk_live_",
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----\nProc-Type: x\n",
            "hooks.slack.com/services/",
            "AAAA",
        ] {
            let text = unit.repeat(MIB / unit.len());
            let mut out = Vec::new();
            find(&text, &mut out);
        }
        // One long body after a header, read once.
        let text = format!("-----BEGIN PRIVATE KEY-----\n{}", "QUF1 ".repeat(MIB / 5));
        assert_eq!(only(&text, Detector::PrivateKey).len(), 1);
    }

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("password=".to_owned()),
            Just(" is ".to_owned()),
            Just("eyJ".to_owned()),
            Just(".".to_owned()),
            Just("ghp_".to_owned()),
            Just("AKIA".to_owned()),
            Just("-----BEGIN PRIVATE KEY-----\n".to_owned()),
            Just("-----END PRIVATE KEY-----".to_owned()),
            Just("xoxb-".to_owned()),
            Just("\"".to_owned()),
            "[a-zA-Z0-9+/=_-]{0,40}",
            "\\PC{0,8}",
            "[ \n\t:=]{0,3}",
        ]
    }

    proptest! {
        #[test]
        fn any_text_gives_sane_spans(parts in prop::collection::vec(fragment(), 0..24)) {
            let text = parts.concat();
            let mut out = Vec::new();
            find(&text, &mut out);
            for c in &out {
                prop_assert!(c.start < c.end && c.end <= text.len());
                prop_assert!(text.is_char_boundary(c.start) && text.is_char_boundary(c.end));
            }
        }
    }
}
