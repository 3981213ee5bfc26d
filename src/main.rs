//! The `chatgroup` binary: parse flags and environment, set up logging, bind, and run the
//! server until SIGINT or SIGTERM. Everything a test needs lives in `chatgroup_server`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chatgroup_server::config::{
    format_duration, parse_duration, ConfigError, DatabaseUrl, DeflateMode, Durability, Secret,
    StoreKind,
};
use chatgroup_server::{Config, OriginPolicy};
use clap::Parser;
use tokio::net::TcpSocket;

/// Pending-connection queue of the listening socket; large so a burst of thousands of
/// clients connecting at once is not refused by the kernel.
const LISTEN_BACKLOG: u32 = 4096;

/// Real-time chat server speaking RFC 6455 WebSocket.
///
/// Every option can also be set through the environment variable shown with it.
/// Durations take a unit: 500ms, 30s, 2m, 1h (a bare number is refused).
/// Boolean variables accept 1/0, true/false, yes/no, on/off.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "CHATGROUP_LISTEN", default_value_t = Config::default().listen)]
    listen: SocketAddr,

    /// Directory for persistent data (created if missing).
    #[arg(long, env = "CHATGROUP_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,

    /// Maximum open WebSocket connections; further upgrades get HTTP 503.
    #[arg(long, env = "CHATGROUP_MAX_CONNECTIONS", default_value_t = Config::default().max_connections)]
    max_connections: usize,

    /// Maximum connections in their HTTP phase (before an upgrade, or idle between keep-alive
    /// requests); further connections get HTTP 503.
    #[arg(long, env = "CHATGROUP_MAX_HTTP_CONNECTIONS", default_value_t = Config::default().max_http_connections)]
    max_http_connections: usize,

    /// Largest accepted frame payload in bytes (close 1009 above it).
    #[arg(long, env = "CHATGROUP_MAX_FRAME_SIZE", default_value_t = Config::default().max_frame_len)]
    max_frame_size: u64,

    /// Largest accepted message in bytes (close 1009 above it).
    #[arg(long, env = "CHATGROUP_MAX_MESSAGE_SIZE", default_value_t = Config::default().max_message_len)]
    max_message_size: usize,

    /// Largest accepted HTTP request head in bytes (431 above it).
    #[arg(long, env = "CHATGROUP_MAX_HEAD_SIZE", default_value_t = Config::default().max_head_len)]
    max_head_size: usize,

    /// Most header fields in one request (431 above it).
    #[arg(long, env = "CHATGROUP_MAX_HEADERS", default_value_t = Config::default().max_headers)]
    max_headers: usize,

    /// Largest accepted request body in bytes (413 above it).
    #[arg(long, env = "CHATGROUP_MAX_BODY_SIZE", default_value_t = Config::default().max_body_len)]
    max_body_size: usize,

    /// Time a client has to send a complete request head; also the keep-alive idle timeout.
    /// Takes a unit: 500ms, 30s, 2m, 1h.
    #[arg(long, value_name = "DURATION", env = "CHATGROUP_HANDSHAKE_TIMEOUT", default_value_t = HumanDuration(Config::default().handshake_timeout))]
    handshake_timeout: HumanDuration,

    /// Interval between protocol pings sent to every connection (must be below the sweep interval).
    /// Takes a unit: 500ms, 30s, 2m, 1h.
    #[arg(long, value_name = "DURATION", env = "CHATGROUP_PING_INTERVAL", default_value_t = HumanDuration(Config::default().ping_interval))]
    ping_interval: HumanDuration,

    /// Liveness sweep interval: connections silent since the previous sweep are terminated.
    /// Takes a unit: 500ms, 30s, 2m, 1h.
    #[arg(long, value_name = "DURATION", env = "CHATGROUP_SWEEP_INTERVAL", default_value_t = HumanDuration(Config::default().sweep_interval))]
    sweep_interval: HumanDuration,

    /// How long to wait for the peer's Close reply before dropping the socket.
    /// Takes a unit: 500ms, 30s, 2m, 1h.
    #[arg(long, value_name = "DURATION", env = "CHATGROUP_CLOSE_TIMEOUT", default_value_t = HumanDuration(Config::default().close_timeout))]
    close_timeout: HumanDuration,

    /// How long a graceful shutdown waits for connections to close.
    /// Takes a unit: 500ms, 30s, 2m, 1h.
    #[arg(long, value_name = "DURATION", env = "CHATGROUP_SHUTDOWN_GRACE", default_value_t = HumanDuration(Config::default().shutdown_grace))]
    shutdown_grace: HumanDuration,

    /// Per-connection send queue length in frames.
    #[arg(long, env = "CHATGROUP_QUEUE_LEN", default_value_t = Config::default().outbox_depth)]
    queue_len: usize,

    /// Per-connection send queue size in bytes (at least the max message size).
    #[arg(long, env = "CHATGROUP_QUEUE_BYTES", default_value_t = Config::default().outbox_bytes)]
    queue_bytes: usize,

    /// How long a send queue may stay full before the client is closed with 1008.
    /// Takes a unit: 500ms, 30s, 2m, 1h.
    #[arg(long, value_name = "DURATION", env = "CHATGROUP_SLOW_CONSUMER_GRACE", default_value_t = HumanDuration(Config::default().slow_consumer_grace))]
    slow_consumer_grace: HumanDuration,

    /// Comma-separated browser origins allowed to connect (scheme://host[:port]), or '*'.
    /// Empty: an Origin must match the Host header. Requests without Origin are always allowed.
    /// Each entry is checked at startup.
    #[arg(long, env = "CHATGROUP_ALLOWED_ORIGINS", default_value = "", value_parser = OriginPolicy::parse)]
    allowed_origins: OriginPolicy,

    /// full: an acknowledged message survives power loss (fsync per commit); normal: it
    /// survives a crash of the server but not of the machine, and commits cost less.
    #[arg(long, env = "CHATGROUP_DURABILITY", default_value = "full", value_parser = parse_durability)]
    durability: Durability,

    /// Where the chat is kept: sqlite, a file in the data directory (one node); postgres, the
    /// database at --database-url, which several nodes may share (files' bytes stay in each
    /// node's data directory for now).
    #[arg(long, value_name = "KIND", env = "CHATGROUP_STORE", default_value_t = StoreKind::default())]
    store: StoreKind,

    /// The PostgreSQL database for --store postgres: postgres://USER:PASSWORD@HOST:PORT/DB
    /// (plain TCP: keep it on loopback or a private network). The password is never logged.
    #[arg(long, value_name = "URL", env = "CHATGROUP_DATABASE_URL", hide_env_values = true, value_parser = parse_database_url)]
    database_url: Option<DatabaseUrl>,

    /// none: one node. redis: several nodes sharing one PostgreSQL database deliver what each
    /// commits, and typing and presence, to each other's connections over Redis pub/sub
    /// (needs --redis-url).
    #[arg(long, env = "CHATGROUP_BUS", default_value = "none", value_parser = ["none", "redis"])]
    bus: String,

    /// The Redis server of --bus redis: redis://[[user]:password@]host[:port][/db]. The
    /// password is never logged.
    #[arg(long, env = "CHATGROUP_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,

    /// The Redis pub/sub channel the nodes of one deployment share.
    #[arg(long, env = "CHATGROUP_BUS_CHANNEL", default_value = "chatgroup")]
    bus_channel: String,

    /// Secret for signing access tokens (at least 32 bytes). Default: one generated on first
    /// start and kept in the database, so tokens survive restarts (and, with --store
    /// postgres, hold on every node sharing the database). Set it to rotate it (which logs
    /// everyone out).
    #[arg(long, env = "CHATGROUP_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<Secret>,

    /// Lifetime of an access token.
    #[arg(long, value_name = "DURATION", env = "CHATGROUP_TOKEN_TTL", default_value_t = HumanDuration(Config::default().token_ttl))]
    token_ttl: HumanDuration,

    /// Lifetime of a refresh token (each use replaces it).
    #[arg(long, value_name = "DURATION", env = "CHATGROUP_REFRESH_TTL", default_value_t = HumanDuration(Config::default().refresh_ttl))]
    refresh_ttl: HumanDuration,

    /// Time a chat socket has to authenticate (close 1008 after), and to renew an expired
    /// token (close 4001 after).
    #[arg(long, value_name = "DURATION", env = "CHATGROUP_AUTH_TIMEOUT", default_value_t = HumanDuration(Config::default().auth_timeout))]
    auth_timeout: HumanDuration,

    /// Longest message body, in characters.
    #[arg(long, env = "CHATGROUP_MAX_BODY_CHARS", default_value_t = Config::default().max_body_chars)]
    max_body_chars: usize,

    /// Messages per second one connection may send (sustained).
    #[arg(long, env = "CHATGROUP_MESSAGE_RATE", default_value_t = Config::default().message_rate)]
    message_rate: u32,

    /// Messages one connection may send at once above the rate.
    #[arg(long, env = "CHATGROUP_MESSAGE_BURST", default_value_t = Config::default().message_burst)]
    message_burst: u32,

    /// Messages per second one user may send across all their connections and the HTTP
    /// API (burst: twice this).
    #[arg(long, env = "CHATGROUP_USER_MESSAGE_RATE", default_value_t = Config::default().user_message_rate)]
    user_message_rate: u32,

    /// `received`/`read` reports per second one connection may send (burst: four times).
    #[arg(long, env = "CHATGROUP_RECEIPT_RATE", default_value_t = Config::default().receipt_rate)]
    receipt_rate: u32,

    /// `typing` reports per second one connection may send (burst: twice).
    #[arg(long, env = "CHATGROUP_TYPING_RATE", default_value_t = Config::default().typing_rate)]
    typing_rate: u32,

    /// Other chat requests (sync, history, lists, conversation changes) per second one
    /// connection may send (burst: twice).
    #[arg(long, env = "CHATGROUP_REQUEST_RATE", default_value_t = Config::default().request_rate)]
    request_rate: u32,

    /// Rate-limit refusals a connection may ignore in a burst (one more forgiven per
    /// second) before it is closed with 1008.
    #[arg(long, env = "CHATGROUP_RATE_LIMIT_STRIKES", default_value_t = Config::default().rate_limit_strikes)]
    rate_limit_strikes: u32,

    /// Chat connections one user may have open at once; one more is closed with 1008.
    #[arg(long, env = "CHATGROUP_MAX_CONNECTIONS_PER_USER", default_value_t = Config::default().max_connections_per_user)]
    max_connections_per_user: usize,

    /// How long a user stays online after their last connection closes (a reload does
    /// not flap).
    #[arg(long, value_name = "DURATION", env = "CHATGROUP_PRESENCE_DEBOUNCE", default_value_t = HumanDuration(Config::default().presence_debounce))]
    presence_debounce: HumanDuration,

    /// Presence changes are pushed to conversations with at most this many connected
    /// members; larger ones only to clients that asked for their user_list.
    #[arg(long, env = "CHATGROUP_PRESENCE_FANOUT", default_value_t = Config::default().presence_fanout)]
    presence_fanout: usize,

    /// Messages a sync replays for a conversation the client has no cursor for.
    #[arg(long, env = "CHATGROUP_SYNC_LATEST", default_value_t = Config::default().sync_latest)]
    sync_latest: usize,

    /// Password hashes computed at once (each takes about 19 MiB of memory).
    #[arg(long, env = "CHATGROUP_PASSWORD_HASHERS", default_value_t = Config::default().password_hashers)]
    password_hashers: usize,

    /// Largest file an upload may announce, in bytes (file_too_large above it).
    #[arg(long, env = "CHATGROUP_MAX_FILE_SIZE", default_value_t = Config::default().max_file_size)]
    max_file_size: u64,

    /// Uploads one user may have unfinished at once (quota_exceeded above it).
    #[arg(long, env = "CHATGROUP_MAX_UPLOADS_IN_FLIGHT", default_value_t = Config::default().max_uploads_in_flight)]
    max_uploads_in_flight: u32,

    /// Bytes one user may upload in any 24 hours (quota_exceeded above it).
    #[arg(long, env = "CHATGROUP_UPLOAD_BYTES_PER_DAY", default_value_t = Config::default().upload_bytes_per_day)]
    upload_bytes_per_day: u64,

    /// An upload that receives no chunk for this long is deleted.
    #[arg(long, value_name = "DURATION", env = "CHATGROUP_UPLOAD_IDLE_TIMEOUT", default_value_t = HumanDuration(Config::default().upload_idle_timeout))]
    upload_idle_timeout: HumanDuration,

    /// File chunks per second one connection may send (rate_limited above it).
    #[arg(long, env = "CHATGROUP_FILE_CHUNK_RATE", default_value_t = Config::default().file_chunk_rate)]
    file_chunk_rate: u32,

    /// File chunks one connection may send at once above the rate.
    #[arg(long, env = "CHATGROUP_FILE_CHUNK_BURST", default_value_t = Config::default().file_chunk_burst)]
    file_chunk_burst: u32,

    /// Also serve the test sockets: /echo, which echoes every message, and
    /// /broadcast?conversation_id=N, which relays text to the conversation's other members
    /// (for conformance suites, tests and benchmarks).
    // SetTrue keeps `--echo` a bare flag; the boolish parser is what reads the environment
    // variable, so CHATGROUP_ECHO=1 / yes / on work as well as true (clap's default is
    // true/false only).
    #[arg(long, env = "CHATGROUP_ECHO", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    echo: bool,

    /// Serve the browser client from this directory (laid out like the repository's web/)
    /// instead of the copy built into the binary, so page edits show on reload.
    #[arg(long, value_name = "DIR", env = "CHATGROUP_WEB_DIR")]
    web_dir: Option<PathBuf>,

    /// permessage-deflate (RFC 7692): off declines it; shared compresses without context
    /// takeover, with each thread's deflate state shared by every connection (an idle
    /// connection costs nothing extra, a broadcast is compressed once); dedicated keeps
    /// context and a compressor and decompressor per connection (about 354 KiB each).
    #[arg(long, value_name = "MODE", env = "CHATGROUP_DEFLATE", default_value_t = Config::default().deflate)]
    deflate: DeflateMode,

    /// Messages smaller than this many bytes are sent uncompressed even where deflate was
    /// agreed (short JSON barely shrinks).
    #[arg(long, value_name = "BYTES", env = "CHATGROUP_DEFLATE_THRESHOLD", default_value_t = Config::default().deflate_threshold)]
    deflate_threshold: usize,

    /// Log filter (tracing EnvFilter syntax, e.g. "info" or "chatgroup_server=debug").
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

