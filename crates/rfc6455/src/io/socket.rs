//! The connection: [`WebSocket`] and the [`RecvHalf`] / [`SendHalf`] it splits into.

use std::fmt;
use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use super::entropy;
use super::error::{eof, Result, WebSocketError};
use crate::close::{CloseCode, CloseFrame, CloseState};
use crate::config::{CodecConfig, Role};
use crate::error::ProtocolError;
use crate::message::Message;
use crate::reader::{Event, Reader};
use crate::writer::Writer;

/// The smallest free space offered to a socket read.
const READ_CHUNK: usize = 8 * 1024;
/// The most free space reserved ahead of a large frame's payload. The frame
/// limit already bounds the buffer; this bounds what a peer that announces a
/// large frame and then goes quiet makes us allocate up front.
const MAX_READ_RESERVE: usize = 1 << 20;
/// Above this, the send buffer is released once empty rather than kept for reuse.
const KEEP_SEND_CAPACITY: usize = 64 * 1024;

/// A reply the receive side owes the peer.
#[derive(Debug)]
enum Reply {
    /// Answer a ping (RFC 6455 §5.5.2).
    Pong(Bytes),
    /// The peer's close frame: echo it unless we closed first (§5.5.1).
    PeerClose(Option<CloseFrame>),
    /// The peer broke the protocol: close with the error's code and text (§7.1.7).
    Fail(ProtocolError),
}

/// The receive side: codec state, buffered bytes, and any reply still owed.
#[derive(Debug)]
struct Inbox {
    reader: Reader,
    buf: BytesMut,
    /// Kept here, not in a local, so that a cancelled `recv` does not lose it.
    owed: Option<Reply>,
    /// The peer's close frame was read or the connection failed: nothing more to read.
    finished: bool,
    peer_close: Option<CloseFrame>,
}

impl Inbox {
    fn new(config: CodecConfig, buffered: BytesMut) -> Self {
        Self {
            reader: Reader::new(config),
            buf: buffered,
            owed: None,
            finished: false,
            peer_close: None,
        }
    }

    /// Reads from `io` until the buffer holds the next event.
    ///
    /// Cancel safe: bytes read so far stay in the buffer and the reader keeps its state.
    async fn next_event<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Event> {
        loop {
            if let Some(event) = self.reader.read(&mut self.buf)? {
                return Ok(event);
            }
            let want = self.reader.needed().clamp(READ_CHUNK, MAX_READ_RESERVE);
            self.buf.reserve(want);
            if io.read_buf(&mut self.buf).await? == 0 {
                return Err(if self.reader.is_idle() && self.buf.is_empty() {
                    eof("connection closed without a close frame")
                } else {
                    eof("connection closed inside a frame")
                });
            }
        }
    }

    /// Records what `event` obliges us to answer.
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::Ping(payload) => self.owed = Some(Reply::Pong(payload.clone())),
            Event::Close(frame) => {
                self.owed = Some(Reply::PeerClose(frame.clone()));
                self.peer_close.clone_from(frame);
                self.finished = true;
            }
            Event::Message(_) | Event::Pong(_) => {}
        }
    }

    /// Records a failed read; a protocol error owes the peer a close frame.
    fn on_error(&mut self, err: &WebSocketError) {
        self.finished = true;
        if let WebSocketError::Protocol(e) = err {
            self.owed = Some(Reply::Fail(e.clone()));
        }
    }
}

/// The send side: codec state and bytes encoded but not yet written.
#[derive(Debug)]
struct Outbox {
    writer: Writer,
    /// Frames are encoded whole into this buffer and written from it, so a
    /// cancelled write leaves the rest here and the next flush completes the
    /// frame: the stream is never torn mid-frame.
    buf: BytesMut,
    /// The transport's write side must be shut down once `buf` is written.
    shutdown_due: bool,
    shut: bool,
}

impl Outbox {
    fn new(role: Role) -> io::Result<Self> {
        let writer = match role {
            Role::Server => Writer::server(),
            Role::Client => Writer::client(entropy::mask_keys()?),
        };
        Ok(Self {
            writer,
            buf: BytesMut::new(),
            shutdown_due: false,
            shut: false,
        })
    }

    fn has_pending(&self) -> bool {
        !self.buf.is_empty() || (self.shutdown_due && !self.shut)
    }

