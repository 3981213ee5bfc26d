//! The server side of the opening handshake (RFC 6455 §4.2).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{BufMut, BytesMut};
use sha1::{Digest, Sha1};

use super::head::RequestHead;
use super::{has_token, tokens, ACCEPT_GUID};
use crate::error::HandshakeError;

/// A request that passed every check of RFC 6455 §4.2.1.
///
/// It borrows from the request head; the application decides what to do with
/// the path, the query, the `Origin` and the offered subprotocols, then answers
/// with [`write_accept`] or [`write_reject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest<'a> {
    /// The path of the request target.
    pub path: &'a str,
    /// The query of the request target, without `?`.
    pub query: Option<&'a str>,
    /// The `Host` header.
    pub host: &'a str,
    /// The `Origin` header, sent by browsers (§10.2).
    pub origin: Option<&'a str>,
    /// The `Sec-WebSocket-Key`, trimmed.
    pub key: &'a str,
    protocols: Vec<&'a str>,
    extensions: Vec<&'a str>,
}

impl<'a> UpgradeRequest<'a> {
    /// The subprotocols the client offered, in its order of preference.
    #[must_use]
    pub fn protocols(&self) -> &[&'a str] {
        &self.protocols
    }

    /// The extension offers, one entry per offer, parameters included.
    #[must_use]
    pub fn extensions(&self) -> &[&'a str] {
        &self.extensions
    }

    /// The first of the server's `supported` subprotocols that the client offered.
    ///
    /// ```
    /// # use rfc6455::{parse_request, validate_upgrade, HeadLimits};
    /// # let raw = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    /// # Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
    /// # Sec-WebSocket-Protocol: chat, superchat\r\n\r\n";
    /// # let (head, _) = parse_request(raw, &HeadLimits::DEFAULT).unwrap().unwrap();
    /// let req = validate_upgrade(&head).unwrap();
    /// assert_eq!(req.protocols(), ["chat", "superchat"]);
    /// assert_eq!(req.choose_protocol(&["superchat", "chat"]), Some("superchat"));
    /// assert_eq!(req.choose_protocol(&["mqtt"]), None);
    /// ```
    #[must_use]
    pub fn choose_protocol<'s>(&self, supported: &[&'s str]) -> Option<&'s str> {
        supported
            .iter()
            .copied()
            .find(|s| self.protocols.iter().any(|p| p == s))
    }

    /// The `Sec-WebSocket-Accept` value for this request's key.
    #[must_use]
    pub fn accept_key(&self) -> String {
        accept_key(self.key.as_bytes())
    }

    /// The permessage-deflate parameters to agree on under `policy`: the first offer the
    /// policy accepts (RFC 7692 §5), or `None` when the client offered none or none
    /// acceptable, or wrote its extension list so badly that it cannot be read (the
    /// connection then simply goes on uncompressed). Answer with
    /// `Sec-WebSocket-Extensions:` [`DeflateParams::header_value`](crate::deflate::DeflateParams::header_value)
    /// among `write_accept`'s extra headers, and configure the reader and writer with it.
    ///
    /// ```
    /// # use rfc6455::{parse_request, validate_upgrade, write_accept, HeadLimits};
    /// use rfc6455::deflate::DeflatePolicy;
    /// # let raw = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    /// # Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
    /// # Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    /// # let (head, _) = parse_request(raw, &HeadLimits::DEFAULT).unwrap().unwrap();
    /// let req = validate_upgrade(&head).unwrap();
    /// let agreed = req.negotiate_deflate(&DeflatePolicy::default()).unwrap();
    /// let value = agreed.header_value();
    /// assert_eq!(value, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    /// let mut out = bytes::BytesMut::new();
    /// write_accept(&req, None, &[("Sec-WebSocket-Extensions", &value)], &mut out);
    /// ```
    #[cfg(feature = "deflate")]
    #[must_use]
    pub fn negotiate_deflate(
        &self,
        policy: &crate::deflate::DeflatePolicy,
    ) -> Option<crate::deflate::DeflateParams> {
        policy
            .negotiate(self.extensions.iter().copied())
            .ok()
            .flatten()
    }
}

