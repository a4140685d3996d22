//! The conversation state machine end to end: devices, an in-memory delivery
//! service, and faults scheduled by a seeded RNG.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use rampart_core::{ConversationState, Event};
use rampart_proto::frame::DeliveryKind;
use rampart_proto::{GroupId, GroupKind};
use support::*;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn direct_conversation_round_trip_and_ds_sees_only_ciphertext() {
    let mut ds = Ds::new(1);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);

    let pending = alice.create_direct(&bob, ds.now);
    let group = pending.bundle.group;
    assert_eq!(group, GroupId::direct(&alice.user, &bob.user));
    assert_eq!(group.kind(), GroupKind::Direct);
    assert_eq!(pending.bundle.epoch, 0);
    assert_eq!(pending.bundle.added, vec![bob.id]);
    assert_eq!(
        alice.conversation(&group).unwrap().state,
        ConversationState::Pending
    );
    alice.submit(&mut ds, &pending).expect("accepted");
    assert_eq!(
        alice.conversation(&group).unwrap().state,
        ConversationState::Active
    );
    assert_eq!(alice.epoch(&group), Some(1));

    let events = pump(&mut ds, &mut [&mut alice, &mut bob]);
    assert_eq!(
        events[1],
        vec![Event::Joined {
            group,
            by: alice.user.clone()
        }]
    );
    let conv = bob.conversation(&group).unwrap();
    assert_eq!(conv.state, ConversationState::Active);
    assert_eq!(conv.peer, Some(alice.user.clone()));
    assert_eq!(
        alice.conversation(&group).unwrap().peer,
        Some(bob.user.clone())
    );
    assert_eq!(bob.epoch(&group), Some(1));

    let script = [
        ("alice", "secret-hello-from-alice"),
        ("bob", "secret-hi-alice-bob-here"),
        ("alice", "secret-how-are-you"),
        ("alice", "secret-still-there"),
        ("bob", "secret-yes-all-good"),
    ];
    for (who, text) in script {
        let (from, to) = if who == "alice" {
            (&mut alice, &mut bob)
        } else {
            (&mut bob, &mut alice)
        };
        from.send_text(&mut ds, &group, text);
        let got = pump(&mut ds, &mut [to]);
        assert_eq!(message_texts(&got[0]), vec![text.to_string()]);
    }
    let expected: Vec<(String, String)> = script
        .iter()
        .map(|(w, t)| (w.to_string(), t.to_string()))
        .collect();
    assert_eq!(alice.texts(&group), expected);
    assert_eq!(bob.texts(&group), expected);
    for m in alice.history(&group) {
        assert_eq!(m.outgoing, m.sender == alice.user);
    }
    for m in bob.history(&group) {
        assert_eq!(m.outgoing, m.sender == bob.user);
    }

    assert!(!ds.stored.is_empty());
    for payload in &ds.stored {
        for (_, text) in script {
            assert!(
                !contains(payload, text.as_bytes()),
                "plaintext {text:?} visible to the DS"
            );
        }
        assert!(!contains(payload, b"secret-"));
    }
    assert_eq!(alice.count(is_dropped), 0);
    assert_eq!(bob.count(is_dropped), 0);
}

