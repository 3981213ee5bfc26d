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

/// The four scenarios of issue 4, and the chat protocol's of issue 8.
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
    /// The chat protocol on /ws: registered users, groups, acked sends, fan-out, sync and
    /// idle authenticated connections (chatgroup only; start it with a high
    /// --message-rate/--message-burst).
    Chat(ChatArgs),
}

/// Options of `chat`: what every mode shares, then the mode.
#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// Registrations in flight (the server hashes at most --password-hashers passwords at
    /// once; a few more keep its hashers busy).
    #[arg(long, default_value_t = 4)]
    pub(crate) register_concurrency: usize,
    /// Chat connections being opened (handshake, `ready`, `sync`, `synced`) at once.
    #[arg(long, default_value_t = 128)]
    pub(crate) concurrency: usize,
    /// Prefix of the usernames this run registers; default: one unique to this run, so
    /// runs against the same server never collide.
    #[arg(long)]
    pub(crate) user_prefix: Option<String>,
    /// What to measure.
    #[command(subcommand)]
    pub(crate) mode: ChatMode,
}

/// The chat modes.
#[derive(Debug, Subcommand)]
pub(crate) enum ChatMode {
    /// N senders each keep W sends unacked (or send at a fixed total --rate); acked sends/s
    /// and ack latency; every member must see every message once, in seq order.
    Send(ChatSendArgs),
    /// One sender into a group of M member connections; deliveries/s and per server
    /// core-second, publish-to-delivery latency; every member sees every message in order.
    Fanout(ChatFanoutArgs),
    /// One member misses S messages, then syncs from its cursor: time from `sync` to
    /// `synced`, and the replay must be exactly those S messages in seq order.
    Sync(ChatSyncArgs),
    /// C authenticated, synced connections of U users, each user in three conversations,
    /// held idle; server RSS per connection.
    Idle(ChatIdleArgs),
    /// N clients each upload files of S bytes in 64 KiB chunks, one file after another;
    /// MB/s from the first `file_start` to the last `ack`, and per server core-second.
    Upload(ChatUploadArgs),
    /// One user U in G groups with M connected members each: presence frames the server
    /// sends (from /metrics) when U reloads, leaves for good and comes back, without and
    /// with watchers.
    Presence(ChatPresenceArgs),
}

/// Options of `chat send`.
#[derive(Debug, Args)]
pub(crate) struct ChatSendArgs {
    /// Senders (one user and one connection each).
    #[arg(long, short = 'n', default_value_t = 100)]
    pub(crate) senders: usize,
    /// Sends in flight (not yet acked) per sender.
    #[arg(long, short = 'w', default_value_t = 16)]
    pub(crate) window: usize,
    /// Body bytes per message.
    #[arg(long, short = 's', default_value_t = 100)]
    pub(crate) size: usize,
    /// Send at this fixed total rate per second (open loop: latency counts from each
    /// send's scheduled time), with at most --window unacked per sender.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Spread the senders over this many groups (1: all in one group, so every message
    /// also goes to the N-1 other senders; N: each sender alone in its own group).
    #[arg(long, default_value_t = 1)]
    pub(crate) groups: usize,
    /// Seconds to wait after the window for the last acks and deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) drain: f64,
}

/// Options of `chat fanout`.
#[derive(Debug, Args)]
pub(crate) struct ChatFanoutArgs {
    /// Member connections receiving (the sender comes on top).
    #[arg(long, short = 'm', default_value_t = 1000)]
    pub(crate) members: usize,
    /// Users behind those connections, spread round-robin (default: one per connection);
    /// fewer users register faster, and every connection of a user receives its messages.
    #[arg(long, short = 'u')]
    pub(crate) users: Option<usize>,
    /// Sends not yet acked or not yet delivered to every member.
    #[arg(long, short = 'w', default_value_t = 16)]
    pub(crate) window: usize,
    /// Body bytes per message.
    #[arg(long, short = 's', default_value_t = 100)]
    pub(crate) size: usize,
    /// Seconds to wait after the window for the last deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) drain: f64,
    /// Every member connection confirms every message it gets with its own `received`
    /// (the worst case: no batching on the client); the `receipt` frames that come
    /// back are counted.
    #[arg(long)]
    pub(crate) receipts: bool,
    /// With --receipts: also a `read` for every message, right after its `received`.
    #[arg(long, requires = "receipts")]
    pub(crate) read: bool,
    /// With --receipts: one `received` (and `read`) per batch of messages read from the
    /// socket, for the newest of them, as a client that knows the markers are cumulative
    /// would send; every message is still confirmed, with fewer reports.
    #[arg(long, requires = "receipts")]
    pub(crate) coalesce: bool,
    /// With --receipts: at most one `received` (and `read`) per connection every SECS,
    /// for the newest message then (a client that confirms on a timer); implies --coalesce.
    #[arg(long, value_name = "SECS", requires = "receipts")]
    pub(crate) receipt_every: Option<f64>,
    /// The sender reports `typing` `start` before a send, at most once every 2 s (a
    /// client's throttle); the `typing` frames the members get are counted.
    #[arg(long)]
    pub(crate) typing: bool,
}

