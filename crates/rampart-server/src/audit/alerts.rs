//! Alert rules over the audit log, and the webhook that tells an
//! operator's tooling.
//!
//! A rule counts the entries of some actions (optionally of one outcome,
//! or with a detail among some values), per actor, address, target or
//! overall, and fires when `threshold` of them fall within `window_secs`.
//! It then stays quiet for that key for one window, so a password-guessing
//! run raises one alert per window, not one per guess. A firing appends an
//! `alert_fired` entry to the audit log and, if a webhook is configured,
//! POSTs a JSON body signed with HMAC-SHA-256:
//!
//! ```text
//! X-Rampart-Signature: t=<unix ms>,v1=<hex HMAC-SHA-256(secret, "<t>." + body)>
//! ```
//!
//! Every signed checkpoint goes to the webhook too (`X-Rampart-Event:
//! checkpoint`), so that a copy of each signed head lives outside the
//! server. The webhook runs on its own task behind a bounded queue: a slow or
//! failing receiver is retried a few times, logged, and never holds up the
//! server. Alert state lives in memory; a restart forgets partial counts.
//!
//! ```toml
//! [alerts]
//! webhook_url = "https://siem.example.org/rampart"
//! webhook_secret = "at least 16 characters"
//!
//! [[alerts.rules]]
//! name = "password-guessing"
//! actions = ["login_failed", "two_factor_failed"]
//! per = "ip"
//! threshold = 20
//! window_secs = 600
//! ```

use super::{Actor, Entry, Target};
use hmac::{Hmac, Mac as _};
use rampart_proto::Millis;
use rampart_proto::audit::{AuditCheckpoint, AuditEntry, AuditRecord, Outcome, rfc3339};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;

/// Keys (rule and actor/address/target) tracked at once; past this, idle
/// ones are dropped and new ones ignored until there is room.
const MAX_TRACKED: usize = 10_000;
/// Alerts waiting for the webhook; more are dropped (and logged).
const WEBHOOK_QUEUE: usize = 256;
/// Attempts per alert, and the pause before each retry.
const WEBHOOK_RETRIES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest window a rule may have: one week.
const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;
const MIN_SECRET_LEN: usize = 16;

/// What a rule counts per.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Actor,
    Ip,
    Target,
    #[default]
    All,
}

/// One alert rule (a `[[alerts.rules]]` table).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Names the alert: `a-z 0-9 - _`, up to 64.
    pub name: String,
    /// Audit actions it counts (`login_failed`, `dlp_block`, ...).
    pub actions: Vec<String>,
    /// Only entries with this outcome.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// Only entries whose detail has one of these values under the key
    /// (e.g. `role = ["admin", "owner"]`).
    #[serde(default)]
    pub detail: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub per: GroupBy,
    /// Entries within the window that fire it.
    #[serde(default = "one")]
    pub threshold: u32,
    /// The window, and the quiet time after firing; 0 (only with a
    /// threshold of 1) fires on every entry.
    #[serde(default)]
    pub window_secs: u64,
}

fn one() -> u32 {
    1
}

impl AlertRule {
    fn new(name: &str, actions: &[&str], per: GroupBy, threshold: u32, window_secs: u64) -> Self {
        Self {
            name: name.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            outcome: None,
            detail: BTreeMap::new(),
            per,
            threshold,
            window_secs,
        }
    }

    fn matches(&self, e: &AuditEntry) -> bool {
        self.actions.contains(&e.action)
            && self.outcome.is_none_or(|o| o == e.outcome)
            && self.detail.iter().all(|(key, allowed)| {
                e.detail
                    .get(key)
                    .is_some_and(|v| allowed.iter().any(|a| a == v))
            })
    }

