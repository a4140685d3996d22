//! In-memory harness for the sans-IO core: an `AppStore` double, simulated
//! devices (each with its own OpenMLS memory storage), and a delivery service
//! that follows the real server's rules (epoch compare-and-swap, fan-out,
//! Welcomes only on acceptance, per-device FIFO queues). Scheduling faults
//! (reorder, duplicate, delay) come from a seeded xorshift, so every run is
//! the same run.
//!
//! Key material still comes from the OS RNG (the engine draws it itself); the
//! protocol outcomes the tests assert on do not depend on it.

#![allow(dead_code)]

use openmls_memory_storage::MemoryStorage;
use rampart_core::content::Body;
use rampart_core::{
    AppStore, Conversation, CoreError, DeviceCredential, Engine, Event, IdentityKey, IdentityPin,
    MessageId, PendingCommit, Provider, StoredMessage, Trust, VerifiedKeyPackage,
};
use rampart_proto::frame::{CommitBundle, Create, Delivery, DeliveryKind};
use rampart_proto::{DeviceId, GroupId, Millis, Username};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;

/// The identity key inside a KeyPackage's credential, if it parses.
fn identity_in(bytes: &[u8]) -> Option<[u8; 32]> {
    use openmls::prelude::tls_codec::Deserialize as _;
    let kp = openmls::prelude::KeyPackageIn::tls_deserialize_exact(bytes).ok()?;
    let leaf = kp.unverified_credential();
    let cred = DeviceCredential::decode(leaf.credential.serialized_content()).ok()?;
    Some(cred.identity_key)
}

pub fn user(name: &str) -> Username {
    Username::parse(name).expect("valid username")
}

pub fn dev(n: u64) -> DeviceId {
    DeviceId::new(n).expect("non-zero device id")
}

// ---------------------------------------------------------------------------
// AppStore double
// ---------------------------------------------------------------------------

/// Application storage in memory. Messages keep insertion order per group and
/// are deduplicated by (group, id), as the trait requires.
#[derive(Default)]
pub struct MemApp {
    pub conversations: RefCell<BTreeMap<GroupId, Conversation>>,
    pub messages: RefCell<BTreeMap<GroupId, Vec<StoredMessage>>>,
    pub pins: RefCell<BTreeMap<Username, IdentityPin>>,
}

impl AppStore for MemApp {
    type Error = Infallible;

    fn conversation(&self, group: &GroupId) -> Result<Option<Conversation>, Infallible> {
        Ok(self.conversations.borrow().get(group).cloned())
    }

    fn put_conversation(&self, conversation: &Conversation) -> Result<(), Infallible> {
        self.conversations
            .borrow_mut()
            .insert(conversation.group, conversation.clone());
        Ok(())
    }

    fn delete_conversation(&self, group: &GroupId) -> Result<(), Infallible> {
        self.conversations.borrow_mut().remove(group);
        Ok(())
    }

    fn insert_message(&self, message: &StoredMessage) -> Result<bool, Infallible> {
        let mut all = self.messages.borrow_mut();
        let list = all.entry(message.group).or_default();
        if list.iter().any(|m| m.id == message.id) {
            return Ok(false);
        }
        list.push(message.clone());
        Ok(true)
    }

    fn message(
        &self,
        group: &GroupId,
        id: &MessageId,
    ) -> Result<Option<StoredMessage>, Infallible> {
        Ok(self
            .messages
            .borrow()
            .get(group)
            .and_then(|list| list.iter().find(|m| m.id == *id).cloned()))
    }

    fn edit_message(&self, group: &GroupId, id: &MessageId, text: &str) -> Result<(), Infallible> {
        if let Some(m) = self
            .messages
            .borrow_mut()
            .get_mut(group)
            .and_then(|list| list.iter_mut().find(|m| m.id == *id))
        {
            m.body = Body::Text(text.into());
            m.edits += 1;
        }
        Ok(())
    }

    fn recall_message(&self, group: &GroupId, id: &MessageId) -> Result<(), Infallible> {
        if let Some(m) = self
            .messages
            .borrow_mut()
            .get_mut(group)
            .and_then(|list| list.iter_mut().find(|m| m.id == *id))
        {
            m.body = Body::Text(String::new());
            m.recalled = true;
        }
        Ok(())
    }

    fn delete_expired(&self, now: Millis) -> Result<u64, Infallible> {
        let mut n = 0;
        for list in self.messages.borrow_mut().values_mut() {
            let before = list.len();
            list.retain(|m| m.expires_at.is_none_or(|at| at > now));
            n += (before - list.len()) as u64;
        }
        Ok(n)
    }

