//! The per-connection state shared by its read pump, its write pump and the hub: a bounded
//! queue of encoded frames, the wake-ups between the three, and the liveness flag.
//!
//! Why not a `tokio::sync::mpsc` per connection: its first block of slots is allocated up
//! front, which alone is several times the per-connection memory budget (2 KiB at 10k idle
//! connections). An empty `VecDeque` allocates nothing, and the whole struct is a few hundred
//! bytes. The queue is bounded by frame count *and* bytes; frames are `Bytes`, so a broadcast
//! queued for a thousand recipients is one allocation.
//!
//! Two bounds: past the soft one (`soft_frames`) the client counts as slow and the hub starts
//! its grace period; the hard one (`max_bytes`, with a per-frame overhead so tiny frames count
//! too) is never exceeded: a push that would cross it is refused, the client has then lost a
//! frame and the hub evicts it at once. So a client is either sent every frame in order, or
//! disconnected (and resynchronises on reconnect); there is no silent gap.
//!
//! The bounds cover frames the write pump has taken but not yet written (`outstanding`), so
//! the writer's private batch cannot become a second, unbounded queue.
//!
//! **Writing at once.** The outbox also holds the connection's write half. While nothing is
//! queued or being written (`outstanding == 0`), whoever holds the lock may write straight to
//! the socket with a non-blocking `try_write`: the read pump answering a batch of echoes
//! (`Outbox::send_batch`), the hub fanning out at a low rate. That saves the queue entry,
//! the write pump's wake-up and its task poll. Order is kept because the check and the write
//! happen under the lock and the write pump only writes frames it took (which keeps
//! `outstanding` above zero until they are written). Whatever the socket does not take at
//! once is queued, in order, for the write pump, exactly as a plain push.
//!
//! **One delivery policy for the hub.** Everything the hub sends (broadcasts, pings, and
//! every chat event it will send) goes through [`Outbox::deliver`]. The outbox picks the I/O
//! strategy from the hub's [`Pace`] hint (a direct write when the hub is idle, a queue push
//! when more work waits behind the frame) and applies the slow-consumer rules the same way
//! for every frame; the hub only acts on the returned [`Delivery`]: nothing, watch the
//! client, or evict it now.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use std::io::{ErrorKind, IoSlice};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use rfc6455::deflate::MessageCompressor;

use crate::metrics::{self, Metrics};
use crate::wire;

/// At most this many slices per vectored write.
pub(crate) const MAX_IOV: usize = 64;

/// Bytes charged per queued frame on top of its length (the queue entry and the shared
/// allocation's header), so the byte bound also bounds a flood of tiny frames.
pub const FRAME_OVERHEAD: usize = 64;

/// How a connection's data frames go out: permessage-deflate (RFC 7692) as agreed at its
/// upgrade. Only frames delivered through [`Outbox::deliver`] (everything the hub and the
/// chat session send) are compressed; the read pump's replies (pongs, echoes) go out plain,
/// which RFC 7692 allows for any message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutDeflate {
    /// Not agreed: every frame as given.
    #[default]
    Off,
    /// Agreed without server context takeover: a data frame of at least `threshold` payload
    /// bytes goes out in the compressed form its sender made once for every such recipient.
    Shared {
        /// Smallest payload worth compressing.
        threshold: usize,
    },
    /// Agreed with server context takeover: data frames of at least `threshold` payload
    /// bytes are compressed here, in queue order, by this connection's own compressor.
    Dedicated {
        /// Smallest payload worth compressing.
        threshold: usize,
    },
}

/// A hint for [`Outbox::deliver`]: how busy the sender is. The outbox turns it into an I/O
/// strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Nothing else waits behind this frame (a low rate): write it straight to an idle
    /// socket, one syscall instead of a write pump's wake-up, poll and syscall.
    Idle,
    /// More work is queued behind this frame (under load): queue it, so each write pump
    /// coalesces several frames into one write (a syscall per frame would halve the
    /// fan-out throughput).
    Busy,
}

/// What the hub must do about a client after [`Outbox::deliver`] or [`Outbox::recheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The frame was written or queued and the client keeps up: nothing to do.
    Done,
    /// The frame was queued, but the queue is past its soft limit and the grace period is
    /// running: watch the client and [`Outbox::recheck`] it later.
    Watch,
    /// Evict the client now (close 1008): its queue stayed past the soft limit for the whole
    /// grace period, or the frame would have crossed the hard bound (the client would have
    /// missed it silently). The frame is not delivered.
    Evict,
    /// The connection is closing; the frame was dropped.
    Closed,
}

impl Delivery {
    /// Whether the frame reached the socket or the queue for good (counted as delivered).
    #[must_use]
    pub fn delivered(self) -> bool {
        matches!(self, Self::Done | Self::Watch)
    }
}

