//! Payment card numbers: a known brand's IIN range and length, and Luhn.

use super::Candidate;
#[cfg(test)]
use super::digits::for_each_run;
use super::digits::{Run, luhn};
use crate::finding::{Confidence, Detector};

/// Every card in `text` (the scanner shares one pass over the digit runs
/// with the SSN finder instead, through [`from_run`]).
#[cfg(test)]
pub(crate) fn find(text: &str, out: &mut Vec<Candidate>) {
    let mut digits = Vec::with_capacity(24);
    for_each_run(text, |run| from_run(text.as_bytes(), run, &mut digits, out));
}

/// The card in one digit run, if there is one. `digits` is scratch space.
pub(crate) fn from_run(bytes: &[u8], run: &Run, digits: &mut Vec<u8>, out: &mut Vec<Candidate>) {
    {
        if after_iban_prefix(bytes, run.start()) {
            return;
        }
        // The whole run first; failing that, the card-shaped groups that
        // end it ("ref 12 4111 1111 1111 1111"), one step less sure. Never
        // a leading part: "4111 1111 1111 1111 5" is a longer number.
        if let Some(c) = candidate(run, 0, run.len, bytes, digits) {
            out.push(c);
            return;
        }
        for from in 1..run.len.saturating_sub(1) {
            if let Some(mut c) = candidate(run, from, run.len, bytes, digits) {
                c.confidence = c.confidence.lowered();
                out.push(c);
                return;
            }
        }
    }
}

fn candidate(
    run: &Run,
    from: usize,
    to: usize,
    bytes: &[u8],
    digits: &mut Vec<u8>,
) -> Option<Candidate> {
    let grouped = to - from > 1;
    if grouped && !(run.uniform(from, to) && card_layout(run, from, to)) {
        return None;
    }
    let total: usize = run.lengths(from, to).sum();
    if !(12..=19).contains(&total) {
        return None;
    }
    run.digits(bytes, from, to, digits);
    let brand = brand(digits)?;
    if !luhn(digits) || digits.iter().all(|&d| d == digits[0]) {
        return None;
    }
    Some(Candidate {
        detector: Detector::Card,
        start: run.groups[from].0,
        end: run.groups[to - 1].1,
        // Written the way cards are printed, it is hard to mistake for an
        // order number; a bare digit string needs context to be sure.
        confidence: if grouped {
            Confidence::High
        } else {
            Confidence::Medium
        },
        why: brand,
    })
}

/// How card numbers are written: groups of four with a shorter last one,
/// or the 4-6-5 / 4-6-4 layout of American Express and Diners.
fn card_layout(run: &Run, from: usize, to: usize) -> bool {
    let len = |i: usize| run.groups[i].1 - run.groups[i].0;
    let amex_or_diners =
        to - from == 3 && len(from) == 4 && len(from + 1) == 6 && matches!(len(from + 2), 4 | 5);
    amex_or_diners || ((from..to - 1).all(|i| len(i) == 4) && (1..=4).contains(&len(to - 1)))
}

/// Whether the digits at `start` continue a printed IBAN (`IE89 CDKH 3973
/// …`): groups of up to four letters and digits back to a country code and
/// check digits. Those digits are part of an account number, valid or not.
fn after_iban_prefix(b: &[u8], start: usize) -> bool {
    let mut end = start;
    for _ in 0..8 {
        if end < 2 || b[end - 1] != b' ' {
            return false;
        }
        let group_end = end - 1;
        let mut group_start = group_end;
        while group_start > 0
            && b[group_start - 1].is_ascii_alphanumeric()
            && group_end - group_start < 4
        {
            group_start -= 1;
        }
        let group = &b[group_start..group_end];
        if group.is_empty() || (group_start > 0 && b[group_start - 1].is_ascii_alphanumeric()) {
            return false;
        }
        if group.len() == 4
            && group[..2].iter().all(u8::is_ascii_alphabetic)
            && group[2..].iter().all(u8::is_ascii_digit)
            && super::iban::country_length(group[0], group[1]).is_some()
        {
            return true;
        }
        end = group_start;
    }
    false
}

