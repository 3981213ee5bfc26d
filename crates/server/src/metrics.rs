//! Process-wide counters, exported at `/metrics` in the Prometheus text format.
//!
//! Plain relaxed atomics: every counter is independent, and a scrape that sees them a few
//! nanoseconds apart is fine.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use rfc6455::CloseCode;

/// The server's counters and gauges. Shared as `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// WebSocket connections currently open (gauge).
    pub connections_open: AtomicU64,
    /// TCP connections accepted.
    pub tcp_accepted: AtomicU64,
    /// HTTP requests whose head was parsed (including upgrades).
    pub http_requests: AtomicU64,
    /// WebSocket handshakes completed with 101.
    pub handshakes_accepted: AtomicU64,
    /// WebSocket handshakes refused with an HTTP error status.
    pub handshakes_rejected: AtomicU64,
    /// Frames received from clients.
    pub frames_in: AtomicU64,
    /// Frames written to clients.
    pub frames_out: AtomicU64,
    /// Bytes received on WebSocket connections.
    pub bytes_in: AtomicU64,
    /// Bytes written on WebSocket connections.
    pub bytes_out: AtomicU64,
    /// Complete messages (text or binary) received.
    pub messages_in: AtomicU64,
    /// Broadcasts fanned out by the hub.
    pub broadcasts: AtomicU64,
    /// Broadcast frames handed to a recipient's outbox.
    pub broadcast_deliveries: AtomicU64,
    /// Committed store events (messages, membership changes, attaches) the hub applied.
    pub chat_events: AtomicU64,
    /// Chat frames (new messages, acks, errors, conversation updates) handed to outboxes.
    pub chat_deliveries: AtomicU64,
    /// `receipt` frames handed to outboxes.
    pub receipt_frames: AtomicU64,
    /// `typing` frames handed to outboxes.
    pub typing_frames: AtomicU64,
    /// `presence` frames handed to outboxes.
    pub presence_frames: AtomicU64,
    /// Frames not queued because a recipient's outbox hit its hard bound (it is evicted).
    pub queue_full_drops: AtomicU64,
    /// Clients evicted because their outbox stayed full past the grace period.
    pub queue_full_disconnects: AtomicU64,
    /// Connections terminated by the liveness sweep.
    pub sweep_terminations: AtomicU64,
    /// Connections closed because of a WebSocket protocol error.
    pub protocol_errors: AtomicU64,
    /// Connections refused with 503 because `max_http_connections` were in their HTTP phase.
    pub http_refused: AtomicU64,
    /// Connections closed because of what the client sent, by the close code we sent; see
    /// [`Metrics::count_client_close`].
    pub client_closes: ClientCloses,
    /// permessage-deflate counters; see [`DeflateMetrics`].
    pub deflate: DeflateMetrics,
}

/// What permessage-deflate (RFC 7692) does on the wire: payload bytes before and after, in
/// each direction. Payloads only (frame headers are not counted), so `compressed / plain`
/// is the compression ratio.
#[derive(Debug, Default)]
pub struct DeflateMetrics {
    /// WebSocket connections that agreed to permessage-deflate.
    pub connections: AtomicU64,
    /// Compressed messages received.
    pub messages_in: AtomicU64,
    /// Their payload bytes as received (compressed).
    pub bytes_in: AtomicU64,
    /// Their payload bytes once inflated.
    pub plain_bytes_in: AtomicU64,
    /// Messages compressed for sending (a broadcast compressed once for every recipient
    /// counts once).
    pub messages_out: AtomicU64,
    /// Payload bytes before that compression.
    pub plain_bytes_out: AtomicU64,
    /// Payload bytes after it.
    pub bytes_out: AtomicU64,
    /// Compressed frames handed to recipients' outboxes (each recipient of a shared
    /// compressed broadcast counts).
    pub deliveries: AtomicU64,
}

/// Per-close-code counts of connections the server closed because of the client's
/// behaviour (protocol errors, unsupported data, oversize messages).
///
/// Client misbehaviour is logged at DEBUG only, because a remote client must not control
/// the volume of the operator's WARN log; these counters are how it stays visible.
#[derive(Debug, Default)]
pub struct ClientCloses {
    by_code: [AtomicU64; CLIENT_CLOSE_CODES.len()],
    other: AtomicU64,
}

