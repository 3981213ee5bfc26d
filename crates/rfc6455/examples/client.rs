//! A command-line WebSocket client on the `rfc6455` tokio adapter.
//!
//! ```text
//! # lines from stdin, one message each; replies printed as they come
//! cargo run -p rfc6455 --example client -- ws://127.0.0.1:9001/
//! # a fixed message, N times, then a clean close
//! cargo run -p rfc6455 --example client -- ws://127.0.0.1:9001/ --send hello --count 3
//! ```
//!
//! Text replies are printed as they are, binary ones as their length. On close
//! the peer's close code is printed; any error exits with status 1.

use std::io;
use std::process::ExitCode;

use rfc6455::io::{connect, ConnectConfig, RecvHalf, WebSocketError};
use rfc6455::{CloseCode, Message};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

/// What to do once connected.
enum Mode {
    /// Send each stdin line as a text message; close at end of input.
    Stdin,
    /// Send `text` `count` times, wait for as many replies, then close.
    Repeat { text: String, count: usize },
}

/// A parsed `ws://` URL.
struct Target {
    /// `host:port` to connect to, also sent as `Host`.
    authority: String,
    /// Path and query.
    resource: String,
}

fn usage() -> String {
    "usage: client ws://HOST[:PORT][/PATH] [--send TEXT [--count N]]".to_owned()
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url}: only ws:// URLs are supported (no TLS here)"))?;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, resource) = rest.split_at(split);
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let resource = match resource {
        "" => "/".to_owned(),
        r if r.starts_with('?') => format!("/{r}"),
        r => r.to_owned(),
    };
    Ok(Target {
        authority,
        resource,
    })
}

fn parse_args() -> Result<(Target, Mode), String> {
    let mut args = std::env::args().skip(1);
    let target = parse_url(&args.next().ok_or_else(usage)?)?;
    let (mut text, mut count) = (None, 1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(usage)?;
        match flag.as_str() {
            "--send" => text = Some(value),
            "--count" => count = value.parse().map_err(|_| usage())?,
            _ => return Err(usage()),
        }
    }
    let mode = match text {
        Some(text) => Mode::Repeat { text, count },
        None => Mode::Stdin,
    };
    Ok((target, mode))
}

fn print(message: &Message) {
    match message {
        Message::Text(text) => println!("{text}"),
        Message::Binary(data) => println!("<{} bytes of binary>", data.len()),
    }
}

/// Prints every message until the peer's close, then the close code.
async fn print_until_close(rx: &mut RecvHalf<TcpStream>) -> Result<(), WebSocketError> {
    while let Some(message) = rx.recv().await? {
        print(&message);
    }
    match rx.close_frame() {
        Some(frame) => eprintln!("closed: {} {}", frame.code, frame.reason),
        None => eprintln!("closed"),
    }
    Ok(())
}

async fn run(target: Target, mode: Mode) -> Result<(), WebSocketError> {
    let tcp = TcpStream::connect(&target.authority).await?;
    tcp.set_nodelay(true)?;
    let ws = connect(
        tcp,
        &target.authority,
        &target.resource,
        &ConnectConfig::default(),
    )
    .await?;
    let (mut rx, tx) = ws.split();
    match mode {
        Mode::Repeat { text, count } => {
            for _ in 0..count {
                tx.send(Message::Text(text.clone().into())).await?;
            }
            for _ in 0..count {
                match rx.recv().await? {
                    Some(message) => print(&message),
                    None => return Err(io::Error::other("closed before every reply came").into()),
                }
            }
            tx.close(CloseCode::NORMAL, "done").await?;
            print_until_close(&mut rx).await
        }
        Mode::Stdin => {
            // Lines go out from their own task while replies print here.
            let sender = tokio::spawn(async move {
                let mut lines = BufReader::new(tokio::io::stdin()).lines();
                while let Some(line) = lines.next_line().await? {
                    tx.send(Message::Text(line.into())).await?;
                }
                tx.close(CloseCode::NORMAL, "end of input").await
            });
            let printed = print_until_close(&mut rx).await;
            // The peer may close first; the sender then stops on its next line.
            sender.abort();
            printed
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let (target, mode) = match parse_args() {
        Ok(parsed) => parsed,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(target, mode).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
