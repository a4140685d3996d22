#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! What happens to messages after they are sent: the disappearing-messages
//! timer, the organisation's maximum retention, recall and edit, on the
//! sending side and on the receiving side (which checks every rule again,
//! so forged lifecycle messages from a modified client are dropped).

mod support;

use rampart_core::content::Body;
use rampart_core::{AppStore, CoreError, Event, MessageId, Outgoing, StoredMessage};
use rampart_proto::api::MessagePolicy;
use rampart_proto::frame::{Create, DeliveryKind};
use rampart_proto::group::{Allowed, GroupSettings};
use rampart_proto::limits::{
    DEFAULT_RECALL_WINDOW_SECS, MAX_EDITS, MAX_TIMER_SECS, MIN_TIMER_SECS,
};
use rampart_proto::{GroupId, Millis};
use support::*;

const HOUR: u32 = 3600;
/// The default recall/edit window in milliseconds.
const WINDOW_MS: Millis = DEFAULT_RECALL_WINDOW_SECS as Millis * 1000;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

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

/// A group created by `devices[0]` with explicit settings, everyone joined.
fn group_with_settings(
    ds: &mut Ds,
    seed: u8,
    devices: &mut [&mut Device],
    settings: GroupSettings,
) -> GroupId {
    let group = GroupId::new_group([seed; 31]);
    let (creator, rest) = devices.split_first_mut().unwrap();
    let kps = rest.iter().map(|m| creator.fetch_kp(m)).collect();
    let pending = creator
        .engine
        .create_group(
            &creator.provider,
            &creator.app,
            group,
            Create::Group,
            Some("team".into()),
            Some(settings),
            kps,
            ds.now,
        )
        .expect("create group with settings");
    creator.submit(ds, &pending).expect("creation accepted");
    let events = pump(ds, devices);
    for (d, ev) in devices.iter().zip(&events).skip(1) {
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::Joined { group: g, .. } if *g == group)),
            "{} did not join: {ev:?}",
            d.user
        );
    }
    group
}

/// Hands an outgoing message to the DS and, once accepted, records it on
/// the sender (as the client driver does); returns the server time it got.
fn ship(ds: &mut Ds, from: &Device, out: &Outgoing) -> Millis {
    let at = ds.now;
    from.deliver(ds, out);
    at
}

/// What a modified client does: encrypts any body (also ones the engine's
/// dedicated calls would refuse) and hands it to the DS.
fn forge(ds: &mut Ds, from: &Device, group: &GroupId, body: Body) -> Outgoing {
    let out = from
        .engine
        .send(&from.provider, &from.app, group, body, ds.now, None)
        .expect("send");
    ds.send(from, *group, DeliveryKind::Application, out.mls.clone())
        .expect("DS accepts the message");
    out
}

/// Sends any body through `Engine::send` and ships it.
fn send_body(
    ds: &mut Ds,
    from: &Device,
    group: &GroupId,
    body: Body,
    expire_override: Option<u32>,
) -> Outgoing {
    let out = from
        .engine
        .send(
            &from.provider,
            &from.app,
            group,
            body,
            ds.now,
            expire_override,
        )
        .expect("send");
    ship(ds, from, &out);
    out
}

fn send_text(ds: &mut Ds, from: &Device, group: &GroupId, text: &str) -> MessageId {
    send_body(ds, from, group, Body::Text(text.into()), None)
        .stored
        .id
}

/// Delivers everything queued for `to`.
fn deliver(ds: &mut Ds, to: &mut Device) -> Vec<Event> {
    pump(ds, &mut [to]).remove(0)
}

fn set_timer(
    d: &Device,
    group: &GroupId,
    timer: Option<u32>,
    now: Millis,
) -> Result<Outgoing, CoreError> {
    d.engine.set_timer(&d.provider, &d.app, group, timer, now)
}

fn recall(d: &Device, group: &GroupId, id: &MessageId, now: Millis) -> Result<Outgoing, CoreError> {
    d.engine.recall(&d.provider, &d.app, group, id, now)
}

fn edit(
    d: &Device,
    group: &GroupId,
    id: &MessageId,
    text: &str,
    now: Millis,
) -> Result<Outgoing, CoreError> {
    d.engine.edit(&d.provider, &d.app, group, id, text, now)
}

fn stored(d: &Device, group: &GroupId, id: &MessageId) -> StoredMessage {
    d.app
        .message(group, id)
        .unwrap()
        .unwrap_or_else(|| panic!("{}: message {id} missing", d.user))
}

fn has(d: &Device, group: &GroupId, id: &MessageId) -> bool {
    d.app.message(group, id).unwrap().is_some()
}

fn timer_of(d: &Device, group: &GroupId) -> Option<u32> {
    d.conversation(group).expect("conversation").timer
}

