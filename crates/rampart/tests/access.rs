//! Access control end to end, through a real server on loopback with real
//! clients: disabling an account takes its devices out of every group (the
//! server proposes the removals as the groups' MLS external sender, a
//! member commits them), group roles and announcement groups hold on every
//! client and on the server, and the organisation's rules for guests and
//! group creation apply.

mod support;

use rampart_proto::admin::{AccessPolicy, AdminGroupList, NewInvite, UserSummary};
use rampart_proto::api::Role;
use rampart_proto::group::{Allowed, GroupRole};
use rampart_proto::{ErrorCode, Username};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_removes_their_devices_from_every_group() {
    let tmp = tempfile::tempdir().unwrap();
    // The first account of an open server is its owner.
    let (server, mut alice, mut bob, mut carol) = three_in_a_group(tmp.path(), "team").await;
    alice.send_text(&user("carol"), "just us").await.unwrap();
    assert_eq!(received(&mut carol).await, vec!["alice: just us"]);

    let summary: UserSummary = alice
        .http()
        .post("/v1/admin/users/carol/disable", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(
        summary.status,
        rampart_proto::admin::AccountStatus::Disabled
    );

    // The server proposed carol's removal in both conversations; the
    // members' clients commit it as they sync.
    bob.sync().await.unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(member_names(&alice, "team"), vec!["alice", "bob"]);
    assert_eq!(member_names(&bob, "team"), vec!["alice", "bob"]);
    let direct = alice
        .groups()
        .unwrap()
        .into_iter()
        .find(|g| g.kind == "direct")
        .expect("the direct chat with carol");
    assert_eq!(
        direct
            .members
            .iter()
            .map(|u| u.as_str())
            .collect::<Vec<_>>(),
        vec!["alice"]
    );

    // What follows is encrypted for alice and bob only, and the server
    // knows carol is gone.
    alice
        .send_text(&group("team"), "after carol left")
        .await
        .unwrap();
    assert_eq!(received(&mut bob).await, vec!["alice: after carol left"]);
    let groups: AdminGroupList = alice.http().get("/v1/admin/groups").await.unwrap();
    assert!(groups.groups.iter().all(|g| g.users <= 2), "{groups:?}");

    // Carol's old session is refused with a clear reason.
    let err = carol.sync().await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            Some(ErrorCode::AccountDisabled | ErrorCode::Unauthorized)
        ),
        "{err}"
    );
    let err = carol.login(PASSWORD, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AccountDisabled), "{err}");

    // Re-enabled, she signs in as a new device (her old one is gone for
    // good) and is added back; she reads only what follows.
    let _: UserSummary = alice
        .http()
        .post("/v1/admin/users/carol/enable", &serde_json::json!({}))
        .await
        .unwrap();
    let err = carol.login(PASSWORD, None).await.unwrap_err();
    assert!(err.to_string().contains("--new-device"), "{err}");
    let old_device = carol.device();
    carol
        .login_as_new_device(PASSWORD, None, "laptop")
        .await
        .unwrap();
    assert_ne!(carol.device(), old_device);
    carol.sync().await.unwrap();
    alice.add_member("team", carol.username()).await.unwrap();
    alice
        .send_text(&group("team"), "welcome back")
        .await
        .unwrap();
    assert_eq!(received(&mut carol).await, vec!["alice: welcome back"]);
    // Only while no device is left: now a second one needs approval.
    let err = carol
        .login_as_new_device(PASSWORD, None, "another")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_members_and_announcement_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut alice, mut bob, mut carol) = three_in_a_group(tmp.path(), "news").await;

    // Only admins change roles.
    let err = bob
        .update_group_settings("news", |s| {
            s.set_role(&Username::parse("bob").unwrap(), GroupRole::Admin)
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("admins"), "{err}");

    // Bob becomes read-only: his client and everyone else's know.
    alice
        .update_group_settings("news", |s| {
            s.set_role(&Username::parse("bob").unwrap(), GroupRole::ReadOnly)
        })
        .await
        .unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    let settings = bob.group_settings("news").unwrap().unwrap();
    assert_eq!(
        settings.role_of(&Username::parse("bob").unwrap()),
        GroupRole::ReadOnly
    );
    let err = bob.send_text(&group("news"), "can I?").await.unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    carol
        .send_text(&group("news"), "carol posts")
        .await
        .unwrap();
    assert_eq!(received(&mut bob).await, vec!["carol: carol posts"]);

    // An announcement group: only admins post.
    alice
        .update_group_settings("news", |s| s.post = Allowed::Admins)
        .await
        .unwrap();
    carol.sync().await.unwrap();
    let err = carol
        .send_text(&group("news"), "not any more")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("announcement"), "{err}");
    alice
        .send_text(&group("news"), "an announcement")
        .await
        .unwrap();
    assert_eq!(received(&mut carol).await, vec!["alice: an announcement"]);

    // Only admins add and remove now, but anyone's leave is committed by
    // whoever comes first, here a read-only member.
    alice
        .update_group_settings("news", |s| s.add_remove = Allowed::Admins)
        .await
        .unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    let err = bob
        .remove_member("news", carol.username())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only the group's admins"), "{err}");
    carol.leave_group("news").await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(member_names(&bob, "news"), vec!["alice", "bob"]);
    alice.sync().await.unwrap();
    assert_eq!(member_names(&alice, "news"), vec!["alice", "bob"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_and_the_organisations_group_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(&tmp.path().join("server"), loopback()).await;
    let mut owner = register(&server, tmp.path(), "olivia").await;
    let mut member = register(&server, tmp.path(), "mallory").await;
    let mut stranger = register(&server, tmp.path(), "sam").await;
    let guest_name = "gus";
    let mut guest = register(&server, tmp.path(), guest_name).await;
    let _: UserSummary = owner
        .http()
        .post(
            &format!("/v1/admin/users/{guest_name}/role"),
            &serde_json::json!({"role": "guest"}),
        )
        .await
        .unwrap();
    let me = guest.whoami().await.unwrap();
    assert_eq!(me.role, Role::Guest);

    // A guest creates no group and talks only to people it shares one with.
    let err = guest
        .create_group("mine", &[member.username().clone()], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    assert!(err.to_string().contains("guests"), "{err}");
    let err = guest.send_text(&user("sam"), "hello?").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    form_group(&mut owner, "project", &mut [&mut member, &mut guest]).await;
    guest
        .send_text(&group("project"), "guest here")
        .await
        .unwrap();
    guest.send_text(&user("mallory"), "a word").await.unwrap();
    assert_eq!(
        received(&mut member).await,
        vec!["gus: guest here", "gus: a word"]
    );
    // But nobody new through the guest.
    let err = guest
        .add_member("project", stranger.username())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    // The organisation closes group creation to members and guests to groups.
    let policy = AccessPolicy {
        members_may_create_groups: false,
        guests_may_be_added: false,
        max_group_users: 3,
        ..AccessPolicy::default()
    };
    let _: AccessPolicy = owner.http().put("/v1/admin/access", &policy).await.unwrap();
    let err = member
        .create_group("side", &[stranger.username().clone()], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let other_guest: rampart_proto::admin::Invite = owner
        .http()
        .post(
            "/v1/admin/invites",
            &NewInvite {
                role: Role::Guest,
                expires_in_secs: Some(3600),
            },
        )
        .await
        .unwrap();
    assert_eq!(other_guest.role, Role::Guest);
    owner
        .create_group("small", &[member.username().clone()], None)
        .await
        .unwrap();
    let err = owner
        .add_member("small", guest.username())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    owner
        .add_member("small", stranger.username())
        .await
        .unwrap();
    stranger.sync().await.unwrap();
    // Three people is the most.
    let mut fourth = register(&server, tmp.path(), "fred").await;
    let err = owner
        .add_member("small", fourth.username())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooLarge), "{err}");
    fourth.sync().await.unwrap();
    server.stop().await;
}
