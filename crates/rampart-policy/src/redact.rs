//! Masking findings before a message is sent.
//!
//! Numbers keep the few characters people use to recognise them (a card's
//! first and last four digits, an SSN's last four) so the recipient still
//! knows which one is meant; secrets and the organisation's own rules are
//! replaced whole by a fixed mask that does not even reveal their length.
//! Invisible characters inside a span go with it.

use crate::finding::{Detector, Finding, Rule};

/// The fixed mask for secrets.
pub const SECRET_MASK: &str = "[redacted]";

/// `text` with every finding's span masked. Overlapping findings are masked
/// once, by the first.
pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut spans: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.span.start < f.span.end && f.span.end <= text.len())
        .filter(|f| text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end))
        .collect();
    spans.sort_by_key(|f| f.span.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in spans {
        if f.span.start < at {
            continue;
        }
        out.push_str(&text[at..f.span.start]);
        mask(&text[f.span.clone()], &f.rule, &mut out);
        at = f.span.end;
    }
    out.push_str(&text[at..]);
    out
}

fn mask(span: &str, rule: &Rule, out: &mut String) {
    let (keep_start, keep_end) = match rule {
        Rule::Builtin(Detector::Card) => (4, 4),
        Rule::Builtin(Detector::Ssn | Detector::Itin) => (0, 4),
        Rule::Builtin(Detector::Iban) => (2, 4),
        Rule::Builtin(Detector::Phone) => (0, 2),
        Rule::Builtin(Detector::Email) => return mask_email(span, out),
        _ => {
            out.push_str(SECRET_MASK);
            return;
        }
    };
    let significant = span.chars().filter(|c| c.is_alphanumeric()).count();
    // Short numbers keep nothing: four of six digits would say too much.
    let (keep_start, keep_end) = if significant >= 2 * (keep_start + keep_end) {
        (keep_start, keep_end)
    } else {
        (0, 0)
    };
    let mut seen = 0;
    for c in span.chars() {
        if c.is_alphanumeric() {
            seen += 1;
            if seen <= keep_start || seen > significant - keep_end {
                out.push(c);
            } else {
                out.push('*');
            }
        } else if !c.is_control() && !is_format(c) {
            out.push(c);
        }
    }
}

fn is_format(c: char) -> bool {
    crate::normalize::Normalized::new(c.encode_utf8(&mut [0; 4]))
        .text()
        .is_empty()
}

/// `j***@example.com`: the domain stays, the mailbox goes.
fn mask_email(span: &str, out: &mut String) {
    match span.rsplit_once('@') {
        Some((local, domain)) => {
            if let Some(first) = local.chars().next() {
                out.push(first);
            }
            out.push_str("***@");
            out.push_str(domain);
        }
        None => out.push_str(SECRET_MASK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Confidence;

    fn finding(detector: Detector, text: &str, needle: &str) -> Finding {
        let start = text.find(needle).unwrap_or(0);
        Finding {
            rule: Rule::Builtin(detector),
            span: start..start + needle.len(),
            confidence: Confidence::High,
            why: String::new(),
        }
    }

    #[test]
    fn cards_keep_first_and_last_four() {
        let text = "card 4111 1111 1111 1111 ok";
        let f = finding(Detector::Card, text, "4111 1111 1111 1111");
        assert_eq!(redact(text, &[f]), "card 4111 **** **** 1111 ok");
        let text = "4111111111111111";
        let f = finding(Detector::Card, text, text);
        assert_eq!(redact(text, &[f]), "4111********1111");
    }

    #[test]
    fn hidden_characters_inside_a_span_go_too() {
        let text = "4111\u{200B}1111 1111 1111";
        let f = finding(Detector::Card, text, text);
        assert_eq!(redact(text, &[f]), "4111**** **** 1111");
    }

    #[test]
    fn ssn_iban_email_secret() {
        let text = "536-22-8172";
        assert_eq!(
            redact(text, &[finding(Detector::Ssn, text, text)]),
            "***-**-8172"
        );
        let text = "DE89 3704 0044 0532 0130 00";
        assert_eq!(
            redact(text, &[finding(Detector::Iban, text, text)]),
            "DE** **** **** **** **30 00"
        );
        let text = "mail jane.doe@example.com";
        assert_eq!(
            redact(
                text,
                &[finding(Detector::Email, text, "jane.doe@example.com")]
            ),
            "mail j***@example.com"
        );
        let text = "key AKIAIOSFODNN7EXAMPL3 there";
        assert_eq!(
            redact(
                text,
                &[finding(
                    Detector::AwsAccessKey,
                    text,
                    "AKIAIOSFODNN7EXAMPL3"
                )]
            ),
            "key [redacted] there"
        );
    }

    #[test]
    fn overlapping_and_out_of_range_spans_are_safe() {
        let text = "aé";
        let bad = Finding {
            rule: Rule::Builtin(Detector::Card),
            span: 1..2,
            confidence: Confidence::High,
            why: String::new(),
        };
        assert_eq!(redact(text, &[bad]), "aé");
    }
}
