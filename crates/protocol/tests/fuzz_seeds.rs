//! Replays the committed fuzz corpus of the `client_message` target
//! (`fuzz/seeds/client_message/`) through the very check the cargo-fuzz target runs, on the
//! stable toolchain, so a regression input added to the seeds is a regression test here.

use std::fs;
use std::path::Path;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/client_message.rs"]
mod client_message;

#[test]
fn client_message_seeds_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/client_message");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable seed directory").path();
        client_message::check(&fs::read(&path).expect("readable seed"));
        count += 1;
    }
    assert!(count >= 10, "only {count} seeds in {}", dir.display());
}