    fn encode_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Pong(payload) => {
                // Refused only after our close frame, when §5.5.1 forbids sending anything.
                let _ = self.writer.pong(&payload, &mut self.buf);
            }
            Reply::PeerClose(frame) => {
                self.writer.on_peer_close(frame.as_ref(), &mut self.buf);
                // §7.1.1: once both close frames are exchanged the server closes TCP first;
                // a client waits for that (its caller drops the stream when done).
                if self.writer.is_closed() && self.writer.role() == Role::Server {
                    self.shutdown_due = true;
                }
            }
            Reply::Fail(err) => {
                let frame = CloseFrame::new(err.close_code(), &err.to_string());
                // Refused only if we already sent a close frame; the peer has its code then.
                let _ = self.writer.close(Some(&frame), &mut self.buf);
                self.shutdown_due = true;
            }
        }
    }

    fn encode_message(&mut self, message: &Message) -> Result<()> {
        match message {
            Message::Text(text) => self.writer.text(text, &mut self.buf)?,
            Message::Binary(data) => self.writer.binary(data, &mut self.buf)?,
        }
        Ok(())
    }

    fn encode_ping(&mut self, payload: &[u8]) -> Result<()> {
        Ok(self.writer.ping(payload, &mut self.buf)?)
    }

    fn encode_close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        if !code.is_valid_on_wire() {
            return Err(WebSocketError::InvalidCloseCode(code));
        }
        self.writer
            .close(Some(&CloseFrame::new(code, reason)), &mut self.buf)?;
        Ok(())
    }

    /// Writes everything encoded so far, then shuts the transport down if due.
    async fn flush<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> Result<()> {
        while !self.buf.is_empty() {
            if io.write_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero).into());
            }
        }
        io.flush().await?;
        if self.buf.capacity() > KEEP_SEND_CAPACITY {
            self.buf = BytesMut::new();
        }
        if self.shutdown_due && !self.shut {
            io.shutdown().await?;
            self.shut = true;
        }
        Ok(())
    }
}

