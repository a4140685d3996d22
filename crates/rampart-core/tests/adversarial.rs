//! Identity pinning, forged certificates and garbage from the network.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{KeyPackageIn, MlsGroup, ProtocolVersion};
use openmls_traits::OpenMlsProvider as _;
use rampart_core::content::Body;
use rampart_core::{CoreError, DeviceCredential, Engine, Event, IdentityKey, IdentityPin, Trust};
use rampart_proto::GroupId;
use rampart_proto::frame::{Create, Delivery, DeliveryKind};
use support::*;

/// A device of `name` whose certificate does not verify.
fn forged(name: &str, device: u64) -> Device {
    let identity = IdentityKey::generate();
    Device::build(name, device, |_| DeviceCredential {
        user: user(name),
        device: dev(device),
        identity_key: identity.public(),
        certificate: [7u8; 64],
    })
}

#[test]
fn key_package_checks() {
    let alice = Device::new("alice", 0xa1);
    let bob = Device::new("bob", 0xb1);

    // First contact pins bob's identity key.
    alice.fetch_kp(&bob);
    assert_eq!(
        alice.app.pins.borrow().get(&bob.user).map(|p| p.key),
        Some(bob.identity_public)
    );

    // A device of "bob" certified by another identity key while the
    // directory still names bob's real key: injected, refused, pin untouched.
    let impostor = Device::new("bob", 0xb2);
    let err = alice
        .verify_kp_as(
            &bob.user,
            &bob.identity_public,
            impostor.id,
            &impostor.key_package(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, CoreError::ForeignDevice(u) if *u == bob.user),
        "{err:?}"
    );
    assert_eq!(
        alice.app.pins.borrow().get(&bob.user).map(|p| p.key),
        Some(bob.identity_public),
        "the pin is not replaced"
    );

    // The whole account changed keys (a reset, or the server lying about
    // both). Bob was never verified: accepted, but flagged as changed.
    let ok = alice
        .verify_kp_as(
            &bob.user,
            &impostor.identity_public,
            impostor.id,
            &impostor.key_package(),
        )
        .unwrap();
    assert!(ok.identity_changed);
    let pin = alice.app.pins.borrow().get(&bob.user).cloned().unwrap();
    assert_eq!(
        (pin.key, pin.trust, pin.changed),
        (impostor.identity_public, Trust::Unverified, true)
    );

    // Once verified, a change is refused until the user confirms again.
    alice.app.pins.borrow_mut().insert(
        bob.user.clone(),
        IdentityPin {
            key: bob.identity_public,
            trust: Trust::Verified,
            changed: false,
        },
    );
    let err = alice
        .verify_kp_as(
            &bob.user,
            &impostor.identity_public,
            impostor.id,
            &impostor.key_package(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, CoreError::VerificationRequired(u) if *u == bob.user),
        "{err:?}"
    );
    assert_eq!(
        alice.app.pins.borrow().get(&bob.user).map(|p| p.trust),
        Some(Trust::Broken)
    );
    // Still refused on the next attempt, and for the old key's devices too
    // until confirmed: the contact as a whole is in doubt.
    assert!(
        alice
            .verify_kp_as(
                &bob.user,
                &impostor.identity_public,
                impostor.id,
                &impostor.key_package()
            )
            .is_err()
    );
    alice.app.pins.borrow_mut().remove(&bob.user);

    // A genuine identity key certifying some other signature key.
    let carol_id = IdentityKey::generate();
    let carol = Device::build("carol", 0xc1, |_| DeviceCredential {
        user: user("carol"),
        device: dev(0xc1),
        identity_key: carol_id.public(),
        certificate: carol_id.certify(&user("carol"), dev(0xc1), &[9u8; 32]),
    });
    let err = alice
        .verify_kp(&carol.user, carol.id, &carol.key_package())
        .unwrap_err();
    assert!(matches!(err, CoreError::BadCertificate { .. }), "{err:?}");
    assert!(
        !alice.app.pins.borrow().contains_key(&carol.user),
        "nothing pinned from a bad certificate"
    );

    // Garbage certificate.
    let mallory = forged("mallory", 0x66);
    let err = alice
        .verify_kp(&mallory.user, mallory.id, &mallory.key_package())
        .unwrap_err();
    assert!(matches!(err, CoreError::BadCertificate { .. }), "{err:?}");

    // A valid KeyPackage of bob claimed as another device of bob, or as
    // somebody else's.
    let kp = bob.key_package();
    let err = alice.verify_kp(&bob.user, dev(0xb9), &kp).unwrap_err();
    assert!(
        matches!(err, CoreError::WrongKeyPackage { expected } if expected == dev(0xb9)),
        "{err:?}"
    );
    let err = alice.verify_kp(&user("carol"), bob.id, &kp).unwrap_err();
    assert!(matches!(err, CoreError::WrongKeyPackage { .. }), "{err:?}");
    // And it is fine as what it is.
    let ok = alice.verify_kp(&bob.user, bob.id, &kp).unwrap();
    assert_eq!((ok.user.clone(), ok.device), (bob.user.clone(), bob.id));

    // Malformed bytes and a tampered signature.
    for cut in [0, 1, kp.len() / 2, kp.len() - 1] {
        let err = alice.verify_kp(&bob.user, bob.id, &kp[..cut]).unwrap_err();
        assert!(matches!(err, CoreError::Malformed(_)), "cut {cut}: {err:?}");
    }
    let mut tampered = kp.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(alice.verify_kp(&bob.user, bob.id, &tampered).is_err());
}

