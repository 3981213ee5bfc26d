//! `chat fanout`: one sender into a group of M member connections (U users, round-robin),
//! every connection authenticated and synced before measuring starts.
//!
//! The sender keeps at most W sends that are not yet acked or not yet delivered to every
//! member (the raw `fanout` scenario's window, so the two compare). Figures: deliveries
//! (`new_message` frames the members received) per second and per server core-second,
//! send-to-delivery latency p50/p99/max, and ack latency. Checks: every send is acked, and
//! every member sees every message once, in `seq` order.
//!
//! With `--receipts` every member connection also confirms every message it gets with a
//! `received` of its own (and with `--read` a `read` as well), the way a client that does
//! not batch would; with `--coalesce`, one report per batch the socket gave, for the newest
//! message, as a client that knows the markers are cumulative would; with
//! `--receipt-every SECS`, at most one report per connection every SECS. With `--typing` the
//! sender says `typing` `start` before a send at most once every 2 s. The run then also
//! reports the acked sends, the reports the members sent and the `receipt` and `typing`
//! frames that came back (per second of the window), and the server's own count of receipt
//! frames from `/metrics`, so the cases compare in the same units as the plain run.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatgroup_protocol::ConversationId;
use tokio::io::Interest;
use tokio::sync::Notify;

use super::{read_texts, wire, ChatConn, Kind, Order, Setup};
use crate::cli::ChatFanoutArgs;
use crate::hist::Histogram;
use crate::report::{Errors, Report};
use crate::scenario::{latency_metrics, Common, Usage, Window};
use crate::session::{close_all, Session};

/// Most sends in one run, so the bookkeeping stays bounded.
const MAX_SENDS: u64 = 2_000_000;
/// How often a typing client repeats `start` (the server throttles broadcasts to one per
/// 2 s per user and conversation, and a client that knows it sends no more often).
const TYPING_EVERY: Duration = Duration::from_secs(2);

/// State the sender and the members share (one thread, so plain cells).
struct Shared {
    members: u32,
    /// Send time of each localId.
    sent_at: RefCell<Vec<Instant>>,
    /// Deliveries of each localId so far.
    receipts: RefCell<Vec<u32>>,
    /// Every localId below this reached every member.
    complete: Cell<u64>,
    /// Woken when `complete` moves.
    advanced: Notify,
    /// Set when the sender stops: how many it sent.
    sent: Cell<Option<u64>>,
    /// Woken when `sent` is set.
    finished: Notify,
    /// Send-to-delivery latency of deliveries inside the window.
    latency: RefCell<Histogram>,
    window: Window,
    /// Inside the window: `received` and `read` reports the members sent.
    reports_sent: Cell<u64>,
    /// Inside the window: `receipt` frames every connection (sender included) received.
    receipt_frames: Cell<u64>,
    /// The same over the whole run, to compare with the server's counter.
    receipt_frames_total: Cell<u64>,
    /// Inside the window: `typing` frames the members received.
    typing_frames: Cell<u64>,
}

impl Shared {
    fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }

    fn delivered(&self, n: u64) {
        let mut receipts = self.receipts.borrow_mut();
        let Some(count) = receipts.get_mut(n as usize) else {
            return;
        };
        *count += 1;
        if *count == self.members && n == self.complete.get() {
            let mut c = n + 1;
            while receipts.get(c as usize) == Some(&self.members) {
                c += 1;
            }
            self.complete.set(c);
            self.advanced.notify_one();
        }
    }
}

