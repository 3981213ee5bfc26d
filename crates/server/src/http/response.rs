//! Building plain HTTP/1.1 responses (status line, a few headers, a `Content-Length` body).
//! Parsing requests is the codec's job; this only writes.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

/// A complete response, ready to encode.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// Status code.
    pub(crate) status: u16,
    /// `Content-Type` of the body.
    pub(crate) content_type: Cow<'static, str>,
    /// Extra header lines (name, value).
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The body (omitted on the wire for `HEAD`, but its length is still announced).
    pub(crate) body: Bytes,
    /// Send `Connection: close` and close the connection after this response.
    pub(crate) close: bool,
    /// A body streamed from a file instead of `body` (see [`FileBody`]).
    pub(crate) file: Option<FileBody>,
    /// The `Cache-Control` value: `no-store` unless the response says otherwise (API answers
    /// carry private data; only the page's own files may be cached).
    pub(crate) cache_control: &'static str,
}

/// A response body read from disk in chunks as it is sent, never whole into memory.
#[derive(Debug, Clone)]
pub(crate) struct FileBody {
    /// The open file; `None` for `HEAD`, which announces the length and sends nothing.
    pub(crate) file: Option<Arc<std::fs::File>>,
    /// The first byte sent.
    pub(crate) start: u64,
    /// How many bytes (the `Content-Length`).
    pub(crate) len: u64,
}

impl Response {
    /// A response with a body.
    #[must_use]
    pub(crate) fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type: Cow::Borrowed(content_type),
            headers: Vec::new(),
            body: body.into(),
            close: false,
            file: None,
            cache_control: "no-store",
        }
    }

    /// A short plain-text response whose body is the reason phrase (for errors).
    #[must_use]
    pub(crate) fn status(status: u16) -> Self {
        Self::new(
            status,
            "text/plain; charset=utf-8",
            format!("{}\n", reason(status)),
        )
    }

    /// Adds a header line.
    #[must_use]
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// A response whose body is `body`, streamed from disk, with a media type known only at
    /// run time (it must be a valid header value).
    #[must_use]
    pub(crate) fn file(status: u16, content_type: String, body: FileBody) -> Self {
        Self {
            content_type: Cow::Owned(content_type),
            file: Some(body),
            ..Self::new(status, "", Bytes::new())
        }
    }

    /// Sets the `Cache-Control` value.
    #[must_use]
    pub(crate) fn cache(mut self, value: &'static str) -> Self {
        self.cache_control = value;
        self
    }

    /// Marks the response as the last one on this connection.
    #[must_use]
    pub(crate) fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// Encodes head and (unless `head_only`) body.
    #[must_use]
    pub(crate) fn encode(&self, head_only: bool) -> BytesMut {
        let mut head = String::with_capacity(160);
        // 204 and 304 have no content: no body and no Content-Length (RFC 9110 §8.6; a 304's
        // length would have to be the cached representation's, which it does not restate).
        let no_content = matches!(self.status, 204 | 304);
        if no_content {
            let _ = write!(
                head,
                "HTTP/1.1 {} {}\r\nCache-Control: {}\r\n",
                self.status,
                reason(self.status),
                self.cache_control
            );
        } else {
            let _ = write!(
                head,
                "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: {}\r\n",
                self.status,
                reason(self.status),
                self.content_type,
                self.file.as_ref().map_or(self.body.len() as u64, |f| f.len),
                self.cache_control
            );
        }
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str(if self.close {
            "Connection: close\r\n\r\n"
        } else {
            "Connection: keep-alive\r\n\r\n"
        });
        let mut out = BytesMut::with_capacity(head.len() + self.body.len());
        out.put_slice(head.as_bytes());
        if !head_only && !no_content {
            out.put_slice(&self.body);
        }
        out
    }
}

/// The reason phrase for the statuses this server sends.
#[must_use]
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_head_and_body() {
        let r = Response::new(200, "text/plain", "ok").header("X-A", "1");
        let text = String::from_utf8(r.encode(false).to_vec()).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
             Cache-Control: no-store\r\nX-A: 1\r\nConnection: keep-alive\r\n\r\nok"
        );
        let head = String::from_utf8(r.closing().encode(true).to_vec()).unwrap();
        assert!(head.ends_with(
            "Content-Length: 2\r\nCache-Control: no-store\r\nX-A: 1\r\nConnection: close\r\n\r\n"
        ));
    }

    #[test]
    fn status_responses_carry_reason() {
        let text = String::from_utf8(Response::status(431).encode(false).to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(text.ends_with("\r\n\r\nRequest Header Fields Too Large\n"));
    }
}
