//! `rampart bench files`: encrypted file transfer against a plain copy of the
//! same file through the same server, and the peak memory of both sides.
//!
//! The server runs as a child process (`rampart server`) on loopback, so its
//! peak resident memory is its own. Two users share a 1:1 conversation. The
//! plain copy uploads the file's bytes as a blob and downloads them again
//! through the same routes, with no encryption; the encrypted transfer is
//! `send-file` and `download` as users run them: seal, hash, upload, send the
//! message; fetch, verify every chunk and the hash, write the file.

use anyhow::{Context as _, Result, bail, ensure};
use rampart_client::{Client, Registration, Silent, Target};
use rampart_proto::api::{BlobStatus, NewBlob};
use rampart_proto::limits::BLOB_PART_BYTES;
use rampart_proto::{GroupId, Username};
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct FilesArgs {
    /// File size in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// Where the file, the server's data and the downloads go (default: a
    /// temporary directory; it needs about five times the file size free).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize, Debug)]
struct Report {
    file_bytes: u64,
    plain_upload_s: f64,
    plain_download_s: f64,
    encrypted_upload_s: f64,
    encrypted_download_s: f64,
    plain_mib_per_s: f64,
    encrypted_mib_per_s: f64,
    /// Plain time over encrypted time, upload and download together (aim ≥ 0.5).
    ratio: f64,
    /// Peak resident memory of the benchmark (client) process during the
    /// encrypted transfer, MiB.
    client_peak_mib: f64,
    /// Peak resident memory of the server process over its whole life, MiB.
    server_peak_mib: f64,
}

pub async fn files(args: FilesArgs) -> Result<()> {
    ensure!(args.size_mib >= 1, "--size-mib must be at least 1");
    let size = args.size_mib * 1024 * 1024;
    let tmp = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("creating a working directory")?;
    let dir = tmp.path();
    let mut server = ChildServer::start(dir, size)?;
    let result = run(dir, &server.url, size).await;
    let server_peak = peak_mib(server.pid());
    server.stop();
    let mut report = result?;
    report.server_peak_mib = server_peak.unwrap_or(f64::NAN);
    print(&report, args.json)
}

async fn run(dir: &Path, url: &str, size: u64) -> Result<Report> {
    eprintln!("writing a {} MiB test file...", size >> 20);
    let source = dir.join("source.bin");
    write_test_file(&source, size)?;

    eprintln!("registering two users (Argon2)...");
    let register = |name: &'static str| {
        let profile = dir.join(name);
        let url = url.to_owned();
        async move {
            let reg = Registration {
                server: &url,
                username: name,
                password: "bench-password-123",
                invite: None,
                device_name: "bench",
            };
            Client::register(&profile, "bench passphrase", reg)
                .await
                .with_context(|| format!("registering {name}"))
        }
    };
    let mut alice = register("bench-alice").await?;
    let mut bob = register("bench-bob").await?;
    let bob_target = Target::User(Username::parse("bench-bob")?);
    alice.send_text(&bob_target, "hello").await?;
    bob.sync().await?;
    let group = GroupId::direct(alice.username(), bob.username());

    eprintln!("plain copy: upload...");
    let start = Instant::now();
    let blob = plain_upload(&alice, group, &source, size).await?;
    let plain_upload_s = start.elapsed().as_secs_f64();
    eprintln!("plain copy: download...");
    let plain_copy = dir.join("plain-copy.bin");
    let start = Instant::now();
    plain_download(&alice, &blob, &plain_copy).await?;
    let plain_download_s = start.elapsed().as_secs_f64();
    ensure!(same_bytes(&source, &plain_copy)?, "the plain copy differs");
    std::fs::remove_file(&plain_copy).ok();

    reset_peak();
    eprintln!("encrypted: send-file...");
    let start = Instant::now();
    let sent = alice
        .send_file(&bob_target, &source, "", None, &mut Silent)
        .await?;
    let encrypted_upload_s = start.elapsed().as_secs_f64();
    bob.sync().await?;
    eprintln!("encrypted: download...");
    let out = dir.join("downloads");
    std::fs::create_dir_all(&out)?;
    let start = Instant::now();
    let got = bob
        .download(&sent.id.to_string(), Some(&out), &mut Silent)
        .await?;
    let encrypted_download_s = start.elapsed().as_secs_f64();
    let client_peak_mib = peak_mib(std::process::id()).unwrap_or(f64::NAN);
    ensure!(
        same_bytes(&source, &got.path)?,
        "the decrypted copy differs"
    );
    alice.close().await;
    bob.close().await;

    let mib = size as f64 / (1024.0 * 1024.0);
    let plain = plain_upload_s + plain_download_s;
    let encrypted = encrypted_upload_s + encrypted_download_s;
    Ok(Report {
        file_bytes: size,
        plain_upload_s,
        plain_download_s,
        encrypted_upload_s,
        encrypted_download_s,
        plain_mib_per_s: 2.0 * mib / plain,
        encrypted_mib_per_s: 2.0 * mib / encrypted,
        ratio: plain / encrypted,
        client_peak_mib,
        server_peak_mib: f64::NAN,
    })
}

