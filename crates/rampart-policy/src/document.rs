//! The organisation's policy document: what each detector does, the
//! organisation's own rules, and the link and file rules.
//!
//! Written by an administrator in TOML (or JSON), validated here, stored by
//! the server as canonical JSON, and applied by every official client. Its
//! `version` is the schema version (1); the server numbers each document it
//! stores with a revision of its own.
//!
//! ```toml
//! version = 1
//!
//! [detectors.card]
//! action = "redact"          # block | warn | redact | audit | off
//! min_confidence = "medium"  # low | medium | high
//!
//! [detectors.email]
//! action = "audit"
//!
//! [[custom]]
//! id = "project-falcon"
//! description = "the code name of an unannounced product"
//! keywords = ["falcon launch", "project falcon"]
//! action = "warn"
//!
//! [[custom]]
//! id = "employee-id"
//! regex = '\bEMP-[0-9]{6}\b'
//! action = "block"
//!
//! [links]
//! org_domains = ["example.com"]
//! blocked_domains = ["evil.example"]
//!
//! [files]
//! executable = "block"       # allow | warn | block
//! ```

use crate::detect::CustomRule;
use crate::error::PolicyError;
use crate::file::FileRules;
use crate::finding::{Confidence, Detector, Finding, Rule};
use crate::link::LinkRules;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The schema version this build reads.
pub const SCHEMA_VERSION: u32 = 1;
/// The largest policy document accepted (blocklists can be long).
pub const MAX_POLICY_BYTES: usize = 2 * 1024 * 1024;

/// What happens to a message a rule fires on, before it is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The rule is not checked.
    Off,
    /// Sent as written; the event is reported.
    Audit,
    /// Sent with the finding masked (`4111 **** **** 1111`).
    Redact,
    /// Sent only after the user confirms.
    Warn,
    /// Not sent.
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Audit => "audit",
            Action::Redact => "redact",
            Action::Warn => "warn",
            Action::Block => "block",
        }
    }
}

/// What one detector does, and from which confidence on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorRule {
    pub action: Action,
    #[serde(default = "default_min_confidence")]
    pub min_confidence: Confidence,
}

fn default_min_confidence() -> Confidence {
    Confidence::Medium
}

/// The text rules: built-in detectors and the organisation's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DlpRules {
    /// Only the detectors the document names; the rest keep their defaults.
    pub detectors: BTreeMap<Detector, DetectorRule>,
    pub custom: Vec<CustomRule>,
}

impl DlpRules {
    /// The rule in force for a detector: the document's, or the default.
    pub fn rule(&self, detector: Detector) -> DetectorRule {
        self.detectors
            .get(&detector)
            .copied()
            .unwrap_or_else(|| default_rule(detector))
    }

    /// What a finding leads to: `Off` when it is below the rule's
    /// confidence or its rule is off.
    pub fn action_for(&self, finding: &Finding) -> Action {
        let rule = match &finding.rule {
            Rule::Builtin(d) => self.rule(*d),
            Rule::Custom(id) => match self.custom.iter().find(|c| &c.id == id) {
                Some(c) => DetectorRule {
                    action: c.action,
                    min_confidence: Confidence::Low,
                },
                None => return Action::Off,
            },
        };
        if finding.confidence >= rule.min_confidence {
            rule.action
        } else {
            Action::Off
        }
    }
}

/// Without a policy from the organisation: warn about numbers and secrets
/// that would hurt if they leaked, leave contact details alone.
pub fn default_rule(detector: Detector) -> DetectorRule {
    let action = match detector {
        Detector::Email | Detector::Phone => Action::Off,
        _ => Action::Warn,
    };
    DetectorRule {
        action,
        min_confidence: Confidence::Medium,
    }
}

/// A whole policy document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PolicyFile", into = "PolicyFile")]
pub struct Policy {
    /// Schema version; 1.
    pub version: u32,
    /// The text rules.
    pub dlp: DlpRules,
    pub links: LinkRules,
    pub files: FileRules,
}

/// The document as written: the text rules at the top level. (Serde's
/// `flatten` would lose the line numbers of errors and cannot deny unknown
/// fields, hence this twin.)
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    #[serde(default)]
    detectors: BTreeMap<Detector, DetectorRule>,
    #[serde(default)]
    custom: Vec<CustomRule>,
    #[serde(default)]
    links: LinkRules,
    #[serde(default)]
    files: FileRules,
}

impl From<PolicyFile> for Policy {
    fn from(f: PolicyFile) -> Self {
        Policy {
            version: f.version,
            dlp: DlpRules {
                detectors: f.detectors,
                custom: f.custom,
            },
            links: f.links,
            files: f.files,
        }
    }
}

impl From<Policy> for PolicyFile {
    fn from(p: Policy) -> Self {
        PolicyFile {
            version: p.version,
            detectors: p.dlp.detectors,
            custom: p.dlp.custom,
            links: p.links,
            files: p.files,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            version: SCHEMA_VERSION,
            dlp: DlpRules::default(),
            links: LinkRules::default(),
            files: FileRules::default(),
        }
    }
}