#[test]
fn group_of_three_everyone_receives_everything_once() {
    let mut ds = Ds::new(2);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);

    let pending = alice.create_group(7, &[&bob, &carol], ds.now);
    let group = pending.bundle.group;
    assert_eq!(pending.bundle.added, vec![bob.id, carol.id]);
    let events = alice.submit(&mut ds, &pending).expect("accepted");
    assert_eq!(
        events,
        vec![Event::MembersChanged {
            group,
            added: vec![bob.user.clone(), carol.user.clone()],
            removed: vec![],
        }]
    );
    let events = pump(&mut ds, &mut [&mut alice, &mut bob, &mut carol]);
    assert!(events[0].is_empty());
    for ev in &events[1..] {
        assert_eq!(
            ev,
            &vec![Event::Joined {
                group,
                by: alice.user.clone()
            }]
        );
    }
    let mut members = alice.members(&group);
    members.sort();
    assert_eq!(
        members,
        vec![
            (alice.user.clone(), alice.id),
            (bob.user.clone(), bob.id),
            (carol.user.clone(), carol.id)
        ]
    );
    assert_eq!(bob.members(&group).len(), 3);
    assert_eq!(bob.conversation(&group).unwrap().kind, GroupKind::Group);

    for round in 0..3 {
        for d in [&alice, &bob, &carol] {
            d.send_text(&mut ds, &group, &format!("{} says {round}", d.user));
        }
    }
    pump(&mut ds, &mut [&mut alice, &mut bob, &mut carol]);

    for d in [&alice, &bob, &carol] {
        let texts = d.texts(&group);
        assert_eq!(texts.len(), 9, "{}: {texts:?}", d.user);
        for sender in ["alice", "bob", "carol"] {
            let from_sender: Vec<String> = texts
                .iter()
                .filter(|(s, _)| s == sender)
                .map(|(_, t)| t.clone())
                .collect();
            let want: Vec<String> = (0..3).map(|r| format!("{sender} says {r}")).collect();
            assert_eq!(from_sender, want, "{} sees {sender}", d.user);
        }
        assert_eq!(d.count(is_message), 6, "{} received", d.user);
        assert_eq!(d.count(is_dropped), 0, "{}: {:?}", d.user, d.events);
    }
}

#[test]
fn removed_member_cannot_read_later_messages() {
    let mut ds = Ds::new(3);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    let group = group_of(&mut ds, 3, &mut [&mut alice, &mut bob, &mut carol]);

    let pending = alice
        .engine
        .remove_users(&alice.provider, &alice.app, &group, &[carol.user.clone()])
        .unwrap();
    assert_eq!(pending.bundle.removed, vec![carol.id]);
    let events = alice.submit(&mut ds, &pending).unwrap();
    assert_eq!(
        events,
        vec![Event::MembersChanged {
            group,
            added: vec![],
            removed: vec![carol.user.clone()],
        }]
    );
    assert_eq!(ds.members(&group), vec![alice.id, bob.id]);

    let events = pump(&mut ds, &mut [&mut alice, &mut bob, &mut carol]);
    assert_eq!(
        events[1],
        vec![Event::MembersChanged {
            group,
            added: vec![],
            removed: vec![carol.user.clone()],
        }]
    );
    assert_eq!(events[2], vec![Event::Removed { group }]);
    assert_eq!(
        carol.conversation(&group).unwrap().state,
        ConversationState::Left
    );
    assert_eq!(carol.epoch(&group), None);
    assert!(!alice.members(&group).iter().any(|(u, _)| *u == carol.user));

    // A message after the removal: the DS no longer routes it to carol, so
    // hand carol a copy of bob's delivery, as a server leaking it would.
    alice.send_text(&mut ds, &group, "after carol left");
    let to_bob = ds.drain(bob.id);
    assert_eq!(to_bob.len(), 1);
    assert_eq!(
        ds.pending(carol.id),
        0,
        "DS does not route to removed devices"
    );
    let now = ds.tick(1);
    let carol_events = carol.receive(&to_bob[0], now);
    assert!(
        matches!(carol_events.as_slice(), [Event::Dropped { group: g, .. }] if *g == group),
        "{carol_events:?}"
    );
    assert!(carol.history(&group).is_empty());
    let bob_events = bob.receive(&to_bob[0], now);
    assert_eq!(message_texts(&bob_events), vec!["after carol left"]);
    // Carol cannot send either.
    assert!(
        carol
            .engine
            .send(
                &carol.provider,
                &carol.app,
                &group,
                rampart_core::content::Body::Text("x".into()),
                now,
                None,
            )
            .is_err()
    );
}