/// Uploads the file's bytes as they are, part by part.
async fn plain_upload(
    client: &Client,
    group: GroupId,
    path: &Path,
    size: u64,
) -> Result<rampart_proto::BlobId> {
    let status: BlobStatus = client
        .http()
        .post("/v1/blobs", &NewBlob { group, size })
        .await?;
    let mut file = std::fs::File::open(path)?;
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(BLOB_PART_BYTES as u64) as usize;
        let mut part = vec![0u8; len];
        file.read_exact(&mut part)?;
        client
            .http()
            .put_blob_part(&status.id, offset, part)
            .await?;
        offset += len as u64;
    }
    Ok(status.id)
}

/// Downloads a blob into a file as it streams in (the owner may read it
/// before it is sent).
async fn plain_download(client: &Client, blob: &rampart_proto::BlobId, to: &Path) -> Result<()> {
    let mut resp = client.http().get_blob(blob, 0).await?;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(to)?);
    while let Some(chunk) = resp.chunk().await? {
        file.write_all(&chunk)?;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// Incompressible bytes (xorshift), written 8 MiB at a time.
fn write_test_file(path: &Path, size: u64) -> Result<()> {
    let mut file = std::fs::File::create(path)?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; BLOB_PART_BYTES];
    let mut left = size;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(())
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Peak resident memory (VmHWM) of a process, in MiB (Linux).
fn peak_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Starts this process's peak-memory mark afresh (Linux), so setup and the
/// plain copy do not count towards the encrypted transfer's peak.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn print(r: &Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let mib = r.file_bytes >> 20;
    println!("file transfer over loopback, {mib} MiB file");
    println!("{:<24} {:>10} {:>10}", "", "upload s", "download s");
    println!(
        "{:<24} {:>10.2} {:>10.2}   {:>8.0} MiB/s",
        "plain copy", r.plain_upload_s, r.plain_download_s, r.plain_mib_per_s
    );
    println!(
        "{:<24} {:>10.2} {:>10.2}   {:>8.0} MiB/s",
        "encrypted (send-file)",
        r.encrypted_upload_s,
        r.encrypted_download_s,
        r.encrypted_mib_per_s
    );
    println!("ratio encrypted/plain: {:.2} (aim ≥ 0.50)", r.ratio);
    println!(
        "peak memory: client {:.0} MiB, server {:.0} MiB",
        r.client_peak_mib, r.server_peak_mib
    );
    Ok(())
}

/// `rampart server` in a child process on a free loopback port.
struct ChildServer {
    child: Child,
    url: String,
}

impl ChildServer {
    fn start(dir: &Path, file_size: u64) -> Result<Self> {
        let data = dir.join("server");
        let config = dir.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\nregistration = \"open\"\n\n[files]\n\
                 max_file_bytes = {}\nquota_bytes = {}\n",
                data.display().to_string(),
                file_size * 2 + (64 << 20),
                file_size * 8 + (256 << 20),
            ),
        )?;
        let exe = std::env::current_exe().context("finding the rampart executable")?;
        let mut child = std::process::Command::new(exe)
            .arg("server")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting `rampart server`")?;
        let stderr = child.stderr.take().context("server stderr")?;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let url = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                bail!("the server exited before it listened");
            };
            let line = line?;
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child, url })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.stop();
    }
}
