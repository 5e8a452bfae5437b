//! IMAP4rev2 (RFC 9051) and the extensions it brings: ENABLE, ESEARCH,
//! SEARCHRES, LIST-EXTENDED and LIST-STATUS, UTF-8 mailbox names.

use super::*;

fn inbox_of_three() -> (Arc<Fake>, Session) {
    let store = Arc::new(Fake::default());
    store
        .folders
        .lock()
        .unwrap()
        .insert("INBOX".into(), vec![1, 2, 3]);
    store.folders.lock().unwrap().insert("Sent".into(), vec![]);
    store.subscribed.lock().unwrap().insert("Sent".into());
    store.subscribed.lock().unwrap().insert("Gone".into());
    let s = logged_in(store.clone());
    (store, s)
}

#[test]
fn imap4rev1_clients_keep_search_and_may_ask_for_esearch() {
    let (store, mut s) = inbox_of_three();
    store
        .set_flags(
            "",
            "INBOX",
            2,
            store::Flags {
                seen: true,
                ..Default::default()
            },
        )
        .unwrap();
    let (caps, _) = talk(&mut s, "c CAPABILITY\r\n");
    for cap in [
        "IMAP4rev1",
        "IMAP4rev2",
        "ESEARCH",
        "SEARCHRES",
        "LIST-EXTENDED",
        "LIST-STATUS",
    ] {
        let caps = caps.to_ascii_uppercase();
        assert!(
            caps.contains(&format!(" {}", cap.to_ascii_uppercase())),
            "{cap}: {caps}"
        );
    }
    talk(&mut s, "s SELECT INBOX\r\n");
    let (out, _) = talk(&mut s, "a SEARCH UNSEEN\r\n");
    assert_eq!(out, "* SEARCH 1 3\r\na OK SEARCH completed\r\n");
    let (out, _) = talk(&mut s, "b UID SEARCH RETURN () UNSEEN\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"b\") UID ALL 1,3\r\nb OK UID SEARCH completed\r\n"
    );
    let (out, _) = talk(&mut s, "c SEARCH RETURN (MIN MAX COUNT) ALL\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"c\") MIN 1 MAX 3 COUNT 3\r\nc OK SEARCH completed\r\n"
    );
    let (out, _) = talk(&mut s, "d SEARCH RETURN (COUNT) DRAFT\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"d\") COUNT 0\r\nd OK SEARCH completed\r\n"
    );
    let (out, _) = talk(&mut s, "e SEARCH RETURN (FIRST) ALL\r\n");
    assert!(out.starts_with("e BAD"), "{out}");
}

#[test]
fn a_saved_search_is_what_dollar_names() {
    let (store, mut s) = inbox_of_three();
    store
        .set_flags(
            "",
            "INBOX",
            2,
            store::Flags {
                seen: true,
                ..Default::default()
            },
        )
        .unwrap();
    talk(&mut s, "s SELECT INBOX\r\n");
    // Only SAVE: no ESEARCH answer (RFC 5182 §2.1).
    let (out, _) = talk(&mut s, "a SEARCH RETURN (SAVE) UNSEEN\r\n");
    assert_eq!(out, "a OK SEARCH completed\r\n");
    let (out, _) = talk(&mut s, "b FETCH $ (UID)\r\n");
    assert_eq!(
        out,
        "* 1 FETCH (UID 1)\r\n* 3 FETCH (UID 3)\r\nb OK FETCH completed\r\n"
    );
    let (out, _) = talk(
        &mut s,
        "c UID SEARCH UID $ SEEN\r\nd STORE $ +FLAGS.SILENT (\\Flagged)\r\n",
    );
    assert_eq!(
        out,
        "* SEARCH\r\nc OK UID SEARCH completed\r\nd OK STORE completed\r\n"
    );
    assert!(store.flags.lock().unwrap()[&3].flagged);
    // MIN with SAVE saves the lowest only.
    let (out, _) = talk(
        &mut s,
        "e UID SEARCH RETURN (MIN SAVE) ALL\r\nf UID FETCH $ (FLAGS)\r\n",
    );
    assert_eq!(
        out,
        "* ESEARCH (TAG \"e\") UID MIN 1\r\ne OK UID SEARCH completed\r\n\
         * 1 FETCH (UID 1 FLAGS (\\Flagged))\r\nf OK UID FETCH completed\r\n"
    );
    // A new SELECT forgets it: `$` names nothing.
    talk(&mut s, "g SELECT INBOX\r\n");
    let (out, _) = talk(&mut s, "h FETCH $ (UID)\r\n");
    assert_eq!(out, "h OK FETCH completed\r\n");
}

