//! `assemble_message`: arbitrary frame sequences through `MessageAssembler` and `Reader`.
//!
//! Input layout: byte 0 is the configuration — bits 0-1 pick the message limit
//! (16, 125, 1000 or 65536 bytes), bits 2-4 the delivery chunk size (0: all at
//! once, k: `1 << (k - 1)` bytes), bit 5 the role (set: server, frames masked),
//! bit 6 a 64-byte frame limit. Then frames, each `[flags] [len] [payload; len]`:
//! flags bit 7 is FIN, bits 4-6 the RSV bits, bits 0-3 the opcode (reserved
//! values are folded onto the six defined ones); a length running past the input
//! is cut short.
//!
//! A reference model written from RFC 6455 §5.4-§5.6 and §8.1 decides, frame by
//! frame, what must happen: a message, nothing yet, or which error. The data
//! frames go straight into a `MessageAssembler`; all frames, encoded, go into a
//! `Reader` in chunks. Both must agree with the model exactly, and the `Reader`
//! must report each event as soon as its last byte is delivered and each error
//! as soon as the byte that proves it is — for invalid UTF-8 that is inside the
//! frame, before the frame is complete.

use bytes::{Bytes, BytesMut};
use rfc6455::{
    CloseFrame, CodecConfig, Event, Frame, Message, MessageAssembler, OpCode, ProtocolError,
    Reader, Utf8Bytes,
};

const OPCODES: [OpCode; 6] = [
    OpCode::Continuation,
    OpCode::Text,
    OpCode::Binary,
    OpCode::Close,
    OpCode::Ping,
    OpCode::Pong,
];

/// The decoded fuzz input.
struct Scenario {
    cfg: CodecConfig,
    chunk: usize,
    frames: Vec<Frame>,
}

impl Scenario {
    fn new(data: &[u8]) -> Self {
        let (conf, mut rest) = data.split_first().map_or((0, &[][..]), |(c, r)| (*c, r));
        let max_message_len = [16, 125, 1000, 65536][usize::from(conf & 3)];
        let chunk = match (conf >> 2) & 7 {
            0 => usize::MAX,
            k => 1 << (k - 1),
        };
        let mut cfg = if conf & 0x20 != 0 {
            CodecConfig::server()
        } else {
            CodecConfig::client()
        }
        .with_max_message_len(max_message_len);
        if conf & 0x40 != 0 {
            cfg = cfg.with_max_frame_len(64);
        }
        let mut frames = Vec::new();
        while let [flags, len, tail @ ..] = rest {
            let len = usize::from(*len).min(tail.len());
            let (payload, next) = tail.split_at(len);
            let opcode = OpCode::try_from(flags & 0x0F)
                .unwrap_or(OPCODES[usize::from(flags & 0x0F) % OPCODES.len()]);
            frames.push(Frame {
                fin: flags & 0x80 != 0,
                rsv: (flags >> 4) & 7,
                opcode,
                payload: Bytes::copy_from_slice(payload),
            });
            rest = next;
        }
        Self { cfg, chunk, frames }
    }
}

/// RFC 6455 message rules for data frames, written independently of the codec.
struct Model {
    max: usize,
    open: Option<(bool, Vec<u8>)>,
}

/// What the model says one data frame does.
#[derive(Debug)]
enum Step {
    /// The frame completes a message.
    Message(Message),
    /// The frame opens or continues a message.
    Pending,
    /// The frame breaks a rule at its header.
    HeaderError(ProtocolError),
    /// The text so far can never become valid once the frame's first `n` payload
    /// bytes are in (fail-fast), or at the frame's end (`n` = its length).
    Utf8Error(usize),
}

impl Model {
    const fn new(max: usize) -> Self {
        Self { max, open: None }
    }

