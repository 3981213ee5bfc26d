//! A WebSocket echo server that honours the whole of RFC 6455: what conformance
//! suites (and the interop tests) are pointed at.
//!
//! ```text
//! cargo run --release -p rfc6455 --example echo_server -- 127.0.0.1:9001
//! ```
//!
//! Every text and binary message is sent back as it came. Fragmented messages
//! are reassembled (up to 16 MiB), pings are answered, the peer's close is
//! echoed, and any violation closes the connection with the RFC's code
//! (1002, 1007, 1009) and a short reason. Any path is accepted and no
//! subprotocol is selected.

use std::io;
use std::time::Duration;

use rfc6455::io::{accept, AcceptConfig, WebSocketError};
use rfc6455::CodecConfig;
use tokio::net::{TcpListener, TcpStream};

/// The largest frame and message echoed: conformance suites send up to 16 MiB.
const MAX_MESSAGE: usize = 16 << 20;
/// A client that has not finished its request head by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("echo server listening on ws://{}", listener.local_addr()?);
    serve(listener).await
}

/// The limits the echo server runs with.
pub(crate) fn config() -> AcceptConfig {
    AcceptConfig::default().with_codec(
        CodecConfig::server()
            .with_max_frame_len(MAX_MESSAGE as u64)
            .with_max_message_len(MAX_MESSAGE),
    )
}

/// Accepts connections forever, one task each.
pub(crate) async fn serve(listener: TcpListener) -> io::Result<()> {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                tokio::spawn(async move {
                    if let Err(err) = echo(tcp).await {
                        eprintln!("{peer}: {err}");
                    }
                });
            }
            // Out of descriptors and the like: the listener itself is fine, wait a little.
            Err(err) => {
                eprintln!("accept: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs one connection: handshake, then echo until the peer closes.
async fn echo(tcp: TcpStream) -> Result<(), WebSocketError> {
    // Conformance suites time small frames; don't let Nagle hold them back.
    tcp.set_nodelay(true)?;
    let handshake = accept(tcp, config(), |_| Ok(None));
    let mut ws = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))??;
    while let Some(message) = ws.recv().await? {
        ws.send(message).await?;
    }
    Ok(())
}
