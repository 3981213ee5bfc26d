//! `chat send`: N senders, each its own user and connection, spread over G groups (default
//! one, so every message also reaches the N-1 other senders). Each keeps W sends unacked
//! (closed loop), or sends on a fixed schedule at a total `--rate` (open loop: a send that
//! had to wait for room in the window still counts its latency from its scheduled time, so a
//! stalled server cannot hide its stalls).
//!
//! Figures: acks/s inside the window and per server core-second, ack latency (send, or
//! scheduled send, to ack) p50/p99/max, and the `new_message` deliveries the senders
//! received. Checks: every send is acked; every connection sees its group's messages (its
//! own acks and the others' `new_message`) each once, in `seq` order, up to the last one.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatgroup_protocol::ConversationId;
use tokio::io::Interest;

use super::{read_texts, wire, ChatConn, Kind, Order, Setup};
use crate::cli::ChatSendArgs;
use crate::hist::Histogram;
use crate::report::{Errors, Report};
use crate::scenario::{latency_metrics, Common, Usage, Window};
use crate::session::{close_all, Session};

/// How often a sender that is done looks whether the rest of its group is.
const POLL: Duration = Duration::from_millis(10);

/// What the senders of one group share.
#[derive(Debug, Default)]
struct Group {
    /// Senders in the group.
    senders: usize,
    /// Senders that stopped sending and have every ack (or gave up).
    done: Cell<usize>,
    /// The newest `seq` acked in the group.
    last_acked: Cell<u64>,
}

/// How one sender paces itself.
#[derive(Debug, Clone, Copy)]
struct Plan {
    window: Window,
    /// Sending and checking end here at the latest.
    hard_end: Instant,
    in_flight: usize,
    size: usize,
    /// Open loop: the first scheduled send and the interval between sends.
    schedule: Option<(Instant, Duration)>,
}

/// One sender's outcome.
#[derive(Debug, Default)]
struct Outcome {
    acks_in_window: u64,
    deliveries_in_window: u64,
    sent: u64,
    acked: u64,
    deliveries: u64,
    latency: Histogram,
    session: Option<Session>,
}

/// Runs the mode.
pub(crate) async fn run(
    common: &Common,
    setup: &Setup,
    args: &ChatSendArgs,
) -> anyhow::Result<Report> {
    let errors = Rc::new(Errors::default());
    let params = serde_json::json!({
        "senders": args.senders, "window": args.window, "size": args.size, "rate": args.rate,
        "groups": args.groups, "warmup_s": common.warmup.as_secs_f64(),
        "duration_s": common.duration.as_secs_f64(),
    });
    let mut report = Report::new("chat-send", &common.label, params);
    let n = args.senders;
    let setup_start = Instant::now();
    let accounts = setup.register("s", n).await?;
    let mut group_of = vec![ConversationId(0); n];
    let mut groups = HashMap::new();
    for g in 0..args.groups {
        let mine: Vec<usize> = (g..n).step_by(args.groups).collect();
        let members: Vec<String> = mine[1..]
            .iter()
            .map(|&i| accounts[i].username.clone())
            .collect();
        let id = setup
            .group(&accounts[mine[0]], &format!("loadgen send {g}"), &members)
            .await?;
        for &i in &mine {
            group_of[i] = id;
        }
        groups.insert(
            id,
            Rc::new(Group {
                senders: mine.len(),
                ..Group::default()
            }),
        );
    }
    let tokens: Vec<String> = accounts.iter().map(|a| a.token.clone()).collect();
    let conns = setup
        .connect_many(n, move |i| tokens[i].clone(), &errors)
        .await;
    report.metric("setup_s", setup_start.elapsed().as_secs_f64());
    if conns.len() < n {
        report.take_errors(&errors);
        close_all(
            conns.into_iter().map(|(_, c)| c.session).collect(),
            Duration::from_secs(1),
        )
        .await;
        return Ok(report);
    }

    let window = Window::after(common.warmup, common.duration);
    let start = Instant::now();
    let usage = tokio::task::spawn_local(Usage::over(window, common.server_pid));
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|(i, conn)| {
            let conversation = group_of[i];
            let schedule = args.rate.map(|rate| {
                // Each sender sends rate/N per second, staggered so the total is smooth.
                let every = Duration::from_secs_f64(n as f64 / rate);
                (start + every.mul_f64(i as f64 / n as f64), every)
            });
            let plan = Plan {
                window,
                hard_end: window.to + Duration::from_secs_f64(args.drain),
                in_flight: args.window,
                size: args.size,
                schedule,
            };
            let group = groups[&conversation].clone();
            tokio::task::spawn_local(sender(i, conn, conversation, plan, group, errors.clone()))
        })
        .collect();
    let mut total = Outcome::default();
    let mut sessions = Vec::new();
    for task in tasks {
        let o = task.await?;
        total.acks_in_window += o.acks_in_window;
        total.deliveries_in_window += o.deliveries_in_window;
        total.sent += o.sent;
        total.acked += o.acked;
        total.deliveries += o.deliveries;
        total.latency.merge(&o.latency);
        sessions.extend(o.session);
    }
    let usage = usage.await??;
    close_all(sessions, Duration::from_secs(1)).await;
    usage.fill(&mut report);
    report.window_s = common.duration.as_secs_f64();
    report.metric("sent", total.sent as f64);
    report.metric("acked", total.acked as f64);
    report.metric("acks", total.acks_in_window as f64);
    report.rate(
        "acks_per_s",
        "acks_per_server_core_s",
        total.acks_in_window as f64,
    );
    report.metric("deliveries", total.deliveries_in_window as f64);
    report.rate(
        "deliveries_per_s",
        "deliveries_per_server_core_s",
        total.deliveries_in_window as f64,
    );
    if let Some(rate) = args.rate {
        report.metric("offered_per_s", rate);
    }
    latency_metrics(&mut report, &total.latency);
    report.take_errors(&errors);
    Ok(report)
}

