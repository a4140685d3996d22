//! `rampart admin users|2fa-reset|groups|access|sessions`: the user
//! lifecycle, roles, the access policy and sessions.
//!
//! Each command runs one of two ways, with the same output:
//!
//! - with `--data DIR` (or `RAMPART_DATA`), on the data directory of a
//!   **stopped** server, as the operator (who may do anything an owner may);
//! - otherwise over HTTP, with the session of the profile (`--profile` or
//!   `RAMPART_PROFILE`), which must belong to an owner or an admin: the
//!   server checks every request and says why it refuses one.
//!
//! Neither way shows message content: the server holds none it can read.

use crate::cli::{open, parse_user, time};
use anyhow::Context as _;
use rampart_client::{AdminClient, Client, ClientError};
use rampart_proto::Username;
use rampart_proto::admin::{
    AccessPolicy, AccountStatus, AdminGroupList, Invite, MAX_INVITE_SECS, MAX_USERNAME_PATTERN_LEN,
    NewInvite, SessionList, TwoFactorRequirement, UserList, UserSummary,
};
use rampart_proto::api::Role;
use rampart_server::admin::Console;
use serde::Serialize;
use serde_json::json;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

/// How the mode is chosen, repeated in `--help` of every command.
pub(crate) const WHERE: &str = "Where it runs: with --data DIR (or RAMPART_DATA) on the data directory \
of a stopped server; otherwise over HTTP with the session of your profile (--profile or \
RAMPART_PROFILE), which must be an owner's or an admin's. The output is the same.";

/// `--data`: which of the two modes a command runs in.
#[derive(clap::Args, Debug, Clone)]
pub struct Via {
    /// The data directory of a stopped server; without it, the command
    /// goes over HTTP with your profile's session.
    #[arg(long, env = "RAMPART_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
}

/// `rampart admin users …`.
#[derive(clap::Subcommand, Debug)]
pub enum UsersCommand {
    /// List every account: role, status, 2FA, devices, last seen.
    #[command(after_help = WHERE)]
    List {
        #[command(flatten)]
        via: Via,
    },
    /// Create a single-use invite code for a new account with ROLE.
    ///
    /// Admins may invite members, guests and bots; owners anyone.
    #[command(after_help = WHERE)]
    Invite {
        /// owner, admin, member, guest or bot.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// How long the code stays valid, up to 30d (e.g. 30m, 24h, 7d;
        /// default 7d).
        #[arg(long, value_name = "DURATION", value_parser = parse_invite_expiry)]
        expires: Option<u64>,
        #[command(flatten)]
        via: Via,
    },
    /// Disable an account: login refused, every session revoked, every
    /// device removed from its groups (so it cannot read what follows).
    #[command(after_help = WHERE)]
    Disable {
        /// @user or user.
        user: String,
        #[command(flatten)]
        via: Via,
    },
    /// Let a disabled account sign in again. Its old devices stay revoked:
    /// the user comes back on a new device, which members add to groups.
    #[command(after_help = WHERE)]
    Enable {
        /// @user or user.
        user: String,
        #[command(flatten)]
        via: Via,
    },
    /// Delete an account and purge its data, for good.
    ///
    /// Asks for confirmation on a terminal; elsewhere `--yes` is required.
    #[command(after_help = WHERE)]
    Delete {
        /// @user or user.
        user: String,
        /// Do not ask: you mean it.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        via: Via,
    },
    /// Give an account an organisation role.
    ///
    /// Only owners grant admin or owner, or touch admins and owners; the
    /// last owner keeps their role; nobody changes their own.
    #[command(after_help = WHERE)]
    Role {
        /// @user or user.
        user: String,
        /// owner, admin, member, guest or bot.
        #[arg(value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        via: Via,
    },
}

/// `rampart admin 2fa-reset USER`.
#[derive(clap::Args, Debug)]
pub struct TwoFactorReset {
    /// @user or user.
    user: String,
    #[command(flatten)]
    via: Via,
}

/// `rampart admin groups …`.
#[derive(clap::Subcommand, Debug)]
pub enum GroupsCommand {
    /// List every conversation: kind, users, devices, admins, epoch.
    ///
    /// Never names (they are encrypted) or messages.
    #[command(after_help = WHERE)]
    List {
        #[command(flatten)]
        via: Via,
    },
}

