//! The opening handshake (RFC 6455 §4): HTTP/1.1 request and response heads,
//! the server's validation and 101 answer, and the client's request and checks.

mod client;
mod head;
mod server;

pub use client::{ClientHandshake, ServerResponse};
pub use head::{parse_request, HeadLimits, Header, RequestHead};
pub use server::{accept_key, validate_upgrade, write_accept, write_reject, UpgradeRequest};

/// The GUID appended to the client's key before hashing (RFC 6455 §1.3).
pub const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether a comma-separated header value contains `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
fn tokens(value: &str) -> impl Iterator<Item = &str> {
    // HTTP's whitespace is ASCII (RFC 9110 §5.6.3); `str::trim` would look for Unicode spaces.
    value
        .split(',')
        .map(str::trim_ascii)
        .filter(|t| !t.is_empty())
}
