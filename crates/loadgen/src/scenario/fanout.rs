//! `fanout`: N subscribers and one publisher in one conversation, joined through
//! `/broadcast?conversation_id=N` (chatgroup serves it with `--echo`; the peers always).
//!
//! The publisher numbers its messages; every subscriber must see 0, 1, 2, ... with no gap,
//! repeat or reordering, and the publisher must see none of them. Before numbering starts
//! the publisher sends probes until every subscriber has seen one, so a subscriber whose
//! registration was still in flight cannot be counted as a loss.
//!
//! Max-rate mode keeps at most W publishes not yet delivered to every subscriber; fixed-rate
//! mode publishes on a timer and reports the latency from publish to each receipt.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rfc6455::{Frame, OpCode};
use tokio::io::Interest;
use tokio::sync::Notify;

use super::{latency_metrics, open_many, Common, Usage, Window};
use crate::cli::FanoutArgs;
use crate::hist::Histogram;
use crate::report::{Errors, Report};
use crate::session::{close_all, Session, Wire};

/// Most publishes in one run, so the bookkeeping stays bounded.
const MAX_PUBLISHES: u64 = 2_000_000;
/// In fixed-rate mode, stop when this many publishes are still undelivered.
const MAX_BACKLOG: u64 = 100_000;
/// How long the probes may take to reach every subscriber.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// State the publisher and the subscribers share (one thread, so plain cells).
struct Shared {
    subscribers: u32,
    /// Publish time of each sequence number.
    sent_at: RefCell<Vec<Instant>>,
    /// Receipts of each sequence number so far.
    receipts: RefCell<Vec<u32>>,
    /// Every sequence number below this reached every subscriber.
    complete: Cell<u64>,
    /// Woken when `complete` moves.
    advanced: Notify,
    /// Subscribers that have seen a probe.
    synced: Cell<usize>,
    /// Set when the publisher stops: how many it published.
    published: Cell<Option<u64>>,
    /// Woken when `published` is set.
    finished: Notify,
    /// Publish-to-receipt latency of receipts inside the window.
    latency: RefCell<Histogram>,
    /// The measured window, once the probes are through.
    window: Cell<Option<Window>>,
}

impl Shared {
    fn delivered(&self, seq: u64) {
        let mut receipts = self.receipts.borrow_mut();
        let Some(n) = receipts.get_mut(seq as usize) else {
            return;
        };
        *n += 1;
        if *n == self.subscribers && seq == self.complete.get() {
            let mut c = seq + 1;
            while receipts.get(c as usize) == Some(&self.subscribers) {
                c += 1;
            }
            self.complete.set(c);
            self.advanced.notify_one();
        }
    }
}

