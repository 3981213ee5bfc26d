//! PostgreSQL's writer: this node's one committing connection, fed by the same bounded queue
//! and the same [`Command`]s as SQLite's, committing whatever is queued in one transaction.
//!
//! Several nodes write to one database at once, so unlike SQLite's writer this one caches
//! nothing about conversations between batches. A batch runs like this:
//!
//! 1. `BEGIN`, then lock every conversation the batch touches with one
//!    `SELECT … ORDER BY id FOR UPDATE`: in id order on every node, so two nodes' batches
//!    queue behind each other instead of deadlocking. The rows give each conversation's
//!    last seq, and the members are read under the same locks.
//! 2. Apply the reported markers, then each command in queue order against that state.
//!    Every operation checks before it writes, so a refusal leaves nothing to undo; the
//!    state of a conversation changes only once all of an operation's statements succeeded.
//! 3. Write each touched conversation's `last_seq`/`last_ts` back, `COMMIT`.
//! 4. Only then hand the events to the sink (on this thread, in commit order) and answer the
//!    callers.
//!
//! Because the seq comes from the locked row and is written back in the same transaction,
//! a conversation's seqs follow commit order across all nodes, and a rollback gives nothing
//! out. `(sender, local_id)` has a unique index: the attempt reads which of its local ids
//! are stored already, finds the rest of the duplicates in memory, and inserts the new
//! messages with `ON CONFLICT DO NOTHING`, which waits for a concurrent insert of the same
//! pair (a retry that landed on another node); a row left out that way would be a gap, so
//! the attempt is run again and finds the original (see `appends`). A serialization
//! failure, a deadlock, a unique violation from a concurrent commit, or a connection lost
//! before `COMMIT` also rolls the attempt back and runs the whole batch again, up to
//! [`MAX_ATTEMPTS`] times; answers and events exist only for the attempt that commits.
//!
//! Layout: this file has the thread, the batches and the markers, users and tokens;
//! `appends.rs` the hot path, `conversations.rs` groups, direct chats and members,
//! `files.rs` uploads.
//!
//! The thread runs its own single-threaded tokio runtime, entered only while a batch talks to
//! the database, so the sink is called outside any runtime and may block, exactly as with
//! SQLite (the server's sink uses `blocking_send`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chatgroup_protocol::{
    ConversationId, ConversationInfo, Markers, MessageView, Millis, Seq, UserId, UserInfo,
};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use tokio::sync::{mpsc, watch};

mod appends;
mod conversations;
mod files;

use super::read::pool_error;
use super::rows;
use crate::error::{Fail, Res};
use crate::files::{FileOp, UploadStart};
use crate::marks::{Board, Pending};
use crate::queries::{now_ms, sql, unsql, username_key};
use crate::writer::{appended_event, AppendResult, Command, ConvState, Reply, Sink, Stats};
use crate::{AppendRequest, Committed, StoreError};

/// How many times a batch runs before a conflict with other nodes fails it.
pub(crate) const MAX_ATTEMPTS: u32 = 10;

/// Past this many cached usernames the cache is dropped between batches.
const NAMES_LIMIT: usize = 100_000;

/// The writer thread's state.
pub(crate) struct Writer {
    runtime: tokio::runtime::Runtime,
    db: Db,
    sink: Sink,
}

/// What a batch needs while it talks to the database.
struct Db {
    /// One connection (this node's writer); the pool reconnects after a lost connection.
    pool: Pool,
    /// Usernames never change and users are never deleted, so unlike conversations they can
    /// be cached across batches even with other nodes writing.
    names: HashMap<UserId, String>,
    stats: Arc<Stats>,
    board: Arc<Board>,
    max_batch: usize,
}

