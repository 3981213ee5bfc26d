//! Test harness: start the server in-process on 127.0.0.1:0, a WebSocket client built on our
//! codec (`Role::Client`) that can also send illegal bytes, and raw HTTP helpers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use chatgroup_server::Config;
use rfc6455::deflate::{CompressedSize, DeflateOffer, DeflateParams, MessageCompressor};
use rfc6455::{
    ClientHandshake, ClientHandshakeError, CloseCode, CloseFrame, CodecConfig, Event, Frame,
    Message, OpCode, Reader, Role,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Upper bound for any single wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A config with short timers, suitable for tests.
pub(crate) fn test_config() -> Config {
    let mut cfg = Config::default();
    cfg.handshake_timeout = Duration::from_secs(5);
    cfg.close_timeout = Duration::from_secs(1);
    cfg.shutdown_grace = Duration::from_secs(5);
    cfg.data_dir = scratch_dir();
    cfg
}

/// [`test_config`] with `--echo`: also serves the test sockets `/echo` and `/broadcast`.
pub(crate) fn echo_test_config() -> Config {
    let mut cfg = test_config();
    cfg.echo = true;
    cfg
}

/// A fresh data directory under the system temp dir: each server gets its own (a data
/// directory is locked by the store using it). Removed again by [`Server::stop`].
pub(crate) fn scratch_dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("chatgroup-e2e-scratch-{}-{n}", std::process::id()))
}

/// A server running in this process.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    data_dir: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), chatgroup_server::Error>>>,
}

impl Server {
    pub(crate) async fn start(cfg: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let data_dir = cfg.data_dir.clone();
        let task = tokio::spawn(chatgroup_server::run(cfg, listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Graceful shutdown; panics if it does not finish in time.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        timeout(WAIT, task)
            .await
            .expect("server shut down in time")
            .expect("server task")
            .expect("server result");
        if self
            .data_dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("chatgroup-e2e-scratch-"))
        {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }

    /// The current value of a `/metrics` sample.
    pub(crate) async fn metric(&self, name: &str) -> u64 {
        let resp = http(
            self.addr,
            "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(resp.status, 200);
        resp.body
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("metric {name} missing"))
            .trim()
            .parse()
            .unwrap()
    }
}

/// Polls `check` until it returns true or the wait bound passes.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

/// Sends raw bytes as a request on a fresh connection and reads one response.
pub(crate) async fn http(addr: SocketAddr, raw: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = BytesMut::new();
    read_response(&mut stream, &mut buf)
        .await
        .expect("a response")
}

/// Reads one `Content-Length` response from a stream (keep-alive aware).
pub(crate) async fn read_response(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Option<HttpResponse> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                buf.advance(end + 4 + len);
                return Some(HttpResponse { status, head, body });
            }
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(_)) => {}
            Err(_) => panic!("no complete response within {WAIT:?}"),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

static NONCE: AtomicU32 = AtomicU32::new(1);

fn next_mask() -> [u8; 4] {
    let n = NONCE
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(2_654_435_761);
    n.to_le_bytes()
}

/// What came back from the server for a connection attempt.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // short-lived test value; boxing would only add noise
pub(crate) enum Connect {
    Open(TestClient),
    Refused(u16),
}

/// A WebSocket client on the `rfc6455` codec in the client role.
pub(crate) struct TestClient {
    pub(crate) stream: TcpStream,
    buf: BytesMut,
    reader: Reader,
    /// permessage-deflate as the server agreed to it, with the compressor for our side.
    deflate: Option<(DeflateParams, MessageCompressor)>,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient").finish_non_exhaustive()
    }
}

impl TestClient {
    /// Connects and upgrades; panics if the server refuses.
    pub(crate) async fn connect(addr: SocketAddr, path: &str) -> Self {
        match Self::try_connect(addr, path, &[]).await {
            Connect::Open(c) => c,
            Connect::Refused(status) => panic!("handshake to {path} refused with {status}"),
        }
    }

    /// Connects with extra request headers; reports a refusal's HTTP status.
    pub(crate) async fn try_connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Connect {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        Self::handshake_on(stream, addr, path, headers).await
    }

    /// Connects offering permessage-deflate; the client then inflates what the server
    /// compresses and can send compressed messages itself ([`TestClient::send_compressed`]).
    pub(crate) async fn connect_deflate(addr: SocketAddr, path: &str, offer: DeflateOffer) -> Self {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        match Self::handshake_with(stream, addr, path, &[], Some(offer)).await {
            Connect::Open(c) => c,
            Connect::Refused(status) => panic!("handshake to {path} refused with {status}"),
        }
    }

