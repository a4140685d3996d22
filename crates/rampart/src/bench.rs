//! `rampart bench relay`: a load generator over real WebSockets against a real
//! in-process server (one core), measuring the budgets of DESIGN.md:
//! online relay throughput and latency, durable offline store, backlog drain.
//!
//! Each sender replays one real MLS application message (made by
//! `Client::prepare_text`) with fresh idempotency keys, so the server does all
//! its per-message work; receivers only count and acknowledge, they do not
//! decrypt: this measures the relay, not MLS.

use anyhow::{Context as _, Result, bail, ensure};
use rampart_client::{Client, Http, Registration, Socket, Target};
use rampart_proto::frame::{ClientFrame, DeliveryKind, SendMessage, ServerFrame};
use rampart_proto::{GroupId, IdempotencyKey, Username};
use rampart_server::{Server, ServerConfig};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::{Instant, timeout, timeout_at};

/// Every phase (and every other wait) ends by then at the latest.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Receivers acknowledge at least this often so queues are cleaned.
const ACK_EVERY: u32 = 64;
/// Sends awaiting `Accepted` per sender in the durable store phase.
const STORE_WINDOW: u64 = 64;
/// Live pushes a server connection buffers before it drops a slow reader.
const MAX_WINDOW: usize = 1024;

#[derive(clap::Args, Debug)]
pub struct RelayArgs {
    /// Devices: half senders, half receivers, in 1:1 pairs (even, at least 2).
    #[arg(long, default_value_t = 20)]
    pub devices: usize,
    /// Messages per phase, across all pairs.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Plaintext bytes per message (the MLS ciphertext is a little larger).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Messages in flight per pair (sent, not yet received), one online phase each.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub windows: Vec<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One line of the report.
#[derive(serde::Serialize, Debug)]
struct Phase {
    name: &'static str,
    window: Option<usize>,
    messages: u64,
    seconds: f64,
    rate_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    accepted: Option<u64>,
}

/// A sender/receiver pair sharing a 1:1 group, with the raw sockets.
struct Pair {
    index: u64,
    sender: Socket,
    receiver: Option<Socket>,
    receiver_http: Http,
    group: GroupId,
    message: Vec<u8>,
    sent_total: u64,
}

impl Pair {
    /// A Send frame of the replayed message with a fresh key and request id.
    fn next_send(&mut self) -> ClientFrame {
        self.sent_total += 1;
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&self.index.to_be_bytes());
        key[8..].copy_from_slice(&self.sent_total.to_be_bytes());
        ClientFrame::Send(SendMessage {
            request_id: self.sent_total as u32,
            key: IdempotencyKey(key),
            group: self.group,
            expires_in: None,
            recalls: None,
            attachments: Vec::new(),
            message: self.message.clone(),
        })
    }
}

pub async fn relay(args: RelayArgs) -> Result<()> {
    ensure!(
        args.devices >= 2 && args.devices.is_multiple_of(2),
        "--devices must be even and at least 2"
    );
    ensure!(args.messages > 0, "--messages must be at least 1");
    ensure!(
        !args.windows.is_empty() && args.windows.iter().all(|w| (1..=MAX_WINDOW).contains(w)),
        "--windows must list values from 1 to {MAX_WINDOW}"
    );
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let mut server = BenchServer::start(dir.path().join("server"))?;
    let addr = timeout(TIMEOUT, server.addr())
        .await
        .context("server start timed out")??;
    let result = run(&args, dir.path(), addr).await;
    let stopped = server.stop().await;
    let phases = result?;
    stopped?;
    report(&args, &phases)
}