/// A command's answer, computed by the attempt that committed and sent after the commit.
enum Answer {
    User(Result<UserInfo, StoreError>),
    Unit(Result<(), StoreError>),
    Rotated(Result<Option<UserInfo>, StoreError>),
    Conversation(Result<ConversationInfo, StoreError>),
    Direct(Result<(ConversationInfo, bool), StoreError>),
    Marker(Result<Seq, StoreError>),
    Message(Option<AppendResult>),
    Upload(Result<UploadStart, StoreError>),
    Deleted(Result<bool, StoreError>),
    Nothing,
}

/// One attempt at a batch: the locked conversations and what the commands produced.
#[derive(Default)]
struct Attempt {
    convs: HashMap<ConversationId, ConvState>,
    events: Vec<Committed>,
    answers: Vec<Answer>,
    /// Users created in this attempt, cached only once it commits.
    new_names: Vec<(UserId, String)>,
    last_seen: Vec<(UserId, Millis)>,
    ops: u64,
    /// The batch's plain appends whose `(sender, local_id)` was committed before it began.
    originals: HashMap<(UserId, String), MessageView>,
    /// Plain appends waiting for the next multi-row `INSERT` (see [`appends::flush`]).
    rows: Vec<appends::Row>,
    /// Where in `rows` each waiting `(sender, local_id)` is.
    waiting: HashMap<(UserId, String), usize>,
}

impl Attempt {
    /// The locked state of `id`; `NotFound` if it does not exist.
    fn conv(&self, id: ConversationId) -> Res<ConvState> {
        self.convs
            .get(&id)
            .cloned()
            .ok_or(Fail::Store(StoreError::NotFound("conversation")))
    }

    /// Stores an operation's finished copy of a conversation's state.
    fn put(&mut self, id: ConversationId, mut state: ConvState, changed_seq: bool) {
        let was_dirty = self.convs.get(&id).is_some_and(|s| s.dirty);
        state.dirty = was_dirty || changed_seq;
        self.convs.insert(id, state);
    }
}

/// A refusal (`Fail::Store`) becomes the operation's answer; a database error ends the
/// attempt.
fn answer<T>(r: Res<T>) -> Res<Result<T, StoreError>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(Fail::Store(e)) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

fn send<T>(reply: Reply<T>, result: Result<T, StoreError>) {
    // The caller may have stopped waiting (a dropped future); nothing to do then.
    let _ = reply.send(result);
}

impl Writer {
    /// Builds the writer; `pool` must hold one connection.
    pub(crate) fn new(
        runtime: tokio::runtime::Runtime,
        pool: Pool,
        sink: Sink,
        stats: Arc<Stats>,
        max_batch: usize,
        board: Arc<Board>,
    ) -> Self {
        Writer {
            runtime,
            db: Db {
                pool,
                names: HashMap::new(),
                stats,
                board,
                max_batch: max_batch.max(1),
            },
            sink,
        }
    }

    /// The thread's body: batches until every sender is gone or a `Close` arrived and the
    /// queue is drained, then `done`.
    pub(crate) fn run(mut self, mut commands: mpsc::Receiver<Command>, done: watch::Sender<bool>) {
        let mut cmds = Vec::with_capacity(self.db.max_batch);
        while let Some(first) = commands.blocking_recv() {
            cmds.push(first);
            while cmds.len() < self.db.max_batch {
                match commands.try_recv() {
                    Ok(c) => cmds.push(c),
                    Err(_) => break,
                }
            }
            if cmds.iter().any(|c| matches!(c, Command::Close)) {
                // Senders waiting for room now fail with Closed; what is already queued is
                // still received, and committed, below.
                commands.close();
            }
            self.run_batch(&mut cmds);
        }
        drop(self);
        let _ = done.send(true);
    }

