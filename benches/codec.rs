//! Codec benchmarks: the `rfc6455` crate side by side with `tungstenite` and
//! `fastwebsockets`, in the same run, on the same bytes.
//!
//! ```text
//! cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Every decoder reads the same pre-encoded wire bytes from memory: ours is
//! handed them with one `extend_from_slice` into its receive buffer (what a
//! socket read does), tungstenite reads them through `std::io::Read` from an
//! in-memory stream, fastwebsockets through `tokio::io::AsyncRead` from the same
//! kind of stream, polled once per frame (the stream is always ready, so no
//! runtime is involved). The streams are rewound, not rebuilt, between
//! iterations, so no library pays for its own construction inside the loop.
//!
//! Our decoder is measured twice: `Decoder::decode`, which hands out owned
//! `Bytes` payloads split off the buffer (two reference-count updates per
//! frame), and `Decoder::decode_in_place`, which borrows them (none).
//!
//! Groups:
//! - `decode_small`: 1000 masked binary frames of 2-125 bytes, server role.
//! - `decode_64k`: 16 masked binary frames of 64 KiB, server role.
//! - `unmask/{1KiB,64KiB,1MiB}`: in-place unmasking vs `memcpy` of the same buffer.
//! - `encode/{server_125B,client_125B,server_64KiB,client_64KiB}`: one text frame.
//! - `utf8_64KiB`: validation of mixed-script text.
//! - `request_head`: a browser's opening request, parsed and validated.

use std::cell::Cell;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::FutureExt as _;
use rfc6455::{
    apply_mask, encode_frame, parse_request, validate_upgrade, CodecConfig, Decoder, Event, Frame,
    HeadLimits, Message, OpCode, Reader, Utf8Validator, Writer,
};

/// A pre-filled in-memory stream: reads hand out the wire bytes, writes are
/// discarded. Clones share the read position, so a benchmark can rewind a
/// stream that a library owns.
#[derive(Clone)]
struct MemStream {
    wire: Rc<[u8]>,
    pos: Rc<Cell<usize>>,
}

impl MemStream {
    fn new(wire: &[u8]) -> Self {
        Self {
            wire: wire.into(),
            pos: Rc::new(Cell::new(0)),
        }
    }

    fn rewind(&self) {
        self.pos.set(0);
    }

    fn rest(&self, max: usize) -> &[u8] {
        let pos = self.pos.get();
        let n = max.min(self.wire.len() - pos);
        self.pos.set(pos + n);
        &self.wire[pos..pos + n]
    }
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self.rest(buf.len());
        buf[..chunk.len()].copy_from_slice(chunk);
        Ok(chunk.len())
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl tokio::io::AsyncRead for MemStream {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // `put_slice` fills the uninitialised spare capacity without zeroing it first,
        // as a socket read does.
        buf.put_slice(self.rest(buf.remaining()));
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for MemStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A small deterministic generator, so every run measures the same bytes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }

    fn key(&mut self) -> [u8; 4] {
        self.next().to_ne_bytes()
    }
}

/// `count` masked binary frames with payload lengths from `lens`, and their total payload.
fn masked_stream(count: usize, mut lens: impl FnMut(&mut Lcg) -> usize) -> (Vec<u8>, u64) {
    let mut rng = Lcg(0x5eed);
    let mut wire = BytesMut::new();
    let mut total = 0;
    for _ in 0..count {
        let len = lens(&mut rng);
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        total += len as u64;
        encode_frame(&Frame::binary(payload), Some(rng.key()), &mut wire);
    }
    (wire.to_vec(), total)
}

