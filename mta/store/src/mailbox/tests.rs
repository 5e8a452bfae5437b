//! The IMAP index against real Maildirs in temporary directories.

use super::*;

fn deliver(maildir: &Path, name: &str, text: &str) {
    fs::write(maildir.join("tmp").join(name), text).unwrap();
    fs::rename(
        maildir.join("tmp").join(name),
        maildir.join("new").join(name),
    )
    .unwrap();
}

#[test]
fn new_mail_gets_growing_uids_and_moves_to_cur_with_its_flags() {
    let t = tempfile::tempdir().unwrap();
    let m = Mailbox::open(t.path()).unwrap();
    deliver(t.path(), "1700000001.M1Q1R0.mx", "one");
    deliver(t.path(), "1700000002.M1Q2R0.mx", "two");
    let f = m.sync(INBOX).unwrap();
    assert_eq!(f.uid_next, 3);
    let uids: Vec<u32> = f.messages.iter().map(|m| m.uid).collect();
    assert_eq!(uids, [1, 2]);
    assert_eq!(f.messages[0].base, "1700000001.M1Q1R0.mx");
    assert!(t.path().join("cur/1700000001.M1Q1R0.mx:2,").exists());
    assert_eq!(fs::read_dir(t.path().join("new")).unwrap().count(), 0);
    assert_eq!(f.recent, [1, 2], "new to this sync");
    // A sync with nothing new changes nothing, and has nothing recent.
    let again = m.sync(INBOX).unwrap();
    assert_eq!(
        again,
        Folder {
            recent: Vec::new(),
            ..f.clone()
        }
    );
    // More mail: the next UID, a higher MODSEQ.
    deliver(t.path(), "1700000003.M1Q3R0.mx", "three");
    let f2 = m.sync(INBOX).unwrap();
    assert_eq!(f2.messages.last().unwrap().uid, 3);
    assert!(f2.highest_modseq > f.highest_modseq);
    assert_eq!(f2.uid_validity, f.uid_validity);
}

#[test]
fn mail_found_in_one_sync_is_numbered_in_the_order_it_arrived() {
    let t = tempfile::tempdir().unwrap();
    let m = Mailbox::open(t.path()).unwrap();
    // In one second: 99,000 µs came before 123,456 µs, though its name
    // sorts after it as a string; a name with no time goes last.
    deliver(t.path(), "1700000001.M123456Q2R0.mx", "second");
    deliver(t.path(), "1700000001.M99000Q1R0.mx", "first");
    deliver(t.path(), "1699999999.M999999Q0R0.mx", "earliest");
    deliver(t.path(), "appended-by-hand", "last");
    let f = m.sync(INBOX).unwrap();
    let order: Vec<(u32, &str)> = f
        .messages
        .iter()
        .map(|m| (m.uid, m.base.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (1, "1699999999.M999999Q0R0.mx"),
            (2, "1700000001.M99000Q1R0.mx"),
            (3, "1700000001.M123456Q2R0.mx"),
            (4, "appended-by-hand"),
        ]
    );
}

#[test]
fn flags_live_in_the_file_name_and_change_the_modseq() {
    let t = tempfile::tempdir().unwrap();
    let m = Mailbox::open(t.path()).unwrap();
    deliver(t.path(), "1700000001.M1Q1R0.mx", "one");
    let f = m.sync(INBOX).unwrap();
    let seen = Flags {
        seen: true,
        flagged: true,
        ..Flags::default()
    };
    let modseq = m.set_flags(INBOX, 1, seen).unwrap();
    assert!(modseq > f.highest_modseq);
    assert!(t.path().join("cur/1700000001.M1Q1R0.mx:2,FS").exists());
    let f = m.sync(INBOX).unwrap();
    assert_eq!(f.messages[0].flags, seen);
    assert_eq!(f.messages[0].modseq, modseq);
    // A flag changed by another program (a renamed file) is noticed.
    fs::rename(
        t.path().join("cur/1700000001.M1Q1R0.mx:2,FS"),
        t.path().join("cur/1700000001.M1Q1R0.mx:2,S"),
    )
    .unwrap();
    let f = m.sync(INBOX).unwrap();
    assert!(!f.messages[0].flags.flagged);
    assert!(f.messages[0].modseq > modseq);
}

