//! The write pump: outbox → socket, coalescing every queued frame into vectored writes.
//!
//! It waits on the outbox only (new frames, a Close, the reader's end, a kill) and, while it
//! has frames, on the socket. No timers live here while the connection is open: pings come
//! from the hub, one shared frame for everyone, and so does the Close 1001 on shutdown.
//!
//! Once a Close frame is queued (by us, or as the reply to the peer's), the pump writes what
//! is left, then waits for the read pump to see the peer's Close, all within `close_timeout`;
//! waiting for the peer's reply before dropping the socket avoids a TCP reset that could
//! destroy our Close frame in the peer's receive buffer.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, IoSlice};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::context::{ConnGuard, ServerCtx};
use crate::metrics;
use crate::outbox::{advance, Outbox, MAX_IOV};

/// Runs the write side of one connection until it closes or is killed.
///
/// Not an `async fn`: that would store its arguments twice in the future, which lives as
/// long as the connection (see the read pump).
/// The socket is the outbox's (see [`Outbox::with_socket`]); frames written at once by the
/// read pump or the hub never overlap this pump's writes, which only start on frames it took.
pub(crate) fn run(
    outbox: Arc<Outbox>,
    ctx: Arc<ServerCtx>,
    guard: ConnGuard,
) -> impl std::future::Future<Output = ()> + Send {
    let mut writer = Writer {
        batch: VecDeque::new(),
        front_started: false,
        outbox,
        ctx,
        _guard: guard,
    };
    async move {
        if writer.open_phase().await {
            let close_timeout = writer.ctx.cfg.close_timeout;
            // Boxed: rare, and the timer would otherwise enlarge every idle connection.
            let _ = Box::pin(tokio::time::timeout(close_timeout, writer.closing_phase())).await;
        }
        writer.outbox.kill();
    }
}

struct Writer {
    /// Frames taken from the outbox and not yet fully written.
    batch: VecDeque<Bytes>,
    /// The first frame of `batch` is partly written.
    front_started: bool,
    outbox: Arc<Outbox>,
    ctx: Arc<ServerCtx>,
    /// The connection's slot and gauge entry, released when the writer (the last to go) ends.
    _guard: ConnGuard,
}

/// What woke the writer.
enum Wake {
    /// A write call finished.
    Written(io::Result<usize>),
    /// The outbox has news (see [`Outbox::writer_has_news`]).
    News,
}

impl Writer {
    /// Waits for news from the outbox or, while the batch is non-empty, for one write to
    /// complete. A single `poll_fn` with no stored sub-futures: this is the state an idle
    /// connection's writer rests in.
    async fn next(&mut self) -> Wake {
        std::future::poll_fn(|cx| {
            if self
                .outbox
                .writer_has_news(cx.waker(), self.batch.is_empty())
            {
                return Poll::Ready(Wake::News);
            }
            if self.batch.is_empty() {
                return Poll::Pending;
            }
            let Some(socket) = self.outbox.socket() else {
                return Poll::Ready(Wake::Written(Err(ErrorKind::NotConnected.into())));
            };
            poll_write_batch(socket, &self.batch, cx).map(Wake::Written)
        })
        .await
    }

    /// Returns `true` when a Close frame is queued and the closing phase should run, `false`
    /// when the connection is already over (killed, write error, or the reader ended without
    /// a close handshake).
    async fn open_phase(&mut self) -> bool {
        loop {
            if self.outbox.is_killed() {
                return false;
            }
            let state = self.outbox.take(&mut self.batch, self.front_started);
            if state.closing {
                return true;
            }
            if self.batch.is_empty() && state.reader_done {
                return false;
            }
            if let Wake::Written(written) = self.next().await {
                if !self.on_written(written) {
                    return false;
                }
            }
        }
    }

    /// Writes the rest of the batch (which ends with the Close frame), then waits for the
    /// read pump to finish. The caller bounds this with `close_timeout`.
    async fn closing_phase(&mut self) {
        loop {
            if self.outbox.is_killed() {
                return;
            }
            // Retaking also applies an eviction's discard that arrived mid-write.
            let state = self.outbox.take(&mut self.batch, self.front_started);
            if self.batch.is_empty() && state.reader_done {
                return;
            }
            if let Wake::Written(written) = self.next().await {
                if !self.on_written(written) {
                    return;
                }
            }
        }
    }

    fn on_written(&mut self, written: io::Result<usize>) -> bool {
        match written {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                let (frames, started) = advance(&mut self.batch, n);
                self.front_started = started;
                self.outbox.written(frames, n);
                metrics::add(&self.ctx.metrics.frames_out, frames as u64);
                metrics::add(&self.ctx.metrics.bytes_out, n as u64);
                if self.batch.is_empty() && self.batch.capacity() > 16 {
                    // Give back a batch grown by a burst.
                    self.batch = VecDeque::new();
                }
                true
            }
        }
    }
}

/// One write call over the queued frames: a plain write for one frame, `writev` for more.
/// The slice array lives on the stack of this poll, not in the pump's future.
fn poll_write_batch(
    socket: &TcpStream,
    batch: &VecDeque<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(socket.poll_write_ready(cx))?;
        let result = if batch.len() == 1 {
            socket.try_write(&batch[0])
        } else {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (slot, frame) in slices.iter_mut().zip(batch) {
                *slot = IoSlice::new(frame);
                n += 1;
            }
            socket.try_write_vectored(&slices[..n])
        };
        match result {
            // The readiness was cleared: the next poll registers for the socket's wake-up.
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            result => return Poll::Ready(result),
        }
    }
}
