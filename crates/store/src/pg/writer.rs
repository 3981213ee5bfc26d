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
//! out. `(sender, local_id)` is deduplicated by `INSERT … ON CONFLICT DO NOTHING` on its
//! unique index, which waits for a concurrent insert of the same pair (a retry that landed
//! on another node) and then finds the original. A serialization failure, a deadlock (two
//! nodes racing on the same local id in different conversations) or a unique violation from
//! a concurrent commit rolls the attempt back and runs the whole batch again, up to
//! [`MAX_ATTEMPTS`] times; answers and events exist only for the attempt that commits.
//!
//! The thread runs its own single-threaded tokio runtime, entered only while a batch talks to
//! the database, so the sink is called outside any runtime and may block, exactly as with
//! SQLite (the server's sink uses `blocking_send`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chatgroup_protocol::{
    ConversationId, ConversationInfo, ConversationKind, Markers, MessageId, MessageKind,
    MessageView, Millis, Seq, SystemEvent, UserId, UserInfo,
};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use tokio::sync::{mpsc, watch};

use super::read::pool_error;
use super::rows::{self, kind_to_sql};
use crate::error::{Fail, Res};
use crate::files::{same_upload, FileOp, NewUpload, StoredFile, UploadStart};
use crate::marks::{Board, Pending};
use crate::queries::{now_ms, sql, unsql, username_key};
use crate::writer::{
    appended_event, check_group, check_member, group_name, AppendResult, Appended, Command,
    ConvState, Reply, Sink, Stats,
};
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
    /// Plain appends waiting for the next multi-row `INSERT` (see [`Db::flush`]).
    rows: Vec<Row>,
    /// Where in `rows` each waiting `(sender, local_id)` is.
    waiting: HashMap<(UserId, String), usize>,
}

/// A plain append that passed its checks and holds its seq, waiting to be inserted with the
/// others (one statement for all of them instead of one round trip each). Its message id
/// is known only after the insert; `patch` says which events and answers carry it.
struct Row {
    message: MessageView,
    /// `(event index, answer index)` of the append and of its in-batch duplicates.
    patch: Vec<(usize, Option<usize>)>,
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
        start(&tx, &touched(cmds, marks), cmds, &mut a).await?;
        // Markers first: they were reported about messages committed before this batch.
        self.apply_marks(&tx, marks, &mut a).await?;
        for cmd in cmds {
            let answer = self.apply(&tx, cmd, &mut a).await?;
            a.answers.push(answer);
        }
        flush(&tx, &mut a).await?;
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
            flush(tx, a).await?;
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

    // ---- appends ----

    /// The hot path for a plain append: the same checks and seq as [`Db::insert_append`],
    /// but the row waits in `a.rows` for [`flush`]. Duplicates are found in memory: among
    /// the originals read when the attempt began, then among the waiting rows.
    async fn buffer_append(
        &mut self,
        tx: &Transaction<'_>,
        req: &AppendRequest,
        a: &mut Attempt,
    ) -> Res<Buffered> {
        let key = (req.sender, req.local_id.clone());
        let earlier = |a: &Attempt| -> Option<Buffered> {
            if let Some(original) = a.originals.get(&key) {
                return Some(Buffered::done(Appended::Duplicate(Box::new(
                    original.clone(),
                ))));
            }
            a.waiting.get(&key).map(|&row| Buffered {
                outcome: Appended::Duplicate(Box::new(a.rows[row].message.clone())),
                row: Some(row),
            })
        };
        let refused = |a: &Attempt, error: StoreError| {
            earlier(a).unwrap_or(Buffered::done(Appended::Refused(error)))
        };
        if req.kind == MessageKind::System {
            return Ok(Buffered::done(Appended::Refused(StoreError::Invalid(
                "system messages are written by the server only".into(),
            ))));
        }
        let sender_name = match self.name(tx, a, req.sender).await {
            Ok(name) => name,
            Err(Fail::Store(_)) => return Ok(refused(a, StoreError::NotMember)),
            Err(e) => return Err(e),
        };
        let Some(state) = a.convs.get(&req.conversation) else {
            return Ok(refused(a, StoreError::NotFound("conversation")));
        };
        if !state.members.contains(&req.sender) {
            return Ok(refused(a, StoreError::NotMember));
        }
        if let Some(duplicate) = earlier(a) {
            return Ok(duplicate);
        }
        let Some(state) = a.convs.get_mut(&req.conversation) else {
            return Ok(refused(a, StoreError::NotFound("conversation")));
        };
        let seq = state.last_seq.next();
        let ts = now_ms().max(state.last_ts);
        state.last_seq = seq;
        state.last_ts = ts;
        state.dirty = true;
        let row = a.rows.len();
        a.rows.push(Row {
            message: MessageView {
                conversation: req.conversation,
                // Filled in by flush.
                id: MessageId(0),
                seq,
                ts,
                sender: Some(req.sender),
                sender_name: Some(sender_name.clone()),
                kind: req.kind,
                body: req.body.clone(),
                local_id: Some(req.local_id.clone()),
                event: None,
                file: None,
            },
            patch: Vec::new(),
        });
        a.waiting.insert(key, row);
        Ok(Buffered {
            outcome: Appended::New {
                id: MessageId(0),
                seq,
                ts,
                sender_name,
            },
            row: Some(row),
        })
    }

