//! The opening handshake (RFC 6455 §4): the §1.3 key/accept pair, every
//! malformed request answered with the right status and nothing else, token
//! lists and case-insensitivity, subprotocols, and the client's checks of the
//! server's answer.

use bytes::BytesMut;
use rfc6455::{
    accept_key, parse_request, validate_upgrade, write_accept, write_reject, ClientHandshake,
    ClientHandshakeError, HandshakeError, HeadLimits, UpgradeRequest,
};

const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The request of RFC 6455 §1.3, with its Origin and subprotocol offer.
const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
    Host: server.example.com\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Origin: http://example.com\r\n\
    Sec-WebSocket-Protocol: chat, superchat\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// What a server does with a request: parse, validate, and either accept
/// (with the first subprotocol of `supported` the client offered) or reject.
/// Returns the response bytes.
fn answer(raw: &[u8], limits: &HeadLimits, supported: &[&str]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let outcome = parse_request(raw, limits).and_then(|parsed| {
        let (head, _) = parsed.expect("a complete head");
        validate_upgrade(&head).map(|req| {
            write_accept(&req, req.choose_protocol(supported), &[], &mut out);
        })
    });
    if let Err(err) = outcome {
        write_reject(&err, &mut out);
    }
    out.to_vec()
}

/// A parsed HTTP response: status, headers (lower-cased names), body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn parse(bytes: &[u8]) -> Self {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = resp.parse(bytes).expect("a valid HTTP response")
        else {
            panic!("incomplete response: {:?}", String::from_utf8_lossy(bytes));
        };
        Self {
            status: resp.code.expect("a status"),
            headers: resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8(h.value.to_vec()).expect("ascii header"),
                    )
                })
                .collect(),
            body: bytes[len..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn request_with(replace: &str, by: &str) -> String {
    assert!(RFC_REQUEST.contains(replace), "{replace}");
    RFC_REQUEST.replacen(replace, by, 1)
}

/// Asserts that the server answers `raw` with `status` and a plain refusal:
/// a body matching Content-Length, `Connection: close`, and nothing that
/// could be read as an upgrade.
#[track_caller]
fn expect_rejected(raw: &[u8], limits: &HeadLimits, status: u16) -> Response {
    let resp = Response::parse(&answer(raw, limits, &["chat"]));
    assert_eq!(resp.status, status, "{:?}", String::from_utf8_lossy(raw));
    assert_eq!(
        resp.header("content-length"),
        Some(resp.body.len().to_string().as_str())
    );
    assert_eq!(resp.header("connection"), Some("close"));
    for forbidden in ["upgrade", "sec-websocket-accept", "sec-websocket-protocol"] {
        assert_eq!(resp.header(forbidden), None, "{forbidden} in a refusal");
    }
    resp
}

#[test]
fn the_rfc_key_gives_the_rfc_accept() {
    assert_eq!(accept_key(RFC_KEY.as_bytes()), RFC_ACCEPT);
}

#[test]
fn the_rfc_request_is_accepted_with_the_rfc_answer() {
    let (head, len) = parse_request(RFC_REQUEST.as_bytes(), &HeadLimits::DEFAULT)
        .unwrap()
        .unwrap();
    assert_eq!(len, RFC_REQUEST.len());
    let req = validate_upgrade(&head).unwrap();
    assert_eq!(
        (req.path, req.query, req.host, req.origin, req.key),
        (
            "/chat",
            None,
            "server.example.com",
            Some("http://example.com"),
            RFC_KEY
        )
    );
    assert_eq!(req.protocols(), ["chat", "superchat"]);

    let resp = Response::parse(&answer(
        RFC_REQUEST.as_bytes(),
        &HeadLimits::DEFAULT,
        &["chat"],
    ));
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("upgrade"), Some("websocket"));
    assert_eq!(resp.header("connection"), Some("Upgrade"));
    assert_eq!(resp.header("sec-websocket-accept"), Some(RFC_ACCEPT));
    assert_eq!(resp.header("sec-websocket-protocol"), Some("chat"));
    assert!(resp.body.is_empty());
}

