//! Any input, however split: the IMAP session's property.

use super::*;

/// Feeds `chunks` as reads from a socket, answering every step as the
/// adapter does (the password "secret" is right); everything written.
fn drive(chunks: &[Vec<u8>]) -> Vec<u8> {
    let store = Fake::default();
    store
        .folders
        .lock()
        .unwrap()
        .insert("INBOX".into(), vec![1, 2, 3]);
    store.folders.lock().unwrap().insert("Sent".into(), vec![]);
    let mut s = session_with(true, Arc::new(store));
    let mut out = s.take_output();
    'feed: for chunk in chunks {
        s.receive(chunk);
        loop {
            let step = s.process();
            out.extend(s.take_output());
            match step {
                Step::NeedInput | Step::Idle => break,
                Step::Flush => {}
                Step::Close | Step::StartTls => break 'feed,
                Step::Authenticate(c) => s.auth_result(if c.password == "secret" {
                    AuthOutcome::Accepted("alice@example.org".into())
                } else {
                    AuthOutcome::Rejected
                }),
            }
        }
    }
    out
}

proptest::proptest! {
    /// Any mix of real commands and garbage: no panic, and the same
    /// answers however the input is split into reads.
    #[test]
    fn any_input_however_split_gets_the_same_answers(
        parts in proptest::collection::vec(proptest::prop_oneof![
            proptest::strategy::Just(b"a LOGIN alice secret\r\n".to_vec()),
            proptest::strategy::Just(b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n".to_vec()),
            proptest::strategy::Just(b"b SELECT INBOX\r\n".to_vec()),
            proptest::strategy::Just(b"b EXAMINE Sent\r\n".to_vec()),
            proptest::strategy::Just(b"c FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[1]<0.3>)\r\n".to_vec()),
            proptest::strategy::Just(b"c UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n".to_vec()),
            proptest::strategy::Just(b"d STORE 1:2 +FLAGS (\\Deleted \\Seen)\r\n".to_vec()),
            proptest::strategy::Just(b"d UID STORE 2 (UNCHANGEDSINCE 7) FLAGS.SILENT (\\Flagged)\r\n".to_vec()),
            proptest::strategy::Just(b"e EXPUNGE\r\n".to_vec()),
            proptest::strategy::Just(b"f UID SEARCH OR SEEN MODSEQ 3 NOT UID 1:*\r\n".to_vec()),
            proptest::strategy::Just(b"g APPEND INBOX (\\Seen) {7+}\r\nhi\r\n\r\n\r\n".to_vec()),
            proptest::strategy::Just(b"g APPEND Sent {5}\r\n".to_vec()),
            proptest::strategy::Just(b"h MOVE 1 Sent\r\n".to_vec()),
            proptest::strategy::Just(b"h COPY 1:* Nowhere\r\n".to_vec()),
            proptest::strategy::Just(b"i IDLE\r\n".to_vec()),
            proptest::strategy::Just(b"DONE\r\n".to_vec()),
            proptest::strategy::Just(b"j ENABLE QRESYNC CONDSTORE\r\n".to_vec()),
            proptest::strategy::Just(b"k SELECT INBOX (QRESYNC (1700000000 2 1:5))\r\n".to_vec()),
            proptest::strategy::Just(b"l GETQUOTAROOT INBOX\r\n".to_vec()),
            proptest::strategy::Just(b"m LIST \"\" *\r\n".to_vec()),
            proptest::strategy::Just(b"n CLOSE\r\n".to_vec()),
            proptest::strategy::Just(b"o NOOP\r\n".to_vec()),
            proptest::strategy::Just(b"p ENABLE IMAP4rev2\r\n".to_vec()),
            proptest::strategy::Just(b"q UID SEARCH RETURN (MIN COUNT SAVE) ALL\r\n".to_vec()),
            proptest::strategy::Just(b"r FETCH $ (FLAGS BINARY.PEEK[1])\r\n".to_vec()),
            proptest::strategy::Just(b"s LIST (SUBSCRIBED) \"\" (INBOX *) RETURN (STATUS (MESSAGES SIZE))\r\n".to_vec()),
            proptest::strategy::Just("t CREATE \"Entwürfe\"\r\n".as_bytes().to_vec()),
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
        ], 0..24),
        cuts in proptest::collection::vec(0usize..4096, 0..12),
    ) {
        let whole: Vec<u8> = parts.concat();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (whole.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for p in points {
            chunks.push(whole[from..p].to_vec());
            from = p;
        }
        chunks.push(whole[from..].to_vec());
        let at_once = drive(std::slice::from_ref(&whole));
        let split = drive(&chunks);
        proptest::prop_assert_eq!(
            String::from_utf8_lossy(&at_once),
            String::from_utf8_lossy(&split)
        );
    }
}