    async fn insert_append(
        &mut self,
        tx: &Transaction<'_>,
        req: &AppendRequest,
        a: &mut Attempt,
    ) -> Res<Appended> {
        if req.kind == MessageKind::System {
            return Ok(Appended::Refused(StoreError::Invalid(
                "system messages are written by the server only".into(),
            )));
        }
        let sender_name = match self.name(tx, a, req.sender).await {
            Ok(name) => name,
            Err(Fail::Store(_)) => return refuse_append(tx, req, StoreError::NotMember).await,
            Err(e) => return Err(e),
        };
        let Some(state) = a.convs.get_mut(&req.conversation) else {
            return refuse_append(tx, req, StoreError::NotFound("conversation")).await;
        };
        if !state.members.contains(&req.sender) {
            return refuse_append(tx, req, StoreError::NotMember).await;
        }
        let seq = state.last_seq.next();
        let ts = now_ms().max(state.last_ts);
        // The unique index on (sender, local_id) turns a retry into no row; if another node
        // is inserting the same pair right now, this waits for its transaction and then sees
        // the original.
        let stmt = tx
            .prepare_cached(
                "INSERT INTO messages (conversation_id, seq, ts, sender, kind, body, local_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (sender, local_id) DO NOTHING RETURNING id",
            )
            .await?;
        let inserted = tx
            .query_opt(
                &stmt,
                &[
                    &sql(req.conversation.0),
                    &sql(seq.0),
                    &ts,
                    &sql(req.sender.0),
                    &kind_to_sql(req.kind),
                    &req.body,
                    &req.local_id,
                ],
            )
            .await?;
        let Some(row) = inserted else {
            return match rows::message_by_local_id(tx, req.sender, &req.local_id).await? {
                Some(original) => Ok(Appended::Duplicate(Box::new(original))),
                None => Err(StoreError::Db("a conflicting local id vanished".into()).into()),
            };
        };
        let id = MessageId(unsql(row.try_get(0)?));
        state.last_seq = seq;
        state.last_ts = ts;
        state.dirty = true;
        Ok(Appended::New {
            id,
            seq,
            ts,
            sender_name,
        })
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

    // ---- conversations ----

    async fn create_group(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        owner: UserId,
        name: &str,
        members: &[UserId],
        events: &mut Vec<Committed>,
    ) -> Res<ConversationInfo> {
        let name = group_name(name)?;
        let mut users = vec![owner];
        for &m in members {
            if !users.contains(&m) {
                users.push(m);
            }
        }
        for &u in &users {
            self.name(tx, a, u).await?;
        }
        let now = now_ms();
        let id: i64 = tx
            .query_one(
                "INSERT INTO conversations (kind, name, owner, created_at)
                 VALUES ('group', $1, $2, $3) RETURNING id",
                &[&name, &sql(owner.0), &now],
            )
            .await?
            .try_get(0)?;
        let id = ConversationId(unsql(id));
        insert_members(tx, id, &users, Seq::ZERO, now).await?;
        let mut state = ConvState {
            kind: ConversationKind::Group,
            owner: Some(owner),
            last_seq: Seq::ZERO,
            last_ts: 0,
            members: users.iter().copied().collect(),
            dirty: false,
        };
        let conversation = neutral_info(tx, id, &state).await?;
        events.push(Committed::MembersAdded {
            conversation,
            users,
        });
        let body = format!(
            "{} created the group \"{name}\"",
            self.name(tx, a, owner).await?
        );
        let event = SystemEvent::Created {
            by: owner,
            name: Some(name.to_owned()),
        };
        self.system_message(tx, a, id, &mut state, owner, event, body, events)
            .await?;
        let info = viewer_info(tx, id, &state, owner).await?;
        a.put(id, state, true);
        Ok(info)
    }

    async fn create_direct(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        x: UserId,
        y: UserId,
        events: &mut Vec<Committed>,
    ) -> Res<(ConversationInfo, bool)> {
        if x == y {
            return Err(
                StoreError::Invalid("a direct chat needs two different users".into()).into(),
            );
        }
        let x_name = self.name(tx, a, x).await?;
        let y_name = self.name(tx, a, y).await?;
        let (lo, hi) = if x < y { (x, y) } else { (y, x) };
        let now = now_ms();
        // Created by another node meanwhile: this waits for it and then inserts nothing.
        let created = tx
            .query_opt(
                "INSERT INTO conversations (kind, name, direct_lo, direct_hi, created_at)
                 VALUES ('direct', '', $1, $2, $3)
                 ON CONFLICT (direct_lo, direct_hi) WHERE direct_lo IS NOT NULL DO NOTHING
                 RETURNING id",
                &[&sql(lo.0), &sql(hi.0), &now],
            )
            .await?;
        let Some(row) = created else {
            let id: i64 = tx
                .query_one(
                    "SELECT id FROM conversations WHERE direct_lo = $1 AND direct_hi = $2",
                    &[&sql(lo.0), &sql(hi.0)],
                )
                .await?
                .try_get(0)?;
            let id = ConversationId(unsql(id));
            let row = rows::conversation_row(tx, id)
                .await?
                .ok_or(Fail::Store(StoreError::NotFound("conversation")))?;
            let last_seq = a.convs.get(&id).map_or(row.last_seq, |s| s.last_seq);
            let read = rows::read_marker(tx, x, id).await?.unwrap_or(last_seq);
            let info = rows::conversation_info(tx, id, &row, last_seq, Some((x, read))).await?;
            return Ok((info, false));
        };
        let id = ConversationId(unsql(row.try_get(0)?));
        let users = vec![x, y];
        insert_members(tx, id, &users, Seq::ZERO, now).await?;
        let mut state = ConvState {
            kind: ConversationKind::Direct,
            owner: None,
            last_seq: Seq::ZERO,
            last_ts: 0,
            members: users.iter().copied().collect(),
            dirty: false,
        };
        let conversation = neutral_info(tx, id, &state).await?;
        events.push(Committed::MembersAdded {
            conversation,
            users,
        });
        let body = format!("{x_name} started a chat with {y_name}");
        let event = SystemEvent::Created { by: x, name: None };
        self.system_message(tx, a, id, &mut state, x, event, body, events)
            .await?;
        let info = viewer_info(tx, id, &state, x).await?;
        a.put(id, state, true);
        Ok((info, true))
    }

    async fn add_member(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        by: UserId,
        conversation: ConversationId,
        user: UserId,
        events: &mut Vec<Committed>,
    ) -> Res<ConversationInfo> {
        let mut state = a.conv(conversation)?;
        check_member(&state, by)?;
        check_group(&state)?;
        if state.owner != Some(by) {
            return Err(StoreError::NotOwner.into());
        }
        let user_name = self.name(tx, a, user).await?;
        if state.members.contains(&user) {
            return viewer_info(tx, conversation, &state, by).await;
        }
        insert_members(tx, conversation, &[user], state.last_seq, now_ms()).await?;
        state.members.insert(user);
        let info = neutral_info(tx, conversation, &state).await?;
        events.push(Committed::MembersAdded {
            conversation: info,
            users: vec![user],
        });
        let body = format!("{} added {user_name}", self.name(tx, a, by).await?);
        let event = SystemEvent::Joined { user, by };
        self.system_message(tx, a, conversation, &mut state, by, event, body, events)
            .await?;
        let info = viewer_info(tx, conversation, &state, by).await?;
        a.put(conversation, state, true);
        Ok(info)
    }

    async fn remove_member(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        by: UserId,
        conversation: ConversationId,
        user: UserId,
        events: &mut Vec<Committed>,
    ) -> Res<()> {
        let mut state = a.conv(conversation)?;
        check_member(&state, by)?;
        check_group(&state)?;
        let (event, body) = if by == user {
            let name = self.name(tx, a, user).await?;
            (SystemEvent::Left { user }, format!("{name} left"))
        } else {
            if state.owner != Some(by) {
                return Err(StoreError::NotOwner.into());
            }
            if !state.members.contains(&user) {
                return Err(StoreError::NotFound("member").into());
            }
            let by_name = self.name(tx, a, by).await?;
            let name = self.name(tx, a, user).await?;
            (
                SystemEvent::Removed { user, by },
                format!("{by_name} removed {name}"),
            )
        };
        // The system message goes out while `user` is still a member, so they get it too.
        self.system_message(tx, a, conversation, &mut state, by, event, body, events)
            .await?;
        tx.execute(
            "DELETE FROM members WHERE conversation_id = $1 AND user_id = $2",
            &[&sql(conversation.0), &sql(user.0)],
        )
        .await?;
        state.members.remove(&user);
        events.push(Committed::MemberRemoved { conversation, user });
        if state.owner == Some(user) {
            let heir: Option<i64> = tx
                .query_opt(
                    "SELECT user_id FROM members WHERE conversation_id = $1 ORDER BY id LIMIT 1",
                    &[&sql(conversation.0)],
                )
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            state.owner = heir.map(|h| UserId(unsql(h)));
            tx.execute(
                "UPDATE conversations SET owner = $2 WHERE id = $1",
                &[&sql(conversation.0), &heir],
            )
            .await?;
        }
        let info = neutral_info(tx, conversation, &state).await?;
        events.push(Committed::ConversationChanged { conversation: info });
        a.put(conversation, state, true);
        Ok(())
    }

    async fn rename(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        by: UserId,
        conversation: ConversationId,
        name: &str,
        events: &mut Vec<Committed>,
    ) -> Res<ConversationInfo> {
        let mut state = a.conv(conversation)?;
        check_member(&state, by)?;
        check_group(&state)?;
        let name = group_name(name)?;
        let by_name = self.name(tx, a, by).await?;
        tx.execute(
            "UPDATE conversations SET name = $2 WHERE id = $1",
            &[&sql(conversation.0), &name],
        )
        .await?;
        let body = format!("{by_name} renamed the group to \"{name}\"");
        let event = SystemEvent::Renamed {
            name: name.to_owned(),
            by,
        };
        self.system_message(tx, a, conversation, &mut state, by, event, body, events)
            .await?;
        let info = neutral_info(tx, conversation, &state).await?;
        events.push(Committed::ConversationChanged { conversation: info });
        let info = viewer_info(tx, conversation, &state, by).await?;
        a.put(conversation, state, true);
        Ok(info)
    }

    /// Stores a system message as the next seq of `state` and queues its event.
    #[allow(clippy::too_many_arguments)]
    async fn system_message(
        &mut self,
        tx: &Transaction<'_>,
        a: &Attempt,
        id: ConversationId,
        state: &mut ConvState,
        by: UserId,
        event: SystemEvent,
        body: String,
        events: &mut Vec<Committed>,
    ) -> Res<()> {
        let seq = state.last_seq.next();
        let ts = now_ms().max(state.last_ts);
        let json = serde_json::to_string(&event).map_err(|e| StoreError::Db(e.to_string()))?;
        let message_id: i64 = tx
            .query_one(
                "INSERT INTO messages (conversation_id, seq, ts, sender, kind, body, event)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    &sql(id.0),
                    &sql(seq.0),
                    &ts,
                    &sql(by.0),
                    &kind_to_sql(MessageKind::System),
                    &body,
                    &json,
                ],
            )
            .await?
            .try_get(0)?;
        let message = MessageView {
            conversation: id,
            id: MessageId(unsql(message_id)),
            seq,
            ts,
            sender: Some(by),
            sender_name: Some(self.name(tx, a, by).await?),
            kind: MessageKind::System,
            body,
            local_id: None,
            event: Some(event),
            file: None,
        };
        state.last_seq = seq;
        state.last_ts = ts;
        events.push(Committed::Message {
            message,
            origin: None,
        });
        Ok(())
    }

