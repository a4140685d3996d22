//! Linking a second device to an account (the protocol is in
//! `rampart_core::link`): the new device shows a code, an existing device
//! approves it, transfers the identity key end to end, and adds the new
//! device to every conversation it is in.

use crate::client::{
    Client, META_DEVICE, META_IDENTITY, META_KNOWN_DEVICES, META_SERVER, META_SIGNER, META_TOKEN,
    META_USERNAME,
};
use crate::error::ClientError;
use crate::store::Store;
use crate::transport::Http;
use rampart_core::content::Body;
use rampart_core::link::{self, LinkCode, LinkOffer};
use rampart_core::{ConversationState, DeviceCredential, Engine};
use rampart_proto::api::{DeviceList, LinkPoll, LinkRequest, LinkStatus, LinkTicket, UserInfo};
use rampart_proto::{DeviceId, ErrorCode, GroupId};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// How often the new device asks whether it was approved.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long the approving device waits for the new device's KeyPackages.
const KEY_PACKAGE_WAIT: Duration = Duration::from_secs(60);

/// What the new device shows the user.
#[derive(Clone, Debug, Serialize)]
pub struct LinkDisplay {
    /// Type this on the other device: `rampart devices approve CODE`.
    pub code: String,
    /// The same, for a QR code.
    pub qr_payload: String,
    pub expires_at: u64,
}

/// What the approving device did.
#[derive(Clone, Debug, Serialize)]
pub struct Approved {
    pub device_id: DeviceId,
    pub name: String,
    /// Conversations the new device was added to.
    pub added_to: usize,
}