#[test]
fn each_malformed_request_gets_its_status() {
    let cases: Vec<(String, u16)> = vec![
        (request_with("GET /chat", "POST /chat"), 405),
        (request_with("GET /chat", "PUT /chat"), 405),
        (request_with("HTTP/1.1\r\n", "HTTP/1.0\r\n"), 400),
        (request_with("Host: server.example.com\r\n", ""), 400),
        (
            request_with("Host: server.example.com\r\n", "Host: a\r\nHost: b\r\n"),
            400,
        ),
        (request_with("Upgrade: websocket\r\n", ""), 400),
        (request_with("Upgrade: websocket", "Upgrade: h2c"), 400),
        (request_with("Connection: Upgrade\r\n", ""), 400),
        (request_with("Connection: Upgrade", "Connection: keep-alive"), 400),
        (request_with("Connection: Upgrade", "Connection: Upgraded"), 400),
        (request_with("Sec-WebSocket-Version: 13\r\n", ""), 426),
        (request_with("Version: 13", "Version: 8"), 426),
        (request_with("Version: 13", "Version: 14"), 426),
        (request_with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""), 400),
        // 10 bytes of key instead of 16.
        (request_with(RFC_KEY, "dGhlIHNhbXBsZQ=="), 400),
        // 17 bytes of key.
        (request_with(RFC_KEY, "AAAAAAAAAAAAAAAAAAAAAAA="), 400),
        (request_with(RFC_KEY, "not base64 at all!!!!!=="), 400),
        (
            request_with(
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n",
            ),
            400,
        ),
        (request_with("GET /chat HTTP/1.1", "GET /chat HTTP/2.0"), 400),
        (request_with("GET /chat HTTP/1.1", "GET  HTTP/1.1"), 400),
        (request_with("Origin: ", "Bad Header: "), 400),
    ];
    for (raw, status) in cases {
        let resp = expect_rejected(raw.as_bytes(), &HeadLimits::DEFAULT, status);
        match status {
            426 => assert_eq!(resp.header("sec-websocket-version"), Some("13")),
            405 => assert_eq!(resp.header("allow"), Some("GET")),
            _ => {}
        }
    }
}

#[test]
fn oversized_heads_and_too_many_headers_get_431() {
    let limits = HeadLimits::DEFAULT;
    let padding = format!("X-Padding: {}\r\n", "p".repeat(limits.max_head_len));
    let big = request_with("Origin: ", &format!("{padding}Origin: "));
    expect_rejected(big.as_bytes(), &limits, 431);

    let many: String = (0..limits.max_headers)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect();
    let crowded = request_with("Origin: ", &format!("{many}Origin: "));
    expect_rejected(crowded.as_bytes(), &limits, 431);

    // An incomplete head that already exceeds the limit is refused too.
    let endless = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(limits.max_head_len));
    assert_eq!(
        parse_request(endless.as_bytes(), &limits),
        Err(HandshakeError::HeadTooLarge {
            max: limits.max_head_len
        })
    );
}

#[test]
fn an_origin_refused_by_policy_gets_403() {
    let (head, _) = parse_request(RFC_REQUEST.as_bytes(), &HeadLimits::DEFAULT)
        .unwrap()
        .unwrap();
    let req = validate_upgrade(&head).unwrap();
    let allowed = ["https://chat.example"];
    assert!(!allowed.contains(&req.origin.unwrap()));
    let mut out = BytesMut::new();
    write_reject(&HandshakeError::OriginNotAllowed, &mut out);
    let resp = Response::parse(&out);
    assert_eq!(resp.status, 403);
    assert_eq!(resp.header("sec-websocket-accept"), None);
}

/// `request_with` on the RFC request, with `line` (a full header line) repeated
/// right after itself with `second` as the value of the copy.
fn with_repeated(line: &str, second: &str) -> String {
    let name = line.split_once(':').expect("a header line").0;
    request_with(line, &format!("{line}\r\n{name}: {second}"))
}

