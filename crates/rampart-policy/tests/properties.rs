//! Properties of the scanner, redaction, policy parsing and link analysis
//! on generated input: nothing panics, spans are sound, valid numbers are
//! found wherever they stand, and redaction leaves none of their middle.
//!
//! Case counts are modest (256) so the suite stays fast; the fuzz targets
//! in `fuzz/` search far deeper.

use proptest::prelude::*;
use proptest::sample::Index;
use rampart_policy::file::{self, FileAction, FileFacts, FileRules};
use rampart_policy::link::{self, LinkRules};
use rampart_policy::{Confidence, Detector, Finding, Policy, Rule, Scanner, redact};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text that reaches the detectors: digits of several scripts, separators,
/// invisible characters, key words and prefixes, and arbitrary Unicode.
fn chatty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[0-9]{1,20}",
        "[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]{1,4}",
        "[0-9]{3}-[0-9]{2}-[0-9]{4}",
        "[A-Za-z]{2}[0-9]{2}[ A-Za-z0-9]{10,30}",
        "[ \\-.,/:#=()\"'\n]{1,3}",
        "[\u{200B}\u{200D}\u{2060}\u{00A0}\u{2010}\u{2212}\u{FF10}-\u{FF19}\u{0660}-\u{0669}]{1,4}",
        Just("card ".to_owned()),
        Just("SSN ".to_owned()),
        Just("IBAN ".to_owned()),
        Just("order #".to_owned()),
        Just("password=".to_owned()),
        Just("aws_secret_access_key=".to_owned()),
        Just("-----BEGIN RSA PRIVATE KEY-----\n".to_owned()),
        Just("\n-----END RSA PRIVATE KEY-----".to_owned()),
        "(AKIA|ghp_|github_pat_|xoxb-|sk_live_|AIza|eyJ)[A-Za-z0-9_\\-.]{0,90}",
        "[a-z]{1,10}@[a-z]{1,10}\\.[a-z]{2,3}",
        "\\+[0-9]{1,3} [0-9 ()\\-]{6,14}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// A line of the corpus with arbitrary text spliced in somewhere.
fn mutated_corpus_line() -> impl Strategy<Value = String> {
    (0u64..512, any::<Index>(), any::<String>()).prop_map(|(seed, at, insert)| {
        let text = rampart_policy::corpus::generate(seed, 1)
            .pop()
            .map(|s| s.text)
            .unwrap_or_default();
        let boundaries: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .collect();
        let at = boundaries[at.index(boundaries.len())];
        format!("{}{insert}{}", &text[..at], &text[at..])
    })
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), chatty(), mutated_corpus_line()]
}

/// Letters, punctuation and spaces of several scripts, no digits.
const DIGIT_FREE: &str =
    "[a-zA-Z !-/:-@\\[-`{-~éüßçñжДあ日本語😀🎉\u{0627}-\u{064A}\u{200B}\u{00A0}\u{0301}]{0,40}";
/// What may stand right next to a number: not a letter, digit or `_`.
const SEPARATOR: &str = "[ \n\t,;:()\\[\\]\"'!?*]";

/// Card brands as (IIN prefix range, lengths).
const BRANDS: &[(u64, u64, &[usize])] = &[
    (4, 4, &[13, 16, 19]),
    (51, 55, &[16]),
    (2221, 2720, &[16]),
    (34, 34, &[15]),
    (37, 37, &[15]),
    (6011, 6011, &[16, 19]),
    (644, 649, &[16]),
    (65, 65, &[16]),
    (3528, 3589, &[16]),
    (300, 305, &[14]),
    (36, 36, &[14]),
    (620, 621, &[16, 19]),
    (5018, 5018, &[12, 16, 19]),
    (6759, 6759, &[16]),
    (2200, 2204, &[16]),
];

fn luhn_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d) * if i % 2 == 0 { 2 } else { 1 };
            if d > 9 { d - 9 } else { d }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// A Luhn-valid number of a real brand, written plain, in fours with
