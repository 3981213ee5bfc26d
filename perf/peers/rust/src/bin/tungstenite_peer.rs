//! tokio-tungstenite peer for the performance comparison.
//!
//! Same semantics as chatgroup's `--echo` mode, written the way tokio-tungstenite's own
//! examples write a server: `#[tokio::main]`, default `WebSocketConfig`, one task per
//! connection, `split()` into sink and stream.
//!
//! - `/echo`: every text or binary message is sent back (the `echo-server` example:
//!   `read.try_filter(..).forward(write)`, which flushes only when the reader runs dry).
//! - `/broadcast?conversation_id=N` (or `/ws?conversation_id=N`, its name before
//!   chatgroup's chat socket took `/ws`): every text message is broadcast to every *other*
//!   client of conversation N (the `server` chat example: a shared map of per-client
//!   unbounded senders, one writer per client that flushes when its queue is empty).
//!
//! Usage: `tungstenite-peer 127.0.0.1:PORT`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{future, SinkExt, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

/// Members of each conversation: client id -> that client's outbound queue.
type Rooms = Arc<Mutex<HashMap<u64, HashMap<u64, mpsc::UnboundedSender<Message>>>>>;

/// Which endpoint a request asked for.
#[derive(Clone, Copy)]
enum Route {
    Echo,
    Room(u64),
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("tungstenite-peer listening on {}", listener.local_addr()?);
    let rooms: Rooms = Arc::default();
    let next_id = Arc::new(AtomicU64::new(1));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: keep serving the connections we have.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(handle(stream, peer, id, rooms.clone()));
    }
}

fn route_of(req: &Request) -> Option<Route> {
    match req.uri().path() {
        "/echo" => Some(Route::Echo),
        "/broadcast" | "/ws" => {
            let query = req.uri().query().unwrap_or("");
            let id = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("conversation_id="))?
                .parse()
                .ok()?;
            Some(Route::Room(id))
        }
        _ => None,
    }
}

// The callback's error type is tungstenite's own `ErrorResponse`, however large.
#[allow(clippy::result_large_err)]
async fn handle(stream: TcpStream, _peer: SocketAddr, id: u64, rooms: Rooms) {
    let mut route = None;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        route = route_of(req);
        if route.is_some() {
            Ok(resp)
        } else {
            let mut err = ErrorResponse::new(Some("not found".into()));
            *err.status_mut() = StatusCode::NOT_FOUND;
            Err(err)
        }
    };
    let ws = match tokio_tungstenite::accept_hdr_async(stream, callback).await {
        Ok(ws) => ws,
        Err(_) => return,
    };
    let (mut write, read) = ws.split();
    match route {
        Some(Route::Echo) => {
            let _ = read
                .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
                .forward(write)
                .await;
        }
        Some(Route::Room(room)) => {
            let (tx, mut rx) = mpsc::unbounded_channel();
            rooms
                .lock()
                .expect("rooms lock")
                .entry(room)
                .or_default()
                .insert(id, tx);
            let incoming = read.try_for_each(|msg| {
                if msg.is_text() {
                    let rooms = rooms.lock().expect("rooms lock");
                    if let Some(members) = rooms.get(&room) {
                        for (&member, queue) in members {
                            if member != id {
                                let _ = queue.send(msg.clone());
                            }
                        }
                    }
                }
                future::ok(())
            });
            let outgoing = async move {
                while let Some(msg) = rx.recv().await {
                    write.feed(msg).await?;
                    while let Ok(msg) = rx.try_recv() {
                        write.feed(msg).await?;
                    }
                    write.flush().await?;
                }
                Ok::<_, tokio_tungstenite::tungstenite::Error>(())
            };
            tokio::pin!(incoming, outgoing);
            future::select(incoming, outgoing).await;
            let mut rooms = rooms.lock().expect("rooms lock");
            if let Some(members) = rooms.get_mut(&room) {
                members.remove(&id);
                if members.is_empty() {
                    rooms.remove(&room);
                }
            }
        }
        None => {}
    }
}