async fn run(args: &RelayArgs, dir: &std::path::Path, addr: SocketAddr) -> Result<Vec<Phase>> {
    let mut pairs = setup(args, dir, addr).await?;
    let mut phases = Vec::new();
    for &window in &args.windows {
        eprintln!("online relay, window {window}...");
        let (phase, back) = online(pairs, args.messages, window).await?;
        pairs = back;
        phases.push(phase);
    }
    // Durable store: nobody online, every Accepted means committed to SQLite.
    for pair in &mut pairs {
        if let Some(socket) = pair.receiver.take() {
            socket.close().await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // let the server see the closes
    eprintln!("durable offline store...");
    let (phase, back) = store(pairs, args.messages).await?;
    pairs = back;
    phases.push(phase);
    eprintln!("backlog drain...");
    let start = Instant::now();
    let drains: Vec<_> = pairs
        .iter()
        .map(|p| tokio::spawn(drain(p.receiver_http.clone(), start + TIMEOUT)))
        .collect();
    let mut count = 0;
    for (pair, task) in pairs.iter_mut().zip(drains) {
        let (socket, n) = task.await.context("drain task failed")??;
        pair.receiver = Some(socket);
        count += n;
    }
    let seconds = start.elapsed().as_secs_f64();
    ensure!(
        count == args.messages,
        "backlog held {count} messages, expected {}",
        args.messages
    );
    phases.push(Phase {
        name: "backlog drain",
        window: None,
        messages: count,
        seconds,
        rate_per_s: count as f64 / seconds,
        p50_ms: None,
        p99_ms: None,
        max_ms: None,
        accepted: None,
    });
    for pair in pairs {
        pair.sender.close().await;
        if let Some(socket) = pair.receiver {
            socket.close().await;
        }
    }
    Ok(phases)
}

/// Registers the pairs, creates each 1:1 group, prepares the message, opens raw sockets.
async fn setup(args: &RelayArgs, dir: &std::path::Path, addr: SocketAddr) -> Result<Vec<Pair>> {
    let url = format!("http://{addr}");
    let mut pairs = Vec::new();
    for i in 0..args.devices / 2 {
        eprintln!(
            "registering pair {}/{} (Argon2)...",
            i + 1,
            args.devices / 2
        );
        let register = |role: &str| {
            let (name, profile) = (format!("bench-{role}{i}"), dir.join(format!("{role}{i}")));
            let url = url.clone();
            async move {
                let reg = Registration {
                    server: &url,
                    username: &name,
                    password: "bench-password-123",
                    invite: None,
                    device_name: "bench",
                };
                Client::register(&profile, "bench passphrase", reg)
                    .await
                    .with_context(|| format!("registering {name}"))
            }
        };
        let receiver = register("r").await?;
        let mut sender = register("s").await?;
        let peer = Username::parse(&format!("bench-r{i}"))?;
        let (group, message) = timeout(
            TIMEOUT,
            sender.prepare_text(&Target::User(peer), &"x".repeat(args.size)),
        )
        .await
        .context("creating the 1:1 group timed out")?
        .context("creating the 1:1 group")?;
        let (sender_http, receiver_http) = (sender.http().clone(), receiver.http().clone());
        // The clients' own connections are replaced by the raw sockets below.
        sender.close().await;
        receiver.close().await;
        let deadline = Instant::now() + TIMEOUT;
        let (sender, _) = drain(sender_http, deadline).await?;
        let (receiver, _) = drain(receiver_http.clone(), deadline).await?; // the Welcome
        pairs.push(Pair {
            index: i as u64,
            sender,
            receiver: Some(receiver),
            receiver_http,
            group,
            message,
            sent_total: 0,
        });
    }
    Ok(pairs)
}

/// Messages pair `i` of `n` sends in a phase of `total`.
fn quota(total: u64, i: usize, n: usize) -> u64 {
    total / n as u64 + u64::from((i as u64) < total % n as u64)
}

/// Spawns one task per pair and collects the pairs back with their results.
async fn per_pair<T, F>(
    pairs: Vec<Pair>,
    total: u64,
    task: impl Fn(Pair, u64) -> F,
) -> Result<Vec<(Pair, T)>>
where
    F: Future<Output = Result<(Pair, T)>> + Send + 'static,
    T: Send + 'static,
{
    let n = pairs.len();
    let tasks: Vec<_> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, p)| tokio::spawn(task(p, quota(total, i, n))))
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.context("benchmark task failed")??);
    }
    Ok(out)
}

/// Online relay: up to `window` messages per pair sent and not yet received.
async fn online(pairs: Vec<Pair>, total: u64, window: usize) -> Result<(Phase, Vec<Pair>)> {
    let start = Instant::now();
    let results = per_pair(pairs, total, |p, q| {
        online_pair(p, q, window, start + TIMEOUT)
    })
    .await?;
    let (mut latencies, mut accepted, mut end) = (Vec::new(), 0, start);
    let mut pairs = Vec::with_capacity(results.len());
    for (pair, (lat, acc, last)) in results {
        latencies.extend(lat);
        accepted += acc;
        end = end.max(last);
        pairs.push(pair);
    }
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .map(|d| ms(*d))
    };
    let seconds = (end - start).as_secs_f64();
    let phase = Phase {
        name: "online relay",
        window: Some(window),
        messages: latencies.len() as u64,
        seconds,
        rate_per_s: latencies.len() as f64 / seconds,
        p50_ms: pct(50),
        p99_ms: pct(99),
        max_ms: latencies.last().map(|d| ms(*d)),
        accepted: Some(accepted),
    };
    Ok((phase, pairs))
}

