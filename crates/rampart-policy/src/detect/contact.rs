//! E-mail addresses and phone numbers (off by default).
//!
//! E-mail: every `@` (found with `memchr`) is expanded to a local part on
//! its left and a domain on its right, each read at most a bounded number of
//! characters and never past another `@`, so a scan is linear however many
//! `@` signs the text holds.
//!
//! Phone: one left-to-right pass over runs of digit groups. A run is read
//! once, whole, and then classified: `+` and 8 to 15 digits is an E.164
//! number (Medium); a North American `(555) 123-4567` or a trunk-prefixed
//! `030 1234567` is a national number (Low, for the context rules to raise).
//! Dates, times, versions, IP addresses and runs of digits that are longer
//! than a phone number are not phone numbers. Phones favour precision: a
//! number that shares a run with another (`2024-05-12 555-123-4567`) is
//! missed rather than guessed at.

use super::Candidate;
use crate::finding::{Confidence, Detector};

/// Longest local part (RFC 5321) and domain (RFC 1035) read.
const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;
const MAX_LABEL: usize = 63;
/// How far before a local part a `://` makes it URL user information.
const USERINFO_LOOKBACK: usize = 32;

pub(crate) fn find(text: &str, out: &mut Vec<Candidate>) {
    emails(text, out);
    phones(text, out);
}

// ---------------------------------------------------------------------------
// E-mail

fn is_local_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

fn is_domain_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '-')
}

fn emails(text: &str, out: &mut Vec<Candidate>) {
    for at in memchr::memchr_iter(b'@', text.as_bytes()) {
        if let Some((start, end)) = email_at(text, at) {
            out.push(Candidate {
                detector: Detector::Email,
                start,
                end,
                confidence: Confidence::Medium,
                why: "e-mail address",
            });
        }
    }
}

/// The span of the address whose `@` is at `at`, if it is one.
fn email_at(text: &str, at: usize) -> Option<(usize, usize)> {
    let before = text.get(..at)?;
    let after = text.get(at + 1..)?;

    // Local part: the run of local characters ending at `@`.
    let mut start = at;
    let mut count = 0;
    let mut prev = None;
    for (i, c) in before.char_indices().rev() {
        if !is_local_char(c) {
            prev = Some(c);
            break;
        }
        count += 1;
        if count > MAX_LOCAL {
            return None;
        }
        start = i;
    }
    // `a@b@c`: neither half is an address. `x://user@host`: URL userinfo.
    if prev == Some('@') || (matches!(prev, Some(':' | '/')) && is_userinfo(text, start)) {
        return None;
    }
    // Leading punctuation (`…bob@`, `+bob@`) is not part of the address.
    let local = before.get(start..)?;
    let trimmed = local.trim_start_matches(|c: char| !c.is_alphanumeric());
    start += local.len() - trimmed.len();
    let local = trimmed;
    if local.is_empty() || local.ends_with('.') || local.contains("..") {
        return None;
    }

    // Domain: the run of domain characters after `@`.
    let mut raw_len = 0;
    let mut next = None;
    for (count, (i, c)) in after.char_indices().enumerate() {
        if !is_domain_char(c) {
            next = Some(c);
            break;
        }
        if count >= MAX_DOMAIN {
            return None;
        }
        raw_len = i + c.len_utf8();
    }
    let raw = after.get(..raw_len)?;
    // Trailing dots and dashes are the sentence's (`mail bob@x.org.`).
    let domain = raw.trim_end_matches(['.', '-']);
    if matches!(next, Some('@' | '_')) {
        return None;
    }
    let end = at + 1 + domain.len();
    // `git@github.com:org/repo.git` is an scp-style path, not an address.
    if domain.len() == raw.len() && next == Some(':') {
        let following = after.get(raw_len + 1..).and_then(|r| r.chars().next());
        if following.is_some_and(|c| !c.is_whitespace()) {
            return None;
        }
    }
    valid_domain(domain).then_some((start, end))
}

