//! Account security commands: `2fa`, `password`, `devices`, `link`,
//! `verify` and `security-events`.

use crate::cli::{open, parse_user, secret, time};
use anyhow::Context as _;
use rampart_client::{Alert, Client, LinkDisplay};
use rampart_core::Trust;
use rampart_proto::DeviceId;
use serde_json::json;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;

#[derive(clap::Subcommand, Debug)]
pub enum TwoFactorCommand {
    /// Turn on two-factor authentication: shows a secret and QR code for an
    /// authenticator app, then asks for a code from it.
    Enable,
    /// Turn it off (needs the password and a current or recovery code).
    Disable {
        /// A current code or an unused recovery code (asked if missing).
        #[arg(long)]
        code: Option<String>,
    },
    /// Replace the recovery codes with ten new ones (needs a current code).
    RecoveryCodes {
        #[arg(long)]
        code: Option<String>,
    },
    /// Whether two-factor authentication is on, and recovery codes left.
    Status,
}

#[derive(clap::Subcommand, Debug)]
pub enum PasswordCommand {
    /// Change the account password; every other session is logged out.
    Change {
        /// A current two-factor code, if the account has 2FA (asked if needed).
        #[arg(long)]
        totp: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum DevicesCommand {
    /// List this account's devices (the default).
    List,
    /// Revoke a device: its session ends at once and it is removed from
    /// every conversation.
    Revoke {
        /// The device id, as `rampart devices` shows it.
        device: String,
    },
    /// Approve a new device that shows a link code (`rampart link` on it).
    Approve { code: String },
}

/// A line of text read from the terminal prompt, or from standard input
/// when it is not a terminal (scripts pipe codes in).
fn read_line(prompt: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        eprint!("{prompt}: ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim().to_owned();
    if line.is_empty() {
        anyhow::bail!("no {prompt} given");
    }
    Ok(line)
}

/// A code from the flag, or asked for.
fn code_or_prompt(code: Option<String>, what: &str) -> anyhow::Result<String> {
    match code {
        Some(c) => Ok(c),
        None if std::io::stdin().is_terminal() => {
            Ok(rpassword::prompt_password(format!("{what}: "))?)
        }
        None => read_line(what),
    }
}

/// A QR code drawn with Unicode half blocks (two rows per line).
pub fn qr(payload: &str) -> String {
    match qrcode::QrCode::new(payload.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

pub fn describe_alert(alert: &Alert) -> String {
    match alert {
        Alert::NewDevice { device_id, name } => format!(
            "* a new device was added to your account: {name:?} ({device_id}). If that was not you, \
             run `rampart devices revoke {device_id}` and change your password."
        ),
        Alert::UncertifiedDevice { device_id, name } => format!(
            "!!! WARNING: the server lists a device {name:?} ({device_id}) on your account that your \
             identity key never certified. Your contacts' apps refuse it; report this to your administrator."
        ),
        Alert::IdentityChanged {
            user,
            was_verified: true,
        } => format!(
            "!!! WARNING: the identity key of @{user}, whom you had verified, CHANGED. Nothing is sent to \
             them until you compare safety numbers (`rampart verify @{user}`) and confirm (`--confirm`)."
        ),
        Alert::IdentityChanged {
            user,
            was_verified: false,
        } => format!(
            "!!! WARNING: the identity key of @{user} changed. This happens when they reinstall, or in an \
             attack; compare safety numbers with `rampart verify @{user}`."
        ),
        Alert::RefusedDevice {
            user,
            device_id,
            reason,
        } => format!("!!! refused device {device_id} of @{user}: {reason}"),
        Alert::PolicyUpdated { revision } => format!(
            "* your organisation updated its message policy (revision {revision}); it applies from now on"
        ),
    }
}

/// Prints alerts (to stderr in JSON mode, so stdout stays one document).
pub fn print_alerts(alerts: &[Alert], json: bool) {
    for a in alerts {
        if json {
            eprintln!("{}", serde_json::to_string(a).unwrap_or_default());
        } else {
            println!("{}", describe_alert(a));
        }
    }
}

/// Warnings about contacts whose identity key changed, for `inbox`.
pub fn print_changed_contacts(client: &Client, json: bool) -> anyhow::Result<()> {
    if json {
        return Ok(());
    }
    for (user, trust) in client.changed_contacts()? {
        let blocked = if trust == Trust::Broken {
            " You had verified them: sending to them is blocked until you confirm again."
        } else {
            ""
        };
        println!(
            "!!! the identity key of @{user} changed; compare safety numbers with `rampart verify @{user}`.{blocked}"
        );
    }
    Ok(())
}

pub async fn two_factor(
    profile: &Path,
    command: TwoFactorCommand,
    json: bool,
) -> anyhow::Result<()> {
    let client = open(profile)?;
    match command {
        TwoFactorCommand::Enable => {
            let password = secret("RAMPART_PASSWORD", "account password", false)?;
            let setup = client.setup_totp(&password).await?;
            if json {
                println!(
                    "{}",
                    json!({"secret": setup.secret, "otpauth_uri": setup.otpauth_uri})
                );
            } else {
                println!("Scan this with your authenticator app (or enter the secret by hand):\n");
                println!("{}", qr(&setup.otpauth_uri));
                println!("secret: {}", setup.secret);
                println!("uri:    {}\n", setup.otpauth_uri);
            }
            std::io::stdout().flush()?;
            let code = read_line("6-digit code from the app")?;
            let recovery = client
                .activate_totp(&code)
                .await
                .context("two-factor authentication is NOT on")?;
            if json {
                println!(
                    "{}",
                    json!({"enabled": true, "recovery_codes": recovery.codes})
                );
            } else {
                println!(
                    "Two-factor authentication is on. Logging in now needs a code from the app.\n"
                );
                println!(
                    "Recovery codes (each works once; keep them somewhere safe, they are not shown again):"
                );
                for c in &recovery.codes {
                    println!("  {c}");
                }
            }
        }
        TwoFactorCommand::Disable { code } => {
            let password = secret("RAMPART_PASSWORD", "account password", false)?;
            let code = code_or_prompt(code, "current code or recovery code")?;
            client.disable_totp(&password, &code).await?;
            if json {
                println!("{}", json!({"enabled": false}));
            } else {
                println!("two-factor authentication is off");
            }
        }
        TwoFactorCommand::RecoveryCodes { code } => {
            let code = code_or_prompt(code, "current code")?;
            let recovery = client.regenerate_recovery_codes(&code).await?;
            if json {
                println!("{}", json!({"recovery_codes": recovery.codes}));
            } else {
                println!("New recovery codes (the old ones no longer work):");
                for c in &recovery.codes {
                    println!("  {c}");
                }
            }
        }
        TwoFactorCommand::Status => {
            let status = client.two_factor_status().await?;
            if json {
                println!("{}", serde_json::to_string(&status)?);
            } else if status.enabled {
                println!(
                    "two-factor authentication is on; {} recovery code(s) left",
                    status.recovery_codes_left
                );
            } else {
                println!("two-factor authentication is off; turn it on with `rampart 2fa enable`");
            }
        }
    }
    Ok(())
}

pub async fn password(profile: &Path, command: PasswordCommand, json: bool) -> anyhow::Result<()> {
    let PasswordCommand::Change { totp } = command;
    let client = open(profile)?;
    let old = secret("RAMPART_PASSWORD", "current password", false)?;
    let new = secret("RAMPART_NEW_PASSWORD", "new password", true)?;
    let result = client.change_password(&old, &new, totp.as_deref()).await;
    match result {
        Err(e)
            if e.code() == Some(rampart_proto::ErrorCode::TwoFactorRequired) && totp.is_none() =>
        {
            let code = code_or_prompt(None, "two-factor code")?;
            client.change_password(&old, &new, Some(&code)).await?;
        }
        other => other?,
    }
    if json {
        println!("{}", json!({"changed": true}));
    } else {
        println!("password changed; your other sessions were logged out");
    }
    Ok(())
}

pub async fn devices(
    profile: &Path,
    command: Option<DevicesCommand>,
    json: bool,
) -> anyhow::Result<()> {
    let mut client = open(profile)?;
    match command.unwrap_or(DevicesCommand::List) {
        DevicesCommand::List => {
            let devices = client.devices().await?;
            if json {
                println!("{}", serde_json::to_string(&devices)?);
            } else {
                for d in devices {
                    println!(
                        "{} {:<20} created {}  last seen {}{}{}",
                        d.device.device_id,
                        d.device.name,
                        time(d.device.created_at),
                        time(d.device.last_seen),
                        if d.device.current {
                            "  (this device)"
                        } else {
                            ""
                        },
                        if d.certified {
                            ""
                        } else {
                            "  !!! NOT CERTIFIED by your identity key"
                        }
                    );
                }
            }
        }
        DevicesCommand::Revoke { device } => {
            let id = DeviceId::parse(&device).map_err(|_| {
                anyhow::anyhow!("{device:?} is not a device id; `rampart devices` lists them")
            })?;
            client.sync().await?;
            let revoked = client.revoke_device(id).await?;
            if json {
                println!("{}", serde_json::to_string(&revoked)?);
            } else {
                println!("{revoked}");
            }
        }
        DevicesCommand::Approve { code } => {
            client.sync().await?;
            if !json {
                println!("approving; this waits until the new device has finished linking…");
            }
            let approved = client.approve_link(&code).await?;
            if json {
                println!("{}", serde_json::to_string(&approved)?);
            } else {
                println!(
                    "linked {:?} ({}) and added it to {} conversation(s)",
                    approved.name, approved.device_id, approved.added_to
                );
            }
        }
    }
    client.close().await;
    Ok(())
}

pub async fn link(
    profile: &Path,
    server: &str,
    device_name: &str,
    json: bool,
) -> anyhow::Result<()> {
    if rampart_client::store::Store::exists(profile) {
        anyhow::bail!(
            "{} already holds a profile; pass another --profile for the new device",
            profile.display()
        );
    }
    let passphrase = secret("RAMPART_PASSPHRASE", "new profile passphrase", true)?;
    let show = |d: &LinkDisplay| {
        if json {
            println!(
                "{}",
                json!({"code": d.code, "qr_payload": d.qr_payload, "expires_at": d.expires_at})
            );
        } else {
            println!("On a device already signed in to your account, run:\n");
            println!("    rampart devices approve {}\n", d.code);
            println!("or scan:\n{}", qr(&d.qr_payload));
            println!("The code expires at {} UTC. Waiting…", time(d.expires_at));
        }
        let _ = std::io::stdout().flush();
    };
    let mut client = Client::link(profile, &passphrase, server, device_name, show).await?;
    // The approving device adds this one to its conversations right away.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut joined = 0;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(std::time::Duration::from_secs(3), client.next_events()).await {
            Ok(events) => {
                joined += events?
                    .iter()
                    .filter(|e| matches!(e, rampart_client::Event::Joined { .. }))
                    .count();
            }
            Err(_) if joined > 0 => break,
            Err(_) => {}
        }
    }
    if json {
        println!(
            "{}",
            json!({"username": client.username().as_str(), "device_id": client.device().to_string(), "conversations": joined})
        );
    } else {
        println!(
            "this device is now @{} (device {}); joined {joined} conversation(s)",
            client.username(),
            client.device()
        );
    }
    client.close().await;
    Ok(())
}

pub async fn verify(profile: &Path, user: &str, confirm: bool, json: bool) -> anyhow::Result<()> {
    let user = parse_user(user.trim_start_matches('@'))?;
    let mut client = open(profile)?;
    let v = if confirm {
        client.confirm_verification(&user).await?
    } else {
        client.verification(&user).await?
    };
    let alerts = client.take_alerts();
    print_alerts(&alerts, json);
    let state = match (v.pin.trust, v.pin.changed) {
        (Trust::Verified, _) => "verified",
        (Trust::Broken, _) => "changed after verification: sending is blocked until you confirm",
        (Trust::Unverified, true) => "not verified; the key changed",
        (Trust::Unverified, false) => "not verified",
    };
    if json {
        println!(
            "{}",
            json!({
                "user": user.as_str(),
                "safety_number": v.safety_number.digits(),
                "qr_payload": v.safety_number.qr_payload(),
                "verified": v.pin.trust == Trust::Verified,
                "changed": v.pin.changed,
            })
        );
    } else {
        println!("Safety number with @{user}:\n");
        let grouped = v.safety_number.grouped();
        let groups: Vec<&str> = grouped.split(' ').collect();
        for row in groups.chunks(4) {
            println!("    {}", row.join(" "));
        }
        println!("\n{}", qr(&v.safety_number.qr_payload()));
        println!("state: {state}");
        if !confirm && v.pin.trust != Trust::Verified {
            println!(
                "Compare these digits with @{user} in person or over a call; if they match, run \
                 `rampart verify @{user} --confirm`."
            );
        } else if confirm {
            println!("@{user} is now verified.");
        }
    }
    Ok(())
}

pub async fn security_events(profile: &Path, json: bool) -> anyhow::Result<()> {
    let client = open(profile)?;
    let events = client.security_events().await?;
    if json {
        println!("{}", serde_json::to_string(&events)?);
    } else if events.is_empty() {
        println!("no security events");
    } else {
        for e in events {
            println!(
                "{}  {:<28} {}{}",
                time(e.at),
                serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                e.device_id
                    .map(|d| format!("device {d} "))
                    .unwrap_or_default(),
                e.ip.map(|ip| format!("from {ip}")).unwrap_or_default()
            );
        }
    }
    Ok(())
}
