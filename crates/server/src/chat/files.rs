//! File transfer on the chat socket: `file_start` → `file_ready`, binary chunks, `file_end` →
//! a file message; and the sweep that deletes idle uploads.
//!
//! Bytes go straight to `<data-dir>/files/partial/<id>` as they arrive and are hashed on
//! the way; at `file_end` the file is checked, made durable and renamed to
//! `<data-dir>/files/<id>` before its message is committed, so a message never names a file
//! that is not complete on disk. Every disk operation (write plus hash, re-hash on resume,
//! fsync and rename) runs on tokio's blocking pool: a slow disk stalls only the uploading
//! connection, which then stops reading its socket (TCP backpressure), never a runtime
//! worker. Chunks do not wait for their own write: each upload has at most one write in
//! flight, and the chunks that arrive meanwhile (at least [`MIN_WRITE`], at most [`BATCH`]
//! bytes) go together in the next one (see [`Writer`]), so the socket keeps being read while
//! the disk works and one hand-off to the blocking pool serves many chunks. The per-connection state is an `Option<Box<Uploads>>` inside the boxed
//! [`Session`](super::session::Session), so a connection that never uploads pays one
//! pointer, and the read pump's future does not grow.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chatgroup_protocol::chunk::{parse_chunk, HEADER_LEN};
use chatgroup_protocol::{ConversationId, ErrorCode, Ref, ServerMsg, UserInfo};
use chatgroup_store::{NewUpload, Origin, StoreError, StoredFile, UploadLimits, UploadStart};
use rfc6455::CloseCode;
use sha2::{Digest, Sha256};

use super::actions::ActionError;
use super::bucket::TokenBucket;
use super::session::{Io, Outcome, Strikes};
use crate::config::Durability;
use crate::context::ServerCtx;

/// The most data bytes per chunk the server asks for (less if `--max-frame-size` is smaller).
pub(crate) const CHUNK_SIZE: u32 = 64 * 1024;
/// The longest `uploadId`, in bytes (it becomes the message's `localId`).
const MAX_UPLOAD_ID: usize = 64;
/// The longest file name, in bytes.
const MAX_NAME: usize = 255;
/// The longest media type, in bytes.
const MAX_MIME: usize = 127;
/// Most chunk bytes an upload holds while its previous write is in flight; a chunk past
/// it waits for that write. With the batch being written, an upload holds at most twice
/// this much, whatever the file's size.
const BATCH: usize = 1 << 20;
/// Fewest chunk bytes a write takes, unless the upload is finishing or the last write
/// started [`MAX_HOLD`] ago: every hand-off to the blocking pool costs two thread switches.
const MIN_WRITE: usize = 256 * 1024;
/// Longest a slow upload's chunks wait for company: the idle sweep reads an upload's
/// activity from its file's modification time, so a trickle must still reach the disk.
const MAX_HOLD: Duration = Duration::from_secs(1);
/// Uploads looked at per sweep round.
const SWEEP_BATCH: usize = 256;
/// How long after a rate-limit refusal chunks at other offsets are taken for what the client
/// had in flight before it could read the refusal (dropped, nothing more). Later ones mean the
/// client ignores the refusal, and each counts as an ignored limit. Generous: a client on a
/// slow link may have megabytes queued in its socket, and it only has to read a line.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(1);

/// Where files live, and which connection is writing which upload.
#[derive(Debug)]
pub(crate) struct FileRoot {
    dir: PathBuf,
    /// Upload id → the "taken over" flag of the connection writing it. Starting an upload
    /// again elsewhere (a reconnect whose old socket is not yet noticed dead) sets the old
    /// flag, so two connections never append to one file.
    claims: Mutex<HashMap<u64, Arc<AtomicBool>>>,
}

impl FileRoot {
    /// Files under `<data_dir>/files` (created on the first upload, so a server that never
    /// sees one leaves no directory behind).
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("files"),
            claims: Mutex::new(HashMap::new()),
        }
    }

    /// A complete file's bytes.
    pub(crate) fn complete(&self, id: u64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    fn partial(&self, id: u64) -> PathBuf {
        self.dir.join("partial").join(id.to_string())
    }

    fn claim(&self, id: u64) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = claims.insert(id, Arc::clone(&flag)) {
            old.store(true, Ordering::Release);
        }
        flag
    }

    fn release(&self, id: u64, flag: &Arc<AtomicBool>) {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if claims.get(&id).is_some_and(|f| Arc::ptr_eq(f, flag)) {
            claims.remove(&id);
        }
    }
}