    /// What the count is kept per, for this entry; `None` when the entry
    /// has no such field (a failed login for an unknown name has no actor).
    fn key(&self, e: &AuditEntry) -> Option<String> {
        match self.per {
            GroupBy::Actor => e.actor.as_ref().map(|a| format!("actor:{a}")),
            GroupBy::Ip => e.ip.as_ref().map(|ip| format!("ip:{ip}")),
            GroupBy::Target => e.target.clone(),
            GroupBy::All => Some("all".to_owned()),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(format!(
                "alert rule name {:?}: use 1 to 64 of a-z, 0-9, - and _",
                self.name
            ));
        }
        let name = &self.name;
        if self.actions.is_empty() {
            return Err(format!(
                "alert rule {name}: list the audit actions it counts, e.g. actions = [\"login_failed\"]"
            ));
        }
        if self.threshold == 0 {
            return Err(format!("alert rule {name}: threshold must be at least 1"));
        }
        if self.window_secs > MAX_WINDOW_SECS {
            return Err(format!(
                "alert rule {name}: window_secs may be at most {MAX_WINDOW_SECS} (one week)"
            ));
        }
        if self.threshold > 1 && self.window_secs == 0 {
            return Err(format!(
                "alert rule {name}: a threshold above 1 needs a window (window_secs)"
            ));
        }
        Ok(())
    }
}

/// The `[alerts]` section.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Where fired alerts are POSTed: `https://`, or `http://` on loopback.
    pub webhook_url: Option<String>,
    /// The HMAC key of the signature header; required with a webhook.
    pub webhook_secret: Option<String>,
    pub rules: Vec<AlertRule>,
}

impl std::fmt::Debug for AlertsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertsConfig")
            .field("webhook_url", &self.webhook_url)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("rules", &self.rules)
            .finish()
    }
}

impl Default for AlertsConfig {
    /// Rules a security team expects on day one; no webhook.
    fn default() -> Self {
        let failed = ["login_failed", "two_factor_failed"];
        let mut admin_granted = AlertRule::new(
            "admin-role-granted",
            &["role_changed"],
            GroupBy::Target,
            1,
            0,
        );
        admin_granted.detail.insert(
            "role".to_owned(),
            vec!["admin".to_owned(), "owner".to_owned()],
        );
        Self {
            webhook_url: None,
            webhook_secret: None,
            rules: vec![
                AlertRule::new("failed-logins-account", &failed, GroupBy::Actor, 5, 600),
                AlertRule::new("failed-logins-address", &failed, GroupBy::Ip, 20, 600),
                AlertRule::new("dlp-block-burst", &["dlp_block"], GroupBy::Actor, 10, 600),
                admin_granted,
                AlertRule::new(
                    "user-disabled",
                    &["account_disabled"],
                    GroupBy::Target,
                    1,
                    0,
                ),
            ],
        }
    }
}

impl AlertsConfig {
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for rule in &self.rules {
            rule.validate()?;
            if !names.insert(&rule.name) {
                return Err(format!("alert rule {} is defined twice", rule.name));
            }
        }
        match (&self.webhook_url, &self.webhook_secret) {
            (None, None) => Ok(()),
            (None, Some(_)) => {
                Err("alerts.webhook_secret is set without alerts.webhook_url".into())
            }
            (Some(_), None) => Err(
                "alerts.webhook_url needs alerts.webhook_secret: the receiver checks the \
                 signature made with it"
                    .into(),
            ),
            (Some(url), Some(secret)) => {
                if secret.len() < MIN_SECRET_LEN {
                    return Err(format!(
                        "alerts.webhook_secret is too short: use at least {MIN_SECRET_LEN} random characters"
                    ));
                }
                check_webhook_url(url)
            }
        }
    }
}

/// `https://` anywhere; `http://` only to a loopback address, since the
/// body names accounts and addresses.
fn check_webhook_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("alerts.webhook_url {url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "alerts.webhook_url {url:?}: plain http is allowed to loopback only; use https"
                ))
            }
        }
        other => Err(format!(
            "alerts.webhook_url {url:?}: unsupported scheme {other}; use https"
        )),
    }
}

/// Counts of one rule for one key.
#[derive(Default)]
struct Window {
    hits: VecDeque<(Millis, u64)>,
    quiet_until: Millis,
}

/// A rule that fired.
#[derive(Clone, Debug)]
pub struct Fired {
    pub rule: String,
    pub key: String,
    pub count: u32,
    pub window_secs: u64,
    /// The entries counted, first and last.
    pub first_id: u64,
    pub last_id: u64,
    pub at: Millis,
}

impl Fired {
    /// The `alert_fired` audit entry.
    pub(crate) fn entry(&self) -> Entry {
        Entry::new("alert_fired", Actor::Server, Outcome::Success)
            .target(Target::Text(format!("rule:{}", self.rule)))
            .detail("key", &self.key)
            .detail("count", self.count)
            .detail("window_secs", self.window_secs)
            .detail("first_entry", self.first_id)
            .detail("last_entry", self.last_id)
    }

