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

use rampart_policy::file::{FileAction, FileChecker, FileFacts, FileWarning};
use rampart_policy::link::{LinkChecker, LinkRisk, LinkWarning};
use rampart_policy::{Action, Detector, Finding, Policy, PolicyError, Rule, Scanner, redact};
use std::borrow::Cow;
use std::sync::Arc;

/// A compiled policy and the server's revision number for it. Cloning is
/// cheap (the compiled rules are shared), so a download can take one to
/// the thread that opens the file.
#[derive(Clone)]
pub struct Guard(Arc<Compiled>);

struct Compiled {
    revision: u64,
    policy: Policy,
    scanner: Scanner,
    links: LinkChecker,
    files: FileChecker,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Guard(revision {})", self.0.revision)
    }
}

impl Default for Guard {
    /// The built-in defaults, before the organisation set a policy.
    fn default() -> Self {
        let policy = Policy::default();
        let scanner = Scanner::new(&policy.dlp).unwrap_or_else(|_| Scanner::all_builtin());
        Guard::compiled(0, policy, scanner)
    }
}

impl Guard {
    /// Compiles a policy document as the server hands it out.
    pub fn from_document(revision: u64, document: &str) -> Result<Guard, PolicyError> {
        let policy = Policy::parse(document)?;
        let scanner = Scanner::new(&policy.dlp)?;
        Ok(Guard::compiled(revision, policy, scanner))
    }

    fn compiled(revision: u64, policy: Policy, scanner: Scanner) -> Guard {
        Guard(Arc::new(Compiled {
            revision,
            links: LinkChecker::new(&policy.links),
            files: FileChecker::new(&policy.files),
            policy,
            scanner,
        }))
    }

    /// The server's revision of the policy in force (0: built-in defaults).
    pub fn revision(&self) -> u64 {
        self.0.revision
    }

    pub fn policy(&self) -> &Policy {
        &self.0.policy
    }

    /// What the policy makes of a text about to be sent.
    pub fn check_text(&self, text: &str) -> TextCheck {
        let g = &self.0;
        let mut hits: Vec<Hit> = Vec::new();
        for finding in g.scanner.scan(text) {
            let action = g.policy.dlp.action_for(&finding);
            if action == Action::Off {
                continue;
            }
            hits.push(Hit::new(text, finding, action, &g.policy));
        }
        // A link the organisation blocklisted does not leave either.
        for warning in g.links.check(text) {
            if warning.risk == LinkRisk::Blocklisted {
                hits.push(Hit::plain(
                    warning.risk.id(),
                    Action::Block,
                    warning.explanation,
                ));
            }
        }
        TextCheck { hits }
    }

    /// Whether file checks need the SHA-256 of the whole plaintext (only
    /// when the organisation blocklists files by hash).
    pub fn wants_file_hash(&self) -> bool {
        !self.0.policy.files.blocked_hashes.is_empty()
    }

    /// What the policy makes of a file about to be sent: its type, name and
    /// hash (`facts`), the text it holds if it is a text file (`content`,
    /// scanned like a message), and its caption. A finding the policy would
    /// mask in a message blocks a file, which cannot be masked; findings in
    /// the caption are masked as in a message (`text_to_send(caption)`).
    pub fn check_file(
        &self,
        facts: &FileFacts<'_>,
        content: Option<&str>,
        caption: &str,
    ) -> TextCheck {
        let mut check = self.check_text(caption);
        for w in self.0.files.check(facts) {
            check.hits.push(Hit::plain(
                w.risk.id(),
                file_action(w.action),
                w.explanation,
            ));
        }
        if let Some(content) = content {
            for mut hit in self.check_text(content).hits {
                if hit.action == Action::Redact {
                    hit.action = Action::Block;
                }
                hit.what = format!("{} in the file", hit.what);
                // Its span is in the file, not the caption: never mask by it.
                hit.in_file = true;
                check.hits.push(hit);
            }
        }
        check
    }

    /// The file rules' verdict on a received file, once its content is
    /// known (after download, before it is saved).
    pub fn check_received_file(&self, facts: &FileFacts<'_>) -> Vec<FileWarning> {
        self.0.files.check(facts)
    }