/// `://` shortly before `local_start`, with no space between: the local
/// part is the user of a URL (`https://user:pass@host`).
fn is_userinfo(text: &str, local_start: usize) -> bool {
    let from = local_start.saturating_sub(USERINFO_LOOKBACK);
    let window = text.as_bytes().get(from..local_start).unwrap_or_default();
    let token = window
        .iter()
        .rposition(u8::is_ascii_whitespace)
        .and_then(|i| window.get(i + 1..))
        .unwrap_or(window);
    memchr::memmem::find(token, b"://").is_some()
}

/// Two or more labels of letters, digits and inner hyphens, the last an
/// alphabetic top-level domain of two or more letters. `icon@2x.png` (a
/// retina image name) is not an address.
fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let (Some(first), Some(tld)) = (labels.first(), labels.last()) else {
        return false;
    };
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.chars().count() <= MAX_LABEL
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && tld.chars().count() >= 2
        && tld.chars().all(char::is_alphabetic)
        && !(first.ends_with('x')
            && first.len() > 1
            && first.bytes().rev().skip(1).all(|c| c.is_ascii_digit()))
}

// ---------------------------------------------------------------------------
// Phone numbers

/// Most digits in a phone number (E.164).
const MAX_DIGITS: usize = 15;
/// Most groups kept for classification; longer runs are not phones.
const MAX_GROUPS: usize = 8;

/// One group of digits in a run.
#[derive(Clone, Copy, Debug)]
struct Group {
    digits: usize,
    first: u8,
    second: Option<u8>,
    /// The separator before the group (`b' '`, `b'-'`, `b'.'`, `b'/'`), if any.
    sep: Option<u8>,
    /// Written in parentheses: `(555)`.
    paren: bool,
}

/// A run of digit groups joined by single separators.
struct Run {
    groups: Vec<Group>,
    digits: usize,
    /// More than `MAX_GROUPS` groups.
    too_many: bool,
    end: usize,
}

fn phones(text: &str, out: &mut Vec<Candidate>) {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let next_digit = b.get(i + 1).is_some_and(u8::is_ascii_digit);
        let plus = c == b'+' && b.get(i + 1).is_some_and(|d| (b'1'..=b'9').contains(d));
        let starts = plus || c.is_ascii_digit() || (c == b'(' && next_digit);
        if !starts {
            i += 1;
            continue;
        }
        let run = read_run(b, if plus { i + 1 } else { i });
        let next = run.end.max(i + 1);
        if run.groups.is_empty() {
            i = next;
            continue;
        }
        let found = if !left_ok(b, i, plus) || !right_ok(b, run.end) {
            None
        } else if plus {
            e164(&run).then_some((Confidence::Medium, "international phone number (E.164)"))
        } else {
            national(&run).map(|why| (Confidence::Low, why))
        };
        if let Some((confidence, why)) = found {
            out.push(Candidate {
                detector: Detector::Phone,
                start: i,
                end: run.end,
                confidence,
                why,
            });
        }
        i = next;
    }
}

/// Reads digit groups from `at`: digits, or digits in parentheses, joined
/// by one separator each.
fn read_run(b: &[u8], at: usize) -> Run {
    let mut run = Run {
        groups: Vec::new(),
        digits: 0,
        too_many: false,
        end: at,
    };
    let mut i = at;
    let mut sep = None;
    loop {
        let paren = b.get(i) == Some(&b'(');
        let digits_at = if paren { i + 1 } else { i };
        let mut j = digits_at;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        let digits = j - digits_at;
        if digits == 0 || (paren && (b.get(j) != Some(&b')') || digits > 5)) {
            break;
        }
        let end = if paren { j + 1 } else { j };
        run.digits += digits;
        if run.groups.len() < MAX_GROUPS {
            run.groups.push(Group {
                digits,
                first: b.get(digits_at).copied().unwrap_or(b'0'),
                second: b.get(digits_at + 1).copied().filter(u8::is_ascii_digit),
                sep,
                paren,
            });
        } else {
            run.too_many = true;
        }
        run.end = end;
        // One separator and another group; after `(555)` the next group
        // may follow directly.
        let s = b
            .get(end)
            .copied()
            .filter(|c| matches!(c, b' ' | b'-' | b'.' | b'/'));
        let after = if s.is_some() { end + 1 } else { end };
        let continues = match s {
            Some(_) => b
                .get(after)
                .is_some_and(|&c| c.is_ascii_digit() || c == b'('),
            None => paren && b.get(after).is_some_and(u8::is_ascii_digit),
        };
        if !continues {
            break;
        }
        sep = s;
        i = after;
    }
    run
}