    /// The webhook body.
    fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "type": "alert",
            "rule": self.rule,
            "key": self.key,
            "count": self.count,
            "window_secs": self.window_secs,
            "first_entry": self.first_id,
            "last_entry": self.last_id,
            "at": self.at,
            "time": rfc3339(self.at),
        }))
        .unwrap_or_default()
    }
}

/// One rule and its counts per key.
struct Tracked {
    rule: AlertRule,
    windows: HashMap<String, Window>,
    /// Set while new keys are being turned away (logged once per spell).
    full: bool,
}

impl Tracked {
    fn new(rule: AlertRule) -> Self {
        Self {
            rule,
            windows: HashMap::new(),
            full: false,
        }
    }

    /// Whether `key` has (or now gets) a window. Each rule has its own
    /// [`MAX_TRACKED`] keys, so a flood of addresses cannot crowd out the
    /// counts per account or overall; when full, windows with nothing left
    /// to count are dropped first.
    fn has_room_for(&mut self, key: &str, now: Millis) -> bool {
        if self.windows.len() < MAX_TRACKED || self.windows.contains_key(key) {
            return true;
        }
        let span = self.rule.window_secs.saturating_mul(1000);
        self.windows.retain(|_, w| {
            w.quiet_until > now || w.hits.back().is_some_and(|(at, _)| at + span > now)
        });
        let room = self.windows.len() < MAX_TRACKED;
        if !room && !self.full {
            tracing::warn!(rule = %self.rule.name, "alert rule tracks too many keys; new ones are skipped");
        }
        self.full = !room;
        room
    }

    /// Counts `e` (which the rule matches) for its key; returns a firing.
    fn count(&mut self, e: &AuditEntry) -> Option<Fired> {
        let key = self.rule.key(e)?;
        if !self.has_room_for(&key, e.at) {
            return None;
        }
        let rule = &self.rule;
        let threshold = rule.threshold as usize;
        let span = rule.window_secs.saturating_mul(1000);
        let window = self.windows.entry(key.clone()).or_default();
        window.hits.push_back((e.at, e.id));
        while span > 0
            && window
                .hits
                .front()
                .is_some_and(|(at, _)| at.saturating_add(span) <= e.at)
        {
            window.hits.pop_front();
        }
        while window.hits.len() > threshold {
            window.hits.pop_front();
        }
        if window.hits.len() < threshold || e.at < window.quiet_until {
            return None;
        }
        let first_id = window.hits.front().map_or(e.id, |(_, id)| *id);
        window.quiet_until = e.at.saturating_add(span);
        window.hits.clear();
        Some(Fired {
            rule: rule.name.clone(),
            key,
            count: rule.threshold,
            window_secs: rule.window_secs,
            first_id,
            last_id: e.id,
            at: e.at,
        })
    }
}

/// The rules' state, fed by the audit sealer.
pub struct Alerts {
    rules: Vec<Tracked>,
    /// The webhook task's queue: the event name and the body.
    webhook: Option<mpsc::Sender<(&'static str, Vec<u8>)>>,
}

impl Alerts {
    /// No rules, no webhook (the admin console).
    pub fn none() -> Self {
        Self {
            rules: Vec::new(),
            webhook: None,
        }
    }

    /// Starts the webhook task if one is configured (needs a runtime).
    pub fn start(config: &AlertsConfig) -> Self {
        let webhook = match (&config.webhook_url, &config.webhook_secret) {
            (Some(url), Some(secret)) => Some(spawn_webhook(url.clone(), secret.clone())),
            _ => None,
        };
        Self {
            rules: config.rules.iter().cloned().map(Tracked::new).collect(),
            webhook,
        }
    }

    /// Counts newly sealed entries; returns the rules that fired.
    pub fn observe(&mut self, entries: &[AuditEntry]) -> Vec<Fired> {
        let mut fired = Vec::new();
        for e in entries.iter().filter(|e| e.action != "alert_fired") {
            for tracked in &mut self.rules {
                if tracked.rule.matches(e) {
                    fired.extend(tracked.count(e));
                }
            }
        }
        fired
    }

