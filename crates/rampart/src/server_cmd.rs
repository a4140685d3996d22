//! `rampart server` and `rampart admin`.

use crate::admin_cmd;
use crate::cli::time;
use anyhow::Context as _;
use rampart_server::{Registration, Server, ServerConfig};
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How `rampart server` writes its log to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Human,
    /// One JSON object per line (`timestamp`, `level`, `fields` with the
    /// `message`, `target`, `span`, `spans`), for log collectors.
    Json,
}

/// Flags of `rampart server`; each overrides the config file, and each can come
/// from a `RAMPART_*` environment variable.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Data directory (SQLite database and server state).
    #[arg(long, env = "RAMPART_DATA")]
    data: Option<PathBuf>,
    /// Address to listen on. Plain HTTP is allowed on loopback only.
    #[arg(long, env = "RAMPART_LISTEN")]
    listen: Option<SocketAddr>,
    /// Who may create accounts: `invite` (default) or `open`.
    #[arg(long, env = "RAMPART_REGISTRATION")]
    registration: Option<Registration>,
    /// TOML file with the same settings (data_dir, listen, registration, tls_cert, tls_key, behind_tls_proxy).
    #[arg(long, env = "RAMPART_CONFIG")]
    config: Option<PathBuf>,
    /// PEM certificate chain for HTTPS.
    #[arg(long, env = "RAMPART_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, env = "RAMPART_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address because a TLS-terminating proxy is in front.
    #[arg(long, env = "RAMPART_BEHIND_TLS_PROXY")]
    behind_tls_proxy: bool,
    /// Also serve GET /metrics (plain HTTP, nothing else) on this address.
    /// A non-loopback address needs `token` in the config file's [metrics]
    /// section.
    #[arg(long, env = "RAMPART_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Log format on stderr: `human` or `json` (one object per line). With
    /// `json`, the start-up notice and a first start's owner invite go to
    /// stdout instead, so that stderr holds only JSON.
    #[arg(long, env = "RAMPART_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`) or filter
    /// directives such as `info,rampart_server=debug`.
    #[arg(long, env = "RAMPART_LOG", default_value = "info")]
    log_level: String,
}

impl ServerArgs {
    fn config(self) -> anyhow::Result<ServerConfig> {
        let mut config = match &self.config {
            Some(path) => ServerConfig::from_toml_file(path)?,
            None => ServerConfig::default(),
        };
        if let Some(v) = self.data {
            config.data_dir = v;
        }
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.registration {
            config.registration = v;
        }
        if let Some(v) = self.tls_cert {
            config.tls_cert = Some(v);
        }
        if let Some(v) = self.tls_key {
            config.tls_key = Some(v);
        }
        config.behind_tls_proxy |= self.behind_tls_proxy;
        if let Some(v) = self.metrics_listen {
            config.metrics.listen = Some(v);
        }
        config.validate()?;
        Ok(config)
    }
}