/// Runs the scenario.
pub(crate) async fn run(common: &Common, args: &FanoutArgs) -> anyhow::Result<Report> {
    let errors = Rc::new(Errors::default());
    let params = serde_json::json!({
        "subscribers": args.subscribers, "size": args.size, "window": args.window,
        "rate": args.rate, "conversation": args.conversation, "raw_peer": args.raw_peer,
        "warmup_s": common.warmup.as_secs_f64(), "duration_s": common.duration.as_secs_f64(),
    });
    let mut report = Report::new("fanout", &common.label, params);
    let resource = format!("/broadcast?conversation_id={}", args.conversation);
    // Connection 0 is the publisher.
    let opened = open_many(
        &common.target,
        args.subscribers + 1,
        args.concurrency,
        move |_| resource.clone(),
        &errors,
    )
    .await;
    if opened.failed > 0 {
        report.take_errors(&errors);
        return Ok(report);
    }
    let mut publisher = None;
    let mut subscribers = Vec::with_capacity(args.subscribers);
    for (i, s) in opened.sessions {
        if i == 0 {
            publisher = Some(s);
        } else {
            subscribers.push((i, s));
        }
    }
    let mut publisher = publisher.expect("connection 0 opened");
    publisher.unmasked = args.raw_peer;
    let shared = Rc::new(Shared {
        subscribers: u32::try_from(args.subscribers)?,
        sent_at: RefCell::default(),
        receipts: RefCell::default(),
        complete: Cell::new(0),
        advanced: Notify::new(),
        synced: Cell::new(0),
        published: Cell::new(None),
        finished: Notify::new(),
        latency: RefCell::default(),
        window: Cell::new(None),
    });
    let drain = Duration::from_secs_f64(args.drain);
    let subs: Vec<_> = subscribers
        .into_iter()
        .map(|(i, s)| {
            tokio::task::spawn_local(subscribe(i, s, shared.clone(), errors.clone(), drain))
        })
        .collect();
    let plan = Plan {
        size: args.size,
        window: args.window as u64,
        rate: args.rate,
        warmup: common.warmup,
        duration: common.duration,
        server_pid: common.server_pid,
    };
    let (publisher, usage) = publish(publisher, plan, shared.clone(), errors.clone()).await;
    let mut deliveries = 0u64;
    let mut sessions: Vec<Session> = publisher.into_iter().collect();
    for sub in subs {
        let (count, session) = sub.await?;
        deliveries += count;
        sessions.extend(session);
    }
    close_all(sessions, Duration::from_secs(1)).await;
    if let Some(usage) = usage {
        usage.fill(&mut report);
        report.window_s = common.duration.as_secs_f64();
    }
    let published = shared.published.get().unwrap_or(0);
    report.metric("published", published as f64);
    report.metric("deliveries", deliveries as f64);
    report.rate(
        "deliveries_per_s",
        "deliveries_per_server_core_s",
        deliveries as f64,
    );
    latency_metrics(&mut report, &shared.latency.borrow());
    report.take_errors(&errors);
    Ok(report)
}

/// How the publisher paces itself.
struct Plan {
    size: usize,
    window: u64,
    rate: Option<f64>,
    warmup: Duration,
    duration: Duration,
    server_pid: Option<u32>,
}

