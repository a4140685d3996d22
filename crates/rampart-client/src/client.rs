//! [`Client`]: one device's profile, session and conversations.

use crate::clock::Clock;
use crate::error::ClientError;
use crate::store::{HistoryEntry, Store};
use crate::transport::{Http, Socket};
use rampart_core::content::Body;
use rampart_core::guard::TextCheck;
use rampart_core::{
    Conversation, ConversationState, DeviceCredential, Engine, Event, IdentityKey, Outgoing,
    PendingCommit, StoredMessage, VerifiedKeyPackage,
};
use rampart_proto::api::{
    ClaimRequest, ClaimResponse, KeyPackageCount, LoginRequest, MessagePolicy, NewDevice,
    RegisterRequest, SessionResponse, UploadKeyPackages, WhoAmI,
};
use rampart_proto::frame::{ClientFrame, Create, Delivery, SendMessage, ServerFrame};
use rampart_proto::group::GroupSettings;
use rampart_proto::{BlobId, DeviceId, ErrorCode, GroupId, GroupKind, IdempotencyKey, Username};
use rand::RngCore as _;
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// KeyPackages uploaded at a time, and the level below which we top up.
const KEY_PACKAGE_BATCH: usize = 40;
const KEY_PACKAGE_LOW_WATER: u32 = 10;
/// How often a device refreshes its leaf in each group.
const SELF_UPDATE_INTERVAL_MS: u64 = 7 * 24 * 3600 * 1000;
/// Attempts at a commit that keeps losing epoch races.
const COMMIT_ATTEMPTS: usize = 8;
/// How long an interrupted upload is remembered for resuming. The server
/// deletes blobs never sent much sooner by default (after a day); this only
/// bounds how long their keys stay in the profile.
const UPLOAD_RESUME_MS: u64 = 7 * 24 * 3600 * 1000;
/// How long to wait for the server before giving up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) const META_SERVER: &str = "server";
pub(crate) const META_USERNAME: &str = "username";
pub(crate) const META_DEVICE: &str = "device_id";
pub(crate) const META_IDENTITY: &str = "identity_secret";
pub(crate) const META_SIGNER: &str = "signer_public";
pub(crate) const META_TOKEN: &str = "token";
pub(crate) const META_KNOWN_DEVICES: &str = "known_devices";
/// The organisation's message policy as last fetched (JSON), so that the
/// rules hold while offline too.
const META_POLICY: &str = "message_policy";
/// The server's external-sender key, pinned on first use (see
/// [`Client::pin_delivery_key`]).
const META_DELIVERY_KEY: &str = "delivery_key";

/// Whom to talk to: `@user` (1:1) or `#group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    User(Username),
    Group(String),
}

impl Target {
    pub fn parse(s: &str) -> Result<Self, ClientError> {
        if let Some(name) = s.strip_prefix('#') {
            if name.is_empty() {
                return Err(ClientError::Usage("a group target is #NAME".into()));
            }
            Ok(Target::Group(name.to_owned()))
        } else {
            Username::parse(s)
                .map(Target::User)
                .map_err(|e| ClientError::Usage(format!("{s:?} is neither @user nor #group: {e}")))
        }
    }
}

/// What `register` needs.
pub struct Registration<'a> {
    pub server: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub invite: Option<&'a str>,
    pub device_name: &'a str,
}

/// A conversation as listed by `group list`.
#[derive(Clone, Debug, Serialize)]
pub struct GroupSummary {
    pub group_id: GroupId,
    pub kind: &'static str,
    pub name: String,
    pub state: &'static str,
    pub members: Vec<Username>,
}

/// Something about the account or a contact the user must be told, beyond
/// conversation events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alert {
    /// A device was added to this account (linked) since this device last looked.
    NewDevice { device_id: DeviceId, name: String },
    /// The server lists a device of this account that this account's identity
    /// key never certified: it was not added by the user. Clients refuse it.
    UncertifiedDevice { device_id: DeviceId, name: String },
    /// A contact's identity key changed. If they had been verified, nothing
    /// is sent to them until the user confirms again (`rampart verify`).
    IdentityChanged { user: Username, was_verified: bool },
    /// A device of a contact was refused (bad or foreign certificate).
    RefusedDevice {
        user: Username,
        device_id: DeviceId,
        reason: String,
    },
    /// The organisation changed its policy; this device applies it now.
    PolicyUpdated { revision: u64 },
}

pub(crate) enum CommitOutcome {
    Accepted,
    /// Our creating commit lost: the group exists already.
    AlreadyExists,
}

/// One device: its encrypted profile, its session and its live connection.
pub struct Client {
    pub(crate) dir: PathBuf,
    pub(crate) store: Store,
    pub(crate) engine: Engine,
    pub(crate) identity: IdentityKey,
    pub(crate) username: Username,
    pub(crate) device: DeviceId,
    pub(crate) http: Http,
    socket: Option<Socket>,
    /// Deliveries that arrived while a request was in flight; applied after
    /// the reply so our own commit is merged before anything built on it.
    deferred: VecDeque<Delivery>,
    /// Highest sequence number applied and not yet acknowledged.
    unacked: Option<u64>,
    next_request: u32,
    pub(crate) events: Vec<Event>,
    pub(crate) alerts: Vec<Alert>,
    clock: Clock,
    /// The organisation's policy, applied before every send.
    pub(crate) guard: rampart_core::guard::Guard,
    /// The server said the policy changed; fetch it before the next send.
    pub(crate) dlp_stale: bool,
    /// When this session last fetched the policy (this client's clock).
    pub(crate) dlp_fetched_at: Option<u64>,
}

/// What the envelope of a send tells the server.
struct Envelope {
    key: IdempotencyKey,
    expires_in: Option<u32>,
    recalls: Option<IdempotencyKey>,
    attachments: Vec<BlobId>,
}

impl Envelope {
    /// For a proposal: a fresh key, no lifetime.
    fn plain() -> Self {
        let mut key = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self {
            key: IdempotencyKey(key),
            expires_in: None,
            recalls: None,
            attachments: Vec::new(),
        }
    }

    /// For an application message: its own id is the key, so a recall can
    /// name it to the server.
    fn of(out: &Outgoing) -> Self {
        Self {
            key: IdempotencyKey(out.stored.id.0),
            expires_in: out.expires_in,
            recalls: out.recalls.map(|id| IdempotencyKey(id.0)),
            attachments: out.attachments(),
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Client({} {} at {})",
            self.username,
            self.device,
            self.dir.display()
        )
    }
}