/// A WebSocket connection over any `AsyncRead + AsyncWrite` transport, after
/// the opening handshake.
///
/// Get one from [`accept`](super::accept) (server), [`connect`](super::connect)
/// (client), or [`from_raw`](Self::from_raw) when the handshake happened elsewhere.
///
/// [`recv`](Self::recv) answers pings and the peer's close frame by itself and
/// fails the connection with the right close code when the peer breaks the
/// protocol; [`send`](Self::send), [`ping`](Self::ping) and
/// [`close`](Self::close) write whole frames and flush them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rfc6455::io::WebSocketError> {
/// use rfc6455::io::{accept, connect, AcceptConfig, ConnectConfig};
/// use rfc6455::{CloseCode, Message};
///
/// let (client_io, server_io) = tokio::io::duplex(64 * 1024);
/// let server = tokio::spawn(async move {
///     let mut ws = accept(server_io, AcceptConfig::default(), |_| Ok(None)).await?;
///     while let Some(message) = ws.recv().await? {
///         ws.send(message).await?; // echo
///     }
///     Ok::<_, rfc6455::io::WebSocketError>(ws.close_frame().map(|f| f.code))
/// });
///
/// let mut ws = connect(client_io, "example.com", "/echo", &ConnectConfig::default()).await?;
/// ws.send(Message::Text("hello".into())).await?;
/// assert_eq!(ws.recv().await?, Some(Message::Text("hello".into())));
/// ws.close(CloseCode::NORMAL, "done").await?;
/// assert_eq!(ws.recv().await?, None); // the server echoed our close
/// assert_eq!(ws.close_frame().map(|f| f.code), Some(CloseCode::NORMAL));
/// assert_eq!(server.await.unwrap()?, Some(CloseCode::NORMAL));
/// # Ok(())
/// # }
/// ```
pub struct WebSocket<S> {
    io: S,
    inbox: Inbox,
    outbox: Outbox,
    protocol: Option<String>,
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.outbox.writer.role())
            .field("protocol", &self.protocol)
            .field("close_state", &self.outbox.writer.close_state())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a transport whose opening handshake is already done.
    ///
    /// `config.role` decides masking; `buffered` holds bytes already read past the
    /// handshake (frames the peer sent right behind it), or is empty.
    ///
    /// # Errors
    /// In the client role, [`WebSocketError::Io`] if the OS random number
    /// generator (for masking keys) is unavailable.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rfc6455::io::WebSocketError> {
    /// use bytes::BytesMut;
    /// use rfc6455::io::WebSocket;
    /// use rfc6455::{CodecConfig, Message};
    /// use tokio::io::AsyncWriteExt;
    ///
    /// let (mut peer, io) = tokio::io::duplex(1024);
    /// let mut ws = WebSocket::from_raw(io, CodecConfig::server(), BytesMut::new())?;
    /// // RFC 6455 §5.7: a masked "Hello" from a client.
    /// peer.write_all(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]).await?;
    /// assert_eq!(ws.recv().await?, Some(Message::Text("Hello".into())));
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_raw(io: S, config: CodecConfig, buffered: BytesMut) -> Result<Self> {
        Ok(Self {
            io,
            outbox: Outbox::new(config.role)?,
            inbox: Inbox::new(config, buffered),
            protocol: None,
        })
    }

    pub(crate) fn with_protocol(mut self, protocol: Option<String>) -> Self {
        self.protocol = protocol;
        self
    }

    /// The subprotocol agreed in the handshake, if any.
    #[must_use]
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// This end's role.
    #[must_use]
    pub fn role(&self) -> Role {
        self.outbox.writer.role()
    }

    /// Where the closing handshake stands.
    #[must_use]
    pub fn close_state(&self) -> CloseState {
        self.outbox.writer.close_state()
    }

    /// The peer's close frame, once read; `None` before that or when it carried no code.
    #[must_use]
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.inbox.peer_close.as_ref()
    }

    /// The transport, e.g. to ask a `TcpStream` for its peer address.
    #[must_use]
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Receives the next text or binary message, answering pings on the way.
    ///
    /// Returns `Ok(None)` once the peer's close frame has been read (and answered,
    /// see [`close_frame`](Self::close_frame)) or after an error.
    ///
    /// Cancel safe: if the future is dropped, no message is lost.
    ///
    /// # Errors
    /// [`WebSocketError::Protocol`] when the peer broke RFC 6455 (the close frame
    /// with its code has been sent); [`WebSocketError::Io`] when the transport
    /// failed or ended without a close frame.
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        loop {
            match self.recv_event().await? {
                Some(Event::Message(message)) => return Ok(Some(message)),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// Receives the next event of any kind: messages, and also pings (already
    /// answered), pongs and the peer's close frame (already answered). After the
    /// close event, returns `Ok(None)`.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub async fn recv_event(&mut self) -> Result<Option<Event>> {
        self.settle().await?;
        if self.inbox.finished {
            return Ok(None);
        }
        match self.inbox.next_event(&mut self.io).await {
            Ok(event) => {
                self.inbox.on_event(&event);
                self.settle().await?;
                Ok(Some(event))
            }
            Err(err) => {
                self.inbox.on_error(&err);
                // The peer's violation is the news; a failed write of our close frame is not.
                let _ = self.settle().await;
                Err(err)
            }
        }
    }

    /// Sends a message as one frame.
    ///
    /// # Errors
    /// [`WebSocketError::Write`] after a close frame was sent; [`WebSocketError::Io`].
    pub async fn send(&mut self, message: Message) -> Result<()> {
        self.outbox.encode_message(&message)?;
        self.outbox.flush(&mut self.io).await
    }

    /// Sends a ping; the peer's pong shows up in [`recv_event`](Self::recv_event).
    ///
    /// # Errors
    /// [`WebSocketError::Write`] for a payload over 125 bytes or after a close frame
    /// was sent; [`WebSocketError::Io`].
    pub async fn ping(&mut self, payload: &[u8]) -> Result<()> {
        self.outbox.encode_ping(payload)?;
        self.outbox.flush(&mut self.io).await
    }

    /// Starts the closing handshake: sends a close frame with `code` and `reason`
    /// (cut to 123 bytes at a character boundary). Keep calling
    /// [`recv`](Self::recv) until it returns `Ok(None)` to read the peer's answer
    /// (messages still in flight arrive first); bound that wait with
    /// `tokio::time::timeout`, since a peer may never answer.
    ///
    /// # Errors
    /// [`WebSocketError::InvalidCloseCode`] for a code that may not be sent;
    /// [`WebSocketError::Write`] if a close frame was already sent (also when
    /// `recv` already answered the peer's close); [`WebSocketError::Io`].
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.outbox.encode_close(code, reason)?;
        self.outbox.flush(&mut self.io).await
    }

    /// Splits the connection into a receive half and a send half that can live
    /// in different tasks; see the [module docs](super) for how they share the
    /// transport's write side.
    pub fn split(self) -> (RecvHalf<S>, SendHalf<S>) {
        let (read, write) = tokio::io::split(self.io);
        let shared = Arc::new(Mutex::new(SendSide {
            io: write,
            outbox: self.outbox,
        }));
        let recv = RecvHalf {
            io: read,
            inbox: self.inbox,
            shared: Arc::clone(&shared),
        };
        (recv, SendHalf { shared })
    }

    /// Writes the reply owed (if any) and whatever a cancelled call left unwritten.
    async fn settle(&mut self) -> Result<()> {
        if let Some(reply) = self.inbox.owed.take() {
            self.outbox.encode_reply(reply);
        }
        if self.outbox.has_pending() {
            self.outbox.flush(&mut self.io).await?;
        }
        Ok(())
    }
}

