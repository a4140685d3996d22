//! The organisation's policy at the command line: asking before sending
//! what the policy warns about, and saying what was masked.

use rampart_client::{Client, ClientError, TextCheck};
use rampart_policy::Action;
use serde_json::json;
use std::io::{BufRead as _, IsTerminal as _, Write as _};

/// Asks on a terminal whether to send despite the warnings. Without a
/// terminal (scripts, `--json`, text from standard input) the answer is no,
/// and the error tells the user about `--confirm`.
pub(crate) fn ask_to_send(found: &[String], json: bool) -> bool {
    if json || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return false;
    }
    eprintln!("warning: this message contains:");
    for f in found {
        eprintln!("  - {f}");
    }
    eprint!("Your organisation asks you to check before sending this. Send anyway? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// What was masked or reported, for people (on stderr) and scripts.
pub(crate) fn print_check(check: &TextCheck, json: bool) {
    if json {
        return;
    }
    for hit in &check.hits {
        match hit.action {
            Action::Redact => eprintln!("masked before sending: {}", hit.describe()),
            Action::Warn => eprintln!("sent after your confirmation: {}", hit.describe()),
            _ => {}
        }
    }
}

/// The rules that fired, for `--json` output.
pub(crate) fn check_json(check: &TextCheck) -> serde_json::Value {
    check
        .hits
        .iter()
        .map(|h| json!({"rule": h.rule, "action": h.action.as_str()}))
        .collect()
}

/// Sends a text through the policy, asking on a terminal when it warns.
pub(crate) async fn send_text(
    client: &mut Client,
    target: &rampart_client::Target,
    text: &str,
    expire: Option<u32>,
    confirmed: bool,
    json: bool,
) -> Result<(rampart_core::StoredMessage, TextCheck), ClientError> {
    match client.send_text_with(target, text, expire, confirmed).await {
        Err(ClientError::NeedsConfirmation { found }) => {
            if ask_to_send(&found, json) {
                client.send_text_with(target, text, expire, true).await
            } else {
                client.report_declined(target, text).await;
                Err(ClientError::NeedsConfirmation { found })
            }
        }
        other => other,
    }
}

/// A warning under a received message: `  ⚠ danger: this link goes to …`.
pub(crate) fn warning_line(w: &rampart_core::guard::Warning) -> String {
    let mark = if w.severity == "danger" { "!!" } else { "!" };
    format!("    {mark} {}: {}", w.severity, w.explanation)
}
