//! `storm`: K connections opened as fast as the server takes them, at most `--concurrency`
//! handshakes in flight; handshakes per second (wall and per server core-second) and
//! failures. Connections stay open until the last handshake, so the server's cost of
//! holding them is part of what it pays.

use std::rc::Rc;
use std::time::Duration;

use super::{latency_metrics, open_many, Common, Usage};
use crate::cli::StormArgs;
use crate::report::{Errors, Report};
use crate::session::close_all;

/// Runs the scenario.
pub(crate) async fn run(common: &Common, args: &StormArgs) -> anyhow::Result<Report> {
    let errors = Rc::new(Errors::default());
    let params = serde_json::json!({
        "conns": args.conns, "concurrency": args.concurrency, "path": args.path,
        "per_source": common.target.per_source,
    });
    let mut report = Report::new("storm", &common.label, params);
    let usage = Usage::begin(common.server_pid)?;
    let path = args.path.clone();
    let opened = open_many(
        &common.target,
        args.conns,
        args.concurrency,
        move |_| path.clone(),
        &errors,
    )
    .await;
    let usage = usage.end()?;
    usage.fill(&mut report);
    let ok = opened.sessions.len();
    report.metric("handshakes", ok as f64);
    report.metric("failed", opened.failed as f64);
    report.rate(
        "handshakes_per_s",
        "handshakes_per_server_core_s",
        ok as f64,
    );
    latency_metrics(&mut report, &opened.handshake);
    close_all(
        opened.sessions.into_iter().map(|(_, s)| s).collect(),
        Duration::from_secs(2),
    )
    .await;
    report.take_errors(&errors);
    Ok(report)
}