/// The brand whose IIN range and lengths the number fits, described for
/// people; `None` for numbers no network issues.
fn brand(d: &[u8]) -> Option<&'static str> {
    let len = d.len();
    let prefix = |n: usize| {
        d.iter()
            .take(n)
            .fold(0u32, |acc, &x| acc * 10 + u32::from(x))
    };
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    let within = |lo: usize, hi: usize| (lo..=hi).contains(&len);
    if p1 == 4 && matches!(len, 13 | 16 | 19) {
        return Some("a Visa number that passes the Luhn check");
    }
    if ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16 {
        return Some("a Mastercard number that passes the Luhn check");
    }
    if matches!(p2, 34 | 37) && len == 15 {
        return Some("an American Express number that passes the Luhn check");
    }
    if (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622126..=622925).contains(&p6))
        && within(16, 19)
    {
        return Some("a Discover number that passes the Luhn check");
    }
    if (3528..=3589).contains(&p4) && within(16, 19) {
        return Some("a JCB number that passes the Luhn check");
    }
    if ((300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39)) && within(14, 19) {
        return Some("a Diners Club number that passes the Luhn check");
    }
    if p2 == 62 && within(16, 19) {
        return Some("a UnionPay number that passes the Luhn check");
    }
    if (2200..=2204).contains(&p4) && within(16, 19) {
        return Some("a Mir number that passes the Luhn check");
    }
    if matches!(
        p4,
        5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761 | 6762 | 6763
    ) && within(12, 19)
    {
        return Some("a Maestro number that passes the Luhn check");
    }
    if (matches!(p2, 60 | 81 | 82) || p3 == 508) && len == 16 {
        return Some("a RuPay number that passes the Luhn check");
    }
    if ((506099..=506198).contains(&p6) || (650002..=650027).contains(&p6))
        && matches!(len, 16 | 18 | 19)
    {
        return Some("a Verve number that passes the Luhn check");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(text: &str) -> Vec<(&str, Confidence)> {
        let mut out = Vec::new();
        find(text, &mut out);
        out.iter()
            .map(|c| (&text[c.start..c.end], c.confidence))
            .collect()
    }

    #[test]
    fn brands_and_layouts() {
        for (number, layout) in [
            ("4111111111111111", false),
            ("4111 1111 1111 1111", true),
            ("4111-1111-1111-1111", true),
            ("5555555555554444", false),
            ("2223003122003222", false), // Mastercard 2-series
            ("2221 0000 0000 0009", true),
            ("378282246310005", false),  // Amex, 15
            ("3782 822463 10005", true), // Amex layout
            ("6011111111111117", false),
            ("3530111333300000", false),       // JCB
            ("30569309025904", false),         // Diners, 14
            ("6200000000000005", false),       // UnionPay
            ("4222222222222", false),          // Visa, 13
            ("4111 1111 1111 1111 110", true), // Visa, 19
            ("2200 0000 0000 0004", true),     // Mir
            ("6759649826438453", false),       // Maestro
        ] {
            let text = format!("pay with {number} please");
            let found = spans(&text);
            assert_eq!(found.len(), 1, "{number}: {found:?}");
            assert_eq!(found[0].0, number);
            let expected = if layout {
                Confidence::High
            } else {
                Confidence::Medium
            };
            assert_eq!(found[0].1, expected, "{number}");
        }
    }

    #[test]
    fn not_cards() {
        for text in [
            "4111111111111112",             // Luhn fails
            "41111111111111110",            // inside a longer run
            "x4111111111111111",            // glued to a word
            "1234567812345670",             // no brand starts with 1
            "9780306406157",                // ISBN-13
            "490154203237518",              // an IMEI: 15 digits, Visa needs 13/16/19
            "4111 11 11111111 11",          // not a card layout
            "4111 1111-1111 1111",          // mixed separators
            "1700000000000",                // a timestamp
            "0000000000000000",             // no brand, all zeros
            "3.4111111111111111",           // a decimal
            "deadbeef4111111111111111cafe", // inside hex
            "4111111111111111.5",
        ] {
            assert!(spans(text).is_empty(), "{text}: {:?}", spans(text));
        }
    }

    #[test]
    fn leading_parts_of_longer_numbers_and_iban_groups_are_not_cards() {
        assert!(spans("use 4111 1111 1111 1111 5 lmk").is_empty());
        assert!(spans("card 6761 7013 1483 5323").is_empty());
        assert!(spans("bank account ie89 cdkh 3973 9486 6017 25").is_empty());
        assert!(spans("IBAN DE89 3704 0044 0532 0130 00").is_empty());
    }

    #[test]
    fn a_card_inside_other_groups_is_less_sure() {
        let found = spans("ref 12 4111 1111 1111 1111");
        assert_eq!(found, vec![("4111 1111 1111 1111", Confidence::Medium)]);
    }
}