    fn identity_pin(&self, user: &Username) -> Result<Option<IdentityPin>, Infallible> {
        Ok(self.pins.borrow().get(user).cloned())
    }

    fn put_identity_pin(&self, user: &Username, pin: &IdentityPin) -> Result<(), Infallible> {
        self.pins.borrow_mut().insert(user.clone(), pin.clone());
        Ok(())
    }

    fn broken_pins(&self) -> Result<Vec<Username>, Infallible> {
        Ok(self
            .pins
            .borrow()
            .iter()
            .filter(|(_, p)| p.trust == Trust::Broken)
            .map(|(u, _)| u.clone())
            .collect())
    }
}

// ---------------------------------------------------------------------------
// Simulated device
// ---------------------------------------------------------------------------

/// One device: its engine, its OpenMLS storage (one provider for the whole
/// test, since `&MemoryStorage` is not a `StorageProvider`), its app store and
/// a log of every event it produced.
pub struct Device {
    pub user: Username,
    pub id: DeviceId,
    pub identity_public: [u8; 32],
    pub signer_public: Vec<u8>,
    pub engine: Engine,
    pub provider: Provider<MemoryStorage>,
    pub app: MemApp,
    pub events: Vec<Event>,
}

impl Device {
    /// A device with a fresh identity key.
    pub fn new(name: &str, device: u64) -> Self {
        Self::with_identity(name, device, &IdentityKey::generate())
    }

    /// A device whose certificate is signed by `identity`.
    pub fn with_identity(name: &str, device: u64, identity: &IdentityKey) -> Self {
        let user = user(name);
        let id = dev(device);
        Self::build(name, device, |signer_public| DeviceCredential {
            user: user.clone(),
            device: id,
            identity_key: identity.public(),
            certificate: identity.certify(&user, id, signer_public),
        })
    }

    /// A device whose credential is whatever `credential` builds from the
    /// signer's public key (for forged certificates).
    pub fn build(
        name: &str,
        device: u64,
        credential: impl FnOnce(&[u8]) -> DeviceCredential,
    ) -> Self {
        let signer = Engine::generate_signer().expect("signer");
        let provider = Provider::new(MemoryStorage::default());
        Engine::store_signer(&signer, &provider).expect("store signer");
        let signer_public = signer.public().to_vec();
        let cred = credential(&signer_public);
        let identity_public = cred.identity_key;
        let engine = Engine::new(cred, signer);
        Self {
            user: user(name),
            id: dev(device),
            identity_public,
            signer_public,
            engine,
            provider,
            app: MemApp::default(),
            events: vec![],
        }
    }

    /// One fresh KeyPackage, as the directory would hand it out.
    pub fn key_package(&self) -> Vec<u8> {
        self.engine
            .key_packages(&self.provider, 1, false)
            .expect("key package")
            .remove(0)
    }

    /// Verifies `bytes` as a KeyPackage of `user`/`device` on this device,
    /// with a directory that agrees with whatever identity key it carries.
    pub fn verify_kp(
        &self,
        user: &Username,
        device: DeviceId,
        bytes: &[u8],
    ) -> Result<VerifiedKeyPackage, CoreError> {
        let account_key = identity_in(bytes).unwrap_or([0; 32]);
        self.verify_kp_as(user, &account_key, device, bytes)
    }

    /// Verifies `bytes` as a KeyPackage of `user`/`device`, the directory
    /// saying `user`'s identity key is `account_key`.
    pub fn verify_kp_as(
        &self,
        user: &Username,
        account_key: &[u8; 32],
        device: DeviceId,
        bytes: &[u8],
    ) -> Result<VerifiedKeyPackage, CoreError> {
        self.engine
            .verify_key_package(&self.provider, &self.app, user, account_key, device, bytes)
    }

    /// Fetches and verifies a fresh KeyPackage of `other`.
    pub fn fetch_kp(&self, other: &Device) -> VerifiedKeyPackage {
        self.verify_kp(&other.user, other.id, &other.key_package())
            .expect("peer key package verifies")
    }

    pub fn create_direct(&self, peer: &Device, now: Millis) -> PendingCommit {
        let group = GroupId::direct(&self.user, &peer.user);
        let kp = self.fetch_kp(peer);
        self.engine
            .create_group(
                &self.provider,
                &self.app,
                group,
                Create::Direct {
                    peer: peer.user.clone(),
                },
                None,
                None,
                vec![kp],
                now,
            )
            .expect("create direct")
    }

