//! The chatgroup server runtime: one HTTP/1.1 port serving the WebSocket endpoint, the
//! browser page, health and metrics; a hub task that owns conversation membership; and two
//! pump tasks per WebSocket connection.
//!
//! ```text
//!                 ┌──────────── run(cfg, listener, shutdown) ────────────┐
//! TcpListener ──▶ accept loop ──spawn──▶ connection (HTTP/1.1, keep-alive)
//!                                          │ 101 Switching Protocols
//!                                          ├──▶ read pump ──HubHandle (bounded, awaited)──▶ Hub task
//!                                          └──▶ write pump ◀── Outbox (bounded, try-push) ◀──┘
//! ```
//!
//! - [`hub`]: membership and fan-out; a broadcast is encoded once and shared as `Bytes`;
//!   liveness sweep and protocol pings for every connection.
//! - [`bus`]: with several nodes (`--bus redis`), what each commits, and typing and
//!   presence, reach the others' hubs over Redis pub/sub; the hub puts every conversation
//!   back in `seq` order and fills gaps from the store.
//! - [`outbox`]: the bounded per-connection queue; a full one starts the slow-consumer grace
//!   period, after which the client is evicted with close 1008.
//! - Connections hold no read buffer while idle and no per-connection timers.
//! - Shutdown: stop accepting, cancel the token (the hub queues Close 1001 for every
//!   connection; each write pump sends it and waits up to `close_timeout` for the reply), then
//!   wait up to `shutdown_grace` for every task.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chatgroup_server::Error> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! chatgroup_server::run(chatgroup_server::Config::default(), listener, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

#![forbid(unsafe_code)]

mod auth;
pub mod bus;
mod chat;
pub mod config;
mod connection;
mod context;
mod error;
mod http;
pub mod hub;
pub mod ids;
pub mod metrics;
pub mod origin;
pub mod outbox;
mod pump;
mod web;
mod wire;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, ConfigError, OriginError, OriginPolicy};
pub use error::Error;
pub use metrics::Metrics;

use auth::{Auth, Jwt, LoginThrottle, Passwords};
use chatgroup_store::{Store, StoreConfig};
use context::ServerCtx;
use hub::chat::ChatCommand;
use hub::{Command, Hub, HubConfig, HubHandle};

