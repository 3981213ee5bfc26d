//! `request_head`: arbitrary bytes as the opening request a server receives.
//!
//! Input layout: byte 0 picks the limits — bits 0-1 the head size (64, 256, 1024
//! or 8192 bytes), bits 2-3 the header count (2, 8, 32 or 64); bit 4 makes the
//! server pick the client's first subprotocol. The rest is the request.
//!
//! Checked: `parse_request` never reports a head longer than the input or the
//! limits, answers `None` only below the size limit and consistently for every
//! prefix of a complete head; `validate_upgrade` only passes requests whose facts
//! hold (GET, HTTP/1.1, one non-empty Host, a 24-character key decoding to 16
//! bytes, version 13); the 101 written for a valid request parses as HTTP with
//! the right accept value, and every rejection is well-formed HTTP whose status
//! is the error's and whose body matches its `Content-Length`.

use bytes::BytesMut;
use rfc6455::{
    accept_key, parse_request, validate_upgrade, write_accept, write_reject, HandshakeError,
    HeadLimits,
};

/// Runs every check on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let (conf, raw) = data.split_first().map_or((0, &[][..]), |(c, r)| (*c, r));
    let limits = HeadLimits::DEFAULT
        .with_max_head_len([64, 256, 1024, 8192][usize::from(conf & 3)])
        .with_max_headers([2, 8, 32, 64][usize::from((conf >> 2) & 3)]);
    let pick_protocol = conf & 0x10 != 0;

    let parsed = parse_request(raw, &limits);
    let (head, len) = match parsed {
        Ok(None) => {
            assert!(
                raw.len() < limits.max_head_len,
                "waiting past the size limit"
            );
            return;
        }
        Err(e) => {
            check_reject(&e);
            return;
        }
        Ok(Some(found)) => found,
    };
    assert!(
        len <= raw.len() && len <= limits.max_head_len,
        "head of {len} bytes"
    );
    assert!(head.headers.len() <= limits.max_headers);
    assert!(
        raw[..len].ends_with(b"\n"),
        "a head ends with its blank line"
    );
    // The same head is found in exactly its own bytes, and no shorter prefix is complete.
    let (again, again_len) = parse_request(&raw[..len], &limits)
        .expect("the head alone parses")
        .expect("the head alone is complete");
    assert_eq!((&again, again_len), (&head, len));
    for cut in [0, len / 2, len.saturating_sub(2), len - 1] {
        assert_eq!(
            parse_request(&raw[..cut], &limits),
            Ok(None),
            "prefix of {cut} bytes"
        );
    }
    assert!(head.target.starts_with(head.path()));

    match validate_upgrade(&head) {
        Err(e) => check_reject(&e),
        Ok(req) => {
            assert_eq!(head.method, "GET");
            assert_eq!(head.version, 1);
            assert!(!req.host.is_empty());
            assert_eq!(req.path, head.path());
            assert_eq!(req.query, head.query());
            assert_eq!(req.key.len(), 24, "key {:?}", req.key);
            assert!(req.key.ends_with("=="));
            let versions: Vec<_> = head.header_all("sec-websocket-version").collect();
            assert_eq!(versions.len(), 1);
            assert_eq!(versions[0].trim_ascii(), b"13");
            for p in req.protocols() {
                assert!(
                    !p.is_empty() && !p.contains(',') && p.trim() == *p,
                    "protocol {p:?}"
                );
            }

            let protocol = if pick_protocol {
                req.protocols().first().copied()
            } else {
                None
            };
            let mut out = BytesMut::new();
            write_accept(&req, protocol, &[], &mut out);
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            let status = resp.parse(&out).expect("our 101 is valid HTTP");
            assert_eq!(status, httparse::Status::Complete(out.len()));
            assert_eq!(resp.code, Some(101));
            let field = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value)
            };
            assert_eq!(field("upgrade"), Some(&b"websocket"[..]));
            assert_eq!(
                field("sec-websocket-accept"),
                Some(accept_key(req.key.as_bytes()).as_bytes())
            );
            assert_eq!(field("sec-websocket-protocol"), protocol.map(str::as_bytes));
        }
    }
}

/// A rejection is one HTTP response with the error's status and an exact body.
fn check_reject(err: &HandshakeError) {
    let status = err.http_status();
    assert!(
        matches!(status, 400 | 403 | 405 | 426 | 431),
        "status {status}"
    );
    let mut out = BytesMut::new();
    write_reject(err, &mut out);
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = resp.parse(&out).expect("our reject is valid HTTP")
    else {
        panic!("incomplete reject head");
    };
    assert_eq!(resp.code, Some(status));
    let field = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let body_len = out.len() - head_len;
    assert_eq!(
        field("content-length"),
        Some(body_len.to_string().as_bytes())
    );
    if status == 426 {
        assert_eq!(field("sec-websocket-version"), Some(&b"13"[..]));
    }
}