    pub fn create_group(&self, seed: u8, members: &[&Device], now: Millis) -> PendingCommit {
        let group = GroupId::new_group([seed; 31]);
        let kps = members.iter().map(|m| self.fetch_kp(m)).collect();
        self.engine
            .create_group(
                &self.provider,
                &self.app,
                group,
                Create::Group,
                Some("team".into()),
                None,
                kps,
                now,
            )
            .expect("create group")
    }

    /// Sends a text through the DS; returns the ciphertext.
    pub fn send_text(&self, ds: &mut Ds, group: &GroupId, text: &str) -> Vec<u8> {
        let out = self
            .engine
            .send(
                &self.provider,
                &self.app,
                group,
                Body::Text(text.into()),
                ds.now,
                None,
            )
            .expect("send");
        assert!(out.stored.outgoing);
        self.deliver(ds, &out);
        out.mls
    }

    /// Sends an application message through the DS and, once accepted,
    /// records it here (as the client driver does).
    pub fn deliver(&self, ds: &mut Ds, out: &rampart_core::Outgoing) {
        ds.send(
            self,
            out.stored.group,
            DeliveryKind::Application,
            out.mls.clone(),
        )
        .expect("DS accepts the message");
        self.engine
            .record_sent(&self.app, out)
            .expect("record sent message");
    }

    /// Applies a delivery; a `receive` error (local storage failure) fails the test.
    pub fn receive(&mut self, delivery: &Delivery, now: Millis) -> Vec<Event> {
        let events = self
            .engine
            .receive(&self.provider, &self.app, delivery, now)
            .unwrap_or_else(|e| panic!("{}: receive returned Err: {e}", self.user));
        self.events.extend(events.iter().cloned());
        events
    }

    /// Submits a commit and, if the DS accepts it, merges it.
    pub fn submit(
        &mut self,
        ds: &mut Ds,
        pending: &PendingCommit,
    ) -> Result<Vec<Event>, Option<u64>> {
        match ds.commit(self, &pending.bundle) {
            Ok(_) => {
                let events = self.accepted(ds.now, pending);
                // The DS's membership (from the bundle's `added`/`removed`)
                // must equal the MLS membership the committer merged.
                let group = pending.bundle.group;
                let mut mls: Vec<DeviceId> =
                    self.members(&group).into_iter().map(|(_, d)| d).collect();
                mls.sort();
                assert_eq!(
                    ds.members(&group),
                    mls,
                    "{}: DS membership (from the bundle) differs from the MLS group",
                    self.user
                );
                Ok(events)
            }
            Err(current) => {
                self.rejected(pending);
                Err(current)
            }
        }
    }

    pub fn accepted(&mut self, now: Millis, pending: &PendingCommit) -> Vec<Event> {
        let events = self
            .engine
            .commit_accepted(&self.provider, &self.app, pending, now)
            .expect("commit_accepted");
        self.events.extend(events.iter().cloned());
        events
    }

    pub fn rejected(&mut self, pending: &PendingCommit) {
        self.engine
            .commit_rejected(&self.provider, &self.app, &pending.bundle.group)
            .expect("commit_rejected");
    }

    pub fn epoch(&self, group: &GroupId) -> Option<u64> {
        self.engine.epoch(&self.provider, group).expect("epoch")
    }

    pub fn members(&self, group: &GroupId) -> Vec<(Username, DeviceId)> {
        self.engine
            .member_devices(&self.provider, group)
            .expect("member devices")
    }

    pub fn history(&self, group: &GroupId) -> Vec<StoredMessage> {
        self.app
            .messages
            .borrow()
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// (sender, text) of the history, in order.
    pub fn texts(&self, group: &GroupId) -> Vec<(String, String)> {
        self.history(group)
            .into_iter()
            .filter_map(|m| match m.body {
                Body::Text(t) => Some((m.sender.to_string(), t)),
                Body::Timer(_) => None,
                other => panic!("unexpected body in history: {other:?}"),
            })
            .collect()
    }

    pub fn conversation(&self, group: &GroupId) -> Option<Conversation> {
        self.app.conversations.borrow().get(group).cloned()
    }

    /// Events of the log matching `f`.
    pub fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| f(e)).count()
    }
}

// ---------------------------------------------------------------------------
// Deterministic RNG
// ---------------------------------------------------------------------------

/// xorshift64: enough to schedule faults reproducibly.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

// ---------------------------------------------------------------------------
// Delivery service
// ---------------------------------------------------------------------------

