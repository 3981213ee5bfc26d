//! The writer thread: the only read-write connection, fed by a bounded queue, committing
//! whatever is queued in one transaction (group commit).
//!
//! A batch runs like this: take the first command (blocking), drain up to `max_batch - 1`
//! more without waiting, `BEGIN IMMEDIATE`, apply each command (the multi-statement ones
//! inside their own `SAVEPOINT`, so a refusal undoes only that command), write each touched
//! conversation's `last_seq` once, `COMMIT`, and only then hand the batch's events to the
//! sink and answer the callers. Nothing is delivered or acknowledged that a crash could undo.
//!
//! The writer caches what appends check: each touched conversation's last seq, last ts and
//! member set, and usernames. It is the only writer, so the cache is coherent as long as every
//! change goes through it; an operation changes the cache only once all its statements have
//! succeeded, and a batch whose commit fails drops the whole cache, which then reloads from
//! the last committed state. That is what keeps `seq` free of gaps and duplicates.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chatgroup_protocol::{
    ConversationId, ConversationInfo, ConversationKind, Markers, MessageId, MessageKind,
    MessageView, Millis, Seq, SystemEvent, UserId, UserInfo,
};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{is_unique_violation, Fail, Res};
use crate::marks::{Board, Pending};
use crate::queries::{self, kind_to_sql, now_ms, sql, unsql};
use crate::{AppendRequest, Committed, StoreError, StoreStats};

mod files;

/// A reply channel for one operation.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// The sink the server gave [`crate::Store::open`].
pub(crate) type Sink = Box<dyn FnMut(Committed) + Send>;

/// One write, as queued for the writer.
#[derive(Debug)]
pub(crate) enum Command {
    CreateUser {
        username: String,
        password_hash: String,
        reply: Reply<UserInfo>,
    },
    AddRefreshToken {
        user: UserId,
        hash: [u8; 32],
        expires_at: Millis,
        reply: Reply<()>,
    },
    RotateRefreshToken {
        old: [u8; 32],
        new: [u8; 32],
        new_expires_at: Millis,
        now: Millis,
        reply: Reply<Option<UserInfo>>,
    },
    RevokeRefreshToken {
        hash: [u8; 32],
        reply: Reply<()>,
    },
    CreateGroup {
        owner: UserId,
        name: String,
        members: Vec<UserId>,
        reply: Reply<ConversationInfo>,
    },
    CreateDirect {
        a: UserId,
        b: UserId,
        reply: Reply<(ConversationInfo, bool)>,
    },
    AddMember {
        by: UserId,
        conversation: ConversationId,
        user: UserId,
        reply: Reply<ConversationInfo>,
    },
    RemoveMember {
        by: UserId,
        conversation: ConversationId,
        user: UserId,
        reply: Reply<()>,
    },
    Rename {
        by: UserId,
        conversation: ConversationId,
        name: String,
        reply: Reply<ConversationInfo>,
    },
    MarkRead {
        user: UserId,
        conversation: ConversationId,
        seq: Seq,
        reply: Reply<Seq>,
    },
    Append {
        req: AppendRequest,
        reply: Option<Reply<(MessageView, bool)>>,
    },
    Attach {
        user: UserId,
        tag: u64,
    },
    /// Reported markers are waiting on the board (see [`crate::marks`]); the batch takes
    /// them whether or not this arrives, it only wakes an idle writer.
    Marks,
    /// `user`'s last connection closed at `at`.
    LastSeen {
        user: UserId,
        at: Millis,
    },
    /// Uploads and file messages (see [`crate::files`]).
    Files(crate::files::FileOp),
    /// Stop taking commands; commit what is queued, checkpoint and exit.
    Close,
}

/// Counters shared with the [`crate::Store`] handle.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    commits: AtomicU64,
    ops: AtomicU64,
    failed_batches: AtomicU64,
    retries: AtomicU64,
}

