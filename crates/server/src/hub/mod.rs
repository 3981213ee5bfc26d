//! The hub: one task that owns conversation membership and every connection's outbox.
//!
//! ```text
//! read pump ──HubHandle (bounded mpsc, awaited)──▶ Hub ──Outbox::deliver (never waits)──▶ socket / write pump
//! ```
//!
//! - **Only writer.** Membership lives in [`routes::Routes`], owned by the hub task; nobody else
//!   holds a lock on it.
//! - **The hub never awaits a client.** Every frame it sends (a broadcast's one shared
//!   `Bytes`, a ping, any chat event) goes through [`Outbox::deliver`], one policy for all of
//!   them. The hub only hints whether more work waits behind the frame ([`Pace`]); the outbox
//!   decides between a non-blocking write to an idle socket and a push into its bounded
//!   queue, and says what the hub must do ([`Delivery`]): an outbox past its soft limit
//!   starts the slow-consumer grace period and is watched; a client still past it when the
//!   grace period ends is evicted with close 1008, and one whose outbox would cross the hard
//!   byte bound is evicted at once (it would otherwise miss a frame). So one slow socket can
//!   neither stall a conversation nor grow memory, and nobody silently misses a message.
//! - **Backpressure flows toward the socket.** Read pumps *await* the bounded command queue:
//!   when the hub is busy, they stop reading, the kernel buffer fills and TCP slows the sender.
//! - **Sweep and pings run here** because the hub already owns the client → outbox registry:
//!   a sweep is one pass over that map with no extra shared index and no locks beyond each
//!   outbox's own, and unregistering a dead client is a local map removal. One ping frame is
//!   encoded per interval and shared by every connection, so connections carry no timers.
//! - **Exit.** The hub stops when every [`HubHandle`] is gone: the listener drops its handle on
//!   shutdown and each connection drops its own when it finishes, so the hub outlives every
//!   connection that might still send it an `Unregister`.

pub mod chat;
mod peers;
mod presence;
mod receipts;
pub mod routes;
pub(crate) mod sequencer;
mod typing;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rfc6455::CloseCode;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::ids::{ClientId, ConversationId};
use crate::metrics::{self, Metrics};
use crate::outbox::{Delivery, Outbox, Pace};
use crate::wire;
use routes::Routes;

/// A request to the hub.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// A connection opened; the hub starts tracking its outbox (pings, sweeps, fan-out).
    Register {
        /// The new client.
        client: ClientId,
        /// Its outbox.
        outbox: Arc<Outbox>,
    },
    /// A connection ended; forget it everywhere. Unknown clients are ignored.
    Unregister {
        /// The departing client.
        client: ClientId,
    },
    /// Add a registered client to a conversation.
    Join {
        /// The client.
        client: ClientId,
        /// The conversation.
        conversation: ConversationId,
    },
    /// Remove a client from a conversation.
    Leave {
        /// The client.
        client: ClientId,
        /// The conversation.
        conversation: ConversationId,
    },
    /// Send an already encoded frame to every member of a conversation except `from`.
    Broadcast {
        /// The target conversation.
        conversation: ConversationId,
        /// The sender, who does not receive its own broadcast.
        from: Option<ClientId>,
        /// The encoded frame, shared by every recipient.
        frame: Bytes,
    },
    /// A chat session's request, or an event the store committed. Boxed: it is much larger
    /// than the transport's commands, which the read pumps keep in their futures.
    Chat(Box<chat::ChatCommand>),
}

/// The hub has stopped (only during shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the hub has stopped")]
pub struct HubClosed;

/// A cloneable, typed handle to the hub. Every method waits while the hub's queue is full.
#[derive(Debug, Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<Command>,
}

impl HubHandle {
    /// Queues a command from a thread outside the runtime (the store's writer), blocking
    /// while the queue is full.
    ///
    /// # Errors
    /// [`HubClosed`] if the hub has stopped.
    pub fn blocking_send(&self, cmd: Command) -> Result<(), HubClosed> {
        self.tx.blocking_send(cmd).map_err(|_| HubClosed)
    }

    async fn send(&self, cmd: Command) -> Result<(), HubClosed> {
        self.tx.send(cmd).await.map_err(|_| HubClosed)
    }

    /// Queues a command if there is room, without waiting.
    pub(crate) fn try_send(&self, cmd: Command) -> Result<(), mpsc::error::TrySendError<Command>> {
        self.tx.try_send(cmd)
    }

