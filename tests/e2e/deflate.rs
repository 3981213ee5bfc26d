//! permessage-deflate (RFC 7692) on a real server: what each `--deflate` mode agrees to,
//! compressed messages both ways, the threshold, a broadcast compressed once for every
//! recipient that agreed, context takeover kept across messages in `dedicated` mode, and the
//! `/metrics` counters. (`rfc6455`'s `deflate` feature is on here because the server
//! crate enables it.)

use chatgroup_server::config::DeflateMode;
use rfc6455::deflate::{ClientMaxWindowBits, DeflateOffer, DeflateParams};
use rfc6455::{CloseCode, Event, Frame, Message, OpCode};

use crate::support::{echo_test_config, http, Server, TestClient};

/// What browsers offer.
fn browser_offer() -> DeflateOffer {
    DeflateOffer {
        client_max_window_bits: ClientMaxWindowBits::Supported,
        ..DeflateOffer::default()
    }
}

/// A chat-like JSON text of about `len` bytes.
fn json(len: usize, seed: usize) -> String {
    let mut s = String::from("[");
    let mut i = seed;
    while s.len() < len {
        s.push_str(&format!(
            r#"{{"type":"new_message","conversation":{},"id":{i},"from":"user-{}","body":"hello number {i}"}},"#,
            i % 5,
            i % 13
        ));
        i += 1;
    }
    s.push_str("{}]");
    s
}

async fn text_and_size(client: &mut TestClient) -> (String, Option<usize>) {
    let text = client.expect_text().await;
    (text, client.last_compressed().map(|s| s.compressed))
}

