//! `inflate_message`: permessage-deflate messages, honest and hostile, through
//! a `Reader` that negotiated the extension.
//!
//! Input layout: byte 0 is the configuration: bits 0-1 pick the message limit
//! (16, 1000, 65536 or 1 MiB), bits 2-4 the delivery chunk size (0: all at
//! once, k: `1 << (k - 1)` bytes), bit 5 the role (set: server, frames masked),
//! bit 6 whether the peer keeps context between messages. Then messages, each
//! `[flags] [len] [payload; len]`: flags bit 0 text (else binary), bit 1
//! compressed (RSV1), bits 2-4 the number of fragments less one, bit 5 a ping
//! after the first fragment, bit 6 the payload is plain text to be compressed
//! here (else it is sent as the compressed bytes themselves, valid deflate or
//! not), bit 7 the payload repeated 64 times. A length running past the input
//! is cut short.
//!
//! The expected outcome of each message comes from a reference: the plain
//! payload for messages compressed here, or a `MessageDecompressor` inflating
//! the whole compressed payload at once (the `Reader` inflates it fragment by
//! fragment, as bytes arrive). A message the reference reads within the limits
//! must arrive exactly; a message it cannot read must fail the connection with
//! one of the reasons the reference found (over the limit, not deflate data,
//! not UTF-8; bad deflate data may also show as either of the others, see
//! `inflated_outcome`); nothing may panic, and no message may exceed the limit.

use bytes::{Bytes, BytesMut};
use rfc6455::deflate::{DeflateParams, InflateError, MessageCompressor, MessageDecompressor};
use rfc6455::{CodecConfig, Event, Frame, Message, OpCode, ProtocolError, Reader, Role};

/// One message of the scenario, as it goes on the wire and as it should read.
struct Planned {
    frames: Vec<Frame>,
    /// The ping sent after the first fragment, if any.
    ping: bool,
    expect: Expect,
}

#[derive(Debug)]
enum Expect {
    Message(Message),
    /// The connection must fail with one of these.
    Failure(Vec<ProtocolError>),
}

/// The decoded fuzz input.
struct Scenario {
    cfg: CodecConfig,
    chunk: usize,
    messages: Vec<Planned>,
}

/// The compressed bytes a message may take when it may inflate to `max`
/// (mirrors the codec's header-level bound).
fn compressed_limit(max: usize) -> usize {
    max.saturating_add(max / 1024).saturating_add(64)
}

impl Scenario {
    fn new(data: &[u8]) -> Self {
        let (conf, mut rest) = data.split_first().map_or((0, &[][..]), |(c, r)| (*c, r));
        let max = [16, 1000, 65536, 1 << 20][usize::from(conf & 3)];
        let chunk = match (conf >> 2) & 7 {
            0 => usize::MAX,
            k => 1 << (k - 1),
        };
        let role = if conf & 0x20 != 0 {
            Role::Server
        } else {
            Role::Client
        };
        let takeover = conf & 0x40 != 0;
        let params = DeflateParams {
            server_no_context_takeover: !takeover,
            client_no_context_takeover: !takeover,
            ..DeflateParams::default()
        };
        let base = match role {
            Role::Server => CodecConfig::server(),
            Role::Client => CodecConfig::client(),
        };
        let cfg = base
            .with_max_frame_len(1 << 24)
            .with_max_message_len(max)
            .with_deflate(params);
        // The peer's compressor and our reference decompressor, both keeping
        // context exactly when the agreement says so.
        let mut compressor = MessageCompressor::new(!takeover);
        let mut reference = MessageDecompressor::new(!takeover);
        let mut messages = Vec::new();
        let mut first_ours = None;
        while let [flags, len, tail @ ..] = rest {
            let len = usize::from(*len).min(tail.len());
            let (payload, next) = tail.split_at(len);
            rest = next;
            let payload = if flags & 0x80 != 0 {
                payload.repeat(64)
            } else {
                payload.to_vec()
            };
            let text = flags & 1 != 0;
            let compressed = flags & 2 != 0;
            // With context takeover every compressed message shares one
            // history on the reading side, so they are all compressed here or
            // all sent raw, as the first one is.
            let ours = match (takeover, compressed, first_ours) {
                (true, true, Some(kind)) => kind,
                _ => flags & 0x40 != 0,
            };
            if compressed {
                first_ours.get_or_insert(ours);
            }
            let pieces = 1 + usize::from((flags >> 2) & 7);
            let (wire_payload, expect) = if !compressed {
                let expect = plain_outcome(text, payload.clone(), max);
                (payload, expect)
            } else if ours {
                let mut packed = BytesMut::new();
                compressor.compress(&payload, &mut packed);
                let mut expect = plain_outcome(text, payload, max);
                if packed.len() > compressed_limit(max) {
                    // Refused from a header, possibly after earlier fragments
                    // already failed for another reason.
                    expect = match expect {
                        Expect::Message(_) => Expect::Failure(vec![too_large(max)]),
                        Expect::Failure(mut reasons) => {
                            reasons.push(too_large(max));
                            Expect::Failure(reasons)
                        }
                    };
                }
                (packed.to_vec(), expect)
            } else {
                let expect = inflated_outcome(&mut reference, text, &payload, max);
                (payload, expect)
            };
            let frames = fragment(text, compressed, &wire_payload, pieces);
            messages.push(Planned {
                frames,
                ping: flags & 0x20 != 0,
                expect,
            });
        }
        Self {
            cfg,
            chunk,
            messages,
        }
    }
}

