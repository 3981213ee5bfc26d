//! Client misbehaviour is counted in `/metrics` by close code and logged at DEBUG only: a
//! remote client must not be able to fill the operator's log with WARN lines (issue 7).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rfc6455::CloseCode;

use crate::support::{Server, TestClient, WAIT};

/// The real binary with `--echo` at the default `info` level; returns it, its address and
/// every line it logs.
fn spawn_echo_binary() -> (Child, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let data_dir = std::env::temp_dir().join(format!(
        "chatgroup-e2e-client-errors-{}",
        std::process::id()
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatgroup"))
        .args(["--listen", "127.0.0.1:0", "--echo", "--data-dir"])
        .arg(&data_dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn chatgroup");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let seen = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
            seen.lock().unwrap().push(line);
        }
    });
    let addr = rx.recv_timeout(WAIT).expect("the binary logs its address");
    (child, addr.parse().expect("a socket address"), lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_counted_by_code_and_not_logged_at_warn() {
    let (mut child, addr, lines) = spawn_echo_binary();
    // A burst of bad frames from many connections.
    for _ in 0..10 {
        let mut c = TestClient::connect(addr, "/echo").await;
        c.send_raw(&[0x81, 0x02, b'h', b'i']).await; // unmasked: 1002
        c.expect_close(CloseCode::PROTOCOL_ERROR).await;
    }
    for _ in 0..3 {
        let mut c = TestClient::connect(addr, "/echo").await;
        c.send_raw(&[0x81, 0x81, 0, 0, 0, 0, 0xff]).await; // invalid UTF-8: 1007
        c.expect_close(CloseCode::INVALID_PAYLOAD).await;
    }

    let metrics = Server::metrics_at(addr).await;
    assert!(
        metrics.contains("\nchatgroup_client_closes_total{code=\"1002\"} 10\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nchatgroup_client_closes_total{code=\"1007\"} 3\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\nchatgroup_protocol_errors_total 13\n"));

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the binary exits");
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines = lines.lock().unwrap();
    let warnings: Vec<&String> = lines.iter().filter(|l| l.contains("WARN")).collect();
    assert!(
        warnings.is_empty(),
        "client errors logged at WARN: {warnings:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("shutdown complete")));
}

impl Server {
    /// The `/metrics` text of any server.
    async fn metrics_at(addr: SocketAddr) -> String {
        let resp = crate::support::http(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(resp.status, 200);
        resp.body
    }
}
