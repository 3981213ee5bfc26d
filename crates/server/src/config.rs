//! Server configuration: every limit, queue depth and timeout, with safe defaults.
//!
//! CLI and environment parsing live in the binary (`src/main.rs`); this module only holds the
//! values, their defaults, the cross-field checks in [`Config::validate`], and the small text
//! parsers ([`parse_duration`], [`OriginPolicy::parse`]) the binary uses so they can be unit-tested.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use chatgroup_store::{Backend as StoreBackend, DatabaseUrl, Durability};

/// Every tunable of the server. Build it with [`Config::default`], change fields, then call
/// [`Config::validate`] once before handing it to [`crate::run`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Address the binary binds. [`crate::run`] takes an already bound listener, so this is
    /// informational there.
    pub listen: SocketAddr,
    /// Directory for persistent data (created by the binary at startup).
    pub data_dir: PathBuf,
    /// Maximum number of open WebSocket connections; further upgrades get HTTP 503.
    pub max_connections: usize,
    /// Maximum number of connections in their HTTP phase (reading a request, or idle between
    /// keep-alive requests, before any upgrade). Past it a new connection is answered 503 and
    /// closed at once, so slow or idle HTTP clients cannot hold unbounded sockets and buffers.
    pub max_http_connections: usize,
    /// Largest accepted frame payload in bytes (larger frames close with 1009).
    pub max_frame_len: u64,
    /// Largest accepted reassembled message in bytes (larger messages close with 1009).
    pub max_message_len: usize,
    /// Largest accepted HTTP request head in bytes (larger heads get 431).
    pub max_head_len: usize,
    /// Maximum number of headers in one request head (more get 431).
    pub max_headers: usize,
    /// Largest accepted `Content-Length` request body in bytes (larger bodies get 413).
    pub max_body_len: usize,
    /// Time a client has to deliver a complete request head (slowloris guard); it is also
    /// the idle timeout of a keep-alive HTTP connection between requests.
    pub handshake_timeout: Duration,
    /// Interval between the protocol pings the server sends to every connection.
    pub ping_interval: Duration,
    /// Interval of the liveness sweep: a connection that showed no sign of life since the
    /// previous sweep is terminated.
    pub sweep_interval: Duration,
    /// How long to wait for the peer's Close reply (or for our Close to be written) before
    /// dropping the socket.
    pub close_timeout: Duration,
    /// How long a graceful shutdown waits for connections to finish.
    pub shutdown_grace: Duration,
    /// Frames queued for one connection beyond which it counts as slow: if its queue stays
    /// longer than this for `slow_consumer_grace`, it is evicted with 1008.
    pub outbox_depth: usize,
    /// Hard bound on bytes queued for one connection (plus a small per-frame overhead); a
    /// client whose queue would exceed it is evicted at once, as it would miss a message.
    pub outbox_bytes: usize,
    /// How long a connection's queue may stay longer than `outbox_depth` before eviction.
    pub slow_consumer_grace: Duration,
    /// Depth of the hub's command queue; read pumps wait when it is full (backpressure).
    pub hub_queue_depth: usize,
    /// Which browser origins may open a WebSocket.
    pub allowed_origins: OriginPolicy,
    /// How messages are made durable (see [`Durability`]).
    pub durability: Durability,
    /// Which database keeps the chat: SQLite in `data_dir` (one node), or PostgreSQL, which
    /// several nodes may share. Files' bytes stay in `data_dir` either way.
    pub store: StoreBackend,
    /// The bus to other nodes (`--bus redis`); `None` for a single node.
    pub bus: Option<crate::bus::BusConfig>,
    /// The access-token signing secret; `None` uses the one generated and stored in the
    /// database on first start, so tokens survive restarts.
    pub jwt_secret: Option<Secret>,
    /// How long an access token lives.
    pub token_ttl: Duration,
    /// How long a refresh token lives (each use replaces it with a fresh one).
    pub refresh_ttl: Duration,
    /// Time a new chat socket has to authenticate (close 1008 after), and a connection whose
    /// token expired has to send a fresh one (close 4001 after).
    pub auth_timeout: Duration,
    /// Longest message body, in characters.
    pub max_body_chars: usize,
    /// Messages per second one connection may send (token bucket rate).
    pub message_rate: u32,
    /// Messages one connection may send in a burst above the rate.
    pub message_burst: u32,
    /// Messages per second one user may send across all their connections and the HTTP
    /// API; the burst is twice this.
    pub user_message_rate: u32,
    /// `received`/`read` reports per second one connection may send (burst: four times).
    pub receipt_rate: u32,
    /// `typing` reports per second one connection may send (burst: twice).
    pub typing_rate: u32,
    /// Other requests (sync, history, lists, conversation changes) per second one
    /// connection may send (burst: twice).
    pub request_rate: u32,
    /// Rate-limit refusals a connection may ignore in a burst (one more is forgiven per
    /// second) before it is closed with 1008.
    pub rate_limit_strikes: u32,
    /// Chat connections one user may have open at once (tabs, devices); one more is closed
    /// with 1008.
    pub max_connections_per_user: usize,
    /// How long a user still counts as online after their last connection closed, so a
    /// reload does not flap.
    pub presence_debounce: Duration,
    /// Presence changes are pushed to conversations with at most this many connected
    /// members; larger ones get them on connections that asked for their `user_list`.
    pub presence_fanout: usize,
    /// Messages a `sync` replays for a conversation the client has no cursor for.
    pub sync_latest: usize,
    /// Password hashes computed at once (each takes about 19 MiB for a few tens of ms).
    pub password_hashers: usize,
    /// Largest file an upload may announce, in bytes.
    pub max_file_size: u64,
    /// Uploads one user may have unfinished at once.
    pub max_uploads_in_flight: u32,
    /// Bytes one user may upload in any 24 hours (counted when an upload starts).
    pub upload_bytes_per_day: u64,
    /// An upload that receives no chunk for this long is deleted by a periodic sweep.
    pub upload_idle_timeout: Duration,
    /// File chunks per second one connection may send (token bucket rate).
    pub file_chunk_rate: u32,
    /// File chunks one connection may send in a burst above the rate.
    pub file_chunk_burst: u32,
    /// Serve the test sockets: `/echo`, which echoes every message back, and
    /// `/broadcast?conversation_id=N`, which relays text to the conversation's other members
    /// (for conformance suites, tests and benchmarks).
    pub echo: bool,
    /// Serve the browser client from this directory (laid out like the repository's `web/`)
    /// instead of the copy embedded in the binary: edits show on the next reload.
    pub web_dir: Option<PathBuf>,
    /// permessage-deflate (RFC 7692): whether the server agrees to compress, and with whose
    /// deflate state; see [`DeflateMode`].
    pub deflate: DeflateMode,
    /// Data messages with a payload smaller than this many bytes are sent uncompressed even
    /// to connections that agreed to compression: a short JSON event barely shrinks, and
    /// compressing it costs more than the bytes it saves.
    pub deflate_threshold: usize,
}