/// One decode group: every library reads `count` frames from `wire` per iteration.
fn decode_group(c: &mut Criterion, name: &str, wire: &[u8], count: usize, throughput: Throughput) {
    let mut group = c.benchmark_group(name);
    group.throughput(throughput);
    let cfg = CodecConfig::server()
        .with_max_frame_len(1 << 20)
        .with_max_message_len(1 << 20);

    group.bench_function("rfc6455 Decoder", |b| {
        let mut dec = Decoder::new(cfg);
        let mut buf = BytesMut::with_capacity(wire.len());
        b.iter(|| {
            buf.extend_from_slice(wire);
            let mut n = 0;
            while let Some(frame) = dec.decode(&mut buf).expect("valid stream") {
                black_box(&frame.payload);
                n += 1;
            }
            assert_eq!(n, count);
        });
    });

    group.bench_function("rfc6455 Decoder::decode_in_place", |b| {
        let mut dec = Decoder::new(cfg);
        let mut buf = BytesMut::with_capacity(wire.len());
        b.iter(|| {
            buf.extend_from_slice(wire);
            let (mut at, mut n) = (0, 0);
            while let Some((frame, len)) =
                dec.decode_in_place(&mut buf[at..]).expect("valid stream")
            {
                black_box(frame.payload);
                at += len;
                n += 1;
            }
            buf.advance(at);
            assert_eq!(n, count);
        });
    });

    group.bench_function("rfc6455 Reader", |b| {
        let mut reader = Reader::new(cfg);
        let mut buf = BytesMut::with_capacity(wire.len());
        b.iter(|| {
            buf.extend_from_slice(wire);
            let mut n = 0;
            while let Some(event) = reader.read(&mut buf).expect("valid stream") {
                let Event::Message(Message::Binary(payload)) = event else {
                    panic!("expected binary messages");
                };
                black_box(&payload);
                n += 1;
            }
            assert_eq!(n, count);
        });
    });

    group.bench_function("tungstenite WebSocket::read", |b| {
        let stream = MemStream::new(wire);
        let mut ws = tungstenite::WebSocket::from_raw_socket(
            stream.clone(),
            tungstenite::protocol::Role::Server,
            None,
        );
        b.iter(|| {
            stream.rewind();
            for _ in 0..count {
                let msg = ws.read().expect("valid stream");
                assert!(msg.is_binary());
                black_box(&msg);
            }
        });
    });

    group.bench_function("tungstenite FrameSocket::read (no unmask)", |b| {
        let stream = MemStream::new(wire);
        let mut socket = tungstenite::protocol::frame::FrameSocket::new(stream.clone());
        b.iter(|| {
            stream.rewind();
            for _ in 0..count {
                let frame = socket.read(None).expect("valid stream").expect("a frame");
                black_box(frame.payload());
            }
        });
    });

    group.bench_function("fastwebsockets read_frame", |b| {
        let stream = MemStream::new(wire);
        let mut ws = fastwebsockets::WebSocket::after_handshake(
            stream.clone(),
            fastwebsockets::Role::Server,
        );
        ws.set_max_message_size(1 << 20);
        b.iter(|| {
            stream.rewind();
            for _ in 0..count {
                let frame = ws
                    .read_frame()
                    .now_or_never()
                    .expect("an in-memory stream is always ready")
                    .expect("valid stream");
                assert_eq!(frame.opcode, fastwebsockets::OpCode::Binary);
                black_box(&frame.payload[..]);
            }
        });
    });
    group.finish();
}

fn decode_small(c: &mut Criterion) {
    let count = 1000;
    let (wire, _) = masked_stream(count, |rng| 2 + rng.next() as usize % 124);
    decode_group(
        c,
        "decode_small",
        &wire,
        count,
        Throughput::Elements(count as u64),
    );
}