/// Computes `Sec-WebSocket-Accept`: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2).
///
/// ```
/// // The example from RFC 6455 §1.3.
/// assert_eq!(rfc6455::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
#[must_use]
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// Checks a request head against RFC 6455 §4.2.1.
///
/// # Errors
/// The first rule the request breaks; [`HandshakeError::http_status`] gives the
/// status to answer with and [`write_reject`] writes the response.
///
/// ```
/// use rfc6455::{parse_request, validate_upgrade, HandshakeError, HeadLimits};
/// let raw = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
///             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///             Origin: http://example.com\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// let (head, _) = parse_request(raw, &HeadLimits::DEFAULT).unwrap().unwrap();
/// let req = validate_upgrade(&head).unwrap();
/// assert_eq!((req.path, req.origin), ("/chat", Some("http://example.com")));
/// assert_eq!(req.accept_key(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
///
/// let old = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
///             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
/// let (head, _) = parse_request(old, &HeadLimits::DEFAULT).unwrap().unwrap();
/// assert_eq!(validate_upgrade(&head), Err(HandshakeError::UnsupportedVersion));
/// ```
pub fn validate_upgrade<'a>(head: &RequestHead<'a>) -> Result<UpgradeRequest<'a>, HandshakeError> {
    if head.method != "GET" {
        return Err(HandshakeError::MethodNotGet);
    }
    if head.version < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    let fields = Fields::collect(head);
    // Every header read as one value must appear once: a repeated Host, Origin, key or
    // version is refused (400) instead of resolved, so no client can choose which copy a
    // check sees. Upgrade, Connection, Sec-WebSocket-Protocol and Sec-WebSocket-Extensions
    // are lists, where repeated lines are one list (RFC 9110 §5.3, RFC 6455 §11.3.2 and
    // §11.3.4). The checks run in this order whatever the order of the lines.
    let host = fields
        .host
        .text("host")?
        .filter(|h| !h.is_empty())
        .ok_or(HandshakeError::MissingHost)?;
    if !fields.upgrade_websocket {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }
    if !fields.connection_upgrade {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    match fields.version.raw("sec-websocket-version")? {
        Some(v) if v.trim_ascii() == b"13" => {}
        _ => return Err(HandshakeError::UnsupportedVersion),
    }
    let key = match fields.key.raw("sec-websocket-key")? {
        Some(v) => simdutf8::basic::from_utf8(v)
            .map_err(|_| HandshakeError::InvalidKey)?
            .trim_ascii(),
        None => return Err(HandshakeError::InvalidKey),
    };
    // 16 bytes encode to exactly 24 base64 characters with "==" padding.
    let mut decoded = [0u8; 18];
    if key.len() != 24 || BASE64.decode_slice(key, &mut decoded) != Ok(16) {
        return Err(HandshakeError::InvalidKey);
    }
    // RFC 6454 §7.3: a user agent sends at most one Origin. Present but not UTF-8
    // is refused too: reporting it as absent would let it pass as a non-browser.
    let origin = fields.origin.text("origin")?;
    let not_utf8 = HandshakeError::Malformed("header value is not utf-8");
    if !fields.lists_utf8 {
        return Err(not_utf8);
    }
    Ok(UpgradeRequest {
        path: head.path(),
        query: head.query(),
        host,
        origin,
        key,
        protocols: fields.protocols,
        extensions: fields.extensions,
    })
}

/// A header read as one value: its first line and whether there were more.
#[derive(Default)]
struct Single<'a> {
    value: Option<&'a [u8]>,
    repeated: bool,
}

impl<'a> Single<'a> {
    fn push(&mut self, value: &'a [u8]) {
        if self.value.is_some() {
            self.repeated = true;
        } else {
            self.value = Some(value);
        }
    }

