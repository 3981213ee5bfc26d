//! Arbitrary bytes never hurt the server. Every garbage connection ends (with an HTTP error,
//! a valid close frame, or the connection dropped), and afterwards the server still serves
//! everyone else with nothing leaked.
//!
//! The inputs come from a fixed-seed generator, so a failure reproduces exactly.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::join_all;
use rfc6455::{CloseCode, Event, Frame, OpCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::support::{echo_test_config, eventually, http, Server, TestClient, WAIT};

/// A small deterministic generator (64-bit LCG, high bits out).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next()).expect("64-bit usize") % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A request head mangled one of several ways, or plain noise.
fn garbage_request(rng: &mut Lcg) -> Vec<u8> {
    let mut req = UPGRADE.as_bytes().to_vec();
    match rng.below(6) {
        0 => {
            let n = 1 + rng.below(3000);
            rng.bytes(n)
        }
        1 => {
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(req.len());
                req[at] = rng.next() as u8;
            }
            req
        }
        2 => {
            req.truncate(rng.below(req.len()));
            req
        }
        3 => {
            let at = rng.below(req.len());
            let n = rng.below(64);
            let noise = rng.bytes(n);
            req.splice(at..at, noise);
            req
        }
        4 => {
            // A huge header value: past the head limit.
            let at = UPGRADE.find("\r\n\r\n").expect("head end");
            let big = format!("\r\nX-Big: {}", "a".repeat(9000 + rng.below(4000)));
            req.splice(at..at, big.into_bytes());
            req
        }
        _ => {
            let at = rng.below(req.len());
            req.insert(at, if rng.below(2) == 0 { b'\r' } else { b'\n' });
            req
        }
    }
}

/// Writes `bytes`, half the time followed by a FIN, then reads until the server ends the
/// connection. Returns what the server sent.
async fn blast(addr: SocketAddr, bytes: Vec<u8>, fin: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may close before reading everything; that is its right.
    let _ = stream.write_all(&bytes).await;
    if fin {
        let _ = stream.shutdown().await;
    }
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match timeout(WAIT, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "server kept a garbage connection open past {WAIT:?} (fin: {fin}, input {:?})",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        }
    }
}

/// After abuse: nothing leaked, health is fine, and two members of a `/broadcast`
/// conversation can still talk.
async fn still_serving(server: &Server) {
    eventually("every garbage connection released", || async {
        server.metric("chatgroup_connections_open").await == 0
    })
    .await;
    assert_eq!(
        http(server.addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .status,
        200
    );
    let mut a = TestClient::connect(server.addr, "/broadcast?conversation_id=77").await;
    let mut b = TestClient::connect(server.addr, "/broadcast?conversation_id=77").await;
    // b speaks first so a's receipt proves b's join; then the other way round.
    b.send_text("b here").await;
    assert_eq!(a.expect_text().await, "b here");
    a.send_text("still here").await;
    assert_eq!(b.expect_text().await, "still here");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn garbage_requests_get_an_answer_or_a_close_and_change_nothing() {
    let mut cfg = echo_test_config();
    cfg.handshake_timeout = Duration::from_secs(1);
    let server = Server::start(cfg).await;
    let mut rng = Lcg(0x6a7b_a6e5);
    let cases: Vec<(Vec<u8>, bool)> = (0..200)
        .map(|i| (garbage_request(&mut rng), i % 2 == 0))
        .collect();
    let answers = join_all(
        cases
            .into_iter()
            .map(|(bytes, fin)| blast(server.addr, bytes, fin)),
    )
    .await;
    for answer in &answers {
        // Whatever came back starts as an HTTP response (a mangled request can still be a
        // valid upgrade or a valid request for another route).
        if !answer.is_empty() {
            assert!(
                answer.starts_with(b"HTTP/1.1 "),
                "not an HTTP response: {:?}",
                String::from_utf8_lossy(&answer[..answer.len().min(100)])
            );
        }
    }
    still_serving(&server).await;
    server.stop().await;
}

/// A frame stream mangled one of several ways, or plain noise, as a client would send it.
fn garbage_frames(rng: &mut Lcg) -> Vec<u8> {
    let mut out = BytesMut::new();
    for _ in 0..1 + rng.below(4) {
        let opcode = [
            OpCode::Text,
            OpCode::Binary,
            OpCode::Ping,
            OpCode::Continuation,
        ][rng.below(4)];
        let len = [0, 1, 125, 126, 70_000][rng.below(5)];
        let frame = Frame::new(opcode, rng.bytes(len)).with_fin(rng.below(3) != 0);
        let key = (rng.next() as u32).to_ne_bytes();
        frame.encode(Some(key), &mut out);
    }
    let mut bytes = out.to_vec();
    match rng.below(4) {
        0 => {
            let n = 1 + rng.below(2000);
            rng.bytes(n)
        }
        1 => {
            for _ in 0..1 + rng.below(6) {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
            }
            bytes
        }
        2 => {
            bytes.truncate(rng.below(bytes.len()));
            bytes
        }
        _ => bytes,
    }
}

#[tokio::test]
async fn garbage_frames_end_in_a_valid_close_and_change_nothing() {
    let server = Server::start(echo_test_config()).await;
    let mut rng = Lcg(0x00f4_a3e5);
    let mut clients = Vec::new();
    for i in 0..100 {
        // Half on the chat socket, half on the relay, whose messages go through the hub.
        let path = if i % 2 == 0 {
            "/ws"
        } else {
            "/broadcast?conversation_id=1"
        };
        clients.push((
            TestClient::connect(server.addr, path).await,
            garbage_frames(&mut rng),
        ));
    }
    let outcomes = join_all(clients.into_iter().map(|(mut client, bytes)| async move {
        // The server may refuse the stream before reading all of it; that is its right.
        let _ = client.stream.write_all(&bytes).await;
        // A FIN after the garbage: every connection must end, with frames the client's own
        // strict reader accepts (it panics on an invalid frame or close code from the server).
        let _ = client.stream.shutdown().await;
        let mut close = None;
        while let Some(event) = timeout(WAIT, client.next_event())
            .await
            .expect("the server ends a garbage connection")
        {
            if let Event::Close(frame) = event {
                close = Some(frame.map_or(CloseCode::NO_STATUS, |f| f.code));
            }
        }
        close
    }))
    .await;
    // Most inputs break a rule; those must be closed with a code the RFC assigns to one.
    let closed: Vec<CloseCode> = outcomes.into_iter().flatten().collect();
    assert!(!closed.is_empty(), "no garbage stream was refused at all");
    for code in closed {
        assert!(
            [
                CloseCode::NORMAL,
                CloseCode::PROTOCOL_ERROR,
                CloseCode::UNSUPPORTED_DATA,
                CloseCode::INVALID_PAYLOAD,
                CloseCode::MESSAGE_TOO_BIG,
            ]
            .contains(&code),
            "unexpected close code {code:?}"
        );
    }
    still_serving(&server).await;
    server.stop().await;
}
