//! Link risk: what a recipient should be told about the links in a message.
//!
//! [`LinkChecker`] finds the links in a chat message (`https://…`, `www.…`,
//! a bare `host.tld/path` whose top-level domain is real, and Markdown
//! `[text](url)`) and says, in words a non-expert understands, which of them
//! deserve a second look:
//!
//! * the organisation blocked the domain (or a parent of it), or a
//!   Safe-Browsing-style SHA-256 prefix of one of the URL's host/path
//!   expressions is on its list ([`url_hash_prefix`] builds entries);
//! * the host imitates a well-known or an organisation domain: letters of
//!   other alphabets (TR39 skeletons), ASCII tricks (`rn` for `m`, `1` for
//!   `l`, a letter added, dropped or swapped, `paypal-login.com`), or the real
//!   name as the start of another (`paypal.com.evil.io`);
//! * the host mixes alphabets, uses look-alike letters of one alphabet or
//!   hides characters, and is shown as punycode (a subset of Chromium's IDN
//!   display policy);
//! * a bare or disguised IP address, a user name before `@`, Markdown text
//!   naming another site than the target, a URL shortener, invisible or
//!   text-reversing characters in the link.
//!
//! Everything is local and deterministic: no DNS, no network, no clock. It
//! does not follow redirects (a shortener is named, not expanded), know sites
//! registered yesterday, or judge a page by its content: no warning means
//! "nothing known against it", not "safe". At most [`MAX_LINKS`] links of a
//! message are checked; past that a [`LinkRisk::TooManyLinks`] warning says so.
//!
//! ```
//! use rampart_policy::link::{LinkChecker, LinkRules};
//!
//! let checker = LinkChecker::new(&LinkRules::default());
//! let warnings = checker.check("please log in at https://rnicrosoft.com/login");
//! assert_eq!(warnings[0].risk.id(), "link.lookalike");
//! assert_eq!(
//!     warnings[0].explanation,
//!     "this link goes to rnicrosoft.com, which imitates microsoft.com"
//! );
//! assert!(checker.check("see https://www.microsoft.com/").is_empty());
//! ```

use crate::document::find_line;
use crate::error::PolicyError;
use aho_corasick::AhoCorasick;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use unicode_security::{
    GeneralSecurityProfile as _, RestrictionLevel, RestrictionLevelDetection as _,
};
use url::{Host, Position, Url};

/// Links checked per message.
pub const MAX_LINKS: usize = 64;
/// Entries allowed in `blocked_domains` and in `blocked_url_hashes`.
pub const MAX_BLOCKLIST_ENTRIES: usize = 100_000;
/// Entries allowed in `org_domains` (each is compared with every link).
pub const MAX_ORG_DOMAINS: usize = 1_000;

/// The part of a link that is analysed; the rest of a longer one is ignored.
const MAX_URL_BYTES: usize = 2_048;
/// The longest Markdown link text looked back over.
const MAX_LINK_TEXT_BYTES: usize = 512;
/// How much of a URL a warning shows.
const MAX_SHOWN_CHARS: usize = 160;
/// Rounds of percent-unescaping in Safe Browsing canonicalisation.
const MAX_UNESCAPE_ROUNDS: usize = 16;

/// The organisation's link rules: the `[links]` section of the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkRules {
    /// The organisation's own domains (`example.com`): never flagged
    /// themselves, subdomains included, and protected against look-alikes.
    pub org_domains: Vec<String>,
    /// Domains whose links are dangerous, subdomains included. A bare
    /// top-level domain (`zip`) blocks the whole TLD.
    pub blocked_domains: Vec<String>,
    /// Hex SHA-256 prefixes (4 to 32 bytes) of canonical URL expressions,
    /// as Safe Browsing builds them; see [`url_hash_prefix`].
    pub blocked_url_hashes: Vec<String>,
    /// Warn about links that hide their destination behind a shortener.
    pub warn_shorteners: bool,
}

impl Default for LinkRules {
    fn default() -> Self {
        LinkRules {
            org_domains: Vec::new(),
            blocked_domains: Vec::new(),
            blocked_url_hashes: Vec::new(),
            warn_shorteners: true,
        }
    }
}

impl LinkRules {
    pub(crate) fn validate(&self, source: &str) -> Result<(), PolicyError> {
        check_count(
            source,
            "org_domains",
            self.org_domains.len(),
            MAX_ORG_DOMAINS,
        )?;
        check_count(
            source,
            "blocked_domains",
            self.blocked_domains.len(),
            MAX_BLOCKLIST_ENTRIES,
        )?;
        check_count(
            source,
            "blocked_url_hashes",
            self.blocked_url_hashes.len(),
            MAX_BLOCKLIST_ENTRIES,
        )?;
        for entry in &self.org_domains {
            match rule_host(entry) {
                Ok(RuleHost::Name(name)) if name.contains('.') => {}
                Ok(RuleHost::Name(_)) => {
                    return Err(invalid_entry(
                        source,
                        "org_domains",
                        entry,
                        "has no dot; write a full domain such as example.com",
                    ));
                }
                Ok(RuleHost::Ip(_)) => {
                    return Err(invalid_entry(
                        source,
                        "org_domains",
                        entry,
                        "is an IP address; org_domains lists domain names",
                    ));
                }
                Err(why) => return Err(invalid_entry(source, "org_domains", entry, why)),
            }
        }
        for entry in &self.blocked_domains {
            rule_host(entry).map_err(|why| invalid_entry(source, "blocked_domains", entry, why))?;
        }
        for entry in &self.blocked_url_hashes {
            if hash_prefix_bytes(entry).is_none() {
                return Err(invalid_entry(
                    source,
                    "blocked_url_hashes",
                    entry,
                    "is not a hash prefix: 8 to 64 hex digits, an even number of them",
                ));
            }
        }
        Ok(())
    }
}

fn check_count(source: &str, field: &str, count: usize, limit: usize) -> Result<(), PolicyError> {
    if count > limit {
        return Err(PolicyError::Invalid {
            line: find_line(source, field),
            message: format!("links.{field} has {count} entries; the limit is {limit}"),
        });
    }
    Ok(())
}

/// An error about one list entry, on the line that holds it if it can be
/// found (quoted first, so `com` does not match inside `example.com`).
fn invalid_entry(source: &str, field: &str, entry: &str, why: &str) -> PolicyError {
    let line = [
        format!("\"{entry}\""),
        format!("'{entry}'"),
        entry.to_owned(),
    ]
    .iter()
    .find(|needle| !entry.is_empty() && source.contains(needle.as_str()))
    .map_or_else(
        || find_line(source, field),
        |needle| find_line(source, needle),
    );
    PolicyError::Invalid {
        line,
        message: format!("links.{field}: \"{}\" {why}", show(entry, 80)),
    }
}

/// A host named in a rule, in the form the URL parser gives hosts.
enum RuleHost {
    /// An ASCII (punycode) lowercase domain name.
    Name(String),
    /// An IP address as the URL parser prints it (`1.2.3.4`, `[::1]`).
    Ip(String),
}

fn rule_host(entry: &str) -> Result<RuleHost, &'static str> {
    let trimmed = entry.trim();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err("is empty");
    }
    if trimmed.starts_with("*.") {
        return Err(
            "starts with \"*.\"; write the domain alone, its subdomains are always included",
        );
    }
    if trimmed.contains("://") || trimmed.contains(['/', '?', '#', '@', ' ', '\\']) {
        return Err("is not a bare domain name; write it without scheme, path or user name");
    }
    match Host::parse(trimmed) {
        Ok(Host::Domain(name)) => {
            if name.len() > 253 || name.split('.').any(|l| l.is_empty() || l.len() > 63) {
                Err("is not a valid domain name")
            } else {
                Ok(RuleHost::Name(name))
            }
        }
        Ok(Host::Ipv4(ip)) => Ok(RuleHost::Ip(ip.to_string())),
        Ok(Host::Ipv6(ip)) => Ok(RuleHost::Ip(format!("[{ip}]"))),
        Err(_) => Err("is not a valid domain name"),
    }
}

/// The bytes of a configured hash prefix: 4 to 32 bytes written as hex.
fn hash_prefix_bytes(entry: &str) -> Option<Vec<u8>> {
    let hex_digits = entry.trim();
    if !hex_digits.len().is_multiple_of(2) || !(8..=64).contains(&hex_digits.len()) {
        return None;
    }
    hex::decode(hex_digits).ok()
}

/// How bad a link warning is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Worth a second look; often harmless.
    Caution,
    /// Very likely an attack or forbidden by the organisation.
    Danger,
}

impl Severity {
    /// `caution` or `danger`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Caution => "caution",
            Severity::Danger => "danger",
        }
    }
}

/// Why a link was flagged. The ids are stable: clients report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkRisk {
    /// The organisation blocked the domain or the URL (by hash prefix).
    Blocklisted,
    /// Invisible or text-reversing characters inside the link.
    HiddenCharacters,
    /// A user name before `@` (`https://paypal.com@evil.tld`).
    Userinfo,
    /// A bare IP address instead of a name (any form the parser accepts).
    IpLiteral,
    /// Letters of other alphabets imitate a well-known or org domain.
    Homograph,
    /// ASCII tricks imitate a well-known or org domain.
    Lookalike,
    /// An international name that is shown as punycode (`xn--…`) because
    /// it mixes alphabets, imitates Latin letters or hides characters.
    Punycode,
    /// The Markdown link text names another site than the link goes to.
    MismatchedText,
    /// A URL shortener hides the destination.
    Shortener,
    /// The message has more links than are checked.
    TooManyLinks,
}

impl LinkRisk {
    /// The stable id (`link.lookalike`, …).
    pub fn id(self) -> &'static str {
        match self {
            LinkRisk::Blocklisted => "link.blocklisted",
            LinkRisk::HiddenCharacters => "link.hidden_characters",
            LinkRisk::Userinfo => "link.userinfo",
            LinkRisk::IpLiteral => "link.ip_literal",
            LinkRisk::Homograph => "link.homograph",
            LinkRisk::Lookalike => "link.lookalike",
            LinkRisk::Punycode => "link.punycode",
            LinkRisk::MismatchedText => "link.mismatched_text",
            LinkRisk::Shortener => "link.shortener",
            LinkRisk::TooManyLinks => "link.too_many_links",
        }
    }
}

/// One thing a recipient should know about one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkWarning {
    /// The link as it may be shown: suspicious international names as
    /// punycode, hidden characters as `<U+202E>`, long links cut with `…`.
    /// Empty for [`LinkRisk::TooManyLinks`], which is about the message.
    pub url_shown: String,
    pub risk: LinkRisk,
    /// One sentence for a non-expert.
    pub explanation: String,
    pub severity: Severity,
}

