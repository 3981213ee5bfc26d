//! The REST calls a chat run needs (register, create a group, add a member), over a minimal
//! HTTP/1.1 client: JSON bodies with `Content-Length`, keep-alive connections, loopback only.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use bytes::{Buf as _, BytesMut};
use chatgroup_protocol::rest::{AddMember, CreateConversation, Credentials, ErrorBody, Session};
use chatgroup_protocol::{ConversationId, ConversationInfo};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The largest response head or body accepted.
const MAX_RESPONSE: usize = 16 << 20;

/// One keep-alive HTTP connection to the server (opened on first use, reopened when the
/// server closes it).
#[derive(Debug)]
pub(crate) struct Api {
    addr: SocketAddr,
    timeout: Duration,
    stream: Option<TcpStream>,
    buf: BytesMut,
}

/// A response: status and body.
#[derive(Debug)]
struct Response {
    status: u16,
    body: BytesMut,
}

impl Api {
    /// A client for the server at `addr`; every request is bounded by `timeout`.
    pub(crate) fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Self {
            addr,
            timeout,
            stream: None,
            buf: BytesMut::with_capacity(4096),
        }
    }

    /// `POST /api/register` → the new user's session.
    pub(crate) async fn register(
        &mut self,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Session> {
        let creds = Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        self.call("POST", "/api/register", None, &creds, 201)
            .await
            .with_context(|| format!("registering {username}"))
    }

    /// `POST /api/conversations {kind:"group", name, members}` as the owner.
    pub(crate) async fn create_group(
        &mut self,
        token: &str,
        name: &str,
        members: &[String],
    ) -> anyhow::Result<ConversationInfo> {
        let request = CreateConversation::Group {
            name: name.to_owned(),
            members: members.to_vec(),
        };
        self.call("POST", "/api/conversations", Some(token), &request, 201)
            .await
            .with_context(|| format!("creating group {name:?}"))
    }

    /// `POST /api/conversations/{id}/members {username}` as the owner.
    pub(crate) async fn add_member(
        &mut self,
        token: &str,
        conversation: ConversationId,
        username: &str,
    ) -> anyhow::Result<ConversationInfo> {
        let request = AddMember {
            username: username.to_owned(),
        };
        let path = format!("/api/conversations/{conversation}/members");
        self.call("POST", &path, Some(token), &request, 200)
            .await
            .with_context(|| format!("adding {username} to conversation {conversation}"))
    }

    /// The value of the counter or gauge `name` on `GET /metrics` (Prometheus text format;
    /// the first sample of that name, labels ignored).
    pub(crate) async fn metric(&mut self, name: &str) -> anyhow::Result<f64> {
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            self.addr
        );
        let response = tokio::time::timeout(self.timeout, self.exchange(request.as_bytes()))
            .await
            .context("GET /metrics: no answer in time")??;
        ensure!(
            response.status == 200,
            "GET /metrics: status {}",
            response.status
        );
        let text = std::str::from_utf8(&response.body).context("/metrics is not UTF-8")?;
        sample(text, name).with_context(|| format!("no {name} on /metrics"))
    }

    /// One JSON request; the answer must have status `expect`.
    async fn call<T: Serialize, R: DeserializeOwned>(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: &T,
        expect: u16,
    ) -> anyhow::Result<R> {
        let body = serde_json::to_vec(body)?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(token) = bearer {
            request.push_str("Authorization: Bearer ");
            request.push_str(token);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(&body);
        let response = tokio::time::timeout(self.timeout, self.exchange(&bytes))
            .await
            .with_context(|| format!("{method} {path}: no answer within {:?}", self.timeout))??;
        if response.status != expect {
            let why = match serde_json::from_slice::<ErrorBody>(&response.body) {
                Ok(e) => format!("{}: {}", e.error.as_str(), e.message),
                Err(_) => String::from_utf8_lossy(&response.body[..response.body.len().min(200)])
                    .into_owned(),
            };
            bail!("{method} {path}: status {} ({why})", response.status);
        }
        serde_json::from_slice(&response.body)
            .with_context(|| format!("{method} {path}: unexpected answer"))
    }

    /// Writes one request and reads its response. A reused connection that the server
    /// closed while idle (nothing at all read back) is replaced once: the request was not
    /// processed.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Response> {
        let reused = self.stream.is_some();
        match self.exchange_once(request).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) if reused => {
                self.stream = None;
                self.exchange_once(request)
                    .await?
                    .context("the server closed the connection without answering")
            }
            Ok(None) => bail!("the server closed the connection without answering"),
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }

    /// `Ok(None)`: the connection closed before any byte of a response.
    async fn exchange_once(&mut self, request: &[u8]) -> anyhow::Result<Option<Response>> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await.context("connect")?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().expect("connected above");
        if stream.write_all(request).await.is_err() {
            return Ok(None);
        }
        self.buf.clear();
        let (head_len, status, length, close) = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            ensure!(self.buf.len() < MAX_RESPONSE, "response head too large");
            let n = match stream.read_buf(&mut self.buf).await {
                Ok(n) => n,
                Err(_) if self.buf.is_empty() => return Ok(None),
                Err(e) => return Err(e).context("read response"),
            };
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                bail!("the server closed the connection in the middle of a response");
            }
        };
        ensure!(length <= MAX_RESPONSE, "response body of {length} bytes");
        self.buf.advance(head_len);
        while self.buf.len() < length {
            if stream.read_buf(&mut self.buf).await.context("read body")? == 0 {
                bail!("the server closed the connection in the middle of a body");
            }
        }
        let body = self.buf.split_to(length);
        if close {
            self.stream = None;
        }
        Ok(Some(Response { status, body }))
    }
}

