//! The two tasks of an open WebSocket connection.
//!
//! The read pump is the connection task itself (it continues from the handshake); it spawns
//! only the write pump, so an open connection costs two tasks. The pumps end together: the
//! reader reports its end through [`Outbox::reader_finished`](crate::outbox::Outbox), the
//! writer ends the reader with [`Outbox::kill`](crate::outbox::Outbox::kill).

pub(crate) mod read;
pub(crate) mod replies;
pub(crate) mod write;

use crate::chat::session::Session;
use crate::ids::ConversationId;

/// What a connection does with the messages it receives.
#[derive(Debug)]
pub(crate) enum Mode {
    /// `/ws`: the chat socket. Text (but the heartbeat) goes to the connection's chat
    /// session; boxed, so the pump's future stays small.
    Chat(Box<Session>),
    /// `/broadcast?conversation_id=N` (only with `--echo`, for tests and benchmarks): text is
    /// relayed unchanged to the other members of conversation N.
    Broadcast(ConversationId),
    /// `/echo` (only with `--echo`): every message is sent back unchanged.
    Echo,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::BytesMut;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::context::{ConnGuard, ServerCtx};
    use crate::hub::{Hub, HubConfig};
    use crate::outbox::Outbox;

    /// The per-connection budget is 2 KiB at 10k idle connections; a pump future is allocated
    /// inside its task for the task's whole life, so keep both well under it.
    #[tokio::test]
    async fn pump_futures_stay_small() {
        let cfg = crate::Config::default();
        let metrics = Arc::new(crate::Metrics::default());
        let (_hub, handle) = Hub::new(
            HubConfig {
                queue_depth: 4,
                ping_interval: cfg.ping_interval,
                sweep_interval: cfg.sweep_interval,
                slow_consumer_grace: cfg.slow_consumer_grace,
            },
            metrics.clone(),
            CancellationToken::new(),
        );
        let dir = std::env::temp_dir().join(format!("chatgroup-pump-size-{}", std::process::id()));
        let store =
            chatgroup_store::Store::open(chatgroup_store::StoreConfig::new(&dir), Box::new(|_| {}))
                .unwrap();
        let auth = crate::auth::Auth {
            jwt: crate::auth::Jwt::new(b"0123456789abcdef0123456789abcdef", cfg.token_ttl).unwrap(),
            passwords: crate::auth::Passwords::new(1).unwrap(),
            throttle: crate::auth::LoginThrottle::new(16),
            refresh_ttl: cfg.refresh_ttl,
        };
        let ctx = Arc::new(ServerCtx::new(
            cfg,
            metrics.clone(),
            handle,
            CancellationToken::new(),
            TaskTracker::new(),
            store.clone(),
            auth,
            None,
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let (rd, wr) = stream.into_split();
        let outbox = Arc::new(Outbox::with_socket(8, 1 << 20, wr));
        let permit = ctx.ws_slots.clone().try_acquire_owned().unwrap();
        let write = write::run(outbox.clone(), ctx.clone(), ConnGuard::new(permit, metrics));
        let read = read::ReadPump {
            rd,
            buf: BytesMut::new(),
            reader: None,
            deflate: None,
            replies: replies::Replies::default(),
            streaming: false,
            outbox,
            client: crate::ids::ClientId(1),
            mode: Mode::Chat(Box::new(Session::new(None, &crate::Config::default()))),
            ctx: ctx.clone(),
        };
        let read = read.run();
        let (read_size, write_size) = (std::mem::size_of_val(&read), std::mem::size_of_val(&write));
        println!("read pump future: {read_size} bytes, write pump future: {write_size} bytes");
        assert!(read_size <= 384, "read pump future is {read_size} bytes");
        assert!(write_size <= 256, "write pump future is {write_size} bytes");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
