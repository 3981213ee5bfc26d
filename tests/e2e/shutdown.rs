//! Graceful shutdown of the real binary on SIGTERM (and in-process shutdown).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rfc6455::CloseCode;
use tokio_tungstenite::tungstenite;

use crate::support::{test_config, Server, TestClient};

/// The built binary, started on an ephemeral port; returns it and its address.
fn spawn_binary(data_dir: &std::path::Path) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatgroup"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(["--close-timeout", "2s", "--shutdown-grace", "5s"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn chatgroup");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the binary logs its address");
    (child, addr.parse().expect("a socket address"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_socket_with_1001_and_exits_zero() {
    let data_dir =
        std::env::temp_dir().join(format!("chatgroup-e2e-sigterm-{}", std::process::id()));
    let (mut child, addr) = spawn_binary(&data_dir);
    assert!(data_dir.is_dir(), "the data directory was created");

    let health = crate::support::http(addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(health.status, 200);

    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(TestClient::connect(addr, "/ws").await);
    }
    let (mut peer, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    // Every socket is registered once a heartbeat round-trips on each.
    for c in &mut clients {
        c.send_text("ping").await;
        assert_eq!(c.expect_text().await, "pong");
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let ours = futures_util::future::join_all(
        clients
            .iter_mut()
            .map(|c| c.expect_close(CloseCode::GOING_AWAY)),
    );
    let theirs = async {
        loop {
            match peer.next().await {
                Some(Ok(tungstenite::Message::Close(Some(frame)))) => {
                    assert_eq!(u16::from(frame.code), 1001);
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("peer expected close 1001, got {other:?}"),
            }
        }
        // tungstenite replies to the close; drive the stream to its end.
        while let Some(Ok(_)) = peer.next().await {}
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(ours, theirs)
    })
    .await
    .expect("every socket closed with 1001 in time");

    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not exit after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(exit.code(), Some(0), "exit status after SIGTERM");
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn in_process_shutdown_sends_1001_and_stops_accepting() {
    let server = Server::start(test_config()).await;
    let addr = server.addr;
    let mut a = TestClient::connect(addr, "/ws").await;
    let mut b = TestClient::connect(addr, "/ws").await;
    let stopping = tokio::spawn(server.stop());
    a.expect_close(CloseCode::GOING_AWAY).await;
    b.expect_close(CloseCode::GOING_AWAY).await;
    stopping.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
