//! A store on a real database file in a temp dir, with its sink events in a channel and a
//! gate that can hold the writer still (so tests can choose what lands in one batch).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use chatgroup_protocol::{ConversationId, MessageKind, UserId, UserInfo};
use chatgroup_store::{AppendRequest, Committed, Durability, Origin, Store, StoreConfig};
use tokio::sync::mpsc;

/// Holds the writer inside the sink while closed.
#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<(bool, bool)>, // (closed, writer waiting)
    cv: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut s = self.state.lock().unwrap();
        while s.0 {
            s.1 = true;
            s = self.cv.wait(s).unwrap();
        }
        s.1 = false;
    }

    pub(crate) fn close(&self) {
        self.state.lock().unwrap().0 = true;
    }

    pub(crate) fn open(&self) {
        self.state.lock().unwrap().0 = false;
        self.cv.notify_all();
    }

    /// Waits until the writer is stuck in the sink.
    pub(crate) async fn writer_held(&self) {
        for _ in 0..5000 {
            if self.state.lock().unwrap().1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the writer never reached the gate");
    }
}

pub(crate) struct Harness {
    pub(crate) store: Store,
    pub(crate) events: mpsc::UnboundedReceiver<Committed>,
    pub(crate) gate: Arc<Gate>,
}

pub(crate) fn config(dir: &Path) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir);
    // The tests check behaviour, not power-loss safety; NORMAL keeps them fast. The
    // durability tests open with Full.
    cfg.durability = Durability::Normal;
    cfg
}

pub(crate) fn open(dir: &Path) -> Harness {
    open_with(config(dir))
}

pub(crate) fn open_with(cfg: StoreConfig) -> Harness {
    let (tx, events) = mpsc::unbounded_channel();
    let gate = Arc::new(Gate::default());
    let g = Arc::clone(&gate);
    let store = Store::open(
        cfg,
        Box::new(move |e| {
            g.pass();
            let _ = tx.send(e);
        }),
    )
    .expect("open store");
    Harness {
        store,
        events,
        gate,
    }
}

impl Harness {
    /// Every event delivered so far.
    pub(crate) fn drain(&mut self) -> Vec<Committed> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// The next `n` events, waiting for them.
    pub(crate) async fn take(&mut self, n: usize) -> Vec<Committed> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let e = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("event in time")
                .expect("sink alive");
            out.push(e);
        }
        out
    }

    pub(crate) async fn user(&self, name: &str) -> UserInfo {
        self.store
            .create_user(name, &format!("hash-of-{name}"))
            .await
            .unwrap()
    }
}

pub(crate) fn text(
    sender: UserId,
    conversation: ConversationId,
    local_id: &str,
    body: &str,
) -> AppendRequest {
    AppendRequest {
        sender,
        conversation,
        local_id: local_id.into(),
        body: body.into(),
        kind: MessageKind::Text,
        origin: Origin {
            tag: sender.0,
            reference: Some(local_id.into()),
        },
    }
}

pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
