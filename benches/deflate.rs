//! permessage-deflate benchmarks: compressing and inflating chat-like JSON with the
//! `rfc6455` codec's deflate (flate2 with its pure-Rust backend).
//!
//! ```text
//! cargo bench --bench deflate -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The messages are chat events as the server sends them (`new_message` JSON with ids,
//! names, timestamps and a body) at four sizes: 128 B (an ack-sized event), 512 B (a
//! typical message), 4 KiB (a history page) and 64 KiB (a large sync).
//!
//! Groups, each per size with `Throughput::Bytes` of the plain message:
//! - `compress/{shared,dedicated_fresh,dedicated_takeover}`: one message per iteration.
//!   `shared` borrows the thread's compressor (`MessageCompressor::shared`, what the server
//!   uses in `--deflate shared`: no context takeover, each message ends with a full flush);
//!   `dedicated_fresh` owns one without context takeover; `dedicated_takeover` owns one and
//!   keeps context (`--deflate dedicated`), the same message over and over, which is the best
//!   case for it.
//! - `decompress/{fresh,takeover}`: inflating what the matching compressor produced.
//! - `frame/shared_512B`: `MessageCompressor::frame`, the whole compressed frame a broadcast
//!   is turned into once, header included.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rfc6455::deflate::{MessageCompressor, MessageDecompressor};
use rfc6455::OpCode;

const SIZES: [(usize, &str); 4] = [
    (128, "128B"),
    (512, "512B"),
    (4096, "4KiB"),
    (65536, "64KiB"),
];

/// Chat-like JSON of exactly `len` bytes: events for several conversations and users.
fn chat_json(len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "standup", "deploy", "lunch", "review", "merge", "ticket", "coffee", "release", "tests",
        "green", "tomorrow", "thanks",
    ];
    let mut s = String::new();
    let mut i = 0usize;
    while s.len() < len {
        let body: Vec<&str> = (0..6)
            .map(|k| WORDS[(i * 7 + k * 3) % WORDS.len()])
            .collect();
        s.push_str(&format!(
            r#"{{"type":"new_message","conversation":{},"id":{},"from":{{"id":{},"name":"user{}"}},"sentAt":"2026-12-02T15:{:02}:{:02}Z","body":"{}"}}"#,
            i % 9,
            100_000 + i * 37,
            i % 23,
            i % 23,
            i % 60,
            (i * 7) % 60,
            body.join(" ")
        ));
        i += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

fn compress(c: &mut Criterion) {
    let mut group = c.benchmark_group("compress");
    for (size, name) in SIZES {
        let message = chat_json(size);
        group.throughput(Throughput::Bytes(size as u64));
        let mut out = BytesMut::with_capacity(2 * size + 64);
        let mut shared = MessageCompressor::shared();
        group.bench_function(BenchmarkId::new("shared", name), |b| {
            b.iter(|| {
                out.clear();
                shared.compress(black_box(&message), &mut out);
                black_box(out.len())
            });
        });
        let mut fresh = MessageCompressor::new(true);
        group.bench_function(BenchmarkId::new("dedicated_fresh", name), |b| {
            b.iter(|| {
                out.clear();
                fresh.compress(black_box(&message), &mut out);
                black_box(out.len())
            });
        });
        let mut takeover = MessageCompressor::new(false);
        group.bench_function(BenchmarkId::new("dedicated_takeover", name), |b| {
            b.iter(|| {
                out.clear();
                takeover.compress(black_box(&message), &mut out);
                black_box(out.len())
            });
        });
    }
    group.finish();
}

fn decompress(c: &mut Criterion) {
    let mut group = c.benchmark_group("decompress");
    for (size, name) in SIZES {
        let message = chat_json(size);
        group.throughput(Throughput::Bytes(size as u64));
        let mut packed = BytesMut::new();
        MessageCompressor::new(true).compress(&message, &mut packed);
        let mut out = BytesMut::with_capacity(size + 64);
        let mut fresh = MessageDecompressor::shared();
        group.bench_function(BenchmarkId::new("fresh", name), |b| {
            b.iter(|| {
                out.clear();
                fresh
                    .decompress(black_box(&packed), size, &mut out)
                    .unwrap();
                black_box(out.len())
            });
        });
        // With context takeover: a stream of the same message, each compressed against
        // the previous ones, inflated in the same order.
        let mut compressor = MessageCompressor::new(false);
        let stream: Vec<BytesMut> = (0..64)
            .map(|_| {
                let mut p = BytesMut::new();
                compressor.compress(&message, &mut p);
                p
            })
            .collect();
        // One iteration inflates the whole stream.
        group.throughput(Throughput::Bytes((stream.len() * size) as u64));
        group.bench_function(BenchmarkId::new("takeover", name), |b| {
            b.iter_batched_ref(
                || MessageDecompressor::new(false),
                |d| {
                    for p in &stream {
                        out.clear();
                        d.decompress(p, size, &mut out).unwrap();
                    }
                    black_box(out.len())
                },
                criterion::BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

fn frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    let message = chat_json(512);
    group.throughput(Throughput::Bytes(512));
    let mut out = BytesMut::with_capacity(1024);
    let mut shared = MessageCompressor::shared();
    group.bench_function("shared_512B", |b| {
        b.iter(|| {
            out.clear();
            shared
                .frame(OpCode::Text, black_box(&message), None, &mut out)
                .unwrap();
            black_box(out.len())
        });
    });
    group.finish();
}

/// Prints the compressed size of each message once, for the README's ratio column.
fn ratios(_: &mut Criterion) {
    for (size, name) in SIZES {
        let message = chat_json(size);
        let mut fresh = BytesMut::new();
        MessageCompressor::new(true).compress(&message, &mut fresh);
        let mut takeover = MessageCompressor::new(false);
        let mut again = BytesMut::new();
        takeover.compress(&message, &mut again);
        again.clear();
        takeover.compress(&message, &mut again);
        println!(
            "ratio {name}: {} -> {} B without context takeover ({:.2}), {} B repeated with it",
            size,
            fresh.len(),
            fresh.len() as f64 / size as f64,
            again.len()
        );
    }
}

criterion_group!(benches, ratios, compress, decompress, frame);
criterion_main!(benches);
