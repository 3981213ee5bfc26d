//! Third-party clients (Python `websockets`, Node `ws`): chatting with our own client through
//! one conversation of the test relay, and speaking the chat protocol on `/ws` end to end
//! (REST, `send`/`ack`, receipts, typing, presence, a file upload and its download, sync)
//! against a real server, from `docs/protocol.md` alone. The tools are installed by
//! `scripts/test.sh`; these tests fail (not skip) when they are missing, naming the client and
//! the command that installs it.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chatgroup_server::config::DeflateMode;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;

use crate::support::{echo_test_config, test_config, Server, TestClient};

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The Python with `websockets`: `CHATGROUP_PYTHON` (set by `scripts/test.sh` to its scratch
/// virtual environment), else that environment if it exists, else `python3`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CHATGROUP_PYTHON") {
        return p.into();
    }
    let venv = interop_dir().join(".venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        "python3".into()
    }
}

/// How to install each client, for the failure messages.
const PYTHON_HINT: &str = "install it with `bash scripts/test.sh` (a virtual environment in \
    tests/interop/.venv), or by hand: `python3 -m venv tests/interop/.venv && \
    tests/interop/.venv/bin/pip install websockets`";
const NODE_HINT: &str =
    "install it with `npm ci --prefix tests/interop` (or `bash scripts/test.sh`)";

/// Fails at once, naming the client and its install command, when `program args` cannot run.
/// Without this a missing module only showed as our side waiting 10 s for a message.
async fn require(program: &OsStr, args: &[&str], what: &str, hint: &str) {
    let out = tokio::process::Command::new(program)
        .args(args)
        .current_dir(interop_dir())
        .env("NODE_PATH", interop_dir().join("node_modules"))
        .output()
        .await;
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{what} is not usable ({} {}: {}):\n{}\n{hint}",
            program.to_string_lossy(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ),
        Err(e) => panic!(
            "{what} is missing: cannot run {}: {e}\n{hint}",
            program.to_string_lossy()
        ),
    }
}

/// Starts `program script arg` in the interop directory (where Node finds `ws`), its output
/// piped for [`expect_ok`].
fn spawn_script(program: &OsStr, script: &str, arg: &str, hint: &str) -> Child {
    let dir = interop_dir();
    tokio::process::Command::new(program)
        .arg(dir.join(script))
        .arg(arg)
        .current_dir(&dir)
        .env("NODE_PATH", dir.join("node_modules"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}\n{hint}", program.to_string_lossy()))
}

/// Reads a child's pipe to the end in the background, so its output survives a timeout.
fn drain(pipe: Option<impl AsyncRead + Unpin + Send + 'static>) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes).await;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits up to `limit` for a script started by [`spawn_script`] to exit 0 with `ok` as its last
/// line; otherwise panics with its status (or the timeout), its stdout and its stderr.
async fn expect_ok(mut child: Child, script: &str, hint: &str, limit: Duration) {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => Some(status.unwrap()),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let (stdout, stderr) = (stdout.await.unwrap(), stderr.await.unwrap());
    let Some(status) = status else {
        panic!("{script} did not finish within {limit:?}:\n{stdout}\n{stderr}");
    };
    assert!(
        status.success(),
        "{script} failed ({status}):\n{stdout}\n{stderr}\n{hint}"
    );
    assert!(
        stdout.trim_end().ends_with("ok"),
        "{script} did not print ok:\n{stdout}\n{stderr}"
    );
}

async fn chat_with(program: &OsStr, script: &str, lib: &str, hint: &str) {
    let server = Server::start(echo_test_config()).await;
    let url = format!("ws://{}/broadcast?conversation_id=77", server.addr);
    let mut rust = TestClient::connect(server.addr, "/broadcast?conversation_id=77").await;
    let mut child = spawn_script(program, script, &url, hint);

    let mut talk = std::pin::pin!(async {
        assert_eq!(rust.expect_text().await, format!("{lib}: hello"));
        rust.send_text("rust: hello").await;
        assert_eq!(rust.expect_text().await, format!("{lib}: bye"));
        rust
    });
    // A client that dies early (a missing module, a crash) is reported with its stderr
    // instead of as a timeout on our side. One that exits 0 has sent everything already.
    let rust = tokio::select! {
        rust = &mut talk => rust,
        status = child.wait() => {
            let status = status.unwrap();
            if !status.success() {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr).await;
                }
                panic!("the {lib} client ({script}) exited early ({status}):\n{stderr}\n{hint}");
            }
            talk.await
        }
    };

    expect_ok(child, script, hint, Duration::from_secs(20)).await;
    rust.close().await;
    server.stop().await;
}