    fn run_batch(&mut self, cmds: &mut Vec<Command>) {
        if self.db.names.len() > NAMES_LIMIT {
            self.db.names.clear();
        }
        let marks = self.db.board.take();
        let outcome = self.runtime.block_on(self.db.commit(cmds, &marks));
        match outcome {
            Ok(attempt) => {
                self.db.stats.committed(attempt.ops);
                self.db.names.extend(attempt.new_names);
                for event in attempt.events {
                    (self.sink)(event);
                }
                for (cmd, answer) in cmds.drain(..).zip(attempt.answers) {
                    deliver(cmd, answer);
                }
            }
            Err(err) => {
                self.db.board.restore(marks);
                self.db.stats.failed();
                // Attaches are answered from the committed state, which the failed batch
                // did not change; if even that cannot be read, the connection hears nothing
                // and times out, as with a store that stopped.
                let attached = self.runtime.block_on(self.db.committed_attachments(cmds));
                for cmd in cmds.drain(..) {
                    refuse(cmd, &err, &attached, &mut self.sink);
                }
            }
        }
    }
}

/// True when `e` means the connection itself is gone: closed, or ended by the server
/// (class 57P: an administrator, a shutdown, a crash; class 08: a connection failure).
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code()
            .is_some_and(|c| c.code().starts_with("57P") || c.code().starts_with("08"))
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Sends a committed command's answer.
fn deliver(cmd: Command, answer: Answer) {
    match (cmd, answer) {
        (Command::CreateUser { reply, .. }, Answer::User(r)) => send(reply, r),
        (
            Command::AddRefreshToken { reply, .. }
            | Command::RevokeRefreshToken { reply, .. }
            | Command::RemoveMember { reply, .. },
            Answer::Unit(r),
        ) => send(reply, r),
        (Command::RotateRefreshToken { reply, .. }, Answer::Rotated(r)) => send(reply, r),
        (
            Command::CreateGroup { reply, .. }
            | Command::AddMember { reply, .. }
            | Command::Rename { reply, .. },
            Answer::Conversation(r),
        ) => send(reply, r),
        (Command::CreateDirect { reply, .. }, Answer::Direct(r)) => send(reply, r),
        (Command::MarkRead { reply, .. }, Answer::Marker(r)) => send(reply, r),
        (
            Command::Append {
                reply: Some(reply), ..
            }
            | Command::Files(FileOp::Post { reply, .. }),
            Answer::Message(Some(r)),
        ) => send(reply, r),
        (Command::Files(FileOp::Start { reply, .. }), Answer::Upload(r)) => send(reply, r),
        (Command::Files(FileOp::Delete { reply, .. }), Answer::Deleted(r)) => send(reply, r),
        // Everything else has no caller waiting (the sink got its event), and each command
        // gets the answer of its own kind, so no other pair occurs.
        _ => {}
    }
}

/// Answers a command of a batch that did not commit: every caller gets `err`; appends,
/// whose only answer may be the sink, are rejected there.
fn refuse(
    cmd: Command,
    err: &StoreError,
    attached: &HashMap<UserId, Vec<ConversationId>>,
    sink: &mut Sink,
) {
    let rejected = |req: AppendRequest| Committed::Rejected {
        origin: req.origin,
        conversation: req.conversation,
        local_id: req.local_id,
        error: err.clone(),
    };
    match cmd {
        Command::CreateUser { reply, .. } => send(reply, Err(err.clone())),
        Command::AddRefreshToken { reply, .. }
        | Command::RevokeRefreshToken { reply, .. }
        | Command::RemoveMember { reply, .. } => send(reply, Err(err.clone())),
        Command::RotateRefreshToken { reply, .. } => send(reply, Err(err.clone())),
        Command::CreateGroup { reply, .. }
        | Command::AddMember { reply, .. }
        | Command::Rename { reply, .. } => send(reply, Err(err.clone())),
        Command::CreateDirect { reply, .. } => send(reply, Err(err.clone())),
        Command::MarkRead { reply, .. } => send(reply, Err(err.clone())),
        Command::Append { req, reply } => {
            sink(rejected(req));
            if let Some(reply) = reply {
                send(reply, Err(err.clone()));
            }
        }
        Command::Files(FileOp::Post { req, reply, .. }) => {
            sink(rejected(req));
            send(reply, Err(err.clone()));
        }
        Command::Files(FileOp::Start { reply, .. }) => send(reply, Err(err.clone())),
        Command::Files(FileOp::Delete { reply, .. }) => send(reply, Err(err.clone())),
        Command::Attach { user, tag } => {
            if let Some(conversations) = attached.get(&user) {
                sink(Committed::Attached {
                    tag,
                    user,
                    conversations: conversations.clone(),
                });
            }
        }
        Command::Marks | Command::LastSeen { .. } | Command::Close => {}
    }
}

