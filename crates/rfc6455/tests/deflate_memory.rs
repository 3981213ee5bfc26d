//! What permessage-deflate costs a connection in memory, measured.
//!
//! A global allocator counts the heap bytes each thread holds. Each test sets
//! up a connection's receive and send sides (`Reader` + `Writer`), exchanges
//! compressed messages, drops the messages, and reads how many heap bytes the
//! two still hold: what an idle connection costs once it has used the
//! extension. The figures are printed (`--nocapture`) and quoted in the
//! codec's README; the assertions pin them within a margin, so a change that
//! makes idle connections heavier fails here.
//!
//! `unsafe_code` is denied (not forbidden) workspace-wide so that a test file
//! can implement `GlobalAlloc`, whose methods are `unsafe` by definition.
#![cfg(feature = "deflate")]
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::mem::size_of;

use bytes::BytesMut;
use rfc6455::deflate::DeflateParams;
use rfc6455::{CodecConfig, Event, OpCode, Reader, Writer};

/// The system allocator, counting the bytes each thread holds.
struct CountingAllocator;

thread_local! {
    // Const-initialised and without a destructor, so touching it never
    // allocates and stays valid while the thread is torn down.
    static HELD: Cell<i64> = const { Cell::new(0) };
}

fn count(delta: i64) {
    // `try_with` fails only while the thread-local is torn down.
    let _ = HELD.try_with(|n| n.set(n.get() + delta));
}

fn signed(n: usize) -> i64 {
    i64::try_from(n).expect("allocation sizes fit in i64")
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the only addition is a thread-local
// counter update, which neither allocates nor touches the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(signed(layout.size()));
        // SAFETY: the caller's obligations for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(signed(layout.size()));
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(signed(new_size) - signed(layout.size()));
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-signed(layout.size()));
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn held() -> i64 {
    HELD.with(Cell::get)
}

/// A chat message of a few hundred bytes, as the server sends them.
const CHAT: &str = r#"{"type":"message","conversationId":"c-42","id":"m-1001","from":"alice","body":"see you at the standup in five minutes, bring the numbers from yesterday","sentAt":"2026-12-02T15:04:05Z"}"#;

/// A server connection's codec state: its reader and writer, with deflate
/// agreed on `params`.
struct Connection {
    reader: Reader,
    writer: Writer,
}

impl Connection {
    fn new(params: DeflateParams) -> Self {
        Self {
            reader: Reader::new(CodecConfig::server().with_deflate(params)),
            writer: Writer::server().with_deflate(params),
        }
    }

    /// Receives one compressed message from the client and sends one back;
    /// every buffer involved is dropped before returning.
    fn exchange(&mut self, client: &mut Writer) {
        let mut wire = BytesMut::new();
        client
            .compressed(OpCode::Text, CHAT.as_bytes(), &mut wire)
            .unwrap();
        let event = self.reader.read(&mut wire).unwrap();
        assert!(matches!(event, Some(Event::Message(_))));
        let mut out = BytesMut::new();
        self.writer
            .compressed(OpCode::Text, CHAT.as_bytes(), &mut out)
            .unwrap();
        assert!(out.len() < CHAT.len());
    }
}

fn client_writer(params: DeflateParams) -> Writer {
    Writer::client(|| [1, 2, 3, 4]).with_deflate(params)
}

/// Heap bytes held by one connection after it exchanged `messages` compressed
/// messages each way, with the thread's shared state already warm.
fn idle_cost(params: DeflateParams, messages: usize) -> i64 {
    let mut client = client_writer(params);
    // Warm the thread: the shared compressor and decompressor are created on
    // first use and then stay with the thread, not with any connection.
    Connection::new(params).exchange(&mut client);
    let before = held();
    let mut conn = Connection::new(params);
    for _ in 0..messages {
        conn.exchange(&mut client);
    }
    let cost = held() - before;
    drop(conn);
    cost
}

const NO_TAKEOVER: DeflateParams = DeflateParams {
    server_no_context_takeover: true,
    client_no_context_takeover: true,
    server_max_window_bits: None,
    client_max_window_bits: None,
};

#[test]
fn without_context_takeover_an_idle_connection_holds_no_deflate_state() {
    let cost = idle_cost(NO_TAKEOVER, 3);
    println!(
        "no context takeover: {cost} heap bytes per idle connection; \
         Reader {} B + Writer {} B inline",
        size_of::<Reader>(),
        size_of::<Writer>()
    );
    assert_eq!(cost, 0);
}

#[test]
fn with_context_takeover_a_connection_keeps_a_compressor_and_a_decompressor() {
    let params = DeflateParams::default();
    assert!(!params.server_no_context_takeover && !params.client_no_context_takeover);
    let before = held();
    let fresh = Connection::new(params);
    assert_eq!(held() - before, 0, "nothing before the first message");
    drop(fresh);

    // The send side's state is created by its first message and then kept.
    let mut conn = Connection::new(params);
    let at_send = held();
    let mut out = BytesMut::new();
    conn.writer
        .compressed(OpCode::Text, CHAT.as_bytes(), &mut out)
        .unwrap();
    drop(out);
    let compressor = held() - at_send;
    // The whole connection after messages both ways; the rest is the receive
    // side's state.
    let total = idle_cost(params, 3);
    let decompressor = total - compressor;
    println!(
        "context takeover: {total} B per idle connection \
         (decompressor {decompressor} B, compressor {compressor} B)"
    );
    // miniz_oxide's inflate state is a 32 KiB window plus its tables; its
    // deflate state a 32 KiB window, two 32 Ki-entry u16 hash chains and its
    // code and output buffers.
    assert!((40_000..50_000).contains(&decompressor), "{decompressor}");
    assert!((280_000..330_000).contains(&compressor), "{compressor}");
}

#[test]
fn a_peer_in_the_middle_of_a_fragmented_message_holds_one_decompressor_until_its_end() {
    use rfc6455::deflate::MessageCompressor;
    use rfc6455::Frame;
    let mut packed = BytesMut::new();
    MessageCompressor::new(true).compress(CHAT.as_bytes(), &mut packed);
    let packed = packed.freeze();
    let mut first = Frame::new(OpCode::Text, packed.slice(..10)).with_fin(false);
    first.rsv = 0b100;
    let last = Frame::new(OpCode::Continuation, packed.slice(10..));
    let key = Some([9, 8, 7, 6]);

    // Warm the thread's pool, then measure one connection.
    let mut conn = Connection::new(NO_TAKEOVER);
    conn.exchange(&mut client_writer(NO_TAKEOVER));
    let before = held();
    let mut wire = BytesMut::new();
    first.encode(key, &mut wire);
    assert_eq!(conn.reader.read(&mut wire).unwrap(), None);
    let during = held() - before;
    last.encode(key, &mut wire);
    assert!(conn.reader.read(&mut wire).unwrap().is_some());
    drop(wire);
    let after = held() - before;
    println!("mid-message: {during} B held, {after} B after the last frame");
    // The pooled decompressor is lent (no new allocation beyond the partial
    // output); it goes back to the thread once the message is whole.
    assert!(during < 4096, "{during}");
    assert_eq!(after, 0);
}
