//! `chat sync`: one member is offline while S messages are sent into its group; then it
//! connects and sends `sync` with its cursor.
//!
//! The figure is the time from writing `sync` to reading `synced` (the replay arrives as
//! `sync_batch` messages, kept unparsed until the clock has stopped), repeated R times from
//! the same cursor on fresh connections; the median is reported. Check: each replay holds
//! exactly the S messages, `seq` cursor+1..=cursor+S in order, each with the sender, localId
//! and body it was sent with, and `synced` reports cursor+S.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use chatgroup_protocol::{ConversationId, Seq, ServerMsg, UserId};

use super::{wire, Account, ChatConn, Kind, Order, Setup, Synced};
use crate::cli::ChatSyncArgs;
use crate::report::{Errors, Report};
use crate::scenario::{Common, Usage};

/// Runs the mode.
pub(crate) async fn run(
    common: &Common,
    setup: &Setup,
    args: &ChatSyncArgs,
) -> anyhow::Result<Report> {
    let errors = Rc::new(Errors::default());
    let params = serde_json::json!({
        "messages": args.messages, "window": args.window, "size": args.size,
        "repeats": args.repeats,
    });
    let mut report = Report::new("chat-sync", &common.label, params);
    let setup_start = Instant::now();
    let accounts = setup.register("y", 2).await?;
    let (sender, member) = (&accounts[0], &accounts[1]);
    let conversation = setup
        .group(
            sender,
            "loadgen sync",
            std::slice::from_ref(&member.username),
        )
        .await?;

    // The member's cursor: everything up to the group's creation.
    let mut conn = ChatConn::open(&setup.target, 1, &member.token).await?;
    conn.sync(BTreeMap::new()).await?;
    let cursor = conn
        .cursors
        .get(&conversation)
        .copied()
        .context("synced names no cursor for the group")?;
    conn.session.close(Duration::from_secs(1)).await;
    report.metric("setup_s", setup_start.elapsed().as_secs_f64());

    let fill_start = Instant::now();
    fill(setup, sender, conversation, cursor, args).await?;
    let fill_s = fill_start.elapsed().as_secs_f64();
    report.metric("fill_s", fill_s);
    report.metric("fill_acks_per_s", args.messages as f64 / fill_s);

    let expect = Expect {
        conversation,
        cursor,
        sender: sender.id,
        count: args.messages as u64,
        size: args.size,
    };
    let usage = Usage::begin(common.server_pid)?;
    let mut times = Vec::with_capacity(args.repeats);
    for r in 0..args.repeats {
        let mut conn = ChatConn::open(&setup.target, 2 + r, &member.token).await?;
        let synced = conn.sync(BTreeMap::from([(conversation, cursor)])).await?;
        times.push(synced.elapsed);
        if let Err(e) = expect.check(&synced, conn.cursors.get(&conversation).copied()) {
            errors.push(format!("sync {r}: {e:#}"));
        }
        conn.session.close(Duration::from_secs(1)).await;
    }
    let usage = usage.end()?;
    usage.fill(&mut report);
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = times[times.len() / 2];
    report.metric("messages", args.messages as f64);
    report.metric("sync_ms", ms(median));
    report.metric("sync_min_ms", ms(times[0]));
    report.metric("sync_max_ms", ms(times[times.len() - 1]));
    report.metric(
        "replay_msgs_per_s",
        args.messages as f64 / median.as_secs_f64(),
    );
    if let Some(cpu) = usage.server_cpu_s {
        report.metric("server_cpu_ms_per_sync", cpu * 1e3 / args.repeats as f64);
    }
    report.take_errors(&errors);
    Ok(report)
}

/// The sender posts the S messages with a window of W and waits for every ack; the acks
/// must continue the group's `seq` from `cursor` with no gap.
async fn fill(
    setup: &Setup,
    sender: &Account,
    conversation: ConversationId,
    cursor: Seq,
    args: &ChatSyncArgs,
) -> anyhow::Result<()> {
    let mut conn = ChatConn::open(&setup.target, 0, &sender.token).await?;
    conn.sync(BTreeMap::new()).await?;
    let mut order = Order::after(cursor);
    let total = args.messages as u64;
    let deadline = Instant::now() + Duration::from_secs(60 + total / 500);
    let (mut sent, mut acked) = (0u64, 0u64);
    while acked < total {
        while sent < total && sent - acked < args.window as u64 {
            conn.session
                .queue(&wire::send_frame(conversation, sent, args.size));
            sent += 1;
        }
        let text = conn
            .next_text(deadline)
            .await
            .with_context(|| format!("filling: {acked} of {total} acked"))?;
        match wire::kind(&text) {
            Kind::Ack => {
                ensure!(
                    wire::local_id(&text) == Some(acked),
                    "filling: ack {} where localId {acked} was due",
                    wire::excerpt(&text, 200)
                );
                acked += 1;
                let seq = wire::seq(&text).context("an ack without seq")?;
                order
                    .see(seq)
                    .map_err(|e| anyhow::anyhow!("filling: {e}"))?;
            }
            Kind::Error => bail!("filling: {}", wire::excerpt(&text, 200)),
            _ => {}
        }
    }
    conn.session.close(Duration::from_secs(1)).await;
    Ok(())
}

/// What one replay must hold.
#[derive(Debug)]
struct Expect {
    conversation: ConversationId,
    cursor: Seq,
    sender: UserId,
    count: u64,
    size: usize,
}

impl Expect {
    fn check(&self, synced: &Synced, reported: Option<Seq>) -> anyhow::Result<()> {
        ensure!(
            synced.live.is_empty(),
            "{} live messages during the replay (nobody was sending)",
            synced.live.len()
        );
        let mut k = 0u64;
        for batch in &synced.batches {
            let msg: ServerMsg = serde_json::from_slice(batch).context("parsing sync_batch")?;
            let ServerMsg::SyncBatch {
                conversation,
                messages,
            } = msg
            else {
                bail!("not a sync_batch: {}", wire::excerpt(batch, 100));
            };
            ensure!(
                conversation == self.conversation,
                "a batch of conversation {conversation}"
            );
            for m in messages {
                let want = self.cursor.0 + 1 + k;
                ensure!(
                    m.seq.0 == want,
                    "message {k} of the replay has seq {}, expected {want}",
                    m.seq
                );
                let local = k.to_string();
                ensure!(
                    m.sender == Some(self.sender)
                        && m.local_id.as_deref() == Some(local.as_str())
                        && m.body == wire::body(k, self.size),
                    "seq {want} is not the message sent as localId {k}"
                );
                k += 1;
            }
        }
        ensure!(
            k == self.count,
            "the replay held {k} messages, {} were missed",
            self.count
        );
        let last = Seq(self.cursor.0 + self.count);
        ensure!(
            reported == Some(last),
            "synced reported cursor {reported:?}, expected {last}"
        );
        Ok(())
    }
}