/// The events are exactly one drop whose reason mentions `what`.
fn assert_dropped(events: &[Event], what: &str) {
    match events {
        [Event::Dropped { reason, .. }] => {
            assert!(
                reason.contains(what),
                "dropped for {reason:?}, expected {what:?}"
            )
        }
        other => panic!("expected one Dropped ({what}), got {other:?}"),
    }
}

fn is_text(m: &StoredMessage, text: &str) -> bool {
    m.body == Body::Text(text.into())
}

// ---------------------------------------------------------------------------
// 1. Timer in a 1:1
// ---------------------------------------------------------------------------

/// Either person of a 1:1 sets the timer; the other gets a TimerChanged
/// event, a Timer line in the history and the timer on the conversation.
/// Later texts carry the timer as their lifetime; each side computes the
/// same local expiry and deletes the message exactly then. Off works too.
#[test]
fn timer_in_a_direct_conversation() {
    let (mut ds, mut alice, mut bob, group) = direct_pair(101);
    assert_eq!(timer_of(&alice, &group), None);
    assert_eq!(timer_of(&bob, &group), None);

    let out = set_timer(&alice, &group, Some(HOUR), ds.now).unwrap();
    assert_eq!(out.stored.body, Body::Timer(Some(HOUR)));
    assert_eq!(
        out.expires_in, None,
        "the timer line is kept as long as the organisation allows (here: no maximum)"
    );
    assert_eq!(out.recalls, None);
    // Nothing changes here until the server accepted it.
    assert_eq!(timer_of(&alice, &group), None);
    assert!(!has(&alice, &group, &out.stored.id));
    ship(&mut ds, &alice, &out);
    assert_eq!(timer_of(&alice, &group), Some(HOUR));
    assert!(
        has(&alice, &group, &out.stored.id),
        "sender keeps the timer line"
    );
    let events = deliver(&mut ds, &mut bob);
    assert_eq!(
        events,
        vec![Event::TimerChanged {
            group,
            by: alice.user.clone(),
            timer: Some(HOUR),
        }]
    );
    assert_eq!(timer_of(&bob, &group), Some(HOUR));
    let line = stored(&bob, &group, &out.stored.id);
    assert_eq!(line.body, Body::Timer(Some(HOUR)));
    assert_eq!(line.sender, alice.user);
    assert_eq!(line.expires_in, None);

    // The next text lives an hour, on both sides.
    ds.tick(10_000);
    let out = alice
        .engine
        .send(
            &alice.provider,
            &alice.app,
            &group,
            Body::Text("self-destructing".into()),
            ds.now,
            None,
        )
        .unwrap();
    assert_eq!(out.expires_in, Some(HOUR));
    let server_time = ship(&mut ds, &alice, &out);
    let at = server_time + Millis::from(HOUR) * 1000;
    let id = out.stored.id;
    assert_eq!(stored(&alice, &group, &id).expires_at, Some(at));
    let events = deliver(&mut ds, &mut bob);
    assert_eq!(message_texts(&events), vec!["self-destructing"]);
    let copy = stored(&bob, &group, &id);
    assert_eq!(copy.expires_in, Some(HOUR));
    assert_eq!(
        copy.expires_at,
        Some(at),
        "received copy expires at server_time + expires_in"
    );

    // Just before: kept. At the expiry: gone from both stores.
    for d in [&alice, &bob] {
        d.app.delete_expired(at - 1).unwrap();
        assert!(has(d, &group, &id), "{}: deleted too early", d.user);
        assert!(d.app.delete_expired(at).unwrap() >= 1);
        assert!(!has(d, &group, &id), "{}: kept after expiry", d.user);
        assert!(
            d.texts(&group).iter().all(|(_, t)| t != "self-destructing"),
            "{}: text still in the store",
            d.user
        );
    }

    // Bob turns it off again (anyone may in a 1:1; no organisation maximum).
    let out = set_timer(&bob, &group, None, ds.now).unwrap();
    assert_eq!(out.expires_in, None);
    assert_eq!(timer_of(&bob, &group), Some(HOUR), "off before accepted");
    ship(&mut ds, &bob, &out);
    assert_eq!(timer_of(&bob, &group), None);
    let events = deliver(&mut ds, &mut alice);
    assert_eq!(
        events,
        vec![Event::TimerChanged {
            group,
            by: bob.user.clone(),
            timer: None,
        }]
    );
    assert_eq!(timer_of(&alice, &group), None);
    let out = send_body(&mut ds, &alice, &group, Body::Text("forever".into()), None);
    assert_eq!(out.expires_in, None);
    assert_eq!(out.stored.expires_at, None);
    deliver(&mut ds, &mut bob);
    let copy = stored(&bob, &group, &out.stored.id);
    assert_eq!((copy.expires_in, copy.expires_at), (None, None));
    assert_eq!(alice.count(is_dropped), 0, "{:?}", alice.events);
    assert_eq!(bob.count(is_dropped), 0, "{:?}", bob.events);
}

