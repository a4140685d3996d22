//! IBANs: a country code, two check digits and the country's length of
//! letters and digits, passing the ISO 7064 mod-97 check. Case-insensitive,
//! grouped in fours or not.

use super::Candidate;
use crate::finding::{Confidence, Detector};

/// IBAN lengths by country (SWIFT IBAN registry).
const LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HN", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

/// The IBAN length of a country, case-insensitively.
pub(crate) fn country_length(a: u8, b: u8) -> Option<usize> {
    let code = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
    LENGTHS
        .binary_search_by(|(c, _)| c[..].cmp(&code[..]))
        .ok()
        .map(|i| LENGTHS[i].1)
}

/// Every IBAN in `text` (the scanner finds where they may start in its
/// one pass over the digits instead, and calls [`at`]).
#[cfg(test)]
pub(crate) fn find(text: &str, out: &mut Vec<Candidate>) {
    let b = text.as_bytes();
    super::digits::scan(text, |_| {}, |start| at(b, start, out));
}

/// The IBAN starting at `start` (two letters and two digits, not inside a
/// word), if there is one.
pub(crate) fn at(b: &[u8], start: usize, out: &mut Vec<Candidate>) {
    let mut chars = [0u8; 34];
    let Some(end) =
        country_length(b[start], b[start + 1]).and_then(|n| collect(b, start, n, &mut chars))
    else {
        return;
    };
    out.push(Candidate {
        detector: Detector::Iban,
        start,
        end,
        confidence: Confidence::High,
        why: "an IBAN whose length fits its country and whose check digits are right",
    });
}

/// Gathers `n` letters and digits from `start`, allowing single spaces
/// between them; returns the end if they form a valid IBAN that stops there.
fn collect(b: &[u8], start: usize, n: usize, chars: &mut [u8; 34]) -> Option<usize> {
    let mut count = 0;
    let mut i = start;
    while count < n {
        match b.get(i) {
            Some(&c) if c.is_ascii_alphanumeric() => {
                chars[count] = c.to_ascii_uppercase();
                count += 1;
                i += 1;
            }
            Some(b' ') if count >= 4 && b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) => {
                i += 1;
            }
            _ => return None,
        }
    }
    if b.get(i).is_some_and(|&c| super::is_word_byte(c)) {
        return None;
    }
    valid(&chars[..n]).then_some(i)
}

/// Check digits 02–98, a BBAN of letters and digits, and mod 97 == 1 with
/// the first four characters moved to the end.
fn valid(iban: &[u8]) -> bool {
    if !iban[2].is_ascii_digit() || !iban[3].is_ascii_digit() {
        return false;
    }
    let check = (iban[2] - b'0') * 10 + (iban[3] - b'0');
    if !(2..=98).contains(&check) {
        return false;
    }
    let mut rem = 0u32;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A' + 10)) % 97,
            _ => return false,
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find(text, &mut out);
        out.iter().map(|c| &text[c.start..c.end]).collect()
    }

    #[test]
    fn table_is_sorted() {
        assert!(LENGTHS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn grouped_plain_and_lowercase() {
        assert_eq!(
            found("iban DE89 3704 0044 0532 0130 00 thanks"),
            vec!["DE89 3704 0044 0532 0130 00"]
        );
        assert_eq!(
            found("DE89370400440532013000"),
            vec!["DE89370400440532013000"]
        );
        assert_eq!(
            found("gb82 west 1234 5698 7654 32."),
            vec!["gb82 west 1234 5698 7654 32"]
        );
        assert_eq!(found("NO9386011117947"), vec!["NO9386011117947"]);
        assert_eq!(
            found("(FR1420041010050500013M02606)"),
            vec!["FR1420041010050500013M02606"]
        );
    }

    #[test]
    fn not_ibans() {
        for text in [
            "DE89370400440532013001",  // check fails
            "DE8937040044053201300",   // too short for DE
            "DE893704004405320130001", // too long for DE
            "XX89370400440532013000",  // no such country
            "aDE89370400440532013000", // glued to a word
            "DE00370400440532013000",
        ] {
            assert!(found(text).is_empty(), "{text}");
        }
    }
}