/// spaces or dashes, or 4-6-5 / 4-6-4; and its digits.
fn card() -> impl Strategy<Value = (String, String)> {
    (
        any::<Index>(),
        any::<Index>(),
        any::<u64>(),
        proptest::collection::vec(0u8..10, 19),
        0usize..3,
    )
        .prop_map(|(brand, length, prefix, body, layout)| {
            let (lo, hi, lengths) = BRANDS[brand.index(BRANDS.len())];
            let len = lengths[length.index(lengths.len())];
            let prefix = lo + prefix % (hi - lo + 1);
            let mut digits: Vec<u8> = prefix.to_string().bytes().map(|b| b - b'0').collect();
            digits.extend(&body[..len - 1 - digits.len()]);
            digits.push(luhn_digit(&digits));
            let plain: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
            let groups: &[usize] = match len {
                15 => &[4, 6, 5],
                14 => &[4, 6, 4],
                _ => &[4, 4, 4, 4, 4],
            };
            let sep = match layout {
                0 => return (plain.clone(), plain),
                1 => " ",
                _ => "-",
            };
            let mut written = String::new();
            let mut at = 0;
            for &g in groups {
                if at < len {
                    if at > 0 {
                        written.push_str(sep);
                    }
                    written.push_str(&plain[at..(at + g).min(len)]);
                    at = (at + g).min(len);
                }
            }
            (written, plain)
        })
}

/// A valid SSN written 3-2-4 with dashes or spaces, and its digits.
fn ssn() -> impl Strategy<Value = (String, String)> {
    (1u32..900, 1u32..100, 1u32..10_000, prop::bool::ANY)
        .prop_filter("not area 666", |(area, _, _, _)| *area != 666)
        .prop_filter("not a published sample", |(a, g, s, _)| {
            ![(78, 5, 1120), (219, 9, 9999), (123, 45, 6789)].contains(&(*a, *g, *s))
        })
        .prop_filter("not one repeated digit", |(a, g, s, _)| {
            let d = format!("{a:03}{g:02}{s:04}");
            d.bytes().any(|b| Some(b) != d.bytes().next())
        })
        .prop_map(|(a, g, s, dashed)| {
            let sep = if dashed { "-" } else { " " };
            (
                format!("{a:03}{sep}{g:02}{sep}{s:04}"),
                format!("{a:03}{g:02}{s:04}"),
            )
        })
}

/// `number` between digit-free text, nothing alphanumeric touching it.
fn embedded(
    number: impl Strategy<Value = (String, String)>,
) -> impl Strategy<Value = (String, std::ops::Range<usize>, String)> {
    (DIGIT_FREE, SEPARATOR, number, SEPARATOR, DIGIT_FREE).prop_map(
        |(before, sep1, (written, digits), sep2, after)| {
            let start = before.len() + sep1.len();
            let text = format!("{before}{sep1}{written}{sep2}{after}");
            (text, start..start + written.len(), digits)
        },
    )
}