/// `rampart admin access …`.
#[derive(clap::Subcommand, Debug)]
pub enum AccessCommand {
    /// Show the organisation's access policy.
    #[command(after_help = WHERE)]
    Show {
        #[command(flatten)]
        via: Via,
    },
    /// Change fields of the access policy (owners only); the others keep
    /// their values. Shows the result.
    #[command(after_help = WHERE)]
    Set(AccessSet),
}

#[derive(clap::Args, Debug)]
pub struct AccessSet {
    /// Whether members (not only admins and owners) may create groups.
    /// Guests never may.
    #[arg(long, value_name = "true|false")]
    members_create_groups: Option<bool>,
    /// Most distinct users in one group.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..))]
    max_group_users: Option<u32>,
    /// Whether guests may be added to groups at all.
    #[arg(long, value_name = "true|false")]
    guests_may_be_added: Option<bool>,
    /// A regular expression every new username must match in full, e.g.
    /// '[a-z]+\.[a-z]+'.
    #[arg(long, value_name = "RE", conflicts_with = "no_username_pattern")]
    username_pattern: Option<String>,
    /// Allow every valid username again.
    #[arg(long)]
    no_username_pattern: bool,
    /// Who must have two-factor authentication: off, admins (owners and
    /// admins) or all (everyone but bots). Accounts without it can only
    /// enrol until they do.
    #[arg(long = "require-2fa", value_name = "off|admins|all", value_parser = parse_two_factor)]
    require_two_factor: Option<TwoFactorRequirement>,
    #[command(flatten)]
    via: Via,
}

