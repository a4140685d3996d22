//! The organisation's policy, applied to what this device sends and shows.
//!
//! Before a text is encrypted the [`Guard`] scans it ([`Guard::check_text`])
//! and says what the policy makes of every finding: `block` (not sent),
//! `warn` (sent only once the user confirms), `redact` (sent masked) or
//! `audit` (sent as written). Whatever happened is reported to the server
//! as an event naming the rule and the action, never the content. After a
//! message is decrypted, the guard explains the risks of its links and
//! files to the recipient.
//!
//! This runs in the official clients only: a modified client can skip it.

use rampart_policy::link::{LinkChecker, LinkRisk, LinkWarning};
use rampart_policy::{Action, Detector, Finding, Policy, PolicyError, Rule, Scanner, redact};
use std::borrow::Cow;

/// A compiled policy and the server's revision number for it.
pub struct Guard {
    revision: u64,
    policy: Policy,
    scanner: Scanner,
    links: LinkChecker,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Guard(revision {})", self.revision)
    }
}

impl Default for Guard {
    /// The built-in defaults, before the organisation set a policy.
    fn default() -> Self {
        let policy = Policy::default();
        let scanner = Scanner::new(&policy.dlp).unwrap_or_else(|_| Scanner::all_builtin());
        Guard {
            revision: 0,
            links: LinkChecker::new(&policy.links),
            policy,
            scanner,
        }
    }
}

impl Guard {
    /// Compiles a policy document as the server hands it out.
    pub fn from_document(revision: u64, document: &str) -> Result<Guard, PolicyError> {
        let policy = Policy::parse(document)?;
        let scanner = Scanner::new(&policy.dlp)?;
        Ok(Guard {
            revision,
            links: LinkChecker::new(&policy.links),
            policy,
            scanner,
        })
    }

    /// The server's revision of the policy in force (0: built-in defaults).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn file_name_warnings(&self, _name: &str) -> Vec<Warning> {
        Vec::new()
    }

    /// What the policy makes of a text about to be sent.
    pub fn check_text(&self, text: &str) -> TextCheck {
        let mut hits: Vec<Hit> = Vec::new();
        for finding in self.scanner.scan(text) {
            let action = self.policy.dlp.action_for(&finding);
            if action == Action::Off {
                continue;
            }
            hits.push(Hit::new(text, finding, action, &self.policy));
        }
        // A link the organisation blocklisted does not leave either.
        for warning in self.links.check(text) {
            if warning.risk == LinkRisk::Blocklisted {
                hits.push(Hit {
                    rule: warning.risk.id().to_owned(),
                    action: Action::Block,
                    what: "a link to a site your organisation blocks".to_owned(),
                    why: warning.explanation,
                    masked: warning.url_shown,
                    finding: None,
                });
            }
        }
        TextCheck { hits }
    }

    /// What a recipient should know about the links in a message, most
    /// dangerous first.
    pub fn link_warnings(&self, text: &str) -> Vec<LinkWarning> {
        let mut warnings = self.links.check(text);
        warnings.sort_by(|a, b| b.severity.cmp(&a.severity));
        warnings
    }

    /// Everything a recipient should be told about a received message: its
    /// links, and for a shared file what its name says about it (what it
    /// really is is known only once downloaded).
    pub fn incoming_warnings(&self, text: &str, file_name: Option<&str>) -> Vec<Warning> {
        let mut out: Vec<Warning> = self
            .link_warnings(text)
            .into_iter()
            .map(|w| Warning {
                risk: w.risk.id(),
                severity: w.severity.as_str(),
                explanation: w.explanation,
            })
            .collect();
        if let Some(name) = file_name {
            out.extend(self.file_name_warnings(name));
        }
        out
    }
}

/// A warning shown with a received message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// Stable id: `link.lookalike`, `file.executable`, …
    pub risk: &'static str,
    /// `caution` or `danger`.
    pub severity: &'static str,
    /// One sentence for a non-expert.
    pub explanation: String,
}

/// One rule that fired on a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The stable rule id (`card`, `custom.falcon`), as reported.
    pub rule: String,
    pub action: Action,
    /// What was found, for people: "a payment card number".
    pub what: String,
    /// Why the scanner thinks so: "a Visa number that passes the Luhn check".
    pub why: String,
    /// The finding as it would look masked (`4111 **** **** 1111`); secrets
    /// are masked whole. Safe to show; the full secret never is.
    pub masked: String,
    /// The span in the text, for findings that can be masked.
    finding: Option<Finding>,
}