/// The write side of a split connection, shared by both halves.
struct SendSide<S> {
    io: tokio::io::WriteHalf<S>,
    outbox: Outbox,
}

/// The receiving half of a split [`WebSocket`].
///
/// It answers pings and the peer's close frame through the send side it shares
/// with the [`SendHalf`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rfc6455::io::WebSocketError> {
/// use rfc6455::io::{accept, connect, AcceptConfig, ConnectConfig};
/// use rfc6455::{CloseCode, Message};
///
/// let (client_io, server_io) = tokio::io::duplex(64 * 1024);
/// let server = tokio::spawn(async move {
///     let ws = accept(server_io, AcceptConfig::default(), |_| Ok(None)).await?;
///     let (mut rx, tx) = ws.split();
///     // One task sends, another receives.
///     let sender = tokio::spawn(async move {
///         for i in 0..3 {
///             tx.send(Message::Text(format!("tick {i}").into())).await?;
///         }
///         tx.close(CloseCode::NORMAL, "done").await
///     });
///     while rx.recv().await?.is_some() {}
///     sender.await.unwrap()?;
///     Ok::<_, rfc6455::io::WebSocketError>(())
/// });
///
/// let mut ws = connect(client_io, "example.com", "/", &ConnectConfig::default()).await?;
/// let mut got = Vec::new();
/// while let Some(Message::Text(text)) = ws.recv().await? {
///     got.push(text.to_string());
/// }
/// assert_eq!(got, ["tick 0", "tick 1", "tick 2"]);
/// assert_eq!(ws.close_frame().map(|f| f.code), Some(CloseCode::NORMAL));
/// server.await.unwrap()?;
/// # Ok(())
/// # }
/// ```
pub struct RecvHalf<S> {
    io: tokio::io::ReadHalf<S>,
    inbox: Inbox,
    shared: Arc<Mutex<SendSide<S>>>,
}

impl<S> fmt::Debug for RecvHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvHalf")
            .field("finished", &self.inbox.finished)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RecvHalf<S> {
    /// The peer's close frame, once read.
    #[must_use]
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.inbox.peer_close.as_ref()
    }

    /// As [`WebSocket::recv`]. A ping or close answer waits for the send half to
    /// finish the frame it is writing.
    ///
    /// # Errors
    /// As [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        loop {
            match self.recv_event().await? {
                Some(Event::Message(message)) => return Ok(Some(message)),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// As [`WebSocket::recv_event`].
    ///
    /// # Errors
    /// As [`WebSocket::recv`].
    pub async fn recv_event(&mut self) -> Result<Option<Event>> {
        self.settle().await?;
        if self.inbox.finished {
            return Ok(None);
        }
        match self.inbox.next_event(&mut self.io).await {
            Ok(event) => {
                self.inbox.on_event(&event);
                self.settle().await?;
                Ok(Some(event))
            }
            Err(err) => {
                self.inbox.on_error(&err);
                let _ = self.settle().await;
                Err(err)
            }
        }
    }

    /// Writes the reply owed, if any, and finishes what a cancelled send left
    /// unwritten when the send side is free.
    async fn settle(&mut self) -> Result<()> {
        let mut side = if self.inbox.owed.is_some() {
            self.shared.lock().await
        } else {
            match self.shared.try_lock() {
                Ok(side) => side,
                // The holder flushes the buffer itself.
                Err(_) => return Ok(()),
            }
        };
        let side = &mut *side;
        // Taken only once the lock is held, so a cancelled wait keeps the reply owed.
        if let Some(reply) = self.inbox.owed.take() {
            side.outbox.encode_reply(reply);
        }
        if side.outbox.has_pending() {
            side.outbox.flush(&mut side.io).await?;
        }
        Ok(())
    }
}

