//! The text scanner: built-in detectors, the organisation's own rules, and
//! the context that raises or lowers a finding's confidence.
//!
//! A scan is one pass of cheap candidate finders over the normalised text
//! (digit runs, fixed prefixes, `@` signs), then deterministic validation of
//! each candidate (Luhn, IIN ranges, mod-97, SSN rules, decoding), then
//! context, then exclusions between types. Everything is linear in the
//! length of the text; organisation regexes run on the `regex` crate, which
//! guarantees linear time.

mod card;
mod contact;
mod context;
mod custom;
mod digits;
mod iban;
mod secret;
mod ssn;

pub use custom::CustomRule;

use crate::document::DlpRules;
use crate::error::PolicyError;
use crate::finding::{Confidence, Detector, Finding, Rule};
use crate::normalize::Normalized;

/// A candidate from a built-in detector, in bytes of the normalised text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub detector: Detector,
    pub start: usize,
    pub end: usize,
    pub confidence: Confidence,
    /// For people; never the matched text.
    pub why: &'static str,
}

/// The scan of one text: compiled once per policy, used for every message.
pub struct Scanner {
    enabled: Vec<Detector>,
    custom: custom::CustomSet,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("enabled", &self.enabled)
            .field("custom_rules", &self.custom.len())
            .finish()
    }
}

impl Scanner {
    /// Compiles the text rules of a policy.
    pub fn new(rules: &DlpRules) -> Result<Scanner, PolicyError> {
        let enabled = Detector::ALL
            .into_iter()
            .filter(|d| rules.rule(*d).action != crate::document::Action::Off)
            .collect();
        Ok(Scanner {
            enabled,
            custom: custom::CustomSet::new(&rules.custom)?,
        })
    }

    /// Every built-in detector on, custom rules none: for benchmarks and tests.
    pub fn all_builtin() -> Scanner {
        Scanner {
            enabled: Detector::ALL.to_vec(),
            custom: custom::CustomSet::empty(),
        }
    }

    /// Finds what the enabled rules find in `text`, in order of position.
    /// Spans are byte ranges of `text` itself.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let norm = Normalized::new(text);
        let mut candidates = Vec::new();
        self.builtin_candidates(norm.text(), &mut candidates);
        candidates.retain(|c| self.enabled.contains(&c.detector));
        for c in &mut candidates {
            c.confidence = context::adjust(norm.text(), c);
        }
        exclude_overlaps(&mut candidates);
        let mut findings: Vec<Finding> = candidates
            .into_iter()
            .map(|c| Finding {
                rule: Rule::Builtin(c.detector),
                span: norm.to_original(c.start..c.end),
                confidence: c.confidence,
                why: c.why.to_owned(),
            })
            .collect();
        self.custom.find(&norm, &mut findings);
        findings.sort_by_key(|f| (f.span.start, f.span.end));
        findings
    }

    fn builtin_candidates(&self, text: &str, out: &mut Vec<Candidate>) {
        let on = |ds: &[Detector]| ds.iter().any(|d| self.enabled.contains(d));
        // Cards and SSNs are digit runs, and IBANs start where digits follow
        // two letters: one pass over the digits finds all three.
        let cards = on(&[Detector::Card]);
        let ssns = on(&[Detector::Ssn, Detector::Itin]);
        let ibans = on(&[Detector::Iban]);
        if cards || ssns || ibans {
            let bytes = text.as_bytes();
            let mut scratch = Vec::new();
            let mut found = Vec::new();
            digits::scan(
                text,
                |run| {
                    if cards {
                        card::from_run(bytes, run, &mut scratch, &mut found);
                    }
                    if ssns {
                        ssn::from_run(bytes, run, &mut found);
                    }
                },
                |start| {
                    if ibans {
                        iban::at(bytes, start, out);
                    }
                },
            );
            out.append(&mut found);
        }
        if self.enabled.iter().any(|d| d.is_secret()) {
            secret::find(text, out);
        }
        if on(&[Detector::Email, Detector::Phone]) {
            contact::find(text, out);
        }
    }
}

/// Where two candidates overlap, the more specific one wins: a validated
/// IBAN or secret contains digit runs that are not cards, SSNs or phone
/// numbers; a card number is not also a phone number.
fn exclude_overlaps(candidates: &mut Vec<Candidate>) {
    fn rank(d: Detector) -> u8 {
        match d {
            Detector::PrivateKey => 0,
            Detector::Jwt
            | Detector::AwsAccessKey
            | Detector::AwsSecretKey
            | Detector::GithubToken
            | Detector::SlackToken
            | Detector::StripeKey
            | Detector::GoogleApiKey => 1,
            Detector::PasswordAssignment => 2,
            Detector::Iban => 3,
            Detector::Card => 4,
            Detector::Ssn | Detector::Itin => 5,
            Detector::Email => 6,
            Detector::Phone => 7,
        }
    }
    if candidates.len() < 2 {
        return;
    }
    candidates.sort_by_key(|c| (rank(c.detector), c.start, std::cmp::Reverse(c.end)));
    let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len());
    for c in candidates.drain(..) {
        if !kept.iter().any(|k| k.start < c.end && c.start < k.end) {
            kept.push(c);
        }
    }
    kept.sort_by_key(|c| c.start);
    *candidates = kept;
}

/// Byte helpers shared by the finders.
pub(crate) fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests;