/// How the server handles permessage-deflate (RFC 7692) offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeflateMode {
    /// Decline every offer: no connection is compressed.
    Off,
    /// Accept offers without context takeover in either direction (the response says
    /// `server_no_context_takeover; client_no_context_takeover`): no deflate state belongs
    /// to a connection, each thread's compressor and decompressor serve all of them, and a
    /// broadcast is compressed once for every recipient. An idle connection costs nothing
    /// more than without compression.
    #[default]
    Shared,
    /// Accept offers with context takeover both ways where the client allows it: each
    /// connection keeps its own compressor (about 312 KiB, from its first compressed frame
    /// on) and decompressor (about 42 KiB, from its first compressed message on), which
    /// compresses small, repetitive messages better but compresses every frame once per
    /// recipient.
    Dedicated,
}

impl DeflateMode {
    /// The codec's negotiation policy for this mode; `None` when offers are declined.
    #[must_use]
    pub fn policy(self) -> Option<rfc6455::deflate::DeflatePolicy> {
        let shared = rfc6455::deflate::DeflatePolicy::default();
        match self {
            Self::Off => None,
            Self::Shared => Some(shared),
            Self::Dedicated => Some(rfc6455::deflate::DeflatePolicy {
                server_context_takeover: true,
                client_context_takeover: true,
                ..shared
            }),
        }
    }
}