    // ---- files ----

    async fn file_op(&mut self, tx: &Transaction<'_>, op: &FileOp, a: &mut Attempt) -> Res<Answer> {
        Ok(match op {
            FileOp::Start { req, .. } => Answer::Upload(answer(start_upload(tx, a, req).await)?),
            FileOp::Post {
                req, file, sha256, ..
            } => {
                let (outcome, info) =
                    match self.insert_file_message(tx, a, req, *file, sha256).await {
                        Ok(done) => done,
                        Err(Fail::Store(error)) => (Appended::Refused(error), None),
                        Err(e) => return Err(e),
                    };
                let (event, result) = appended_event(req.clone(), outcome, info, true);
                a.events.push(event);
                Answer::Message(result)
            }
            FileOp::Delete { id, .. } => {
                let n = tx
                    .execute(
                        "DELETE FROM files WHERE id = $1 AND completed_at IS NULL",
                        &[&sql(*id)],
                    )
                    .await?;
                Answer::Deleted(Ok(n > 0))
            }
        })
    }

    /// The append path with a file attached, as SQLite's: the message goes in through
    /// `insert_append`, then two single-row updates tie it to the file; a failure of either
    /// fails the attempt, so no seq is ever lost or reused.
    async fn insert_file_message(
        &mut self,
        tx: &Transaction<'_>,
        a: &mut Attempt,
        req: &AppendRequest,
        file: u64,
        sha256: &str,
    ) -> Res<(Appended, Option<chatgroup_protocol::FileInfo>)> {
        let row = rows::file_row(tx, file)
            .await?
            .filter(|f| f.uploader == req.sender && f.upload_id == req.local_id)
            .ok_or(Fail::Store(StoreError::NotFound("file")))?;
        if row.completed {
            // Posted before: the retry gets the original message, as any retried send does.
            return Ok(
                match rows::message_by_local_id(tx, req.sender, &req.local_id).await? {
                    Some(original) => (Appended::Duplicate(Box::new(original)), None),
                    None => (Appended::Refused(StoreError::NotFound("file")), None),
                },
            );
        }
        let appended = self.insert_append(tx, req, a).await?;
        let Appended::New { id, .. } = &appended else {
            return Ok((appended, None));
        };
        // A plain append of the same local id later in this batch finds it here: the
        // originals were read before this row existed.
        if let Some(message) = rows::message_by_local_id(tx, req.sender, &req.local_id).await? {
            a.originals
                .insert((req.sender, req.local_id.clone()), message);
        }
        tx.execute(
            "UPDATE messages SET file_id = $2 WHERE id = $1",
            &[&sql(id.0), &sql(file)],
        )
        .await?;
        tx.execute(
            "UPDATE files SET completed_at = $2, sha256 = $3 WHERE id = $1",
            &[&sql(file), &now_ms(), &sha256],
        )
        .await?;
        let info = StoredFile {
            sha256: Some(sha256.to_owned()),
            completed: true,
            ..row
        }
        .info();
        Ok((appended, Some(info)))
    }
}

