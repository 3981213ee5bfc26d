//! fastwebsockets peer for the performance comparison.
//!
//! Same semantics as chatgroup's `--echo` mode, written the way fastwebsockets' README and
//! its `echo_server` example write a server: hyper's HTTP/1 server with
//! `fastwebsockets::upgrade`, a current-thread runtime, each connection in
//! `tokio::task::unconstrained`, default socket options (auto pong, auto close).
//!
//! - `/echo`: a `FragmentCollector` reads whole messages and writes each back.
//! - `/broadcast?conversation_id=N` (or `/ws?conversation_id=N`, its name before
//!   chatgroup's chat socket took `/ws`): the socket is split (`ws.split(tokio::io::split)`,
//!   as Deno does); a writer task drains the client's unbounded queue, and every text
//!   message read is handed to every *other* client of conversation N.
//!
//! Usage: `fastws-peer 127.0.0.1:PORT`

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fastwebsockets::{upgrade, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A frame queued for one client's writer task.
type Outbound = (OpCode, Bytes);

/// Members of each conversation: client id -> that client's outbound queue.
type Rooms = Arc<Mutex<HashMap<u64, HashMap<u64, mpsc::UnboundedSender<Outbound>>>>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn main() -> Result<(), WebSocketError> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!("fastws-peer listening on {}", listener.local_addr()?);
        let rooms: Rooms = Arc::default();
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::task::yield_now().await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let rooms = rooms.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let service = service_fn(move |req| server_upgrade(req, rooms.clone()));
                let conn = http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades();
                let _ = conn.await;
            });
        }
    })
}

fn conversation_of(req: &Request<Incoming>) -> Option<u64> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("conversation_id="))?
        .parse()
        .ok()
}

async fn server_upgrade(
    mut req: Request<Incoming>,
    rooms: Rooms,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let room = match req.uri().path() {
        "/echo" => None,
        "/broadcast" | "/ws" => match conversation_of(&req) {
            Some(room) => Some(room),
            None => return Ok(status(StatusCode::BAD_REQUEST)),
        },
        _ => return Ok(status(StatusCode::NOT_FOUND)),
    };
    if !upgrade::is_upgrade_request(&req) {
        return Ok(status(StatusCode::UPGRADE_REQUIRED));
    }
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let result = match room {
            None => tokio::task::unconstrained(echo(fut)).await,
            Some(room) => tokio::task::unconstrained(chat(fut, room, rooms)).await,
        };
        if let Err(e) = result {
            if !matches!(
                e,
                WebSocketError::ConnectionClosed | WebSocketError::UnexpectedEOF
            ) {
                eprintln!("websocket: {e}");
            }
        }
    });
    Ok(response)
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut resp = Response::new(Empty::new());
    *resp.status_mut() = code;
    resp
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fastwebsockets::FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn chat(fut: upgrade::UpgradeFut, room: u64, rooms: Rooms) -> Result<(), WebSocketError> {
    let ws = fut.await?;
    let (rx, mut tx) = ws.split(tokio::io::split);
    let mut rx = FragmentCollectorRead::new(rx);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outbound>();
    rooms
        .lock()
        .expect("rooms lock")
        .entry(room)
        .or_default()
        .insert(id, out_tx.clone());
    let writer = tokio::spawn(async move {
        while let Some((opcode, payload)) = out_rx.recv().await {
            let frame = Frame::new(true, opcode, None, Payload::Borrowed(&payload));
            tx.write_frame(frame).await?;
            if opcode == OpCode::Close {
                break;
            }
        }
        Ok::<_, WebSocketError>(())
    });
    let result = loop {
        // Pongs and close replies go through the writer task, like any other frame.
        let mut obligated = |frame: Frame<'_>| {
            let sent = out_tx
                .send((frame.opcode, Bytes::copy_from_slice(&frame.payload)))
                .map_err(|_| WebSocketError::ConnectionClosed);
            async move { sent }
        };
        let frame = match rx.read_frame(&mut obligated).await {
            Ok(frame) => frame,
            Err(e) => break Err(e),
        };
        match frame.opcode {
            OpCode::Close => break Ok(()),
            OpCode::Text => {
                let payload = Bytes::from(Vec::from(frame.payload));
                let rooms = rooms.lock().expect("rooms lock");
                if let Some(members) = rooms.get(&room) {
                    for (&member, queue) in members {
                        if member != id {
                            let _ = queue.send((OpCode::Text, payload.clone()));
                        }
                    }
                }
            }
            _ => {}
        }
    };
    {
        let mut rooms = rooms.lock().expect("rooms lock");
        if let Some(members) = rooms.get_mut(&room) {
            members.remove(&id);
            if members.is_empty() {
                rooms.remove(&room);
            }
        }
    }
    drop(out_tx);
    let _ = writer.await;
    result
}