#[test]
fn leave_is_committed_by_another_member() {
    let mut ds = Ds::new(4);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    let group = group_of(&mut ds, 4, &mut [&mut alice, &mut bob, &mut carol]);
    let epoch = ds.epoch(&group).unwrap();

    let proposal = bob
        .engine
        .leave(&bob.provider, &bob.app, &group)
        .expect("leave");
    assert_eq!(
        bob.conversation(&group).unwrap().state,
        ConversationState::Left
    );
    ds.send(&bob, group, DeliveryKind::Proposal, proposal)
        .unwrap();
    let events = pump(&mut ds, &mut [&mut alice, &mut carol]);
    assert_eq!(events[0], vec![Event::ProposalQueued { group }]);
    assert_eq!(events[1], vec![Event::ProposalQueued { group }]);

    let pending = alice
        .engine
        .commit_pending(&alice.provider, &alice.app, &group)
        .unwrap()
        .expect("a pending proposal to commit");
    assert_eq!(pending.bundle.removed, vec![bob.id]);
    assert_eq!(pending.bundle.epoch, epoch);
    assert_eq!(pending.removed, vec![bob.user.clone()]);
    let events = alice.submit(&mut ds, &pending).unwrap();
    assert_eq!(
        events,
        vec![Event::MembersChanged {
            group,
            added: vec![],
            removed: vec![bob.user.clone()]
        }]
    );
    let events = pump(&mut ds, &mut [&mut alice, &mut bob, &mut carol]);
    assert_eq!(events[1], vec![Event::Removed { group }]);
    assert_eq!(
        events[2],
        vec![Event::MembersChanged {
            group,
            added: vec![],
            removed: vec![bob.user.clone()]
        }]
    );
    for d in [&alice, &carol] {
        assert!(!d.members(&group).iter().any(|(u, _)| *u == bob.user));
        assert_eq!(d.epoch(&group), Some(epoch + 1));
    }
    assert_eq!(bob.epoch(&group), None);
    assert_eq!(
        bob.conversation(&group).unwrap().state,
        ConversationState::Left
    );
    // Nothing left to commit.
    assert!(
        carol
            .engine
            .commit_pending(&carol.provider, &carol.app, &group)
            .unwrap()
            .is_none()
    );
    carol.send_text(&mut ds, &group, "bye bob");
    assert_eq!(ds.pending(bob.id), 0);
    let events = pump(&mut ds, &mut [&mut alice]);
    assert_eq!(message_texts(&events[0]), vec!["bye bob"]);
}

/// Two members commit on the same epoch; the loser catches up and retries.
fn concurrent_commits(seed: u64, loser_sees_winner_first: bool) {
    let mut ds = Ds::new(seed);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    let mut dave = Device::new("dave", 0xd1);
    let group = group_of(&mut ds, 5, &mut [&mut alice, &mut bob, &mut carol]);
    let e0 = ds.epoch(&group).unwrap();

    // bob adds dave; carol refreshes her leaf; both on epoch e0.
    let kp = bob.fetch_kp(&dave);
    let bob_commit = bob
        .engine
        .add_members(&bob.provider, &bob.app, &group, vec![kp])
        .unwrap();
    let carol_commit = carol
        .engine
        .self_update(&carol.provider, &carol.app, &group)
        .unwrap();
    assert_eq!(bob_commit.bundle.epoch, e0);
    assert_eq!(carol_commit.bundle.epoch, e0);

    bob.submit(&mut ds, &bob_commit).expect("first commit wins");
    if loser_sees_winner_first {
        // The winner's commit reaches carol before the rejection does.
        let ev = pump(&mut ds, &mut [&mut carol]);
        assert!(
            !ev[0].iter().any(is_dropped),
            "carol with a pending commit could not process bob's: {ev:?}"
        );
        assert_eq!(carol.epoch(&group), Some(e0 + 1));
        assert_eq!(ds.commit(&carol, &carol_commit.bundle), Err(Some(e0 + 1)));
        carol.rejected(&carol_commit);
    } else {
        assert_eq!(ds.commit(&carol, &carol_commit.bundle), Err(Some(e0 + 1)));
        carol.rejected(&carol_commit);
        assert_eq!(carol.epoch(&group), Some(e0), "rejection does not merge");
        pump(&mut ds, &mut [&mut carol]);
    }
    assert_eq!(carol.epoch(&group), Some(e0 + 1));

    // Retry on the new epoch.
    let retry = carol
        .engine
        .self_update(&carol.provider, &carol.app, &group)
        .unwrap();
    assert_eq!(retry.bundle.epoch, e0 + 1);
    carol.submit(&mut ds, &retry).expect("retry lands");
    let events = pump(&mut ds, &mut [&mut alice, &mut bob, &mut carol, &mut dave]);
    assert!(events[3].iter().any(|e| matches!(e, Event::Joined { .. })));
    for d in [&alice, &bob, &carol, &dave] {
        assert_eq!(d.epoch(&group), Some(e0 + 2), "{}", d.user);
        assert_eq!(d.members(&group).len(), 4, "{}", d.user);
        assert_eq!(d.count(is_dropped), 0, "{}: {:?}", d.user, d.events);
    }
    assert!(carol.conversation(&group).unwrap().last_self_update > 0);

    for d in [&alice, &bob, &carol, &dave] {
        d.send_text(&mut ds, &group, &format!("from {}", d.user));
    }
    pump(&mut ds, &mut [&mut alice, &mut bob, &mut carol, &mut dave]);
    for d in [&alice, &bob, &carol, &dave] {
        assert_eq!(
            d.history(&group).len(),
            4,
            "{}: {:?}",
            d.user,
            d.texts(&group)
        );
    }
}

