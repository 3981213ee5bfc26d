//! Server frames encoded once into shareable `Bytes` (server frames are never masked, so one
//! encoding serves every recipient), and their permessage-deflate forms: compressed once per
//! frame for every recipient that agreed to no server context takeover, or by a connection's
//! own compressor where it keeps context.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use chatgroup_protocol::ServerMsg;
use rfc6455::deflate::MessageCompressor;
use rfc6455::{CloseCode, CloseFrame, Frame, FrameHeader, OpCode};

use crate::metrics::{self, Metrics};

/// Encodes a frame for sending by the server.
pub(crate) fn encode(frame: &Frame) -> Bytes {
    frame.to_bytes()
}

/// A Close frame with a status code and a short reason.
pub(crate) fn close(code: CloseCode, reason: &str) -> Bytes {
    encode(&Frame::close(Some(&CloseFrame::new(code, reason))))
}

/// The protocol ping the hub sends to every connection each ping interval.
pub(crate) fn ping() -> Bytes {
    encode(&Frame::ping(Bytes::new()))
}

/// The text reply to an application-level `ping` heartbeat.
pub(crate) fn pong_text() -> Bytes {
    encode(&Frame::text("pong"))
}

/// A chat message as a text frame, encoded once and shared by every recipient.
pub(crate) fn json(msg: &ServerMsg) -> Bytes {
    encode(&Frame::text(msg.to_json()))
}

/// The payload and opcode of a whole, plain server data frame (as [`encode`] makes them);
/// `None` for control frames, fragments and frames already carrying RSV bits.
fn data_payload(plain: &Bytes) -> Option<(OpCode, Bytes)> {
    let (header, len) = FrameHeader::parse(plain).ok().flatten()?;
    let whole = header.fin && header.rsv == 0 && header.mask.is_none();
    let data = matches!(header.opcode, OpCode::Text | OpCode::Binary);
    (whole && data && plain.len() - len == usize::try_from(header.payload_len).ok()?)
        .then(|| (header.opcode, plain.slice(len..)))
}

/// A plain server data frame compressed into one permessage-deflate frame.
struct Compressed {
    frame: Bytes,
    /// Payload bytes before and after compression.
    plain: usize,
    packed: usize,
}

impl Compressed {
    /// Counts the compression in `metrics`, once for the message however many recipients
    /// share the frame.
    fn count(self, metrics: &Metrics) -> Bytes {
        let m = &metrics.deflate;
        metrics::inc(&m.messages_out);
        metrics::add(&m.plain_bytes_out, self.plain as u64);
        metrics::add(&m.bytes_out, self.packed as u64);
        self.frame
    }
}

/// Compresses a data message into one frame with `compressor`; `None` for a payload under
/// `threshold`.
fn compress(
    compressor: &mut MessageCompressor,
    opcode: OpCode,
    payload: &[u8],
    threshold: usize,
) -> Option<Compressed> {
    if payload.len() < threshold {
        return None;
    }
    let mut out = BytesMut::with_capacity(payload.len() / 2 + 16);
    compressor.frame(opcode, payload, None, &mut out).ok()?;
    let header = FrameHeader::parse(&out)
        .ok()
        .flatten()
        .map_or(0, |(_, len)| len);
    Some(Compressed {
        packed: out.len() - header,
        plain: payload.len(),
        frame: out.freeze(),
    })
}

/// [`compress`] for a plain server data frame; `None` for control frames too.
fn compress_frame(
    compressor: &mut MessageCompressor,
    plain: &Bytes,
    threshold: usize,
) -> Option<Compressed> {
    if plain.len() < threshold {
        return None;
    }
    let (opcode, payload) = data_payload(plain)?;
    compress(compressor, opcode, &payload, threshold)
}

/// A data message as one compressed frame made with this thread's shared compressor (no
/// server context takeover), for a reply to one connection; `None` (send it plain) under
/// `threshold` or when it would not shrink.
pub(crate) fn deflate_message_shared(
    opcode: OpCode,
    payload: &[u8],
    threshold: usize,
    metrics: &Metrics,
) -> Option<Bytes> {
    let compressed = compress(&mut MessageCompressor::shared(), opcode, payload, threshold)?;
    (compressed.packed < payload.len()).then(|| compressed.count(metrics))
}

/// The permessage-deflate form of a plain server data frame for connections that agreed to
/// no server context takeover: compressed with this thread's shared compressor, the same
/// bytes for every such recipient. `None` (send the plain frame) for control frames,
/// payloads under `threshold` and payloads that would not shrink; RFC 7692 lets every
/// message choose.
pub(crate) fn deflate_shared(plain: &Bytes, threshold: usize, metrics: &Metrics) -> Option<Bytes> {
    let compressed = compress_frame(&mut MessageCompressor::shared(), plain, threshold)?;
    (compressed.frame.len() < plain.len()).then(|| compressed.count(metrics))
}

/// The permessage-deflate form of a plain server data frame through one connection's own
/// compressor (context takeover). Once compressed a message must be sent compressed, since
/// the compressor's history now holds it, so this does not fall back on a larger result.
pub(crate) fn deflate_dedicated(
    compressor: &mut MessageCompressor,
    plain: &Bytes,
    threshold: usize,
    metrics: &Metrics,
) -> Option<Bytes> {
    compress_frame(compressor, plain, threshold).map(|c| c.count(metrics))
}

