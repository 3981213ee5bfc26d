//! `decode_stream`: arbitrary bytes as the receive stream of a server and of a client.
//!
//! Input layout: byte 0 picks the limits (bits 3-4) and how many chunk-size bytes
//! follow (bits 0-2); each chunk-size byte `b` delivers `b + 1` bytes, cycling; no
//! size bytes means the whole stream arrives at once. The rest is the wire.
//!
//! For both roles, a `Decoder` and a `Reader` read the stream once whole and once
//! in those chunks. Checked: nothing panics; the chunked and whole runs agree;
//! exactly the bytes of decoded frames are consumed; every decoded frame
//! re-encodes to the very bytes it came from (the decoder only accepts minimal
//! encodings, so this must hold); errors are violations a reference reading of the
//! header confirms; `needed()` never promises progress that does not come and
//! never hides a frame; the `Reader`'s events equal the `Decoder`'s frames run
//! through a `MessageAssembler` and `CloseFrame::parse`; the borrowing
//! `decode_in_place` yields the same frames and error as `decode` on the whole stream.

use bytes::BytesMut;
use rfc6455::{
    encode_frame, CloseCode, CloseFrame, CodecConfig, Decoder, Event, Frame, FrameHeader, Message,
    MessageAssembler, OpCode, ProtocolError, Reader, Role,
};

/// The decoded fuzz input.
struct Scenario<'a> {
    limits: u8,
    chunks: Vec<usize>,
    wire: &'a [u8],
}

impl<'a> Scenario<'a> {
    fn new(data: &'a [u8]) -> Self {
        let Some((&head, rest)) = data.split_first() else {
            return Self {
                limits: 0,
                chunks: Vec::new(),
                wire: &[],
            };
        };
        let n = usize::from(head & 7).min(rest.len());
        let (sizes, wire) = rest.split_at(n);
        Self {
            limits: (head >> 3) & 3,
            chunks: sizes.iter().map(|&b| usize::from(b) + 1).collect(),
            wire,
        }
    }

    fn config(&self, role: Role) -> CodecConfig {
        let base = match role {
            Role::Server => CodecConfig::server(),
            Role::Client => CodecConfig::client(),
        };
        match self.limits {
            0 => base,
            1 => base.with_max_frame_len(125).with_max_message_len(256),
            2 => base.with_max_frame_len(4096).with_max_message_len(4096),
            _ => base.with_max_frame_len(16).with_max_message_len(64),
        }
    }

    /// The chunk sizes to deliver the wire in: whole, or the input's sizes cycling.
    fn deliveries(&self, whole: bool) -> Vec<usize> {
        let mut out = Vec::new();
        let mut left = self.wire.len();
        if whole || self.chunks.is_empty() {
            out.push(left);
            return out;
        }
        for &size in self.chunks.iter().cycle() {
            if left == 0 {
                break;
            }
            let n = size.min(left);
            out.push(n);
            left -= n;
        }
        out
    }
}

/// Runs every check on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let scenario = Scenario::new(data);
    for role in [Role::Server, Role::Client] {
        let cfg = scenario.config(role);
        let whole = run_decoder(cfg, scenario.wire, &scenario.deliveries(true));
        let chunked = run_decoder(cfg, scenario.wire, &scenario.deliveries(false));
        assert_eq!(
            whole.frames, chunked.frames,
            "{role:?}: chunking changed the frames"
        );
        assert_eq!(
            whole.error, chunked.error,
            "{role:?}: chunking changed the error"
        );

        let (in_place, in_place_error) = run_in_place(cfg, scenario.wire);
        assert_eq!(
            in_place, whole.frames,
            "{role:?}: decode_in_place and decode disagree on frames"
        );
        assert_eq!(
            in_place_error, whole.error,
            "{role:?}: decode_in_place and decode disagree on the error"
        );

        let events_whole = run_reader(cfg, scenario.wire, &scenario.deliveries(true));
        let events_chunked = run_reader(cfg, scenario.wire, &scenario.deliveries(false));
        assert_eq!(
            events_whole, events_chunked,
            "{role:?}: chunking changed the events"
        );

        let composed = compose(cfg, &whole, scenario.wire.len());
        assert_eq!(
            events_whole.0, composed.0,
            "{role:?}: Reader and Decoder disagree"
        );
        match (&events_whole.1, &composed.1) {
            (Some(r), Some(c)) => assert_eq!(r, c, "{role:?}: Reader and Decoder errors"),
            (None, Some(c)) => panic!("{role:?}: only the Decoder path failed: {c:?}"),
            // The Reader checks message rules from headers and UTF-8 inside frames
            // that have not fully arrived, so it may fail where frames are missing.
            (Some(_) | None, None) => {}
        }
    }
}