/// Runs the mode.
pub(crate) async fn run(
    common: &Common,
    setup: &Setup,
    args: &ChatFanoutArgs,
) -> anyhow::Result<Report> {
    let errors = Rc::new(Errors::default());
    let users = args.users.unwrap_or(args.members);
    let params = serde_json::json!({
        "members": args.members, "users": users, "window": args.window, "size": args.size,
        "receipts": args.receipts, "read": args.read, "coalesce": args.coalesce,
        "receipt_every_s": args.receipt_every,
        "typing": args.typing,
        "warmup_s": common.warmup.as_secs_f64(), "duration_s": common.duration.as_secs_f64(),
    });
    let mut report = Report::new("chat-fanout", &common.label, params);
    let setup_start = Instant::now();
    let owner = setup.register("f", 1).await?.remove(0);
    let accounts = setup.register("m", users).await?;
    let names: Vec<String> = accounts.iter().map(|a| a.username.clone()).collect();
    let conversation = setup.group(&owner, "loadgen fanout", &names).await?;
    let tokens: Vec<String> = accounts.iter().map(|a| a.token.clone()).collect();
    let members = setup
        .connect_many(
            args.members,
            move |i| tokens[i % tokens.len()].clone(),
            &errors,
        )
        .await;
    let sender = async {
        let mut conn = ChatConn::open(&setup.target, args.members, &owner.token).await?;
        conn.sync(std::collections::BTreeMap::new()).await?;
        Ok::<_, anyhow::Error>(conn)
    }
    .await;
    report.metric("setup_s", setup_start.elapsed().as_secs_f64());
    let sender = match sender {
        Ok(conn) if members.len() == args.members => conn,
        other => {
            if let Err(e) = other {
                errors.push(format!("sender: {e:#}"));
            }
            report.take_errors(&errors);
            close_all(
                members.into_iter().map(|(_, c)| c.session).collect(),
                Duration::from_secs(1),
            )
            .await;
            return Ok(report);
        }
    };

    let window = Window::after(common.warmup, common.duration);
    let shared = Rc::new(Shared {
        members: u32::try_from(args.members)?,
        sent_at: RefCell::default(),
        receipts: RefCell::default(),
        complete: Cell::new(0),
        advanced: Notify::new(),
        sent: Cell::new(None),
        finished: Notify::new(),
        latency: RefCell::default(),
        window,
        reports_sent: Cell::new(0),
        receipt_frames: Cell::new(0),
        receipt_frames_total: Cell::new(0),
        typing_frames: Cell::new(0),
    });
    let mut api = setup.api();
    // The server's own count, to cross-check ours; a server without it (or without
    // /metrics) just leaves the figure out.
    let server_receipts_before = api.metric(RECEIPT_FRAMES_METRIC).await.ok();
    let drain = Duration::from_secs_f64(args.drain);
    let tasks: Vec<_> = members
        .into_iter()
        .map(|(i, conn)| {
            tokio::task::spawn_local(member(
                i,
                conn,
                conversation,
                shared.clone(),
                errors.clone(),
                drain,
                Confirm {
                    received: args.receipts,
                    read: args.read,
                    coalesce: args.coalesce || args.receipt_every.is_some(),
                    every: args.receipt_every.map(Duration::from_secs_f64),
                },
            ))
        })
        .collect();
    let usage = tokio::task::spawn_local(Usage::over(window, common.server_pid));
    let (session, acks, acked_in_window) = send(
        sender,
        conversation,
        args,
        shared.clone(),
        errors.clone(),
        window.to + drain,
    )
    .await;
    let mut deliveries = 0u64;
    let mut sessions: Vec<Session> = session.into_iter().collect();
    for task in tasks {
        let (count, session) = task.await?;
        deliveries += count;
        sessions.extend(session);
    }
    let usage = usage.await??;
    let server_receipts_after = api.metric(RECEIPT_FRAMES_METRIC).await.ok();
    close_all(sessions, Duration::from_secs(1)).await;
    usage.fill(&mut report);
    report.window_s = common.duration.as_secs_f64();
    report.metric("sent", shared.sent.get().unwrap_or(0) as f64);
    report.metric("deliveries", deliveries as f64);
    report.rate(
        "deliveries_per_s",
        "deliveries_per_server_core_s",
        deliveries as f64,
    );
    report.metric("acks", acked_in_window as f64);
    report.metric(
        "acks_per_s",
        acked_in_window as f64 / common.duration.as_secs_f64(),
    );
    if args.receipts || args.typing {
        let per_s = |n: u64| n as f64 / common.duration.as_secs_f64();
        report.metric("reports_sent", shared.reports_sent.get() as f64);
        report.metric("reports_sent_per_s", per_s(shared.reports_sent.get()));
        report.metric("receipt_frames", shared.receipt_frames.get() as f64);
        report.metric("receipt_frames_per_s", per_s(shared.receipt_frames.get()));
        report.metric("typing_frames", shared.typing_frames.get() as f64);
        report.metric(
            "receipt_frames_run",
            shared.receipt_frames_total.get() as f64,
        );
        if let (Some(before), Some(after)) = (server_receipts_before, server_receipts_after) {
            report.metric("server_receipt_frames_run", after - before);
        }
    }
    latency_metrics(&mut report, &shared.latency.borrow());
    for (name, q) in [("ack_p50_us", 0.5), ("ack_p99_us", 0.99)] {
        if let Some(us) = acks.quantile_us(q) {
            report.metric(name, us);
        }
    }
    report.take_errors(&errors);
    Ok(report)
}

