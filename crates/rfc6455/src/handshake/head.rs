//! Bounded parsing of an HTTP/1.1 request head.

use std::mem::MaybeUninit;

use crate::error::HandshakeError;

/// Limits on a request or response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeadLimits {
    /// Largest head in bytes, request line and final blank line included.
    pub max_head_len: usize,
    /// Most header fields.
    pub max_headers: usize,
}

impl HeadLimits {
    /// 8 KiB and 64 header fields.
    pub const DEFAULT: Self = Self {
        max_head_len: 8 * 1024,
        max_headers: 64,
    };

    /// Sets the largest head in bytes.
    #[must_use]
    pub const fn with_max_head_len(mut self, len: usize) -> Self {
        self.max_head_len = len;
        self
    }

    /// Sets the most header fields.
    #[must_use]
    pub const fn with_max_headers(mut self, n: usize) -> Self {
        self.max_headers = n;
        self
    }
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One header field, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The field name as sent.
    pub name: &'a str,
    /// The raw field value.
    pub value: &'a [u8],
}

/// A parsed HTTP/1.x request head, borrowing from the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The request target as sent (path and query).
    pub target: &'a str,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// The header fields in order.
    pub headers: Vec<Header<'a>>,
}

impl<'a> RequestHead<'a> {
    /// The path part of the target (before `?`).
    #[must_use]
    pub fn path(&self) -> &'a str {
        self.target.split_at(self.query_start()).0
    }

    /// The query part of the target (after `?`), if any.
    #[must_use]
    pub fn query(&self) -> Option<&'a str> {
        self.target.get(self.query_start() + 1..)
    }

    /// Where the `?` is, or the target's length. A plain loop: targets are short, and
    /// `split_once` goes through a general string searcher.
    fn query_start(&self) -> usize {
        self.target
            .bytes()
            .position(|b| b == b'?')
            .unwrap_or(self.target.len())
    }

    /// The value of the first header field named `name` (ASCII case-insensitive).
    ///
    /// Later copies are ignored, so do not use this for a header a security or
    /// framing decision rests on: use [`RequestHead::single_header`], which refuses
    /// repeats, or [`RequestHead::header_all`] for list-valued fields.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The values of every header field named `name`, in order.
    ///
    /// For list-valued fields (`Connection`, `Upgrade`, `Sec-WebSocket-Protocol`,
    /// `Sec-WebSocket-Extensions`), where several lines mean the same as one line
    /// joined with commas (RFC 9110 §5.3).
    pub fn header_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The first header field named `name`, as trimmed UTF-8 (`None` if absent or
    /// not UTF-8). Later copies are ignored; see [`RequestHead::header`].
    #[must_use]
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// The value of a header field that must appear at most once, such as
    /// `Authorization`, `Origin` or `Host`: `Ok(None)` when absent,
    /// `Ok(Some(value))` when present exactly once (raw, untrimmed).
    ///
    /// Use this for every header a decision rests on. With [`RequestHead::header`],
    /// a client sending two copies picks which one the check sees, while a proxy or
    /// a later reader may act on the other.
    ///
    /// # Errors
    /// [`HandshakeError::RepeatedHeader`] (HTTP 400) naming `name` when the field
    /// appears more than once, whatever the values.
    ///
    /// ```
    /// use rfc6455::{parse_request, HandshakeError, HeadLimits};
    /// let raw = b"GET / HTTP/1.1\r\nAuthorization: Bearer a\r\nauthorization: Bearer b\r\n\r\n";
    /// let (head, _) = parse_request(raw, &HeadLimits::DEFAULT).unwrap().unwrap();
    /// let err = head.single_header("authorization").unwrap_err();
    /// assert_eq!(err, HandshakeError::RepeatedHeader("authorization"));
    /// assert_eq!(err.http_status(), 400);
    /// assert_eq!(head.single_header("cookie"), Ok(None));
    /// ```
    pub fn single_header(&self, name: &'static str) -> Result<Option<&'a [u8]>, HandshakeError> {
        let mut values = self.header_all(name);
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => Ok(Some(v)),
            (Some(_), Some(_)) => Err(HandshakeError::RepeatedHeader(name)),
        }
    }

    /// [`RequestHead::single_header`] as trimmed UTF-8.
    ///
    /// # Errors
    /// [`HandshakeError::RepeatedHeader`] when repeated; [`HandshakeError::Malformed`]
    /// when the value is not UTF-8 (present but unreadable is refused, not
    /// treated as absent, so it cannot slip past a check that allows absence).
    pub fn single_header_str(&self, name: &'static str) -> Result<Option<&'a str>, HandshakeError> {
        self.single_header(name)?
            .map(|v| {
                std::str::from_utf8(v)
                    .map(str::trim)
                    .map_err(|_| HandshakeError::Malformed("header value is not utf-8"))
            })
            .transpose()
    }

    /// The `Content-Length`, if present and valid.
    ///
    /// # Errors
    /// [`HandshakeError::RepeatedHeader`] if it appears more than once, even with
    /// equal values (RFC 9112 §6.3 lets a server refuse those; two lengths are how
    /// request smuggling between a proxy and a server starts);
    /// [`HandshakeError::Malformed`] if it is not a plain decimal number.
    pub fn content_length(&self) -> Result<Option<u64>, HandshakeError> {
        let Some(v) = self.single_header("content-length")? else {
            return Ok(None);
        };
        std::str::from_utf8(v)
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .map(Some)
            .ok_or(HandshakeError::Malformed("invalid content-length"))
    }
}

/// Header slots kept on the stack while parsing; a larger [`HeadLimits::max_headers`] takes
/// them from the heap.
const STACK_HEADERS: usize = 64;

/// Parses an HTTP/1.x request head from the front of `buf` without consuming it.
///
/// Returns `Ok(None)` while the head is incomplete, otherwise the head and its
/// length in bytes (any body starts after it).
///
/// # Errors
/// [`HandshakeError::HeadTooLarge`] once `buf` holds more than
/// `limits.max_head_len` bytes without a complete head, or a complete head is
/// larger; [`HandshakeError::TooManyHeaders`]; [`HandshakeError::Malformed`].
///
/// ```
/// use rfc6455::{parse_request, HeadLimits};
/// let raw = b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
/// let (head, len) = parse_request(raw, &HeadLimits::DEFAULT).unwrap().unwrap();
/// assert_eq!((head.method, head.path(), head.query(), len), ("GET", "/chat", Some("room=1"), raw.len()));
/// assert_eq!(head.header_str("host"), Some("example.com"));
/// assert_eq!(parse_request(&raw[..10], &HeadLimits::DEFAULT).unwrap(), None);
/// ```
pub fn parse_request<'a>(
    buf: &'a [u8],
    limits: &HeadLimits,
) -> Result<Option<(RequestHead<'a>, usize)>, HandshakeError> {
    // httparse writes the headers it finds into uninitialised slots: for the usual limit
    // they live on the stack, and nothing is zeroed or allocated before parsing.
    let mut stack = [const { MaybeUninit::<httparse::Header<'a>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap.resize_with(limits.max_headers, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    let status = req
        .parse_with_uninit_headers(buf, slots)
        .map_err(|e| match e {
            httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders,
            httparse::Error::Version => HandshakeError::Malformed("unsupported http version"),
            httparse::Error::Token | httparse::Error::HeaderName => {
                HandshakeError::Malformed("invalid header name")
            }
            httparse::Error::HeaderValue => HandshakeError::Malformed("invalid header value"),
            httparse::Error::NewLine => HandshakeError::Malformed("invalid line ending"),
            httparse::Error::Status => HandshakeError::Malformed("invalid request line"),
        });
    let too_large = HandshakeError::HeadTooLarge {
        max: limits.max_head_len,
    };
    let len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_head_len => return Err(too_large),
        Ok(httparse::Status::Partial) => return Ok(None),
        // A head cut by the size limit can fail to parse for that reason alone.
        Err(_) if buf.len() > limits.max_head_len => return Err(too_large),
        Err(e) => return Err(e),
    };
    if len > limits.max_head_len {
        return Err(too_large);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HandshakeError::Malformed("incomplete request line"));
    };
    let headers = req
        .headers
        .iter()
        .map(|h| Header {
            name: h.name,
            value: h.value,
        })
        .collect();
    Ok(Some((
        RequestHead {
            method,
            target,
            version,
            headers,
        },
        len,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced() {
        let limits = HeadLimits::DEFAULT
            .with_max_head_len(64)
            .with_max_headers(2);
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(
            parse_request(long.as_bytes(), &limits),
            Err(HandshakeError::HeadTooLarge { max: 64 })
        );
        let partial = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(100));
        assert_eq!(
            parse_request(partial.as_bytes(), &limits),
            Err(HandshakeError::HeadTooLarge { max: 64 })
        );
        let many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(
            parse_request(many, &limits),
            Err(HandshakeError::TooManyHeaders)
        );
        assert!(matches!(
            parse_request(b"GET / HTTP/2.0\r\n\r\n", &limits),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn content_length_must_be_single_and_decimal() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n";
        let (head, _) = parse_request(raw, &HeadLimits::DEFAULT).unwrap().unwrap();
        assert_eq!(
            head.content_length(),
            Err(HandshakeError::RepeatedHeader("content-length"))
        );
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
        let (head, _) = parse_request(raw, &HeadLimits::DEFAULT).unwrap().unwrap();
        assert_eq!(
            head.content_length(),
            Err(HandshakeError::RepeatedHeader("content-length"))
        );
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n";
        let (head, _) = parse_request(raw, &HeadLimits::DEFAULT).unwrap().unwrap();
        assert!(head.content_length().is_err());
        let raw = b"POST / HTTP/1.1\r\nContent-Length:  7 \r\n\r\n";
        let (head, _) = parse_request(raw, &HeadLimits::DEFAULT).unwrap().unwrap();
        assert_eq!(head.content_length(), Ok(Some(7)));
        let raw = b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n";
        let (head, _) = parse_request(raw, &HeadLimits::DEFAULT).unwrap().unwrap();
        assert!(head.content_length().is_err());
    }
}