#[test]
fn welcome_from_a_forged_creator_is_refused() {
    let mut ds = Ds::new(21);
    let mut mallory = forged("mallory", 0x66);
    let mut bob = Device::new("bob", 0xb1);

    // Mallory's engine accepts bob's genuine KeyPackage and builds a group.
    let pending = mallory.create_group(21, &[&bob], ds.now);
    let group = pending.bundle.group;
    mallory
        .submit(&mut ds, &pending)
        .expect("the DS checks no certificates");
    let events = pump(&mut ds, &mut [&mut bob]);
    match events[0].as_slice() {
        [Event::Dropped { group: g, reason }] => {
            assert_eq!(*g, group);
            assert!(reason.contains("certificate"), "{reason}");
        }
        other => panic!("expected Dropped, got {other:?}"),
    }
    assert_eq!(bob.epoch(&group), None);
    assert!(bob.conversation(&group).is_none());
    assert!(!bob.app.pins.borrow().contains_key(&mallory.user));
}

#[test]
fn welcome_to_a_direct_conversation_with_a_third_person_is_refused() {
    let mut ds = Ds::new(22);
    let mut alice = Device::new("alice", 0xa1);
    let bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    // The alice-bob 1:1, but with carol in it.
    let group = GroupId::direct(&alice.user, &bob.user);
    let kp = alice.fetch_kp(&carol);
    let Ok(pending) = alice.engine.create_group(
        &alice.provider,
        &alice.app,
        group,
        Create::Direct {
            peer: bob.user.clone(),
        },
        None,
        None,
        vec![kp],
        ds.now,
    ) else {
        // Refusing to build it is fine too.
        return;
    };
    alice.submit(&mut ds, &pending).unwrap();
    let events = pump(&mut ds, &mut [&mut carol]);
    assert!(
        matches!(events[0].as_slice(), [Event::Dropped { .. }]),
        "{events:?}"
    );
    assert_eq!(carol.epoch(&group), None);
}

#[test]
fn direct_creation_refuses_a_third_person_locally() {
    let alice = Device::new("alice", 0xa1);
    let bob = Device::new("bob", 0xb1);
    let carol = Device::new("carol", 0xc1);
    let group = GroupId::direct(&alice.user, &bob.user);
    let kp = alice.fetch_kp(&carol);
    let result = alice.engine.create_group(
        &alice.provider,
        &alice.app,
        group,
        Create::Direct {
            peer: bob.user.clone(),
        },
        None,
        None,
        vec![kp],
        0,
    );
    assert!(result.is_err(), "a 1:1 with carol's device was built");
}

