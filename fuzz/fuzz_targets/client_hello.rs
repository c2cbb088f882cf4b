//! Fuzz target `client_hello`: arbitrary bytes through the ClientHello classifier the fair
//! handshake scheduler runs on the first bytes of every TLS connection (peeked before the
//! handshake, when `max_handshakes_in_flight` is set).
//!
//! Defends: no panic and no hang on any input, and the answer never depends on bytes past
//! the peek window (`PEEK_BYTES`), which is all levee ever looks at.
#![no_main]

use levee::tls::hello::{PEEK_BYTES, is_resumption_attempt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let answer = is_resumption_attempt(data);
    if data.len() > PEEK_BYTES {
        let window = is_resumption_attempt(&data[..PEEK_BYTES]);
        // A hello that fits the window parses the same with or without what follows it;
        // one that does not fit is "not a resumption" from the window alone.
        assert!(!window || answer, "a prefix cannot offer what the whole does not");
    }
});