/// Options of `chat presence`.
#[derive(Debug, Args)]
pub(crate) struct ChatPresenceArgs {
    /// Groups the flapping user U is in; every member connection is in all of them.
    #[arg(long, short = 'g', default_value_t = 100)]
    pub(crate) groups: usize,
    /// Member connections held open besides U's (each is in every group, so every group
    /// has this many connected members plus U).
    #[arg(long, short = 'm', default_value_t = 999)]
    pub(crate) members: usize,
    /// Users behind the member connections, round-robin (default: one per connection).
    /// Presence frames go to connections, so fewer users change nothing but the setup time.
    #[arg(long, short = 'u')]
    pub(crate) users: Option<usize>,
    /// In the second pass, this many member connections each watch one group (`user_list`;
    /// connection i watches group i mod --groups).
    #[arg(long, default_value_t = 100)]
    pub(crate) watchers: usize,
    /// The server's --presence-debounce in seconds: a reload reconnects well within it, a
    /// departure is read back after it.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) debounce: f64,
}

/// Options of `chat upload`.
#[derive(Debug, Args)]
pub(crate) struct ChatUploadArgs {
    /// Clients uploading at once (one user, one connection and one group each).
    #[arg(long, short = 'n', default_value_t = 4)]
    pub(crate) clients: usize,
    /// Bytes per file (every client uploads the same precomputed file).
    #[arg(long, short = 's', default_value_t = 16 << 20)]
    pub(crate) file_size: usize,
    /// Most files per client; a client also starts no file after --duration.
    #[arg(long, default_value_t = 1000)]
    pub(crate) files: usize,
    /// Data bytes per chunk (the server's `chunkSize` caps it).
    #[arg(long, default_value_t = 64 * 1024)]
    pub(crate) chunk: usize,
    /// Seconds allowed after --duration for the files in progress to be acked.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) drain: f64,
}

/// Options of `chat sync`.
#[derive(Debug, Args)]
pub(crate) struct ChatSyncArgs {
    /// Messages sent while the member is offline.
    #[arg(long, short = 's', default_value_t = 10_000)]
    pub(crate) messages: usize,
    /// Sends in flight while filling.
    #[arg(long, short = 'w', default_value_t = 128)]
    pub(crate) window: usize,
    /// Body bytes per message.
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,
    /// Reconnect and sync from the same cursor this many times (the figure is the median).
    #[arg(long, default_value_t = 5)]
    pub(crate) repeats: usize,
}