#[test]
fn a_removed_file_is_expunged_and_its_uid_never_comes_back() {
    let t = tempfile::tempdir().unwrap();
    let m = Mailbox::open(t.path()).unwrap();
    deliver(t.path(), "1700000001.M1Q1R0.mx", "one");
    deliver(t.path(), "1700000002.M1Q2R0.mx", "two");
    let before = m.sync(INBOX).unwrap();
    fs::remove_file(t.path().join("cur/1700000002.M1Q2R0.mx:2,")).unwrap();
    let after = m.sync(INBOX).unwrap();
    assert_eq!(after.messages.len(), 1);
    assert_eq!(m.expunged_since(INBOX, before.highest_modseq).unwrap(), [2]);
    deliver(t.path(), "1700000003.M1Q3R0.mx", "three");
    let f = m.sync(INBOX).unwrap();
    assert_eq!(f.messages.last().unwrap().uid, 3, "UID 2 is not reused");
}

#[test]
fn expunge_removes_files_and_records() {
    let t = tempfile::tempdir().unwrap();
    let m = Mailbox::open(t.path()).unwrap();
    deliver(t.path(), "1700000001.M1Q1R0.mx", "one");
    deliver(t.path(), "1700000002.M1Q2R0.mx", "two");
    let before = m.sync(INBOX).unwrap();
    assert_eq!(m.expunge(INBOX, &[1, 7]).unwrap(), [1]);
    assert!(!t.path().join("cur/1700000001.M1Q1R0.mx:2,").exists());
    let after = m.sync(INBOX).unwrap();
    assert_eq!(after.messages.len(), 1);
    assert!(after.highest_modseq > before.highest_modseq);
    assert_eq!(m.expunged_since(INBOX, before.highest_modseq).unwrap(), [1]);
}

#[test]
fn a_crash_between_the_commit_and_the_move_keeps_the_uid() {
    let t = tempfile::tempdir().unwrap();
    {
        let m = Mailbox::open(t.path()).unwrap();
        deliver(t.path(), "1700000001.M1Q1R0.mx", "one");
        m.sync(INBOX).unwrap();
    }
    // As if the file had not moved yet when the power went: it is
    // back in new/ under its old name.
    fs::rename(
        t.path().join("cur/1700000001.M1Q1R0.mx:2,"),
        t.path().join("new/1700000001.M1Q1R0.mx"),
    )
    .unwrap();
    deliver(t.path(), "1700000002.M1Q2R0.mx", "two");
    let m = Mailbox::open(t.path()).unwrap();
    let f = m.sync(INBOX).unwrap();
    let uids: Vec<(u32, &str)> = f
        .messages
        .iter()
        .map(|m| (m.uid, m.base.as_str()))
        .collect();
    assert_eq!(
        uids,
        [(1, "1700000001.M1Q1R0.mx"), (2, "1700000002.M1Q2R0.mx")]
    );
}

#[test]
fn folders_are_maildir_plus_plus_directories() {
    let t = tempfile::tempdir().unwrap();
    let m = Mailbox::open(t.path()).unwrap();
    m.create("Sent").unwrap();
    m.create("Archive.2026").unwrap();
    assert!(t.path().join(".Sent/cur").is_dir());
    assert!(t.path().join(".Archive.2026/new").is_dir());
    assert_eq!(m.folders().unwrap(), ["INBOX", "Archive.2026", "Sent"]);
    assert!(m.create("Sent").is_err());
    for bad in ["", ".x", "x.", "a..b", "../etc", "a/b"] {
        assert!(m.dir_of(bad).is_err(), "{bad:?}");
    }
    // Each folder has its own UIDs and UIDVALIDITY.
    let sent = m.dir_of("Sent").unwrap();
    deliver(&sent, "1700000001.M1Q1R0.mx", "sent");
    assert_eq!(m.sync("Sent").unwrap().messages[0].uid, 1);
    assert!(m.sync("Nonexistent").is_err());
}

