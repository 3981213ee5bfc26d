//! The read pump: socket → [`rfc6455::Reader`] → replies into the outbox, commands to the hub.
//!
//! Idle connections hold no receive buffer: the pump waits for readability first and only
//! then reserves a buffer and reads; once every complete frame is consumed and the buffer is
//! empty, the buffer is released.
//!
//! Replies to one read (echoes, pongs) are encoded together into [`Replies`] and sent when
//! the read is decoded, written at once by this task when nothing else is queued (see
//! [`Outbox::send_batch`]); the write pump only takes what the socket does not.
//!
//! A read that does not fill the buffer has drained the socket, so the pump then waits for
//! readiness instead of issuing a second read that would only return `EAGAIN`.

use std::io::{self, ErrorKind, IoSlice};
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use rfc6455::deflate::DeflateParams;
use rfc6455::{CloseCode, Event, Frame, Message, ProtocolError, Reader, Utf8Bytes};
use tokio::io::Interest;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc::error::TrySendError;

use super::replies::Replies;
use super::Mode;
use crate::chat::session::{Io, Outcome};
use crate::context::ServerCtx;
use crate::hub::Command;
use crate::ids::{ClientId, ConversationId};
use crate::metrics;
use crate::outbox::{Outbox, Push, MAX_IOV};
use crate::wire;

/// Smallest read; also the size of a fresh buffer.
const READ_CHUNK: usize = 4096;
/// Largest single reservation, so a peer announcing a huge frame and then trickling bytes
/// cannot make us allocate the whole frame up front.
const MAX_RESERVE: usize = 64 * 1024;
/// The reservation after a read that filled the buffer (the peer has more waiting): larger
/// reads mean fewer, larger replies, which costs less on both sides of the socket (16 KiB
/// echoes: about 1.5x the messages per second of 64 KiB reads). A trickling peer never
/// fills a read, so it never gets this much.
const STREAMING_READ: usize = 256 * 1024;

/// Why the read pump stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The peer closed the TCP stream or it failed.
    Eof,
    /// The connection was killed (sweep, writer failure, timeout).
    Killed,
    /// The peer sent Close; a reply is queued unless we had sent ours.
    PeerClosed,
    /// We queued a Close because of the peer's input.
    Refused,
    /// The hub is gone (shutdown).
    HubClosed,
}

/// The receive side of one connection.
#[derive(Debug)]
pub(crate) struct ReadPump {
    pub(crate) rd: OwnedReadHalf,
    /// Bytes already read (possibly left over from the handshake).
    pub(crate) buf: BytesMut,
    /// Decoder and message state; dropped whenever it is idle and the buffer is empty, so an
    /// idle connection carries none of it (it is rebuilt from the config on the next bytes).
    pub(crate) reader: Option<Box<Reader>>,
    /// permessage-deflate as agreed at the upgrade; the reader is built with it.
    pub(crate) deflate: Option<DeflateParams>,
    /// Replies to the current read, sent once it is decoded (empty and released when idle).
    pub(crate) replies: Replies,
    /// The last read filled the buffer: read more at once next time.
    pub(crate) streaming: bool,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) client: ClientId,
    pub(crate) mode: Mode,
    pub(crate) ctx: Arc<ServerCtx>,
}

/// What the read loop does after an event; the waits live in the loop (boxed when slow) so
/// event handling itself adds nothing to the resting size of the pump's future.
enum Step {
    Continue,
    End(End),
    Broadcast(ConversationId, Bytes),
    /// A chat message for the session.
    Chat(Utf8Bytes),
    /// A binary chat message (a file chunk) for the session.
    ChatBinary(Bytes),
}