fn too_large(max: usize) -> ProtocolError {
    ProtocolError::MessageTooLarge { max }
}

/// What an uncompressed message (or one compressed here from `payload`) must
/// read as.
fn plain_outcome(text: bool, payload: Vec<u8>, max: usize) -> Expect {
    let mut failures = Vec::new();
    if payload.len() > max {
        failures.push(too_large(max));
    }
    if text && std::str::from_utf8(&payload).is_err() {
        failures.push(ProtocolError::InvalidUtf8);
    }
    if !failures.is_empty() {
        return Expect::Failure(failures);
    }
    Expect::Message(if text {
        Message::Text(String::from_utf8(payload).expect("checked").into())
    } else {
        Message::Binary(payload.into())
    })
}

/// What a message whose compressed payload is `packed` must read as, by
/// inflating it whole with `reference`.
fn inflated_outcome(
    reference: &mut MessageDecompressor,
    text: bool,
    packed: &[u8],
    max: usize,
) -> Expect {
    let mut failures = Vec::new();
    if packed.len() > compressed_limit(max) {
        failures.push(too_large(max));
    }
    // Under the same limit as the reader: both stop where the inflated size
    // crosses it, so neither sees what lies past that point.
    let mut out = BytesMut::new();
    match reference.decompress(packed, max, &mut out) {
        Ok(()) => {}
        Err(InflateError::Corrupt) => {
            // The inflater reports bad data as soon as it decodes it, which, given the
            // whole payload at once, can be before it has handed out the bytes that come
            // first; given less at a time, as the reader is, it hands out more of them
            // first. Those bytes may cross the limit or hold bad UTF-8, so a reader may
            // stop at either of those instead.
            failures.push(ProtocolError::InvalidCompressedData);
            failures.push(too_large(max));
            if text {
                failures.push(ProtocolError::InvalidUtf8);
            }
        }
        Err(_) => failures.push(too_large(max)),
    }
    if text {
        match std::str::from_utf8(&out) {
            Ok(_) => {}
            // Cut inside a code point only matters at the message's end.
            Err(e) if e.error_len().is_none() && !failures.is_empty() => {}
            Err(_) => failures.push(ProtocolError::InvalidUtf8),
        }
    }
    if !failures.is_empty() {
        return Expect::Failure(failures);
    }
    let out = out.freeze();
    Expect::Message(if text {
        Message::Text(String::from_utf8(out.to_vec()).expect("checked").into())
    } else {
        Message::Binary(out)
    })
}

/// `payload` as `pieces` frames (fewer if it is short), RSV1 on the first
/// when compressed.
fn fragment(text: bool, compressed: bool, payload: &[u8], pieces: usize) -> Vec<Frame> {
    let size = payload.len().div_ceil(pieces).max(1);
    let mut chunks: Vec<&[u8]> = payload.chunks(size).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let opcode = match (i, text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            let mut frame = Frame::new(opcode, Bytes::copy_from_slice(piece)).with_fin(i == last);
            frame.rsv = if i == 0 && compressed { 0b100 } else { 0 };
            frame
        })
        .collect()
}

/// Runs one fuzz input; panics on any broken rule.
pub fn check(data: &[u8]) {
    let scenario = Scenario::new(data);
    let masked = scenario.cfg.role == Role::Server;
    let mut wire = BytesMut::new();
    let mut expected = Vec::new();
    let mut n = 0u8;
    for planned in &scenario.messages {
        for (i, frame) in planned.frames.iter().enumerate() {
            n = n.wrapping_add(1);
            let key = masked.then_some([0x37 ^ n, 0xfa, 0x21, 0x3d ^ n]);
            frame.encode(key, &mut wire);
            if i == 0 && planned.ping {
                Frame::ping("p").encode(key, &mut wire);
            }
        }
        expected.push(&planned.expect);
    }

    let mut reader = Reader::new(scenario.cfg);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut failure = None;
    'feed: for piece in wire.chunks(scenario.chunk.min(wire.len().max(1))) {
        buf.extend_from_slice(piece);
        loop {
            match reader.read(&mut buf) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break 'feed;
                }
            }
        }
    }

    // Compare message by message; pings are only checked for order.
    let mut got = events
        .into_iter()
        .filter(|e| !matches!(e, Event::Ping(_)))
        .map(|e| match e {
            Event::Message(m) => m,
            other => panic!("unexpected event {other:?}"),
        });
    for (i, want) in expected.iter().enumerate() {
        match want {
            Expect::Message(m) => match got.next() {
                Some(g) => {
                    assert!(g.as_bytes().len() <= scenario.cfg.max_message_len);
                    assert_eq!(&g, m, "message {i}");
                }
                None => panic!("message {i} missing; reader failed with {failure:?}, wanted {m:?}"),
            },
            Expect::Failure(reasons) => {
                assert!(got.next().is_none(), "message {i} should have failed");
                let e = failure.expect("the reader must fail on a bad message");
                assert!(
                    reasons.contains(&e),
                    "message {i}: reader failed with {e:?}, reference found {reasons:?}"
                );
                return;
            }
        }
    }
    assert!(
        failure.is_none(),
        "reader failed on valid input: {failure:?}"
    );
    assert!(got.next().is_none());
}