/// The outcome of a write or queue attempt, before the slow-consumer rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// The frame was written to the socket at once.
    Sent,
    /// The frame was queued.
    Queued,
    /// The frame was queued, but the queue is past its soft limit.
    Backlogged {
        /// When the queue crossed the soft limit (start of the slow-consumer grace period).
        since: Instant,
    },
    /// The frame would cross the hard bound and was not queued; the client must be evicted.
    Overflow,
    /// The connection is closing; nothing more is sent on it.
    Closed,
}

/// What the write pump learns from [`Outbox::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TakeState {
    /// A Close frame is queued (it is always the last frame); the writer finishes and stops.
    pub(crate) closing: bool,
    /// The read pump has ended.
    pub(crate) reader_done: bool,
}

#[derive(Debug, Default)]
struct Queue {
    /// Frames not yet taken by the write pump.
    frames: VecDeque<Bytes>,
    /// Frames queued or taken but not fully written (the bound applies to these).
    outstanding: usize,
    /// Bytes of those frames.
    outstanding_bytes: usize,
    /// When the soft limit was crossed, if the queue is still past it.
    backlog_since: Option<Instant>,
    /// A Close frame has been queued; later pushes are refused.
    closing: bool,
    /// The writer must drop its taken-but-unstarted frames (set by eviction).
    discard: bool,
    /// The read pump has ended.
    reader_done: bool,
    /// The read pump's waker while it waits for the socket, so a kill can wake it. A waker
    /// slot instead of a `Notify` keeps the pump's resting future small: it waits in a single
    /// `poll_fn` (see `pump::read`).
    reader_waker: Option<Waker>,
    /// The write pump's waker while it waits for frames (or for the socket).
    writer_waker: Option<Waker>,
    /// With [`OutDeflate::Dedicated`], this connection's compressor, from its first
    /// compressed frame on. Under the queue's lock, so frames are compressed in the order
    /// they are queued, which is the order the peer inflates them in.
    compressor: Option<Box<MessageCompressor>>,
}

/// Per-connection shared state. See the module docs.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    soft_frames: usize,
    max_bytes: usize,
    /// Wakes a producer waiting for room (the echo endpoint applies backpressure instead of
    /// dropping).
    room: Notify,
    killed: AtomicBool,
    /// Set by the read pump on every received byte, cleared by each liveness sweep.
    alive: AtomicBool,
    /// The connection's write half; `None` in tests of the queue alone (everything is then
    /// queued).
    socket: Option<OwnedWriteHalf>,
    /// permessage-deflate as agreed at the upgrade.
    deflate: OutDeflate,
}