// ---------------------------------------------------------------------------
// 2. Group timer permission
// ---------------------------------------------------------------------------

/// With `timer: Admins`, a member's set_timer is refused locally; the
/// admin's is applied by everyone; a timer change forged by a member
/// (Body::Timer sent directly) is dropped by every receiver.
#[test]
fn group_timer_only_admins_when_settings_say_so() {
    let mut ds = Ds::new(102);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    let settings = GroupSettings {
        timer: Allowed::Admins,
        ..GroupSettings::created_by(&alice.user)
    };
    let group = group_with_settings(
        &mut ds,
        21,
        &mut [&mut alice, &mut bob, &mut carol],
        settings.clone(),
    );
    for d in [&alice, &bob, &carol] {
        assert_eq!(
            d.engine.settings(&d.provider, &group).unwrap(),
            Some(settings.clone()),
            "{} sees the settings from the group context",
            d.user
        );
    }

    // A member may not.
    let err = set_timer(&bob, &group, Some(HOUR), ds.now).unwrap_err();
    assert!(matches!(err, CoreError::NotAllowed(_)), "{err:?}");
    assert_eq!(timer_of(&bob, &group), None);
    assert!(bob.history(&group).is_empty());
    assert_eq!(ds.pending(alice.id) + ds.pending(carol.id), 0);

    // The admin may; everyone applies it.
    let out = set_timer(&alice, &group, Some(HOUR), ds.now).unwrap();
    ship(&mut ds, &alice, &out);
    let events = pump(&mut ds, &mut [&mut bob, &mut carol]);
    for (d, ev) in [&bob, &carol].iter().zip(&events) {
        assert_eq!(
            ev,
            &vec![Event::TimerChanged {
                group,
                by: alice.user.clone(),
                timer: Some(HOUR),
            }],
            "{}",
            d.user
        );
        assert_eq!(timer_of(d, &group), Some(HOUR));
    }

    // A modified client of bob's sends a timer change anyway.
    let forged = forge(&mut ds, &bob, &group, Body::Timer(Some(60)));
    let events = pump(&mut ds, &mut [&mut alice, &mut carol]);
    for (d, ev) in [&alice, &carol].iter().zip(&events) {
        assert_dropped(ev, "timer");
        assert_eq!(timer_of(d, &group), Some(HOUR), "{}: timer changed", d.user);
        assert!(
            !has(d, &group, &forged.stored.id),
            "{}: forged timer line shown",
            d.user
        );
    }
    // Turning it off is the admin's too.
    assert!(matches!(
        set_timer(&carol, &group, None, ds.now),
        Err(CoreError::NotAllowed(_))
    ));
}

/// Default group settings (`timer: Members`): any member sets the timer.
#[test]
fn group_timer_any_member_by_default() {
    let mut ds = Ds::new(103);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    let group = group_of(&mut ds, 22, &mut [&mut alice, &mut bob, &mut carol]);
    let settings = bob.engine.settings(&bob.provider, &group).unwrap().unwrap();
    assert_eq!(settings.timer, Allowed::Members);
    assert_eq!(settings.admins().collect::<Vec<_>>(), vec![&alice.user]);

    let out = set_timer(&bob, &group, Some(600), ds.now).unwrap();
    ship(&mut ds, &bob, &out);
    let events = pump(&mut ds, &mut [&mut alice, &mut carol]);
    for (d, ev) in [&alice, &carol].iter().zip(&events) {
        assert_eq!(
            ev,
            &vec![Event::TimerChanged {
                group,
                by: bob.user.clone(),
                timer: Some(600),
            }]
        );
        assert_eq!(timer_of(d, &group), Some(600));
    }
    // Also by a body sent directly: the receivers accept it the same way.
    send_body(&mut ds, &carol, &group, Body::Timer(None), None);
    let events = pump(&mut ds, &mut [&mut alice, &mut bob]);
    for (d, ev) in [&alice, &bob].iter().zip(&events) {
        assert!(
            matches!(ev.as_slice(), [Event::TimerChanged { timer: None, .. }]),
            "{}: {ev:?}",
            d.user
        );
        assert_eq!(timer_of(d, &group), None);
    }
}

/// A timer below the minimum is dropped by receivers even when sent by
/// someone allowed to set timers.
#[test]
fn received_timer_below_minimum_is_dropped() {
    let (mut ds, alice, mut bob, group) = direct_pair(104);
    forge(
        &mut ds,
        &alice,
        &group,
        Body::Timer(Some(MIN_TIMER_SECS - 1)),
    );
    assert_dropped(&deliver(&mut ds, &mut bob), "minimum");
    assert_eq!(timer_of(&bob, &group), None);
}