/// Checks the links of a message. Compile once per policy, use for every
/// message: blocklists are sorted and the well-known domains' skeletons
/// computed here, so a check costs the same with 10 or 100,000 entries.
pub struct LinkChecker {
    known: Vec<KnownDomain>,
    /// Look-alike key → indices into `known`.
    by_key: BTreeMap<String, Vec<usize>>,
    /// Every known domain as listed, sorted: hosts that are genuine.
    genuine: Vec<String>,
    /// Finds a known registrable domain inside a longer host.
    embedded: Option<AhoCorasick>,
    /// Sorted, without duplicates.
    blocked_domains: Vec<String>,
    /// Hash prefixes grouped by length, each group sorted.
    blocked_prefixes: Vec<(usize, Vec<Vec<u8>>)>,
    warn_shorteners: bool,
}

impl std::fmt::Debug for LinkChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkChecker")
            .field("known_domains", &self.known.len())
            .field("blocked_domains", &self.blocked_domains.len())
            .field(
                "blocked_url_hashes",
                &self
                    .blocked_prefixes
                    .iter()
                    .map(|(_, l)| l.len())
                    .sum::<usize>(),
            )
            .field("warn_shorteners", &self.warn_shorteners)
            .finish()
    }
}

/// A domain look-alikes are compared with.
struct KnownDomain {
    /// Its registrable domain, ASCII (`microsoft.com`, `barclays.co.uk`).
    registrable: String,
    /// The first label of `registrable` (`microsoft`).
    label: String,
    /// [`lookalike_key`] of the label.
    key: String,
    /// `key` as characters, for the edit distance.
    key_chars: Vec<char>,
    /// Characters in `label`.
    label_chars: usize,
    /// Whether near misses (one edit, `brand-word`) count. Off for names
    /// that are common words, where they would flag real sites.
    fuzzy: bool,
}

impl KnownDomain {
    fn new(domain: &str, fuzzy: bool) -> Option<KnownDomain> {
        let registrable = psl::domain_str(domain).unwrap_or(domain).to_owned();
        let label = registrable.split('.').next()?.to_owned();
        let key = lookalike_key(&idna::domain_to_unicode(&label).0);
        Some(KnownDomain {
            key_chars: key.chars().collect(),
            label_chars: label.chars().count(),
            registrable,
            label,
            key,
            fuzzy,
        })
    }
}

impl LinkChecker {
    /// Compiles link rules. Entries that do not parse are skipped (a
    /// policy document has been validated before; rules built in code may
    /// not have been).
    pub fn new(rules: &LinkRules) -> LinkChecker {
        let mut known = Vec::new();
        let mut genuine = Vec::new();
        for &(domain, fuzzy) in WELL_KNOWN_DOMAINS {
            if let Some(k) = KnownDomain::new(domain, fuzzy) {
                known.push(k);
                genuine.push(domain.to_owned());
            }
        }
        for entry in rules.org_domains.iter().take(MAX_ORG_DOMAINS) {
            if let Ok(RuleHost::Name(name)) = rule_host(entry) {
                if let Some(k) = KnownDomain::new(&name, true) {
                    known.push(k);
                }
                genuine.push(name);
            }
        }
        genuine.sort();
        genuine.dedup();

        let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, k) in known.iter().enumerate() {
            by_key.entry(k.key.clone()).or_default().push(i);
        }
        let embedded = AhoCorasick::new(known.iter().map(|k| k.registrable.as_str())).ok();

        let mut blocked_domains: Vec<String> = rules
            .blocked_domains
            .iter()
            .take(MAX_BLOCKLIST_ENTRIES)
            .filter_map(|entry| match rule_host(entry) {
                Ok(RuleHost::Name(name) | RuleHost::Ip(name)) => Some(name),
                Err(_) => None,
            })
            .collect();
        blocked_domains.sort();
        blocked_domains.dedup();

        let mut by_len: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
        for entry in rules.blocked_url_hashes.iter().take(MAX_BLOCKLIST_ENTRIES) {
            if let Some(prefix) = hash_prefix_bytes(entry) {
                by_len.entry(prefix.len()).or_default().push(prefix);
            }
        }
        let blocked_prefixes = by_len
            .into_iter()
            .map(|(len, mut list)| {
                list.sort();
                list.dedup();
                (len, list)
            })
            .collect();

        LinkChecker {
            known,
            by_key,
            genuine,
            embedded,
            blocked_domains,
            blocked_prefixes,
            warn_shorteners: rules.warn_shorteners,
        }
    }

    /// The warnings for the links in `text`, in the order the links appear.
    /// Linear in the length of the text.
    pub fn check(&self, text: &str) -> Vec<LinkWarning> {
        let mut out = Vec::new();
        let mut links = 0usize;
        for_each_candidate(text, |candidate| {
            let Some(link) = Link::parse(&candidate) else {
                return ControlFlow::Continue(());
            };
            if links == MAX_LINKS {
                out.push(LinkWarning {
                    url_shown: String::new(),
                    risk: LinkRisk::TooManyLinks,
                    explanation: format!(
                        "this message has more than {MAX_LINKS} links; only the first {MAX_LINKS} were checked"
                    ),
                    severity: Severity::Caution,
                });
                return ControlFlow::Break(());
            }
            links += 1;
            self.check_link(&link, &mut out);
            ControlFlow::Continue(())
        });
        out
    }

    fn check_link(&self, link: &Link<'_>, out: &mut Vec<LinkWarning>) {
        let Some(site) = Site::of(&link.url) else {
            return;
        };
        let url_shown = shown_url(&link.url, &site);
        let mut warn = |risk: LinkRisk, severity: Severity, explanation: String| {
            if !out
                .iter()
                .any(|w| w.risk == risk && w.url_shown == url_shown)
            {
                out.push(LinkWarning {
                    url_shown: url_shown.clone(),
                    risk,
                    explanation,
                    severity,
                });
            }
        };
        let goes_to = site.display_site();

        if link.hidden {
            warn(
                LinkRisk::HiddenCharacters,
                Severity::Danger,
                format!(
                    "this link contains invisible or text-reversing characters that can disguise where it goes; it goes to {goes_to}"
                ),
            );
        }

        if self.domain_blocked(&site.ascii) {
            warn(
                LinkRisk::Blocklisted,
                Severity::Danger,
                format!("this link goes to {goes_to}, which your organisation has blocked"),
            );
        } else if self.url_blocked(link.url.as_str()) {
            warn(
                LinkRisk::Blocklisted,
                Severity::Danger,
                format!(
                    "this link is on your organisation's list of dangerous links (it goes to {goes_to})"
                ),
            );
        }

        let user = link.url.username();
        if !user.is_empty() || link.url.password().is_some() {
            let decoded = percent_decode_once(user.as_bytes());
            let user_shown = show(&String::from_utf8_lossy(&decoded), 60);
            // A name before `@` that looks like a site is the attack; a
            // plain user name (`git@`, `user:pass@`) is unusual, not fatal.
            if user_shown.contains('.') {
                warn(
                    LinkRisk::Userinfo,
                    Severity::Danger,
                    format!(
                        "this link seems to go to {user_shown}, but everything before '@' is ignored: it really goes to {goes_to}"
                    ),
                );
            } else {
                warn(
                    LinkRisk::Userinfo,
                    Severity::Caution,
                    format!(
                        "this link has a user name or password before '@', which can hide where it goes: it goes to {goes_to}"
                    ),
                );
            }
        }

        if let Some(ip) = &site.ip {
            let written = link.written_host.to_ascii_lowercase();
            let written = written.trim_end_matches('.');
            if written == ip.as_str() {
                warn(
                    LinkRisk::IpLiteral,
                    Severity::Caution,
                    format!("this link goes to a bare IP address ({ip}) instead of a named site"),
                );
            } else {
                warn(
                    LinkRisk::IpLiteral,
                    Severity::Danger,
                    format!(
                        "this link goes to a bare IP address written in a disguised form ({} means {ip})",
                        show(link.written_host, 60)
                    ),
                );
            }
        } else {
            let mut homograph = false;
            if let Some(imitation) = self.imitation(&site) {
                let known = self
                    .known
                    .get(imitation.known)
                    .map_or("a well-known site", |k| k.registrable.as_str());
                if site.registrable_is_idn() && imitation.how != How::Prefix {
                    homograph = true;
                    warn(
                        LinkRisk::Homograph,
                        Severity::Danger,
                        format!(
                            "this link goes to {}, which uses letters from other alphabets to imitate {known}",
                            show(&site.registrable, 80)
                        ),
                    );
                } else {
                    let (severity, explanation) = match imitation.how {
                        How::Letters => (
                            Severity::Danger,
                            format!("this link goes to {goes_to}, which imitates {known}"),
                        ),
                        How::Prefix => (
                            Severity::Danger,
                            format!(
                                "this link goes to {goes_to}, not {known}: the address only starts with {known} to look genuine"
                            ),
                        ),
                        How::Typo => (
                            Severity::Caution,
                            format!(
                                "this link goes to {goes_to}, which looks like a misspelling of {known}"
                            ),
                        ),
                        How::Addition => (
                            Severity::Caution,
                            format!(
                                "this link goes to {goes_to}, which is not {known} but uses its name"
                            ),
                        ),
                    };
                    warn(LinkRisk::Lookalike, severity, explanation);
                }
            }
            if let (Some(spoof), false) = (site.spoof, homograph) {
                warn(
                    LinkRisk::Punycode,
                    Severity::Caution,
                    spoof.explain(&show(&site.ascii, 80)),
                );
            }
        }

        if let Some(text) = link.text
            && let Some(named) = link_text_site(text)
            && named.registrable != site.registrable
        {
            warn(
                LinkRisk::MismatchedText,
                Severity::Danger,
                format!(
                    "this link's text says {} but it goes to {goes_to}",
                    named.display_host()
                ),
            );
        }

        if self.warn_shorteners
            && let Some(shortener) =
                label_suffixes(&site.ascii).find(|s| SHORTENERS.binary_search(s).is_ok())
        {
            warn(
                LinkRisk::Shortener,
                Severity::Caution,
                format!("this link hides its real destination behind a shortener ({shortener})"),
            );
        }
    }

    fn domain_blocked(&self, host: &str) -> bool {
        !self.blocked_domains.is_empty()
            && label_suffixes(host).any(|s| {
                self.blocked_domains
                    .binary_search_by(|b| b.as_str().cmp(s))
                    .is_ok()
            })
    }

    fn url_blocked(&self, url: &str) -> bool {
        if self.blocked_prefixes.is_empty() {
            return false;
        }
        let Some(canonical) = Canonical::parse(url) else {
            return false;
        };
        canonical.expressions().iter().any(|expression| {
            let hash = Sha256::digest(expression.as_bytes());
            self.blocked_prefixes.iter().any(|(len, list)| {
                hash.get(..*len)
                    .is_some_and(|p| list.binary_search_by(|x| x.as_slice().cmp(p)).is_ok())
            })
        })
    }

    fn is_genuine(&self, host: &str) -> bool {
        label_suffixes(host).any(|s| self.genuine.binary_search_by(|g| g.as_str().cmp(s)).is_ok())
    }

    /// Which known domain the site imitates, if any; the strongest reason.
    fn imitation(&self, site: &Site) -> Option<Imitation> {
        if site.ip.is_some() || self.is_genuine(&site.ascii) {
            return None;
        }
        let label = site.registrable.split('.').next().unwrap_or("");
        let suffix_is_icann =
            psl::suffix(site.ascii.as_bytes()).and_then(|s| s.typ()) == Some(psl::Type::Icann);
        // `google.de`, `amazon.com.au`: the same name under another public
        // suffix is usually the brand's own. Under a private suffix
        // (`paypal.github.io`) anyone can register it; that is worth a
        // caution for distinctive names (not for `x.myshopify.com`).
        if let Some(i) = self.known.iter().position(|k| k.label == label) {
            let distinctive = self.known.get(i).is_some_and(|k| k.fuzzy);
            return (!suffix_is_icann && distinctive).then_some(Imitation {
                known: i,
                how: How::Addition,
            });
        }
        // `paypal.com.evil.io`, `paypal.com-secure.net`.
        if let Some(ac) = &self.embedded {
            let host = site.ascii.as_bytes();
            for m in ac.find_overlapping_iter(site.ascii.as_str()) {
                let before_ok = m.start() == 0
                    || matches!(host.get(m.start().wrapping_sub(1)), Some(b'.' | b'-'));
                let after_ok = matches!(host.get(m.end()), Some(b'.' | b'-'));
                let i = m.pattern().as_usize();
                if before_ok
                    && after_ok
                    && self
                        .known
                        .get(i)
                        .is_some_and(|k| k.registrable != site.registrable)
                {
                    return Some(Imitation {
                        known: i,
                        how: How::Prefix,
                    });
                }
            }
        }
        let unicode_label = if label.starts_with("xn--") {
            idna::domain_to_unicode(label).0
        } else {
            label.to_owned()
        };
        let key = lookalike_key(&unicode_label);
        if let Some(&i) = self.by_key.get(&key).and_then(|v| v.first()) {
            return Some(Imitation {
                known: i,
                how: How::Letters,
            });
        }
        if unicode_label.contains('-') {
            let joined = lookalike_key(&unicode_label.replace('-', ""));
            if let Some(&i) = self.by_key.get(&joined).and_then(|v| v.first()) {
                return Some(Imitation {
                    known: i,
                    how: How::Letters,
                });
            }
            for part in unicode_label.split('-').filter(|p| p.chars().count() >= 4) {
                let part_key = lookalike_key(part);
                let found = self.by_key.get(&part_key).and_then(|v| {
                    v.iter()
                        .copied()
                        .find(|&i| self.known.get(i).is_some_and(|k| k.fuzzy))
                });
                if let Some(i) = found {
                    return Some(Imitation {
                        known: i,
                        how: How::Addition,
                    });
                }
            }
        }
        let key_chars: Vec<char> = key.chars().collect();
        self.known
            .iter()
            .position(|k| {
                k.fuzzy && k.label_chars >= 5 && within_one_edit(&key_chars, &k.key_chars)
            })
            .map(|i| Imitation {
                known: i,
                how: How::Typo,
            })
    }
}

