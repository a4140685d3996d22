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

/// The candidate's confidence after looking at the words around it.
pub(crate) fn adjust(text: &str, c: &Candidate) -> Confidence {
    let (raise, lower) = words(c.detector);
    if raise.is_empty() && lower.is_empty() {
        return c.confidence;
    }
    let before = window(text, c.start.saturating_sub(BEFORE), c.start);
    let after = window(text, c.end, c.end.saturating_add(AFTER).min(text.len()));
    let near = |list: &[&str]| {
        list.iter()
            .any(|w| contains_word(before, w) || contains_word(after, w))
    };
    match (near(raise), near(lower)) {
        (true, false) => c.confidence.raised(),
        (false, true) => c.confidence.lowered(),
        _ => c.confidence,
    }
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

/// ASCII case-insensitive search for `word` not glued to letters on either
/// side ("pan" is not in "company"; "exp" is in "exp:" and "exp.").
fn contains_word(hay: &[u8], word: &str) -> bool {
    let w = word.as_bytes();
    if w.is_empty() || hay.len() < w.len() {
        return false;
    }
    (0..=hay.len() - w.len()).any(|i| {
        hay[i..i + w.len()].eq_ignore_ascii_case(w)
            && !(i > 0 && hay[i - 1].is_ascii_alphabetic())
            && !hay.get(i + w.len()).is_some_and(u8::is_ascii_alphabetic)
    })
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
    fn windows_respect_char_boundaries() {
        let text = "ééééééééééééééééééééééééééééééééé 4111111111111111 ééééé";
        let n = "4111111111111111";
        assert_eq!(
            at(text, n, Detector::Card, Confidence::Medium),
            Confidence::Medium
        );
    }
}