/// One connection's uploads in progress.
#[derive(Debug)]
pub(crate) struct Uploads {
    open: Vec<Upload>,
    /// Chunks per second for this connection.
    bucket: TokenBucket,
}

impl Drop for Uploads {
    fn drop(&mut self) {
        for upload in &self.open {
            upload.root.release(upload.file.id, &upload.taken_over);
        }
    }
}

#[derive(Debug)]
struct Upload {
    file: StoredFile,
    /// The next offset expected: bytes on disk, being written, or waiting to be.
    offset: u64,
    writer: Writer,
    /// A chunk was refused: chunks at other offsets are dropped (they are the rest of what
    /// the client had in flight) until one arrives at `offset`.
    resync: Option<Resync>,
    taken_over: Arc<AtomicBool>,
    root: Arc<FileRoot>,
}

/// What a refused chunk told the client, and when.
#[derive(Debug, Clone, Copy)]
struct Resync {
    /// When the refusal was queued.
    at: Instant,
    /// A rate limit's `retryAfterMs` from `at`: a chunk at the offset the client was told
    /// that arrives before this proves the client saw the refusal and did not wait.
    not_before: Option<Instant>,
}

#[derive(Debug)]
struct Disk {
    file: File,
    hash: Sha256,
}

impl Disk {
    /// Hashes and appends `batch`, in order, with as few system calls as the kernel allows.
    fn append(&mut self, batch: &[Bytes]) -> io::Result<()> {
        for data in batch {
            self.hash.update(data);
        }
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match self.file.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// An upload's way to disk: one write in flight on the blocking pool at a time, and the
/// chunks accepted meanwhile, which the next write takes all together. Waiting for each
/// chunk's own write (as this did first) left the socket unread during every write and cost
/// two thread switches per chunk; now the reader waits only when [`BATCH`] bytes are queued
/// behind a write, which bounds the memory an upload holds.
#[derive(Debug)]
struct Writer {
    /// The file and hash, while no write is in flight.
    idle: Option<Box<Disk>>,
    /// The write in flight; it hands the file and hash back.
    busy: Option<tokio::task::JoinHandle<io::Result<Box<Disk>>>>,
    /// Chunks accepted since that write started.
    queued: Vec<Bytes>,
    queued_len: usize,
    /// When the last write started.
    last_start: Instant,
}

impl Writer {
    fn new(disk: Disk) -> Self {
        Self {
            idle: Some(Box::new(disk)),
            busy: None,
            queued: Vec::new(),
            queued_len: 0,
            last_start: Instant::now(),
        }
    }

    /// Queues `data` and, when no write is in flight, starts one once [`MIN_WRITE`] bytes
    /// are queued (or [`MAX_HOLD`] has passed). Waits for the write in flight only when
    /// [`BATCH`] bytes are queued behind it. An error is that of an
    /// earlier write: the upload cannot go on.
    async fn push(&mut self, data: Bytes) -> io::Result<()> {
        self.queued_len += data.len();
        self.queued.push(data);
        if let Some(write) = &self.busy {
            if !write.is_finished() && self.queued_len < BATCH {
                return Ok(());
            }
            self.settle().await?;
        }
        if self.queued_len >= MIN_WRITE || self.last_start.elapsed() >= MAX_HOLD {
            self.start();
        }
        Ok(())
    }

    /// Every accepted byte written and hashed: the file and hash, for `file_end`.
    async fn finish(&mut self) -> io::Result<Box<Disk>> {
        self.settle().await?;
        if !self.queued.is_empty() {
            self.start();
            self.settle().await?;
        }
        self.idle
            .take()
            .ok_or_else(|| io::Error::other("upload state lost"))
    }

    /// Waits for the write in flight, if any.
    async fn settle(&mut self) -> io::Result<()> {
        if let Some(write) = self.busy.take() {
            let disk = write.await.unwrap_or_else(|e| Err(io::Error::other(e)))?;
            self.idle = Some(disk);
        }
        Ok(())
    }

    /// Hands the queued chunks to a write on the blocking pool (the caller made sure no
    /// write is in flight).
    fn start(&mut self) {
        let Some(mut disk) = self.idle.take() else {
            return;
        };
        let batch = std::mem::take(&mut self.queued);
        self.queued_len = 0;
        self.last_start = Instant::now();
        self.busy = Some(tokio::task::spawn_blocking(move || {
            disk.append(&batch)?;
            Ok(disk)
        }));
    }
}

fn invalid(message: impl Into<String>) -> ActionError {
    ActionError::new(ErrorCode::Invalid, message)
}

fn io_failed(err: &io::Error) -> ActionError {
    tracing::error!(error = %err, "file storage failed");
    ActionError::new(ErrorCode::Internal, "file storage failed")
}

/// Runs blocking disk work off the runtime's workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// A media type as stored and served: `type/subtype` of token characters, lowercased;
/// anything else becomes `application/octet-stream` (it ends up in a response header).
fn clean_mime(mime: &str) -> String {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match mime.trim().split_once('/') {
        Some((t, s)) if mime.len() <= MAX_MIME && token(t) && token(s) => {
            mime.trim().to_ascii_lowercase()
        }
        _ => "application/octet-stream".to_owned(),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The chunk size this server asks for: [`CHUNK_SIZE`], unless frames are capped lower.
fn chunk_size(ctx: &ServerCtx) -> u32 {
    let frame = ctx.cfg.max_frame_len.min(ctx.cfg.max_message_len as u64);
    let room = frame.saturating_sub(HEADER_LEN as u64).max(1);
    u32::try_from(room.min(u64::from(CHUNK_SIZE))).unwrap_or(CHUNK_SIZE)
}

/// The fields of a `file_start`.
#[derive(Debug)]
pub(crate) struct FileStart {
    pub(crate) conversation: ConversationId,
    pub(crate) upload_id: String,
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) mime: String,
    pub(crate) sha256: Option<String>,
    pub(crate) reference: Ref,
}

/// `file_start`: checks and records the upload (or finds it again), opens its partial file
/// (re-hashing what is there), and answers `file_ready` with the offset to continue from.
pub(crate) async fn start(
    uploads: &mut Option<Box<Uploads>>,
    user: &UserInfo,
    req: FileStart,
    io: Io<'_>,
) -> Result<(), ActionError> {
    let ctx = io.ctx;
    if req.upload_id.is_empty() || req.upload_id.len() > MAX_UPLOAD_ID {
        return Err(invalid(format!(
            "uploadId must have 1 to {MAX_UPLOAD_ID} bytes"
        )));
    }
    let name = req.name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "name must have 1 to {MAX_NAME} bytes and no control characters"
        )));
    }
    let sha256 = match req.sha256.as_deref() {
        None => None,
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(h.to_ascii_lowercase())
        }
        Some(_) => return Err(invalid("sha256 must be 64 hex digits")),
    };
    let max = ctx.cfg.max_file_size;
    if req.size > max {
        return Err(ActionError::new(
            ErrorCode::FileTooLarge,
            format!(
                "{} bytes is more than the {max} bytes a file may have",
                req.size
            ),
        ));
    }
    let started = ctx
        .store
        .start_upload(NewUpload {
            uploader: user.id,
            conversation: req.conversation,
            upload_id: req.upload_id.clone(),
            name: name.to_owned(),
            mime: clean_mime(&req.mime),
            size: req.size,
            sha256,
            limits: UploadLimits {
                max_in_flight: ctx.cfg.max_uploads_in_flight,
                bytes_per_day: ctx.cfg.upload_bytes_per_day,
            },
        })
        .await?;
    let (file, fresh) = match started {
        UploadStart::New(file) => (file, true),
        UploadStart::Existing(file) => (file, false),
        UploadStart::Conflict(_) => {
            return Err(invalid(
                "this uploadId was used for another file (conversation, size or sha256 differ)",
            ))
        }
        UploadStart::TooManyInFlight { limit } => {
            return Err(ActionError::new(
                ErrorCode::QuotaExceeded,
                format!("{limit} uploads are unfinished already; finish one first"),
            ))
        }
        UploadStart::DailyQuota { used, limit } => {
            return Err(ActionError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "{} more bytes would pass the {limit} bytes allowed per day ({used} used)",
                    req.size
                ),
            ))
        }
        _ => {
            return Err(ActionError::new(
                ErrorCode::Internal,
                "unexpected upload state",
            ))
        }
    };
    let uploads = uploads.get_or_insert_with(|| {
        Box::new(Uploads {
            open: Vec::new(),
            bucket: TokenBucket::new(ctx.cfg.file_chunk_burst),
        })
    });
    // Starting again on the same connection replaces the open state, once what it accepted
    // is on disk: the offset to go on from is read from the file.
    if let Some(i) = uploads.open.iter().position(|u| u.file.id == file.id) {
        let mut old = uploads.open.swap_remove(i);
        if let Err(err) = old.writer.finish().await {
            tracing::error!(error = %err, "file storage failed");
        }
    }
    let offset = if file.completed {
        // Posted already: nothing to send; its `file_end` gets the duplicate ack.
        file.size
    } else {
        let root = Arc::clone(&ctx.files);
        let taken_over = root.claim(file.id);
        let path = root.partial(file.id);
        let size = file.size;
        let opened = blocking(move || open_partial(&path, fresh, size)).await;
        let (disk, offset) = match opened {
            Ok(opened) => opened,
            Err(err) => {
                root.release(file.id, &taken_over);
                return Err(io_failed(&err));
            }
        };
        uploads.open.push(Upload {
            file: file.clone(),
            offset,
            writer: Writer::new(disk),
            resync: None,
            taken_over,
            root,
        });
        offset
    };
    // Like its refusals, the answer's `ref` defaults to the `uploadId` (protocol.md, Files).
    let reference = req.reference.or_else(|| Some(req.upload_id.clone()));
    io.send(&ServerMsg::FileReady {
        upload_id: req.upload_id,
        file_id: file.id,
        offset,
        chunk_size: chunk_size(ctx),
        reference,
    })
    .await;
    Ok(())
}