// ---------------------------------------------------------------------------
// 3. Organisation policy
// ---------------------------------------------------------------------------

/// With a maximum retention, timers longer than it, "off", and longer
/// per-message overrides are refused; a plain send without a timer gets the
/// maximum; a timer set before the maximum is cut to it. Timers outside
/// 30 s ..= 4 weeks are refused in any case. Refusals change nothing.
#[test]
fn organisation_maximum_and_timer_range() {
    let (mut ds, mut alice, mut bob, group) = direct_pair(105);

    // Without a policy: only the range applies.
    for bad in [0, 1, MIN_TIMER_SECS - 1, MAX_TIMER_SECS + 1, u32::MAX] {
        let err = set_timer(&alice, &group, Some(bad), ds.now).unwrap_err();
        assert!(
            matches!(err, CoreError::TimerOutOfRange(s) if s == bad),
            "{bad}: {err:?}"
        );
    }
    let err = alice
        .engine
        .send(
            &alice.provider,
            &alice.app,
            &group,
            Body::Text("x".into()),
            ds.now,
            Some(MIN_TIMER_SECS - 1),
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::TimerOutOfRange(_)), "{err:?}");
    // The bounds themselves are fine; the last one stays: a timer set
    // before the organisation lowers its maximum, 2 h.
    for ok in [MIN_TIMER_SECS, MAX_TIMER_SECS, 2 * HOUR] {
        let out = set_timer(&alice, &group, Some(ok), ds.now).unwrap();
        ship(&mut ds, &alice, &out);
    }
    assert_eq!(timer_of(&alice, &group), Some(2 * HOUR));
    let before = alice.history(&group).len();

    alice.engine.set_policy(MessagePolicy {
        max_retention_secs: Some(HOUR),
        ..MessagePolicy::default()
    });
    for timer in [Some(2 * HOUR), Some(HOUR + 1), None] {
        let err = set_timer(&alice, &group, timer, ds.now).unwrap_err();
        assert!(
            matches!(err, CoreError::RetentionExceeded { max_secs: HOUR }),
            "{timer:?}: {err:?}"
        );
    }
    let err = alice
        .engine
        .send(
            &alice.provider,
            &alice.app,
            &group,
            Body::Text("x".into()),
            ds.now,
            Some(2 * HOUR),
        )
        .unwrap_err();
    assert!(
        matches!(err, CoreError::RetentionExceeded { max_secs: HOUR }),
        "{err:?}"
    );
    for bad in [MIN_TIMER_SECS - 1, MAX_TIMER_SECS + 1] {
        assert!(matches!(
            set_timer(&alice, &group, Some(bad), ds.now),
            Err(CoreError::TimerOutOfRange(s)) if s == bad
        ));
    }
    assert_eq!(
        timer_of(&alice, &group),
        Some(2 * HOUR),
        "refusals changed the timer"
    );
    assert_eq!(
        alice.history(&group).len(),
        before,
        "refusals stored something"
    );

    // The old 2 h timer is cut to the maximum.
    let out = send_body(&mut ds, &alice, &group, Body::Text("capped".into()), None);
    assert_eq!(out.expires_in, Some(HOUR));
    // An override within the maximum is honoured.
    let out = send_body(
        &mut ds,
        &alice,
        &group,
        Body::Text("short".into()),
        Some(60),
    );
    assert_eq!(out.expires_in, Some(60));

    // No timer at all: the maximum.
    alice.engine.set_policy(MessagePolicy::default());
    let out = set_timer(&alice, &group, None, ds.now).unwrap();
    ship(&mut ds, &alice, &out);
    alice.engine.set_policy(MessagePolicy {
        max_retention_secs: Some(HOUR),
        ..MessagePolicy::default()
    });
    let out = send_body(&mut ds, &alice, &group, Body::Text("plain".into()), None);
    assert_eq!(out.expires_in, Some(HOUR));
    assert_eq!(
        out.stored.expires_at,
        Some(ds.now + Millis::from(HOUR) * 1000)
    );
    let plain = out.stored.id;
    // A timer within the maximum is fine.
    let out = set_timer(&alice, &group, Some(HOUR), ds.now).unwrap();
    ship(&mut ds, &alice, &out);
    assert_eq!(timer_of(&alice, &group), Some(HOUR));

    // Bob (same organisation) receives the capped lifetimes and every timer.
    deliver(&mut ds, &mut bob);
    let copy = stored(&bob, &group, &plain);
    assert_eq!(copy.expires_in, Some(HOUR));
    assert!(copy.expires_at.is_some());
    assert_eq!(timer_of(&bob, &group), Some(HOUR));
    assert_eq!(bob.count(is_dropped), 0, "{:?}", bob.events);
}

// ---------------------------------------------------------------------------
// 4. Recall
// ---------------------------------------------------------------------------