impl Outbox {
    /// An empty outbox: slow past `soft_frames` frames, never more than `max_bytes` bytes
    /// (counting [`FRAME_OVERHEAD`] per frame).
    #[must_use]
    pub fn new(soft_frames: usize, max_bytes: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            soft_frames,
            max_bytes,
            room: Notify::new(),
            killed: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            socket: None,
            deflate: OutDeflate::Off,
        }
    }

    /// Sends this connection's data frames compressed as `deflate` says.
    #[must_use]
    pub fn with_deflate(mut self, deflate: OutDeflate) -> Self {
        self.deflate = deflate;
        self
    }

    /// The payload size from which a sender should hand [`Outbox::deliver`] the shared
    /// compressed form of a frame: `Some` only for [`OutDeflate::Shared`].
    #[must_use]
    pub fn shared_deflate(&self) -> Option<usize> {
        match self.deflate {
            OutDeflate::Shared { threshold } => Some(threshold),
            _ => None,
        }
    }

    /// Like [`Outbox::new`], owning the connection's write half, so frames can be written at
    /// once while nothing is queued. Dropping the outbox (when the pumps and the hub are done
    /// with it) shuts the write side down.
    #[must_use]
    pub(crate) fn with_socket(
        soft_frames: usize,
        max_bytes: usize,
        socket: OwnedWriteHalf,
    ) -> Self {
        Self {
            socket: Some(socket),
            ..Self::new(soft_frames, max_bytes)
        }
    }

    /// The socket, for the write pump.
    pub(crate) fn socket(&self) -> Option<&TcpStream> {
        self.socket.as_ref().map(AsRef::as_ref)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue inconsistent in a way that
        // matters more than losing the connection, so keep going with the data.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers one encoded frame for the hub, the one policy for everything it sends. Never
    /// blocks.
    ///
    /// With [`Pace::Idle`] the frame is written to the socket at once when nothing is queued
    /// or being written and the socket takes it (only what it does not take is queued);
    /// with [`Pace::Busy`] it is queued for the write pump. A queue past its soft limit for
    /// longer than `grace`, or a frame that would cross the hard bound, asks for eviction;
    /// a queue past its soft limit within `grace`, for watching. Direct writes and frames
    /// refused at the hard bound are counted in `metrics`.
    ///
    /// `deflated` is the frame's shared compressed form (see [`Outbox::shared_deflate`]),
    /// sent instead of `frame` to a connection that agreed to it; one with its own
    /// compressor compresses `frame` itself.
    pub fn deliver(
        &self,
        frame: Bytes,
        deflated: Option<Bytes>,
        pace: Pace,
        grace: Duration,
        metrics: &Metrics,
    ) -> Delivery {
        let out = Outgoing {
            plain: frame,
            deflated,
            metrics,
        };
        let pushed = match pace {
            Pace::Idle => self.send(out),
            Pace::Busy => self.push_out(out),
        };
        match pushed {
            Push::Sent | Push::Queued => Delivery::Done,
            Push::Backlogged { since } => behind_since(since, grace),
            Push::Overflow => {
                metrics::inc(&metrics.queue_full_drops);
                Delivery::Evict
            }
            Push::Closed => Delivery::Closed,
        }
    }

    /// For a client being watched: [`Delivery::Done`] once its queue is back under the soft
    /// limit, [`Delivery::Evict`] once it has been past it for `grace`, else
    /// [`Delivery::Watch`]; [`Delivery::Closed`] when the connection is closing.
    pub fn recheck(&self, grace: Duration) -> Delivery {
        let q = self.lock();
        if q.closing || self.is_killed() {
            return Delivery::Closed;
        }
        match q.backlog_since {
            None => Delivery::Done,
            Some(since) => behind_since(since, grace),
        }
    }

    /// Queues an encoded data or control frame without waiting, as it is.
    #[cfg(test)]
    fn push(&self, frame: Bytes) -> Push {
        self.push_out(Outgoing {
            plain: frame,
            deflated: None,
            metrics: &Metrics::default(),
        })
    }

    /// Queues a frame in the form this connection takes it, without waiting.
    fn push_out(&self, out: Outgoing<'_>) -> Push {
        let mut q = self.lock();
        if q.closing || self.killed.load(Ordering::Relaxed) {
            return Push::Closed;
        }
        let frame = self.outgoing(&mut q, out);
        let result = self.enqueue(&mut q, frame);
        self.wake_writer(q);
        result
    }

    /// The bytes to send for `out` on this connection: the plain frame, the shared
    /// compressed form, or the frame compressed by this connection's own compressor. Called
    /// under the lock, right before queueing or writing, so a dedicated compressor sees
    /// frames in wire order.
    fn outgoing(&self, q: &mut Queue, out: Outgoing<'_>) -> Bytes {
        let compressed = match self.deflate {
            OutDeflate::Off => None,
            OutDeflate::Shared { .. } => out.deflated,
            OutDeflate::Dedicated { threshold } => {
                let compressor = q
                    .compressor
                    .get_or_insert_with(|| Box::new(MessageCompressor::new(false)));
                wire::deflate_dedicated(compressor, &out.plain, threshold, out.metrics)
            }
        };
        match compressed {
            Some(frame) => {
                metrics::inc(&out.metrics.deflate.deliveries);
                frame
            }
            None => out.plain,
        }
    }

    /// Like `push`, but writes the frame to the socket at once when nothing is queued or
    /// being written and the socket takes it; only what it does not take is queued. Costs a
    /// syscall under this outbox's lock instead of a wake-up of the write pump. Direct writes
    /// are counted in `metrics`.
    fn send(&self, out: Outgoing<'_>) -> Push {
        let metrics = out.metrics;
        let mut q = self.lock();
        if q.closing || self.killed.load(Ordering::Relaxed) {
            return Push::Closed;
        }
        let frame = self.outgoing(&mut q, out);
        let written = match self.write_now(&q, &[IoSlice::new(&frame)]) {
            Some(n) => n,
            None => {
                drop(q);
                self.kill();
                return Push::Closed;
            }
        };
        if written == frame.len() {
            count_direct(metrics, 1, written);
            return Push::Sent;
        }
        count_direct(metrics, 0, written);
        // The rest goes first in the queue (which is empty): the frame is started, so it
        // is owed in full whatever the bounds say.
        let rest = frame.slice(written..);
        let result = if written > 0 {
            self.enqueue_unbounded(&mut q, rest)
        } else {
            self.enqueue(&mut q, rest)
        };
        self.wake_writer(q);
        result
    }

    /// Sends a batch of encoded frames (the read pump's replies): written at once with one
    /// vectored write when nothing is queued or being written; what the socket does not take
    /// is queued frame by frame, in order.
    ///
    /// `iov` spells the whole batch, `frames` frames. Only if the socket does not take all of
    /// it, `unwritten(written, queue)` is called, under the lock, and must hand `queue` what
    /// is left of every frame not written in full, in order, after the first `written` bytes.
    /// On [`Push::Overflow`] nothing was sent or queued (wait for room and retry); on any
    /// other result the caller is done with the batch.
    ///
    /// With `force`, the batch is queued even past the hard bound (bounded by one batch):
    /// for the last replies before a Close.
    pub(crate) fn send_batch(
        &self,
        iov: &[IoSlice<'_>],
        frames: usize,
        force: bool,
        metrics: &Metrics,
        unwritten: impl FnOnce(usize, &mut dyn FnMut(Bytes)),
    ) -> Push {
        let len: usize = iov.iter().map(|s| s.len()).sum();
        let mut q = self.lock();
        if q.closing || self.killed.load(Ordering::Relaxed) {
            return Push::Closed;
        }
        let Some(written) = self.write_now(&q, iov) else {
            drop(q);
            self.kill();
            return Push::Closed;
        };
        if written == len {
            count_direct(metrics, frames, written);
            return Push::Sent;
        }
        // Refuse only an untouched batch that would cross the hard bound while frames wait
        // (an empty queue always takes it, so a large batch cannot wait forever).
        if written == 0
            && !force
            && q.outstanding > 0
            && q.outstanding_bytes + len + frames * FRAME_OVERHEAD > self.max_bytes
        {
            return Push::Overflow;
        }
        let mut queued = 0;
        let mut result = Push::Queued;
        unwritten(written, &mut |rest| {
            queued += 1;
            result = self.enqueue_unbounded(&mut q, rest);
        });
        count_direct(metrics, frames - queued, written);
        self.wake_writer(q);
        result
    }

    /// Writes `bufs` to the socket if nothing is queued or being written. Returns the bytes
    /// written (0 if the socket would block or there is no socket), `None` on a socket error.
    fn write_now(&self, q: &Queue, bufs: &[IoSlice<'_>]) -> Option<usize> {
        let Some(socket) = &self.socket else {
            return Some(0);
        };
        if q.outstanding > 0 {
            return Some(0);
        }
        let socket: &TcpStream = socket.as_ref();
        let result = if let [one] = bufs {
            socket.try_write(one)
        } else {
            socket.try_write_vectored(bufs)
        };
        match result {
            Ok(n) => Some(n),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Some(0),
            Err(_) => None,
        }
    }

    /// Queues within the hard bound.
    fn enqueue(&self, q: &mut Queue, frame: Bytes) -> Push {
        if q.outstanding_bytes + frame.len() + FRAME_OVERHEAD > self.max_bytes {
            return Push::Overflow;
        }
        self.enqueue_unbounded(q, frame)
    }

    /// Queues even past the hard bound: for the rest of a frame already partly written.
    fn enqueue_unbounded(&self, q: &mut Queue, frame: Bytes) -> Push {
        q.outstanding += 1;
        q.outstanding_bytes += frame.len() + FRAME_OVERHEAD;
        q.frames.push_back(frame);
        if q.outstanding > self.soft_frames {
            Push::Backlogged {
                since: *q.backlog_since.get_or_insert_with(Instant::now),
            }
        } else {
            Push::Queued
        }
    }

    /// Releases the lock, waking the write pump if it sleeps. The waker is taken on the first
    /// push after the writer went to sleep; later pushes find none and join the same batch.
    fn wake_writer(&self, mut q: MutexGuard<'_, Queue>) {
        let waker = q.writer_waker.take();
        drop(q);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Queues a Close frame as the last frame of the connection. With `discard`, frames not
    /// yet started are dropped first (eviction: the peer is not reading them anyway).
    /// Returns `false` if a Close was already queued.
    pub fn close(&self, close_frame: Bytes, discard: bool) -> bool {
        let mut q = self.lock();
        if q.closing {
            return false;
        }
        q.closing = true;
        if discard {
            let dropped = std::mem::take(&mut q.frames);
            q.outstanding -= dropped.len();
            q.outstanding_bytes -= dropped
                .iter()
                .map(|f| f.len() + FRAME_OVERHEAD)
                .sum::<usize>();
            q.discard = true;
        }
        q.outstanding += 1;
        q.outstanding_bytes += close_frame.len() + FRAME_OVERHEAD;
        q.frames.push_back(close_frame);
        let waker = q.writer_waker.take();
        drop(q);
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Whether a Close frame has been queued (by us, in any path).
    pub fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// When the queue crossed its soft limit, if it is still past it.
    pub fn backlog_since(&self) -> Option<Instant> {
        self.lock().backlog_since
    }

    /// Frames queued or being written.
    pub fn len(&self) -> usize {
        self.lock().outstanding
    }

    /// Whether nothing is queued or being written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves queued frames to the end of the writer's batch. `front_started` says whether
    /// the batch's first frame is partly written (it must then be finished, even on discard,
    /// or the stream would lose framing).
    pub(crate) fn take(&self, batch: &mut VecDeque<Bytes>, front_started: bool) -> TakeState {
        let mut q = self.lock();
        if q.discard {
            q.discard = false;
            let keep = usize::from(front_started && !batch.is_empty());
            for dropped in batch.drain(keep..) {
                q.outstanding -= 1;
                q.outstanding_bytes -= dropped.len() + FRAME_OVERHEAD;
            }
        }
        if batch.is_empty() {
            std::mem::swap(batch, &mut q.frames);
        } else {
            batch.extend(q.frames.drain(..));
        }
        TakeState {
            closing: q.closing,
            reader_done: q.reader_done,
        }
    }

    /// Reports bytes written by the write pump, of which `frames` completed frames, making
    /// room in the queue.
    pub(crate) fn written(&self, frames: usize, bytes: usize) {
        if frames == 0 && bytes == 0 {
            return;
        }
        let mut q = self.lock();
        q.outstanding -= frames;
        q.outstanding_bytes -= bytes + frames * FRAME_OVERHEAD;
        if q.outstanding <= self.soft_frames {
            q.backlog_since = None;
        }
        drop(q);
        self.room.notify_one();
    }

    /// Waits until the writer has made progress since the last call (may return early; the
    /// caller retries its push).
    pub(crate) async fn room(&self) {
        self.room.notified().await;
    }

    /// Called by the read pump when it ends, so the writer can finish.
    pub(crate) fn reader_finished(&self) {
        let waker = {
            let mut q = self.lock();
            q.reader_done = true;
            q.writer_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// For the write pump: whether there is news to act on (frames to take, a discard, the
    /// reader's end while nothing is left to write, or a kill); if not, stores `waker` to be
    /// woken when there is. Checked and registered under one lock, so nothing is missed.
    pub(crate) fn writer_has_news(&self, waker: &Waker, batch_empty: bool) -> bool {
        let mut q = self.lock();
        if !q.frames.is_empty() || q.discard || (batch_empty && q.reader_done) || self.is_killed() {
            return true;
        }
        if !q.writer_waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            q.writer_waker = Some(waker.clone());
        }
        false
    }

    /// Records a sign of life from the peer.
    pub fn mark_alive(&self) {
        // A load first keeps the cache line shared in the common already-set case.
        if !self.alive.load(Ordering::Relaxed) {
            self.alive.store(true, Ordering::Relaxed);
        }
    }

    /// Returns whether the peer showed life since the last call, and resets the flag.
    pub fn take_alive(&self) -> bool {
        self.alive.swap(false, Ordering::Relaxed)
    }

    /// Tears the connection down without a close handshake: both pumps stop. Every waiter
    /// of either pump is woken; each checks [`Outbox::is_killed`] when it wakes.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let (reader, writer) = {
            let mut q = self.lock();
            (q.reader_waker.take(), q.writer_waker.take())
        };
        for waker in [reader, writer].into_iter().flatten() {
            waker.wake();
        }
        self.room.notify_one();
    }

    /// Whether [`Outbox::kill`] was called.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Stores the read pump's waker for [`Outbox::kill`], then reports whether the connection
    /// is already killed. Registering before checking means a kill is never missed.
    pub(crate) fn register_reader(&self, waker: &Waker) -> bool {
        {
            let mut q = self.lock();
            if !q.reader_waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                q.reader_waker = Some(waker.clone());
            }
        }
        self.is_killed()
    }
}

/// A frame on its way into an outbox, with what [`Outbox::outgoing`] needs to pick its form.
struct Outgoing<'a> {
    plain: Bytes,
    deflated: Option<Bytes>,
    metrics: &'a Metrics,
}

/// The verdict on a queue past its soft limit since `since`.
fn behind_since(since: Instant, grace: Duration) -> Delivery {
    if since.elapsed() >= grace {
        Delivery::Evict
    } else {
        Delivery::Watch
    }
}

fn count_direct(m: &Metrics, frames: usize, bytes: usize) {
    if frames > 0 {
        metrics::add(&m.frames_out, frames as u64);
    }
    if bytes > 0 {
        metrics::add(&m.bytes_out, bytes as u64);
    }
}

/// Drops `n` written bytes from the front of a batch. Returns (frames completed, whether the
/// new front frame is partly written).
pub(crate) fn advance(batch: &mut VecDeque<Bytes>, mut n: usize) -> (usize, bool) {
    let mut done = 0;
    while n > 0 {
        let Some(front) = batch.front_mut() else {
            break;
        };
        if n >= front.len() {
            n -= front.len();
            batch.pop_front();
            done += 1;
        } else {
            front.advance(n);
            return (done, true);
        }
    }
    (done, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    /// A frame sent as it is.
    fn plain(frame: Bytes, metrics: &Metrics) -> Outgoing<'_> {
        Outgoing {
            plain: frame,
            deflated: None,
            metrics,
        }
    }

    #[test]
    fn soft_limit_marks_backlog_and_hard_limit_refuses() {
        let ob = Outbox::new(2, 3 * (FRAME_OVERHEAD + 1));
        assert_eq!(ob.push(b("a")), Push::Queued);
        assert_eq!(ob.push(b("b")), Push::Queued);
        let Push::Backlogged { since } = ob.push(b("c")) else {
            panic!("expected backlog")
        };
        assert_eq!(ob.backlog_since(), Some(since));
        assert_eq!(ob.push(b("d")), Push::Overflow, "never past the hard bound");
        // Taking does not make room; only writing does.
        let mut batch = VecDeque::new();
        ob.take(&mut batch, false);
        assert_eq!(batch.len(), 3);
        assert_eq!(ob.push(b("d")), Push::Overflow);
        ob.written(1, 1);
        assert_eq!(ob.backlog_since(), None, "back under the soft limit");
        assert_eq!(
            ob.push(b("e")),
            Push::Backlogged {
                since: ob.backlog_since().unwrap()
            }
        );
        ob.written(3, 3);
        assert!(ob.is_empty());
    }

    #[test]
    fn close_is_last_and_discard_keeps_a_started_frame() {
        let ob = Outbox::new(10, 1000);
        ob.push(b("one"));
        ob.push(b("two"));
        let mut batch = VecDeque::new();
        ob.take(&mut batch, false);
        let (done, started) = advance(&mut batch, 1);
        assert_eq!((done, started), (0, true));
        ob.written(done, 1);
        ob.push(b("three"));
        assert!(ob.close(b("CLOSE"), true));
        assert!(!ob.close(b("CLOSE2"), true));
        assert_eq!(ob.push(b("late")), Push::Closed);
        let st = ob.take(&mut batch, started);
        assert!(st.closing);
        assert_eq!(batch, VecDeque::from(vec![b("ne"), b("CLOSE")]));
        // "one" (still outstanding) + "CLOSE"; "two" and "three" were dropped.
        assert_eq!(ob.len(), 2);
        ob.written(2, 2 + 5);
        assert!(ob.is_empty());
        assert_eq!(ob.lock().outstanding_bytes, 0);
    }

    #[test]
    fn advance_across_frames() {
        let mut batch = VecDeque::from(vec![b("ab"), b("cd"), b("ef")]);
        assert_eq!(advance(&mut batch, 3), (1, true));
        assert_eq!(batch, VecDeque::from(vec![b("d"), b("ef")]));
        assert_eq!(advance(&mut batch, 3), (2, false));
        assert!(batch.is_empty());
    }

    #[test]
    fn liveness_flag() {
        let ob = Outbox::new(1, 1);
        assert!(ob.take_alive(), "a new connection counts as alive");
        assert!(!ob.take_alive());
        ob.mark_alive();
        assert!(ob.take_alive());
    }

    #[tokio::test]
    async fn kill_wakes_both_pumps_even_if_they_wait_later() {
        let ob = std::sync::Arc::new(Outbox::new(1, 1));
        let reader = tokio::spawn({
            let ob = ob.clone();
            std::future::poll_fn(move |cx| {
                if ob.register_reader(cx.waker()) {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
        });
        tokio::task::yield_now().await;
        ob.kill();
        reader.await.unwrap();
        let waker = futures_noop_waker();
        assert!(ob.writer_has_news(&waker, true), "the writer sees the kill");
        assert!(ob.is_killed());
        assert_eq!(ob.push(b("x")), Push::Closed);
    }

    fn futures_noop_waker() -> Waker {
        std::task::Waker::noop().clone()
    }

    #[test]
    fn writer_sleeps_until_news_and_first_push_wakes_it() {
        let ob = Outbox::new(10, 1000);
        let waker = futures_noop_waker();
        assert!(!ob.writer_has_news(&waker, true));
        ob.push(b("a"));
        assert!(
            ob.lock().writer_waker.is_none(),
            "the first push took the waker"
        );
        assert!(ob.writer_has_news(&waker, true));
        let mut batch = VecDeque::new();
        ob.take(&mut batch, false);
        assert!(!ob.writer_has_news(&waker, false));
        ob.reader_finished();
        assert!(
            !ob.writer_has_news(&waker, false),
            "still writing: the reader's end can wait"
        );
        assert!(ob.writer_has_news(&waker, true));
    }

    /// A connected pair: the outbox owns the server side's write half.
    async fn pair(soft: usize, max: usize) -> (Outbox, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_rd, wr) = server.into_split();
        (Outbox::with_socket(soft, max, wr), client)
    }

    async fn read_exact(client: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut got = vec![0; n];
        client.read_exact(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn send_writes_at_once_only_while_nothing_is_queued() {
        let (ob, mut client) = pair(10, 1000).await;
        let m = Metrics::default();
        assert_eq!(ob.send(plain(b("one"), &m)), Push::Sent);
        assert!(ob.is_empty(), "nothing queued");
        assert_eq!(read_exact(&mut client, 3).await, b"one");
        // A queued frame must go first: later sends queue behind it.
        assert_eq!(ob.push(b("two")), Push::Queued);
        assert_eq!(ob.send(plain(b("three"), &m)), Push::Queued);
        let mut batch = VecDeque::new();
        ob.take(&mut batch, false);
        assert_eq!(batch, VecDeque::from(vec![b("two"), b("three")]));
        assert_eq!(
            ob.send(plain(b("four"), &m)),
            Push::Queued,
            "taken is not written"
        );
        ob.written(2, 8);
        ob.take(&mut batch, false);
        ob.written(1, 4);
        assert_eq!(ob.send(plain(b("five"), &m)), Push::Sent, "drained again");
        assert_eq!(read_exact(&mut client, 4).await, b"five");
        assert_eq!(m.frames_out.load(Ordering::Relaxed), 2);
        assert!(ob.close(b("CLOSE"), false));
        assert_eq!(ob.send(plain(b("late"), &m)), Push::Closed);
    }

    /// Sends `frames` as one batch, one slice per frame, as the read pump sends its replies.
    fn send_frames(ob: &Outbox, frames: &[Bytes], m: &Metrics) -> Push {
        let iov: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
        ob.send_batch(&iov, frames.len(), false, m, |written, queue| {
            let mut pos = 0;
            for frame in frames {
                if pos + frame.len() > written {
                    queue(frame.slice(written.saturating_sub(pos)..));
                }
                pos += frame.len();
            }
        })
    }

    #[tokio::test]
    async fn a_batch_goes_out_in_one_write_or_queues_in_order() {
        use rfc6455::Frame;
        let (ob, mut client) = pair(100, 1 << 20).await;
        let m = Metrics::default();
        let frames = [
            Frame::text("a").to_bytes(),
            Frame::binary(vec![1u8; 3000]).to_bytes(),
        ];
        assert_eq!(send_frames(&ob, &frames, &m), Push::Sent);
        assert!(ob.is_empty());
        let wire = frames.concat();
        assert_eq!(read_exact(&mut client, wire.len()).await, wire);
        // Behind a queued frame, a batch is queued one entry per frame, after it.
        ob.push(b("q"));
        let frames = [Frame::text("b").to_bytes(), Frame::text("c").to_bytes()];
        assert_eq!(send_frames(&ob, &frames, &m), Push::Queued);
        let mut batch = VecDeque::new();
        ob.take(&mut batch, false);
        assert_eq!(
            batch,
            VecDeque::from(vec![b("q"), frames[0].clone(), frames[1].clone()])
        );
        assert_eq!(m.frames_out.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_full_socket_leaves_the_rest_queued_in_order() {
        use rfc6455::Frame;
        // The client never reads: the socket takes part of a large batch, then nothing.
        let (ob, mut client) = pair(1 << 20, 1 << 30).await;
        let m = Metrics::default();
        let frame = Frame::binary(vec![5u8; 64 * 1024]).to_bytes();
        let mut sent = Vec::new();
        loop {
            let frames = vec![frame.clone(); 8];
            for f in &frames {
                sent.extend_from_slice(f);
            }
            if send_frames(&ob, &frames, &m) != Push::Sent {
                break;
            }
            assert!(sent.len() < 1 << 30, "the socket never filled");
        }
        assert!(!ob.is_empty(), "the rest is queued");
        let written = m.bytes_out.load(Ordering::Relaxed) as usize;
        let mut batch = VecDeque::new();
        ob.take(&mut batch, false);
        let queued: Vec<u8> = batch.iter().flat_map(|f| f.to_vec()).collect();
        assert_eq!(written + queued.len(), sent.len());
        assert_eq!(
            queued,
            sent[written..],
            "the queue continues the stream exactly"
        );
        // And the socket holds exactly the written prefix.
        assert_eq!(read_exact(&mut client, written).await, sent[..written]);
    }

    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn deliver_writes_at_once_when_idle_and_queues_when_busy() {
        let (ob, mut client) = pair(10, 1000).await;
        let m = Metrics::default();
        assert_eq!(
            ob.deliver(b("one"), None, Pace::Idle, LONG, &m),
            Delivery::Done
        );
        assert!(ob.is_empty(), "written, not queued");
        assert_eq!(read_exact(&mut client, 3).await, b"one");
        assert_eq!(
            ob.deliver(b("two"), None, Pace::Busy, LONG, &m),
            Delivery::Done
        );
        assert_eq!(ob.len(), 1, "queued for the write pump");
        // Even when the hub is idle, a frame never overtakes a queued one.
        assert_eq!(
            ob.deliver(b("three"), None, Pace::Idle, LONG, &m),
            Delivery::Done
        );
        let mut batch = VecDeque::new();
        ob.take(&mut batch, false);
        assert_eq!(batch, VecDeque::from(vec![b("two"), b("three")]));
        assert_eq!(
            m.frames_out.load(Ordering::Relaxed),
            1,
            "direct writes counted"
        );
    }

    #[test]
    fn every_frame_meets_the_same_slow_consumer_rules() {
        // Whatever the frame (a broadcast, a ping, a chat event) and the pace, a queue past
        // its soft limit is watched, then evicted after the grace period, and one at its
        // hard bound is evicted at once.
        let ping = rfc6455::Frame::ping(Bytes::new()).to_bytes();
        let data = rfc6455::Frame::text("x").to_bytes();
        for (frame, pace) in [
            (&ping, Pace::Busy),
            (&ping, Pace::Idle),
            (&data, Pace::Busy),
            (&data, Pace::Idle),
        ] {
            let m = Metrics::default();
            let ob = Outbox::new(1, 3 * (FRAME_OVERHEAD + frame.len()));
            let deliver = |grace| ob.deliver(frame.clone(), None, pace, grace, &m);
            assert_eq!(deliver(LONG), Delivery::Done);
            assert_eq!(deliver(LONG), Delivery::Watch, "past the soft limit");
            assert_eq!(ob.recheck(LONG), Delivery::Watch);
            assert_eq!(deliver(Duration::ZERO), Delivery::Evict, "grace over");
            assert_eq!(ob.recheck(Duration::ZERO), Delivery::Evict);
            assert_eq!(deliver(LONG), Delivery::Evict, "the hard bound");
            assert!(!Delivery::Evict.delivered());
            assert_eq!(m.queue_full_drops.load(Ordering::Relaxed), 1);
            let mut batch = VecDeque::new();
            ob.take(&mut batch, false);
            ob.written(batch.len(), batch.iter().map(Bytes::len).sum());
            assert_eq!(ob.recheck(Duration::ZERO), Delivery::Done, "caught up");
            ob.close(b("CLOSE"), false);
            assert_eq!(deliver(LONG), Delivery::Closed);
            assert_eq!(ob.recheck(LONG), Delivery::Closed);
        }
    }

    /// The messages a client with `params` reads from the queued frames.
    fn read_queued(ob: &Outbox, params: rfc6455::deflate::DeflateParams) -> Vec<(String, bool)> {
        let mut batch = VecDeque::new();
        ob.take(&mut batch, false);
        let mut wire = bytes::BytesMut::new();
        for frame in &batch {
            wire.extend_from_slice(frame);
        }
        let cfg = rfc6455::CodecConfig::client().with_deflate(params);
        let mut reader = rfc6455::Reader::new(cfg);
        let mut got = Vec::new();
        while let Some(event) = reader.read(&mut wire).unwrap() {
            let rfc6455::Event::Message(rfc6455::Message::Text(t)) = event else {
                panic!("expected text, got {event:?}");
            };
            got.push((t.as_str().to_owned(), reader.last_compressed().is_some()));
        }
        got
    }

    #[test]
    fn each_deflate_mode_picks_its_form_of_a_frame() {
        use rfc6455::deflate::DeflateParams;
        let m = Metrics::default();
        let body = "{\"type\":\"message\"} ".repeat(30);
        let plain = rfc6455::Frame::text(body.clone()).to_bytes();
        let shared = wire::deflate_shared(&plain, 16, &m).expect("compressible");
        let no_takeover = DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        };
        // Off: the plain frame, whatever compressed form is offered.
        let off = Outbox::new(10, 1 << 20);
        assert_eq!(off.shared_deflate(), None);
        off.deliver(plain.clone(), Some(shared.clone()), Pace::Busy, LONG, &m);
        assert_eq!(read_queued(&off, no_takeover), [(body.clone(), false)]);
        // Shared: the offered compressed form, as it is.
        let ob = Outbox::new(10, 1 << 20).with_deflate(OutDeflate::Shared { threshold: 16 });
        assert_eq!(ob.shared_deflate(), Some(16));
        ob.deliver(plain.clone(), Some(shared.clone()), Pace::Busy, LONG, &m);
        ob.deliver(plain.clone(), None, Pace::Busy, LONG, &m);
        assert_eq!(
            read_queued(&ob, no_takeover),
            [(body.clone(), true), (body.clone(), false)]
        );
        // Dedicated: compressed here, with context, in queue order, whatever is offered.
        let ob = Outbox::new(10, 1 << 20).with_deflate(OutDeflate::Dedicated { threshold: 16 });
        assert_eq!(ob.shared_deflate(), None);
        for i in 0..4 {
            let text = format!("{body} {i}");
            let frame = rfc6455::Frame::text(text).to_bytes();
            ob.deliver(frame, None, Pace::Busy, LONG, &m);
        }
        ob.deliver(
            rfc6455::Frame::text("tiny").to_bytes(),
            None,
            Pace::Busy,
            LONG,
            &m,
        );
        let got = read_queued(&ob, DeflateParams::default());
        let want: Vec<_> = (0..4)
            .map(|i| (format!("{body} {i}"), true))
            .chain([("tiny".to_owned(), false)])
            .collect();
        assert_eq!(got, want);
        assert_eq!(m.deflate.deliveries.load(Ordering::Relaxed), 5);
    }
}
