//! The organisation's own rules: keyword lists and regular expressions.
//!
//! Keywords are matched case-insensitively on whole words through one
//! Aho-Corasick automaton; regexes run on the `regex` crate, whose matching
//! time is linear in the text whatever the pattern, and whose compiled size
//! is capped here so a pathological pattern is refused when the policy is
//! loaded rather than slowing every message.

use crate::document::{Action, find_line};
use crate::error::PolicyError;
use crate::finding::{Confidence, Finding, Rule};
use crate::normalize::Normalized;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Most custom rules in one policy.
pub const MAX_CUSTOM_RULES: usize = 200;
/// Most keywords in one rule, and the longest keyword.
pub const MAX_KEYWORDS: usize = 1000;
pub const MAX_KEYWORD_LEN: usize = 100;
/// Longest regex source, and the most memory its compiled form may take.
pub const MAX_REGEX_LEN: usize = 1000;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One rule of the organisation's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// Lowercase letters, digits, `-` and `_`; reported as `custom.ID`.
    pub id: String,
    /// Shown to the user when the rule fires ("the code name of …").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Words or phrases, matched case-insensitively as whole words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// A regular expression (Rust `regex` syntax, no look-around).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    pub action: Action,
}

impl CustomRule {
    pub(crate) fn validate_all(rules: &[CustomRule], source: &str) -> Result<(), PolicyError> {
        if rules.len() > MAX_CUSTOM_RULES {
            return Err(PolicyError::Invalid {
                line: find_line(source, "custom"),
                message: format!(
                    "{} custom rules; at most {MAX_CUSTOM_RULES} are allowed",
                    rules.len()
                ),
            });
        }
        let mut ids = BTreeSet::new();
        for rule in rules {
            let line = find_line(source, &format!("\"{}\"", rule.id))
                .max(find_line(source, &format!("'{}'", rule.id)));
            let invalid = |message: String| PolicyError::Invalid { line, message };
            let id_ok = !rule.id.is_empty()
                && rule.id.len() <= 48
                && rule.id.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !id_ok {
                return Err(invalid(format!(
                    "custom rule id {:?} must be 1 to 48 lowercase letters, digits, '-' or '_'",
                    truncate(&rule.id)
                )));
            }
            if !ids.insert(rule.id.as_str()) {
                return Err(invalid(format!(
                    "custom rule {:?} is defined twice",
                    rule.id
                )));
            }
            if rule.keywords.is_empty() && rule.regex.is_none() {
                return Err(invalid(format!(
                    "custom rule {:?} needs `keywords` or `regex`",
                    rule.id
                )));
            }
            if rule.keywords.len() > MAX_KEYWORDS {
                return Err(invalid(format!(
                    "custom rule {:?} has {} keywords; at most {MAX_KEYWORDS} are allowed",
                    rule.id,
                    rule.keywords.len()
                )));
            }
            if let Some(k) = rule
                .keywords
                .iter()
                .find(|k| k.trim().is_empty() || k.len() > MAX_KEYWORD_LEN)
            {
                return Err(invalid(format!(
                    "custom rule {:?}: keyword {:?} must be 1 to {MAX_KEYWORD_LEN} bytes",
                    rule.id,
                    truncate(k)
                )));
            }
            if let Some(pattern) = &rule.regex {
                let line = find_line(source, "regex").max(line);
                compile_regex(pattern).map_err(|message| PolicyError::Invalid {
                    line,
                    message: format!("custom rule {:?}: {message}", rule.id),
                })?;
            }
        }
        Ok(())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

fn compile_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(format!(
            "the regex is {} bytes; at most {MAX_REGEX_LEN} are allowed",
            pattern.len()
        ));
    }
    let regex = RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => {
                "the regex is too complex (its compiled form exceeds 1 MiB); simplify it".to_owned()
            }
            regex::Error::Syntax(s) => format!(
                "the regex does not compile: {}",
                s.lines().last().unwrap_or("syntax error").trim()
            ),
            _ => "the regex does not compile".to_owned(),
        })?;
    if regex.is_match("") {
        return Err("the regex matches empty text, so it would fire on every message".into());
    }
    Ok(regex)
}

/// The compiled custom rules of a policy.
pub(crate) struct CustomSet {
    keywords: Option<(AhoCorasick, Vec<usize>)>,
    regexes: Vec<(usize, Regex)>,
    rules: Vec<(String, Option<String>)>,
}

impl CustomSet {
    pub fn empty() -> Self {
        CustomSet {
            keywords: None,
            regexes: Vec::new(),
            rules: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn new(rules: &[CustomRule]) -> Result<Self, PolicyError> {
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        let mut regexes = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if rule.action == Action::Off {
                continue;
            }
            for k in &rule.keywords {
                patterns.push(Normalized::new(k.trim()).text().to_owned());
                owner.push(i);
            }
            if let Some(p) = &rule.regex {
                let regex = compile_regex(p).map_err(|message| PolicyError::Invalid {
                    line: 1,
                    message: format!("custom rule {:?}: {message}", rule.id),
                })?;
                regexes.push((i, regex));
            }
        }
        let keywords = if patterns.is_empty() {
            None
        } else {
            let ac = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .map_err(|_| PolicyError::Invalid {
                    line: 1,
                    message: "the custom keywords are too many to compile".into(),
                })?;
            Some((ac, owner))
        };
        Ok(CustomSet {
            keywords,
            regexes,
            rules: rules
                .iter()
                .map(|r| (r.id.clone(), r.description.clone()))
                .collect(),
        })
    }

    pub fn find(&self, norm: &Normalized<'_>, out: &mut Vec<Finding>) {
        let text = norm.text();
        let bytes = text.as_bytes();
        let mut push = |rule: usize, start: usize, end: usize, kind: &str| {
            let Some((id, description)) = self.rules.get(rule) else {
                return;
            };
            let why = match description {
                Some(d) => format!("{kind} of the organisation's rule {id:?}: {d}"),
                None => format!("{kind} of the organisation's rule {id:?}"),
            };
            out.push(Finding {
                rule: Rule::Custom(id.clone()),
                span: norm.to_original(start..end),
                confidence: Confidence::High,
                why,
            });
        };
        if let Some((ac, owner)) = &self.keywords {
            for m in ac.find_iter(text) {
                let before = m.start().checked_sub(1).map(|i| bytes[i]);
                let after = bytes.get(m.end()).copied();
                let whole = !before.is_some_and(super::is_word_byte)
                    && !after.is_some_and(super::is_word_byte);
                if whole {
                    push(
                        owner[m.pattern().as_usize()],
                        m.start(),
                        m.end(),
                        "a keyword",
                    );
                }
            }
        }
        for (rule, regex) in &self.regexes {
            for m in regex.find_iter(text) {
                if m.start() < m.end() {
                    push(*rule, m.start(), m.end(), "a pattern");
                }
            }
        }
    }
}