fn text_meta(store: &Store, key: &str) -> Result<String, ClientError> {
    let raw = store
        .app()
        .meta(key)?
        .ok_or_else(|| ClientError::Profile(format!("profile is missing {key}")))?;
    String::from_utf8(raw)
        .map_err(|_| ClientError::Profile(format!("profile has a malformed {key}")))
}

impl Client {
    /// Creates an account, this device, and a new encrypted profile in `dir`.
    pub async fn register(
        dir: &Path,
        passphrase: &str,
        reg: Registration<'_>,
    ) -> Result<Self, ClientError> {
        if Store::exists(dir) {
            return Err(ClientError::Profile(format!(
                "{} already holds a profile; use another --profile",
                dir.display()
            )));
        }
        let username =
            Username::parse(reg.username).map_err(|e| ClientError::Usage(e.to_string()))?;
        let identity = IdentityKey::generate();
        let signer = Engine::generate_signer()?;
        let device = rampart_core::engine::new_device_id();
        let signature_key = signer.public().to_vec();
        let certificate = identity.certify(&username, device, &signature_key);
        let http = Http::new(reg.server, None)?;
        // The server first: if it refuses (bad invite, name taken) no profile is left behind.
        let session: SessionResponse = http
            .post(
                "/v1/register",
                &RegisterRequest {
                    username: username.clone(),
                    password: reg.password.to_owned(),
                    invite: reg.invite.map(str::to_owned),
                    identity_key: identity.public().to_vec(),
                    device: NewDevice {
                        device_id: device,
                        name: reg.device_name.to_owned(),
                        signature_key: signature_key.clone(),
                        certificate: certificate.to_vec(),
                    },
                },
            )
            .await?;
        let mut store = Store::create(dir, passphrase)?;
        store.transact(|provider, app| {
            Engine::store_signer(&signer, provider)?;
            app.set_meta(META_SERVER, http.base().as_bytes())?;
            app.set_meta(META_USERNAME, username.as_str().as_bytes())?;
            app.set_meta(META_DEVICE, device.to_string().as_bytes())?;
            app.set_meta(META_IDENTITY, identity.dangerous_secret_bytes().as_slice())?;
            app.set_meta(META_SIGNER, &signature_key)?;
            app.set_meta(META_TOKEN, session.token.as_bytes())?;
            rampart_core::trust::confirm(app, &username, &identity.public())?;
            app.set_meta(META_KNOWN_DEVICES, device.to_string().as_bytes())?;
            Ok(())
        })?;
        let credential = DeviceCredential {
            user: username.clone(),
            device,
            identity_key: identity.public(),
            certificate,
        };
        let mut client = Self::assemble(
            dir,
            store,
            Engine::new(credential, signer),
            identity,
            Some(session.token),
        )?;
        client.replenish_key_packages(true).await?;
        client.refresh_policy().await?;
        client.refresh_dlp_policy_for_sync().await?;
        Ok(client)
    }

    /// Opens the profile in `dir` and deletes the messages that expired
    /// while the program was not running.
    pub fn open(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        Self::open_with_clock(dir, passphrase, Clock::system())
    }

    /// [`Client::open`] with the clock disappearing messages and recall
    /// windows are measured by (a [`Clock::manual`] in tests).
    pub fn open_with_clock(
        dir: &Path,
        passphrase: &str,
        clock: Clock,
    ) -> Result<Self, ClientError> {
        let mut client = Self::open_profile(dir, passphrase)?;
        client.clock = clock;
        client.purge_expired()?;
        Ok(client)
    }