fn config(mode: DeflateMode) -> chatgroup_server::Config {
    let mut cfg = echo_test_config();
    cfg.deflate = mode;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_mode_agrees_without_context_takeover_and_compresses_both_ways() {
    let server = Server::start(config(DeflateMode::Shared)).await;
    let mut client = TestClient::connect_deflate(server.addr, "/echo", browser_offer()).await;
    assert_eq!(
        client.deflate(),
        Some(DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateParams::default()
        })
    );
    // Compressed in, compressed back when over the threshold (256 bytes by default).
    let big = json(4000, 0);
    client.send_compressed(OpCode::Text, big.as_bytes()).await;
    let (echo, packed) = text_and_size(&mut client).await;
    assert_eq!(echo, big);
    let packed = packed.expect("the echo of a large message comes back compressed");
    assert!(packed < big.len() / 3, "{packed} of {}", big.len());
    // Under the threshold it comes back plain, whichever way it went in.
    client
        .send_compressed(OpCode::Text, b"short and sweet")
        .await;
    assert_eq!(
        text_and_size(&mut client).await,
        ("short and sweet".to_owned(), None)
    );
    // Uncompressed messages from the client are fine too.
    client.send_text(&big).await;
    assert!(text_and_size(&mut client).await.1.is_some());
    // Binary as well.
    let blob: Vec<u8> = big.bytes().rev().collect();
    client.send_compressed(OpCode::Binary, &blob).await;
    match client.next_event().await {
        Some(Event::Message(Message::Binary(b))) => assert_eq!(b, blob),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    assert!(client.last_compressed().is_some());

    assert_eq!(
        server.metric("chatgroup_deflate_connections_total").await,
        1
    );
    assert_eq!(
        server.metric("chatgroup_deflate_messages_in_total").await,
        3
    );
    assert_eq!(
        server.metric("chatgroup_deflate_messages_out_total").await,
        3
    );
    assert_eq!(server.metric("chatgroup_deflate_deliveries_total").await, 3);
    let plain_out = server
        .metric("chatgroup_deflate_plain_bytes_out_total")
        .await;
    let bytes_out = server.metric("chatgroup_deflate_bytes_out_total").await;
    assert_eq!(plain_out, 3 * big.len() as u64);
    assert!(bytes_out * 3 < plain_out, "{bytes_out} of {plain_out}");
    let metrics = http(
        server.addr,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let ratio: f64 = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("chatgroup_deflate_ratio_out "))
        .expect("the ratio is exported")
        .parse()
        .unwrap();
    assert!((ratio - bytes_out as f64 / plain_out as f64).abs() < 1e-3);
    client.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_is_compressed_once_for_every_recipient_that_agreed() {
    let server = Server::start(config(DeflateMode::Shared)).await;
    let path = "/broadcast?conversation_id=9";
    let mut sender = TestClient::connect(server.addr, path).await;
    let mut deflating = Vec::new();
    for _ in 0..3 {
        deflating.push(TestClient::connect_deflate(server.addr, path, browser_offer()).await);
    }
    let mut plain = TestClient::connect(server.addr, path).await;
    crate::support::eventually("all members registered", || async {
        server.metric("chatgroup_connections_open").await == 5
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let big = json(2000, 7);
    sender.send_text(&big).await;
    let mut sizes = Vec::new();
    for client in &mut deflating {
        let (text, packed) = text_and_size(client).await;
        assert_eq!(text, big);
        sizes.push(packed.expect("compressed for a client that agreed"));
    }
    assert!(
        sizes.windows(2).all(|w| w[0] == w[1]),
        "one frame: {sizes:?}"
    );
    assert_eq!(text_and_size(&mut plain).await, (big.clone(), None));
    assert_eq!(
        server.metric("chatgroup_deflate_messages_out_total").await,
        1
    );
    assert_eq!(server.metric("chatgroup_deflate_deliveries_total").await, 3);

    // A small broadcast goes out plain to everyone.
    sender.send_text("hi all").await;
    for client in &mut deflating {
        assert_eq!(text_and_size(client).await, ("hi all".to_owned(), None));
    }
    assert_eq!(
        server.metric("chatgroup_deflate_messages_out_total").await,
        1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_mode_keeps_context_across_messages_in_both_directions() {
    let mut cfg = config(DeflateMode::Dedicated);
    cfg.deflate_threshold = 64;
    let server = Server::start(cfg).await;
    let path = "/broadcast?conversation_id=3";
    let mut a = TestClient::connect_deflate(server.addr, path, browser_offer()).await;
    let mut b = TestClient::connect_deflate(server.addr, path, browser_offer()).await;
    assert_eq!(
        a.deflate(),
        Some(DeflateParams::default()),
        "context kept both ways"
    );
    crate::support::eventually("both registered", || async {
        server.metric("chatgroup_connections_open").await == 2
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    // The same message again refers back to the first: the second compresses to far less.
    // The server reads a's messages with a's history (its reader is kept between them) and
    // compresses b's copies with b's own compressor.
    let message = json(600, 1);
    let mut sizes = Vec::new();
    for _ in 0..5 {
        a.send_compressed(OpCode::Text, message.as_bytes()).await;
        let (text, packed) = text_and_size(&mut b).await;
        assert_eq!(text, message);
        sizes.push(packed.expect("compressed"));
        // Time for the server's read pump to go idle between messages.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(sizes[1] * 4 < sizes[0], "{sizes:?}");
    let received = server.metric("chatgroup_deflate_bytes_in_total").await;
    let inflated = server
        .metric("chatgroup_deflate_plain_bytes_in_total")
        .await;
    assert_eq!(inflated, 5 * message.len() as u64);
    assert!(received * 3 < inflated, "{received} of {inflated}");
    // And the other way, interleaved with uncompressed messages, which leave the history alone.
    for i in 0..3 {
        b.send_compressed(OpCode::Text, message.as_bytes()).await;
        b.send_text(&format!("plain {i}")).await;
        assert_eq!(a.expect_text().await, message);
        assert_eq!(a.expect_text().await, format!("plain {i}"));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_mode_declines_and_rsv1_stays_a_protocol_error() {
    let server = Server::start(config(DeflateMode::Off)).await;
    let mut client = TestClient::connect_deflate(server.addr, "/echo", browser_offer()).await;
    assert_eq!(client.deflate(), None);
    let mut frame = Frame::text("x");
    frame.rsv = 0b100;
    client.send_frame(&frame).await;
    client.expect_close(CloseCode::PROTOCOL_ERROR).await;
    assert_eq!(
        server.metric("chatgroup_deflate_connections_total").await,
        0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compression_bomb_closes_with_1009_and_bad_data_with_1007() {
    let mut cfg = config(DeflateMode::Shared);
    cfg.max_message_len = 64 << 10;
    cfg.max_frame_len = 64 << 10;
    let server = Server::start(cfg).await;
    let mut client = TestClient::connect_deflate(server.addr, "/echo", browser_offer()).await;
    // 16 MiB of zeros compress to about 16 KiB.
    client
        .send_compressed(OpCode::Binary, &vec![0; 16 << 20])
        .await;
    client.expect_close(CloseCode::MESSAGE_TOO_BIG).await;

    let mut client = TestClient::connect_deflate(server.addr, "/echo", browser_offer()).await;
    let mut frame = Frame::binary(vec![0xff, 0xff]); // deflate block type 3 is reserved
    frame.rsv = 0b100;
    client.send_frame(&frame).await;
    client.expect_close(CloseCode::INVALID_PAYLOAD).await;
    server.stop().await;
}