/// Options of `chat idle`.
#[derive(Debug, Args)]
pub(crate) struct ChatIdleArgs {
    /// Connections to open, authenticate, sync and hold.
    #[arg(long, short = 'k', default_value_t = 10_000)]
    pub(crate) conns: usize,
    /// Users behind them, round-robin (a user may have many connections).
    #[arg(long, short = 'u', default_value_t = 100)]
    pub(crate) users: usize,
    /// Members per group; every user is in three groups.
    #[arg(long, default_value_t = 100)]
    pub(crate) group_size: usize,
    /// Seconds to hold every connection open before reading the server's memory.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) hold: f64,
    /// Only register the users and create the groups, then write their names and tokens to
    /// FILE and stop. Hashing passwords leaves the server's memory inflated, so measure
    /// with `--accounts FILE` against a server restarted on the same data directory (tokens
    /// survive restarts).
    #[arg(long, value_name = "FILE", conflicts_with = "accounts")]
    pub(crate) prepare: Option<std::path::PathBuf>,
    /// Use the users a `--prepare` run wrote to FILE instead of registering new ones.
    #[arg(long, value_name = "FILE")]
    pub(crate) accounts: Option<std::path::PathBuf>,
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
    /// The server is the raw TCP fan-out (the yardstick), which relays the publisher's bytes
    /// unparsed: the publisher sends unmasked frames, so subscribers get what a server sends.
    #[arg(long)]
    pub(crate) raw_peer: bool,
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
    /// Offer permessage-deflate on every connection, as browsers do, and require the server
    /// to agree: the cost of an idle connection with compression negotiated.
    #[arg(long)]
    pub(crate) deflate: bool,
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
            Scenario::Chat(a) => a.validate()?,
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

/// Most users a chat run registers (each costs the server a password hash).
const MAX_CHAT_USERS: usize = 20_000;
/// Longest chat message body the generator sends.
const MAX_CHAT_BODY: usize = 64 * 1024;

/// Largest file `chat upload` sends.
const MAX_UPLOAD_FILE: usize = 1 << 30;
/// Most bytes of files `chat upload` holds (one masked copy per client).
const MAX_UPLOAD_MEMORY: usize = 2 << 30;

impl ChatArgs {
    /// Checks the mode's bounds; returns the connections it opens.
    fn validate(&self) -> anyhow::Result<usize> {
        ensure!(
            (1..=64).contains(&self.register_concurrency),
            "--register-concurrency must be 1..=64"
        );
        ensure!(self.concurrency >= 1, "--concurrency must be positive");
        if let Some(prefix) = &self.user_prefix {
            ensure!(
                !prefix.is_empty()
                    && prefix.len() <= 16
                    && prefix.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && prefix
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
                "--user-prefix must be 1..=16 characters of a-z A-Z 0-9 _ . - starting with a \
                 letter or digit"
            );
        }
        let window = |w: usize| {
            ensure!((1..=4096).contains(&w), "--window must be 1..=4096");
            Ok(())
        };
        let size = |s: usize| {
            ensure!(
                (1..=MAX_CHAT_BODY).contains(&s),
                "--size must be 1..={MAX_CHAT_BODY}"
            );
            Ok(())
        };
        let drain = |d: f64| {
            ensure!((0.0..=60.0).contains(&d), "--drain must be 0..=60 seconds");
            Ok(())
        };
        let (users, conns) = match &self.mode {
            ChatMode::Send(a) => {
                window(a.window)?;
                size(a.size)?;
                drain(a.drain)?;
                if let Some(rate) = a.rate {
                    ensure!(rate > 0.0 && rate <= 1e6, "--rate must be in (0, 1e6]");
                }
                ensure!(
                    (1..=a.senders.max(1)).contains(&a.groups),
                    "--groups must be 1..=--senders"
                );
                (a.senders, a.senders)
            }
            ChatMode::Fanout(a) => {
                window(a.window)?;
                size(a.size)?;
                drain(a.drain)?;
                let users = a.users.unwrap_or(a.members);
                ensure!(
                    (1..=a.members.max(1)).contains(&users),
                    "--users must be 1..=--members"
                );
                if let Some(every) = a.receipt_every {
                    ensure!(
                        every > 0.0 && every <= 60.0,
                        "--receipt-every must be in (0, 60] seconds"
                    );
                }
                (users + 1, a.members + 1)
            }
            ChatMode::Sync(a) => {
                ensure!(
                    (1..=1_000_000).contains(&a.messages),
                    "--messages must be 1..=1000000"
                );
                window(a.window)?;
                size(a.size)?;
                ensure!((1..=100).contains(&a.repeats), "--repeats must be 1..=100");
                (2, 2)
            }
            ChatMode::Idle(a) => {
                ensure!(
                    (1..=a.conns.max(1)).contains(&a.users),
                    "--users must be 1..=--conns"
                );
                ensure!(
                    (2..=1000).contains(&a.group_size),
                    "--group-size must be 2..=1000"
                );
                ensure!(
                    (0.0..=600.0).contains(&a.hold),
                    "--hold must be 0..=600 seconds"
                );
                (a.users, a.conns)
            }
            ChatMode::Upload(a) => {
                ensure!((1..=256).contains(&a.clients), "--clients must be 1..=256");
                ensure!(
                    (1..=MAX_UPLOAD_FILE).contains(&a.file_size),
                    "--file-size must be 1..={MAX_UPLOAD_FILE}"
                );
                // Every client keeps its own masked copy of the file.
                ensure!(
                    a.clients.saturating_mul(a.file_size) <= MAX_UPLOAD_MEMORY,
                    "--clients x --file-size must be at most {MAX_UPLOAD_MEMORY} bytes"
                );
                ensure!(
                    (1..=100_000).contains(&a.files),
                    "--files must be 1..=100000"
                );
                ensure!(
                    (1..=1 << 20).contains(&a.chunk),
                    "--chunk must be 1..=1048576"
                );
                drain(a.drain)?;
                (a.clients, a.clients)
            }
            ChatMode::Presence(a) => {
                ensure!((1..=1000).contains(&a.groups), "--groups must be 1..=1000");
                ensure!(a.members >= 1, "--members must be positive");
                let users = a.users.unwrap_or(a.members);
                ensure!(
                    (1..=a.members).contains(&users),
                    "--users must be 1..=--members"
                );
                ensure!(
                    a.watchers <= a.members,
                    "--watchers must be at most --members"
                );
                ensure!(
                    a.debounce > 0.0 && a.debounce <= 60.0,
                    "--debounce must be in (0, 60] seconds"
                );
                (users + 1, a.members + 1)
            }
        };
        ensure!(
            (1..=MAX_CHAT_USERS).contains(&users),
            "between 1 and {MAX_CHAT_USERS} users"
        );
        Ok(conns)
    }

