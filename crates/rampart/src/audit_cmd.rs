//! `rampart admin audit list|export|verify|key|checkpoint`: the
//! organisation's tamper-evident audit log.
//!
//! Like the other admin commands, each runs on a stopped server's data
//! directory (`--data`) or over HTTP with an owner's or admin's profile.
//! `verify` also checks an exported file, against a key given with `--key`.

use crate::admin_cmd::{Backend, WHERE, print_json, with_backend};
use crate::cli::time;
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use rampart_proto::audit::{AuditCheckpoint, AuditEntry, AuditPage, AuditQuery, AuditRecord};
use rampart_server::audit::{Report, Verifier};
use std::io::{BufRead as _, BufWriter, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use crate::admin_cmd::Via;

/// `rampart admin audit …`.
#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Show the latest audit entries, oldest of them first.
    ///
    /// Each names when, who (account, device, address), what, to what, and
    /// the outcome; never message content, passwords, codes or tokens.
    #[command(after_help = WHERE)]
    List {
        /// Only entries since: a duration ago (30m, 24h, 7d), a date
        /// (2026-11-30) or a UTC time (2026-11-30T08:00:00Z).
        #[arg(long, value_parser = parse_since)]
        since: Option<u64>,
        /// Only entries by this actor (a username, `server` or `operator`).
        #[arg(long)]
        actor: Option<String>,
        /// Only entries of this action (login_failed, role_changed, ...).
        #[arg(long)]
        action: Option<String>,
        /// How many entries at most.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        via: Via,
    },
    /// Write the whole log, entries and signed checkpoints, for a SIEM or
    /// for safekeeping: one JSON object per line.
    ///
    /// Signs the chain's head first, so that the export is covered to its
    /// last entry. Field names are stable; `type` is `entry` or
    /// `checkpoint`. `rampart admin audit verify --file` checks the file.
    #[command(after_help = WHERE)]
    Export {
        /// Only `jsonl` (JSON Lines).
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Only entries since (see `list`); such an export does not verify
        /// on its own, as its start is not the log's.
        #[arg(long, value_parser = parse_since)]
        since: Option<u64>,
        #[command(flatten)]
        via: Via,
    },
    /// Walk the hash chain and the signed checkpoints, and report the
    /// first broken link or "intact".
    ///
    /// Checks the server's log (with --data, or over HTTP), or an exported
    /// file (--file, which needs --key). The checkpoints are checked against
    /// --key, or else the key the server reports: write the key down when
    /// the server is set up (`audit key`), as a verifier that trusts the
    /// key the server reports trusts the server. Exit status 1 when the log
    /// is broken.
    #[command(after_help = WHERE)]
    Verify {
        /// An export (`audit export`) to check instead of the live log.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The audit public key to trust (64 hex digits).
        #[arg(long, value_parser = parse_key)]
        key: Option<[u8; 32]>,
        #[command(flatten)]
        via: Via,
    },
    /// Print the public key checkpoints are signed with.
    #[command(after_help = WHERE)]
    Key {
        #[command(flatten)]
        via: Via,
    },
    /// Sign the chain's head now.
    #[command(after_help = WHERE)]
    Checkpoint {
        #[command(flatten)]
        via: Via,
    },
}

