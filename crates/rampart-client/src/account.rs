//! The account side of a [`Client`]: two-factor authentication, password,
//! devices, security events, and verifying contacts by safety number.

use crate::client::{Alert, Client, META_KNOWN_DEVICES};
use crate::error::ClientError;
use rampart_core::trust::{self, Observed};
use rampart_core::{AppStore as _, ConversationState, DeviceCredential, IdentityPin, SafetyNumber};
use rampart_proto::api::{
    AccountDevice, DeviceList, PasswordChange, RecoveryCodes, SecurityEvent, SecurityEventList,
    TotpCode, TotpDisable, TotpSetup, TotpSetupRequest, TwoFactorStatus, UserInfo,
};
use rampart_proto::{DeviceId, GroupId, Username};
use serde::Serialize;

/// A device of this account, with whether this account's identity key
/// certified it (a device without a valid certificate was not added by the
/// user, whatever the server says).
#[derive(Clone, Debug, Serialize)]
pub struct DeviceEntry {
    #[serde(flatten)]
    pub device: AccountDevice,
    pub certified: bool,
}

/// The outcome of revoking a device.
#[derive(Clone, Debug, Serialize)]
pub struct Revoked {
    pub device_id: DeviceId,
    /// Conversations the device was removed from by this device's commits.
    pub removed_from: usize,
}

/// A contact's verification state, as `rampart verify` shows it.
#[derive(Clone, Debug)]
pub struct Verification {
    pub user: Username,
    pub safety_number: SafetyNumber,
    pub pin: IdentityPin,
}

impl Client {
    // ---- two-factor authentication ------------------------------------------------

    pub async fn two_factor_status(&self) -> Result<TwoFactorStatus, ClientError> {
        self.http.get("/v1/2fa").await
    }

    /// Starts enrolment: a new TOTP secret, not active until
    /// [`Client::activate_totp`] gets a code computed from it.
    pub async fn setup_totp(&self, password: &str) -> Result<TotpSetup, ClientError> {
        self.http
            .post(
                "/v1/2fa/setup",
                &TotpSetupRequest {
                    password: password.to_owned(),
                },
            )
            .await
    }

    /// Activates two-factor authentication; returns the recovery codes (shown once).
    pub async fn activate_totp(&self, code: &str) -> Result<RecoveryCodes, ClientError> {
        self.http
            .post(
                "/v1/2fa/activate",
                &TotpCode {
                    code: code.to_owned(),
                },
            )
            .await
    }

    /// Turns two-factor authentication off: needs the password and a code.
    pub async fn disable_totp(&self, password: &str, code: &str) -> Result<(), ClientError> {
        self.http
            .post(
                "/v1/2fa/disable",
                &TotpDisable {
                    password: password.to_owned(),
                    code: code.to_owned(),
                },
            )
            .await
    }

    /// Replaces all recovery codes with new ones (needs a current code).
    pub async fn regenerate_recovery_codes(
        &self,
        code: &str,
    ) -> Result<RecoveryCodes, ClientError> {
        self.http
            .post(
                "/v1/2fa/recovery-codes",
                &TotpCode {
                    code: code.to_owned(),
                },
            )
            .await
    }

    /// Changes the password; the server ends every other session of the account.
    pub async fn change_password(
        &self,
        old: &str,
        new: &str,
        totp: Option<&str>,
    ) -> Result<(), ClientError> {
        self.http
            .post(
                "/v1/password",
                &PasswordChange {
                    old_password: old.to_owned(),
                    new_password: new.to_owned(),
                    totp: totp.map(str::to_owned),
                },
            )
            .await
    }

    /// The account's security events (logins, 2FA changes, devices), newest first.
    pub async fn security_events(&self) -> Result<Vec<SecurityEvent>, ClientError> {
        let list: SecurityEventList = self.http.get("/v1/security-events").await?;
        Ok(list.events)
    }

    // ---- devices ------------------------------------------------------------------

    fn certified(&self, device: &AccountDevice) -> bool {
        let Ok(certificate) = <[u8; 64]>::try_from(device.certificate.as_slice()) else {
            return false;
        };
        DeviceCredential {
            user: self.username.clone(),
            device: device.device_id,
            identity_key: self.identity.public(),
            certificate,
        }
        .verify(&device.signature_key)
        .is_ok()
    }

    /// The account's devices as the server lists them, each checked against
    /// this account's identity key.
    pub async fn devices(&self) -> Result<Vec<DeviceEntry>, ClientError> {
        let list: DeviceList = self.http.get("/v1/devices").await?;
        Ok(list
            .devices
            .into_iter()
            .map(|d| DeviceEntry {
                certified: self.certified(&d),
                device: d,
            })
            .collect())
    }