/// The sender recalls within the window: erased on her side once the server
/// accepted the recall, and on the receiver's when it arrives; the Outgoing
/// names the target for the server. A second recall of it finds nothing.
#[test]
fn recall_own_message_within_window() {
    let (mut ds, alice, mut bob, group) = direct_pair(106);
    let id = send_text(&mut ds, &alice, &group, "oops, wrong chat");
    deliver(&mut ds, &mut bob);
    assert!(is_text(&stored(&bob, &group, &id), "oops, wrong chat"));

    ds.tick(WINDOW_MS - 10_000);
    let out = recall(&alice, &group, &id, ds.now).unwrap();
    assert_eq!(out.recalls, Some(id));
    assert_eq!(out.stored.body, Body::Recall(id));
    assert!(
        !stored(&alice, &group, &id).recalled,
        "erased before the server accepted the recall"
    );
    ship(&mut ds, &alice, &out);
    let mine = stored(&alice, &group, &id);
    assert!(mine.recalled);
    assert!(is_text(&mine, ""), "{mine:?}");
    assert!(
        !has(&alice, &group, &out.stored.id),
        "the recall itself is no history line"
    );
    let events = deliver(&mut ds, &mut bob);
    assert_eq!(
        events,
        vec![Event::Recalled {
            group,
            id,
            by: alice.user.clone(),
        }]
    );
    let theirs = stored(&bob, &group, &id);
    assert!(theirs.recalled);
    assert!(is_text(&theirs, ""), "{theirs:?}");
    assert!(
        bob.texts(&group).iter().all(|(_, t)| !t.contains("oops")),
        "text survives in bob's store"
    );

    // Already recalled: there is nothing left to recall.
    let err = recall(&alice, &group, &id, ds.now).unwrap_err();
    assert!(
        matches!(err, CoreError::UnknownMessage(m) if m == id),
        "{err:?}"
    );
}

/// After the window, a recall is refused and nothing changes; exactly at
/// the window's end it is still allowed. A member may not recall the other
/// person's message; an unknown id is reported as such.
#[test]
fn recall_refusals() {
    let (mut ds, alice, mut bob, group) = direct_pair(107);
    let late = send_text(&mut ds, &alice, &group, "too late to take back");
    let sent_late = stored(&alice, &group, &late).sent_at;
    ds.tick(1000);
    let edge = send_text(&mut ds, &alice, &group, "just in time");
    let sent_edge = stored(&alice, &group, &edge).sent_at;
    deliver(&mut ds, &mut bob);

    let err = recall(&alice, &group, &late, sent_late + WINDOW_MS + 1).unwrap_err();
    assert!(
        matches!(err, CoreError::WindowClosed { window_secs } if window_secs == DEFAULT_RECALL_WINDOW_SECS),
        "{err:?}"
    );
    assert!(is_text(
        &stored(&alice, &group, &late),
        "too late to take back"
    ));
    assert!(!stored(&alice, &group, &late).recalled);
    assert_eq!(ds.pending(bob.id), 0, "a refused recall sent something");

    // Bob may not recall alice's message (a 1:1 has no admins).
    let err = recall(&bob, &group, &edge, ds.now).unwrap_err();
    assert!(matches!(err, CoreError::NotAllowed(_)), "{err:?}");
    assert!(!stored(&bob, &group, &edge).recalled);

    // An id nobody sent.
    let unknown = MessageId([0x55; 16]);
    let err = recall(&alice, &group, &unknown, ds.now).unwrap_err();
    assert!(
        matches!(err, CoreError::UnknownMessage(m) if m == unknown),
        "{err:?}"
    );

    // Exactly at the end of the window: still allowed, and bob applies it.
    let out = recall(&alice, &group, &edge, sent_edge + WINDOW_MS).unwrap();
    ship(&mut ds, &alice, &out);
    let events = deliver(&mut ds, &mut bob);
    assert!(
        matches!(events.as_slice(), [Event::Recalled { id, .. }] if *id == edge),
        "{events:?}"
    );
    assert!(stored(&bob, &group, &edge).recalled);
    assert!(!stored(&bob, &group, &late).recalled);
}

