//! Sending: idempotent retries by `localId`, many concurrent senders in one group (one
//! gap-free order for every member), and the limits and bad input that get an `error` with
//! the right code and `ref` while the socket stays open.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chatgroup_protocol::{
    ClientMsg, ConversationId, ErrorCode, MessageKind, MessageView, Seq, ServerMsg,
};

use super::client::{assert_gap_free, cursor, send_msg, Ack, ChatClient, ChatServer, User};
use crate::support::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_local_id_twice_is_stored_and_delivered_once() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let group = api.create_group(&alice, "retries", &[&bob]).await;
    let g = group.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;

    let first = a.post_acked(g, "x1", "once").await;
    assert!(!first.duplicate);
    // The retry on the same connection: the original ack, marked duplicate.
    let again = a.post_acked(g, "x1", "once").await;
    assert!(again.duplicate, "a retry is a duplicate");
    assert_eq!(
        (again.id, again.seq, again.ts),
        (first.id, first.seq, first.ts)
    );
    // A retry with another body is still the same message.
    let changed = a.post_acked(g, "x1", "twice?").await;
    assert!(changed.duplicate);
    assert_eq!(changed.id, first.id);

    // After reconnecting (the client never saw the ack, say).
    a.close().await;
    let mut a2 = ChatClient::connect(server.addr(), &alice.token).await;
    let after = a2.post_acked(g, "x1", "once").await;
    assert!(after.duplicate);
    assert_eq!((after.id, after.seq), (first.id, first.seq));

    // localIds are per user: bob's x1 is a new message.
    let bobs = b.post_acked(g, "x1", "mine").await;
    assert!(!bobs.duplicate);
    assert_eq!(bobs.seq, first.seq.next(), "the duplicates took no seq");
    // A fresh id after all that gets the next seq.
    let next = a2.post_acked(g, "x2", "next").await;
    assert_eq!(next.seq, bobs.seq.next());

    // Bob got alice's x1 exactly once (and x2), nothing more.
    let mut received = Vec::new();
    for msg in b
        .take_pending()
        .into_iter()
        .chain(b.drain(Duration::from_millis(200)).await)
    {
        if let ServerMsg::NewMessage(m) = msg {
            received.push((m.local_id.clone().unwrap_or_default(), m.id));
        }
    }
    assert_eq!(
        received,
        [("x1".to_owned(), first.id), ("x2".to_owned(), next.id)],
        "what bob received live"
    );
    a2.expect_new_message("bob's x1", |m| m.id == bobs.id).await;

    let history = api.full_history(&alice.token, g).await;
    assert_gap_free(&history, 1, next.seq.0);
    let x1: Vec<&MessageView> = history
        .iter()
        .filter(|m| m.local_id.as_deref() == Some("x1") && m.sender == Some(alice.id()))
        .collect();
    assert_eq!(x1.len(), 1, "stored once");
    assert_eq!(x1[0].body, "once", "the first body is the one kept");
    assert_eq!(x1[0].id, first.id);
    server.stop().await;
}

const SENDERS: usize = 8;
const PER_SENDER: usize = 200;
const WINDOW: usize = 16;

/// What one flooding member saw.
struct Flooded {
    /// This connection's user.
    user: usize,
    /// Every `new_message` in arrival order.
    received: Vec<MessageView>,
    /// localId → ack.
    acks: HashMap<String, Ack>,
}

