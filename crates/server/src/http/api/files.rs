//! `GET /api/files/{id}` (and `HEAD`): a shared file's bytes, to members of its conversation
//! only, with a single `Range` and the body streamed from disk.

use std::sync::Arc;

use chatgroup_protocol::ErrorCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{authenticate, id_segment, ApiError, ApiRequest, ApiResult};
use crate::context::ServerCtx;
use crate::http::response::{FileBody, Response};

/// Bytes read from disk per write to the socket.
const SEND_CHUNK: usize = 64 * 1024;

/// What a `Range` header asks of a file of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// No usable single range: the whole file, 200.
    Whole,
    /// Bytes `start..=end`, 206.
    Part {
        /// The first byte.
        start: u64,
        /// The last byte (inclusive).
        end: u64,
    },
    /// A syntactically valid range that selects nothing, 416.
    Unsatisfiable,
}

/// Reads a `Range` value (RFC 9110 §14.2) for one range: `bytes=a-b`, `a-` or `-n`. Several
/// ranges, other units and malformed values are ignored (the whole file is sent), which the
/// RFC allows a server to do.
pub(crate) fn parse_range(value: &str, size: u64) -> Ranged {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            None => Ranged::Whole,
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if size == 0 => Ranged::Unsatisfiable,
            Some(n) => Ranged::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        (start, end) => {
            let Some(start) = number(start) else {
                return Ranged::Whole;
            };
            let end = match end {
                "" => u64::MAX,
                e => match number(e) {
                    Some(e) if e >= start => e,
                    _ => return Ranged::Whole,
                },
            };
            if start >= size {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part {
                    start,
                    end: end.min(size - 1),
                }
            }
        }
    }
}

/// `Content-Disposition: attachment` with `name` (RFC 6266): an ASCII `filename` with
/// anything unsafe replaced, and `filename*` carrying the exact UTF-8 name percent-encoded
/// (RFC 8187), which every current browser prefers.
pub(crate) fn disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        // RFC 8187 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~".
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// `GET`/`HEAD /api/files/{id}`.
pub(super) async fn download(req: &ApiRequest, ctx: &ServerCtx, id: &str) -> ApiResult {
    let user = authenticate(req, ctx)?;
    // Unknown ids, unfinished uploads and other people's files look the same: 404.
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such file");
    let id = id_segment(id).map_err(|_| not_found())?;
    let file = ctx
        .store
        .file(id)
        .await?
        .filter(|f| f.completed)
        .ok_or_else(not_found)?;
    if !ctx.store.is_member(user.id, file.conversation).await? {
        return Err(not_found());
    }
    let path = ctx.files.complete(id);
    let opened = tokio::task::spawn_blocking(move || std::fs::File::open(path))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "file read failed"))?;
    let disk = match opened {
        Ok(disk) => Arc::new(disk),
        Err(err) => {
            tracing::error!(file = id, error = %err, "a posted file is missing on disk");
            return Err(ApiError::new(ErrorCode::Internal, "file unavailable"));
        }
    };
    let size = file.size;
    let ranged = req
        .range
        .as_deref()
        .map_or(Ranged::Whole, |r| parse_range(r, size));
    let (status, start, len) = match ranged {
        Ranged::Whole => (200, 0, size),
        Ranged::Part { start, end } => (206, start, end - start + 1),
        Ranged::Unsatisfiable => {
            return Ok(Response::status(416)
                .header("Content-Range", format!("bytes */{size}"))
                .header("Accept-Ranges", "bytes"));
        }
    };
    let body = FileBody {
        file: (!req.is_head()).then_some(disk),
        start,
        len,
    };
    let mut response = Response::file(status, file.mime.clone(), body)
        .header("Content-Disposition", disposition(&file.name))
        .header("X-Content-Type-Options", "nosniff")
        .header("Accept-Ranges", "bytes");
    if status == 206 {
        response = response.header(
            "Content-Range",
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    Ok(response)
}

/// Streams a file body to the socket in [`SEND_CHUNK`] pieces (reads on the blocking pool,
/// each write within the handshake timeout); `false` if that failed.
pub(crate) async fn send_file(stream: &mut TcpStream, ctx: &ServerCtx, body: &FileBody) -> bool {
    let Some(file) = &body.file else {
        return true;
    };
    let mut pos = body.start;
    let end = body.start + body.len;
    let mut buf = vec![0u8; SEND_CHUNK];
    while pos < end {
        let want = usize::try_from((end - pos).min(SEND_CHUNK as u64)).unwrap_or(SEND_CHUNK);
        let disk = Arc::clone(file);
        let mut chunk = std::mem::take(&mut buf);
        let read = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt as _;
            let n = disk.read_at(&mut chunk[..want], pos);
            (chunk, n)
        })
        .await;
        let Ok((chunk, Ok(n))) = read else {
            return false;
        };
        buf = chunk;
        if n == 0 {
            // The file is shorter than recorded: cut the response short rather than pad it.
            tracing::error!(pos, "a file ended before its recorded size");
            return false;
        }
        let written = timeout(ctx.cfg.handshake_timeout, stream.write_all(&buf[..n])).await;
        if !matches!(written, Ok(Ok(()))) {
            return false;
        }
        pos += n as u64;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = |s| parse_range(s, 100);
        assert_eq!(p("bytes=0-9"), Ranged::Part { start: 0, end: 9 });
        assert_eq!(p("bytes=90-"), Ranged::Part { start: 90, end: 99 });
        assert_eq!(p("bytes=90-1000"), Ranged::Part { start: 90, end: 99 });
        assert_eq!(p("bytes=-10"), Ranged::Part { start: 90, end: 99 });
        assert_eq!(p("bytes=-1000"), Ranged::Part { start: 0, end: 99 });
        assert_eq!(p("bytes=100-"), Ranged::Unsatisfiable);
        assert_eq!(p("bytes=-0"), Ranged::Unsatisfiable);
        assert_eq!(p("bytes=0-1,5-6"), Ranged::Whole);
        assert_eq!(p("bytes=9-1"), Ranged::Whole);
        assert_eq!(p("items=0-1"), Ranged::Whole);
        assert_eq!(p("bytes=a-b"), Ranged::Whole);
        assert_eq!(parse_range("bytes=-5", 0), Ranged::Unsatisfiable);
    }

    #[test]
    fn dispositions_are_safe() {
        assert_eq!(
            disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert_eq!(
            disposition("ré\"sumé\\.pdf"),
            "attachment; filename=\"r__sum__.pdf\"; filename*=UTF-8''r%C3%A9%22sum%C3%A9%5C.pdf"
        );
        assert!(!disposition("x\r\ny").contains('\r'));
    }

    proptest::proptest! {
        #[test]
        fn any_range_header_gives_bytes_inside_the_file(value in ".{0,40}", size in 0u64..10_000) {
            if let Ranged::Part { start, end } = parse_range(&value, size) {
                proptest::prop_assert!(start <= end && end < size, "{value:?} of {size}: {start}-{end}");
            }
        }

        #[test]
        fn a_valid_range_is_taken_exactly(size in 1u64..1_000_000, a in 0u64..1_000_000, len in 0u64..1_000_000) {
            let start = a % size;
            let end = (start + len).min(size - 1);
            let header = format!("bytes={start}-{end}");
            proptest::prop_assert_eq!(parse_range(&header, size), Ranged::Part { start, end });
            let suffix = format!("bytes=-{}", len + 1);
            let from = size.saturating_sub(len + 1);
            proptest::prop_assert_eq!(parse_range(&suffix, size), Ranged::Part { start: from, end: size - 1 });
        }
    }
}