impl Policy {
    /// Parses and validates a document: JSON if it starts with `{`, TOML
    /// otherwise. Errors name the line.
    pub fn parse(source: &str) -> Result<Policy, PolicyError> {
        if source.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                size: source.len(),
                limit: MAX_POLICY_BYTES,
            });
        }
        let policy: Policy = if source.trim_start().starts_with('{') {
            serde_json::from_str(source).map_err(|e| PolicyError::Syntax {
                line: e.line(),
                message: strip_position(&e.to_string()),
            })?
        } else {
            toml::from_str(source).map_err(|e| PolicyError::Syntax {
                line: e.span().map_or(1, |s| line_of(source, s.start)),
                message: e.message().to_owned(),
            })?
        };
        policy.validate(source)?;
        Ok(policy)
    }

    /// The canonical JSON the server stores and clients parse.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"version\":1}"))
    }

    fn validate(&self, source: &str) -> Result<(), PolicyError> {
        if self.version != SCHEMA_VERSION {
            return Err(PolicyError::Invalid {
                line: find_line(source, "version"),
                message: format!(
                    "version {} is not supported; this Rampart reads version {SCHEMA_VERSION}",
                    self.version
                ),
            });
        }
        crate::detect::CustomRule::validate_all(&self.dlp.custom, source)?;
        self.links.validate(source)?;
        self.files.validate(source)?;
        Ok(())
    }
}

/// The 1-based line of a byte offset.
pub(crate) fn line_of(source: &str, offset: usize) -> usize {
    let offset = offset.min(source.len());
    source.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line on which `needle` first appears (1 if nowhere): how semantic
/// errors, found after parsing, point back into the document.
pub(crate) fn find_line(source: &str, needle: &str) -> usize {
    source.find(needle).map_or(1, |at| line_of(source, at))
}

/// serde_json appends " at line L column C"; the line is reported apart.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_is_the_default() {
        let p = Policy::parse("version = 1\n").unwrap();
        assert_eq!(p, Policy::default());
        assert_eq!(p.dlp.rule(Detector::Card).action, Action::Warn);
        assert_eq!(p.dlp.rule(Detector::Email).action, Action::Off);
    }

    #[test]
    fn toml_and_json_agree_and_round_trip() {
        let toml = "version = 1\n[detectors.ssn]\naction = \"block\"\nmin_confidence = \"low\"\n";
        let from_toml = Policy::parse(toml).unwrap();
        let from_json = Policy::parse(&from_toml.to_json()).unwrap();
        assert_eq!(from_toml, from_json);
        assert_eq!(
            from_json.dlp.rule(Detector::Ssn),
            DetectorRule {
                action: Action::Block,
                min_confidence: Confidence::Low
            }
        );
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("version = 1\n\n[detectors.crad]\naction = \"block\"\n", 3),
            ("version = 1\n[detectors.card]\naction = \"explode\"\n", 3),
            (
                "version = 1\n[detectors.card]\naction = \"block\"\ncolour = 1\n",
                4,
            ),
            ("version = 2\n", 1),
            (
                "version = 1\n[[custom]]\nid = \"x\"\naction = \"warn\"\n",
                3,
            ),
            (
                "version = 1\n[[custom]]\nid = \"bad\"\nregex = '(unclosed'\naction = \"warn\"\n",
                4,
            ),
            (
                "version = 1\n[[custom]]\nid = \"empty\"\nregex = 'a*'\naction = \"warn\"\n",
                4,
            ),
            (
                "version = 1\n[[custom]]\nid = \"Big\"\nkeywords = [\"x\"]\naction = \"warn\"\n",
                3,
            ),
            (
                "{\n\"version\": 1,\n\"detectors\": {\"card\": {\"action\": 7}}\n}",
                3,
            ),
            ("version = = 1", 1),
        ];
        for (source, line) in cases {
            let err = Policy::parse(source).unwrap_err();
            let reported = match &err {
                PolicyError::Syntax { line, .. } | PolicyError::Invalid { line, .. } => *line,
                PolicyError::TooLarge { .. } => 0,
            };
            assert_eq!(reported, line, "{source:?}: {err}");
        }
    }

    #[test]
    fn oversized_and_explosive_regexes_are_refused_at_load() {
        let source = "version = 1\n[[custom]]\nid = \"huge\"\nregex = '(\\w{100}){100}'\naction = \"warn\"\n";
        let err = Policy::parse(source).unwrap_err().to_string();
        assert!(err.contains("too complex"), "{err}");
        // Catastrophic backtracking in other engines; linear time here.
        let source =
            "version = 1\n[[custom]]\nid = \"nested\"\nregex = '(a+)+$'\naction = \"warn\"\n";
        let policy = Policy::parse(source).unwrap();
        let scanner = crate::Scanner::new(&policy.dlp).unwrap();
        let text = format!("{}!", "a".repeat(100_000));
        let _ = scanner.scan(&text);
        let too_big = "x".repeat(MAX_POLICY_BYTES + 1);
        assert!(matches!(
            Policy::parse(&too_big),
            Err(PolicyError::TooLarge { .. })
        ));
    }

    #[test]
    fn binary_junk_is_an_error_not_a_panic() {
        let junk: String = (0u32..4096)
            .filter_map(|i| char::from_u32(i * 7919 % 0x3000))
            .collect();
        assert!(Policy::parse(&junk).is_err());
    }
}
