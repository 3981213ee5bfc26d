//! A small typed chat client for the chat tests: the REST API over raw HTTP/1.1 ([`Api`]), the
//! chat socket speaking [`ClientMsg`]/[`ServerMsg`] on top of [`TestClient`] ([`ChatClient`]),
//! a server with its own data directory ([`ChatServer`]) and the real binary ([`Binary`]).

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use chatgroup_protocol::rest::{Credentials, ErrorBody, MessagePage, Session};
use chatgroup_protocol::{
    ClientMsg, ConversationId, ConversationInfo, ErrorCode, MessageId, MessageView, Millis, Seq,
    ServerMsg, UserId, UserInfo,
};
use chatgroup_server::Config;
use rfc6455::{CloseCode, CloseFrame, Event, Frame, Message};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::time::{timeout_at, Instant};

use crate::support::{http, test_config, Connect, Server, TestClient, WAIT};

/// The password every test user gets unless a test says otherwise.
pub(crate) const PASSWORD: &str = "correct horse battery";

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "chatgroup-e2e-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create a temp data dir");
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// [`test_config`] on `data_dir`, with send limits out of the way (the limits test sets its
/// own): most tests send faster than a person would.
pub(crate) fn chat_config(data_dir: &Path) -> Config {
    let mut cfg = test_config();
    cfg.data_dir = data_dir.to_owned();
    cfg.message_rate = 1_000_000;
    cfg.message_burst = 1_000_000;
    cfg.user_message_rate = 1_000_000;
    cfg.receipt_rate = 1_000_000;
    cfg.typing_rate = 1_000_000;
    cfg.request_rate = 1_000_000;
    cfg
}

/// An in-process server on its own data directory.
pub(crate) struct ChatServer {
    pub(crate) server: Server,
    pub(crate) cfg: Config,
    /// Dropped last: the server must stop before its directory goes.
    pub(crate) dir: TempDir,
}

impl ChatServer {
    /// A server with [`chat_config`].
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server with [`chat_config`] changed by `tweak`.
    pub(crate) async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = TempDir::new("chat");
        let mut cfg = chat_config(dir.path());
        tweak(&mut cfg);
        let server = Server::start(cfg.clone()).await;
        Self { server, cfg, dir }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub(crate) fn api(&self) -> Api {
        Api(self.server.addr)
    }

    /// Stops gracefully and starts again on the same directory and config (a new port).
    pub(crate) async fn restart(self) -> Self {
        let Self { server, cfg, dir } = self;
        server.stop().await;
        let server = Server::start(cfg.clone()).await;
        Self { server, cfg, dir }
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }
}

/// The real binary on a data directory, started as a subprocess on an ephemeral port.
pub(crate) struct Binary {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

impl Binary {
    pub(crate) fn spawn(data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatgroup"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(["--close-timeout", "1s", "--shutdown-grace", "5s"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chatgroup");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("the binary did not log its address (see its stderr above)");
            }
        };
        Self {
            child,
            addr: addr.parse().expect("a socket address"),
        }
    }

    pub(crate) fn api(&self) -> Api {
        Api(self.addr)
    }

    /// SIGKILL (what `Child::kill` sends on unix) and reap.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("SIGKILL the server");
        let status = self.child.wait().expect("reap the server");
        assert!(!status.success(), "a killed server does not exit cleanly");
    }

    /// SIGTERM, then wait for a clean exit.
    pub(crate) async fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
                return;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not exit after SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        // A failed test must not leave a server running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP response from the API.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Reply {
    /// The body as `T`, after checking the status.
    #[track_caller]
    pub(crate) fn expect<T: DeserializeOwned>(&self, status: u16) -> T {
        assert_eq!(self.status, status, "status; body {}", self.body);
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("unexpected body {:?}: {e}", self.body))
    }

    /// The error body, after checking the status is the code's.
    #[track_caller]
    pub(crate) fn expect_error(&self, code: ErrorCode) -> ErrorBody {
        assert_eq!(
            self.status,
            code.http_status(),
            "status for {code}; body {}",
            self.body
        );
        let body: ErrorBody = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not an error body {:?}: {e}", self.body));
        assert_eq!(body.error, code, "error code; message {:?}", body.message);
        assert!(!body.message.is_empty(), "an error says what went wrong");
        body
    }

    /// A response header's value (first occurrence, name case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// The REST API of a server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Api(pub(crate) SocketAddr);

