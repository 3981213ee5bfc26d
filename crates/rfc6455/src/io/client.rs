//! The client's opening handshake over a transport: [`connect`].

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::entropy;
use super::error::{eof, Result};
use super::socket::WebSocket;
use crate::config::{CodecConfig, Role};
use crate::handshake::{ClientHandshake, HeadLimits};

/// What [`connect`] offers and accepts: subprotocols, extra request headers,
/// the response head limits and the codec limits.
///
/// ```
/// use rfc6455::io::ConnectConfig;
/// let cfg = ConnectConfig::default()
///     .with_protocols(&["chat.v2", "chat.v1"])
///     .with_header("Origin", "https://example.com");
/// assert_eq!(cfg.protocols, ["chat.v2", "chat.v1"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectConfig {
    /// Subprotocols to offer, most preferred first.
    pub protocols: Vec<String>,
    /// Extra request header lines, e.g. `Origin` or `Authorization`.
    pub headers: Vec<(String, String)>,
    /// Limits on the server's response head.
    pub limits: HeadLimits,
    /// Frame and message limits; the role is always [`Role::Client`].
    pub codec: CodecConfig,
}

impl ConnectConfig {
    /// Offers these subprotocols, most preferred first.
    #[must_use]
    pub fn with_protocols(mut self, protocols: &[&str]) -> Self {
        self.protocols = protocols.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    /// Adds a request header line.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the response head limits.
    #[must_use]
    pub fn with_limits(mut self, limits: HeadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the codec limits (the role is forced to [`Role::Client`]).
    #[must_use]
    pub fn with_codec(mut self, mut codec: CodecConfig) -> Self {
        codec.role = Role::Client;
        self.codec = codec;
        self
    }
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            protocols: Vec::new(),
            headers: Vec::new(),
            limits: HeadLimits::DEFAULT,
            codec: CodecConfig::client(),
        }
    }
}

/// Performs the client side of the opening handshake on `io` (RFC 6455 §4.1):
/// sends a `GET` for `resource` (path and query) with `Host: host` and a key
/// of 16 bytes from the OS random number generator, and checks the server's
/// `101` (status, `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, the chosen
/// subprotocol). Every frame the connection sends is masked with a fresh key
/// from the same generator.
///
/// `io` is already connected (a `TcpStream`, or a TLS stream over one); `host`
/// carries `:port` when the port is not the scheme's default.
///
/// # Errors
/// [`WebSocketError::ClientHandshake`](super::WebSocketError::ClientHandshake)
/// when the response breaks §4.1 (e.g. a `403`, a wrong accept key);
/// [`WebSocketError::Io`](super::WebSocketError::Io) when the transport fails or
/// ends first, or the OS has no random number generator.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), rfc6455::io::WebSocketError> {
/// use rfc6455::io::{connect, ConnectConfig};
/// use rfc6455::Message;
///
/// let tcp = tokio::net::TcpStream::connect("127.0.0.1:9001").await?;
/// let cfg = ConnectConfig::default().with_protocols(&["chat"]);
/// let mut ws = connect(tcp, "127.0.0.1:9001", "/chat?room=1", &cfg).await?;
/// println!("subprotocol: {:?}", ws.protocol());
/// ws.send(Message::Text("hello".into())).await?;
/// while let Some(message) = ws.recv().await? {
///     println!("{message:?}");
/// }
/// # Ok(())
/// # }
/// ```
pub async fn connect<S>(
    mut io: S,
    host: &str,
    resource: &str,
    config: &ConnectConfig,
) -> Result<WebSocket<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let protocols: Vec<&str> = config.protocols.iter().map(String::as_str).collect();
    let mut handshake = ClientHandshake::new(host, resource, entropy::nonce()?)
        .with_protocols(&protocols)
        .with_limits(config.limits);
    for (name, value) in &config.headers {
        handshake = handshake.with_header(name, value);
    }
    let mut buf = BytesMut::with_capacity(1024);
    handshake.write_request(&mut buf)?;
    io.write_all(&buf).await?;
    io.flush().await?;
    buf.clear();
    loop {
        if let Some((response, head_len)) = handshake.parse_response(&buf)? {
            let _ = buf.split_to(head_len);
            let mut codec = config.codec;
            codec.role = Role::Client;
            return Ok(WebSocket::from_raw(io, codec, buf)?.with_protocol(response.protocol));
        }
        buf.reserve(1024);
        if io.read_buf(&mut buf).await? == 0 {
            return Err(eof("connection closed during the opening handshake"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{accept, AcceptConfig, WebSocketError};
    use crate::{ClientHandshakeError, Message};

    #[tokio::test]
    async fn negotiates_a_protocol_and_reads_frames_sent_with_the_101() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut ws = accept(server_io, AcceptConfig::default(), |req| {
                Ok(req.choose_protocol(&["v2"]).map(String::from))
            })
            .await
            .unwrap();
            ws.send(Message::Binary(vec![1, 2, 3].into()))
                .await
                .unwrap();
            ws
        });
        let cfg = ConnectConfig::default().with_protocols(&["v1", "v2"]);
        let mut ws = connect(client_io, "h", "/", &cfg).await.unwrap();
        assert_eq!(ws.protocol(), Some("v2"));
        assert_eq!(
            ws.recv().await.unwrap(),
            Some(Message::Binary(vec![1, 2, 3].into()))
        );
        drop(server.await.unwrap());
    }

    #[tokio::test]
    async fn a_refusal_is_reported_with_its_status() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            accept(server_io, AcceptConfig::default(), |_| {
                Err(crate::HandshakeError::OriginNotAllowed)
            })
            .await
        });
        let err = connect(client_io, "h", "/", &ConnectConfig::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                WebSocketError::ClientHandshake(ClientHandshakeError::Status(403))
            ),
            "{err:?}"
        );
        assert!(server.await.unwrap().is_err());
    }
}
