//! Process-wide counters, exported at `/metrics` in the Prometheus text format.
//!
//! Plain relaxed atomics: every counter is independent, and a scrape that sees them a few
//! nanoseconds apart is fine.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

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
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Adds one to a counter.
pub(crate) fn inc(counter: &AtomicU64) {
    add(counter, 1);
}

impl Metrics {
    /// Renders every counter in the Prometheus text exposition format (version 0.0.4).
    #[must_use]
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 17] = [
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
        out
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
        assert_eq!(samples, 17);
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP")).count(), 17);
    }
}