/// The whole stream decoded with the borrowing `decode_in_place`, frames copied out.
fn run_in_place(cfg: CodecConfig, wire: &[u8]) -> (Vec<Frame>, Option<ProtocolError>) {
    let mut dec = Decoder::new(cfg);
    let mut buf = wire.to_vec();
    let total = buf.len();
    let mut at = 0;
    let mut frames = Vec::new();
    loop {
        match dec.decode_in_place(&mut buf[at..]) {
            Ok(Some((f, len))) => {
                assert!(len <= total - at, "a frame longer than the buffer");
                frames.push(Frame {
                    fin: f.fin,
                    rsv: f.rsv,
                    opcode: f.opcode,
                    payload: bytes::Bytes::copy_from_slice(f.payload),
                });
                at += len;
            }
            Ok(None) => {
                assert!(dec.needed() >= 1, "needed() is 0 while waiting");
                return (frames, None);
            }
            Err(e) => return (frames, Some(e)),
        }
    }
}

/// What a `Decoder` made of the stream.
#[derive(Debug)]
struct Decoded {
    frames: Vec<Frame>,
    /// The wire offset just past each frame.
    ends: Vec<usize>,
    error: Option<ProtocolError>,
}

fn run_decoder(cfg: CodecConfig, wire: &[u8], deliveries: &[usize]) -> Decoded {
    let mut dec = Decoder::new(cfg);
    let mut buf = BytesMut::new();
    let mut out = Decoded {
        frames: Vec::new(),
        ends: Vec::new(),
        error: None,
    };
    let mut fed = 0;
    let mut frame_start = 0;
    // After an `Ok(None)`: the buffer length then, `needed()`, and whether a header was pending.
    let mut waiting: Option<(usize, usize, bool)> = None;
    for &n in deliveries {
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        loop {
            let before_len = buf.len();
            let before_mid = dec.is_mid_frame();
            let result = dec.decode(&mut buf);
            assert!(buf.len() <= before_len, "decode grew the buffer");
            let consumed = fed - buf.len();
            if let Some((len_then, needed, mid_then)) = waiting {
                let added = before_len - len_then;
                if added < needed {
                    assert!(
                        !matches!(result, Ok(Some(_))),
                        "a frame after {added} of the {needed} needed bytes"
                    );
                    if result.is_ok() {
                        assert_eq!(dec.is_mid_frame(), mid_then, "a header before needed bytes");
                    }
                } else if mid_then || len_then >= 2 {
                    // Enough bytes for the payload, or for a header whose size was known.
                    let progressed =
                        !matches!(result, Ok(None)) || dec.is_mid_frame() != before_mid;
                    assert!(progressed, "no progress after the {needed} needed bytes");
                }
            }
            match result {
                Err(e) => {
                    check_error(&cfg, &e, &wire[frame_start..fed]);
                    out.error = Some(e);
                    return out;
                }
                Ok(Some(frame)) => {
                    let end = check_frame(&cfg, &frame, &wire[frame_start..fed]);
                    assert_eq!(consumed, frame_start + end, "consumed bytes of a frame");
                    frame_start += end;
                    out.frames.push(frame);
                    out.ends.push(frame_start);
                    waiting = None;
                }
                Ok(None) => {
                    assert!(dec.needed() >= 1, "needed() is 0 while waiting");
                    if dec.is_mid_frame() {
                        let (h, hl) = FrameHeader::parse(&wire[frame_start..fed])
                            .expect("a pending header is valid")
                            .expect("a pending header is complete");
                        assert_eq!(consumed, frame_start + hl, "only the header is consumed");
                        let have = u64::try_from(buf.len()).expect("usize fits u64");
                        assert!(have < h.payload_len, "payload complete but not decoded");
                        let needed = u64::try_from(dec.needed()).expect("usize fits u64");
                        assert_eq!(needed, h.payload_len - have, "needed() mid-payload");
                    } else {
                        assert_eq!(consumed, frame_start, "bytes consumed without a frame");
                        check_incomplete_header(&cfg, &wire[frame_start..fed]);
                    }
                    waiting = Some((buf.len(), dec.needed(), dec.is_mid_frame()));
                    break;
                }
            }
        }
    }
    out
}

