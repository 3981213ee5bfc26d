//! The [`Store`] handle.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use chatgroup_protocol::{
    ConversationId, ConversationInfo, MessageView, Millis, Seq, UserId, UserInfo,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::checkpoint;
use crate::error::Res;
use crate::marks::Board;
use crate::pg;
use crate::read::{self, Readers};
use crate::schema;
use crate::writer::{Command, Reply, Sink, Stats, Writer};
use crate::{AppendRequest, Backend, Committed, StoreConfig, StoreError, StoreStats, UserAuth};

/// The handle to chatgroup's database: users, refresh tokens, conversations, messages.
///
/// Cheap to clone (an `Arc` inside). Writes go, through a bounded queue, to one writer thread
/// that commits them in batches; reads run on a pool of connections (SQLite's read-only ones
/// on tokio's blocking pool, or PostgreSQL's). Every method must be awaited inside a tokio
/// runtime. Which database it runs on ([`Backend`]) shows nowhere else in the API.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::Sender<Command>,
    reads: Reads,
    epoch: String,
    jwt_secret: Vec<u8>,
    stats: Arc<Stats>,
    board: Arc<Board>,
    /// Becomes `true` when the writer has committed its last batch and checkpointed.
    done: watch::Receiver<bool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The database file, or the URL without its password: for `Debug`.
    location: String,
}

/// Where reads go. The writes need no such switch: both backends' writers take the same
/// [`Command`]s from the same queue.
#[derive(Debug)]
pub(crate) enum Reads {
    /// Read-only SQLite connections.
    Sqlite(Readers),
    /// PostgreSQL's read pool.
    Postgres(pg::read::Reads),
}