#[test]
fn a_repeated_single_valued_header_is_refused_with_400() {
    // Issue 7: with two Origin lines only the first was read, so an allowed origin
    // followed by an evil one passed the origin policy. Every header the handshake
    // reads as one value is refused when repeated, whichever copy comes first and
    // even when the copies agree.
    let cases = [
        (
            "Origin: http://example.com",
            "https://evil.example",
            "origin",
        ),
        ("Origin: http://example.com", "http://example.com", "origin"),
        ("Host: server.example.com", "evil.example", "host"),
        ("Host: server.example.com", "server.example.com", "host"),
        (
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "AAAAAAAAAAAAAAAAAAAAAA==",
            "sec-websocket-key",
        ),
        (
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            RFC_KEY,
            "sec-websocket-key",
        ),
        ("Sec-WebSocket-Version: 13", "8", "sec-websocket-version"),
        ("Sec-WebSocket-Version: 13", "13", "sec-websocket-version"),
    ];
    for (line, second, name) in cases {
        for raw in [with_repeated(line, second), {
            // The other order too: the evil copy first.
            let (header, value) = line.split_once(": ").unwrap();
            request_with(line, &format!("{header}: {second}\r\n{header}: {value}"))
        }] {
            let (head, _) = parse_request(raw.as_bytes(), &HeadLimits::DEFAULT)
                .unwrap()
                .unwrap();
            assert_eq!(
                validate_upgrade(&head),
                Err(HandshakeError::RepeatedHeader(name)),
                "{raw}"
            );
            expect_rejected(raw.as_bytes(), &HeadLimits::DEFAULT, 400);
        }
    }
    // Case differences do not make two headers out of one name.
    let raw = request_with(
        "Origin: http://example.com",
        "Origin: http://example.com\r\norigin: https://evil.example",
    );
    expect_rejected(raw.as_bytes(), &HeadLimits::DEFAULT, 400);
}

#[test]
fn an_origin_that_is_not_utf8_is_refused_not_ignored() {
    // Reported as absent, it would pass as a non-browser client under every policy.
    let mut raw = request_with("Origin: http://example.com", "Origin: http://\u{1}").into_bytes();
    let at = raw.iter().position(|&b| b == 1).unwrap();
    raw[at] = 0xff;
    let (head, _) = parse_request(&raw, &HeadLimits::DEFAULT).unwrap().unwrap();
    assert!(matches!(
        validate_upgrade(&head),
        Err(HandshakeError::Malformed(_))
    ));
    expect_rejected(&raw, &HeadLimits::DEFAULT, 400);
}

#[test]
fn list_valued_headers_may_repeat_and_are_read_as_one_list() {
    // RFC 9110 §5.3: several lines of a list-valued field mean the lines joined with
    // commas; RFC 6455 §11.3.2 and §11.3.4 say so for the WebSocket lists.
    let upgrade = with_repeated("Upgrade: websocket", "h2c");
    let resp = Response::parse(&answer(upgrade.as_bytes(), &HeadLimits::DEFAULT, &[]));
    assert_eq!(resp.status, 101);
    let upgrade_last = request_with("Upgrade: websocket", "Upgrade: h2c\r\nUpgrade: websocket");
    let resp = Response::parse(&answer(upgrade_last.as_bytes(), &HeadLimits::DEFAULT, &[]));
    assert_eq!(resp.status, 101);

    let ext = request_with(
        "Sec-WebSocket-Version: 13\r\n",
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: a\r\nSec-WebSocket-Extensions: b, c\r\n",
    );
    let (head, _) = parse_request(ext.as_bytes(), &HeadLimits::DEFAULT)
        .unwrap()
        .unwrap();
    assert_eq!(
        validate_upgrade(&head).unwrap().extensions(),
        ["a", "b", "c"]
    );

    // A list element that is not even UTF-8 is refused rather than skipped.
    let mut raw = with_repeated("Sec-WebSocket-Protocol: chat, superchat", "v\u{1}").into_bytes();
    let at = raw.iter().position(|&b| b == 1).unwrap();
    raw[at] = 0xff;
    expect_rejected(&raw, &HeadLimits::DEFAULT, 400);
}

#[test]
fn single_header_is_the_exactly_one_value_helper() {
    // For headers the application reads itself, such as Authorization.
    let raw = request_with(
        "Sec-WebSocket-Version: 13\r\n",
        "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer one\r\n",
    );
    let (head, _) = parse_request(raw.as_bytes(), &HeadLimits::DEFAULT)
        .unwrap()
        .unwrap();
    assert_eq!(
        head.single_header("authorization"),
        Ok(Some(&b"Bearer one"[..]))
    );
    assert_eq!(
        head.single_header_str("Authorization"),
        Ok(Some("Bearer one"))
    );
    assert_eq!(head.single_header("x-absent"), Ok(None));

    for second in ["Authorization: Bearer two", "authorization: Bearer one"] {
        let raw = request_with(
            "Sec-WebSocket-Version: 13\r\n",
            &format!("Sec-WebSocket-Version: 13\r\nAuthorization: Bearer one\r\n{second}\r\n"),
        );
        let (head, _) = parse_request(raw.as_bytes(), &HeadLimits::DEFAULT)
            .unwrap()
            .unwrap();
        let err = head.single_header("authorization").unwrap_err();
        assert_eq!(err, HandshakeError::RepeatedHeader("authorization"));
        assert_eq!(err.http_status(), 400);
        assert_eq!(head.single_header_str("authorization"), Err(err));
        // The handshake itself does not read Authorization: the application decides.
        assert!(validate_upgrade(&head).is_ok());
    }
}

