//! The authorisation matrix of the delivery WebSocket (`GET /v1/ws`): every
//! operation a device can ask for, by every kind of caller, against a real
//! server on loopback with real OpenMLS messages.
//!
//! Callers: anonymous (no token), a disabled user (its old token), and six
//! accounts around one group: a guest member, a member, a read-only member,
//! the group's admin (an organisation *member* who created it), and the
//! organisation's admin and owner, who are not in the group. "Another
//! organisation's user" does not apply: a server hosts one organisation, so
//! every account is one of the above.
//!
//! | operation (frame)                              | anon | disabled | guest | member | read-only | group admin | org admin | owner |
//! |------------------------------------------------|------|----------|-------|--------|-----------|-------------|-----------|-------|
//! | post text in a normal group (Send)             | 401  | 403      | ok    | ok     | F         | ok          | NM        | NM    |
//! | post in an announcement group (Send)           | 401  | 403      | F     | F      | F         | ok          | NM        | NM    |
//! | recall another member's message (Send+recall)  | 401  | 403      | F     | F      | F         | ok          | NM        | NM    |
//! | leave proposal (Send, PublicMessage)           | 401  | 403      | ok    | ok     | ok        | ok          | NM        | NM    |
//! | acknowledge own queue (Ack)                    | 401  | 403      | ok    | ok     | ok        | ok          | ok        | ok    |
//! | commit adding a new user                       | 401  | 403      | F     | ok     | F         | ok          | NM        | NM    |
//! | commit adding a guest, policy bars guests      | 401  | 403      | F     | F      | F         | F           | NM        | NM    |
//! | commit removing another member                 | 401  | 403      | F     | ok     | F         | ok          | NM        | NM    |
//! | commit changing settings (make someone admin)  | 401  | 403      | F     | F      | F         | ok          | NM        | NM    |
//! | commit self-update                             | 401  | 403      | ok    | ok     | ok        | ok          | NM        | NM    |
//! | create a group                                 | 401  | 403      | F     | ok     | ok        | ok          | ok        | ok    |
//! | create a group, policy: only admins may        | 401  | 403      | F     | F      | F         | F           | ok        | ok    |
//! | create a direct chat with a non-shared user    | 401  | 403      | F     | ok     | ok        | ok          | ok        | ok    |
//! | create a direct chat with a group co-member    | 401  | 403      | ok    | ok     | ok        | ok          | ok        | ok    |
//!
//! `401`/`403`: the upgrade is refused (no token / account disabled). `F`:
//! `Rejected` with `forbidden`, recorded as an `access_denied` security
//! event of the caller, nothing stored. `NM`: `Rejected` with `not_member`,
//! recorded as an `access_denied` event too (an outsider touching a
//! group), nothing stored. `ok`: `Accepted` and stored (the group's state
//! changed).
//!
//! Every cell starts from a fresh group (the group admin creates it with
//! the other three callers and a bystander, `bea`, at epoch 1), so an
//! accepted commit in one cell cannot affect another. Accounts are
//! registered once. Callers outside the group hold no group keys: their
//! frames carry MLS messages made with the group admin's state, which is
//! what a stolen or replayed message looks like; the server decides by the
//! authenticated device alone. Members' frames are made with their own
//! state, with the signature key their device registered, and each commit
//! uploads the GroupInfo of the epoch it makes, as Rampart clients do: the
//! server verifies every handshake message against the group's state.
//!
//! The disabled account's refused upgrades are `access_denied` events too.
//! Three focused tests follow the matrix: a forged add by a member without
//! the AddRemove right, a member's GroupInfo claiming it is an admin, and
//! bundles whose lists and GroupInfo hide what their MLS commit does.
//!
//! [`rows_for`] maps every [`ClientFrame`] variant (and field) to the rows
//! that cover it, with no wildcard; [`every_client_frame_kind_has_rows`]
//! probes the frame decoder for every frame type and creation kind it
//! knows, so a new kind of frame without rows here fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use openmls::prelude::*;
use rampart_proto::admin::{AccessPolicy, Invite};
use rampart_proto::codec::DecodeError;
use rampart_proto::frame::{
    ClientFrame, CommitBundle, Create, FRAME_VERSION, SendMessage, ServerFrame,
};
use rampart_proto::group::{Allowed, GroupRole, GroupSettings};
use rampart_proto::{ErrorCode, GroupId, IdempotencyKey};
use rampart_server::Registration;
use sqlx::SqlitePool;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

// ---- the matrix --------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Op {
    PostNormal,
    PostAnnouncement,
    RecallOthers,
    LeaveProposal,
    Ack,
    AddUser,
    AddBarredGuest,
    RemoveMember,
    ChangeSettings,
    SelfUpdate,
    CreateGroup,
    CreateGroupAdminsOnly,
    DirectNonShared,
    DirectShared,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Disabled,
    Guest,
    Member,
    ReadOnly,
    GroupAdmin,
    OrgAdmin,
    Owner,
}

const CALLERS: [Caller; 8] = [
    Caller::Anonymous,
    Caller::Disabled,
    Caller::Guest,
    Caller::Member,
    Caller::ReadOnly,
    Caller::GroupAdmin,
    Caller::OrgAdmin,
    Caller::Owner,
];