impl ReadPump {
    /// Runs until the connection ends, then unregisters from the hub.
    ///
    /// A plain `fn` returning an `async move` block on purpose: an `async fn` taking `self` by
    /// value stores it twice in its future (once as the argument, once as the local), and this
    /// future lives as long as the connection.
    #[allow(clippy::manual_async_fn)] // deliberate, see above
    pub(crate) fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let end = self.read_loop().await;
            tracing::debug!(client = %self.client, ?end, "read pump finished");
            self.outbox.reader_finished();
            // Release the buffer before a possibly waiting hub send.
            self.buf = BytesMut::new();
            let unregister = Command::Unregister {
                client: self.client,
            };
            let _ = self.to_hub(unregister).await;
        }
    }

    async fn read_loop(&mut self) -> End {
        if matches!(self.mode, Mode::Chat(_)) && !Box::pin(self.session(None)).await {
            return End::Refused;
        }
        loop {
            while !self.buf.is_empty() {
                let event = match self.next_event() {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(err) => return self.protocol_error(&err),
                };
                match self.on_event(event) {
                    Step::Continue => {}
                    Step::End(end) => return end,
                    Step::Chat(text) => {
                        if !Box::pin(self.session(Some(text))).await {
                            return End::Refused;
                        }
                    }
                    Step::ChatBinary(data) => {
                        if !Box::pin(self.session_binary(data)).await {
                            return End::Refused;
                        }
                    }
                    Step::Broadcast(conversation, frame) => {
                        let cmd = Command::Broadcast {
                            conversation,
                            from: Some(self.client),
                            frame,
                        };
                        if !self.to_hub(cmd).await {
                            return End::HubClosed;
                        }
                    }
                }
                if self.replies.is_full() && !self.flush().await {
                    return End::Killed;
                }
            }
            if !self.flush().await {
                return End::Killed;
            }
            if !self.streaming
                && self.buf.capacity() > MAX_RESERVE
                && !self.buf.is_empty()
                && self.buf.len() < MAX_RESERVE / 2
            {
                // A peer that streamed and now trickles the rest of a frame keeps no more than
                // a normal reservation while it does.
                self.buf = BytesMut::from(&self.buf[..]);
            }
            if self.buf.is_empty() {
                if self.buf.capacity() > 0 {
                    self.buf = BytesMut::new();
                }
                // A reader whose peer keeps deflate context holds history a new one
                // would lack: it stays.
                if self
                    .reader
                    .as_ref()
                    .is_some_and(|r| r.is_idle() && !r.holds_history())
                {
                    self.reader = None;
                    self.replies.release();
                }
            }
            // One small `poll_fn` instead of a `select!` over a readiness future and a kill
            // future: this is the state an idle connection rests in.
            let wake = std::future::poll_fn(|cx| {
                if self.outbox.register_reader(cx.waker()) {
                    return Poll::Ready(Ok(false));
                }
                self.rd.as_ref().poll_read_ready(cx).map_ok(|()| true)
            })
            .await;
            match wake {
                Ok(true) => {}
                Ok(false) => return End::Killed,
                Err(_) => return End::Eof,
            }
            match self.read_some() {
                Ok(0) => return End::Eof,
                Ok(n) => {
                    metrics::add(&self.ctx.metrics.bytes_in, n as u64);
                    // Any bytes from the peer are a sign of life, even part of a frame.
                    self.outbox.mark_alive();
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return End::Eof,
            }
        }
    }

    /// Decodes the next event from the buffer, building the reader if the connection was
    /// idle. A plain `fn`, so its locals never add to the pump's future.
    fn next_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        let codec = match self.deflate {
            Some(agreed) => self.ctx.codec.with_deflate(agreed),
            None => self.ctx.codec,
        };
        let reader = self
            .reader
            .get_or_insert_with(|| Box::new(Reader::new(codec)));
        let event = reader.read(&mut self.buf)?;
        if let (Some(Event::Message(_)), Some(size)) = (&event, reader.last_compressed()) {
            let m = &self.ctx.metrics.deflate;
            metrics::inc(&m.messages_in);
            metrics::add(&m.bytes_in, size.compressed as u64);
            metrics::add(&m.plain_bytes_in, size.inflated as u64);
        }
        Ok(event)
    }

    /// One read into the buffer. A read that leaves room in the buffer has drained the
    /// socket, so it also clears the socket's read readiness: the next wait then sleeps until
    /// the peer sends more, instead of returning at once for a read that finds nothing.
    /// Readiness is cleared only if no new readiness arrived since before the read (tokio
    /// compares its readiness tick), so no wake-up is lost.
    fn read_some(&mut self) -> io::Result<usize> {
        let want = if self.streaming {
            STREAMING_READ
        } else {
            let needed = self.reader.as_ref().map_or(0, |r| r.needed());
            needed.clamp(READ_CHUNK, MAX_RESERVE)
        };
        self.buf.reserve(want);
        let room = self.buf.capacity() - self.buf.len();
        let mut got = None;
        let socket = self.rd.as_ref();
        let result = socket.try_io(Interest::READABLE, || {
            let n = socket.try_read_buf(&mut self.buf)?;
            got = Some(n);
            self.streaming = n == room;
            if n > 0 && n < room {
                // Drained: report "would block" so `try_io` clears the readiness.
                return Err(ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (result, got) {
            (_, Some(n)) => Ok(n),
            (Err(e), None) => Err(e),
            (Ok(n), None) => Ok(n),
        }
    }

    /// Sends the pending replies. In echo mode, waits while the client is behind (echo
    /// applies backpressure instead of dropping: conformance suites expect every message
    /// back, and a peer that does not read simply stops being read). `false` if the
    /// connection was killed. The waits are rare and boxed (see `to_hub`).
    async fn flush(&mut self) -> bool {
        if self.replies.is_empty() {
            return true;
        }
        if !matches!(self.mode, Mode::Echo) {
            // Chat and broadcast replies are pongs only: never wait for them (a client too
            // far behind to take a pong is about to be evicted by the hub).
            self.flush_now();
            return true;
        }
        loop {
            match self.send_replies(false) {
                Push::Sent | Push::Queued => return true,
                Push::Closed => return false,
                Push::Backlogged { .. } => return Box::pin(self.until_caught_up()).await,
                Push::Overflow => {
                    if !Box::pin(self.wait_for_room()).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Sends or queues the pending replies without waiting (before a Close, which must come
    /// after them).
    fn flush_now(&mut self) {
        let _ = self.send_replies(true);
    }

    /// Hands the pending replies to the outbox in one batch (see [`Outbox::send_batch`]);
    /// they stay pending only on [`Push::Overflow`]. A plain `fn`, so the slice array lives
    /// on the stack of this call and never in the pump's future.
    fn send_replies(&mut self, force: bool) -> Push {
        if self.replies.is_empty() {
            return Push::Queued;
        }
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = self.replies.io_slices(&mut iov);
        let replies = &self.replies;
        let pushed = self.outbox.send_batch(
            &iov[..n],
            replies.frames(),
            force,
            &self.ctx.metrics,
            |written, queue| replies.unwritten(written, queue),
        );
        if pushed != Push::Overflow {
            self.replies.clear();
        }
        pushed
    }

    fn protocol_error(&mut self, err: &ProtocolError) -> End {
        metrics::inc(&self.ctx.metrics.protocol_errors);
        self.ctx.metrics.count_client_close(err.close_code());
        self.flush_now();
        tracing::debug!(client = %self.client, error = %err, code = err.close_code().0, "protocol error");
        self.outbox
            .close(wire::close(err.close_code(), &err.to_string()), false);
        End::Refused
    }

    fn on_event(&mut self, event: Event) -> Step {
        metrics::inc(&self.ctx.metrics.frames_in);
        match event {
            Event::Ping(payload) => {
                self.replies.push_frame(&Frame::pong(payload));
                Step::Continue
            }
            Event::Pong(_) => Step::Continue,
            Event::Close(frame) => {
                // Echo the peer's code (RFC 6455 §5.5.1); no code in, no code out.
                let reply = match &frame {
                    Some(f) => wire::close(f.code, ""),
                    None => wire::encode(&Frame::close(None)),
                };
                self.flush_now();
                // Returns false when our own Close was already queued: nothing more to send.
                self.outbox.close(reply, false);
                Step::End(End::PeerClosed)
            }
            Event::Message(message) => {
                metrics::inc(&self.ctx.metrics.messages_in);
                match self.mode {
                    Mode::Echo => {
                        self.echo(message);
                        Step::Continue
                    }
                    Mode::Chat(_) => self.chat(message),
                    Mode::Broadcast(conversation) => self.broadcast(conversation, message),
                }
            }
        }
    }

    /// `/echo`: the message back, compressed with the thread's shared compressor where the
    /// connection agreed to deflate without server context takeover. A connection with its
    /// own compressor gets it back plain: its compressor must see frames in wire order,
    /// which only the outbox knows, and replies bypass it.
    fn echo(&mut self, message: Message) {
        let opcode = message.opcode();
        let payload = message.as_bytes();
        if let Some(threshold) = self.outbox.shared_deflate() {
            let metrics = &self.ctx.metrics;
            if let Some(frame) = wire::deflate_message_shared(opcode, payload, threshold, metrics) {
                metrics::inc(&metrics.deflate.deliveries);
                self.replies.push_encoded(&frame);
                return;
            }
        }
        self.replies.push_frame(&message.into_frame());
    }

    /// `/ws`: the heartbeat is answered here, every other text goes to the chat session.
    fn chat(&mut self, message: Message) -> Step {
        match message {
            Message::Text(text) if text == "ping" => self.pong(),
            Message::Text(text) => Step::Chat(text),
            Message::Binary(data) => Step::ChatBinary(data),
        }
    }

    /// Hands a binary message (a file chunk) to the chat session; `false` when it closed
    /// the connection. Boxed by the caller, like [`ReadPump::session`].
    async fn session_binary(&mut self, data: Bytes) -> bool {
        let Mode::Chat(session) = &mut self.mode else {
            return true;
        };
        let io = Io {
            ctx: &self.ctx,
            client: self.client,
            outbox: &self.outbox,
        };
        match session.on_binary(data, io).await {
            Outcome::Continue => true,
            Outcome::Close(code, reason) => {
                if code == CloseCode::POLICY_VIOLATION {
                    // Ignored rate limits, counted like the text path's.
                    self.ctx.metrics.count_client_close(code);
                } else {
                    metrics::inc(&self.ctx.metrics.protocol_errors);
                }
                self.flush_now();
                self.outbox.close(wire::close(code, reason), false);
                false
            }
        }
    }

    /// Hands a text message to the chat session (or, with `None`, starts it: the upgrade's
    /// `?token=`); `false` when the session closed the connection. Callers box this future:
    /// it awaits the store and the hub, and its state must not add to the resting size of
    /// the pump's future.
    async fn session(&mut self, text: Option<Utf8Bytes>) -> bool {
        let Mode::Chat(session) = &mut self.mode else {
            return true;
        };
        let io = Io {
            ctx: &self.ctx,
            client: self.client,
            outbox: &self.outbox,
        };
        let outcome = match &text {
            Some(text) => session.on_text(text, io).await,
            None => session.start(io).await,
        };
        match outcome {
            Outcome::Continue => true,
            Outcome::Close(code, reason) => {
                self.flush_now();
                if code.0 >= 4000 || code == CloseCode::POLICY_VIOLATION {
                    self.ctx.metrics.count_client_close(code);
                }
                self.outbox.close(wire::close(code, reason), false);
                false
            }
        }
    }

    /// `/broadcast`: every text but the heartbeat goes to the conversation's other members.
    fn broadcast(&mut self, conversation: ConversationId, message: Message) -> Step {
        match message {
            Message::Text(text) if text == "ping" => self.pong(),
            // Encoded once here, on this connection's thread; the hub only clones it.
            Message::Text(text) => Step::Broadcast(conversation, wire::encode(&Frame::text(text))),
            Message::Binary(_) => self.refuse_binary(),
        }
    }

    /// The text `pong` answering a text `ping` (browsers cannot send protocol pings).
    fn pong(&mut self) -> Step {
        self.replies.push_encoded(&self.ctx.pong_text);
        Step::Continue
    }

    /// Binary frames are refused where they mean nothing (STYLE §3.3: 1003).
    fn refuse_binary(&mut self) -> Step {
        self.flush_now();
        self.outbox.close(
            wire::close(
                CloseCode::UNSUPPORTED_DATA,
                "binary messages are not supported",
            ),
            false,
        );
        Step::End(End::Refused)
    }

    /// Sends a command to the hub; `false` if the hub is gone. Queuing is synchronous when
    /// there is room; only the wait for room is an `.await`, boxed: this pump's future is
    /// allocated at its largest size for the life of the connection, so rare waits must not
    /// add to it (the per-connection memory budget is 2 KiB).
    async fn to_hub(&self, cmd: Command) -> bool {
        match self.ctx.hub.try_send(cmd) {
            Ok(()) => true,
            Err(TrySendError::Closed(_)) => false,
            Err(TrySendError::Full(cmd)) => Box::pin(self.ctx.hub.send_command(cmd)).await.is_ok(),
        }
    }

    async fn until_caught_up(&self) -> bool {
        while self.outbox.backlog_since().is_some() {
            if !self.wait_for_room().await {
                return false;
            }
        }
        true
    }

    /// Waits for the writer to make progress; `false` if the connection was killed (a kill
    /// also wakes this wait).
    async fn wait_for_room(&self) -> bool {
        if self.outbox.is_killed() {
            return false;
        }
        self.outbox.room().await;
        !self.outbox.is_killed()
    }
}