/// Checks the links in `text` against `rules`. Compiles the rules on every
/// call: for more than one message, build a [`LinkChecker`] once.
pub fn analyze(text: &str, rules: &LinkRules) -> Vec<LinkWarning> {
    LinkChecker::new(rules).check(text)
}

/// The hex SHA-256 prefix, `bytes` long (4 to 32), of the most specific
/// Safe Browsing expression of `url`: its canonical host, path and query.
/// This is how an administrator builds `blocked_url_hashes`: the prefix of
/// `http://evil.example/` blocks every page of that host, the prefix of
/// `http://evil.example/a/` everything under `/a/`, and that of
/// `http://evil.example/a/b.html?x=1` that page with that query.
///
/// `None` when `bytes` is out of range or the URL has no usable host.
pub fn url_hash_prefix(url: &str, bytes: usize) -> Option<String> {
    if !(4..=32).contains(&bytes) {
        return None;
    }
    let canonical = Canonical::parse(url)?;
    let hash = Sha256::digest(canonical.full_expression().as_bytes());
    Some(hex::encode(hash.get(..bytes)?))
}

#[derive(Clone, Copy, Debug)]
struct Imitation {
    known: usize,
    how: How,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    /// The same letters once look-alikes are folded (`rnicrosoft`, `аррӏе`).
    Letters,
    /// The known domain is the start of a longer host.
    Prefix,
    /// One letter added, dropped, changed or two swapped.
    Typo,
    /// The name plus a word (`paypal-login`), or under a private suffix.
    Addition,
}

// ---------------------------------------------------------------------------
// Finding links in text.

/// A piece of text that may be a link.
struct Candidate<'a> {
    url: &'a str,
    /// The text of a Markdown link.
    text: Option<&'a str>,
}

/// A parsed link.
struct Link<'a> {
    url: Url,
    /// The host as the text wrote it (for disguised IP addresses).
    written_host: &'a str,
    /// Invisible or bidi characters were cut from the link or its text.
    hidden: bool,
    text: Option<&'a str>,
}

impl<'a> Link<'a> {
    fn parse(candidate: &Candidate<'a>) -> Option<Link<'a>> {
        let (raw, hidden_url) = cut_hidden(candidate.url);
        let raw = truncate_bytes(raw, MAX_URL_BYTES);
        let with_scheme = has_web_scheme(raw);
        if !with_scheme && !starts_with_www(raw) && !bare_host(raw) {
            return None;
        }
        let url = if with_scheme {
            Url::parse(raw).ok()?
        } else {
            Url::parse(&format!("http://{raw}")).ok()?
        };
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return None;
        }
        let (text, hidden_text) = match candidate.text {
            Some(t) => {
                let (cut, hidden) = cut_hidden(t);
                (Some(cut), hidden)
            }
            None => (None, false),
        };
        Some(Link {
            url,
            written_host: written_host(raw),
            hidden: hidden_url || hidden_text,
            text,
        })
    }
}

/// Hands every candidate to `f`, in text order, until it breaks. One pass:
/// Markdown links are found from their `](`, the text between them is
/// split on whitespace, and no byte is searched more than a bounded number
/// of times.
fn for_each_candidate<'a>(text: &'a str, mut f: impl FnMut(Candidate<'a>) -> ControlFlow<()>) {
    let bytes = text.as_bytes();
    let finder = memchr::memmem::Finder::new(b"](");
    // Everything before `pos` has been handed out.
    let mut pos = 0usize;
    // Where to look for the next `](`.
    let mut search = 0usize;
    let mut parens = NextMatch::default();
    let mut spaces = NextMatch::default();
    while let Some(found) = bytes.get(search..).and_then(|rest| finder.find(rest)) {
        let close = search + found;
        // The `[` is after the previous `](` and the previous link.
        let floor = search
            .max(pos)
            .max(close.saturating_sub(MAX_LINK_TEXT_BYTES));
        search = close + 2;
        let Some(open) = bytes
            .get(floor..close)
            .and_then(|s| memchr::memrchr(b'[', s))
            .map(|i| floor + i)
        else {
            continue;
        };
        let Some(label) = text.get(open + 1..close) else {
            continue;
        };
        if label.contains('\n') {
            continue;
        }
        let dest_start = close + 2;
        let dest_end = parens
            .next(bytes, dest_start, |s| memchr::memchr(b')', s))
            .min(spaces.next(bytes, dest_start, |s| {
                memchr::memchr3(b' ', b'\n', b'\t', s)
            }));
        let Some(dest) = text.get(dest_start..dest_end) else {
            continue;
        };
        let dest = match dest.strip_prefix('<') {
            Some(inner) => inner.strip_suffix('>').unwrap_or(inner),
            None => dest,
        };
        if dest.is_empty() {
            continue;
        }
        if let Some(gap) = text.get(pos..open)
            && plain_candidates(gap, &mut f).is_break()
        {
            return;
        }
        if f(Candidate {
            url: dest,
            text: Some(label),
        })
        .is_break()
        {
            return;
        }
        pos = if bytes.get(dest_end) == Some(&b')') {
            dest_end + 1
        } else {
            dest_end
        };
        search = search.max(pos);
    }
    if let Some(rest) = text.get(pos..) {
        let _ = plain_candidates(rest, &mut f);
    }
}

/// The next position of a byte class at or after a point, remembered so
/// that queries from increasing points search each byte once.
#[derive(Default)]
struct NextMatch {
    valid: bool,
    from: usize,
    at: usize,
}

impl NextMatch {
    fn next(&mut self, bytes: &[u8], from: usize, find: impl Fn(&[u8]) -> Option<usize>) -> usize {
        if !(self.valid && self.from <= from && from <= self.at) {
            self.at = bytes
                .get(from..)
                .and_then(&find)
                .map_or(bytes.len(), |i| from + i);
            self.from = from;
            self.valid = true;
        }
        self.at
    }
}

fn plain_candidates<'a>(
    gap: &'a str,
    f: &mut impl FnMut(Candidate<'a>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    for token in gap.split(char::is_whitespace) {
        if let Some(url) = url_in_token(token) {
            f(Candidate { url, text: None })?;
        }
    }
    ControlFlow::Continue(())
}

/// The link in a whitespace-free token: from an `http(s)://` anywhere in it,
/// or the token itself if it starts with `www.` or is a bare host.
fn url_in_token(token: &str) -> Option<&str> {
    if token.len() < 4 {
        return None;
    }
    let bytes = token.as_bytes();
    for at in memchr::memmem::find_iter(bytes, b"://") {
        let mut start = at;
        while start > 0
            && at - start < 5
            && bytes.get(start - 1).is_some_and(u8::is_ascii_alphabetic)
        {
            start -= 1;
        }
        let scheme_ok = bytes
            .get(start..at)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"http") || s.eq_ignore_ascii_case(b"https"));
        let boundary_ok =
            start == 0 || !bytes.get(start - 1).is_some_and(u8::is_ascii_alphanumeric);
        if scheme_ok && boundary_ok {
            return token.get(start..).map(trim_url_end);
        }
    }
    let t = token.trim_start_matches(['(', '<', '[', '{', '"', '\'', '*', '_', '~', '`']);
    let t = trim_url_end(t);
    if (starts_with_www(t) && t.len() > 4) || bare_host(t) {
        Some(t)
    } else {
        None
    }
}

/// Drops sentence punctuation after a link, and closing brackets it does
/// not open (`(see https://x.example/a_(b))` keeps `a_(b)`).
fn trim_url_end(s: &str) -> &str {
    let bytes = s.as_bytes();
    let count = |b: u8| memchr::memchr_iter(b, bytes).count();
    let (mut open_paren, mut close_paren) = (count(b'('), count(b')'));
    let (mut open_bracket, mut close_bracket) = (count(b'['), count(b']'));
    let mut end = bytes.len();
    while let Some(&b) = end.checked_sub(1).and_then(|i| bytes.get(i)) {
        match b {
            b'.' | b',' | b';' | b':' | b'!' | b'?' | b'"' | b'\'' | b'*' | b'_' | b'~' | b'`'
            | b'>' | b'}' => {}
            b')' if close_paren > open_paren => close_paren -= 1,
            b']' if close_bracket > open_bracket => close_bracket -= 1,
            b'(' => open_paren = open_paren.saturating_sub(1),
            b'[' => open_bracket = open_bracket.saturating_sub(1),
            _ => break,
        }
        end -= 1;
    }
    s.get(..end).unwrap_or(s)
}

