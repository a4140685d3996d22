//! A real server on 127.0.0.1:0 with SQLite in a temp dir, REST over reqwest,
//! the WebSocket over tokio-tungstenite, and real MLS messages from openmls.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use futures_util::{SinkExt as _, StreamExt as _};
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use rampart_proto::api::{NewDevice, RegisterRequest, SessionResponse};
use rampart_proto::frame::{ClientFrame, CommitBundle, Create, SendMessage, ServerFrame};
use rampart_proto::group::{GROUP_SETTINGS_EXTENSION, GroupSettings};
use rampart_proto::{DeviceId, GroupId, IdempotencyKey, Username};
use rampart_server::{Clock, Purger, Registration, Server, ServerConfig};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub first_invite: Option<String>,
    /// Purges expired messages on demand.
    pub purger: Purger,
    /// Seals, signs, prunes and verifies the audit log on demand.
    pub audit: std::sync::Arc<rampart_server::audit::Audit>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(dir: &Path, registration: Registration) -> Self {
        Self::start_with(
            ServerConfig {
                registration,
                ..ServerConfig::default()
            },
            dir,
            Clock::system(),
        )
        .await
    }

    /// A server with this configuration (its data dir and listen address
    /// are replaced) and clock.
    pub async fn start_with(config: ServerConfig, dir: &Path, clock: Clock) -> Self {
        let config = ServerConfig {
            data_dir: dir.to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            ..config
        };
        let server = Server::open_with_clock(config, clock).await.unwrap();
        Self::serve(server).await
    }

    /// Serves an opened server (for tests that adjust it before serving).
    pub async fn serve(server: Server) -> Self {
        let first_invite = server.first_invite().map(str::to_owned);
        let purger = server.purger();
        let audit = server.audit();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let join = tokio::spawn(async move {
            server
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            base: format!("http://{addr}"),
            first_invite,
            purger,
            audit,
            stop: Some(stop),
            join: Some(join),
        }
    }

    /// Graceful shutdown; returns once the database is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take() {
            tokio::time::timeout(Duration::from_secs(30), join)
                .await
                .unwrap()
                .unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A REST call to `path` with an optional bearer token and JSON body.
pub async fn call(
    http: &reqwest::Client,
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> reqwest::Response {
    let mut req = http.request(method.parse().unwrap(), server.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

/// The JSON body of a `200` answer.
pub async fn ok<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> T {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// The status and error body of a refused call.
pub async fn error_of(resp: reqwest::Response) -> (u16, rampart_proto::error::ErrorBody) {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    let parsed = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"));
    (status, parsed)
}

pub struct Account {
    pub username: Username,
    pub device: DeviceId,
    pub token: String,
    pub identity: SigningKey,
}

/// The Ed25519 seed of a device's MLS signature key, derived from its id,
/// so the key a test registers is the one its [`MlsClient::for_device`]
/// signs leaves with (the server maps leaves to devices by it).
fn device_seed(device: u64) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::new()
        .chain_update(b"rampart test device signature key")
        .chain_update(device.to_be_bytes())
        .finalize()
        .into()
}

/// The MLS signature key (public) of a device, as registered or linked.
pub fn device_signature_key(device: u64) -> Vec<u8> {
    SigningKey::from_bytes(&device_seed(device))
        .verifying_key()
        .to_bytes()
        .to_vec()
}

/// The MLS signature key pair of a device (see [`device_signature_key`]).
pub fn device_signer(device: u64) -> SignatureKeyPair {
    SignatureKeyPair::from_raw(
        SignatureScheme::ED25519,
        device_seed(device).to_vec(),
        device_signature_key(device),
    )
}

pub fn register_request(
    name: &str,
    device: u64,
    invite: Option<&str>,
) -> (RegisterRequest, SigningKey) {
    let identity = SigningKey::generate(&mut rand::rngs::OsRng);
    let username = Username::parse(name).unwrap();
    let device_id = DeviceId::new(device).unwrap();
    let signature_key = device_signature_key(device);
    let cert = identity.sign(&rampart_proto::device_certificate_message(
        &username,
        device_id,
        &signature_key,
    ));
    let req = RegisterRequest {
        username,
        password: "correct horse battery".into(),
        invite: invite.map(str::to_owned),
        identity_key: identity.verifying_key().to_bytes().to_vec(),
        device: NewDevice {
            device_id,
            name: "laptop".into(),
            signature_key,
            certificate: cert.to_bytes().to_vec(),
        },
    };
    (req, identity)
}

pub async fn register(
    http: &reqwest::Client,
    server: &TestServer,
    name: &str,
    device: u64,
    invite: Option<&str>,
) -> Account {
    let (req, identity) = register_request(name, device, invite);
    let resp = http
        .post(server.url("/v1/register"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let session: SessionResponse = resp.json().await.unwrap();
    Account {
        username: session.username,
        device: session.device_id,
        token: session.token,
        identity,
    }
}

/// Links a new device to `owner`'s account through the whole HTTP flow
/// (start, get, approve with a certificate from the owner's identity key,
/// poll) and returns the new device's session token.
pub async fn link_device(
    http: &reqwest::Client,
    server: &TestServer,
    owner: &Account,
    device: u64,
) -> String {
    use rampart_proto::api::{LinkStatus, LinkTicket};
    let device_id = DeviceId::new(device).unwrap();
    let signature_key = device_signature_key(device);
    let ticket: LinkTicket = http
        .post(server.url("/v1/link"))
        .json(&serde_json::json!({
            "device_id": device_id,
            "name": "phone",
            "signature_key": b64(&signature_key),
            "ephemeral_key": b64(&[9u8; 32]),
            "mac": b64(&[7u8; 32]),
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cert = owner
        .identity
        .sign(&rampart_proto::device_certificate_message(
            &owner.username,
            device_id,
            &signature_key,
        ));
    let resp = http
        .post(server.url(&format!("/v1/link/{}/approve", ticket.link_id)))
        .bearer_auth(&owner.token)
        .json(&serde_json::json!({
            "certificate": b64(&cert.to_bytes()),
            "ephemeral_key": b64(&[5u8; 32]),
            "sealed": b64(b"sealed identity"),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        204,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let status: LinkStatus = http
        .post(server.url(&format!("/v1/link/{}/poll", ticket.link_id)))
        .json(&serde_json::json!({ "poll_secret": ticket.poll_secret }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status.approved.unwrap().session.token
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn connect(server: &TestServer, token: &str) -> Ws {
    try_connect(server, Some(token)).await.unwrap()
}

pub async fn try_connect(
    server: &TestServer,
    token: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = format!("ws://{}/v1/ws", server.addr)
        .into_client_request()
        .unwrap();
    if let Some(token) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

pub async fn send(ws: &mut Ws, frame: &ClientFrame) {
    ws.send(Message::Binary(frame.encode().into()))
        .await
        .unwrap();
}

/// The next server frame, or `None` if the connection closed.
pub async fn recv(ws: &mut Ws) -> Option<ServerFrame> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a frame");
        match msg {
            Some(Ok(Message::Binary(b))) => return Some(ServerFrame::decode(&b).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Asserts nothing arrives for a short while.
pub async fn quiet(ws: &mut Ws) {
    if let Ok(Some(Ok(Message::Binary(b)))) =
        tokio::time::timeout(Duration::from_millis(300), ws.next()).await
    {
        panic!("unexpected frame {:?}", ServerFrame::decode(&b));
    }
}

// ---- MLS -------------------------------------------------------------------

pub const CS: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

pub struct MlsClient {
    pub provider: OpenMlsRustCrypto,
    pub signer: SignatureKeyPair,
    pub cred: CredentialWithKey,
}

/// The serialised MLS message of a GroupInfo.
fn group_info_bytes(info: Option<openmls::messages::group_info::GroupInfo>) -> Vec<u8> {
    MlsMessageOut::from(info.expect("groups use the ratchet tree extension"))
        .to_bytes()
        .unwrap()
}

impl MlsClient {
    /// A client with a random signature key, which no registered device
    /// has: for tests of what the server does with unknown leaves.
    pub fn new(name: &str) -> Self {
        Self::with_signer(
            name,
            SignatureKeyPair::new(CS.signature_algorithm()).unwrap(),
        )
    }

    /// The client of a registered (or linked) device: its leaves carry the
    /// signature key the device registered, as a real Rampart client's do.
    pub fn for_device(name: &str, device: DeviceId) -> Self {
        Self::with_signer(name, device_signer(device.get()))
    }

    /// [`Self::for_device`] of an account's device.
    pub fn for_account(account: &Account) -> Self {
        Self::for_device(account.username.as_str(), account.device)
    }

    fn with_signer(name: &str, signer: SignatureKeyPair) -> Self {
        let provider = OpenMlsRustCrypto::default();
        signer.store(provider.storage()).unwrap();
        let cred = CredentialWithKey {
            credential: BasicCredential::new(name.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Self {
            provider,
            signer,
            cred,
        }
    }

    /// Supports the group settings extension, as Rampart clients do.
    pub fn key_package(&self) -> KeyPackage {
        KeyPackage::builder()
            .leaf_node_capabilities(capabilities())
            .build(CS, &self.provider, &self.signer, self.cred.clone())
            .unwrap()
            .key_package()
            .clone()
    }

    pub fn key_package_bytes(&self) -> Vec<u8> {
        self.key_package().tls_serialize_detached().unwrap()
    }

    /// A local group at epoch 0 with handshakes as PublicMessage.
    pub fn create_group(&self, id: &GroupId) -> MlsGroup {
        self.create_group_with(id, Extensions::empty())
    }

    /// [`Self::create_group`] whose group context carries these settings
    /// in the Rampart group settings extension.
    pub fn create_group_with_settings(&self, id: &GroupId, settings: &GroupSettings) -> MlsGroup {
        self.create_group_with_raw_settings(id, settings.encode())
    }

    /// The settings extension with these bytes, valid or not.
    pub fn create_group_with_raw_settings(&self, id: &GroupId, bytes: Vec<u8>) -> MlsGroup {
        let ext = Extension::Unknown(GROUP_SETTINGS_EXTENSION, UnknownExtension(bytes));
        self.create_group_with(id, Extensions::try_from(vec![ext]).unwrap())
    }

    fn create_group_with(&self, id: &GroupId, extensions: Extensions<GroupContext>) -> MlsGroup {
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CS)
            .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .capabilities(capabilities())
            .with_group_context_extensions(extensions)
            .build();
        MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &config,
            openmls::group::GroupId::from_slice(id.as_bytes()),
            self.cred.clone(),
        )
        .unwrap()
    }

    /// (commit, welcome, group info) adding `kps`; the commit stays
    /// pending, and the GroupInfo is of the epoch it makes (what a commit
    /// bundle uploads).
    pub fn add(&self, group: &mut MlsGroup, kps: &[KeyPackage]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (commit, welcome, info) = group
            .add_members(&self.provider, &self.signer, kps)
            .unwrap();
        (
            commit.to_bytes().unwrap(),
            welcome.to_bytes().unwrap(),
            group_info_bytes(info),
        )
    }

    /// (commit, group info of the new epoch) updating the own leaf; the
    /// commit stays pending.
    pub fn self_update(&self, group: &mut MlsGroup) -> (Vec<u8>, Vec<u8>) {
        let bundle = group
            .self_update(&self.provider, &self.signer, LeafNodeParameters::default())
            .unwrap();
        (
            bundle.commit().to_bytes().unwrap(),
            group_info_bytes(bundle.group_info().cloned()),
        )
    }

    /// (commit, group info of the new epoch) removing the leaves of these
    /// signature keys; the commit stays pending.
    pub fn remove(&self, group: &mut MlsGroup, signature_keys: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let leaves: Vec<LeafNodeIndex> = group
            .members()
            .filter(|m| signature_keys.contains(&m.signature_key.as_slice()))
            .map(|m| m.index)
            .collect();
        assert_eq!(
            leaves.len(),
            signature_keys.len(),
            "a leaf to remove is missing"
        );
        let (commit, _, info) = group
            .remove_members(&self.provider, &self.signer, &leaves)
            .unwrap();
        (commit.to_bytes().unwrap(), group_info_bytes(info))
    }

    /// The signature key this client's leaves carry.
    pub fn signature_key(&self) -> Vec<u8> {
        self.signer.public().to_vec()
    }

    /// The group's current GroupInfo as a serialised MLS message (of the
    /// current epoch: a commit bundle carries the one its commit makes).
    pub fn group_info(&self, group: &MlsGroup) -> Vec<u8> {
        group
            .export_group_info(self.provider.crypto(), &self.signer, true)
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    /// Joins a group from a Welcome (the bytes a commit bundle carried).
    pub fn join(&self, welcome: &[u8]) -> MlsGroup {
        use openmls::prelude::tls_codec::Deserialize as _;
        let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(welcome)
            .unwrap()
            .extract()
        else {
            panic!("not a Welcome");
        };
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .build();
        StagedWelcome::new_from_welcome(&self.provider, &config, welcome, None)
            .unwrap()
            .into_group(&self.provider)
            .unwrap()
    }

    pub fn merge(&self, group: &mut MlsGroup) {
        group.merge_pending_commit(&self.provider).unwrap();
    }

    /// A proposal to remove the own leaf (leaving), the only proposal a
    /// member may send: a public MLS message sent like an application
    /// message.
    pub fn proposal(&self, group: &mut MlsGroup) -> Vec<u8> {
        group
            .leave_group(&self.provider, &self.signer)
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    pub fn message(&self, group: &mut MlsGroup, text: &[u8]) -> Vec<u8> {
        group
            .create_message(&self.provider, &self.signer, text)
            .unwrap()
            .to_bytes()
            .unwrap()
    }
}

/// Leaf capabilities that include the group settings extension.
fn capabilities() -> Capabilities {
    Capabilities::builder()
        .extensions(vec![ExtensionType::Unknown(GROUP_SETTINGS_EXTENSION)])
        .build()
}

// ---- frames and commit bundles ---------------------------------------------

/// A fixed idempotency key, distinct for each `n`.
pub fn key(n: u8) -> IdempotencyKey {
    IdempotencyKey([n; 16])
}

static NEXT_REQUEST: AtomicU32 = AtomicU32::new(1);

/// A request id no other request of this test binary has used.
pub fn next_request() -> u32 {
    NEXT_REQUEST.fetch_add(1, Ordering::Relaxed)
}

/// The request id the answer to `frame` carries (an ack has no answer: 0).
pub fn request_id(frame: &ClientFrame) -> u32 {
    match frame {
        ClientFrame::Send(m) => m.request_id,
        ClientFrame::Commit(c) => c.request_id,
        ClientFrame::Ack { .. } => 0,
    }
}

/// An MLS message (application message or proposal) for `group`, with a
/// new request id.
pub fn message_frame(
    group: GroupId,
    key: IdempotencyKey,
    recalls: Option<IdempotencyKey>,
    message: Vec<u8>,
) -> ClientFrame {
    ClientFrame::Send(SendMessage {
        request_id: next_request(),
        key,
        group,
        expires_in: None,
        recalls,
        attachments: vec![],
        message,
    })
}

/// The answer to `request_id`, skipping pushes.
pub async fn answer_to(ws: &mut Ws, request_id: u32) -> ServerFrame {
    loop {
        match recv(ws).await {
            Some(
                f @ (ServerFrame::Accepted { request_id: r, .. }
                | ServerFrame::Rejected { request_id: r, .. }),
            ) if r == request_id => return f,
            Some(ServerFrame::Deliver(_) | ServerFrame::PolicyChanged { .. }) => {}
            other => panic!("expected the answer to request {request_id}, got {other:?}"),
        }
    }
}

/// `creator` makes a group (its settings `created_by` them) with the
/// devices of `members`, as a client does on a fresh connection: the
/// backlog is empty, the commit bundle (request 1, [`key`]`(1)`) is
/// accepted at epoch 1 and merged. Returns the connection, the creator's
/// group and the Welcome.
pub async fn create_group_over_ws(
    server: &TestServer,
    creator: &Account,
    mls: &MlsClient,
    id: GroupId,
    members: &[(&MlsClient, DeviceId)],
) -> (Ws, MlsGroup, Vec<u8>) {
    let mut group =
        mls.create_group_with_settings(&id, &GroupSettings::created_by(&creator.username));
    let kps: Vec<KeyPackage> = members.iter().map(|(m, _)| m.key_package()).collect();
    let (commit, welcome, group_info) = mls.add(&mut group, &kps);
    let mut ws = connect(server, &creator.token).await;
    assert_eq!(
        recv(&mut ws).await,
        Some(ServerFrame::BacklogDone { up_to: 0 })
    );
    send(
        &mut ws,
        &ClientFrame::Commit(CommitBundle {
            request_id: 1,
            key: key(1),
            group: id,
            epoch: 0,
            create: Some(Create::Group),
            commit,
            welcome: Some(welcome.clone()),
            group_info,
            added: members.iter().map(|(_, device)| *device).collect(),
            removed: vec![],
        }),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        Some(ServerFrame::Accepted {
            request_id: 1,
            epoch: 1,
            duplicate: false
        })
    );
    mls.merge(&mut group);
    (ws, group, welcome)
}

/// A commit's bytes, as a commit bundle carries them.
pub struct Built {
    pub commit: Vec<u8>,
    pub welcome: Option<Vec<u8>>,
    pub group_info: Vec<u8>,
}

pub fn built(
    commit: &MlsMessageOut,
    welcome: Option<&MlsMessageOut>,
    group_info: Option<&openmls::messages::group_info::GroupInfo>,
) -> Built {
    // The new epoch's GroupInfo, as Rampart clients upload it (openmls
    // returns it since the groups use the ratchet tree extension).
    let group_info = group_info.expect("the GroupInfo of the new epoch");
    Built {
        commit: commit.to_bytes().unwrap(),
        welcome: welcome.map(|w| w.to_bytes().unwrap()),
        group_info: MlsMessageOut::from(group_info.clone()).to_bytes().unwrap(),
    }
}

/// The commit bundle of `b` at `epoch`, with a new request id and a
/// random idempotency key.
pub fn commit_frame(
    group: GroupId,
    epoch: u64,
    create: Option<Create>,
    b: Built,
    added: Vec<DeviceId>,
    removed: Vec<DeviceId>,
) -> ClientFrame {
    ClientFrame::Commit(CommitBundle {
        request_id: next_request(),
        key: IdempotencyKey(rand::random()),
        group,
        epoch,
        create,
        commit: b.commit,
        welcome: b.welcome,
        group_info: b.group_info,
        added,
        removed,
    })
}

/// Group context extensions carrying `settings`, required of every member
/// (as Rampart clients make them, so a commit may change them).
pub fn settings_extensions(settings: &GroupSettings) -> Extensions<GroupContext> {
    let ext = ExtensionType::Unknown(GROUP_SETTINGS_EXTENSION);
    Extensions::from_vec(vec![
        Extension::Unknown(
            GROUP_SETTINGS_EXTENSION,
            UnknownExtension(settings.encode()),
        ),
        Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(&[ext], &[], &[])),
    ])
    .unwrap()
}

/// A local group at epoch 0 whose context carries `settings` (see
/// [`settings_extensions`]), or no settings at all.
pub fn new_mls_group(c: &MlsClient, id: &GroupId, settings: Option<&GroupSettings>) -> MlsGroup {
    let extensions = settings.map_or_else(Extensions::empty, settings_extensions);
    c.create_group_with(id, extensions)
}

/// `c` adds the leaves of `kps`; the commit stays pending.
pub fn add(c: &MlsClient, group: &mut MlsGroup, kps: &[KeyPackage]) -> Built {
    let (commit, welcome, gi) = group.add_members(&c.provider, &c.signer, kps).unwrap();
    built(&commit, Some(&welcome), gi.as_ref())
}

/// `c` removes the leaf of `who`; the commit stays pending.
pub fn remove(c: &MlsClient, group: &mut MlsGroup, who: &MlsClient) -> Built {
    let key = who.signature_key();
    let leaf = group
        .members()
        .find(|m| m.signature_key == key)
        .unwrap()
        .index;
    let (commit, welcome, gi) = group
        .remove_members(&c.provider, &c.signer, &[leaf])
        .unwrap();
    built(&commit, welcome.as_ref(), gi.as_ref())
}

/// `c` changes the group's settings to `settings`; the commit stays pending.
pub fn change_settings(c: &MlsClient, group: &mut MlsGroup, settings: &GroupSettings) -> Built {
    let (commit, welcome, gi) = group
        .update_group_context_extensions(&c.provider, settings_extensions(settings), &c.signer)
        .unwrap();
    built(&commit, welcome.as_ref(), gi.as_ref())
}

/// `c` updates its own leaf; the commit stays pending.
pub fn self_update(c: &MlsClient, group: &mut MlsGroup) -> Built {
    let bundle = group
        .self_update(&c.provider, &c.signer, LeafNodeParameters::default())
        .unwrap();
    built(bundle.commit(), None, bundle.group_info())
}