struct DsGroup {
    epoch: u64,
    members: BTreeSet<DeviceId>,
}

/// The server's delivery rules, in memory.
pub struct Ds {
    groups: BTreeMap<GroupId, DsGroup>,
    queues: BTreeMap<DeviceId, VecDeque<Delivery>>,
    next_seq: BTreeMap<DeviceId, u64>,
    /// Every payload the DS ever stored (messages, commits, Welcomes, GroupInfos).
    pub stored: Vec<Vec<u8>>,
    /// Fake clock, passed to the engines as `now`.
    pub now: Millis,
    pub rng: XorShift,
    /// Why the last invalid commit was refused.
    pub last_refusal: Option<String>,
}

impl Ds {
    pub fn new(seed: u64) -> Self {
        Self {
            groups: BTreeMap::new(),
            queues: BTreeMap::new(),
            next_seq: BTreeMap::new(),
            stored: vec![],
            now: 1_700_000_000_000,
            rng: XorShift::new(seed),
            last_refusal: None,
        }
    }

    pub fn tick(&mut self, ms: Millis) -> Millis {
        self.now += ms;
        self.now
    }

    /// The group's epoch at the DS.
    pub fn epoch(&self, group: &GroupId) -> Option<u64> {
        self.groups.get(group).map(|g| g.epoch)
    }

    pub fn members(&self, group: &GroupId) -> Vec<DeviceId> {
        self.groups
            .get(group)
            .map(|g| g.members.iter().copied().collect())
            .unwrap_or_default()
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &mut self,
        to: DeviceId,
        group: GroupId,
        sender: &Username,
        sender_device: DeviceId,
        kind: DeliveryKind,
        epoch: u64,
        payload: Vec<u8>,
    ) {
        let seq = self.next_seq.entry(to).or_insert(0);
        *seq += 1;
        let d = Delivery {
            seq: *seq,
            group,
            sender: sender.clone(),
            sender_device,
            kind,
            epoch,
            server_time: self.now,
            expires_at: None,
            payload,
        };
        self.queues.entry(to).or_default().push_back(d);
    }

    /// An application message or proposal: to every member device but the sender.
    pub fn send(
        &mut self,
        from: &Device,
        group: GroupId,
        kind: DeliveryKind,
        payload: Vec<u8>,
    ) -> Result<(), &'static str> {
        assert!(matches!(
            kind,
            DeliveryKind::Application | DeliveryKind::Proposal
        ));
        let g = self.groups.get(&group).ok_or("unknown group")?;
        if !g.members.contains(&from.id) {
            return Err("not a member");
        }
        let epoch = g.epoch;
        let to: Vec<DeviceId> = g
            .members
            .iter()
            .copied()
            .filter(|d| *d != from.id)
            .collect();
        self.stored.push(payload.clone());
        for d in to {
            self.enqueue(d, group, &from.user, from.id, kind, epoch, payload.clone());
        }
        Ok(())
    }

    /// A commit: accepted only at the current epoch (or as the creation of a
    /// group that does not exist). Returns the new epoch, or the current one
    /// on rejection (`None` if the group does not exist).
    pub fn commit(&mut self, from: &Device, bundle: &CommitBundle) -> Result<u64, Option<u64>> {
        let group = bundle.group;
        let old_members: Vec<DeviceId> = match (&bundle.create, self.groups.get(&group)) {
            (Some(_), Some(g)) => return Err(Some(g.epoch)),
            (None, None) => return Err(None),
            (Some(create), None) => {
                if bundle.epoch != 0 {
                    return Err(None);
                }
                if let Create::Direct { peer } = create {
                    assert_eq!(
                        GroupId::direct(&from.user, peer),
                        group,
                        "direct id derivation"
                    );
                }
                self.groups.insert(
                    group,
                    DsGroup {
                        epoch: 0,
                        members: BTreeSet::from([from.id]),
                    },
                );
                vec![from.id]
            }
            (None, Some(g)) => {
                if bundle.epoch != g.epoch || !g.members.contains(&from.id) {
                    return Err(Some(g.epoch));
                }
                g.members.iter().copied().collect()
            }
        };
        // The server's membership checks: no device twice, removed devices
        // are members, added ones are not.
        let mut seen = BTreeSet::new();
        for d in bundle.added.iter().chain(&bundle.removed) {
            if !seen.insert(*d) {
                return self.refuse(group, bundle, format!("device {d} appears twice"));
            }
        }
        if let Some(d) = bundle.removed.iter().find(|d| !old_members.contains(d)) {
            return self.refuse(group, bundle, format!("device {d} is not a member"));
        }
        if let Some(d) = bundle.added.iter().find(|d| old_members.contains(d)) {
            return self.refuse(group, bundle, format!("device {d} is already a member"));
        }
        let g = self.groups.get_mut(&group).expect("group exists");
        for d in &bundle.removed {
            g.members.remove(d);
        }
        g.members.extend(bundle.added.iter().copied());
        g.epoch += 1;
        let new_epoch = g.epoch;
        self.stored.push(bundle.commit.clone());
        self.stored.push(bundle.group_info.clone());
        for d in old_members.into_iter().filter(|d| *d != from.id) {
            self.enqueue(
                d,
                group,
                &from.user,
                from.id,
                DeliveryKind::Commit,
                bundle.epoch,
                bundle.commit.clone(),
            );
        }
        if let Some(welcome) = &bundle.welcome {
            self.stored.push(welcome.clone());
            for d in bundle.added.clone() {
                self.enqueue(
                    d,
                    group,
                    &from.user,
                    from.id,
                    DeliveryKind::Welcome,
                    new_epoch,
                    welcome.clone(),
                );
            }
        } else {
            assert!(bundle.added.is_empty(), "adds without a Welcome");
        }
        Ok(new_epoch)
    }

    /// Refuses a commit that is not stale but invalid (`Err(None)`); a group
    /// this commit was creating is forgotten again.
    fn refuse(
        &mut self,
        group: GroupId,
        bundle: &CommitBundle,
        reason: String,
    ) -> Result<u64, Option<u64>> {
        if bundle.create.is_some() {
            self.groups.remove(&group);
        }
        self.last_refusal = Some(reason);
        Err(None)
    }

    /// Takes everything queued for `device`, in FIFO order.
    pub fn drain(&mut self, device: DeviceId) -> Vec<Delivery> {
        self.queues
            .get_mut(&device)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    pub fn pending(&self, device: DeviceId) -> usize {
        self.queues.get(&device).map_or(0, |q| q.len())
    }

    /// Injects a delivery (e.g. garbage from a misbehaving server).
    pub fn inject(&mut self, to: DeviceId, mut delivery: Delivery) {
        let seq = self.next_seq.entry(to).or_insert(0);
        *seq += 1;
        delivery.seq = *seq;
        self.queues.entry(to).or_default().push_back(delivery);
    }
}