    fn push(&mut self, frame: &Frame) -> Step {
        let (text, mut buf) = match (self.open.take(), frame.opcode) {
            (None, OpCode::Continuation) => {
                return Step::HeaderError(ProtocolError::UnexpectedContinuation)
            }
            (Some(_), OpCode::Text | OpCode::Binary) => {
                return Step::HeaderError(ProtocolError::ExpectedContinuation)
            }
            (Some(open), _) => open,
            (None, op) => (op == OpCode::Text, Vec::new()),
        };
        if buf.len() + frame.payload.len() > self.max {
            return Step::HeaderError(ProtocolError::MessageTooLarge { max: self.max });
        }
        if text {
            let start = buf.len();
            buf.extend_from_slice(&frame.payload);
            match std::str::from_utf8(&buf) {
                Err(e) if e.error_len().is_some() => {
                    // The shortest prefix that can no longer become valid text.
                    let proven = (e.valid_up_to() + 1..=buf.len())
                        .find(|&p| {
                            std::str::from_utf8(&buf[..p]).is_err_and(|e| e.error_len().is_some())
                        })
                        .unwrap_or(buf.len());
                    return Step::Utf8Error(proven - start);
                }
                Err(_) if frame.fin => return Step::Utf8Error(frame.payload.len()),
                _ => {}
            }
        } else {
            buf.extend_from_slice(&frame.payload);
        }
        if !frame.fin {
            self.open = Some((text, buf));
            return Step::Pending;
        }
        let bytes = Bytes::from(buf);
        Step::Message(if text {
            Message::Text(Utf8Bytes::try_from(bytes).expect("checked above"))
        } else {
            Message::Binary(bytes)
        })
    }
}

/// Runs every check on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let scenario = Scenario::new(data);
    check_assembler(&scenario);
    check_reader(&scenario);
}

/// The data frames alone, straight into a `MessageAssembler`.
fn check_assembler(scenario: &Scenario) {
    let mut model = Model::new(scenario.cfg.max_message_len);
    let mut asm = MessageAssembler::new(scenario.cfg.max_message_len);
    for frame in scenario.frames.iter().filter(|f| f.opcode.is_data()) {
        let got = asm.push(frame.clone());
        match (model.push(frame), got) {
            (Step::Message(want), Ok(Some(got))) => assert_eq!(got, want),
            (Step::Pending, Ok(None)) => assert!(asm.in_message()),
            (Step::HeaderError(want), Err(got)) => {
                assert_eq!(got, want);
                return;
            }
            (Step::Utf8Error(_), Err(ProtocolError::InvalidUtf8)) => return,
            (want, got) => panic!("MessageAssembler: {got:?}, model: {want:?} for {frame:?}"),
        }
    }
}

/// What the `Reader` must produce, and by how many delivered bytes.
#[derive(Debug, PartialEq)]
enum Outcome {
    Event(Event),
    Error(ProtocolError),
}