/// Runs a chat-protocol script against a server with the normal test config (its own scratch
/// data directory, default limits). The script does everything over the network, given only
/// the server's base address, and bounds its own waits (60 s in all).
async fn chat_protocol_with(program: &OsStr, script: &str, hint: &str) {
    let server = Server::start(test_config()).await;
    let child = spawn_script(program, script, &format!("http://{}", server.addr), hint);
    expect_ok(child, script, hint, Duration::from_secs(90)).await;
    server.stop().await;
}

/// The Python with `websockets`, checked to be usable.
async fn require_python() -> PathBuf {
    let python = python();
    let what = format!("the Python websockets client ({})", python.display());
    require(
        python.as_os_str(),
        &["-c", "import websockets"],
        &what,
        PYTHON_HINT,
    )
    .await;
    python
}

/// `node` with `ws`, checked to be usable.
async fn require_node() -> &'static OsStr {
    let node = OsStr::new("node");
    require(
        node,
        &["--version"],
        "Node.js (node)",
        "install Node.js 18+",
    )
    .await;
    require(
        node,
        &["-e", "require('ws')"],
        "the Node ws client (tests/interop/node_modules)",
        NODE_HINT,
    )
    .await;
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_clients_chat_through_a_conversation() {
    let python = require_python().await;
    chat_with(
        python.as_os_str(),
        "server_python.py",
        "python",
        PYTHON_HINT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_clients_chat_through_a_conversation() {
    let node = require_node().await;
    chat_with(node, "server_node.mjs", "node", NODE_HINT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_speaks_the_chat_protocol() {
    let python = require_python().await;
    chat_protocol_with(python.as_os_str(), "chat_python.py", PYTHON_HINT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_client_speaks_the_chat_protocol() {
    let node = require_node().await;
    chat_protocol_with(node, "chat_node.mjs", NODE_HINT).await;
}

/// Runs a permessage-deflate script (`/echo`, then two clients in a `/broadcast`
/// conversation) against a server in `mode`, then checks on `/metrics` that the client's
/// compressed messages were inflated and that the server sent compressed ones back.
async fn deflate_with(program: &OsStr, script: &str, hint: &str, mode: DeflateMode) {
    let mut cfg = echo_test_config();
    cfg.deflate = mode;
    let server = Server::start(cfg).await;
    let child = spawn_script(program, script, &format!("ws://{}", server.addr), hint);
    expect_ok(child, script, hint, Duration::from_secs(90)).await;
    // /echo and the two conversation members.
    assert_eq!(
        server.metric("chatgroup_deflate_connections_total").await,
        3
    );
    // Client to server: every message above was sent compressed (the heartbeats too, where
    // the client compresses everything).
    let inflated = server.metric("chatgroup_deflate_messages_in_total").await;
    assert!(
        inflated >= 10 + 40,
        "{mode}: {inflated} compressed messages in"
    );
    // Server to client: the broadcasts (600 B) always; the echoes in shared mode only
    // (replies bypass a dedicated compressor, see pump::read).
    let compressed = server.metric("chatgroup_deflate_deliveries_total").await;
    let want = match mode {
        DeflateMode::Shared => 40 + 8,
        _ => 40,
    };
    assert!(
        compressed >= want,
        "{mode}: {compressed} compressed frames out"
    );
    let (plain, packed) = (
        server
            .metric("chatgroup_deflate_plain_bytes_out_total")
            .await,
        server.metric("chatgroup_deflate_bytes_out_total").await,
    );
    assert!(packed * 2 < plain, "{mode}: {packed} of {plain} bytes");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_compresses_both_ways_in_shared_and_dedicated_mode() {
    let python = require_python().await;
    for mode in [DeflateMode::Shared, DeflateMode::Dedicated] {
        deflate_with(python.as_os_str(), "deflate_python.py", PYTHON_HINT, mode).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_compresses_both_ways_in_shared_and_dedicated_mode() {
    let node = require_node().await;
    for mode in [DeflateMode::Shared, DeflateMode::Dedicated] {
        deflate_with(node, "deflate_node.mjs", NODE_HINT, mode).await;
    }
}