/// Delivers every queued delivery to every device (in FIFO order) until all
/// queues are empty. Returns the events per device, in `devices` order.
pub fn pump(ds: &mut Ds, devices: &mut [&mut Device]) -> Vec<Vec<Event>> {
    let mut out: Vec<Vec<Event>> = devices.iter().map(|_| vec![]).collect();
    loop {
        let mut any = false;
        for (i, d) in devices.iter_mut().enumerate() {
            for delivery in ds.drain(d.id) {
                any = true;
                let now = ds.tick(1);
                out[i].extend(d.receive(&delivery, now));
            }
        }
        if !any {
            return out;
        }
    }
}

/// Delivers `device`'s queue after applying `fault` to it.
pub fn pump_one_with(
    ds: &mut Ds,
    device: &mut Device,
    fault: impl FnOnce(&mut XorShift, &mut Vec<Delivery>),
) -> Vec<Event> {
    let mut queue = ds.drain(device.id);
    fault(&mut ds.rng, &mut queue);
    let mut out = vec![];
    for delivery in queue {
        let now = ds.tick(1);
        out.extend(device.receive(&delivery, now));
    }
    out
}

pub fn is_message(e: &Event) -> bool {
    matches!(e, Event::Message(_))
}

pub fn is_dropped(e: &Event) -> bool {
    matches!(e, Event::Dropped { .. })
}

/// Texts of the `Message` events among `events`.
pub fn message_texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => match &m.body {
                Body::Text(t) => Some(t.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Sets up a group of `members[0]` (creator) plus the others, all joined and
/// at the same epoch. Returns the group id.
pub fn group_of(ds: &mut Ds, seed: u8, devices: &mut [&mut Device]) -> GroupId {
    let (creator, rest) = devices.split_first_mut().expect("a creator");
    let others: Vec<&Device> = rest.iter().map(|d| &**d).collect();
    let pending = creator.create_group(seed, &others, ds.now);
    let group = pending.bundle.group;
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
    let epoch = ds.epoch(&group);
    for d in devices.iter() {
        assert_eq!(d.epoch(&group), epoch, "{} epoch", d.user);
    }
    group
}
