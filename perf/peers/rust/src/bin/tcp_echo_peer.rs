//! Raw TCP yardsticks: the ceilings for the echo and fan-out cases on this machine.
//!
//! After a minimal WebSocket opening handshake (so the same generator can connect):
//!
//! - **echo** (any path but `/broadcast`): every byte read is written straight back: no frame
//!   parsing, no unmasking, no UTF-8 checks. The echoed frames stay masked, so the generator
//!   must be run with `echo --raw-peer`.
//! - **fan-out** (`/broadcast?…`, one room per request target): the bytes of the first
//!   connection that sends any (the publisher) are written, unparsed, to every other connection
//!   of its room: straight into the socket when it has room, queued behind what it is still
//!   owed otherwise. That is the least work any server must do per delivery. The publisher
//!   must send unmasked frames (`fanout --raw-peer`), so the subscribers get frames a server
//!   may send. Bytes from any other connection (its closing frame) end that connection.
//!
//! It is a yardstick, not a server.
//!
//! Usage: `tcp-echo-peer 127.0.0.1:PORT`

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9004".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("tcp-echo-peer listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = serve(stream).await;
        });
    }
}

async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let end = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 8192 {
            return Ok(());
        }
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let key = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_owned())
    });
    let Some(key) = key else { return Ok(()) };
    let target = text
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("/")
        .to_owned();
    let accept = derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    if target.starts_with("/broadcast") {
        return relay(stream, &target, &head[end..]).await;
    }
    stream.write_all(&head[end..]).await?;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// A connection of a fan-out room.
struct Member {
    stream: TcpStream,
    /// Bytes owed to this member that its socket did not take yet, and whether its flusher
    /// is writing some it took out (new bytes must then queue, to keep the order).
    owed: Mutex<(Vec<u8>, bool)>,
    /// Wakes the flusher when `owed` gains bytes.
    wake: Notify,
}

impl Member {
    /// Writes `bytes` at once if nothing is owed and the socket takes them, else queues.
    fn deliver(&self, bytes: &[u8]) {
        let mut owed = self.owed.lock().expect("not poisoned");
        let (queue, flushing) = &mut *owed;
        let start = if queue.is_empty() && !*flushing {
            match self.stream.try_write(bytes) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                // A broken subscriber is dropped from the count by its own task's end.
                Err(_) => return,
            }
        } else {
            0
        };
        if start < bytes.len() {
            queue.extend_from_slice(&bytes[start..]);
            self.wake.notify_one();
        }
    }

    /// Writes what is owed, as the socket takes it, until the connection ends.
    async fn flush(&self) -> std::io::Result<()> {
        loop {
            self.wake.notified().await;
            loop {
                let batch = {
                    let mut owed = self.owed.lock().expect("not poisoned");
                    if owed.0.is_empty() {
                        owed.1 = false;
                        break;
                    }
                    owed.1 = true;
                    std::mem::take(&mut owed.0)
                };
                let mut at = 0;
                while at < batch.len() {
                    self.stream.writable().await?;
                    match self.stream.try_write(&batch[at..]) {
                        Ok(n) => at += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

/// A room: its members, and which of them publishes.
#[derive(Default)]
struct Room {
    members: Vec<Arc<Member>>,
    publisher: Option<Arc<Member>>,
}

fn rooms() -> &'static Mutex<HashMap<String, Room>> {
    static ROOMS: OnceLock<Mutex<HashMap<String, Room>>> = OnceLock::new();
    ROOMS.get_or_init(Mutex::default)
}

/// Serves one connection of a fan-out room until it closes.
async fn relay(stream: TcpStream, target: &str, early: &[u8]) -> std::io::Result<()> {
    let me = Arc::new(Member {
        stream,
        owed: Mutex::new((Vec::new(), false)),
        wake: Notify::new(),
    });
    rooms()
        .lock()
        .expect("not poisoned")
        .entry(target.to_owned())
        .or_default()
        .members
        .push(me.clone());
    let mut buf = vec![0u8; 64 * 1024];
    buf[..early.len()].copy_from_slice(early);
    let mut filled = early.len();
    let result = tokio::select! {
        r = me.flush() => r,
        r = async {
            loop {
                if filled > 0 && !publish(&me, target, &buf[..filled]) {
                    return Ok(());
                }
                me.stream.readable().await?;
                filled = match me.stream.try_read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                    Err(e) => return Err(e),
                };
            }
        } => r,
    };
    let mut rooms = rooms().lock().expect("not poisoned");
    if let Some(room) = rooms.get_mut(target) {
        if let Some(i) = room.members.iter().position(|m| Arc::ptr_eq(m, &me)) {
            room.members.swap_remove(i);
        }
        if room.publisher.as_ref().is_some_and(|p| Arc::ptr_eq(p, &me)) {
            room.publisher = None;
        }
        if room.members.is_empty() {
            rooms.remove(target);
        }
    }
    result
}

/// Hands `bytes` from `from` to every other member of its room; `false` when `from` is not
/// the room's publisher (its bytes end it).
fn publish(from: &Arc<Member>, target: &str, bytes: &[u8]) -> bool {
    let mut rooms = rooms().lock().expect("not poisoned");
    let Some(room) = rooms.get_mut(target) else {
        return false;
    };
    match &room.publisher {
        None => room.publisher = Some(from.clone()),
        Some(p) if Arc::ptr_eq(p, from) => {}
        Some(_) => return false,
    }
    for member in &room.members {
        if !Arc::ptr_eq(member, from) {
            member.deliver(bytes);
        }
    }
    true
}