/// Installs the server's log subscriber: `format` on stderr, filtered by
/// `level` (an `EnvFilter` directive). Client commands install none.
fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).with_context(|| {
        format!("--log-level {level:?} is not a level or filter directive (try info or debug)")
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

pub async fn serve(mut args: ServerArgs) -> anyhow::Result<()> {
    let format = args.log_format;
    init_logging(format, &std::mem::take(&mut args.log_level))?;
    let json_logs = format == LogFormat::Json;
    let config = args.config()?;
    let listen = config.listen;
    let scheme = if config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let data_dir = config.data_dir.clone();
    let server = Server::open(config).await.context("starting the server")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let url = format!("{scheme}://{local}");
    let metrics = server.metrics_addr().map(|m| format!("http://{m}/metrics"));
    // For the person who started the server: on stderr beside a human
    // log; on stdout beside a JSON one, so that stderr stays one JSON
    // object per line and the invite never reaches a log collector.
    let mut notice: Box<dyn std::io::Write> = if json_logs {
        tracing::info!(%url, data = %data_dir.display(), "rampart server listening");
        if let Some(metrics) = &metrics {
            tracing::info!(url = %metrics, "serving metrics");
        }
        Box::new(std::io::stdout())
    } else {
        eprintln!(
            "rampart server listening on {url} (data in {})",
            data_dir.display()
        );
        if let Some(metrics) = &metrics {
            eprintln!("metrics on {metrics}");
        }
        Box::new(std::io::stderr())
    };
    if let Some(invite) = server.first_invite() {
        if json_logs {
            tracing::info!("first start: the owner's invite is printed on standard output");
        }
        let text = format!(
            "\nFirst start: this single-use invite creates the organisation owner's account:\n\n    \
             rampart register --server {url} --username YOU --invite {invite}\n\n"
        );
        // Not fatal: `rampart admin invite` makes another.
        if let Err(e) = notice
            .write_all(text.as_bytes())
            .and_then(|()| notice.flush())
        {
            tracing::warn!(error = %e, "could not print the first start's invite");
        }
    }
    drop(notice);
    server.serve(listener, shutdown_signal()).await?;
    if json_logs {
        tracing::info!("rampart server stopped");
    } else {
        eprintln!("rampart server stopped");
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Accounts: list, invite, disable, enable, delete, role.
    #[command(subcommand)]
    Users(admin_cmd::UsersCommand),
    /// Reset a user's two-factor authentication and end their sessions
    /// (recorded in their security events); they log in with the password
    /// and enrol again.
    #[command(name = "2fa-reset", after_help = admin_cmd::WHERE)]
    TwoFactorReset(admin_cmd::TwoFactorReset),
    /// Conversations as the server sees them: sizes and admins, never names
    /// or content.
    #[command(subcommand)]
    Groups(admin_cmd::GroupsCommand),
    /// The organisation's access policy: who may create groups, group size,
    /// guests, allowed usernames, required 2FA.
    #[command(subcommand)]
    Access(admin_cmd::AccessCommand),
    /// Live sessions: list, revoke.
    #[command(subcommand)]
    Sessions(admin_cmd::SessionsCommand),
    /// The tamper-evident audit log: list, export, verify, key, checkpoint.
    #[command(subcommand)]
    Audit(crate::audit_cmd::AuditCommand),
    /// Print a new single-use member invite code from the data directory
    /// (works while the server runs or is stopped; `users invite` chooses
    /// the role and expiry).
    Invite {
        /// The server's data directory.
        #[arg(long, env = "RAMPART_DATA", default_value = "./rampart-data")]
        data: PathBuf,
    },
    /// The organisation's data-loss prevention (DLP) policy.
    ///
    /// Every official client fetches it and applies it to messages and
    /// files before encrypting them; the server only stores and hands it out.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// List the DLP events clients reported, newest first.
    ///
    /// Each shows when it arrived, who and which device reported it, the
    /// conversation, which rule fired and what the client did (block, warn,
    /// redact or audit). Never the content: clients do not send it.
    DlpEvents {
        /// The server's data directory.
        #[arg(long, env = "RAMPART_DATA", default_value = "./rampart-data")]
        data: PathBuf,
        /// How many events to list.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// `rampart admin policy …`.
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Check a policy file and make it the organisation's policy
    ///
    /// FILE is TOML (or JSON if it starts with `{`); an invalid file is
    /// refused with the line at fault and nothing changes. Works while the
    /// server runs or is stopped: a running server tells every connected
    /// client within a second, and clients fetch it at start otherwise.
    ///
    /// Example:
    ///
    ///     version = 1
    ///     [detectors.card]
    ///     action = "block"          # block | warn | redact | audit | off
    ///     [[custom]]
    ///     id = "project-falcon"
    ///     keywords = ["project falcon"]
    ///     action = "warn"
    #[command(verbatim_doc_comment)]
    Set {
        /// The policy file.
        file: PathBuf,
        /// The server's data directory.
        #[arg(long, env = "RAMPART_DATA", default_value = "./rampart-data")]
        data: PathBuf,
    },
    /// Show the stored policy: its revision, when it was set, the document
    ///
    /// The document is shown as clients receive it (the canonical JSON of
    /// the file given to `set`); `--json` embeds it as an object.
    Show {
        /// The server's data directory.
        #[arg(long, env = "RAMPART_DATA", default_value = "./rampart-data")]
        data: PathBuf,
    },
    /// Print the blocklist entry of a URL, for `blocked_url_hashes`
    ///
    /// The URL is canonicalised as Safe Browsing does and hashed with
    /// SHA-256; clients match the prefix against every link they receive
    /// or send, on the device. A site's whole path below the URL matches.
    HashUrl {
        /// The URL to block, e.g. https://evil.example/login
        url: String,
        /// Bytes of the hash to keep (4 to 32; longer means fewer chance matches).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(4..=32))]
        bytes: u8,
    },
}

/// Admin commands open the database directly; refuse to create a fresh
/// one when the directory is wrong.
fn existing_data_dir(data: &Path) -> anyhow::Result<()> {
    if !data.exists() {
        anyhow::bail!(
            "{} does not exist; pass the server's --data directory",
            data.display()
        );
    }
    Ok(())
}

pub async fn admin(command: AdminCommand, profile: &Path, json: bool) -> anyhow::Result<()> {
    match command {
        AdminCommand::Users(c) => admin_cmd::users(c, profile, json).await,
        AdminCommand::TwoFactorReset(c) => admin_cmd::two_factor_reset(c, profile, json).await,
        AdminCommand::Groups(c) => admin_cmd::groups(c, profile, json).await,
        AdminCommand::Access(c) => admin_cmd::access(c, profile, json).await,
        AdminCommand::Sessions(c) => admin_cmd::sessions(c, profile, json).await,
        AdminCommand::Audit(c) => crate::audit_cmd::audit(c, profile, json).await,
        AdminCommand::Invite { data } => {
            existing_data_dir(&data)?;
            let code = rampart_server::create_invite(&data).await?;
            if json {
                println!("{}", serde_json::json!({ "invite": code }));
            } else {
                println!("{code}");
            }
            Ok(())
        }
        AdminCommand::Policy(PolicyCommand::Set { file, data }) => {
            policy_set(&file, &data, json).await
        }
        AdminCommand::Policy(PolicyCommand::Show { data }) => policy_show(&data, json).await,
        AdminCommand::Policy(PolicyCommand::HashUrl { url, bytes }) => {
            let hash = rampart_policy::link::url_hash_prefix(&url, usize::from(bytes))
                .ok_or_else(|| anyhow::anyhow!("{url:?} is not an http(s) URL this can hash"))?;
            if json {
                println!("{}", serde_json::json!({ "url": url, "hash": hash }));
            } else {
                println!("{hash}");
            }
            Ok(())
        }
        AdminCommand::DlpEvents { data, limit } => dlp_events(&data, limit, json).await,
    }
}

async fn policy_set(file: &Path, data: &Path, json: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    // Validated here, not by the server, which stores the document without
    // knowing the detectors. The error names the line.
    let policy = rampart_policy::Policy::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    existing_data_dir(data)?;
    let revision = rampart_server::set_dlp_policy(data, &policy.to_json()).await?;
    if json {
        println!("{}", serde_json::json!({ "revision": revision }));
    } else {
        println!(
            "policy revision {revision} stored; a running server tells connected clients within a second"
        );
    }
    Ok(())
}

async fn policy_show(data: &Path, json: bool) -> anyhow::Result<()> {
    existing_data_dir(data)?;
    let policy = rampart_server::dlp_policy(data).await?;
    // The stored document is JSON; shown as such rather than as a string.
    let document = policy.document.as_deref().map(|d| {
        serde_json::from_str::<serde_json::Value>(d)
            .unwrap_or_else(|_| serde_json::Value::String(d.to_owned()))
    });
    if json {
        println!(
            "{}",
            serde_json::json!({
                "revision": policy.revision,
                "updated_at": policy.updated_at,
                "document": document,
            })
        );
        return Ok(());
    }
    match (document, policy.updated_at) {
        (Some(document), Some(at)) => {
            println!("revision {}, set {} UTC", policy.revision, time(at));
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        _ => println!("no policy has been set; clients apply their built-in defaults"),
    }
    Ok(())
}

async fn dlp_events(data: &Path, limit: u32, json: bool) -> anyhow::Result<()> {
    existing_data_dir(data)?;
    let events = rampart_server::dlp_events(data, limit).await?;
    if json {
        println!("{}", serde_json::to_string(&events)?);
    } else if events.is_empty() {
        println!("no DLP events reported");
    } else {
        for e in events {
            // Ids print with `write_str`, which ignores widths: pad strings.
            let user = format!("@{}", e.username);
            println!(
                "{}  {user:<17} device {}  group {}  {:<28} {}",
                time(e.received_at),
                e.device_id,
                e.group_id.short(),
                e.rule,
                e.action
            );
        }
    }
    Ok(())
}