impl Hit {
    fn new(text: &str, finding: Finding, action: Action, policy: &Policy) -> Hit {
        let what = match &finding.rule {
            Rule::Builtin(d) => d.describe().to_owned(),
            Rule::Custom(id) => policy
                .dlp
                .custom
                .iter()
                .find(|c| &c.id == id)
                .and_then(|c| c.description.clone())
                .unwrap_or_else(|| format!("text matching your organisation's rule {id:?}")),
        };
        let span = finding.span.clone();
        let alone = Finding {
            span: 0..span.len(),
            ..finding.clone()
        };
        let masked = redact(text.get(span).unwrap_or_default(), std::slice::from_ref(&alone));
        Hit {
            rule: finding.rule.id(),
            action,
            what,
            why: finding.why.clone(),
            masked,
            finding: Some(finding),
        }
    }

    /// "a payment card number (4111 **** **** 1111)"; for secrets just what
    /// it is, since nothing of it may be shown.
    pub fn describe(&self) -> String {
        match self.finding.as_ref().map(|f| &f.rule) {
            Some(Rule::Builtin(d)) if d.is_secret() => self.what.clone(),
            Some(Rule::Custom(_)) => self.what.clone(),
            _ => format!("{} ({})", self.what, self.masked),
        }
    }

    /// The built-in detector that found it, if one did.
    pub fn detector(&self) -> Option<Detector> {
        match self.finding.as_ref().map(|f| &f.rule) {
            Some(Rule::Builtin(d)) => Some(*d),
            _ => None,
        }
    }
}

/// The verdict on one outgoing text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextCheck {
    pub hits: Vec<Hit>,
}

impl TextCheck {
    /// The first rule that forbids sending, if any.
    pub fn blocked(&self) -> Option<&Hit> {
        self.hits.iter().find(|h| h.action == Action::Block)
    }

    /// Rules that need the user's confirmation before sending.
    pub fn warnings(&self) -> impl Iterator<Item = &Hit> {
        self.hits.iter().filter(|h| h.action == Action::Warn)
    }

    pub fn is_clean(&self) -> bool {
        self.hits.is_empty()
    }

    /// The text to encrypt: the original with the `redact` findings masked.
    pub fn text_to_send<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let masked: Vec<Finding> = self
            .hits
            .iter()
            .filter(|h| h.action == Action::Redact)
            .filter_map(|h| h.finding.clone())
            .collect();
        if masked.is_empty() {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(redact(text, &masked))
        }
    }

    /// One `(rule, action)` per rule that fired, for reporting: a message
    /// with three card numbers is one event.
    pub fn rule_actions(&self) -> Vec<(String, Action)> {
        let mut out: Vec<(String, Action)> = Vec::new();
        for h in &self.hits {
            if !out.iter().any(|(r, a)| r == &h.rule && *a == h.action) {
                out.push((h.rule.clone(), h.action));
            }
        }
        out
    }

    /// The message the sender sees when the text is blocked: the rule, what
    /// it found and why, never the text itself.
    pub fn block_message(&self) -> Option<String> {
        let hit = self.blocked()?;
        Some(format!(
            "not sent: it contains {}, which your organisation does not allow in messages (rule {}: {})",
            hit.describe(),
            hit.rule,
            hit.why
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(toml: &str) -> Guard {
        let policy = Policy::parse(toml).unwrap();
        Guard::from_document(7, &policy.to_json()).unwrap()
    }

    #[test]
    fn actions_follow_the_policy() {
        let g = guard(
            "version = 1\n[detectors.card]\naction = \"redact\"\n[detectors.ssn]\naction = \"block\"\n",
        );
        let check = g.check_text("card 4111 1111 1111 1111");
        assert!(check.blocked().is_none());
        assert_eq!(check.text_to_send("card 4111 1111 1111 1111"), "card 4111 **** **** 1111");
        let check = g.check_text("my ssn is 536-22-8172");
        let message = check.block_message().unwrap();
        assert!(message.contains("rule ssn"), "{message}");
        assert!(!message.contains("536-22-8172"), "{message}");
        assert!(message.contains("***-**-8172"), "{message}");
    }

    #[test]
    fn defaults_warn_and_secrets_are_never_shown() {
        let g = Guard::default();
        let text = "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
        let check = g.check_text(text);
        for hit in &check.hits {
            assert!(!hit.describe().contains("ghp_aBc"), "{hit:?}");
        }
        assert!(g.check_text("lunch at noon?").is_clean());
    }

    #[test]
    fn one_event_per_rule_and_action() {
        let g = Guard::default();
        let check = g.check_text("4111 1111 1111 1111 and 5555 5555 5555 4444");
        assert_eq!(check.rule_actions(), vec![("card".to_owned(), Action::Warn)]);
    }
}