/// Probes until every subscriber listens, then publishes until the window closes. Returns
/// the session (when still usable) and the CPU usage over the window.
async fn publish(
    mut session: Session,
    plan: Plan,
    shared: Rc<Shared>,
    errors: Rc<Errors>,
) -> (Option<Session>, Option<Usage>) {
    let finish = |shared: &Shared, seq: u64| {
        shared.published.set(Some(seq));
        shared.finished.notify_waiters();
    };
    let mut text = vec![b'x'; plan.size];
    // Phase 1: probes.
    let sync_deadline = Instant::now() + SYNC_TIMEOUT;
    text[0] = b'p';
    while shared.synced.get() < shared.subscribers as usize {
        if Instant::now() > sync_deadline {
            errors.push(format!(
                "only {} of {} subscribers received a probe within {SYNC_TIMEOUT:?}",
                shared.synced.get(),
                shared.subscribers
            ));
            finish(&shared, 0);
            return (Some(session), None);
        }
        session.queue(&Frame::new(OpCode::Text, Bytes::copy_from_slice(&text)));
        if let Err(e) = session.try_flush() {
            errors.push(format!("publisher write: {e}"));
            finish(&shared, 0);
            return (None, None);
        }
        tokio::time::sleep(PROBE_EVERY).await;
        if drain_own(&mut session, &errors).is_err() {
            finish(&shared, 0);
            return (None, None);
        }
    }
    // Phase 2: numbered messages.
    let window = Window::after(plan.warmup, plan.duration);
    shared.window.set(Some(window));
    let usage = tokio::task::spawn_local(Usage::over(window, plan.server_pid));
    let end = tokio::time::sleep_until(window.to.into());
    tokio::pin!(end);
    let interval = plan.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let tick = tokio::time::sleep_until(Instant::now().into());
    tokio::pin!(tick);
    let mut seq = 0u64;
    let mut broken = false;
    loop {
        let now = Instant::now();
        let due = match interval {
            // Fixed rate: one publish per tick, which `tick` below paces.
            Some(_) => u64::from(now >= tick.deadline().into_std()),
            None => plan.window.saturating_sub(seq - shared.complete.get()),
        };
        let backlog = seq - shared.complete.get();
        if seq >= MAX_PUBLISHES || backlog > MAX_BACKLOG {
            errors.push(format!(
                "publisher stopped at {seq} publishes with {backlog} undelivered"
            ));
            break;
        }
        for _ in 0..due {
            put_seq(&mut text, seq);
            session.queue(&Frame::new(OpCode::Text, Bytes::copy_from_slice(&text)));
            shared.sent_at.borrow_mut().push(now);
            shared.receipts.borrow_mut().push(0);
            seq += 1;
        }
        if let (Some(every), true) = (interval, due > 0) {
            let next = tick.deadline() + every;
            tick.as_mut().reset(next);
        }
        if let Err(e) = session.try_flush() {
            errors.push(format!("publisher write: {e}"));
            broken = true;
            break;
        }
        let interest = if session.wbuf.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        tokio::select! {
            biased;
            () = &mut end => break,
            () = shared.advanced.notified(), if interval.is_none() => {}
            () = &mut tick, if interval.is_some() => {}
            r = session.stream.ready(interest) => {
                if r.is_err() || drain_own(&mut session, &errors).is_err() {
                    broken = true;
                    break;
                }
            }
        }
    }
    finish(&shared, seq);
    let usage = match usage.await {
        Ok(Ok(u)) => Some(u),
        Ok(Err(e)) => {
            errors.push(format!("sampling CPU: {e:#}"));
            None
        }
        Err(e) => {
            errors.push(format!("sampler: {e}"));
            None
        }
    };
    // Keep answering pings and watching for echoes of our own until the subscribers finish.
    if !broken {
        let watch = async {
            loop {
                if session.stream.readable().await.is_err()
                    || drain_own(&mut session, &errors).is_err()
                {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(200), watch).await;
    }
    ((!broken).then_some(session), usage)
}

/// Reads whatever reached the publisher: pings are answered, any message is an error
/// (the server must not send a publisher its own broadcast).
fn drain_own(session: &mut Session, errors: &Errors) -> Result<(), ()> {
    loop {
        let (n, wire) = session.try_read().map_err(|e| {
            errors.push(format!("publisher read: {e}"));
        })?;
        loop {
            match session.next_frame() {
                Ok(Some(frame)) => match session.on_control(&frame) {
                    Some(Wire::Closed) => {
                        errors.push("the server closed the publisher");
                        return Err(());
                    }
                    Some(Wire::Open) => {}
                    None => errors.push("the publisher received a message (its own broadcast?)"),
                },
                Ok(None) => break,
                Err(e) => {
                    errors.push(format!("publisher: {e}"));
                    return Err(());
                }
            }
        }
        if wire == Wire::Closed {
            errors.push("the server closed the publisher's socket");
            return Err(());
        }
        if n == 0 {
            let _ = session.try_flush();
            return Ok(());
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes the tag `s` and `seq` as 16 hex digits at the front of `text`.
fn put_seq(text: &mut [u8], seq: u64) {
    text[0] = b's';
    for (i, byte) in text[1..17].iter_mut().enumerate() {
        *byte = HEX[((seq >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// Reads a sequence number written by [`put_seq`].
fn get_seq(text: &[u8]) -> Option<u64> {
    if text.len() < 17 || text[0] != b's' {
        return None;
    }
    text[1..17].iter().try_fold(0u64, |acc, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(acc << 4 | u64::from(digit))
    })
}

/// One subscriber: checks order and completeness, and times each receipt. Returns the
/// receipts counted inside the window and the session when still usable.
async fn subscribe(
    index: usize,
    mut session: Session,
    shared: Rc<Shared>,
    errors: Rc<Errors>,
    drain: Duration,
) -> (u64, Option<Session>) {
    let mut next = 0u64;
    let mut synced = false;
    let mut count = 0u64;
    let finished = shared.finished.notified();
    tokio::pin!(finished);
    finished.as_mut().enable();
    let mut publisher_done = shared.published.get().is_some();
    let give_up = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(give_up);
    if publisher_done {
        give_up.as_mut().reset((Instant::now() + drain).into());
    }
    let outcome: Result<(), String> = loop {
        if let Some(total) = shared.published.get() {
            if next >= total {
                break Ok(());
            }
        }
        if let Err(e) = session.try_flush() {
            break Err(format!("write: {e}"));
        }
        let interest = if session.wbuf.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        tokio::select! {
            biased;
            () = &mut finished, if !publisher_done => {
                publisher_done = true;
                give_up.as_mut().reset((Instant::now() + drain).into());
                continue;
            }
            () = &mut give_up => break Ok(()),
            r = session.stream.ready(interest) => if let Err(e) = r {
                break Err(format!("poll: {e}"));
            },
        }
        let wire = match session.try_read() {
            Ok((_, wire)) => wire,
            Err(e) => break Err(format!("read: {e}")),
        };
        let now = Instant::now();
        let window = shared.window.get();
        let mut closed = wire == Wire::Closed;
        loop {
            let frame = match session.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    errors.push(format!("subscriber {index}: {e}"));
                    closed = true;
                    break;
                }
            };
            match session.on_control(&frame) {
                Some(Wire::Closed) => closed = true,
                Some(Wire::Open) => {}
                None if frame.opcode == OpCode::Text && frame.payload.first() == Some(&b'p') => {
                    if !synced {
                        synced = true;
                        shared.synced.set(shared.synced.get() + 1);
                    }
                }
                None => match get_seq(&frame.payload) {
                    Some(seq) if frame.opcode == OpCode::Text => {
                        if seq != next {
                            let what = if seq < next {
                                "repeated or reordered"
                            } else {
                                "skipped to"
                            };
                            errors.push(format!(
                                "subscriber {index}: expected #{next}, got #{seq} ({what})"
                            ));
                        }
                        if seq >= next {
                            next = seq + 1;
                        }
                        shared.delivered(seq);
                        if window.is_some_and(|w| w.contains(now)) {
                            count += 1;
                            if let Some(&sent) = shared.sent_at.borrow().get(seq as usize) {
                                shared.latency.borrow_mut().record(now - sent);
                            }
                        }
                    }
                    _ => errors.push(format!(
                        "subscriber {index}: unexpected {:?} frame of {} bytes",
                        frame.opcode,
                        frame.payload.len()
                    )),
                },
            }
        }
        if closed {
            break Err("the server closed the connection".to_owned());
        }
    };
    let total = shared.published.get().unwrap_or(0);
    if next < total {
        errors.push_n(
            total - next,
            format!(
                "subscriber {index}: {} of {total} messages never arrived",
                total - next
            ),
        );
    }
    match outcome {
        Ok(()) => (count, Some(session)),
        Err(e) => {
            errors.push(format!("subscriber {index}: {e}"));
            (count, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_round_trip() {
        let mut text = vec![b'x'; 64];
        for seq in [0, 1, 15, 16, 255, 1 << 40, u64::MAX] {
            put_seq(&mut text, seq);
            assert_eq!(get_seq(&text), Some(seq));
            assert!(std::str::from_utf8(&text).is_ok());
        }
        assert_eq!(get_seq(b"p0000000000000000"), None);
        assert_eq!(get_seq(b"s000000000000000g"), None);
        assert_eq!(get_seq(b"s00"), None);
    }

    #[test]
    fn completion_advances_only_when_everyone_has_it() {
        let shared = Shared {
            subscribers: 2,
            sent_at: RefCell::default(),
            receipts: RefCell::new(vec![0; 3]),
            complete: Cell::new(0),
            advanced: Notify::new(),
            synced: Cell::new(0),
            published: Cell::new(None),
            finished: Notify::new(),
            latency: RefCell::default(),
            window: Cell::new(None),
        };
        shared.delivered(0);
        shared.delivered(1);
        assert_eq!(shared.complete.get(), 0);
        shared.delivered(1);
        assert_eq!(shared.complete.get(), 0, "#0 is still missing one receipt");
        shared.delivered(0);
        assert_eq!(shared.complete.get(), 2);
        shared.delivered(7); // out of range: ignored
        assert_eq!(shared.complete.get(), 2);
    }
}