    /// Queues a command, waiting for room.
    pub(crate) async fn send_command(&self, cmd: Command) -> Result<(), HubClosed> {
        self.send(cmd).await
    }

    /// Registers a new connection's outbox.
    ///
    /// # Errors
    /// [`HubClosed`] if the hub has stopped.
    pub async fn register(&self, client: ClientId, outbox: Arc<Outbox>) -> Result<(), HubClosed> {
        self.send(Command::Register { client, outbox }).await
    }

    /// Unregisters a connection.
    ///
    /// # Errors
    /// [`HubClosed`] if the hub has stopped.
    pub async fn unregister(&self, client: ClientId) -> Result<(), HubClosed> {
        self.send(Command::Unregister { client }).await
    }

    /// Adds a client to a conversation.
    ///
    /// # Errors
    /// [`HubClosed`] if the hub has stopped.
    pub async fn join(
        &self,
        client: ClientId,
        conversation: ConversationId,
    ) -> Result<(), HubClosed> {
        self.send(Command::Join {
            client,
            conversation,
        })
        .await
    }

    /// Removes a client from a conversation.
    ///
    /// # Errors
    /// [`HubClosed`] if the hub has stopped.
    pub async fn leave(
        &self,
        client: ClientId,
        conversation: ConversationId,
    ) -> Result<(), HubClosed> {
        self.send(Command::Leave {
            client,
            conversation,
        })
        .await
    }

    /// Fans an encoded frame out to a conversation, skipping `from`.
    ///
    /// # Errors
    /// [`HubClosed`] if the hub has stopped.
    pub async fn broadcast(
        &self,
        conversation: ConversationId,
        from: Option<ClientId>,
        frame: Bytes,
    ) -> Result<(), HubClosed> {
        self.send(Command::Broadcast {
            conversation,
            from,
            frame,
        })
        .await
    }
}

/// Timing and limits the hub needs.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// Depth of the command queue.
    pub queue_depth: usize,
    /// Protocol ping period.
    pub ping_interval: Duration,
    /// Liveness sweep period.
    pub sweep_interval: Duration,
    /// How long an outbox may stay full before eviction.
    pub slow_consumer_grace: Duration,
}

/// The hub actor. Create with [`Hub::new`], run with [`Hub::run`].
#[derive(Debug)]
pub struct Hub {
    rx: mpsc::Receiver<Command>,
    cfg: HubConfig,
    routes: Routes,
    outboxes: HashMap<ClientId, Arc<Outbox>>,
    /// Clients whose outbox was past its soft limit at a delivery; rechecked on the
    /// slow-consumer tick.
    suspects: HashSet<ClientId>,
    metrics: Arc<Metrics>,
    ping_frame: Bytes,
    evict_frame: Bytes,
    going_away: Bytes,
    shutdown: CancellationToken,
    /// Shutdown has begun: every connection has been sent Close 1001, and so is any that
    /// registers from now on.
    shutting_down: bool,
    /// Chat sessions: users, live conversation routes, sync holds, auth deadlines.
    chat: chat::Chat,
    /// Frames produced by one chat event, delivered once it is applied (kept to reuse its
    /// allocation).
    chat_out: Vec<(ClientId, Bytes)>,
    /// Shared compressed forms of the frames of the current delivery round (permessage-
    /// deflate), so a chat event fanned out to many connections is compressed once.
    deflated: wire::DeflateCache,
    /// A handle that does not keep the hub alive, for the tasks it spawns (store fills).
    weak: mpsc::WeakSender<Command>,
}

