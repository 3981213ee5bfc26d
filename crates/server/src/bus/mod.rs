//! The bus between nodes (`--bus redis`): what one node commits, and its typing and presence,
//! reach every other node's hub, which delivers them to its own connections exactly as it
//! does its own.
//!
//! # Design
//!
//! - **Redis pub/sub, one channel** (`--bus-channel`, `chatgroup` by default). Every node
//!   publishes on it and subscribes to it, and drops what it published itself. Pub/sub rather
//!   than Streams: the store already is the log. Its seqs have no gaps, so a node that missed
//!   something finds out (the next seq it sees is too far ahead) and reads the missing ones
//!   from the database ([`chatgroup_store::Store::messages_after`]); a Stream would be a
//!   second copy of the messages with its own trimming and its own cursor per node, for no
//!   guarantee the database does not give already. The bus is a fast path; the store is the
//!   truth.
//! - **What is published**: the store's committed events that other nodes deliver (messages,
//!   members added and removed, conversation changes, receipts; see
//!   `envelope::Event::of_committed`), published from the store's sink on the writer
//!   thread, so in commit order; typing (throttled, as for local delivery) and presence
//!   changes from the hub; and, from the bus itself, `Alive` every `ALIVE_EVERY` and
//!   `Hello` on every (re)subscription. Publishing never waits: events go into a bounded
//!   queue that one task drains with `PUBLISH` over one connection (so Redis keeps their
//!   order); when it is full or Redis is unreachable they are dropped and the node says so
//!   (`Lost`) as soon as it can publish again.
//! - **Order and gaps** are the hub's (`hub::sequencer`): per conversation it delivers seq
//!   `n + 1` next, holds a later one up to `GAP_BOUND`, then fills the gap from the store,
//!   and drops what it delivered already. A gap at the *end* of a conversation shows no
//!   later message; so whenever something may have been lost (another node said `Hello` or
//!   `Lost`, or stopped saying `Alive` for `NODE_TIMEOUT`: it died between a commit and its
//!   publication), every conversation this node delivers is read again from the store after
//!   the last seq it delivered.
//! - **Losing the bus**: the subscriber sees its stream end, or hears nothing (not even its
//!   own `Alive`) for `SILENCE`. The node then answers `/healthz` with 503 and the reason,
//!   keeps serving its connections (its own commits still reach them, and a gap revealed by
//!   a later message is still filled from the store), and reconnects with backoff (100 ms
//!   doubling to 5 s). Once subscribed again it tells every chat connection to resync:
//!   close 1013 (try again later), after which the client reconnects, to any node, and its
//!   `sync` replays what it missed from the database. Closing is the one recovery that also
//!   covers what a message gap does not show: members added or removed on other nodes, and
//!   receipts, during the outage.
//! - **Presence**: each node publishes its users' transitions (first connection attached,
//!   last one gone after the debounce) and answers `Hello` with a snapshot; every node keeps
//!   who is online where. A user is online while a connection of theirs is attached on any
//!   node, so one tab on each of two nodes is online once; a node that stops saying `Alive`
//!   for `NODE_TIMEOUT` is dead, and its users go offline then.
//! - **Files** are not on the bus: their bytes live in `--data-dir`, so nodes that serve the
//!   same users share that directory (NFS or any shared file system; see the README).

pub(crate) mod envelope;
mod redis;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use envelope::NodeId;
use envelope::{Envelope, Event};

use crate::hub::HubHandle;

/// How often a node says it is alive.
pub(crate) const ALIVE_EVERY: Duration = Duration::from_secs(1);
/// A node not heard from for this long is dead: its users go offline, and what it may have
/// committed without publishing is read from the store.
pub(crate) const NODE_TIMEOUT: Duration = Duration::from_secs(5);
/// A subscription that hears nothing (not even its own node's `Alive`) for this long is
/// presumed broken.
pub(crate) const SILENCE: Duration = Duration::from_secs(4);
/// How long a conversation waits for a missing seq before reading it from the store.
pub(crate) const GAP_BOUND: Duration = Duration::from_millis(200);
/// Events waiting to be published, at most; past it they are dropped (and `Lost` is sent).
const QUEUE: usize = 65_536;

/// Where the bus is.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Wraps a `redis://` URL.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, password included: only for connecting.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

/// Shows the URL with its password (if any) replaced by `***`, for logs.
impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = &self.0;
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            return f.write_str(url);
        };
        let rest = &url[scheme_end..];
        let host_start = rest.find('/').unwrap_or(rest.len());
        match rest[..host_start].rfind('@') {
            Some(at) => {
                let userinfo = &rest[..at];
                let user = userinfo.split(':').next().unwrap_or("");
                let shown = if userinfo.contains(':') {
                    format!("{user}:***")
                } else {
                    // `redis://secret@host`: a lone userinfo is the password.
                    "***".to_owned()
                };
                write!(f, "{}{shown}{}", &url[..scheme_end], &rest[at..])
            }
            None => f.write_str(url),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// The bus settings (`--bus redis`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// The Redis server.
    pub url: RedisUrl,
    /// The pub/sub channel every node of one deployment shares.
    pub channel: String,
}

/// Whether the bus works, for `/healthz`.
#[derive(Debug, Default)]
pub(crate) struct Health {
    subscribed: AtomicBool,
    publishing: AtomicBool,
    reason: Mutex<String>,
}

