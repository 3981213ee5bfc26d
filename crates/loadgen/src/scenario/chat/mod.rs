//! `chat`: the chat protocol of issue 8 on `/ws`, with registered users and groups.
//!
//! Every mode starts the same way: register users over `POST /api/register` (the server
//! hashes each password with argon2id, a few at a time, so this is the slow part of a run),
//! create groups over `POST /api/conversations` (owner plus at most 256 members; the rest
//! one at a time through `POST /api/conversations/{id}/members`), then open chat sockets
//! with `/ws?token=`, wait for `ready`, send `{"type":"sync","cursors":{}}` and wait for
//! `synced`. Only then does measuring start.
//!
//! | mode | what it measures |
//! |---|---|
//! | [`send`] | acked sends/s and ack latency; every member sees every message once, in order |
//! | [`fanout`] | deliveries/s (and per server core-second) to M member connections; with `--receipts`, every member also confirms every message |
//! | [`sync`] | time from `sync` to `synced` after S missed messages; exactly those S |
//! | [`idle`] | server RSS per authenticated, synced connection in three conversations |
//! | [`upload`] | file upload MB/s (and per server core-second), N clients, hashes checked |
//! | [`presence`] | presence frames per reload, departure and return of a user in many large groups |
//!
//! Users may have several connections (`--users` below the connection count): a user's
//! messages reach every one of its connections, so the server's work per connection is the
//! same while registering takes a fraction of the time.

mod api;
mod fanout;
mod idle;
mod presence;
mod send;
mod sync;
mod upload;
mod wire;

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use chatgroup_protocol::{ConversationId, Seq, ServerMsg, UserId};
use rfc6455::{CloseFrame, Frame, OpCode};

use super::Common;
use crate::cli::{ChatArgs, ChatMode};
use crate::report::{Errors, Report};
use crate::session::{Session, Target};

pub(crate) use wire::Kind;

/// Every user's password (the rules want at least 8 characters).
const PASSWORD: &str = "loadgen-password";
/// Most members one `POST /api/conversations` may name.
const MAX_CREATE_MEMBERS: usize = 256;
/// How long a freshly opened chat socket may take to answer `ready` and `synced`.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the chat mode the command line names.
pub(crate) async fn run(common: &Common, args: &ChatArgs) -> anyhow::Result<Report> {
    let setup = Setup::new(common, args);
    match &args.mode {
        ChatMode::Send(a) => send::run(common, &setup, a).await,
        ChatMode::Fanout(a) => fanout::run(common, &setup, a).await,
        ChatMode::Sync(a) => sync::run(common, &setup, a).await,
        ChatMode::Idle(a) => idle::run(common, &setup, a).await,
        ChatMode::Upload(a) => upload::run(common, &setup, a).await,
        ChatMode::Presence(a) => presence::run(common, &setup, a).await,
    }
}

/// What every mode needs to create its users, groups and connections.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    target: Target,
    prefix: String,
    register_concurrency: usize,
    concurrency: usize,
}

/// A registered user.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Account {
    /// Its id.
    pub(crate) id: UserId,
    /// Its name.
    pub(crate) username: String,
    /// Its access token.
    pub(crate) token: String,
}

impl Setup {
    fn new(common: &Common, args: &ChatArgs) -> Self {
        let prefix = args.user_prefix.clone().unwrap_or_else(|| {
            // Unique per run: seconds and the process id, so runs never collide.
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!(
                "lg{:x}",
                (secs << 16 | u64::from(std::process::id() & 0xffff)) & 0xff_ffff_ffff
            )
        });
        Self {
            target: common.target.clone(),
            prefix,
            register_concurrency: args.register_concurrency,
            concurrency: args.concurrency,
        }
    }

    fn api(&self) -> api::Api {
        api::Api::new(
            self.target.addr,
            self.target.connect_timeout + Duration::from_secs(30),
        )
    }

