//! Durability: SIGKILL the real binary in the middle of a flood from many clients, restart it
//! on the same data directory, and check that every acknowledged message is there exactly
//! once with no gap in `seq`, that tokens and users survived, and that the clients resync and
//! resend what was never acknowledged without duplicates. A graceful restart keeps users,
//! tokens, conversations, messages and the epoch; a fresh data directory is a new epoch.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chatgroup_protocol::rest::{ConversationList, Session};
use chatgroup_protocol::{
    ConversationId, ConversationInfo, ErrorCode, MessageKind, MessageView, Seq, ServerMsg, UserInfo,
};

use super::client::{
    assert_gap_free, send_msg, Ack, Binary, ChatClient, ChatServer, Next, TempDir, User,
};
use crate::support::{eventually, WAIT};

const CLIENTS: usize = 10;
const WINDOW: usize = 8;
const ARGS: &[&str] = &[
    "--durability",
    "full",
    "--message-rate",
    "1000000",
    "--message-burst",
    "1000000",
    "--user-message-rate",
    "1000000",
];

/// One flooding client's record of what it did and saw.
#[derive(Debug, Default)]
struct Record {
    /// localId → (conversation, body), everything written to the socket.
    sent: BTreeMap<String, (ConversationId, String)>,
    /// localId → ack.
    acked: HashMap<String, Ack>,
    /// Per conversation, every seq this client saw (acks and new messages).
    seen: BTreeMap<ConversationId, BTreeSet<u64>>,
}

/// Sends into `conversations` in turn with a window of unacked messages until the socket
/// dies, recording everything.
async fn flood_until_killed(
    mut c: ChatClient,
    client: usize,
    conversations: Vec<ConversationId>,
    acked_total: Arc<AtomicUsize>,
) -> Record {
    let mut rec = Record::default();
    let mut n = 0usize;
    loop {
        while rec.sent.len() - rec.acked.len() < WINDOW {
            let conversation = conversations[n % conversations.len()];
            let local_id = format!("c{client}-{n}");
            let body = format!("message {n} from client {client}");
            n += 1;
            rec.sent
                .insert(local_id.clone(), (conversation, body.clone()));
            if !c.try_send(&send_msg(conversation, &local_id, &body)).await {
                return rec;
            }
        }
        match c.next_within(WAIT).await {
            Next::Msg(msg) => match *msg {
                ServerMsg::Ack {
                    conversation,
                    local_id,
                    id,
                    seq,
                    ts,
                    duplicate,
                } => {
                    assert!(!duplicate, "a first send acked as duplicate");
                    assert_eq!(rec.sent[&local_id].0, conversation);
                    rec.seen.entry(conversation).or_default().insert(seq.0);
                    let ack = Ack {
                        conversation,
                        id,
                        seq,
                        ts,
                        duplicate,
                    };
                    assert!(rec.acked.insert(local_id, ack).is_none(), "acked twice");
                    acked_total.fetch_add(1, Ordering::Relaxed);
                }
                ServerMsg::NewMessage(m) => {
                    assert!(
                        rec.seen.entry(m.conversation).or_default().insert(m.seq.0),
                        "client {client} got seq {} twice",
                        m.seq.0
                    );
                }
                other => panic!("client {client} got {other:?} during the flood"),
            },
            // The server died under us: exactly what this test does.
            Next::Eof | Next::Closed(_) => return rec,
            Next::Quiet => panic!("client {client}: the server went silent"),
        }
    }
}