impl Caller {
    /// The account acting (see [`PEOPLE`]); none for anonymous.
    fn name(self) -> Option<&'static str> {
        match self {
            Self::Anonymous => None,
            Self::Disabled => Some("dora"),
            Self::Guest => Some("gil"),
            Self::Member => Some("meg"),
            Self::ReadOnly => Some("rob"),
            Self::GroupAdmin => Some("ada"),
            Self::OrgAdmin => Some("oscar"),
            Self::Owner => Some("olive"),
        }
    }

    /// Holds keys of the cell's group (joined from its Welcome).
    fn in_group(self) -> bool {
        matches!(
            self,
            Self::Guest | Self::Member | Self::ReadOnly | Self::GroupAdmin
        )
    }
}

/// What happened to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Rejected(ErrorCode),
    /// The WebSocket upgrade was refused with this HTTP status.
    Upgrade(u16),
    Other(String),
}

const OK: Outcome = Outcome::Accepted;
const F: Outcome = Outcome::Rejected(ErrorCode::Forbidden);
const NM: Outcome = Outcome::Rejected(ErrorCode::NotMember);
const NO_TOKEN: Outcome = Outcome::Upgrade(401);
const DISABLED: Outcome = Outcome::Upgrade(403);
const MALFORMED: Outcome = Outcome::Rejected(ErrorCode::MalformedMls);

/// One row per operation; columns in [`CALLERS`] order:
/// anonymous, disabled, guest, member, read-only, group admin, org admin, owner.
#[rustfmt::skip]
fn matrix() -> Vec<(Op, [Outcome; 8])> {
    vec![
        //                          anon      disabled  guest member r-only g-admin org-adm owner
        // Read-only members never post; org roles give no seat in a group.
        (Op::PostNormal,            [NO_TOKEN, DISABLED, OK,   OK,    F,     OK,    NM,    NM]),
        // post = admins (announcement group): only the group's admins.
        (Op::PostAnnouncement,      [NO_TOKEN, DISABLED, F,    F,     F,     OK,    NM,    NM]),
        // Another member's undelivered message: only group admins may recall
        // it (a read-only member fails the post check first).
        (Op::RecallOthers,          [NO_TOKEN, DISABLED, F,    F,     F,     OK,    NM,    NM]),
        // Anyone in the group may propose leaving it, read-only included.
        (Op::LeaveProposal,         [NO_TOKEN, DISABLED, OK,   OK,    OK,    OK,    NM,    NM]),
        // A device acknowledges only its own queue: nothing to deny.
        (Op::Ack,                   [NO_TOKEN, DISABLED, OK,   OK,    OK,    OK,    OK,    OK]),
        // add_remove = members (the default), but guests add nobody and
        // read-only members change nothing.
        (Op::AddUser,               [NO_TOKEN, DISABLED, F,    OK,    F,     OK,    NM,    NM]),
        // Policy guests_may_be_added = false binds the group admin too.
        (Op::AddBarredGuest,        [NO_TOKEN, DISABLED, F,    F,     F,     F,     NM,    NM]),
        // Guests remove nobody from a group (removing their own devices,
        // i.e. leaving, stays open to them); read-only members change nothing.
        (Op::RemoveMember,          [NO_TOKEN, DISABLED, F,    OK,    F,     OK,    NM,    NM]),
        // Roles and settings: the group's admins only.
        (Op::ChangeSettings,        [NO_TOKEN, DISABLED, F,    F,     F,     OK,    NM,    NM]),
        (Op::SelfUpdate,            [NO_TOKEN, DISABLED, OK,   OK,    OK,    OK,    NM,    NM]),
        // Guests never create groups; the read-only member and the group
        // admin are organisation members (group roles do not matter here).
        (Op::CreateGroup,           [NO_TOKEN, DISABLED, F,    OK,    OK,    OK,    OK,    OK]),
        // Policy members_may_create_groups = false: org admins and owners only.
        (Op::CreateGroupAdminsOnly, [NO_TOKEN, DISABLED, F,    F,     F,     F,     OK,    OK]),
        // A guest starts direct chats only with people it shares a group with.
        (Op::DirectNonShared,       [NO_TOKEN, DISABLED, F,    OK,    OK,    OK,    OK,    OK]),
        (Op::DirectShared,          [NO_TOKEN, DISABLED, OK,   OK,    OK,    OK,    OK,    OK]),
    ]
}

/// The matrix rows that cover a frame. Exhaustive on purpose, with every
/// field named: a new variant, creation kind or field does not compile
/// until it is mapped here, and its rows must then exist in [`matrix`]
/// (checked by [`every_client_frame_kind_has_rows`]).
fn rows_for(frame: &ClientFrame) -> Vec<Op> {
    match frame {
        ClientFrame::Send(SendMessage {
            request_id: _,
            key: _,
            group: _,
            // Lifetime rules, not rights: tests/lifetime.rs.
            expires_in: _,
            recalls,
            // Which files a message may share: tests/blobs.rs.
            attachments: _,
            message: _,
        }) => match recalls {
            None => vec![Op::PostNormal, Op::PostAnnouncement, Op::LeaveProposal],
            Some(_) => vec![Op::RecallOthers],
        },
        ClientFrame::Commit(CommitBundle {
            request_id: _,
            key: _,
            group: _,
            epoch: _,
            create,
            commit: _,
            welcome: _,
            group_info: _,
            added: _,
            removed: _,
        }) => match create {
            None => vec![
                Op::AddUser,
                Op::AddBarredGuest,
                Op::RemoveMember,
                Op::ChangeSettings,
                Op::SelfUpdate,
            ],
            Some(Create::Group) => vec![Op::CreateGroup, Op::CreateGroupAdminsOnly],
            Some(Create::Direct { peer: _ }) => vec![Op::DirectNonShared, Op::DirectShared],
        },
        ClientFrame::Ack { up_to: _ } => vec![Op::Ack],
    }
}