/// Opens (creating) an upload's partial file and hashes what it holds: the resume point.
fn open_partial(path: &Path, fresh: bool, size: u64) -> io::Result<(Disk, u64)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = File::options()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let mut len = file.metadata()?.len();
    if fresh || len > size {
        // A new upload (or a file longer than announced, which no upload can produce)
        // starts from nothing.
        file.set_len(0)?;
        len = 0;
    }
    let mut hash = Sha256::new();
    let mut buf = vec![0; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    Ok((Disk { file, hash }, len - left))
}

/// What a refused chunk tells the client.
async fn refuse_chunk(
    upload: &mut Upload,
    code: ErrorCode,
    message: String,
    retry_after_ms: Option<u64>,
    io: Io<'_>,
) {
    let at = Instant::now();
    upload.resync = Some(Resync {
        at,
        not_before: retry_after_ms.map(|ms| at + Duration::from_millis(ms)),
    });
    io.send(&ServerMsg::Error {
        code,
        message,
        reference: Some(upload.file.upload_id.clone()),
        retry_after_ms,
    })
    .await;
    // The offset to go on from, machine-readable.
    io.send(&ServerMsg::FileReady {
        upload_id: upload.file.upload_id.clone(),
        file_id: upload.file.id,
        offset: upload.offset,
        chunk_size: chunk_size(io.ctx),
        reference: Some(upload.file.upload_id.clone()),
    })
    .await;
}