/// `rampart admin sessions …`.
#[derive(clap::Subcommand, Debug)]
pub enum SessionsCommand {
    /// List live sessions, newest first.
    #[command(after_help = WHERE)]
    List {
        /// Only this user's (@user or user).
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        via: Via,
    },
    /// End one session at once (its id from `sessions list`).
    #[command(after_help = WHERE)]
    Revoke {
        /// The session id.
        id: String,
        #[command(flatten)]
        via: Via,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    serde_json::from_value(json!(text.trim().to_ascii_lowercase()))
        .map_err(|_| format!("{text:?} is not a role; use owner, admin, member, guest or bot"))
}

fn parse_two_factor(text: &str) -> Result<TwoFactorRequirement, String> {
    serde_json::from_value(json!(text.trim().to_ascii_lowercase()))
        .map_err(|_| format!("{text:?}: use off, admins or all"))
}

/// `--expires` of `users invite`: a duration up to 30 days.
fn parse_invite_expiry(text: &str) -> Result<u64, String> {
    let secs = u64::from(rampart_core::lifetime::parse_duration(text)?);
    if secs < 60 {
        return Err(format!(
            "{text:?} is too short; an invite lasts at least 1m"
        ));
    }
    if secs > MAX_INVITE_SECS {
        return Err(format!("{text:?} is too long; an invite lasts at most 30d"));
    }
    Ok(secs)
}

fn two_factor_name(r: TwoFactorRequirement) -> &'static str {
    match r {
        TwoFactorRequirement::Off => "off",
        TwoFactorRequirement::Admins => "admins",
        TwoFactorRequirement::All => "all",
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

// ---- the two ways in --------------------------------------------------------------

/// Where the commands go: a stopped server's data directory, or the admin
/// API with a profile's session.
pub(crate) enum Backend {
    Local(Box<Console>),
    Remote {
        client: Box<Client>,
        api: AdminClient,
    },
}

/// A refusal from the local console reads like one from the server.
fn refused(e: rampart_server::ApiError) -> anyhow::Error {
    anyhow::anyhow!("refused ({}): {}", e.code(), e.message())
}

/// A refusal over HTTP: the server's code and reason, as they came.
fn remote(e: ClientError) -> anyhow::Error {
    e.into()
}

impl Backend {
    async fn open(via: &Via, profile: &Path) -> anyhow::Result<Self> {
        match &via.data {
            Some(data) => {
                if !data.exists() {
                    anyhow::bail!(
                        "{} does not exist; pass the server's --data directory, or leave --data \
                         out to use your admin profile over HTTP",
                        data.display()
                    );
                }
                let console = Console::open(data)
                    .await
                    .map_err(|e| local_open_error(e, data))?;
                Ok(Self::Local(Box::new(console)))
            }
            None => {
                let client = open(profile).map_err(|e| match e.downcast_ref::<ClientError>() {
                    Some(ClientError::NoProfile(dir)) => anyhow::anyhow!(
                        "no profile in {}: admin commands use an owner's or admin's profile \
                         (--profile DIR), or --data DIR for the data directory of a stopped server",
                        dir.display()
                    ),
                    _ => e,
                })?;
                if !client.is_logged_in() {
                    anyhow::bail!(
                        "this profile (@{}) is logged out; run `rampart login` first",
                        client.username()
                    );
                }
                let api = client.admin();
                Ok(Self::Remote {
                    client: Box::new(client),
                    api,
                })
            }
        }
    }

    /// The server's URL, for hints (unknown in local mode).
    fn server(&self) -> Option<&str> {
        match self {
            Self::Local(_) => None,
            Self::Remote { client, .. } => Some(client.server()),
        }
    }

    async fn close(self) {
        match self {
            Self::Local(console) => (*console).close().await,
            Self::Remote { client, .. } => (*client).close().await,
        }
    }

    async fn users(&self) -> anyhow::Result<UserList> {
        match self {
            Self::Local(c) => c.users().await.map_err(refused),
            Self::Remote { api, .. } => api.users().await.map_err(remote),
        }
    }

    async fn invite(&self, invite: NewInvite) -> anyhow::Result<Invite> {
        match self {
            Self::Local(c) => c.invite(invite).await.map_err(refused),
            Self::Remote { api, .. } => api.invite(invite).await.map_err(remote),
        }
    }

    async fn set_role(&self, user: &Username, role: Role) -> anyhow::Result<UserSummary> {
        match self {
            Self::Local(c) => c.set_role(user, role).await.map_err(refused),
            Self::Remote { api, .. } => api.set_role(user, role).await.map_err(remote),
        }
    }

    async fn disable(&self, user: &Username) -> anyhow::Result<UserSummary> {
        match self {
            Self::Local(c) => c.disable(user).await.map_err(refused),
            Self::Remote { api, .. } => api.disable(user).await.map_err(remote),
        }
    }

    async fn enable(&self, user: &Username) -> anyhow::Result<UserSummary> {
        match self {
            Self::Local(c) => c.enable(user).await.map_err(refused),
            Self::Remote { api, .. } => api.enable(user).await.map_err(remote),
        }
    }

    async fn delete(&self, user: &Username) -> anyhow::Result<()> {
        match self {
            Self::Local(c) => c.delete(user).await.map_err(refused),
            Self::Remote { api, .. } => api.delete(user).await.map_err(remote),
        }
    }

    async fn reset_two_factor(&self, user: &Username) -> anyhow::Result<UserSummary> {
        match self {
            Self::Local(c) => c.reset_two_factor(user).await.map_err(refused),
            Self::Remote { api, .. } => api.reset_two_factor(user).await.map_err(remote),
        }
    }

    async fn groups(&self) -> anyhow::Result<AdminGroupList> {
        match self {
            Self::Local(c) => c.groups().await.map_err(refused),
            Self::Remote { api, .. } => api.groups().await.map_err(remote),
        }
    }

    async fn access(&self) -> anyhow::Result<AccessPolicy> {
        match self {
            Self::Local(c) => c.access().await.map_err(refused),
            Self::Remote { api, .. } => api.access().await.map_err(remote),
        }
    }

    async fn set_access(&self, policy: AccessPolicy) -> anyhow::Result<AccessPolicy> {
        match self {
            Self::Local(c) => c.set_access(policy).await.map_err(refused),
            Self::Remote { api, .. } => api.set_access(policy).await.map_err(remote),
        }
    }

    async fn sessions(&self, user: Option<&Username>) -> anyhow::Result<SessionList> {
        match self {
            Self::Local(c) => c.sessions(user).await.map_err(refused),
            Self::Remote { api, .. } => api.sessions(user).await.map_err(remote),
        }
    }

    async fn revoke_session(&self, id: &str) -> anyhow::Result<()> {
        match self {
            Self::Local(c) => c.revoke_session(id).await.map_err(refused),
            Self::Remote { api, .. } => api.revoke_session(id).await.map_err(remote),
        }
    }
}

/// Why the data directory could not be opened, and what to do instead.
fn local_open_error(e: rampart_server::ServerError, data: &Path) -> anyhow::Error {
    if matches!(e, rampart_server::ServerError::InUse(_)) {
        anyhow::anyhow!(
            "the server is running on {} (or another `rampart admin` command has it open); run \
             this from an admin's profile instead (leave out --data and unset RAMPART_DATA), or \
             stop the server first",
            data.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("cannot open the data directory {}", data.display()))
    }
}

/// Runs `work` against the backend `via` selects, and closes it whatever
/// the outcome.
pub(crate) async fn with_backend<T, F>(via: &Via, profile: &Path, work: F) -> anyhow::Result<T>
where
    F: AsyncFnOnce(&Backend) -> anyhow::Result<T>,
{
    let backend = Backend::open(via, profile).await?;
    let result = work(&backend).await;
    backend.close().await;
    result
}

// ---- the commands -------------------------------------------------------------------

pub(crate) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(value)?)?;
    Ok(())
}