impl Api {
    /// One request on a fresh connection.
    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
        if let Some(token) = token {
            raw.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(body) = body {
            raw.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            raw.push_str("\r\n");
        }
        let resp = http(self.0, &raw).await;
        Reply {
            status: resp.status,
            head: resp.head,
            body: resp.body,
        }
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Reply {
        self.request("GET", path, Some(token), None).await
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &impl Serialize,
    ) -> Reply {
        let json = serde_json::to_string(body).expect("serializable");
        self.request("POST", path, token, Some(&json)).await
    }

    pub(crate) async fn delete(&self, path: &str, token: &str) -> Reply {
        self.request("DELETE", path, Some(token), None).await
    }

    pub(crate) async fn register(&self, username: &str, password: &str) -> Reply {
        let creds = Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        self.post("/api/register", None, &creds).await
    }

    pub(crate) async fn login(&self, username: &str, password: &str) -> Reply {
        let creds = Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        self.post("/api/login", None, &creds).await
    }

    /// Registers `username` with [`PASSWORD`]; panics unless it is 201.
    pub(crate) async fn signup(&self, username: &str) -> User {
        let session: Session = self.register(username, PASSWORD).await.expect(201);
        assert_eq!(session.user.username, username);
        User::from(session)
    }

    /// Logs `username` in with [`PASSWORD`]; panics unless it is 200.
    pub(crate) async fn relogin(&self, username: &str) -> User {
        let session: Session = self.login(username, PASSWORD).await.expect(200);
        User::from(session)
    }

    /// `POST /api/conversations` for a group; panics unless it is 201.
    pub(crate) async fn create_group(
        &self,
        owner: &User,
        name: &str,
        members: &[&User],
    ) -> ConversationInfo {
        let request = chatgroup_protocol::rest::CreateConversation::Group {
            name: name.to_owned(),
            members: members.iter().map(|u| u.name().to_owned()).collect(),
        };
        self.post("/api/conversations", Some(&owner.token), &request)
            .await
            .expect(201)
    }

    /// Every message of a conversation, paging backwards with `before`, ascending.
    pub(crate) async fn full_history(
        &self,
        token: &str,
        conversation: ConversationId,
    ) -> Vec<MessageView> {
        let mut all: Vec<MessageView> = Vec::new();
        let mut before: Option<Seq> = None;
        loop {
            let path = match before {
                None => format!("/api/conversations/{conversation}/messages?limit=200"),
                Some(b) => {
                    format!("/api/conversations/{conversation}/messages?before={b}&limit=200")
                }
            };
            let page: MessagePage = self.get(&path, token).await.expect(200);
            let Some(first) = page.messages.first() else {
                break;
            };
            before = Some(first.seq);
            let mut page_messages = page.messages;
            page_messages.append(&mut all);
            all = page_messages;
            if !page.has_more {
                break;
            }
        }
        all
    }
}

/// A logged-in user: who, and their tokens.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) info: UserInfo,
    pub(crate) token: String,
    pub(crate) refresh: String,
    pub(crate) expires_at: Millis,
}

impl From<Session> for User {
    fn from(s: Session) -> Self {
        Self {
            info: s.user,
            token: s.access_token,
            refresh: s.refresh_token,
            expires_at: s.expires_at,
        }
    }
}

impl User {
    pub(crate) fn id(&self) -> UserId {
        self.info.id
    }

    pub(crate) fn name(&self) -> &str {
        &self.info.username
    }
}

/// What `ready` said.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    pub(crate) user: UserInfo,
    pub(crate) epoch: String,
    pub(crate) conversations: Vec<ConversationInfo>,
    pub(crate) expires_at: Millis,
}

/// An `ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    pub(crate) conversation: ConversationId,
    pub(crate) id: MessageId,
    pub(crate) seq: Seq,
    pub(crate) ts: Millis,
    pub(crate) duplicate: bool,
}

/// An `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WsError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) reference: Option<String>,
    pub(crate) retry_after_ms: Option<u64>,
}