    /// Registers `count` users named `<prefix>_<role><i>`, a few at a time. Fails on the
    /// first refusal: a run without its users measures nothing.
    pub(crate) async fn register(&self, role: &str, count: usize) -> anyhow::Result<Vec<Account>> {
        let next = Rc::new(Cell::new(0usize));
        let names: Rc<Vec<String>> = Rc::new(
            (0..count)
                .map(|i| format!("{}_{role}{i}", self.prefix))
                .collect(),
        );
        let mut workers = Vec::new();
        for _ in 0..self.register_concurrency.min(count) {
            let (next, names, mut api) = (next.clone(), names.clone(), self.api());
            workers.push(tokio::task::spawn_local(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.get();
                    if i >= names.len() {
                        return Ok::<_, anyhow::Error>(mine);
                    }
                    next.set(i + 1);
                    let session = api.register(&names[i], PASSWORD).await?;
                    mine.push((
                        i,
                        Account {
                            id: session.user.id,
                            username: session.user.username,
                            token: session.access_token,
                        },
                    ));
                }
            }));
        }
        let mut all = Vec::with_capacity(count);
        for w in workers {
            all.extend(w.await.context("registration task")??);
        }
        all.sort_by_key(|(i, _)| *i);
        Ok(all.into_iter().map(|(_, a)| a).collect())
    }

    /// Creates a group owned by `owner` with `members` (usernames, the owner excluded):
    /// the first 256 at creation, the others added one request at a time, a few in flight.
    pub(crate) async fn group(
        &self,
        owner: &Account,
        name: &str,
        members: &[String],
    ) -> anyhow::Result<ConversationId> {
        let first = members.len().min(MAX_CREATE_MEMBERS);
        let info = self
            .api()
            .create_group(&owner.token, name, &members[..first])
            .await?;
        let id = info.id;
        let rest: Rc<Vec<String>> = Rc::new(members[first..].to_vec());
        let next = Rc::new(Cell::new(0usize));
        let mut workers = Vec::new();
        for _ in 0..(2 * self.register_concurrency).min(rest.len()) {
            let (next, rest, mut api, token) =
                (next.clone(), rest.clone(), self.api(), owner.token.clone());
            workers.push(tokio::task::spawn_local(async move {
                loop {
                    let i = next.get();
                    if i >= rest.len() {
                        return Ok::<_, anyhow::Error>(());
                    }
                    next.set(i + 1);
                    api.add_member(&token, id, &rest[i]).await?;
                }
            }));
        }
        for w in workers {
            w.await.context("add-member task")??;
        }
        Ok(id)
    }

    /// Opens `count` chat sockets, at most `--concurrency` being set up at a time; the
    /// `i`-th authenticates with `token(i)`, and each is synced with no cursors. Failures
    /// are counted in `errors`; the successes come back in index order.
    pub(crate) async fn connect_many(
        &self,
        count: usize,
        token: impl Fn(usize) -> String + 'static,
        errors: &Rc<Errors>,
    ) -> Vec<(usize, ChatConn)> {
        let next = Rc::new(Cell::new(0usize));
        let token = Rc::new(token);
        let mut workers = Vec::new();
        for _ in 0..self.concurrency.min(count) {
            let (target, next, token, errors) = (
                self.target.clone(),
                next.clone(),
                token.clone(),
                errors.clone(),
            );
            workers.push(tokio::task::spawn_local(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.get();
                    if i >= count {
                        return mine;
                    }
                    next.set(i + 1);
                    let opened = async {
                        let mut conn = ChatConn::open(&target, i, &token(i)).await?;
                        conn.sync(BTreeMap::new()).await?;
                        Ok::<_, anyhow::Error>(conn)
                    };
                    match opened.await {
                        Ok(conn) => mine.push((i, conn)),
                        Err(e) => errors.push(format!("chat connection {i}: {e:#}")),
                    }
                }
            }));
        }
        let mut all = Vec::with_capacity(count);
        for w in workers {
            match w.await {
                Ok(mine) => all.extend(mine),
                Err(e) => errors.push(format!("opener task: {e}")),
            }
        }
        all.sort_by_key(|(i, _)| *i);
        all
    }
}

/// One authenticated chat socket.
#[derive(Debug)]
pub(crate) struct ChatConn {
    /// The WebSocket.
    pub(crate) session: Session,
    /// Text messages decoded and not yet consumed (setup phase only).
    texts: VecDeque<Bytes>,
    /// Conversation → the newest `seq` this connection has (from `synced`, then advanced
    /// by the mode).
    pub(crate) cursors: BTreeMap<ConversationId, Seq>,
}

/// The outcome of one `sync`.
#[derive(Debug)]
pub(crate) struct Synced {
    /// From writing `sync` to reading `synced`.
    pub(crate) elapsed: Duration,
    /// The `sync_batch` messages, unparsed, in arrival order.
    pub(crate) batches: Vec<Bytes>,
    /// Live `new_message`s that arrived during the replay, unparsed.
    pub(crate) live: Vec<Bytes>,
}

impl ChatConn {
    /// Connects to `/ws?token=` and waits for `ready`.
    pub(crate) async fn open(target: &Target, index: usize, token: &str) -> anyhow::Result<Self> {
        let session = Session::open(target, index, &format!("/ws?token={token}")).await?;
        let mut conn = Self {
            session,
            texts: VecDeque::new(),
            cursors: BTreeMap::new(),
        };
        let deadline = Instant::now() + SETUP_TIMEOUT;
        loop {
            let text = conn.next_text(deadline).await?;
            match wire::kind(&text) {
                Kind::Ready => {
                    let msg: ServerMsg = serde_json::from_slice(&text).context("parsing ready")?;
                    if let ServerMsg::Ready { conversations, .. } = msg {
                        for c in conversations {
                            conn.cursors.insert(c.id, c.last_seq);
                        }
                    }
                    return Ok(conn);
                }
                Kind::Error => bail!("before ready: {}", wire::excerpt(&text, 200)),
                _ => {}
            }
        }
    }

