//! `idle`: K connections opened and held; the server's resident memory per connection.
//!
//! The server's RSS is read before the first connection and again after every connection
//! has been held for a while; the difference over K is the cost of one idle connection.
//! Every connection then has to answer a ping, so a server that dropped some cannot look
//! cheaper than it is. Past `--per-source` connections the source address moves on to the
//! next 127.0.0.x, because one source address has only about 28,000 ephemeral ports.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{open_many, Common, Usage};
use crate::cli::IdleArgs;
use crate::procfs::{self, Pid};
use crate::report::{Errors, Report};
use crate::session::{close_all, Session};

/// How long every held connection has to answer its ping.
const PING_DEADLINE: Duration = Duration::from_secs(10);

/// Runs the scenario.
pub(crate) async fn run(common: &Common, args: &IdleArgs) -> anyhow::Result<Report> {
    let errors = Rc::new(Errors::default());
    let params = serde_json::json!({
        "conns": args.conns, "concurrency": args.concurrency, "hold_s": args.hold,
        "rooms": args.rooms, "per_source": common.target.per_source, "deflate": args.deflate,
    });
    let target = crate::session::Target {
        deflate: args.deflate,
        ..common.target.clone()
    };
    let mut report = Report::new("idle", &common.label, params);
    let rss = || {
        common
            .server_pid
            .map(|id| procfs::rss_kib(Pid::Id(id)))
            .transpose()
    };
    let baseline = rss()?;
    let usage = Usage::begin(common.server_pid)?;
    let rooms = args.rooms;
    let opened = open_many(
        &target,
        args.conns,
        args.concurrency,
        move |i| {
            if rooms == 0 {
                "/echo".to_owned()
            } else {
                format!("/broadcast?conversation_id={}", i as u64 % rooms)
            }
        },
        &errors,
    )
    .await;
    let open = opened.sessions.len();
    report.metric("conns_open", open as f64);
    report.metric("open_s", opened.elapsed.as_secs_f64());
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let held = rss()?;
    let usage = usage.end()?;
    usage.fill(&mut report);

    // Every connection must still be served.
    finish(opened.sessions, open, &errors, &mut report, baseline, held).await?;
    Ok(report)
}

/// The end of an idle run, shared with `chat idle`: every held connection must answer a
/// ping (a server that dropped some cannot look cheaper than it is), then the RSS per
/// connection goes into the report and the connections are closed.
pub(crate) async fn finish(
    sessions: impl IntoIterator<Item = (usize, Session)>,
    open: usize,
    errors: &Rc<Errors>,
    report: &mut Report,
    baseline: Option<u64>,
    held: Option<u64>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + PING_DEADLINE;
    let checks: Vec<_> = sessions
        .into_iter()
        .map(|(i, mut s)| {
            let errors = errors.clone();
            tokio::task::spawn_local(async move {
                match s.ping_pong(deadline).await {
                    Ok(()) => Some(s),
                    Err(e) => {
                        errors.push(format!("connection {i} after holding: {e:#}"));
                        None
                    }
                }
            })
        })
        .collect();
    let mut alive = Vec::with_capacity(open);
    for check in checks {
        alive.extend(check.await?);
    }
    report.metric("conns_alive", alive.len() as f64);
    if let (Some(before), Some(after)) = (baseline, held) {
        report.metric("rss_baseline_kib", before as f64);
        if open > 0 {
            let per_conn = after.saturating_sub(before) as f64 * 1024.0 / open as f64;
            report.metric("rss_per_conn_bytes", per_conn);
        }
    }
    close_all(alive, Duration::from_secs(2)).await;
    report.take_errors(errors);
    Ok(())
}
