//! Interop with tokio-tungstenite, a peer we did not write, over real sockets on 127.0.0.1:
//! - a tokio-tungstenite client against our echo server (the `echo_server` example, in-process);
//! - our client (the tokio adapter) against a tokio-tungstenite echo server.
//!
//! Both run the same matrix: text and binary echo at the framing boundaries (0, 125, 126, 127,
//! 65535, 65536 bytes) and at 4 MiB, multi-byte UTF-8, a fragmented message, pings both ways,
//! and the closing handshake started by either side with its code echoed.

#[path = "../examples/echo_server.rs"]
#[allow(dead_code)]
mod echo_server;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rfc6455::io::{connect, ConnectConfig, WebSocket};
use rfc6455::{CloseCode, Event, Message};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{
    CloseCode as TCloseCode, Data, OpCode,
};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame as TCloseFrame, Frame};
use tokio_tungstenite::tungstenite::Message as TMessage;

/// Payload sizes around every length-encoding boundary, and one large message.
const SIZES: [usize; 8] = [0, 1, 125, 126, 127, 65535, 65536, 4 << 20];
/// Every test is over well before this; a hang fails instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("the exchange finished in time")
}

/// `len` bytes of a pattern that is not periodic in 4 (a masking bug shows).
fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// `len` bytes of printable ASCII.
fn text(len: usize) -> String {
    blob(len, 3)
        .into_iter()
        .map(|b| char::from(b'!' + b % 90))
        .collect()
}

const MULTIBYTE: &str = "héllo wörld — € 𝄞 κόσμε";

// ---------------------------------------------------------------------------------------------
// tokio-tungstenite client -> our server

async fn start_our_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo_server::serve(listener));
    addr
}

type TClient =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn tungstenite_client(addr: SocketAddr) -> TClient {
    let (ws, response) = tokio_tungstenite::connect_async(format!("ws://{addr}/echo"))
        .await
        .expect("our server completes tungstenite's handshake");
    assert_eq!(response.status(), 101);
    ws
}

async fn next_of(ws: &mut TClient) -> TMessage {
    ws.next()
        .await
        .expect("the connection is still open")
        .expect("a valid frame from our server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tungstenite_client_gets_every_size_echoed() {
    bounded(async {
        let mut ws = tungstenite_client(start_our_echo_server().await).await;
        for len in SIZES {
            let sent = text(len);
            ws.send(TMessage::text(sent.clone())).await.unwrap();
            match next_of(&mut ws).await {
                TMessage::Text(got) => assert!(got.as_str() == sent, "text of {len} bytes"),
                other => panic!("text of {len} bytes came back as {other:?}"),
            }
            let sent = blob(len, len as u8);
            ws.send(TMessage::binary(sent.clone())).await.unwrap();
            match next_of(&mut ws).await {
                TMessage::Binary(got) => assert!(got[..] == sent[..], "binary of {len} bytes"),
                other => panic!("binary of {len} bytes came back as {other:?}"),
            }
        }
        ws.send(TMessage::text(MULTIBYTE)).await.unwrap();
        assert_eq!(next_of(&mut ws).await, TMessage::text(MULTIBYTE));
    })
    .await;
}

#[tokio::test]
async fn tungstenite_client_fragments_pings_and_closes() {
    bounded(async {
        let mut ws = tungstenite_client(start_our_echo_server().await).await;

        // A text message in three fragments, the middle one empty, the split inside "ö".
        let parts: [(&[u8], OpCode, bool); 3] = [
            (b"Hello, w\xc3", OpCode::Data(Data::Text), false),
            (b"", OpCode::Data(Data::Continue), false),
            (b"\xb6rld", OpCode::Data(Data::Continue), true),
        ];
        for (payload, opcode, fin) in parts {
            let frame = Frame::message(payload.to_vec(), opcode, fin);
            ws.send(TMessage::Frame(frame)).await.unwrap();
        }
        assert_eq!(next_of(&mut ws).await, TMessage::text("Hello, wörld"));

        ws.send(TMessage::Ping(b"are you there?"[..].into()))
            .await
            .unwrap();
        assert_eq!(
            next_of(&mut ws).await,
            TMessage::Pong(b"are you there?"[..].into())
        );

        ws.close(Some(TCloseFrame {
            code: TCloseCode::from(4000),
            reason: "bye".into(),
        }))
        .await
        .unwrap();
        match next_of(&mut ws).await {
            TMessage::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4000),
            other => panic!("expected the close echo, got {other:?}"),
        }
        // Our server closes the TCP connection after the handshake.
        assert!(ws.next().await.is_none_or(|r| r.is_err()));
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// our client -> tokio-tungstenite server

/// Commands the tungstenite server understands besides echoing.
const PING_ME: &str = "please ping me";
const CLOSE_ME: &str = "please close";

/// A tokio-tungstenite echo server. On `PING_ME` it pings the client and, once the pong
/// arrives, reports its payload as a text message; on `CLOSE_ME` it closes with 1001.
async fn start_tungstenite_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(tungstenite_echo(tcp));
        }
    });
    addr
}

