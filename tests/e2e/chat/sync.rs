//! Sync and history: replay after a cursor, the latest few without one, no replay of what
//! was already delivered live, paging backwards over the socket and REST, and a client that
//! drops out in the middle of a flood and syncs back while it continues: the union of what it
//! saw is every message exactly once, in order.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chatgroup_protocol::rest::{CreateConversation, MessagePage};
use chatgroup_protocol::{ConversationId, ConversationInfo, MessageView, Seq, ServerMsg};
use tokio::sync::watch;

use super::client::{assert_gap_free, cursor, ChatClient, ChatServer};
use crate::support::{eventually, WAIT};

fn seqs(messages: &[MessageView]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_replays_after_the_cursor_and_only_the_latest_without_one() {
    let server = ChatServer::start_with(|cfg| cfg.sync_latest = 5).await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let group = api.create_group(&alice, "log", &[&bob]).await;
    let g = group.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let mut last = Seq(0);
    for i in 0..20 {
        last = a
            .post_acked(g, &format!("m{i}"), &format!("message {i}"))
            .await
            .seq;
    }
    let n = last.0;

    // After a cursor: everything newer, ascending, in batches, then synced.
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;
    let synced = b.sync(cursor(g, 10), "after-10").await;
    assert_gap_free(&synced.messages, 11, n);
    assert_eq!(
        synced.replayed,
        synced.messages.len(),
        "all of it was replay"
    );
    assert_eq!(synced.cursors, cursor(g, n));
    assert!(synced.errors.is_empty(), "{:?}", synced.errors);
    assert_eq!(synced.messages[n as usize - 11].body, "message 19");
    // Up to date: nothing to replay.
    let nothing = b.sync(cursor(g, n), "current").await;
    assert!(nothing.messages.is_empty());
    assert_eq!(nothing.cursors, cursor(g, n));

    // Without a cursor: the latest sync_latest only.
    let mut b2 = ChatClient::connect(server.addr(), &bob.token).await;
    let latest = b2.sync(BTreeMap::new(), "fresh").await;
    assert_gap_free(&latest.messages, n - 4, n);
    assert_eq!(latest.cursors, cursor(g, n));

    // Live after synced, without a gap.
    let live = a.post_acked(g, "live", "live one").await;
    assert_eq!(live.seq.0, n + 1);
    for c in [&mut b, &mut b2] {
        let m = c
            .expect_new_message("live after sync", |m| m.id == live.id)
            .await;
        assert_eq!(m.seq.0, n + 1);
    }

    // What a connection already got live is not replayed again.
    let mut b3 = ChatClient::connect(server.addr(), &bob.token).await;
    let two = [
        a.post_acked(g, "l2", "two").await,
        a.post_acked(g, "l3", "three").await,
    ];
    for ack in &two {
        b3.expect_new_message("delivered live", |m| m.id == ack.id)
            .await;
    }
    let catch_up = b3.sync(cursor(g, n - 2), "catch-up").await;
    assert_gap_free(&catch_up.messages, n - 1, n + 1);
    assert_eq!(catch_up.cursors, cursor(g, n + 3));

    // Several conversations in one sync; one without a cursor.
    let direct: ConversationInfo = api
        .post(
            "/api/conversations",
            Some(&alice.token),
            &CreateConversation::Direct { with: "bob".into() },
        )
        .await
        .expect(201);
    let d = direct.id;
    let mut d_last = Seq(0);
    for i in 0..3 {
        d_last = a.post_acked(d, &format!("d{i}"), "direct").await.seq;
    }
    let mut b4 = ChatClient::connect(server.addr(), &bob.token).await;
    let both = b4.sync(BTreeMap::from([(g, Seq(n + 1))]), "both").await;
    let in_g: Vec<MessageView> = both
        .messages
        .iter()
        .filter(|m| m.conversation == g)
        .cloned()
        .collect();
    let in_d: Vec<MessageView> = both
        .messages
        .iter()
        .filter(|m| m.conversation == d)
        .cloned()
        .collect();
    assert_gap_free(&in_g, n + 2, n + 3);
    assert_gap_free(&in_d, 1, d_last.0);
    assert_eq!(both.cursors, BTreeMap::from([(g, Seq(n + 3)), (d, d_last)]));

    // History pages backwards, ascending within a page, the same over the socket and REST.
    let (page, has_more) = b.history(g, Some(Seq(n - 4)), Some(3), "h1").await;
    assert_gap_free(&page, n - 7, n - 5);
    assert!(has_more);
    let rest: MessagePage = api
        .get(
            &format!("/api/conversations/{g}/messages?before={}&limit=3", n - 4),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(rest.messages, page);
    assert!(rest.has_more);
    let (first, has_more) = b.history(g, Some(Seq(2)), Some(10), "h2").await;
    assert_gap_free(&first, 1, 1);
    assert!(!has_more);
    let (newest, _) = b.history(g, None, None, "h3").await;
    assert_eq!(newest.last().map(|m| m.seq.0), Some(n + 3));
    assert!(seqs(&newest).windows(2).all(|w| w[1] == w[0] + 1));
    let all = api.full_history(&bob.token, g).await;
    assert_gap_free(&all, 1, n + 3);
    server.stop().await;
}

const FLOODERS: usize = 3;
const PER_FLOODER: usize = 300;
/// Each flooder stops here (everything before it acked) until the reader has sent its sync.
const GATE: usize = 200;
const WINDOW: usize = 16;

/// Sends `PER_FLOODER` messages with a window, reading all the while; pauses at `GATE`.
async fn flooder(
    mut c: ChatClient,
    i: usize,
    g: ConversationId,
    at_gate: Arc<AtomicUsize>,
    mut gate: watch::Receiver<bool>,
) {
    let mut sent = 0;
    let mut acked = 0;
    let mut passed_gate = false;
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while acked < PER_FLOODER {
        assert!(tokio::time::Instant::now() < deadline, "flooder {i} stuck");
        if !passed_gate && acked == GATE {
            passed_gate = true;
            at_gate.fetch_add(1, Ordering::SeqCst);
            // Keep reading while paused: the others' messages still arrive.
            loop {
                tokio::select! {
                    biased;
                    _ = gate.wait_for(|open| *open) => break,
                    msg = c.recv() => assert!(matches!(msg, ServerMsg::NewMessage(_)), "{msg:?}"),
                }
            }
        }
        let limit = if passed_gate { PER_FLOODER } else { GATE };
        while sent < limit && sent - acked < WINDOW {
            c.post(
                g,
                &format!("f{i}-{sent}"),
                &format!("flood {sent} from {i}"),
            )
            .await;
            sent += 1;
        }
        match c.recv().await {
            ServerMsg::Ack { duplicate, .. } => {
                assert!(!duplicate);
                acked += 1;
            }
            ServerMsg::NewMessage(_) => {}
            other => panic!("flooder {i} got {other:?}"),
        }
    }
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_in_the_middle_of_a_flood_misses_nothing_and_repeats_nothing() {
    let server = ChatServer::start().await;
    let api = server.api();
    let reader = api.signup("reader").await;
    let mut flooders = Vec::new();
    for i in 0..FLOODERS {
        flooders.push(api.signup(&format!("flooder{i}")).await);
    }
    let members: Vec<&super::client::User> = flooders.iter().collect();
    let group = api.create_group(&reader, "flood", &members).await;
    let g = group.id;
    let created = group.last_seq.0;
    let total = created + (FLOODERS * PER_FLOODER) as u64;

    let mut r = ChatClient::connect(server.addr(), &reader.token).await;
    let start = r.sync(cursor(g, 0), "start").await;
    assert_gap_free(&start.messages, 1, created);
    let mut before: Vec<MessageView> = start.messages;

    let at_gate = Arc::new(AtomicUsize::new(0));
    let (open_gate, gate) = watch::channel(false);
    let mut tasks = Vec::new();
    for (i, u) in flooders.iter().enumerate() {
        let c = ChatClient::connect(server.addr(), &u.token).await;
        tasks.push(tokio::spawn(flooder(
            c,
            i,
            g,
            at_gate.clone(),
            gate.clone(),
        )));
    }

    // Read a part of the flood, then vanish without a closing handshake.
    while before.len() < created as usize + 150 {
        match r.recv().await {
            ServerMsg::NewMessage(m) => before.push(m),
            other => panic!("reader got {other:?}"),
        }
    }
    r.vanish();
    assert_gap_free(&before, 1, before.len() as u64);
    let cursor_seq = before.len() as u64;

    // While it is away the flood goes on (to the gate: so some is surely missed).
    eventually("every flooder at the gate", || {
        let n = at_gate.load(Ordering::SeqCst);
        async move { n == FLOODERS }
    })
    .await;

    // Back: sync from the cursor while the rest of the flood is sent.
    let mut r = ChatClient::connect(server.addr(), &reader.token).await;
    let mut after: Vec<MessageView> = r
        .drain(std::time::Duration::ZERO)
        .await
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::NewMessage(m) => Some(m),
            _ => None,
        })
        .collect();
    let live_before_sync = after.len();
    r.send(&chatgroup_protocol::ClientMsg::Sync {
        cursors: cursor(g, cursor_seq),
        reference: Some("resync".into()),
    })
    .await;
    open_gate.send(true).expect("flooders listening");
    let synced = r.collect_sync("resync").await;
    assert!(synced.errors.is_empty(), "{:?}", synced.errors);
    assert!(
        synced.replayed > 0,
        "the reader missed messages while away; the sync must replay them"
    );
    let replay = &synced.messages;
    assert!(
        seqs(replay).windows(2).all(|w| w[0] < w[1]),
        "replay (and the live messages held during it) ascending"
    );
    after.extend(replay.iter().cloned());
    let synced_to = synced.cursors[&g].0;
    assert_eq!(
        Some(synced_to),
        after.iter().map(|m| m.seq.0).max(),
        "synced's cursor is the newest delivered"
    );

    // Live after synced: continues from the cursor with no gap.
    let mut live: Vec<MessageView> = Vec::new();
    while live.last().map_or(synced_to, |m| m.seq.0) < total {
        match r.recv().await {
            ServerMsg::NewMessage(m) => live.push(m),
            other => panic!("reader got {other:?} after synced"),
        }
    }
    if !live.is_empty() {
        assert_gap_free(&live, synced_to + 1, total);
    }
    for t in tasks {
        t.await.expect("flooder");
    }
    r.expect_quiet(std::time::Duration::from_millis(200)).await;
    after.extend(live.iter().cloned());

    // The union: every seq exactly once.
    let mut union: Vec<MessageView> = before.clone();
    union.extend(after.iter().cloned());
    let mut ids = HashSet::new();
    for m in &union {
        assert!(ids.insert(m.id), "message seq {} delivered twice", m.seq.0);
    }
    union.sort_by_key(|m| m.seq);
    assert_gap_free(&union, 1, total);
    let history = api.full_history(&reader.token, g).await;
    assert_eq!(
        union.iter().map(|m| m.id).collect::<Vec<_>>(),
        history.iter().map(|m| m.id).collect::<Vec<_>>()
    );
    eprintln!(
        "reader: {} before, {} live before sync, {} replayed, {} live during/after (total {total})",
        before.len(),
        live_before_sync,
        synced.replayed,
        synced.messages.len() - synced.replayed + live.len()
    );
    server.stop().await;
}