    /// Seconds a mode may run past its setup and measured window.
    pub(crate) fn extra_secs(&self) -> u64 {
        match &self.mode {
            ChatMode::Send(a) => a.drain as u64,
            ChatMode::Fanout(a) => a.drain as u64,
            ChatMode::Sync(a) => (a.messages / 1000 + 10 * a.repeats) as u64,
            ChatMode::Idle(a) => a.hold as u64,
            ChatMode::Upload(a) => a.drain as u64,
            // Two passes of a reload, a departure and a return, each waited out.
            ChatMode::Presence(a) => 6 * (a.debounce as u64 + 3),
        }
    }

    /// How many users the run registers (bounds its setup time).
    pub(crate) fn users(&self) -> usize {
        match &self.mode {
            ChatMode::Send(a) => a.senders,
            ChatMode::Fanout(a) => a.users.unwrap_or(a.members) + 1,
            ChatMode::Sync(_) => 2,
            ChatMode::Idle(a) => a.users,
            ChatMode::Upload(a) => a.clients,
            ChatMode::Presence(a) => a.users.unwrap_or(a.members) + 1,
        }
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
        parse(&["idle", "-k", "100", "--deflate"]).unwrap();
        for mode in ["send", "fanout", "sync"] {
            parse(&["chat", mode]).unwrap();
        }
        parse(&["chat", "idle", "-k", "1000", "-u", "10"]).unwrap();
        parse(&["chat", "upload", "-n", "2", "-s", "1048576"]).unwrap();
        parse(&["chat", "presence", "-m", "999", "-u", "100"]).unwrap();
        parse(&["chat", "fanout", "--receipts", "--read", "--typing"]).unwrap();
        parse(&["chat", "fanout", "--receipts", "--coalesce"]).unwrap();
        assert!(parse(&["chat", "fanout", "--coalesce"]).is_err());
        parse(&["chat", "fanout", "--receipts", "--receipt-every", "0.1"]).unwrap();
        assert!(parse(&["chat", "fanout", "--receipts", "--receipt-every", "0"]).is_err());
    }

    #[test]
    fn chat_options_are_checked() {
        assert!(parse(&["chat", "send", "--groups", "0"]).is_err());
        assert!(parse(&["chat", "send", "-n", "10", "--groups", "11"]).is_err());
        assert!(parse(&["chat", "fanout", "-m", "10", "-u", "11"]).is_err());
        assert!(parse(&["chat", "--user-prefix", "-x", "sync"]).is_err());
        assert!(parse(&["chat", "--user-prefix", "a b", "sync"]).is_err());
        assert!(parse(&["chat", "sync", "--messages", "0"]).is_err());
        assert!(parse(&["chat", "upload", "--file-size", "0"]).is_err());
        assert!(parse(&["chat", "upload", "-n", "256", "-s", "1073741824"]).is_err());
        assert!(parse(&["chat", "upload", "--chunk", "0"]).is_err());
        parse(&["chat", "--user-prefix", "run1", "send", "--rate", "10000"]).unwrap();
        assert!(parse(&["chat", "idle", "--prepare", "a", "--accounts", "a"]).is_err());
        assert!(
            parse(&["chat", "fanout", "--read"]).is_err(),
            "--read needs --receipts"
        );
        assert!(parse(&["chat", "presence", "-m", "10", "--watchers", "11"]).is_err());
        assert!(parse(&["chat", "presence", "--groups", "0"]).is_err());
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