#[test]
fn mail_delivered_during_syncs_gets_one_uid_each() {
    let t = tempfile::tempdir().unwrap();
    let m = Mailbox::open(t.path()).unwrap();
    let dir = t.path().to_path_buf();
    let writer = std::thread::spawn(move || {
        for i in 0..200 {
            deliver(&dir, &format!("17000{i:05}.M1Q{i}R0.mx"), "x");
        }
    });
    let mut seen = 0;
    while !writer.is_finished() || seen < 200 {
        seen = m.sync(INBOX).unwrap().messages.len();
    }
    writer.join().unwrap();
    let f = m.sync(INBOX).unwrap();
    assert_eq!(f.messages.len(), 200);
    let mut uids: Vec<u32> = f.messages.iter().map(|m| m.uid).collect();
    uids.dedup();
    assert_eq!(uids.len(), 200, "every message once");
    assert_eq!(f.uid_next, 201);
    assert_eq!(fs::read_dir(t.path().join("new")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(t.path().join("cur")).unwrap().count(), 200);
}

#[test]
fn append_copy_rename_and_delete() {
    let t = tempfile::tempdir().unwrap();
    let m = Mailbox::open(t.path()).unwrap();
    m.create("Sent").unwrap();
    let seen = Flags {
        seen: true,
        ..Flags::default()
    };
    let uid = m
        .append("Sent", b"Subject: x\n\nhi\n", seen, 1_700_000_000, "M1.mx")
        .unwrap();
    assert_eq!(uid, 1);
    let sent = m.sync("Sent").unwrap();
    assert_eq!(sent.messages[0].flags, seen);
    let file = m.file_of("Sent", &sent.messages[0]).unwrap().unwrap();
    assert!(
        file.to_string_lossy().ends_with(":2,S"),
        "{}",
        file.display()
    );
    let mtime = fs::metadata(&file).unwrap().modified().unwrap();
    assert_eq!(
        mtime
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_700_000_000
    );
    // Copied: a new UID in the target, the same bytes.
    assert_eq!(m.copy("Sent", &[1, 9], INBOX).unwrap(), [(1, 1)]);
    let inbox = m.sync(INBOX).unwrap();
    let copy = m.file_of(INBOX, &inbox.messages[0]).unwrap().unwrap();
    assert_eq!(fs::read(copy).unwrap(), b"Subject: x\n\nhi\n");
    // Renamed with what is below it; UIDVALIDITY and UIDs kept.
    m.create("Sent.Old").unwrap();
    m.rename("Sent", "Outbox").unwrap();
    assert_eq!(m.folders().unwrap(), ["INBOX", "Outbox", "Outbox.Old"]);
    let outbox = m.sync("Outbox").unwrap();
    assert_eq!(outbox.uid_validity, sent.uid_validity);
    assert_eq!(outbox.messages[0].uid, 1);
    assert!(m.rename(INBOX, "X").is_err());
    // Deleted, and a folder made again under the name starts afresh.
    m.delete("Outbox").unwrap();
    assert_eq!(m.folders().unwrap(), ["INBOX", "Outbox.Old"]);
    assert!(m.delete(INBOX).is_err());
    m.create("Outbox").unwrap();
    let again = m.sync("Outbox").unwrap();
    assert!(again.messages.is_empty());
    assert!(
        again.uid_validity > outbox.uid_validity,
        "never the same UIDVALIDITY"
    );
}

#[test]
fn a_moved_message_is_in_one_folder_only() {
    let t = tempfile::tempdir().unwrap();
    let m = Mailbox::open(t.path()).unwrap();
    m.create("Archive").unwrap();
    deliver(t.path(), "1700000001.M1Q1R0.mx", "one");
    deliver(t.path(), "1700000002.M1Q2R0.mx", "two");
    m.sync(INBOX).unwrap();
    assert_eq!(m.move_to(INBOX, &[2], "Archive").unwrap(), [(2, 1)]);
    let inbox = m.sync(INBOX).unwrap();
    let archive = m.sync("Archive").unwrap();
    assert_eq!(
        inbox.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(archive.messages.len(), 1);
    assert_eq!(fs::read_dir(t.path().join("cur")).unwrap().count(), 1);
    assert_eq!(
        fs::read_dir(t.path().join(".Archive/cur")).unwrap().count(),
        1
    );
}

#[test]
fn headers_are_read_alone_and_cached_until_expunged() {
    let t = tempfile::tempdir().unwrap();
    let m = Mailbox::open(t.path()).unwrap();
    deliver(t.path(), "1700000001.M1Q1R0.mx", "Subject: one\n\nbody\n");
    deliver(
        t.path(),
        "1700000002.M1Q2R0.mx",
        "Subject: two\r\n\r\nbody\r\n",
    );
    deliver(t.path(), "1700000003.M1Q3R0.mx", "Subject: no body\n");
    let f = m.sync(INBOX).unwrap();
    let header = |i: usize| m.header(INBOX, f.messages[i].uid).unwrap().unwrap().0;
    assert_eq!(header(0), b"Subject: one\n\n");
    assert_eq!(header(1), b"Subject: two\r\n\r\n");
    assert_eq!(header(2), b"Subject: no body\n");
    // Kept by the next sync: the file is not read again.
    m.sync(INBOX).unwrap();
    let file = m.file_of(INBOX, &f.messages[0]).unwrap().unwrap();
    fs::write(&file, "Subject: changed behind our back\n\n").unwrap();
    assert_eq!(header(0), b"Subject: one\n\n");
    // Expunged: out of the cache too.
    m.expunge(INBOX, &[1]).unwrap();
    assert_eq!(m.header(INBOX, 1).unwrap(), None);
    assert_eq!(read::header_end(b"A: b\n\nbody\n\n"), Some(6));
    assert_eq!(read::header_end(b"A: b\r\n\r\nbody"), Some(8));
    assert_eq!(read::header_end(b"A: b\nC: d\n"), None);
}
