//! Replays the committed fuzz corpus (`fuzz/seeds/<target>/`) through the very
//! checks the cargo-fuzz targets run, on the stable toolchain.
//!
//! The checks live in `fuzz/src/<target>.rs`; this test includes those files, so
//! a regression input added to the seeds is a regression test here too. Any
//! panic is a finding: a panic inside the codec or a broken invariant.

use std::fs;
use std::path::{Path, PathBuf};

#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/assemble_message.rs"]
mod assemble_message;
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/close_payload.rs"]
mod close_payload;
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/decode_stream.rs"]
mod decode_stream;
#[cfg(feature = "deflate")]
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/inflate_message.rs"]
mod inflate_message;
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/request_head.rs"]
mod request_head;
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/response_head.rs"]
mod response_head;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Runs `check` on every seed of `target`; returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = fuzz_dir().join("seeds").join(target);
    let mut seeds: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable seed directory").path())
        .collect();
    seeds.sort();
    for path in &seeds {
        let data = fs::read(path).expect("readable seed");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: seed {} failed", path.display());
    }
    assert!(seeds.len() >= 10, "{target}: only {} seeds", seeds.len());
    seeds.len()
}

#[test]
fn decode_stream_seeds() {
    replay("decode_stream", decode_stream::check);
}

#[test]
fn assemble_message_seeds() {
    replay("assemble_message", assemble_message::check);
}

#[cfg(feature = "deflate")]
#[test]
fn inflate_message_seeds() {
    replay("inflate_message", inflate_message::check);
}

#[test]
fn request_head_seeds() {
    replay("request_head", request_head::check);
}

#[test]
fn response_head_seeds() {
    replay("response_head", response_head::check);
}

#[test]
fn close_payload_seeds() {
    replay("close_payload", close_payload::check);
}

/// Every cargo-fuzz target has a seed directory and a test above: a new target
/// without seeds (or without a replay here) fails this test.
#[test]
fn every_fuzz_target_has_seeds() {
    // inflate_message is replayed only with the `deflate` feature (as the
    // workspace's tests run), but its seeds must exist either way.
    let replayed = [
        "assemble_message",
        "close_payload",
        "decode_stream",
        "inflate_message",
        "request_head",
        "response_head",
    ];
    // The chat protocol's parser is fuzzed beside the codec; its seeds are replayed by
    // crates/protocol/tests/fuzz_seeds.rs.
    let elsewhere = ["client_message"];
    let mut targets: Vec<String> = fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets exists")
        .map(|entry| {
            let path = entry.expect("readable target directory").path();
            let stem = path.file_stem().expect("a file name");
            stem.to_string_lossy().into_owned()
        })
        .filter(|t| !elsewhere.contains(&t.as_str()))
        .collect();
    targets.sort();
    assert_eq!(targets, replayed);
    for target in elsewhere {
        assert!(fuzz_dir().join("seeds").join(target).is_dir(), "{target}");
    }
    for target in replayed {
        assert!(fuzz_dir().join("seeds").join(target).is_dir(), "{target}");
    }
}