#[test]
fn changed_identity_of_a_verified_contact_blocks_sending() {
    let mut ds = Ds::new(23);
    let mut alice = Device::new("alice", 0xa1);
    let mut carol = Device::new("carol", 0xc1);
    let bob = Device::new("bob", 0xb1);
    // Alice knows bob's real identity key and verified it.
    alice.fetch_kp(&bob);
    alice
        .app
        .pins
        .borrow_mut()
        .get_mut(&bob.user)
        .unwrap()
        .trust = Trust::Verified;
    let group = group_of(&mut ds, 23, &mut [&mut alice, &mut carol]);
    let epoch = alice.epoch(&group);

    // Carol has never seen bob and adds a "bob" with another identity key.
    let mut impostor = Device::new("bob", 0xb2);
    let kp = carol.fetch_kp(&impostor);
    let pending = carol
        .engine
        .add_members(&carol.provider, &carol.app, &group, vec![kp])
        .unwrap();
    carol.submit(&mut ds, &pending).unwrap();
    let events = pump(&mut ds, &mut [&mut alice, &mut impostor]);
    assert!(
        events[0].contains(&Event::IdentityChanged {
            user: bob.user.clone(),
            group,
            was_verified: true,
        }),
        "{:?}",
        events[0]
    );
    // The group stays consistent (the commit is merged)...
    assert_eq!(alice.epoch(&group), epoch.map(|e| e + 1));
    assert_eq!(alice.members(&group).len(), 3);
    // ...but alice sends nothing the new key could read until she confirms.
    let err = alice
        .engine
        .send(
            &alice.provider,
            &alice.app,
            &group,
            Body::Text("secret".into()),
            ds.now,
            None,
        )
        .unwrap_err();
    assert!(
        matches!(&err, CoreError::VerificationRequired(u) if *u == bob.user),
        "{err:?}"
    );
    rampart_core::trust::confirm(&alice.app, &bob.user, &impostor.identity_public).unwrap();
    alice
        .engine
        .send(
            &alice.provider,
            &alice.app,
            &group,
            Body::Text("after confirming".into()),
            ds.now,
            None,
        )
        .unwrap();
}

#[test]
fn changed_identity_of_an_unverified_contact_is_a_warning() {
    let mut ds = Ds::new(25);
    let mut alice = Device::new("alice", 0xa1);
    let mut carol = Device::new("carol", 0xc1);
    let bob = Device::new("bob", 0xb1);
    alice.fetch_kp(&bob);
    let group = group_of(&mut ds, 25, &mut [&mut alice, &mut carol]);
    let mut impostor = Device::new("bob", 0xb2);
    let kp = carol.fetch_kp(&impostor);
    let pending = carol
        .engine
        .add_members(&carol.provider, &carol.app, &group, vec![kp])
        .unwrap();
    carol.submit(&mut ds, &pending).unwrap();
    let events = pump(&mut ds, &mut [&mut alice, &mut impostor]);
    assert!(events[0].contains(&Event::IdentityChanged {
        user: bob.user.clone(),
        group,
        was_verified: false,
    }));
    let pin = alice.app.pins.borrow().get(&bob.user).cloned().unwrap();
    assert!(pin.changed && pin.trust == Trust::Unverified);
    alice
        .engine
        .send(
            &alice.provider,
            &alice.app,
            &group,
            Body::Text("hi".into()),
            ds.now,
            None,
        )
        .unwrap();
}

#[test]
fn commit_adding_a_forged_leaf_is_refused() {
    let mut ds = Ds::new(24);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mallory = forged("mallory", 0x66);
    let group = group_of(&mut ds, 24, &mut [&mut alice, &mut bob]);
    let epoch = bob.epoch(&group).unwrap();

    // A modified client: alice's own MLS state, driven through OpenMLS
    // directly, adds mallory without verifying the certificate.
    let signer = Engine::load_signer(&alice.signer_public, &alice.provider).unwrap();
    let mut mls = MlsGroup::load(
        alice.provider.storage(),
        &openmls::group::GroupId::from_slice(group.as_bytes()),
    )
    .unwrap()
    .unwrap();
    let kp = KeyPackageIn::tls_deserialize_exact(mallory.key_package().as_slice())
        .unwrap()
        .validate(alice.provider.crypto(), ProtocolVersion::Mls10)
        .unwrap();
    let (commit, _welcome, _gi) = mls.add_members(&alice.provider, &signer, &[kp]).unwrap();
    let commit = commit.tls_serialize_detached().unwrap();
    ds.inject(
        bob.id,
        Delivery {
            seq: 0,
            group,
            sender: alice.user.clone(),
            sender_device: alice.id,
            kind: DeliveryKind::Commit,
            epoch,
            server_time: ds.now,
            expires_at: None,
            payload: commit,
        },
    );
    let events = pump(&mut ds, &mut [&mut bob]);
    match events[0].as_slice() {
        [Event::Dropped { reason, .. }] => assert!(reason.contains("certificate"), "{reason}"),
        other => panic!("expected Dropped, got {other:?}"),
    }
    assert_eq!(bob.epoch(&group), Some(epoch));
    assert_eq!(bob.members(&group).len(), 2);

    // Alice drops the commit; the group still works.
    alice
        .engine
        .commit_rejected(&alice.provider, &alice.app, &group)
        .unwrap();
    alice.send_text(&mut ds, &group, "still fine");
    let events = pump(&mut ds, &mut [&mut bob]);
    assert_eq!(message_texts(&events[0]), vec!["still fine"]);
}

