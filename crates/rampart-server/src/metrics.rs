//! Prometheus metrics: `GET /metrics` in the text exposition format 0.0.4.
//!
//! A small registry of atomics. Counters are bumped where things happen
//! (relayed messages, logins, rate-limit refusals, DLP reports, HTTP
//! requests); gauges are read at scrape time from what already counts them
//! (open WebSockets from the connection cap, queues and blobs from the
//! database), so they cannot drift. A hot path pays one relaxed atomic add;
//! the per-route latency histograms sit behind a read-mostly lock that is
//! taken for writing only the first time a route is seen.
//!
//! What it does **not** expose: anything per user, device, group or
//! address. Labels come from fixed sets (outcomes, limits, DLP actions,
//! methods, status classes) or from the router's route templates
//! (`/v1/users/{username}`), never from a raw path, so neither content nor
//! identities reach a scraper and the number of series stays bounded.
//!
//! Who may scrape ([`MetricsConfig`]): with a token, only requests carrying
//! `Authorization: Bearer <token>` (compared in constant time), from
//! anywhere; without one, only loopback peers — the TCP peer, never
//! `X-Forwarded-For`. On the main listener of a server behind a declared
//! TLS proxy, loopback peers do not count either: the proxy is usually on
//! the same host, and would hand everyone its address. Such a server
//! needs the token, or the separate `[metrics] listen` address, which the
//! proxy does not forward to.

use crate::config::MetricsConfig;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_proto::ErrorCode;
use rampart_proto::api::DLP_EVENT_ACTIONS;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, PoisonError, RwLock};

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A monotonically increasing count.
#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How a login attempt ended (`rampart_logins_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    /// A session was created.
    Success,
    /// Wrong password, or no such account (one answer for both).
    BadPassword,
    /// The password was right but the second-factor code was not.
    BadCode,
    /// Refused unchecked: the account or the address is locked.
    Locked,
    /// The password was right but the account is disabled.
    Disabled,
}

impl LoginOutcome {
    const ALL: [Self; 5] = [
        Self::Success,
        Self::BadPassword,
        Self::BadCode,
        Self::Locked,
        Self::Disabled,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::BadPassword => "bad_password",
            Self::BadCode => "bad_code",
            Self::Locked => "locked",
            Self::Disabled => "disabled",
        }
    }
}

/// Which limit refused a request (`rampart_rate_limited_total{limit}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A credential check refused because the account or the address is
    /// locked after failures (logins, codes, invites, link polls).
    Lockout,
    /// Registrations per address.
    Register,
    /// Device-link requests per address.
    Link,
    /// DLP event reports per device.
    DlpReport,
    /// Commits and proposals per device.
    Handshake,
    /// Upload parts one account sends at once.
    UploadParts,
}

impl Limit {
    const ALL: [Self; 6] = [
        Self::Lockout,
        Self::Register,
        Self::Link,
        Self::DlpReport,
        Self::Handshake,
        Self::UploadParts,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Lockout => "lockout",
            Self::Register => "register",
            Self::Link => "link",
            Self::DlpReport => "dlp_report",
            Self::Handshake => "handshake",
            Self::UploadParts => "upload_parts",
        }
    }
}