/// The conversations a batch's commands and markers touch, in lock order.
fn touched(cmds: &[Command], marks: &Pending) -> Vec<i64> {
    let mut ids = BTreeSet::new();
    for cmd in cmds {
        let id = match cmd {
            Command::Append { req, .. } | Command::Files(FileOp::Post { req, .. }) => {
                req.conversation
            }
            Command::Files(FileOp::Start { req, .. }) => req.conversation,
            Command::AddMember { conversation, .. }
            | Command::RemoveMember { conversation, .. }
            | Command::Rename { conversation, .. }
            | Command::MarkRead { conversation, .. } => *conversation,
            _ => continue,
        };
        ids.insert(sql(id.0));
    }
    ids.extend(marks.keys().map(|(c, _)| sql(c.0)));
    ids.into_iter().collect()
}

impl Db {
    /// Runs the batch until an attempt commits, a refusal-free database error ends it, or
    /// the conflicts with other nodes outlast [`MAX_ATTEMPTS`].
    async fn commit(&mut self, cmds: &[Command], marks: &Pending) -> Result<Attempt, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.attempt(cmds, marks).await {
                Ok(done) => return Ok(done),
                Err(e) if e.is_retryable() && tries < MAX_ATTEMPTS => {
                    self.stats.retried();
                    // A short, growing pause lets the other node's transaction finish.
                    let jitter = u64::from(crate::schema::random_bytes(1).map_or(0, |b| b[0]));
                    let pause = u64::from(tries) * 2 + jitter % 5;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One attempt on a pooled connection. A connection that broke is taken out of the pool,
    /// so the next attempt connects afresh; if it broke before `COMMIT` was sent, nothing was
    /// committed and the attempt may simply run again ([`Fail::Lost`]).
    async fn attempt(&mut self, cmds: &[Command], marks: &Pending) -> Res<Attempt> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let mut committing = false;
        let outcome = self
            .transact(&mut client, cmds, marks, &mut committing)
            .await;
        match outcome {
            Err(Fail::Pg(e)) if connection_lost(&e) => {
                // The pool would hand this connection out again until its task noticed.
                drop(deadpool_postgres::Object::take(client));
                Err(if committing {
                    Fail::Pg(e)
                } else {
                    Fail::Lost(e)
                })
            }
            outcome => outcome,
        }
    }

    async fn transact(
        &mut self,
        client: &mut deadpool_postgres::Client,
        cmds: &[Command],
        marks: &Pending,
        committing: &mut bool,
    ) -> Res<Attempt> {
        // On any error below the transaction is dropped, which rolls it back.
        let tx = client.transaction().await?;
        let mut a = Attempt {
            events: Vec::with_capacity(cmds.len() + cmds.len() / 2),
            answers: Vec::with_capacity(cmds.len()),
            ..Attempt::default()
        };
        appends::start(&tx, &touched(cmds, marks), cmds, &mut a).await?;
        // Markers first: they were reported about messages committed before this batch.
        self.apply_marks(&tx, marks, &mut a).await?;
        for cmd in cmds {
            let answer = self.apply(&tx, cmd, &mut a).await?;
            a.answers.push(answer);
        }
        appends::flush(&tx, &mut a).await?;
        let (mut ids, mut seqs, mut tss) = (Vec::new(), Vec::new(), Vec::new());
        for (id, state) in &a.convs {
            if state.dirty {
                ids.push(sql(id.0));
                seqs.push(sql(state.last_seq.0));
                tss.push(state.last_ts);
            }
        }
        if !ids.is_empty() {
            let stmt = tx
                .prepare_cached(
                    "UPDATE conversations c SET last_seq = v.seq, last_ts = v.ts
                     FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[]) AS v (id, seq, ts)
                     WHERE c.id = v.id",
                )
                .await?;
            tx.execute(&stmt, &[&ids, &seqs, &tss]).await?;
        }
        // Last, and in user order, so two nodes never take user rows in opposite orders.
        a.last_seen.sort_unstable();
        for (user, at) in &a.last_seen {
            tx.execute(
                "UPDATE users SET last_seen = GREATEST(coalesce(last_seen, 0), $2) WHERE id = $1",
                &[&sql(user.0), at],
            )
            .await?;
        }
        *committing = true;
        tx.commit().await?;
        Ok(a)
    }