/// The server's counter of `receipt` frames sent.
const RECEIPT_FRAMES_METRIC: &str = "chatgroup_receipt_frames_total";

/// The sender: keeps the window full until it closes, then waits for its acks. Returns the
/// session (when still usable), the ack latencies and the acks inside the window.
async fn send(
    conn: ChatConn,
    conversation: ConversationId,
    args: &ChatFanoutArgs,
    shared: Rc<Shared>,
    errors: Rc<Errors>,
    hard_end: Instant,
) -> (Option<Session>, Histogram, u64) {
    let mut session = conn.session;
    let mut acks = Histogram::default();
    let mut sent = 0u64;
    let mut acked = 0u64;
    let mut acked_in_window = 0u64;
    let mut typed_at: Option<Instant> = None;
    let mut texts: Vec<Bytes> = Vec::new();
    let window = shared.window;
    let result: anyhow::Result<()> = async {
        loop {
            let now = Instant::now();
            if now < window.to {
                let done = shared.complete.get().min(acked);
                while sent - done < args.window as u64 && sent < MAX_SENDS {
                    if args.typing && typed_at.is_none_or(|at| now - at >= TYPING_EVERY) {
                        session.queue(&wire::typing_start_frame(conversation));
                        typed_at = Some(now);
                    }
                    session.queue(&wire::send_frame(conversation, sent, args.size));
                    shared.sent_at.borrow_mut().push(now);
                    shared.receipts.borrow_mut().push(0);
                    sent += 1;
                }
            } else if shared.sent.get().is_none() {
                shared.sent.set(Some(sent));
                shared.finished.notify_waiters();
            }
            if now >= window.to && acked == sent || now >= hard_end {
                return Ok(());
            }
            session.try_flush()?;
            let interest = if session.wbuf.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let wake = if now < window.to { window.to } else { hard_end };
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(wake.into()) => continue,
                () = shared.advanced.notified() => continue,
                r = session.stream.ready(interest) => {
                    if !r?.is_readable() {
                        continue;
                    }
                }
            }
            read_texts(&mut session, |t| texts.push(t))?;
            let now = Instant::now();
            for text in texts.drain(..) {
                match wire::kind(&text) {
                    Kind::Ack => match wire::local_id(&text) {
                        Some(n) if n == acked => {
                            acked += 1;
                            if window.contains(now) {
                                acked_in_window += 1;
                                if let Some(&at) = shared.sent_at.borrow().get(n as usize) {
                                    acks.record(now - at);
                                }
                            }
                        }
                        other => errors.push(format!(
                            "sender: ack for localId {other:?}, expected {acked}"
                        )),
                    },
                    Kind::Error => errors.push(format!("sender: {}", wire::excerpt(&text, 200))),
                    Kind::Receipt => {
                        Shared::add(&shared.receipt_frames_total, 1);
                        if window.contains(now) {
                            Shared::add(&shared.receipt_frames, 1);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    .await;
    if shared.sent.get().is_none() {
        shared.sent.set(Some(sent));
        shared.finished.notify_waiters();
    }
    if acked < sent {
        errors.push_n(
            sent - acked,
            format!("sender: {} sends never acked", sent - acked),
        );
    }
    match result {
        Ok(()) => (Some(session), acks, acked_in_window),
        Err(e) => {
            errors.push(format!("sender: {e:#}"));
            (None, acks, acked_in_window)
        }
    }
}

/// Which reports a member sends for each message it gets.
#[derive(Debug, Clone, Copy)]
struct Confirm {
    received: bool,
    read: bool,
    /// One report per socket read (for its newest message) instead of one per message.
    coalesce: bool,
    /// At most one report per this interval (for the newest message then).
    every: Option<Duration>,
}

impl Confirm {
    /// Queues the reports for everything up to `seq`; returns how many.
    fn queue(self, session: &mut Session, conversation: ConversationId, seq: u64) -> u64 {
        let mut reports = 0;
        if self.received {
            session.queue(&wire::received_frame(conversation, seq));
            reports += 1;
        }
        if self.read {
            session.queue(&wire::read_frame(conversation, seq));
            reports += 1;
        }
        reports
    }
}

/// One member connection: checks order and completeness, times each delivery and, as asked,
/// confirms it. Returns the deliveries inside the window and the session when still usable.
async fn member(
    index: usize,
    conn: ChatConn,
    conversation: ConversationId,
    shared: Rc<Shared>,
    errors: Rc<Errors>,
    drain: Duration,
    confirm: Confirm,
) -> (u64, Option<Session>) {
    let ChatConn {
        mut session,
        cursors,
        ..
    } = conn;
    let mut order = Order::after(cursors.get(&conversation).copied().unwrap_or_default());
    let mut received = 0u64;
    let mut count = 0u64;
    let mut texts: Vec<Bytes> = Vec::new();
    let finished = shared.finished.notified();
    tokio::pin!(finished);
    finished.as_mut().enable();
    let give_up = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(give_up);
    let mut sender_done = shared.sent.get().is_some();
    if sender_done {
        give_up.as_mut().reset((Instant::now() + drain).into());
    }
    // With --receipt-every: the newest seq not yet reported, and when the next report may go.
    let mut unreported: Option<u64> = None;
    let mut next_report = Instant::now();
    let result: anyhow::Result<()> = async {
        loop {
            if shared.sent.get().is_some_and(|total| received >= total) {
                return Ok(());
            }
            if let (Some(seq), Some(every)) = (unreported, confirm.every) {
                let now = Instant::now();
                if now >= next_report {
                    let reports = confirm.queue(&mut session, conversation, seq);
                    if shared.window.contains(now) {
                        Shared::add(&shared.reports_sent, reports);
                    }
                    unreported = None;
                    next_report = now + every;
                }
            }
            session.try_flush()?;
            let interest = if session.wbuf.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            tokio::select! {
                biased;
                () = &mut finished, if !sender_done => {
                    sender_done = true;
                    give_up.as_mut().reset((Instant::now() + drain).into());
                    continue;
                }
                () = &mut give_up => return Ok(()),
                () = tokio::time::sleep_until(next_report.into()), if unreported.is_some() => {
                    continue;
                }
                r = session.stream.ready(interest) => {
                    if !r?.is_readable() {
                        continue;
                    }
                }
            }
            read_texts(&mut session, |t| texts.push(t))?;
            let now = Instant::now();
            let counted = shared.window.contains(now);
            let mut newest = None;
            for text in texts.drain(..) {
                match wire::kind(&text) {
                    Kind::NewMessage => {
                        if wire::conversation(&text) != Some(conversation.0) {
                            continue;
                        }
                        match wire::seq(&text) {
                            Some(seq) => {
                                if let Err(e) = order.see(seq) {
                                    errors.push(format!("member {index}: {e}"));
                                }
                                if confirm.coalesce {
                                    newest = Some(seq);
                                } else {
                                    // One report per message, queued now and written
                                    // with the next flush, as a client's would be.
                                    let reports = confirm.queue(&mut session, conversation, seq);
                                    if counted {
                                        Shared::add(&shared.reports_sent, reports);
                                    }
                                }
                            }
                            None => errors.push(format!("member {index}: new_message without seq")),
                        }
                        let Some(n) = wire::local_id(&text) else {
                            errors
                                .push(format!("member {index}: a message the sender did not send"));
                            continue;
                        };
                        received += 1;
                        shared.delivered(n);
                        if counted {
                            count += 1;
                            if let Some(&at) = shared.sent_at.borrow().get(n as usize) {
                                shared.latency.borrow_mut().record(now - at);
                            }
                        }
                    }
                    Kind::Error => {
                        errors.push(format!("member {index}: {}", wire::excerpt(&text, 200)))
                    }
                    Kind::Receipt => {
                        Shared::add(&shared.receipt_frames_total, 1);
                        if counted {
                            Shared::add(&shared.receipt_frames, 1);
                        }
                    }
                    Kind::Typing if counted => Shared::add(&shared.typing_frames, 1),
                    _ => {}
                }
            }
            if let Some(seq) = newest {
                if confirm.every.is_some() {
                    unreported = Some(seq);
                } else {
                    let reports = confirm.queue(&mut session, conversation, seq);
                    if counted {
                        Shared::add(&shared.reports_sent, reports);
                    }
                }
            }
        }
    }
    .await;
    let total = shared.sent.get().unwrap_or(0);
    if received < total {
        errors.push_n(
            total - received,
            format!(
                "member {index}: {} of {total} messages never arrived",
                total - received
            ),
        );
    }
    match result {
        Ok(()) => (count, Some(session)),
        Err(e) => {
            errors.push(format!("member {index}: {e:#}"));
            (count, None)
        }
    }
}