/// How a plain append went: its outcome and, if its message is waiting to be inserted, the
/// row whose id it needs.
struct Buffered {
    outcome: Appended,
    row: Option<usize>,
}

impl Buffered {
    fn done(outcome: Appended) -> Self {
        Buffered { outcome, row: None }
    }
}

/// Inserts the waiting appends in one statement and fills their ids into the events and
/// answers that carry them.
///
/// A row that does not go in was inserted meanwhile by another node under the same
/// `(sender, local_id)`, after this attempt read the originals (the insert waited for that
/// node's commit): its seq would be a gap, so the attempt ends as a conflict and the batch
/// runs again, this time finding the original.
async fn flush(tx: &Transaction<'_>, a: &mut Attempt) -> Res<()> {
    if a.rows.is_empty() {
        return Ok(());
    }
    let n = a.rows.len();
    let (mut conversations, mut seqs, mut tss, mut senders) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut kinds, mut bodies, mut local_ids) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for row in &a.rows {
        let m = &row.message;
        conversations.push(sql(m.conversation.0));
        seqs.push(sql(m.seq.0));
        tss.push(m.ts);
        senders.push(m.sender.map_or(0, |s| sql(s.0)));
        kinds.push(kind_to_sql(m.kind));
        bodies.push(m.body.as_str());
        local_ids.push(m.local_id.as_deref().unwrap_or_default());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO messages (conversation_id, seq, ts, sender, kind, body, local_id)
             SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[],
                                  $5::SMALLINT[], $6::TEXT[], $7::TEXT[])
             ON CONFLICT (sender, local_id) DO NOTHING
             RETURNING id, sender, local_id",
        )
        .await?;
    let inserted = tx
        .query(
            &stmt,
            &[
                &conversations,
                &seqs,
                &tss,
                &senders,
                &kinds,
                &bodies,
                &local_ids,
            ],
        )
        .await?;
    if inserted.len() != n {
        return Err(Fail::Conflict);
    }
    let mut ids = HashMap::with_capacity(n);
    for row in inserted {
        let sender = UserId(unsql(row.try_get(1)?));
        let local_id: String = row.try_get(2)?;
        ids.insert((sender, local_id), MessageId(unsql(row.try_get(0)?)));
    }
    for row in a.rows.drain(..) {
        let key = (
            row.message.sender.unwrap_or(UserId(0)),
            row.message.local_id.clone().unwrap_or_default(),
        );
        let id = *ids.get(&key).ok_or(Fail::Conflict)?;
        for (event, answer) in row.patch {
            if let Some(Committed::Message { message, .. } | Committed::Duplicate { message, .. }) =
                a.events.get_mut(event)
            {
                message.id = id;
            }
            if let Some(Answer::Message(Some(Ok((message, _))))) =
                answer.and_then(|i| a.answers.get_mut(i))
            {
                message.id = id;
            }
        }
        let mut message = row.message;
        message.id = id;
        a.originals.insert(key.clone(), message);
        a.waiting.remove(&key);
    }
    Ok(())
}

