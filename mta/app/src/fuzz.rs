//! Property-based fuzzing (proptest) of what the server logic parses from
//! peers: the outbound client's reply reader and MTA-STS policies (the
//! protocol cores are fuzzed in `mta-proto`). Each property holds for any
//! input: no panic, bounded output.
//!
//! For a long run: `PROPTEST_CASES=200000 cargo test --release -p mta-app fuzz`.

use proptest::prelude::*;

proptest! {
    #[test]
    fn the_reply_reader_stays_within_its_limits(
        input in prop::collection::vec(any::<u8>(), 0..20_000),
        lines in prop::collection::vec("[2-5][0-9][0-9][ -][ -~]{0,30}", 0..5),
    ) {
        use crate::outbound::client::{MAX_REPLY_LINE, MAX_REPLY_LINES, read_reply};
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for bytes in [input, lines.join("\r\n").into_bytes()] {
            let mut io = tokio::io::BufReader::new(bytes.as_slice());
            if let Ok(reply) = rt.block_on(read_reply(&mut io)) {
                prop_assert!((200..600).contains(&reply.code));
                prop_assert!(reply.lines.len() <= MAX_REPLY_LINES);
                // Escaped text may be longer than the line read, never much.
                prop_assert!(reply.lines.iter().all(|l| l.len() <= MAX_REPLY_LINE * 10));
                prop_assert!(reply.lines.iter().all(|l| !l.contains(['\r', '\n'])));
            }
        }
    }

    #[test]
    fn sts_policies_parse_or_fail_cleanly(text in "(\\PC{0,40}\r?\n){0,10}") {
        if let Ok(p) = crate::outbound::sts::Policy::parse(&text, "id", 0) {
            prop_assert!(p.max_age <= 31_557_600);
            prop_assert!(!p.mx.is_empty() || p.mode == crate::outbound::sts::Mode::None);
        }
    }
}
