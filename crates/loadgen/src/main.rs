//! `loadgen`: the load generator of chatgroup's performance comparison (issue 4).
//!
//! It speaks WebSocket through our own codec, `rfc6455`, in the client role, on one
//! single-threaded tokio runtime, so that its cost per message stays small and its CPU
//! time is one number: frames are masked once ahead of time, and each connection answers a
//! whole read's worth of messages with one write. Scenarios:
//!
//! | scenario | what it measures |
//! |---|---|
//! | `echo` | messages/s and round-trip p50/p99, C connections x W in flight x S bytes |
//! | `fanout` | deliveries/s and publish-to-receipt p50/p99 to N subscribers; exactly-once, in order |
//! | `idle` | server RSS per held connection |
//! | `storm` | handshakes/s and failures |
//! | `chat send` | acked sends/s and ack latency, N senders x W unacked (or a fixed rate) |
//! | `chat fanout` | deliveries/s of stored messages to M member connections |
//! | `chat sync` | time from `sync` to `synced` after S missed messages; exactly those S, in order |
//! | `chat idle` | server RSS per authenticated, synced connection in three conversations |
//!
//! Each run prints one JSON line on stdout and a table on stderr. With `--server-pid`, the
//! server's CPU time and RSS are read from /proc, so every rate is also given per server
//! core-second. Only loopback addresses are accepted, and every run is bounded in time and
//! in connections. The exit status is 0 for a clean run, 2 when the run saw errors and 1
//! when it could not run.

mod cli;
mod hist;
mod procfs;
mod report;
mod scenario;
mod session;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;

use cli::{Cli, Scenario};
use scenario::Common;
use session::Target;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(mut report) => {
            report.tag.clone_from(&cli.tag);
            println!("{}", report.to_json());
            if !cli.quiet {
                eprint!("{}", report.to_table());
            }
            if report.errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<report::Report> {
    cli.validate()?;
    let common = Common {
        target: Target {
            addr: cli.addr,
            per_source: cli.per_source,
            connect_timeout: cli.connect_timeout(),
            deflate: false,
        },
        server_pid: cli.server_pid,
        label: cli.label.clone(),
        warmup: Duration::from_secs_f64(cli.warmup),
        duration: Duration::from_secs_f64(cli.duration),
    };
    // No scenario may outlive its own bounds by much: opening every connection, the
    // warm-up and the window, draining, and closing.
    let limit = common.warmup
        + common.duration
        + cli.connect_timeout() * 4
        + Duration::from_secs(match &cli.scenario {
            Scenario::Idle(a) => 60 + a.hold as u64,
            // Registering users costs the server a password hash each (tens of ms).
            Scenario::Chat(a) => 120 + a.users() as u64 / 10 + a.extra_secs(),
            _ => 60,
        });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let scenario = async {
            match &cli.scenario {
                Scenario::Echo(a) => scenario::echo::run(&common, a).await,
                Scenario::Fanout(a) => scenario::fanout::run(&common, a).await,
                Scenario::Idle(a) => scenario::idle::run(&common, a).await,
                Scenario::Storm(a) => scenario::storm::run(&common, a).await,
                Scenario::Chat(a) => scenario::chat::run(&common, a).await,
            }
        };
        tokio::time::timeout(limit, scenario)
            .await
            .with_context(|| format!("the run did not finish within {limit:?}"))?
    })
}