/// Parses a response head when complete: (head length, status, Content-Length, whether the
/// server closes after it).
fn parse_head(buf: &[u8]) -> anyhow::Result<Option<(usize, u16, usize, bool)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    ensure!(
        version.starts_with("HTTP/1."),
        "not an HTTP/1 response: {status_line:?}"
    );
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = 0;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().context("bad Content-Length")?;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("Transfer-Encoding {value:?} is not supported");
        }
    }
    Ok(Some((end + 4, status, length, close)))
}

/// The first sample of `name` in a Prometheus text exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        // `name value` or `name{labels} value`; not a longer name sharing the prefix.
        let rest = match rest.as_bytes().first()? {
            b' ' => rest,
            b'{' => &rest[rest.find('}')? + 1..],
            _ => return None,
        };
        rest.split_ascii_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_metric_samples() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total_x 9\na_total 42\n\
                    b{kind=\"x\"} 1.5\n";
        assert_eq!(sample(text, "a_total"), Some(42.0));
        assert_eq!(sample(text, "b"), Some(1.5));
        assert_eq!(sample(text, "c"), None);
    }

    #[test]
    fn parses_response_heads() {
        assert!(parse_head(b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n")
            .unwrap()
            .is_none());
        let head = b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\nConnection: close\r\n\r\nhello";
        assert_eq!(
            parse_head(head).unwrap(),
            Some((head.len() - 5, 201, 5, true))
        );
        let head = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), Some((head.len(), 204, 0, false)));
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn keeps_the_connection_and_reads_json() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            for _ in 0..2 {
                // One request per loop: head, then the 2-byte body "{}"-like JSON.
                loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = std::str::from_utf8(&buf[..end]).unwrap().to_owned();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .parse()
                            .unwrap();
                        if buf.len() >= end + 4 + len {
                            buf.drain(..end + 4 + len);
                            break;
                        }
                    }
                }
                let body = br#"{"id":7,"kind":"group","name":"g","members":[],"lastSeq":0}"#;
                let head = format!(
                    "HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).await.unwrap();
                s.write_all(body).await.unwrap();
            }
        });
        let mut api = Api::new(addr, Duration::from_secs(5));
        for _ in 0..2 {
            let info = api.create_group("t", "g", &[]).await.unwrap();
            assert_eq!(info.id, ConversationId(7));
        }
        server.await.unwrap();
    }
}
