//! What a scan reports: which rule, where, how sure, and why.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;

/// A built-in detector. The snake_case names are stable: they are the rule
/// ids in policy documents and in the events clients report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// A payment card number (PAN) of a known brand that passes Luhn.
    Card,
    /// A US Social Security number.
    Ssn,
    /// A US Individual Taxpayer Identification Number (9XX-[5-9]X-XXXX).
    Itin,
    /// An IBAN whose length fits its country and whose mod-97 check passes.
    Iban,
    /// An AWS access key id (AKIA…, ASIA…).
    AwsAccessKey,
    /// An AWS secret access key, found next to an AWS key name.
    AwsSecretKey,
    /// A PEM private key block, reported whole.
    PrivateKey,
    /// A GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_).
    GithubToken,
    /// A Slack token (xoxb-, xoxp-, …) or incoming-webhook URL.
    SlackToken,
    /// A Stripe secret or restricted key (sk_live_, rk_live_, …).
    StripeKey,
    /// A Google API key (AIza…).
    GoogleApiKey,
    /// A JSON Web Token whose header and payload decode.
    Jwt,
    /// `password = …` style assignments of a random-looking value.
    PasswordAssignment,
    /// An e-mail address (off unless the policy turns it on).
    Email,
    /// A phone number (off unless the policy turns it on).
    Phone,
}

impl Detector {
    /// Every built-in detector, in a stable order.
    pub const ALL: [Detector; 15] = [
        Detector::Card,
        Detector::Ssn,
        Detector::Itin,
        Detector::Iban,
        Detector::AwsAccessKey,
        Detector::AwsSecretKey,
        Detector::PrivateKey,
        Detector::GithubToken,
        Detector::SlackToken,
        Detector::StripeKey,
        Detector::GoogleApiKey,
        Detector::Jwt,
        Detector::PasswordAssignment,
        Detector::Email,
        Detector::Phone,
    ];

    /// The stable id (`card`, `aws_access_key`, …).
    pub fn id(self) -> &'static str {
        match self {
            Detector::Card => "card",
            Detector::Ssn => "ssn",
            Detector::Itin => "itin",
            Detector::Iban => "iban",
            Detector::AwsAccessKey => "aws_access_key",
            Detector::AwsSecretKey => "aws_secret_key",
            Detector::PrivateKey => "private_key",
            Detector::GithubToken => "github_token",
            Detector::SlackToken => "slack_token",
            Detector::StripeKey => "stripe_key",
            Detector::GoogleApiKey => "google_api_key",
            Detector::Jwt => "jwt",
            Detector::PasswordAssignment => "password_assignment",
            Detector::Email => "email",
            Detector::Phone => "phone",
        }
    }

    /// Parses a stable id.
    pub fn from_id(id: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.id() == id)
    }

    /// What it finds, for people ("a payment card number").
    pub fn describe(self) -> &'static str {
        match self {
            Detector::Card => "a payment card number",
            Detector::Ssn => "a US social security number",
            Detector::Itin => "a US taxpayer identification number (ITIN)",
            Detector::Iban => "a bank account number (IBAN)",
            Detector::AwsAccessKey => "an AWS access key id",
            Detector::AwsSecretKey => "an AWS secret access key",
            Detector::PrivateKey => "a private key",
            Detector::GithubToken => "a GitHub access token",
            Detector::SlackToken => "a Slack token",
            Detector::StripeKey => "a Stripe secret key",
            Detector::GoogleApiKey => "a Google API key",
            Detector::Jwt => "a JSON Web Token",
            Detector::PasswordAssignment => "a password",
            Detector::Email => "an e-mail address",
            Detector::Phone => "a phone number",
        }
    }

    /// Secrets are masked whole when redacted; numbers keep a few digits.
    pub fn is_secret(self) -> bool {
        !matches!(
            self,
            Detector::Card
                | Detector::Ssn
                | Detector::Itin
                | Detector::Iban
                | Detector::Email
                | Detector::Phone
        )
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// How sure a finding is, as a small ordinal scale (like Google DLP's
/// likelihood): a checksum or a unique format gives `High`, supporting
/// context raises a finding one step and contrary context ("order",
/// "tracking", "IMEI") lowers it one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    /// One step up (saturating).
    pub fn raised(self) -> Confidence {
        match self {
            Confidence::Low => Confidence::Medium,
            _ => Confidence::High,
        }
    }

    /// One step down (saturating).
    pub fn lowered(self) -> Confidence {
        match self {
            Confidence::High => Confidence::Medium,
            _ => Confidence::Low,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// Which rule of the policy a finding belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    Builtin(Detector),
    /// A rule of the organisation's own (`custom.ID` in reports).
    Custom(String),
}

impl Rule {
    /// The id reported to the server and shown to people: `card`,
    /// `custom.project-falcon`.
    pub fn id(&self) -> String {
        match self {
            Rule::Builtin(d) => d.id().to_owned(),
            Rule::Custom(id) => format!("custom.{id}"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Builtin(d) => f.write_str(d.id()),
            Rule::Custom(id) => write!(f, "custom.{id}"),
        }
    }
}

/// One finding. `span` is a byte range of the text as the user wrote it
/// (before normalisation), so redaction covers exactly what was typed,
/// zero-width characters included. Neither field holds the matched text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    pub span: Range<usize>,
    pub confidence: Confidence,
    /// Why it was reported, for people ("Visa number that passes the Luhn
    /// check"). Never contains the matched text.
    pub why: String,
}