pub async fn users(command: UsersCommand, profile: &Path, json: bool) -> anyhow::Result<()> {
    match command {
        UsersCommand::List { via } => {
            let list = with_backend(&via, profile, async |b| b.users().await).await?;
            if json {
                return print_json(&list);
            }
            print_users(&list.users)
        }
        UsersCommand::Invite { role, expires, via } => {
            let (invite, server) = with_backend(&via, profile, async |b| {
                let invite = b
                    .invite(NewInvite {
                        role,
                        expires_in_secs: expires,
                    })
                    .await?;
                Ok((invite, b.server().map(str::to_owned)))
            })
            .await?;
            if json {
                return print_json(&invite);
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "invite code  {}", invite.code)?;
            writeln!(out, "role         {}", invite.role.as_str())?;
            writeln!(out, "expires      {} UTC", time(invite.expires_at))?;
            writeln!(
                out,
                "single use; the new user runs: rampart register --server {} --username NAME --invite {}",
                server.as_deref().unwrap_or("URL"),
                invite.code
            )?;
            Ok(())
        }
        UsersCommand::Disable { user, via } => {
            let user = parse_user(&user)?;
            let summary = with_backend(&via, profile, async |b| b.disable(&user).await).await?;
            if json {
                return print_json(&summary);
            }
            println!(
                "@{} is disabled: login refused, sessions ended, devices revoked (the next member to sync takes them out of each group)",
                summary.username
            );
            Ok(())
        }
        UsersCommand::Enable { user, via } => {
            let user = parse_user(&user)?;
            let summary = with_backend(&via, profile, async |b| b.enable(&user).await).await?;
            if json {
                return print_json(&summary);
            }
            println!(
                "@{} is enabled again; their old devices stay revoked, so they come back on a new device, which group members add back",
                summary.username
            );
            Ok(())
        }
        UsersCommand::Delete { user, yes, via } => {
            let user = parse_user(&user)?;
            confirm_delete(&user, yes)?;
            with_backend(&via, profile, async |b| b.delete(&user).await).await?;
            if json {
                return print_json(&json!({ "deleted": user.as_str() }));
            }
            println!("@{user} is deleted, with their devices, sessions and queued messages");
            Ok(())
        }
        UsersCommand::Role { user, role, via } => {
            let user = parse_user(&user)?;
            let summary =
                with_backend(&via, profile, async |b| b.set_role(&user, role).await).await?;
            if json {
                return print_json(&summary);
            }
            println!("@{} is now {}", summary.username, summary.role.as_str());
            Ok(())
        }
    }
}

/// Deleting cannot be undone: asked on a terminal, `--yes` elsewhere.
fn confirm_delete(user: &Username, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        anyhow::bail!(
            "deleting @{user} cannot be undone; there is no terminal to ask on, so pass --yes to confirm"
        );
    }
    eprint!(
        "Delete @{user} for good? Their account, devices, sessions and queued messages are purged. [y/N] "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        anyhow::bail!("not deleted");
    }
    Ok(())
}

pub async fn two_factor_reset(
    command: TwoFactorReset,
    profile: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let user = parse_user(&command.user)?;
    let summary = with_backend(&command.via, profile, async |b| {
        b.reset_two_factor(&user).await
    })
    .await?;
    if json {
        return print_json(&summary);
    }
    println!(
        "@{}'s two-factor authentication is reset and their sessions ended; they log in with their password and enrol again with `rampart 2fa enable`",
        summary.username
    );
    Ok(())
}