/// Any text: the driver parses the URL when the store opens.
fn parse_database_url(text: &str) -> Result<DatabaseUrl, String> {
    Ok(DatabaseUrl::new(text))
}

/// `full` or `normal`.
fn parse_durability(text: &str) -> Result<Durability, String> {
    match text.to_ascii_lowercase().as_str() {
        "full" => Ok(Durability::Full),
        "normal" => Ok(Durability::Normal),
        _ => Err(format!("{text:?} is not full or normal")),
    }
}

/// A duration as written on the command line (`500ms`, `30s`, `2m`), shown the same way in
/// `--help` defaults.
#[derive(Debug, Clone, Copy)]
struct HumanDuration(Duration);

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = chatgroup_server::config::DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Self)
    }
}

impl Args {
    fn into_config(self) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        cfg.listen = self.listen;
        cfg.data_dir = self.data_dir;
        cfg.max_connections = self.max_connections;
        cfg.max_http_connections = self.max_http_connections;
        cfg.max_frame_len = self.max_frame_size;
        cfg.max_message_len = self.max_message_size;
        cfg.max_head_len = self.max_head_size;
        cfg.max_headers = self.max_headers;
        cfg.max_body_len = self.max_body_size;
        cfg.handshake_timeout = self.handshake_timeout.0;
        cfg.ping_interval = self.ping_interval.0;
        cfg.sweep_interval = self.sweep_interval.0;
        cfg.close_timeout = self.close_timeout.0;
        cfg.shutdown_grace = self.shutdown_grace.0;
        cfg.outbox_depth = self.queue_len;
        cfg.outbox_bytes = self.queue_bytes;
        cfg.slow_consumer_grace = self.slow_consumer_grace.0;
        cfg.allowed_origins = self.allowed_origins;
        cfg.durability = self.durability;
        cfg.store = self.store.backend(self.database_url)?;
        if self.bus == "redis" {
            cfg.bus = Some(chatgroup_server::bus::BusConfig {
                url: chatgroup_server::bus::RedisUrl::new(self.redis_url.unwrap_or_default()),
                channel: self.bus_channel,
            });
        }
        cfg.jwt_secret = self.jwt_secret;
        cfg.token_ttl = self.token_ttl.0;
        cfg.refresh_ttl = self.refresh_ttl.0;
        cfg.auth_timeout = self.auth_timeout.0;
        cfg.max_body_chars = self.max_body_chars;
        cfg.message_rate = self.message_rate;
        cfg.message_burst = self.message_burst;
        cfg.user_message_rate = self.user_message_rate;
        cfg.receipt_rate = self.receipt_rate;
        cfg.typing_rate = self.typing_rate;
        cfg.request_rate = self.request_rate;
        cfg.rate_limit_strikes = self.rate_limit_strikes;
        cfg.max_connections_per_user = self.max_connections_per_user;
        cfg.presence_debounce = self.presence_debounce.0;
        cfg.presence_fanout = self.presence_fanout;
        cfg.sync_latest = self.sync_latest;
        cfg.password_hashers = self.password_hashers;
        cfg.max_file_size = self.max_file_size;
        cfg.max_uploads_in_flight = self.max_uploads_in_flight;
        cfg.upload_bytes_per_day = self.upload_bytes_per_day;
        cfg.upload_idle_timeout = self.upload_idle_timeout.0;
        cfg.file_chunk_rate = self.file_chunk_rate;
        cfg.file_chunk_burst = self.file_chunk_burst;
        cfg.echo = self.echo;
        cfg.web_dir = self.web_dir;
        cfg.deflate = self.deflate;
        cfg.deflate_threshold = self.deflate_threshold;
        Ok(cfg)
    }
}

