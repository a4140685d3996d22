//! The fuzz entry points of `rampart-policy`, one per target in
//! `fuzz_targets/`. They live here, not in the targets, so that
//! `tests/fuzz_corpus.rs` replays every corpus file through exactly the
//! same code in the ordinary `cargo test` (it includes this file as a
//! module).
//!
//! Each entry point takes arbitrary bytes (as UTF-8, lossily, where the API
//! takes text) and checks what must hold for any input, besides not
//! panicking: spans inside the text on character boundaries, policies that
//! parse also compile and survive their canonical JSON.

use rampart_policy::file::{self, FileAction, FileFacts, FileRules};
use rampart_policy::link::{LinkChecker, LinkRules};
use rampart_policy::{Policy, Scanner, redact};
use std::sync::OnceLock;

/// Every built-in detector over the text, then redaction of what it found.
pub fn scan(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let scanner = Scanner::all_builtin();
    let findings = scanner.scan(&text);
    for f in &findings {
        assert!(
            f.span.start < f.span.end && f.span.end <= text.len(),
            "span {:?} outside a text of {} bytes",
            f.span,
            text.len()
        );
        assert!(
            text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end),
            "span {:?} splits a character",
            f.span
        );
        assert!(!f.why.is_empty(), "a finding without a reason");
    }
    let redacted = redact(&text, &findings);
    // Scanning what redaction produced must not panic either.
    let _ = scanner.scan(&redacted);
}

/// A policy document, TOML or JSON. One that parses must compile and come
/// back unchanged from its canonical JSON.
pub fn policy_parse(data: &[u8]) {
    let source = String::from_utf8_lossy(data);
    let Ok(policy) = Policy::parse(&source) else {
        return;
    };
    let scanner = Scanner::new(&policy.dlp);
    assert!(
        scanner.is_ok(),
        "a policy that parses does not compile: {scanner:?}"
    );
    if let Ok(scanner) = scanner {
        let _ = scanner.scan("card 4111 1111 1111 1111, falcon launch, EMP-123456");
    }
    let again = Policy::parse(&policy.to_json());
    assert!(
        again.as_ref().is_ok_and(|again| *again == policy),
        "the canonical JSON does not give the policy back: {again:?}"
    );
}

/// The links of a message. Input is `text`, or `policy \0 text` where
/// `policy` is a policy document whose `[links]` rules are used.
pub fn links(data: &[u8]) {
    static DEFAULT: OnceLock<LinkChecker> = OnceLock::new();
    let (rules, text) = match data.iter().position(|&b| b == 0) {
        Some(at) => {
            let rules = Policy::parse(&String::from_utf8_lossy(&data[..at]))
                .map(|p| p.links)
                .ok();
            (rules, &data[at + 1..])
        }
        None => (None, data),
    };
    let text = String::from_utf8_lossy(text);
    let warnings = match rules {
        Some(rules) => rampart_policy::link::analyze(&text, &rules),
        None => DEFAULT
            .get_or_init(|| LinkChecker::new(&LinkRules::default()))
            .check(&text),
    };
    for w in &warnings {
        assert!(
            !w.explanation.is_empty(),
            "a warning without an explanation"
        );
    }
    for word in text.split_whitespace().take(8) {
        let _ = rampart_policy::link::url_hash_prefix(word, 4);
    }
}

/// A file's name and first bytes: what it really is, and what the rules
/// say about it. Input is `name \0 bytes` (a name of at most 255 bytes), or
/// just bytes. The file is checked as given, as a prefix of a larger file,
/// and with its "hash" on the blocklist.
pub fn files(data: &[u8]) {
    let (name, head) = match data.iter().position(|&b| b == 0) {
        Some(at) if at <= 255 => (String::from_utf8_lossy(&data[..at]), &data[at + 1..]),
        _ => ("file".into(), data),
    };
    let _ = file::sniff(head);
    let mut sha256 = [0u8; 32];
    for (slot, b) in sha256.iter_mut().zip(head.iter().rev()) {
        *slot = *b;
    }
    let blocking = FileRules {
        blocked_hashes: vec![sha256.iter().map(|b| format!("{b:02x}")).collect()],
        ..FileRules::default()
    };
    let whole = head.len() as u64;
    for (size, hash, rules) in [
        (whole, None, &FileRules::default()),
        (
            whole.saturating_mul(1000).max(1 << 20),
            Some(sha256),
            &blocking,
        ),
        (0, Some(sha256), &FileRules::default()),
    ] {
        let facts = FileFacts {
            name: &name,
            head,
            size,
            sha256: hash,
        };
        for w in file::analyze(&facts, rules) {
            assert!(
                w.action != FileAction::Allow,
                "{:?} warns with action allow",
                w.risk
            );
            assert!(
                !w.explanation.is_empty(),
                "{:?} without an explanation",
                w.risk
            );
        }
    }
}
