//! Delivery and read markers: merged in memory, applied once per batch, monotonic, clamped,
//! refused for non-members, and stored.

use chatgroup_protocol::{Markers, Seq};
use chatgroup_store::{Committed, StoreError};

use crate::support::{on_both, text, Db};

fn receipts(events: &[Committed]) -> Vec<(Markers, Markers)> {
    events
        .iter()
        .filter_map(|e| match e {
            Committed::Receipt {
                markers, previous, ..
            } => Some((*markers, *previous)),
            _ => None,
        })
        .collect()
}

async fn a_burst_of_reports_becomes_one_update_and_one_receipt(db: Db) {
    let mut h = db.open();
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let g = h
        .store
        .create_group(alice.id, "team", &[bob.id])
        .await
        .unwrap()
        .id;
    let mut last = Seq::ZERO;
    for i in 0..20 {
        let (m, _) = h
            .store
            .append_committed(text(alice.id, g, &format!("m{i}"), "x"))
            .await
            .unwrap();
        last = m.seq;
    }
    h.drain();

    // Hold the writer in the sink, so every report below waits for the same batch.
    h.gate.close();
    h.store
        .append(text(alice.id, g, "trigger", "x"))
        .await
        .unwrap();
    h.gate.writer_held().await;
    for seq in 1..=last.0 {
        h.store.mark(bob.id, g, Seq(seq), Seq::ZERO, 77);
    }
    h.store.mark(bob.id, g, Seq(3), Seq(2), 78);
    let ops_before = h.store.stats().ops;
    h.gate.open();
    // The trigger's message, then one receipt for all of bob's reports.
    let events = h.take(2).await;
    let r = receipts(&events);
    assert_eq!(r.len(), 1, "{events:?}");
    let (now, previous) = r[0];
    assert_eq!((now.delivered, now.read), (last, Seq(2)));
    assert_eq!((previous.delivered, previous.read), (Seq::ZERO, Seq::ZERO));
    // Let the next batch settle: still one marker operation for all those reports.
    h.store.mark(bob.id, g, Seq(1), Seq(1), 79);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let ops = h.store.stats().ops - ops_before;
    assert!(ops <= 3, "{ops} operations");
    h.store.close().await;
}

async fn markers_are_monotonic_clamped_refused_for_strangers_and_stored(db: Db) {
    let (alice, bob, eve, g, last) = {
        let mut h = db.open();
        let alice = h.user("alice").await;
        let bob = h.user("bob").await;
        let eve = h.user("eve").await;
        let g = h
            .store
            .create_group(alice.id, "team", &[bob.id])
            .await
            .unwrap()
            .id;
        let mut last = Seq::ZERO;
        for i in 0..5 {
            last = h
                .store
                .append_committed(text(alice.id, g, &format!("m{i}"), "x"))
                .await
                .unwrap()
                .0
                .seq;
        }
        h.drain();

        // Reading implies delivery; past the end is clamped.
        h.store.mark(bob.id, g, Seq::ZERO, Seq(u64::MAX), 1);
        let events = h.take(1).await;
        let (now, _) = receipts(&events)[0];
        assert_eq!((now.delivered, now.read), (last, last));
        // Lower values change nothing: no event.
        h.store.mark(bob.id, g, Seq(1), Seq(1), 1);
        h.store.mark(eve.id, g, Seq(1), Seq(1), 42);
        let events = h.take(1).await;
        assert!(
            matches!(
                &events[0],
                Committed::MarksRefused {
                    tag: 42,
                    error: StoreError::NotMember,
                    ..
                }
            ),
            "{events:?}"
        );
        h.store.set_last_seen(bob.id, 1_700_000_000_000);
        // mark_read reports through the sink as well.
        let read = h.store.mark_read(alice.id, g, last).await.unwrap();
        assert_eq!(read, last);
        h.store.close().await;
        (alice, bob, eve, g, last)
    };

    let h = db.open();
    let info = h.store.conversation(alice.id, g).await.unwrap();
    let of = |u| *info.markers.iter().find(|m| m.user == u).unwrap();
    assert_eq!((of(bob.id).delivered, of(bob.id).read), (last, last));
    assert_eq!((of(alice.id).delivered, of(alice.id).read), (last, last));
    let presence = h.store.member_presence(alice.id, g).await.unwrap();
    let bobs = presence.iter().find(|(u, _)| u.id == bob.id).unwrap();
    assert_eq!(bobs.1, Some(1_700_000_000_000));
    assert!(matches!(
        h.store.member_presence(eve.id, g).await,
        Err(StoreError::NotMember)
    ));
    h.store.close().await;
}

on_both!(
    a_burst_of_reports_becomes_one_update_and_one_receipt,
    markers_are_monotonic_clamped_refused_for_strangers_and_stored,
);