#[test]
fn enabled_imap4rev2_answers_esearch_without_recent() {
    let (_, mut s) = inbox_of_three();
    let (out, _) = talk(&mut s, "e ENABLE IMAP4rev2\r\n");
    assert_eq!(out, "* ENABLED IMAP4rev2\r\ne OK ENABLE completed\r\n");
    let (out, _) = talk(&mut s, "s SELECT INBOX\r\n");
    assert!(!out.contains("RECENT"), "{out}");
    let (out, _) = talk(&mut s, "a SEARCH ALL\r\n");
    assert_eq!(
        out,
        "* ESEARCH (TAG \"a\") ALL 1:3\r\na OK SEARCH completed\r\n"
    );
    let (out, _) = talk(&mut s, "b EXAMINE Sent\r\n");
    assert!(out.starts_with("* OK [CLOSED]"), "{out}");
}

#[test]
fn list_with_selection_and_return_options() {
    let (_, mut s) = inbox_of_three();
    let (out, _) = talk(&mut s, "a LIST \"\" (INBOX Sen*) RETURN (CHILDREN)\r\n");
    assert_eq!(
        out,
        "* LIST (\\HasNoChildren) \".\" INBOX\r\n\
         * LIST (\\HasNoChildren) \".\" Sent\r\na OK LIST completed\r\n"
    );
    let (out, _) = talk(
        &mut s,
        "b LIST (SUBSCRIBED) \"\" (Gone Sent INBOX) RETURN (STATUS (MESSAGES UNSEEN))\r\n",
    );
    assert_eq!(
        out,
        "* LIST (\\Subscribed \\NonExistent) \".\" Gone\r\n\
         * LIST (\\Subscribed) \".\" Sent\r\n\
         * STATUS Sent (MESSAGES 0 UNSEEN 0)\r\nb OK LIST completed\r\n"
    );
    let (out, _) = talk(
        &mut s,
        "c LIST (SPECIAL-USE) \"\" S* RETURN (SUBSCRIBED)\r\n",
    );
    assert_eq!(
        out,
        "* LIST (\\Sent \\Subscribed) \".\" Sent\r\nc OK LIST completed\r\n"
    );
    let (out, _) = talk(&mut s, "d LIST \"\" * RETURN (STATUS (BOGUS))\r\n");
    assert!(out.starts_with("d BAD"), "{out}");
}

#[test]
fn imap4rev2_names_are_utf8_and_stored_as_modified_utf7() {
    let (store, mut s) = inbox_of_three();
    talk(&mut s, "e ENABLE IMAP4rev2\r\n");
    let (out, _) = talk(&mut s, "c CREATE \"Отправленные\"\r\n");
    assert_eq!(out, "c OK CREATE completed\r\n");
    assert!(
        store
            .folders
            .lock()
            .unwrap()
            .contains_key("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-")
    );
    let (out, _) = talk(&mut s, "l LIST \"\" \"Отп*\"\r\n");
    assert_eq!(
        out,
        "* LIST (\\HasNoChildren) \".\" {24}\r\nОтправленные\r\nl OK LIST completed\r\n"
    );
    // STATUS SIZE: each message's size, read when the store cannot tell.
    let (out, _) = talk(&mut s, "z STATUS INBOX (MESSAGES SIZE)\r\n");
    assert_eq!(
        out,
        "* STATUS INBOX (MESSAGES 3 SIZE 126)\r\nz OK STATUS completed\r\n"
    );
}
