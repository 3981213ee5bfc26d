//! Interop with clients we did not write, as separate processes: Python `websockets` and
//! Node `ws` against our echo server (the `echo_server` example, run in-process on a free
//! port of 127.0.0.1).
//!
//! The client scripts live in `tests/interop/` at the repository root and check everything
//! themselves (sizes 0 B to 4 MiB, multi-byte text, fragments, ping, close code echo); they
//! exit non-zero and print what they got on any mismatch, and this test shows their output.
//!
//! `bash scripts/test.sh` installs both clients. Run directly on a machine without them, a
//! test prints why it skipped; under CI (`CI` set) a missing client fails the test instead.

#[path = "../examples/echo_server.rs"]
#[allow(dead_code)]
mod echo_server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::process::Command;

/// A client script gets this long in all (its own steps time out after 20 s).
const LIMIT: Duration = Duration::from_secs(90);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

async fn start_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(echo_server::serve(listener));
    addr
}

/// The Python with `websockets`: `CHATGROUP_PYTHON` (set by `scripts/test.sh` to its scratch
/// virtual environment), else that environment if it exists, else `python3`.
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

/// Whether `program args` runs and exits 0.
async fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Reports a missing client: a failure under CI, a skip note elsewhere.
fn missing(what: &str) {
    let hint = format!("{what} is not installed (bash scripts/test.sh installs it)");
    assert!(std::env::var_os("CI").is_none(), "{hint}");
    eprintln!("SKIPPED: {hint}");
}

/// Runs a client script against a fresh echo server and asserts that it passed.
async fn run_client(program: &str, script: &str) {
    let addr = start_echo_server().await;
    let dir = interop_dir();
    let child = Command::new(program)
        .arg(dir.join(script))
        .arg(format!("ws://{addr}/echo"))
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {LIMIT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}",
        out.status
    );
    // The last line is written only after every check passed.
    assert_eq!(stdout.lines().last(), Some("ok"), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok text 4194304") && stdout.contains("ok close 4000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_against_our_echo_server() {
    let python = python();
    if !runs(&python, &["-c", "import websockets.sync.client"]).await {
        return missing(&format!(
            "{python} with the websockets package (python3 -m venv tests/interop/.venv && \
             tests/interop/.venv/bin/pip install websockets)"
        ));
    }
    run_client(&python, "python_echo_client.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_client_against_our_echo_server() {
    if !interop_dir().join("node_modules/ws/package.json").is_file() {
        return missing("the Node ws client (npm ci --prefix tests/interop)");
    }
    if !runs("node", &["--version"]).await {
        return missing("node");
    }
    run_client("node", "node_echo_client.mjs").await;
}
