//! Command-line options. Every run is bounded: durations, counts and sizes have hard caps,
//! and only loopback addresses are accepted.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure};
use clap::{Args, Parser, Subcommand};

/// Longest measured window a run may ask for.
const MAX_DURATION_S: f64 = 600.0;
/// Most connections any scenario may open.
const MAX_CONNECTIONS: usize = 200_000;
/// Largest message payload.
const MAX_PAYLOAD: usize = 16 << 20;

/// Load generator for chatgroup and its peer servers (loopback only).
///
/// Prints one JSON line per run on stdout and a table on stderr; exits with status 2 when
/// the run saw errors (lost, duplicated or misordered messages, failed connections).
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub(crate) struct Cli {
    /// Server address; must be a loopback address (127.0.0.0/8 or ::1).
    #[arg(long, global = true, default_value = "127.0.0.1:8080")]
    pub(crate) addr: SocketAddr,
    /// Server process id, to report its CPU time and resident memory from /proc.
    #[arg(long, global = true)]
    pub(crate) server_pid: Option<u32>,
    /// Name of the server under test, copied into the report.
    #[arg(long, global = true, default_value = "server")]
    pub(crate) label: String,
    /// Free-form name of this run (e.g. `echo-32b`), copied into the report.
    #[arg(long, global = true, default_value = "")]
    pub(crate) tag: String,
    /// Seconds of load before measuring starts (echo, fanout).
    #[arg(long, global = true, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Seconds measured (echo, fanout).
    #[arg(long, global = true, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// Seconds allowed for one connect plus handshake.
    #[arg(long, global = true, default_value_t = 10.0)]
    pub(crate) connect_timeout: f64,
    /// Connections per source address before rotating to the next 127.0.0.x.
    #[arg(long, global = true, default_value_t = 25_000)]
    pub(crate) per_source: usize,
    /// Print only the JSON line, not the table.
    #[arg(long, global = true)]
    pub(crate) quiet: bool,
    /// The scenario to run.
    #[command(subcommand)]
    pub(crate) scenario: Scenario,
}

/// The four scenarios of issue 4.
#[derive(Debug, Subcommand)]
pub(crate) enum Scenario {
    /// C connections each keep W messages of S bytes in flight on /echo.
    Echo(EchoArgs),
    /// N subscribers and one publisher in one conversation (/broadcast?conversation_id=N;
    /// chatgroup serves it with --echo); verifies exactly-once, in order.
    Fanout(FanoutArgs),
    /// K connections opened and held; reports server memory per connection.
    Idle(IdleArgs),
    /// K connections opened as fast as possible; reports handshakes per second.
    Storm(StormArgs),
}

/// Options of `echo`.
#[derive(Debug, Args)]
pub(crate) struct EchoArgs {
    /// Connections.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub(crate) conns: usize,
    /// Messages in flight per connection.
    #[arg(long, short = 'w', default_value_t = 16)]
    pub(crate) window: usize,
    /// Payload bytes per message.
    #[arg(long, short = 's', default_value_t = 32)]
    pub(crate) size: usize,
    /// Send text frames instead of binary ones.
    #[arg(long)]
    pub(crate) text: bool,
    /// Resource to connect to.
    #[arg(long, default_value = "/echo")]
    pub(crate) path: String,
    /// The server is a raw TCP echo (the yardstick): accept our own masked frames back.
    #[arg(long)]
    pub(crate) raw_peer: bool,
}

/// Options of `fanout`.
#[derive(Debug, Args)]
pub(crate) struct FanoutArgs {
    /// Subscribers (the publisher comes on top).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub(crate) subscribers: usize,
    /// Payload bytes per message (at least 17: a tag and a 16-digit sequence number).
    #[arg(long, short = 's', default_value_t = 64)]
    pub(crate) size: usize,
    /// Publishes not yet delivered to every subscriber (max-rate mode).
    #[arg(long, short = 'w', default_value_t = 16)]
    pub(crate) window: usize,
    /// Publish at this fixed rate per second instead of as fast as the window allows.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// The conversation to use (/broadcast?conversation_id=N).
    #[arg(long, default_value_t = 1)]
    pub(crate) conversation: u64,
    /// Seconds to wait after the window for the last deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) drain: f64,
    /// Handshakes in flight while the subscribers join.
    #[arg(long, default_value_t = 128)]
    pub(crate) concurrency: usize,
}

/// Options of `idle`.
#[derive(Debug, Args)]
pub(crate) struct IdleArgs {
    /// Connections to open and hold.
    #[arg(long, short = 'k', default_value_t = 10_000)]
    pub(crate) conns: usize,
    /// Handshakes in flight while opening.
    #[arg(long, default_value_t = 128)]
    pub(crate) concurrency: usize,
    /// Seconds to hold every connection open before reading the server's memory.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) hold: f64,
    /// Spread the connections over this many conversations
    /// (/broadcast?conversation_id=i%rooms; chatgroup serves it with --echo); 0 connects them
    /// to /echo instead.
    #[arg(long, default_value_t = 100)]
    pub(crate) rooms: u64,
}