/// What a `sync` produced, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct Synced {
    /// Every message from `sync_batch` frames and `new_message` frames that arrived between
    /// the request and `synced`, in arrival order.
    pub(crate) messages: Vec<MessageView>,
    /// How many of them came in `sync_batch` frames.
    pub(crate) replayed: usize,
    /// `synced`'s cursors.
    pub(crate) cursors: BTreeMap<ConversationId, Seq>,
    /// Errors (e.g. `not_member` for a cursor) before `synced`.
    pub(crate) errors: Vec<WsError>,
    /// Anything else that arrived meanwhile.
    pub(crate) other: Vec<ServerMsg>,
}

/// What came next on a socket.
#[derive(Debug)]
pub(crate) enum Next {
    Msg(Box<ServerMsg>),
    Closed(Option<CloseFrame>),
    Eof,
    Quiet,
}

static MASK: AtomicU32 = AtomicU32::new(0x5eed);

/// Whether `msg` is one of the ephemeral messages tests read apart.
fn is_live(msg: &ServerMsg) -> bool {
    matches!(
        msg,
        ServerMsg::Receipt { .. } | ServerMsg::Typing { .. } | ServerMsg::Presence { .. }
    )
}

/// The chat socket, typed.
pub(crate) struct ChatClient {
    ws: TestClient,
    /// Messages read while waiting for something else, served first by [`ChatClient::recv`].
    pending: VecDeque<ServerMsg>,
    /// `receipt`, `typing` and `presence` messages, kept apart so tests of other things
    /// need not expect them; read with [`ChatClient::wait_live`] and [`ChatClient::live_for`].
    live: VecDeque<ServerMsg>,
    /// The latest `ready`, if authenticated.
    pub(crate) ready: Option<Ready>,
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatClient")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl ChatClient {
    /// Opens `/ws?token=` and waits for `ready`.
    pub(crate) async fn connect(addr: SocketAddr, token: &str) -> Self {
        let mut c = Self::open(addr, &format!("/ws?token={token}")).await;
        c.expect_ready().await;
        c
    }

    /// Opens a chat socket on `path` without authenticating.
    pub(crate) async fn open(addr: SocketAddr, path: &str) -> Self {
        let ws = match TestClient::try_connect(addr, path, &[]).await {
            Connect::Open(ws) => ws,
            Connect::Refused(status) => panic!("upgrade of {path} refused with {status}"),
        };
        Self {
            ws,
            pending: VecDeque::new(),
            live: VecDeque::new(),
            ready: None,
        }
    }

    /// A round trip: once it is answered, the server has started live delivery to this
    /// connection (it does so right after `ready`, which the client may read first).
    pub(crate) async fn settle(&mut self) {
        self.send(&ClientMsg::Conversations {
            reference: Some("settle".into()),
        })
        .await;
        self.wait_for("settle", |m| {
            matches!(m, ServerMsg::Conversations { reference, .. } if reference.as_deref() == Some("settle"))
        })
        .await;
    }

    /// Sends `auth` and waits for `ready`.
    pub(crate) async fn authenticate(&mut self, token: &str) -> Ready {
        self.send(&ClientMsg::Auth {
            token: token.to_owned(),
        })
        .await;
        self.expect_ready().await
    }

    /// Waits for `ready` (other messages are kept for later).
    pub(crate) async fn expect_ready(&mut self) -> Ready {
        let msg = self
            .wait_for("ready", |m| matches!(m, ServerMsg::Ready { .. }))
            .await;
        let ServerMsg::Ready {
            user,
            epoch,
            conversations,
            expires_at,
        } = msg
        else {
            unreachable!()
        };
        let ready = Ready {
            user,
            epoch,
            conversations,
            expires_at,
        };
        self.ready = Some(ready.clone());
        ready
    }

    /// Sends a client message; panics if the socket is gone.
    pub(crate) async fn send(&mut self, msg: &ClientMsg) {
        let text = serde_json::to_string(msg).expect("serializable");
        self.send_text(&text).await;
    }

    /// Sends raw text (for malformed input).
    pub(crate) async fn send_text(&mut self, text: &str) {
        assert!(self.try_send_text(text).await, "write to the server failed");
    }