    /// The raw value; repeated lines are an error naming the header.
    fn raw(&self, name: &'static str) -> Result<Option<&'a [u8]>, HandshakeError> {
        if self.repeated {
            return Err(HandshakeError::RepeatedHeader(name));
        }
        Ok(self.value)
    }

    /// The value as trimmed UTF-8 (present but not UTF-8 is refused, not taken as absent).
    fn text(&self, name: &'static str) -> Result<Option<&'a str>, HandshakeError> {
        self.raw(name)?
            .map(|v| {
                simdutf8::basic::from_utf8(v)
                    .map(str::trim_ascii)
                    .map_err(|_| HandshakeError::Malformed("header value is not utf-8"))
            })
            .transpose()
    }
}

/// The header fields an upgrade depends on, gathered in one pass over the head: a browser
/// sends a dozen lines, and looking each name up separately compared every line again.
#[derive(Default)]
struct Fields<'a> {
    host: Single<'a>,
    version: Single<'a>,
    key: Single<'a>,
    origin: Single<'a>,
    upgrade_websocket: bool,
    connection_upgrade: bool,
    protocols: Vec<&'a str>,
    extensions: Vec<&'a str>,
    /// False once a protocol or extension line is not UTF-8 (such a line holds no token).
    lists_utf8: bool,
}

impl<'a> Fields<'a> {
    fn collect(head: &RequestHead<'a>) -> Self {
        let mut f = Fields {
            lists_utf8: true,
            ..Fields::default()
        };
        for h in &head.headers {
            let is = |name: &str| h.name.eq_ignore_ascii_case(name);
            // The length picks the one candidate name, so each line costs one comparison.
            match h.name.len() {
                4 if is("host") => f.host.push(h.value),
                6 if is("origin") => f.origin.push(h.value),
                7 if is("upgrade") => f.upgrade_websocket |= has_token(h.value, "websocket"),
                10 if is("connection") => f.connection_upgrade |= has_token(h.value, "upgrade"),
                17 if is("sec-websocket-key") => f.key.push(h.value),
                21 if is("sec-websocket-version") => f.version.push(h.value),
                22 if is("sec-websocket-protocol") => {
                    push_list(&mut f.protocols, &mut f.lists_utf8, h.value)
                }
                24 if is("sec-websocket-extensions") => {
                    push_list(&mut f.extensions, &mut f.lists_utf8, h.value)
                }
                _ => {}
            }
        }
        f
    }
}

/// Appends the comma-separated elements of one line of a list-valued header.
fn push_list<'a>(items: &mut Vec<&'a str>, utf8: &mut bool, value: &'a [u8]) {
    match simdutf8::basic::from_utf8(value) {
        Ok(v) => items.extend(tokens(v)),
        Err(_) => *utf8 = false,
    }
}

/// Writes the `101 Switching Protocols` response, with the chosen subprotocol
/// (which must be one the client offered) and any extra header lines.
///
/// ```
/// # use rfc6455::{parse_request, validate_upgrade, write_accept, HeadLimits};
/// # let raw = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
/// # Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// # let (head, _) = parse_request(raw, &HeadLimits::DEFAULT).unwrap().unwrap();
/// let req = validate_upgrade(&head).unwrap();
/// let mut out = bytes::BytesMut::new();
/// write_accept(&req, None, &[], &mut out);
/// let text = std::str::from_utf8(&out).unwrap();
/// assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
/// assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
/// assert!(text.ends_with("\r\n\r\n"));
/// ```
pub fn write_accept(
    req: &UpgradeRequest<'_>,
    protocol: Option<&str>,
    extra_headers: &[(&str, &str)],
    dst: &mut BytesMut,
) {
    dst.put_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    dst.put_slice(req.accept_key().as_bytes());
    dst.put_slice(b"\r\n");
    if let Some(p) = protocol {
        dst.put_slice(b"Sec-WebSocket-Protocol: ");
        dst.put_slice(p.as_bytes());
        dst.put_slice(b"\r\n");
    }
    for (name, value) in extra_headers {
        put_header(dst, name, value);
    }
    dst.put_slice(b"\r\n");
}

/// Writes the refusal for `err`: its status, a short plain-text body naming the
/// problem, `Connection: close`, and `Sec-WebSocket-Version: 13` on a 426
/// (RFC 6455 §4.2.2) or `Allow: GET` on a 405.
///
/// ```
/// use rfc6455::{write_reject, HandshakeError};
/// let mut out = bytes::BytesMut::new();
/// write_reject(&HandshakeError::UnsupportedVersion, &mut out);
/// let text = std::str::from_utf8(&out).unwrap();
/// assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
/// assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
/// ```
pub fn write_reject(err: &HandshakeError, dst: &mut BytesMut) {
    let status = err.http_status();
    let body = format!("{err}\n");
    dst.put_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    match status {
        426 => put_header(dst, "Sec-WebSocket-Version", "13"),
        405 => put_header(dst, "Allow", "GET"),
        _ => {}
    }
    put_header(dst, "Content-Type", "text/plain; charset=utf-8");
    put_header(dst, "Content-Length", &body.len().to_string());
    put_header(dst, "Connection", "close");
    dst.put_slice(b"\r\n");
    dst.put_slice(body.as_bytes());
}

fn put_header(dst: &mut BytesMut, name: &str, value: &str) {
    dst.put_slice(name.as_bytes());
    dst.put_slice(b": ");
    dst.put_slice(value.as_bytes());
    dst.put_slice(b"\r\n");
}

