//! End-to-end messaging through a real server on loopback with real clients.

mod support;

use rampart_client::ClientError;
use rampart_proto::ErrorCode;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_users_chat_one_to_one_and_in_a_group() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(&tmp.path().join("server"), loopback()).await;
    let mut alice = register(&server, tmp.path(), "alice").await;
    let mut bob = register(&server, tmp.path(), "bob").await;
    let mut carol = register(&server, tmp.path(), "carol").await;

    // 1:1 both ways.
    alice.send_text(&user("bob"), "hi bob").await.unwrap();
    assert_eq!(received(&mut bob).await, vec!["alice: hi bob"]);
    bob.send_text(&user("alice"), "hi alice").await.unwrap();
    assert_eq!(received(&mut alice).await, vec!["bob: hi alice"]);

    // A group of three.
    form_group(&mut alice, "team", &mut [&mut bob, &mut carol]).await;
    bob.send_text(&group("team"), "bob to team").await.unwrap();
    carol
        .send_text(&group("team"), "carol to team")
        .await
        .unwrap();
    assert_eq!(
        received(&mut alice).await,
        vec!["bob: bob to team", "carol: carol to team"]
    );
    assert_eq!(received(&mut bob).await, vec!["carol: carol to team"]);
    assert_eq!(received(&mut carol).await, vec!["bob: bob to team"]);

    // Remove carol: she cannot read what follows.
    alice.remove_member("team", carol.username()).await.unwrap();
    alice
        .send_text(&group("team"), "secret after carol left")
        .await
        .unwrap();
    assert_eq!(
        received(&mut bob).await,
        vec!["alice: secret after carol left"]
    );
    assert!(
        received(&mut carol).await.is_empty(),
        "a removed member must not read later messages"
    );
    let members = member_names(&bob, "team");
    assert_eq!(members, vec!["alice", "bob"]);
    let err = carol
        .send_text(&group("team"), "still here?")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Core(_) | ClientError::Server { .. }),
        "{err}"
    );

    // Add carol back, then bob leaves; alice's client commits his leave.
    alice.add_member("team", carol.username()).await.unwrap();
    carol.sync().await.unwrap();
    bob.leave_group("team").await.unwrap();
    alice.sync().await.unwrap();
    carol.sync().await.unwrap();
    alice
        .send_text(&group("team"), "after bob left")
        .await
        .unwrap();
    assert_eq!(received(&mut carol).await, vec!["alice: after bob left"]);
    let bob_got = received(&mut bob).await;
    let alice_sees = member_names(&alice, "team");
    assert!(
        bob_got.is_empty(),
        "bob left and must not read later messages: {bob_got:?}; alice sees {alice_sees:?}"
    );
    let members = member_names(&alice, "team");
    assert_eq!(members, vec!["alice", "carol"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipient_gets_everything_once_in_order_after_a_server_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let server = TestServer::start(&data, loopback()).await;
    let addr = server.addr;
    let mut alice = register(&server, tmp.path(), "alice").await;
    let bob = register(&server, tmp.path(), "bob").await;
    bob.close().await; // bob goes offline
    for i in 0..10 {
        alice
            .send_text(&user("bob"), &format!("message {i}"))
            .await
            .unwrap();
    }
    alice.close().await;
    server.stop().await;

    let server = TestServer::start(&data, addr).await;
    let mut bob = rampart_client::Client::open(&tmp.path().join("bob"), PASSPHRASE).unwrap();
    let expected: Vec<String> = (0..10).map(|i| format!("alice: message {i}")).collect();
    assert_eq!(received(&mut bob).await, expected);
    // A second sync delivers nothing again.
    assert!(received(&mut bob).await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_both_land() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, mut alice, mut bob, mut carol) = three_in_a_group(tmp.path(), "team").await;
    let _dave = register(&server, tmp.path(), "dave").await;
    let _erin = register(&server, tmp.path(), "erin").await;

    // Both commit on the same epoch at once: one wins, the other catches up and retries.
    let dave = rampart_proto::Username::parse("dave").unwrap();
    let erin = rampart_proto::Username::parse("erin").unwrap();
    let (a, b) = tokio::join!(
        bob.add_member("team", &dave),
        carol.add_member("team", &erin)
    );
    a.unwrap();
    b.unwrap();

    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    for client in [&alice, &bob, &carol] {
        let mut members = member_names(client, "team");
        members.sort();
        assert_eq!(
            members,
            vec!["alice", "bob", "carol", "dave", "erin"],
            "as seen by {}",
            client.username()
        );
    }
    alice.send_text(&group("team"), "all five").await.unwrap();
    assert_eq!(received(&mut carol).await, vec!["alice: all five"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_first_messages_end_in_one_conversation() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(&tmp.path().join("server"), loopback()).await;
    let mut alice = register(&server, tmp.path(), "alice").await;
    let mut bob = register(&server, tmp.path(), "bob").await;
    let (to_bob, to_alice) = (user("bob"), user("alice"));
    let (a, b) = tokio::join!(
        alice.send_text(&to_bob, "from alice"),
        bob.send_text(&to_alice, "from bob")
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(received(&mut alice).await, vec!["bob: from bob"]);
    assert_eq!(received(&mut bob).await, vec!["alice: from alice"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_never_reach_the_server_or_the_profile_in_plaintext() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let server = TestServer::start(&data, loopback()).await;
    let mut alice = register(&server, tmp.path(), "alice").await;
    let mut bob = register(&server, tmp.path(), "bob").await;
    let mut carol = register(&server, tmp.path(), "carol").await;
    let canary = "CANARY-7f3a9c-do-not-store";
    alice
        .send_text(&user("bob"), &format!("1:1 {canary}"))
        .await
        .unwrap();
    alice
        .create_group(
            "canary-group-name",
            &[bob.username().clone(), carol.username().clone()],
            None,
        )
        .await
        .unwrap();
    alice
        .send_text(&group("canary-group-name"), &format!("group {canary}"))
        .await
        .unwrap();
    // Bob stays offline for a while so the server holds queued copies.
    let stored = all_bytes(&data);
    assert!(!stored.is_empty());
    for (path, bytes) in &stored {
        assert!(
            !contains(bytes, canary.as_bytes()),
            "canary in server file {}",
            path.display()
        );
        assert!(
            !contains(bytes, b"canary-group-name"),
            "group name in server file {}",
            path.display()
        );
        assert!(
            !contains(bytes, PASSWORD.as_bytes()),
            "password in server file {}",
            path.display()
        );
    }
    assert_eq!(received(&mut bob).await.len(), 2);
    carol.sync().await.unwrap();
    for name in ["alice", "bob", "carol"] {
        for (path, bytes) in all_bytes(&tmp.path().join(name)) {
            assert!(
                !contains(&bytes, canary.as_bytes()),
                "canary in profile file {}",
                path.display()
            );
            assert!(
                !contains(&bytes, b"canary-group-name"),
                "group name in profile file {}",
                path.display()
            );
        }
    }
    // Still readable with the passphrase, and not without.
    assert!(rampart_client::Client::open(&tmp.path().join("bob"), "wrong passphrase").is_err());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_overlong_input_is_refused_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(&tmp.path().join("server"), loopback()).await;
    let mut alice = register(&server, tmp.path(), "alice").await;
    let mut bob = register(&server, tmp.path(), "bob").await;
    let huge = "x".repeat(rampart_proto::limits::MAX_TEXT_LEN + 1);
    let err = alice.send_text(&user("bob"), &huge).await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    alice.send_text(&user("bob"), "still fine").await.unwrap();
    assert_eq!(received(&mut bob).await, vec!["alice: still fine"]);
    let err = alice
        .send_text(&user("nobody-here"), "hello?")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    server.stop().await;
}