impl std::fmt::Display for DeflateMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Shared => "shared",
            Self::Dedicated => "dedicated",
        })
    }
}

impl std::str::FromStr for DeflateMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "shared" => Ok(Self::Shared),
            "dedicated" => Ok(Self::Dedicated),
            _ => Err(format!("{s:?} is not off, shared or dedicated")),
        }
    }
}

/// The database `--store` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// `sqlite`: a file in the data directory; one node.
    #[default]
    Sqlite,
    /// `postgres`: the database at `--database-url`, which several nodes may share.
    Postgres,
}

impl StoreKind {
    /// The store backend for this kind and the `--database-url` given, if any.
    ///
    /// # Errors
    ///
    /// [`ConfigError::MissingDatabaseUrl`] for PostgreSQL without a URL, and
    /// [`ConfigError::DatabaseUrlWithoutPostgres`] for SQLite with one: a node meant to
    /// share a database must not quietly start on a file of its own.
    pub fn backend(self, url: Option<DatabaseUrl>) -> Result<StoreBackend, ConfigError> {
        match (self, url) {
            (Self::Sqlite, None) => Ok(StoreBackend::Sqlite),
            (Self::Sqlite, Some(_)) => Err(ConfigError::DatabaseUrlWithoutPostgres),
            (Self::Postgres, Some(url)) => Ok(StoreBackend::Postgres(url)),
            (Self::Postgres, None) => Err(ConfigError::MissingDatabaseUrl),
        }
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

impl std::str::FromStr for StoreKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(format!("{s:?} is not sqlite or postgres")),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            max_connections: 25_000,
            max_http_connections: 1024,
            max_frame_len: 1 << 20,
            max_message_len: 4 << 20,
            max_head_len: 8 * 1024,
            max_headers: 64,
            max_body_len: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            sweep_interval: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            outbox_depth: 1024,
            outbox_bytes: 8 << 20,
            slow_consumer_grace: Duration::from_secs(5),
            hub_queue_depth: 4096,
            allowed_origins: OriginPolicy::SameHost,
            durability: Durability::Full,
            store: StoreBackend::Sqlite,
            bus: None,
            jwt_secret: None,
            token_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            auth_timeout: Duration::from_secs(10),
            max_body_chars: 4000,
            message_rate: 20,
            message_burst: 40,
            user_message_rate: 40,
            receipt_rate: 100,
            typing_rate: 5,
            request_rate: 50,
            rate_limit_strikes: 20,
            max_connections_per_user: 32,
            presence_debounce: Duration::from_secs(3),
            presence_fanout: 100,
            sync_latest: 50,
            password_hashers: 2,
            max_file_size: 1 << 30,
            max_uploads_in_flight: 4,
            upload_bytes_per_day: 10 << 30,
            upload_idle_timeout: Duration::from_secs(600),
            // 16,384 chunks of 64 KiB: 1 GiB/s per connection, well above what one client
            // needs, low enough that a flood of tiny chunks is cut off.
            file_chunk_rate: 16_384,
            file_chunk_burst: 1024,
            echo: false,
            web_dir: None,
            deflate: DeflateMode::Shared,
            deflate_threshold: 256,
        }
    }
}