/// A decoded frame obeys the configuration and re-encodes to its wire bytes.
/// Returns its length on the wire.
fn check_frame(cfg: &CodecConfig, frame: &Frame, wire: &[u8]) -> usize {
    let facts = HeaderFacts::read(wire).expect("a decoded frame has a complete header");
    assert!(
        facts.violations(cfg).is_empty(),
        "decoded a frame breaking {:?}",
        facts.violations(cfg)
    );
    assert_eq!(frame.fin, facts.fin);
    assert_eq!(frame.rsv, facts.rsv);
    assert_eq!(frame.opcode.as_u8(), facts.opcode);
    let len = usize::try_from(facts.len).expect("decoded length fits");
    assert_eq!(frame.payload.len(), len);
    let end = facts.header_len + len;
    let mut again = BytesMut::new();
    encode_frame(frame, facts.mask, &mut again);
    assert_eq!(
        &again[..],
        &wire[..end],
        "re-encoding differs from the input"
    );
    end
}

/// An error is one of the violations the available bytes prove.
fn check_error(cfg: &CodecConfig, err: &ProtocolError, wire: &[u8]) {
    assert!(
        matches!(
            err.close_code(),
            CloseCode::PROTOCOL_ERROR | CloseCode::MESSAGE_TOO_BIG
        ),
        "a decoder error with close code {:?}",
        err.close_code()
    );
    let facts = HeaderFacts::read_partial(wire);
    let found = facts.violations(cfg);
    assert!(
        found.contains(err),
        "{err:?} not among {found:?} for {wire:02x?}"
    );
}

/// While a header is incomplete, the violations its first two bytes and its
/// length field already prove have been reported (the decoder promises to fail
/// early on these; with a single byte it waits for the second).
fn check_incomplete_header(cfg: &CodecConfig, wire: &[u8]) {
    if wire.len() < 2 {
        return;
    }
    let facts = HeaderFacts::read_partial(wire);
    let early: Vec<_> = facts
        .violations(cfg)
        .into_iter()
        .filter(|v| {
            matches!(
                v,
                ProtocolError::ReservedOpcode(_)
                    | ProtocolError::FragmentedControlFrame
                    | ProtocolError::ControlFrameTooLong
                    | ProtocolError::NonMinimalLength
                    | ProtocolError::LengthTopBit
            )
        })
        .collect();
    assert!(
        early.is_empty(),
        "waiting on a header that already breaks {early:?}"
    );
}

/// A header read straight from RFC 6455 §5.2, independently of the codec.
#[derive(Debug)]
struct HeaderFacts {
    /// How many bytes were available (at least 1 when any fact is known).
    available: usize,
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    len7: u8,
    /// The payload length, when its bytes are available.
    len: u64,
    len_known: bool,
    /// The length encoding in bytes (0, 2 or 8) when `len_known`.
    ext: usize,
    mask: Option<[u8; 4]>,
    header_len: usize,
}

impl HeaderFacts {
    fn read(wire: &[u8]) -> Option<Self> {
        let facts = Self::read_partial(wire);
        (facts.available >= 2 && facts.len_known && wire.len() >= facts.header_len).then_some(facts)
    }