/// Parses the command line (clap prints usage errors itself, exit 2), runs the server, and
/// turns any startup or runtime error into one line on stderr and exit 1.
fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` is the error chain on one line ("binding …: Address already in use"). The
            // `Debug` form that `main() -> Result` prints would add a backtrace whenever
            // RUST_BACKTRACE is set, which says nothing to an operator about a busy port.
            eprintln!("chatgroup: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(args: Args) -> anyhow::Result<()> {
    // EnvFilter's parse error repeats its cause as its `source()`, so `{:#}` would print it
    // twice: keep only its message.
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .map_err(|err| anyhow::anyhow!("invalid --log filter {:?}: {err}", args.log))?;
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(filter)
        .init();
    if args.bus == "redis" && args.redis_url.as_deref().is_none_or(str::is_empty) {
        anyhow::bail!("--bus redis needs --redis-url (or CHATGROUP_REDIS_URL)");
    }
    let cfg = args
        .into_config()
        .and_then(Config::validate)
        .context("invalid configuration")?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;

    let socket = if cfg.listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(cfg.listen)
        .with_context(|| format!("binding {}", cfg.listen))?;
    let listener = socket
        .listen(LISTEN_BACKLOG)
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "listening on http://{addr}");

    chatgroup_server::run(cfg, listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM; only Ctrl-C will stop the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