/// One pair of the online phase: latencies, Accepted count, last receive time.
async fn online_pair(
    mut pair: Pair,
    quota: u64,
    window: usize,
    deadline: Instant,
) -> Result<(Pair, (Vec<Duration>, u64, Instant))> {
    let mut receiver = pair.receiver.take().context("receiver socket is closed")?;
    // Deliveries of one pair arrive in send order, so the oldest send matches.
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(window);
    let mut latencies = Vec::with_capacity(quota as usize);
    let (mut sent, mut accepted, mut unacked, mut last) = (0, 0, 0, Instant::now());
    let expired = tokio::time::sleep_until(deadline);
    tokio::pin!(expired);
    while (latencies.len() as u64) < quota || accepted < quota {
        while sent < quota && in_flight.len() < window {
            let frame = pair.next_send();
            in_flight.push_back(Instant::now());
            pair.sender.send(&frame).await?;
            sent += 1;
        }
        // Socket::next is cancel-safe (it only awaits the stream's next item).
        tokio::select! {
            reply = pair.sender.next() => {
                expect_accepted(reply?)?;
                accepted += 1;
            }
            frame = receiver.next() => {
                let d = match frame? {
                    Some(ServerFrame::Deliver(d)) if d.kind == DeliveryKind::Application => d,
                    other => bail!("receiver got {} instead of a delivery", describe(other.as_ref())),
                };
                last = Instant::now();
                let sent_at = in_flight.pop_front().context("a delivery that was never sent")?;
                latencies.push(last - sent_at);
                unacked += 1;
                if unacked >= ACK_EVERY || latencies.len() as u64 == quota {
                    receiver.send(&ClientFrame::Ack { up_to: d.seq }).await?;
                    unacked = 0;
                }
            }
            () = &mut expired => bail!("online phase timed out after {TIMEOUT:?}"),
        }
    }
    pair.receiver = Some(receiver);
    Ok((pair, (latencies, accepted, last)))
}

/// Durable offline store: up to STORE_WINDOW sends per pair awaiting Accepted.
async fn store(pairs: Vec<Pair>, total: u64) -> Result<(Phase, Vec<Pair>)> {
    let start = Instant::now();
    let deadline = start + TIMEOUT;
    let results = per_pair(pairs, total, |mut pair, quota| async move {
        let (mut sent, mut accepted) = (0, 0);
        while accepted < quota {
            while sent < quota && sent - accepted < STORE_WINDOW {
                let frame = pair.next_send();
                pair.sender.send(&frame).await?;
                sent += 1;
            }
            let reply = timeout_at(deadline, pair.sender.next())
                .await
                .context("store phase timed out")?;
            expect_accepted(reply?)?;
            accepted += 1;
        }
        Ok((pair, accepted))
    })
    .await?;
    let seconds = start.elapsed().as_secs_f64();
    let accepted: u64 = results.iter().map(|(_, a)| a).sum();
    let phase = Phase {
        name: "durable store",
        window: Some(STORE_WINDOW as usize),
        messages: accepted,
        seconds,
        rate_per_s: accepted as f64 / seconds,
        p50_ms: None,
        p99_ms: None,
        max_ms: None,
        accepted: Some(accepted),
    };
    Ok((phase, results.into_iter().map(|(p, _)| p).collect()))
}

/// Opens a device's socket and reads its backlog up to BacklogDone,
/// acknowledging as it goes; returns the socket and the deliveries counted.
async fn drain(http: Http, deadline: Instant) -> Result<(Socket, u64)> {
    let mut socket = timeout_at(deadline, http.websocket())
        .await
        .context("connecting timed out")??;
    let (mut count, mut unacked) = (0, 0);
    loop {
        match timeout_at(deadline, socket.next())
            .await
            .context("backlog timed out")??
        {
            Some(ServerFrame::Deliver(d)) => {
                count += 1;
                unacked += 1;
                if unacked >= ACK_EVERY {
                    socket.send(&ClientFrame::Ack { up_to: d.seq }).await?;
                    unacked = 0;
                }
            }
            Some(ServerFrame::BacklogDone { up_to }) => {
                if up_to > 0 {
                    socket.send(&ClientFrame::Ack { up_to }).await?;
                }
                return Ok((socket, count));
            }
            other => bail!(
                "unexpected {} while reading a backlog",
                describe(other.as_ref())
            ),
        }
    }
}