    /// Compares the server's device list with the devices this device knew:
    /// a new one raises [`Alert::NewDevice`] (or [`Alert::UncertifiedDevice`]
    /// if the identity key never certified it).
    pub(crate) async fn check_own_devices(&mut self) -> Result<(), ClientError> {
        let devices = self.devices().await?;
        let known_raw = self
            .store
            .app()
            .meta(META_KNOWN_DEVICES)?
            .unwrap_or_default();
        let known_text = String::from_utf8_lossy(&known_raw).into_owned();
        let known: Vec<&str> = known_text.split(',').filter(|s| !s.is_empty()).collect();
        let mut changed = false;
        for d in &devices {
            let id = d.device.device_id.to_string();
            if d.device.current || known.contains(&id.as_str()) {
                continue;
            }
            changed = true;
            self.alerts.push(if d.certified {
                Alert::NewDevice {
                    device_id: d.device.device_id,
                    name: d.device.name.clone(),
                }
            } else {
                Alert::UncertifiedDevice {
                    device_id: d.device.device_id,
                    name: d.device.name.clone(),
                }
            });
        }
        if changed || known.len() != devices.len() {
            let list: Vec<String> = devices
                .iter()
                .map(|d| d.device.device_id.to_string())
                .collect();
            self.store
                .app()
                .set_meta(META_KNOWN_DEVICES, list.join(",").as_bytes())?;
        }
        Ok(())
    }

    /// Revokes another device of this account: the server stops accepting
    /// its token at once, and this device removes it from every conversation
    /// they share, so it cannot read what is sent afterwards.
    pub async fn revoke_device(&mut self, device: DeviceId) -> Result<Revoked, ClientError> {
        if device == self.device {
            return Err(ClientError::Usage(
                "this is the device you are using; to end its session run `rampart logout`".into(),
            ));
        }
        self.http
            .post::<_, ()>(
                &format!("/v1/devices/{device}/revoke"),
                &serde_json::json!({}),
            )
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
        let mut removed_from = 0;
        for group in groups {
            if !self.members(&group)?.iter().any(|(_, d)| *d == device) {
                continue;
            }
            let targets = [device];
            self.run_commit(group, move |engine, p, app| {
                engine
                    .remove_devices(p, app, &group, &targets)?
                    .ok_or(ClientError::Usage("the device already left".into()))
            })
            .await?;
            removed_from += 1;
        }
        Ok(Revoked {
            device_id: device,
            removed_from,
        })
    }

    // ---- verification -------------------------------------------------------------

    /// The safety number with `user`. The identity key the directory gives is
    /// compared with the pin first, so a change shows up here too.
    pub async fn verification(&mut self, user: &Username) -> Result<Verification, ClientError> {
        if *user == self.username {
            return Err(ClientError::Usage(
                "that is you; verify someone else (your devices share one identity key)".into(),
            ));
        }
        let info: UserInfo = self.http.get(&format!("/v1/users/{user}")).await?;
        let key: [u8; 32] = info
            .identity_key
            .as_slice()
            .try_into()
            .map_err(|_| ClientError::Protocol("malformed identity key".into()))?;
        let observed = self
            .store
            .transact(|_, app| Ok(trust::observe(app, user, &key)?))?;
        if let Observed::Changed { was_verified } = observed {
            self.alerts.push(Alert::IdentityChanged {
                user: user.clone(),
                was_verified,
            });
        }
        let pin = self
            .store
            .app()
            .identity_pin(user)
            .map_err(ClientError::store)?
            .ok_or_else(|| ClientError::Protocol("identity pin vanished".into()))?;
        Ok(Verification {
            user: user.clone(),
            safety_number: trust::safety_number(
                (&self.username, &self.identity.public()),
                (user, &pin.key),
            ),
            pin,
        })
    }

    /// Marks `user`'s current identity key as verified (after comparing the
    /// safety number in person or over a trusted channel).
    pub async fn confirm_verification(
        &mut self,
        user: &Username,
    ) -> Result<Verification, ClientError> {
        let shown = self.verification(user).await?;
        let key = shown.pin.key;
        self.store
            .transact(|_, app| Ok(trust::confirm(app, user, &key)?))?;
        self.verification(user).await
    }

    /// Contacts whose identity key changed and who were not confirmed since.
    pub fn changed_contacts(&self) -> Result<Vec<(Username, rampart_core::Trust)>, ClientError> {
        self.store.app().changed_contacts()
    }
}

/// A revoked device's fate, for the CLI's text output.
impl std::fmt::Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "revoked device {}; removed it from {} conversation(s)",
            self.device_id, self.removed_from
        )
    }
}
