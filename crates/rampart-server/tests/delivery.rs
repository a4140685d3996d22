//! The delivery service over real WebSockets with real MLS messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use futures_util::SinkExt as _;
use rampart_proto::frame::{ClientFrame, CommitBundle, DeliveryKind, SendMessage, ServerFrame};
use rampart_proto::{ErrorCode, GroupId, IdempotencyKey};
use rampart_server::Registration;

fn send_frame(request_id: u32, k: IdempotencyKey, group: GroupId, message: Vec<u8>) -> ClientFrame {
    ClientFrame::Send(SendMessage {
        request_id,
        key: k,
        group,
        expires_in: None,
        recalls: None,
        attachments: vec![],
        message,
    })
}

struct World {
    server: TestServer,
    http: reqwest::Client,
    alice: Account,
    bob: Account,
    carol: Account,
    a: MlsClient,
    b: MlsClient,
    group_id: GroupId,
    group: openmls::prelude::MlsGroup,
}

/// Alice creates a group with Bob (accepted, epoch 1); Carol stays outside.
async fn world(dir: &std::path::Path) -> (World, Ws) {
    let server = TestServer::start(dir, Registration::Open).await;
    let http = reqwest::Client::new();
    let alice = register(&http, &server, "alice", 0xa1, None).await;
    let bob = register(&http, &server, "bob", 0xb1, None).await;
    let carol = register(&http, &server, "carol", 0xc1, None).await;
    let (a, b) = (MlsClient::for_account(&alice), MlsClient::for_account(&bob));
    let group_id = GroupId::new_group([7; 31]);
    let (wa, group, _) =
        create_group_over_ws(&server, &alice, &a, group_id, &[(&b, bob.device)]).await;
    (
        World {
            server,
            http,
            alice,
            bob,
            carol,
            a,
            b,
            group_id,
            group,
        },
        wa,
    )
}

#[tokio::test]
async fn ws_requires_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), Registration::Open).await;
    match try_connect(&server, None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    assert!(try_connect(&server, Some("bogus")).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn messages_flow_welcome_backlog_ack_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut wa) = world(dir.path()).await;

    // Carol is online but not added: she must get nothing.
    let mut wc = connect(&w.server, &w.carol.token).await;
    assert_eq!(
        recv(&mut wc).await,
        Some(ServerFrame::BacklogDone { up_to: 0 })
    );

    // Bob was offline: his Welcome waits in the backlog.
    let mut wb = connect(&w.server, &w.bob.token).await;
    match recv(&mut wb).await {
        Some(ServerFrame::Deliver(d)) => {
            assert_eq!((d.seq, d.kind, d.epoch), (1, DeliveryKind::Welcome, 1));
            assert_eq!(d.sender.as_str(), "alice");
            assert_eq!(d.sender_device, w.alice.device);
        }
        other => panic!("expected the welcome, got {other:?}"),
    }
    assert_eq!(
        recv(&mut wb).await,
        Some(ServerFrame::BacklogDone { up_to: 1 })
    );

    // Live messages, in order, with the idempotent resend not delivered twice.
    let m1 = w.a.message(&mut w.group, b"one");
    let m2 = w.a.message(&mut w.group, b"two");
    send(&mut wa, &send_frame(10, key(10), w.group_id, m1.clone())).await;
    send(&mut wa, &send_frame(11, key(10), w.group_id, m1.clone())).await;
    send(&mut wa, &send_frame(12, key(12), w.group_id, m2.clone())).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(recv(&mut wa).await.unwrap());
    }
    answers.sort_by_key(|f| match f {
        ServerFrame::Accepted { request_id, .. } => *request_id,
        _ => 0,
    });
    assert_eq!(
        answers,
        vec![
            ServerFrame::Accepted {
                request_id: 10,
                epoch: 1,
                duplicate: false
            },
            ServerFrame::Accepted {
                request_id: 11,
                epoch: 1,
                duplicate: true
            },
            ServerFrame::Accepted {
                request_id: 12,
                epoch: 1,
                duplicate: false
            },
        ]
    );
    for (seq, payload) in [(2, &m1), (3, &m2)] {
        match recv(&mut wb).await {
            Some(ServerFrame::Deliver(d)) => {
                assert_eq!((d.seq, d.kind), (seq, DeliveryKind::Application));
                assert_eq!(&d.payload, payload);
            }
            other => panic!("expected a delivery, got {other:?}"),
        }
    }
    quiet(&mut wb).await;
    quiet(&mut wc).await;

    // Carol is not a member: rejected, nothing delivered.
    send(&mut wc, &send_frame(5, key(5), w.group_id, m1.clone())).await;
    match recv(&mut wc).await {
        Some(ServerFrame::Rejected {
            request_id: 5,
            code,
            ..
        }) => assert_eq!(code, ErrorCode::NotMember),
        other => panic!("{other:?}"),
    }
    // A commit is not an application message.
    let (bogus, _) = w.a.self_update(&mut w.group);
    send(&mut wa, &send_frame(13, key(13), w.group_id, bogus)).await;
    match recv(&mut wa).await {
        Some(ServerFrame::Rejected {
            request_id: 13,
            code,
            ..
        }) => assert_eq!(code, ErrorCode::MalformedMls),
        other => panic!("{other:?}"),
    }
    w.group
        .clear_pending_commit(openmls_traits::OpenMlsProvider::storage(&w.a.provider))
        .unwrap();
    quiet(&mut wb).await;

    // Bob acks the first two; after reconnecting only seq 3 is left.
    send(&mut wb, &ClientFrame::Ack { up_to: 2 }).await;
    drop(wb);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let m3 = w.a.message(&mut w.group, b"three");
    send(&mut wa, &send_frame(14, key(14), w.group_id, m3.clone())).await;
    assert!(matches!(
        recv(&mut wa).await,
        Some(ServerFrame::Accepted { request_id: 14, .. })
    ));
    let mut wb = connect(&w.server, &w.bob.token).await;
    let seqs = backlog_seqs(&mut wb).await;
    assert_eq!(seqs, vec![3, 4]);
    drop(wb);

    // Restart on the same data dir: the queue survives.
    drop((wa, wc));
    w.server.stop().await;
    let server = TestServer::start(dir.path(), Registration::Open).await;
    assert!(server.first_invite.is_none());
    let mut wb = connect(&server, &w.bob.token).await;
    assert_eq!(backlog_seqs(&mut wb).await, vec![3, 4]);
    // Sequence numbers continue after a restart.
    let mut wa = connect(&server, &w.alice.token).await;
    assert!(matches!(
        recv(&mut wa).await,
        Some(ServerFrame::BacklogDone { .. })
    ));
    let m4 = w.a.message(&mut w.group, b"four");
    send(&mut wa, &send_frame(15, key(15), w.group_id, m4)).await;
    assert!(matches!(
        recv(&mut wa).await,
        Some(ServerFrame::Accepted { request_id: 15, .. })
    ));
    match recv(&mut wb).await {
        Some(ServerFrame::Deliver(d)) => assert_eq!(d.seq, 5),
        other => panic!("{other:?}"),
    }
    let _ = w.http;
    server.stop().await;
}

