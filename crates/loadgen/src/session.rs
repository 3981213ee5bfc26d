//! One client connection: TCP connect from a chosen loopback source, the opening handshake
//! through `rfc6455::ClientHandshake`, and non-blocking frame I/O around the codec.
//!
//! Sessions never spawn anything; the scenarios drive them with `try_read`/`try_write` and
//! wait on readiness themselves, so one read and one write system call serve a whole batch.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::{Buf as _, Bytes, BytesMut};
use rfc6455::deflate::{ClientMaxWindowBits, DeflateOffer};
use rfc6455::{
    encode_frame, ClientHandshake, CloseCode, CloseFrame, CodecConfig, Decoder, Frame, FrameHeader,
    OpCode,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// Where and how a scenario connects.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The server's loopback address.
    pub(crate) addr: SocketAddr,
    /// Connections per source address before moving to the next 127.0.0.x; the kernel
    /// hands out about 28,000 ephemeral ports per source address.
    pub(crate) per_source: usize,
    /// Bound on connect plus handshake.
    pub(crate) connect_timeout: Duration,
    /// Offer permessage-deflate as a browser does, and fail a connection the server does
    /// not agree to it on.
    pub(crate) deflate: bool,
}

/// The source address for the `index`-th connection: 127.0.0.1 for the first block, then
/// 127.0.0.2, 127.0.0.3, ... (`None` means "let the kernel choose", the cheap path).
pub(crate) fn source_for(index: usize, per_source: usize) -> anyhow::Result<Option<IpAddr>> {
    let block = index / per_source.max(1);
    if block == 0 {
        return Ok(None);
    }
    match u8::try_from(block + 1) {
        Ok(last) if last < 255 => Ok(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))),
        _ => bail!("connection {index} needs more than 254 source addresses"),
    }
}

/// A per-connection masking key; frames are masked once, ahead of time, with it.
///
/// RFC 6455 wants unpredictable keys to protect intermediaries; on loopback against our own
/// servers a fixed key per connection is enough and keeps masking out of the hot path.
pub(crate) fn mask_for(index: usize) -> [u8; 4] {
    let x = (index as u32 ^ 0x5bd1_e995).wrapping_mul(0x9e37_79b9);
    x.to_le_bytes()
}

fn nonce_for(index: usize) -> [u8; 16] {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&t.to_le_bytes());
    nonce[8..].copy_from_slice(
        &(index as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .to_le_bytes(),
    );
    nonce
}

/// An open WebSocket client connection.
#[derive(Debug)]
pub(crate) struct Session {
    /// The socket, non-blocking, `TCP_NODELAY` set.
    pub(crate) stream: TcpStream,
    /// Bytes read and not yet decoded.
    pub(crate) rbuf: BytesMut,
    /// Bytes encoded and not yet written.
    pub(crate) wbuf: BytesMut,
    /// This connection's masking key.
    pub(crate) mask: [u8; 4],
    /// Send frames unmasked, as a server would: only towards the raw TCP fan-out yardstick,
    /// which relays the publisher's bytes as they are, so the subscribers must get frames a
    /// server may send.
    pub(crate) unmasked: bool,
    decoder: Decoder,
}

/// What a read found on the wire, besides data frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// More bytes may come.
    Open,
    /// The server sent a close frame or closed the socket.
    Closed,
}

impl Session {
    /// Connects the `index`-th connection of a scenario and completes the handshake for
    /// `resource` (path and query).
    pub(crate) async fn open(
        target: &Target,
        index: usize,
        resource: &str,
    ) -> anyhow::Result<Self> {
        tokio::time::timeout(
            target.connect_timeout,
            Self::open_inner(target, index, resource),
        )
        .await
        .with_context(|| format!("connect + handshake took over {:?}", target.connect_timeout))?
    }

