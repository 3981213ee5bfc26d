//! Third-party clients (Python `websockets`, Node `ws`) chatting with our own client through
//! one conversation. The tools are installed by `scripts/test.sh`; these tests fail (not skip)
//! when they are missing, naming the client and the command that installs it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::support::{echo_test_config, Server, TestClient};

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
async fn require(program: &std::ffi::OsStr, args: &[&str], what: &str, hint: &str) {
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

async fn chat_with(program: &std::ffi::OsStr, script: &str, lib: &str, hint: &str) {
    let server = Server::start(echo_test_config()).await;
    let url = format!("ws://{}/broadcast?conversation_id=77", server.addr);
    let mut rust = TestClient::connect(server.addr, "/broadcast?conversation_id=77").await;
    let dir = interop_dir();
    let mut child = tokio::process::Command::new(program)
        .arg(dir.join(script))
        .arg(&url)
        .current_dir(&dir)
        .env("NODE_PATH", dir.join("node_modules"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}\n{hint}", program.to_string_lossy()));

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

    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the interop script finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}\n{hint}",
        out.status
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
    rust.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_clients_chat_through_a_conversation() {
    let python = python();
    let what = format!("the Python websockets client ({})", python.display());
    require(
        python.as_os_str(),
        &["-c", "import websockets"],
        &what,
        PYTHON_HINT,
    )
    .await;
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
    let node = std::ffi::OsStr::new("node");
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
    chat_with(node, "server_node.mjs", "node", NODE_HINT).await;
}