/// One sender until every ack and delivery is in (or the drain time is up).
async fn sender(
    index: usize,
    conn: ChatConn,
    conversation: ConversationId,
    plan: Plan,
    group: Rc<Group>,
    errors: Rc<Errors>,
) -> Outcome {
    let mut out = Outcome::default();
    let ChatConn {
        mut session,
        cursors,
        ..
    } = conn;
    let mut order = Order::after(cursors.get(&conversation).copied().unwrap_or_default());
    let mut inflight: HashMap<u64, Instant> = HashMap::with_capacity(plan.in_flight);
    let mut next_due = plan.schedule.map(|(first, _)| first);
    let mut done = false;
    let mut texts: Vec<Bytes> = Vec::new();
    let result: anyhow::Result<()> = async {
        loop {
            let now = Instant::now();
            if now < plan.window.to {
                match (plan.schedule, next_due.as_mut()) {
                    (Some((_, every)), Some(due)) => {
                        while *due <= now && inflight.len() < plan.in_flight {
                            session.queue(&wire::send_frame(conversation, out.sent, plan.size));
                            inflight.insert(out.sent, *due);
                            out.sent += 1;
                            *due += every;
                        }
                    }
                    _ => {
                        while inflight.len() < plan.in_flight {
                            session.queue(&wire::send_frame(conversation, out.sent, plan.size));
                            inflight.insert(out.sent, now);
                            out.sent += 1;
                        }
                    }
                }
            } else if !done && inflight.is_empty() {
                done = true;
                group.done.set(group.done.get() + 1);
            }
            if done && group.done.get() == group.senders && order.last() >= group.last_acked.get() {
                return Ok(());
            }
            if now >= plan.hard_end {
                return Ok(());
            }
            session.try_flush()?;
            let wake = if now < plan.window.to {
                match next_due {
                    Some(due) if inflight.len() < plan.in_flight => due.min(plan.window.to),
                    _ => plan.window.to,
                }
            } else {
                (now + POLL).min(plan.hard_end)
            };
            let interest = if session.wbuf.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            tokio::select! {
                biased;
                r = session.stream.ready(interest) => {
                    if !r?.is_readable() {
                        continue;
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => continue,
            }
            read_texts(&mut session, |t| texts.push(t))?;
            let now = Instant::now();
            let counted = plan.window.contains(now);
            for text in texts.drain(..) {
                match wire::kind(&text) {
                    Kind::Ack => {
                        let (Some(n), Some(seq)) = (wire::local_id(&text), wire::seq(&text)) else {
                            errors.push(format!(
                                "sender {index}: bad ack {}",
                                wire::excerpt(&text, 200)
                            ));
                            continue;
                        };
                        match inflight.remove(&n) {
                            Some(sent) => {
                                out.acked += 1;
                                if counted {
                                    out.acks_in_window += 1;
                                    out.latency.record(now - sent);
                                }
                            }
                            None => errors.push(format!(
                                "sender {index}: ack for localId {n}, not in flight"
                            )),
                        }
                        if group.last_acked.get() < seq {
                            group.last_acked.set(seq);
                        }
                        if let Err(e) = order.see(seq) {
                            errors.push(format!("sender {index}: {e}"));
                        }
                    }
                    Kind::NewMessage => {
                        if wire::conversation(&text) != Some(conversation.0) {
                            continue;
                        }
                        out.deliveries += 1;
                        if counted {
                            out.deliveries_in_window += 1;
                        }
                        match wire::seq(&text) {
                            Some(seq) => {
                                if let Err(e) = order.see(seq) {
                                    errors.push(format!("sender {index}: {e}"));
                                }
                            }
                            None => errors.push(format!("sender {index}: new_message without seq")),
                        }
                    }
                    Kind::Error => {
                        errors.push(format!("sender {index}: {}", wire::excerpt(&text, 200)))
                    }
                    _ => {}
                }
            }
        }
    }
    .await;
    if !done {
        group.done.set(group.done.get() + 1);
    }
    if !inflight.is_empty() {
        errors.push_n(
            inflight.len() as u64,
            format!("sender {index}: {} sends never acked", inflight.len()),
        );
    }
    let missing = group.last_acked.get().saturating_sub(order.last());
    if missing > 0 {
        errors.push_n(
            missing,
            format!("sender {index}: the group's last {missing} messages never arrived"),
        );
    }
    match result {
        Ok(()) => out.session = Some(session),
        Err(e) => errors.push(format!("sender {index}: {e:#}")),
    }
    out
}