/// Reads Deliver frames until BacklogDone; returns their seqs.
async fn backlog_seqs(ws: &mut Ws) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        match recv(ws).await {
            Some(ServerFrame::Deliver(d)) => seqs.push(d.seq),
            Some(ServerFrame::BacklogDone { up_to }) => {
                assert_eq!(Some(&up_to), seqs.last().or(Some(&up_to)));
                return seqs;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn commit_cas_and_welcome_only_after_accept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut wa) = world(dir.path()).await;
    let mut wb = connect(&w.server, &w.bob.token).await;
    let _ = backlog_seqs(&mut wb).await;
    let mut wc = connect(&w.server, &w.carol.token).await;
    let _ = backlog_seqs(&mut wc).await;

    // Two commits for epoch 1: the first wins, the second is stale.
    let (first, first_info) = w.a.self_update(&mut w.group);
    w.group
        .clear_pending_commit(openmls_traits::OpenMlsProvider::storage(&w.a.provider))
        .unwrap();
    let carol_mls = MlsClient::for_account(&w.carol);
    let (second, welcome, second_info) = w.a.add(&mut w.group, &[carol_mls.key_package()]);
    let bundle = |request_id, k, commit, welcome, group_info, added| {
        ClientFrame::Commit(CommitBundle {
            request_id,
            key: k,
            group: w.group_id,
            epoch: 1,
            create: None,
            commit,
            welcome,
            group_info,
            added,
            removed: vec![],
        })
    };
    send(
        &mut wa,
        &bundle(20, key(20), first, None, first_info, vec![]),
    )
    .await;
    assert_eq!(
        recv(&mut wa).await,
        Some(ServerFrame::Accepted {
            request_id: 20,
            epoch: 2,
            duplicate: false
        })
    );
    send(
        &mut wa,
        &bundle(
            21,
            key(21),
            second,
            Some(welcome),
            second_info,
            vec![w.carol.device],
        ),
    )
    .await;
    assert_eq!(
        recv(&mut wa).await,
        Some(ServerFrame::Rejected {
            request_id: 21,
            code: ErrorCode::StaleEpoch,
            current_epoch: Some(2),
            message: "the group has moved on; process the newer commits and retry".into(),
        })
    );
    // Bob sees the accepted commit; Carol never sees the rejected Welcome.
    match recv(&mut wb).await {
        Some(ServerFrame::Deliver(d)) => assert_eq!((d.kind, d.epoch), (DeliveryKind::Commit, 1)),
        other => panic!("{other:?}"),
    }
    quiet(&mut wc).await;
    quiet(&mut wb).await;

    // Group state over REST: members only.
    let state: rampart_proto::api::GroupState = w
        .http
        .get(w.server.url(&format!("/v1/groups/{}", w.group_id)))
        .bearer_auth(&w.bob.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state.epoch, 2);
    assert_eq!(state.members.len(), 2);
    let resp = w
        .http
        .get(w.server.url(&format!("/v1/groups/{}", w.group_id)))
        .bearer_auth(&w.carol.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let list: rampart_proto::api::GroupList = w
        .http
        .get(w.server.url("/v1/groups"))
        .bearer_auth(&w.alice.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.groups.len(), 1);
    let _ = &w.b;
    w.server.stop().await;
}

#[tokio::test]
async fn malformed_frame_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, mut wa) = world(dir.path()).await;
    let mut wc = connect(&w.server, &w.carol.token).await;
    let _ = backlog_seqs(&mut wc).await;
    wc.send(tokio_tungstenite::tungstenite::Message::Binary(
        vec![1, 0x77, 0].into(),
    ))
    .await
    .unwrap();
    match recv(&mut wc).await {
        Some(ServerFrame::Error { code, .. }) => assert_eq!(code, ErrorCode::BadRequest),
        other => panic!("{other:?}"),
    }
    assert_eq!(recv(&mut wc).await, None);

    let m = w.a.message(&mut w.group, b"still works");
    send(&mut wa, &send_frame(30, key(30), w.group_id, m)).await;
    assert!(matches!(
        recv(&mut wa).await,
        Some(ServerFrame::Accepted { request_id: 30, .. })
    ));
    w.server.stop().await;
}