fn expect_accepted(reply: Option<ServerFrame>) -> Result<()> {
    match reply {
        Some(ServerFrame::Accepted {
            duplicate: false, ..
        }) => Ok(()),
        Some(ServerFrame::Rejected { code, message, .. }) => {
            bail!("send rejected: {code}: {message}")
        }
        other => bail!(
            "sender got {} instead of Accepted",
            describe(other.as_ref())
        ),
    }
}

/// A frame's name for error messages (without kilobytes of payload).
fn describe(frame: Option<&ServerFrame>) -> String {
    match frame {
        None => "a closed connection".into(),
        Some(ServerFrame::Deliver(d)) => format!("a {:?} delivery", d.kind),
        Some(ServerFrame::Accepted { duplicate, .. }) => {
            format!("Accepted (duplicate: {duplicate})")
        }
        Some(ServerFrame::Rejected { code, message, .. }) => {
            format!("Rejected ({code}: {message})")
        }
        Some(ServerFrame::BacklogDone { .. }) => "BacklogDone".into(),
        Some(ServerFrame::Error { code, message }) => format!("Error ({code}: {message})"),
        Some(ServerFrame::PolicyChanged { revision }) => format!("PolicyChanged ({revision})"),
    }
}

fn report(args: &RelayArgs, phases: &[Phase]) -> Result<()> {
    if args.json {
        let out =
            serde_json::json!({ "devices": args.devices, "size": args.size, "phases": phases });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    println!(
        "rampart bench relay: {} devices ({} pairs), {}-byte messages, server on one core",
        args.devices,
        args.devices / 2,
        args.size
    );
    println!(
        "{:<14} {:>6} {:>9} {:>8} {:>10} {:>8} {:>8} {:>8} {:>9}",
        "phase", "window", "messages", "seconds", "msg/s", "p50 ms", "p99 ms", "max ms", "accepted"
    );
    for p in phases {
        let window = p.window.map_or_else(|| "-".to_owned(), |w| w.to_string());
        let accepted = p.accepted.map_or_else(|| "-".to_owned(), |a| a.to_string());
        println!(
            "{:<14} {:>6} {:>9} {:>8.3} {:>10.0} {:>8} {:>8} {:>8} {:>9}",
            p.name,
            window,
            p.messages,
            p.seconds,
            p.rate_per_s,
            opt(p.p50_ms),
            opt(p.p99_ms),
            opt(p.max_ms),
            accepted
        );
    }
    println!(
        "budget: online relay >= 40,000 msg/s and p50 <= 0.2 ms at window 1; durable store >= 10,000 msg/s"
    );
    Ok(())
}

/// The server on its own single-worker runtime and thread.
struct BenchServer {
    addr: tokio::sync::oneshot::Receiver<Result<SocketAddr>>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl BenchServer {
    fn start(data_dir: std::path::PathBuf) -> Result<Self> {
        let (addr_tx, addr) = tokio::sync::oneshot::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?;
                // Spawned, not block_on'd, so even the accept loop runs on the one worker.
                let serving = rt.spawn(async move {
                    let config = ServerConfig {
                        data_dir,
                        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                        registration: rampart_server::Registration::Open,
                        // A load generator registers many accounts from one address.
                        rate_limits: rampart_server::config::RateLimits {
                            registrations_per_ip: u32::MAX,
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    let opened = async {
                        let server = Server::open(config).await?;
                        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                        let addr = listener.local_addr()?;
                        anyhow::Ok((server, listener, addr))
                    };
                    match opened.await {
                        Ok((server, listener, addr)) => {
                            let _ = addr_tx.send(Ok(addr));
                            server
                                .serve(listener, async {
                                    let _ = stop_rx.await;
                                })
                                .await?;
                            Ok(())
                        }
                        Err(e) => {
                            let _ = addr_tx.send(Err(e));
                            Ok(())
                        }
                    }
                });
                rt.block_on(serving).context("server task failed")?
            })?;
        Ok(Self { addr, stop, thread })
    }

    async fn addr(&mut self) -> Result<SocketAddr> {
        (&mut self.addr).await.context("the server thread ended")?
    }

    /// Graceful shutdown: stop accepting, close sockets, flush, close the database.
    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        let thread = self.thread;
        let joined = tokio::task::spawn_blocking(move || thread.join());
        match timeout(TIMEOUT, joined)
            .await
            .context("server shutdown timed out")?
        {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => bail!("the server thread panicked"),
        }
    }
}