/// In a group, the admin recalls a member's message long after the window
/// and every receiver applies it; a non-admin cannot recall someone else's
/// message, nor their own after the window; a recall forged by a non-admin
/// (Body::Recall sent directly) is dropped and the target survives.
#[test]
fn group_admin_recall_and_forged_recall() {
    let mut ds = Ds::new(108);
    let mut alice = Device::new("alice", 0xa1);
    let mut bob = Device::new("bob", 0xb1);
    let mut carol = Device::new("carol", 0xc1);
    let group = group_of(&mut ds, 23, &mut [&mut alice, &mut bob, &mut carol]);

    let spam = send_text(&mut ds, &bob, &group, "spam");
    let keep = send_text(&mut ds, &bob, &group, "keep me");
    pump(&mut ds, &mut [&mut alice, &mut carol]);

    ds.tick(2 * WINDOW_MS);
    // Bob's own message, after the window: not for him any more.
    let err = recall(&bob, &group, &spam, ds.now).unwrap_err();
    assert!(matches!(err, CoreError::WindowClosed { .. }), "{err:?}");
    // Carol is no admin.
    let err = recall(&carol, &group, &spam, ds.now).unwrap_err();
    assert!(matches!(err, CoreError::NotAllowed(_)), "{err:?}");

    // Alice, the admin, may at any time.
    let out = recall(&alice, &group, &spam, ds.now).unwrap();
    assert_eq!(out.recalls, Some(spam));
    ship(&mut ds, &alice, &out);
    assert!(stored(&alice, &group, &spam).recalled);
    let events = pump(&mut ds, &mut [&mut bob, &mut carol]);
    for (d, ev) in [&bob, &carol].iter().zip(&events) {
        assert_eq!(
            ev,
            &vec![Event::Recalled {
                group,
                id: spam,
                by: alice.user.clone(),
            }],
            "{}",
            d.user
        );
        let m = stored(d, &group, &spam);
        assert!(m.recalled && is_text(&m, ""), "{}: {m:?}", d.user);
    }

    // Carol's modified client recalls bob's other message anyway.
    forge(&mut ds, &carol, &group, Body::Recall(keep));
    let events = pump(&mut ds, &mut [&mut alice, &mut bob]);
    for (d, ev) in [&alice, &bob].iter().zip(&events) {
        assert_dropped(ev, "may not recall");
        let m = stored(d, &group, &keep);
        assert!(!m.recalled && is_text(&m, "keep me"), "{}: {m:?}", d.user);
    }
    // Also within the window a recall of someone else's message is refused.
    let fresh = send_text(&mut ds, &bob, &group, "fresh");
    pump(&mut ds, &mut [&mut alice, &mut carol]);
    forge(&mut ds, &carol, &group, Body::Recall(fresh));
    let events = pump(&mut ds, &mut [&mut alice, &mut bob]);
    for (d, ev) in [&alice, &bob].iter().zip(&events) {
        assert_dropped(ev, "may not recall");
        assert!(!stored(d, &group, &fresh).recalled, "{}", d.user);
    }
}

/// A recall that arrives before the message it recalls (the server deleted
/// the undelivered copy, or delivered out of order) leaves a recalled
/// tombstone, and the late copy is never shown.
#[test]
fn recall_before_the_message_leaves_a_tombstone() {
    let (mut ds, alice, mut bob, group) = direct_pair(109);
    let id = send_text(&mut ds, &alice, &group, "never seen");
    let original = ds.drain(bob.id);
    assert_eq!(original.len(), 1);

    let out = recall(&alice, &group, &id, ds.now).unwrap();
    ship(&mut ds, &alice, &out);
    let events = deliver(&mut ds, &mut bob);
    assert_eq!(
        events,
        vec![Event::Recalled {
            group,
            id,
            by: alice.user.clone(),
        }]
    );
    let tomb = stored(&bob, &group, &id);
    assert!(tomb.recalled && is_text(&tomb, ""), "{tomb:?}");

    // The late copy: a duplicate of the tombstone, dropped.
    let now = ds.tick(1);
    let events = bob.receive(&original[0], now);
    assert_dropped(&events, "duplicate");
    let tomb = stored(&bob, &group, &id);
    assert!(tomb.recalled && is_text(&tomb, ""), "{tomb:?}");
    assert!(bob.texts(&group).iter().all(|(_, t)| t.is_empty()));
    // Storing it directly is refused by the store too.
    let mut copy = tomb.clone();
    copy.body = Body::Text("never seen".into());
    copy.recalled = false;
    assert!(!bob.app.insert_message(&copy).unwrap());
}

// ---------------------------------------------------------------------------
// 5. Edit
// ---------------------------------------------------------------------------