impl Health {
    /// `None` when subscribed and publishing; otherwise why not.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.subscribed.load(Ordering::Relaxed) && self.publishing.load(Ordering::Relaxed) {
            return None;
        }
        let reason = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        Some(if reason.is_empty() {
            "connecting".to_owned()
        } else {
            reason.clone()
        })
    }

    fn set(&self, flag: &AtomicBool, up: bool, reason: Option<String>) {
        flag.store(up, Ordering::Relaxed);
        if let Some(reason) = reason {
            *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason;
        }
    }
}

/// A node's side of the bus: publishes events, and knows whether it is connected. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    node: NodeId,
    queue: mpsc::Sender<Vec<u8>>,
    health: Health,
    /// Something was dropped since the last `Lost`.
    lost: AtomicBool,
    published: AtomicU64,
    dropped: AtomicU64,
    client: ::redis::Client,
    channel: String,
}

impl Bus {
    /// Starts the publisher on `tracker` (it stops when `shutdown` is cancelled); the
    /// subscription starts with [`Bus::subscribe`], once the hub is ready for what it brings.
    pub(crate) fn start(
        cfg: &BusConfig,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self, crate::Error> {
        let client = ::redis::Client::open(cfg.url.expose())
            .map_err(|_| crate::Error::Startup("the Redis URL is not valid"))?;
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|_| crate::Error::Startup("no randomness"))?;
        let (queue, outgoing) = mpsc::channel(QUEUE);
        let bus = Self {
            inner: Arc::new(Inner {
                node: NodeId(u64::from_le_bytes(id)),
                queue,
                health: Health::default(),
                lost: AtomicBool::new(false),
                published: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                client: client.clone(),
                channel: cfg.channel.clone(),
            }),
        };
        tracing::info!(node = %bus.node(), url = %cfg.url, channel = %cfg.channel, "bus: redis");
        tracker.spawn(redis::publish(
            client,
            cfg.channel.clone(),
            bus.clone(),
            outgoing,
            shutdown.clone(),
        ));
        Ok(bus)
    }

    /// Starts the subscription on `tracker`: what other nodes publish goes to `hub`, which
    /// must be configured for the bus already (their answers to our `Hello` come at once).
    pub(crate) fn subscribe(
        &self,
        hub: HubHandle,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) {
        tracker.spawn(redis::subscribe(
            self.inner.client.clone(),
            self.inner.channel.clone(),
            self.clone(),
            hub,
            shutdown.clone(),
        ));
    }

    /// This node's id.
    #[must_use]
    pub fn node(&self) -> NodeId {
        self.inner.node
    }

    /// Queues an event for the other nodes; never waits (a full queue drops it, and the
    /// others are told something was lost).
    pub(crate) fn publish(&self, event: Event) {
        let envelope = Envelope {
            node: self.inner.node,
            event,
        };
        let Ok(bytes) = serde_json::to_vec(&envelope) else {
            return;
        };
        if self.inner.queue.try_send(bytes).is_err() {
            self.inner.lost.store(true, Ordering::Relaxed);
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `None` while the bus works; otherwise why not (for `/healthz`).
    pub(crate) fn problem(&self) -> Option<String> {
        self.inner.health.problem()
    }

    /// Events published and dropped since start (for `/metrics`).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.inner.published.load(Ordering::Relaxed),
            self.inner.dropped.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
impl Bus {
    /// A bus connected to nothing: what it publishes waits in the returned queue.
    pub(crate) fn detached() -> (Self, mpsc::Receiver<Vec<u8>>) {
        let (queue, outgoing) = mpsc::channel(QUEUE);
        let bus = Self {
            inner: Arc::new(Inner {
                node: NodeId(1),
                queue,
                health: Health::default(),
                lost: AtomicBool::new(false),
                published: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                client: ::redis::Client::open("redis://127.0.0.1:1/").expect("a valid URL"),
                channel: "test".into(),
            }),
        };
        (bus, outgoing)
    }
}

/// By hand: the Redis client's own `Debug` would show the URL's password.
impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("node", &self.node)
            .field("channel", &self.channel)
            .field("problem", &self.health.problem())
            .finish_non_exhaustive()
    }
}

/// What the bus tells the hub.
#[derive(Debug)]
pub struct Inbound(pub(crate) InboundKind);

#[derive(Debug)]
pub(crate) enum InboundKind {
    /// Another node published this.
    Remote(Box<Envelope>),
    /// Subscribed; `recovered` if the subscription had been lost before.
    Up { recovered: bool },
    /// The subscription was lost.
    Down,
    /// A fill the hub asked the store for.
    Filled {
        conversation: chatgroup_protocol::ConversationId,
        /// The messages, and whether that was all of them; `Err` if it could not be read.
        result: Result<(Vec<chatgroup_protocol::MessageView>, bool), ()>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_url_never_shows_its_password() {
        let shown = |u: &str| RedisUrl::new(u).to_string();
        assert_eq!(
            shown("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            shown("redis://user:s3cret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(shown("redis://:s3cret@host"), "redis://:***@host");
        assert_eq!(shown("redis://s3cret@host"), "redis://***@host");
        assert!(!format!("{:?}", RedisUrl::new("redis://:pw@h")).contains("pw"));
        let (bus, _) = Bus::detached();
        assert!(
            !format!("{bus:?}").contains("127.0.0.1:1"),
            "no connection details"
        );
    }
}