/// Upper bounds of the latency buckets: in microseconds, and as the `le`
/// label writes them (seconds).
const BUCKETS: [(u64, &str); 13] = [
    (1_000, "0.001"),
    (2_500, "0.0025"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
];

/// Latencies in fixed buckets. Each observation lands in one bucket (the
/// last one is `+Inf`); rendering makes them cumulative, and the count is
/// their sum, so `_count` always equals the `+Inf` bucket.
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, micros: u64) {
        let i = BUCKETS.partition_point(|&(bound, _)| bound < micros);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Methods get their own label value; any other (extension methods are
/// unbounded) is `other`.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other",
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn method_index(method: &Method) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

fn class_index(status: StatusCode) -> usize {
    match status.as_u16() / 100 {
        c @ 1..=5 => usize::from(c) - 1,
        _ => CLASSES.len() - 1,
    }
}

/// One route's histograms by (method, status class), created on first use.
struct RouteHistograms([OnceLock<Box<Histogram>>; METHODS.len() * CLASSES.len()]);

impl RouteHistograms {
    fn new() -> Self {
        Self(std::array::from_fn(|_| OnceLock::new()))
    }

    fn observe(&self, method: usize, class: usize, micros: u64) {
        self.0[method * CLASSES.len() + class]
            .get_or_init(|| Box::new(Histogram::new()))
            .observe(micros);
    }
}

/// The route label of requests no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Who may scrape (see the module docs).
#[derive(Default)]
struct Access {
    /// SHA-256 of the configured token: hashing both sides makes the
    /// comparison constant-time whatever the lengths.
    token_hash: Option<[u8; 32]>,
    behind_tls_proxy: bool,
}

/// Which listener a scrape arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The server's own address (REST and WebSockets).
    Main,
    /// The separate `[metrics] listen` address.
    Dedicated,
}

/// The registry (one per server, behind an `Arc` in [`AppState`]).
#[derive(Default)]
pub struct Metrics {
    messages_relayed: Counter,
    handshakes_accepted: Counter,
    logins: [Counter; LoginOutcome::ALL.len()],
    rate_limited: [Counter; Limit::ALL.len()],
    dlp_events: [Counter; DLP_EVENT_ACTIONS.len()],
    /// By route template; sorted, so the output is stable.
    http: RwLock<BTreeMap<Box<str>, RouteHistograms>>,
    access: Access,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Values read at scrape time rather than counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    pub websocket_connections: u64,
    pub queued_messages: u64,
    pub devices_with_queued_messages: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

impl Metrics {
    /// A registry that admits scrapers by `config` (the token) and
    /// `behind_tls_proxy` (see the module docs).
    pub fn new(config: &MetricsConfig, behind_tls_proxy: bool) -> Self {
        Self {
            access: Access {
                token_hash: config
                    .token
                    .as_ref()
                    .map(|t| Sha256::digest(t.expose().as_bytes()).into()),
                behind_tls_proxy,
            },
            ..Self::default()
        }
    }

    /// `n` application messages were accepted and stored for delivery.
    pub fn messages_relayed(&self, n: u64) {
        self.messages_relayed.add(n);
    }

    /// `n` commits and proposals from clients were accepted.
    pub fn handshakes_accepted(&self, n: u64) {
        self.handshakes_accepted.add(n);
    }

    pub fn login(&self, outcome: LoginOutcome) {
        self.logins[outcome as usize].add(1);
    }

    pub fn rate_limited(&self, limit: Limit) {
        self.rate_limited[limit as usize].add(1);
    }

    /// A stored DLP event with this action (one of [`DLP_EVENT_ACTIONS`];
    /// anything else was refused before and is ignored here).
    pub fn dlp_event(&self, action: &str) {
        if let Some(i) = DLP_EVENT_ACTIONS.iter().position(|a| *a == action) {
            self.dlp_events[i].add(1);
        }
    }

    /// One answered HTTP request. `route` is the matched route template
    /// (or [`UNMATCHED_ROUTE`]), never the request's path.
    pub fn http_request(&self, method: &Method, route: &str, status: StatusCode, micros: u64) {
        let (m, c) = (method_index(method), class_index(status));
        {
            let routes = self.http.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(h) = routes.get(route) {
                h.observe(m, c, micros);
                return;
            }
        }
        let mut routes = self.http.write().unwrap_or_else(PoisonError::into_inner);
        routes
            .entry(route.into())
            .or_insert_with(RouteHistograms::new)
            .observe(m, c, micros);
    }

    /// Everything, in the text exposition format.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        family(
            &mut out,
            "rampart_build_info",
            "gauge",
            "The running version (always 1).",
        );
        sample(
            &mut out,
            "rampart_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        let plain: [(&str, &str, &str, u64); 7] = [
            (
                "rampart_websocket_connections",
                "gauge",
                "Open WebSocket connections (one per online device).",
                gauges.websocket_connections,
            ),
            (
                "rampart_messages_relayed_total",
                "counter",
                "Application messages the delivery service accepted and queued for their recipients.",
                self.messages_relayed.get(),
            ),
            (
                "rampart_handshake_messages_accepted_total",
                "counter",
                "Commits and proposals from clients the delivery service accepted.",
                self.handshakes_accepted.get(),
            ),
            (
                "rampart_queued_messages",
                "gauge",
                "Messages waiting in device queues, not yet acknowledged (one per recipient device).",
                gauges.queued_messages,
            ),
            (
                "rampart_devices_with_queued_messages",
                "gauge",
                "Devices whose queue is not empty.",
                gauges.devices_with_queued_messages,
            ),
            (
                "rampart_blobs_stored",
                "gauge",
                "Blobs (encrypted files) stored, uploads in progress included.",
                gauges.blobs,
            ),
            (
                "rampart_blob_stored_bytes",
                "gauge",
                "Bytes of blobs stored, uploads in progress included.",
                gauges.blob_bytes,
            ),
        ];
        for (name, kind, help, value) in plain {
            family(&mut out, name, kind, help);
            sample(&mut out, name, &[], value);
        }
        labelled(
            &mut out,
            "rampart_logins_total",
            "Login attempts by outcome.",
            "outcome",
            LoginOutcome::ALL.iter().map(|o| o.label()),
            &self.logins,
        );
        labelled(
            &mut out,
            "rampart_rate_limited_total",
            "Requests refused by a rate limit or lockout, by limit.",
            "limit",
            Limit::ALL.iter().map(|l| l.label()),
            &self.rate_limited,
        );
        labelled(
            &mut out,
            "rampart_dlp_events_total",
            "DLP events clients reported, by the action they took.",
            "action",
            DLP_EVENT_ACTIONS.iter().copied(),
            &self.dlp_events,
        );
        self.render_http(&mut out);
        out
    }

    fn render_http(&self, out: &mut String) {
        const NAME: &str = "rampart_http_request_duration_seconds";
        family(
            out,
            NAME,
            "histogram",
            "HTTP request latency by method, route template and status class \
             (a WebSocket counts until its upgrade).",
        );
        let routes = self.http.read().unwrap_or_else(PoisonError::into_inner);
        for (route, cells) in routes.iter() {
            for (i, cell) in cells.0.iter().enumerate() {
                let Some(h) = cell.get() else { continue };
                let labels = [
                    ("method", METHODS[i / CLASSES.len()]),
                    ("route", &**route),
                    ("status", CLASSES[i % CLASSES.len()]),
                ];
                let mut cumulative = 0u64;
                for (j, count) in h.buckets.iter().enumerate() {
                    cumulative += count.load(Ordering::Relaxed);
                    let le = BUCKETS.get(j).map_or("+Inf", |(_, le)| le);
                    let mut with_le = labels.to_vec();
                    with_le.push(("le", le));
                    sample(out, &format!("{NAME}_bucket"), &with_le, cumulative);
                }
                let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                sample(out, &format!("{NAME}_sum"), &labels, sum);
                sample(out, &format!("{NAME}_count"), &labels, cumulative);
            }
        }
    }

    /// Whether this scrape may read the metrics (see the module docs).
    fn admit(
        &self,
        listener: Listener,
        peer: Option<SocketAddr>,
        authorization: Option<&HeaderValue>,
    ) -> Result<(), ApiError> {
        if let Some(expected) = &self.access.token_hash {
            let presented = authorization
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim());
            let Some(presented) = presented else {
                return Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "this server's metrics need its metrics token: send Authorization: Bearer <token>",
                ));
            };
            let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            use subtle::ConstantTimeEq as _;
            if bool::from(hash.ct_eq(expected)) {
                return Ok(());
            }
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "wrong metrics token",
            ));
        }
        let loopback = peer.is_some_and(|p| p.ip().to_canonical().is_loopback());
        let proxied = listener == Listener::Main && self.access.behind_tls_proxy;
        if loopback && !proxied {
            return Ok(());
        }
        Err(ApiError::forbidden(if proxied {
            "metrics are not served through the TLS proxy without a token: set [metrics] token \
             in the server configuration, or scrape the [metrics] listen address"
        } else {
            "metrics are served only to loopback clients: set [metrics] token in the server \
             configuration to scrape from elsewhere"
        }))
    }
}

