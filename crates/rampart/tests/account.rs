//! Account security end to end: two-factor login, linking and revoking
//! devices, verification by safety number, and devices the server injects.
//! Real server on loopback, real clients, real databases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use rampart_client::{Alert, Client, ClientError};
use rampart_core::{CoreError, DeviceCredential, Engine, IdentityKey, Trust};
use rampart_proto::{DeviceId, ErrorCode, GroupId, Username};
use support::*;

fn now_secs() -> u64 {
    rampart_client::now_millis() / 1000
}

/// Links a new device of `approver`'s account in `dir`, approving it from `approver`.
async fn link(server: &TestServer, approver: &mut Client, dir: &std::path::Path) -> Client {
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let url = server.url();
    let dir = dir.to_path_buf();
    let linking = tokio::spawn(async move {
        Client::link(&dir, PASSPHRASE, &url, "laptop", move |shown| {
            let _ = tx.send(shown.code.clone());
        })
        .await
    });
    let code = rx.await.expect("the new device shows a code");
    let approved = approver.approve_link(&code).await.expect("approve");
    let linked = linking.await.expect("join").expect("link");
    assert_eq!(approved.device_id, linked.device());
    linked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_factor_login_needs_a_fresh_code_and_recovery_codes_work_once() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(&tmp.path().join("server"), loopback()).await;
    let mut alice = register(&server, tmp.path(), "alice").await;

    let setup = alice.setup_totp(PASSWORD).await.unwrap();
    assert!(setup.otpauth_uri.starts_with("otpauth://totp/"));
    let secret = rampart_server::totp::base32_decode(&setup.secret).expect("base32 secret");
    let t = now_secs();
    let recovery = alice
        .activate_totp(&rampart_server::totp::code(&secret, t))
        .await
        .unwrap();
    assert_eq!(recovery.codes.len(), 10);
    assert!(alice.two_factor_status().await.unwrap().enabled);

    alice.logout().await.unwrap();
    let err = alice.login(PASSWORD, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TwoFactorRequired), "{err}");
    // The activation code again: a replay.
    let err = alice
        .login(PASSWORD, Some(&rampart_server::totp::code(&secret, t)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadCredentials), "{err}");
    // A wrong password with a right code is still a wrong password.
    let next = rampart_server::totp::code(&secret, t + 30);
    assert!(
        alice
            .login("wrong password here", Some(&next))
            .await
            .is_err()
    );
    alice.login(PASSWORD, Some(&next)).await.unwrap();
    alice.whoami().await.unwrap();

    // A recovery code works once.
    alice.logout().await.unwrap();
    alice
        .login(PASSWORD, Some(&recovery.codes[0]))
        .await
        .unwrap();
    alice.logout().await.unwrap();
    let err = alice
        .login(PASSWORD, Some(&recovery.codes[0]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadCredentials), "{err}");
    alice
        .login(PASSWORD, Some(&recovery.codes[1]))
        .await
        .unwrap();

    // The events are there, and hold none of the secrets.
    let events = alice.security_events().await.unwrap();
    let text = serde_json::to_string(&events).unwrap();
    for kind in ["two_factor_enabled", "login_failed", "recovery_code_used"] {
        assert!(text.contains(kind), "{kind} missing from {text}");
    }
    for secret_text in [PASSWORD, &setup.secret, &recovery.codes[0], &next] {
        assert!(!text.contains(secret_text));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_device_joins_existing_conversations_and_a_revoked_one_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(&tmp.path().join("server"), loopback()).await;
    let mut alice = register(&server, tmp.path(), "alice").await;
    let mut bob = register(&server, tmp.path(), "bob").await;
    alice
        .send_text(&user("bob"), "before linking")
        .await
        .unwrap();
    assert_eq!(received(&mut bob).await, vec!["alice: before linking"]);

    let mut laptop = link(&server, &mut alice, &tmp.path().join("alice-laptop")).await;
    assert_eq!(laptop.username().as_str(), "alice");
    laptop.sync().await.unwrap();
    let direct = GroupId::direct(alice.username(), bob.username());
    assert!(
        laptop
            .members(&direct)
            .unwrap()
            .iter()
            .any(|(_, d)| *d == laptop.device()),
        "the laptop is in the existing 1:1"
    );

    // New messages reach both of alice's devices; the laptop can send too.
    // Bob's open socket still holds the commit that added the laptop, unread:
    // the server refuses his old-epoch copy and his client encrypts it again.
    bob.send_text(&user("alice"), "after linking")
        .await
        .unwrap();
    assert_eq!(received(&mut laptop).await, vec!["bob: after linking"]);
    assert_eq!(received(&mut alice).await, vec!["bob: after linking"]);
    laptop
        .send_text(&user("bob"), "from the laptop")
        .await
        .unwrap();
    assert_eq!(received(&mut bob).await, vec!["alice: from the laptop"]);

    // A device linked from the laptop is announced on alice's first device.
    let phone = link(&server, &mut laptop, &tmp.path().join("alice-phone")).await;
    alice.sync().await.unwrap();
    let alerts = alice.take_alerts();
    assert!(
        alerts.iter().any(
            |a| matches!(a, Alert::NewDevice { device_id, .. } if *device_id == phone.device())
        ),
        "{alerts:?}"
    );
    let listed = alice.devices().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|d| d.certified));
    assert_eq!(listed.iter().filter(|d| d.device.current).count(), 1);

    // Revoke the laptop: its session dies and it leaves the conversation.
    let revoked = alice.revoke_device(laptop.device()).await.unwrap();
    assert_eq!(revoked.removed_from, 1);
    let err = laptop.sync().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
    bob.sync().await.unwrap();
    assert!(
        !bob.members(&direct)
            .unwrap()
            .iter()
            .any(|(_, d)| *d == laptop.device()),
        "bob's group no longer holds the revoked device"
    );
    bob.send_text(&user("alice"), "after revoking")
        .await
        .unwrap();
    assert_eq!(received(&mut alice).await, vec!["bob: after revoking"]);
    assert!(
        laptop
            .inbox(true)
            .unwrap()
            .iter()
            .all(|e| e.text != "after revoking")
    );
    assert!(matches!(
        alice.revoke_device(alice.device()).await,
        Err(ClientError::Usage(_))
    ));
    drop(phone);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_numbers_match_and_a_changed_key_blocks_a_verified_contact() {
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let server = TestServer::start(&server_dir, loopback()).await;
    let mut alice = register(&server, tmp.path(), "alice").await;
    let mut bob = register(&server, tmp.path(), "bob").await;

    let from_alice = alice.verification(bob.username()).await.unwrap();
    let from_bob = bob.verification(alice.username()).await.unwrap();
    assert_eq!(from_alice.safety_number, from_bob.safety_number);
    assert_eq!(from_alice.safety_number.digits().len(), 60);
    assert_eq!(from_alice.pin.trust, Trust::Unverified);
    let confirmed = alice.confirm_verification(bob.username()).await.unwrap();
    assert_eq!(confirmed.pin.trust, Trust::Verified);
    alice
        .send_text(&user("bob"), "verified hello")
        .await
        .unwrap();

    // The server swaps bob's identity key (a compromised server, or a reset).
    let rogue = IdentityKey::generate();
    let db = rusqlite::Connection::open(server_dir.join("rampart.db")).unwrap();
    db.execute(
        "UPDATE users SET identity_key = ?1 WHERE username = 'bob'",
        [rogue.public().to_vec()],
    )
    .unwrap();
    let changed = alice.verification(bob.username()).await.unwrap();
    assert_ne!(changed.safety_number, from_alice.safety_number);
    assert_eq!(changed.pin.trust, Trust::Broken);
    assert!(alice.take_alerts().iter().any(|a| matches!(
        a,
        Alert::IdentityChanged {
            was_verified: true,
            ..
        }
    )));
    // Nothing more goes to bob until alice confirms again.
    let err = alice
        .send_text(&user("bob"), "must not be sent")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Core(CoreError::VerificationRequired(u)) if u.as_str() == "bob"),
        "{err}"
    );
    assert_eq!(
        alice.changed_contacts().unwrap(),
        vec![(bob.username().clone(), Trust::Broken)]
    );
    alice.confirm_verification(bob.username()).await.unwrap();
    alice
        .send_text(&user("bob"), "confirmed again")
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_injected_into_the_server_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let server = TestServer::start(&server_dir, loopback()).await;
    let mut alice = register(&server, tmp.path(), "alice").await;
    let bob = register(&server, tmp.path(), "bob").await;

    // The server operator makes a device for bob with a key of its own: the
    // certificate is self-consistent, but not made by bob's identity key.
    let bob_name = Username::parse("bob").unwrap();
    let rogue_identity = IdentityKey::generate();
    let rogue_device = DeviceId::new(0x0bad_0bad).unwrap();
    let signer = Engine::generate_signer().unwrap();
    let signature_key = signer.public().to_vec();
    let certificate = rogue_identity.certify(&bob_name, rogue_device, &signature_key);
    let engine = Engine::new(
        DeviceCredential {
            user: bob_name.clone(),
            device: rogue_device,
            identity_key: rogue_identity.public(),
            certificate,
        },
        signer,
    );
    let mut scratch =
        rampart_client::store::Store::create(&tmp.path().join("rogue"), PASSPHRASE).unwrap();
    let key_packages = scratch
        .transact(|p, _| Ok(engine.key_packages(p, 2, false)?))
        .unwrap();
    let db = rusqlite::Connection::open(server_dir.join("rampart.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute(
        "INSERT INTO devices (id, user_id, name, signature_key, certificate, created_at, last_seen)
         SELECT ?1, id, 'rogue', ?2, ?3, 0, 0 FROM users WHERE username = 'bob'",
        rusqlite::params![
            rogue_device.get() as i64,
            signature_key,
            certificate.to_vec()
        ],
    )
    .unwrap();
    for kp in &key_packages {
        db.execute(
            "INSERT INTO key_packages (device_id, data, last_resort) VALUES (?1, ?2, 0)",
            rusqlite::params![rogue_device.get() as i64, kp],
        )
        .unwrap();
    }

    // Alice starts a chat with bob: the rogue device is refused, bob's real one is in.
    alice.send_text(&user("bob"), "hello bob").await.unwrap();
    let alerts = alice.take_alerts();
    assert!(
        alerts.iter().any(|a| matches!(
            a,
            Alert::RefusedDevice { device_id, .. } if *device_id == rogue_device
        )),
        "{alerts:?}"
    );
    let direct = GroupId::direct(alice.username(), bob.username());
    let members = alice.members(&direct).unwrap();
    assert!(members.iter().all(|(_, d)| *d != rogue_device));
    assert!(members.iter().any(|(_, d)| *d == bob.device()));
    server.stop().await;
}