/// The sender edits her message up to MAX_EDITS times; the receiver sees
/// each as Edited with the new text and the count. The next edit is
/// refused, as are edits after the window, edits of someone else's message
/// and of unknown ids; an edit forged by the other person is dropped.
#[test]
fn edit_rules() {
    let (mut ds, mut alice, mut bob, group) = direct_pair(110);
    let id = send_text(&mut ds, &alice, &group, "teh");
    let other = send_text(&mut ds, &alice, &group, "untouchable");
    deliver(&mut ds, &mut bob);

    let out = edit(&alice, &group, &id, "the", ds.now).unwrap();
    assert_eq!(
        out.stored.body,
        Body::Edit {
            target: id,
            text: "the".into()
        }
    );
    let mine = stored(&alice, &group, &id);
    assert!(
        is_text(&mine, "teh") && mine.edits == 0,
        "edited before the server accepted it: {mine:?}"
    );
    ship(&mut ds, &alice, &out);
    let mine = stored(&alice, &group, &id);
    assert!(is_text(&mine, "the") && mine.edits == 1, "{mine:?}");
    let events = deliver(&mut ds, &mut bob);
    assert_eq!(
        events,
        vec![Event::Edited {
            group,
            id,
            by: alice.user.clone(),
        }]
    );
    let theirs = stored(&bob, &group, &id);
    assert!(is_text(&theirs, "the") && theirs.edits == 1, "{theirs:?}");

    for n in 2..=MAX_EDITS {
        let text = format!("the, take {n}");
        let out = edit(&alice, &group, &id, &text, ds.now).unwrap();
        ship(&mut ds, &alice, &out);
        let events = deliver(&mut ds, &mut bob);
        assert!(
            matches!(events.as_slice(), [Event::Edited { .. }]),
            "{events:?}"
        );
        let theirs = stored(&bob, &group, &id);
        assert!(is_text(&theirs, &text) && theirs.edits == n, "{theirs:?}");
    }
    let err = edit(&alice, &group, &id, "one too many", ds.now).unwrap_err();
    assert!(matches!(err, CoreError::TooManyEdits), "{err:?}");
    assert_eq!(stored(&alice, &group, &id).edits, MAX_EDITS);
    // A forged 11th edit from alice's own (modified) client is dropped too.
    forge(
        &mut ds,
        &alice,
        &group,
        Body::Edit {
            target: id,
            text: "eleventh".into(),
        },
    );
    assert_dropped(&deliver(&mut ds, &mut bob), "not allowed");
    assert_eq!(stored(&bob, &group, &id).edits, MAX_EDITS);

    // Bob may not edit alice's message.
    let err = edit(&bob, &group, &other, "mine now", ds.now).unwrap_err();
    assert!(matches!(err, CoreError::NotAllowed(_)), "{err:?}");
    // Unknown id.
    let unknown = MessageId([0x66; 16]);
    let err = edit(&alice, &group, &unknown, "?", ds.now).unwrap_err();
    assert!(
        matches!(err, CoreError::UnknownMessage(m) if m == unknown),
        "{err:?}"
    );

    // Bob's modified client edits it anyway: alice drops it.
    forge(
        &mut ds,
        &bob,
        &group,
        Body::Edit {
            target: other,
            text: "mine now".into(),
        },
    );
    assert_dropped(&deliver(&mut ds, &mut alice), "not allowed");
    let m = stored(&alice, &group, &other);
    assert!(is_text(&m, "untouchable") && m.edits == 0, "{m:?}");

    // After the window: refused, nothing sent.
    let sent = stored(&alice, &group, &other).sent_at;
    let err = edit(&alice, &group, &other, "later", sent + WINDOW_MS + 1).unwrap_err();
    assert!(matches!(err, CoreError::WindowClosed { .. }), "{err:?}");
    assert!(is_text(&stored(&alice, &group, &other), "untouchable"));
    assert_eq!(ds.pending(bob.id), 0);
    // An edit sent after the window anyway (forged) is dropped by bob.
    ds.now = sent + WINDOW_MS + 1;
    forge(
        &mut ds,
        &alice,
        &group,
        Body::Edit {
            target: other,
            text: "later".into(),
        },
    );
    assert_dropped(&deliver(&mut ds, &mut bob), "not allowed");
    assert!(is_text(&stored(&bob, &group, &other), "untouchable"));
}

/// An edit of a message that disappears lives only as long as the message
/// has left (so the new text cannot outlive it), and never less than the
/// minimum timer.
#[test]
fn edit_lives_no_longer_than_its_message() {
    let (mut ds, alice, mut bob, group) = direct_pair(111);
    let out = set_timer(&alice, &group, Some(HOUR), ds.now).unwrap();
    ship(&mut ds, &alice, &out);
    let id = send_text(&mut ds, &alice, &group, "draft");
    deliver(&mut ds, &mut bob);
    let expires_at = stored(&bob, &group, &id).expires_at;

    ds.tick(1_000_000);
    let out = edit(&alice, &group, &id, "final", ds.now).unwrap();
    assert_eq!(out.expires_in, Some(HOUR - 1000));
    ship(&mut ds, &alice, &out);
    deliver(&mut ds, &mut bob);
    let m = stored(&bob, &group, &id);
    assert!(is_text(&m, "final"));
    assert_eq!(m.expires_at, expires_at, "an edit does not move the expiry");

    // 10 s left: the edit still gets the minimum lifetime.
    let left_10s = stored(&alice, &group, &id).expires_at.unwrap() - 10_000;
    let out = edit(&alice, &group, &id, "final!", left_10s).unwrap();
    assert_eq!(out.expires_in, Some(MIN_TIMER_SECS));
}

