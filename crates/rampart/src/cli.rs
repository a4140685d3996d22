//! Command-line interface. Every client command works on one profile
//! directory and prints text for people or, with `--json`, one JSON document
//! for scripts.

use crate::account_cmd::{self, DevicesCommand, PasswordCommand, TwoFactorCommand};
use crate::{
    bench, bench_audit, bench_dlp, bench_files, bench_handshakes, demo, dlp_cmd, files_cmd,
    messages_cmd, server_cmd,
};
use anyhow::Context as _;
use rampart_client::{Client, ClientError, Event, HistoryEntry, Registration, Target};
use rampart_proto::Username;
use rampart_proto::group::{Allowed, GroupRole, GroupSettings};
use serde_json::json;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

/// Rampart: an end-to-end encrypted messenger for organisations.
///
/// Secrets come from a prompt, or from RAMPART_PASSWORD (account password) and
/// RAMPART_PASSPHRASE (the passphrase that encrypts your local profile).
#[derive(clap::Parser, Debug)]
#[command(name = "rampart", version, propagate_version = true)]
pub struct Args {
    /// Profile directory holding this device's encrypted state.
    #[arg(long, global = true, env = "RAMPART_PROFILE")]
    profile: Option<PathBuf>,
    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Run the server.
    Server(server_cmd::ServerArgs),
    /// Administration: users, roles, 2FA resets, groups, access policy,
    /// sessions, DLP policy.
    ///
    /// `users`, `2fa-reset`, `groups`, `access` and `sessions` run either on
    /// the data directory of a stopped server, when given --data DIR (or
    /// RAMPART_DATA), or otherwise over HTTP with the session of your
    /// profile (--profile), which must be an owner's or an admin's. `invite`,
    /// `policy` and `dlp-events` always use the data directory, and work
    /// while the server runs. No command shows message content.
    #[command(subcommand)]
    Admin(server_cmd::AdminCommand),
    /// Create an account and this device's profile.
    Register {
        /// Server URL, e.g. http://127.0.0.1:8448
        #[arg(long)]
        server: String,
        #[arg(long)]
        username: String,
        /// Invite code (required unless the server's registration is open).
        #[arg(long)]
        invite: Option<String>,
        /// A name for this device, shown to you in device lists.
        #[arg(long, default_value = "cli")]
        device_name: String,
    },
    /// Log this profile's device in again (after logout).
    Login {
        /// Server URL (defaults to the profile's).
        #[arg(long)]
        server: Option<String>,
        /// Username (defaults to the profile's).
        #[arg(long)]
        username: Option<String>,
        /// A two-factor code (or recovery code); asked for when needed.
        #[arg(long)]
        totp: Option<String>,
        /// Sign in as a new device of this account, certified by the
        /// profile's identity key. Only when none of the account's devices
        /// is left (an administrator disabled and re-enabled the account, or
        /// every device was revoked); members then add you back to groups.
        #[arg(long)]
        new_device: bool,
        /// A name for the new device (with --new-device).
        #[arg(long, default_value = "cli")]
        device_name: String,
    },
    /// Make this machine a new device of an existing account: shows a code to
    /// approve on a device already signed in (`rampart devices approve`).
    Link {
        /// Server URL, e.g. https://chat.example.org
        #[arg(long)]
        server: String,
        /// A name for this device, shown in device lists.
        #[arg(long, default_value = "cli")]
        device_name: String,
    },
    /// Two-factor authentication (TOTP): enable, disable, recovery codes, status.
    #[command(name = "2fa", subcommand)]
    TwoFactor(TwoFactorCommand),
    /// Change the account password.
    #[command(subcommand)]
    Password(PasswordCommand),
    /// This account's devices: list (default), revoke, approve a new one.
    Devices {
        #[command(subcommand)]
        command: Option<DevicesCommand>,
    },
    /// Show the safety number with @USER; `--confirm` marks them verified.
    Verify {
        user: String,
        /// You compared the numbers and they match.
        #[arg(long)]
        confirm: bool,
    },
    /// Recent security events of this account (logins, 2FA, devices).
    SecurityEvents,
    /// End this device's session.
    Logout,
    /// Show the account and device of this profile.
    Whoami,
    /// Send a text message to @USER or #GROUP.
    Send {
        /// @user or '#group' (quote # in shells).
        target: String,
        /// The message; `-` reads it from standard input.
        text: String,
        /// Make this message disappear this long after sending (30s to 4w,
        /// e.g. 5m, 1h, 2d), whatever the conversation's timer says.
        #[arg(long, value_name = "DURATION", value_parser = messages_cmd::parse_expiry)]
        expire: Option<u32>,
        /// Send even though your organisation's policy warns about what the
        /// message contains (without it, you are asked on a terminal). The
        /// warning is still reported; blocked content is never sent.
        #[arg(long)]
        confirm: bool,
    },
    /// Send a file to @USER or #GROUP, encrypted on this device. An
    /// interrupted upload resumes when you run the same command again.
    SendFile {
        /// @user or '#group' (quote # in shells).
        target: String,
        /// The file to send.
        path: PathBuf,
        /// Text shown with the file.
        #[arg(long)]
        caption: Option<String>,
        /// Make it disappear this long after sending (30s to 4w).
        #[arg(long, value_name = "DURATION", value_parser = messages_cmd::parse_expiry)]
        expire: Option<u32>,
        /// Send even though your organisation's policy warns about the file
        /// or its caption (see `send --confirm`).
        #[arg(long)]
        confirm: bool,
    },
    /// Download the file of a message (ids: `rampart inbox --all --ids`),
    /// verify it and save it. An interrupted download resumes.
    Download {
        /// Message id, or its first 8+ hex digits.
        id: String,
        /// Where to save it: a new file name or a directory (default: the
        /// current directory, under the sender's file name).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Set the disappearing-messages timer of @USER or #GROUP: a duration
    /// from 30s to 4w (e.g. 30s, 5m, 1h, 1d, 4w), or `off`.
    Timer {
        /// @user or '#group'.
        target: String,
        /// 30s .. 4w, or `off`.
        duration: String,
    },
    /// Delete one of your messages for everyone (within the recall window;
    /// group admins: any message). Ids: `rampart inbox --all --ids`.
    Recall {
        /// Message id, or its first 8+ hex digits.
        id: String,
    },
    /// Replace the text of one of your messages (within the recall window,
    /// at most 10 times); others see it marked "edited".
    Edit {
        /// Message id, or its first 8+ hex digits.
        id: String,
        /// The new text; `-` reads it from standard input.
        text: String,
        /// Send the edit even though your organisation's policy warns about
        /// the new text (see `send --confirm`).
        #[arg(long)]
        confirm: bool,
    },
    /// Groups: create, add, remove, leave, list, members.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Fetch and process everything pending, then exit.
    Sync,
    /// Print messages (unread ones, or all with --all).
    Inbox {
        #[arg(long)]
        all: bool,
        /// Show message ids (for `rampart recall` and `rampart edit`).
        #[arg(long)]
        ids: bool,
    },
    /// Chat interactively with @USER or #GROUP: live messages, type to send.
    Chat { target: String },
    /// Start a throwaway server and walk three users through 1:1 and group chat.
    Demo,
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(clap::Subcommand, Debug)]
enum GroupCommand {
    /// Create a group.
    Create {
        name: String,
        /// Comma-separated usernames.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
        /// Only the group's admins (you, the creator) may change its
        /// disappearing-messages timer.
        #[arg(long)]
        admins_set_timer: bool,
    },
    /// Add a user (all their devices).
    Add { name: String, user: String },
    /// Remove a user (all their devices).
    Remove { name: String, user: String },
    /// Leave a group.
    Leave { name: String },
    /// List this device's conversations.
    List,
    /// List the members of a group.
    Members { name: String },
    /// Show a group's roles and rules (who may post, add, rename, set the timer).
    Info { name: String },
    /// Give a member a role in a group: admin, member or read-only (admins only).
    ///
    /// Admins change the group's roles and rules and recall anyone's
    /// messages; read-only members read but never post. Every member's
    /// client and the server check it.
    Role {
        name: String,
        user: String,
        /// admin | member | read-only
        role: String,
    },
    /// Change who may do what in a group (admins only).
    ///
    /// Each rule is `members` (everyone who is not read-only) or `admins`.
    /// `--post admins` makes an announcement group.
    Settings {
        name: String,
        /// Who may post messages.
        #[arg(long, value_name = "members|admins")]
        post: Option<String>,
        /// Who may add and remove members (anyone may leave).
        #[arg(long, value_name = "members|admins")]
        add_remove: Option<String>,
        /// Who may rename the group.
        #[arg(long, value_name = "members|admins")]
        rename: Option<String>,
        /// Who may change the disappearing-messages timer.
        #[arg(long, value_name = "members|admins")]
        timer: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
enum BenchCommand {
    /// Relay throughput and latency over real WebSockets to a real server.
    Relay(bench::RelayArgs),
    /// Encrypted file transfer against a plain copy through the same
    /// server, with peak memory of client and server.
    Files(bench_files::FilesArgs),
    /// Precision, recall and single-core throughput of the DLP detectors on
    /// a synthetic labelled corpus of chat lines.
    Dlp(bench_dlp::DlpArgs),
    /// Server-side verification of one commit (the access-control checks of
    /// every handshake message), by group size.
    Handshakes(bench_handshakes::HandshakeArgs),
    /// Audit log: appending, sealing into the hash chain, verifying.
    Audit(bench_audit::AuditArgs),
}

fn default_profile() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("rampart").join("profile"))
        .unwrap_or_else(|| PathBuf::from(".rampart-profile"))
}

/// A secret from the environment or a prompt.
pub(crate) fn secret(env: &str, prompt: &str, confirm: bool) -> anyhow::Result<String> {
    if let Ok(v) = std::env::var(env) {
        return Ok(v);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("no terminal to ask for the {prompt}; set {env}");
    }
    let first = rpassword::prompt_password(format!("{prompt}: "))?;
    if confirm {
        let again = rpassword::prompt_password(format!("{prompt} (again): "))?;
        if again != first {
            anyhow::bail!("the two entries differ");
        }
    }
    Ok(first)
}

pub(crate) fn open(profile: &Path) -> anyhow::Result<Client> {
    if !rampart_client::store::Store::exists(profile) {
        return Err(ClientError::NoProfile(profile.to_path_buf()).into());
    }
    let passphrase = secret("RAMPART_PASSPHRASE", "profile passphrase", false)?;
    Ok(Client::open(profile, &passphrase)?)
}

pub(crate) fn parse_user(s: &str) -> anyhow::Result<Username> {
    Username::parse(s).map_err(|e| anyhow::anyhow!("{s:?}: {e}"))
}

/// `YYYY-MM-DD hh:mm:ss`, UTC (no time-zone database needed).
pub(crate) fn time(ms: u64) -> String {
    // RFC 3339 has a fixed layout: `YYYY-MM-DDThh:mm:ss.mmmZ`.
    let iso = rampart_proto::audit::rfc3339(ms);
    format!("{} {}", &iso[..10], &iso[11..19])
}

fn print_entries(
    client: &Client,
    entries: &[HistoryEntry],
    json: bool,
    ids: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                json!({
                    "conversation": client.conversation_label(&e.group),
                    "group_id": e.group.to_string(),
                    "id": e.id,
                    "kind": e.kind,
                    "sender": e.sender.as_str(),
                    "sent_at": e.sent_at,
                    "received_at": e.received_at,
                    "text": e.text,
                    "file": e.file,
                    "timer_secs": e.timer,
                    "outgoing": e.outgoing,
                    "edited": e.edited,
                    "recalled": e.recalled,
                    "expires_at": e.expires_at,
                    "warnings": e.warnings,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
    } else if entries.is_empty() {
        writeln!(out, "no new messages")?;
    } else {
        for e in entries {
            let label = client.conversation_label(&e.group);
            let id = if ids {
                format!("{} ", e.id)
            } else {
                String::new()
            };
            writeln!(
                out,
                "{id}[{}] {label} {}",
                time(e.sent_at),
                messages_cmd::entry_line(e)
            )?;
            for w in &e.warnings {
                writeln!(out, "{}", dlp_cmd::warning_line(w))?;
            }
        }
    }
    Ok(())
}

/// A line for an event, or nothing for quiet ones.
fn describe(client: &Client, event: &Event) -> Option<String> {
    let line = describe_event(client, event)?;
    let warnings = match event {
        Event::Message(m) => match &m.body {
            rampart_core::content::Body::Text(t) => client.guard().incoming_warnings(t, None),
            rampart_core::content::Body::File(a) => {
                client.guard().incoming_warnings(&a.caption, Some(&a.name))
            }
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let mut out = line;
    for w in &warnings {
        out.push('\n');
        out.push_str(&dlp_cmd::warning_line(w));
    }
    Some(out)
}

fn describe_event(client: &Client, event: &Event) -> Option<String> {
    Some(match event {
        Event::Message(m) => match &m.body {
            rampart_core::content::Body::Text(t) => format!(
                "[{}] {} {}: {}",
                time(m.sent_at),
                client.conversation_label(&m.group),
                m.sender,
                t
            ),
            rampart_core::content::Body::File(a) => format!(
                "[{}] {} {}: {} (`rampart download {}`)",
                time(m.sent_at),
                client.conversation_label(&m.group),
                m.sender,
                messages_cmd::file_line(&a.name, a.size, &a.media_type, &a.caption),
                &m.id.to_string()[..12]
            ),
            _ => return None,
        },
        Event::TimerChanged { group, by, timer } => format!(
            "* {}: {}",
            client.conversation_label(group),
            messages_cmd::timer_line(by, *timer)
        ),
        Event::Recalled { group, by, .. } => format!(
            "* {}: @{by} deleted a message",
            client.conversation_label(group)
        ),
        Event::Edited { group, by, .. } => format!(
            "* {}: @{by} edited a message",
            client.conversation_label(group)
        ),
        Event::Joined { group, by } => {
            format!("* @{by} added you to {}", client.conversation_label(group))
        }
        Event::MembersChanged {
            group,
            added,
            removed,
        } => {
            let mut parts = vec![];
            if !added.is_empty() {
                parts.push(format!("added {}", list_users(added)));
            }
            if !removed.is_empty() {
                parts.push(format!("removed {}", list_users(removed)));
            }
            format!(
                "* {}: {}",
                client.conversation_label(group),
                parts.join(", ")
            )
        }
        Event::SettingsChanged { group, by } => format!(
            "* {}: @{by} changed the group's roles or settings",
            client.conversation_label(group)
        ),
        Event::Renamed { group, name } => format!("* {} is now called #{name}", group.short()),
        Event::Removed { group } => format!(
            "* you are no longer a member of {}",
            client.conversation_label(group)
        ),
        Event::IdentityChanged {
            user,
            group,
            was_verified,
        } => format!(
            "!!! WARNING: the identity key of @{user} CHANGED (in {}). This can mean an attack; \
             compare safety numbers with `rampart verify @{user}`.{}",
            client.conversation_label(group),
            if *was_verified {
                " You had verified them: nothing is sent to them until you confirm again."
            } else {
                ""
            }
        ),
        Event::ProposalQueued { .. } | Event::Dropped { .. } => return None,
    })
}

fn list_users(users: &[Username]) -> String {
    users
        .iter()
        .map(|u| format!("@{u}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_events(client: &Client, events: &[Event], json: bool) {
    if json {
        return;
    }
    for e in events {
        if let Some(line) = describe(client, e) {
            println!("{line}");
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let json = args.json;
    let profile = args.profile.clone().unwrap_or_else(default_profile);
    match args.command {
        Command::Server(a) => server_cmd::serve(a).await,
        Command::Admin(a) => server_cmd::admin(a, &profile, json).await,
        Command::Demo => demo::run().await,
        Command::Bench(BenchCommand::Relay(a)) => bench::relay(a).await,
        Command::Bench(BenchCommand::Files(a)) => bench_files::files(a).await,
        // CPU-bound and single-threaded on purpose: it measures one core.
        Command::Bench(BenchCommand::Dlp(a)) => bench_dlp::dlp(&a),
        Command::Bench(BenchCommand::Handshakes(a)) => bench_handshakes::handshakes(&a),
        Command::Bench(BenchCommand::Audit(a)) => bench_audit::audit(&a).await,
        Command::Register {
            server,
            username,
            invite,
            device_name,
        } => {
            if rampart_client::store::Store::exists(&profile) {
                anyhow::bail!(
                    "{} already holds a profile; pass another --profile",
                    profile.display()
                );
            }
            let password = secret("RAMPART_PASSWORD", "account password", true)?;
            let passphrase = secret("RAMPART_PASSPHRASE", "new profile passphrase", true)?;
            let client = Client::register(
                &profile,
                &passphrase,
                Registration {
                    server: &server,
                    username: &username,
                    password: &password,
                    invite: invite.as_deref(),
                    device_name: &device_name,
                },
            )
            .await?;
            if json {
                println!(
                    "{}",
                    json!({"username": client.username().as_str(), "device_id": client.device().to_string(), "profile": profile})
                );
            } else {
                println!(
                    "registered @{} (device {}); profile in {}",
                    client.username(),
                    client.device(),
                    profile.display()
                );
            }
            client.close().await;
            Ok(())
        }
        Command::Login {
            server,
            username,
            totp,
            new_device,
            device_name,
        } => {
            if !rampart_client::store::Store::exists(&profile) {
                anyhow::bail!(
                    "no profile in {}. To sign in on a new machine, run `rampart link --server URL` there \
                     and approve it from a device already signed in; or pass the --profile you registered with",
                    profile.display()
                );
            }
            let mut client = open(&profile)?;
            if let Some(u) = username
                && parse_user(&u)? != *client.username()
            {
                anyhow::bail!("this profile belongs to @{}, not @{u}", client.username());
            }
            if let Some(s) = server
                && s.trim_end_matches('/') != client.server()
            {
                anyhow::bail!("this profile belongs to {}, not {s}", client.server());
            }
            let password = secret("RAMPART_PASSWORD", "account password", false)?;
            let attempt = async |client: &mut rampart_client::Client, code: Option<&str>| {
                if new_device {
                    client
                        .login_as_new_device(&password, code, &device_name)
                        .await
                } else {
                    client.login(&password, code).await
                }
            };
            match attempt(&mut client, totp.as_deref()).await {
                Err(e)
                    if e.code() == Some(rampart_proto::ErrorCode::TwoFactorRequired)
                        && totp.is_none() =>
                {
                    if !std::io::stdin().is_terminal() {
                        anyhow::bail!(
                            "this account has two-factor authentication: pass --totp CODE (a code from your app, or a recovery code)"
                        );
                    }
                    let code = rpassword::prompt_password("two-factor code: ")?;
                    attempt(&mut client, Some(code.trim())).await?;
                }
                other => other?,
            }
            if json {
                println!(
                    "{}",
                    json!({"username": client.username().as_str(), "logged_in": true})
                );
            } else {
                println!("logged in as @{}", client.username());
            }
            Ok(())
        }
        Command::Logout => {
            let mut client = open(&profile)?;
            client.logout().await?;
            if json {
                println!("{}", json!({"logged_out": true}));
            } else {
                println!("logged out");
            }
            Ok(())
        }
        Command::Whoami => {
            let client = open(&profile)?;
            let logged_in = client.is_logged_in();
            let server_view = if logged_in {
                client.whoami().await.ok()
            } else {
                None
            };
            if json {
                println!(
                    "{}",
                    json!({
                        "username": client.username().as_str(),
                        "device_id": client.device().to_string(),
                        "server": client.server(),
                        "logged_in": logged_in,
                        "session_valid": server_view.is_some(),
                        "role": server_view.as_ref().map(|w| w.role),
                    })
                );
            } else {
                println!(
                    "@{} on {} (device {})",
                    client.username(),
                    client.server(),
                    client.device()
                );
                match server_view {
                    Some(w) => println!("session valid; role {:?}", w.role),
                    None if logged_in => {
                        println!("session not accepted by the server; run `rampart login`")
                    }
                    None => println!("logged out; run `rampart login`"),
                }
            }
            Ok(())
        }
        Command::Send {
            target,
            text,
            expire,
            confirm,
        } => {
            let target = Target::parse(&target)?;
            let text = if text == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                s.trim_end_matches('\n').to_owned()
            } else {
                text
            };
            let mut client = open(&profile)?;
            let (sent, check) =
                dlp_cmd::send_text(&mut client, &target, &text, expire, confirm, json).await?;
            let events = client.take_events();
            print_events(&client, &events, json);
            dlp_cmd::print_check(&check, json);
            if json {
                println!(
                    "{}",
                    json!({"id": sent.id.to_string(), "group_id": sent.group.to_string(),
                           "sent_at": sent.sent_at, "dlp": dlp_cmd::check_json(&check)})
                );
            } else {
                println!("sent to {}", client.conversation_label(&sent.group));
            }
            client.close().await;
            Ok(())
        }
        Command::SendFile {
            target,
            path,
            caption,
            expire,
            confirm,
        } => {
            let caption = caption.as_deref().unwrap_or("");
            files_cmd::send_file(&profile, &target, &path, caption, expire, confirm, json).await
        }
        Command::Download { id, out } => {
            files_cmd::download(&profile, &id, out.as_deref(), json).await
        }
        Command::Group(g) => group(&profile, g, json).await,
        Command::Link {
            server,
            device_name,
        } => account_cmd::link(&profile, &server, &device_name, json).await,
        Command::TwoFactor(c) => account_cmd::two_factor(&profile, c, json).await,
        Command::Password(c) => account_cmd::password(&profile, c, json).await,
        Command::Devices { command } => account_cmd::devices(&profile, command, json).await,
        Command::Verify { user, confirm } => {
            account_cmd::verify(&profile, &user, confirm, json).await
        }
        Command::SecurityEvents => account_cmd::security_events(&profile, json).await,
        Command::Sync => {
            let mut client = open(&profile)?;
            let events = client.sync().await?;
            print_events(&client, &events, json);
            account_cmd::print_alerts(&client.take_alerts(), json);
            let messages = events
                .iter()
                .filter(|e| matches!(e, Event::Message(_)))
                .count();
            if json {
                println!(
                    "{}",
                    json!({"new_messages": messages, "events": events.len()})
                );
            } else {
                println!("synced: {messages} new message(s)");
            }
            client.close().await;
            Ok(())
        }
        Command::Inbox { all, ids } => {
            let client = open(&profile)?;
            account_cmd::print_changed_contacts(&client, json)?;
            let entries = client.inbox(all)?;
            print_entries(&client, &entries, json, ids)
        }
        Command::Timer { target, duration } => {
            messages_cmd::timer(&profile, &target, &duration, json).await
        }
        Command::Recall { id } => messages_cmd::recall(&profile, &id, json).await,
        Command::Edit { id, text, confirm } => {
            messages_cmd::edit(&profile, &id, &text, confirm, json).await
        }
        Command::Chat { target } => chat(&profile, &target).await,
    }
}

async fn group(profile: &Path, command: GroupCommand, json: bool) -> anyhow::Result<()> {
    let mut client = open(profile)?;
    // Apply what is pending first so names and memberships are current.
    client.sync().await?;
    match command {
        GroupCommand::Create {
            name,
            members,
            admins_set_timer,
        } => {
            let members = members
                .iter()
                .map(|m| parse_user(m))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let settings = GroupSettings {
                timer: if admins_set_timer {
                    Allowed::Admins
                } else {
                    Allowed::Members
                },
                ..GroupSettings::created_by(client.username())
            };
            let group = client.create_group(&name, &members, Some(settings)).await?;
            if json {
                println!("{}", json!({"group_id": group.to_string(), "name": name}));
            } else {
                println!("created #{name} ({})", group.short());
            }
        }
        GroupCommand::Add { name, user } => {
            let user = parse_user(&user)?;
            client.add_member(&name, &user).await?;
            if json {
                println!("{}", json!({"added": user.as_str(), "group": name}));
            } else {
                println!("added @{user} to #{name}");
            }
        }
        GroupCommand::Remove { name, user } => {
            let user = parse_user(&user)?;
            client.remove_member(&name, &user).await?;
            if json {
                println!("{}", json!({"removed": user.as_str(), "group": name}));
            } else {
                println!("removed @{user} from #{name}");
            }
        }
        GroupCommand::Leave { name } => {
            client.leave_group(&name).await?;
            if json {
                println!("{}", json!({"left": name}));
            } else {
                println!("left #{name}");
            }
        }
        GroupCommand::List => {
            let groups = client.groups()?;
            if json {
                println!("{}", serde_json::to_string(&groups)?);
            } else if groups.is_empty() {
                println!("no conversations yet");
            } else {
                for g in groups {
                    println!(
                        "{:<24} {:<6} {:<7} {}",
                        g.name,
                        g.kind,
                        g.state,
                        list_users(&g.members)
                    );
                }
            }
        }
        GroupCommand::Info { name } => {
            let settings = client.group_settings(&name)?;
            print_group_settings(&name, settings.as_ref(), json);
        }
        GroupCommand::Role { name, user, role } => {
            let user = parse_user(&user)?;
            let role = GroupRole::parse(&role).ok_or_else(|| {
                anyhow::anyhow!("unknown role {role:?}: use admin, member or read-only")
            })?;
            if !client.group_members(&name)?.iter().any(|(u, _)| *u == user) {
                anyhow::bail!("@{user} is not a member of #{name}; add them first");
            }
            let settings = client
                .update_group_settings(&name, |s| s.set_role(&user, role))
                .await?;
            if json {
                print_group_settings(&name, Some(&settings), true);
            } else {
                println!("@{user} is now {} in #{name}", role.as_str());
            }
        }
        GroupCommand::Settings {
            name,
            post,
            add_remove,
            rename,
            timer,
        } => {
            let rule = |value: Option<String>, what: &str| -> anyhow::Result<Option<Allowed>> {
                value
                    .map(|v| {
                        Allowed::parse(&v).ok_or_else(|| {
                            anyhow::anyhow!("--{what} takes `members` or `admins`, not {v:?}")
                        })
                    })
                    .transpose()
            };
            let (post, add_remove, rename, timer) = (
                rule(post, "post")?,
                rule(add_remove, "add-remove")?,
                rule(rename, "rename")?,
                rule(timer, "timer")?,
            );
            if post.is_none() && add_remove.is_none() && rename.is_none() && timer.is_none() {
                let settings = client.group_settings(&name)?;
                print_group_settings(&name, settings.as_ref(), json);
            } else {
                let settings = client
                    .update_group_settings(&name, |s| {
                        s.post = post.unwrap_or(s.post);
                        s.add_remove = add_remove.unwrap_or(s.add_remove);
                        s.rename = rename.unwrap_or(s.rename);
                        s.timer = timer.unwrap_or(s.timer);
                    })
                    .await?;
                print_group_settings(&name, Some(&settings), json);
            }
        }
        GroupCommand::Members { name } => {
            let members = client.group_members(&name)?;
            if json {
                let list: Vec<_> = members
                    .iter()
                    .map(|(u, d)| json!({"username": u.as_str(), "device_id": d.to_string()}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for (u, d) in members {
                    println!("@{u} (device {d})");
                }
            }
        }
    }
    client.close().await;
    Ok(())
}

fn print_group_settings(name: &str, settings: Option<&GroupSettings>, json: bool) {
    let Some(s) = settings else {
        if json {
            println!("{}", json!({"group": name, "settings": null}));
        } else {
            println!("#{name} has no roles: everyone in it may do everything");
        }
        return;
    };
    if json {
        let roles: serde_json::Map<String, serde_json::Value> = s
            .roles
            .iter()
            .map(|(u, r)| (u.to_string(), r.as_str().into()))
            .collect();
        println!(
            "{}",
            json!({
                "group": name,
                "roles": roles,
                "post": s.post.as_str(),
                "add_remove": s.add_remove.as_str(),
                "rename": s.rename.as_str(),
                "timer": s.timer.as_str(),
            })
        );
        return;
    }
    println!("#{name}");
    for (user, role) in &s.roles {
        println!("  @{user:<24} {}", role.as_str());
    }
    println!("  everyone else            member");
    println!("who may:");
    println!("  post                     {}", s.post.as_str());
    println!("  add or remove members    {}", s.add_remove.as_str());
    println!("  rename                   {}", s.rename.as_str());
    println!("  set the timer            {}", s.timer.as_str());
}

async fn chat(profile: &Path, target: &str) -> anyhow::Result<()> {
    let target = Target::parse(target)?;
    let mut client = open(profile)?;
    client.sync().await?;
    let (group, history) = client
        .history(&target)
        .await
        .context("opening the conversation")?;
    let label = client.conversation_label(&group);
    for e in history.iter().rev().take(20).rev() {
        println!("[{}] {}", time(e.sent_at), messages_cmd::entry_line(e));
    }
    eprintln!("— chatting in {label}; type a message and press Enter, Ctrl-D to quit —");
    // Lines from stdin arrive on a channel fed by a blocking thread.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    // Disappearing messages leave the store on time even when nothing arrives.
    let mut purge = tokio::time::interval(std::time::Duration::from_secs(5));
    // A line the policy warned about, waiting for `/send`.
    let mut held: Option<String> = None;
    loop {
        tokio::select! {
            _ = purge.tick() => {
                client.purge_expired()?;
            }
            line = rx.recv() => {
                let Some(line) = line else { break };
                let line = line.trim();
                if line.is_empty() { continue; }
                let (text, confirmed) = match held.take() {
                    Some(text) if line == "/send" => (text, true),
                    Some(text) => {
                        client.report_declined(&target, &text).await;
                        eprintln!("(not sent)");
                        (line.to_owned(), false)
                    }
                    None => (line.to_owned(), false),
                };
                match client.send_text_with(&target, &text, None, confirmed).await {
                    Ok((_, check)) => dlp_cmd::print_check(&check, false),
                    Err(ClientError::NeedsConfirmation { found }) => {
                        eprintln!("warning: this message contains {}.", found.join(", "));
                        eprintln!("Type /send to send it anyway, or anything else to discard it.");
                        held = Some(text);
                    }
                    Err(e @ ClientError::Blocked(_)) => eprintln!("{e}"),
                    Err(e) => return Err(e.into()),
                }
                for e in client.take_events() {
                    if let Some(l) = describe(&client, &e) { println!("{l}"); }
                }
            }
            events = client.next_events() => {
                for e in events? {
                    if let Some(l) = describe(&client, &e) { println!("{l}"); }
                }
            }
        }
    }
    client.close().await;
    Ok(())
}
