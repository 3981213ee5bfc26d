//! `chat upload`: N clients, each its own user alone in its own group (so a posted file
//! reaches nobody else), upload files of S bytes one after another over their chat socket:
//! `file_start` → `file_ready`, every chunk written as fast as the socket takes it (no
//! waiting between chunks: the server answers chunks only when it refuses one), `file_end`
//! → `ack`. A client starts no new file after `--duration` or `--files`.
//!
//! The file's bytes and SHA-256 are computed once, and masked once per client ahead of
//! time: with chunks whose length is a multiple of 4 every chunk's data starts at key
//! phase 0 after the 16-byte chunk header, so only the 16 header bytes are masked per
//! chunk and the generator's cost per byte is one copy into its write buffer.
//!
//! Figures: MB/s (10^6 bytes of acked files) from the first `file_start` to the last
//! `ack`, and per server core-second over the same span. Checks: every file is acked under
//! its `uploadId`, which means the server found the announced size and SHA-256.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::{BufMut as _, Bytes, BytesMut};
use chatgroup_protocol::chunk::{encode_header, ChunkHeader, HEADER_LEN};
use chatgroup_protocol::{ConversationId, ErrorCode, ServerMsg};
use rfc6455::{apply_mask, FrameHeader, OpCode};
use sha2::{Digest as _, Sha256};
use tokio::io::Interest;

use super::{read_texts, wire, ChatConn, Kind, Setup};
use crate::cli::ChatUploadArgs;
use crate::report::{Errors, Report};
use crate::scenario::{Common, Usage};
use crate::session::{close_all, Session};

/// Bytes queued for the socket before the client waits for it to take some: a few chunks,
/// so one wake-up writes several of them.
const HIGH_WATER: usize = 512 * 1024;

/// The file every client uploads, again and again.
#[derive(Debug)]
struct FileData {
    bytes: Vec<u8>,
    sha256: String,
}

impl FileData {
    /// `size` bytes from a fixed xorshift sequence, and their SHA-256.
    fn new(size: usize) -> Self {
        let mut bytes = Vec::with_capacity(size + 8);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while bytes.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        bytes.truncate(size);
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self { bytes, sha256 }
    }
}

/// What every client shares: the span measured and what went through.
#[derive(Debug, Default)]
struct Totals {
    first_start: Cell<Option<Instant>>,
    last_ack: Cell<Option<Instant>>,
    files: Cell<u64>,
    bytes: Cell<u64>,
    /// Chunks the server refused (rate limit, wrong offset): the client resent from the
    /// offset it was told.
    refusals: Cell<u64>,
}

impl Totals {
    fn started(&self, at: Instant) {
        if self.first_start.get().is_none() {
            self.first_start.set(Some(at));
        }
    }

    fn acked(&self, at: Instant, size: u64) {
        self.last_ack.set(Some(at));
        self.files.set(self.files.get() + 1);
        self.bytes.set(self.bytes.get() + size);
    }
}

/// How one client runs.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// No file starts after this.
    stop_starting: Instant,
    /// Everything ends here at the latest.
    hard_end: Instant,
    files: usize,
    chunk: usize,
}

/// Runs the mode.
pub(crate) async fn run(
    common: &Common,
    setup: &Setup,
    args: &ChatUploadArgs,
) -> anyhow::Result<Report> {
    let errors = Rc::new(Errors::default());
    let params = serde_json::json!({
        "clients": args.clients, "file_size": args.file_size, "files": args.files,
        "chunk": args.chunk, "duration_s": common.duration.as_secs_f64(),
    });
    let mut report = Report::new("chat-upload", &common.label, params);
    let n = args.clients;
    let setup_start = Instant::now();
    let accounts = setup.register("u", n).await?;
    let mut groups = Vec::with_capacity(n);
    for (i, account) in accounts.iter().enumerate() {
        groups.push(
            setup
                .group(account, &format!("loadgen upload {i}"), &[])
                .await?,
        );
    }
    let tokens: Vec<String> = accounts.iter().map(|a| a.token.clone()).collect();
    let conns = setup
        .connect_many(n, move |i| tokens[i].clone(), &errors)
        .await;
    let file = Rc::new(FileData::new(args.file_size));
    report.metric("setup_s", setup_start.elapsed().as_secs_f64());
    if conns.len() < n {
        report.take_errors(&errors);
        close_all(
            conns.into_iter().map(|(_, c)| c.session).collect(),
            Duration::from_secs(1),
        )
        .await;
        return Ok(report);
    }

    let totals = Rc::new(Totals::default());
    let now = Instant::now();
    let plan = Plan {
        stop_starting: now + common.duration,
        hard_end: now + common.duration + Duration::from_secs_f64(args.drain),
        files: args.files,
        chunk: args.chunk,
    };
    let usage = Usage::begin(common.server_pid)?;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|(i, conn)| {
            tokio::task::spawn_local(client(
                i,
                conn,
                groups[i],
                file.clone(),
                plan,
                totals.clone(),
                errors.clone(),
            ))
        })
        .collect();
    let mut sessions = Vec::new();
    for task in tasks {
        sessions.extend(task.await?);
    }
    let usage = usage.end()?;
    close_all(sessions, Duration::from_secs(1)).await;
    usage.fill(&mut report);
    if let (Some(from), Some(to)) = (totals.first_start.get(), totals.last_ack.get()) {
        // The span the figure is about; the CPU sample brackets it closely (the
        // clients start right after the first sample and the last one ends at its ack).
        report.window_s = to.duration_since(from).as_secs_f64();
    }
    let bytes = totals.bytes.get();
    report.metric("files", totals.files.get() as f64);
    report.metric("bytes", bytes as f64);
    report.metric("chunk_refusals", totals.refusals.get() as f64);
    report.rate("mb_per_s", "mb_per_server_core_s", bytes as f64 / 1e6);
    report.take_errors(&errors);
    Ok(report)
}