    /// Sends a client message; `false` if the socket is gone (for the crash tests).
    pub(crate) async fn try_send(&mut self, msg: &ClientMsg) -> bool {
        let text = serde_json::to_string(msg).expect("serializable");
        self.try_send_text(&text).await
    }

    async fn try_send_text(&mut self, text: &str) -> bool {
        let mut out = BytesMut::new();
        let mask = MASK
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(2_654_435_761)
            .to_le_bytes();
        Frame::text(text.to_owned()).encode(Some(mask), &mut out);
        self.ws.stream.write_all(&out).await.is_ok()
    }

    /// Sends a binary message (a file chunk); `false` if the socket is gone.
    pub(crate) async fn send_binary(&mut self, data: &[u8]) -> bool {
        let mut out = BytesMut::new();
        let mask = MASK
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(2_654_435_761)
            .to_le_bytes();
        Frame::binary(bytes::Bytes::copy_from_slice(data)).encode(Some(mask), &mut out);
        self.ws.stream.write_all(&out).await.is_ok()
    }

    /// `send` with `localId` and `body`.
    pub(crate) async fn post(&mut self, conversation: ConversationId, local_id: &str, body: &str) {
        self.send(&send_msg(conversation, local_id, body)).await;
    }

    /// The next message within `wait` (stashed ones first); heartbeat `pong`s are skipped,
    /// `receipt`/`typing`/`presence` set apart.
    pub(crate) async fn next_within(&mut self, wait: Duration) -> Next {
        if let Some(msg) = self.pending.pop_front() {
            return Next::Msg(Box::new(msg));
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_raw(left).await {
                Next::Msg(msg) if is_live(&msg) => self.live.push_back(*msg),
                other => return other,
            }
        }
    }

    /// The next message off the socket within `wait`, whatever it is.
    async fn next_raw(&mut self, wait: Duration) -> Next {
        let deadline = Instant::now() + wait;
        loop {
            let event = match timeout_at(deadline, self.ws.next_event()).await {
                Err(_) => return Next::Quiet,
                Ok(None) => return Next::Eof,
                Ok(Some(event)) => event,
            };
            match event {
                Event::Message(Message::Text(text)) => {
                    let text = text.as_str();
                    if text == "pong" {
                        continue;
                    }
                    let msg: ServerMsg = serde_json::from_str(text)
                        .unwrap_or_else(|e| panic!("not a server message {text:?}: {e}"));
                    return Next::Msg(Box::new(msg));
                }
                Event::Message(Message::Binary(b)) => panic!("unexpected binary message {b:?}"),
                Event::Close(frame) => return Next::Closed(frame),
                Event::Ping(_) | Event::Pong(_) => {}
            }
        }
    }

