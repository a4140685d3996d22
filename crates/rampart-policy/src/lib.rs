//! Rampart's organisation controls that run on the client, before a message
//! is encrypted and after one is decrypted: data-loss prevention, link risk
//! and file risk, and the policy document that configures them.
//!
//! Pure and synchronous: no I/O, no clock, no network. A client hands it
//! text, a file's first bytes or a URL and gets findings back; the client
//! decides what to do with them and what to report. Nothing here ever sends
//! a secret, a URL or a file anywhere (blocklists are matched locally, by
//! hash).
//!
//! ```
//! use rampart_policy::{Policy, Scanner, Action};
//!
//! let policy = Policy::parse("version = 1\n[detectors.card]\naction = \"redact\"\n").unwrap();
//! let scanner = Scanner::new(&policy.dlp).unwrap();
//! let text = "my card is 4111 1111 1111 1111, exp 12/29";
//! let findings = scanner.scan(text);
//! assert_eq!(policy.dlp.action_for(&findings[0]), Action::Redact);
//! assert_eq!(rampart_policy::redact(text, &findings), "my card is 4111 **** **** 1111, exp 12/29");
//! ```
//!
//! What it does not do: stop a modified client. DLP runs in the official
//! clients; a user who runs other software can send anything. The server
//! enforces what it can see (sizes, membership, retention), not content.

pub mod corpus;
pub mod detect;
pub mod document;
pub mod error;
pub mod file;
pub mod finding;
pub mod link;
pub mod normalize;
pub mod redact;

pub use detect::{CustomRule, Scanner};
pub use document::{Action, DetectorRule, DlpRules, Policy};
pub use error::PolicyError;
pub use file::{FileAction, FileChecker, FileFacts, FileRules, FileWarning};
pub use finding::{Confidence, Detector, Finding, Rule};
pub use link::{LinkChecker, LinkRules, LinkWarning};
pub use redact::redact;