/// The codes [`ClientCloses`] counts one by one; anything else lands in `other`.
const CLIENT_CLOSE_CODES: [CloseCode; 6] = [
    CloseCode::PROTOCOL_ERROR,
    CloseCode::UNSUPPORTED_DATA,
    CloseCode::INVALID_PAYLOAD,
    CloseCode::POLICY_VIOLATION,
    CloseCode::MESSAGE_TOO_BIG,
    // Authentication failed or expired (chat sockets).
    CloseCode(4001),
];

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Adds one to a counter.
pub(crate) fn inc(counter: &AtomicU64) {
    add(counter, 1);
}

impl Metrics {
    /// Counts a connection closed with `code` because of the client (a protocol error, a
    /// message type the endpoint refuses, an oversize message). Call it where such a close
    /// is queued, and log the cause at DEBUG, not WARN.
    pub fn count_client_close(&self, code: CloseCode) {
        let i = CLIENT_CLOSE_CODES.iter().position(|c| *c == code);
        inc(i.map_or(&self.client_closes.other, |i| {
            &self.client_closes.by_code[i]
        }));
    }

    /// Renders every counter in the Prometheus text exposition format (version 0.0.4).
    #[must_use]
    pub fn render(&self) -> String {
        let rows: &[(&str, &str, &str, &AtomicU64)] = &[
            (
                "chatgroup_connections_open",
                "gauge",
                "WebSocket connections currently open",
                &self.connections_open,
            ),
            (
                "chatgroup_tcp_accepted_total",
                "counter",
                "TCP connections accepted",
                &self.tcp_accepted,
            ),
            (
                "chatgroup_http_requests_total",
                "counter",
                "HTTP request heads parsed",
                &self.http_requests,
            ),
            (
                "chatgroup_handshakes_accepted_total",
                "counter",
                "WebSocket handshakes accepted",
                &self.handshakes_accepted,
            ),
            (
                "chatgroup_handshakes_rejected_total",
                "counter",
                "WebSocket handshakes rejected",
                &self.handshakes_rejected,
            ),
            (
                "chatgroup_frames_in_total",
                "counter",
                "WebSocket frames received",
                &self.frames_in,
            ),
            (
                "chatgroup_frames_out_total",
                "counter",
                "WebSocket frames sent",
                &self.frames_out,
            ),
            (
                "chatgroup_bytes_in_total",
                "counter",
                "Bytes received on WebSocket connections",
                &self.bytes_in,
            ),
            (
                "chatgroup_bytes_out_total",
                "counter",
                "Bytes sent on WebSocket connections",
                &self.bytes_out,
            ),
            (
                "chatgroup_messages_in_total",
                "counter",
                "WebSocket messages received",
                &self.messages_in,
            ),
            (
                "chatgroup_broadcasts_total",
                "counter",
                "Broadcasts fanned out",
                &self.broadcasts,
            ),
            (
                "chatgroup_broadcast_deliveries_total",
                "counter",
                "Broadcast frames queued for recipients",
                &self.broadcast_deliveries,
            ),
            (
                "chatgroup_chat_events_total",
                "counter",
                "Committed store events applied by the hub",
                &self.chat_events,
            ),
            (
                "chatgroup_chat_deliveries_total",
                "counter",
                "Chat frames handed to recipients' outboxes",
                &self.chat_deliveries,
            ),
            (
                "chatgroup_receipt_frames_total",
                "counter",
                "Receipt frames handed to recipients (after coalescing and targeting)",
                &self.receipt_frames,
            ),
            (
                "chatgroup_typing_frames_total",
                "counter",
                "Typing frames handed to recipients",
                &self.typing_frames,
            ),
            (
                "chatgroup_presence_frames_total",
                "counter",
                "Presence frames handed to recipients",
                &self.presence_frames,
            ),
            (
                "chatgroup_queue_full_drops_total",
                "counter",
                "Frames refused by an outbox at its hard bound",
                &self.queue_full_drops,
            ),
            (
                "chatgroup_queue_full_disconnects_total",
                "counter",
                "Slow consumers evicted",
                &self.queue_full_disconnects,
            ),
            (
                "chatgroup_sweep_terminations_total",
                "counter",
                "Connections terminated by the liveness sweep",
                &self.sweep_terminations,
            ),
            (
                "chatgroup_protocol_errors_total",
                "counter",
                "Connections closed for protocol errors",
                &self.protocol_errors,
            ),
            (
                "chatgroup_http_connections_refused_total",
                "counter",
                "Connections refused with 503: too many in their HTTP phase",
                &self.http_refused,
            ),
        ];
        let mut out = String::with_capacity(rows.len() * 128);
        for (name, kind, help, value) in rows {
            let v = value.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        self.render_client_closes(&mut out);
        self.render_deflate(&mut out);
        out
    }

    /// The permessage-deflate counters, and the ratio of compressed to plain payload bytes
    /// in each direction (0 before any compressed message).
    fn render_deflate(&self, out: &mut String) {
        let d = &self.deflate;
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
        for (name, help, value) in [
            (
                "chatgroup_deflate_connections_total",
                "WebSocket connections that agreed to permessage-deflate",
                &d.connections,
            ),
            (
                "chatgroup_deflate_messages_in_total",
                "Compressed messages received",
                &d.messages_in,
            ),
            (
                "chatgroup_deflate_bytes_in_total",
                "Payload bytes of compressed messages as received",
                &d.bytes_in,
            ),
            (
                "chatgroup_deflate_plain_bytes_in_total",
                "Payload bytes of compressed messages once inflated",
                &d.plain_bytes_in,
            ),
            (
                "chatgroup_deflate_messages_out_total",
                "Messages compressed for sending (a shared broadcast counts once)",
                &d.messages_out,
            ),
            (
                "chatgroup_deflate_plain_bytes_out_total",
                "Payload bytes of messages before compression for sending",
                &d.plain_bytes_out,
            ),
            (
                "chatgroup_deflate_bytes_out_total",
                "Payload bytes of messages after compression for sending",
                &d.bytes_out,
            ),
            (
                "chatgroup_deflate_deliveries_total",
                "Compressed frames handed to recipients (every recipient counts)",
                &d.deliveries,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                load(value)
            );
        }
        for (name, help, compressed, plain) in [
            (
                "chatgroup_deflate_ratio_in",
                "Compressed over inflated payload bytes received",
                &d.bytes_in,
                &d.plain_bytes_in,
            ),
            (
                "chatgroup_deflate_ratio_out",
                "Compressed over plain payload bytes of messages compressed for sending",
                &d.bytes_out,
                &d.plain_bytes_out,
            ),
        ] {
            #[allow(clippy::cast_precision_loss)] // a ratio; byte counts far below 2^52
            let ratio = match load(plain) {
                0 => 0.0,
                p => load(compressed) as f64 / p as f64,
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {ratio:.4}"
            );
        }
    }

    /// One labelled family: `chatgroup_client_closes_total{code="1002"}` and so on. Slow
    /// consumers evicted with 1008 are the other client-caused close; their counter is
    /// `queue_full_disconnects`, shown here under its code as well so one family answers
    /// "which misbehaviour, how often".
    fn render_client_closes(&self, out: &mut String) {
        let name = "chatgroup_client_closes_total";
        let _ = writeln!(
            out,
            "# HELP {name} Connections closed because of the client, by close code sent\n\
             # TYPE {name} counter"
        );
        let c = &self.client_closes;
        let rows = CLIENT_CLOSE_CODES
            .iter()
            .map(|code| code.0.to_string())
            .zip(c.by_code.iter().map(|v| v.load(Ordering::Relaxed)))
            .map(|(code, v)| {
                // Slow consumers are counted in `queue_full_disconnects`; auth timeouts here.
                if code == "1008" {
                    (
                        code,
                        v + self.queue_full_disconnects.load(Ordering::Relaxed),
                    )
                } else {
                    (code, v)
                }
            })
            .chain([("other".to_owned(), c.other.load(Ordering::Relaxed))]);
        for (code, v) in rows {
            let _ = writeln!(out, "{name}{{code=\"{code}\"}} {v}");
        }
    }
}

/// Appends the store's counters (group commits, operations, failed batches, retries) to a
/// rendering of [`Metrics`]: how well group commit batches is `ops / commits`; how often
/// nodes sharing a PostgreSQL database collide is `retries`.
pub(crate) fn render_store(stats: &chatgroup_store::StoreStats, out: &mut String) {
    for (name, help, value) in [
        (
            "chatgroup_store_commits_total",
            "Transactions the store's writer committed (one per group commit)",
            stats.commits,
        ),
        (
            "chatgroup_store_ops_total",
            "Write operations carried by committed transactions",
            stats.ops,
        ),
        (
            "chatgroup_store_failed_batches_total",
            "Batches whose commit failed (every operation in them was refused)",
            stats.failed_batches,
        ),
        (
            "chatgroup_store_retries_total",
            "Batch attempts run again after a conflict with another node's transaction or a \
             lost database connection (PostgreSQL only)",
            stats.retries,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
}

/// Appends the bus's counters (`--bus redis`) in Prometheus text format.
pub(crate) fn render_bus((published, dropped): (u64, u64), up: bool, out: &mut String) {
    for (name, help, kind, value) in [
        (
            "chatgroup_bus_published_total",
            "Events this node published on the bus (its heartbeats included)",
            "counter",
            published,
        ),
        (
            "chatgroup_bus_dropped_total",
            "Events this node could not publish (queue full or bus unreachable); the other nodes read them from the store",
            "counter",
            dropped,
        ),
        (
            "chatgroup_bus_up",
            "1 while the bus is subscribed and publishing",
            "gauge",
            u64::from(up),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_with_help_and_type() {
        let m = Metrics::default();
        add(&m.bytes_out, 42);
        inc(&m.sweep_terminations);
        let text = m.render();
        assert!(text
            .contains("# TYPE chatgroup_connections_open gauge\nchatgroup_connections_open 0\n"));
        assert!(text.contains("\nchatgroup_bytes_out_total 42\n"));
        assert!(text.contains("\nchatgroup_sweep_terminations_total 1\n"));
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, 22 + 7 + 10);
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP")).count(), 33);
    }

    #[test]
    fn deflate_counters_and_ratios() {
        let m = Metrics::default();
        assert!(m
            .render()
            .contains("\nchatgroup_deflate_ratio_out 0.0000\n"));
        add(&m.deflate.plain_bytes_out, 1000);
        add(&m.deflate.bytes_out, 250);
        add(&m.deflate.plain_bytes_in, 300);
        add(&m.deflate.bytes_in, 100);
        inc(&m.deflate.deliveries);
        let text = m.render();
        assert!(
            text.contains("\nchatgroup_deflate_ratio_out 0.2500\n"),
            "{text}"
        );
        assert!(text.contains("\nchatgroup_deflate_ratio_in 0.3333\n"));
        assert!(text.contains("# TYPE chatgroup_deflate_ratio_in gauge\n"));
        assert!(text.contains("\nchatgroup_deflate_deliveries_total 1\n"));
    }

    #[test]
    fn client_closes_are_counted_by_code() {
        let m = Metrics::default();
        m.count_client_close(CloseCode::PROTOCOL_ERROR);
        m.count_client_close(CloseCode::PROTOCOL_ERROR);
        m.count_client_close(CloseCode::MESSAGE_TOO_BIG);
        m.count_client_close(CloseCode::INTERNAL_ERROR);
        inc(&m.queue_full_disconnects);
        let text = m.render();
        for sample in [
            "chatgroup_client_closes_total{code=\"1002\"} 2\n",
            "chatgroup_client_closes_total{code=\"1003\"} 0\n",
            "chatgroup_client_closes_total{code=\"1007\"} 0\n",
            "chatgroup_client_closes_total{code=\"1008\"} 1\n",
            "chatgroup_client_closes_total{code=\"1009\"} 1\n",
            "chatgroup_client_closes_total{code=\"4001\"} 0\n",
            "chatgroup_client_closes_total{code=\"other\"} 1\n",
        ] {
            assert!(text.contains(sample), "{sample} in {text}");
        }
        assert!(text.contains("# TYPE chatgroup_client_closes_total counter\n"));
    }
}