/// The shared compressed forms of the frames of one delivery round, so that a frame fanned
/// out to many connections is compressed once however many of them agreed to deflate.
///
/// A fan-out hands every recipient a clone of one encoded `Bytes`, and clones share their
/// allocation, so its address identifies the frame. Each entry keeps that clone alive, so no
/// other frame can be allocated at the same address while the entry exists;
/// [`clear`](Self::clear) ends the round.
#[derive(Debug, Default)]
pub(crate) struct DeflateCache {
    frames: HashMap<usize, (Bytes, Option<Bytes>)>,
}

impl DeflateCache {
    /// [`deflate_shared`] of `plain`, computed once per round.
    pub(crate) fn get(
        &mut self,
        plain: &Bytes,
        threshold: usize,
        metrics: &Metrics,
    ) -> Option<Bytes> {
        if plain.len() < threshold {
            return None;
        }
        let key = plain.as_ptr() as usize;
        match self.frames.get(&key) {
            Some((kept, compressed)) if kept.len() == plain.len() => compressed.clone(),
            _ => {
                let compressed = deflate_shared(plain, threshold, metrics);
                self.frames.insert(key, (plain.clone(), compressed.clone()));
                compressed
            }
        }
    }

    /// Ends a delivery round, releasing the frames it kept.
    pub(crate) fn clear(&mut self) {
        self.frames.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use bytes::BytesMut;
    use rfc6455::deflate::DeflateParams;
    use rfc6455::{CodecConfig, Event, Message, Reader};

    use super::*;

    fn read_one(wire: &[u8], params: DeflateParams) -> (Message, bool) {
        let mut reader = Reader::new(CodecConfig::client().with_deflate(params));
        let mut buf = BytesMut::from(wire);
        match reader.read(&mut buf).unwrap() {
            Some(Event::Message(m)) => (m, reader.last_compressed().is_some()),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn shared_deflate_compresses_data_frames_over_the_threshold_that_shrink() {
        let m = Metrics::default();
        let body = "{\"type\":\"message\",\"body\":\"hello there\"}".repeat(20);
        let plain = encode(&Frame::text(body.clone()));
        let packed = deflate_shared(&plain, 100, &m).expect("compressed");
        assert!(packed.len() < plain.len() / 3);
        assert_eq!(
            read_one(&packed, DeflateParams::default()),
            (Message::Text(body.clone().into()), true)
        );
        assert_eq!(m.deflate.messages_out.load(Ordering::Relaxed), 1);
        assert_eq!(
            m.deflate.plain_bytes_out.load(Ordering::Relaxed),
            body.len() as u64
        );
        // Under the threshold, control frames, and data that would not shrink: plain.
        assert_eq!(deflate_shared(&plain, body.len() + 1, &m), None);
        assert_eq!(deflate_shared(&ping(), 0, &m), None);
        assert_eq!(
            deflate_shared(&close(CloseCode::NORMAL, "bye"), 0, &m),
            None
        );
        let noise: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        assert_eq!(deflate_shared(&encode(&Frame::binary(noise)), 0, &m), None);
        assert_eq!(
            m.deflate.messages_out.load(Ordering::Relaxed),
            1,
            "only sent ones count"
        );
    }

    #[test]
    fn the_cache_compresses_a_fanned_out_frame_once() {
        let m = Metrics::default();
        let mut cache = DeflateCache::default();
        let frame = encode(&Frame::text("{\"x\":1}".repeat(100)));
        let copies: Vec<Bytes> = (0..5).map(|_| frame.clone()).collect();
        let first = cache.get(&copies[0], 10, &m).expect("compressed");
        for copy in &copies[1..] {
            assert_eq!(cache.get(copy, 10, &m), Some(first.clone()));
        }
        assert_eq!(m.deflate.messages_out.load(Ordering::Relaxed), 1);
        // An equal frame encoded separately is another frame, compressed again. The bytes may
        // differ from the first compression (the shared compressor ends each message with a
        // full flush, not a reset, so its output need not repeat itself); the message may not.
        let other = Bytes::copy_from_slice(&frame);
        let again = cache.get(&other, 10, &m).expect("compressed");
        assert_eq!(
            read_one(&again, DeflateParams::default()),
            read_one(&first, DeflateParams::default())
        );
        assert_eq!(m.deflate.messages_out.load(Ordering::Relaxed), 2);
        cache.clear();
        assert!(cache.frames.is_empty());
    }

    #[test]
    fn a_dedicated_compressor_keeps_context_and_always_compresses() {
        let m = Metrics::default();
        let mut compressor = MessageCompressor::new(false);
        let plain = encode(&Frame::text("abcabcabcabc".repeat(10)));
        let first = deflate_dedicated(&mut compressor, &plain, 10, &m).unwrap();
        let second = deflate_dedicated(&mut compressor, &plain, 10, &m).unwrap();
        assert!(second.len() < first.len(), "refers back to the first");
        assert_eq!(deflate_dedicated(&mut compressor, &ping(), 0, &m), None);
    }
}