#[test]
fn content_length_may_not_repeat_even_with_one_value() {
    for (lines, expected) in [
        ("Content-Length: 0\r\n", Ok(Some(0))),
        (
            "Content-Length: 0\r\nContent-Length: 0\r\n",
            Err(HandshakeError::RepeatedHeader("content-length")),
        ),
        (
            "Content-Length: 0\r\ncontent-length: 5\r\n",
            Err(HandshakeError::RepeatedHeader("content-length")),
        ),
        (
            "Content-Length: 0, 0\r\n",
            Err(HandshakeError::Malformed("invalid content-length")),
        ),
    ] {
        let raw = request_with(
            "Sec-WebSocket-Version: 13\r\n",
            &format!("Sec-WebSocket-Version: 13\r\n{lines}"),
        );
        let (head, _) = parse_request(raw.as_bytes(), &HeadLimits::DEFAULT)
            .unwrap()
            .unwrap();
        assert_eq!(head.content_length(), expected, "{lines}");
    }
}

#[test]
fn connection_token_lists_and_case_are_honoured() {
    let variants = [
        request_with("Connection: Upgrade", "Connection: keep-alive, Upgrade"),
        request_with("Connection: Upgrade", "Connection: Upgrade, keep-alive"),
        request_with("Connection: Upgrade", "Connection: keep-alive,upgrade"),
        request_with("Connection: Upgrade", "Connection: UPGRADE"),
        request_with("Connection: Upgrade", "connection: upgrade"),
        request_with(
            "Connection: Upgrade",
            "Connection: keep-alive\r\nConnection: Upgrade",
        ),
        request_with("Upgrade: websocket", "Upgrade: WebSocket"),
        request_with("Upgrade: websocket", "UPGRADE: WEBSOCKET"),
        request_with("Sec-WebSocket-Key:", "sec-websocket-key:"),
        request_with("Sec-WebSocket-Version:", "SEC-WEBSOCKET-VERSION:"),
        request_with("Host:", "host:"),
        request_with("Sec-WebSocket-Key: ", "Sec-WebSocket-Key:    "),
    ];
    for raw in variants {
        let resp = Response::parse(&answer(raw.as_bytes(), &HeadLimits::DEFAULT, &[]));
        assert_eq!(resp.status, 101, "{raw}");
        assert_eq!(resp.header("sec-websocket-accept"), Some(RFC_ACCEPT));
    }
}

#[test]
fn path_query_and_origin_are_exposed() {
    let raw = request_with("GET /chat ", "GET /rooms/42?token=abc&x=1 ");
    let (head, _) = parse_request(raw.as_bytes(), &HeadLimits::DEFAULT)
        .unwrap()
        .unwrap();
    let req: UpgradeRequest<'_> = validate_upgrade(&head).unwrap();
    assert_eq!(req.path, "/rooms/42");
    assert_eq!(req.query, Some("token=abc&x=1"));
    assert_eq!(req.origin, Some("http://example.com"));
}

#[test]
fn subprotocols_are_negotiated_by_server_preference() {
    let raw = request_with(
        "Sec-WebSocket-Protocol: chat, superchat\r\n",
        "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol: v2.chat\r\n",
    );
    let (head, _) = parse_request(raw.as_bytes(), &HeadLimits::DEFAULT)
        .unwrap()
        .unwrap();
    let req = validate_upgrade(&head).unwrap();
    assert_eq!(req.protocols(), ["chat", "superchat", "v2.chat"]);
    assert_eq!(req.choose_protocol(&["v2.chat", "chat"]), Some("v2.chat"));
    assert_eq!(req.choose_protocol(&["superchat"]), Some("superchat"));
    assert_eq!(req.choose_protocol(&["mqtt"]), None);

    // No common subprotocol: accepted, without a Sec-WebSocket-Protocol header.
    let resp = Response::parse(&answer(raw.as_bytes(), &HeadLimits::DEFAULT, &["mqtt"]));
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("sec-websocket-protocol"), None);
}