/// Nothing before the run that makes it part of a longer token: a letter,
/// a digit, or a joining character such as `-`, `.`, `/`, `#` or `$`.
fn left_ok(b: &[u8], at: usize, plus: bool) -> bool {
    let Some(&p) = at.checked_sub(1).and_then(|i| b.get(i)) else {
        return true;
    };
    if p.is_ascii_alphanumeric() || p == b'_' {
        return false;
    }
    plus || !matches!(p, b'-' | b'.' | b'/' | b'+' | b'#' | b'$' | b',' | b'\\')
}

/// Nothing after the run that makes it part of a longer token: a letter, a
/// digit, a time (`:30`), or a separator followed by more of a token.
fn right_ok(b: &[u8], end: usize) -> bool {
    let Some(&c) = b.get(end) else {
        return true;
    };
    let then = b.get(end + 1);
    if c.is_ascii_alphanumeric() || c == b'_' || c == b'%' {
        return false;
    }
    match c {
        b'-' | b'.' | b'/' | b':' | b',' => !then.is_some_and(u8::is_ascii_alphanumeric),
        _ => true,
    }
}

/// `+` and 8 to 15 digits, not a date.
fn e164(run: &Run) -> bool {
    !run.too_many && (8..=MAX_DIGITS).contains(&run.digits) && !is_date(&run.groups)
}

/// `2024-05-12`, `12.05.2024`, `5/12/24`: three groups and one separator.
fn is_date(groups: &[Group]) -> bool {
    let [a, b, c] = groups else {
        return false;
    };
    let sizes = (a.digits, b.digits, c.digits);
    b.sep.is_some() && b.sep == c.sep && matches!(sizes, (4, 1..=2, 1..=2) | (1..=2, 1..=2, 2 | 4))
}

/// The national formats: North American (`(555) 123-4567`,
/// `555-123-4567`, `1-555-123-4567`) and trunk-prefixed (`030 1234567`,
/// `020 7946 0958`, `01 23 45 67 89`).
fn national(run: &Run) -> Option<&'static str> {
    if run.too_many || !(7..=MAX_DIGITS).contains(&run.digits) {
        return None;
    }
    if north_american(&run.groups) {
        return Some("national phone number (North American format)");
    }
    if trunk_prefixed(&run.groups) {
        return Some("national phone number (trunk prefix and area code)");
    }
    None
}

fn north_american(groups: &[Group]) -> bool {
    // An optional country code 1.
    let groups = match groups {
        [one, rest @ ..]
            if rest.len() == 3 && !one.paren && one.digits == 1 && one.first == b'1' =>
        {
            rest
        }
        _ => groups,
    };
    let [area, exchange, line] = groups else {
        return false;
    };
    let shape = area.digits == 3
        && exchange.digits == 3
        && line.digits == 4
        && !exchange.paren
        && !line.paren;
    // Area codes start with 2-9 (`123-456-7890` is a placeholder).
    let nanp = (b'2'..=b'9').contains(&area.first);
    let seps = if area.paren {
        matches!(exchange.sep, None | Some(b' ' | b'-' | b'.'))
            && matches!(line.sep, Some(b' ' | b'-' | b'.'))
    } else {
        matches!(exchange.sep, Some(b' ' | b'-' | b'.')) && exchange.sep == line.sep
    };
    shape && nanp && seps
}