/// `--since`: a duration ago, a date or a UTC time, as ms since the epoch.
fn parse_since(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(secs) = rampart_core::lifetime::parse_duration(text) {
        let now = rampart_server::Clock::system().now_ms();
        return Ok(now.saturating_sub(u64::from(secs) * 1000));
    }
    parse_utc(text).ok_or_else(|| {
        format!("{text:?}: use a duration ago (30m, 24h, 7d), a date (2026-11-30) or 2026-11-30T08:00:00Z")
    })
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[Z]`, UTC.
fn parse_utc(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, clock) = match text.split_once(['T', ' ']) {
        Some((d, c)) => (d, Some(c)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(clock) = clock {
        let mut hms = clock.split(':');
        let h: i64 = hms.next()?.parse().ok()?;
        let mi: i64 = hms.next()?.parse().ok()?;
        let s: i64 = hms.next().map_or(Some(0), |s| s.parse().ok())?;
        if hms.next().is_some() || h > 23 || mi > 59 || s > 59 {
            return None;
        }
        secs += h * 3600 + mi * 60 + s;
    }
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// (year, month, day) to days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .map_err(|_| format!("{text:?} is not an audit key: expected 64 hex digits"))?;
    Ok(key)
}

impl Backend {
    async fn audit_page(&self, query: &AuditQuery) -> anyhow::Result<AuditPage> {
        match self {
            Self::Local(c) => Ok(c.audit_page(query).await?),
            Self::Remote { api, .. } => Ok(api.audit(query).await?),
        }
    }

    async fn audit_checkpoints(&self) -> anyhow::Result<Vec<AuditCheckpoint>> {
        match self {
            Self::Local(c) => Ok(c.audit_checkpoints().await?),
            Self::Remote { api, .. } => Ok(api.audit_checkpoints().await?),
        }
    }

    async fn audit_checkpoint(&self) -> anyhow::Result<Option<AuditCheckpoint>> {
        match self {
            Self::Local(c) => Ok(c.audit_checkpoint().await?),
            Self::Remote { api, .. } => Ok(api.audit_checkpoint().await?),
        }
    }

    async fn audit_key(&self) -> anyhow::Result<[u8; 32]> {
        match self {
            Self::Local(c) => Ok(c.audit_key()),
            Self::Remote { api, .. } => {
                let key = api.audit_key().await?;
                parse_key(&key.key).map_err(anyhow::Error::msg)
            }
        }
    }

    /// Every entry matching `query`, page by page, in id order.
    async fn each_entry(
        &self,
        mut query: AuditQuery,
        mut each: impl FnMut(&AuditEntry) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        loop {
            let page = self.audit_page(&query).await?;
            for entry in &page.entries {
                each(entry)?;
            }
            match page.next_after {
                Some(next) => query.after = Some(next),
                None => return Ok(()),
            }
        }
    }
}

pub async fn audit(command: AuditCommand, profile: &Path, json: bool) -> anyhow::Result<()> {
    match command {
        AuditCommand::List {
            since,
            actor,
            action,
            limit,
            via,
        } => {
            let query = AuditQuery {
                since,
                actor,
                action,
                newest_first: true,
                limit: Some(limit.clamp(1, rampart_proto::audit::MAX_AUDIT_PAGE)),
                ..AuditQuery::default()
            };
            let mut page =
                with_backend(&via, profile, async |b| b.audit_page(&query).await).await?;
            page.entries.reverse();
            if json {
                return print_json(&page.entries);
            }
            print_entries(&page.entries)
        }
        AuditCommand::Export {
            format: _,
            output,
            since,
            via,
        } => export(&via, profile, output.as_deref(), since, json).await,
        AuditCommand::Verify { file, key, via } => verify(&via, profile, file, key, json).await,
        AuditCommand::Key { via } => {
            let key = with_backend(&via, profile, async |b| b.audit_key().await).await?;
            if json {
                return print_json(&serde_json::json!({ "key": hex::encode(key) }));
            }
            println!("{}", hex::encode(key));
            Ok(())
        }
        AuditCommand::Checkpoint { via } => {
            let made = with_backend(&via, profile, async |b| b.audit_checkpoint().await).await?;
            if json {
                return print_json(&made);
            }
            match made {
                Some(c) => println!(
                    "signed the chain up to entry #{} at {}",
                    c.last_id,
                    time(c.at)
                ),
                None => {
                    println!("nothing new to sign: the log is empty or signed to its last entry")
                }
            }
            Ok(())
        }
    }
}

fn print_entries(entries: &[AuditEntry]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if entries.is_empty() {
        writeln!(out, "no audit entries match")?;
        return Ok(());
    }
    for e in entries {
        let mut line = format!(
            "#{:<6} {}  {:<8} {:<16} {}",
            e.id,
            time(e.at),
            e.outcome.as_str(),
            e.actor.as_deref().unwrap_or("-"),
            e.action
        );
        if let Some(target) = &e.target {
            line.push_str(&format!(" → {target}"));
        }
        let mut extra: Vec<String> = Vec::new();
        if let Some(device) = e.device {
            extra.push(format!("device {device}"));
        }
        if let Some(ip) = &e.ip {
            extra.push(format!("from {ip}"));
        }
        extra.extend(e.detail.iter().map(|(k, v)| format!("{k}={v}")));
        if !extra.is_empty() {
            line.push_str(&format!("  ({})", extra.join(", ")));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// A spinner with a count on standard error, if it is a terminal.
fn counter(what: &'static str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {msg}: {pos} entries ({per_sec})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(what);
    bar
}

async fn export(
    via: &Via,
    profile: &Path,
    output: Option<&Path>,
    since: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let mut sink: Box<dyn std::io::Write> = match output {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let bar = counter("exporting", json || output.is_none());
    let (entries, checkpoints) = with_backend(via, profile, async |b| {
        b.audit_checkpoint().await?;
        let mut entries = 0u64;
        let query = AuditQuery {
            since,
            ..AuditQuery::default()
        };
        b.each_entry(query, |e| {
            serde_json::to_writer(&mut sink, &AuditRecord::Entry(e.clone()))?;
            sink.write_all(b"\n")?;
            entries += 1;
            bar.inc(1);
            Ok(())
        })
        .await?;
        let checkpoints = b.audit_checkpoints().await?;
        for c in &checkpoints {
            serde_json::to_writer(&mut sink, &AuditRecord::Checkpoint(c.clone()))?;
            sink.write_all(b"\n")?;
        }
        Ok((entries, checkpoints.len()))
    })
    .await?;
    sink.flush()?;
    bar.finish_and_clear();
    if let Some(path) = output {
        if json {
            print_json(&serde_json::json!({
                "file": path, "entries": entries, "checkpoints": checkpoints
            }))?;
        } else {
            eprintln!(
                "exported {entries} entries and {checkpoints} checkpoints to {}",
                path.display()
            );
        }
    }
    Ok(())
}

async fn verify(
    via: &Via,
    profile: &Path,
    file: Option<PathBuf>,
    key: Option<[u8; 32]>,
    json: bool,
) -> anyhow::Result<()> {
    let bar = counter("verifying", json);
    let outcome = match file {
        Some(path) => {
            let Some(key) = key else {
                anyhow::bail!(
                    "verifying a file needs the audit key to trust: --key HEX (from \
                     `rampart admin audit key`, written down when the server was set up)"
                );
            };
            verify_file(&path, &key, &bar)?
        }
        None => {
            with_backend(via, profile, async |b| {
                let trusted = match key {
                    Some(k) => k,
                    None => {
                        if matches!(b, Backend::Remote { .. }) && !json {
                            eprintln!(
                                "note: checking against the key the server reports; pass --key \
                                 with the key you recorded to rule out a rewritten server"
                            );
                        }
                        b.audit_key().await?
                    }
                };
                let mut verifier = match Verifier::new(&trusted, b.audit_checkpoints().await?) {
                    Ok(v) => v,
                    Err(broken) => return Ok(Err(broken)),
                };
                let mut broken = None;
                b.each_entry(AuditQuery::default(), |e| {
                    if broken.is_none()
                        && let Err(b) = verifier.entry(e)
                    {
                        broken = Some(b);
                    }
                    bar.inc(1);
                    Ok(())
                })
                .await?;
                Ok(match broken {
                    Some(b) => Err(b),
                    None => verifier.finish(),
                })
            })
            .await?
        }
    };
    bar.finish_and_clear();
    report(outcome, json)
}

/// Two passes over the file: the checkpoints first, then the entries
/// streamed through the verifier (an export may not fit in memory).
fn verify_file(
    path: &Path,
    key: &[u8; 32],
    bar: &ProgressBar,
) -> anyhow::Result<Result<Report, rampart_server::audit::Broken>> {
    let lines = |path: &Path| -> anyhow::Result<_> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(std::io::BufReader::new(file).lines().enumerate())
    };
    let record = |n: usize, line: std::io::Result<String>| -> anyhow::Result<Option<AuditRecord>> {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&line).map(Some).with_context(|| {
            format!(
                "line {} of {} is not an audit record",
                n + 1,
                path.display()
            )
        })
    };
    let mut checkpoints = Vec::new();
    for (n, line) in lines(path)? {
        if let Some(AuditRecord::Checkpoint(c)) = record(n, line)? {
            checkpoints.push(c);
        }
    }
    let mut verifier = match Verifier::new(key, checkpoints) {
        Ok(v) => v,
        Err(broken) => return Ok(Err(broken)),
    };
    for (n, line) in lines(path)? {
        if let Some(AuditRecord::Entry(e)) = record(n, line)? {
            if let Err(broken) = verifier.entry(&e) {
                return Ok(Err(broken));
            }
            bar.inc(1);
        }
    }
    Ok(verifier.finish())
}

fn report(
    outcome: Result<Report, rampart_server::audit::Broken>,
    json: bool,
) -> anyhow::Result<()> {
    match outcome {
        Ok(report) => {
            if json {
                return print_json(&serde_json::json!({ "intact": true, "report": report }));
            }
            let last = match report.last_checkpoint {
                Some(c) => format!("last checkpoint at {} (entry #{})", time(c.at), c.last_id),
                None => "no checkpoint yet".to_owned(),
            };
            println!("intact: {} entries, {last}", report.entries);
            if report.unsigned_tail > 0 {
                println!(
                    "  {} entries after it are chained but not yet signed",
                    report.unsigned_tail
                );
            }
            if let Some(first) = report.pruned_before {
                println!(
                    "  entries before #{first} were pruned; a signed checkpoint marks the start"
                );
            }
            Ok(())
        }
        Err(broken) => {
            if json {
                print_json(&serde_json::json!({ "intact": false, "broken": broken }))?;
            }
            anyhow::bail!("the audit log is {broken}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_dates_times_and_durations() {
        assert_eq!(parse_utc("1970-01-01"), Some(0));
        assert_eq!(parse_utc("2000-02-29"), Some(951_782_400_000));
        assert_eq!(parse_utc("2025-12-01T03:04:05Z"), Some(1_764_558_245_000));
        assert_eq!(parse_utc("2025-12-01 03:04"), Some(1_764_558_240_000));
        for bad in ["2025-13-01", "2025-12-01T25:00", "yesterday", "2025-12"] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
        let now = rampart_server::Clock::system().now_ms();
        let day_ago = parse_since("1d").unwrap();
        assert!(now - day_ago >= 86_400_000 && now - day_ago < 86_460_000);
        assert!(parse_since("soon").is_err());
        assert!(parse_key(&"ab".repeat(32)).is_ok());
        assert!(parse_key("abc").is_err());
    }
}
