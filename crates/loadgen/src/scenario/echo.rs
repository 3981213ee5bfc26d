//! `echo`: C connections, each keeping W messages of S bytes in flight (closed loop).
//!
//! Each connection's W frames are masked once, up front, into one buffer; answering k
//! echoes means writing the next k frames' bytes from that buffer in one system call. Echoes
//! of one connection come back in order, so a queue of send times gives each round trip
//! without putting a timestamp in the payload.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes};
use rfc6455::{Frame, OpCode};
use tokio::io::Interest;

use super::{latency_metrics, open_many, Common, Usage, Window};
use crate::cli::EchoArgs;
use crate::hist::Histogram;
use crate::report::{Errors, Report};
use crate::session::{close_all, repeated_frame, Session, Wire};

/// Runs the scenario.
pub(crate) async fn run(common: &Common, args: &EchoArgs) -> anyhow::Result<Report> {
    let errors = Rc::new(Errors::default());
    let params = serde_json::json!({
        "conns": args.conns, "window": args.window, "size": args.size,
        "opcode": if args.text { "text" } else { "binary" }, "path": args.path,
        "raw_peer": args.raw_peer,
        "warmup_s": common.warmup.as_secs_f64(), "duration_s": common.duration.as_secs_f64(),
    });
    let mut report = Report::new("echo", &common.label, params);
    let path = args.path.clone();
    let opened = open_many(
        &common.target,
        args.conns,
        64,
        move |_| path.clone(),
        &errors,
    )
    .await;
    if opened.failed > 0 {
        report.take_errors(&errors);
        return Ok(report);
    }
    let payload = Bytes::from(vec![b'e'; args.size]);
    let frame = if args.text {
        Frame::new(OpCode::Text, payload)
    } else {
        Frame::binary(payload)
    };
    let window = Window::after(common.warmup, common.duration);
    let usage = tokio::task::spawn_local(Usage::over(window, common.server_pid));
    let tasks: Vec<_> = opened
        .sessions
        .into_iter()
        .map(|(i, session)| {
            let (batch, frame_len) = repeated_frame(&frame, session.mask, args.window);
            let conn = EchoConn {
                session,
                batch,
                frame_len,
                owed: 0,
                phase: 0,
                inflight: VecDeque::with_capacity(args.window),
                expect: (frame.opcode, args.size),
                raw_peer: args.raw_peer,
            };
            tokio::task::spawn_local(conn.run(i, args.window, window, errors.clone()))
        })
        .collect();
    let mut hist = Histogram::default();
    let mut messages = 0u64;
    let mut sessions = Vec::new();
    for task in tasks {
        let (count, h, session) = task.await?;
        messages += count;
        hist.merge(&h);
        sessions.extend(session);
    }
    let usage = usage.await??;
    close_all(sessions, Duration::from_secs(1)).await;
    usage.fill(&mut report);
    report.window_s = common.duration.as_secs_f64();
    report.metric("messages", messages as f64);
    report.rate("msgs_per_s", "msgs_per_server_core_s", messages as f64);
    latency_metrics(&mut report, &hist);
    report.take_errors(&errors);
    Ok(report)
}

/// One echo connection and its pre-encoded send buffer.
struct EchoConn {
    session: Session,
    /// `window` masked copies of the frame, back to back.
    batch: Bytes,
    frame_len: usize,
    /// Bytes of frames due to be written.
    owed: usize,
    /// How far into a frame the next write starts (a partial write leaves us mid-frame).
    phase: usize,
    /// Send time of every frame written or owed and not yet echoed.
    inflight: VecDeque<Instant>,
    /// Opcode and payload length every echo must have.
    expect: (OpCode, usize),
    /// The server is a raw TCP echo: its frames are our masked ones.
    raw_peer: bool,
}