/// One frame of every shape [`rows_for`] distinguishes.
fn sample_frames() -> Vec<ClientFrame> {
    let group = GroupId::new_group([1; 31]);
    let send = |recalls| {
        ClientFrame::Send(SendMessage {
            request_id: 1,
            key: IdempotencyKey([1; 16]),
            group,
            expires_in: None,
            recalls,
            attachments: vec![],
            message: vec![1],
        })
    };
    let commit = |create| {
        ClientFrame::Commit(CommitBundle {
            request_id: 1,
            key: IdempotencyKey([2; 16]),
            group,
            epoch: 0,
            create,
            commit: vec![1],
            welcome: None,
            group_info: vec![1],
            added: vec![],
            removed: vec![],
        })
    };
    vec![
        send(None),
        send(Some(IdempotencyKey([3; 16]))),
        commit(None),
        commit(Some(Create::Group)),
        commit(Some(Create::Direct {
            peer: rampart_proto::Username::parse("bea").unwrap(),
        })),
        ClientFrame::Ack { up_to: 1 },
    ]
}

#[test]
fn every_client_frame_kind_has_rows() {
    // Every frame type the decoder knows (an unknown type byte is refused
    // as an unknown tag; a known one with no body as truncated).
    let known_types: BTreeSet<u8> = (0..=u8::MAX)
        .filter(|t| {
            !matches!(
                ClientFrame::decode(&[FRAME_VERSION, *t]),
                Err(DecodeError::UnknownTag { .. })
            )
        })
        .collect();
    let samples = sample_frames();
    let sampled_types: BTreeSet<u8> = samples.iter().map(|f| f.encode()[1]).collect();
    assert_eq!(
        known_types, sampled_types,
        "a client frame type has no sample (and so no matrix rows)"
    );

    // Every creation kind a commit bundle may carry.
    let plain = samples[2].encode();
    let creating = samples[3].encode();
    let at = plain
        .iter()
        .zip(&creating)
        .position(|(a, b)| a != b)
        .unwrap();
    let known_creates: BTreeSet<u8> = (0..=u8::MAX)
        .filter(|t| {
            let mut bytes = plain[..at].to_vec();
            bytes.push(*t);
            !matches!(
                ClientFrame::decode(&bytes),
                Err(DecodeError::UnknownTag { what: "create", .. })
            )
        })
        .collect();
    let sampled_creates: BTreeSet<u8> = samples
        .iter()
        .filter(|f| matches!(f, ClientFrame::Commit(_)))
        .map(|f| f.encode()[at])
        .collect();
    assert_eq!(
        known_creates, sampled_creates,
        "a kind of group creation has no sample (and so no matrix rows)"
    );

    // The rows the frames map to are exactly the matrix's, each once.
    let covered: BTreeSet<Op> = samples.iter().flat_map(rows_for).collect();
    let rows: Vec<Op> = matrix().into_iter().map(|(op, _)| op).collect();
    let in_matrix: BTreeSet<Op> = rows.iter().copied().collect();
    assert_eq!(in_matrix.len(), rows.len(), "a row appears twice");
    assert_eq!(covered, in_matrix);
}

// ---- the world -----------------------------------------------------------------

/// Everyone the tests use, with their organisation role. `olive` registers
/// with the server's first invite (owner) and invites the others.
const PEOPLE: [(&str, &str); 11] = [
    ("olive", "owner"),
    ("oscar", "admin"),
    // Creates each cell's group: its admin.
    ("ada", "member"),
    ("gil", "guest"),
    ("meg", "member"),
    // Read-only in each cell's group.
    ("rob", "member"),
    // The bystander: removed, promoted, recalled, chatted with.
    ("bea", "member"),
    // Added by the add rows.
    ("nick", "member"),
    ("gwen", "guest"),
    // Shares no group with anyone.
    ("stan", "member"),
    ("dora", "member"),
];

struct Person {
    acct: Account,
    mls: MlsClient,
}

struct World {
    _dir: tempfile::TempDir,
    server: TestServer,
    http: reqwest::Client,
    db: SqlitePool,
    people: HashMap<&'static str, Person>,
}