/// A secret value: usable, never printed (its `Debug` shows `"<redacted>"`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A configuration value that cannot work, found by [`Config::validate`] (or, for the store,
/// by [`StoreKind::backend`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count or size that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// Pings must come more often than sweeps, or healthy idle clients would be swept.
    #[error("ping interval ({ping:?}) must be shorter than the sweep interval ({sweep:?})")]
    PingNotBeforeSweep {
        /// The configured ping interval.
        ping: Duration,
        /// The configured sweep interval.
        sweep: Duration,
    },
    /// A single largest message must fit in the outbox, or it could never be delivered.
    #[error(
        "outbox bytes ({outbox}) must be at least the max message size ({message}) plus framing"
    )]
    OutboxTooSmall {
        /// The configured outbox byte bound.
        outbox: usize,
        /// The configured max message size.
        message: usize,
    },
    /// `--store postgres` needs to know where the database is.
    #[error("--store postgres needs --database-url (or CHATGROUP_DATABASE_URL)")]
    MissingDatabaseUrl,
    /// A database URL with the SQLite store: likely a node meant to share a database that
    /// would quietly keep its own.
    #[error(
        "--database-url is set but the store is sqlite: add --store postgres, or unset \
         CHATGROUP_DATABASE_URL"
    )]
    DatabaseUrlWithoutPostgres,
    /// An HMAC secret shorter than 32 bytes can be brute-forced.
    #[error("the JWT secret must have at least 32 bytes")]
    WeakSecret,
    /// Frames larger than the largest message make no sense.
    #[error("max frame size ({frame}) exceeds max message size ({message})")]
    FrameOverMessage {
        /// The configured max frame size.
        frame: u64,
        /// The configured max message size.
        message: usize,
    },
}

/// Bytes a server frame header can add to a payload (2 + 8 for a 64-bit length).
const MAX_HEADER_LEN: usize = 10;

impl Config {
    /// Checks cross-field rules and returns the config unchanged when they hold.
    ///
    /// # Errors
    /// The first rule that is broken.
    pub fn validate(self) -> Result<Self, ConfigError> {
        let positive: &[(&'static str, u128)] = &[
            ("max connections", self.max_connections as u128),
            ("max http connections", self.max_http_connections as u128),
            ("max frame size", u128::from(self.max_frame_len)),
            ("max message size", self.max_message_len as u128),
            ("max head size", self.max_head_len as u128),
            ("max headers", self.max_headers as u128),
            ("handshake timeout", self.handshake_timeout.as_millis()),
            ("ping interval", self.ping_interval.as_millis()),
            ("sweep interval", self.sweep_interval.as_millis()),
            ("close timeout", self.close_timeout.as_millis()),
            ("shutdown grace", self.shutdown_grace.as_millis()),
            ("outbox depth", self.outbox_depth as u128),
            ("outbox bytes", self.outbox_bytes as u128),
            ("slow consumer grace", self.slow_consumer_grace.as_millis()),
            ("hub queue depth", self.hub_queue_depth as u128),
            ("token ttl", self.token_ttl.as_millis()),
            ("refresh ttl", self.refresh_ttl.as_millis()),
            ("auth timeout", self.auth_timeout.as_millis()),
            ("max body chars", self.max_body_chars as u128),
            ("message rate", u128::from(self.message_rate)),
            ("message burst", u128::from(self.message_burst)),
            ("user message rate", u128::from(self.user_message_rate)),
            ("receipt rate", u128::from(self.receipt_rate)),
            ("typing rate", u128::from(self.typing_rate)),
            ("request rate", u128::from(self.request_rate)),
            ("rate limit strikes", u128::from(self.rate_limit_strikes)),
            (
                "max connections per user",
                self.max_connections_per_user as u128,
            ),
            ("password hashers", self.password_hashers as u128),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero(name));
        }
        let files: [(&'static str, u128); 5] = [
            (
                "max uploads in flight",
                u128::from(self.max_uploads_in_flight),
            ),
            (
                "upload bytes per day",
                u128::from(self.upload_bytes_per_day),
            ),
            ("upload idle timeout", self.upload_idle_timeout.as_millis()),
            ("file chunk rate", u128::from(self.file_chunk_rate)),
            ("file chunk burst", u128::from(self.file_chunk_burst)),
        ];
        if let Some((name, _)) = files.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero(name));
        }
        if self.jwt_secret.as_ref().is_some_and(|s| s.0.len() < 32) {
            return Err(ConfigError::WeakSecret);
        }
        if self.ping_interval >= self.sweep_interval {
            return Err(ConfigError::PingNotBeforeSweep {
                ping: self.ping_interval,
                sweep: self.sweep_interval,
            });
        }
        if self.max_frame_len > self.max_message_len as u64 {
            return Err(ConfigError::FrameOverMessage {
                frame: self.max_frame_len,
                message: self.max_message_len,
            });
        }
        let largest_frame = self
            .max_message_len
            .saturating_add(MAX_HEADER_LEN + crate::outbox::FRAME_OVERHEAD);
        if self.outbox_bytes < largest_frame {
            return Err(ConfigError::OutboxTooSmall {
                outbox: self.outbox_bytes,
                message: self.max_message_len,
            });
        }
        Ok(self)
    }
}