/// A binary frame: one chunk of an upload open on this connection. Anything else closes
/// the connection with 1003, as binary frames did before file transfer existed.
///
/// Rate limits are per connection and refusals are fair to a client that pipelines: only
/// the first chunk over the limit is answered (with `retryAfterMs` and the offset to go on
/// from), and what follows it at other offsets is taken for what was already in flight.
/// Ignoring the refusal is what counts against `strikes` (closing the connection with 1008
/// when they run out): resuming at the told offset before `retryAfterMs` has passed, or
/// still sending at other offsets [`IN_FLIGHT_GRACE`] after the refusal.
pub(crate) async fn chunk(
    uploads: &mut Option<Box<Uploads>>,
    strikes: &mut Strikes,
    user: Option<&UserInfo>,
    frame: Bytes,
    io: Io<'_>,
) -> Outcome {
    const NO_UPLOAD: Outcome = Outcome::Close(
        CloseCode::UNSUPPORTED_DATA,
        "binary messages must be chunks of an upload started on this connection",
    );
    if user.is_none() {
        return NO_UPLOAD;
    }
    let Ok((header, data)) = parse_chunk(&frame) else {
        return NO_UPLOAD;
    };
    let Some(uploads) = uploads.as_mut() else {
        return NO_UPLOAD;
    };
    let Some(index) = uploads
        .open
        .iter()
        .position(|u| u.file.id == header.file_id)
    else {
        return NO_UPLOAD;
    };
    let cfg = &io.ctx.cfg;
    let now = Instant::now();
    let upload = &mut uploads.open[index];
    if upload.taken_over.load(Ordering::Acquire) {
        let id = upload.file.upload_id.clone();
        uploads.open.swap_remove(index);
        io.error(
            ErrorCode::Invalid,
            "this upload was started again on another connection",
            Some(id),
        )
        .await;
        return Outcome::Continue;
    }
    if header.offset != upload.offset {
        return match upload.resync {
            None => {
                let message = format!(
                    "chunk at offset {} but the next byte expected is {}; continue from there",
                    header.offset, upload.offset
                );
                refuse_chunk(upload, ErrorCode::Invalid, message, None, io).await;
                Outcome::Continue
            }
            Some(Resync {
                at,
                not_before: Some(_),
            }) if now.duration_since(at) > IN_FLIGHT_GRACE => strikes.strike(),
            Some(_) => Outcome::Continue,
        };
    }
    // Only chunks that would be written take a token: dropped ones cost a read, no more.
    let early = upload
        .resync
        .and_then(|r| r.not_before)
        .and_then(|t| t.checked_duration_since(now));
    let taken = match early {
        Some(wait) => Err(wait),
        None => uploads
            .bucket
            .take(cfg.file_chunk_rate, cfg.file_chunk_burst),
    };
    let upload = &mut uploads.open[index];
    if let Err(wait) = taken {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let message = format!(
            "more than {} chunks per second; resend from offset {} in {ms} ms",
            cfg.file_chunk_rate, upload.offset
        );
        refuse_chunk(upload, ErrorCode::RateLimited, message, Some(ms), io).await;
        // The first refusal is news to a client; resuming before the wait it was told is
        // ignoring it.
        return if early.is_some() {
            strikes.strike()
        } else {
            Outcome::Continue
        };
    }
    let len = data.len() as u64;
    let max_chunk = chunk_size(io.ctx);
    if len > u64::from(max_chunk) || upload.offset + len > upload.file.size {
        let message = if len > u64::from(max_chunk) {
            format!("a chunk carries at most {max_chunk} bytes; got {len}")
        } else {
            format!(
                "the chunk ends at byte {} of a file announced as {} bytes",
                upload.offset + len,
                upload.file.size
            )
        };
        refuse_chunk(upload, ErrorCode::FileMismatch, message, None, io).await;
        return Outcome::Continue;
    }
    upload.resync = None;
    upload.offset += len;
    match upload.writer.push(frame.slice(HEADER_LEN..)).await {
        Ok(()) => {}
        Err(err) => {
            let id = upload.file.upload_id.clone();
            uploads.open.swap_remove(index);
            let err = io_failed(&err);
            io.error(err.code, err.message, Some(id)).await;
        }
    }
    Outcome::Continue
}