/// Starts an attempt: locks the conversations `ids` (already in id order), reads their
/// state and members, and reads the messages already stored under the local ids of the
/// batch's plain appends. The three statements are prepared first (once per connection),
/// then sent together and answered in order, in one round trip: the members are read after
/// the locks are held, since a connection runs its statements one after the other.
async fn start(tx: &Transaction<'_>, ids: &[i64], cmds: &[Command], a: &mut Attempt) -> Res<()> {
    let (mut senders, mut local_ids) = (Vec::new(), Vec::new());
    for cmd in cmds {
        if let Command::Append { req, .. } = cmd {
            senders.push(sql(req.sender.0));
            local_ids.push(req.local_id.as_str());
        }
    }
    let lock = tx
        .prepare_cached(
            "SELECT id, kind, owner, last_seq, last_ts FROM conversations
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .await?;
    let members = tx
        .prepare_cached(
            "SELECT conversation_id, user_id FROM members WHERE conversation_id = ANY($1)",
        )
        .await?;
    let originals = tx
        .prepare_cached(&format!(
            "{} WHERE (m.sender, m.local_id) IN
                 (SELECT * FROM unnest($1::BIGINT[], $2::TEXT[]))",
            rows::MESSAGES
        ))
        .await?;
    let none = || async { Ok(Vec::new()) };
    let (locked, members, originals) = tokio::try_join!(
        async {
            if ids.is_empty() {
                none().await
            } else {
                tx.query(&lock, &[&ids]).await
            }
        },
        async {
            if ids.is_empty() {
                none().await
            } else {
                tx.query(&members, &[&ids]).await
            }
        },
        async {
            if senders.is_empty() {
                none().await
            } else {
                tx.query(&originals, &[&senders, &local_ids]).await
            }
        },
    )?;
    for row in locked {
        let kind: &str = row.try_get(1)?;
        a.convs.insert(
            ConversationId(unsql(row.try_get(0)?)),
            ConvState {
                kind: rows::kind_of(kind),
                owner: row.try_get::<_, Option<i64>>(2)?.map(|o| UserId(unsql(o))),
                last_seq: Seq(unsql(row.try_get(3)?)),
                last_ts: row.try_get(4)?,
                members: HashSet::new(),
                dirty: false,
            },
        );
    }
    for row in members {
        let id = ConversationId(unsql(row.try_get(0)?));
        if let Some(state) = a.convs.get_mut(&id) {
            state.members.insert(UserId(unsql(row.try_get(1)?)));
        }
    }
    for row in originals {
        let message = rows::message_from_row(&row)?;
        if let (Some(sender), Some(local_id)) = (message.sender, message.local_id.clone()) {
            a.originals.insert((sender, local_id), message);
        }
    }
    Ok(())
}

/// A refused append is still a duplicate if its local id was stored before.
async fn refuse_append(
    tx: &Transaction<'_>,
    req: &AppendRequest,
    error: StoreError,
) -> Res<Appended> {
    Ok(
        match rows::message_by_local_id(tx, req.sender, &req.local_id).await? {
            Some(original) => Appended::Duplicate(Box::new(original)),
            None => Appended::Refused(error),
        },
    )
}

/// Inserts member rows (read marker and joined seq at `seq`).
async fn insert_members(
    tx: &Transaction<'_>,
    id: ConversationId,
    users: &[UserId],
    seq: Seq,
    now: Millis,
) -> Res<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO members (conversation_id, user_id, joined_at, joined_seq, read_seq)
             VALUES ($1, $2, $3, $4, $4)",
        )
        .await?;
    for u in users {
        tx.execute(&stmt, &[&sql(id.0), &sql(u.0), &now, &sql(seq.0)])
            .await?;
    }
    Ok(())
}