    /// Hands the alert to the webhook task; never waits.
    pub fn notify(&self, fired: Fired) {
        tracing::warn!(rule = %fired.rule, key = %fired.key, count = fired.count, "alert fired");
        if let Some(tx) = &self.webhook
            && tx.try_send(("alert", fired.body())).is_err()
        {
            tracing::error!(rule = %fired.rule, "the alert webhook queue is full; alert not sent");
        }
    }

    /// Sends a new checkpoint to the webhook too (`X-Rampart-Event:
    /// checkpoint`, the body an export line): a copy of each signed head
    /// kept outside the server, against which a log rewritten later by
    /// whoever holds the server and its key no longer matches.
    pub fn anchor(&self, checkpoint: &AuditCheckpoint) {
        let body = serde_json::to_vec(&AuditRecord::Checkpoint(checkpoint.clone()));
        if let (Some(tx), Ok(body)) = (&self.webhook, body)
            && tx.try_send(("checkpoint", body)).is_err()
        {
            tracing::error!("the alert webhook queue is full; checkpoint not sent");
        }
    }
}

/// The signature header value for `body` sent at `t` (unix ms).
pub fn signature(secret: &[u8], t: Millis, body: &[u8]) -> String {
    // HMAC takes keys of any length: this never returns early.
    let Ok(mut mac) = <Hmac<Sha256> as hmac::Mac>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn spawn_webhook(url: String, secret: String) -> mpsc::Sender<(&'static str, Vec<u8>)> {
    let (tx, mut rx) = mpsc::channel::<(&'static str, Vec<u8>)>(WEBHOOK_QUEUE);
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the alert webhook client");
                return;
            }
        };
        while let Some((event, body)) = rx.recv().await {
            deliver(&client, &url, secret.as_bytes(), event, body).await;
        }
    });
    tx
}

