//! `rampart server` and `rampart admin`.

use anyhow::Context as _;
use rampart_server::{Registration, Server, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

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
        config.validate()?;
        Ok(config)
    }
}

pub async fn serve(args: ServerArgs) -> anyhow::Result<()> {
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
    eprintln!(
        "rampart server listening on {scheme}://{local} (data in {})",
        data_dir.display()
    );
    if let Some(invite) = server.first_invite() {
        eprintln!();
        eprintln!("First start: this single-use invite creates the organisation owner's account:");
        eprintln!();
        eprintln!(
            "    rampart register --server {scheme}://{local} --username YOU --invite {invite}"
        );
        eprintln!();
    }
    server.serve(listener, shutdown_signal()).await?;
    eprintln!("rampart server stopped");
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
    /// Print a new single-use invite code (works while the server runs or is stopped).
    Invite {
        /// The server's data directory.
        #[arg(long, env = "RAMPART_DATA", default_value = "./rampart-data")]
        data: PathBuf,
    },
}

pub async fn admin(command: AdminCommand, json: bool) -> anyhow::Result<()> {
    match command {
        AdminCommand::Invite { data } => {
            if !data.exists() {
                anyhow::bail!(
                    "{} does not exist; pass the server's --data directory",
                    data.display()
                );
            }
            let code = rampart_server::create_invite(&data).await?;
            if json {
                println!("{}", serde_json::json!({ "invite": code }));
            } else {
                println!("{code}");
            }
            Ok(())
        }
    }
}
