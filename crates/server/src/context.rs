//! What every connection task shares: configuration, counters, the hub, the shutdown token,
//! the connection limit and a few frames encoded once at startup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rfc6455::CodecConfig;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use chatgroup_store::Store;

use crate::auth::Auth;
use crate::chat::bucket::PerUser;
use crate::config::Config;
use crate::hub::HubHandle;
use crate::ids::ClientId;
use crate::metrics::Metrics;
use crate::wire;

/// Shared by all connections as `Arc<ServerCtx>`.
#[derive(Debug)]
pub(crate) struct ServerCtx {
    pub(crate) cfg: Config,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) hub: HubHandle,
    pub(crate) shutdown: CancellationToken,
    /// Every connection task and pump is spawned here, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
    pub(crate) ws_slots: Arc<Semaphore>,
    /// Connections in their HTTP phase; see [`Config::max_http_connections`].
    pub(crate) http_slots: Arc<Semaphore>,
    pub(crate) codec: CodecConfig,
    next_client: AtomicU64,
    /// The text `pong` answering a text `ping`.
    pub(crate) pong_text: Bytes,
    /// Users, conversations and messages.
    pub(crate) store: Store,
    /// Passwords, tokens, login throttling.
    pub(crate) auth: Auth,
    /// Where uploaded files live, and which connection writes which upload.
    pub(crate) files: Arc<crate::chat::files::FileRoot>,
    /// Per-user send limits, shared by a user's sockets and the HTTP API.
    pub(crate) user_sends: PerUser,
    /// The bus to the other nodes (`--bus redis`), for `/healthz`.
    pub(crate) bus: Option<crate::bus::Bus>,
}

impl ServerCtx {
    #[allow(clippy::too_many_arguments)] // built once, in `run`
    pub(crate) fn new(
        cfg: Config,
        metrics: Arc<Metrics>,
        hub: HubHandle,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        store: Store,
        auth: Auth,
        bus: Option<crate::bus::Bus>,
    ) -> Self {
        let codec = CodecConfig::server()
            .with_max_frame_len(cfg.max_frame_len)
            .with_max_message_len(cfg.max_message_len);
        let files = Arc::new(crate::chat::files::FileRoot::new(&cfg.data_dir));
        Self {
            files,
            ws_slots: Arc::new(Semaphore::new(cfg.max_connections)),
            http_slots: Arc::new(Semaphore::new(cfg.max_http_connections)),
            codec,
            cfg,
            metrics,
            hub,
            shutdown,
            tracker,
            next_client: AtomicU64::new(1),
            pong_text: wire::pong_text(),
            store,
            auth,
            user_sends: PerUser::default(),
            bus,
        }
    }

    pub(crate) fn next_client_id(&self) -> ClientId {
        ClientId(self.next_client.fetch_add(1, Ordering::Relaxed))
    }
}

/// Held for the life of a WebSocket connection: its slot under `max_connections` and its
/// place in the open-connections gauge, both released on drop.
#[derive(Debug)]
pub(crate) struct ConnGuard {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl ConnGuard {
    pub(crate) fn new(permit: OwnedSemaphorePermit, metrics: Arc<Metrics>) -> Self {
        metrics.connections_open.fetch_add(1, Ordering::Relaxed);
        Self {
            _permit: permit,
            metrics,
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}