    /// The committed conversations of every user a batch's attaches named.
    async fn committed_attachments(
        &self,
        cmds: &[Command],
    ) -> HashMap<UserId, Vec<ConversationId>> {
        let mut out = HashMap::new();
        let Ok(client) = self.pool.get().await else {
            return out;
        };
        for cmd in cmds {
            if let Command::Attach { user, .. } = cmd {
                if let Ok(list) = rows::user_conversations(&client, *user).await {
                    out.insert(*user, list);
                }
            }
        }
        out
    }

    async fn apply(&mut self, tx: &Transaction<'_>, cmd: &Command, a: &mut Attempt) -> Res<Answer> {
        a.ops += 1;
        if !matches!(cmd, Command::Append { .. }) {
            // Every other operation may read messages (a conversation's last one, a local
            // id): the waiting appends go in first.
            appends::flush(tx, a).await?;
        }
        Ok(match cmd {
            Command::Append { req, reply } => {
                let waiting = self.buffer_append(tx, req, a).await?;
                let (event, result) =
                    appended_event(req.clone(), waiting.outcome, None, reply.is_some());
                if let Some(row) = waiting.row {
                    // This command's answer is pushed right after it returns.
                    let answer = reply.is_some().then_some(a.answers.len());
                    a.rows[row].patch.push((a.events.len(), answer));
                }
                a.events.push(event);
                Answer::Message(result)
            }
            Command::Files(op) => self.file_op(tx, op, a).await?,
            Command::Attach { user, tag } => {
                let conversations = rows::user_conversations(tx, *user).await?;
                a.events.push(Committed::Attached {
                    tag: *tag,
                    user: *user,
                    conversations,
                });
                Answer::Nothing
            }
            Command::MarkRead {
                user,
                conversation,
                seq,
                ..
            } => {
                let mut events = Vec::new();
                let r = answer(
                    self.move_markers(tx, a, *conversation, *user, *seq, *seq, &mut events)
                        .await,
                )?;
                a.events.append(&mut events);
                Answer::Marker(r.map(|m| m.read))
            }
            Command::CreateUser {
                username,
                password_hash,
                ..
            } => Answer::User(answer(
                self.create_user(tx, a, username, password_hash).await,
            )?),
            Command::AddRefreshToken {
                user,
                hash,
                expires_at,
                ..
            } => Answer::Unit(answer(
                self.add_refresh_token(tx, *user, hash, *expires_at).await,
            )?),
            Command::RotateRefreshToken {
                old,
                new,
                new_expires_at,
                now,
                ..
            } => Answer::Rotated(answer(
                self.rotate_refresh_token(tx, old, new, *new_expires_at, *now)
                    .await,
            )?),
            Command::RevokeRefreshToken { hash, .. } => {
                tx.execute("DELETE FROM refresh_tokens WHERE hash = $1", &[&&hash[..]])
                    .await?;
                Answer::Unit(Ok(()))
            }
            Command::CreateGroup {
                owner,
                name,
                members,
                ..
            } => {
                let mut events = Vec::new();
                let r = answer(
                    self.create_group(tx, a, *owner, name, members, &mut events)
                        .await,
                )?;
                a.events.append(&mut events);
                Answer::Conversation(r)
            }
            Command::CreateDirect { a: x, b: y, .. } => {
                let mut events = Vec::new();
                let r = answer(self.create_direct(tx, a, *x, *y, &mut events).await)?;
                a.events.append(&mut events);
                Answer::Direct(r)
            }
            Command::AddMember {
                by,
                conversation,
                user,
                ..
            } => {
                let mut events = Vec::new();
                let r = answer(
                    self.add_member(tx, a, *by, *conversation, *user, &mut events)
                        .await,
                )?;
                a.events.append(&mut events);
                Answer::Conversation(r)
            }
            Command::RemoveMember {
                by,
                conversation,
                user,
                ..
            } => {
                let mut events = Vec::new();
                let r = answer(
                    self.remove_member(tx, a, *by, *conversation, *user, &mut events)
                        .await,
                )?;
                a.events.append(&mut events);
                Answer::Unit(r)
            }
            Command::Rename {
                by,
                conversation,
                name,
                ..
            } => {
                let mut events = Vec::new();
                let r = answer(
                    self.rename(tx, a, *by, *conversation, name, &mut events)
                        .await,
                )?;
                a.events.append(&mut events);
                Answer::Conversation(r)
            }
            Command::LastSeen { user, at } => {
                a.last_seen.push((*user, *at));
                Answer::Nothing
            }
            Command::Marks | Command::Close => {
                a.ops -= 1;
                Answer::Nothing
            }
        })
    }