    /// The first `receipt`/`typing`/`presence` matching `pred`, reading (and stashing) other
    /// messages meanwhile; earlier live messages that do not match are dropped. Panics after
    /// [`WAIT`].
    pub(crate) async fn wait_live(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&ServerMsg) -> bool,
    ) -> ServerMsg {
        let deadline = Instant::now() + WAIT;
        loop {
            while let Some(msg) = self.live.pop_front() {
                if pred(&msg) {
                    return msg;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_raw(left).await {
                Next::Msg(msg) if is_live(&msg) => self.live.push_back(*msg),
                Next::Msg(msg) => self.pending.push_back(*msg),
                other => panic!("waiting for {what}: got {other:?}"),
            }
        }
    }

    /// Every `receipt`/`typing`/`presence` that arrives within `wait` (and any already
    /// read), other messages stashed.
    pub(crate) async fn live_for(&mut self, wait: Duration) -> Vec<ServerMsg> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_raw(left).await {
                Next::Msg(msg) if is_live(&msg) => self.live.push_back(*msg),
                Next::Msg(msg) => self.pending.push_back(*msg),
                Next::Quiet => return self.live.drain(..).collect(),
                other => panic!("collecting live messages: got {other:?}"),
            }
        }
    }

    /// The next message; panics on close, end of stream or silence past [`WAIT`].
    pub(crate) async fn recv(&mut self) -> ServerMsg {
        match self.next_within(WAIT).await {
            Next::Msg(msg) => *msg,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next message if one arrives within `wait`.
    pub(crate) async fn try_recv(&mut self, wait: Duration) -> Option<ServerMsg> {
        match self.next_within(wait).await {
            Next::Msg(msg) => Some(*msg),
            Next::Quiet => None,
            other => panic!("expected a message or silence, got {other:?}"),
        }
    }

    /// The first message matching `pred` (stashed ones first); the others are kept, in
    /// order, for later reads. Panics after [`WAIT`].
    pub(crate) async fn wait_for(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&ServerMsg) -> bool,
    ) -> ServerMsg {
        if let Some(i) = self.pending.iter().position(&mut pred) {
            return self.pending.remove(i).expect("index in range");
        }
        let deadline = Instant::now() + WAIT;
        let mut skipped = VecDeque::new();
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Read past the stash only: `next_within` would serve it first.
            let stash = std::mem::take(&mut self.pending);
            let next = self.next_within(left).await;
            self.pending = stash;
            match next {
                Next::Msg(msg) if pred(&msg) => break *msg,
                Next::Msg(msg) => skipped.push_back(*msg),
                other => panic!(
                    "waiting for {what}: got {other:?} after {} other messages: {:?}",
                    skipped.len(),
                    skipped.iter().rev().take(5).collect::<Vec<_>>()
                ),
            }
        };
        self.pending.extend(skipped);
        found
    }

    /// The `ack` for `local_id`.
    pub(crate) async fn expect_ack(&mut self, local_id: &str) -> Ack {
        let msg = self
            .wait_for(&format!("ack {local_id}"), |m| {
                matches!(m, ServerMsg::Ack { local_id: l, .. } if l == local_id)
                    || matches!(m, ServerMsg::Error { reference: Some(r), .. } if r == local_id)
            })
            .await;
        match msg {
            ServerMsg::Ack {
                conversation,
                id,
                seq,
                ts,
                duplicate,
                ..
            } => Ack {
                conversation,
                id,
                seq,
                ts,
                duplicate,
            },
            other => panic!("expected the ack for {local_id}, got {other:?}"),
        }
    }

    /// Posts and waits for the ack.
    pub(crate) async fn post_acked(
        &mut self,
        conversation: ConversationId,
        local_id: &str,
        body: &str,
    ) -> Ack {
        self.post(conversation, local_id, body).await;
        self.expect_ack(local_id).await
    }

    /// The `error` whose `ref` is `reference` (`None`: an error without one).
    pub(crate) async fn expect_error(&mut self, reference: Option<&str>) -> WsError {
        let msg = self
            .wait_for(&format!("error ref {reference:?}"), |m| {
                matches!(m, ServerMsg::Error { reference: r, .. } if r.as_deref() == reference)
                    || matches!(m, ServerMsg::Ack { local_id, .. } if Some(local_id.as_str()) == reference)
            })
            .await;
        match msg {
            ServerMsg::Error {
                code,
                message,
                reference,
                retry_after_ms,
            } => WsError {
                code,
                message,
                reference,
                retry_after_ms,
            },
            other => panic!("expected an error with ref {reference:?}, got {other:?}"),
        }
    }

    /// Asserts the request with `reference` failed with `code`.
    #[track_caller]
    pub(crate) fn check_error(err: &WsError, code: ErrorCode) {
        assert_eq!(err.code, code, "error code; message {:?}", err.message);
        assert!(!err.message.is_empty(), "an error says what went wrong");
    }

    /// Sends `msg` (which carries `ref` = `reference`) and expects an error with `code`.
    pub(crate) async fn refused(
        &mut self,
        msg: &ClientMsg,
        reference: &str,
        code: ErrorCode,
    ) -> WsError {
        self.send(msg).await;
        let err = self.expect_error(Some(reference)).await;
        assert_eq!(
            err.code, code,
            "{msg:?} refused with the wrong code; message {:?}",
            err.message
        );
        err
    }

    /// The answer to a conversation request (`conversation` with this `ref`).
    pub(crate) async fn expect_conversation(&mut self, reference: &str) -> ConversationInfo {
        let msg = self
            .wait_for(&format!("conversation ref {reference}"), |m| {
                matches!(m, ServerMsg::Conversation { reference: Some(r), .. } if r == reference)
                    || matches!(m, ServerMsg::Error { reference: Some(r), .. } if r == reference)
            })
            .await;
        match msg {
            ServerMsg::Conversation { conversation, .. } => conversation,
            other => panic!("expected conversation ref {reference}, got {other:?}"),
        }
    }

    /// A pushed `conversation` event (no `ref`) for `id`.
    pub(crate) async fn expect_conversation_event(
        &mut self,
        id: ConversationId,
    ) -> ConversationInfo {
        let msg = self
            .wait_for(&format!("conversation event {id}"), |m| {
                matches!(m, ServerMsg::Conversation { conversation, reference: None } if conversation.id == id)
            })
            .await;
        match msg {
            ServerMsg::Conversation { conversation, .. } => conversation,
            _ => unreachable!(),
        }
    }

    /// A pushed `conversation` event (no `ref`) for `id` whose state satisfies `pred`
    /// (earlier events for it are skipped over and kept).
    pub(crate) async fn expect_conversation_update(
        &mut self,
        id: ConversationId,
        mut pred: impl FnMut(&ConversationInfo) -> bool,
    ) -> ConversationInfo {
        let msg = self
            .wait_for(&format!("conversation event {id}"), |m| {
                matches!(m, ServerMsg::Conversation { conversation, reference: None } if conversation.id == id && pred(conversation))
            })
            .await;
        match msg {
            ServerMsg::Conversation { conversation, .. } => conversation,
            _ => unreachable!(),
        }
    }

    /// `ok` with this `ref`.
    pub(crate) async fn expect_done(&mut self, reference: &str) {
        let msg = self
            .wait_for(&format!("ok ref {reference}"), |m| {
                matches!(m, ServerMsg::Done { reference: Some(r) } if r == reference)
                    || matches!(m, ServerMsg::Error { reference: Some(r), .. } if r == reference)
            })
            .await;
        assert!(
            matches!(msg, ServerMsg::Done { .. }),
            "expected ok ref {reference}, got {msg:?}"
        );
    }

    /// A live `new_message` matching `pred`.
    pub(crate) async fn expect_new_message(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&MessageView) -> bool,
    ) -> MessageView {
        let msg = self
            .wait_for(what, |m| matches!(m, ServerMsg::NewMessage(v) if pred(v)))
            .await;
        match msg {
            ServerMsg::NewMessage(v) => v,
            _ => unreachable!(),
        }
    }

    /// `history` over the socket.
    pub(crate) async fn history(
        &mut self,
        conversation: ConversationId,
        before: Option<Seq>,
        limit: Option<u32>,
        reference: &str,
    ) -> (Vec<MessageView>, bool) {
        self.send(&ClientMsg::History {
            conversation,
            before,
            limit,
            reference: Some(reference.to_owned()),
        })
        .await;
        let msg = self
            .wait_for(&format!("history ref {reference}"), |m| {
                matches!(m, ServerMsg::History { reference: Some(r), .. } if r == reference)
                    || matches!(m, ServerMsg::Error { reference: Some(r), .. } if r == reference)
            })
            .await;
        match msg {
            ServerMsg::History {
                conversation: c,
                messages,
                has_more,
                ..
            } => {
                assert_eq!(c, conversation);
                (messages, has_more)
            }
            other => panic!("expected history ref {reference}, got {other:?}"),
        }
    }

    /// Sends `sync` and collects everything up to its `synced`. Messages stashed before the
    /// request are left for later reads.
    pub(crate) async fn sync(
        &mut self,
        cursors: BTreeMap<ConversationId, Seq>,
        reference: &str,
    ) -> Synced {
        self.send(&ClientMsg::Sync {
            cursors,
            reference: Some(reference.to_owned()),
        })
        .await;
        self.collect_sync(reference).await
    }

    /// Reads everything up to the `synced` answering the `sync` with `reference`.
    pub(crate) async fn collect_sync(&mut self, reference: &str) -> Synced {
        let stash = std::mem::take(&mut self.pending);
        let mut out = Synced::default();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Next::Msg(msg) => match *msg {
                    ServerMsg::Synced {
                        cursors,
                        reference: r,
                    } if r.as_deref() == Some(reference) => {
                        out.cursors = cursors;
                        break;
                    }
                    ServerMsg::SyncBatch {
                        conversation,
                        messages,
                    } => {
                        assert!(!messages.is_empty(), "an empty sync_batch");
                        for m in &messages {
                            assert_eq!(
                                m.conversation, conversation,
                                "a batch holds one conversation"
                            );
                        }
                        out.replayed += messages.len();
                        out.messages.extend(messages);
                    }
                    ServerMsg::NewMessage(m) => out.messages.push(m),
                    ServerMsg::Error {
                        code,
                        message,
                        reference,
                        retry_after_ms,
                    } => out.errors.push(WsError {
                        code,
                        message,
                        reference,
                        retry_after_ms,
                    }),
                    other => out.other.push(other),
                },
                other => panic!(
                    "waiting for synced {reference}: got {other:?} after {} messages",
                    out.messages.len()
                ),
            }
        }
        self.pending = stash;
        out
    }

    /// Asserts nothing arrives (apart from heartbeats) for `wait`, and nothing is stashed.
    pub(crate) async fn expect_quiet(&mut self, wait: Duration) {
        assert!(
            self.pending.is_empty(),
            "expected nothing, but had {:?}",
            self.pending
        );
        if let Some(msg) = self.try_recv(wait).await {
            panic!("expected nothing, got {msg:?}");
        }
    }

    /// Takes the messages stashed by earlier waits (all of them arrived before whatever
    /// the last wait returned).
    pub(crate) fn take_pending(&mut self) -> Vec<ServerMsg> {
        self.pending.drain(..).collect()
    }

    /// Everything stashed plus whatever arrives until the socket is quiet for `quiet`.
    pub(crate) async fn drain(&mut self, quiet: Duration) -> Vec<ServerMsg> {
        let mut out: Vec<ServerMsg> = self.pending.drain(..).collect();
        while let Some(msg) = self.try_recv(quiet).await {
            out.push(msg);
        }
        out
    }

    /// Expects the server to close with `code` (messages before it are ignored); returns the
    /// reason, and waits for the end of the stream.
    pub(crate) async fn expect_close(mut self, code: CloseCode) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Next::Msg(_) => {}
                Next::Closed(Some(frame)) => {
                    assert_eq!(
                        frame.code,
                        code,
                        "close code (reason {:?})",
                        frame.reason.as_str()
                    );
                    let reason = frame.reason.as_str().to_owned();
                    let mut out = BytesMut::new();
                    Frame::close(Some(&CloseFrame::new(code, "")))
                        .encode(Some([1, 2, 3, 4]), &mut out);
                    let _ = self.ws.stream.write_all(&out).await;
                    self.ws.expect_eof().await;
                    return reason;
                }
                other => panic!("expected close {code:?}, got {other:?}"),
            }
        }
    }

    /// A clean close from the client side.
    pub(crate) async fn close(self) {
        self.ws.close().await;
    }

    /// Drops the TCP connection without a closing handshake (a client that vanished).
    pub(crate) fn vanish(self) {
        drop(self);
    }
}