/// Checks a conversation's stored messages against what the clients were told; returns
/// them by (sender's client, localId).
fn check_stored(
    history: &[MessageView],
    records: &[Record],
    users: &[User],
    conversation: ConversationId,
) -> HashMap<(usize, String), MessageView> {
    assert_gap_free(history, 1, history.len() as u64);
    let mut ids = HashSet::new();
    let mut by_local = HashMap::new();
    for m in history {
        assert!(ids.insert(m.id), "message id {} stored twice", m.id);
        if m.kind != MessageKind::Text {
            continue;
        }
        let client = users
            .iter()
            .position(|u| Some(u.id()) == m.sender)
            .expect("a text message from one of the clients");
        let local_id = m.local_id.clone().expect("a text message has its localId");
        let (sent_to, body) = records[client]
            .sent
            .get(&local_id)
            .unwrap_or_else(|| panic!("stored {local_id} was never sent"));
        assert_eq!(*sent_to, conversation);
        assert_eq!(&m.body, body);
        assert!(
            by_local
                .insert((client, local_id.clone()), m.clone())
                .is_none(),
            "{local_id} of client {client} stored twice"
        );
    }
    for (client, rec) in records.iter().enumerate() {
        for (local_id, ack) in &rec.acked {
            if ack.conversation != conversation {
                continue;
            }
            let stored = by_local
                .get(&(client, local_id.clone()))
                .unwrap_or_else(|| panic!("acked {local_id} (seq {}) was lost", ack.seq.0));
            assert_eq!(
                (stored.id, stored.seq, stored.ts),
                (ack.id, ack.seq, ack.ts)
            );
        }
    }
    by_local
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_a_flood_loses_no_acked_message_and_clients_resync() {
    let dir = TempDir::new("sigkill");
    let bin = Binary::spawn(dir.path(), ARGS);
    let api = bin.api();
    let mut users = Vec::new();
    for i in 0..CLIENTS {
        users.push(api.signup(&format!("client{i}")).await);
    }
    let everyone: Vec<&User> = users[1..].iter().collect();
    let big = api.create_group(&users[0], "everyone", &everyone).await;
    let half: Vec<&User> = users[..CLIENTS / 2]
        .iter()
        .filter(|u| u.id() != users[1].id())
        .collect();
    let small = api.create_group(&users[1], "half", &half).await;
    let created: BTreeMap<ConversationId, u64> =
        BTreeMap::from([(big.id, big.last_seq.0), (small.id, small.last_seq.0)]);

    let acked_total = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let mut epoch = String::new();
    for (i, u) in users.iter().enumerate() {
        let c = ChatClient::connect(bin.addr, &u.token).await;
        epoch.clone_from(&c.ready.as_ref().expect("ready").epoch);
        let conversations = if i < CLIENTS / 2 {
            vec![big.id, small.id]
        } else {
            vec![big.id]
        };
        tasks.push(tokio::spawn(flood_until_killed(
            c,
            i,
            conversations,
            acked_total.clone(),
        )));
    }
    // Kill it in full flow: after a good number of acks, at no particular message.
    eventually("the flood is under way", || {
        let n = acked_total.load(Ordering::Relaxed);
        async move { n >= 1_000 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bin.kill();
    let mut records = Vec::new();
    for t in tasks {
        records.push(t.await.expect("flood task"));
    }
    let acked: usize = records.iter().map(|r| r.acked.len()).sum();
    let sent: usize = records.iter().map(|r| r.sent.len()).sum();
    eprintln!("killed with {acked} acked of {sent} sent");

    // Same data directory: users, tokens (the secret is stored) and the epoch survive.
    let bin = Binary::spawn(dir.path(), ARGS);
    let api = bin.api();
    let me: UserInfo = api.get("/api/me", &users[0].token).await.expect(200);
    assert_eq!(
        me, users[0].info,
        "an access token from before the crash still works"
    );
    let ready = ChatClient::connect(bin.addr, &users[3].token)
        .await
        .ready
        .expect("ready");
    assert_eq!(ready.epoch, epoch, "same database, same epoch");
    let mut fresh = Vec::new();
    for u in &users {
        let again = api.relogin(u.name()).await;
        assert_eq!(again.info, u.info);
        fresh.push(again);
    }

    // Every acked message exactly once, no gap, nothing that was never sent.
    let mut stored = HashMap::new();
    let mut last: BTreeMap<ConversationId, u64> = BTreeMap::new();
    for (conversation, owner) in [(big.id, &fresh[0]), (small.id, &fresh[1])] {
        let history = api.full_history(&owner.token, conversation).await;
        last.insert(conversation, history.len() as u64);
        stored.extend(check_stored(&history, &records, &users, conversation));
    }
    let committed_unacked = stored.len() - acked;
    eprintln!(
        "after restart: {} stored ({committed_unacked} committed without their ack reaching the client)",
        stored.len()
    );

    // The clients resync from their cursors, then resend what was never acked.
    for (i, rec) in records.iter().enumerate() {
        let mut c = ChatClient::connect(bin.addr, &fresh[i].token).await;
        let mine: Vec<ConversationId> = if i < CLIENTS / 2 {
            vec![big.id, small.id]
        } else {
            vec![big.id]
        };
        let mut cursors = BTreeMap::new();
        for conversation in &mine {
            let seen = rec.seen.get(conversation).cloned().unwrap_or_default();
            // Contiguous from 1 (the creation messages came with the conversation).
            let mut cursor = created[conversation];
            while seen.contains(&(cursor + 1)) {
                cursor += 1;
            }
            cursors.insert(*conversation, Seq(cursor));
        }
        let synced = c.sync(cursors.clone(), "resync").await;
        assert!(synced.errors.is_empty(), "{:?}", synced.errors);
        for conversation in &mine {
            let replay: Vec<MessageView> = synced
                .messages
                .iter()
                .filter(|m| m.conversation == *conversation)
                .cloned()
                .collect();
            // Up to what was there after the restart, and the resends of the clients that
            // resynced before this one (nothing is live meanwhile: they have closed).
            let from = cursors[conversation].0;
            let upto = replay.last().map_or(from, |m| m.seq.0);
            assert!(
                upto >= last[conversation],
                "client {i} replayed up to {upto} of {}",
                last[conversation]
            );
            assert_gap_free(&replay, from + 1, upto);
        }
        for (local_id, (conversation, body)) in &rec.sent {
            if rec.acked.contains_key(local_id) {
                continue;
            }
            let ack = c.post_acked(*conversation, local_id, body).await;
            assert_eq!(ack.conversation, *conversation);
            match stored.get(&(i, local_id.clone())) {
                Some(m) => {
                    assert!(ack.duplicate, "{local_id} was committed before the crash");
                    assert_eq!((ack.id, ack.seq), (m.id, m.seq));
                }
                None => {
                    assert!(!ack.duplicate, "{local_id} was not stored");
                    assert!(ack.seq.0 > last[conversation]);
                }
            }
        }
        c.close().await;
    }

    // Now every message ever sent is stored exactly once, in a gap-free order.
    let mut total = 0;
    for (conversation, owner) in [(big.id, &fresh[0]), (small.id, &fresh[1])] {
        let history = api.full_history(&owner.token, conversation).await;
        let mut retried = records
            .iter()
            .map(|_| Record::default())
            .collect::<Vec<_>>();
        for (r, rec) in retried.iter_mut().zip(&records) {
            r.sent.clone_from(&rec.sent);
        }
        total += check_stored(&history, &retried, &users, conversation).len();
    }
    assert_eq!(total, sent, "every sent message is stored once");

    // And a graceful restart of the binary changes nothing.
    let before: ConversationList = api
        .get("/api/conversations", &users[0].token)
        .await
        .expect(200);
    bin.terminate().await;
    let bin = Binary::spawn(dir.path(), ARGS);
    let api = bin.api();
    let after: ConversationList = api
        .get("/api/conversations", &users[0].token)
        .await
        .expect(200);
    assert_eq!(before, after);
    bin.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_everything_and_a_new_data_dir_is_a_new_epoch() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let group = api.create_group(&alice, "keep", &[&bob]).await;
    let direct: ConversationInfo = api
        .post(
            "/api/conversations",
            Some(&bob.token),
            &chatgroup_protocol::rest::CreateConversation::Direct {
                with: "alice".into(),
            },
        )
        .await
        .expect(201);
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let epoch = a.ready.clone().expect("ready").epoch;
    let mut acks = Vec::new();
    for i in 0..5 {
        acks.push(
            a.post_acked(group.id, &format!("g{i}"), &format!("group {i}"))
                .await,
        );
        acks.push(
            a.post_acked(direct.id, &format!("d{i}"), &format!("direct {i}"))
                .await,
        );
    }
    a.close().await;
    let list_before: ConversationList = api.get("/api/conversations", &bob.token).await.expect(200);
    let group_before = api.full_history(&bob.token, group.id).await;
    let direct_before = api.full_history(&bob.token, direct.id).await;

    let server = server.restart().await;
    let api = server.api();
    // Tokens issued before the restart: the access token and the refresh token.
    let me: UserInfo = api.get("/api/me", &alice.token).await.expect(200);
    assert_eq!(me, alice.info);
    let refreshed: Session = api
        .post(
            "/api/token/refresh",
            None,
            &chatgroup_protocol::rest::RefreshRequest {
                refresh_token: bob.refresh.clone(),
            },
        )
        .await
        .expect(200);
    assert_eq!(refreshed.user, bob.info);
    let _: Session = api
        .login("alice", super::client::PASSWORD)
        .await
        .expect(200);
    // Conversations and messages.
    let list_after: ConversationList = api.get("/api/conversations", &bob.token).await.expect(200);
    assert_eq!(list_after, list_before);
    assert_eq!(api.full_history(&bob.token, group.id).await, group_before);
    assert_eq!(api.full_history(&bob.token, direct.id).await, direct_before);
    // The socket: same epoch, same list, and sends carry on where they were.
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let ready = a.ready.clone().expect("ready");
    assert_eq!(ready.epoch, epoch);
    let ids: Vec<_> = ready.conversations.iter().map(|c| c.id).collect();
    assert_eq!(ids, [direct.id, group.id]);
    let again = a.post_acked(group.id, "g4", "group 4").await;
    assert!(again.duplicate, "localIds are remembered across restarts");
    assert_eq!(again.id, acks[8].id);
    let next = a.post_acked(group.id, "g5", "group 5").await;
    assert_eq!(next.seq, acks[8].seq.next());
    server.stop().await;

    // Another data directory is another database.
    let other = ChatServer::start().await;
    let api = other.api();
    api.get("/api/me", &alice.token)
        .await
        .expect_error(ErrorCode::TokenInvalid);
    let carol = api.signup("carol").await;
    let c = ChatClient::connect(other.addr(), &carol.token).await;
    assert_ne!(
        c.ready.expect("ready").epoch,
        epoch,
        "a fresh data dir, a new epoch"
    );
    other.stop().await;
}