    async fn open_inner(target: &Target, index: usize, resource: &str) -> anyhow::Result<Self> {
        let mut stream = match source_for(index, target.per_source)? {
            None => TcpStream::connect(target.addr).await.context("connect")?,
            Some(ip) => {
                let socket = TcpSocket::new_v4()?;
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .with_context(|| format!("bind {ip}"))?;
                socket.connect(target.addr).await.context("connect")?
            }
        };
        stream.set_nodelay(true)?;
        let mut handshake =
            ClientHandshake::new(&target.addr.to_string(), resource, nonce_for(index));
        if target.deflate {
            handshake = handshake.with_deflate(DeflateOffer {
                client_max_window_bits: ClientMaxWindowBits::Supported,
                ..DeflateOffer::default()
            });
        }
        let mut wbuf = BytesMut::with_capacity(256);
        handshake
            .write_request(&mut wbuf)
            .context("build handshake")?;
        stream.write_all(&wbuf).await.context("send handshake")?;
        wbuf.clear();
        let mut rbuf = BytesMut::with_capacity(512);
        loop {
            if stream.read_buf(&mut rbuf).await.context("read handshake")? == 0 {
                bail!("server closed during the handshake");
            }
            if let Some((answer, used)) = handshake.parse_response(&rbuf)? {
                rbuf.advance(used);
                if target.deflate && answer.deflate.is_none() {
                    bail!("the server declined permessage-deflate");
                }
                break;
            }
        }
        // With deflate agreed the server may set RSV1 on data frames; they are decoded as
        // frames (scenarios that use deflate only count them).
        let codec = if target.deflate {
            CodecConfig::client().with_allowed_rsv(0b100)
        } else {
            CodecConfig::client()
        };
        Ok(Self {
            stream,
            rbuf,
            wbuf,
            mask: mask_for(index),
            unmasked: false,
            decoder: Decoder::new(codec),
        })
    }

