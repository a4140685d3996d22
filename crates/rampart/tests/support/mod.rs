//! Shared set-up: a real server on 127.0.0.1 with a real SQLite data directory,
//! and real clients with encrypted profiles. Nothing is mocked.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod pages;

use rampart_client::{Client, Registration, Target};
use rampart_server::config::FilesConfig;
use rampart_server::{Clock, MessagesConfig, Purger, Server, ServerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const PASSPHRASE: &str = "test profile passphrase";
pub const PASSWORD: &str = "correct horse battery";

/// Any free port on 127.0.0.1.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// Deletes expired messages now, by the server's clock.
    pub purger: Purger,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on `data`, on `addr` (port 0 for any).
    pub async fn start(data: &Path, addr: SocketAddr) -> Self {
        Self::start_with(data, addr, Clock::system(), MessagesConfig::default()).await
    }

    /// [`TestServer::start`] with a clock (manual in tests of time) and message rules.
    pub async fn start_with(
        data: &Path,
        addr: SocketAddr,
        clock: Clock,
        messages: MessagesConfig,
    ) -> Self {
        Self::start_full(data, addr, clock, messages, FilesConfig::default()).await
    }

    /// [`TestServer::start_with`] with file-sharing limits too.
    pub async fn start_full(
        data: &Path,
        addr: SocketAddr,
        clock: Clock,
        messages: MessagesConfig,
        files: FilesConfig,
    ) -> Self {
        let config = ServerConfig {
            data_dir: data.to_path_buf(),
            listen: addr,
            registration: rampart_server::Registration::Open,
            messages,
            files,
            ..ServerConfig::default()
        };
        let server = Server::open_with_clock(config, clock)
            .await
            .expect("server opens");
        let purger = server.purger();
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            data: data.to_path_buf(),
            purger,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop; waits until the server has shut down.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(20), t).await;
        }
    }
}

pub async fn register(server: &TestServer, root: &Path, name: &str) -> Client {
    Client::register(
        &root.join(name),
        PASSPHRASE,
        Registration {
            server: &server.url(),
            username: name,
            password: PASSWORD,
            invite: None,
            device_name: "test",
        },
    )
    .await
    .unwrap_or_else(|e| panic!("register {name}: {e}"))
}

/// `admin` creates the group `name` with `members`, who then sync, so each
/// has joined it from its Welcome.
pub async fn form_group(admin: &mut Client, name: &str, members: &mut [&mut Client]) {
    let names: Vec<_> = members.iter().map(|m| m.username().clone()).collect();
    admin
        .create_group(name, &names, None)
        .await
        .unwrap_or_else(|e| panic!("create group {name}: {e}"));
    for member in members {
        member.sync().await.expect("sync");
    }
}

/// An open server in `tmp`, and on it alice (its first account, so its
/// owner), bob and carol in a group `name` that alice created.
pub async fn three_in_a_group(tmp: &Path, name: &str) -> (TestServer, Client, Client, Client) {
    let server = TestServer::start(&tmp.join("server"), loopback()).await;
    let mut alice = register(&server, tmp, "alice").await;
    let mut bob = register(&server, tmp, "bob").await;
    let mut carol = register(&server, tmp, "carol").await;
    form_group(&mut alice, name, &mut [&mut bob, &mut carol]).await;
    (server, alice, bob, carol)
}

pub fn user(name: &str) -> Target {
    Target::parse(&format!("@{name}")).expect("user target")
}

pub fn group(name: &str) -> Target {
    Target::parse(&format!("#{name}")).expect("group target")
}

/// Syncs and returns the texts received, as "sender: text".
pub async fn received(client: &mut Client) -> Vec<String> {
    client.sync().await.expect("sync");
    client
        .inbox(false)
        .expect("inbox")
        .into_iter()
        .filter(|e| !e.outgoing)
        .map(|e| format!("{}: {}", e.sender, e.text))
        .collect()
}

/// Every file below `dir`, read whole.
pub fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Usernames of a group's member devices, in leaf order.
pub fn member_names(client: &Client, group: &str) -> Vec<String> {
    client
        .group_members(group)
        .expect("group members")
        .into_iter()
        .map(|(u, _)| u.to_string())
        .collect()
}