fn decode_64k(c: &mut Criterion) {
    let count = 16;
    let (wire, total) = masked_stream(count, |_| 64 * 1024);
    decode_group(c, "decode_64k", &wire, count, Throughput::Bytes(total));
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    let key = [0x37, 0xfa, 0x21, 0x3d];
    for (label, size) in [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)] {
        group.throughput(Throughput::Bytes(size as u64));
        let src: Vec<u8> = (0..size).map(|i| (i * 13) as u8).collect();
        let mut buf = src.clone();
        group.bench_function(BenchmarkId::new("memcpy", label), |b| {
            b.iter(|| buf.copy_from_slice(black_box(&src)));
        });
        group.bench_function(BenchmarkId::new("rfc6455 apply_mask", label), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), key));
        });
        group.bench_function(BenchmarkId::new("rfc6455 bytewise reference", label), |b| {
            b.iter(|| rfc6455::mask::apply_mask_bytewise(black_box(&mut buf), key));
        });
        group.bench_function(BenchmarkId::new("fastwebsockets unmask", label), |b| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut buf), key));
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let key = [0x37, 0xfa, 0x21, 0x3d];
    for (label, size) in [("125B", 125), ("64KiB", 64 << 10)] {
        let text: String = "chat message ".chars().cycle().take(size).collect();
        let payload = Bytes::from(text.clone());
        group.throughput(Throughput::Bytes(size as u64));

        group.bench_function(BenchmarkId::new("server rfc6455 Writer", label), |b| {
            let mut writer = Writer::server();
            let mut out = BytesMut::with_capacity(size + 16);
            b.iter(|| {
                out.clear();
                writer.text(&text, &mut out).expect("open");
                black_box(&out);
            });
        });
        group.bench_function(BenchmarkId::new("server tungstenite", label), |b| {
            let mut out = Vec::with_capacity(size + 16);
            b.iter(|| {
                out.clear();
                let frame = tungstenite::protocol::frame::Frame::message(
                    payload.clone(),
                    tungstenite::protocol::frame::coding::OpCode::Data(
                        tungstenite::protocol::frame::coding::Data::Text,
                    ),
                    true,
                );
                frame.format(&mut out).expect("a Vec accepts writes");
                black_box(&out);
            });
        });
        group.bench_function(BenchmarkId::new("server fastwebsockets", label), |b| {
            let mut out = Vec::with_capacity(size + 16);
            b.iter(|| {
                let mut frame =
                    fastwebsockets::Frame::text(fastwebsockets::Payload::Borrowed(text.as_bytes()));
                black_box(frame.write(&mut out));
            });
        });

        group.bench_function(BenchmarkId::new("client rfc6455 Writer", label), |b| {
            let mut writer = Writer::client(move || key);
            let mut out = BytesMut::with_capacity(size + 16);
            b.iter(|| {
                out.clear();
                writer.text(&text, &mut out).expect("open");
                black_box(&out);
            });
        });
        group.bench_function(BenchmarkId::new("client tungstenite", label), |b| {
            let mut out = Vec::with_capacity(size + 16);
            b.iter(|| {
                out.clear();
                let mut frame = tungstenite::protocol::frame::Frame::message(
                    payload.clone(),
                    tungstenite::protocol::frame::coding::OpCode::Data(
                        tungstenite::protocol::frame::coding::Data::Text,
                    ),
                    true,
                );
                frame.header_mut().mask = Some(key);
                frame.format(&mut out).expect("a Vec accepts writes");
                black_box(&out);
            });
        });
        group.bench_function(BenchmarkId::new("client fastwebsockets", label), |b| {
            // fastwebsockets masks the payload in place, so it gets a copy to mask, as
            // its writer does with an owned payload.
            let mut scratch = text.as_bytes().to_vec();
            let mut out = Vec::with_capacity(size + 16);
            b.iter(|| {
                scratch.copy_from_slice(text.as_bytes());
                let mut frame = fastwebsockets::Frame::new(
                    true,
                    fastwebsockets::OpCode::Text,
                    Some(key),
                    fastwebsockets::Payload::BorrowedMut(&mut scratch),
                );
                frame.mask();
                black_box(frame.write(&mut out));
            });
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8_64KiB");
    let sample = "chat: hello, κόσμε, こんにちは, привет, 😀 👍, ";
    let mut text = String::with_capacity(64 * 1024);
    for ch in sample.chars().cycle() {
        if text.len() + ch.len_utf8() > 64 * 1024 {
            break;
        }
        text.push(ch);
    }
    let bytes = text.as_bytes();
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("rfc6455 Utf8Validator", |b| {
        b.iter(|| {
            let mut v = Utf8Validator::new();
            v.feed(black_box(bytes)).expect("valid");
            v.finish().expect("complete");
        });
    });
    group.bench_function("std::str::from_utf8", |b| {
        b.iter(|| std::str::from_utf8(black_box(bytes)).expect("valid").len());
    });
    group.finish();
}

const BROWSER_REQUEST: &[u8] = b"GET /chat?room=general HTTP/1.1\r\n\
Host: chat.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://chat.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\r\n";

fn request_head(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_head");
    group.throughput(Throughput::Elements(1));
    group.bench_function("rfc6455 parse_request + validate_upgrade", |b| {
        b.iter(|| {
            let (head, _) = parse_request(black_box(BROWSER_REQUEST), &HeadLimits::DEFAULT)
                .expect("valid")
                .expect("complete");
            let req = validate_upgrade(&head).expect("valid upgrade");
            black_box(req.key.len());
        });
    });
    group.bench_function("rfc6455 parse_request", |b| {
        b.iter(|| {
            let (head, len) = parse_request(black_box(BROWSER_REQUEST), &HeadLimits::DEFAULT)
                .expect("valid")
                .expect("complete");
            black_box((head.headers.len(), len));
        });
    });
    group.bench_function("httparse alone", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            let status = req.parse(black_box(BROWSER_REQUEST)).expect("valid");
            black_box((status.is_complete(), req.headers.len()));
        });
    });
    group.finish();
}

/// Checks, outside the timed loops, that every library decodes the benchmark
/// stream to the same payloads, so the comparison is between equal work.
fn same_payloads(_: &mut Criterion) {
    let (wire, _) = masked_stream(50, |rng| 2 + rng.next() as usize % 124);
    let mut ours = Vec::new();
    let mut dec = Decoder::new(CodecConfig::server());
    let mut buf = BytesMut::from(&wire[..]);
    while let Some(frame) = dec.decode(&mut buf).expect("valid") {
        assert_eq!(frame.opcode, OpCode::Binary);
        ours.push(frame.payload);
    }
    assert_eq!(ours.len(), 50);
    let mut ws = tungstenite::WebSocket::from_raw_socket(
        MemStream::new(&wire),
        tungstenite::protocol::Role::Server,
        None,
    );
    let mut fast = fastwebsockets::WebSocket::after_handshake(
        MemStream::new(&wire),
        fastwebsockets::Role::Server,
    );
    for payload in &ours {
        assert_eq!(&ws.read().expect("valid").into_data()[..], &payload[..]);
        let frame = fast
            .read_frame()
            .now_or_never()
            .expect("ready")
            .expect("valid");
        assert_eq!(&frame.payload[..], &payload[..]);
    }
}

criterion_group!(
    benches,
    same_payloads,
    decode_small,
    decode_64k,
    unmask,
    encode,
    utf8,
    request_head
);
criterion_main!(benches);