/// Serves on `listener` until `shutdown` resolves, then shuts down gracefully: stop
/// accepting, send Close 1001 to every WebSocket, and wait up to `cfg.shutdown_grace` for
/// every connection to finish.
///
/// # Errors
/// [`Error::Config`] if `cfg` does not validate.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let cfg = cfg.validate()?;
    let metrics = Arc::new(Metrics::default());
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (hub, hub_handle) = Hub::new(
        HubConfig {
            queue_depth: cfg.hub_queue_depth,
            ping_interval: cfg.ping_interval,
            sweep_interval: cfg.sweep_interval,
            slow_consumer_grace: cfg.slow_consumer_grace,
        },
        metrics.clone(),
        token.clone(),
    );
    // Not in the tracker: the hub outlives the connections and the store (whose committed
    // events it still delivers while they flush).
    let hub_task = tokio::spawn(hub.run());
    // Before the store: its sink publishes what it commits.
    let bus = match &cfg.bus {
        Some(bus_cfg) => Some(bus::Bus::start(bus_cfg, &token, &tracker)?),
        None => None,
    };
    let store = open_store(&cfg, hub_handle.clone(), bus.clone()).await?;
    // Before any connection exists: the hub applies commands in order.
    let _ = hub_handle
        .send_command(Command::Chat(Box::new(ChatCommand::Configure(
            hub::chat::Settings {
                store: Some(store.clone()),
                presence_debounce: cfg.presence_debounce,
                presence_fanout: cfg.presence_fanout,
                bus: bus.clone(),
            },
        ))))
        .await;
    if let Some(bus) = &bus {
        // Only now: the hub is configured for what the subscription brings.
        bus.subscribe(hub_handle.clone(), &token, &tracker);
    }
    let auth = build_auth(&cfg, &store)?;
    let grace = cfg.shutdown_grace;
    let ctx = Arc::new(ServerCtx::new(
        cfg,
        metrics,
        hub_handle,
        token.clone(),
        tracker.clone(),
        store.clone(),
        auth,
        bus,
    ));

    // Deletes idle uploads until shutdown.
    tracker.spawn(chat::files::sweep(ctx.clone()));

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    metrics::inc(&ctx.metrics.tcp_accepted);
                    // Frames are already coalesced by the write pump; don't add Nagle delay.
                    let _ = stream.set_nodelay(true);
                    // The HTTP phase is capped like WebSockets are: an idle or slow HTTP
                    // client holds a socket and a head buffer until its timeout.
                    match ctx.http_slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            tracker.spawn(connection::serve(stream, peer, ctx.clone(), slot));
                        }
                        Err(_) => connection::refuse_busy(&stream, &ctx.metrics),
                    }
                }
                Err(err) => accept_error(&err).await,
            },
        }
    }
    drop(listener);
    tracing::info!(
        open = ctx
            .metrics
            .connections_open
            .load(std::sync::atomic::Ordering::Relaxed),
        "shutting down: closing connections with 1001"
    );
    token.cancel();
    // The hub stops once the last connection drops its handle (held through the context).
    drop(ctx);
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(grace = ?grace, "shutdown grace elapsed with connections still open");
    }
    // Commit what is queued and close the database; its last events still reach the hub.
    store.close().await;
    drop(store);
    // The hub stops once the last handle is gone; connections past the grace may still hold
    // one, so do not wait for it long.
    let _ = tokio::time::timeout(Duration::from_secs(1), hub_task).await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Opens the database in the data directory, its committed events flowing to the hub (and,
/// with a bus, to the other nodes).
async fn open_store(cfg: &Config, hub: HubHandle, bus: Option<bus::Bus>) -> Result<Store, Error> {
    let mut store_cfg = StoreConfig::new(cfg.data_dir.clone());
    store_cfg.durability = cfg.durability;
    // SQLite in the data directory, or PostgreSQL.
    store_cfg.backend = cfg.store.clone();
    // The last message committed, which a `MemberRemoved` right after follows.
    let mut last_message = None;
    let sink = Box::new(move |event: chatgroup_store::Committed| {
        if let Some(bus) = &bus {
            // Published here, on the writer thread, so in commit order; never waits.
            if let Some(published) = bus::envelope::Event::of_committed(&event, last_message) {
                bus.publish(published);
            }
            if let chatgroup_store::Committed::Message { message, .. } = &event {
                last_message = Some((message.conversation, message.seq));
            }
        }
        // On the store's writer thread: waiting here when the hub is busy is the intended
        // backpressure (the writer then commits larger batches).
        let _ = hub.blocking_send(Command::Chat(Box::new(ChatCommand::Committed(event))));
    });
    let store = tokio::task::spawn_blocking(move || Store::open(store_cfg, sink))
        .await
        .map_err(|_| Error::Startup("the database thread failed"))??;
    tracing::info!(
        // Displayed without the URL's password.
        store = %cfg.store,
        epoch = store.epoch(),
        durability = ?cfg.durability,
        "database open"
    );
    Ok(store)
}

fn build_auth(cfg: &Config, store: &Store) -> Result<Auth, Error> {
    let secret = match &cfg.jwt_secret {
        Some(secret) => secret.0.as_bytes().to_vec(),
        None => store.jwt_secret().to_vec(),
    };
    Ok(Auth {
        jwt: Jwt::new(&secret, cfg.token_ttl)
            .map_err(|_| Error::Startup("the JWT secret is empty"))?,
        passwords: Passwords::new(cfg.password_hashers)
            .map_err(|_| Error::Startup("password hashing is unavailable (no randomness)"))?,
        throttle: LoginThrottle::new(100_000),
        refresh_ttl: cfg.refresh_ttl,
    })
}

/// Accept errors are per-connection (reset before accept) or resource exhaustion (out of
/// file descriptors); in the latter case back off briefly instead of spinning.
async fn accept_error(err: &io::Error) {
    match err.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted => {}
        _ => {
            tracing::warn!(error = %err, "accept failed; backing off");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