    /// A user's name; `NotFound("user")` if there is no such user.
    async fn name(&mut self, tx: &Transaction<'_>, a: &Attempt, id: UserId) -> Res<String> {
        if let Some(name) = self.names.get(&id) {
            return Ok(name.clone());
        }
        if let Some((_, name)) = a.new_names.iter().find(|(u, _)| *u == id) {
            return Ok(name.clone());
        }
        let user = rows::user(tx, id)
            .await?
            .ok_or(Fail::Store(StoreError::NotFound("user")))?;
        self.names.insert(id, user.username.clone());
        Ok(user.username)
    }

    // ---- markers ----

    async fn apply_marks(
        &mut self,
        tx: &Transaction<'_>,
        marks: &Pending,
        a: &mut Attempt,
    ) -> Res<()> {
        // In conversation order, like the locks, so member rows are taken in one order too.
        let mut sorted: Vec<_> = marks.iter().collect();
        sorted.sort_unstable_by_key(|((c, u), _)| (*c, *u));
        for (&(conversation, user), r) in sorted {
            a.ops += 1;
            let mut events = Vec::new();
            match self
                .move_markers(tx, a, conversation, user, r.delivered, r.read, &mut events)
                .await
            {
                Ok(_) => a.events.append(&mut events),
                Err(Fail::Store(error)) => a.events.push(Committed::MarksRefused {
                    tag: r.tag,
                    conversation,
                    error,
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Moves `user`'s markers forward (never back, never past the last message; reading
    /// implies delivery) and reports a move as [`Committed::Receipt`].
    #[allow(clippy::too_many_arguments)]
    async fn move_markers(
        &mut self,
        tx: &Transaction<'_>,
        a: &Attempt,
        conversation: ConversationId,
        user: UserId,
        delivered: Seq,
        read: Seq,
        events: &mut Vec<Committed>,
    ) -> Res<Markers> {
        let state = a.conv(conversation)?;
        if !state.members.contains(&user) {
            return Err(StoreError::NotMember.into());
        }
        let read = read.min(state.last_seq);
        let delivered = delivered.max(read).min(state.last_seq);
        let row = tx
            .query_one(
                "SELECT delivered_seq, read_seq FROM members WHERE conversation_id = $1 AND user_id = $2",
                &[&sql(conversation.0), &sql(user.0)],
            )
            .await?;
        let previous = Markers {
            user,
            delivered: Seq(unsql(row.try_get(0)?)),
            read: Seq(unsql(row.try_get(1)?)),
        };
        let now = Markers {
            user,
            delivered: previous.delivered.max(delivered),
            read: previous.read.max(read),
        };
        if now != previous {
            tx.execute(
                "UPDATE members SET delivered_seq = $3, read_seq = $4
                 WHERE conversation_id = $1 AND user_id = $2",
                &[
                    &sql(conversation.0),
                    &sql(user.0),
                    &sql(now.delivered.0),
                    &sql(now.read.0),
                ],
            )
            .await?;
            events.push(Committed::Receipt {
                conversation,
                markers: now,
                previous,
            });
        }
        Ok(now)
    }

    // ---- users and tokens ----

    async fn create_user(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        username: &str,
        password_hash: &str,
    ) -> Res<UserInfo> {
        if username.is_empty() {
            return Err(StoreError::Invalid("empty username".into()).into());
        }
        // A name taken meanwhile by another node (even uncommitted) makes this wait for it,
        // then insert nothing.
        let row = tx
            .query_opt(
                "INSERT INTO users (username, username_key, password_hash, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (username_key) DO NOTHING RETURNING id",
                &[
                    &username,
                    &username_key(username),
                    &password_hash,
                    &now_ms(),
                ],
            )
            .await?
            .ok_or(Fail::Store(StoreError::UsernameTaken))?;
        let id = UserId(unsql(row.try_get(0)?));
        a.new_names.push((id, username.to_owned()));
        Ok(UserInfo {
            id,
            username: username.to_owned(),
        })
    }

    async fn add_refresh_token(
        &mut self,
        tx: &Transaction<'_>,
        user: UserId,
        hash: &[u8; 32],
        expires_at: Millis,
    ) -> Res<()> {
        rows::user(tx, user)
            .await?
            .ok_or(Fail::Store(StoreError::NotFound("user")))?;
        // Expired tokens can never be used again: drop this user's while we are here.
        tx.execute(
            "DELETE FROM refresh_tokens WHERE user_id = $1 AND expires_at <= $2",
            &[&sql(user.0), &now_ms()],
        )
        .await?;
        tx.execute(
            "INSERT INTO refresh_tokens (hash, user_id, expires_at) VALUES ($1, $2, $3)",
            &[&&hash[..], &sql(user.0), &expires_at],
        )
        .await?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &mut self,
        tx: &Transaction<'_>,
        old: &[u8; 32],
        new: &[u8; 32],
        new_expires_at: Millis,
        now: Millis,
    ) -> Res<Option<UserInfo>> {
        // Deleted whether or not it is still valid: a token is used at most once. Two nodes
        // rotating the same token at once: the second waits for the first's delete and then
        // finds nothing.
        let found = tx
            .query_opt(
                "DELETE FROM refresh_tokens WHERE hash = $1 RETURNING user_id, expires_at",
                &[&&old[..]],
            )
            .await?;
        let Some(row) = found else {
            return Ok(None);
        };
        let (user, expires_at): (i64, Millis) = (row.try_get(0)?, row.try_get(1)?);
        if expires_at <= now {
            return Ok(None);
        }
        let user = UserId(unsql(user));
        tx.execute(
            "INSERT INTO refresh_tokens (hash, user_id, expires_at) VALUES ($1, $2, $3)",
            &[&&new[..], &sql(user.0), &new_expires_at],
        )
        .await?;
        let username = rows::user(tx, user)
            .await?
            .ok_or(Fail::Store(StoreError::NotFound("user")))?
            .username;
        Ok(Some(UserInfo { id: user, username }))
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("pg::Writer")
            .field("max_batch", &self.db.max_batch)
            .finish_non_exhaustive()
    }
}
