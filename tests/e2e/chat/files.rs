//! File transfer end to end (issue 9 §4): upload in chunks, resume after a dropped
//! connection, the file message in everyone's live, sync and history views, download with
//! ranges for members only, every limit with its error code, the idle sweep, and a 50 MiB
//! upload through the real binary with its memory watched.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chatgroup_protocol::chunk::{encode_header, ChunkHeader};
use chatgroup_protocol::{ClientMsg, ConversationId, ErrorCode, MessageKind, ServerMsg};
use rfc6455::CloseCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::{Binary, ChatClient, ChatServer, Next, TempDir};
use crate::support::WAIT;

const CHUNK: usize = 64 * 1024;

/// Deterministic bytes `[from, from + len)` of test file `seed`, so no test holds a whole file.
fn bytes_at(seed: u64, from: u64, len: usize) -> Vec<u8> {
    (from..from + len as u64)
        .map(|i| {
            let x =
                (i ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0x2545_f491_4f6c_dd1d);
            (x >> 56) as u8
        })
        .collect()
}

fn sha_of(seed: u64, size: u64) -> String {
    let mut h = Sha256::new();
    let mut at = 0;
    while at < size {
        let n = (size - at).min(CHUNK as u64) as usize;
        h.update(bytes_at(seed, at, n));
        at += n as u64;
    }
    hex(&h.finalize())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn start_msg(
    conversation: ConversationId,
    upload_id: &str,
    size: u64,
    sha256: Option<String>,
) -> ClientMsg {
    ClientMsg::FileStart {
        conversation,
        upload_id: upload_id.to_owned(),
        name: format!("{upload_id}.bin"),
        size,
        mime: "application/x-test".to_owned(),
        sha256,
        reference: None,
    }
}

/// `file_ready` for `upload_id`: (fileId, offset, chunkSize).
async fn ready(c: &mut ChatClient, upload_id: &str) -> (u64, u64, u32) {
    let msg = c
        .wait_for(&format!("file_ready {upload_id}"), |m| {
            matches!(m, ServerMsg::FileReady { upload_id: u, .. } if u == upload_id)
                || matches!(m, ServerMsg::Error { reference: Some(r), .. } if r == upload_id)
        })
        .await;
    match msg {
        ServerMsg::FileReady {
            file_id,
            offset,
            chunk_size,
            ..
        } => (file_id, offset, chunk_size),
        other => panic!("expected file_ready {upload_id}, got {other:?}"),
    }
}

/// Sends bytes `[from, to)` of file `seed` as chunks of `file_id`.
async fn send_range(c: &mut ChatClient, file_id: u64, seed: u64, from: u64, to: u64) {
    let mut at = from;
    while at < to {
        let n = (to - at).min(CHUNK as u64) as usize;
        let mut frame = encode_header(ChunkHeader {
            file_id,
            offset: at,
        })
        .to_vec();
        frame.extend_from_slice(&bytes_at(seed, at, n));
        assert!(c.send_binary(&frame).await, "socket gone at offset {at}");
        at += n as u64;
    }
}

/// A raw HTTP/1.1 request; the body is read as bytes (`Content-Length` framed).
async fn fetch(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    range: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n"
    );
    if let Some(r) = range {
        req.push_str(&format!("Range: {r}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("response in time")
        .unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    (status, head, all[split + 4..].to_vec())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_resume_post_sync_history_and_download() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let eve = api.signup("eve").await;
    let g = api.create_group(&alice, "files", &[&bob]).await.id;
    let mut b = ChatClient::connect(server.addr(), &bob.token).await;
    let (seed, size) = (7, 5 * CHUNK as u64 + 1234);
    let sha = sha_of(seed, size);

    // First connection: two chunks, then the client vanishes.
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    a.send(&start_msg(g, "up1", size, Some(sha.clone()))).await;
    let (file_id, offset, chunk) = ready(&mut a, "up1").await;
    assert_eq!((offset, chunk), (0, CHUNK as u32));
    send_range(&mut a, file_id, seed, 0, 2 * CHUNK as u64).await;
    // A round trip after the chunks, so they are written before the socket goes.
    a.send(&start_msg(g, "up1", size, Some(sha.clone()))).await;
    let (_, offset, _) = ready(&mut a, "up1").await;
    assert_eq!(offset, 2 * CHUNK as u64);
    a.vanish();

    // Resume on a new connection: the server has the first two chunks.
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    a.send(&start_msg(g, "up1", size, Some(sha.clone()))).await;
    let (again, offset, _) = ready(&mut a, "up1").await;
    assert_eq!((again, offset), (file_id, 2 * CHUNK as u64));
    // A chunk at the wrong offset is refused, naming the expected one, and not written.
    send_range(&mut a, file_id, seed, 3 * CHUNK as u64, 4 * CHUNK as u64).await;
    let err = a.expect_error(Some("up1")).await;
    assert_eq!(err.code, ErrorCode::Invalid);
    assert!(err.message.contains(&offset.to_string()), "{}", err.message);
    let (_, told, _) = ready(&mut a, "up1").await;
    assert_eq!(told, offset);
    // An early file_end says how much is missing.
    a.send(&ClientMsg::FileEnd {
        file_id,
        reference: Some("early".into()),
    })
    .await;
    assert_eq!(
        a.expect_error(Some("early")).await.code,
        ErrorCode::FileMismatch
    );
    send_range(&mut a, file_id, seed, offset, size).await;
    a.send(&ClientMsg::FileEnd {
        file_id,
        reference: None,
    })
    .await;
    let ack = a.expect_ack("up1").await;
    assert!(!ack.duplicate);
    // A retried file_end answers with the same ack and posts nothing.
    a.send(&ClientMsg::FileEnd {
        file_id,
        reference: None,
    })
    .await;
    let dup = a.expect_ack("up1").await;
    assert!(dup.duplicate);
    assert_eq!((dup.id, dup.seq), (ack.id, ack.seq));

    // Bob gets it live, once, with the file.
    let live = b
        .expect_new_message("the file message", |m| m.kind == MessageKind::File)
        .await;
    let info = live.file.clone().expect("file info");
    assert_eq!(
        (info.id, info.size, info.sha256.as_str()),
        (file_id, size, sha.as_str())
    );
    assert_eq!(
        (info.name.as_str(), info.mime.as_str()),
        ("up1.bin", "application/x-test")
    );
    assert_eq!(live.body, "up1.bin");
    assert_eq!(live.local_id.as_deref(), Some("up1"));
    assert_eq!(live.seq, ack.seq);
    let extra: Vec<_> = b
        .drain(Duration::from_millis(200))
        .await
        .into_iter()
        .filter(|m| matches!(m, ServerMsg::NewMessage(v) if v.kind == MessageKind::File))
        .collect();
    assert!(extra.is_empty(), "posted once: {extra:?}");
    // ... and in sync and history.
    // (On a fresh connection: one that got it live does not get it again in a replay.)
    let mut b2 = ChatClient::connect(server.addr(), &bob.token).await;
    let synced = b2
        .sync(BTreeMap::from([(g, chatgroup_protocol::Seq(0))]), "s1")
        .await;
    assert!(synced
        .messages
        .iter()
        .any(|m| m.file.as_ref() == Some(&info)));
    let (page, _) = b.history(g, None, None, "h1").await;
    assert_eq!(page.last().and_then(|m| m.file.as_ref()), Some(&info));
    let rest = api.full_history(&bob.token, g).await;
    assert_eq!(rest.last().and_then(|m| m.file.as_ref()), Some(&info));

    // Download, whole and in ranges.
    let path = format!("/api/files/{file_id}");
    let whole = bytes_at(seed, 0, size as usize);
    let (status, head, body) = fetch(server.addr(), "GET", &path, &bob.token, None).await;
    assert_eq!(status, 200, "{head}");
    assert!(body == whole, "the download is the upload, byte for byte");
    assert_eq!(header(&head, "content-type"), Some("application/x-test"));
    assert_eq!(
        header(&head, "content-length"),
        Some(size.to_string().as_str())
    );
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&head, "accept-ranges"), Some("bytes"));
    assert_eq!(
        header(&head, "content-disposition"),
        Some("attachment; filename=\"up1.bin\"; filename*=UTF-8''up1.bin")
    );
    let (status, head, body) =
        fetch(server.addr(), "GET", &path, &bob.token, Some("bytes=10-19")).await;
    assert_eq!(status, 206);
    assert_eq!(body, whole[10..20]);
    assert_eq!(
        header(&head, "content-range"),
        Some(format!("bytes 10-19/{size}").as_str())
    );
    let (status, _, body) = fetch(
        server.addr(),
        "GET",
        &path,
        &alice.token,
        Some("bytes=-100"),
    )
    .await;
    assert_eq!(
        (status, body.as_slice()),
        (206, &whole[whole.len() - 100..])
    );
    let from = size - 5;
    let (status, _, body) = fetch(
        server.addr(),
        "GET",
        &path,
        &alice.token,
        Some(&format!("bytes={from}-")),
    )
    .await;
    assert_eq!((status, body.as_slice()), (206, &whole[from as usize..]));
    let (status, head, _) = fetch(
        server.addr(),
        "GET",
        &path,
        &bob.token,
        Some(&format!("bytes={size}-")),
    )
    .await;
    assert_eq!(status, 416);
    assert_eq!(
        header(&head, "content-range"),
        Some(format!("bytes */{size}").as_str())
    );
    let (status, head, body) = fetch(server.addr(), "HEAD", &path, &bob.token, None).await;
    assert_eq!(status, 200);
    assert!(body.is_empty());
    assert_eq!(
        header(&head, "content-length"),
        Some(size.to_string().as_str())
    );

    // Not a member, unknown, unauthenticated.
    let (status, _, _) = fetch(server.addr(), "GET", &path, &eve.token, None).await;
    assert_eq!(status, 404);
    let (status, _, _) = fetch(server.addr(), "GET", "/api/files/999", &bob.token, None).await;
    assert_eq!(status, 404);
    let (status, _, _) = fetch(server.addr(), "GET", &path, "nope", None).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_has_its_error_and_a_bad_hash_posts_nothing() {
    let server = ChatServer::start_with(|cfg| {
        cfg.max_file_size = 1 << 20;
        cfg.max_uploads_in_flight = 2;
        cfg.upload_bytes_per_day = (5 << 20) / 2;
    })
    .await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let g = api.create_group(&alice, "limits", &[&bob]).await.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;

    // Too large.
    let err = a
        .refused(
            &start_msg(g, "big", (1 << 20) + 1, None),
            "big",
            ErrorCode::FileTooLarge,
        )
        .await;
    assert!(err.message.contains("1048576"), "{}", err.message);

    // A wrong hash: file_mismatch, the upload is gone, nothing is posted.
    let size = 1000;
    a.send(&start_msg(g, "bad", size, Some("0".repeat(64))))
        .await;
    let (bad, _, _) = ready(&mut a, "bad").await;
    send_range(&mut a, bad, 1, 0, size).await;
    a.send(&ClientMsg::FileEnd {
        file_id: bad,
        reference: None,
    })
    .await;
    let err = a.expect_error(None).await;
    assert_eq!(err.code, ErrorCode::FileMismatch, "{}", err.message);
    let history = api.full_history(&bob.token, g).await;
    assert!(history.iter().all(|m| m.kind != MessageKind::File));
    let (status, _, _) = fetch(
        server.addr(),
        "GET",
        &format!("/api/files/{bad}"),
        &alice.token,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Two unfinished uploads at most.
    a.send(&start_msg(g, "u1", 1 << 20, None)).await;
    ready(&mut a, "u1").await;
    a.send(&start_msg(g, "u2", 1 << 20, None)).await;
    ready(&mut a, "u2").await;
    let err = a
        .refused(
            &start_msg(g, "u3", 10, None),
            "u3",
            ErrorCode::QuotaExceeded,
        )
        .await;
    assert!(err.message.contains("unfinished"), "{}", err.message);
    // Finishing one frees a place; the day's bytes (2.5 MiB, 2 MiB announced) then run out.
    let (u1, _, _) = ready_again(&mut a, g, "u1", 1 << 20).await;
    send_range(&mut a, u1, 3, 0, 1 << 20).await;
    a.send(&ClientMsg::FileEnd {
        file_id: u1,
        reference: None,
    })
    .await;
    a.expect_ack("u1").await;
    let err = a
        .refused(
            &start_msg(g, "u4", 1 << 20, None),
            "u4",
            ErrorCode::QuotaExceeded,
        )
        .await;
    assert!(err.message.contains("per day"), "{}", err.message);

    // Eve is no member: no upload.
    let eve = api.signup("eve").await;
    let mut e = ChatClient::connect(server.addr(), &eve.token).await;
    e.refused(&start_msg(g, "e1", 10, None), "e1", ErrorCode::NotMember)
        .await;
}

/// `file_start` again for an upload this connection has open: the offset it is at.
async fn ready_again(
    c: &mut ChatClient,
    g: ConversationId,
    upload_id: &str,
    size: u64,
) -> (u64, u64, u32) {
    c.send(&start_msg(g, upload_id, size, None)).await;
    ready(c, upload_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_over_the_rate_are_refused_with_retry_after() {
    let server = ChatServer::start_with(|cfg| {
        cfg.file_chunk_rate = 1;
        cfg.file_chunk_burst = 2;
    })
    .await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let g = api.create_group(&alice, "rate", &[]).await.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    a.send(&start_msg(g, "r1", 10 * CHUNK as u64, None)).await;
    let (id, _, _) = ready(&mut a, "r1").await;
    send_range(&mut a, id, 5, 0, 4 * CHUNK as u64).await;
    let err = a.expect_error(Some("r1")).await;
    assert_eq!(err.code, ErrorCode::RateLimited);
    assert!(err.retry_after_ms.is_some_and(|ms| ms > 0));
    let (_, offset, _) = ready(&mut a, "r1").await;
    assert_eq!(
        offset,
        2 * CHUNK as u64,
        "the burst was written, the rest dropped"
    );
    // The rest of that burst was dropped without an error each.
    let errors = a
        .drain(Duration::from_millis(300))
        .await
        .into_iter()
        .filter(|m| matches!(m, ServerMsg::Error { .. }))
        .count();
    assert_eq!(errors, 0);
}

/// One chunk of `len` bytes of file `seed` at `at`; whether the socket took it.
async fn send_chunk(c: &mut ChatClient, file_id: u64, seed: u64, at: u64, len: usize) -> bool {
    let mut frame = encode_header(ChunkHeader {
        file_id,
        offset: at,
    })
    .to_vec();
    frame.extend_from_slice(&bytes_at(seed, at, len));
    c.send_binary(&frame).await
}

/// The `rate_limited` error and the `file_ready` after it: (retryAfterMs, offset).
async fn refusal(c: &mut ChatClient, upload_id: &str) -> (u64, u64) {
    let err = c.expect_error(Some(upload_id)).await;
    assert_eq!(err.code, ErrorCode::RateLimited, "{}", err.message);
    let wait = err.retry_after_ms.expect("retryAfterMs");
    let (_, offset, _) = ready(c, upload_id).await;
    (wait, offset)
}

/// Small chunks keep these tests fast; the rules do not depend on the size.
const SMALL: usize = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_waits_as_told_is_never_closed() {
    let server = ChatServer::start_with(|cfg| {
        cfg.file_chunk_rate = 100;
        cfg.file_chunk_burst = 1;
    })
    .await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let g = api.create_group(&alice, "fair", &[]).await.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    let size = 80 * SMALL as u64;
    a.send(&start_msg(g, "w1", size, Some(sha_of(11, size))))
        .await;
    let (id, mut at, _) = ready(&mut a, "w1").await;
    let mut refusals = 0;
    // Pipelines everything it has left each time, far more than the limit allows: every
    // round after the first is refused once, and the rest of the round is in flight. Far
    // more refusals than the 20 strikes, and never closed, because it waits as told.
    while at < size {
        let mut next = at;
        while next < size {
            assert!(send_chunk(&mut a, id, 11, next, SMALL).await);
            next += SMALL as u64;
        }
        match a.next_within(Duration::from_millis(300)).await {
            Next::Quiet => break,
            Next::Msg(msg) => {
                let ServerMsg::Error {
                    code: ErrorCode::RateLimited,
                    retry_after_ms: Some(wait),
                    ..
                } = *msg
                else {
                    panic!("expected a rate limit, got {msg:?}");
                };
                let (_, offset, _) = ready(&mut a, "w1").await;
                refusals += 1;
                tokio::time::sleep(Duration::from_millis(wait)).await;
                at = offset;
            }
            other => panic!("the connection ended: {other:?}"),
        }
    }
    assert!(
        refusals > 25,
        "{refusals} refusals: the test proves nothing"
    );
    a.send(&ClientMsg::FileEnd {
        file_id: id,
        reference: None,
    })
    .await;
    a.expect_ack("w1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_sending_past_chunk_refusals_is_closed_with_1008() {
    let server = ChatServer::start_with(|cfg| {
        cfg.file_chunk_rate = 1;
        cfg.file_chunk_burst = 2;
    })
    .await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let g = api.create_group(&alice, "ignore", &[]).await.id;

    // Resuming at the told offset before retryAfterMs, again and again.
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    a.send(&start_msg(g, "e1", 1000 * SMALL as u64, None)).await;
    let (id, _, _) = ready(&mut a, "e1").await;
    for n in 0..3 {
        send_chunk(&mut a, id, 1, n * SMALL as u64, SMALL).await;
    }
    let (wait, mut offset) = refusal(&mut a, "e1").await;
    assert!(wait > 100, "{wait} ms");
    let mut refused = 0;
    loop {
        send_chunk(&mut a, id, 1, offset, SMALL).await;
        match a.next_within(WAIT).await {
            Next::Msg(msg) if matches!(*msg, ServerMsg::Error { .. }) => {
                refused += 1;
                offset = ready(&mut a, "e1").await.1;
            }
            Next::Closed(Some(frame)) => {
                assert_eq!(frame.code, CloseCode::POLICY_VIOLATION);
                assert_eq!(frame.reason.as_str(), "rate limits ignored");
                break;
            }
            other => panic!("expected a refusal or a close, got {other:?}"),
        }
        assert!(refused < 40, "still open after {refused} early resumptions");
    }
    assert!(refused >= 19, "closed after {refused} early resumptions");

    // Going on at its own offsets as if nothing was said: the chunks in flight right after
    // the refusal are dropped quietly; a second later they are ignoring it.
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    a.send(&start_msg(g, "e2", 1000 * SMALL as u64, None)).await;
    let (id, _, _) = ready(&mut a, "e2").await;
    let mut at = 0;
    for _ in 0..10 {
        send_chunk(&mut a, id, 2, at, SMALL).await;
        at += SMALL as u64;
    }
    refusal(&mut a, "e2").await;
    let quiet = a.drain(Duration::from_millis(300)).await;
    assert!(quiet.is_empty(), "in flight is not ignoring: {quiet:?}");
    tokio::time::sleep(Duration::from_millis(900)).await;
    for _ in 0..60 {
        if !send_chunk(&mut a, id, 2, at, SMALL).await {
            break;
        }
        at += SMALL as u64;
    }
    let reason = a.expect_close(CloseCode::POLICY_VIOLATION).await;
    assert_eq!(reason, "rate limits ignored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_upload_is_deleted() {
    let server = ChatServer::start_with(|cfg| {
        cfg.upload_idle_timeout = Duration::from_millis(300);
    })
    .await;
    let api = server.api();
    let alice = api.signup("alice").await;
    let g = api.create_group(&alice, "idle", &[]).await.id;
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    a.send(&start_msg(g, "i1", 3 * CHUNK as u64, None)).await;
    let (id, _, _) = ready(&mut a, "i1").await;
    send_range(&mut a, id, 9, 0, CHUNK as u64).await;
    a.close().await;
    let partial = server
        .dir
        .path()
        .join("files")
        .join("partial")
        .join(id.to_string());
    crate::support::eventually("the idle upload's bytes are deleted", || {
        let gone = !partial.exists();
        async move { gone }
    })
    .await;
    // Its place and quota are free; the same id starts afresh.
    let mut a = ChatClient::connect(server.addr(), &alice.token).await;
    a.send(&start_msg(g, "i1", 3 * CHUNK as u64, None)).await;
    let (fresh, offset, _) = ready(&mut a, "i1").await;
    assert_eq!(offset, 0);
    assert_ne!(fresh, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_that_are_no_upload_close_with_1003() {
    let server = ChatServer::start().await;
    let api = server.api();
    let alice = api.signup("alice").await;
    // Before authentication.
    let mut c = ChatClient::open(server.addr(), "/ws").await;
    c.send_binary(&[0; 20]).await;
    c.expect_close(CloseCode::UNSUPPORTED_DATA).await;
    // For no upload of this connection.
    let mut c = ChatClient::connect(server.addr(), &alice.token).await;
    let mut frame = encode_header(ChunkHeader {
        file_id: 42,
        offset: 0,
    })
    .to_vec();
    frame.extend_from_slice(b"data");
    c.send_binary(&frame).await;
    c.expect_close(CloseCode::UNSUPPORTED_DATA).await;
    // Too short for a chunk header.
    let mut c = ChatClient::connect(server.addr(), &alice.token).await;
    c.send_binary(b"short").await;
    c.expect_close(CloseCode::UNSUPPORTED_DATA).await;
}

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_in_64_kib_chunks_with_constant_server_memory() {
    let dir = TempDir::new("files-big");
    let server = Binary::spawn(dir.path(), &["--durability", "normal"]);
    let pid = server.child.id();
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let g = api.create_group(&alice, "big", &[&bob]).await.id;
    let mut a = ChatClient::connect(server.addr, &alice.token).await;
    let (seed, size) = (50, 50u64 << 20);
    let sha = sha_of(seed, size);
    let before = rss(pid);
    let began = std::time::Instant::now();
    a.send(&start_msg(g, "big", size, Some(sha.clone()))).await;
    let (id, _, chunk) = ready(&mut a, "big").await;
    assert_eq!(chunk, CHUNK as u32);
    let mut peak = before;
    let mut at = 0;
    while at < size {
        let to = (at + (2 << 20)).min(size);
        send_range(&mut a, id, seed, at, to).await;
        at = to;
        peak = peak.max(rss(pid));
    }
    a.send(&ClientMsg::FileEnd {
        file_id: id,
        reference: None,
    })
    .await;
    a.expect_ack("big").await;
    let secs = began.elapsed().as_secs_f64();
    println!(
        "uploaded {size} bytes in {secs:.3} s: {:.0} MB/s (one client, file_start to ack)",
        size as f64 / secs / 1e6
    );
    peak = peak.max(rss(pid));
    let growth = peak.saturating_sub(before);
    println!("server RSS {before} -> peak {peak} bytes (+{growth}) for a {size}-byte upload");
    assert!(
        growth < 16 << 20,
        "server memory grew by {growth} bytes during a {size}-byte upload"
    );
    // The download, streamed, hashes to the same.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let req = format!(
        "GET /api/files/{id} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\r\n",
        bob.token
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("download in time")
            .unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n as u64;
    }
    assert_eq!(got, size);
    assert_eq!(hex(&h.finalize()), sha);
    peak = peak.max(rss(pid));
    assert!(
        peak.saturating_sub(before) < 16 << 20,
        "download grew memory"
    );
    server.kill();
}
