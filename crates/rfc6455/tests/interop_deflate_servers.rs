//! Interop of our client role with permessage-deflate servers we did not write: Node `ws`
//! and Python `websockets` echo servers (`tests/interop/deflate_echo_server.*`), each run as
//! a process on a free port.
//!
//! Our side is the sans-IO codec over a plain `TcpStream`: `ClientHandshake::with_deflate`
//! makes the offer and checks the answer, a `Writer` compresses what we send (keeping
//! context unless the server was asked not to) and a `Reader` inflates what the server's
//! zlib sends back, with its history across messages. Every echo must come back byte for
//! byte, and compressed.
//!
//! `bash scripts/test.sh` installs both servers' libraries. Run directly on a machine without
//! them, a test prints why it skipped; under CI (`CI` set) a missing one fails the test.
#![cfg(feature = "deflate")]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rfc6455::deflate::{DeflateOffer, MessageCompressor};
use rfc6455::{ClientHandshake, CodecConfig, Event, Frame, Message, OpCode, Reader, Writer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

/// The Python with `websockets`, as in `interop_clients.rs`.
fn python() -> String {
    if let Ok(p) = std::env::var("CHATGROUP_PYTHON") {
        return p;
    }
    let venv = interop_dir().join(".venv/bin/python");
    if venv.is_file() {
        venv.to_string_lossy().into_owned()
    } else {
        "python3".to_owned()
    }
}

async fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

fn missing(what: &str) {
    let hint = format!("{what} is not installed (bash scripts/test.sh installs it)");
    assert!(std::env::var_os("CI").is_none(), "{hint}");
    eprintln!("SKIPPED: {hint}");
}

/// Starts a server script and waits for its "listening PORT" line.
async fn start(program: &str, script: &str) -> (Child, u16) {
    let dir = interop_dir();
    let mut child = Command::new(program)
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("NODE_PATH", dir.join("node_modules"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} {script}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let line = timeout(WAIT, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{script} did not start listening"))
        .unwrap()
        .unwrap_or_default();
    let port = line
        .strip_prefix("listening ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{script} printed {line:?}"));
    (child, port)
}

/// Chat-like JSON of about `len` bytes.
fn json(len: usize, seed: usize) -> String {
    let mut s = String::from("[");
    let mut i = seed;
    while s.len() < len {
        s.push_str(&format!(
            r#"{{"type":"new_message","id":{i},"from":"user-{}","body":"grüße {i}, see you"}},"#,
            i % 7
        ));
        i += 1;
    }
    s.push_str("{}]");
    s
}

/// A connection on our codec in the client role, with deflate as agreed.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
    reader: Reader,
    writer: Writer,
    agreed: rfc6455::deflate::DeflateParams,
}

impl Client {
    async fn connect(port: u16, offer: DeflateOffer) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let hs = ClientHandshake::new(&format!("127.0.0.1:{port}"), "/", *b"interop deflate!")
            .with_deflate(offer);
        let mut out = BytesMut::new();
        hs.write_request(&mut out).unwrap();
        stream.write_all(&out).await.unwrap();
        let mut buf = BytesMut::new();
        let answer = loop {
            if let Some((answer, used)) = hs.parse_response(&buf).unwrap() {
                buf.advance(used);
                break answer;
            }
            let n = timeout(WAIT, stream.read_buf(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "the server closed during the handshake");
        };
        let agreed = answer
            .deflate
            .expect("the server agrees to permessage-deflate");
        let cfg = CodecConfig::client()
            .with_max_message_len(64 << 20)
            .with_deflate(agreed);
        let mut n = 0u32;
        let writer = Writer::client(move || {
            n = n.wrapping_add(0x9E37_79B9);
            n.to_be_bytes()
        })
        .with_deflate(agreed);
        Self {
            stream,
            buf,
            reader: Reader::new(cfg),
            writer,
            agreed,
        }
    }

    async fn send_compressed(&mut self, message: &Message) {
        let mut out = BytesMut::new();
        self.writer
            .compressed(message.opcode(), message.as_bytes(), &mut out)
            .unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next message and whether it came compressed.
    async fn next_message(&mut self) -> (Message, bool) {
        loop {
            match self.reader.read(&mut self.buf).unwrap() {
                Some(Event::Message(m)) => return (m, self.reader.last_compressed().is_some()),
                Some(other) => panic!("unexpected {other:?}"),
                None => {}
            }
            let n = timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("an echo in time")
                .unwrap();
            assert!(n > 0, "the server closed the connection");
        }
    }
}

async fn echo_round_trips(program: &str, script: &str) {
    let (mut server, port) = start(program, script).await;
    for offer in [
        // What a client on our pure-Rust deflate can honour: no client window limit.
        DeflateOffer::default(),
        DeflateOffer {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateOffer::default()
        },
    ] {
        let mut client = Client::connect(port, offer).await;
        let what = format!("{script} agreed {}", client.agreed.header_value());
        // Both servers keep context unless asked not to: our reader must keep its history.
        assert_eq!(
            client.agreed.server_no_context_takeover, offer.server_no_context_takeover,
            "{what}"
        );
        let mut messages = Vec::new();
        for (i, len) in [0, 10, 300, 4000, 70_000, 1 << 20].into_iter().enumerate() {
            messages.push(Message::Text(json(len, i).into()));
            let bin: Vec<u8> = (0..len).map(|j| (j * 7 + (j >> 9)) as u8).collect();
            messages.push(Message::Binary(bin.into()));
        }
        // Repeats: with context takeover both sides refer back into earlier messages.
        for _ in 0..3 {
            messages.push(Message::Text(json(600, 42).into()));
        }
        for m in &messages {
            client.send_compressed(m).await;
            let (echo, compressed) = client.next_message().await;
            assert_eq!(&echo, m, "{what}");
            assert!(compressed, "{what}: the echo came back compressed");
        }
        // A compressed message in fragments (RSV1 on the first only), and a plain one.
        let text = json(5000, 7);
        let mut packed = BytesMut::new();
        MessageCompressor::new(true).compress(text.as_bytes(), &mut packed);
        let packed = packed.freeze();
        let third = packed.len() / 3;
        let mut out = BytesMut::new();
        for (i, range) in [0..third, third..2 * third, 2 * third..packed.len()]
            .into_iter()
            .enumerate()
        {
            let op = if i == 0 {
                OpCode::Text
            } else {
                OpCode::Continuation
            };
            let mut frame = Frame::new(op, packed.slice(range)).with_fin(i == 2);
            frame.rsv = if i == 0 { 0b100 } else { 0 };
            frame.encode(Some([1, 2, 3, 4]), &mut out);
        }
        // Compressed from empty history: valid either way, and the last compressed message
        // we send, so our writer's history need not include it.
        client.send_raw(&out).await;
        assert_eq!(client.next_message().await.0, Message::Text(text.into()));
        let mut out = BytesMut::new();
        client.writer.text("plain text", &mut out).unwrap();
        client.send_raw(&out).await;
        assert_eq!(
            client.next_message().await.0,
            Message::Text("plain text".into())
        );
    }
    let _ = server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_node_ws_with_permessage_deflate() {
    if !interop_dir().join("node_modules/ws/package.json").is_file() {
        return missing("the Node ws server (npm ci --prefix tests/interop)");
    }
    if !runs("node", &["--version"]).await {
        return missing("node");
    }
    echo_round_trips("node", "deflate_echo_server.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_python_websockets_with_permessage_deflate() {
    let python = python();
    if !runs(&python, &["-c", "import websockets.asyncio.server"]).await {
        return missing(&format!("{python} with the websockets package"));
    }
    echo_round_trips(&python, "deflate_echo_server.py").await;
}