    /// Reads what the socket holds without waiting. `Ok(0)` means nothing was ready,
    /// [`Wire::Closed`] an orderly shutdown by the server.
    pub(crate) fn try_read(&mut self) -> io::Result<(usize, Wire)> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(64 * 1024);
        }
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => Ok((0, Wire::Closed)),
            Ok(n) => Ok((n, Wire::Open)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((0, Wire::Open)),
            Err(e) => Err(e),
        }
    }

    /// The next complete frame in the read buffer.
    pub(crate) fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        Ok(self.decoder.decode(&mut self.rbuf)?)
    }

    /// Consumes the next frame without building it when it is a complete, final, unmasked
    /// data frame with no RSV bits (what a server sends), returning its opcode and payload
    /// length; with `allow_masked`, masked ones too (a raw TCP echo sends our own masked
    /// frames back). Anything else is left for [`next_frame`](Self::next_frame), which also
    /// reports violations. Counting echoes this way costs no allocation or reference count.
    pub(crate) fn skip_frame(&mut self, allow_masked: bool) -> Option<(OpCode, usize)> {
        if self.decoder.is_mid_frame() {
            return None;
        }
        let (header, header_len) = FrameHeader::parse(&self.rbuf).ok()??;
        if header.opcode.is_control()
            || !header.fin
            || header.rsv != 0
            || (header.mask.is_some() && !allow_masked)
        {
            return None;
        }
        let len = usize::try_from(header.payload_len).ok()?;
        if len > self.decoder.config().max_frame_len as usize || self.rbuf.len() < header_len + len
        {
            return None;
        }
        self.rbuf.advance(header_len + len);
        Some((header.opcode, len))
    }

    /// Handles a control frame the way a client must: pings are answered (queued in the
    /// write buffer), a close ends the session. Returns `None` for data frames, which the
    /// scenario handles itself.
    pub(crate) fn on_control(&mut self, frame: &Frame) -> Option<Wire> {
        match frame.opcode {
            OpCode::Ping => {
                self.queue(&Frame::pong(frame.payload.clone()));
                Some(Wire::Open)
            }
            OpCode::Pong => Some(Wire::Open),
            OpCode::Close => Some(Wire::Closed),
            _ => None,
        }
    }

    /// Encodes `frame`, masked (unless [`unmasked`](Self::unmasked)), onto the write buffer.
    pub(crate) fn queue(&mut self, frame: &Frame) {
        encode_frame(frame, self.key(), &mut self.wbuf);
    }

    /// The masking key frames are sent with.
    fn key(&self) -> Option<[u8; 4]> {
        (!self.unmasked).then_some(self.mask)
    }

    /// Writes as much of the write buffer as the socket takes without waiting.
    pub(crate) fn try_flush(&mut self) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            match self.stream.try_write(&self.wbuf) {
                Ok(n) => self.wbuf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends a ping and waits for its pong, answering the server's own pings meanwhile;
    /// data frames that arrive in between are skipped. Proves the server still serves
    /// this connection.
    pub(crate) async fn ping_pong(&mut self, deadline: Instant) -> anyhow::Result<()> {
        self.queue(&Frame::ping(Bytes::from_static(b"alive?")));
        let result = tokio::time::timeout_at(deadline.into(), async {
            loop {
                self.stream.write_all(&self.wbuf).await?;
                self.wbuf.clear();
                while let Some(frame) = self.next_frame()? {
                    if frame.opcode == OpCode::Pong && &frame.payload[..] == b"alive?" {
                        return Ok(());
                    }
                    if self.on_control(&frame) == Some(Wire::Closed) {
                        bail!("server closed the connection");
                    }
                }
                if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                    bail!("server closed the socket");
                }
            }
        })
        .await;
        result.unwrap_or_else(|_| bail!("no pong before the deadline"))
    }

    /// Starts the closing handshake and waits (bounded) for the server to finish it, so
    /// the server, not the generator, holds the TIME_WAIT state.
    pub(crate) async fn close(mut self, wait: Duration) {
        self.wbuf.clear();
        let frame = Frame::close(Some(&CloseFrame::new(CloseCode::NORMAL, "")));
        encode_frame(&frame, self.key(), &mut self.wbuf);
        let _ = tokio::time::timeout(wait, async {
            self.stream.write_all(&self.wbuf).await?;
            let mut sink = [0u8; 4096];
            while self.stream.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
    }
}

/// `count` copies of one frame, masked with `mask`, back to back: the write buffer a
/// closed-loop sender slices from instead of encoding each message.
pub(crate) fn repeated_frame(frame: &Frame, mask: [u8; 4], count: usize) -> (Bytes, usize) {
    let mut one = BytesMut::new();
    encode_frame(frame, Some(mask), &mut one);
    let len = one.len();
    let mut all = BytesMut::with_capacity(len * count);
    for _ in 0..count {
        all.extend_from_slice(&one);
    }
    (all.freeze(), len)
}

/// Closes every session concurrently, each bounded by `wait`.
pub(crate) async fn close_all(sessions: Vec<Session>, wait: Duration) {
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|s| tokio::task::spawn_local(s.close(wait)))
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_rotate_past_each_block() {
        assert_eq!(source_for(0, 25_000).unwrap(), None);
        assert_eq!(source_for(24_999, 25_000).unwrap(), None);
        assert_eq!(
            source_for(25_000, 25_000).unwrap(),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        );
        assert_eq!(
            source_for(60_000, 25_000).unwrap(),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)))
        );
        assert!(source_for(300 * 25_000, 25_000).is_err());
    }

    #[tokio::test]
    async fn skipping_data_frames_leaves_the_rest_to_the_decoder() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let mut session = Session {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            mask: [0; 4],
            unmasked: false,
            decoder: Decoder::new(CodecConfig::client()),
        };
        for frame in [
            Frame::binary(&b"hello"[..]),
            Frame::ping(&b"p"[..]),
            Frame::binary(&b"abc"[..]),
        ] {
            encode_frame(&frame, None, &mut session.rbuf);
        }
        session.rbuf.truncate(session.rbuf.len() - 1); // the last frame is still arriving
        assert_eq!(session.skip_frame(false), Some((OpCode::Binary, 5)));
        assert_eq!(session.skip_frame(false), None, "a ping is not skipped");
        let ping = session.next_frame().unwrap().unwrap();
        assert_eq!(session.on_control(&ping), Some(Wire::Open));
        assert!(!session.wbuf.is_empty(), "the pong is queued");
        assert_eq!(session.skip_frame(false), None, "incomplete");
        session.rbuf.extend_from_slice(b"c");
        assert_eq!(session.skip_frame(false), Some((OpCode::Binary, 3)));
        assert!(session.rbuf.is_empty());
        // A masked frame is a violation the decoder must report, not something to skip.
        encode_frame(
            &Frame::binary(&b"x"[..]),
            Some([1, 2, 3, 4]),
            &mut session.rbuf,
        );
        assert_eq!(session.skip_frame(false), None);
        assert_eq!(
            session.skip_frame(true),
            Some((OpCode::Binary, 1)),
            "raw echo mode"
        );
        encode_frame(
            &Frame::binary(&b"x"[..]),
            Some([1, 2, 3, 4]),
            &mut session.rbuf,
        );
        assert!(session.next_frame().is_err());
    }

    #[test]
    fn repeated_frames_are_identical_and_masked() {
        let (all, len) = repeated_frame(&Frame::binary(&b"abcd"[..]), [1, 2, 3, 4], 3);
        assert_eq!(len, 2 + 4 + 4);
        assert_eq!(all.len(), 3 * len);
        assert_eq!(all[1], 0x80 | 4, "client frames carry the mask bit");
        assert_eq!(&all[..len], &all[len..2 * len]);
        assert_eq!(&all[6..10], &[b'a' ^ 1, b'b' ^ 2, b'c' ^ 3, b'd' ^ 4]);
    }
}
