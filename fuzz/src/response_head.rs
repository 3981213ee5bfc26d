//! `response_head`: arbitrary bytes as the server's answer to our opening request.
//!
//! Input layout: byte 0 picks the limits — bits 0-1 the head size (64, 256, 1024
//! or 8192 bytes), bits 2-3 the header count (2, 8, 32 or 64). The rest is the
//! response to a client that sent the RFC 6455 §1.3 sample key and offered the
//! subprotocols `chat` and `superchat`.
//!
//! Checked: `parse_response` never reports a head longer than the input or the
//! limits, waits only below the size limit, and accepts a response only when an
//! independent reading confirms it (status 101, `Upgrade: websocket`, the
//! `upgrade` connection token, the one right accept value, no extension, at most
//! one offered subprotocol). Then a roundtrip: the request our client writes for
//! a resource taken from the input passes the server's validation, and the
//! server's 101, followed by the input as frame bytes, is accepted with exactly
//! the head's length.

use bytes::BytesMut;
use rfc6455::{parse_request, validate_upgrade, write_accept, ClientHandshake, HeadLimits};

const OFFERED: [&str; 2] = ["chat", "superchat"];
/// RFC 6455 §1.3: the accept value for the key `dGhlIHNhbXBsZSBub25jZQ==`.
const SAMPLE_ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Runs every check on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let (conf, raw) = data.split_first().map_or((0, &[][..]), |(c, r)| (*c, r));
    let limits = HeadLimits::DEFAULT
        .with_max_head_len([64, 256, 1024, 8192][usize::from(conf & 3)])
        .with_max_headers([2, 8, 32, 64][usize::from((conf >> 2) & 3)]);
    let hs = ClientHandshake::new("server.example.com", "/chat", *b"the sample nonce")
        .with_protocols(&OFFERED)
        .with_limits(limits);

    match hs.parse_response(raw) {
        Ok(None) => assert!(
            raw.len() < limits.max_head_len,
            "waiting past the size limit"
        ),
        Err(_) => {}
        Ok(Some((answer, len))) => {
            assert!(
                len <= raw.len() && len <= limits.max_head_len,
                "head of {len} bytes"
            );
            confirm_accepted(&raw[..len], answer.protocol.as_deref());
        }
    }
    roundtrip(raw);
}

/// An independent reading of an accepted response.
fn confirm_accepted(head: &[u8], protocol: Option<&str>) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    assert_eq!(resp.parse(head), Ok(httparse::Status::Complete(head.len())));
    assert_eq!(resp.code, Some(101));
    let all = |name: &'static str| {
        resp.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let has_token = |name: &'static str, token: &str| {
        all(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    assert!(has_token("upgrade", "websocket"));
    assert!(has_token("connection", "upgrade"));
    let accepts: Vec<_> = all("sec-websocket-accept")
        .map(<[u8]>::trim_ascii)
        .collect();
    assert_eq!(accepts, [SAMPLE_ACCEPT]);
    assert!(all("sec-websocket-extensions").all(|v| v.trim_ascii().is_empty()));
    match protocol {
        Some(p) => assert!(OFFERED.contains(&p), "accepted protocol {p:?}"),
        None => assert!(all("sec-websocket-protocol")
            .all(|v| v.split(|&b| b == b',').all(|t| t.trim_ascii().is_empty()))),
    }
}

/// Our client's request passes our server; our server's 101 passes our client.
fn roundtrip(raw: &[u8]) {
    let resource: String = std::iter::once('/')
        .chain(
            raw.iter()
                .take(40)
                .map(|&b| char::from(b))
                .filter(|c| c.is_ascii_alphanumeric() || "/?=&._-~%".contains(*c)),
        )
        .collect();
    let nonce: [u8; 16] = std::array::from_fn(|i| raw.get(i).copied().unwrap_or(0));
    let offered: Vec<&str> = OFFERED.iter().copied().take(raw.len() % 3).collect();
    let hs = ClientHandshake::new("localhost:9001", &resource, nonce).with_protocols(&offered);
    let mut request = BytesMut::new();
    hs.write_request(&mut request)
        .expect("the resource is built from visible characters only");
    let (head, head_len) = parse_request(&request, &HeadLimits::DEFAULT)
        .expect("our request parses")
        .expect("our request is complete");
    assert_eq!(head_len, request.len());
    let upgrade = validate_upgrade(&head).expect("our request is a valid upgrade");
    assert_eq!(upgrade.key, hs.key());
    assert_eq!(upgrade.protocols(), offered.as_slice());
    let chosen = upgrade.choose_protocol(&["superchat"]);

    let mut response = BytesMut::new();
    write_accept(&upgrade, chosen, &[], &mut response);
    let head_len = response.len();
    response.extend_from_slice(raw);
    let (answer, len) = hs
        .parse_response(&response)
        .expect("our 101 is accepted")
        .expect("our 101 is complete");
    assert_eq!(len, head_len, "frames after the head are not part of it");
    assert_eq!(answer.protocol.as_deref(), chosen);
}
