//! Proof that the receive path allocates nothing per frame once warmed up.
//!
//! A counting global allocator wraps the system allocator and counts, per
//! thread, every allocation and reallocation. Each test reads the way a server
//! does: append a socket-sized chunk to one reused `BytesMut`, decode every
//! complete frame, hand it on and drop it; a frame cut at the chunk's end waits
//! for the next read. After a warm-up pass over the same traffic the count must
//! stay at zero for thousands of frames.
//!
//! `unsafe_code` is denied (not forbidden) workspace-wide so that this file
//! alone can implement `GlobalAlloc`, whose methods are `unsafe` by definition;
//! the library crates keep `#![forbid(unsafe_code)]`.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use rfc6455::{CodecConfig, Decoder, Event, Frame, Message, OpCode, Reader, Writer};

/// The system allocator, counting the allocations made by each thread.
struct CountingAllocator;

thread_local! {
    // Const-initialised and without a destructor, so touching it never allocates
    // and stays valid while the thread is torn down.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with` fails only while the thread-local is being torn down; the
    // allocations made then are not the ones under test.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the only addition is bumping a
// thread-local counter, which neither allocates nor touches the memory handed
// out, so the layout and pointer guarantees are exactly those of `System`.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's obligations for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// How many allocations `f` made on this thread.
fn allocations_during<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    (ALLOCATIONS.with(Cell::get) - before, result)
}

/// A typical socket read.
const READ_SIZE: usize = 16 * 1024;
/// Receive buffer capacity: a few reads, so consumed space is reclaimed in place.
const BUFFER_CAPACITY: usize = 64 * 1024;
const FRAMES: usize = 5_000;

/// The wire bytes of `FRAMES` masked client frames with payloads of 2 to 125
/// bytes, each with its own key, and the total payload length.
fn small_masked_frames(opcode: OpCode) -> (Vec<u8>, usize) {
    let mut wire = BytesMut::new();
    let mut payload_total = 0;
    for i in 0..FRAMES {
        let len = 2 + (i * 37) % 124;
        let payload: String = (0..len)
            .map(|j| char::from(b'a' + ((i + j) % 26) as u8))
            .collect();
        payload_total += len;
        let key = (i as u32).wrapping_mul(0x9E37_79B9).to_be_bytes();
        Frame::new(opcode, payload).encode(Some(key), &mut wire);
    }
    (wire.to_vec(), payload_total)
}

/// Reads `wire` in `READ_SIZE` chunks through `buf` with `read_one`, which
/// decodes one item and returns its payload length, or `None` when more bytes
/// are needed. Returns the number of items and the payload bytes seen.
fn serve(
    wire: &[u8],
    buf: &mut BytesMut,
    mut read_one: impl FnMut(&mut BytesMut) -> Option<usize>,
) -> (usize, usize) {
    let (mut items, mut bytes) = (0, 0);
    for chunk in wire.chunks(READ_SIZE) {
        buf.extend_from_slice(chunk);
        while let Some(len) = read_one(buf) {
            items += 1;
            bytes += len;
        }
    }
    (items, bytes)
}

#[test]
fn decoding_small_masked_frames_allocates_nothing_per_frame() {
    let (wire, payload_total) = small_masked_frames(OpCode::Binary);
    let mut decoder = Decoder::new(CodecConfig::server());
    let mut buf = BytesMut::with_capacity(BUFFER_CAPACITY);
    let mut decode = |buf: &mut BytesMut| {
        let frame = decoder.decode(buf).expect("valid frames")?;
        Some(frame.payload.len()) // the frame is dropped here, as after handling it
    };

    // Warm-up: the first split turns the buffer's storage into shared storage
    // (one allocation, for the reference count); from then on the storage is
    // reclaimed in place whenever every frame split off it has been dropped.
    let (warm_allocs, warm) = allocations_during(|| serve(&wire, &mut buf, &mut decode));
    assert_eq!(warm, (FRAMES, payload_total));
    assert!(warm_allocs <= 1, "warm-up: {warm_allocs} allocations");

    for round in 0..3 {
        let (allocs, seen) = allocations_during(|| serve(&wire, &mut buf, &mut decode));
        assert_eq!(seen, (FRAMES, payload_total));
        assert_eq!(
            allocs, 0,
            "round {round}: {allocs} allocations for {FRAMES} frames"
        );
    }
    assert!(buf.is_empty());
}

