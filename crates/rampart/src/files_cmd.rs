//! `rampart send-file` and `rampart download`, with a progress bar on a
//! terminal.

use crate::cli::open;
use crate::dlp_cmd;
use indicatif::{ProgressBar, ProgressStyle};
use rampart_client::{ClientError, Progress, Silent, Target};
use serde_json::json;
use std::io::IsTerminal as _;
use std::path::Path;

/// A progress bar with rate and time left, drawn on standard error.
struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar when standard error is a terminal and output is for people;
    /// otherwise nothing is drawn.
    fn for_output(verb: &'static str, json: bool) -> Box<dyn Progress> {
        if json || !std::io::stderr().is_terminal() {
            return Box::new(Silent);
        }
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(verb);
        Box::new(Bar { bar })
    }
}

impl Progress for Bar {
    fn start(&mut self, total: u64, done: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
        self.bar.reset_eta();
        if done > 0 {
            self.bar.println(format!(
                "resuming at {} of {}",
                human_size(done),
                human_size(total)
            ));
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.bar.inc(bytes);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// `rampart send-file TARGET PATH [--caption TEXT] [--expire D]`.
pub(crate) async fn send_file(
    profile: &Path,
    target: &str,
    path: &Path,
    caption: &str,
    expire: Option<u32>,
    confirm: bool,
    json: bool,
) -> anyhow::Result<()> {
    let target = Target::parse(target)?;
    let mut client = open(profile)?;
    async fn attempt(
        client: &mut rampart_client::Client,
        target: &Target,
        path: &Path,
        caption: &str,
        expire: Option<u32>,
        confirmed: bool,
        json: bool,
    ) -> Result<(rampart_core::StoredMessage, rampart_client::TextCheck), ClientError> {
        let mut progress = Bar::for_output("uploading", json);
        client
            .send_file_with(target, path, caption, expire, confirmed, progress.as_mut())
            .await
    }
    let sent = attempt(&mut client, &target, path, caption, expire, confirm, json).await;
    let (sent, check) = match sent {
        Err(ClientError::NeedsConfirmation { found }) => {
            if dlp_cmd::ask_to_send(&found, json) {
                attempt(&mut client, &target, path, caption, expire, true, json).await?
            } else {
                return Err(ClientError::NeedsConfirmation { found }.into());
            }
        }
        other => other?,
    };
    dlp_cmd::print_check(&check, json);
    let (name, size) = match &sent.body {
        rampart_core::content::Body::File(a) => (a.name.clone(), a.size),
        _ => (String::new(), 0),
    };
    if json {
        println!(
            "{}",
            json!({"id": sent.id.to_string(), "group_id": sent.group.to_string(),
                   "name": name, "size": size, "sent_at": sent.sent_at,
                   "dlp": dlp_cmd::check_json(&check)})
        );
    } else {
        println!(
            "sent {name} ({}) to {}",
            human_size(size),
            client.conversation_label(&sent.group)
        );
    }
    client.close().await;
    Ok(())
}

/// `rampart download ID [--out PATH]`.
pub(crate) async fn download(
    profile: &Path,
    id: &str,
    out: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let mut client = open(profile)?;
    let mut progress = Bar::for_output("downloading", json);
    let got = client.download(id, out, progress.as_mut()).await;
    drop(progress);
    let got = got?;
    if json {
        println!("{}", serde_json::to_string(&got)?);
    } else {
        println!(
            "saved {} ({}, {}) to {}",
            got.name,
            human_size(got.size),
            got.media_type,
            got.path.display()
        );
        for w in &got.warnings {
            println!("{}", dlp_cmd::warning_line(w));
        }
    }
    client.close().await;
    Ok(())
}

/// Bytes in binary units, e.g. `1.5 MiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