/// One POST, with bounded retries; the outcome is logged, never raised.
async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    event: &'static str,
    body: Vec<u8>,
) {
    let mut pauses = WEBHOOK_RETRIES.iter();
    loop {
        let t = crate::db::now_ms().max(0) as u64;
        let result = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-rampart-event", event)
            .header("x-rampart-signature", signature(secret, t, &body))
            .body(body.clone())
            .send()
            .await;
        let problem = match result {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => format!("unreachable: {}", e.without_url()),
        };
        match pauses.next() {
            Some(pause) => {
                tracing::warn!(%problem, "the alert webhook failed; retrying");
                tokio::time::sleep(*pause).await;
            }
            None => {
                tracing::error!(%problem, "the alert webhook failed; alert dropped");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_proto::audit::GENESIS;

    fn entry(id: u64, at: Millis, action: &str, actor: &str) -> AuditEntry {
        AuditEntry {
            id,
            at,
            time: rfc3339(at),
            actor: Some(actor.to_owned()),
            device: None,
            ip: Some("10.0.0.1".into()),
            action: action.into(),
            target: Some(format!("user:{actor}")),
            outcome: Outcome::Failure,
            detail: BTreeMap::new(),
            prev_hash: GENESIS,
            hash: GENESIS,
        }
    }

    fn alerts(rules: Vec<AlertRule>) -> Alerts {
        Alerts {
            rules: rules.into_iter().map(Tracked::new).collect(),
            webhook: None,
        }
    }

    #[test]
    fn a_threshold_fires_once_per_window_per_key() {
        let mut a = alerts(vec![AlertRule::new(
            "guessing",
            &["login_failed"],
            GroupBy::Actor,
            3,
            60,
        )]);
        let fired = a.observe(&[
            entry(1, 1_000, "login_failed", "alice"),
            entry(2, 2_000, "login_failed", "alice"),
            entry(3, 3_000, "login_succeeded", "alice"),
            entry(4, 4_000, "login_failed", "bob"),
            entry(5, 5_000, "login_failed", "alice"),
        ]);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].key, "actor:alice");
        assert_eq!((fired[0].first_id, fired[0].last_id), (1, 5));
        // Quiet for the rest of the window, however many more.
        let more: Vec<_> = (6..20)
            .map(|i| entry(i, 5_000 + i * 1000, "login_failed", "alice"))
            .collect();
        assert!(a.observe(&more).is_empty());
        // The next window fires again.
        let later: Vec<_> = (20..23)
            .map(|i| entry(i, 70_000 + i, "login_failed", "alice"))
            .collect();
        assert_eq!(a.observe(&later).len(), 1);
    }

    #[test]
    fn hits_outside_the_window_do_not_count() {
        let mut a = alerts(vec![AlertRule::new(
            "guessing",
            &["login_failed"],
            GroupBy::All,
            3,
            10,
        )]);
        let spread: Vec<_> = (0..10)
            .map(|i| entry(i, i * 6_000, "login_failed", "alice"))
            .collect();
        assert!(a.observe(&spread).is_empty());
    }

    #[test]
    fn single_event_rules_fire_every_time_and_match_details() {
        let mut a = alerts(AlertsConfig::default().rules);
        let mut grant = entry(1, 1, "role_changed", "boss");
        grant.detail.insert("role".into(), "admin".into());
        let mut demote = entry(2, 2, "role_changed", "boss");
        demote.detail.insert("role".into(), "member".into());
        let mut again = entry(3, 3, "role_changed", "boss");
        again.detail.insert("role".into(), "owner".into());
        let fired = a.observe(&[grant, demote, again]);
        let rules: Vec<_> = fired.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(rules, ["admin-role-granted", "admin-role-granted"]);
    }

    #[test]
    fn alerts_never_count_alerts() {
        let rule = AlertRule::new("all", &["alert_fired"], GroupBy::All, 1, 0);
        let mut a = alerts(vec![rule]);
        assert!(
            a.observe(&[entry(1, 1, "alert_fired", "server")])
                .is_empty()
        );
    }

    #[test]
    fn tracked_keys_are_bounded_per_rule_and_freed_when_idle() {
        let per_actor = AlertRule::new("guessing", &["login_failed"], GroupBy::Actor, 5, 60);
        let overall = AlertRule::new("everyone", &["login_failed"], GroupBy::All, 3, 600);
        let mut a = alerts(vec![per_actor, overall]);
        let flood: Vec<_> = (0..(MAX_TRACKED as u64 + 500))
            .map(|i| entry(i, 1_000, "login_failed", &format!("u{i}")))
            .collect();
        // The flood of names cannot crowd out the overall count.
        let fired = a.observe(&flood);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].rule, "everyone");
        assert!(a.rules[0].windows.len() <= MAX_TRACKED);
        assert!(a.rules[0].full);
        // A minute later the idle windows make room again.
        let later = entry(1_000_000, 62_000, "login_failed", "newcomer");
        a.observe(&[later]);
        assert!(a.rules[0].windows.contains_key("actor:newcomer"));
        assert!(!a.rules[0].full);
    }

    #[test]
    fn signatures_cover_time_and_body() {
        let s = signature(b"0123456789abcdef", 5, b"{}");
        assert!(s.starts_with("t=5,v1="));
        assert_ne!(s, signature(b"0123456789abcdef", 6, b"{}"));
        assert_ne!(s, signature(b"0123456789abcdef", 5, b"{ }"));
        assert_ne!(s, signature(b"0123456789abcdeF", 5, b"{}"));
    }

    #[test]
    fn configs_are_checked() {
        assert!(AlertsConfig::default().validate().is_ok());
        let with = |url: &str, secret: &str| AlertsConfig {
            webhook_url: Some(url.into()),
            webhook_secret: Some(secret.into()),
            rules: Vec::new(),
        };
        assert!(
            with("https://siem.example/x", "0123456789abcdef")
                .validate()
                .is_ok()
        );
        assert!(
            with("http://127.0.0.1:9/x", "0123456789abcdef")
                .validate()
                .is_ok()
        );
        assert!(
            with("http://siem.example/x", "0123456789abcdef")
                .validate()
                .is_err()
        );
        assert!(with("https://siem.example/x", "short").validate().is_err());
        assert!(
            with("ftp://siem.example/x", "0123456789abcdef")
                .validate()
                .is_err()
        );
        let mut bad = AlertsConfig::default();
        bad.rules[0].window_secs = 0;
        assert!(bad.validate().is_err());
        let mut twice = AlertsConfig::default();
        twice.rules.push(twice.rules[0].clone());
        assert!(twice.validate().is_err());
        let debug = format!("{:?}", with("https://x.example", "0123456789abcdef"));
        assert!(!debug.contains("0123456789abcdef"));
    }
}