    /// Sends `sync` with `cursors` and waits for `synced`, keeping the replay unparsed;
    /// afterwards [`cursors`](Self::cursors) holds what `synced` reported.
    pub(crate) async fn sync(
        &mut self,
        cursors: BTreeMap<ConversationId, Seq>,
    ) -> anyhow::Result<Synced> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        self.session.queue(&wire::sync_frame(cursors));
        let start = Instant::now();
        let mut batches = Vec::new();
        let mut live = Vec::new();
        loop {
            let text = self.next_text(deadline).await?;
            match wire::kind(&text) {
                Kind::SyncBatch => batches.push(text),
                Kind::NewMessage => live.push(text),
                Kind::Synced => {
                    let elapsed = start.elapsed();
                    let msg: ServerMsg = serde_json::from_slice(&text).context("parsing synced")?;
                    if let ServerMsg::Synced { cursors, .. } = msg {
                        self.cursors.extend(cursors);
                    }
                    return Ok(Synced {
                        elapsed,
                        batches,
                        live,
                    });
                }
                Kind::Error => bail!("during sync: {}", wire::excerpt(&text, 200)),
                _ => {}
            }
        }
    }

    /// The next text message, writing whatever is queued meanwhile.
    async fn next_text(&mut self, deadline: Instant) -> anyhow::Result<Bytes> {
        loop {
            if let Some(text) = self.texts.pop_front() {
                return Ok(text);
            }
            self.session.try_flush()?;
            let interest = if self.session.wbuf.is_empty() {
                tokio::io::Interest::READABLE
            } else {
                tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE
            };
            tokio::time::timeout_at(deadline.into(), self.session.stream.ready(interest))
                .await
                .context("the server did not answer in time")??;
            let texts = &mut self.texts;
            read_texts(&mut self.session, |t| texts.push_back(t))?;
        }
    }
}

/// Reads what the socket holds and hands every text message to `on_text`, answering
/// pings. The server closing the connection is an error naming its close code and reason.
pub(crate) fn read_texts(
    session: &mut Session,
    mut on_text: impl FnMut(Bytes),
) -> anyhow::Result<()> {
    let (_, wire) = session.try_read().context("read")?;
    while let Some(frame) = session.next_frame()? {
        match frame.opcode {
            OpCode::Text if frame.fin => on_text(frame.payload),
            OpCode::Close => bail!(
                "the server closed the connection ({})",
                close_reason(&frame)
            ),
            OpCode::Ping | OpCode::Pong => {
                session.on_control(&frame);
            }
            other => bail!("unexpected {other:?} frame (fin {})", frame.fin),
        }
    }
    if wire == crate::session::Wire::Closed {
        bail!("the server closed the socket");
    }
    Ok(())
}

fn close_reason(frame: &Frame) -> String {
    match CloseFrame::parse(&frame.payload) {
        Ok(Some(close)) => format!("{} {}", close.code.0, close.reason),
        Ok(None) => "no status".to_owned(),
        Err(e) => format!("bad close frame: {e}"),
    }
}

/// Checks that one connection sees a conversation's messages (its own acks and everyone
/// else's `new_message`) each exactly once, in `seq` order with no gap: the hub pushes both
/// into the connection's queue in commit order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Order {
    next: u64,
}

impl Order {
    /// Expecting the message after `cursor`.
    pub(crate) fn after(cursor: Seq) -> Self {
        Self { next: cursor.0 + 1 }
    }

    /// Counts `seq`; a message out of place is described in the error.
    pub(crate) fn see(&mut self, seq: u64) -> Result<(), String> {
        let expected = self.next;
        if seq == expected {
            self.next += 1;
            return Ok(());
        }
        if seq < expected {
            return Err(format!(
                "seq {seq} repeated or out of order (expected {expected})"
            ));
        }
        self.next = seq + 1;
        Err(format!("seq {expected}..{} missing (got {seq})", seq - 1))
    }

    /// The newest `seq` seen (the cursor).
    pub(crate) fn last(&self) -> u64 {
        self.next - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_flags_gaps_and_repeats() {
        let mut order = Order::after(Seq(5));
        assert!(order.see(6).is_ok());
        assert!(order.see(7).is_ok());
        assert!(order.see(7).unwrap_err().contains("repeated"));
        assert!(order.see(10).unwrap_err().contains("8..9 missing"));
        assert_eq!(order.last(), 10);
        assert!(order.see(11).is_ok());
    }
}
