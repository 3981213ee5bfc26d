//! `chat fanout`: one sender into a group of M member connections (U users, round-robin),
//! every connection authenticated and synced before measuring starts.
//!
//! The sender keeps at most W sends that are not yet acked or not yet delivered to every
//! member (the raw `fanout` scenario's window, so the two compare). Figures: deliveries
//! (`new_message` frames the members received) per second and per server core-second,
//! send-to-delivery latency p50/p99/max, and ack latency. Checks: every send is acked, and
//! every member sees every message once, in `seq` order.

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
}

impl Shared {
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
    });
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
            ))
        })
        .collect();
    let usage = tokio::task::spawn_local(Usage::over(window, common.server_pid));
    let (session, acks) = send(
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
    latency_metrics(&mut report, &shared.latency.borrow());
    for (name, q) in [("ack_p50_us", 0.5), ("ack_p99_us", 0.99)] {
        if let Some(us) = acks.quantile_us(q) {
            report.metric(name, us);
        }
    }
    report.take_errors(&errors);
    Ok(report)
}

/// The sender: keeps the window full until it closes, then waits for its acks. Returns the
/// session (when still usable) and the ack latencies.
async fn send(
    conn: ChatConn,
    conversation: ConversationId,
    args: &ChatFanoutArgs,
    shared: Rc<Shared>,
    errors: Rc<Errors>,
    hard_end: Instant,
) -> (Option<Session>, Histogram) {
    let mut session = conn.session;
    let mut acks = Histogram::default();
    let mut sent = 0u64;
    let mut acked = 0u64;
    let mut texts: Vec<Bytes> = Vec::new();
    let window = shared.window;
    let result: anyhow::Result<()> = async {
        loop {
            let now = Instant::now();
            if now < window.to {
                let done = shared.complete.get().min(acked);
                while sent - done < args.window as u64 && sent < MAX_SENDS {
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
        Ok(()) => (Some(session), acks),
        Err(e) => {
            errors.push(format!("sender: {e:#}"));
            (None, acks)
        }
    }
}

/// One member connection: checks order and completeness and times each delivery. Returns
/// the deliveries inside the window and the session when still usable.
async fn member(
    index: usize,
    conn: ChatConn,
    conversation: ConversationId,
    shared: Rc<Shared>,
    errors: Rc<Errors>,
    drain: Duration,
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
    let result: anyhow::Result<()> = async {
        loop {
            if shared.sent.get().is_some_and(|total| received >= total) {
                return Ok(());
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
                r = session.stream.ready(interest) => {
                    if !r?.is_readable() {
                        continue;
                    }
                }
            }
            read_texts(&mut session, |t| texts.push(t))?;
            let now = Instant::now();
            let counted = shared.window.contains(now);
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
                    _ => {}
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