#[test]
fn an_incomplete_head_waits_and_a_complete_one_reports_its_length() {
    for cut in 0..RFC_REQUEST.len() {
        assert_eq!(
            parse_request(&RFC_REQUEST.as_bytes()[..cut], &HeadLimits::DEFAULT),
            Ok(None),
            "cut at {cut}"
        );
    }
    // Frame bytes right after the head are not part of it.
    let mut raw = RFC_REQUEST.as_bytes().to_vec();
    raw.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4]);
    let (_, len) = parse_request(&raw, &HeadLimits::DEFAULT).unwrap().unwrap();
    assert_eq!(len, RFC_REQUEST.len());
}

const NONCE: [u8; 16] = *b"the sample nonce";

fn good_response() -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {RFC_ACCEPT}\r\n\r\n"
    )
}

#[test]
fn our_client_request_passes_our_server_and_the_answer_passes_our_client() {
    let hs = ClientHandshake::new("server.example.com", "/chat?x=1", NONCE)
        .with_protocols(&["chat", "superchat"])
        .with_header("Origin", "http://example.com");
    assert_eq!(hs.key(), RFC_KEY, "the RFC nonce encodes to the RFC key");
    let mut request = BytesMut::new();
    hs.write_request(&mut request).unwrap();
    let response = answer(&request, &HeadLimits::DEFAULT, &["superchat"]);
    let (settled, len) = hs.parse_response(&response).unwrap().unwrap();
    assert_eq!(settled.protocol.as_deref(), Some("superchat"));
    assert_eq!(len, response.len());
}

#[test]
fn the_client_rejects_every_wrong_answer() {
    let hs = ClientHandshake::new("h", "/", NONCE).with_protocols(&["chat"]);
    let ok = good_response();
    assert!(hs.parse_response(ok.as_bytes()).unwrap().is_some());
    let cases = [
        (
            "101 Switching Protocols",
            "200 OK",
            ClientHandshakeError::Status(200),
        ),
        (
            "101 Switching Protocols",
            "403 Forbidden",
            ClientHandshakeError::Status(403),
        ),
        (
            RFC_ACCEPT,
            "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ClientHandshakeError::AcceptMismatch,
        ),
        (
            "Sec-WebSocket-Accept: ",
            "X-Accept: ",
            ClientHandshakeError::AcceptMismatch,
        ),
        (
            "Upgrade: websocket\r\n",
            "",
            ClientHandshakeError::MissingUpgrade,
        ),
        (
            "Upgrade: websocket",
            "Upgrade: h2c",
            ClientHandshakeError::MissingUpgrade,
        ),
        (
            "Connection: Upgrade\r\n",
            "",
            ClientHandshakeError::MissingConnectionUpgrade,
        ),
        (
            "\r\n\r\n",
            "\r\nSec-WebSocket-Protocol: superchat\r\n\r\n",
            ClientHandshakeError::UnexpectedProtocol,
        ),
        (
            "\r\n\r\n",
            "\r\nSec-WebSocket-Protocol: chat, chat2\r\n\r\n",
            ClientHandshakeError::UnexpectedProtocol,
        ),
        (
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            ClientHandshakeError::UnexpectedExtension,
        ),
        (
            "\r\n\r\n",
            &format!("\r\nSec-WebSocket-Accept: {RFC_ACCEPT}\r\n\r\n"),
            ClientHandshakeError::AcceptMismatch,
        ),
    ];
    for (from, to, err) in cases {
        let bad = ok.replacen(from, to, 1);
        assert_eq!(hs.parse_response(bad.as_bytes()), Err(err), "{to}");
    }
}

#[test]
fn the_client_accepts_case_variations_and_frames_after_the_head() {
    let hs = ClientHandshake::new("h", "/", NONCE).with_protocols(&["chat"]);
    let varied = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, upgrade\r\n\
         sec-websocket-accept: {RFC_ACCEPT}\r\nsec-websocket-protocol: chat\r\n\r\n"
    );
    let mut bytes = varied.as_bytes().to_vec();
    bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
    let (settled, len) = hs.parse_response(&bytes).unwrap().unwrap();
    assert_eq!(settled.protocol.as_deref(), Some("chat"));
    assert_eq!(len, varied.len());
    for cut in 0..varied.len() {
        assert_eq!(
            hs.parse_response(&varied.as_bytes()[..cut]),
            Ok(None),
            "cut {cut}"
        );
    }
}