fn garbage(
    ds: &Ds,
    group: GroupId,
    from: &Device,
    kind: DeliveryKind,
    payload: Vec<u8>,
) -> Delivery {
    Delivery {
        seq: 0,
        group,
        sender: from.user.clone(),
        sender_device: from.id,
        kind,
        epoch: ds.epoch(&group).unwrap_or(0),
        server_time: ds.now,
        expires_at: None,
        payload,
    }
}

fn assert_all_dropped(events: &[Event], what: &str) {
    assert!(!events.is_empty(), "{what}: no event");
    for e in events {
        assert!(is_dropped(e), "{what}: {e:?}");
    }
}

#[test]
fn garbage_deliveries_are_dropped() {
    let mut ds = Ds::new(25);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    let kinds = [
        DeliveryKind::Application,
        DeliveryKind::Proposal,
        DeliveryKind::Commit,
        DeliveryKind::Welcome,
    ];

    // A real Welcome, commit and application message to cut up.
    let pending = alice.create_group(25, &[&bob], ds.now);
    let group = pending.bundle.group;
    let welcome = pending.bundle.welcome.clone().unwrap();
    alice.submit(&mut ds, &pending).unwrap();
    let unknown = GroupId::new_group([0xee; 31]);

    // Before bob has the group: garbage for it and for unknown groups,
    // including every prefix of the real Welcome.
    let mut n = 0;
    for len in [0usize, 1, 2, 5, 16, 64, 300, 2000] {
        for kind in kinds {
            let bytes = ds.rng.bytes(len);
            for g in [group, unknown] {
                let d = garbage(&ds, g, &alice, kind, bytes.clone());
                assert_all_dropped(&bob.receive(&d, ds.now), "random bytes");
                n += 1;
            }
        }
    }
    for cut in (0..welcome.len()).step_by(7) {
        let d = garbage(
            &ds,
            group,
            &alice,
            DeliveryKind::Welcome,
            welcome[..cut].to_vec(),
        );
        assert_all_dropped(&bob.receive(&d, ds.now), "truncated welcome");
        n += 1;
    }
    let mut extended = welcome.clone();
    extended.push(0);
    let d = garbage(&ds, group, &alice, DeliveryKind::Welcome, extended);
    assert_all_dropped(&bob.receive(&d, ds.now), "welcome with trailing byte");
    // The Welcome sent as another kind.
    for kind in [DeliveryKind::Application, DeliveryKind::Commit] {
        let d = garbage(&ds, group, &alice, kind, welcome.clone());
        assert_all_dropped(&bob.receive(&d, ds.now), "welcome as another kind");
    }
    assert!(n > 60);
    assert_eq!(bob.epoch(&group), None);

    // The genuine Welcome still works after all that.
    let events = pump(&mut ds, &mut [&mut bob]);
    assert!(
        matches!(events[0].as_slice(), [Event::Joined { .. }]),
        "{events:?}"
    );

    // Now garbage for a group bob is in.
    let msg = alice
        .engine
        .send(
            &alice.provider,
            &alice.app,
            &group,
            Body::Text("real".into()),
            ds.now,
            None,
        )
        .unwrap()
        .mls;
    for cut in (0..msg.len()).step_by(5) {
        for kind in [DeliveryKind::Application, DeliveryKind::Commit] {
            let d = garbage(&ds, group, &alice, kind, msg[..cut].to_vec());
            assert_all_dropped(&bob.receive(&d, ds.now), "truncated message");
        }
    }
    // A real message labelled with another group id.
    let d = garbage(&ds, unknown, &alice, DeliveryKind::Application, msg.clone());
    assert_all_dropped(&bob.receive(&d, ds.now), "message for another group");
    for len in [0usize, 3, 40, 500] {
        for kind in kinds {
            let bytes = ds.rng.bytes(len);
            let d = garbage(&ds, group, &alice, kind, bytes);
            assert_all_dropped(&bob.receive(&d, ds.now), "random bytes in a live group");
        }
    }
    // A commit to a live group, truncated.
    let upd = alice
        .engine
        .self_update(&alice.provider, &alice.app, &group)
        .unwrap();
    let commit = upd.bundle.commit.clone();
    for cut in (0..commit.len()).step_by(11) {
        let d = garbage(
            &ds,
            group,
            &alice,
            DeliveryKind::Commit,
            commit[..cut].to_vec(),
        );
        assert_all_dropped(&bob.receive(&d, ds.now), "truncated commit");
    }
    alice.submit(&mut ds, &upd).unwrap();
    pump(&mut ds, &mut [&mut bob]);
    assert_eq!(bob.epoch(&group), alice.epoch(&group));

    // A Welcome for another group, delivered under a group id carol knows nothing about.
    let pending = alice.create_group(26, &[&carol], ds.now);
    let other = pending.bundle.group;
    alice.submit(&mut ds, &pending).unwrap();
    let mut welcome_for_other = ds.drain(carol.id);
    assert_eq!(welcome_for_other.len(), 1);
    welcome_for_other[0].group = unknown;
    let ev = carol.receive(&welcome_for_other[0], ds.now);
    assert_all_dropped(&ev, "welcome for another group id");
    assert_eq!(carol.epoch(&unknown), None);
    assert_eq!(carol.epoch(&other), None);
    assert!(carol.conversation(&unknown).is_none());
    assert!(carol.conversation(&other).is_none());
    // A Welcome relabelled to a group bob is already in.
    let mut relabelled = welcome_for_other[0].clone();
    relabelled.group = group;
    assert_all_dropped(
        &bob.receive(&relabelled, ds.now),
        "welcome for a group bob is in",
    );

    // Nothing of that broke bob: the real message still decrypts.
    let d = garbage(&ds, group, &alice, DeliveryKind::Application, msg);
    // (It was encrypted in the previous epoch; past-epoch secrets are kept.)
    let ev = bob.receive(&d, ds.now);
    assert_eq!(message_texts(&ev), vec!["real"], "{ev:?}");
    alice.send_text(&mut ds, &group, "after the storm");
    let events = pump(&mut ds, &mut [&mut bob]);
    assert_eq!(message_texts(&events[0]), vec!["after the storm"]);
}

