//! The read pump: socket → [`rfc6455::Reader`] → replies into the outbox, commands to the hub.
//!
//! Idle connections hold no receive buffer: the pump waits for readability first and only
//! then reserves a buffer and reads; once every complete frame is consumed and the buffer is
//! empty, the buffer is released.

use std::io::ErrorKind;
use std::sync::Arc;

use bytes::BytesMut;
use rfc6455::{CloseCode, Event, Frame, Message, ProtocolError, Reader};
use tokio::net::tcp::OwnedReadHalf;

use super::Mode;
use crate::context::ServerCtx;
use crate::ids::ClientId;
use crate::metrics;
use crate::outbox::{Outbox, Push};
use crate::wire;

/// Smallest read; also the size of a fresh buffer.
const READ_CHUNK: usize = 4096;
/// Largest single reservation, so a peer announcing a huge frame and then trickling bytes
/// cannot make us allocate the whole frame up front.
const MAX_RESERVE: usize = 64 * 1024;

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
    pub(crate) reader: Reader,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) client: ClientId,
    pub(crate) mode: Mode,
    pub(crate) ctx: Arc<ServerCtx>,
}

impl ReadPump {
    /// Runs until the connection ends, then unregisters from the hub.
    pub(crate) async fn run(mut self) {
        let end = self.read_loop().await;
        tracing::debug!(client = %self.client, ?end, "read pump finished");
        self.outbox.reader_finished();
        // Release the buffer before a possibly waiting hub send.
        self.buf = BytesMut::new();
        let _ = self.ctx.hub.unregister(self.client).await;
    }

    async fn read_loop(&mut self) -> End {
        loop {
            loop {
                let event = match self.reader.read(&mut self.buf) {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(err) => return self.protocol_error(&err),
                };
                if let Some(end) = self.on_event(event).await {
                    return end;
                }
            }
            if self.buf.is_empty() && self.buf.capacity() > 0 {
                self.buf = BytesMut::new();
            }
            tokio::select! {
                biased;
                () = self.outbox.killed() => return End::Killed,
                ready = self.rd.readable() => if ready.is_err() { return End::Eof },
            }
            let want = self.reader.needed().clamp(READ_CHUNK, MAX_RESERVE);
            self.buf.reserve(want);
            match self.rd.try_read_buf(&mut self.buf) {
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

    fn protocol_error(&self, err: &ProtocolError) -> End {
        metrics::inc(&self.ctx.metrics.protocol_errors);
        tracing::warn!(client = %self.client, error = %err, code = err.close_code().0, "protocol error");
        self.outbox
            .close(wire::close(err.close_code(), &err.to_string()), false);
        End::Refused
    }

    async fn on_event(&mut self, event: Event) -> Option<End> {
        metrics::inc(&self.ctx.metrics.frames_in);
        match event {
            Event::Ping(payload) => {
                // A peer too far behind to take a pong is about to be evicted by the hub.
                let _ = self.outbox.push(wire::encode(&Frame::pong(payload)));
                None
            }
            Event::Pong(_) => None,
            Event::Close(frame) => {
                // Echo the peer's code (RFC 6455 §5.5.1); no code in, no code out.
                let reply = match &frame {
                    Some(f) => wire::close(f.code, ""),
                    None => wire::encode(&Frame::close(None)),
                };
                // Returns false when our own Close was already queued: nothing more to send.
                self.outbox.close(reply, false);
                Some(End::PeerClosed)
            }
            Event::Message(message) => {
                metrics::inc(&self.ctx.metrics.messages_in);
                match self.mode {
                    Mode::Echo => self.echo(message).await,
                    Mode::Chat(conversation) => self.chat(conversation, message).await,
                }
            }
        }
    }

    /// Echo applies backpressure instead of dropping: conformance suites expect every message
    /// back, and a peer that does not read simply stops being read.
    async fn echo(&mut self, message: Message) -> Option<End> {
        let frame = wire::encode(&message.into_frame());
        loop {
            match self.outbox.push(frame.clone()) {
                Push::Queued => return None,
                Push::Closed => return Some(End::Killed),
                // Queued, but the peer is behind: stop reading until it catches up.
                Push::Backlogged { .. } => {
                    while self.outbox.backlog_since().is_some() {
                        if !self.wait_for_room().await {
                            return Some(End::Killed);
                        }
                    }
                    return None;
                }
                Push::Overflow => {
                    if !self.wait_for_room().await {
                        return Some(End::Killed);
                    }
                }
            }
        }
    }

    /// Waits for the writer to make progress; `false` if the connection was killed.
    async fn wait_for_room(&self) -> bool {
        tokio::select! {
            biased;
            () = self.outbox.killed() => false,
            () = self.outbox.room() => true,
        }
    }

    async fn chat(
        &mut self,
        conversation: Option<crate::ids::ConversationId>,
        message: Message,
    ) -> Option<End> {
        match message {
            Message::Text(text) if text == "ping" => {
                let _ = self.outbox.push(self.ctx.pong_text.clone());
                None
            }
            Message::Text(text) => {
                let conversation = conversation?;
                // Encoded once here, on this connection's thread; the hub only clones it.
                let frame = wire::encode(&Frame::text(text));
                match self
                    .ctx
                    .hub
                    .broadcast(conversation, Some(self.client), frame)
                    .await
                {
                    Ok(()) => None,
                    Err(_) => Some(End::HubClosed),
                }
            }
            // The chat protocol is text-only until file transfer exists (STYLE §3.3: 1003).
            Message::Binary(_) => {
                self.outbox.close(
                    wire::close(
                        CloseCode::UNSUPPORTED_DATA,
                        "binary messages are not supported",
                    ),
                    false,
                );
                Some(End::Refused)
            }
        }
    }
}
