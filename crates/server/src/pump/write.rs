//! The write pump: outbox → socket, coalescing every queued frame into vectored writes.
//!
//! It waits on three things only: new frames (the outbox's wake-up), the server's shutdown
//! token (then it queues Close 1001) and the connection's kill switch. No timers live here
//! while the connection is open: pings come from the hub, one shared frame for everyone.
//!
//! Once a Close frame is queued (by us, or as the reply to the peer's), the pump writes what
//! is left, then waits for the read pump to see the peer's Close, all within `close_timeout`;
//! waiting for the peer's reply before dropping the socket avoids a TCP reset that could
//! destroy our Close frame in the peer's receive buffer.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use crate::context::{ConnGuard, ServerCtx};
use crate::metrics;
use crate::outbox::{advance, Outbox};

/// At most this many frames per `writev` call.
const MAX_IOV: usize = 64;

/// Runs the write side of one connection until it closes or is killed.
pub(crate) async fn run(
    mut wr: OwnedWriteHalf,
    outbox: Arc<Outbox>,
    ctx: Arc<ServerCtx>,
    guard: ConnGuard,
) {
    let mut writer = Writer {
        batch: VecDeque::new(),
        front_started: false,
        outbox,
        ctx,
    };
    if writer.open_phase(&mut wr).await {
        let close_timeout = writer.ctx.cfg.close_timeout;
        let _ = tokio::time::timeout(close_timeout, writer.closing_phase(&mut wr)).await;
    }
    writer.outbox.kill();
    drop(guard);
}

struct Writer {
    /// Frames taken from the outbox and not yet fully written.
    batch: VecDeque<Bytes>,
    /// The first frame of `batch` is partly written.
    front_started: bool,
    outbox: Arc<Outbox>,
    ctx: Arc<ServerCtx>,
}

impl Writer {
    /// Returns `true` when a Close frame is queued and the closing phase should run, `false`
    /// when the connection is already over (killed, write error, or the reader ended without
    /// a close handshake).
    async fn open_phase(&mut self, wr: &mut OwnedWriteHalf) -> bool {
        let mut shutdown_seen = false;
        loop {
            let state = self.outbox.take(&mut self.batch, self.front_started);
            if state.closing {
                return true;
            }
            if self.batch.is_empty() && state.reader_done {
                return false;
            }
            tokio::select! {
                biased;
                () = self.outbox.killed() => return false,
                () = self.ctx.shutdown.cancelled(), if !shutdown_seen => {
                    shutdown_seen = true;
                    self.outbox.close(self.ctx.going_away.clone(), false);
                }
                written = write_some(wr, &self.batch), if !self.batch.is_empty() => {
                    if !self.on_written(written) {
                        return false;
                    }
                }
                () = self.outbox.writer_woken() => {}
            }
        }
    }

    /// Writes the rest of the batch (which ends with the Close frame), then waits for the
    /// read pump to finish. The caller bounds this with `close_timeout`.
    async fn closing_phase(&mut self, wr: &mut OwnedWriteHalf) {
        loop {
            self.outbox.take(&mut self.batch, self.front_started);
            if self.batch.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = self.outbox.killed() => return,
                written = write_some(wr, &self.batch) => {
                    if !self.on_written(written) {
                        return;
                    }
                }
                // An eviction can arrive while a write is blocked: retake to discard.
                () = self.outbox.writer_woken() => {}
            }
        }
        while !self.outbox.reader_done() {
            tokio::select! {
                biased;
                () = self.outbox.killed() => return,
                () = self.outbox.writer_woken() => {}
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

/// One write call (cancel-safe: either it wrote `n` bytes or nothing).
async fn write_some(wr: &mut OwnedWriteHalf, batch: &VecDeque<Bytes>) -> io::Result<usize> {
    if batch.len() == 1 {
        return wr.write(&batch[0]).await;
    }
    let slices: Vec<IoSlice<'_>> = batch
        .iter()
        .take(MAX_IOV)
        .map(|b| IoSlice::new(b))
        .collect();
    wr.write_vectored(&slices).await
}
