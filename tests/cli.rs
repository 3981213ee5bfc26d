//! The real `chatgroup` binary as an operator meets it: flags, environment variables, and
//! what it prints when it cannot start (issue 7).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// The binary with a scratch data directory and no inherited logging or flag variables.
fn chatgroup() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatgroup"));
    // One directory per server: a data directory is locked by the process using it.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data = std::env::temp_dir().join(format!("chatgroup-cli-{}-{n}", std::process::id()));
    cmd.arg("--data-dir").arg(data);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CHATGROUP_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs a command that is expected to exit by itself and returns its output.
fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chatgroup");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => out.expect("chatgroup output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("chatgroup did not exit within {WAIT:?}");
        }
    }
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A server started on an ephemeral port, killed on drop.
struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Running {
    fn start(cmd: &mut Command) -> Self {
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0"])
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
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(WAIT).expect("the binary logs its address");
        Self {
            child,
            addr: addr.parse().expect("a socket address"),
        }
    }

    /// The status line's code for a WebSocket upgrade to `path`.
    fn upgrade_status(&self, path: &str) -> u16 {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_startup_error_is_one_line_without_a_backtrace_and_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = run(chatgroup()
        .args(["--listen", &addr.to_string()])
        .env("RUST_BACKTRACE", "1"));
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("backtrace"), "{err}");
    assert!(
        (1..=2).contains(&err.lines().count()),
        "one or two lines: {err}"
    );
    assert!(
        err.starts_with(&format!("chatgroup: binding {addr}: ")) && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn an_invalid_log_filter_names_its_cause_once() {
    let out = run(chatgroup().args(["--log", "chatgroup=loud"]));
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("chatgroup: invalid --log filter"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // The cause (EnvFilter's "error parsing level filter ...") appears once, not twice.
    assert_eq!(err.matches("level filter").count(), 1, "{err}");
}

#[test]
fn boolean_variables_take_the_usual_spellings() {
    for yes in ["1", "true", "TRUE", "yes", "on"] {
        let server = Running::start(chatgroup().env("CHATGROUP_ECHO", yes));
        assert_eq!(server.upgrade_status("/echo"), 101, "CHATGROUP_ECHO={yes}");
    }
    for no in ["0", "false", "no", "Off"] {
        let server = Running::start(chatgroup().env("CHATGROUP_ECHO", no));
        assert_eq!(server.upgrade_status("/echo"), 404, "CHATGROUP_ECHO={no}");
    }
    // The flag stays a bare flag.
    let server = Running::start(chatgroup().arg("--echo"));
    assert_eq!(server.upgrade_status("/echo"), 101);

    let out = run(chatgroup().env("CHATGROUP_ECHO", "maybe"));
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("maybe") && err.contains("--echo"), "{err}");
}

#[test]
fn an_allowed_origin_without_a_scheme_is_refused_at_startup() {
    for bad in ["allowed.example", "http://ok.example,ftp://files.example"] {
        let out = run(chatgroup().args(["--allowed-origins", bad]));
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("invalid origin") && err.contains("http or https"),
            "{err}"
        );
    }
    let out = run(chatgroup().env("CHATGROUP_ALLOWED_ORIGINS", "chat.example:8080"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));

    let server = Running::start(chatgroup().args(["--allowed-origins", "http://ok.example:8080"]));
    assert_eq!(server.upgrade_status("/nope"), 404, "a valid list starts");
}

#[test]
fn durations_need_a_unit_and_help_says_so() {
    let out = run(chatgroup().args(["--ping-interval", "5"]));
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("add a unit, like 5s"), "{err}");

    let out = run(chatgroup().env("CHATGROUP_SWEEP_INTERVAL", "30"));
    assert!(
        stderr_of(&out).contains("add a unit"),
        "{}",
        stderr_of(&out)
    );

    let out = run(chatgroup().arg("--help"));
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--handshake-timeout",
        "--ping-interval",
        "--sweep-interval",
        "--close-timeout",
        "--shutdown-grace",
        "--slow-consumer-grace",
    ] {
        // From the flag's line up to the next option's line.
        let start = help
            .find(&format!("      {flag} "))
            .unwrap_or_else(|| panic!("{flag} in --help"));
        let rest = &help[start + 6..];
        let end = rest
            .find("\n      -")
            .or_else(|| rest.find("\n  -"))
            .unwrap_or(rest.len());
        let entry = &rest[..end];
        assert!(
            entry.contains("<DURATION>") && entry.contains("500ms, 30s, 2m, 1h"),
            "{flag}: {entry}"
        );
    }
}