/// A `send` message.
pub(crate) fn send_msg(conversation: ConversationId, local_id: &str, body: &str) -> ClientMsg {
    ClientMsg::Send {
        conversation,
        local_id: local_id.to_owned(),
        body: body.to_owned(),
        reference: None,
    }
}

/// A cursor map with one entry.
pub(crate) fn cursor(conversation: ConversationId, seq: u64) -> BTreeMap<ConversationId, Seq> {
    BTreeMap::from([(conversation, Seq(seq))])
}

/// Asserts `messages` are exactly `from..=to` by seq, ascending, each once.
#[track_caller]
pub(crate) fn assert_gap_free(messages: &[MessageView], from: u64, to: u64) {
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq.0).collect();
    let expected: Vec<u64> = (from..=to).collect();
    if seqs != expected {
        let first_bad = seqs
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(seqs.len().min(expected.len()));
        panic!(
            "expected seq {from}..={to} ({} messages), got {} messages; first difference at \
             index {first_bad}: got {:?}, expected {:?}",
            expected.len(),
            seqs.len(),
            seqs.get(first_bad.saturating_sub(2)..(first_bad + 3).min(seqs.len())),
            expected.get(first_bad.saturating_sub(2)..(first_bad + 3).min(expected.len())),
        );
    }
}