/// Which values of the `Origin` request header may open a WebSocket.
///
/// Requests without an `Origin` header (non-browser clients) are always allowed: the header
/// exists to stop other web pages from using a visitor's browser against this server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginPolicy {
    /// The Origin's host and port must equal the request's `Host` header.
    SameHost,
    /// Any Origin is allowed (`--allowed-origins '*'`).
    Any,
    /// Only these origins (`scheme://host[:port]`, compared case-insensitively).
    List(Vec<String>),
}

impl OriginPolicy {
    /// Parses the `--allowed-origins` value: empty means [`OriginPolicy::SameHost`], `*` means
    /// [`OriginPolicy::Any`], otherwise a comma-separated list of origins, each
    /// `http://host[:port]` or `https://host[:port]` (a trailing `/` is ignored).
    ///
    /// Entries are checked here, at startup, because a malformed one (`chat.example` without a
    /// scheme, say) would otherwise be accepted and then silently match no browser at all.
    ///
    /// # Errors
    /// [`OriginError`] naming the first entry that is not a valid origin, or `*` mixed with
    /// other entries (which would make the list meaningless).
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let items: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(Self::SameHost);
        }
        if items.contains(&"*") {
            return if items.len() == 1 {
                Ok(Self::Any)
            } else {
                Err(OriginError::WildcardInList)
            };
        }
        items
            .into_iter()
            .map(|item| {
                crate::origin::normalize_allowed_origin(item)
                    .ok_or_else(|| OriginError::Invalid(item.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self::List)
    }
}

/// A bad `--allowed-origins` value, found by [`OriginPolicy::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// An entry is not `http(s)://host[:port]`.
    #[error(
        "invalid origin {0:?}: write scheme://host[:port] with scheme http or https \
         (e.g. https://chat.example or http://localhost:3000), or '*' for any origin"
    )]
    Invalid(String),
    /// `*` was given together with explicit origins.
    #[error("'*' allows every origin and cannot be combined with other entries")]
    WildcardInList,
}

/// An unparsable duration given on the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// A bare number: refused rather than guessed, because `--ping-interval 500` reads as
    /// milliseconds to some operators and as seconds to others.
    #[error("invalid duration {0:?}: add a unit, like {0}s or {0}ms (units: ms, s, m, h)")]
    MissingUnit(String),
    /// Anything else that is not a whole number followed by a known unit.
    #[error("invalid duration {0:?}: use a whole number with a unit, like 500ms, 30s, 2m or 1h")]
    Invalid(String),
}

/// Parses durations such as `250ms`, `30s`, `2m`, `1h`. The unit is required.
///
/// # Errors
/// [`DurationError::MissingUnit`] for a bare number, [`DurationError::Invalid`] when the text
/// is not a whole number followed by `ms`, `s`, `m` or `h`, or overflows.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let invalid = || DurationError::Invalid(t.to_owned());
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let per_unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(DurationError::MissingUnit(t.to_owned())),
        _ => return Err(invalid()),
    };
    n.checked_mul(per_unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(invalid)
}