impl Hub {
    /// A hub and the first handle to it.
    ///
    /// When `shutdown` is cancelled the hub queues Close 1001 for every connection (their write
    /// pumps send it) and keeps running until the last handle is dropped.
    #[must_use]
    pub fn new(
        cfg: HubConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> (Self, HubHandle) {
        let (tx, rx) = mpsc::channel(cfg.queue_depth);
        let hub = Self {
            rx,
            cfg,
            routes: Routes::default(),
            outboxes: HashMap::new(),
            suspects: HashSet::new(),
            metrics,
            ping_frame: wire::ping(),
            evict_frame: wire::close(CloseCode::POLICY_VIOLATION, "slow consumer: queue full"),
            going_away: wire::close(CloseCode::GOING_AWAY, "server shutting down"),
            shutdown,
            shutting_down: false,
            chat: chat::Chat::default(),
            chat_out: Vec::new(),
            deflated: wire::DeflateCache::default(),
            weak: tx.downgrade(),
        };
        (hub, HubHandle { tx })
    }

    /// Runs until every [`HubHandle`] has been dropped.
    pub async fn run(mut self) {
        let start = tokio::time::Instant::now();
        let mut sweep =
            tokio::time::interval_at(start + self.cfg.sweep_interval, self.cfg.sweep_interval);
        let mut ping =
            tokio::time::interval_at(start + self.cfg.ping_interval, self.cfg.ping_interval);
        // Check suspects a few times per grace period, so eviction lands close to the grace.
        let slow_period = (self.cfg.slow_consumer_grace / 4)
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        let mut slow = tokio::time::interval(slow_period);
        // Auth and token deadlines are checked on a coarse tick rather than a timer per
        // deadline: thousands of connections then cost no timer registrations.
        let mut deadlines = tokio::time::interval(Duration::from_millis(100));
        for t in [&mut sweep, &mut ping, &mut slow, &mut deadlines] {
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        let shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled(), if !self.shutting_down => self.begin_shutdown(),
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => break,
                },
                _ = sweep.tick() => self.sweep(),
                _ = ping.tick() => self.ping_all(),
                _ = slow.tick(), if !self.suspects.is_empty() => self.check_suspects(),
                _ = deadlines.tick(), if self.chat.needs_tick() => self.chat_tick(),
            }
        }
        tracing::debug!("hub stopped");
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Register { client, outbox } => {
                if self.shutting_down {
                    outbox.close(self.going_away.clone(), false);
                }
                self.outboxes.insert(client, outbox);
            }
            Command::Unregister { client } => self.forget(client),
            Command::Join {
                client,
                conversation,
            } => {
                if self.outboxes.contains_key(&client) {
                    self.routes.join(client, conversation);
                }
            }
            Command::Leave {
                client,
                conversation,
            } => {
                self.routes.leave(client, conversation);
            }
            Command::Broadcast {
                conversation,
                from,
                frame,
            } => self.broadcast(conversation, from, &frame),
            Command::Chat(cmd) => self.on_chat(*cmd),
        }
    }

    fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        for outbox in self.outboxes.values() {
            outbox.close(self.going_away.clone(), false);
        }
    }

    fn forget(&mut self, client: ClientId) {
        self.chat.remove(client);
        self.routes.remove_client(client);
        self.outboxes.remove(&client);
        self.suspects.remove(&client);
    }

    /// The hint for [`Outbox::deliver`]: with no other command waiting (a low rate), frames
    /// may go straight to idle sockets; under load they are queued, so each write pump
    /// coalesces several of them into one write.
    fn pace(&self) -> Pace {
        if self.rx.is_empty() {
            Pace::Idle
        } else {
            Pace::Busy
        }
    }

    fn broadcast(&mut self, conversation: ConversationId, from: Option<ClientId>, frame: &Bytes) {
        metrics::inc(&self.metrics.broadcasts);
        let pace = self.pace();
        let grace = self.cfg.slow_consumer_grace;
        let mut delivered = 0;
        let mut evict = Vec::new();
        // Compressed on the first recipient that agreed to shared deflate, then the same
        // bytes for every other.
        let mut deflated: Option<Option<Bytes>> = None;
        for member in self.routes.members(conversation) {
            if Some(member) == from {
                continue;
            }
            let Some(outbox) = self.outboxes.get(&member) else {
                continue;
            };
            let compressed = outbox.shared_deflate().and_then(|threshold| {
                deflated
                    .get_or_insert_with(|| wire::deflate_shared(frame, threshold, &self.metrics))
                    .clone()
            });
            let delivery = outbox.deliver(frame.clone(), compressed, pace, grace, &self.metrics);
            delivered += u64::from(delivery.delivered());
            settle(&mut self.suspects, &mut evict, member, delivery);
        }
        metrics::add(&self.metrics.broadcast_deliveries, delivered);
        for client in evict {
            self.evict(client);
        }
    }

    fn ping_all(&mut self) {
        let pace = self.pace();
        let grace = self.cfg.slow_consumer_grace;
        let mut evict = Vec::new();
        for (client, outbox) in &self.outboxes {
            let delivery =
                outbox.deliver(self.ping_frame.clone(), None, pace, grace, &self.metrics);
            settle(&mut self.suspects, &mut evict, *client, delivery);
        }
        for client in evict {
            self.evict(client);
        }
    }

    /// Terminates every connection that showed no life since the previous sweep.
    fn sweep(&mut self) {
        let dead: Vec<ClientId> = self
            .outboxes
            .iter()
            .filter(|(_, outbox)| !outbox.take_alive())
            .map(|(client, _)| *client)
            .collect();
        for client in dead {
            if let Some(outbox) = self.outboxes.get(&client) {
                // A silent peer will not read a Close frame either: drop the socket.
                outbox.kill();
            }
            self.forget(client);
            metrics::inc(&self.metrics.sweep_terminations);
            tracing::debug!(%client, "terminated by liveness sweep");
        }
    }

    fn check_suspects(&mut self) {
        let grace = self.cfg.slow_consumer_grace;
        let mut evict = Vec::new();
        self.suspects.retain(|client| {
            let Some(outbox) = self.outboxes.get(client) else {
                return false;
            };
            match outbox.recheck(grace) {
                Delivery::Watch => true,
                Delivery::Evict => {
                    evict.push(*client);
                    false
                }
                Delivery::Done | Delivery::Closed => false,
            }
        });
        for client in evict {
            self.evict(client);
        }
    }

    fn evict(&mut self, client: ClientId) {
        if let Some(outbox) = self.outboxes.get(&client) {
            outbox.close(self.evict_frame.clone(), true);
            metrics::inc(&self.metrics.queue_full_disconnects);
            tracing::debug!(%client, code = 1008, "evicted slow consumer");
        }
        self.forget(client);
    }
}