/// Sends `count` messages with at most `WINDOW` unacked, while reading everything, until it
/// has acks for all of its own and `expect_total` messages in the conversation overall.
async fn flood(
    mut c: ChatClient,
    user: usize,
    g: ConversationId,
    count: usize,
    first_seq: u64,
    last_seq: u64,
) -> Flooded {
    let mut out = Flooded {
        user,
        received: Vec::new(),
        acks: HashMap::new(),
    };
    let mut sent = 0;
    let mut seen: HashSet<u64> = HashSet::new();
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while out.acks.len() < count || (seen.len() as u64) < last_seq - first_seq + 1 {
        while sent < count && sent - out.acks.len() < WINDOW {
            c.post(
                g,
                &format!("u{user}-{sent}"),
                &format!("message {sent} from user {user}"),
            )
            .await;
            sent += 1;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "flood did not finish"
        );
        match c.recv().await {
            ServerMsg::Ack {
                local_id,
                conversation,
                id,
                seq,
                ts,
                duplicate,
            } => {
                assert!(!duplicate);
                assert!(seen.insert(seq.0), "seq {} twice (ack)", seq.0);
                let previous = out.acks.insert(
                    local_id,
                    Ack {
                        conversation,
                        id,
                        seq,
                        ts,
                        duplicate,
                    },
                );
                assert!(previous.is_none(), "two acks for one localId");
            }
            ServerMsg::NewMessage(m) => {
                assert!(seen.insert(m.seq.0), "seq {} twice (new_message)", m.seq.0);
                out.received.push(m);
            }
            other => panic!("user {user} got {other:?} during the flood"),
        }
    }
    c.close().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_all_see_one_gap_free_order() {
    let server = ChatServer::start().await;
    let api = server.api();
    let mut users: Vec<User> = Vec::new();
    for i in 0..SENDERS {
        users.push(api.signup(&format!("sender{i}")).await);
    }
    let watcher = api.signup("watcher").await;
    let others: Vec<&User> = users[1..].iter().chain([&watcher]).collect();
    let group = api.create_group(&users[0], "busy", &others).await;
    let g = group.id;
    let created = group.last_seq.0;
    let total = created + (SENDERS * PER_SENDER) as u64;

    // Everyone connects and catches up on the creation first, so each connection's view
    // starts at seq 1. The owner also has a second, silent tab; the watcher only reads.
    let mut clients = Vec::new();
    for u in users.iter().chain([&watcher, &users[0]]) {
        let mut c = ChatClient::connect(server.addr(), &u.token).await;
        let synced = c.sync(cursor(g, 0), "start").await;
        assert_gap_free(&synced.messages, 1, created);
        assert_eq!(synced.cursors.get(&g), Some(&Seq(created)));
        clients.push(c);
    }
    let started = std::time::Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let count = if i < SENDERS { PER_SENDER } else { 0 };
            tokio::spawn(flood(c, i, g, count, created + 1, total))
        })
        .collect();
    let mut views = Vec::new();
    for t in tasks {
        views.push(t.await.expect("flood task"));
    }
    eprintln!(
        "{} messages from {SENDERS} senders to {} connections in {:?}",
        SENDERS * PER_SENDER,
        views.len(),
        started.elapsed()
    );

    // The silent connections saw everything, in one order, gap-free.
    let reference: &[MessageView] = &views[SENDERS].received;
    assert_gap_free(reference, created + 1, total);
    let second_tab = &views[SENDERS + 1].received;
    assert_eq!(
        second_tab.iter().map(|m| m.id).collect::<Vec<_>>(),
        reference.iter().map(|m| m.id).collect::<Vec<_>>(),
        "the owner's silent tab sees the same order, its own user's messages included"
    );
    let by_seq: BTreeMap<u64, &MessageView> = reference.iter().map(|m| (m.seq.0, m)).collect();

    // Each sender: others' messages in ascending seq, own messages only as acks, and the
    // acks agree with what everyone else saw.
    for view in &views[..SENDERS] {
        let u = view.user;
        let seqs: Vec<u64> = view.received.iter().map(|m| m.seq.0).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "user {u} saw messages out of order"
        );
        for m in &view.received {
            assert_ne!(
                m.sender,
                Some(users[u].id()),
                "user {u} got its own message live"
            );
            assert_eq!(
                by_seq[&m.seq.0].id, m.id,
                "user {u} disagrees at seq {}",
                m.seq.0
            );
        }
        assert_eq!(view.acks.len(), PER_SENDER);
        let mut last_own = 0;
        for n in 0..PER_SENDER {
            let local_id = format!("u{u}-{n}");
            let ack = view.acks[&local_id];
            let stored = by_seq[&ack.seq.0];
            assert_eq!(stored.id, ack.id);
            assert_eq!(stored.local_id.as_deref(), Some(local_id.as_str()));
            assert_eq!(stored.sender, Some(users[u].id()));
            assert_eq!(stored.body, format!("message {n} from user {u}"));
            assert_eq!(stored.kind, MessageKind::Text);
            assert!(
                ack.seq.0 > last_own,
                "one connection's messages keep their order"
            );
            last_own = ack.seq.0;
        }
        let expected = total - created - PER_SENDER as u64;
        assert_eq!(
            view.received.len() as u64,
            expected,
            "user {u} got every other message once"
        );
    }
    // The store agrees.
    let history = api.full_history(&watcher.token, g).await;
    assert_gap_free(&history, 1, total);
    for m in &history[created as usize..] {
        assert_eq!(by_seq[&m.seq.0].id, m.id);
    }
    // Group commit batched the concurrent sends: fewer transactions than operations.
    let commits = server.server.metric("chatgroup_store_commits_total").await;
    let ops = server.server.metric("chatgroup_store_ops_total").await;
    assert!(
        ops >= (SENDERS * PER_SENDER) as u64,
        "{ops} store operations"
    );
    assert!(
        commits > 0 && commits < ops,
        "{commits} commits for {ops} operations"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_bad_input_get_errors_and_the_socket_stays_open() {
    let server = ChatServer::start_with(|cfg| {
        cfg.max_body_chars = 100;
        cfg.message_rate = 2;
        cfg.message_burst = 8;
    })
    .await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let group = api.create_group(&alice, "limits", &[]).await;
    let g = group.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;

    // Body length counts characters.
    let err = a
        .refused(
            &send_msg(g, "long", &"x".repeat(101)),
            "long",
            ErrorCode::BodyTooLong,
        )
        .await;
    assert_eq!(
        err.reference.as_deref(),
        Some("long"),
        "ref defaults to the localId"
    );
    a.refused(
        &send_msg(g, "long-e", &"é".repeat(101)),
        "long-e",
        ErrorCode::BodyTooLong,
    )
    .await;
    a.post_acked(g, "max", &"x".repeat(100)).await;
    a.post_acked(g, "max-e", &"é".repeat(100)).await;

    // localId: 1 to 64 bytes.
    let long_id = "i".repeat(65);
    a.refused(&send_msg(g, &long_id, "hi"), &long_id, ErrorCode::Invalid)
        .await;
    a.refused(
        &ClientMsg::Send {
            conversation: g,
            local_id: long_id.clone(),
            body: "hi".into(),
            reference: Some("with-ref".into()),
        },
        "with-ref",
        ErrorCode::Invalid,
    )
    .await;
    a.refused(
        &ClientMsg::Send {
            conversation: g,
            local_id: String::new(),
            body: "hi".into(),
            reference: Some("empty-id".into()),
        },
        "empty-id",
        ErrorCode::Invalid,
    )
    .await;
    a.post_acked(g, &"i".repeat(64), "64 bytes is fine").await;
    // Empty body.
    a.refused(&send_msg(g, "empty", ""), "empty", ErrorCode::Invalid)
        .await;

    // Text that is not a request.
    for (text, code) in [
        ("{\"type\":\"send\",", ErrorCode::Malformed),
        ("not json", ErrorCode::Malformed),
        ("42", ErrorCode::Malformed),
        // JSON, but not an object: nothing in it is read as a type or a ref.
        ("[1,2,3]", ErrorCode::Malformed),
        (r#"["send","r1","l1"]"#, ErrorCode::Malformed),
        ("[]", ErrorCode::Malformed),
    ] {
        a.send_text(text).await;
        match a.recv().await {
            ServerMsg::Error {
                code: got,
                reference,
                message,
                ..
            } => assert_eq!((got, reference), (code, None), "{text:?}: {message}"),
            other => panic!("{text:?}: expected an error, got {other:?}"),
        }
    }
    for (text, reference, code) in [
        (
            r#"{"type":"dance","ref":"u1"}"#,
            "u1",
            ErrorCode::UnknownType,
        ),
        (r#"{"ref":"u2"}"#, "u2", ErrorCode::UnknownType),
        (r#"{"type":7,"ref":"u3"}"#, "u3", ErrorCode::UnknownType),
        (
            &format!(r#"{{"type":"send","conversation":{g},"body":"no id","ref":"m1"}}"#),
            "m1",
            ErrorCode::Invalid,
        ),
        (
            &format!(r#"{{"type":"send","conversation":{g},"localId":"m2"}}"#),
            "m2",
            ErrorCode::Invalid,
        ),
        (
            r#"{"type":"send","localId":"m3","body":"where?"}"#,
            "m3",
            ErrorCode::Invalid,
        ),
        (
            r#"{"type":"send","conversation":"abc","localId":"m4","body":"x"}"#,
            "m4",
            ErrorCode::Invalid,
        ),
        (r#"{"type":"history","ref":"h1"}"#, "h1", ErrorCode::Invalid),
        (
            r#"{"type":"sync","cursors":{"x":1},"ref":"s1"}"#,
            "s1",
            ErrorCode::Invalid,
        ),
        (
            r#"{"type":"rename","conversation":1,"ref":"n1"}"#,
            "n1",
            ErrorCode::Invalid,
        ),
    ] {
        a.send_text(text).await;
        let err = a.expect_error(Some(reference)).await;
        assert_eq!(err.code, code, "{text}: {}", err.message);
    }
    // Still open, still working.
    a.send_text("ping").await;
    let ok = a.post_acked(g, "after-errors", "still here").await;
    assert!(!ok.duplicate);

    // Rate: a fresh connection has a burst of 8, then 2 per second.
    let mut fast = ChatClient::connect(server.addr(), &alice.token).await;
    for i in 0..14 {
        fast.post(g, &format!("r{i}"), "fast").await;
    }
    let mut acked = 0;
    let mut limited = Vec::new();
    for i in 0..14 {
        let local_id = format!("r{i}");
        match fast
            .wait_for(&local_id, |m| match m {
                ServerMsg::Ack { local_id: l, .. } => *l == local_id,
                ServerMsg::Error {
                    reference: Some(r), ..
                } => *r == local_id,
                _ => false,
            })
            .await
        {
            ServerMsg::Ack { .. } => acked += 1,
            ServerMsg::Error {
                code,
                retry_after_ms,
                reference,
                ..
            } => {
                assert_eq!(code, ErrorCode::RateLimited);
                assert_eq!(reference.as_deref(), Some(local_id.as_str()));
                let ms = retry_after_ms.expect("retryAfterMs");
                assert!(ms > 0 && ms <= 1_000, "retryAfterMs {ms}");
                limited.push(ms);
            }
            _ => unreachable!(),
        }
    }
    assert!(
        (8..=10).contains(&acked),
        "{acked} of 14 acked with a burst of 8"
    );
    assert!(!limited.is_empty(), "nothing was rate limited");
    tokio::time::sleep(Duration::from_millis(limited[limited.len() - 1] + 50)).await;
    fast.post_acked(g, "patient", "after waiting").await;
    // The other connection has its own bucket.
    a.post_acked(g, "other-bucket", "fine").await;
    // Rate-limited and invalid sends stored nothing.
    let history = api.full_history(&alice.token, g).await;
    assert_gap_free(&history, 1, history.len() as u64);
    let stored: HashSet<&str> = history
        .iter()
        .filter_map(|m| m.local_id.as_deref())
        .collect();
    for refused in ["long", "long-e", "empty", "empty-id", "m1", "m2"] {
        assert!(!stored.contains(refused), "{refused} was stored");
    }
    assert_eq!(
        history
            .iter()
            .filter(|m| m.kind == MessageKind::Text)
            .count(),
        // max, max-e, the 64-byte id, after-errors, other-bucket; the burst; patient.
        5 + acked + 1,
        "exactly the acked messages are stored"
    );
    server.stop().await;
}