    /// What a recipient should know about the links in a message, most
    /// dangerous first.
    pub fn link_warnings(&self, text: &str) -> Vec<LinkWarning> {
        let mut warnings = self.0.links.check(text);
        warnings.sort_by_key(|w| std::cmp::Reverse(w.severity));
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
            let facts = FileFacts {
                name,
                head: &[],
                size: 0,
                sha256: None,
            };
            out.extend(self.0.files.check(&facts).into_iter().map(Warning::from));
        }
        out
    }
}

fn file_action(action: FileAction) -> Action {
    match action {
        FileAction::Block => Action::Block,
        FileAction::Warn => Action::Warn,
        FileAction::Allow => Action::Off,
    }
}

/// A warning shown with a received message or file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// Stable id: `link.lookalike`, `file.executable`, …
    pub risk: &'static str,
    /// `caution` or `danger`.
    pub severity: &'static str,
    /// One sentence for a non-expert.
    pub explanation: String,
}

impl From<FileWarning> for Warning {
    fn from(w: FileWarning) -> Self {
        Warning {
            risk: w.risk.id(),
            severity: if w.action == FileAction::Block {
                "danger"
            } else {
                "caution"
            },
            explanation: w.explanation,
        }
    }
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
    /// Found in an attached file's content rather than the text.
    in_file: bool,
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
        let masked = redact(
            text.get(span).unwrap_or_default(),
            std::slice::from_ref(&alone),
        );
        Hit {
            rule: finding.rule.id(),
            action,
            what,
            why: finding.why.clone(),
            masked,
            finding: Some(finding),
            in_file: false,
        }
    }

    /// A hit that is not a span of the text (a link, a file): `what` says
    /// it all.
    fn plain(rule: &str, action: Action, what: String) -> Hit {
        Hit {
            rule: rule.to_owned(),
            action,
            what,
            why: String::new(),
            masked: String::new(),
            finding: None,
            in_file: false,
        }
    }

    /// "a payment card number (4111 **** **** 1111)"; for secrets just what
    /// it is, since nothing of it may be shown.
    pub fn describe(&self) -> String {
        match self.finding.as_ref().map(|f| &f.rule) {
            Some(Rule::Builtin(d)) if !d.is_secret() => format!("{} ({})", self.what, self.masked),
            _ => self.what.clone(),
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
            .filter(|h| h.action == Action::Redact && !h.in_file)
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
        Some(match hit.finding {
            Some(_) => format!(
                "not sent: it contains {}, which your organisation does not allow in messages (rule {}: {})",
                hit.describe(),
                hit.rule,
                hit.why
            ),
            None => format!(
                "not sent: {} (rule {}); your organisation does not allow this",
                hit.what, hit.rule
            ),
        })
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
        assert_eq!(
            check.text_to_send("card 4111 1111 1111 1111"),
            "card 4111 **** **** 1111"
        );
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
    fn blocklisted_links_do_not_leave_and_risky_ones_are_explained() {
        let hash = rampart_policy::link::url_hash_prefix("https://bad.example/login", 8).unwrap();
        let g = guard(&format!(
            "version = 1\n[links]\nblocked_url_hashes = [\"{hash}\"]\n"
        ));
        let check = g.check_text("go to https://bad.example/login?next=1 now");
        assert_eq!(
            check.blocked().map(|h| h.rule.as_str()),
            Some("link.blocklisted")
        );
        assert!(
            g.check_text("https://bad.example/about")
                .blocked()
                .is_none()
        );
        let warnings = g.incoming_warnings("see http://rnicrosoft.com", Some("invoice.pdf.exe"));
        let risks: Vec<&str> = warnings.iter().map(|w| w.risk).collect();
        assert!(risks.contains(&"link.lookalike"), "{risks:?}");
        assert!(risks.contains(&"file.double_extension"), "{risks:?}");
    }

    #[test]
    fn one_event_per_rule_and_action() {
        let g = Guard::default();
        let check = g.check_text("4111 1111 1111 1111 and 5555 5555 5555 4444");
        assert_eq!(
            check.rule_actions(),
            vec![("card".to_owned(), Action::Warn)]
        );
    }
}