fn has_web_scheme(s: &str) -> bool {
    let lower_starts = |p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    lower_starts("http://") || lower_starts("https://")
}

fn starts_with_www(s: &str) -> bool {
    s.get(..4).is_some_and(|h| h.eq_ignore_ascii_case("www."))
}

/// `host.tld` or `host.tld/path` with a real public suffix. Names that
/// look like file names (`main.rs`, `notes.md`) count only with a path.
fn bare_host(t: &str) -> bool {
    let end = t.find(['/', '?', '#', ':']).unwrap_or(t.len());
    let Some(host) = t.get(..end) else {
        return false;
    };
    let has_path = t.as_bytes().get(end) == Some(&b'/');
    if host.len() < 4
        || host.len() > 253
        || !host.contains('.')
        || host.starts_with(['.', '-'])
        || host.ends_with(['.', '-'])
        || host.contains("..")
        || !host
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
    {
        return false;
    }
    let lower = host.to_lowercase();
    let tld = lower.rsplit('.').next().unwrap_or("");
    if !(tld.starts_with("xn--") || tld.chars().all(char::is_alphabetic)) {
        return false;
    }
    if !has_path && FILE_LIKE_TLDS.contains(&tld) {
        return false;
    }
    psl::suffix(lower.as_bytes()).is_some_and(|s| s.is_known())
        && psl::domain(lower.as_bytes()).is_some()
}

/// The host part of a link as written, before the URL parser rewrites it.
fn written_host(raw: &str) -> &str {
    let rest = raw
        .find("://")
        .and_then(|i| raw.get(i + 3..))
        .unwrap_or(raw);
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or(rest);
    let host_port = authority
        .rfind('@')
        .and_then(|i| authority.get(i + 1..))
        .unwrap_or(authority);
    if host_port.starts_with('[') {
        let close = host_port.find(']').map_or(host_port.len(), |i| i + 1);
        return host_port.get(..close).unwrap_or(host_port);
    }
    host_port
        .rfind(':')
        .and_then(|i| host_port.get(..i))
        .unwrap_or(host_port)
}