fn trunk_prefixed(groups: &[Group]) -> bool {
    let Some((area, rest)) = groups.split_first() else {
        return false;
    };
    // `0` then a non-zero digit (`00` is the international prefix).
    let trunk = area.first == b'0' && area.second.is_some_and(|d| d != b'0');
    if !trunk || rest.is_empty() {
        return false;
    }
    let subscriber: usize = rest.iter().map(|g| g.digits).sum();
    let total = area.digits + subscriber;
    // `01 23 45 67 89`: five pairs, one separator.
    let pairs = area.digits == 2
        && rest.len() == 4
        && rest.iter().all(|g| {
            g.digits == 2
                && !g.paren
                && g.sep.is_some()
                && g.sep == rest.first().and_then(|f| f.sep)
        });
    // `030 1234567`, `(030) 1234567`, `020 7946 0958`: area code of 2-5
    // digits, then groups of 3 or more.
    let area_groups = (2..=5).contains(&area.digits)
        && (5..=8).contains(&subscriber)
        && rest.iter().all(|g| {
            let sep_ok =
                matches!(g.sep, Some(b' ' | b'-' | b'/')) || (area.paren && g.sep.is_none());
            g.digits >= 3 && !g.paren && sep_ok
        });
    (9..=12).contains(&total) && (pairs || area_groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn only(text: &str, d: Detector) -> Vec<(&str, Confidence)> {
        let mut out = Vec::new();
        find(text, &mut out);
        out.iter()
            .filter(|c| c.detector == d)
            .map(|c| {
                let matched = &text[c.start..c.end];
                assert!(!c.why.contains(matched));
                (matched, c.confidence)
            })
            .collect()
    }

    fn emails_in(text: &str) -> Vec<&str> {
        only(text, Detector::Email)
            .into_iter()
            .map(|f| f.0)
            .collect()
    }

    fn phones_in(text: &str) -> Vec<(&str, Confidence)> {
        only(text, Detector::Phone)
    }

    #[test]
    fn emails() {
        for (text, email) in [
            (
                "mail ada.lovelace+dm@example.co.uk today",
                "ada.lovelace+dm@example.co.uk",
            ),
            ("<bob@mail.example.org>", "bob@mail.example.org"),
            ("write to bob@x.io.", "bob@x.io"),
            (
                "mailto:bob_smith-1@example.com?subject=hi",
                "bob_smith-1@example.com",
            ),
            ("jürgen@müller.de", "jürgen@müller.de"),
            ("“ada@example.com”", "ada@example.com"),
            ("…bob@example.com", "bob@example.com"),
            ("Email me at bob@example.com: thanks", "bob@example.com"),
        ] {
            assert_eq!(emails_in(text), [email], "{text}");
        }
        assert_eq!(
            only("a@example.com", Detector::Email),
            [("a@example.com", Confidence::Medium)]
        );
        assert_eq!(
            emails_in("a@example.com, b@example.org"),
            ["a@example.com", "b@example.org"]
        );
    }

    #[test]
    fn not_emails() {
        for text in [
            "@handle says hi",
            "user@localhost",
            "a@b.c",
            "lodash@4.17.21",
            "icon@2x.png",
            "a@b@c.com",
            "https://user:pw@host.example.com/x",
            "https://git@github.com/org/repo",
            "git@github.com:org/repo.git",
            "x@-bad-.com",
            "bob@example.123",
            ".@x.com",
            "bob.@x.com",
            "bo..b@x.com",
            "bob@x..com",
            "bob@x.com_backup",
            "@@@@",
            "a@",
            "@a.com",
        ] {
            assert!(emails_in(text).is_empty(), "{text}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(emails_in(&long_local).is_empty());
        let ok_local = format!("{}@example.com", "a".repeat(64));
        assert_eq!(emails_in(&ok_local), [ok_local.as_str()]);
    }

    #[test]
    fn international_phones_are_medium() {
        for (text, phone) in [
            ("call +1 (555) 123-4567 now", "+1 (555) 123-4567"),
            ("+44 20 7946 0958.", "+44 20 7946 0958"),
            ("tel:+4930123456", "+4930123456"),
            ("+49 (0)30 1234567", "+49 (0)30 1234567"),
            ("+33.1.23.45.67.89", "+33.1.23.45.67.89"),
            ("(+49-30-1234567)", "+49-30-1234567"),
        ] {
            assert_eq!(phones_in(text), [(phone, Confidence::Medium)], "{text}");
        }
    }

    #[test]
    fn national_phones_are_low() {
        for (text, phone) in [
            ("(555) 123-4567", "(555) 123-4567"),
            ("call 555-123-4567.", "555-123-4567"),
            ("555.123.4567", "555.123.4567"),
            ("555 123 4567", "555 123 4567"),
            ("1-555-123-4567", "1-555-123-4567"),
            ("(555)123-4567", "(555)123-4567"),
            ("Tel: 030 1234567", "030 1234567"),
            ("030/1234567", "030/1234567"),
            ("(030) 1234567", "(030) 1234567"),
            ("020 7946 0958", "020 7946 0958"),
            ("07700 900123", "07700 900123"),
            ("01 23 45 67 89", "01 23 45 67 89"),
        ] {
            assert_eq!(phones_in(text), [(phone, Confidence::Low)], "{text}");
        }
    }

    #[test]
    fn not_phones() {
        for text in [
            "2024-05-12",
            "on 12.05.2024 at 10:30",
            "05/12/2024",
            "05-12-2024",
            "10:30:00",
            "version 1.2.3",
            "v10.15.7",
            "192.168.1.10",
            "10.0.0.1",
            "4111 1111 1111 1111",
            "123-45-6789",
            "1234567890123456789",
            "order 5551234567",
            "+12",
            "+2024-05-12",
            "2024-05-12T10:00:00+02:00",
            "x+12345678",
            "123-456-7890",
            "555-123-4567-89",
            "555-123-45678",
            "0301234567890123",
            "ISBN 978-3-16-148410-0",
            "+1234567890123456",
            "ID-555-123-4567",
            "555-123-4567x",
            "555-1234",
            "00 49 30 1234567",
            "1,555-123-4567",
            "it grew 12.5% to 555.123.4567%",
        ] {
            assert!(phones_in(text).is_empty(), "{text}: {:?}", phones_in(text));
        }
    }

    #[test]
    fn adversarial_input_runs() {
        const MIB: usize = 1 << 20;
        for unit in [
            "@",
            "a@",
            "a.",
            "a@a.",
            "@a",
            "1 ",
            "1-",
            "(1)",
            "+1",
            "0",
            "1.1.",
            "(((",
            "+",
            "555-123-4567 ",
        ] {
            let text = unit.repeat(MIB / unit.len());
            let mut out = Vec::new();
            find(&text, &mut out);
        }
        let text = format!("{}@{}", "a".repeat(MIB), "b".repeat(MIB));
        assert!(emails_in(&text).is_empty());
    }

    #[test]
    fn multibyte_text_never_panics() {
        let text = "é@ü.de ü@é é+49 30 1234567é （030） ٣@x.de 😀@😀.com bob@x.😀";
        for (i, _) in text.char_indices() {
            let mut out = Vec::new();
            find(&text[i..], &mut out);
            find(&text[..i], &mut out);
        }
    }

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("@".to_owned()),
            Just("+".to_owned()),
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just(".".to_owned()),
            Just("://".to_owned()),
            "[a-z0-9.-]{0,12}",
            "[0-9 ./-]{0,12}",
            "\\PC{0,6}",
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
