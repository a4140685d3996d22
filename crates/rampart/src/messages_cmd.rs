//! What happens to messages after sending: `rampart timer`, `rampart recall`,
//! `rampart edit`, and how timer lines, edits and recalls read in the inbox.

use crate::cli::open;
use rampart_client::{ClientError, HistoryEntry, Target};
use rampart_core::lifetime::{describe, parse_duration};
use rampart_proto::Username;
use serde_json::json;
use std::path::Path;

/// `--expire DURATION` of `rampart send`.
pub(crate) fn parse_expiry(text: &str) -> Result<u32, String> {
    parse_duration(text)
}

/// "alice set messages to disappear after 1 hour".
pub(crate) fn timer_line(by: &Username, timer: Option<u32>) -> String {
    match timer {
        Some(secs) => format!("@{by} set messages to disappear after {}", describe(secs)),
        None => format!("@{by} turned off disappearing messages"),
    }
}

/// The part of an inbox line after the time and conversation.
pub(crate) fn entry_line(e: &HistoryEntry) -> String {
    if e.kind == "timer" {
        return format!("* {}", timer_line(&e.sender, e.timer));
    }
    if e.recalled {
        return format!("{}: (message deleted)", e.sender);
    }
    if let Some(f) = &e.file {
        return format!(
            "{}: {}",
            e.sender,
            file_line(&f.name, f.size, &f.media_type, &e.text)
        );
    }
    let edited = if e.edited { " (edited)" } else { "" };
    format!("{}: {}{edited}", e.sender, e.text)
}

/// How a shared file reads in the history: `[file] name (size, type) caption`.
pub(crate) fn file_line(name: &str, size: u64, media_type: &str, caption: &str) -> String {
    let size = crate::files_cmd::human_size(size);
    if caption.is_empty() {
        format!("[file] {name} ({size}, {media_type})")
    } else {
        format!("[file] {name} ({size}, {media_type}) {caption}")
    }
}

/// `rampart timer TARGET DURATION|off`.
pub(crate) async fn timer(
    profile: &Path,
    target: &str,
    duration: &str,
    json: bool,
) -> anyhow::Result<()> {
    let target = Target::parse(target)?;
    let timer = match duration.trim() {
        "off" | "0" => None,
        d => Some(parse_duration(d).map_err(anyhow::Error::msg)?),
    };
    let mut client = open(profile)?;
    // The latest timer and the organisation's current rules first.
    client.sync().await?;
    let line = client.set_timer(&target, timer).await?;
    if json {
        println!(
            "{}",
            json!({"group_id": line.group.to_string(), "timer_secs": timer})
        );
    } else {
        println!(
            "{}: {}",
            client.conversation_label(&line.group),
            timer_line(client.username(), timer)
        );
    }
    client.close().await;
    Ok(())
}

/// `rampart recall ID`.
pub(crate) async fn recall(profile: &Path, id: &str, json: bool) -> anyhow::Result<()> {
    let mut client = open(profile)?;
    client.sync().await?;
    let sent = client.recall(id).await?;
    if json {
        println!(
            "{}",
            json!({"recalled": true, "group_id": sent.group.to_string()})
        );
    } else {
        println!(
            "deleted for everyone in {}",
            client.conversation_label(&sent.group)
        );
    }
    client.close().await;
    Ok(())
}

/// `rampart edit ID TEXT`.
pub(crate) async fn edit(
    profile: &Path,
    id: &str,
    text: &str,
    confirm: bool,
    json: bool,
) -> anyhow::Result<()> {
    let text = if text == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s.trim_end_matches('\n').to_owned()
    } else {
        text.to_owned()
    };
    let mut client = open(profile)?;
    client.sync().await?;
    let (sent, check) = match client.edit_with(id, &text, confirm).await {
        Err(ClientError::NeedsConfirmation { found }) => {
            if crate::dlp_cmd::ask_to_send(&found, json) {
                client.edit_with(id, &text, true).await?
            } else {
                return Err(ClientError::NeedsConfirmation { found }.into());
            }
        }
        other => other?,
    };
    crate::dlp_cmd::print_check(&check, json);
    if json {
        println!(
            "{}",
            json!({"edited": true, "group_id": sent.group.to_string(),
                   "dlp": crate::dlp_cmd::check_json(&check)})
        );
    } else {
        println!("edited in {}", client.conversation_label(&sent.group));
    }
    client.close().await;
    Ok(())
}