/// Takes the data directory's lock file (`chatgroup.lock`), or says who holds it.
fn lock_dir(dir: &std::path::Path) -> Res<std::fs::File> {
    let path = dir.join("chatgroup.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Db(format!(
            "the data directory {} is in use by another chatgroup process",
            dir.display()
        ))
        .into()),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::Db(format!("cannot lock {}: {e}", path.display())).into())
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("database", &self.inner.location)
            .field("epoch", &self.inner.epoch)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database `cfg.backend` names and starts the writer thread (`store-writer`).
    ///
    /// With [`Backend::Sqlite`], opens (creating if needed) `<dir>/chatgroup.db`: creates the
    /// directory, migrates the schema, switches to WAL and opens `cfg.readers` read-only
    /// connections. With [`Backend::Postgres`], connects the writer, migrates the schema
    /// (one node at a time) and sets up a pool of `cfg.readers` connections. Blocks while it
    /// connects: call it from a blocking context (`spawn_blocking`) in a server.
    ///
    /// `sink` is called on the writer thread after each batch commits, once per event, in
    /// commit order. If it blocks, the writer waits: that is the intended backpressure. So
    /// the sink must never wait on anything that itself waits for room in the store's queue
    /// (a hub that awaits [`Store::append`] while the sink blocks on the hub's inbox would
    /// deadlock the two): whoever consumes the events must not write to the store inline.
    ///
    /// # Errors
    ///
    /// [`StoreError::Db`] if the directory or database cannot be created, opened or reached,
    /// or if the database was written by a newer build (its schema version is higher than
    /// this build knows).
    pub fn open(
        cfg: StoreConfig,
        sink: Box<dyn FnMut(Committed) + Send>,
    ) -> Result<Store, StoreError> {
        match &cfg.backend {
            Backend::Sqlite => Self::open_sqlite(&cfg, sink),
            Backend::Postgres(url) => Self::open_postgres(&cfg, url, sink),
        }
        .map_err(StoreError::from)
    }

    fn open_postgres(cfg: &StoreConfig, url: &crate::DatabaseUrl, sink: Sink) -> Res<Store> {
        let stats = Arc::new(Stats::default());
        let board = Arc::new(Board::default());
        let (commands, queue) = mpsc::channel(cfg.queue_depth.max(1));
        let (done_tx, done) = watch::channel(false);
        let opened = pg::open(
            cfg,
            url,
            sink,
            queue,
            done_tx,
            Arc::clone(&stats),
            Arc::clone(&board),
        )?;
        Ok(Store {
            inner: Arc::new(Inner {
                commands,
                reads: Reads::Postgres(opened.reads),
                epoch: opened.epoch,
                jwt_secret: opened.jwt_secret,
                stats,
                board,
                done,
                writer: Mutex::new(Some(opened.writer)),
                location: url.redacted(),
            }),
        })
    }

    fn open_sqlite(cfg: &StoreConfig, sink: Sink) -> Res<Store> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| {
            StoreError::Db(format!(
                "cannot create the data directory {}: {e}",
                cfg.dir.display()
            ))
        })?;
        // One process per data directory: two writers would each cache the next seq and
        // collide. The lock lives as long as the writer thread and is released when it ends.
        let lock = lock_dir(&cfg.dir)?;
        let path = cfg.db_path();
        let conn = schema::open_writer(&path, cfg.durability)?;
        let epoch = schema::meta_or_insert(&conn, "epoch", || {
            Ok(hex(&schema::random_bytes(16)?).into_bytes())
        })?;
        let epoch = String::from_utf8(epoch)
            .map_err(|_| StoreError::Db("the stored epoch is not text".into()))?;
        let jwt_secret = schema::meta_or_insert(&conn, "jwt_secret", || schema::random_bytes(32))?;
        // Readers need the WAL set up by the writer connection, which is open by now.
        let readers = Readers::open(path.clone(), cfg.readers)?;
        let stats = Arc::new(Stats::default());
        let (commands, queue) = mpsc::channel(cfg.queue_depth.max(1));
        let (done_tx, done) = watch::channel(false);
        let (nudge, nudges) = std::sync::mpsc::sync_channel(1);
        let checkpointer = checkpoint::start(path.clone(), cfg.durability, nudges)?;
        let board = Arc::new(Board::default());
        let writer = Writer::new(
            conn,
            (nudge, checkpointer),
            sink,
            Arc::clone(&stats),
            cfg.max_batch,
            Arc::clone(&board),
        );
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let _lock = lock;
                writer.run(queue, done_tx);
            })
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                commands,
                reads: Reads::Sqlite(readers),
                epoch,
                jwt_secret,
                stats,
                board,
                done,
                writer: Mutex::new(Some(handle)),
                location: path.display().to_string(),
            }),
        })
    }

    /// This database's identity: 128 random bits in hex, generated when it was created and
    /// the same after every restart. A client seeing a new epoch drops its cursors.
    #[must_use]
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// 32 random bytes generated when the database was created, for signing access tokens
    /// when no secret is configured; stable across restarts.
    #[must_use]
    pub fn jwt_secret(&self) -> &[u8] {
        &self.inner.jwt_secret
    }

    /// The writer's counters so far.
    #[must_use]
    pub fn stats(&self) -> StoreStats {
        self.inner.stats.snapshot()
    }

    /// Flushes and stops the writer: stops accepting writes, commits everything already
    /// queued, checkpoints the WAL and joins the writer thread. Later writes fail with
    /// [`StoreError::Closed`]; reads keep working. Idempotent, and safe to call from many
    /// tasks at once: each returns once the writer is gone.
    pub async fn close(&self) {
        // Fails only if the writer is already gone, which is what we wait for anyway.
        let _ = self.inner.commands.send(Command::Close).await;
        let mut done = self.inner.done.clone();
        let _ = done.wait_for(|d| *d).await;
        let handle = self.inner.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            // The writer has signalled `done` as its last act, so this join is immediate.
            let _ = handle.join();
        }
    }

    async fn queue(&self, cmd: Command) -> Result<(), StoreError> {
        self.inner
            .commands
            .send(cmd)
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Queues a command and waits for its answer (after its batch commits).
    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue(make(reply)).await?;
        // A dropped reply means the writer stopped without answering (it panicked).
        answer.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Where reads go, for read queries defined in other modules.
    pub(crate) fn reads(&self) -> &Reads {
        &self.inner.reads
    }

    // ---- writes ----

    /// Registers a user. `password_hash` is stored as given.
    ///
    /// # Errors
    ///
    /// [`StoreError::UsernameTaken`] if the name is taken in any letter case,
    /// [`StoreError::Invalid`] if it is empty.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<UserInfo, StoreError> {
        let (username, password_hash) = (username.to_owned(), password_hash.to_owned());
        self.call(|reply| Command::CreateUser {
            username,
            password_hash,
            reply,
        })
        .await
    }

    /// Stores a refresh token, by the hash the caller computed (the token itself is never
    /// stored), valid until `expires_at`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown user.
    pub async fn add_refresh_token(
        &self,
        user: UserId,
        token_hash: [u8; 32],
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        self.call(|reply| Command::AddRefreshToken {
            user,
            hash: token_hash,
            expires_at,
            reply,
        })
        .await
    }

    /// Uses a refresh token, once: deletes `old`; if it existed and had not expired at `now`,
    /// stores `new` for the same user until `new_expires_at` and returns the user. An unknown
    /// or expired token gives `Ok(None)`.
    ///
    /// # Errors
    ///
    /// Only [`StoreError::Closed`] and [`StoreError::Db`].
    pub async fn rotate_refresh_token(
        &self,
        old: [u8; 32],
        new: [u8; 32],
        new_expires_at: Millis,
        now: Millis,
    ) -> Result<Option<UserInfo>, StoreError> {
        self.call(|reply| Command::RotateRefreshToken {
            old,
            new,
            new_expires_at,
            now,
            reply,
        })
        .await
    }

    /// Deletes a refresh token (logout). Unknown tokens are fine.
    ///
    /// # Errors
    ///
    /// Only [`StoreError::Closed`] and [`StoreError::Db`].
    pub async fn revoke_refresh_token(&self, hash: [u8; 32]) -> Result<(), StoreError> {
        self.call(|reply| Command::RevokeRefreshToken { hash, reply })
            .await
    }

    /// Creates a group owned by `owner` with `members` (the owner is always one; duplicates
    /// are ignored). Events: [`Committed::MembersAdded`] with everyone, then the `Created`
    /// system message as seq 1. Returns the group as the owner sees it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] unless the trimmed name has 1 to 64 characters,
    /// [`StoreError::NotFound`] if a user does not exist.
    pub async fn create_group(
        &self,
        owner: UserId,
        name: &str,
        members: &[UserId],
    ) -> Result<ConversationInfo, StoreError> {
        let (name, members) = (name.to_owned(), members.to_vec());
        self.call(|reply| Command::CreateGroup {
            owner,
            name,
            members,
            reply,
        })
        .await
    }

    /// The direct chat between `a` and `b`, as `a` sees it. An existing one (created by either)
    /// is returned with `false` and no events; a new one with `true`, after
    /// [`Committed::MembersAdded`] `[a, b]` and a `Created` system message.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] if `a == b`, [`StoreError::NotFound`] if either user does not
    /// exist.
    pub async fn create_direct(
        &self,
        a: UserId,
        b: UserId,
    ) -> Result<(ConversationInfo, bool), StoreError> {
        self.call(|reply| Command::CreateDirect { a, b, reply })
            .await
    }

    /// The group's owner `by` adds `user`. Already a member: `Ok` with no events. Otherwise
    /// [`Committed::MembersAdded`], then the `Joined` system message. Returns the group as
    /// `by` sees it.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] (conversation or user), [`StoreError::NotMember`] if `by` is
    /// not a member, [`StoreError::Invalid`] for a direct chat, [`StoreError::NotOwner`].
    pub async fn add_member(
        &self,
        by: UserId,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<ConversationInfo, StoreError> {
        self.call(|reply| Command::AddMember {
            by,
            conversation,
            user,
            reply,
        })
        .await
    }

    /// `by == user`: `user` leaves (any member). Otherwise the owner `by` removes `user`.
    /// Events: the `Left`/`Removed` system message, [`Committed::MemberRemoved`], then
    /// [`Committed::ConversationChanged`] with the remaining members. If the owner leaves, the
    /// longest-standing remaining member becomes the owner; the last member leaving leaves an
    /// empty, ownerless group.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] (conversation, or `"member"` if `user` is not in it),
    /// [`StoreError::NotMember`] if `by` is not a member, [`StoreError::Invalid`] for a direct
    /// chat, [`StoreError::NotOwner`] when removing someone else without being the owner.
    pub async fn remove_member(
        &self,
        by: UserId,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<(), StoreError> {
        self.call(|reply| Command::RemoveMember {
            by,
            conversation,
            user,
            reply,
        })
        .await
    }

    /// Any member renames a group (the name is trimmed). Events: the `Renamed` system message,
    /// then [`Committed::ConversationChanged`]. Returns the group as `by` sees it.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], [`StoreError::NotMember`], [`StoreError::Invalid`] for a
    /// direct chat or a name outside 1 to 64 characters.
    pub async fn rename(
        &self,
        by: UserId,
        conversation: ConversationId,
        name: &str,
    ) -> Result<ConversationInfo, StoreError> {
        let name = name.to_owned();
        self.call(|reply| Command::Rename {
            by,
            conversation,
            name,
            reply,
        })
        .await
    }

    /// Moves `user`'s read marker (which the unread count starts from) forward to `seq`,
    /// clamped to the conversation's last seq; a lower `seq` changes nothing. Returns the
    /// marker now.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], [`StoreError::NotMember`].
    pub async fn mark_read(
        &self,
        user: UserId,
        conversation: ConversationId,
        seq: Seq,
    ) -> Result<Seq, StoreError> {
        self.call(|reply| Command::MarkRead {
            user,
            conversation,
            seq,
            reply,
        })
        .await
    }

    /// Reports that everything up to `delivered` in `conversation` reached one of `user`'s
    /// devices and that they have seen everything up to `read`. Never waits: reports are
    /// merged in memory (markers are cumulative, so a burst costs one row update) and the
    /// next batch applies them, clamped to the conversation's last message and never moving
    /// a marker back. A move comes through the sink as [`Committed::Receipt`]; a report
    /// from a non-member as [`Committed::MarksRefused`] carrying `tag`.
    pub fn mark(
        &self,
        user: UserId,
        conversation: ConversationId,
        delivered: Seq,
        read: Seq,
        tag: u64,
    ) {
        if self
            .inner
            .board
            .note(conversation, user, delivered, read, tag)
        {
            // A full queue means the writer is busy and takes the board with its next batch
            // anyway; a closed one means no more batches.
            let _ = self.inner.commands.try_send(Command::Marks);
        }
    }

    /// Records that `user`'s last connection closed at `at` (their "last seen"). Never
    /// waits; dropped if the writer's queue is full (it is a display hint, and the next
    /// disconnect records it again).
    pub fn set_last_seen(&self, user: UserId, at: Millis) {
        let _ = self.inner.commands.try_send(Command::LastSeen { user, at });
    }

    /// Queues a message. Resolves once it is queued (waiting only while the writer's queue is
    /// full: the backpressure), not when it is committed: the outcome,
    /// [`Committed::Message`], [`Committed::Duplicate`] or [`Committed::Rejected`], carrying
    /// `req.origin`, comes through the sink after the commit.
    ///
    /// # Errors
    ///
    /// [`StoreError::Closed`] once the store is closing.
    pub async fn append(&self, req: AppendRequest) -> Result<(), StoreError> {
        self.queue(Command::Append { req, reply: None }).await
    }

    /// Like [`Store::append`], but resolves after the commit with the message and whether it
    /// was a duplicate (the original then). The sink gets the event all the same.
    ///
    /// # Errors
    ///
    /// The rejection: [`StoreError::NotMember`], [`StoreError::NotFound`],
    /// [`StoreError::Invalid`] for a system message, [`StoreError::Db`] if the batch failed.
    pub async fn append_committed(
        &self,
        req: AppendRequest,
    ) -> Result<(MessageView, bool), StoreError> {
        self.call(|reply| Command::Append {
            req,
            reply: Some(reply),
        })
        .await
    }

    /// Queues an attach: the sink gets [`Committed::Attached`] with `user`'s conversations at
    /// that point of the commit order, so a connection attaching while memberships change
    /// neither misses a change nor applies one twice. Resolves when queued.
    ///
    /// # Errors
    ///
    /// [`StoreError::Closed`] once the store is closing.
    pub async fn attach(&self, user: UserId, tag: u64) -> Result<(), StoreError> {
        self.queue(Command::Attach { user, tag }).await
    }

    // ---- reads ----

    /// A user and their password hash, by username in any letter case.
    ///
    /// # Errors
    ///
    /// Only [`StoreError::Db`].
    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserAuth>, StoreError> {
        match self.reads() {
            Reads::Sqlite(r) => {
                let username = username.to_owned();
                r.run(move |c| read::user_by_name(c, &username)).await
            }
            Reads::Postgres(p) => p.user_by_name(username).await,
        }
    }

    /// A user by id.
    ///
    /// # Errors
    ///
    /// Only [`StoreError::Db`].
    pub async fn user(&self, id: UserId) -> Result<Option<UserInfo>, StoreError> {
        match self.reads() {
            Reads::Sqlite(r) => r.run(move |c| crate::queries::user(c, id)).await,
            Reads::Postgres(p) => p.user(id).await,
        }
    }

    /// Users by username (any letter case), in the order asked.
    ///
    /// # Errors
    ///
    /// `NotFound("user")` if any of them does not exist.
    pub async fn users_by_names(&self, names: &[String]) -> Result<Vec<UserInfo>, StoreError> {
        match self.reads() {
            Reads::Sqlite(r) => {
                let names = names.to_vec();
                r.run(move |c| read::users_by_names(c, &names)).await
            }
            Reads::Postgres(p) => p.users_by_names(names).await,
        }
    }

    /// Up to `limit` users whose name starts with `prefix` (any letter case; `%` and `_` are
    /// plain characters), by username.
    ///
    /// # Errors
    ///
    /// Only [`StoreError::Db`].
    pub async fn search_users(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<UserInfo>, StoreError> {
        match self.reads() {
            Reads::Sqlite(r) => {
                let prefix = prefix.to_owned();
                r.run(move |c| read::search_users(c, &prefix, limit)).await
            }
            Reads::Postgres(p) => p.search_users(prefix, limit).await,
        }
    }

    /// The members of conversation `id` as `user` may see them, each with when they were
    /// last online (`None`: never recorded).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], [`StoreError::NotMember`].
    pub async fn member_presence(
        &self,
        user: UserId,
        id: ConversationId,
    ) -> Result<Vec<(UserInfo, Option<Millis>)>, StoreError> {
        match self.reads() {
            Reads::Sqlite(r) => r.run(move |c| read::member_presence(c, user, id)).await,
            Reads::Postgres(p) => p.member_presence(user, id).await,
        }
    }

    /// `user`'s conversations, most recent activity first, each with its members, last
    /// message and `unread`: messages after the user's read marker that others sent. A direct
    /// chat is named after the other member.
    ///
    /// # Errors
    ///
    /// Only [`StoreError::Db`].
    pub async fn conversations(&self, user: UserId) -> Result<Vec<ConversationInfo>, StoreError> {
        match self.reads() {
            Reads::Sqlite(r) => r.run(move |c| read::conversations(c, user)).await,
            Reads::Postgres(p) => p.conversations(user).await,
        }
    }

    /// One conversation as `user` sees it.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if it does not exist, [`StoreError::NotMember`].
    pub async fn conversation(
        &self,
        user: UserId,
        id: ConversationId,
    ) -> Result<ConversationInfo, StoreError> {
        match self.reads() {
            Reads::Sqlite(r) => r.run(move |c| read::conversation(c, user, id)).await,
            Reads::Postgres(p) => p.conversation(user, id).await,
        }
    }

    /// Whether `user` is a member of `id` (an unknown conversation has no members).
    ///
    /// # Errors
    ///
    /// Only [`StoreError::Db`].
    pub async fn is_member(&self, user: UserId, id: ConversationId) -> Result<bool, StoreError> {
        match self.reads() {
            Reads::Sqlite(r) => r.run(move |c| read::is_member(c, user, id)).await,
            Reads::Postgres(p) => p.is_member(user, id).await,
        }
    }

    /// Up to `limit` messages with seq after `after`, ascending.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], [`StoreError::NotMember`].
    pub async fn messages_after(
        &self,
        user: UserId,
        id: ConversationId,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<MessageView>, StoreError> {
        match self.reads() {
            Reads::Sqlite(r) => {
                r.run(move |c| read::messages_after(c, user, id, after, limit))
                    .await
            }
            Reads::Postgres(p) => p.messages_after(user, id, after, limit).await,
        }
    }

    /// The page of up to `limit` messages just before `before` (`None`: the newest), in
    /// ascending order, and whether older ones exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], [`StoreError::NotMember`].
    pub async fn history(
        &self,
        user: UserId,
        id: ConversationId,
        before: Option<Seq>,
        limit: usize,
    ) -> Result<(Vec<MessageView>, bool), StoreError> {
        match self.reads() {
            Reads::Sqlite(r) => {
                r.run(move |c| read::history(c, user, id, before, limit))
                    .await
            }
            Reads::Postgres(p) => p.history(user, id, before, limit).await,
        }
    }

    /// The conversation's last committed seq (0 if empty).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`].
    pub async fn last_seq(&self, id: ConversationId) -> Result<Seq, StoreError> {
        match self.reads() {
            Reads::Sqlite(r) => r.run(move |c| read::last_seq(c, id)).await,
            Reads::Postgres(p) => p.last_seq(id).await,
        }
    }
}

/// `bytes` in lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