/// `# HELP` and `# TYPE` of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line: `name{label="value",…} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A counter family with one label, one sample per label value.
fn labelled<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = &'a str>,
    counters: &[Counter],
) {
    family(out, name, "counter", help);
    for (value, counter) in values.zip(counters) {
        sample(out, name, &[(label, value)], counter.get());
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The gauges read from the database and the connection cap.
async fn gauges(state: &AppState) -> Result<Gauges, sqlx::Error> {
    let (queued, devices): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT device_id) FROM queue")
            .fetch_one(&state.pool)
            .await?;
    let (blobs, bytes): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(received), 0) FROM blobs")
            .fetch_one(&state.pool)
            .await?;
    let open =
        crate::delivery::ws::MAX_WEBSOCKETS.saturating_sub(state.ws_slots.available_permits());
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(Gauges {
        websocket_connections: open as u64,
        queued_messages: count(queued),
        devices_with_queued_messages: count(devices),
        blobs: count(blobs),
        blob_bytes: count(bytes),
    })
}

async fn scrape_on(
    state: AppState,
    listener: Listener,
    req: Request,
) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    state
        .metrics
        .admit(listener, peer, req.headers().get(header::AUTHORIZATION))?;
    let gauges = gauges(&state).await?;
    let body = state.metrics.render(&gauges);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response())
}