    fn open_profile(dir: &Path, passphrase: &str) -> Result<Self, ClientError> {
        let store = Store::open(dir, passphrase)?;
        let username = Username::parse(&text_meta(&store, META_USERNAME)?)
            .map_err(|_| ClientError::Profile("malformed username".into()))?;
        let device = DeviceId::parse(&text_meta(&store, META_DEVICE)?)
            .map_err(|_| ClientError::Profile("malformed device id".into()))?;
        let secret: [u8; 32] = store
            .app()
            .meta(META_IDENTITY)?
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| ClientError::Profile("identity key missing".into()))?;
        let identity = IdentityKey::from_secret(&secret);
        let signer_public = store
            .app()
            .meta(META_SIGNER)?
            .ok_or_else(|| ClientError::Profile("device key missing".into()))?;
        let signer = Engine::load_signer(&signer_public, &store.provider())?;
        let credential = DeviceCredential {
            certificate: identity.certify(&username, device, &signer_public),
            user: username,
            device,
            identity_key: identity.public(),
        };
        let token = store
            .app()
            .meta(META_TOKEN)?
            .and_then(|t| String::from_utf8(t).ok());
        Self::assemble(dir, store, Engine::new(credential, signer), identity, token)
    }

    pub(crate) fn assemble(
        dir: &Path,
        store: Store,
        mut engine: Engine,
        identity: IdentityKey,
        token: Option<String>,
    ) -> Result<Self, ClientError> {
        let server = text_meta(&store, META_SERVER)?;
        if let Some(policy) = store
            .app()
            .meta(META_POLICY)?
            .and_then(|raw| serde_json::from_slice::<MessagePolicy>(&raw).ok())
        {
            engine.set_policy(policy);
        }
        if let Some(key) = store.app().meta(META_DELIVERY_KEY)? {
            engine.set_delivery_key(key);
        }
        let guard = crate::dlp::cached_guard(&store.app());
        Ok(Self {
            dir: dir.to_path_buf(),
            http: Http::new(&server, token)?,
            username: engine.user().clone(),
            device: engine.device(),
            engine,
            identity,
            store,
            socket: None,
            deferred: VecDeque::new(),
            unacked: None,
            next_request: 1,
            events: vec![],
            alerts: vec![],
            clock: Clock::system(),
            guard,
            dlp_stale: false,
            dlp_fetched_at: None,
        })
    }

    /// Replaces the clock (tests use a manual one).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The organisation's message policy as this device last fetched it.
    pub fn policy(&self) -> &MessagePolicy {
        self.engine.policy()
    }

    /// Fetches the organisation's message policy and keeps it for offline use.
    pub async fn refresh_policy(&mut self) -> Result<(), ClientError> {
        let policy: MessagePolicy = self.http.get("/v1/policy/messages").await?;
        let raw = serde_json::to_vec(&policy)
            .map_err(|_| ClientError::Protocol("encoding the message policy".into()))?;
        self.store.app().set_meta(META_POLICY, &raw)?;
        self.engine.set_policy(policy);
        Ok(())
    }

    /// Learns the server's external-sender key once and keeps it: groups
    /// this device creates list it, and groups naming another are refused.
    /// A server whose key changed later is not believed (its groups fail to
    /// join, loudly), as with a changed identity key.
    async fn pin_delivery_key(&mut self) -> Result<(), ClientError> {
        if self.store.app().meta(META_DELIVERY_KEY)?.is_some() {
            return Ok(());
        }
        let me = self.whoami().await?;
        if me.delivery_key.len() != 32 {
            return Err(ClientError::Protocol(
                "the server did not say which key it signs group proposals with".into(),
            ));
        }
        self.store
            .app()
            .set_meta(META_DELIVERY_KEY, &me.delivery_key)?;
        self.engine.set_delivery_key(me.delivery_key);
        Ok(())
    }

    /// Deletes, for good, the messages whose time is up. Runs at start and
    /// on every sync; returns how many went.
    pub fn purge_expired(&mut self) -> Result<u64, ClientError> {
        let now = self.now();
        let n = self.store.app().purge_expired(now)?;
        self.store
            .app()
            .forget_uploads_before(now.saturating_sub(UPLOAD_RESUME_MS))?;
        if n > 0 {
            tracing::debug!(count = n, "expired messages deleted");
            self.sweep_downloads()?;
        }
        Ok(n)
    }

    pub fn username(&self) -> &Username {
        &self.username
    }

    pub fn device(&self) -> DeviceId {
        self.device
    }

    pub fn server(&self) -> &str {
        self.http.base()
    }

    pub fn is_logged_in(&self) -> bool {
        self.store.app().meta(META_TOKEN).ok().flatten().is_some()
    }

    /// Logs this device in again (after `logout` or an expired session).
    /// `totp` is a current code or a recovery code, needed when the account
    /// has two-factor authentication (else the server answers
    /// `two_factor_required`).
    pub async fn login(&mut self, password: &str, totp: Option<&str>) -> Result<(), ClientError> {
        let http = Http::new(self.http.base(), None)?;
        let session: SessionResponse = http
            .post(
                "/v1/login",
                &LoginRequest {
                    username: self.username.clone(),
                    password: password.to_owned(),
                    device_id: self.device,
                    totp: totp.map(str::to_owned),
                    new_device: None,
                },
            )
            .await?;
        self.store
            .app()
            .set_meta(META_TOKEN, session.token.as_bytes())?;
        self.http = Http::new(self.http.base(), Some(session.token))?;
        Ok(())
    }

    /// Signs in as a NEW device of this profile's account, for an account
    /// none of whose devices is live any more (an administrator disabled and
    /// re-enabled it, or every device was revoked). The new device is
    /// certified by the account's identity key, which only this profile
    /// holds, on top of the password and second factor; an account that
    /// still has a live device must approve new ones from it (`link`).
    ///
    /// The old device's conversations were taken from it by the groups'
    /// members; their history stays here, marked left, until someone adds
    /// the account back.
    pub async fn login_as_new_device(
        &mut self,
        password: &str,
        totp: Option<&str>,
        device_name: &str,
    ) -> Result<(), ClientError> {
        let signer = Engine::generate_signer()?;
        let device = rampart_core::engine::new_device_id();
        let signature_key = signer.public().to_vec();
        let certificate = self
            .identity
            .certify(&self.username, device, &signature_key);
        let http = Http::new(self.http.base(), None)?;
        let session: SessionResponse = http
            .post(
                "/v1/login",
                &LoginRequest {
                    username: self.username.clone(),
                    password: password.to_owned(),
                    device_id: device,
                    totp: totp.map(str::to_owned),
                    new_device: Some(NewDevice {
                        device_id: device,
                        name: device_name.to_owned(),
                        signature_key: signature_key.clone(),
                        certificate: certificate.to_vec(),
                    }),
                },
            )
            .await?;
        let groups: Vec<GroupId> = self
            .store
            .app()
            .conversations()?
            .into_iter()
            .filter(|c| c.state != ConversationState::Left)
            .map(|c| c.group)
            .collect();
        self.store.transact(|provider, app| {
            for group in &groups {
                Engine::forget_group(provider, app, group)?;
            }
            Engine::store_signer(&signer, provider)?;
            app.set_meta(META_DEVICE, device.to_string().as_bytes())?;
            app.set_meta(META_SIGNER, &signature_key)?;
            app.set_meta(META_TOKEN, session.token.as_bytes())?;
            app.set_meta(META_KNOWN_DEVICES, device.to_string().as_bytes())?;
            Ok(())
        })?;
        let mut engine = Engine::new(
            DeviceCredential {
                user: self.username.clone(),
                device,
                identity_key: self.identity.public(),
                certificate,
            },
            signer,
        );
        engine.set_policy(self.engine.policy().clone());
        if let Some(key) = self.store.app().meta(META_DELIVERY_KEY)? {
            engine.set_delivery_key(key);
        }
        self.engine = engine;
        self.device = device;
        self.socket = None;
        self.deferred.clear();
        self.unacked = None;
        self.http = Http::new(self.http.base(), Some(session.token))?;
        self.replenish_key_packages(true).await
    }

    /// Ends the session on the server and forgets the token.
    pub async fn logout(&mut self) -> Result<(), ClientError> {
        if let Some(socket) = self.socket.take() {
            socket.close().await;
        }
        let result: Result<serde_json::Value, ClientError> =
            self.http.post("/v1/logout", &serde_json::json!({})).await;
        self.store.app().delete_meta(META_TOKEN)?;
        self.http = Http::new(self.http.base(), None)?;
        match result {
            Ok(_) => Ok(()),
            // Already logged out on the server: the local token is gone too now.
            Err(e) if e.code() == Some(ErrorCode::Unauthorized) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// What the server says about this session.
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.http.get("/v1/me").await
    }

    fn next_id(&mut self) -> u32 {
        self.next_request = self.next_request.wrapping_add(1).max(1);
        self.next_request
    }

    /// Events gathered since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Alerts gathered since the last call (new devices, changed keys).
    pub fn take_alerts(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.alerts)
    }

    // ---- connection and delivery -------------------------------------------------

    /// Connects (if needed) and applies the whole backlog.
    pub async fn connect(&mut self) -> Result<(), ClientError> {
        if self.socket.is_some() {
            return Ok(());
        }
        // Before the backlog: Welcomes are checked against it.
        if !self.engine.has_delivery_key() {
            self.pin_delivery_key().await?;
        }
        self.socket = Some(self.http.websocket().await?);
        loop {
            match self.read_frame().await? {
                ServerFrame::Deliver(d) => self.apply(d)?,
                ServerFrame::BacklogDone { .. } => break,
                _ => {}
            }
        }
        self.flush_ack().await
    }

    async fn read_frame(&mut self) -> Result<ServerFrame, ClientError> {
        let socket = self.socket.as_mut().ok_or(ClientError::NotLoggedIn)?;
        let frame = tokio::time::timeout(REPLY_TIMEOUT, socket.next())
            .await
            .map_err(|_| ClientError::Timeout("waiting for the server"))??;
        match frame {
            Some(ServerFrame::Error { code, message }) => {
                self.socket = None;
                Err(ClientError::Server {
                    code,
                    message,
                    current_epoch: None,
                })
            }
            Some(frame) => {
                if let ServerFrame::PolicyChanged { revision } = frame {
                    self.dlp_stale |= revision != self.guard.revision();
                }
                Ok(frame)
            }
            None => {
                self.socket = None;
                Err(ClientError::Protocol(
                    "the server closed the connection".into(),
                ))
            }
        }
    }

    /// Applies one delivery in one transaction.
    fn apply(&mut self, delivery: Delivery) -> Result<(), ClientError> {
        let now = self.now();
        let engine = &self.engine;
        let events = self
            .store
            .transact(|p, app| Ok(engine.receive(p, app, &delivery, now)?))?;
        for event in &events {
            match event {
                Event::Dropped { reason, .. } => {
                    tracing::debug!(seq = delivery.seq, %reason, "delivery dropped");
                }
                // The erased text must not survive in the write-ahead log,
                // nor a recalled file's partial download.
                Event::Recalled { .. } => {
                    self.store.app().checkpoint();
                    self.sweep_downloads()?;
                }
                _ => {}
            }
        }
        self.events.extend(events);
        self.unacked = Some(delivery.seq);
        Ok(())
    }

    async fn flush_ack(&mut self) -> Result<(), ClientError> {
        if let (Some(up_to), Some(socket)) = (self.unacked, self.socket.as_mut()) {
            socket.send(&ClientFrame::Ack { up_to }).await?;
            self.unacked = None;
        }
        Ok(())
    }

    async fn apply_deferred(&mut self) -> Result<(), ClientError> {
        while let Some(d) = self.deferred.pop_front() {
            self.apply(d)?;
        }
        self.flush_ack().await
    }

    /// Sends a request and waits for its answer; deliveries arriving meanwhile
    /// are deferred until the caller has handled the answer.
    async fn request(
        &mut self,
        frame: ClientFrame,
        request_id: u32,
    ) -> Result<ServerFrame, ClientError> {
        self.connect().await?;
        self.socket
            .as_mut()
            .ok_or(ClientError::NotLoggedIn)?
            .send(&frame)
            .await?;
        loop {
            match self.read_frame().await? {
                ServerFrame::Deliver(d) => self.deferred.push_back(d),
                reply @ (ServerFrame::Accepted { request_id: r, .. }
                | ServerFrame::Rejected { request_id: r, .. })
                    if r == request_id =>
                {
                    return Ok(reply);
                }
                _ => {}
            }
        }
    }

    /// Waits for and applies the next live delivery; returns the events it caused.
    pub async fn next_events(&mut self) -> Result<Vec<Event>, ClientError> {
        self.connect().await?;
        if !self.deferred.is_empty() {
            self.apply_deferred().await?;
        } else {
            let socket = self.socket.as_mut().ok_or(ClientError::NotLoggedIn)?;
            match socket.next().await? {
                Some(ServerFrame::Deliver(d)) => {
                    self.apply(d)?;
                    self.flush_ack().await?;
                }
                Some(ServerFrame::Error { code, message }) => {
                    self.socket = None;
                    return Err(ClientError::Server {
                        code,
                        message,
                        current_epoch: None,
                    });
                }
                Some(ServerFrame::PolicyChanged { revision }) => {
                    self.dlp_stale |= revision != self.guard.revision();
                }
                Some(_) => {}
                None => {
                    self.socket = None;
                    return Err(ClientError::Protocol(
                        "the server closed the connection".into(),
                    ));
                }
            }
        }
        if self.dlp_stale {
            self.refresh_dlp_policy_for_sync().await?;
        }
        self.commit_queued_leaves().await?;
        // A long-running session (chat, bots) deletes on time too.
        self.purge_expired()?;
        Ok(self.take_events())
    }

    /// Fetches and applies everything pending, does due housekeeping
    /// (commits for members who left, self-updates, KeyPackages), and returns
    /// what happened.
    pub async fn sync(&mut self) -> Result<Vec<Event>, ClientError> {
        // Reconnect: the server then sends everything still queued, followed by
        // BacklogDone, which is how we know we have seen all that is pending.
        self.apply_deferred().await?;
        if let Some(socket) = self.socket.take() {
            socket.close().await;
        }
        self.refresh_policy().await?;
        self.refresh_dlp_policy_for_sync().await?;
        self.connect().await?;
        self.apply_deferred().await?;
        self.purge_expired()?;
        if let Err(e) = self.flush_dlp_events().await {
            tracing::debug!(error = %e, "DLP events kept for later");
        }
        self.commit_queued_leaves().await?;
        self.self_update_due().await?;
        self.replenish_key_packages(false).await?;
        self.check_own_devices().await?;
        Ok(self.take_events())
    }

    /// Someone asked to leave: commit it (all members try; the first wins).
    /// Cheap when nothing is queued, so it runs after every live delivery.
    async fn commit_queued_leaves(&mut self) -> Result<(), ClientError> {
        let queued: Vec<GroupId> = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::ProposalQueued { group } => Some(*group),
                _ => None,
            })
            .collect();
        for group in queued {
            if self
                .engine
                .has_pending_proposals(&self.store.provider(), &group)?
            {
                let result = self
                    .run_commit(group, |engine, p, app| {
                        engine
                            .commit_pending(p, app, &group)?
                            .ok_or(ClientError::Usage("nothing to commit".into()))
                    })
                    .await;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "committing a pending leave failed; another member may have done it");
                }
            }
        }
        Ok(())
    }

    /// Periodic self-update (post-compromise security heals only through
    /// commits). Reads every conversation, so it runs at sync, not per message.
    async fn self_update_due(&mut self) -> Result<(), ClientError> {
        let now = self.now();
        let due: Vec<GroupId> = self
            .store
            .app()
            .conversations()?
            .into_iter()
            .filter(|c| {
                c.state == ConversationState::Active
                    && now.saturating_sub(c.last_self_update) > SELF_UPDATE_INTERVAL_MS
            })
            .map(|c| c.group)
            .collect();
        for group in due {
            if let Err(e) = self
                .run_commit(group, |engine, p, app| {
                    Ok(engine.self_update(p, app, &group)?)
                })
                .await
            {
                tracing::debug!(error = %e, "self-update failed; will retry at next sync");
            }
        }
        Ok(())
    }

    pub(crate) async fn replenish_key_packages(&mut self, force: bool) -> Result<(), ClientError> {
        let count: KeyPackageCount = self.http.get("/v1/key-packages/count").await?;
        if !force && count.count >= KEY_PACKAGE_LOW_WATER && count.has_last_resort {
            return Ok(());
        }
        let engine = &self.engine;
        let (key_packages, last_resort) = self.store.transact(|p, _| {
            let batch = engine.key_packages(p, KEY_PACKAGE_BATCH, false)?;
            let last = if count.has_last_resort {
                None
            } else {
                engine.key_packages(p, 1, true)?.pop()
            };
            Ok((batch, last))
        })?;
        let _: KeyPackageCount = self
            .http
            .post(
                "/v1/key-packages",
                &UploadKeyPackages {
                    key_packages,
                    last_resort,
                },
            )
            .await?;
        Ok(())
    }

    // ---- commits -----------------------------------------------------------------

    /// Builds a commit, sends it, and merges it once accepted. A commit that
    /// lost an epoch race is discarded, the winner's commit applied, and the
    /// change rebuilt on the new epoch — invisibly to the user.
    pub(crate) async fn run_commit<F>(
        &mut self,
        group: GroupId,
        build: F,
    ) -> Result<CommitOutcome, ClientError>
    where
        F: Fn(
            &Engine,
            &rampart_core::Provider<crate::store::MlsStorage<'_>>,
            &crate::store::AppDb<'_>,
        ) -> Result<PendingCommit, ClientError>,
    {
        for _ in 0..COMMIT_ATTEMPTS {
            let engine = &self.engine;
            let pending = self.store.transact(|p, app| build(engine, p, app))?;
            let request_id = self.next_id();
            let mut bundle = pending.bundle.clone();
            bundle.request_id = request_id;
            let is_create = bundle.create.is_some();
            let reply = self.request(ClientFrame::Commit(bundle), request_id).await;
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    // Unknown outcome: drop our staged commit; the next sync shows what happened.
                    let engine = &self.engine;
                    let _ = self
                        .store
                        .transact(|p, app| Ok(engine.commit_rejected(p, app, &group)?));
                    return Err(e);
                }
            };
            let engine = &self.engine;
            match reply {
                ServerFrame::Accepted { .. } => {
                    let now = self.now();
                    let events = self
                        .store
                        .transact(|p, app| Ok(engine.commit_accepted(p, app, &pending, now)?))?;
                    self.events.extend(events);
                    self.apply_deferred().await?;
                    return Ok(CommitOutcome::Accepted);
                }
                ServerFrame::Rejected {
                    code,
                    current_epoch,
                    message,
                    ..
                } => {
                    self.store
                        .transact(|p, app| Ok(engine.commit_rejected(p, app, &group)?))?;
                    self.apply_deferred().await?;
                    match (code, current_epoch) {
                        (ErrorCode::Conflict, _) if is_create => {
                            return Ok(CommitOutcome::AlreadyExists);
                        }
                        (ErrorCode::StaleEpoch, Some(epoch)) if is_create && epoch > 0 => {
                            return Ok(CommitOutcome::AlreadyExists);
                        }
                        (ErrorCode::StaleEpoch, Some(epoch)) => self.catch_up(group, epoch).await?,
                        _ => {
                            return Err(ClientError::Server {
                                code,
                                message,
                                current_epoch,
                            });
                        }
                    }
                }
                _ => return Err(ClientError::Protocol("unexpected reply to a commit".into())),
            }
        }
        Err(ClientError::Timeout(
            "retrying a commit that keeps losing to concurrent changes",
        ))
    }

    /// Applies deliveries until `group` reaches `epoch`.
    async fn catch_up(&mut self, group: GroupId, epoch: u64) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
        loop {
            let current = self.engine.epoch(&self.store.provider(), &group)?;
            if current.is_none_or(|e| e >= epoch) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ClientError::Timeout("catching up with the group"));
            }
            if let ServerFrame::Deliver(d) = self.read_frame().await? {
                self.apply(d)?;
                self.flush_ack().await?;
            }
        }
    }

    /// Waits until this device is an active member of `group` (a Welcome arrived).
    async fn wait_for_membership(&mut self, group: GroupId) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            self.apply_deferred().await?;
            if self.is_active(&group)? {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ClientError::Usage(
                    "that conversation exists but this device is not in it; ask a member to add you".into(),
                ));
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Ok(frame) = tokio::time::timeout(remaining, self.read_frame()).await
                && let ServerFrame::Deliver(d) = frame?
            {
                self.apply(d)?;
                self.flush_ack().await?;
            }
        }
    }

    pub(crate) fn is_active(&self, group: &GroupId) -> Result<bool, ClientError> {
        Ok(
            rampart_core::AppStore::conversation(&self.store.app(), group)
                .map_err(ClientError::store)?
                .is_some_and(|c| c.state == ConversationState::Active)
                && self.engine.epoch(&self.store.provider(), group)?.is_some(),
        )
    }

    /// Claims and verifies one KeyPackage for every device of `users` (except
    /// this one), or only for `devices` when given. Devices whose certificate
    /// does not verify under their account's identity key are skipped with an
    /// alert: they were not made by their owner.
    pub(crate) async fn claim(
        &mut self,
        users: &[Username],
        devices: Option<Vec<DeviceId>>,
    ) -> Result<Vec<VerifiedKeyPackage>, ClientError> {
        let claimed: ClaimResponse = self
            .http
            .post(
                "/v1/key-packages/claim",
                &ClaimRequest {
                    users: users.to_vec(),
                    devices,
                },
            )
            .await?;
        let engine = &self.engine;
        let mut verified = vec![];
        for user in &claimed.users {
            let account_key: [u8; 32] = user.identity_key.as_slice().try_into().map_err(|_| {
                ClientError::Protocol(format!(
                    "the identity key of @{} is malformed",
                    user.username
                ))
            })?;
            let mut found = false;
            for kp in &user.key_packages {
                let result = self.store.transact(|p, app| {
                    Ok(engine.verify_key_package(
                        p,
                        app,
                        &user.username,
                        &account_key,
                        kp.device_id,
                        &kp.key_package,
                    )?)
                });
                match result {
                    Ok(v) => {
                        if v.identity_changed {
                            self.alerts.push(Alert::IdentityChanged {
                                user: user.username.clone(),
                                was_verified: false,
                            });
                        }
                        found = true;
                        verified.push(v);
                    }
                    Err(ClientError::Core(
                        e @ (rampart_core::CoreError::ForeignDevice(_)
                        | rampart_core::CoreError::BadCertificate { .. }
                        | rampart_core::CoreError::WrongKeyPackage { .. }
                        | rampart_core::CoreError::Malformed(_)),
                    )) => {
                        tracing::warn!(user = %user.username, device = %kp.device_id, "refused a device");
                        self.alerts.push(Alert::RefusedDevice {
                            user: user.username.clone(),
                            device_id: kp.device_id,
                            reason: e.to_string(),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            if !found && user.username != self.username {
                return Err(ClientError::Usage(format!(
                    "@{} has no device that can be added right now (no KeyPackages left, or none that verifies); ask them to run `rampart sync`",
                    user.username
                )));
            }
        }
        Ok(verified)
    }

    // ---- conversations -----------------------------------------------------------

    /// Resolves a target to a conversation, creating the 1:1 group if needed.
    pub(crate) async fn conversation_for(
        &mut self,
        target: &Target,
    ) -> Result<GroupId, ClientError> {
        match target {
            Target::Group(name) => self.resolve_group(name),
            Target::User(peer) => {
                if *peer == self.username {
                    return Err(ClientError::Usage(
                        "you cannot start a 1:1 conversation with yourself".into(),
                    ));
                }
                let group = GroupId::direct(&self.username, peer);
                self.connect().await?;
                self.apply_deferred().await?;
                if self.is_active(&group)? {
                    return Ok(group);
                }
                let members = self
                    .claim(&[peer.clone(), self.username.clone()], None)
                    .await?;
                let peer2 = peer.clone();
                let now = self.now();
                let outcome = self
                    .run_commit(group, move |engine, p, app| {
                        Ok(engine.create_group(
                            p,
                            app,
                            group,
                            Create::Direct {
                                peer: peer2.clone(),
                            },
                            None,
                            None,
                            members.clone(),
                            now,
                        )?)
                    })
                    .await?;
                match outcome {
                    CommitOutcome::AlreadyExists => self.wait_for_membership(group).await?,
                    CommitOutcome::Accepted => self.start_default_timer(group).await?,
                }
                Ok(group)
            }
        }
    }

    /// Finds a group by display name (or id prefix).
    pub(crate) fn resolve_group(&self, name: &str) -> Result<GroupId, ClientError> {
        let conversations = self.store.app().conversations()?;
        let matches: Vec<&Conversation> = conversations
            .iter()
            .filter(|c| c.kind == GroupKind::Group && c.state != ConversationState::Pending)
            .filter(|c| {
                c.name.as_deref() == Some(name)
                    || (name.len() >= 6 && c.group.to_string().starts_with(name))
            })
            .collect();
        let active: Vec<&&Conversation> = matches
            .iter()
            .filter(|c| c.state == ConversationState::Active)
            .collect();
        match (active.as_slice(), matches.as_slice()) {
            ([one], _) => Ok(one.group),
            ([], [one]) => Ok(one.group),
            ([], []) => Err(ClientError::Usage(format!(
                "no group named #{name} on this device; `rampart group list` shows yours (run `rampart sync` first if you were just added)"
            ))),
            _ => Err(ClientError::Usage(format!(
                "several groups are named #{name}; use an id prefix from `rampart group list`"
            ))),
        }
    }

    pub(crate) async fn send_body(
        &mut self,
        group: GroupId,
        body: Body,
    ) -> Result<StoredMessage, ClientError> {
        let now = self.now();
        let engine = &self.engine;
        let out = self
            .store
            .transact(|p, app| Ok(engine.send(p, app, &group, body, now, None)?))?;
        self.deliver(out).await
    }

    /// Sends an application message and, once the server accepted it,
    /// applies it here (history, timer, recall, edit).
    pub(crate) async fn deliver(
        &mut self,
        mut out: Outgoing,
    ) -> Result<StoredMessage, ClientError> {
        let group = out.stored.group;
        for _ in 0..COMMIT_ATTEMPTS {
            match self
                .send_mls(group, out.mls.clone(), Envelope::of(&out))
                .await
            {
                // A commit got in first: members it added could not read this
                // epoch's copy. Catch up and encrypt the same message again.
                Err(ClientError::Server {
                    code: ErrorCode::StaleEpoch,
                    current_epoch: Some(epoch),
                    ..
                }) => {
                    self.catch_up(group, epoch).await?;
                    let engine = &self.engine;
                    out.mls = self
                        .store
                        .transact(|p, app| Ok(engine.encrypt_again(p, app, &out.stored)?))?;
                }
                Err(e) => return Err(e),
                Ok(()) => {
                    let engine = &self.engine;
                    self.store
                        .transact(|_, app| Ok(engine.record_sent(app, &out)?))?;
                    if out.recalls.is_some() {
                        self.store.app().checkpoint();
                    }
                    return Ok(out.stored);
                }
            }
        }
        Err(ClientError::Timeout(
            "sending while the conversation keeps changing",
        ))
    }

    /// Sends one MLS message (application or proposal) and waits until the
    /// server stored it durably.
    async fn send_mls(
        &mut self,
        group: GroupId,
        message: Vec<u8>,
        envelope: Envelope,
    ) -> Result<(), ClientError> {
        let request_id = self.next_id();
        let frame = ClientFrame::Send(SendMessage {
            request_id,
            key: envelope.key,
            group,
            expires_in: envelope.expires_in,
            recalls: envelope.recalls,
            attachments: envelope.attachments,
            message,
        });
        let reply = self.request(frame, request_id).await?;
        self.apply_deferred().await?;
        match reply {
            ServerFrame::Accepted { .. } => Ok(()),
            ServerFrame::Rejected {
                code,
                message,
                current_epoch,
                ..
            } => Err(ClientError::Server {
                code,
                message,
                current_epoch,
            }),
            _ => Err(ClientError::Protocol("unexpected reply to a send".into())),
        }
    }

    /// Encrypts a text for `target` without sending it: the group and the MLS
    /// bytes. For load generators (`rampart bench`), which replay it raw.
    pub async fn prepare_text(
        &mut self,
        target: &Target,
        text: &str,
    ) -> Result<(GroupId, Vec<u8>), ClientError> {
        let group = self.conversation_for(target).await?;
        let engine = &self.engine;
        let now = self.now();
        let out = self.store.transact(|p, app| {
            Ok(engine.send(p, app, &group, Body::Text(text.to_owned()), now, None)?)
        })?;
        Ok((group, out.mls))
    }

    /// The REST client of this session (for raw WebSockets in benchmarks).
    pub fn http(&self) -> &Http {
        &self.http
    }

    /// Sends a text message to `@user` or `#group`.
    pub async fn send_text(
        &mut self,
        target: &Target,
        text: &str,
    ) -> Result<StoredMessage, ClientError> {
        self.send_text_expiring(target, text, None).await
    }

    /// Sends a text that disappears `expire_secs` after sending instead of
    /// when the conversation's timer says.
    pub async fn send_text_expiring(
        &mut self,
        target: &Target,
        text: &str,
        expire_secs: Option<u32>,
    ) -> Result<StoredMessage, ClientError> {
        self.send_text_with(target, text, expire_secs, false)
            .await
            .map(|(sent, _)| sent)
    }

    /// Sends a text once the organisation's policy has checked it: a
    /// blocked text is refused ([`ClientError::Blocked`]), one with
    /// warnings needs `confirmed` ([`ClientError::NeedsConfirmation`]), and
    /// findings the policy redacts are masked before encryption. What fired
    /// is reported to the server (rule and action, never the text).
    /// Returns the message as sent and what the policy found in it.
    pub async fn send_text_with(
        &mut self,
        target: &Target,
        text: &str,
        expire_secs: Option<u32>,
        confirmed: bool,
    ) -> Result<(StoredMessage, TextCheck), ClientError> {
        self.ensure_current_policy().await?;
        let check = self
            .screen(self.target_group(target)?, text, confirmed)
            .await?;
        let group = self.conversation_for(target).await?;
        let now = self.now();
        let body = check.text_to_send(text).into_owned();
        let engine = &self.engine;
        let out = self.store.transact(|p, app| {
            Ok(engine.send(p, app, &group, Body::Text(body), now, expire_secs)?)
        })?;
        let stored = self.deliver(out).await?;
        self.report_dlp(group, &check).await;
        Ok((stored, check))
    }

    /// Sets the disappearing-messages timer of a conversation (`None`: off).
    pub async fn set_timer(
        &mut self,
        target: &Target,
        timer: Option<u32>,
    ) -> Result<StoredMessage, ClientError> {
        let group = self.conversation_for(target).await?;
        self.set_group_timer(group, timer).await
    }

    async fn set_group_timer(
        &mut self,
        group: GroupId,
        timer: Option<u32>,
    ) -> Result<StoredMessage, ClientError> {
        let now = self.now();
        let engine = &self.engine;
        let out = self
            .store
            .transact(|p, app| Ok(engine.set_timer(p, app, &group, timer, now)?))?;
        self.deliver(out).await
    }

    /// A new conversation starts with the organisation's default timer, if
    /// it sets one: announced like any timer change, so every member agrees.
    async fn start_default_timer(&mut self, group: GroupId) -> Result<(), ClientError> {
        if let Some(timer) = self.engine.policy().default_timer_secs {
            self.set_group_timer(group, Some(timer)).await?;
        }
        Ok(())
    }

    /// The message with this id (or unique id prefix) on this device.
    pub fn find_message(&self, id: &str) -> Result<StoredMessage, ClientError> {
        self.store.app().find_message(id)?.ok_or_else(|| {
            ClientError::Usage(format!(
                "no message {id} on this device; `rampart inbox --all --ids` lists message ids"
            ))
        })
    }

    /// Deletes a message for everyone ("message deleted"): your own within
    /// the recall window, any message if you administer the group.
    pub async fn recall(&mut self, id: &str) -> Result<StoredMessage, ClientError> {
        self.connect().await?;
        self.apply_deferred().await?;
        let target = self.find_message(id)?;
        let now = self.now();
        let engine = &self.engine;
        let out = self
            .store
            .transact(|p, app| Ok(engine.recall(p, app, &target.group, &target.id, now)?))?;
        self.deliver(out).await
    }

    /// Replaces the text of one of your messages (shown as "edited").
    pub async fn edit(&mut self, id: &str, text: &str) -> Result<StoredMessage, ClientError> {
        self.edit_with(id, text, false).await.map(|(sent, _)| sent)
    }

    /// [`Client::edit`], with the new text checked like a new message (see
    /// [`Client::send_text_with`]).
    pub async fn edit_with(
        &mut self,
        id: &str,
        text: &str,
        confirmed: bool,
    ) -> Result<(StoredMessage, TextCheck), ClientError> {
        self.connect().await?;
        self.apply_deferred().await?;
        self.ensure_current_policy().await?;
        let target = self.find_message(id)?;
        let check = self.screen(target.group, text, confirmed).await?;
        let text = check.text_to_send(text).into_owned();
        let now = self.now();
        let engine = &self.engine;
        let out = self
            .store
            .transact(|p, app| Ok(engine.edit(p, app, &target.group, &target.id, &text, now)?))?;
        let stored = self.deliver(out).await?;
        self.report_dlp(target.group, &check).await;
        Ok((stored, check))
    }

    /// Creates a named group with `members` (all their devices, and this
    /// user's other devices). This user is its admin; `settings` may name
    /// more admins and restrict the timer to admins.
    pub async fn create_group(
        &mut self,
        name: &str,
        members: &[Username],
        settings: Option<GroupSettings>,
    ) -> Result<GroupId, ClientError> {
        if name.is_empty()
            || name.len() > rampart_core::content::MAX_GROUP_NAME_LEN
            || name.starts_with('#')
        {
            return Err(ClientError::Usage(
                "group names are 1-64 bytes and do not start with '#'".into(),
            ));
        }
        self.connect().await?;
        let mut users: Vec<Username> = members
            .iter()
            .filter(|u| **u != self.username)
            .cloned()
            .collect();
        users.sort();
        users.dedup();
        users.push(self.username.clone());
        let kps = self.claim(&users, None).await?;
        let mut random = [0u8; 31];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let group = GroupId::new_group(random);
        let name_owned = name.to_owned();
        let now = self.now();
        self.run_commit(group, move |engine, p, app| {
            Ok(engine.create_group(
                p,
                app,
                group,
                Create::Group,
                Some(name_owned.clone()),
                settings.clone(),
                kps.clone(),
                now,
            )?)
        })
        .await?;
        self.send_body(group, Body::GroupName(name.to_owned()))
            .await?;
        self.start_default_timer(group).await?;
        Ok(group)
    }

    /// Adds every device of `user` to the group.
    pub async fn add_member(
        &mut self,
        group_name: &str,
        user: &Username,
    ) -> Result<(), ClientError> {
        self.connect().await?;
        let group = self.resolve_group(group_name)?;
        let members = self.members(&group)?;
        if members.iter().any(|(u, _)| u == user) {
            return Err(ClientError::Usage(format!(
                "@{user} is already a member of #{group_name}"
            )));
        }
        let kps = self.claim(std::slice::from_ref(user), None).await?;
        self.run_commit(group, move |engine, p, app| {
            Ok(engine.add_members(p, app, &group, kps.clone())?)
        })
        .await?;
        let name = rampart_core::AppStore::conversation(&self.store.app(), &group)
            .map_err(ClientError::store)?
            .and_then(|c| c.name);
        if let Some(name) = name {
            self.send_body(group, Body::GroupName(name)).await?;
        }
        Ok(())
    }

    /// Removes every device of `user` from the group.
    pub async fn remove_member(
        &mut self,
        group_name: &str,
        user: &Username,
    ) -> Result<(), ClientError> {
        self.connect().await?;
        let group = self.resolve_group(group_name)?;
        let users = vec![user.clone()];
        self.run_commit(group, move |engine, p, app| {
            Ok(engine.remove_users(p, app, &group, &users)?)
        })
        .await
        .map(|_| ())
    }

    /// Leaves the group: this device proposes its removal, which the next
    /// member to sync commits. Nothing more can be sent or read here.
    pub async fn leave_group(&mut self, group_name: &str) -> Result<(), ClientError> {
        // A proposal is only valid in the current epoch and, unlike a commit,
        // is not checked against it by the server: catch up fully first.
        self.sync().await?;
        let group = self.resolve_group(group_name)?;
        let engine = &self.engine;
        let proposal = self
            .store
            .transact(|p, app| Ok(engine.leave(p, app, &group)?))?;
        self.send_mls(group, proposal, Envelope::plain()).await
    }

    /// The roles and rules of a group, as its MLS context says (`None` for
    /// a 1:1 conversation).
    pub fn group_settings(&self, name: &str) -> Result<Option<GroupSettings>, ClientError> {
        let group = self.resolve_group(name)?;
        Ok(self.engine.settings(&self.store.provider(), &group)?)
    }

    /// Changes a group's roles or rules by a commit: `change` edits a copy
    /// of the current settings. Only the group's admins may; every member's
    /// client and the server check it.
    pub async fn update_group_settings(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut GroupSettings),
    ) -> Result<GroupSettings, ClientError> {
        self.connect().await?;
        let group = self.resolve_group(name)?;
        let mut settings = self
            .engine
            .settings(&self.store.provider(), &group)?
            .ok_or_else(|| ClientError::Usage(format!("#{name} has no settings to change")))?;
        change(&mut settings);
        // Roles of people no longer in the group are forgotten.
        let members = self.members(&group)?;
        settings.retain_users(|user| members.iter().any(|(u, _)| u == user));
        let wanted = settings.clone();
        self.run_commit(group, move |engine, p, app| {
            Ok(engine.update_settings(p, app, &group, wanted.clone())?)
        })
        .await?;
        Ok(settings)
    }

    /// (user, device) of each member of a conversation, as MLS says.
    pub fn members(&self, group: &GroupId) -> Result<Vec<(Username, DeviceId)>, ClientError> {
        Ok(self.engine.member_devices(&self.store.provider(), group)?)
    }

    /// Members of a group named `name`.
    pub fn group_members(&self, name: &str) -> Result<Vec<(Username, DeviceId)>, ClientError> {
        let group = self.resolve_group(name)?;
        self.members(&group)
    }

    /// This device's conversations.
    pub fn groups(&self) -> Result<Vec<GroupSummary>, ClientError> {
        let mut out = vec![];
        for c in self.store.app().conversations()? {
            if c.state == ConversationState::Pending {
                continue;
            }
            let mut members: Vec<Username> = match self.members(&c.group) {
                Ok(m) => m.into_iter().map(|(u, _)| u).collect(),
                Err(_) => vec![],
            };
            members.dedup();
            out.push(GroupSummary {
                group_id: c.group,
                kind: match c.kind {
                    GroupKind::Group => "group",
                    GroupKind::Direct => "direct",
                },
                name: match (&c.name, &c.peer) {
                    (_, Some(peer)) => format!("@{peer}"),
                    (Some(n), None) => format!("#{n}"),
                    (None, None) => format!("#{}", c.group.short()),
                },
                state: match c.state {
                    ConversationState::Active => "active",
                    ConversationState::Left => "left",
                    ConversationState::Pending => "pending",
                },
                members,
            });
        }
        Ok(out)
    }

    /// Display name of a conversation: `@peer` or `#name`.
    pub fn conversation_label(&self, group: &GroupId) -> String {
        match rampart_core::AppStore::conversation(&self.store.app(), group) {
            Ok(Some(c)) => match (c.peer, c.name) {
                (Some(peer), _) => format!("@{peer}"),
                (None, Some(name)) => format!("#{name}"),
                (None, None) => format!("#{}", group.short()),
            },
            _ => format!("#{}", group.short()),
        }
    }

    /// Messages: unread ones (marking them read), or all with `all`.
    pub fn inbox(&self, all: bool) -> Result<Vec<HistoryEntry>, ClientError> {
        let mut entries = self.store.app().history(None, all, true)?;
        self.add_warnings(&mut entries);
        Ok(entries)
    }

    /// Explains the risks of received links and files, by the policy now
    /// in force (so a domain blocked today is flagged in old messages too).
    fn add_warnings(&self, entries: &mut [HistoryEntry]) {
        for e in entries.iter_mut().filter(|e| !e.outgoing && !e.recalled) {
            let name = e.file.as_ref().map(|f| f.name.as_str());
            e.warnings = self.guard.incoming_warnings(&e.text, name);
        }
    }

    /// The history of one conversation.
    pub async fn history(
        &mut self,
        target: &Target,
    ) -> Result<(GroupId, Vec<HistoryEntry>), ClientError> {
        let group = self.conversation_for(target).await?;
        let mut entries = self.store.app().history(Some(&group), true, true)?;
        self.add_warnings(&mut entries);
        Ok((group, entries))
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.flush_ack().await;
        if let Some(socket) = self.socket.take() {
            socket.close().await;
        }
    }
}