    fn read_partial(wire: &[u8]) -> Self {
        let b0 = wire.first().copied().unwrap_or(0);
        let b1 = wire.get(1).copied().unwrap_or(0);
        let len7 = b1 & 0x7F;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let masked = b1 & 0x80 != 0;
        let header_len = 2 + ext + if masked { 4 } else { 0 };
        let (len, len_known) = match wire.get(2..2 + ext) {
            Some(bytes) if wire.len() >= 2 => (
                if ext == 0 {
                    u64::from(len7)
                } else {
                    bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b))
                },
                true,
            ),
            _ => (0, false),
        };
        let mask = match wire.get(2 + ext..header_len) {
            Some(k) if masked => Some([k[0], k[1], k[2], k[3]]),
            _ => None,
        };
        Self {
            available: wire.len(),
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 7,
            opcode: b0 & 0x0F,
            masked,
            len7,
            len,
            len_known,
            ext,
            mask,
            header_len,
        }
    }

    /// Every rule the known part of the header breaks.
    fn violations(&self, cfg: &CodecConfig) -> Vec<ProtocolError> {
        let mut v = Vec::new();
        if self.available == 0 {
            return v;
        }
        let control = self.opcode >= 8;
        if !matches!(self.opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            v.push(ProtocolError::ReservedOpcode(self.opcode));
        }
        if self.rsv & !cfg.allowed_rsv != 0 {
            v.push(ProtocolError::ReservedBits);
        }
        if self.available < 2 {
            return v;
        }
        if control && !self.fin {
            v.push(ProtocolError::FragmentedControlFrame);
        }
        if control && self.len7 > 125 {
            v.push(ProtocolError::ControlFrameTooLong);
        }
        match (cfg.role, self.masked) {
            (Role::Server, false) => v.push(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => v.push(ProtocolError::MaskedFrame),
            _ => {}
        }
        if self.len_known {
            if (self.ext == 2 && self.len < 126) || (self.ext == 8 && self.len <= 0xFFFF) {
                v.push(ProtocolError::NonMinimalLength);
            }
            if self.len >> 63 != 0 {
                v.push(ProtocolError::LengthTopBit);
            }
            if self.len > cfg.max_frame_len {
                v.push(ProtocolError::FrameTooLarge {
                    len: self.len,
                    max: cfg.max_frame_len,
                });
            }
        }
        v
    }
}

/// Events and the error that ended them.
type Events = (Vec<Event>, Option<ProtocolError>);

fn run_reader(cfg: CodecConfig, wire: &[u8], deliveries: &[usize]) -> Events {
    let mut reader = Reader::new(cfg);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut fed = 0;
    let mut waiting: Option<(usize, usize)> = None;
    for &n in deliveries {
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        loop {
            let before_len = buf.len();
            let result = reader.read(&mut buf);
            if let Some((len_then, needed)) = waiting {
                let added = before_len - len_then;
                if added < needed {
                    assert!(
                        !matches!(result, Ok(Some(_))),
                        "an event after {added} of the {needed} needed bytes"
                    );
                }
            }
            match result {
                Err(e) => return (events, Some(e)),
                Ok(Some(event)) => {
                    check_event(&cfg, &event);
                    events.push(event);
                    waiting = None;
                }
                Ok(None) => {
                    waiting = (!reader.is_closed()).then(|| (buf.len(), reader.needed()));
                    break;
                }
            }
        }
    }
    (events, None)
}

fn check_event(cfg: &CodecConfig, event: &Event) {
    match event {
        Event::Message(Message::Text(t)) => {
            assert!(std::str::from_utf8(t.as_bytes()).is_ok());
            assert!(t.len() <= cfg.max_message_len);
        }
        Event::Message(Message::Binary(b)) => assert!(b.len() <= cfg.max_message_len),
        Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= rfc6455::MAX_CONTROL_PAYLOAD),
        Event::Close(Some(c)) => assert!(c.code.is_valid_on_wire()),
        Event::Close(None) => {}
    }
}

/// The events the `Decoder`'s frames make when run through the message and close rules.
fn compose(cfg: CodecConfig, decoded: &Decoded, wire_len: usize) -> Events {
    let mut asm = MessageAssembler::new(cfg.max_message_len);
    let mut events = Vec::new();
    for (frame, &end) in decoded.frames.iter().zip(&decoded.ends) {
        let event = match frame.opcode {
            OpCode::Ping => Event::Ping(frame.payload.clone()),
            OpCode::Pong => Event::Pong(frame.payload.clone()),
            OpCode::Close => match CloseFrame::parse(&frame.payload) {
                Ok(close) => {
                    events.push(Event::Close(close));
                    let after = (end < wire_len).then_some(ProtocolError::FrameAfterClose);
                    return (events, after);
                }
                Err(e) => return (events, Some(e)),
            },
            OpCode::Text | OpCode::Binary | OpCode::Continuation => match asm.push(frame.clone()) {
                Ok(Some(message)) => Event::Message(message),
                Ok(None) => continue,
                Err(e) => return (events, Some(e)),
            },
        };
        events.push(event);
    }
    (events, decoded.error.clone())
}