// ---------------------------------------------------------------------------
// 6. Expired on arrival
// ---------------------------------------------------------------------------

/// A message whose lifetime (counted from the server's acceptance) is over
/// when it reaches the device is dropped, not stored; a millisecond earlier
/// it is stored with that expiry.
#[test]
fn message_expired_on_arrival_is_dropped() {
    let (mut ds, mut alice, mut bob, group) = direct_pair(112);
    let first = send_body(
        &mut ds,
        &alice,
        &group,
        Body::Text("in time".into()),
        Some(60),
    );
    let second = send_body(
        &mut ds,
        &alice,
        &group,
        Body::Text("too late".into()),
        Some(60),
    );
    let queue = ds.drain(bob.id);
    assert_eq!(queue.len(), 2);
    let at = queue[0].server_time + 60_000;
    assert_eq!(queue[1].server_time, queue[0].server_time);

    let events = bob.receive(&queue[0], at - 1);
    assert_eq!(message_texts(&events), vec!["in time"]);
    assert_eq!(stored(&bob, &group, &first.stored.id).expires_at, Some(at));

    let events = bob.receive(&queue[1], at);
    assert_dropped(&events, "expired");
    assert!(!has(&bob, &group, &second.stored.id));
    assert_eq!(bob.texts(&group).len(), 1);

    // The same for a lifecycle message: under an organisation maximum, an
    // expired timer change is not applied.
    alice.engine.set_policy(MessagePolicy {
        max_retention_secs: Some(MIN_TIMER_SECS),
        ..MessagePolicy::default()
    });
    let out = set_timer(&alice, &group, Some(MIN_TIMER_SECS), ds.now).unwrap();
    assert_eq!(out.expires_in, Some(MIN_TIMER_SECS));
    ship(&mut ds, &alice, &out);
    let d = ds.drain(bob.id).remove(0);
    let events = bob.receive(&d, d.server_time + Millis::from(MIN_TIMER_SECS) * 1000 + 5);
    assert_dropped(&events, "expired");
    assert!(!has(&bob, &group, &out.stored.id));
    assert_eq!(timer_of(&bob, &group), None);
}

// ---------------------------------------------------------------------------
// Lifecycle messages must outlive what they act on
// ---------------------------------------------------------------------------

/// A recall must reach a device that already holds the message, however
/// long that device was offline, as long as the message itself still lives
/// there. Here the message has no expiry (sent before the timer was set),
/// then a 60 s timer is set and the message recalled: the recall lives as
/// long as its target, not by the timer, so a device that got the message
/// and then was offline for two minutes still applies it.
#[test]
fn recall_outlives_the_timer_when_its_target_does() {
    let (mut ds, alice, mut bob, group) = direct_pair(113);
    let id = send_text(&mut ds, &alice, &group, "oops");
    deliver(&mut ds, &mut bob);
    assert_eq!(stored(&bob, &group, &id).expires_at, None);
    let out = set_timer(&alice, &group, Some(60), ds.now).unwrap();
    ship(&mut ds, &alice, &out);
    deliver(&mut ds, &mut bob);
    assert_eq!(timer_of(&bob, &group), Some(60));

    // Bob goes offline; alice recalls.
    ds.tick(1000);
    let out = recall(&alice, &group, &id, ds.now).unwrap();
    assert_eq!(
        out.expires_in, None,
        "the recall must live as long as the message it deletes (which never expires)"
    );
    ship(&mut ds, &alice, &out);
    // Bob is back two minutes later.
    let d = ds.drain(bob.id).remove(0);
    let events = bob.receive(&d, d.server_time + 120_000);
    assert!(
        matches!(events.as_slice(), [Event::Recalled { id: r, .. }] if *r == id),
        "{events:?}"
    );
    assert!(stored(&bob, &group, &id).recalled);
}

/// The timer is conversation state: every member must end up with the same
/// one, so the line announcing a new timer is kept as long as the
/// organisation allows, not by the timer: a member offline for longer than
/// the new timer still learns of it.
#[test]
fn timer_change_reaches_a_member_offline_longer_than_the_timer() {
    let (mut ds, alice, mut bob, group) = direct_pair(114);
    let out = set_timer(&alice, &group, Some(60), ds.now).unwrap();
    ship(&mut ds, &alice, &out);
    let d = ds.drain(bob.id).remove(0);
    let events = bob.receive(&d, d.server_time + 120_000);
    assert!(
        matches!(
            events.as_slice(),
            [Event::TimerChanged {
                timer: Some(60),
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!(timer_of(&bob, &group), Some(60));
    let out = send_body(&mut ds, &bob, &group, Body::Text("hi".into()), None);
    assert_eq!(out.expires_in, Some(60));
}