/// The text before the first hidden character, and whether there was one.
fn cut_hidden(s: &str) -> (&str, bool) {
    match s.char_indices().find(|&(_, c)| is_hidden_char(c)) {
        Some((i, _)) => (s.get(..i).unwrap_or(""), true),
        None => (s, false),
    }
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// The site a Markdown link's text names, if the text is a link or a host.
fn link_text_site(text: &str) -> Option<Site> {
    let t = text
        .trim()
        .trim_matches(['`', '*', '_', '<', '>', '"', '\'']);
    if t.is_empty() || t.chars().any(char::is_whitespace) {
        return None;
    }
    let t = trim_url_end(t);
    let url = if has_web_scheme(t) {
        Url::parse(t).ok()?
    } else if starts_with_www(t) || bare_host(t) {
        Url::parse(&format!("http://{t}")).ok()?
    } else {
        return None;
    };
    Site::of(&url)
}

// ---------------------------------------------------------------------------
// The host of a link, and how to show it.

struct Site {
    /// The host as the URL parser gives it, ASCII, without a final dot.
    ascii: String,
    /// The IP address, if the host is one.
    ip: Option<String>,
    /// The registrable domain (eTLD+1), ASCII; the host if it has none.
    registrable: String,
    /// Why the international name must be shown as punycode.
    spoof: Option<Spoof>,
}

impl Site {
    fn of(url: &Url) -> Option<Site> {
        match url.host()? {
            Host::Domain(d) => {
                let ascii = d.trim_end_matches('.').to_ascii_lowercase();
                if ascii.is_empty() {
                    return None;
                }
                let registrable = psl::domain_str(&ascii).unwrap_or(&ascii).to_owned();
                let spoof = host_spoof(&ascii);
                Some(Site {
                    ascii,
                    ip: None,
                    registrable,
                    spoof,
                })
            }
            Host::Ipv4(ip) => {
                let s = ip.to_string();
                Some(Site {
                    ascii: s.clone(),
                    ip: Some(s.clone()),
                    registrable: s,
                    spoof: None,
                })
            }
            Host::Ipv6(ip) => {
                let s = format!("[{ip}]");
                Some(Site {
                    ascii: s.clone(),
                    ip: Some(s.clone()),
                    registrable: s,
                    spoof: None,
                })
            }
        }
    }

    fn registrable_is_idn(&self) -> bool {
        self.registrable
            .split('.')
            .next()
            .is_some_and(|l| l.starts_with("xn--"))
    }

    /// A name for people: Unicode when the name passes the spoof checks.
    fn display(&self, ascii: &str) -> String {
        if self.spoof.is_none() && ascii.contains("xn--") {
            show(&idna::domain_to_unicode(ascii).0, 80)
        } else {
            show(ascii, 80)
        }
    }

    fn display_host(&self) -> String {
        self.display(&self.ascii)
    }

    fn display_site(&self) -> String {
        self.display(&self.registrable)
    }
}

/// The link with its host in display form, hidden characters escaped.
fn shown_url(url: &Url, site: &Site) -> String {
    let before = &url[..Position::BeforeHost];
    let after = &url[Position::AfterHost..];
    let host = if site.ip.is_some() {
        site.ascii.clone()
    } else {
        site.display_host()
    };
    show(&format!("{before}{host}{after}"), MAX_SHOWN_CHARS)
}

/// Text that is safe to put in front of a person: hidden characters (bidi
/// controls, zero-width and other invisible characters, control codes)
/// written as `<U+202E>`, at most `max_chars` characters then `…`.
pub(crate) fn show(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars * 4));
    for (n, c) in s.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            break;
        }
        if is_hidden_char(c) {
            out.push_str(&format!("<U+{:04X}>", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Bidi controls: they reorder what follows and make text lie about its end.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that change or hide what text looks like: bidi controls,
/// zero-width and other invisible characters, control codes.
pub(crate) fn is_hidden_char(c: char) -> bool {
    is_bidi_control(c)
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2028}'..='\u{2029}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206A}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

// ---------------------------------------------------------------------------
// International names: when to show punycode (after Chromium's IDN policy).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spoof {
    /// An `xn--` label that does not decode.
    Undecodable,
    /// Invisible characters.
    Invisible,
    /// Characters that are not allowed in identifiers, or on the deny list.
    Unusual,
    /// Latin, Cyrillic and Greek mixed, or scripts beyond "highly
    /// restrictive" (TR39).
    MixedScripts,
    /// All letters of one alphabet that look like Latin ones, outside the
    /// top-level domains where that alphabet is normal (`аррӏе.com`).
    LookalikeScript(&'static str),
}

impl Spoof {
    fn explain(self, ascii: &str) -> String {
        match self {
            Spoof::Undecodable => format!(
                "this address uses an encoded international name that does not decode properly ({ascii})"
            ),
            Spoof::Invisible => {
                format!("this address contains invisible characters (shown as {ascii})")
            }
            Spoof::Unusual => format!(
                "this address contains unusual characters that can imitate others (shown as {ascii})"
            ),
            Spoof::MixedScripts => format!(
                "this address contains characters from different alphabets that look alike (shown as {ascii})"
            ),
            Spoof::LookalikeScript(script) => format!(
                "this address is written in {script} letters that look like Latin ones (shown as {ascii})"
            ),
        }
    }
}

fn host_spoof(ascii: &str) -> Option<Spoof> {
    if !ascii.split('.').any(|l| l.starts_with("xn--")) {
        return None;
    }
    let (unicode, result) = idna::domain_to_unicode(ascii);
    if result.is_err() {
        return Some(Spoof::Undecodable);
    }
    let tld = unicode.rsplit('.').next().unwrap_or("");
    unicode.split('.').find_map(|label| label_spoof(label, tld))
}

fn label_spoof(label: &str, tld: &str) -> Option<Spoof> {
    if label.is_ascii() {
        return None;
    }
    let (mut latin, mut cyrillic, mut greek) = (false, false, false);
    let mut previous_mark = None;
    for c in label.chars() {
        if is_hidden_char(c) {
            return Some(Spoof::Invisible);
        }
        if is_denied(c) || !c.identifier_allowed() {
            return Some(Spoof::Unusual);
        }
        if is_combining_mark(c) {
            if previous_mark == Some(c) {
                return Some(Spoof::Unusual);
            }
            previous_mark = Some(c);
        } else {
            previous_mark = None;
        }
        latin |= is_latin(c);
        cyrillic |= is_cyrillic(c);
        greek |= is_greek(c);
    }
    if u8::from(latin) + u8::from(cyrillic) + u8::from(greek) > 1
        || label.detect_restriction_level() > RestrictionLevel::HighlyRestrictive
    {
        return Some(Spoof::MixedScripts);
    }
    let script = if cyrillic && !CYRILLIC_TLDS.contains(&tld) {
        Some("Cyrillic")
    } else if greek && !GREEK_TLDS.contains(&tld) {
        Some("Greek")
    } else {
        None
    };
    match script {
        Some(s) if unicode_security::skeleton(label).all(|c| c.is_ascii()) => {
            Some(Spoof::LookalikeScript(s))
        }
        _ => None,
    }
}

/// Characters Chromium never shows in a name (a subset of its deny list).
fn is_denied(c: char) -> bool {
    matches!(
        c,
        '\u{0338}'
            | '\u{058A}'
            | '\u{2010}'
            | '\u{2019}'
            | '\u{2027}'
            | '\u{30A0}'
            | '\u{02BB}'
            | '\u{02BC}'
            | '\u{01CD}'..='\u{01DC}'
            | '\u{1C80}'..='\u{1C8F}'
            | '\u{1E90}'..='\u{1E9B}'
            | '\u{1F00}'..='\u{1FFF}'
            | '\u{A640}'..='\u{A69F}'
    )
}

fn is_combining_mark(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

fn is_latin(c: char) -> bool {
    c.is_ascii_alphabetic()
        || matches!(
            c,
            '\u{00C0}'..='\u{00D6}'
                | '\u{00D8}'..='\u{00F6}'
                | '\u{00F8}'..='\u{02AF}'
                | '\u{1E00}'..='\u{1EFF}'
                | '\u{2C60}'..='\u{2C7F}'
                | '\u{A720}'..='\u{A7FF}'
                | '\u{AB30}'..='\u{AB6F}'
        )
}

fn is_cyrillic(c: char) -> bool {
    matches!(
        c,
        '\u{0400}'..='\u{052F}' | '\u{1C80}'..='\u{1C8F}' | '\u{2DE0}'..='\u{2DFF}' | '\u{A640}'..='\u{A69F}'
    )
}

fn is_greek(c: char) -> bool {
    matches!(c, '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}')
}

/// The comparison form of a name: TR39 skeleton, accents dropped,
/// lowercase, then the ASCII tricks folded (`rn`→`m`, `vv`→`w`, `cl`→`d`,
/// `0`→`o`, `1`/`i`/`!`/`|`→`l`, `5`/`$`→`s`, `3`→`e`, `@`→`a`).
fn lookalike_key(label: &str) -> String {
    let chars: Vec<char> = unicode_security::skeleton(label)
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let pair = match (c, chars.get(i + 1)) {
            ('r', Some('n')) => Some('m'),
            ('v', Some('v')) => Some('w'),
            ('c', Some('l')) => Some('d'),
            _ => None,
        };
        if let Some(p) = pair {
            out.push(p);
            i += 2;
            continue;
        }
        out.push(match c {
            '0' => 'o',
            '1' | 'i' | '!' | '|' => 'l',
            '5' | '$' => 's',
            '3' => 'e',
            '@' => 'a',
            other => other,
        });
        i += 1;
    }
    out
}

/// Whether `a` and `b` differ by exactly one insertion, deletion,
/// substitution or swap of neighbours.
fn within_one_edit(a: &[char], b: &[char]) -> bool {
    if a == b {
        return false;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let first_diff = short
        .iter()
        .zip(long)
        .position(|(x, y)| x != y)
        .unwrap_or(short.len());
    fn tail(s: &[char], from: usize) -> &[char] {
        s.get(from..).unwrap_or(&[])
    }
    if short.len() == long.len() {
        let substitution = tail(short, first_diff + 1) == tail(long, first_diff + 1);
        let swap = short.get(first_diff) == long.get(first_diff + 1)
            && short.get(first_diff + 1) == long.get(first_diff)
            && tail(short, first_diff + 2) == tail(long, first_diff + 2);
        substitution || swap
    } else if short.len() + 1 == long.len() {
        tail(short, first_diff) == tail(long, first_diff + 1)
    } else {
        false
    }
}

/// The host and each parent domain: `a.b.c`, `b.c`, `c`.
fn label_suffixes(host: &str) -> impl Iterator<Item = &str> {
    std::iter::once(host).chain(
        host.match_indices('.')
            .filter_map(move |(i, _)| host.get(i + 1..)),
    )
}

// ---------------------------------------------------------------------------
// Safe Browsing canonicalisation and expressions (Update API v4 rules,
// the common subset: no IDN percent-forms in hosts that do not parse).

struct Canonical {
    /// Lowercase ASCII host, or a dotted-quad IPv4 or `[v6]` address.
    host: String,
    is_ip: bool,
    /// Starts with `/`; dots resolved, slashes collapsed, re-escaped.
    path: String,
    /// After `?`, re-escaped; `Some("")` for a bare `?`.
    query: Option<String>,
}

impl Canonical {
    fn parse(url: &str) -> Option<Canonical> {
        let mut s: Vec<u8> = url
            .trim()
            .bytes()
            .filter(|b| !matches!(b, b'\t' | b'\r' | b'\n'))
            .collect();
        if let Some(hash) = memchr::memchr(b'#', &s) {
            s.truncate(hash);
        }
        for _ in 0..MAX_UNESCAPE_ROUNDS {
            let next = percent_decode_once(&s);
            if next == s {
                break;
            }
            s = next;
        }
        let rest = match memchr::memmem::find(&s, b"://") {
            Some(i)
                if s.get(..i)
                    .is_some_and(|p| p.iter().all(u8::is_ascii_alphabetic)) =>
            {
                s.get(i + 3..)?
            }
            _ => &s[..],
        };
        let authority_end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        let authority = rest.get(..authority_end)?;
        let after = rest.get(authority_end..)?;
        let host_port = match memchr::memrchr(b'@', authority) {
            Some(i) => authority.get(i + 1..)?,
            None => authority,
        };
        let host_bytes = if host_port.first() == Some(&b'[') {
            let close = memchr::memchr(b']', host_port)?;
            host_port.get(..=close)?
        } else {
            match memchr::memrchr(b':', host_port) {
                Some(i) => host_port.get(..i)?,
                None => host_port,
            }
        };
        // Leading and trailing dots trimmed, runs of dots collapsed.
        let mut cleaned = Vec::with_capacity(host_bytes.len());
        for &b in host_bytes {
            if b == b'.' && (cleaned.is_empty() || cleaned.last() == Some(&b'.')) {
                continue;
            }
            cleaned.push(b);
        }
        while cleaned.last() == Some(&b'.') {
            cleaned.pop();
        }
        let host_str = String::from_utf8(cleaned).ok()?;
        if host_str.is_empty() {
            return None;
        }
        let (host, is_ip) = match Host::parse(&host_str).ok()? {
            Host::Domain(d) => (d.to_ascii_lowercase(), false),
            Host::Ipv4(ip) => (ip.to_string(), true),
            Host::Ipv6(ip) => (format!("[{ip}]"), true),
        };
        let (path_raw, query_raw) = match memchr::memchr(b'?', after) {
            Some(i) => (after.get(..i)?, Some(after.get(i + 1..)?)),
            None => (after, None),
        };
        Some(Canonical {
            host,
            is_ip,
            path: escape_url_bytes(&resolve_path(path_raw)),
            query: query_raw.map(escape_url_bytes),
        })
    }

    /// The host, path and query: the most specific expression.
    fn full_expression(&self) -> String {
        match &self.query {
            Some(q) => format!("{}{}?{q}", self.host, self.path),
            None => format!("{}{}", self.host, self.path),
        }
    }

    /// Up to 5 host suffixes × 6 path prefixes.
    fn expressions(&self) -> Vec<String> {
        let mut hosts = vec![self.host.clone()];
        if !self.is_ip {
            let labels: Vec<&str> = self.host.split('.').collect();
            let n = labels.len();
            for k in (2..=n.min(5)).rev() {
                if k < n
                    && let Some(last) = labels.get(n - k..)
                {
                    hosts.push(last.join("."));
                }
            }
        }
        let mut paths = Vec::new();
        if let Some(q) = &self.query {
            paths.push(format!("{}?{q}", self.path));
        }
        paths.push(self.path.clone());
        let mut prefix = String::from("/");
        paths.push(prefix.clone());
        let segments: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        let dirs = if self.path.ends_with('/') {
            segments.len()
        } else {
            segments.len().saturating_sub(1)
        };
        for segment in segments.iter().take(dirs.min(3)) {
            prefix.push_str(segment);
            prefix.push('/');
            paths.push(prefix.clone());
        }
        let mut unique_paths: Vec<String> = Vec::with_capacity(paths.len());
        for p in paths {
            if !unique_paths.contains(&p) {
                unique_paths.push(p);
            }
        }
        hosts
            .iter()
            .flat_map(|h| unique_paths.iter().map(move |p| format!("{h}{p}")))
            .collect()
    }
}

/// One round of `%XX` decoding; other `%` are kept.
fn percent_decode_once(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            let hi = s.get(i + 1).and_then(|h| char::from(*h).to_digit(16));
            let lo = s.get(i + 2).and_then(|l| char::from(*l).to_digit(16));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// `/./` and `/../` resolved and runs of `/` collapsed; starts with `/`.
fn resolve_path(path: &[u8]) -> Vec<u8> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = path.is_empty() || path.last() == Some(&b'/');
    for segment in path.split(|&b| b == b'/') {
        match segment {
            b"" => {}
            b"." => trailing_slash = true,
            b".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    if path.last() == Some(&b'/') {
        trailing_slash = true;
    }
    let mut out = vec![b'/'];
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(s);
    }
    if trailing_slash && !segments.is_empty() {
        out.push(b'/');
    }
    out
}

/// Escapes bytes ≤ 0x20, ≥ 0x7F, `#` and `%` as `%XX` (uppercase).
fn escape_url_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b <= 0x20 || b >= 0x7F || b == b'#' || b == b'%' {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Built-in lists.

/// Commonly phished domains, with whether near misses count (off for names
/// that are ordinary words, where one edit gives real sites).
const WELL_KNOWN_DOMAINS: &[(&str, bool)] = &[
    ("microsoft.com", true),
    ("microsoftonline.com", true),
    ("live.com", false),
    ("outlook.com", true),
    ("hotmail.com", true),
    ("office.com", false),
    ("office365.com", true),
    ("sharepoint.com", true),
    ("onedrive.com", true),
    ("azure.com", true),
    ("windows.com", false),
    ("xbox.com", false),
    ("skype.com", false),
    ("bing.com", false),
    ("google.com", true),
    ("gmail.com", true),
    ("youtube.com", true),
    ("apple.com", true),
    ("icloud.com", false),
    ("paypal.com", true),
    ("amazon.com", true),
    ("github.com", true),
    ("gitlab.com", true),
    ("bitbucket.org", true),
    ("atlassian.com", true),
    ("atlassian.net", true),
    ("facebook.com", true),
    ("instagram.com", true),
    ("whatsapp.com", true),
    ("messenger.com", true),
    ("linkedin.com", true),
    ("twitter.com", true),
    ("x.com", false),
    ("netflix.com", true),
    ("spotify.com", true),
    ("dropbox.com", true),
    ("box.com", false),
    ("wetransfer.com", true),
    ("docusign.com", true),
    ("docusign.net", true),
    ("adobe.com", true),
    ("zoom.us", false),
    ("slack.com", false),
    ("salesforce.com", true),
    ("okta.com", false),
    ("duosecurity.com", true),
    ("yahoo.com", true),
    ("aol.com", false),
    ("protonmail.com", true),
    ("proton.me", false),
    ("ebay.com", false),
    ("chase.com", false),
    ("bankofamerica.com", true),
    ("wellsfargo.com", true),
    ("citibank.com", true),
    ("hsbc.com", false),
    ("barclays.co.uk", true),
    ("americanexpress.com", true),
    ("capitalone.com", true),
    ("usbank.com", true),
    ("santander.com", true),
    ("revolut.com", true),
    ("wise.com", false),
    ("visa.com", false),
    ("mastercard.com", true),
    ("stripe.com", false),
    ("venmo.com", false),
    ("cash.app", false),
    ("coinbase.com", true),
    ("binance.com", false),
    ("kraken.com", false),
    ("blockchain.com", true),
    ("metamask.io", true),
    ("ledger.com", false),
    ("dhl.com", false),
    ("fedex.com", false),
    ("ups.com", false),
    ("usps.com", false),
    ("royalmail.com", true),
    ("irs.gov", false),
    ("steampowered.com", true),
    ("steamcommunity.com", true),
    ("roblox.com", true),
    ("epicgames.com", true),
    ("discord.com", true),
    ("telegram.org", true),
    ("signal.org", false),
    ("tiktok.com", true),
    ("snapchat.com", true),
    ("reddit.com", true),
    ("pinterest.com", false),
    ("wikipedia.org", true),
    ("shopify.com", true),
    ("walmart.com", true),
    ("target.com", false),
    ("bestbuy.com", true),
    ("costco.com", true),
    ("alibaba.com", true),
    ("aliexpress.com", true),
    ("booking.com", false),
    ("airbnb.com", true),
    ("intuit.com", false),
    ("quickbooks.com", true),
    ("verizon.com", true),
    ("att.com", false),
    ("t-mobile.com", true),
    ("comcast.net", true),
    ("xfinity.com", true),
    ("godaddy.com", true),
    ("cloudflare.com", true),
    ("notion.so", false),
    ("canva.com", false),
    ("zendesk.com", true),
    ("hubspot.com", true),
    ("mailchimp.com", true),
    ("yandex.ru", true),
    ("mail.ru", false),
    ("vk.com", false),
    ("naver.com", false),
    ("rakuten.co.jp", true),
    ("samsung.com", true),
    ("nvidia.com", true),
    ("openai.com", true),
    ("chatgpt.com", true),
];

/// URL shorteners (sorted: searched by binary search).
const SHORTENERS: &[&str] = &[
    "1url.com",
    "adf.ly",
    "bit.ly",
    "bitly.com",
    "bl.ink",
    "buff.ly",
    "clck.ru",
    "cutt.ly",
    "db.tt",
    "dlvr.it",
    "fb.me",
    "gg.gg",
    "goo.gl",
    "ift.tt",
    "is.gd",
    "kutt.it",
    "lnkd.in",
    "mcaf.ee",
    "ow.ly",
    "po.st",
    "qrco.de",
    "rb.gy",
    "rebrand.ly",
    "s.id",
    "short.gy",
    "shorte.st",
    "shorturl.at",
    "shrtco.de",
    "snip.ly",
    "soo.gd",
    "surl.li",
    "t.co",
    "t.ly",
    "t2m.io",
    "tiny.cc",
    "tiny.one",
    "tinyurl.com",
    "tr.im",
    "trib.al",
    "u.to",
    "urlz.fr",
    "v.gd",
    "x.co",
];

/// Top-level domains that are also common file extensions: a bare
/// `main.rs` or `notes.md` is a file name unless a path follows.
const FILE_LIKE_TLDS: &[&str] = &[
    "cc", "md", "mk", "ml", "mov", "ps", "py", "rs", "sh", "so", "zip",
];

/// Where Cyrillic names are normal.
const CYRILLIC_TLDS: &[&str] = &[
    "ru",
    "su",
    "ua",
    "by",
    "kz",
    "kg",
    "tj",
    "uz",
    "bg",
    "mk",
    "rs",
    "mn",
    "рф",
    "рус",
    "укр",
    "бел",
    "срб",
    "мкд",
    "қаз",
    "мон",
    "бг",
    "москва",
    "онлайн",
    "сайт",
    "орг",
    "ком",
    "дети",
];

/// Where Greek names are normal.
const GREEK_TLDS: &[&str] = &["gr", "cy", "ελ", "ευ"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Policy;

    fn rules() -> LinkRules {
        LinkRules {
            org_domains: vec!["acme-corp.com".into(), "login.partner.example".into()],
            ..LinkRules::default()
        }
    }

    fn check(text: &str) -> Vec<LinkWarning> {
        let warnings = LinkChecker::new(&rules()).check(text);
        for w in &warnings {
            assert_printable(&w.url_shown);
            assert_printable(&w.explanation);
        }
        warnings
    }

    fn assert_printable(s: &str) {
        assert!(!s.chars().any(is_hidden_char), "hidden character in {s:?}");
    }

    fn ids(text: &str) -> Vec<&'static str> {
        check(text).iter().map(|w| w.risk.id()).collect()
    }

    fn only(text: &str, risk: LinkRisk) -> LinkWarning {
        let warnings = check(text);
        assert_eq!(warnings.len(), 1, "{text}: {warnings:#?}");
        let w = warnings.into_iter().next().unwrap();
        assert_eq!(w.risk, risk, "{text}: {w:#?}");
        w
    }

    #[test]
    fn real_domains_and_their_subdomains_are_not_flagged() {
        for text in [
            "https://microsoft.com",
            "see https://www.microsoft.com/en-us/security and www.google.com",
            "https://login.microsoftonline.com/common/oauth2",
            "https://accounts.google.com/signin",
            "https://www.paypal.com/signin",
            "https://apple.com",
            "https://github.com/rust-lang/rust",
            "https://acme-corp.com and https://mail.acme-corp.com/inbox",
            "https://login.partner.example/sso",
            "https://google.de and https://amazon.com.au and https://www.amazon.co.uk/",
            "https://example.com/ plain http://example.org/a?b=c#d",
            "https://münchen.de/ and https://xn--mnchen-3ya.de/",
            "https://пример.рф/",
        ] {
            assert_eq!(check(text), vec![], "{text}");
        }
    }

    #[test]
    fn everyday_links_are_quiet() {
        for url in [
            "https://en.wikipedia.org/wiki/Rust_(programming_language)",
            "https://docs.rs/tokio/latest/tokio/",
            "https://crates.io/crates/url",
            "https://stackoverflow.com/questions/1/x",
            "https://mail.google.com/mail/u/0/#inbox",
            "https://drive.google.com/file/d/abc/view?usp=sharing",
            "https://meet.google.com/abc-defg-hij",
            "https://www.google.co.uk/search?q=rust",
            "https://teams.microsoft.com/l/meetup-join/19%3a",
            "https://outlook.office.com/mail/",
            "https://outlook.office365.com/owa/",
            "https://contoso-my.sharepoint.com/personal/x",
            "https://onedrive.live.com/?id=1",
            "https://aka.ms/x",
            "https://1drv.ms/w/s!abc",
            "https://portal.azure.com/#home",
            "https://myapp.azurewebsites.net/",
            "https://zoom.us/j/123456",
            "https://us02web.zoom.us/j/1?pwd=x",
            "https://app.slack.com/client/T1/C1",
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
            "https://youtu.be/dQw4w9WgXcQ",
            "https://open.spotify.com/track/x",
            "https://www.linkedin.com/in/someone/",
            "https://www.bbc.co.uk/news",
            "https://www.amazon.de/dp/B000000",
            "https://aws.amazon.com/s3/",
            "https://s3.amazonaws.com/bucket/key",
            "https://support.apple.com/en-us/HT201222",
            "https://www.icloud.com/",
            "https://rust-lang.github.io/book/",
            "https://raw.githubusercontent.com/a/b/main/README.md",
            "https://gist.github.com/x",
            "https://acme.atlassian.net/browse/ABC-1",
            "https://bitbucket.org/x/y",
            "https://gitlab.com/x/y/-/merge_requests/1",
            "https://www.reddit.com/r/rust/",
            "https://medium.com/@someone/a-post-1234",
            "https://x.com/rustlang/status/1",
            "https://twitter.com/rustlang",
            "https://www.tiktok.com/@someone",
            "https://wa.me/15551234567",
            "https://t.me/somechannel",
            "https://discord.gg/rust-lang",
            "https://www.paypal.me/someone",
            "https://www.dropbox.com/s/x/file.pdf?dl=0",
            "https://app.docusign.com/documents",
            "https://we.tl/t-abc",
            "https://www.figma.com/file/x",
            "https://www.notion.so/x-123",
            "https://chatgpt.com/c/x",
            "https://store.steampowered.com/app/1",
            "https://x.myshopify.com/",
            "https://quickbooks.intuit.com/",
            "https://www.t-mobile.com/",
            "https://dash.cloudflare.com/",
            "https://acme.zendesk.com/hc",
            "https://acme.okta.com/app",
            "https://acme.my.salesforce.com/",
            "https://online.citi.com/",
            "https://www.santander.co.uk/",
            "https://www.microsoft365.com/",
            "https://fonts.googleapis.com/css2?family=Inter",
            "https://www.irs.gov/forms",
            "https://www.gov.uk/",
            "https://news.ycombinator.com/item?id=1",
            "https://www.nytimes.com/2024/01/01/world/x.html",
        ] {
            assert_eq!(check(url), vec![], "{url}");
        }
    }

    #[test]
    fn ascii_lookalikes_of_well_known_domains() {
        let w = only(
            "please log in at https://rnicrosoft.com/login",
            LinkRisk::Lookalike,
        );
        assert_eq!(w.severity, Severity::Danger);
        assert_eq!(
            w.explanation,
            "this link goes to rnicrosoft.com, which imitates microsoft.com"
        );
        assert_eq!(w.url_shown, "https://rnicrosoft.com/login");
        for (text, known) in [
            ("https://paypa1.com/", "paypal.com"),
            ("http://g00gle.com", "google.com"),
            ("https://www.arnazon.com/deals", "amazon.com"),
            ("https://gihtub.com/x", "github.com"),
            ("https://appie.com", "apple.com"),
            ("https://rnicrosoft.net", "microsoft.com"),
            ("https://pay-pal.com", "paypal.com"),
        ] {
            let w = only(text, LinkRisk::Lookalike);
            assert!(w.explanation.ends_with(known), "{text}: {}", w.explanation);
        }
    }

    #[test]
    fn near_misses_are_cautions() {
        for (text, known) in [
            ("https://micosoft.com/", "microsoft.com"),
            ("https://paypall.com", "paypal.com"),
            ("https://githuub.com", "github.com"),
            ("https://paypal-login.com/verify", "paypal.com"),
            ("https://secure-microsoft-account.net", "microsoft.com"),
            ("https://paypal.github.io/", "paypal.com"),
        ] {
            let w = only(text, LinkRisk::Lookalike);
            assert_eq!(w.severity, Severity::Caution, "{text}");
            assert!(w.explanation.contains(known), "{text}: {}", w.explanation);
        }
        // Common words near a brand that is itself a word are left alone.
        for text in [
            "https://stack.com",
            "https://motion.com",
            "https://finance.com",
        ] {
            assert_eq!(check(text), vec![], "{text}");
        }
    }

    #[test]
    fn brand_as_the_start_of_another_domain() {
        let w = only("https://paypal.com.evil.io/login", LinkRisk::Lookalike);
        assert_eq!(w.severity, Severity::Danger);
        assert_eq!(
            w.explanation,
            "this link goes to evil.io, not paypal.com: the address only starts with paypal.com to look genuine"
        );
        let w = only(
            "http://www.microsoft.com-security.support/",
            LinkRisk::Lookalike,
        );
        assert!(w.explanation.contains("microsoft.com"));
    }

    #[test]
    fn lookalikes_of_the_organisation() {
        let w = only("https://acrne-corp.com/payroll", LinkRisk::Lookalike);
        assert_eq!(
            w.explanation,
            "this link goes to acrne-corp.com, which imitates acme-corp.com"
        );
        let w = only("https://acme-corp.com.login.top/", LinkRisk::Lookalike);
        assert!(w.explanation.contains("acme-corp.com"));
        assert_eq!(
            only("https://acme-corps.com", LinkRisk::Lookalike).severity,
            Severity::Caution
        );
    }

    #[test]
    fn homographs_are_shown_as_punycode() {
        // All-Cyrillic "аррӏе".
        let w = only("https://аррӏе.com/id", LinkRisk::Homograph);
        assert_eq!(w.severity, Severity::Danger);
        assert_eq!(w.url_shown, "https://xn--80ak6aa92e.com/id");
        assert_eq!(
            w.explanation,
            "this link goes to xn--80ak6aa92e.com, which uses letters from other alphabets to imitate apple.com"
        );
        // The same, written as punycode.
        assert_eq!(
            only("http://xn--80ak6aa92e.com", LinkRisk::Homograph).url_shown,
            "http://xn--80ak6aa92e.com/"
        );
        // One Cyrillic "а" in a Latin name.
        let w = only("https://paypаl.com/", LinkRisk::Homograph);
        assert!(w.url_shown.starts_with("https://xn--"), "{}", w.url_shown);
        // An accent.
        assert!(
            only("https://googlé.com", LinkRisk::Homograph)
                .explanation
                .ends_with("google.com")
        );
        // Greek omicron in the organisation's name.
        assert!(
            only("https://acme-cοrp.com", LinkRisk::Homograph)
                .explanation
                .ends_with("acme-corp.com")
        );
    }

    #[test]
    fn suspicious_international_names_that_imitate_nothing_known() {
        // Latin with a Cyrillic "е".
        let w = only("https://exаmple-shop.net/", LinkRisk::Punycode);
        assert_eq!(w.severity, Severity::Caution);
        assert!(
            w.explanation.contains("different alphabets"),
            "{}",
            w.explanation
        );
        assert!(w.url_shown.starts_with("https://xn--"), "{}", w.url_shown);
        // All Cyrillic letters that look Latin, under .com but not under .рф.
        let w = only("https://сосо.com", LinkRisk::Punycode);
        assert!(w.explanation.contains("Cyrillic"), "{}", w.explanation);
        assert_eq!(check("https://сосо.рф"), vec![]);
        // Greek with Cyrillic.
        assert_eq!(
            only("https://αб.org", LinkRisk::Punycode).severity,
            Severity::Caution
        );
    }

    #[test]
    fn ip_literals() {
        let w = only("http://192.168.0.1/login", LinkRisk::IpLiteral);
        assert_eq!(w.severity, Severity::Caution);
        assert_eq!(
            w.explanation,
            "this link goes to a bare IP address (192.168.0.1) instead of a named site"
        );
        let w = only("http://0x7f000001/", LinkRisk::IpLiteral);
        assert_eq!(w.severity, Severity::Danger);
        assert_eq!(
            w.explanation,
            "this link goes to a bare IP address written in a disguised form (0x7f000001 means 127.0.0.1)"
        );
        assert_eq!(
            only("http://3279880203/blah", LinkRisk::IpLiteral).severity,
            Severity::Danger
        );
        assert_eq!(
            only("http://127.1/", LinkRisk::IpLiteral).severity,
            Severity::Danger
        );
        assert_eq!(
            only("http://[::1]:8080/x", LinkRisk::IpLiteral).severity,
            Severity::Caution
        );
        assert_eq!(check("http://example.com/192.168.0.1"), vec![]);
    }

    #[test]
    fn user_names_before_the_host() {
        let w = only("https://google.com@evil.tld/", LinkRisk::Userinfo);
        assert_eq!(w.severity, Severity::Danger);
        assert_eq!(
            w.explanation,
            "this link seems to go to google.com, but everything before '@' is ignored: it really goes to evil.tld"
        );
        let w = only("https://paypal.com@evil.tld", LinkRisk::Userinfo);
        assert!(w.explanation.contains("paypal.com"));
        let w = only("http://admin:secret@example.org/", LinkRisk::Userinfo);
        assert_eq!(w.severity, Severity::Caution);
        assert!(w.explanation.contains("example.org"));
        assert_eq!(
            only("https://git@github.com/org/repo.git", LinkRisk::Userinfo).severity,
            Severity::Caution
        );
        // An e-mail address is not a link.
        assert_eq!(check("write to alice@example.com"), vec![]);
    }

    #[test]
    fn markdown_text_that_names_another_site() {
        let w = only("[paypal.com](https://evil.tld/x)", LinkRisk::MismatchedText);
        assert_eq!(
            w.explanation,
            "this link's text says paypal.com but it goes to evil.tld"
        );
        assert_eq!(w.url_shown, "https://evil.tld/x");
        let w = only(
            "read [https://www.bank.example/login](http://203.0.113.9.nip.io/)",
            LinkRisk::MismatchedText,
        );
        assert!(
            w.explanation.contains("www.bank.example"),
            "{}",
            w.explanation
        );
        for text in [
            "[example.com](https://www.example.com/x)",
            "[www.example.com](https://example.com)",
            "[click here](https://example.com)",
            "[the docs](https://docs.rs/url)",
            "[main.rs](https://github.com/a/b/blob/main/src/main.rs)",
            "[https://example.com/a](<https://example.com/b>)",
        ] {
            assert_eq!(check(text), vec![], "{text}");
        }
    }

    #[test]
    fn markdown_links_are_found_once() {
        let warnings = check("a [bit.ly/x](https://bit.ly/y) b");
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert_eq!(warnings[0].url_shown, "https://bit.ly/y");
        // A Markdown destination that is not a web link is ignored.
        assert_eq!(check("[paypal.com](javascript:alert(1))"), vec![]);
        assert_eq!(check("[paypal.com](./relative/path)"), vec![]);
    }

    #[test]
    fn shorteners() {
        let w = only("https://bit.ly/3xyz", LinkRisk::Shortener);
        assert_eq!(
            w.explanation,
            "this link hides its real destination behind a shortener (bit.ly)"
        );
        assert_eq!(
            only("t.co/abc", LinkRisk::Shortener).url_shown,
            "http://t.co/abc"
        );
        assert_eq!(
            ids("https://tinyurl.com/abc and goo.gl/x"),
            ["link.shortener"; 2]
        );
        let quiet = LinkRules {
            warn_shorteners: false,
            ..LinkRules::default()
        };
        assert_eq!(analyze("https://bit.ly/3xyz", &quiet), vec![]);
        assert_eq!(check("https://notbit.ly/x"), vec![]);
    }

    #[test]
    fn blocked_domains_and_their_subdomains() {
        let rules = LinkRules {
            blocked_domains: vec!["evil.example".into(), "zip".into(), "203.0.113.7".into()],
            ..LinkRules::default()
        };
        let checker = LinkChecker::new(&rules);
        for text in [
            "https://evil.example/",
            "https://a.b.evil.example/x?y",
            "HTTPS://EVIL.EXAMPLE./",
            "http://download.zip/x",
            "http://203.0.113.7/",
        ] {
            let warnings = checker.check(text);
            assert_eq!(
                warnings[0].risk,
                LinkRisk::Blocklisted,
                "{text}: {warnings:#?}"
            );
            assert_eq!(warnings[0].severity, Severity::Danger);
        }
        assert_eq!(
            checker.check("https://evil.example/")[0].explanation,
            "this link goes to evil.example, which your organisation has blocked"
        );
        assert_eq!(checker.check("https://notevil.example/"), vec![]);
        assert_eq!(checker.check("https://evil.example.org/"), vec![]);
    }

    #[test]
    fn large_blocklists() {
        let rules = LinkRules {
            blocked_domains: (0..MAX_BLOCKLIST_ENTRIES)
                .map(|i| format!("bad{i}.example"))
                .collect(),
            blocked_url_hashes: (1..MAX_BLOCKLIST_ENTRIES)
                .map(|i| format!("{:08x}", (i as u32).wrapping_mul(2_654_435_761)))
                .chain([url_hash_prefix("http://phish.example/kit/", 6).unwrap()])
                .collect(),
            ..LinkRules::default()
        };
        assert_eq!(rules.validate(""), Ok(()));
        let checker = LinkChecker::new(&rules);
        let text = "https://www.bad99999.example/x https://ok.example/ https://phish.example/kit/a";
        let warnings = checker.check(text);
        let blocked: Vec<_> = warnings
            .iter()
            .filter(|w| w.risk == LinkRisk::Blocklisted)
            .map(|w| w.url_shown.as_str())
            .collect();
        assert_eq!(
            blocked,
            [
                "https://www.bad99999.example/x",
                "https://phish.example/kit/a"
            ]
        );
    }

    #[test]
    fn blocked_url_hash_prefixes() {
        let prefix = url_hash_prefix("http://bad.example/phish/", 4).unwrap();
        assert_eq!(prefix.len(), 8);
        let full = url_hash_prefix("http://bad.example/phish/", 32).unwrap();
        assert!(full.starts_with(&prefix));
        let rules = LinkRules {
            blocked_url_hashes: vec![prefix.to_uppercase()],
            ..LinkRules::default()
        };
        let checker = LinkChecker::new(&rules);
        for text in [
            "https://bad.example/phish/login.html?x=1",
            "http://www.bad.example/phish/",
            "http://BAD.example/a/../phish//kit/#frag",
        ] {
            let warnings = checker.check(text);
            assert_eq!(warnings.len(), 1, "{text}: {warnings:#?}");
            assert_eq!(warnings[0].risk, LinkRisk::Blocklisted);
        }
        assert_eq!(checker.check("https://bad.example/other"), vec![]);
        assert_eq!(checker.check("https://bad.example/"), vec![]);
        // A whole-site entry blocks every page.
        let site = LinkRules {
            blocked_url_hashes: vec![url_hash_prefix("bad.example", 8).unwrap()],
            ..LinkRules::default()
        };
        assert_eq!(analyze("https://x.bad.example/any/page", &site).len(), 1);
        assert_eq!(url_hash_prefix("http://x.example/", 3), None);
        assert_eq!(url_hash_prefix("http://x.example/", 33), None);
        assert_eq!(url_hash_prefix("http:///", 4), None);
    }

    #[test]
    fn url_hash_prefix_is_the_sha256_of_the_expression() {
        let expected = hex::encode(Sha256::digest(b"example.com/a/b?c=d"));
        assert_eq!(
            url_hash_prefix("HTTP://user@Example.COM:8080/a/./b?c=d#e", 32).unwrap(),
            expected
        );
    }

    fn canonical(url: &str) -> Option<String> {
        Canonical::parse(url).map(|c| format!("http://{}", c.full_expression()))
    }

    #[test]
    fn safe_browsing_canonicalisation() {
        // Examples from the Safe Browsing v4 documentation.
        for (input, expected) in [
            ("http://host/%25%32%35", "http://host/%25"),
            ("http://host/%25%32%35%25%32%35", "http://host/%25%25"),
            ("http://host/%2525252525252525", "http://host/%25"),
            ("http://host/asdf%25%32%35asd", "http://host/asdf%25asd"),
            (
                "http://host/%%%25%32%35asd%%",
                "http://host/%25%25%25asd%25%25",
            ),
            ("http://www.google.com/", "http://www.google.com/"),
            (
                "http://%31%36%38%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/%77%77%77%2E%65%62%61%79%2E%63%6F%6D/",
                "http://168.188.99.26/.secure/www.ebay.com/",
            ),
            (
                "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
                "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
            ),
            ("http://3279880203/blah", "http://195.127.0.11/blah"),
            ("http://www.google.com/blah/..", "http://www.google.com/"),
            ("www.google.com/", "http://www.google.com/"),
            ("www.google.com", "http://www.google.com/"),
            ("http://www.evil.com/blah#frag", "http://www.evil.com/blah"),
            ("http://www.GOOgle.com/", "http://www.google.com/"),
            ("http://www.google.com.../", "http://www.google.com/"),
            (
                "http://www.google.com/foo\tbar\rbaz\n2",
                "http://www.google.com/foobarbaz2",
            ),
            ("http://www.google.com/q?", "http://www.google.com/q?"),
            ("http://www.google.com/q?r?", "http://www.google.com/q?r?"),
            ("http://www.google.com/q?r?s", "http://www.google.com/q?r?s"),
            ("http://evil.com/foo#bar#baz", "http://evil.com/foo"),
            ("http://evil.com/foo;", "http://evil.com/foo;"),
            ("http://evil.com/foo?bar;", "http://evil.com/foo?bar;"),
            ("http://notrailingslash.com", "http://notrailingslash.com/"),
            ("http://www.gotaport.com:1234/", "http://www.gotaport.com/"),
            ("  http://www.google.com/  ", "http://www.google.com/"),
            ("https://www.securesite.com/", "http://www.securesite.com/"),
            ("http://host.com/ab%23cd", "http://host.com/ab%23cd"),
            (
                "http://host.com//twoslashes?more//slashes",
                "http://host.com/twoslashes?more//slashes",
            ),
        ] {
            assert_eq!(canonical(input).as_deref(), Some(expected), "{input}");
        }
        assert_eq!(canonical("http://"), None);
        assert_eq!(canonical(""), None);
    }

    #[test]
    fn safe_browsing_expressions() {
        let e = Canonical::parse("http://a.b.c/1/2.html?param=1")
            .unwrap()
            .expressions();
        assert_eq!(
            e,
            [
                "a.b.c/1/2.html?param=1",
                "a.b.c/1/2.html",
                "a.b.c/",
                "a.b.c/1/",
                "b.c/1/2.html?param=1",
                "b.c/1/2.html",
                "b.c/",
                "b.c/1/",
            ]
        );
        let e = Canonical::parse("http://a.b.c.d.e.f.g/1.html")
            .unwrap()
            .expressions();
        assert_eq!(
            e,
            [
                "a.b.c.d.e.f.g/1.html",
                "a.b.c.d.e.f.g/",
                "c.d.e.f.g/1.html",
                "c.d.e.f.g/",
                "d.e.f.g/1.html",
                "d.e.f.g/",
                "e.f.g/1.html",
                "e.f.g/",
                "f.g/1.html",
                "f.g/",
            ]
        );
        let e = Canonical::parse("http://1.2.3.4/1/").unwrap().expressions();
        assert_eq!(e, ["1.2.3.4/1/", "1.2.3.4/"]);
        let e = Canonical::parse("http://a.b/1/2/3/4/5/6.html?q")
            .unwrap()
            .expressions();
        assert_eq!(e.len(), 6);
        assert!(e.contains(&"a.b/1/2/3/".to_owned()));
        let e = Canonical::parse("http://a.b.c.d.e.f.g.h/1/2/3/4/5?x")
            .unwrap()
            .expressions();
        assert_eq!(e.len(), 30);
    }

    #[test]
    fn hidden_characters_in_links() {
        let warnings = check("https://evil.com\u{202E}moc.lapyap");
        assert_eq!(
            warnings[0].risk,
            LinkRisk::HiddenCharacters,
            "{warnings:#?}"
        );
        assert_eq!(warnings[0].url_shown, "https://evil.com/");
        assert!(warnings[0].explanation.ends_with("it goes to evil.com"));
        let warnings = check("[paypal.com\u{200B}](https://paypal.com)");
        assert_eq!(warnings[0].risk, LinkRisk::HiddenCharacters);
        assert_eq!(
            show("a\u{202E}b\u{200B}c\u{7}", 10),
            "a<U+202E>b<U+200B>c<U+0007>"
        );
        assert_eq!(show("abcdef", 3), "abc…");
    }

    #[test]
    fn finding_links_in_text() {
        for (token, url) in [
            ("https://example.com/a", Some("https://example.com/a")),
            (
                "(https://example.com/a_(b)).",
                Some("https://example.com/a_(b)"),
            ),
            ("<https://example.com/>", Some("https://example.com/")),
            ("see:HTTPS://example.com,", Some("HTTPS://example.com")),
            ("www.example.com,", Some("www.example.com")),
            ("\"example.com/path?x=1\"", Some("example.com/path?x=1")),
            ("example.co.uk", Some("example.co.uk")),
            ("main.rs/x", Some("main.rs/x")),
            ("xhttps://example.com", None),
            ("ftp://example.com", None),
            ("main.rs", None),
            ("notes.txt", None),
            ("v1.2.3", None),
            ("e.g.", None),
            ("alice@example.com", None),
            ("example.notatld", None),
            ("...", None),
        ] {
            assert_eq!(url_in_token(token), url, "{token}");
        }
        let mut found = Vec::new();
        for_each_candidate(
            "one https://a.example/x, [two](https://b.example) and [three] (x) www.c.example",
            |c| {
                found.push((c.url, c.text));
                ControlFlow::Continue(())
            },
        );
        assert_eq!(
            found,
            [
                ("https://a.example/x", None),
                ("https://b.example", Some("two")),
                ("www.c.example", None),
            ]
        );
    }

    #[test]
    fn too_many_links() {
        let text: String = (0..70).map(|i| format!("https://bit.ly/{i} ")).collect();
        let warnings = check(&text);
        assert_eq!(warnings.len(), MAX_LINKS + 1);
        let last = warnings.last().unwrap();
        assert_eq!(last.risk, LinkRisk::TooManyLinks);
        assert_eq!(last.url_shown, "");
    }

    #[test]
    fn one_warning_per_risk_and_link() {
        let text = "https://bit.ly/a https://bit.ly/a";
        assert_eq!(check(text).len(), 1);
        let text = "https://paypal.com@192.168.1.1/";
        assert_eq!(ids(text), ["link.userinfo", "link.ip_literal"]);
    }

    #[test]
    fn edit_distance() {
        let c = |s: &str| s.chars().collect::<Vec<_>>();
        assert!(within_one_edit(&c("paypal"), &c("paypall")));
        assert!(within_one_edit(&c("paypal"), &c("paypl")));
        assert!(within_one_edit(&c("paypal"), &c("paypak")));
        assert!(within_one_edit(&c("github"), &c("gihtub")));
        assert!(!within_one_edit(&c("paypal"), &c("paypal")));
        assert!(!within_one_edit(&c("paypal"), &c("pyapla")));
        assert!(!within_one_edit(&c("github"), &c("gitlab")));
        assert!(!within_one_edit(&c(""), &c("ab")));
        assert!(within_one_edit(&c(""), &c("a")));
    }

    #[test]
    fn adversarial_inputs_complete() {
        let checker = LinkChecker::new(&LinkRules {
            blocked_url_hashes: vec!["00000000".into()],
            blocked_domains: vec!["evil.example".into()],
            ..rules()
        });
        let mib = 1 << 20;
        for unit in [
            "http://",
            "[a](",
            "](",
            "[",
            "[a](http://x.example/",
            "www.",
            "a.com/",
            "xn--80ak6aa92e.com ",
            "%25",
            "))))",
            "https://a-",
            "\u{202E}",
            "é",
        ] {
            let text = unit.repeat(mib / unit.len() + 1);
            let _ = checker.check(&text);
        }
        // Pseudo-random bytes, read as text.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let bytes: Vec<u8> = (0..mib)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let _ = checker.check(&String::from_utf8_lossy(&bytes));
        let _ = url_hash_prefix(&"%25".repeat(10_000), 4);
        let _ = url_hash_prefix(&format!("http://a.b/{}", "../".repeat(10_000)), 4);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            for w in check(&text) {
                proptest::prop_assert!(!w.url_shown.chars().any(is_hidden_char));
            }
            let _ = url_hash_prefix(&text, 4);
        }

        #[test]
        fn never_panics_on_urlish_text(
            text in "(https?://|www\\.|\\[|\\]\\(|[a-zа-я0-9@:/?#%.\\-]|\u{202E}|xn--){0,40}"
        ) {
            let _ = check(&text);
        }
    }

    fn policy_error(source: &str) -> (usize, String) {
        match Policy::parse(source) {
            Err(PolicyError::Invalid { line, message }) => (line, message),
            other => panic!("expected an invalid policy, got {other:?}"),
        }
    }

    #[test]
    fn policy_section_parses_with_defaults() {
        let policy = Policy::parse(
            "version = 1\n[links]\norg_domains = [\"example.com\"]\nblocked_url_hashes = [\"0123abcd\"]\n",
        )
        .unwrap();
        assert_eq!(policy.links.org_domains, ["example.com"]);
        assert!(policy.links.warn_shorteners);
        let policy = Policy::parse(r#"{"version":1,"links":{"warn_shorteners":false}}"#).unwrap();
        assert!(!policy.links.warn_shorteners);
        assert!(matches!(
            Policy::parse("version = 1\n[links]\nblocked = []\n"),
            Err(PolicyError::Syntax { .. })
        ));
    }

    #[test]
    fn policy_validation_names_the_line() {
        let (line, message) = policy_error(
            "version = 1\n\n[links]\norg_domains = [\"example.com\"]\nblocked_domains = [\n  \"ok.example\",\n  \"bad domain.example\",\n]\n",
        );
        assert_eq!(line, 7);
        assert!(message.contains("bad domain.example"), "{message}");
        let (line, message) =
            policy_error("version = 1\n[links]\nblocked_url_hashes = [\"0123abcd\", \"abc\"]\n");
        assert_eq!(line, 3);
        assert!(message.contains("hash prefix"), "{message}");
        let (line, _) = policy_error("version = 1\n[links]\norg_domains = [\"com\"]\n");
        assert_eq!(line, 3);
        let (line, _) = policy_error("version = 1\n[links]\norg_domains = [\"10.0.0.1\"]\n");
        assert_eq!(line, 3);
        let (line, _) = policy_error("version = 1\n[links]\norg_domains = [\"*.example.com\"]\n");
        assert_eq!(line, 3);
        let (line, _) = policy_error(
            "version = 1\n[links]\norg_domains = [\"example.com\"]\nblocked_domains = [\"https://x.example/\"]\n",
        );
        assert_eq!(line, 4);
        let (line, _) = policy_error(
            "{\n\"version\": 1,\n\"links\": {\"blocked_url_hashes\": [\"zzzzzzzz\"]}\n}",
        );
        assert_eq!(line, 3);
        let hashes: Vec<String> = (0..=64).map(|_| "abcdabcd".to_owned()).collect();
        assert_eq!(hashes.len(), 65);
        let big = LinkRules {
            org_domains: (0..=MAX_ORG_DOMAINS)
                .map(|i| format!("d{i}.example"))
                .collect(),
            ..LinkRules::default()
        };
        let source = "version = 1\n[links]\norg_domains = [...]\n";
        assert!(matches!(
            big.validate(source),
            Err(PolicyError::Invalid { line: 3, .. })
        ));
        assert_eq!(rules().validate(""), Ok(()));
    }
}