fn ascii_digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn is_number_rule(f: &Finding) -> bool {
    matches!(
        f.rule,
        Rule::Builtin(Detector::Card | Detector::Ssn | Detector::Itin | Detector::Iban)
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn scanning_never_panics_and_spans_are_sound(text in any_text()) {
        let findings = Scanner::all_builtin().scan(&text);
        for f in &findings {
            prop_assert!(f.span.start < f.span.end, "empty span {:?} in {:?}", f, text);
            prop_assert!(f.span.end <= text.len(), "{:?} past the end of {:?}", f, text);
            prop_assert!(
                text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end),
                "{:?} not on char boundaries of {:?}", f, text
            );
        }
        prop_assert!(
            findings.windows(2).all(|w| w[0].span.start <= w[1].span.start),
            "findings out of order in {:?}", text
        );
        let _ = redact(&text, &findings);
    }

    #[test]
    fn redaction_never_panics_on_any_spans(
        text in any_text(),
        spans in proptest::collection::vec((0usize..300, 0usize..300, 0usize..15), 0..6),
    ) {
        let findings: Vec<Finding> = spans
            .into_iter()
            .map(|(a, b, d)| Finding {
                rule: Rule::Builtin(Detector::ALL[d]),
                span: a..b,
                confidence: Confidence::High,
                why: String::new(),
            })
            .collect();
        let _ = redact(&text, &findings);
    }

    #[test]
    fn valid_cards_are_found_wherever_they_stand((text, span, _) in embedded(card())) {
        let findings = Scanner::all_builtin().scan(&text);
        prop_assert!(
            findings
                .iter()
                .any(|f| f.rule == Rule::Builtin(Detector::Card) && f.span == span),
            "{:?} at {:?}: {:?}", text, span, findings
        );
    }

    #[test]
    fn redacted_cards_keep_at_most_their_ends((text, _, digits) in embedded(card())) {
        let findings = Scanner::all_builtin().scan(&text);
        let out = ascii_digits(&redact(&text, &findings));
        let middle = &digits[4..digits.len() - 4];
        prop_assert!(out.len() <= 8 && !out.contains(middle), "{:?} -> {:?}", text, out);
    }

    #[test]
    fn redacted_ssns_keep_at_most_the_last_four((text, _, digits) in embedded(ssn())) {
        let findings = Scanner::all_builtin().scan(&text);
        let out = ascii_digits(&redact(&text, &findings));
        prop_assert!(out.is_empty() || out == digits[5..], "{:?} -> {:?}", text, out);
    }

    #[test]
    fn ascii_without_digits_has_no_numbers(text in "[ -/:-~\t\n]{0,300}") {
        let findings = Scanner::all_builtin().scan(&text);
        prop_assert!(!findings.iter().any(is_number_rule), "{:?}: {:?}", text, findings);
    }

    #[test]
    fn policy_parse_never_panics(source in any::<String>()) {
        let _ = Policy::parse(&source);
    }

    #[test]
    fn policies_that_parse_compile_and_round_trip(source in policy_source()) {
        if let Ok(policy) = Policy::parse(&source) {
            let scanner = Scanner::new(&policy.dlp);
            prop_assert!(scanner.is_ok(), "{:?} parsed but does not compile", source);
            if let Ok(scanner) = scanner {
                let _ = scanner.scan("card 4111 1111 1111 1111 project falcon EMP-123456");
            }
            let again = Policy::parse(&policy.to_json());
            prop_assert_eq!(again.as_ref().ok(), Some(&policy), "{:?}", source);
        }
    }

    #[test]
    fn link_analysis_never_panics(text in link_text(), rules in link_rules()) {
        let _ = link::analyze(&text, &rules);
        let _ = link::analyze(&text, &LinkRules::default());
    }

    #[test]
    fn file_analysis_never_panics(
        name in file_name(),
        head in file_head(),
        size in prop_oneof![Just(None), any::<u64>().prop_map(Some)],
        sha256 in proptest::option::of(any::<[u8; 32]>()),
    ) {
        let _ = file::sniff(&head);
        let facts = FileFacts {
            name: &name,
            head: &head,
            size: size.unwrap_or(head.len() as u64),
            sha256,
        };
        for w in file::analyze(&facts, &FileRules::default()) {
            prop_assert!(w.action != FileAction::Allow, "{:?}", w);
            prop_assert!(!w.explanation.is_empty(), "{:?}", w);
        }
    }

    #[test]
    fn url_hash_prefix_never_panics(url in link_text(), bytes in 0usize..40) {
        let _ = link::url_hash_prefix(&url, bytes);
    }
}

/// TOML documents built from the schema's sections with arbitrary values:
/// most parse, some break a rule or the syntax.
fn policy_source() -> impl Strategy<Value = String> {
    let action = prop_oneof![
        9 => prop::sample::select(vec!["block", "warn", "redact", "audit", "off"]).prop_map(str::to_owned),
        1 => "[a-z]{0,8}",
    ];
    let confidence = prop::sample::select(vec!["", "low", "medium", "high", "x"]);
    let name = prop_oneof![
        4 => prop::sample::select(Detector::ALL.map(|d| d.id()).to_vec()).prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
    ];
    let detector = (name, action.clone(), confidence).prop_map(|(n, a, c)| {
        let c = if c.is_empty() {
            String::new()
        } else {
            format!("min_confidence = \"{c}\"\n")
        };
        format!("[detectors.{n}]\naction = \"{a}\"\n{c}")
    });
    let matcher = prop_oneof![
        "[a-zA-Z][a-zA-Z ]{0,20}".prop_map(|k| format!("keywords = [\"{k}\"]\n")),
        "[a-zA-Z0-9 \\-_]{0,20}".prop_map(|r| format!("regex = '{r}'\n")),
        "[^'\n]{0,30}".prop_map(|r| format!("regex = '{r}'\n")),
    ];
    let custom =
        ("[a-z][a-z\\-]{0,12}", matcher, action, "[a-z ]{0,20}").prop_map(|(id, m, a, d)| {
            format!("[[custom]]\nid = \"{id}\"\ndescription = \"{d}\"\n{m}action = \"{a}\"\n")
        });
    let domain = prop_oneof![
        4 => "[a-z][a-z0-9\\-]{0,10}\\.(com|org|example|zip)",
        1 => "[a-z0-9.\\-]{0,20}",
    ];
    let hash = prop_oneof!["[0-9a-f]{8,64}", "[0-9a-f]{0,70}"];
    let links = (domain.clone(), domain, hash, prop::bool::ANY).prop_map(|(o, b, h, w)| {
        format!(
            "[links]\norg_domains = [\"{o}\"]\nblocked_domains = [\"{b}\"]\n\
             blocked_url_hashes = [\"{h}\"]\nwarn_shorteners = {w}\n"
        )
    });
    let files = "[a-z_]{1,12} = \"[a-z]{0,8}\"\n".prop_map(|kv| format!("[files]\n{kv}"));
    let section = prop_oneof![
        4 => detector,
        3 => custom,
        2 => links,
        1 => files,
        1 => any::<String>(),
    ];
    let version = prop_oneof![
        9 => Just("version = 1\n".to_owned()),
        1 => "version = [0-9]{1,3}\n",
    ];
    (version, proptest::collection::vec(section, 0..5))
        .prop_map(|(v, sections)| format!("{v}{}", sections.concat()))
}