    /// Runs the opening handshake on an existing stream.
    pub(crate) async fn handshake_on(
        stream: TcpStream,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Connect {
        Self::handshake_with(stream, addr, path, headers, None).await
    }

    async fn handshake_with(
        mut stream: TcpStream,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        deflate: Option<DeflateOffer>,
    ) -> Connect {
        let mut nonce = [0u8; 16];
        for chunk in nonce.chunks_mut(4) {
            chunk.copy_from_slice(&next_mask());
        }
        let mut hs = ClientHandshake::new(&addr.to_string(), path, nonce);
        for (name, value) in headers {
            hs = hs.with_header(name, value);
        }
        if let Some(offer) = deflate {
            hs = hs.with_deflate(offer);
        }
        let mut out = BytesMut::new();
        hs.write_request(&mut out).expect("a well-formed request");
        stream.write_all(&out).await.unwrap();
        let mut buf = BytesMut::new();
        loop {
            match hs.parse_response(&buf) {
                Ok(Some((answer, used))) => {
                    buf.advance(used);
                    let mut cfg = CodecConfig::client()
                        .with_max_message_len(64 << 20)
                        .with_max_frame_len(64 << 20);
                    if let Some(agreed) = answer.deflate {
                        cfg = cfg.with_deflate(agreed);
                    }
                    let deflate = answer.deflate.map(|agreed| {
                        let fresh = agreed.compress_no_context_takeover(Role::Client);
                        (agreed, MessageCompressor::new(fresh))
                    });
                    return Connect::Open(Self {
                        stream,
                        buf,
                        reader: Reader::new(cfg),
                        deflate,
                    });
                }
                Ok(None) => {}
                Err(ClientHandshakeError::Status(code)) => return Connect::Refused(code),
                Err(e) => panic!("bad handshake response: {e}"),
            }
            let n = timeout(WAIT, stream.read_buf(&mut buf))
                .await
                .expect("handshake response in time")
                .unwrap();
            assert!(n > 0, "server closed during handshake");
        }
    }

    /// Sends a frame, masked as a client must.
    pub(crate) async fn send_frame(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        frame.encode(Some(next_mask()), &mut out);
        self.send_raw(&out).await;
    }

    /// What the server agreed to for permessage-deflate, if anything.
    pub(crate) fn deflate(&self) -> Option<DeflateParams> {
        self.deflate.as_ref().map(|(agreed, _)| *agreed)
    }

    /// Sends a whole message compressed (RSV1), as agreed; panics without an agreement.
    pub(crate) async fn send_compressed(&mut self, opcode: OpCode, payload: &[u8]) {
        let (_, compressor) = self.deflate.as_mut().expect("deflate agreed");
        let mut out = BytesMut::new();
        compressor
            .frame(opcode, payload, Some(next_mask()), &mut out)
            .expect("a data opcode");
        self.send_raw(&out).await;
    }

    /// The compressed and inflated sizes of the last message received, when the server
    /// sent it compressed.
    pub(crate) fn last_compressed(&self) -> Option<CompressedSize> {
        self.reader.last_compressed()
    }

    /// Sends raw bytes (may be illegal).
    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to server");
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.send_frame(&Frame::text(text.to_owned())).await;
    }

    /// The next event, or `None` at end of stream. Protocol pings are answered and skipped.
    pub(crate) async fn next_event(&mut self) -> Option<Event> {
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(Some(Event::Ping(p))) => {
                    self.send_frame(&Frame::pong(p)).await;
                    continue;
                }
                Ok(Some(event)) => return Some(event),
                Ok(None) => {}
                Err(e) => panic!("server sent an invalid frame: {e}"),
            }
            let n = match timeout(WAIT, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => 0, // reset counts as the end
                Err(_) => panic!("no event from the server within {WAIT:?}"),
            };
            if n == 0 {
                return None;
            }
        }
    }

    /// Like [`next_event`], but returns `Err(())` if nothing arrives within `wait`.
    pub(crate) async fn next_event_within(&mut self, wait: Duration) -> Result<Option<Event>, ()> {
        timeout(wait, self.next_event()).await.map_err(|_| ())
    }

    /// The next text message; panics on anything else.
    pub(crate) async fn expect_text(&mut self) -> String {
        match self.next_event().await {
            Some(Event::Message(Message::Text(t))) => t.as_str().to_owned(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Expects a Close with `code`, answers it, and waits for the server to close TCP.
    pub(crate) async fn expect_close(&mut self, code: CloseCode) {
        match self.next_event().await {
            Some(Event::Close(Some(CloseFrame { code: got, .. }))) => {
                assert_eq!(got, code, "close code")
            }
            other => panic!("expected close {code:?}, got {other:?}"),
        }
        let mut out = BytesMut::new();
        Frame::close(Some(&CloseFrame::new(code, ""))).encode(Some(next_mask()), &mut out);
        let _ = self.stream.write_all(&out).await;
        self.expect_eof().await;
    }

    /// Waits until the server closes the TCP connection, discarding anything else.
    pub(crate) async fn expect_eof(&mut self) {
        let mut scratch = vec![0u8; 64 * 1024];
        loop {
            match timeout(WAIT, self.stream.read(&mut scratch)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => panic!("server did not close the connection within {WAIT:?}"),
            }
        }
    }

    /// Starts a clean close from the client side.
    pub(crate) async fn close(mut self) {
        self.send_frame(&Frame::close(Some(&CloseFrame::new(
            CloseCode::NORMAL,
            "bye",
        ))))
        .await;
        // Messages already in flight may arrive before the reply.
        while let Some(event) = self.next_event().await {
            if let Event::Close(_) = event {
                break;
            }
        }
    }
}