/// The sending half of a split [`WebSocket`]. Cloning it gives another handle to
/// the same send side (e.g. for a keep-alive task); frames never interleave.
pub struct SendHalf<S> {
    shared: Arc<Mutex<SendSide<S>>>,
}

impl<S> Clone for SendHalf<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> fmt::Debug for SendHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendHalf").finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SendHalf<S> {
    /// As [`WebSocket::send`].
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    pub async fn send(&self, message: Message) -> Result<()> {
        let mut side = self.shared.lock().await;
        let side = &mut *side;
        side.outbox.encode_message(&message)?;
        side.outbox.flush(&mut side.io).await
    }

    /// As [`WebSocket::ping`].
    ///
    /// # Errors
    /// As [`WebSocket::ping`].
    pub async fn ping(&self, payload: &[u8]) -> Result<()> {
        let mut side = self.shared.lock().await;
        let side = &mut *side;
        side.outbox.encode_ping(payload)?;
        side.outbox.flush(&mut side.io).await
    }

    /// As [`WebSocket::close`]; the receive half reads the peer's answer.
    ///
    /// # Errors
    /// As [`WebSocket::close`].
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        let mut side = self.shared.lock().await;
        let side = &mut *side;
        side.outbox.encode_close(code, reason)?;
        side.outbox.flush(&mut side.io).await
    }

    /// Where the closing handshake stands.
    pub async fn close_state(&self) -> CloseState {
        self.shared.lock().await.outbox.writer.close_state()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::DuplexStream;

    use super::*;

    /// A hand-driven client: the codec's own writer and reader over the other end of a pipe.
    struct Peer {
        io: DuplexStream,
        writer: Writer,
        reader: Reader,
        buf: BytesMut,
    }

    impl Peer {
        fn pair(pipe: usize) -> (Self, WebSocket<DuplexStream>) {
            let (ours, theirs) = tokio::io::duplex(pipe);
            let ws = WebSocket::from_raw(theirs, CodecConfig::server(), BytesMut::new()).unwrap();
            let peer = Self {
                io: ours,
                writer: Writer::client(|| [1, 2, 3, 4]),
                reader: Reader::new(CodecConfig::client().with_max_frame_len(u64::MAX)),
                buf: BytesMut::new(),
            };
            (peer, ws)
        }

        async fn write(&mut self, encode: impl FnOnce(&mut Writer, &mut BytesMut)) {
            let mut out = BytesMut::new();
            encode(&mut self.writer, &mut out);
            self.io.write_all(&out).await.unwrap();
        }

        async fn event(&mut self) -> Event {
            loop {
                if let Some(event) = self.reader.read(&mut self.buf).unwrap() {
                    return event;
                }
                let n =
                    tokio::time::timeout(Duration::from_secs(5), self.io.read_buf(&mut self.buf))
                        .await
                        .expect("the server answers")
                        .unwrap();
                assert_ne!(n, 0, "connection closed before the expected frame");
            }
        }

        async fn at_eof(&mut self) -> bool {
            let mut rest = Vec::new();
            self.io.read_to_end(&mut rest).await.unwrap();
            rest.is_empty()
        }
    }

    #[tokio::test]
    async fn pings_are_answered_while_messages_flow() {
        let (mut peer, mut ws) = Peer::pair(1024);
        peer.write(|w, out| {
            w.ping(b"are you there", out).unwrap();
            w.text("after the ping", out).unwrap();
        })
        .await;
        assert_eq!(
            ws.recv().await.unwrap(),
            Some(Message::Text("after the ping".into()))
        );
        assert_eq!(peer.event().await, Event::Pong("are you there".into()));
    }

    #[tokio::test]
    async fn a_violation_is_answered_with_its_close_code_then_reported() {
        let (mut peer, mut ws) = Peer::pair(1024);
        // Invalid UTF-8 in a text frame: 1007.
        peer.write(|w, out| w.binary(b"ok", out).unwrap()).await;
        let mut bad = BytesMut::new();
        crate::Frame::new(crate::OpCode::Text, &b"\xff"[..]).encode(Some([9; 4]), &mut bad);
        peer.io.write_all(&bad).await.unwrap();
        assert!(matches!(ws.recv().await, Ok(Some(Message::Binary(_)))));
        let err = ws.recv().await.unwrap_err();
        assert!(
            matches!(err, WebSocketError::Protocol(ProtocolError::InvalidUtf8)),
            "{err:?}"
        );
        let Event::Close(Some(frame)) = peer.event().await else {
            panic!("expected a close frame with a code");
        };
        assert_eq!(frame.code, CloseCode::INVALID_PAYLOAD);
        assert_eq!(&*frame.reason, ProtocolError::InvalidUtf8.to_string());
        assert!(peer.at_eof().await, "the server closes the transport");
        assert!(ws.recv().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_peer_close_is_echoed_once_and_the_server_hangs_up() {
        let (mut peer, mut ws) = Peer::pair(1024);
        let bye = CloseFrame::new(CloseCode(4000), "bye");
        peer.write(|w, out| w.close(Some(&bye), out).unwrap()).await;
        assert_eq!(ws.recv().await.unwrap(), None);
        assert_eq!(ws.close_frame(), Some(&bye));
        assert_eq!(ws.close_state(), CloseState::Closed);
        assert_eq!(
            peer.event().await,
            Event::Close(Some(CloseFrame::new(CloseCode(4000), "")))
        );
        assert!(peer.at_eof().await);
        assert!(matches!(
            ws.send(Message::Text("late".into())).await,
            Err(WebSocketError::Write(crate::WriteError::Closed))
        ));
    }

    #[tokio::test]
    async fn a_transport_that_ends_without_close_is_an_eof_error() {
        let (peer, mut ws) = Peer::pair(1024);
        drop(peer);
        let err = ws.recv().await.unwrap_err();
        assert!(
            matches!(&err, WebSocketError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn reserved_close_codes_are_not_sent() {
        let (_peer, mut ws) = Peer::pair(1024);
        assert!(matches!(
            ws.close(CloseCode::NO_STATUS, "").await,
            Err(WebSocketError::InvalidCloseCode(CloseCode::NO_STATUS))
        ));
        assert_eq!(ws.close_state(), CloseState::Open);
    }

    #[tokio::test]
    async fn a_cancelled_send_never_tears_a_frame() {
        // A 64-byte pipe: a 100 KiB frame cannot be written until the peer reads.
        let (mut peer, mut ws) = Peer::pair(64);
        let big = Message::Binary(vec![7; 100 * 1024].into());
        let cancelled = tokio::time::timeout(Duration::from_millis(20), ws.send(big.clone())).await;
        assert!(cancelled.is_err(), "the send blocks on the full pipe");
        // The next send finishes the torn frame first, then sends its own.
        let reader = tokio::spawn(async move {
            let first = peer.event().await;
            let second = peer.event().await;
            (first, second)
        });
        ws.send(Message::Text("next".into())).await.unwrap();
        let (first, second) = reader.await.unwrap();
        assert_eq!(first, Event::Message(big));
        assert_eq!(second, Event::Message(Message::Text("next".into())));
    }

    #[tokio::test]
    async fn split_halves_answer_pings_from_the_receive_task() {
        let (mut peer, ws) = Peer::pair(1024);
        let (mut rx, tx) = ws.split();
        let receiver = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(message) = rx.recv().await.unwrap() {
                got.push(message);
            }
            (got, rx.close_frame().cloned())
        });
        tx.send(Message::Text("from the send half".into()))
            .await
            .unwrap();
        assert_eq!(
            peer.event().await,
            Event::Message(Message::Text("from the send half".into()))
        );
        peer.write(|w, out| w.ping(b"p", out).unwrap()).await;
        assert_eq!(peer.event().await, Event::Pong("p".into()));

        // We close from the send half; the receive half reads the answer and the
        // server hangs up.
        tx.close(CloseCode::GOING_AWAY, "shutting down")
            .await
            .unwrap();
        assert_eq!(
            peer.event().await,
            Event::Close(Some(CloseFrame::new(
                CloseCode::GOING_AWAY,
                "shutting down"
            )))
        );
        peer.write(|w, out| {
            w.text("still in flight", out).unwrap();
            let reply = CloseFrame::new(CloseCode::GOING_AWAY, "");
            w.close(Some(&reply), out).unwrap();
        })
        .await;
        let (got, close) = receiver.await.unwrap();
        assert_eq!(got, [Message::Text("still in flight".into())]);
        assert_eq!(close.map(|c| c.code), Some(CloseCode::GOING_AWAY));
        assert_eq!(tx.close_state().await, CloseState::Closed);
        assert!(peer.at_eof().await);
    }
}