impl EchoConn {
    /// Drives the connection until the window ends; returns the echoes counted inside the
    /// window, their round trips, and the session when it is still usable.
    async fn run(
        mut self,
        index: usize,
        window_len: usize,
        window: Window,
        errors: Rc<Errors>,
    ) -> (u64, Histogram, Option<Session>) {
        let mut hist = Histogram::default();
        let mut count = 0u64;
        let start = Instant::now();
        self.credit(window_len, start);
        let end = tokio::time::sleep_until(window.to.into());
        tokio::pin!(end);
        let outcome: Result<(), String> = loop {
            if let Err(e) = self.flush() {
                break Err(format!("write: {e}"));
            }
            let interest = if self.owed > 0 || !self.session.wbuf.is_empty() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let ready = tokio::select! {
                biased;
                () = &mut end => break Ok(()),
                r = self.session.stream.ready(interest) => r,
            };
            match ready {
                Ok(r) if r.is_readable() || r.is_read_closed() => {}
                Ok(_) => continue,
                Err(e) => break Err(format!("poll: {e}")),
            }
            let wire = match self.session.try_read() {
                Ok((_, wire)) => wire,
                Err(e) => break Err(format!("read: {e}")),
            };
            let now = Instant::now();
            let mut echoed = 0;
            let mut closed = wire == Wire::Closed;
            loop {
                if let Some((opcode, len)) = self.session.skip_frame(self.raw_peer) {
                    if (opcode, len) == self.expect {
                        echoed += 1;
                        continue;
                    }
                    errors.push(format!(
                        "conn {index}: unexpected {opcode:?} frame of {len} bytes"
                    ));
                    continue;
                }
                if self.raw_peer {
                    // Masked frames are all a raw echo sends; the rest has not arrived yet.
                    break;
                }
                let frame = match self.session.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        errors.push(format!("conn {index}: {e}"));
                        closed = true;
                        break;
                    }
                };
                match self.session.on_control(&frame) {
                    Some(Wire::Closed) => closed = true,
                    Some(Wire::Open) => {}
                    None if frame.opcode == self.expect.0
                        && frame.fin
                        && frame.payload.len() == self.expect.1 =>
                    {
                        echoed += 1;
                    }
                    None => errors.push(format!(
                        "conn {index}: unexpected {:?} frame of {} bytes (fin {})",
                        frame.opcode,
                        frame.payload.len(),
                        frame.fin
                    )),
                }
            }
            for _ in 0..echoed {
                match self.inflight.pop_front() {
                    Some(sent) if window.contains(now) => {
                        hist.record(now - sent);
                        count += 1;
                    }
                    Some(_) => {}
                    None => errors.push(format!("conn {index}: an echo nobody sent")),
                }
            }
            if now < window.to {
                self.credit(echoed, now);
            }
            if closed {
                break Err("the server closed the connection".to_owned());
            }
        };
        match outcome {
            Ok(()) => {
                // Finish a frame cut by a partial write so the close frame starts clean.
                if self.phase > 0 {
                    self.owed = self.frame_len - self.phase;
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while self.owed > 0 {
                            if self.flush().is_err() {
                                break;
                            }
                            let _ = self.session.stream.writable().await;
                        }
                    })
                    .await;
                }
                (count, hist, Some(self.session))
            }
            Err(e) => {
                errors.push(format!("conn {index}: {e}"));
                (count, hist, None)
            }
        }
    }

    /// Makes `n` more frames due, stamped with `now`.
    fn credit(&mut self, n: usize, now: Instant) {
        self.owed += n * self.frame_len;
        self.inflight.extend(std::iter::repeat_n(now, n));
    }

    /// Writes control replies first (only between frames), then due frames, until the
    /// socket would block.
    fn flush(&mut self) -> std::io::Result<()> {
        loop {
            if self.phase == 0 && !self.session.wbuf.is_empty() {
                match self.session.stream.try_write(&self.session.wbuf) {
                    Ok(n) => self.session.wbuf.advance(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                }
                continue;
            }
            if self.owed == 0 {
                return Ok(());
            }
            // `phase + owed` never exceeds the batch: at most `window` frames are written
            // or owed at once, and a partly written frame counts as one of them.
            let chunk = &self.batch[self.phase..self.phase + self.owed];
            match self.session.stream.try_write(chunk) {
                Ok(n) => {
                    self.owed -= n;
                    self.phase = (self.phase + n) % self.frame_len;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}