#[test]
fn reading_unfragmented_text_messages_allocates_nothing_per_message() {
    let (wire, payload_total) = small_masked_frames(OpCode::Text);
    let mut reader = Reader::new(CodecConfig::server());
    let mut buf = BytesMut::with_capacity(BUFFER_CAPACITY);
    let mut read = |buf: &mut BytesMut| match reader.read(buf).expect("valid messages")? {
        // Touch the text so validation and access are part of what is measured.
        Event::Message(Message::Text(text)) => Some(text.as_str().len()),
        other => panic!("expected a text message, got {other:?}"),
    };

    let (warm_allocs, warm) = allocations_during(|| serve(&wire, &mut buf, &mut read));
    assert_eq!(warm, (FRAMES, payload_total));
    assert!(warm_allocs <= 1, "warm-up: {warm_allocs} allocations");

    for round in 0..3 {
        let (allocs, seen) = allocations_during(|| serve(&wire, &mut buf, &mut read));
        assert_eq!(seen, (FRAMES, payload_total));
        assert_eq!(
            allocs, 0,
            "round {round}: {allocs} allocations for {FRAMES} messages"
        );
    }
}

#[test]
fn reading_pings_and_answering_them_allocates_nothing() {
    let (wire, payload_total) = small_masked_frames(OpCode::Ping);
    let mut reader = Reader::new(CodecConfig::server());
    let mut writer = Writer::server();
    let mut buf = BytesMut::with_capacity(BUFFER_CAPACITY);
    let mut out = BytesMut::with_capacity(BUFFER_CAPACITY);
    let mut answer = |buf: &mut BytesMut| match reader.read(buf).expect("valid pings")? {
        Event::Ping(payload) => {
            out.clear(); // as if the pong had been flushed to the socket
            writer.pong(&payload, &mut out).expect("a pong fits");
            Some(payload.len())
        }
        other => panic!("expected a ping, got {other:?}"),
    };

    let (warm_allocs, warm) = allocations_during(|| serve(&wire, &mut buf, &mut answer));
    assert_eq!(warm, (FRAMES, payload_total));
    assert!(warm_allocs <= 1, "warm-up: {warm_allocs} allocations");
    let (allocs, seen) = allocations_during(|| serve(&wire, &mut buf, &mut answer));
    assert_eq!(seen, (FRAMES, payload_total));
    assert_eq!(
        allocs, 0,
        "{allocs} allocations for {FRAMES} ping/pong pairs"
    );
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the proof above: a counter that never counts would prove nothing.
    let (allocs, v) = allocations_during(|| vec![1u8; 1000]);
    assert_eq!(v.len(), 1000);
    assert_eq!(allocs, 1);
    let (allocs, _) = allocations_during(|| {
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&[0; 64]);
        buf
    });
    assert!(
        allocs >= 2,
        "allocation and growth are both counted: {allocs}"
    );
}

#[test]
fn holding_payloads_costs_allocations_per_read_not_per_frame() {
    // An application that keeps payloads (queued for other clients, say) stops
    // the buffer's storage from being reclaimed; the next read then moves into
    // fresh storage. That is a cost per read, never per frame.
    let (wire, _) = small_masked_frames(OpCode::Binary);
    let reads = wire.len().div_ceil(READ_SIZE);
    let mut decoder = Decoder::new(CodecConfig::server());
    let mut buf = BytesMut::with_capacity(BUFFER_CAPACITY);
    let mut held = Vec::with_capacity(FRAMES);
    let (allocs, (frames, _)) = allocations_during(|| {
        serve(&wire, &mut buf, |buf| {
            let frame = decoder.decode(buf).expect("valid frames")?;
            let len = frame.payload.len();
            held.push(frame.payload);
            Some(len)
        })
    });
    assert_eq!(frames, FRAMES);
    assert!(
        allocs <= 2 * reads as u64,
        "{allocs} allocations for {reads} reads of {FRAMES} frames"
    );
}