async fn tungstenite_echo(tcp: TcpStream) {
    let mut ws = tokio_tungstenite::accept_async(tcp)
        .await
        .expect("tungstenite accepts our client's handshake");
    // Our tests assert on their side; the server just stops at the first error.
    while let Some(Ok(message)) = ws.next().await {
        match message {
            TMessage::Text(ref t) if t.as_str() == PING_ME => {
                ws.send(TMessage::Ping(b"from tungstenite"[..].into()))
                    .await
                    .unwrap();
            }
            TMessage::Text(ref t) if t.as_str() == CLOSE_ME => {
                ws.close(Some(TCloseFrame {
                    code: TCloseCode::Away,
                    reason: "server going away".into(),
                }))
                .await
                .unwrap();
            }
            TMessage::Text(_) | TMessage::Binary(_) => ws.send(message).await.unwrap(),
            TMessage::Pong(payload) => {
                let report = format!("pong: {}", String::from_utf8_lossy(&payload));
                ws.send(TMessage::text(report)).await.unwrap();
            }
            // tungstenite answers pings and echoes the close by itself.
            TMessage::Ping(_) | TMessage::Close(_) | TMessage::Frame(_) => {}
        }
    }
}

async fn our_client(addr: SocketAddr) -> WebSocket<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connect(tcp, &addr.to_string(), "/echo", &ConnectConfig::default())
        .await
        .expect("tungstenite's 101 passes our checks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_gets_every_size_echoed_by_tungstenite() {
    bounded(async {
        let mut ws = our_client(start_tungstenite_server().await).await;
        for len in SIZES {
            let sent = text(len);
            ws.send(Message::Text(sent.clone().into())).await.unwrap();
            match ws.recv().await.unwrap() {
                Some(Message::Text(got)) => assert!(*got == *sent, "text of {len} bytes"),
                other => panic!("text of {len} bytes came back as {other:?}"),
            }
            let sent = blob(len, len as u8);
            ws.send(Message::Binary(sent.clone().into())).await.unwrap();
            match ws.recv().await.unwrap() {
                Some(Message::Binary(got)) => assert!(got[..] == sent[..], "binary of {len} bytes"),
                other => panic!("binary of {len} bytes came back as {other:?}"),
            }
        }
        ws.send(Message::Text(MULTIBYTE.into())).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap(),
            Some(Message::Text(MULTIBYTE.into()))
        );
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn our_client_pings_answers_pings_and_closes_with_tungstenite() {
    bounded(async {
        let addr = start_tungstenite_server().await;
        let mut ws = our_client(addr).await;

        // Our ping, tungstenite's pong.
        ws.ping(b"from rfc6455").await.unwrap();
        match ws.recv_event().await.unwrap() {
            Some(Event::Pong(payload)) => assert_eq!(&payload[..], b"from rfc6455"),
            other => panic!("expected our pong, got {other:?}"),
        }

        // Tungstenite's ping, our automatic pong (reported back as text).
        ws.send(Message::Text(PING_ME.into())).await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap(),
            Some(Message::Text("pong: from tungstenite".into()))
        );

        // We close; tungstenite echoes the code.
        ws.close(CloseCode(4000), "bye").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), None);
        assert_eq!(ws.close_frame().map(|f| f.code), Some(CloseCode(4000)));

        // Tungstenite closes; we echo and report its code.
        let mut ws = our_client(addr).await;
        ws.send(Message::Text(CLOSE_ME.into())).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), None);
        let frame = ws.close_frame().expect("tungstenite sent a code");
        assert_eq!(frame.code, CloseCode::GOING_AWAY);
        assert_eq!(&*frame.reason, "server going away");
    })
    .await;
}
