//! The HTTP/1.1 side of the single port: reading request heads and bodies within limits,
//! routing, and writing responses. Request heads are parsed by the codec
//! ([`rfc6455::parse_request`]); this module never parses bytes itself.

pub(crate) mod api;
pub(crate) mod query;
pub(crate) mod response;
pub(crate) mod route;

use bytes::BytesMut;
use rfc6455::{parse_request, HandshakeError, HeadLimits, RequestHead};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed or the socket failed.
    Closed,
    /// The head is malformed or over a limit (431 or 400).
    Head(HandshakeError),
    /// The body is larger than allowed.
    BodyTooLarge,
    /// `Transfer-Encoding` is not supported (only `Content-Length` bodies are).
    TransferEncoding,
}

/// Sizes of one complete request at the front of the buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLen {
    pub(crate) head: usize,
    pub(crate) body: usize,
}

/// Reads until the buffer holds a complete request head and its `Content-Length` body.
/// The caller bounds the time (slowloris guard).
pub(crate) async fn read_request(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    limits: &HeadLimits,
    max_body: usize,
) -> Result<RequestLen, ReadError> {
    let head = loop {
        if !buf.is_empty() {
            match parse_request(buf, limits) {
                Ok(Some((head, len))) => break (len, body_len(&head, max_body)?),
                Ok(None) => {}
                Err(e) => return Err(ReadError::Head(e)),
            }
        }
        read_more(stream, buf, 1024).await?;
    };
    let (head, body) = head;
    while buf.len() < head + body {
        read_more(stream, buf, (head + body - buf.len()).min(16 * 1024)).await?;
    }
    Ok(RequestLen { head, body })
}

fn body_len(head: &RequestHead<'_>, max_body: usize) -> Result<usize, ReadError> {
    if head.header("transfer-encoding").is_some() {
        return Err(ReadError::TransferEncoding);
    }
    match head.content_length() {
        Err(e) => Err(ReadError::Head(e)),
        Ok(None) => Ok(0),
        Ok(Some(n)) => usize::try_from(n)
            .ok()
            .filter(|n| *n <= max_body)
            .ok_or(ReadError::BodyTooLarge),
    }
}

async fn read_more(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    want: usize,
) -> Result<(), ReadError> {
    buf.reserve(want);
    match stream.read_buf(buf).await {
        Ok(0) | Err(_) => Err(ReadError::Closed),
        Ok(_) => Ok(()),
    }
}

/// Whether the connection should close after this response (RFC 9112 §9.3): HTTP/1.0
/// closes unless it asked for keep-alive; HTTP/1.1 stays open unless it asked to close.
pub(crate) fn wants_close(head: &RequestHead<'_>) -> bool {
    let has = |token: &str| {
        head.header_all("connection").any(|v| {
            v.split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if head.version == 0 {
        !has("keep-alive")
    } else {
        has("close")
    }
}