impl World {
    async fn new(names: &[&'static str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start(dir.path(), Registration::Invite).await;
        let http = reqwest::Client::new();
        let mut people = HashMap::new();
        let owner = register(&http, &server, "olive", 1, server.first_invite.as_deref()).await;
        let owner_token = owner.token.clone();
        let mls = MlsClient::for_account(&owner);
        people.insert("olive", Person { acct: owner, mls });
        for (n, (name, role)) in PEOPLE.iter().enumerate().skip(1) {
            if !names.contains(name) {
                continue;
            }
            let invite: Invite = http
                .post(server.url("/v1/admin/invites"))
                .bearer_auth(&owner_token)
                .json(&serde_json::json!({ "role": role }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let acct = register(&http, &server, name, n as u64 + 1, Some(&invite.code)).await;
            let mls = MlsClient::for_account(&acct);
            people.insert(*name, Person { acct, mls });
        }
        let db = SqlitePool::connect(&format!(
            "sqlite://{}",
            dir.path().join("rampart.db").display()
        ))
        .await
        .unwrap();
        Self {
            _dir: dir,
            server,
            http,
            db,
            people,
        }
    }

    fn p(&self, name: &str) -> &Person {
        &self.people[name]
    }

    fn owner_token(&self) -> &str {
        &self.p("olive").acct.token
    }

    async fn set_access(&self, policy: &AccessPolicy) {
        let resp = self
            .http
            .put(self.server.url("/v1/admin/access"))
            .bearer_auth(self.owner_token())
            .json(policy)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }

    /// `access_denied` security events recorded for a device.
    async fn denials(&self, name: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM security_events WHERE kind = 'access_denied' AND device_id = ?",
        )
        .bind(self.p(name).acct.device.get() as i64)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    /// What the server holds about a group.
    async fn snapshot(&self, group: &GroupId) -> Snapshot {
        let id = group.as_bytes().to_vec();
        let row: Option<(i64, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT epoch, settings FROM groups WHERE id = ?")
                .bind(&id)
                .fetch_optional(&self.db)
                .await
                .unwrap();
        let members = sqlx::query_scalar(
            "SELECT device_id FROM group_members WHERE group_id = ? ORDER BY device_id",
        )
        .bind(&id)
        .fetch_all(&self.db)
        .await
        .unwrap();
        let messages = sqlx::query_scalar("SELECT id FROM messages WHERE group_id = ? ORDER BY id")
            .bind(&id)
            .fetch_all(&self.db)
            .await
            .unwrap();
        Snapshot {
            epoch: row.as_ref().map(|r| r.0),
            settings: row.and_then(|r| r.1),
            members,
            messages,
        }
    }

    /// The settings the server mirrors for a group.
    async fn stored_settings(&self, group: &GroupId) -> Option<GroupSettings> {
        self.snapshot(group)
            .await
            .settings
            .map(|b| GroupSettings::decode(&b).unwrap())
    }

    /// A connected device whose backlog has been read.
    async fn session(&self, name: &str) -> Ws {
        let mut ws = connect(&self.server, &self.p(name).acct.token).await;
        backlog(&mut ws).await;
        ws
    }

    /// Sends one request as `name` on a fresh connection and returns the answer.
    async fn request(&self, name: &str, frame: &ClientFrame) -> ServerFrame {
        let mut ws = self.session(name).await;
        send(&mut ws, frame).await;
        let answer = answer_to(&mut ws, request_id(frame)).await;
        let _ = ws.close(None).await;
        answer
    }

    /// Sends, as `name`, a commit at epoch 1 of `group` whose bundle names
    /// nobody added or removed, and returns the answer.
    async fn commit(&self, name: &str, group: GroupId, built: Built) -> ServerFrame {
        let frame = commit_frame(group, 1, None, built, vec![], vec![]);
        self.request(name, &frame).await
    }

    /// Sends `built` as [`World::commit`] does and checks that it is
    /// forbidden, recorded as one more denial of `name`, and leaves the
    /// group as it was.
    async fn commit_forbidden(&self, name: &str, group: GroupId, built: Built, what: &str) {
        let (before, denials) = (self.snapshot(&group).await, self.denials(name).await);
        let answer = self.commit(name, group, built).await;
        assert_eq!(outcome(&answer), F, "{what}: {answer:?}");
        assert_eq!(self.denials(name).await, denials + 1, "{what}");
        assert_eq!(self.snapshot(&group).await, before, "{what}");
    }

    /// Creates a group as `ada` with `gil`, `meg`, `rob` (read-only) and
    /// `bea` (epoch 1 afterwards) and these rules.
    async fn group(&self, shape: impl FnOnce(&mut GroupSettings)) -> Base {
        let ada = self.p("ada");
        let mut settings = GroupSettings::created_by(&ada.acct.username);
        settings.set_role(&self.p("rob").acct.username, GroupRole::ReadOnly);
        shape(&mut settings);
        let id = GroupId::new_group(rand::random());
        let mut group = new_mls_group(&ada.mls, &id, Some(&settings));
        let members = ["gil", "meg", "rob", "bea"];
        let kps: Vec<KeyPackage> = members
            .iter()
            .map(|m| self.p(m).mls.key_package())
            .collect();
        let built = add(&ada.mls, &mut group, &kps);
        let welcome = built.welcome.clone().unwrap();
        let added = members.iter().map(|m| self.p(m).acct.device).collect();
        let frame = commit_frame(id, 0, Some(Create::Group), built, added, vec![]);
        let answer = self.request("ada", &frame).await;
        assert!(
            matches!(answer, ServerFrame::Accepted { epoch: 1, .. }),
            "{answer:?}"
        );
        ada.mls.merge(&mut group);
        Base {
            id,
            settings,
            admin_group: group,
            welcome,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    epoch: Option<i64>,
    settings: Option<Vec<u8>>,
    members: Vec<i64>,
    messages: Vec<i64>,
}

/// A cell's group: its rules, the admin's MLS state, the Welcome for the others.
struct Base {
    id: GroupId,
    settings: GroupSettings,
    admin_group: MlsGroup,
    welcome: Vec<u8>,
}

// ---- frames and MLS ------------------------------------------------------------

/// Drops a commit the server refused, so the group can make another.
fn forget_pending(c: &MlsClient, group: &mut MlsGroup) {
    group
        .clear_pending_commit(openmls_traits::OpenMlsProvider::storage(&c.provider))
        .unwrap();
}

/// Frames up to and including `BacklogDone`; returns its `up_to` and how
/// many deliveries came before it.
async fn backlog(ws: &mut Ws) -> (u64, usize) {
    let mut n = 0;
    loop {
        match recv(ws).await {
            Some(ServerFrame::BacklogDone { up_to }) => return (up_to, n),
            Some(ServerFrame::Deliver(_)) => n += 1,
            other => panic!("expected the backlog, got {other:?}"),
        }
    }
}

/// The code and reason of a `Rejected` answer.
fn rejection(answer: &ServerFrame) -> (ErrorCode, &str) {
    let ServerFrame::Rejected { code, message, .. } = answer else {
        panic!("{answer:?}");
    };
    (*code, message)
}

fn outcome(answer: &ServerFrame) -> Outcome {
    match answer {
        ServerFrame::Accepted {
            duplicate: false, ..
        } => Outcome::Accepted,
        ServerFrame::Rejected { code, .. } => Outcome::Rejected(*code),
        other => Outcome::Other(format!("{other:?}")),
    }
}

async fn upgrade_status(server: &TestServer, token: Option<&str>) -> Outcome {
    match try_connect(server, token).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            Outcome::Upgrade(resp.status().as_u16())
        }
        Err(e) => Outcome::Other(format!("{e}")),
        Ok(_) => Outcome::Other("the WebSocket opened".into()),
    }
}

// ---- one cell ------------------------------------------------------------------

/// What one cell did: the outcome, and a list of problems beyond it.
struct Cell {
    outcome: Outcome,
    problems: Vec<String>,
}

async fn run_cell(w: &World, op: Op, caller: Caller) -> Cell {
    let mut problems = Vec::new();
    let Some(name) = caller.name() else {
        let outcome = upgrade_status(&w.server, None).await;
        return Cell { outcome, problems };
    };
    if caller == Caller::Disabled {
        let before = w.denials(name).await;
        let outcome = upgrade_status(&w.server, Some(&w.p(name).acct.token)).await;
        if w.denials(name).await != before + 1 {
            problems.push("the disabled account's attempt was not recorded".into());
        }
        return Cell { outcome, problems };
    }
    if op == Op::Ack {
        let outcome = ack_cell(w, name).await;
        return Cell { outcome, problems };
    }

    let me = w.p(name);
    let bea = w.p("bea");
    let needs_group = !matches!(
        op,
        Op::CreateGroup | Op::CreateGroupAdminsOnly | Op::DirectNonShared
    );
    let mut base = if needs_group {
        Some(
            w.group(|s| {
                if op == Op::PostAnnouncement {
                    s.post = Allowed::Admins;
                }
            })
            .await,
        )
    } else {
        None
    };
    let (base_id, base_settings, welcome) = match &base {
        Some(b) => (b.id, b.settings.clone(), b.welcome.clone()),
        None => (
            GroupId::new_group([0; 31]),
            GroupSettings::default(),
            vec![],
        ),
    };
    // The MLS state the frame is made with: the caller's own if it is in
    // the group, else the group admin's (an outsider holds no keys).
    let mut joined = None;
    let (mls, group) = match (&mut base, caller.in_group() && caller != Caller::GroupAdmin) {
        (Some(_), true) => (&me.mls, Some(joined.insert(me.mls.join(&welcome)))),
        (Some(b), false) => (&w.p("ada").mls, Some(&mut b.admin_group)),
        (None, _) => (&me.mls, None),
    };

    // The group the request is about, and the request.
    let (target, frame) = match op {
        Op::PostNormal | Op::PostAnnouncement | Op::LeaveProposal => {
            let group = group.unwrap();
            let message = if op == Op::LeaveProposal {
                group
                    .leave_group(&mls.provider, &mls.signer)
                    .unwrap()
                    .to_bytes()
                    .unwrap()
            } else {
                mls.message(group, b"hello")
            };
            let key = IdempotencyKey(rand::random());
            (base_id, message_frame(base_id, key, None, message))
        }
        Op::RecallOthers => {
            // Bea posts; its copies stay queued for the members offline.
            let mut bea_group = bea.mls.join(&welcome);
            let target = IdempotencyKey(rand::random());
            let post = message_frame(
                base_id,
                target,
                None,
                bea.mls.message(&mut bea_group, b"oops"),
            );
            let answer = w.request("bea", &post).await;
            assert_eq!(outcome(&answer), OK, "{answer:?}");
            let group = group.unwrap();
            let message = mls.message(group, b"recall");
            let key = IdempotencyKey(rand::random());
            (base_id, message_frame(base_id, key, Some(target), message))
        }
        Op::AddUser | Op::AddBarredGuest => {
            let new = w.p(if op == Op::AddUser { "nick" } else { "gwen" });
            let built = add(mls, group.unwrap(), &[new.mls.key_package()]);
            let frame = commit_frame(base_id, 1, None, built, vec![new.acct.device], vec![]);
            (base_id, frame)
        }
        Op::RemoveMember => {
            let built = remove(mls, group.unwrap(), &bea.mls);
            (
                base_id,
                commit_frame(base_id, 1, None, built, vec![], vec![bea.acct.device]),
            )
        }
        Op::ChangeSettings => {
            let mut settings = base_settings.clone();
            settings.set_role(&bea.acct.username, GroupRole::Admin);
            let built = change_settings(mls, group.unwrap(), &settings);
            (
                base_id,
                commit_frame(base_id, 1, None, built, vec![], vec![]),
            )
        }
        Op::SelfUpdate => {
            let built = self_update(mls, group.unwrap());
            (
                base_id,
                commit_frame(base_id, 1, None, built, vec![], vec![]),
            )
        }
        Op::CreateGroup | Op::CreateGroupAdminsOnly => {
            let id = GroupId::new_group(rand::random());
            let settings = GroupSettings::created_by(&me.acct.username);
            let mut group = new_mls_group(&me.mls, &id, Some(&settings));
            let built = add(&me.mls, &mut group, &[bea.mls.key_package()]);
            let frame = commit_frame(
                id,
                0,
                Some(Create::Group),
                built,
                vec![bea.acct.device],
                vec![],
            );
            (id, frame)
        }
        Op::DirectNonShared | Op::DirectShared => {
            let peer = w.p(if op == Op::DirectShared {
                "bea"
            } else {
                "stan"
            });
            let id = GroupId::direct(&me.acct.username, &peer.acct.username);
            let mut group = new_mls_group(&me.mls, &id, None);
            let built = add(&me.mls, &mut group, &[peer.mls.key_package()]);
            let create = Create::Direct {
                peer: peer.acct.username.clone(),
            };
            let frame = commit_frame(id, 0, Some(create), built, vec![peer.acct.device], vec![]);
            (id, frame)
        }
        Op::Ack => unreachable!("handled above"),
    };
    if !rows_for(&frame).contains(&op) {
        problems.push(format!("rows_for does not map this row's frame to {op:?}"));
    }

    // Organisation policy for the rows about it (after the group exists).
    let policy = match op {
        Op::AddBarredGuest => Some(AccessPolicy {
            guests_may_be_added: false,
            ..AccessPolicy::default()
        }),
        Op::CreateGroupAdminsOnly => Some(AccessPolicy {
            members_may_create_groups: false,
            ..AccessPolicy::default()
        }),
        _ => None,
    };
    if let Some(policy) = &policy {
        w.set_access(policy).await;
    }

    let (state_before, denials_before) = (w.snapshot(&target).await, w.denials(name).await);
    let answer = w.request(name, &frame).await;
    let outcome = outcome(&answer);
    let (state_after, denials_after) = (w.snapshot(&target).await, w.denials(name).await);

    if policy.is_some() {
        w.set_access(&AccessPolicy::default()).await;
    }

    // Only a refusal for want of a right (or of a seat in the group) is a
    // security event; nothing refused leaves a trace in the group, and
    // everything accepted does.
    let recorded = denials_after - denials_before;
    match &outcome {
        Outcome::Rejected(code @ (ErrorCode::Forbidden | ErrorCode::NotMember))
            if recorded != 1 =>
        {
            problems.push(format!(
                "{recorded} access_denied events for a {code} request"
            ));
        }
        Outcome::Accepted if recorded != 0 => {
            problems.push(format!(
                "{recorded} access_denied events for an accepted request"
            ));
        }
        _ => {}
    }
    if outcome != OK && state_before != state_after {
        problems.push(format!(
            "refused, but the group changed: {state_before:?} -> {state_after:?}"
        ));
    }
    if outcome == OK && state_before == state_after {
        problems.push("accepted, but the group did not change".into());
    }
    if let ServerFrame::Rejected { message, .. } = &answer
        && message.is_empty()
    {
        problems.push("a refusal without a reason".into());
    }
    Cell { outcome, problems }
}

/// Reads the backlog, acknowledges it, and checks that a new connection
/// starts with an empty backlog.
async fn ack_cell(w: &World, name: &str) -> Outcome {
    // Something queued for members: a fresh group's Welcome.
    let _ = w.group(|_| {}).await;
    let mut ws = connect(&w.server, &w.p(name).acct.token).await;
    let (up_to, _) = backlog(&mut ws).await;
    let frame = ClientFrame::Ack { up_to };
    assert_eq!(rows_for(&frame), vec![Op::Ack]);
    send(&mut ws, &frame).await;
    let _ = ws.close(None).await;
    // The ack is applied asynchronously (no answer); poll for its effect.
    for _ in 0..50 {
        let mut ws = connect(&w.server, &w.p(name).acct.token).await;
        let (_, queued) = backlog(&mut ws).await;
        let _ = ws.close(None).await;
        if queued == 0 {
            return Outcome::Accepted;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Outcome::Other("acknowledged deliveries came back".into())
}

fn short(o: &Outcome) -> String {
    match o {
        Outcome::Accepted => "ok".into(),
        Outcome::Rejected(ErrorCode::Forbidden) => "F".into(),
        Outcome::Rejected(ErrorCode::NotMember) => "NM".into(),
        Outcome::Rejected(code) => format!("{code}"),
        Outcome::Upgrade(status) => status.to_string(),
        Outcome::Other(_) => "??".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_authorisation_matrix() {
    let w = World::new(&PEOPLE.map(|(n, _)| n)).await;

    // Dora is disabled while connected: the socket is closed at once.
    let mut ws = w.session("dora").await;
    let resp = w
        .http
        .post(w.server.url("/v1/admin/users/dora/disable"))
        .bearer_auth(w.owner_token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    loop {
        match recv(&mut ws).await {
            None => break,
            Some(ServerFrame::Error { code, .. }) => {
                assert_eq!(code, ErrorCode::Unauthorized);
                break;
            }
            Some(ServerFrame::Deliver(_)) => {}
            Some(other) => panic!("disabled account's socket got {other:?}"),
        }
    }

    let mut table = String::from(
        "| operation | anon | disabled | guest | member | read-only | group admin | org admin | owner |\n",
    );
    let mut failures = Vec::new();
    for (op, expected) in matrix() {
        let _ = write!(table, "| {op:?} |");
        for (caller, expected) in CALLERS.iter().zip(&expected) {
            let cell = run_cell(&w, op, *caller).await;
            let mark = if cell.outcome == *expected && cell.problems.is_empty() {
                short(&cell.outcome)
            } else {
                failures.push(format!(
                    "{op:?} by {caller:?}: expected {expected:?}, got {:?}; {}",
                    cell.outcome,
                    cell.problems.join("; ")
                ));
                format!("**{}**", short(&cell.outcome))
            };
            let _ = write!(table, " {mark} |");
        }
        table.push('\n');
    }
    println!("{table}");
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
    w.server.stop().await;
}

// ---- focused -------------------------------------------------------------------

/// A member without the AddRemove right (the group's add_remove rule is
/// `admins`) forges a commit adding a user: refused, recorded, and the new
/// user never hears of the group. The same commit from the admin passes.
#[tokio::test]
async fn forged_add_without_the_add_remove_right_is_refused_and_recorded() {
    let w = World::new(&["ada", "gil", "meg", "rob", "bea", "nick"]).await;
    let base = w.group(|s| s.add_remove = Allowed::Admins).await;
    let (meg, nick, bea) = (w.p("meg"), w.p("nick"), w.p("bea"));
    let mut group = meg.mls.join(&base.welcome);

    let before = w.snapshot(&base.id).await;
    let denials = w.denials("meg").await;
    let built = add(&meg.mls, &mut group, &[nick.mls.key_package()]);
    let frame = commit_frame(base.id, 1, None, built, vec![nick.acct.device], vec![]);
    let answer = w.request("meg", &frame).await;
    let (code, message) = rejection(&answer);
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains("add or remove"), "{message}");
    assert_eq!(w.denials("meg").await, denials + 1);
    assert_eq!(w.snapshot(&base.id).await, before);
    // No Welcome was released to the user.
    let mut ws = connect(&w.server, &nick.acct.token).await;
    assert_eq!(backlog(&mut ws).await, (0, 0));
    let _ = ws.close(None).await;

    // Nor may she remove someone else under that rule.
    forget_pending(&meg.mls, &mut group);
    let built = remove(&meg.mls, &mut group, &bea.mls);
    let frame = commit_frame(base.id, 1, None, built, vec![], vec![bea.acct.device]);
    let answer = w.request("meg", &frame).await;
    assert_eq!(outcome(&answer), F, "{answer:?}");
    assert_eq!(w.denials("meg").await, denials + 2);
    assert_eq!(w.snapshot(&base.id).await, before);

    // The group's admin may: the refusal was about the right alone.
    let ada = w.p("ada");
    let mut admin_group = base.admin_group;
    let built = add(&ada.mls, &mut admin_group, &[nick.mls.key_package()]);
    let frame = commit_frame(base.id, 1, None, built, vec![nick.acct.device], vec![]);
    let answer = w.request("ada", &frame).await;
    assert!(
        matches!(answer, ServerFrame::Accepted { epoch: 2, .. }),
        "{answer:?}"
    );
    let mut ws = connect(&w.server, &nick.acct.token).await;
    assert_eq!(backlog(&mut ws).await.1, 1, "the Welcome");
    w.server.stop().await;
}

/// A member uploads GroupInfos whose settings name it admin: by a real
/// settings commit (refused for want of the right, and recorded), and by a
/// plain self-update whose GroupInfo claims it (refused as malformed: the
/// GroupInfo does not describe the state the commit makes). The stored
/// settings do not change, and the member still cannot do what admins may
/// (post in this announcement group). Dropping the settings and leaving no
/// admin are refused too.
#[tokio::test]
async fn member_claiming_admin_in_group_info_is_refused_and_settings_stay() {
    let w = World::new(&["ada", "gil", "meg", "rob", "bea"]).await;
    let base = w.group(|s| s.post = Allowed::Admins).await;
    let (meg, ada) = (w.p("meg"), w.p("ada"));
    let mut group = meg.mls.join(&base.welcome);
    let stored = w.stored_settings(&base.id).await;
    assert_eq!(stored.as_ref(), Some(&base.settings));
    let before = w.snapshot(&base.id).await;
    let mut denials = w.denials("meg").await;
    let mut claimed = base.settings.clone();
    claimed.set_role(&meg.acct.username, GroupRole::Admin);

    // (a) A real GroupContextExtensions commit promoting herself.
    let built = change_settings(&meg.mls, &mut group, &claimed);
    let answer = w.commit("meg", base.id, built).await;
    let (code, message) = rejection(&answer);
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains("admins"), "{message}");
    denials += 1;
    assert_eq!(w.denials("meg").await, denials);
    assert_eq!(w.snapshot(&base.id).await, before);
    forget_pending(&meg.mls, &mut group);

    // (b) A self-update whose GroupInfo (from a group she made up with the
    // same id) claims the same.
    let forger = MlsClient::for_account(&meg.acct);
    let forged = new_mls_group(&forger, &base.id, Some(&claimed));
    // (c) Dropping the settings altogether.
    let bare = new_mls_group(&MlsClient::for_account(&meg.acct), &base.id, None);
    for (what, made_up) in [("claimed admin", &forged), ("no settings", &bare)] {
        let mut built = self_update(&meg.mls, &mut group);
        built.group_info = forger.group_info(made_up);
        let answer = w.commit("meg", base.id, built).await;
        assert_eq!(outcome(&answer), MALFORMED, "{what}: {answer:?}");
        assert_eq!(w.denials("meg").await, denials, "{what}");
        assert_eq!(w.snapshot(&base.id).await, before, "{what}");
        assert_eq!(w.stored_settings(&base.id).await, stored, "{what}");
        forget_pending(&meg.mls, &mut group);
    }

    // She is still no admin to the server: the announcement group refuses
    // her post.
    let post = message_frame(
        base.id,
        IdempotencyKey(rand::random()),
        None,
        meg.mls.message(&mut group, b"I am admin now"),
    );
    let answer = w.request("meg", &post).await;
    assert_eq!(outcome(&answer), F, "{answer:?}");
    assert_eq!(w.denials("meg").await, denials + 1);
    assert_eq!(w.snapshot(&base.id).await, before);

    // (d) The admin may change settings, but not leave the group without one.
    let mut none = base.settings.clone();
    none.set_role(&ada.acct.username, GroupRole::Member);
    let mut admin_group = base.admin_group;
    let built = change_settings(&ada.mls, &mut admin_group, &none);
    let answer = w.commit("ada", base.id, built).await;
    let (code, message) = rejection(&answer);
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains("at least one admin"), "{message}");
    assert_eq!(w.stored_settings(&base.id).await, stored);
    w.server.stop().await;
}

/// A commit bundle must not hide what its commit does: the server checks
/// rights against the bundle's `added`/`removed` lists and the GroupInfo's
/// settings, so a commit whose MLS proposals add a user, remove a member
/// or change the settings while the bundle says otherwise must be refused.
/// The server verifies the commit against the group's stored state (see
/// `delivery/inspect.rs` and `delivery/verify.rs`): lists that differ from
/// what the commit does are forbidden (and recorded), a GroupInfo of
/// another state is malformed.
#[tokio::test]
async fn bundle_hiding_what_its_commit_does_is_refused() {
    let w = World::new(&["ada", "gil", "meg", "rob", "bea", "nick"]).await;
    let (meg, rob, bea, nick) = (w.p("meg"), w.p("rob"), w.p("bea"), w.p("nick"));

    // A member without the AddRemove right adds a user in MLS and names
    // nobody in the bundle (the Welcome would travel some other way).
    let base = w.group(|s| s.add_remove = Allowed::Admins).await;
    let mut group = meg.mls.join(&base.welcome);
    let mut built = add(&meg.mls, &mut group, &[nick.mls.key_package()]);
    built.welcome = None;
    w.commit_forbidden("meg", base.id, built, "hidden add")
        .await;

    // A read-only member removes another member in MLS only.
    let base = w.group(|_| {}).await;
    let mut group = rob.mls.join(&base.welcome);
    let built = remove(&rob.mls, &mut group, &bea.mls);
    w.commit_forbidden("rob", base.id, built, "hidden removal")
        .await;

    // A member promotes itself in MLS and uploads the old GroupInfo.
    let base = w.group(|_| {}).await;
    let mut group = meg.mls.join(&base.welcome);
    let before = w.snapshot(&base.id).await;
    let old_group_info = meg.mls.group_info(&group);
    let mut claimed = base.settings.clone();
    claimed.set_role(&meg.acct.username, GroupRole::Admin);
    let mut built = change_settings(&meg.mls, &mut group, &claimed);
    built.group_info = old_group_info;
    let answer = w.commit("meg", base.id, built).await;
    assert_eq!(
        outcome(&answer),
        MALFORMED,
        "hidden settings change: {answer:?}"
    );
    assert_eq!(w.snapshot(&base.id).await, before);
    w.server.stop().await;
}