/// The hub's side of the delivery policy, the same for every frame: a client that is behind
/// is watched; one that must go is collected, to be evicted once the loop that borrows the
/// registry is over.
fn settle(
    suspects: &mut HashSet<ClientId>,
    evict: &mut Vec<ClientId>,
    client: ClientId,
    delivery: Delivery,
) {
    match delivery {
        Delivery::Done | Delivery::Closed => {}
        Delivery::Watch => {
            suspects.insert(client);
        }
        Delivery::Evict => evict.push(client),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn cfg() -> HubConfig {
        HubConfig {
            queue_depth: 16,
            ping_interval: Duration::from_secs(20),
            sweep_interval: Duration::from_secs(30),
            slow_consumer_grace: Duration::from_millis(50),
        }
    }

    fn drain(outbox: &Outbox) -> Vec<Bytes> {
        let mut batch = VecDeque::new();
        outbox.take(&mut batch, false);
        let bytes = batch.iter().map(Bytes::len).sum();
        outbox.written(batch.len(), bytes);
        batch.into()
    }

    #[tokio::test]
    async fn broadcast_skips_sender_and_shares_one_allocation() {
        let metrics = Arc::new(Metrics::default());
        let (hub, handle) = Hub::new(cfg(), metrics.clone(), CancellationToken::new());
        let task = tokio::spawn(hub.run());
        let conv = ConversationId(7);
        let boxes: Vec<_> = (0..3).map(|_| Arc::new(Outbox::new(8, 1 << 16))).collect();
        for (i, ob) in boxes.iter().enumerate() {
            handle
                .register(ClientId(i as u64), ob.clone())
                .await
                .unwrap();
            handle.join(ClientId(i as u64), conv).await.unwrap();
        }
        let frame = Bytes::from_static(b"\x81\x02hi");
        handle
            .broadcast(conv, Some(ClientId(0)), frame.clone())
            .await
            .unwrap();
        drop(handle);
        task.await.unwrap();
        assert!(drain(&boxes[0]).is_empty(), "sender excluded");
        for ob in &boxes[1..] {
            let got = drain(ob);
            assert_eq!(got, vec![frame.clone()]);
            assert_eq!(got[0].as_ptr(), frame.as_ptr(), "no per-recipient copy");
        }
        assert_eq!(
            metrics
                .broadcast_deliveries
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }

    #[tokio::test]
    async fn full_outbox_is_evicted_after_grace() {
        let metrics = Arc::new(Metrics::default());
        let (hub, handle) = Hub::new(cfg(), metrics.clone(), CancellationToken::new());
        let task = tokio::spawn(hub.run());
        let conv = ConversationId(1);
        let slow = Arc::new(Outbox::new(2, 1 << 16));
        // Roomy: the test drains it without waiting for the hub, so it may lag a few frames.
        let fast = Arc::new(Outbox::new(64, 1 << 16));
        handle.register(ClientId(1), slow.clone()).await.unwrap();
        handle.register(ClientId(2), fast.clone()).await.unwrap();
        handle.join(ClientId(1), conv).await.unwrap();
        handle.join(ClientId(2), conv).await.unwrap();
        for i in 0..5u8 {
            handle
                .broadcast(conv, None, Bytes::from(vec![i]))
                .await
                .unwrap();
            drain(&fast);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(slow.is_closing(), "evicted with a close frame");
        assert_eq!(
            metrics
                .queue_full_disconnects
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        let got = drain(&slow);
        assert_eq!(
            got.len(),
            1,
            "queued frames dropped, only the close remains"
        );
        assert_eq!(&got[0][2..4], &1008u16.to_be_bytes());
        // The fast member still receives.
        handle
            .broadcast(conv, None, Bytes::from_static(b"x"))
            .await
            .unwrap();
        drop(handle);
        task.await.unwrap();
        let got = drain(&fast);
        assert_eq!(got.len(), 6, "the fast member got everything");
        assert_eq!(got[5], Bytes::from_static(b"x"));
    }

    #[tokio::test]
    async fn a_full_queue_is_handled_the_same_for_a_ping_and_a_broadcast() {
        use crate::outbox::FRAME_OVERHEAD;
        let metrics = Arc::new(Metrics::default());
        let config = HubConfig {
            ping_interval: Duration::from_millis(100),
            ..cfg()
        };
        let grace = config.slow_consumer_grace;
        let (hub, handle) = Hub::new(config, metrics.clone(), CancellationToken::new());
        let task = tokio::spawn(hub.run());
        let conv = ConversationId(1);
        let frame = Bytes::from_static(b"\x81\x01x");
        let filled = |soft, max| {
            let ob = Arc::new(Outbox::new(soft, max));
            for _ in 0..2 {
                let _ = ob.deliver(frame.clone(), None, Pace::Busy, grace, &Metrics::default());
            }
            ob
        };
        // At the hard bound: the next frame, a broadcast or a ping, cannot be queued.
        let full = || filled(64, 2 * (FRAME_OVERHEAD + frame.len()));
        // Past the soft limit from now on: the grace period is over by the next frame.
        let behind = || filled(1, 1 << 16);
        // Members 1 and 2 only hear the broadcast; 3 and 4 only the pings.
        let boxes = [full(), behind(), full(), behind()];
        for (i, ob) in boxes.iter().enumerate() {
            let client = ClientId(i as u64 + 1);
            handle.register(client, ob.clone()).await.unwrap();
            if i < 2 {
                handle.join(client, conv).await.unwrap();
            }
        }
        tokio::time::sleep(grace + Duration::from_millis(10)).await;
        handle.broadcast(conv, None, frame.clone()).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !boxes.iter().all(|ob| ob.is_closing()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "every slow client evicted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for ob in &boxes {
            let got = drain(ob);
            assert_eq!(
                got.len(),
                1,
                "queued frames dropped, only the close remains"
            );
            assert_eq!(&got[0][2..4], &1008u16.to_be_bytes());
        }
        let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(count(&metrics.queue_full_disconnects), 4);
        assert_eq!(
            count(&metrics.queue_full_drops),
            2,
            "a frame refused at the hard bound counts as a drop, ping or broadcast"
        );
        assert_eq!(count(&metrics.broadcast_deliveries), 0);
        drop(handle);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_kills_silent_clients_only() {
        let metrics = Arc::new(Metrics::default());
        let cfg = HubConfig {
            ping_interval: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(3),
            ..cfg()
        };
        let (hub, handle) = Hub::new(cfg, metrics.clone(), CancellationToken::new());
        let task = tokio::spawn(hub.run());
        let silent = Arc::new(Outbox::new(64, 1 << 16));
        let chatty = Arc::new(Outbox::new(64, 1 << 16));
        handle.register(ClientId(1), silent.clone()).await.unwrap();
        handle.register(ClientId(2), chatty.clone()).await.unwrap();
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(900)).await;
            chatty.mark_alive();
        }
        assert!(silent.is_killed());
        assert!(!chatty.is_killed());
        assert!(drain(&chatty).len() >= 6, "pings were queued");
        assert_eq!(
            metrics
                .sweep_terminations
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        drop(handle);
        task.await.unwrap();
    }
}