impl Client {
    /// Makes this machine a new device of an existing account. Shows a code
    /// through `show`, waits (until the request expires) for another device
    /// of the account to approve it, then creates the encrypted profile in
    /// `dir`. The approving device then adds this one to its conversations;
    /// [`Client::sync`] picks them up.
    pub async fn link(
        dir: &Path,
        passphrase: &str,
        server: &str,
        device_name: &str,
        show: impl FnOnce(&LinkDisplay),
    ) -> Result<Self, ClientError> {
        if Store::exists(dir) {
            return Err(ClientError::Profile(format!(
                "{} already holds a profile; use another --profile",
                dir.display()
            )));
        }
        let signer = Engine::generate_signer()?;
        let device = rampart_core::engine::new_device_id();
        let signature_key = signer.public().to_vec();
        let offer = LinkOffer::new(device, device_name, &signature_key);
        let http = Http::new(server, None)?;
        let ticket: LinkTicket = http.post("/v1/link", &offer.request()?).await?;
        show(&LinkDisplay {
            code: offer.code(&ticket.link_id),
            qr_payload: offer.qr_payload(&ticket.link_id),
            expires_at: ticket.expires_at,
        });
        let poll = LinkPoll {
            poll_secret: ticket.poll_secret.clone(),
        };
        let result = loop {
            let status: Result<LinkStatus, ClientError> = http
                .post(&format!("/v1/link/{}/poll", ticket.link_id), &poll)
                .await;
            match status {
                Ok(LinkStatus {
                    approved: Some(result),
                }) => break result,
                Ok(LinkStatus { approved: None }) => {}
                Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                    return Err(ClientError::Usage(
                        "the link request expired; run `rampart link` again for a new code".into(),
                    ));
                }
                Err(e) => return Err(e),
            }
            if crate::now_millis() > ticket.expires_at {
                return Err(ClientError::Timeout(
                    "waiting for another device to approve (the code expired)",
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        let (username, identity, certificate) = offer.accept(&result)?;
        let token = result.session.token.clone();
        let http = Http::new(server, Some(token.clone()))?;
        // The directory must agree with the key we were handed.
        let info: UserInfo = http.get(&format!("/v1/users/{username}")).await?;
        if info.identity_key != identity.public() {
            return Err(ClientError::Protocol(
                "the server's identity key for this account differs from the one the approving device sent".into(),
            ));
        }
        let devices: DeviceList = http.get("/v1/devices").await?;
        let known: Vec<String> = devices
            .devices
            .iter()
            .map(|d| d.device_id.to_string())
            .collect();
        let mut store = Store::create(dir, passphrase)?;
        store.transact(|provider, app| {
            Engine::store_signer(&signer, provider)?;
            app.set_meta(META_SERVER, http.base().as_bytes())?;
            app.set_meta(META_USERNAME, username.as_str().as_bytes())?;
            app.set_meta(META_DEVICE, device.to_string().as_bytes())?;
            app.set_meta(META_IDENTITY, identity.dangerous_secret_bytes().as_slice())?;
            app.set_meta(META_SIGNER, &signature_key)?;
            app.set_meta(META_TOKEN, token.as_bytes())?;
            app.set_meta(META_KNOWN_DEVICES, known.join(",").as_bytes())?;
            rampart_core::trust::confirm(app, &username, &identity.public())?;
            Ok(())
        })?;
        let credential = DeviceCredential {
            user: username,
            device,
            identity_key: identity.public(),
            certificate,
        };
        let mut client = Self::assemble(
            dir,
            store,
            Engine::new(credential, signer),
            identity,
            Some(token),
        )?;
        client.replenish_key_packages(true).await?;
        Ok(client)
    }

    /// Approves a new device showing `code`: certifies it, sends it the
    /// identity key end to end, and adds it to every conversation this
    /// device is in.
    pub async fn approve_link(&mut self, code: &str) -> Result<Approved, ClientError> {
        let code = LinkCode::parse(code)?;
        let request: LinkRequest = self
            .http
            .get(&format!("/v1/link/{}", code.link_id()))
            .await
            .map_err(|e| match e.code() {
                Some(ErrorCode::NotFound) => ClientError::Usage(
                    "no pending request for that code (expired, already approved, or mistyped)"
                        .into(),
                ),
                _ => e,
            })?;
        let approval = link::approve(&code, &request, &self.username, &self.identity)?;
        self.http
            .post::<_, ()>(&format!("/v1/link/{}/approve", code.link_id()), &approval)
            .await?;
        self.connect().await?;
        let groups: Vec<GroupId> = self
            .store
            .app()
            .conversations()?
            .into_iter()
            .filter(|c| c.state == ConversationState::Active)
            .map(|c| c.group)
            .collect();
        let mut added_to = 0;
        for group in groups {
            let kp = self.claim_new_device(request.device_id).await?;
            self.run_commit(group, move |engine, p, app| {
                Ok(engine.add_members(p, app, &group, vec![kp.clone()])?)
            })
            .await?;
            let name = rampart_core::AppStore::conversation(&self.store.app(), &group)
                .map_err(ClientError::store)?
                .and_then(|c| c.name);
            if let Some(name) = name {
                self.send_body(group, Body::GroupName(name)).await?;
            }
            added_to += 1;
        }
        // The new device is expected: no "new device" alert for it here.
        let mut known = self
            .store
            .app()
            .meta(META_KNOWN_DEVICES)?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        if !known.is_empty() {
            known.push(',');
        }
        known.push_str(&request.device_id.to_string());
        self.store
            .app()
            .set_meta(META_KNOWN_DEVICES, known.as_bytes())?;
        Ok(Approved {
            device_id: request.device_id,
            name: request.name,
            added_to,
        })
    }

    /// One KeyPackage of the just-approved device, waiting for it to upload them.
    async fn claim_new_device(
        &mut self,
        device: DeviceId,
    ) -> Result<rampart_core::VerifiedKeyPackage, ClientError> {
        let deadline = tokio::time::Instant::now() + KEY_PACKAGE_WAIT;
        loop {
            let me = self.username.clone();
            let found = self
                .claim(std::slice::from_ref(&me), Some(vec![device]))
                .await?;
            if let Some(kp) = found.into_iter().find(|k| k.device == device) {
                return Ok(kp);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ClientError::Timeout(
                    "waiting for the new device to come online (it must finish `rampart link`)",
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}
