//! Context: words near a candidate that make it more or less likely.
//!
//! Like Presidio's context enhancer and Google DLP's hotword rules, but on
//! an ordinal scale: a supporting word within the window raises the finding
//! one step, a contrary word ("order", "tracking", "IMEI") lowers it one
//! step, and when both appear they cancel. Matching is ASCII
//! case-insensitive on the normalised text, so it costs a few hundred
//! nanoseconds per candidate and nothing per byte of text.

use super::Candidate;
use crate::finding::{Confidence, Detector};
use aho_corasick::AhoCorasick;
use std::sync::LazyLock;

/// Bytes looked at before and after a candidate.
const BEFORE: usize = 48;
const AFTER: usize = 32;

fn words(detector: Detector) -> (&'static [&'static str], &'static [&'static str]) {
    match detector {
        Detector::Card => (
            &[
                "card",
                "credit",
                "debit",
                "visa",
                "mastercard",
                "amex",
                "discover",
                "jcb",
                "diners",
                "maestro",
                "unionpay",
                "cvv",
                "cvc",
                "exp",
                "payment",
                "pan",
                "kreditkarte",
                "tarjeta",
                "carte",
            ],
            &[
                "order",
                "tracking",
                "invoice",
                "imei",
                "isbn",
                "serial",
                "ref",
                "sku",
                "parcel",
                "shipment",
                "confirmation",
                "ticket",
                "booking",
                "transaction id",
                "timestamp",
                "phone",
                "tel",
            ],
        ),
        Detector::Ssn => (
            &[
                "ssn",
                "social security",
                "social sec",
                "ss#",
                "ss #",
                "sozialversicherung",
            ],
            &[
                "phone", "tel", "fax", "order", "tracking", "zip", "routing", "invoice", "ticket",
                "serial", "part", "po box", "isbn",
            ],
        ),
        Detector::Itin => (
            &["itin", "taxpayer", "tax id", "tin", "irs"],
            &[
                "phone", "tel", "fax", "order", "tracking", "zip", "routing", "invoice", "ticket",
            ],
        ),
        Detector::Iban => (
            &[
                "iban", "bank", "account", "transfer", "konto", "sepa", "bic", "swift",
            ],
            &[],
        ),
        Detector::Email => (&["email", "e-mail", "mail", "contact"], &[]),
        Detector::Phone => (
            &[
                "phone", "call", "tel", "mobile", "cell", "whatsapp", "fax", "ring", "number",
            ],
            &["order", "invoice", "tracking", "serial", "isbn", "version"],
        ),
        _ => (&[], &[]),
    }
}

/// Per detector, one automaton over its supporting and contrary words
/// (supporting ones first), so a window is read once whatever the lists.
static AUTOMATA: LazyLock<Vec<Option<(AhoCorasick, usize)>>> = LazyLock::new(|| {
    Detector::ALL
        .iter()
        .map(|&d| {
            let (raise, lower) = words(d);
            if raise.is_empty() && lower.is_empty() {
                return None;
            }
            let ac = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(raise.iter().chain(lower))
                .ok()?;
            Some((ac, raise.len()))
        })
        .collect()
});

/// The candidate's confidence after looking at the words around it.
pub(crate) fn adjust(text: &str, c: &Candidate) -> Confidence {
    let Some(Some((ac, raising))) = Detector::ALL
        .iter()
        .position(|&d| d == c.detector)
        .and_then(|i| AUTOMATA.get(i))
    else {
        return c.confidence;
    };
    let before = own_part_before(window(text, c.start.saturating_sub(BEFORE), c.start));
    let after = own_part_after(window(
        text,
        c.end,
        c.end.saturating_add(AFTER).min(text.len()),
    ));
    let (mut raise, mut lower) = (false, false);
    for hay in [before, after] {
        for m in ac.find_overlapping_iter(hay) {
            // "pan" is not in "company"; "exp" is in "exp:" and "exp.".
            let glued = (m.start() > 0 && hay[m.start() - 1].is_ascii_alphabetic())
                || hay.get(m.end()).is_some_and(u8::is_ascii_alphabetic);
            if glued {
                continue;
            }
            if m.pattern().as_usize() < *raising {
                raise = true;
            } else {
                lower = true;
            }
        }
    }
    match (raise, lower) {
        (true, false) => c.confidence.raised(),
        (false, true) => c.confidence.lowered(),
        _ => c.confidence,
    }
}