/// `GET /metrics` on the server's own address.
pub async fn scrape(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    scrape_on(state, Listener::Main, req).await
}

/// `GET /metrics` on the `[metrics] listen` address.
pub async fn scrape_dedicated(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    scrape_on(state, Listener::Dedicated, req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn renders_help_type_and_samples() {
        let m = Metrics::default();
        m.messages_relayed(3);
        m.handshakes_accepted(1);
        m.login(LoginOutcome::Success);
        m.login(LoginOutcome::BadPassword);
        m.login(LoginOutcome::BadPassword);
        m.rate_limited(Limit::Handshake);
        m.dlp_event("redact");
        m.dlp_event("not-an-action");
        let text = m.render(&Gauges {
            websocket_connections: 2,
            queued_messages: 7,
            devices_with_queued_messages: 1,
            blobs: 4,
            blob_bytes: 12_345,
        });
        let l = lines(&text);
        for want in [
            "# HELP rampart_messages_relayed_total Application messages the delivery service accepted and queued for their recipients.",
            "# TYPE rampart_messages_relayed_total counter",
            "rampart_messages_relayed_total 3",
            "rampart_handshake_messages_accepted_total 1",
            "# TYPE rampart_websocket_connections gauge",
            "rampart_websocket_connections 2",
            "rampart_queued_messages 7",
            "rampart_devices_with_queued_messages 1",
            "rampart_blobs_stored 4",
            "rampart_blob_stored_bytes 12345",
            "rampart_logins_total{outcome=\"success\"} 1",
            "rampart_logins_total{outcome=\"bad_password\"} 2",
            "rampart_logins_total{outcome=\"locked\"} 0",
            "rampart_rate_limited_total{limit=\"handshake\"} 1",
            "rampart_rate_limited_total{limit=\"lockout\"} 0",
            "rampart_dlp_events_total{action=\"redact\"} 1",
            "rampart_dlp_events_total{action=\"block\"} 0",
            "# TYPE rampart_http_request_duration_seconds histogram",
            &format!(
                "rampart_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(l.contains(&want), "missing {want:?} in\n{text}");
        }
        // Every family is announced once, HELP before TYPE, and every
        // sample belongs to an announced family.
        let mut announced = Vec::new();
        for (i, line) in l.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!announced.contains(&name), "{name} announced twice");
                assert_eq!(l[i + 1].split(' ').nth(2), Some(name));
                announced.push(name);
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = name
                    .strip_suffix("_bucket")
                    .or_else(|| name.strip_suffix("_sum"))
                    .or_else(|| name.strip_suffix("_count"))
                    .filter(|f| announced.contains(f))
                    .unwrap_or(name);
                assert!(announced.contains(&family), "{line}");
                assert!(family.starts_with("rampart_"), "{line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn histograms_are_cumulative_and_count_equals_inf() {
        let m = Metrics::default();
        let route = "/v1/users/{username}";
        m.http_request(&Method::GET, route, StatusCode::OK, 400); // 0.0004 s
        m.http_request(&Method::GET, route, StatusCode::OK, 1_000); // exactly 1 ms
        m.http_request(&Method::GET, route, StatusCode::OK, 30_000);
        m.http_request(&Method::GET, route, StatusCode::OK, 60_000_000);
        m.http_request(&Method::GET, route, StatusCode::NOT_FOUND, 10);
        m.http_request(
            &Method::from_bytes(b"BREW").unwrap(),
            UNMATCHED_ROUTE,
            StatusCode::NOT_FOUND,
            10,
        );
        let text = m.render(&Gauges::default());
        let l = lines(&text);
        let series = "method=\"GET\",route=\"/v1/users/{username}\",status=\"2xx\"";
        for want in [
            format!("rampart_http_request_duration_seconds_bucket{{{series},le=\"0.001\"}} 2"),
            format!("rampart_http_request_duration_seconds_bucket{{{series},le=\"0.025\"}} 2"),
            format!("rampart_http_request_duration_seconds_bucket{{{series},le=\"0.05\"}} 3"),
            format!("rampart_http_request_duration_seconds_bucket{{{series},le=\"10\"}} 3"),
            format!("rampart_http_request_duration_seconds_bucket{{{series},le=\"+Inf\"}} 4"),
            format!("rampart_http_request_duration_seconds_count{{{series}}} 4"),
            format!("rampart_http_request_duration_seconds_sum{{{series}}} 60.0314"),
            "rampart_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/users/{username}\",status=\"4xx\"} 1".into(),
            "rampart_http_request_duration_seconds_count{method=\"other\",route=\"unmatched\",status=\"4xx\"} 1".into(),
        ] {
            assert!(l.contains(&want.as_str()), "missing {want:?} in\n{text}");
        }
        // No series for combinations never seen.
        assert!(!text.contains("status=\"5xx\""));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "x", &[("route", "a\"b\\c\nd")], 1);
        assert_eq!(out, "x{route=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    fn peer(addr: &str) -> Option<SocketAddr> {
        Some(addr.parse().unwrap())
    }

    fn status(r: Result<(), ApiError>) -> Option<ErrorCode> {
        r.err().map(|e| e.code())
    }

    #[test]
    fn loopback_only_without_a_token() {
        let m = Metrics::new(&MetricsConfig::default(), false);
        for ok in ["127.0.0.1:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            assert_eq!(
                status(m.admit(Listener::Main, peer(ok), None)),
                None,
                "{ok}"
            );
        }
        assert_eq!(
            status(m.admit(Listener::Main, peer("192.0.2.1:1"), None)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            status(m.admit(Listener::Dedicated, None, None)),
            Some(ErrorCode::Forbidden)
        );
        // Behind a TLS proxy the main listener's loopback peer is the proxy.
        let proxied = Metrics::new(&MetricsConfig::default(), true);
        assert_eq!(
            status(proxied.admit(Listener::Main, peer("127.0.0.1:1"), None)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            status(proxied.admit(Listener::Dedicated, peer("127.0.0.1:1"), None)),
            None
        );
    }

    #[test]
    fn the_token_is_required_from_everyone_when_set() {
        let config = MetricsConfig {
            listen: None,
            token: Some(Secret::new("s3cret-metrics-token")),
        };
        let m = Metrics::new(&config, false);
        let bearer = |v: &str| HeaderValue::from_str(v).unwrap();
        let local = peer("127.0.0.1:1");
        assert_eq!(
            status(m.admit(Listener::Main, local, None)),
            Some(ErrorCode::Unauthorized)
        );
        for wrong in [
            "Bearer wrong",
            "Bearer s3cret-metrics-toke",
            "Basic s3cret-metrics-token",
            "s3cret-metrics-token",
        ] {
            assert_eq!(
                status(m.admit(Listener::Main, local, Some(&bearer(wrong)))),
                Some(ErrorCode::Unauthorized),
                "{wrong}"
            );
        }
        for right in ["Bearer s3cret-metrics-token", "bearer s3cret-metrics-token"] {
            assert_eq!(
                status(m.admit(Listener::Main, peer("192.0.2.1:1"), Some(&bearer(right)))),
                None
            );
        }
    }
}