pub async fn groups(command: GroupsCommand, profile: &Path, json: bool) -> anyhow::Result<()> {
    let GroupsCommand::List { via } = command;
    let list = with_backend(&via, profile, async |b| b.groups().await).await?;
    if json {
        return print_json(&list);
    }
    if list.groups.is_empty() {
        println!("no conversations yet");
        return Ok(());
    }
    let mut table = Table::new(&[
        "GROUP",
        "KIND",
        "USERS",
        "DEVICES",
        "EPOCH",
        "CREATED (UTC)",
        "ADMINS",
    ]);
    for g in &list.groups {
        let admins = if g.admins.is_empty() {
            "-".to_owned()
        } else {
            g.admins
                .iter()
                .map(|a| format!("@{a}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.row(vec![
            g.group_id.short(),
            g.kind.clone(),
            g.users.to_string(),
            g.devices.to_string(),
            g.epoch.to_string(),
            time(g.created_at),
            admins,
        ]);
    }
    table.print()
}

pub async fn access(command: AccessCommand, profile: &Path, json: bool) -> anyhow::Result<()> {
    match command {
        AccessCommand::Show { via } => {
            let policy = with_backend(&via, profile, async |b| b.access().await).await?;
            if json {
                return print_json(&policy);
            }
            print_access(&policy)
        }
        AccessCommand::Set(set) => {
            let changes = set.changes()?;
            let policy = with_backend(&set.via, profile, async |b| {
                let mut policy = b.access().await?;
                changes.apply(&mut policy);
                b.set_access(policy).await
            })
            .await?;
            if json {
                return print_json(&policy);
            }
            println!("access policy updated:");
            print_access(&policy)
        }
    }
}

/// The fields `access set` changes.
struct AccessChanges {
    members_create_groups: Option<bool>,
    max_group_users: Option<u32>,
    guests_may_be_added: Option<bool>,
    username_pattern: Option<Option<String>>,
    require_two_factor: Option<TwoFactorRequirement>,
}

impl AccessSet {
    fn changes(&self) -> anyhow::Result<AccessChanges> {
        let username_pattern = match (&self.username_pattern, self.no_username_pattern) {
            (Some(p), _) => {
                if p.is_empty() {
                    anyhow::bail!(
                        "an empty --username-pattern matches no username; use --no-username-pattern to allow every username"
                    );
                }
                if p.len() > MAX_USERNAME_PATTERN_LEN {
                    anyhow::bail!(
                        "--username-pattern is {} bytes long; at most {MAX_USERNAME_PATTERN_LEN}",
                        p.len()
                    );
                }
                Some(Some(p.clone()))
            }
            (None, true) => Some(None),
            (None, false) => None,
        };
        let changes = AccessChanges {
            members_create_groups: self.members_create_groups,
            max_group_users: self.max_group_users,
            guests_may_be_added: self.guests_may_be_added,
            username_pattern,
            require_two_factor: self.require_two_factor,
        };
        if changes.members_create_groups.is_none()
            && changes.max_group_users.is_none()
            && changes.guests_may_be_added.is_none()
            && changes.username_pattern.is_none()
            && changes.require_two_factor.is_none()
        {
            anyhow::bail!(
                "nothing to change: pass --members-create-groups, --max-group-users, \
                 --guests-may-be-added, --username-pattern, --no-username-pattern or --require-2fa \
                 (`rampart admin access show` shows the current policy)"
            );
        }
        Ok(changes)
    }
}

impl AccessChanges {
    fn apply(&self, policy: &mut AccessPolicy) {
        if let Some(v) = self.members_create_groups {
            policy.members_may_create_groups = v;
        }
        if let Some(v) = self.max_group_users {
            policy.max_group_users = v;
        }
        if let Some(v) = self.guests_may_be_added {
            policy.guests_may_be_added = v;
        }
        if let Some(v) = &self.username_pattern {
            policy.username_pattern.clone_from(v);
        }
        if let Some(v) = self.require_two_factor {
            policy.require_two_factor = v;
        }
    }
}

fn print_access(policy: &AccessPolicy) -> anyhow::Result<()> {
    let mut table = Table::headless();
    table.row(vec![
        "members may create groups".into(),
        yes_no(policy.members_may_create_groups).into(),
    ]);
    table.row(vec![
        "max group users".into(),
        policy.max_group_users.to_string(),
    ]);
    table.row(vec![
        "guests may be added".into(),
        yes_no(policy.guests_may_be_added).into(),
    ]);
    table.row(vec![
        "username pattern".into(),
        policy
            .username_pattern
            .clone()
            .unwrap_or_else(|| "(any valid username)".into()),
    ]);
    table.row(vec![
        "require 2fa".into(),
        two_factor_name(policy.require_two_factor).into(),
    ]);
    table.print()
}

pub async fn sessions(command: SessionsCommand, profile: &Path, json: bool) -> anyhow::Result<()> {
    match command {
        SessionsCommand::List { user, via } => {
            let user = user.as_deref().map(parse_user).transpose()?;
            let list =
                with_backend(&via, profile, async |b| b.sessions(user.as_ref()).await).await?;
            if json {
                return print_json(&list);
            }
            if list.sessions.is_empty() {
                println!("no live sessions");
                return Ok(());
            }
            let mut table = Table::new(&[
                "SESSION",
                "USER",
                "DEVICE",
                "CREATED (UTC)",
                "LAST USED (UTC)",
            ]);
            for s in &list.sessions {
                table.row(vec![
                    s.session_id.clone(),
                    format!("@{}", s.username),
                    s.device_id.to_string(),
                    time(s.created_at),
                    time(s.last_used),
                ]);
            }
            table.print()
        }
        SessionsCommand::Revoke { id, via } => {
            let id = id.trim().to_owned();
            with_backend(&via, profile, async |b| b.revoke_session(&id).await)
                .await
                .with_context(|| format!("revoking session {id}"))?;
            if json {
                return print_json(&json!({ "revoked": id }));
            }
            println!("session {id} revoked; its device must log in again");
            Ok(())
        }
    }
}

fn print_users(users: &[UserSummary]) -> anyhow::Result<()> {
    if users.is_empty() {
        println!("no accounts yet");
        return Ok(());
    }
    let mut table = Table::new(&[
        "USER",
        "ROLE",
        "STATUS",
        "2FA",
        "DEVICES",
        "CREATED (UTC)",
        "LAST SEEN (UTC)",
    ]);
    for u in users {
        table.row(vec![
            format!("@{}", u.username),
            u.role.as_str().into(),
            match u.status {
                AccountStatus::Active => "active",
                AccountStatus::Disabled => "disabled",
            }
            .into(),
            yes_no(u.two_factor).into(),
            u.devices.to_string(),
            time(u.created_at),
            u.last_seen.map_or_else(|| "never".into(), time),
        ]);
    }
    table.print()
}

/// Text in aligned columns: two spaces between them, the last one ragged.
struct Table {
    head: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[&str]) -> Self {
        Self {
            head: Some(head.iter().map(|h| (*h).to_owned()).collect()),
            rows: vec![],
        }
    }

    fn headless() -> Self {
        Self {
            head: None,
            rows: vec![],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let all: Vec<&Vec<String>> = self.head.iter().chain(self.rows.iter()).collect();
        let columns = all.iter().map(|r| r.len()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                all.iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = String::new();
        for row in all {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c].saturating_sub(cell.chars().count());
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }

    fn print(&self) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(self.render().as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["USER", "ROLE", "NOTE"]);
        t.row(vec!["@alice".into(), "owner".into(), "x".into()]);
        t.row(vec!["@bo".into(), "guest".into(), "".into()]);
        assert_eq!(
            t.render(),
            "USER    ROLE   NOTE\n@alice  owner  x\n@bo     guest\n"
        );
    }

    #[test]
    fn roles_durations_and_requirements_parse() {
        assert_eq!(parse_role("Guest"), Ok(Role::Guest));
        assert!(parse_role("root").unwrap_err().contains("owner, admin"));
        assert_eq!(parse_invite_expiry("7d"), Ok(7 * 24 * 3600));
        assert_eq!(parse_invite_expiry("30m"), Ok(1800));
        assert!(parse_invite_expiry("31d").is_err());
        assert!(parse_invite_expiry("10s").is_err());
        assert!(parse_invite_expiry("soon").is_err());
        assert_eq!(parse_two_factor("admins"), Ok(TwoFactorRequirement::Admins));
        assert!(parse_two_factor("some").is_err());
    }
}