/// Text with links in it: schemes, Markdown, user info, IPs, international
/// and mixed-script names, invisible and bidirectional characters.
fn link_text() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        "[a-z0-9\\-]{1,12}(\\.[a-z]{2,6}){1,3}",
        "[a-zа-яα-ωé0-9\\-]{1,12}\\.(com|org|ru|de|xn--p1ai|zip)",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        "0x[0-9a-f]{1,8}",
        "\\[[0-9a-f:]{2,20}\\]",
        prop::sample::select(vec![
            "paypal.com",
            "rnicrosoft.com",
            "paypal.com.evil.io",
            "аррӏе.com",
            "bit.ly",
            "xn--80ak6aa92e.com",
        ])
        .prop_map(str::to_owned),
    ];
    let link = (
        prop::sample::select(vec![
            "https://", "http://", "www.", "", "hxxp://", "HTTPS://",
        ]),
        "([a-z]{1,8}(:[a-z]{0,8})?@)?",
        host,
        "(:[0-9]{1,6})?",
        "(/[a-zA-Z0-9%._~\\-\u{202E}\u{200B}]{0,20}){0,3}(\\?[a-z=&%0-9]{0,20})?(#[a-z]{0,8})?",
    )
        .prop_map(|(scheme, user, host, port, path)| format!("{scheme}{user}{host}{port}{path}"));
    let piece = prop_oneof![
        link.clone(),
        (link.clone(), "[^\\]]{0,20}").prop_map(|(l, t)| format!("[{t}]({l})")),
        (link.clone(), link).prop_map(|(a, b)| format!("[{a}]({b})")),
        "[ \n,.;:()<>\"']{1,3}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

fn link_rules() -> impl Strategy<Value = LinkRules> {
    let domains = proptest::collection::vec("[a-zа-я0-9.\\-]{0,16}", 0..4);
    (
        domains.clone(),
        domains,
        proptest::collection::vec("[0-9a-fA-F]{0,70}", 0..3),
        prop::bool::ANY,
    )
        .prop_map(
            |(org_domains, blocked_domains, blocked_url_hashes, warn_shorteners)| LinkRules {
                org_domains,
                blocked_domains,
                blocked_url_hashes,
                warn_shorteners,
            },
        )
}

/// File names: ordinary, double extensions, bidi controls, padding,
/// arbitrary Unicode.
fn file_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 _\\-]{0,20}(\\.[a-zA-Z0-9]{1,5}){0,3}",
        "[a-z]{1,8}\u{202E}[a-z]{1,5}\\.(exe|pdf|scr)",
        "[a-z]{1,8}\\.(pdf|jpg|docx) {0,8}\\.(exe|scr|js|lnk)",
        any::<String>(),
    ]
}

/// First bytes: a known magic number followed by arbitrary bytes, or just
/// arbitrary bytes.
fn file_head() -> impl Strategy<Value = Vec<u8>> {
    let magic = prop::sample::select(vec![
        &b""[..],
        b"MZ",
        b"\x7fELF",
        b"\xcf\xfa\xed\xfe",
        b"\xca\xfe\xba\xbe",
        b"PK\x03\x04",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"%PDF-",
        b"{\\rtf",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",
        b"GIF89a",
        b"RIFF\0\0\0\0WEBP",
        b"\0\0\0\x18ftypmp42",
        b"\x1f\x8b",
        b"7z\xbc\xaf\x27\x1c",
        b"Rar!\x1a\x07",
        b"#!/bin/sh\n",
        b"\0asm\x01\0\0\0",
        b"dex\n035\0",
        b"L\0\0\0\x01\x14\x02\0",
        b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    ]);
    (magic, proptest::collection::vec(any::<u8>(), 0..600)).prop_map(|(magic, rest)| {
        let mut head = magic.to_vec();
        head.extend(rest);
        head
    })
}