/// `file_end`: checks size and hash, makes the file durable under its final name and posts
/// its message (the hub sends the ack, `localId` = the upload id). A retry after the post
/// gets the duplicate ack.
pub(crate) async fn end(
    uploads: &mut Option<Box<Uploads>>,
    user: &UserInfo,
    file_id: u64,
    reference: Ref,
    io: Io<'_>,
) -> Result<(), ActionError> {
    let ctx = io.ctx;
    let open = uploads.as_mut().and_then(|u| {
        u.open
            .iter()
            .position(|x| x.file.id == file_id)
            .map(|i| (u, i))
    });
    let Some((list, index)) = open else {
        // Not open here: only a retry of a posted upload makes sense.
        let file = ctx
            .store
            .file(file_id)
            .await?
            .filter(|f| f.uploader == user.id)
            .ok_or_else(|| ActionError::new(ErrorCode::NotFound, "no such upload"))?;
        if !file.completed {
            return Err(invalid(
                "this upload is not open on this connection; send file_start to resume it",
            ));
        }
        let sha = file.sha256.clone().unwrap_or_default();
        return post(user, &file, sha, reference, io).await;
    };
    let upload = &mut list.open[index];
    if upload.offset != upload.file.size {
        return Err(ActionError::new(
            ErrorCode::FileMismatch,
            format!(
                "{} of the {} bytes announced have arrived; send the rest from offset {}",
                upload.offset, upload.file.size, upload.offset
            ),
        ));
    }
    let mut upload = list.open.swap_remove(index);
    upload.root.release(upload.file.id, &upload.taken_over);
    let disk = upload.writer.finish().await.map_err(|e| io_failed(&e))?;
    let (partial, complete) = (upload.root.partial(file_id), upload.root.complete(file_id));
    let expected = upload.file.sha256.clone();
    let durable = ctx.cfg.durability == Durability::Full;
    let finished = blocking(move || {
        let sha = hex(&disk.hash.finalize());
        if expected.as_ref().is_some_and(|e| *e != sha) {
            drop(disk.file);
            let _ = std::fs::remove_file(&partial);
            return Ok(Err(sha));
        }
        // With --durability full an acknowledged file survives a power loss like an
        // acknowledged message does; with normal it survives a crash of the server (the
        // page cache keeps it), which is what normal promises for messages too.
        if durable {
            disk.file.sync_all()?;
        }
        drop(disk.file);
        std::fs::rename(&partial, &complete)?;
        if durable {
            if let Some(dir) = complete.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(Ok(sha))
    })
    .await;
    let sha = match finished {
        Ok(Ok(sha)) => sha,
        Ok(Err(actual)) => {
            let _ = ctx.store.delete_upload(file_id).await;
            return Err(ActionError::new(
                ErrorCode::FileMismatch,
                format!(
                    "the bytes have sha256 {actual}, not the {} announced; the upload is deleted",
                    upload.file.sha256.as_deref().unwrap_or_default()
                ),
            ));
        }
        Err(err) => return Err(io_failed(&err)),
    };
    post(user, &upload.file, sha, reference, io).await
}

async fn post(
    user: &UserInfo,
    file: &StoredFile,
    sha: String,
    reference: Ref,
    io: Io<'_>,
) -> Result<(), ActionError> {
    let origin = Origin {
        tag: io.client.0,
        reference: reference.or_else(|| Some(file.upload_id.clone())),
    };
    match io.ctx.store.post_file(user.id, file, sha, origin).await {
        // The ack, or the refusal, reaches this connection from the hub with the commit.
        Ok(_) | Err(StoreError::NotFound(_) | StoreError::NotMember | StoreError::Db(_)) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Deletes uploads that saw no chunk for `cfg.upload_idle_timeout`, every so often, until
/// shutdown. Idleness is the partial file's modification time, which every chunk moves, so
/// the hot path never writes to the database.
pub(crate) async fn sweep(ctx: Arc<ServerCtx>) {
    let idle = ctx.cfg.upload_idle_timeout;
    let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = sweep_once(&ctx, idle).await {
            tracing::warn!(error = %err, "idle upload sweep failed");
        }
    }
}

async fn sweep_once(ctx: &ServerCtx, idle: Duration) -> Result<(), StoreError> {
    let now = crate::auth::now_ms();
    let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
    let candidates = ctx
        .store
        .unfinished_uploads(now.saturating_sub(idle_ms), SWEEP_BATCH)
        .await?;
    for file in candidates {
        let partial = ctx.files.partial(file.id);
        let check = partial.clone();
        let last = blocking(move || Ok(std::fs::metadata(&check).and_then(|m| m.modified()).ok()))
            .await
            .ok()
            .flatten();
        let quiet = last.map_or(Some(idle), |t| SystemTime::now().duration_since(t).ok());
        if quiet.is_some_and(|q| q < idle) {
            continue;
        }
        if ctx.store.delete_upload(file.id).await? {
            let complete = ctx.files.complete(file.id);
            let _ = blocking(move || {
                let _ = std::fs::remove_file(partial);
                let _ = std::fs::remove_file(complete);
                Ok(())
            })
            .await;
            tracing::debug!(file = file.id, "deleted an idle upload");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_cleaned() {
        assert_eq!(clean_mime("Text/Plain"), "text/plain");
        assert_eq!(clean_mime("image/svg+xml"), "image/svg+xml");
        assert_eq!(clean_mime("text/html\r\nX: y"), "application/octet-stream");
        assert_eq!(
            clean_mime("text/plain; charset=utf-8"),
            "application/octet-stream"
        );
        assert_eq!(clean_mime(""), "application/octet-stream");
    }

    #[test]
    fn a_partial_file_resumes_with_its_hash() {
        let dir = std::env::temp_dir().join(format!("chatgroup-partial-{}", std::process::id()));
        let path = dir.join("partial").join("1");
        let (mut disk, offset) = open_partial(&path, true, 10).unwrap();
        assert_eq!(offset, 0);
        disk.file.write_all(b"hello").unwrap();
        drop(disk);
        let (disk, offset) = open_partial(&path, false, 10).unwrap();
        assert_eq!(offset, 5);
        assert_eq!(hex(&disk.hash.finalize()), hex(&Sha256::digest(b"hello")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