/// The conversation as events carry it (no viewer).
async fn neutral_info(
    tx: &Transaction<'_>,
    id: ConversationId,
    state: &ConvState,
) -> Res<ConversationInfo> {
    let row = rows::conversation_row(tx, id)
        .await?
        .ok_or(Fail::Store(StoreError::NotFound("conversation")))?;
    rows::conversation_info(tx, id, &row, state.last_seq, None).await
}

/// The conversation as `viewer` sees it, for an operation's answer.
async fn viewer_info(
    tx: &Transaction<'_>,
    id: ConversationId,
    state: &ConvState,
    viewer: UserId,
) -> Res<ConversationInfo> {
    let row = rows::conversation_row(tx, id)
        .await?
        .ok_or(Fail::Store(StoreError::NotFound("conversation")))?;
    let read = rows::read_marker(tx, viewer, id)
        .await?
        .unwrap_or(state.last_seq);
    rows::conversation_info(tx, id, &row, state.last_seq, Some((viewer, read))).await
}

/// Starts (or finds) an upload under the quotas, as SQLite's writer does.
async fn start_upload(tx: &Transaction<'_>, a: &Attempt, req: &NewUpload) -> Res<UploadStart> {
    let state = a.conv(req.conversation)?;
    if !state.members.contains(&req.uploader) {
        return Err(StoreError::NotMember.into());
    }
    if let Some(existing) = rows::file_by_upload_id(tx, req.uploader, &req.upload_id).await? {
        return Ok(if same_upload(&existing, req) {
            UploadStart::Existing(existing)
        } else {
            UploadStart::Conflict(existing)
        });
    }
    let now = now_ms();
    let (in_flight, used) = rows::usage(tx, req.uploader, now).await?;
    if in_flight >= u64::from(req.limits.max_in_flight) {
        return Ok(UploadStart::TooManyInFlight {
            limit: req.limits.max_in_flight,
        });
    }
    if used.saturating_add(req.size) > req.limits.bytes_per_day {
        return Ok(UploadStart::DailyQuota {
            used,
            limit: req.limits.bytes_per_day,
        });
    }
    let id: i64 = tx
        .query_one(
            "INSERT INTO files (uploader, conversation_id, upload_id, name, mime, size, sha256, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                &sql(req.uploader.0),
                &sql(req.conversation.0),
                &req.upload_id,
                &req.name,
                &req.mime,
                &sql(req.size),
                &req.sha256,
                &now,
            ],
        )
        .await?
        .try_get(0)?;
    Ok(UploadStart::New(StoredFile {
        id: unsql(id),
        uploader: req.uploader,
        conversation: req.conversation,
        upload_id: req.upload_id.clone(),
        name: req.name.clone(),
        mime: req.mime.clone(),
        size: req.size,
        sha256: req.sha256.clone(),
        created_at: now,
        completed: false,
    }))
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("pg::Writer")
            .field("max_batch", &self.db.max_batch)
            .finish_non_exhaustive()
    }
}