#[test]
fn concurrent_commits_loser_retries_after_rejection() {
    concurrent_commits(5, false);
}

#[test]
fn concurrent_commits_loser_sees_winner_before_rejection() {
    concurrent_commits(6, true);
}

#[test]
fn simultaneous_direct_creation_converges() {
    let mut ds = Ds::new(7);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let a = alice.create_direct(&bob, ds.now);
    let b = bob.create_direct(&alice, ds.now);
    let group = a.bundle.group;
    assert_eq!(b.bundle.group, group);

    alice.submit(&mut ds, &a).expect("alice first");
    assert_eq!(bob.submit(&mut ds, &b), Err(Some(1)));
    assert!(bob.conversation(&group).is_none(), "pending group deleted");
    assert_eq!(bob.epoch(&group), None);

    let events = pump(&mut ds, &mut [&mut alice, &mut bob]);
    assert_eq!(
        events[1],
        vec![Event::Joined {
            group,
            by: alice.user.clone()
        }]
    );
    assert_eq!(bob.epoch(&group), Some(1));
    assert_eq!(ds.pending(alice.id), 0, "the loser's commit went nowhere");

    alice.send_text(&mut ds, &group, "a->b");
    bob.send_text(&mut ds, &group, "b->a");
    let events = pump(&mut ds, &mut [&mut alice, &mut bob]);
    assert_eq!(message_texts(&events[0]), vec!["b->a"]);
    assert_eq!(message_texts(&events[1]), vec!["a->b"]);
}

/// The same race, but the winner's Welcome is queued on bob's connection
/// before the answer to his own commit (the server accepted alice's commit
/// first, so its Welcome was enqueued first). A driver that applies
/// deliveries in order hands the Welcome to the engine while bob's own
/// pending creation still exists.
#[test]
fn simultaneous_direct_creation_welcome_before_rejection() {
    let mut ds = Ds::new(8);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let a = alice.create_direct(&bob, ds.now);
    let b = bob.create_direct(&alice, ds.now);
    let group = a.bundle.group;

    alice.submit(&mut ds, &a).expect("alice first");
    // Bob's connection: Deliver(Welcome) arrives, then Rejected.
    let events = pump(&mut ds, &mut [&mut bob]);
    assert_eq!(ds.commit(&bob, &b.bundle), Err(Some(1)));
    bob.rejected(&b);

    let joined = events[0].iter().any(|e| matches!(e, Event::Joined { .. }));
    assert!(
        joined || bob.epoch(&group) == Some(1),
        "bob never joins alice's group: {:?}; bob's epoch {:?}",
        events[0],
        bob.epoch(&group)
    );
    alice.send_text(&mut ds, &group, "a->b");
    let events = pump(&mut ds, &mut [&mut bob]);
    assert_eq!(message_texts(&events[0]), vec!["a->b"]);
}