/// The part of the text before a candidate that can be about it: after
/// the last line break, `;` or digit, so "IMEI 49015…; pay with 5555…"
/// does not lend the IMEI's word to the card.
fn own_part_before(before: &[u8]) -> &[u8] {
    match before
        .iter()
        .rposition(|&b| b == b'\n' || b == b';' || b.is_ascii_digit())
    {
        Some(at) => &before[at + 1..],
        None => before,
    }
}

/// The part after a candidate that can be about it: up to the next line
/// break, `;`, digit or the end of a clause (`, ` or `. `), so the word
/// before the next number in a list is left to that number.
fn own_part_after(after: &[u8]) -> &[u8] {
    let mut end = after.len();
    for (i, &b) in after.iter().enumerate() {
        let clause_end = matches!(b, b',' | b'.') && after.get(i + 1) == Some(&b' ');
        if b == b'\n' || b == b';' || b.is_ascii_digit() || clause_end {
            end = i;
            break;
        }
    }
    &after[..end]
}

/// `text[from..to]`, widened to character boundaries.
fn window(text: &str, mut from: usize, mut to: usize) -> &[u8] {
    while from > 0 && !text.is_char_boundary(from) {
        from -= 1;
    }
    while to < text.len() && !text.is_char_boundary(to) {
        to += 1;
    }
    text.as_bytes().get(from..to).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, needle: &str, detector: Detector, confidence: Confidence) -> Confidence {
        let start = text.find(needle).unwrap_or(0);
        adjust(
            text,
            &Candidate {
                detector,
                start,
                end: start + needle.len(),
                confidence,
                why: "",
            },
        )
    }

    #[test]
    fn supporting_and_contrary_words() {
        let n = "4111111111111111";
        assert_eq!(
            at(
                &format!("my Visa: {n}"),
                n,
                Detector::Card,
                Confidence::Medium
            ),
            Confidence::High
        );
        assert_eq!(
            at(&format!("order {n}"), n, Detector::Card, Confidence::Medium),
            Confidence::Low
        );
        assert_eq!(
            at(&format!("IMEI {n}"), n, Detector::Card, Confidence::Medium),
            Confidence::Low
        );
        assert_eq!(
            at(
                &format!("card for order {n}"),
                n,
                Detector::Card,
                Confidence::Medium
            ),
            Confidence::Medium
        );
        assert_eq!(
            at(
                &format!("company {n}"),
                n,
                Detector::Card,
                Confidence::Medium
            ),
            Confidence::Medium
        );
        assert_eq!(
            at(
                &format!("{n} exp 12/29"),
                n,
                Detector::Card,
                Confidence::Medium
            ),
            Confidence::High
        );
        let s = "536228172";
        assert_eq!(
            at(&format!("my SSN is {s}"), s, Detector::Ssn, Confidence::Low),
            Confidence::Medium
        );
    }

    #[test]
    fn words_of_a_neighbouring_number_do_not_count() {
        let n = "5555555555554444";
        let t = format!("IMEI 490154203237518; also pay with {n}");
        assert_eq!(
            at(&t, n, Detector::Card, Confidence::Medium),
            Confidence::Medium
        );
        let t = format!("order {n} was cancelled, card 4111 1111 1111 1111");
        assert_eq!(
            at(&t, n, Detector::Card, Confidence::Medium),
            Confidence::Low
        );
        let s = "536228172";
        let t = format!("SSN: {s}. / Order number: 7666996026853");
        assert_eq!(
            at(&t, s, Detector::Ssn, Confidence::Low),
            Confidence::Medium
        );
        let t = format!("order #12\ncard {n}");
        assert_eq!(
            at(&t, n, Detector::Card, Confidence::Medium),
            Confidence::High
        );
    }

    #[test]
    fn windows_respect_char_boundaries() {
        let text = "ééééééééééééééééééééééééééééééééé 4111111111111111 ééééé";
        let n = "4111111111111111";
        assert_eq!(
            at(text, n, Detector::Card, Confidence::Medium),
            Confidence::Medium
        );
    }
}