/// Options of `storm`.
#[derive(Debug, Args)]
pub(crate) struct StormArgs {
    /// Connections to open.
    #[arg(long, short = 'k', default_value_t = 5_000)]
    pub(crate) conns: usize,
    /// Handshakes in flight.
    #[arg(long, default_value_t = 128)]
    pub(crate) concurrency: usize,
    /// Resource to connect to.
    #[arg(long, default_value = "/echo")]
    pub(crate) path: String,
}

impl Cli {
    /// Rejects anything that would leave loopback or run unbounded.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.addr.ip().is_loopback(),
            "--addr must be a loopback address, got {}",
            self.addr.ip()
        );
        ensure!(
            (0.0..=60.0).contains(&self.warmup),
            "--warmup must be 0..=60 seconds"
        );
        ensure!(
            self.duration > 0.0 && self.duration <= MAX_DURATION_S,
            "--duration must be in (0, {MAX_DURATION_S}] seconds"
        );
        ensure!(
            self.connect_timeout > 0.0 && self.connect_timeout <= 60.0,
            "--connect-timeout must be in (0, 60] seconds"
        );
        ensure!(self.per_source > 0, "--per-source must be positive");
        let conns = match &self.scenario {
            Scenario::Echo(a) => {
                ensure!(
                    a.window >= 1 && a.window <= 4096,
                    "--window must be 1..=4096"
                );
                ensure!(
                    a.size <= MAX_PAYLOAD,
                    "--size must be at most {MAX_PAYLOAD}"
                );
                ensure!(a.path.starts_with('/'), "--path must start with '/'");
                a.conns
            }
            Scenario::Fanout(a) => {
                ensure!(
                    a.size >= 17 && a.size <= MAX_PAYLOAD,
                    "--size must be 17..={MAX_PAYLOAD}"
                );
                ensure!(
                    a.window >= 1 && a.window <= 65_536,
                    "--window must be 1..=65536"
                );
                if let Some(rate) = a.rate {
                    ensure!(rate > 0.0 && rate <= 1e6, "--rate must be in (0, 1e6]");
                }
                ensure!(
                    (0.0..=60.0).contains(&a.drain),
                    "--drain must be 0..=60 seconds"
                );
                ensure!(a.concurrency >= 1, "--concurrency must be positive");
                a.subscribers + 1
            }
            Scenario::Idle(a) => {
                ensure!(
                    (0.0..=600.0).contains(&a.hold),
                    "--hold must be 0..=600 seconds"
                );
                ensure!(a.concurrency >= 1, "--concurrency must be positive");
                a.conns
            }
            Scenario::Storm(a) => {
                ensure!(a.concurrency >= 1, "--concurrency must be positive");
                ensure!(a.path.starts_with('/'), "--path must start with '/'");
                a.conns
            }
        };
        ensure!(
            (1..=MAX_CONNECTIONS).contains(&conns),
            "between 1 and {MAX_CONNECTIONS} connections"
        );
        if let Some(limit) = open_file_limit() {
            if conns as u64 + 32 > limit {
                bail!(
                    "{conns} connections need more than the open-file limit of {limit}; \
                     raise it with `ulimit -n` (both for the generator and the server)"
                );
            }
        }
        Ok(())
    }

    /// Bound on connect plus handshake.
    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout)
    }
}

/// The soft `RLIMIT_NOFILE` of this process, from /proc/self/limits.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_ascii_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Cli> {
        let cli = Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))?;
        cli.validate()?;
        Ok(cli)
    }

    #[test]
    fn defaults_are_valid() {
        for s in ["echo", "fanout", "storm"] {
            parse(&[s]).unwrap();
        }
        parse(&["idle", "-k", "100"]).unwrap();
    }

    #[test]
    fn refuses_to_leave_loopback() {
        let err = parse(&["echo", "--addr", "10.0.0.1:80"]).unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        parse(&["--addr", "127.0.0.9:80", "echo"]).unwrap();
    }

    #[test]
    fn refuses_unbounded_runs() {
        assert!(parse(&["echo", "--duration", "100000"]).is_err());
        assert!(parse(&["storm", "-k", "0"]).is_err());
        assert!(parse(&["storm", "-k", "10000000"]).is_err());
        assert!(parse(&["fanout", "--size", "4"]).is_err());
    }

    #[test]
    fn reads_the_open_file_limit() {
        assert!(open_file_limit().unwrap() > 0);
    }
}