/// The model's outcomes for the whole stream, each with the number of delivered
/// bytes by which it is due, plus the encoded stream.
fn expected_outcomes(scenario: &Scenario) -> (Vec<(Outcome, usize)>, BytesMut) {
    let cfg = &scenario.cfg;
    let masked = cfg.role == rfc6455::Role::Server;
    let mut wire = BytesMut::new();
    let mut model = Model::new(cfg.max_message_len);
    let mut out = Vec::new();
    // Set by an error or a close: the stream is over, later frames only add bytes.
    let mut ended = false;
    for (i, frame) in scenario.frames.iter().enumerate() {
        let start = wire.len();
        // A varied but deterministic key per frame.
        let key = masked.then_some([0x37 ^ i as u8, 0xfa, 0x21 ^ (i >> 8) as u8, 0x3d]);
        frame.encode(key, &mut wire);
        if ended {
            continue;
        }
        if matches!(out.last(), Some((Outcome::Event(Event::Close(_)), _))) {
            // §5.5.1: nothing may follow a close frame; its first byte is proof enough.
            out.push((Outcome::Error(ProtocolError::FrameAfterClose), start + 1));
            ended = true;
            continue;
        }
        let frame_end = wire.len();
        let header_end = frame_end - frame.payload.len();
        let len = frame.payload.len() as u64;
        let header_error = if frame.opcode.is_control() && !frame.fin {
            Some(ProtocolError::FragmentedControlFrame)
        } else if frame.opcode.is_control() && frame.payload.len() > rfc6455::MAX_CONTROL_PAYLOAD {
            Some(ProtocolError::ControlFrameTooLong)
        } else if frame.rsv & !cfg.allowed_rsv != 0 {
            Some(ProtocolError::ReservedBits)
        } else if len > cfg.max_frame_len {
            Some(ProtocolError::FrameTooLarge {
                len,
                max: cfg.max_frame_len,
            })
        } else {
            None
        };
        let (outcome, due) = if let Some(e) = header_error {
            (Outcome::Error(e), header_end)
        } else {
            match frame.opcode {
                OpCode::Ping => (
                    Outcome::Event(Event::Ping(frame.payload.clone())),
                    frame_end,
                ),
                OpCode::Pong => (
                    Outcome::Event(Event::Pong(frame.payload.clone())),
                    frame_end,
                ),
                OpCode::Close => match CloseFrame::parse(&frame.payload) {
                    Ok(close) => (Outcome::Event(Event::Close(close)), frame_end),
                    Err(e) => (Outcome::Error(e), frame_end),
                },
                OpCode::Text | OpCode::Binary | OpCode::Continuation => match model.push(frame) {
                    Step::Message(m) => (Outcome::Event(Event::Message(m)), frame_end),
                    Step::Pending => continue,
                    Step::HeaderError(e) => (Outcome::Error(e), header_end),
                    Step::Utf8Error(n) => {
                        (Outcome::Error(ProtocolError::InvalidUtf8), header_end + n)
                    }
                },
            }
        };
        ended = matches!(outcome, Outcome::Error(_));
        out.push((outcome, due));
    }
    (out, wire)
}

fn check_reader(scenario: &Scenario) {
    let (want, wire) = expected_outcomes(scenario);
    let chunk = scenario.chunk;
    let mut reader = Reader::new(scenario.cfg);
    let mut buf = BytesMut::new();
    let mut got: Vec<(Outcome, usize)> = Vec::new();
    let mut fed = 0;
    'feed: while fed < wire.len() {
        let n = chunk.min(wire.len() - fed);
        buf.extend_from_slice(&wire[fed..fed + n]);
        fed += n;
        loop {
            match reader.read(&mut buf) {
                Ok(Some(event)) => got.push((Outcome::Event(event), fed)),
                Ok(None) => break,
                Err(e) => {
                    got.push((Outcome::Error(e), fed));
                    break 'feed;
                }
            }
        }
    }
    fn outcomes(v: &[(Outcome, usize)]) -> Vec<&Outcome> {
        v.iter().map(|(o, _)| o).collect()
    }
    assert_eq!(
        outcomes(&got),
        outcomes(&want),
        "Reader disagrees with the model"
    );
    for ((outcome, at), (_, due)) in got.iter().zip(&want) {
        // Reported by the first delivery that holds the byte it needs...
        let first_covering = if chunk >= wire.len() {
            wire.len()
        } else {
            (due.div_ceil(chunk) * chunk).min(wire.len())
        };
        assert!(
            *at <= first_covering,
            "{outcome:?} at byte {at}, due by {due} (chunk {chunk})"
        );
        // ...and, except for header rules the decoder may catch early, not before.
        let header_rule = matches!(outcome, Outcome::Error(e) if *e != ProtocolError::InvalidUtf8
            && *e != ProtocolError::FrameAfterClose);
        if !header_rule {
            assert!(
                *at >= *due,
                "{outcome:?} at byte {at}, before byte {due} arrived"
            );
        }
    }
}