fn direct_pair(seed: u64) -> (Ds, Device, Device, GroupId) {
    let mut ds = Ds::new(seed);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let pending = alice.create_direct(&bob, ds.now);
    let group = pending.bundle.group;
    alice.submit(&mut ds, &pending).unwrap();
    pump(&mut ds, &mut [&mut bob]);
    assert_eq!(bob.epoch(&group), Some(1));
    (ds, alice, bob, group)
}

/// Flips one bit of the AEAD-protected part of a PrivateMessage (the server,
/// or a bad link, can do that). The forged copy must be dropped, and the
/// genuine copy, delivered afterwards, must still decrypt.
#[test]
fn tampered_ciphertext_does_not_burn_the_genuine_message() {
    let (mut ds, alice, mut bob, group) = direct_pair(26);
    alice.send_text(&mut ds, &group, "genuine");
    let genuine = ds.drain(bob.id).remove(0);
    let mut forged = genuine.clone();
    let i = forged.payload.len() - 20;
    forged.payload[i] ^= 0x40;
    assert_all_dropped(&bob.receive(&forged, ds.now), "tampered ciphertext");
    let ev = bob.receive(&genuine, ds.now);
    assert_eq!(message_texts(&ev), vec!["genuine"], "{ev:?}");
}

/// The same with a delivery whose server-claimed sender is wrong: it is
/// dropped, as it should be.
#[test]
fn wrong_claimed_sender_is_dropped() {
    let (mut ds, alice, mut bob, group) = direct_pair(27);
    alice.send_text(&mut ds, &group, "genuine");
    let genuine = ds.drain(bob.id).remove(0);
    let mut relabelled = genuine.clone();
    relabelled.sender = user("carol");
    let ev = bob.receive(&relabelled, ds.now);
    assert_all_dropped(&ev, "claimed sender differs");
    assert!(bob.history(&group).is_empty());
    // The next message from alice is fine.
    alice.send_text(&mut ds, &group, "next");
    let events = pump(&mut ds, &mut [&mut bob]);
    assert_eq!(message_texts(&events[0]), vec!["next"]);
}
