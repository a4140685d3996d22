//! The real `rampart` binary and `rampart server` processes, shared by the
//! tests that drive the command line.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rampart");

/// How long a first start may take to print its owner invite.
pub const INVITE_WAIT: Duration = Duration::from_secs(60);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process that is killed (SIGKILL) and reaped when dropped, so a
/// failing test never leaves one behind.
pub struct ServerProcess {
    child: Child,
    /// Owner invites the server printed (only a first start prints one).
    invites: Receiver<String>,
}

impl ServerProcess {
    /// Starts `rampart server --data DATA --listen 127.0.0.1:PORT EXTRA…`
    /// and returns once it accepts connections.
    pub fn start(data: &Path, port: u16, extra: &[&str]) -> Self {
        Self::launch(data, port, extra, None)
    }

    /// [`ServerProcess::start`] with its stderr (the log) written to the
    /// file `log`, and the owner invite read from stdout, where the server
    /// prints it with `--log-format json`.
    pub fn start_logging_to(data: &Path, port: u16, extra: &[&str], log: &Path) -> Self {
        Self::launch(data, port, extra, Some(log))
    }

    fn launch(data: &Path, port: u16, extra: &[&str], log: Option<&Path>) -> Self {
        let mut command = Command::new(BIN);
        command
            .args([
                "server",
                "--data",
                data.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(extra)
            .env_remove("RAMPART_DATA");
        match log {
            None => command.stderr(Stdio::piped()).stdout(Stdio::null()),
            Some(log) => command
                .stderr(std::fs::File::create(log).unwrap())
                .stdout(Stdio::piped()),
        };
        let mut child = command.spawn().unwrap();
        // Where the owner invite is printed.
        let notices: Box<dyn Read + Send> = match log {
            None => Box::new(child.stderr.take().unwrap()),
            Some(_) => Box::new(child.stdout.take().unwrap()),
        };
        let (tx, invites) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(notices).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("--invite ").nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let server = Self { child, invites };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not start");
    }

    /// A process started some other way (its output is not read).
    pub fn adopt(child: Child) -> Self {
        Self {
            child,
            invites: channel().1,
        }
    }

    /// The owner invite this start printed, waiting up to `wait` for it.
    pub fn invite(&self, wait: Duration) -> Option<String> {
        self.invites.recv_timeout(wait).ok()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the graceful stop (which releases the data
    /// directory).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not stop on SIGTERM");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server on a new data directory, with the owner invite its first start
/// prints.
pub fn start_fresh_server(data: &Path, port: u16, extra: &[&str]) -> (ServerProcess, String) {
    let server = ServerProcess::start(data, port, extra);
    let invite = server
        .invite(INVITE_WAIT)
        .expect("the first start prints an owner invite");
    (server, invite)
}

/// Stdout of a command that must succeed.
pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "command failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Stderr of a command that must fail.
pub fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "command succeeded but should have failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.trim().is_empty(), "a failure says why on stderr");
    stderr
}

/// Stdout of a command that must succeed, as JSON.
pub fn json_of(out: Output) -> serde_json::Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Milliseconds since the Unix epoch, by the system clock the binary uses.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `rampart --profile PROFILE ARGS…` with `password` (for the commands
/// that sign in) and the profile's `passphrase` in the environment, no
/// terminal, and no data directory or profile taken from the test's own
/// environment.
pub fn rampart_as(profile: &Path, passphrase: &str, password: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env("RAMPART_PASSWORD", password)
        .env("RAMPART_PASSPHRASE", passphrase)
        .env_remove("RAMPART_DATA")
        .env_remove("RAMPART_PROFILE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The arguments of `rampart register`: `name` on the server at `url`,
/// with `invite`.
pub fn register_args<'a>(url: &'a str, name: &'a str, invite: &'a str) -> [&'a str; 7] {
    [
        "register",
        "--server",
        url,
        "--username",
        name,
        "--invite",
        invite,
    ]
}

/// A new invite made on the data directory (`rampart admin invite --data`),
/// which works while the server runs.
pub fn data_invite(data: &Path) -> String {
    let out = Command::new(BIN)
        .args(["admin", "invite", "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    ok(out).trim().to_owned()
}

/// What `rampart 2fa enable` showed, and what was typed into it.
pub struct TwoFactor {
    /// The TOTP secret as shown (base32).
    pub shown: String,
    /// The same secret, decoded.
    pub secret: Vec<u8>,
    /// The code typed to confirm, and the Unix time it was computed for.
    pub code: String,
    pub at: u64,
    pub recovery_codes: Vec<String>,
}

/// Turns on 2FA for PROFILE through `rampart --json 2fa enable`, typing
/// the current code computed from the secret it shows.
pub fn enable_two_factor(profile: &Path, passphrase: &str, password: &str) -> TwoFactor {
    let mut enable = Command::new(BIN)
        .arg("--profile")
        .arg(profile)
        .args(["--json", "2fa", "enable"])
        .env("RAMPART_PASSWORD", password)
        .env("RAMPART_PASSPHRASE", passphrase)
        .env_remove("RAMPART_DATA")
        .env_remove("RAMPART_PROFILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(enable.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let setup: serde_json::Value = serde_json::from_str(&line).unwrap();
    let shown = setup["secret"].as_str().unwrap().to_owned();
    let secret = rampart_server::totp::base32_decode(&shown).unwrap();
    let at = now_ms() / 1000;
    let code = rampart_server::totp::code(&secret, at);
    writeln!(enable.stdin.take().unwrap(), "{code}").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(enable.wait().unwrap().success(), "{rest}");
    let enabled: serde_json::Value = serde_json::from_str(rest.trim()).unwrap();
    let recovery_codes = enabled["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    TwoFactor {
        shown,
        secret,
        code,
        at,
        recovery_codes,
    }
}