/// One client: files one after another until the plan says stop. Returns the session when
/// it is still usable.
async fn client(
    index: usize,
    mut conn: ChatConn,
    conversation: ConversationId,
    file: Rc<FileData>,
    plan: Plan,
    totals: Rc<Totals>,
    errors: Rc<Errors>,
) -> Option<Session> {
    let mut masked = file.bytes.clone();
    apply_mask(&mut masked, conn.session.mask);
    let result: anyhow::Result<()> = async {
        for n in 0..plan.files as u64 {
            if Instant::now() >= plan.stop_starting {
                break;
            }
            upload_one(&mut conn, conversation, n, &file, &masked, plan, &totals).await?;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Some(conn.session),
        Err(e) => {
            errors.push(format!("client {index}: {e:#}"));
            None
        }
    }
}

/// One file: start, every chunk, end, ack.
async fn upload_one(
    conn: &mut ChatConn,
    conversation: ConversationId,
    n: u64,
    file: &FileData,
    masked: &[u8],
    plan: Plan,
    totals: &Totals,
) -> anyhow::Result<()> {
    let size = file.bytes.len() as u64;
    let started = Instant::now();
    totals.started(started);
    conn.session
        .queue(&wire::file_start_frame(conversation, n, size, &file.sha256));
    let (file_id, mut at, chunk_size) = loop {
        let text = conn.next_text(plan.hard_end).await?;
        if let Said::Ready(ready) = said(&text, n)? {
            break ready;
        }
    };
    let chunk = plan.chunk.min(chunk_size as usize).max(1);
    let key = conn.session.mask;
    let session = &mut conn.session;
    let mut texts = Vec::new();
    // Set by a rate limit: no chunk is queued before then.
    let mut paused_until: Option<Instant> = None;
    // Until every byte is on its way: refill the write buffer, write, and read whatever the
    // server says meanwhile (pings, and a refusal with the offset to go on from).
    loop {
        let now = Instant::now();
        if paused_until.is_some_and(|t| t <= now) {
            paused_until = None;
        }
        while paused_until.is_none() && at < size && session.wbuf.len() < HIGH_WATER {
            let len = (size - at).min(chunk as u64) as usize;
            let from = usize::try_from(at).context("offset")?;
            let plain = &file.bytes[from..from + len];
            let premasked = (from % 4 == 0).then(|| &masked[from..from + len]);
            queue_chunk(&mut session.wbuf, key, file_id, at, plain, premasked);
            at += len as u64;
        }
        session.try_flush()?;
        if at >= size && session.wbuf.is_empty() && paused_until.is_none() {
            break;
        }
        if session.wbuf.is_empty() && paused_until.is_none() {
            // The socket took everything: refill before waiting.
            continue;
        }
        let interest = if session.wbuf.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        let wake = paused_until.unwrap_or(plan.hard_end).min(plan.hard_end);
        let readable = tokio::select! {
            r = session.stream.ready(interest) => r?.is_readable(),
            () = tokio::time::sleep_until(wake.into()) => {
                if Instant::now() >= plan.hard_end {
                    bail!("file {n}: the upload did not finish in time");
                }
                false
            }
        };
        if readable {
            read_texts(session, |t| texts.push(t))?;
            for text in texts.drain(..) {
                match said(&text, n)? {
                    Said::Ready((_, offset, _)) => {
                        // A refused chunk: the server drops what is in flight behind it;
                        // go on from where it says.
                        totals.refusals.set(totals.refusals.get() + 1);
                        at = offset;
                    }
                    Said::RetryAfter(wait) => paused_until = Some(Instant::now() + wait),
                    Said::Nothing => {}
                }
            }
        }
    }
    session.queue(&wire::file_end_frame(file_id));
    loop {
        let text = conn.next_text(plan.hard_end).await?;
        match wire::kind(&text) {
            Kind::Ack if wire::local_id(&text) == Some(n) => {
                totals.acked(Instant::now(), size);
                return Ok(());
            }
            // Refusals of chunks that were in flight are answered before the file_end;
            // a refusal of the file_end itself (file_mismatch) ends the run here.
            _ => {
                said(&text, n)?;
            }
        }
    }
}

/// What a server message says about upload `n`.
#[derive(Debug, PartialEq, Eq)]
enum Said {
    /// `file_ready`: (fileId, offset, chunkSize).
    Ready((u64, u64, u32)),
    /// `rate_limited`: send nothing for this long (a `file_ready` with the offset follows).
    RetryAfter(Duration),
    /// Nothing about this upload.
    Nothing,
}

/// Reads a message the upload cares about; any other refusal ends the run.
fn said(text: &Bytes, n: u64) -> anyhow::Result<Said> {
    if !matches!(wire::kind(text), Kind::Other | Kind::Error) {
        return Ok(Said::Nothing);
    }
    match serde_json::from_slice::<ServerMsg>(text) {
        Ok(ServerMsg::FileReady {
            upload_id,
            file_id,
            offset,
            chunk_size,
            ..
        }) if upload_id == n.to_string() => Ok(Said::Ready((file_id, offset, chunk_size))),
        Ok(ServerMsg::Error {
            code: ErrorCode::RateLimited,
            retry_after_ms,
            ..
        }) => Ok(Said::RetryAfter(Duration::from_millis(
            retry_after_ms.unwrap_or(1),
        ))),
        Ok(ServerMsg::Error { .. }) => bail!("upload {n}: {}", wire::excerpt(text, 200)),
        _ => Ok(Said::Nothing),
    }
}

/// Encodes one chunk as a masked binary frame onto `dst`: the WebSocket header, the 16-byte
/// chunk header masked here, then the data, already masked when `premasked` is given
/// (its key phase is 0, which holds when the chunk starts at a multiple of 4 in the file).
fn queue_chunk(
    dst: &mut BytesMut,
    key: [u8; 4],
    file_id: u64,
    offset: u64,
    plain: &[u8],
    premasked: Option<&[u8]>,
) {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode: OpCode::Binary,
        mask: Some(key),
        payload_len: (HEADER_LEN + plain.len()) as u64,
    };
    header.encode(dst);
    let mut chunk_header = encode_header(ChunkHeader { file_id, offset });
    apply_mask(&mut chunk_header, key);
    dst.put_slice(&chunk_header);
    match premasked {
        Some(data) => dst.put_slice(data),
        None => {
            let start = dst.len();
            dst.put_slice(plain);
            // The data follows 16 payload bytes: key phase 0 again.
            apply_mask(&mut dst[start..], key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rfc6455::{CodecConfig, Decoder};

    #[test]
    fn chunks_decode_to_what_the_server_parses() {
        let file = FileData::new(1000);
        assert_eq!(file.bytes.len(), 1000);
        assert_eq!(file.sha256.len(), 64);
        let key = [0x12, 0x34, 0x56, 0x78];
        let mut masked = file.bytes.clone();
        apply_mask(&mut masked, key);
        let mut wire = BytesMut::new();
        queue_chunk(
            &mut wire,
            key,
            9,
            512,
            &file.bytes[512..900],
            Some(&masked[512..900]),
        );
        // An odd offset takes the slow path, and must agree.
        queue_chunk(&mut wire, key, 9, 901, &file.bytes[901..1000], None);
        let mut decoder = Decoder::new(CodecConfig::server());
        for (offset, data) in [(512, &file.bytes[512..900]), (901, &file.bytes[901..1000])] {
            let frame = decoder.decode(&mut wire).unwrap().expect("a whole frame");
            assert_eq!(frame.opcode, OpCode::Binary);
            let (header, payload) = chatgroup_protocol::chunk::parse_chunk(&frame.payload).unwrap();
            assert_eq!((header.file_id, header.offset), (9, offset));
            assert_eq!(payload, data);
        }
        assert!(wire.is_empty());
    }

    #[test]
    fn only_this_uploads_ready_counts() {
        let ready = |id: &str, offset| {
            Bytes::from(
                ServerMsg::FileReady {
                    upload_id: id.to_owned(),
                    file_id: 4,
                    offset,
                    chunk_size: 65_536,
                    reference: None,
                }
                .to_json(),
            )
        };
        assert_eq!(
            said(&ready("3", 0), 3).unwrap(),
            Said::Ready((4, 0, 65_536))
        );
        assert_eq!(said(&ready("2", 0), 3).unwrap(), Said::Nothing);
        let limited = ServerMsg::Error {
            code: ErrorCode::RateLimited,
            message: "slow down".to_owned(),
            reference: Some("3".to_owned()),
            retry_after_ms: Some(7),
        };
        assert_eq!(
            said(&Bytes::from(limited.to_json()), 3).unwrap(),
            Said::RetryAfter(Duration::from_millis(7))
        );
        let refused = ServerMsg::error(ErrorCode::FileMismatch, "no", Some("3".to_owned()));
        assert!(said(&Bytes::from(refused.to_json()), 3).is_err());
    }
}
