//! The server's opening handshake over a transport: [`accept`].

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::error::{eof, Result};
use super::socket::WebSocket;
use crate::config::{CodecConfig, Role};
use crate::error::HandshakeError;
use crate::handshake::{parse_request, validate_upgrade, write_accept, write_reject};
use crate::handshake::{HeadLimits, UpgradeRequest};

/// Limits for [`accept`]: the request head's size and header count, and the
/// codec's frame and message limits for the connection that follows.
///
/// ```
/// use rfc6455::io::AcceptConfig;
/// use rfc6455::{CodecConfig, HeadLimits};
/// let cfg = AcceptConfig::default()
///     .with_limits(HeadLimits::DEFAULT.with_max_head_len(4096))
///     .with_codec(CodecConfig::server().with_max_message_len(16 << 20));
/// assert_eq!(cfg.limits.max_head_len, 4096);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcceptConfig {
    /// Limits on the request head (a larger head is refused with 431).
    pub limits: HeadLimits,
    /// Frame and message limits; the role is always [`Role::Server`].
    pub codec: CodecConfig,
}

impl AcceptConfig {
    /// Sets the request head limits.
    #[must_use]
    pub const fn with_limits(mut self, limits: HeadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the codec limits (the role is forced to [`Role::Server`]).
    #[must_use]
    pub const fn with_codec(mut self, mut codec: CodecConfig) -> Self {
        codec.role = Role::Server;
        self.codec = codec;
        self
    }
}

impl Default for AcceptConfig {
    fn default() -> Self {
        Self {
            limits: HeadLimits::DEFAULT,
            codec: CodecConfig::server(),
        }
    }
}

/// Performs the server side of the opening handshake on `io` (RFC 6455 §4.2).
///
/// Reads the request head within `config.limits`, checks it with
/// [`validate_upgrade`], then asks `policy`, which sees the path, query,
/// `Origin` and offered subprotocols:
/// - `Ok(protocol)` accepts with that subprotocol (which must be one the
///   client offered; any other is not sent) or none;
/// - `Err(e)` refuses, e.g. [`HandshakeError::OriginNotAllowed`] for a 403.
///
/// Answers `101 Switching Protocols`, or the refusal's status and reason
/// ([`write_reject`]) and then closes the transport. Bytes the client sent
/// right behind its head are kept for the connection.
///
/// `config` is taken by value (it is `Copy`) so that the future borrows nothing
/// but `io`. There is no timeout here: wrap the call in `tokio::time::timeout` so that
/// a client that never finishes its head cannot hold the task.
///
/// # Errors
/// [`WebSocketError::Handshake`](super::WebSocketError::Handshake) once the refusal was sent;
/// [`WebSocketError::Io`](super::WebSocketError::Io) if the transport failed or ended first.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use rfc6455::io::{accept, AcceptConfig, WebSocketError};
/// use rfc6455::HandshakeError;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let (mut client, server_io) = tokio::io::duplex(4096);
/// client.write_all(b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///     Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n\r\n").await?;
///
/// let result = accept(server_io, AcceptConfig::default(), |req| {
///     match req.origin {
///         Some("https://example.com") | None => Ok(req.choose_protocol(&["chat"]).map(String::from)),
///         Some(_) => Err(HandshakeError::OriginNotAllowed),
///     }
/// })
/// .await;
/// assert!(matches!(result, Err(WebSocketError::Handshake(HandshakeError::OriginNotAllowed))));
///
/// let mut response = String::new();
/// client.read_to_string(&mut response).await?;
/// assert!(response.starts_with("HTTP/1.1 403 Forbidden\r\n"));
/// # Ok(())
/// # }
/// ```
pub async fn accept<S, F>(mut io: S, config: AcceptConfig, policy: F) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&UpgradeRequest<'_>) -> std::result::Result<Option<String>, HandshakeError>,
{
    let mut buf = BytesMut::with_capacity(1024);
    let mut out = BytesMut::new();
    let outcome = match read_head(&mut io, &mut buf, &config.limits).await? {
        Ok(head_len) => answer(&buf[..head_len], &config.limits, policy, &mut out)
            .map(|protocol| (protocol, head_len)),
        Err(err) => Err(err),
    };
    match outcome {
        Ok((protocol, head_len)) => {
            io.write_all(&out).await?;
            io.flush().await?;
            let _ = buf.split_to(head_len);
            let mut codec = config.codec;
            codec.role = Role::Server;
            Ok(WebSocket::from_raw(io, codec, buf)?.with_protocol(protocol))
        }
        Err(err) => {
            out.clear();
            write_reject(&err, &mut out);
            io.write_all(&out).await?;
            io.shutdown().await?;
            // Unread request bytes would make the kernel reset the connection and
            // could destroy the response before the client reads it.
            discard_ready(&mut io).await;
            Err(err.into())
        }
    }
}

/// Reads until `buf` holds a complete request head; returns its length, or the
/// refusal for a head that breaks the limits or HTTP/1.1.
async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<std::result::Result<usize, HandshakeError>> {
    loop {
        match parse_request(buf, limits) {
            Ok(Some((_, len))) => return Ok(Ok(len)),
            Ok(None) => {}
            Err(err) => return Ok(Err(err)),
        }
        buf.reserve(1024);
        if io.read_buf(buf).await? == 0 {
            return Err(eof("connection closed during the opening handshake"));
        }
    }
}

/// Validates a complete head, consults the policy and writes the 101 into `out`.
fn answer<F>(
    head: &[u8],
    limits: &HeadLimits,
    policy: F,
    out: &mut BytesMut,
) -> std::result::Result<Option<String>, HandshakeError>
where
    F: FnOnce(&UpgradeRequest<'_>) -> std::result::Result<Option<String>, HandshakeError>,
{
    let (head, _) =
        parse_request(head, limits)?.ok_or(HandshakeError::Malformed("incomplete request head"))?;
    let request = validate_upgrade(&head)?;
    // §4.2.2: the server may only select a subprotocol the client offered.
    let protocol = policy(&request)?.filter(|p| request.protocols().contains(&p.as_str()));
    write_accept(&request, protocol.as_deref(), &[], out);
    Ok(protocol)
}

/// Reads and drops whatever the peer already sent, without waiting for more.
async fn discard_ready<S: AsyncRead + Unpin>(io: &mut S) {
    let mut scratch = [0u8; 4096];
    // Bounded: at most 64 KiB, and only what is readable right now.
    for _ in 0..16 {
        let ready = poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => Poll::Ready(true),
                Poll::Ready(_) | Poll::Pending => Poll::Ready(false),
            }
        })
        .await;
        if !ready {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const GOOD: &[u8] = b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: a, b\r\n\r\n";

    async fn respond(request: &[u8], config: AcceptConfig, chosen: Option<&str>) -> String {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(request).await.unwrap();
        let chosen = chosen.map(str::to_owned);
        let task = tokio::spawn(async move { accept(server, config, |_| Ok(chosen)).await });
        let mut response = vec![0; 4096];
        let n = client.read(&mut response).await.unwrap();
        drop(task.await.unwrap());
        String::from_utf8(response[..n].to_vec()).unwrap()
    }

    #[tokio::test]
    async fn answers_101_with_an_offered_protocol_only() {
        let ok = respond(GOOD, AcceptConfig::default(), Some("b")).await;
        assert!(ok.starts_with("HTTP/1.1 101 "), "{ok}");
        assert!(ok.contains("Sec-WebSocket-Protocol: b\r\n"), "{ok}");
        let not_offered = respond(GOOD, AcceptConfig::default(), Some("c")).await;
        assert!(not_offered.starts_with("HTTP/1.1 101 "), "{not_offered}");
        assert!(
            !not_offered.contains("Sec-WebSocket-Protocol"),
            "{not_offered}"
        );
    }

    #[tokio::test]
    async fn refusals_carry_their_status() {
        let bad_version = String::from_utf8(GOOD.to_vec())
            .unwrap()
            .replace("Version: 13", "Version: 8");
        let resp = respond(bad_version.as_bytes(), AcceptConfig::default(), None).await;
        assert!(resp.starts_with("HTTP/1.1 426 "), "{resp}");
        assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"), "{resp}");

        let small = AcceptConfig::default().with_limits(HeadLimits::DEFAULT.with_max_head_len(64));
        let resp = respond(GOOD, small, None).await;
        assert!(resp.starts_with("HTTP/1.1 431 "), "{resp}");
    }

    #[tokio::test]
    async fn frames_behind_the_head_are_kept() {
        let mut request = GOOD.to_vec();
        // RFC 6455 §5.7: a masked "Hello", sent without waiting for the 101.
        request.extend_from_slice(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(&request).await.unwrap();
        let mut ws = accept(server, AcceptConfig::default(), |_| Ok(None))
            .await
            .unwrap();
        assert_eq!(
            ws.recv().await.unwrap(),
            Some(crate::Message::Text("Hello".into()))
        );
    }
}