#[test]
fn every_delivery_twice() {
    let mut ds = Ds::new(9);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    let twice = |_: &mut XorShift, q: &mut Vec<rampart_proto::frame::Delivery>| {
        *q = q.iter().flat_map(|d| [d.clone(), d.clone()]).collect();
    };

    let pending = alice.create_group(9, &[&bob, &carol], ds.now);
    let group = pending.bundle.group;
    alice.submit(&mut ds, &pending).unwrap();
    for d in [&mut bob, &mut carol] {
        let ev = pump_one_with(&mut ds, d, twice);
        assert!(matches!(ev[0], Event::Joined { .. }), "{ev:?}");
        assert!(is_dropped(&ev[1]), "duplicate Welcome: {ev:?}");
        assert_eq!(ev.len(), 2);
    }

    let mut sent = 0;
    for round in 0..2 {
        for d in [&alice, &bob, &carol] {
            d.send_text(&mut ds, &group, &format!("{}:{round}", d.user));
            sent += 1;
        }
        // A commit in between, delivered twice as well.
        let committer = [&mut alice, &mut bob, &mut carol]
            .into_iter()
            .nth(round)
            .unwrap();
        let upd = committer
            .engine
            .self_update(&committer.provider, &committer.app, &group)
            .unwrap();
        committer.submit(&mut ds, &upd).unwrap();
        for d in [&mut alice, &mut bob, &mut carol] {
            let ev = pump_one_with(&mut ds, d, twice);
            assert!(
                !ev.iter()
                    .any(|e| matches!(e, Event::IdentityChanged { .. }))
            );
        }
    }
    let epoch = ds.epoch(&group);
    for d in [&alice, &bob, &carol] {
        assert_eq!(d.epoch(&group), epoch, "{}", d.user);
        // Own messages are stored at send time; others' once each.
        assert_eq!(
            d.history(&group).len(),
            sent,
            "{}: {:?}",
            d.user,
            d.texts(&group)
        );
        let mut ids: Vec<_> = d.history(&group).iter().map(|m| m.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), sent);
        // 4 messages from others and 1 or 2 commits from others, each dropped once.
        let dropped = d.count(is_dropped);
        assert!(
            (4 + 1..=4 + 2 + 1).contains(&dropped),
            "{}: {dropped} drops: {:?}",
            d.user,
            d.events
        );
        assert_eq!(d.count(is_message), 4, "{}", d.user);
    }

    // Still works.
    bob.send_text(&mut ds, &group, "still alive");
    let events = pump(&mut ds, &mut [&mut alice, &mut carol]);
    assert_eq!(message_texts(&events[0]), vec!["still alive"]);
    assert_eq!(message_texts(&events[1]), vec!["still alive"]);
}

/// The server delivers at least once, so a leave proposal can arrive twice.
#[test]
fn duplicated_leave_proposal_is_committed_once() {
    let mut ds = Ds::new(10);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    let group = group_of(&mut ds, 10, &mut [&mut alice, &mut bob, &mut carol]);
    let proposal = bob.engine.leave(&bob.provider, &bob.app, &group).unwrap();
    ds.send(&bob, group, DeliveryKind::Proposal, proposal)
        .unwrap();
    let twice = |_: &mut XorShift, q: &mut Vec<rampart_proto::frame::Delivery>| {
        *q = q.iter().flat_map(|d| [d.clone(), d.clone()]).collect();
    };
    pump_one_with(&mut ds, &mut alice, twice);
    pump_one_with(&mut ds, &mut carol, twice);
    let pending = alice
        .engine
        .commit_pending(&alice.provider, &alice.app, &group)
        .unwrap()
        .expect("commit");
    assert_eq!(
        pending.bundle.removed,
        vec![bob.id],
        "one removal per device in the bundle"
    );
    assert_eq!(
        alice.submit(&mut ds, &pending).map(|_| ()),
        Ok(()),
        "DS refused: {:?}",
        ds.last_refusal
    );
    let events = pump(&mut ds, &mut [&mut alice, &mut bob, &mut carol]);
    assert_eq!(events[1], vec![Event::Removed { group }]);
    assert_eq!(carol.epoch(&group), alice.epoch(&group));
    assert_eq!(carol.members(&group).len(), 2);
}