impl Stats {
    /// Counts a committed batch of `ops` operations.
    pub(crate) fn committed(&self, ops: u64) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.ops.fetch_add(ops, Ordering::Relaxed);
    }

    /// Counts an attempt run again after a conflict.
    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a batch that failed.
    pub(crate) fn failed(&self) {
        self.failed_batches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            ops: self.ops.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// What the writer knows about a conversation between statements (PostgreSQL's writer
/// holds the same, for the conversations its batch has locked).
#[derive(Debug, Clone)]
pub(crate) struct ConvState {
    pub(crate) kind: ConversationKind,
    pub(crate) owner: Option<UserId>,
    pub(crate) last_seq: Seq,
    pub(crate) last_ts: Millis,
    pub(crate) members: HashSet<UserId>,
    /// `last_seq`/`last_ts` changed in this batch and must be written before `COMMIT`.
    pub(crate) dirty: bool,
}

/// Past this many cached conversations (or usernames) the cache is dropped between batches, so
/// a long-running server does not grow without bound; it refills from the database.
const CACHE_LIMIT: usize = 100_000;

#[derive(Debug, Default)]
struct Cache {
    convs: HashMap<ConversationId, ConvState>,
    names: HashMap<UserId, String>,
    dirty: Vec<ConversationId>,
}

impl Cache {
    fn clear(&mut self) {
        self.convs.clear();
        self.names.clear();
        self.dirty.clear();
    }

    /// The cached state of `id`, loaded on first use; `None` if it does not exist.
    fn conv(&mut self, conn: &Connection, id: ConversationId) -> Res<Option<&mut ConvState>> {
        let slot = match self.convs.entry(id) {
            Entry::Occupied(e) => return Ok(Some(e.into_mut())),
            Entry::Vacant(slot) => slot,
        };
        let Some(row) = queries::conversation_row(conn, id)? else {
            return Ok(None);
        };
        let mut stmt =
            conn.prepare_cached("SELECT user_id FROM members WHERE conversation_id = ?1")?;
        let members = stmt
            .query_map([sql(id.0)], |r| Ok(UserId(unsql(r.get(0)?))))?
            .collect::<rusqlite::Result<HashSet<_>>>()?;
        // The newest stored message is the truth for the next seq; the row's copy is written
        // in the same transactions and should agree, but if it ever did not, trusting it
        // would make every later append collide on (conversation_id, seq).
        let newest: Option<(i64, Millis)> = conn
            .prepare_cached(
                "SELECT seq, ts FROM messages WHERE conversation_id = ?1 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row([sql(id.0)], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (seq, ts) = newest.map_or((0, 0), |(s, t)| (unsql(s), t));
        Ok(Some(slot.insert(ConvState {
            kind: row.kind,
            owner: row.owner,
            last_seq: Seq(seq.max(row.last_seq.0)),
            last_ts: ts.max(row.last_ts),
            members,
            dirty: false,
        })))
    }

    /// Like [`Cache::conv`], refusing an unknown conversation.
    fn existing(&mut self, conn: &Connection, id: ConversationId) -> Res<&mut ConvState> {
        self.conv(conn, id)?
            .ok_or(Fail::Store(StoreError::NotFound("conversation")))
    }

    /// Stores an operation's finished copy of a conversation's state.
    fn put(&mut self, id: ConversationId, mut state: ConvState, changed_seq: bool) {
        let was_dirty = self.convs.get(&id).is_some_and(|s| s.dirty);
        state.dirty = was_dirty || changed_seq;
        if state.dirty && !was_dirty {
            self.dirty.push(id);
        }
        self.convs.insert(id, state);
    }

    /// A user's name, `NotFound("user")` if there is no such user.
    fn name(&mut self, conn: &Connection, id: UserId) -> Res<&str> {
        let slot = match self.names.entry(id) {
            Entry::Occupied(e) => return Ok(e.into_mut()),
            Entry::Vacant(slot) => slot,
        };
        let user = queries::user(conn, id)?.ok_or(Fail::Store(StoreError::NotFound("user")))?;
        Ok(slot.insert(user.username))
    }
}

/// An operation's answer, held until its batch has committed (or failed).
type PendingReply = Box<dyn FnOnce(Option<&StoreError>) + Send>;

fn pending<T: Send + 'static>(reply: Reply<T>, result: Result<T, StoreError>) -> PendingReply {
    Box::new(move |failed| {
        // The caller may have stopped waiting (a dropped future); nothing to do then.
        let _ = reply.send(match failed {
            Some(e) => Err(e.clone()),
            None => result,
        });
    })
}

/// What one batch produced, released only after `COMMIT`.
#[derive(Default)]
struct Batch {
    events: Vec<Committed>,
    replies: Vec<PendingReply>,
    /// Set when the transaction can no longer commit; the batch then fails as a whole.
    poison: Option<StoreError>,
    ops: u64,
}

/// How an append turned out.
pub(crate) enum Appended {
    New {
        id: MessageId,
        seq: Seq,
        ts: Millis,
        sender_name: String,
    },
    Duplicate(Box<MessageView>),
    Refused(StoreError),
}

/// What an awaited append answers: the message, and whether it was a duplicate.
pub(crate) type AppendResult = Result<(MessageView, bool), StoreError>;

/// What became of an append: the event for the sink and, when `answer` (someone awaits
/// it), the caller's result. `file` is the file a file message shares. Shared by text and
/// file appends so both report the same way.
pub(crate) fn appended_event(
    req: AppendRequest,
    outcome: Appended,
    file: Option<chatgroup_protocol::FileInfo>,
    answer: bool,
) -> (Committed, Option<AppendResult>) {
    let AppendRequest {
        sender,
        conversation,
        local_id,
        body,
        kind,
        origin,
    } = req;
    match outcome {
        Appended::New {
            id,
            seq,
            ts,
            sender_name,
        } => {
            let message = MessageView {
                conversation,
                id,
                seq,
                ts,
                sender: Some(sender),
                sender_name: Some(sender_name),
                kind,
                body,
                local_id: Some(local_id),
                event: None,
                file,
            };
            // The hot path clones only for a caller that waits.
            let result = answer.then(|| Ok((message.clone(), false)));
            let event = Committed::Message {
                message,
                origin: Some(origin),
            };
            (event, result)
        }
        Appended::Duplicate(message) => {
            let message = *message;
            let result = answer.then(|| Ok((message.clone(), true)));
            (Committed::Duplicate { message, origin }, result)
        }
        Appended::Refused(error) => {
            let result = answer.then(|| Err(error.clone()));
            let event = Committed::Rejected {
                origin,
                conversation,
                local_id,
                error,
            };
            (event, result)
        }
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    conn: Connection,
    /// Wakes the checkpointer after each commit; `None` once the writer is finishing.
    checkpoints: Option<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)>,
    cache: Cache,
    sink: Sink,
    stats: Arc<Stats>,
    max_batch: usize,
    board: Arc<Board>,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        checkpoints: (std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>),
        sink: Sink,
        stats: Arc<Stats>,
        max_batch: usize,
        board: Arc<Board>,
    ) -> Self {
        Writer {
            conn,
            checkpoints: Some(checkpoints),
            cache: Cache::default(),
            sink,
            stats,
            max_batch: max_batch.max(1),
            board,
        }
    }

    /// The thread's body: batches until every sender is gone or a `Close` arrived and the
    /// queue is drained, then a WAL checkpoint, then `done`.
    pub(crate) fn run(mut self, mut commands: mpsc::Receiver<Command>, done: watch::Sender<bool>) {
        let mut cmds = Vec::with_capacity(self.max_batch);
        while let Some(first) = commands.blocking_recv() {
            cmds.push(first);
            while cmds.len() < self.max_batch {
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
        // Stop the checkpointer first, so the last checkpoint below is not contended.
        if let Some((nudge, thread)) = self.checkpoints.take() {
            drop(nudge);
            let _ = thread.join();
        }
        // Fold the WAL into the database so the files left behind are one self-contained
        // database. A reader holding a snapshot can make this partial; that is harmless.
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        drop(self);
        let _ = done.send(true);
    }

    fn run_batch(&mut self, cmds: &mut Vec<Command>) {
        if self.cache.convs.len() > CACHE_LIMIT || self.cache.names.len() > CACHE_LIMIT {
            // Safe only here: between batches nothing in the cache is dirty.
            self.cache.clear();
        }
        let mut batch = Batch {
            events: Vec::with_capacity(cmds.len() + cmds.len() / 2),
            replies: Vec::with_capacity(cmds.len()),
            ..Batch::default()
        };
        let began = exec(&self.conn, "BEGIN IMMEDIATE");
        if let Err(e) = began {
            let err = StoreError::Db(e.to_string());
            for cmd in cmds.drain(..) {
                self.refuse(cmd, &err, &mut batch);
            }
            self.fail_batch(batch, &err);
            return;
        }
        // Markers first: they were reported about messages committed before this batch.
        let marks = self.board.take();
        if let Err(e) = self.apply_marks(&marks, &mut batch) {
            batch.poison = Some(e.into());
        }
        for cmd in cmds.drain(..) {
            // SQLite rolls the whole transaction back by itself after some errors (disk
            // full, I/O, out of memory). Applying more commands would then autocommit each
            // one, outside the batch and behind the cache's back: refuse them instead.
            if batch.poison.is_none() && self.conn.is_autocommit() {
                batch.poison = Some(StoreError::Db(
                    "the transaction was rolled back by an error".into(),
                ));
            }
            match batch.poison.clone() {
                Some(err) => self.refuse(cmd, &err, &mut batch),
                None => self.apply(cmd, &mut batch),
            }
        }
        let committed = match batch.poison.take() {
            Some(err) => Err(Fail::Store(err)),
            None => self.flush_and_commit(),
        };
        match committed {
            Ok(()) => {
                for id in self.cache.dirty.drain(..) {
                    if let Some(s) = self.cache.convs.get_mut(&id) {
                        s.dirty = false;
                    }
                }
                self.stats.committed(batch.ops);
                if let Some((nudge, _)) = &self.checkpoints {
                    // A full channel means a nudge is already pending: nothing to add.
                    let _ = nudge.try_send(());
                }
                for event in batch.events {
                    (self.sink)(event);
                }
                for reply in batch.replies {
                    reply(None);
                }
            }
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = exec(&self.conn, "ROLLBACK");
                }
                // The cache holds seqs and members that were never committed.
                self.cache.clear();
                self.board.restore(marks);
                self.fail_batch(batch, &StoreError::from(e));
            }
        }
    }

    fn flush_and_commit(&mut self) -> Res<()> {
        let mut stmt = self
            .conn
            .prepare_cached("UPDATE conversations SET last_seq = ?2, last_ts = ?3 WHERE id = ?1")?;
        for id in &self.cache.dirty {
            if let Some(s) = self.cache.convs.get(id) {
                stmt.execute(params![sql(id.0), sql(s.last_seq.0), s.last_ts])?;
            }
        }
        drop(stmt);
        exec(&self.conn, "COMMIT")?;
        Ok(())
    }

    /// Answers a batch that did not commit: every caller gets `err`; plain appends, whose only
    /// answer is the sink, are rejected there; attaches are answered from the committed state,
    /// which the failed batch did not change.
    fn fail_batch(&mut self, batch: Batch, err: &StoreError) {
        self.stats.failed();
        for event in batch.events {
            let rejected = match event {
                Committed::Message {
                    message,
                    origin: Some(origin),
                }
                | Committed::Duplicate { message, origin } => Committed::Rejected {
                    origin,
                    conversation: message.conversation,
                    local_id: message.local_id.unwrap_or_default(),
                    error: err.clone(),
                },
                Committed::Attached { tag, user, .. } => {
                    match user_conversations(&self.conn, user) {
                        Ok(conversations) => Committed::Attached {
                            tag,
                            user,
                            conversations,
                        },
                        Err(_) => continue,
                    }
                }
                rejected @ Committed::Rejected { .. } => rejected,
                _ => continue,
            };
            (self.sink)(rejected);
        }
        for reply in batch.replies {
            reply(Some(err));
        }
    }

    /// Answers a command that could not even be attempted.
    fn refuse(&mut self, cmd: Command, err: &StoreError, batch: &mut Batch) {
        let r = &mut batch.replies;
        match cmd {
            Command::CreateUser { reply, .. } => r.push(pending(reply, Err(err.clone()))),
            Command::AddRefreshToken { reply, .. }
            | Command::RevokeRefreshToken { reply, .. }
            | Command::RemoveMember { reply, .. } => r.push(pending(reply, Err(err.clone()))),
            Command::RotateRefreshToken { reply, .. } => r.push(pending(reply, Err(err.clone()))),
            Command::CreateGroup { reply, .. }
            | Command::AddMember { reply, .. }
            | Command::Rename { reply, .. } => r.push(pending(reply, Err(err.clone()))),
            Command::CreateDirect { reply, .. } => r.push(pending(reply, Err(err.clone()))),
            Command::MarkRead { reply, .. } => r.push(pending(reply, Err(err.clone()))),
            Command::Append { req, reply } => {
                if let Some(reply) = reply {
                    batch.replies.push(pending(reply, Err(err.clone())));
                }
                batch.events.push(Committed::Rejected {
                    origin: req.origin,
                    conversation: req.conversation,
                    local_id: req.local_id,
                    error: err.clone(),
                });
            }
            Command::Files(op) => op.refuse(err, batch),
            Command::Attach { user, tag } => {
                // Answered from the committed state by fail_batch.
                batch.events.push(Committed::Attached {
                    tag,
                    user,
                    conversations: Vec::new(),
                });
            }
            Command::Marks | Command::LastSeen { .. } | Command::Close => {}
        }
    }

    fn apply(&mut self, cmd: Command, batch: &mut Batch) {
        batch.ops += 1;
        match cmd {
            Command::Append { req, reply } => self.append(req, reply, batch),
            Command::Files(op) => self.file_op(op, batch),
            Command::Attach { user, tag } => {
                let conversations = match user_conversations(&self.conn, user) {
                    Ok(conversations) => conversations,
                    Err(e) => {
                        // A wrong list would make a connection miss conversations for good;
                        // failing the batch answers the attach from the committed state.
                        batch.poison = Some(e.into());
                        Vec::new()
                    }
                };
                batch.events.push(Committed::Attached {
                    tag,
                    user,
                    conversations,
                });
            }
            Command::MarkRead {
                user,
                conversation,
                seq,
                reply,
            } => {
                let result = self
                    .mark_read(user, conversation, seq, &mut batch.events)
                    .map_err(StoreError::from);
                batch.replies.push(pending(reply, result));
            }
            Command::CreateUser {
                username,
                password_hash,
                reply,
            } => {
                let r = self.savepoint(batch, |w, _| w.create_user(&username, &password_hash));
                batch.replies.push(pending(reply, r));
            }
            Command::AddRefreshToken {
                user,
                hash,
                expires_at,
                reply,
            } => {
                let r = self.savepoint(batch, |w, _| w.add_refresh_token(user, &hash, expires_at));
                batch.replies.push(pending(reply, r));
            }
            Command::RotateRefreshToken {
                old,
                new,
                new_expires_at,
                now,
                reply,
            } => {
                let r = self.savepoint(batch, |w, _| {
                    w.rotate_refresh_token(&old, &new, new_expires_at, now)
                });
                batch.replies.push(pending(reply, r));
            }
            Command::RevokeRefreshToken { hash, reply } => {
                let r = exec_params(
                    &self.conn,
                    "DELETE FROM refresh_tokens WHERE hash = ?1",
                    [&hash[..]],
                )
                .map(|_| ())
                .map_err(|e| StoreError::from(Fail::Sql(e)));
                batch.replies.push(pending(reply, r));
            }
            Command::CreateGroup {
                owner,
                name,
                members,
                reply,
            } => {
                let r = self.savepoint(batch, |w, ev| w.create_group(owner, &name, &members, ev));
                batch.replies.push(pending(reply, r));
            }
            Command::CreateDirect { a, b, reply } => {
                let r = self.savepoint(batch, |w, ev| w.create_direct(a, b, ev));
                batch.replies.push(pending(reply, r));
            }
            Command::AddMember {
                by,
                conversation,
                user,
                reply,
            } => {
                let r = self.savepoint(batch, |w, ev| w.add_member(by, conversation, user, ev));
                batch.replies.push(pending(reply, r));
            }
            Command::RemoveMember {
                by,
                conversation,
                user,
                reply,
            } => {
                let r = self.savepoint(batch, |w, ev| w.remove_member(by, conversation, user, ev));
                batch.replies.push(pending(reply, r));
            }
            Command::Rename {
                by,
                conversation,
                name,
                reply,
            } => {
                let r = self.savepoint(batch, |w, ev| w.rename(by, conversation, &name, ev));
                batch.replies.push(pending(reply, r));
            }
            Command::LastSeen { user, at } => {
                if let Err(e) = exec_params(
                    &self.conn,
                    "UPDATE users SET last_seen = max(coalesce(last_seen, 0), ?2) WHERE id = ?1",
                    params![sql(user.0), at],
                ) {
                    batch.poison = Some(Fail::from(e).into());
                }
            }
            Command::Marks | Command::Close => batch.ops -= 1,
        }
    }

    /// Runs a multi-statement operation inside a savepoint: on failure its statements are
    /// undone and its events dropped, the rest of the batch goes on. The operation itself
    /// changes the cache only after its last statement, so nothing there needs undoing.
    fn savepoint<T>(
        &mut self,
        batch: &mut Batch,
        op: impl FnOnce(&mut Self, &mut Vec<Committed>) -> Res<T>,
    ) -> Result<T, StoreError> {
        exec(&self.conn, "SAVEPOINT op").map_err(|e| StoreError::from(Fail::Sql(e)))?;
        let mut events = Vec::new();
        match op(self, &mut events) {
            Ok(v) => {
                exec(&self.conn, "RELEASE op").map_err(|e| StoreError::from(Fail::Sql(e)))?;
                batch.events.append(&mut events);
                Ok(v)
            }
            Err(e) => {
                // If even the rollback fails, the transaction is unusable and COMMIT will
                // fail, which fails the whole batch: still no partial operation lands.
                let _ = exec(&self.conn, "ROLLBACK TO op");
                let _ = exec(&self.conn, "RELEASE op");
                Err(e.into())
            }
        }
    }

    // ---- appends: the hot path, no savepoint (one INSERT is atomic on its own) ----

    fn append(
        &mut self,
        req: AppendRequest,
        reply: Option<Reply<(MessageView, bool)>>,
        batch: &mut Batch,
    ) {
        let outcome = self
            .insert_append(&req)
            .unwrap_or_else(|e| Appended::Refused(e.into()));
        let (event, result) = appended_event(req, outcome, None, reply.is_some());
        batch.events.push(event);
        if let (Some(reply), Some(result)) = (reply, result) {
            batch.replies.push(pending(reply, result));
        }
    }

    fn insert_append(&mut self, req: &AppendRequest) -> Res<Appended> {
        if req.kind == MessageKind::System {
            return Ok(Appended::Refused(StoreError::Invalid(
                "system messages are written by the server only".into(),
            )));
        }
        let sender_name = match self.cache.name(&self.conn, req.sender) {
            Ok(name) => name.to_owned(),
            Err(Fail::Store(_)) => return self.refuse_append(req, StoreError::NotMember),
            Err(e) => return Err(e),
        };
        let Some(state) = self.cache.conv(&self.conn, req.conversation)? else {
            return self.refuse_append(req, StoreError::NotFound("conversation"));
        };
        if !state.members.contains(&req.sender) {
            return self.refuse_append(req, StoreError::NotMember);
        }
        let seq = state.last_seq.next();
        let ts = now_ms().max(state.last_ts);
        // A plain INSERT: the unique index on (sender, local_id) refuses a duplicate by
        // itself, and only then do we look for the original. (ON CONFLICT DO NOTHING would
        // pay an extra index probe on every append to save work on the rare retry.)
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO messages (conversation_id, seq, ts, sender, kind, body, local_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let inserted = stmt.execute(params![
            sql(req.conversation.0),
            sql(seq.0),
            ts,
            sql(req.sender.0),
            kind_to_sql(req.kind),
            req.body,
            req.local_id,
        ]);
        if let Err(e) = inserted {
            // Taken by an earlier batch or earlier in this one? Then it is a retry. A failed
            // statement is undone by SQLite on its own, so the batch goes on.
            if is_unique_violation(&e) {
                if let Some(original) =
                    queries::message_by_local_id(&self.conn, req.sender, &req.local_id)?
                {
                    return Ok(Appended::Duplicate(Box::new(original)));
                }
            }
            return Err(e.into());
        }
        let id = MessageId(unsql(self.conn.last_insert_rowid()));
        state.last_seq = seq;
        state.last_ts = ts;
        if !std::mem::replace(&mut state.dirty, true) {
            self.cache.dirty.push(req.conversation);
        }
        Ok(Appended::New {
            id,
            seq,
            ts,
            sender_name,
        })
    }

    /// A refused append is still a duplicate if its local id was stored before: a retry
    /// after losing membership gets its original ack, as any retry does.
    fn refuse_append(&mut self, req: &AppendRequest, error: StoreError) -> Res<Appended> {
        Ok(
            match queries::message_by_local_id(&self.conn, req.sender, &req.local_id)? {
                Some(original) => Appended::Duplicate(Box::new(original)),
                None => Appended::Refused(error),
            },
        )
    }

    // ---- the other operations ----

    fn mark_read(
        &mut self,
        user: UserId,
        conversation: ConversationId,
        seq: Seq,
        events: &mut Vec<Committed>,
    ) -> Res<Seq> {
        Ok(self
            .move_markers(conversation, user, seq, seq, events)?
            .read)
    }

    /// Applies the markers reported since the last batch; a report from a non-member (or
    /// for a conversation that does not exist) is refused to the connection that made it.
    fn apply_marks(&mut self, marks: &Pending, batch: &mut Batch) -> Res<()> {
        for (&(conversation, user), r) in marks {
            batch.ops += 1;
            match self.move_markers(conversation, user, r.delivered, r.read, &mut batch.events) {
                Ok(_) => {}
                Err(Fail::Store(error)) => batch.events.push(Committed::MarksRefused {
                    tag: r.tag,
                    conversation,
                    error,
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Moves `user`'s markers in `conversation` forward (never back, never past the last
    /// message; reading implies delivery) and reports a move as [`Committed::Receipt`].
    /// Returns the markers now.
    fn move_markers(
        &mut self,
        conversation: ConversationId,
        user: UserId,
        delivered: Seq,
        read: Seq,
        events: &mut Vec<Committed>,
    ) -> Res<Markers> {
        let state = self.cache.existing(&self.conn, conversation)?;
        if !state.members.contains(&user) {
            return Err(StoreError::NotMember.into());
        }
        let read = read.min(state.last_seq);
        let delivered = delivered.max(read).min(state.last_seq);
        let mut stmt = self.conn.prepare_cached(
            "SELECT delivered_seq, read_seq FROM members WHERE conversation_id = ?1 AND user_id = ?2",
        )?;
        let (old_delivered, old_read) = stmt
            .query_row(params![sql(conversation.0), sql(user.0)], |r| {
                Ok((Seq(unsql(r.get(0)?)), Seq(unsql(r.get(1)?))))
            })?;
        drop(stmt);
        let previous = Markers {
            user,
            delivered: old_delivered,
            read: old_read,
        };
        let now = Markers {
            user,
            delivered: old_delivered.max(delivered),
            read: old_read.max(read),
        };
        if now != previous {
            // One statement, so no savepoint.
            exec_params(
                &self.conn,
                "UPDATE members SET delivered_seq = ?3, read_seq = ?4
                 WHERE conversation_id = ?1 AND user_id = ?2",
                params![
                    sql(conversation.0),
                    sql(user.0),
                    sql(now.delivered.0),
                    sql(now.read.0)
                ],
            )?;
            events.push(Committed::Receipt {
                conversation,
                markers: now,
                previous,
            });
        }
        Ok(now)
    }

    fn create_user(&mut self, username: &str, password_hash: &str) -> Res<UserInfo> {
        if username.is_empty() {
            return Err(StoreError::Invalid("empty username".into()).into());
        }
        let key = queries::username_key(username);
        let taken = self
            .conn
            .prepare_cached("SELECT 1 FROM users WHERE username_key = ?1")?
            .exists([&key])?;
        if taken {
            return Err(StoreError::UsernameTaken.into());
        }
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO users (username, username_key, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![username, key, password_hash, now_ms()]);
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::UsernameTaken.into()),
            Err(e) => return Err(e.into()),
        }
        let id = UserId(unsql(self.conn.last_insert_rowid()));
        self.cache.names.insert(id, username.to_owned());
        Ok(UserInfo {
            id,
            username: username.to_owned(),
        })
    }

    fn add_refresh_token(&mut self, user: UserId, hash: &[u8; 32], expires_at: Millis) -> Res<()> {
        self.cache.name(&self.conn, user)?;
        // Expired tokens can never be used again: drop this user's while we are here, so the
        // table stays the size of the live sessions.
        self.conn
            .prepare_cached("DELETE FROM refresh_tokens WHERE user_id = ?1 AND expires_at <= ?2")?
            .execute(params![sql(user.0), now_ms()])?;
        self.conn
            .prepare_cached(
                "INSERT INTO refresh_tokens (hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&hash[..], sql(user.0), expires_at])?;
        Ok(())
    }

    fn rotate_refresh_token(
        &mut self,
        old: &[u8; 32],
        new: &[u8; 32],
        new_expires_at: Millis,
        now: Millis,
    ) -> Res<Option<UserInfo>> {
        // Deleted whether or not it is still valid: a token is used at most once.
        let found: Option<(i64, Millis)> = self
            .conn
            .prepare_cached(
                "DELETE FROM refresh_tokens WHERE hash = ?1 RETURNING user_id, expires_at",
            )?
            .query_row([&old[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((user, expires_at)) = found else {
            return Ok(None);
        };
        if expires_at <= now {
            return Ok(None);
        }
        let user = UserId(unsql(user));
        self.conn
            .prepare_cached(
                "INSERT INTO refresh_tokens (hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&new[..], sql(user.0), new_expires_at])?;
        let username = self.cache.name(&self.conn, user)?.to_owned();
        Ok(Some(UserInfo { id: user, username }))
    }

    fn create_group(
        &mut self,
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
            self.cache.name(&self.conn, u)?;
        }
        let now = now_ms();
        self.conn
            .prepare_cached("INSERT INTO conversations (kind, name, owner, created_at) VALUES ('group', ?1, ?2, ?3)")?
            .execute(params![name, sql(owner.0), now])?;
        let id = ConversationId(unsql(self.conn.last_insert_rowid()));
        let mut state = self.insert_members(id, &users, Seq::ZERO, now)?;
        state.kind = ConversationKind::Group;
        state.owner = Some(owner);
        let conversation = self.neutral_info(id, &state)?;
        events.push(Committed::MembersAdded {
            conversation,
            users,
        });
        let body = format!(
            "{} created the group \"{name}\"",
            self.cache.name(&self.conn, owner)?
        );
        let event = SystemEvent::Created {
            by: owner,
            name: Some(name.to_owned()),
        };
        self.system_message(id, &mut state, owner, event, body, events)?;
        let info = self.viewer_info(id, &state, owner)?;
        self.cache.put(id, state, true);
        Ok(info)
    }

    fn create_direct(
        &mut self,
        a: UserId,
        b: UserId,
        events: &mut Vec<Committed>,
    ) -> Res<(ConversationInfo, bool)> {
        if a == b {
            return Err(
                StoreError::Invalid("a direct chat needs two different users".into()).into(),
            );
        }
        let a_name = self.cache.name(&self.conn, a)?.to_owned();
        let b_name = self.cache.name(&self.conn, b)?.to_owned();
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let existing: Option<i64> = self
            .conn
            .prepare_cached("SELECT id FROM conversations WHERE direct_lo = ?1 AND direct_hi = ?2")?
            .query_row([sql(lo.0), sql(hi.0)], |r| r.get(0))
            .optional()?;
        if let Some(id) = existing {
            let id = ConversationId(unsql(id));
            let state = self.cache.existing(&self.conn, id)?.clone();
            return Ok((self.viewer_info(id, &state, a)?, false));
        }
        let now = now_ms();
        self.conn
            .prepare_cached(
                "INSERT INTO conversations (kind, name, direct_lo, direct_hi, created_at)
                 VALUES ('direct', '', ?1, ?2, ?3)",
            )?
            .execute(params![sql(lo.0), sql(hi.0), now])?;
        let id = ConversationId(unsql(self.conn.last_insert_rowid()));
        let users = vec![a, b];
        let mut state = self.insert_members(id, &users, Seq::ZERO, now)?;
        state.kind = ConversationKind::Direct;
        let conversation = self.neutral_info(id, &state)?;
        events.push(Committed::MembersAdded {
            conversation,
            users,
        });
        let body = format!("{a_name} started a chat with {b_name}");
        self.system_message(
            id,
            &mut state,
            a,
            SystemEvent::Created { by: a, name: None },
            body,
            events,
        )?;
        let info = self.viewer_info(id, &state, a)?;
        self.cache.put(id, state, true);
        Ok((info, true))
    }

    fn add_member(
        &mut self,
        by: UserId,
        conversation: ConversationId,
        user: UserId,
        events: &mut Vec<Committed>,
    ) -> Res<ConversationInfo> {
        let mut state = self.cache.existing(&self.conn, conversation)?.clone();
        check_member(&state, by)?;
        check_group(&state)?;
        if state.owner != Some(by) {
            return Err(StoreError::NotOwner.into());
        }
        let user_name = self.cache.name(&self.conn, user)?.to_owned();
        if state.members.contains(&user) {
            return self.viewer_info(conversation, &state, by);
        }
        let now = now_ms();
        let added = self.insert_members(conversation, &[user], state.last_seq, now)?;
        state.members.extend(added.members);
        let info = self.neutral_info(conversation, &state)?;
        events.push(Committed::MembersAdded {
            conversation: info,
            users: vec![user],
        });
        let body = format!("{} added {user_name}", self.cache.name(&self.conn, by)?);
        self.system_message(
            conversation,
            &mut state,
            by,
            SystemEvent::Joined { user, by },
            body,
            events,
        )?;
        let info = self.viewer_info(conversation, &state, by)?;
        self.cache.put(conversation, state, true);
        Ok(info)
    }

    fn remove_member(
        &mut self,
        by: UserId,
        conversation: ConversationId,
        user: UserId,
        events: &mut Vec<Committed>,
    ) -> Res<()> {
        let mut state = self.cache.existing(&self.conn, conversation)?.clone();
        check_member(&state, by)?;
        check_group(&state)?;
        let (event, body) = if by == user {
            let name = self.cache.name(&self.conn, user)?;
            (SystemEvent::Left { user }, format!("{name} left"))
        } else {
            if state.owner != Some(by) {
                return Err(StoreError::NotOwner.into());
            }
            if !state.members.contains(&user) {
                return Err(StoreError::NotFound("member").into());
            }
            let by_name = self.cache.name(&self.conn, by)?.to_owned();
            let name = self.cache.name(&self.conn, user)?;
            (
                SystemEvent::Removed { user, by },
                format!("{by_name} removed {name}"),
            )
        };
        // The system message goes out while `user` is still a member, so they get it too.
        self.system_message(conversation, &mut state, by, event, body, events)?;
        self.conn
            .prepare_cached("DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2")?
            .execute([sql(conversation.0), sql(user.0)])?;
        state.members.remove(&user);
        events.push(Committed::MemberRemoved { conversation, user });
        if state.owner == Some(user) {
            let heir: Option<i64> = self
                .conn
                .prepare_cached(
                    "SELECT user_id FROM members WHERE conversation_id = ?1 ORDER BY id LIMIT 1",
                )?
                .query_row([sql(conversation.0)], |r| r.get(0))
                .optional()?;
            state.owner = heir.map(|h| UserId(unsql(h)));
            self.conn
                .prepare_cached("UPDATE conversations SET owner = ?2 WHERE id = ?1")?
                .execute(params![sql(conversation.0), heir])?;
        }
        // The remaining members learn the new member list (and owner).
        let info = self.neutral_info(conversation, &state)?;
        events.push(Committed::ConversationChanged { conversation: info });
        self.cache.put(conversation, state, true);
        Ok(())
    }

    fn rename(
        &mut self,
        by: UserId,
        conversation: ConversationId,
        name: &str,
        events: &mut Vec<Committed>,
    ) -> Res<ConversationInfo> {
        let mut state = self.cache.existing(&self.conn, conversation)?.clone();
        check_member(&state, by)?;
        check_group(&state)?;
        let name = group_name(name)?;
        self.conn
            .prepare_cached("UPDATE conversations SET name = ?2 WHERE id = ?1")?
            .execute(params![sql(conversation.0), name])?;
        let body = format!(
            "{} renamed the group to \"{name}\"",
            self.cache.name(&self.conn, by)?
        );
        let event = SystemEvent::Renamed {
            name: name.to_owned(),
            by,
        };
        self.system_message(conversation, &mut state, by, event, body, events)?;
        let info = self.neutral_info(conversation, &state)?;
        events.push(Committed::ConversationChanged { conversation: info });
        let info = self.viewer_info(conversation, &state, by)?;
        self.cache.put(conversation, state, true);
        Ok(info)
    }

    // ---- helpers ----

    /// Inserts member rows (read marker and joined seq at `seq`) and returns a fresh state
    /// holding just them, for the caller to merge.
    fn insert_members(
        &mut self,
        id: ConversationId,
        users: &[UserId],
        seq: Seq,
        now: Millis,
    ) -> Res<ConvState> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO members (conversation_id, user_id, joined_at, joined_seq, read_seq)
             VALUES (?1, ?2, ?3, ?4, ?4)",
        )?;
        for u in users {
            stmt.execute(params![sql(id.0), sql(u.0), now, sql(seq.0)])?;
        }
        Ok(ConvState {
            kind: ConversationKind::Group,
            owner: None,
            last_seq: Seq::ZERO,
            last_ts: 0,
            members: users.iter().copied().collect(),
            dirty: false,
        })
    }

    /// Stores a system message as the next seq of `state` and queues its event.
    fn system_message(
        &mut self,
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
        self.conn
            .prepare_cached(
                "INSERT INTO messages (conversation_id, seq, ts, sender, kind, body, event)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                sql(id.0),
                sql(seq.0),
                ts,
                sql(by.0),
                kind_to_sql(MessageKind::System),
                body,
                json
            ])?;
        let message = MessageView {
            conversation: id,
            id: MessageId(unsql(self.conn.last_insert_rowid())),
            seq,
            ts,
            sender: Some(by),
            sender_name: Some(self.cache.name(&self.conn, by)?.to_owned()),
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

    /// The conversation as events carry it (no viewer).
    fn neutral_info(&self, id: ConversationId, state: &ConvState) -> Res<ConversationInfo> {
        let row = queries::conversation_row(&self.conn, id)?
            .ok_or(Fail::Store(StoreError::NotFound("conversation")))?;
        queries::conversation_info(&self.conn, id, &row, state.last_seq, None)
    }

    /// The conversation as `viewer` sees it, for an operation's answer.
    fn viewer_info(
        &self,
        id: ConversationId,
        state: &ConvState,
        viewer: UserId,
    ) -> Res<ConversationInfo> {
        let row = queries::conversation_row(&self.conn, id)?
            .ok_or(Fail::Store(StoreError::NotFound("conversation")))?;
        let read = queries::read_marker(&self.conn, viewer, id)?.unwrap_or(state.last_seq);
        queries::conversation_info(&self.conn, id, &row, state.last_seq, Some((viewer, read)))
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

pub(crate) fn check_member(state: &ConvState, user: UserId) -> Res<()> {
    if state.members.contains(&user) {
        Ok(())
    } else {
        Err(StoreError::NotMember.into())
    }
}

pub(crate) fn check_group(state: &ConvState) -> Res<()> {
    match state.kind {
        ConversationKind::Group => Ok(()),
        ConversationKind::Direct => Err(StoreError::Invalid(
            "a direct chat's members cannot change, nor its name".into(),
        )
        .into()),
    }
}

/// A group name: 1 to 64 characters once trimmed.
pub(crate) fn group_name(name: &str) -> Res<&str> {
    let name = name.trim();
    let chars = name.chars().count();
    if (1..=64).contains(&chars) {
        Ok(name)
    } else {
        Err(StoreError::Invalid("a group name is 1 to 64 characters".into()).into())
    }
}

/// The conversations `user` is a member of.
pub(crate) fn user_conversations(conn: &Connection, user: UserId) -> Res<Vec<ConversationId>> {
    let mut stmt = conn.prepare_cached(
        "SELECT conversation_id FROM members WHERE user_id = ?1 ORDER BY conversation_id",
    )?;
    let ids = stmt
        .query_map([sql(user.0)], |r| Ok(ConversationId(unsql(r.get(0)?))))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

fn exec_params<P: rusqlite::Params>(conn: &Connection, sql: &str, p: P) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(p)
}