/// The reason phrase for the statuses a handshake can produce.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ if status >= 500 => "Server Error",
        _ => "Client Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::head::{parse_request, HeadLimits};

    const GOOD: &str = "GET /ws?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn check(raw: &str) -> Result<(), HandshakeError> {
        let (head, _) = parse_request(raw.as_bytes(), &HeadLimits::DEFAULT)?.expect("complete");
        validate_upgrade(&head).map(|_| ())
    }

    #[test]
    fn accepts_the_canonical_request() {
        assert_eq!(check(GOOD), Ok(()));
    }

    /// The header fields are gathered in one pass, but the rules are checked in a fixed
    /// order: which error a bad request gets does not depend on the order of its lines.
    #[test]
    fn the_first_broken_rule_wins_whatever_the_line_order() {
        let lines = [
            "Host: a",
            "Host: b",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 12",
            "Sec-WebSocket-Protocol: chat, , superchat",
        ];
        for rotation in 0..lines.len() {
            let mut order = lines.to_vec();
            order.rotate_left(rotation);
            let raw = format!("GET / HTTP/1.1\r\n{}\r\n\r\n", order.join("\r\n"));
            let (head, _) = parse_request(raw.as_bytes(), &HeadLimits::DEFAULT)
                .unwrap()
                .unwrap();
            assert_eq!(
                validate_upgrade(&head),
                Err(HandshakeError::RepeatedHeader("host")),
                "{order:?}"
            );
        }
        let raw = b"GET /a?b=c HTTP/1.1\r\nsec-websocket-protocol: chat, , superchat\r\n\
            Sec-WebSocket-Key:  dGhlIHNhbXBsZSBub25jZQ== \r\nHOST: h\r\nSec-WebSocket-Version: 13\r\n\
            connection: upgrade\r\nSec-WebSocket-Protocol: x\r\nupgrade: WebSocket\r\n\r\n";
        let (head, _) = parse_request(raw, &HeadLimits::DEFAULT).unwrap().unwrap();
        let req = validate_upgrade(&head).unwrap();
        assert_eq!((req.path, req.query, req.host), ("/a", Some("b=c"), "h"));
        assert_eq!(req.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(req.protocols(), ["chat", "superchat", "x"]);
    }

    #[test]
    fn each_missing_piece_has_its_own_error() {
        let cases = [
            ("GET /ws", "POST /ws", HandshakeError::MethodNotGet),
            (
                "HTTP/1.1\r\nHost",
                "HTTP/1.0\r\nHost",
                HandshakeError::HttpVersion,
            ),
            ("Host: h\r\n", "", HandshakeError::MissingHost),
            (
                "Upgrade: WebSocket",
                "Upgrade: h2c",
                HandshakeError::NotWebSocketUpgrade,
            ),
            (
                "keep-alive, Upgrade",
                "keep-alive",
                HandshakeError::MissingConnectionUpgrade,
            ),
            (
                "Version: 13",
                "Version: 12",
                HandshakeError::UnsupportedVersion,
            ),
            (
                "dGhlIHNhbXBsZSBub25jZQ==",
                "dGhlIHNhbXBsZQ==",
                HandshakeError::InvalidKey,
            ),
            (
                "dGhlIHNhbXBsZSBub25jZQ==",
                "!!!!!!!!!!!!!!!!!!!!!!==",
                HandshakeError::InvalidKey,
            ),
        ];
        for (from, to, err) in cases {
            assert_eq!(
                check(&GOOD.replacen(from, to, 1)),
                Err(err),
                "{from} -> {to}"
            );
        }
        let twice = GOOD.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        );
        assert_eq!(
            check(&twice),
            Err(HandshakeError::RepeatedHeader("sec-websocket-key"))
        );
    }

    #[test]
    fn reject_bodies_match_their_content_length() {
        for err in [
            HandshakeError::InvalidKey,
            HandshakeError::MethodNotGet,
            HandshakeError::OriginNotAllowed,
            HandshakeError::Refused {
                status: 503,
                reason: "too many connections",
            },
        ] {
            let mut out = BytesMut::new();
            write_reject(&err, &mut out);
            let text = std::str::from_utf8(&out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("Content-Length: {}", body.len())));
            assert!(head.starts_with(&format!("HTTP/1.1 {}", err.http_status())));
        }
    }
}