/// Formats a duration the way [`parse_duration`] reads it (for `--help` defaults).
#[must_use]
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_kind_and_the_database_url_must_agree() {
        let url = DatabaseUrl::new("postgres://chat:secret@db/chat");
        assert_eq!("SQLite".parse::<StoreKind>(), Ok(StoreKind::Sqlite));
        assert_eq!("postgres".parse::<StoreKind>(), Ok(StoreKind::Postgres));
        assert!("mysql".parse::<StoreKind>().is_err());
        assert_eq!(StoreKind::default().to_string(), "sqlite");
        assert_eq!(StoreKind::Sqlite.backend(None), Ok(StoreBackend::Sqlite));
        assert_eq!(
            StoreKind::Postgres.backend(Some(url.clone())),
            Ok(StoreBackend::Postgres(url.clone()))
        );
        assert_eq!(
            StoreKind::Postgres.backend(None),
            Err(ConfigError::MissingDatabaseUrl)
        );
        assert_eq!(
            StoreKind::Sqlite.backend(Some(url)),
            Err(ConfigError::DatabaseUrlWithoutPostgres)
        );
        assert_eq!(Config::default().store, StoreBackend::Sqlite);
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = Config::default().validate().expect("defaults validate");
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.sweep_interval, Duration::from_secs(30));
    }

    #[test]
    fn deflate_modes_parse_and_pick_their_policy() {
        assert_eq!(Config::default().deflate, DeflateMode::Shared);
        for mode in [
            DeflateMode::Off,
            DeflateMode::Shared,
            DeflateMode::Dedicated,
        ] {
            assert_eq!(mode.to_string().parse::<DeflateMode>(), Ok(mode));
        }
        assert_eq!("SHARED".parse::<DeflateMode>(), Ok(DeflateMode::Shared));
        assert!("on".parse::<DeflateMode>().is_err());
        assert_eq!(DeflateMode::Off.policy(), None);
        let shared = DeflateMode::Shared.policy().unwrap();
        assert!(!shared.server_context_takeover && !shared.client_context_takeover);
        let dedicated = DeflateMode::Dedicated.policy().unwrap();
        assert!(dedicated.server_context_takeover && dedicated.client_context_takeover);
    }

    #[test]
    fn validate_rejects_broken_values() {
        let cfg = Config {
            outbox_depth: 0,
            ..Config::default()
        };
        assert_eq!(
            cfg.validate().unwrap_err(),
            ConfigError::Zero("outbox depth")
        );

        let cfg = Config {
            ping_interval: Duration::from_secs(30),
            ..Config::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::PingNotBeforeSweep { .. })
        ));

        let cfg = Config {
            outbox_bytes: 1024,
            ..Config::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::OutboxTooSmall { .. })
        ));

        let cfg = Config {
            max_frame_len: 10 << 20,
            ..Config::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::FrameOverMessage { .. })
        ));
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(
            parse_duration("30"),
            Err(DurationError::MissingUnit("30".into()))
        );
        assert!(parse_duration("30")
            .unwrap_err()
            .to_string()
            .contains("add a unit, like 30s"));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "1.5s", "-1s", "10x", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(30),
            Duration::from_secs(120),
            Duration::from_secs(7200),
            Duration::ZERO,
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn origin_policy_parsing() {
        assert_eq!(OriginPolicy::parse(""), Ok(OriginPolicy::SameHost));
        assert_eq!(OriginPolicy::parse(" , "), Ok(OriginPolicy::SameHost));
        assert_eq!(OriginPolicy::parse("*"), Ok(OriginPolicy::Any));
        assert_eq!(
            OriginPolicy::parse("https://Chat.Example/, http://localhost:3000"),
            Ok(OriginPolicy::List(vec![
                "https://chat.example".into(),
                "http://localhost:3000".into()
            ]))
        );
        // The examples from the issue: a missing scheme used to start and then match nothing.
        for bad in [
            "allowed.example",
            "chat.example:8080",
            "ftp://chat.example",
            "https://",
            "https://chat.example/app",
            "https://user@chat.example",
            "https://chat.example:0",
            "https://chat.example:99999",
            "https://chat.example:http",
            "https://chat example",
        ] {
            assert_eq!(
                OriginPolicy::parse(&format!("https://ok.example,{bad}")),
                Err(OriginError::Invalid(bad.to_owned())),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(
            OriginPolicy::parse("*, https://chat.example"),
            Err(OriginError::WildcardInList)
        );
        let msg = OriginPolicy::parse("allowed.example")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("\"allowed.example\"") && msg.contains("scheme"),
            "{msg}"
        );
    }
}
