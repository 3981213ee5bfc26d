//! Third-party clients (Python `websockets`, Node `ws`) chatting with our own client through
//! one conversation. The tools are installed by `scripts/test.sh`; these tests fail (not skip)
//! when they are missing, with a hint.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{test_config, Server, TestClient};

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

async fn chat_with(program: &str, script: &str, lib: &str) {
    let server = Server::start(test_config()).await;
    let url = format!("ws://{}/ws?conversation_id=77", server.addr);
    let mut rust = TestClient::connect(server.addr, "/ws?conversation_id=77").await;
    let dir = interop_dir();
    let child = tokio::process::Command::new(program)
        .arg(dir.join(script))
        .arg(&url)
        .current_dir(&dir)
        .env("NODE_PATH", dir.join("node_modules"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (install it; see tests/interop/README.md): {e}")
        });

    assert_eq!(rust.expect_text().await, format!("{lib}: hello"));
    rust.send_text("rust: hello").await;
    assert_eq!(rust.expect_text().await, format!("{lib}: bye"));

    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the interop script finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}\n(are the interop clients installed? see tests/interop/README.md)",
        out.status
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
    rust.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_clients_chat_through_a_conversation() {
    chat_with("python3", "server_python.py", "python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_clients_chat_through_a_conversation() {
    chat_with("node", "server_node.mjs", "node").await;
}
