//! US Social Security numbers, and ITINs, which share their shape.
//!
//! An SSN is AAA-GG-SSSS with area 001–899 except 666, group 01–99 and
//! serial 0001–9999. Area 9XX was never issued as an SSN: with a group in
//! the IRS ranges it is an ITIN, otherwise nothing. There is no checksum,
//! so a bare nine-digit number stays at low confidence unless the words
//! around it say what it is.

use super::Candidate;
use crate::finding::{Confidence, Detector};

/// Well-known sample numbers that appear in documentation and ads.
const SAMPLES: &[&str] = &["078051120", "219099999", "123456789", "987654320"];

/// Every SSN and ITIN in `text` (the scanner shares one pass over the
/// digit runs with the card finder instead, through [`from_run`]).
#[cfg(test)]
pub(crate) fn find(text: &str, out: &mut Vec<Candidate>) {
    super::digits::for_each_run(text, |run| from_run(text.as_bytes(), run, out));
}

/// The SSN or ITIN that one digit run is, if it is one.
pub(crate) fn from_run(b: &[u8], run: &super::digits::Run, out: &mut Vec<Candidate>) {
    {
        let len = |i: usize| run.groups[i].1 - run.groups[i].0;
        let formatted = match run.len {
            3 if (len(0), len(1), len(2)) == (3, 2, 4) && run.uniform(0, 3) => true,
            1 if len(0) == 9 => false,
            _ => return,
        };
        let mut digits = [0u8; 9];
        let mut n = 0;
        for &(s, e) in run.groups() {
            for &x in &b[s..e] {
                digits[n] = x;
                n += 1;
            }
        }
        let Some((detector, why)) = classify(&digits) else {
            return;
        };
        out.push(Candidate {
            detector,
            start: run.start(),
            end: run.end(),
            confidence: if formatted {
                Confidence::Medium
            } else {
                Confidence::Low
            },
            why,
        });
    }
}

fn classify(d: &[u8; 9]) -> Option<(Detector, &'static str)> {
    let num = |r: std::ops::Range<usize>| {
        d[r].iter()
            .fold(0u32, |acc, &x| acc * 10 + u32::from(x - b'0'))
    };
    let (area, group, serial) = (num(0..3), num(3..5), num(5..9));
    if group == 0 || serial == 0 || d.iter().all(|&x| x == d[0]) {
        return None;
    }
    if SAMPLES.iter().any(|s| s.as_bytes() == d) {
        return None;
    }
    match area {
        0 | 666 => None,
        1..=899 => Some((
            Detector::Ssn,
            "a number in the format and ranges of a US social security number",
        )),
        _ if matches!(group, 50..=65 | 70..=88 | 90..=92 | 94..=99) => Some((
            Detector::Itin,
            "a number in the format and ranges of a US taxpayer identification number",
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(Detector, &str, Confidence)> {
        let mut out = Vec::new();
        find(text, &mut out);
        out.iter()
            .map(|c| (c.detector, &text[c.start..c.end], c.confidence))
            .collect()
    }

    #[test]
    fn ssn_shapes() {
        assert_eq!(
            found("ssn 536-22-8172."),
            vec![(Detector::Ssn, "536-22-8172", Confidence::Medium)]
        );
        assert_eq!(
            found("536 22 8172"),
            vec![(Detector::Ssn, "536 22 8172", Confidence::Medium)]
        );
        assert_eq!(
            found("536228172"),
            vec![(Detector::Ssn, "536228172", Confidence::Low)]
        );
    }

    #[test]
    fn itin_is_its_own_type() {
        assert_eq!(
            found("912-70-1234"),
            vec![(Detector::Itin, "912-70-1234", Confidence::Medium)]
        );
        assert!(found("912-40-1234").is_empty());
    }

    #[test]
    fn invalid_ranges_and_samples() {
        for text in [
            "000-12-3456",
            "666-12-3456",
            "123-00-4567",
            "123-45-0000",
            "111-11-1111",
            "078-05-1120",
            "123-45-6789",
            "536-22 8172",  // mixed separators
            "536-22-81721", // too long
            "1536-22-8172", // inside a longer run
            "555-123-4567", // a phone number
            "2024-05-12",   // a date
        ] {
            assert!(found(text).is_empty(), "{text}");
        }
    }
}