#[test]
fn reordered_application_messages_within_an_epoch() {
    let mut ds = Ds::new(11);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    let group = group_of(&mut ds, 11, &mut [&mut alice, &mut bob, &mut carol]);

    let mut texts = vec![];
    for i in 0..20 {
        let sender = if i % 3 == 0 { &alice } else { &bob };
        let t = format!("m{i:02}");
        sender.send_text(&mut ds, &group, &t);
        texts.push(t);
    }
    let events = pump_one_with(&mut ds, &mut carol, |rng, q| {
        let before = q.clone();
        rng.shuffle(q);
        assert_ne!(*q, before, "the seed must actually reorder");
    });
    assert_eq!(events.len(), 20);
    assert!(events.iter().all(is_message), "{events:?}");
    let mut got: Vec<String> = carol.texts(&group).into_iter().map(|(_, t)| t).collect();
    assert_eq!(got.len(), 20);
    got.sort();
    assert_eq!(got, texts);
}

#[test]
fn application_messages_delayed_past_a_commit_still_decrypt() {
    let mut ds = Ds::new(12);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    let group = group_of(&mut ds, 12, &mut [&mut alice, &mut bob, &mut carol]);

    bob.send_text(&mut ds, &group, "old epoch 1");
    bob.send_text(&mut ds, &group, "old epoch 2");
    let upd = bob
        .engine
        .self_update(&bob.provider, &bob.app, &group)
        .unwrap();
    bob.submit(&mut ds, &upd).unwrap();
    bob.send_text(&mut ds, &group, "new epoch");
    // carol's queue: m1 m2 commit m3. Deliver the commit first, then the rest
    // shuffled.
    let events = pump_one_with(&mut ds, &mut carol, |rng, q| {
        let commit = q.remove(2);
        assert_eq!(commit.kind, DeliveryKind::Commit);
        rng.shuffle(q);
        q.insert(0, commit);
    });
    assert_eq!(message_texts(&events).len(), 3, "{events:?}");
    assert_eq!(carol.history(&group).len(), 3);
    pump(&mut ds, &mut [&mut alice]);
    assert_eq!(alice.history(&group).len(), 3);
}

/// Every OpenMLS commit builder the engine uses (self_update, add_members,
/// remove_members) also commits the proposals in the store. A member that
/// queued bob's leave and then refreshes its leaf removes bob; the bundle must
/// say so, or the server keeps bob as a member.
#[test]
fn commit_sweeping_a_queued_leave_reports_the_removal() {
    let mut ds = Ds::new(13);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    let group = group_of(&mut ds, 13, &mut [&mut alice, &mut bob, &mut carol]);
    let proposal = bob.engine.leave(&bob.provider, &bob.app, &group).unwrap();
    ds.send(&bob, group, DeliveryKind::Proposal, proposal)
        .unwrap();
    pump(&mut ds, &mut [&mut alice, &mut carol]);

    // Alice's periodic leaf refresh comes before she commits the proposal.
    let upd = alice
        .engine
        .self_update(&alice.provider, &alice.app, &group)
        .unwrap();
    let events = alice.submit(&mut ds, &upd).expect("accepted");
    let events_elsewhere = pump(&mut ds, &mut [&mut bob, &mut carol]);
    assert_eq!(events_elsewhere[0], vec![Event::Removed { group }]);
    assert_eq!(
        events,
        vec![Event::MembersChanged {
            group,
            added: vec![],
            removed: vec![bob.user.clone()]
        }]
    );
    assert_eq!(ds.members(&group), vec![alice.id, carol.id]);
}
