//! Real mail programs against the IMAP server: mbsync (Debian `isync`)
//! keeps a local Maildir in step with the account both ways, and a second
//! run finds nothing to do; neomutt, in a tmux pane, opens the mailbox
//! and reads a message.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{Client, Server};

const LISTENERS: &str = "\
[[listeners]]
address = \"127.0.0.1:0\"
role = \"imaps\"
";

/// Runs mbsync with `config`; what it said.
fn mbsync(config: &Path) -> String {
    let out = Command::new("mbsync")
        .arg("-c")
        .arg(config)
        .args(["-a", "-V"])
        .output()
        .expect("mbsync (Debian isync; `cargo xtask test` installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mbsync failed:\n{said}");
    said
}

fn files(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(list) = std::fs::read_dir(dir.join(sub)) {
            for e in list.flatten() {
                all.push(e.file_name().to_string_lossy().to_string());
            }
        }
    }
    all.sort();
    all
}

#[test]
fn mbsync_syncs_both_ways_and_then_has_nothing_to_do() {
    let s = Server::start(LISTENERS);
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO sender.example");
    for i in 0..3 {
        let r = c.send_mail(
            "someone@sender.example",
            &["alice@example.org"],
            &format!("Subject: note {i}\r\nMessage-ID: <n{i}@sender.example>\r\n\r\ntext {i}\r\n"),
        );
        assert_eq!(r.code, 250, "{r:?}");
    }
    s.wait_for_mail("alice@example.org", 3);

    let local = tempfile::tempdir().unwrap();
    let config = local.path().join("mbsyncrc");
    let store = local.path().join("mail");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(
        &config,
        format!(
            "IMAPAccount alice\nHost 127.0.0.1\nPort {port}\nUser alice@example.org\nPass \"Hello world!\"\n\
             SSLType IMAPS\nCertificateFile {cert}\nSystemCertificates no\n\n\
             IMAPStore remote\nAccount alice\n\n\
             MaildirStore local\nPath {store}/\nInbox {store}/INBOX\nSubFolders Verbatim\n\n\
             Channel alice\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\nSyncState *\n",
            port = s.listeners["imaps"].port(),
            cert = s.data().join("tls/self-signed.crt").display(),
            store = store.display(),
        ),
    )
    .unwrap();

    // Down: the three messages and the special folders.
    mbsync(&config);
    let inbox = store.join("INBOX");
    assert_eq!(files(&inbox).len(), 3, "{:?}", files(&inbox));
    assert!(store.join("Sent").is_dir(), "the folders come down too");

    // A flag changed here, one deleted here, one added here: up.
    let mine = files(&inbox);
    let dir_of = |name: &str| {
        if inbox.join("cur").join(name).exists() {
            inbox.join("cur")
        } else {
            inbox.join("new")
        }
    };
    let flagged = &mine[0];
    let base = flagged.split(":2,").next().unwrap();
    std::fs::rename(
        dir_of(flagged).join(flagged),
        inbox.join("cur").join(format!("{base}:2,FS")),
    )
    .unwrap();
    std::fs::remove_file(dir_of(&mine[1]).join(&mine[1])).unwrap();
    std::fs::write(
        store.join("Sent/cur/1700000000.local1.host:2,S"),
        "From: alice@example.org\nTo: bob@example.net\nSubject: sent from here\n\nhello\n",
    )
    .unwrap();
    mbsync(&config);

    // The server has all that.
    let server = || -> String {
        let out = Command::new("python3")
            .arg("-c")
            .arg(SERVER_VIEW)
            .arg(s.listeners["imaps"].port().to_string())
            .arg(s.data().join("tls/self-signed.crt"))
            .output()
            .unwrap();
        let seen = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{seen}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        seen
    };
    let seen = server();
    assert!(seen.contains("(FLAGS (\\\\Flagged \\\\Seen))"), "{seen}");
    assert_eq!(seen.matches("FLAGS").count(), 2, "one deleted: {seen}");
    assert!(seen.contains("sent: Subject: sent from here"), "{seen}");

    // In step: a second run changes nothing on either side.
    let before = (files(&inbox), files(&store.join("Sent")));
    let said = mbsync(&config);
    assert_eq!(
        (files(&inbox), files(&store.join("Sent"))),
        before,
        "{said}"
    );
    assert_eq!(server(), seen, "the server is as it was:\n{said}");
}

/// What the server holds, seen with imaplib: INBOX's flags, Sent's
/// subject.
const SERVER_VIEW: &str = r#"
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
c = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx, timeout=20)
c.login("alice@example.org", "Hello world!")
c.select("INBOX", readonly=True)
print("inbox:", sorted(d.decode() for d in c.fetch("1:*", "(FLAGS)")[1]))
c.select("Sent", readonly=True)
print("sent:", c.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1].decode().strip())
"#;

#[test]
fn neomutt_opens_the_mailbox_and_reads_a_message() {
    let s = Server::start(LISTENERS);
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO sender.example");
    let r = c.send_mail(
        "carol@sender.example",
        &["alice@example.org"],
        "From: Carol <carol@sender.example>\r\nSubject: Lunch on Friday\r\n\r\nShall we meet at noon?\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    s.wait_for_mail("alice@example.org", 1);

    let home = tempfile::tempdir().unwrap();
    let rc = home.path().join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "set folder = \"imaps://alice@example.org@127.0.0.1:{port}/\"\n\
             set spoolfile = \"+INBOX\"\nset imap_pass = \"Hello world!\"\n\
             set certificate_file = \"{cert}\"\nset ssl_verify_host = no\n\
             set mail_check = 1\nset header_cache = \"\"\nset message_cachedir = \"\"\n\
             set pager_stop = yes\nset sort = date\n",
            port = s.listeners["imaps"].port(),
            cert = s.data().join("tls/self-signed.crt").display(),
        ),
    )
    .unwrap();
    let session = format!("mailbox-neomutt-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &session])
            .args(args)
            .output()
            .expect("tmux (`cargo xtask test` installs it)")
    };
    let started = tmux(&[
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "30",
        "-s",
        "t",
        &format!(
            "HOME={} TERM=xterm neomutt -n -F {}",
            home.path().display(),
            rc.display()
        ),
    ]);
    assert!(started.status.success(), "{started:?}");
    let screen =
        || String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "t"]).stdout).to_string();
    let wait_for = |text: &str| {
        crate::common::wait_until(
            Duration::from_secs(20),
            || format!("neomutt never showed {text:?}:\n{}", screen()),
            || screen().contains(text).then_some(()),
        )
    };
    // A self-signed certificate is offered for acceptance once.
    std::thread::sleep(Duration::from_millis(1500));
    if screen().contains("(r)eject") {
        tmux(&["send-keys", "-t", "t", "a"]);
    }
    wait_for("Lunch on Friday");
    tmux(&["send-keys", "-t", "t", "Enter"]);
    wait_for("Shall we meet at noon?");
    // Leaving the message and the program writes its \\Seen back.
    tmux(&["send-keys", "-t", "t", "q", "q"]);
    let maildir = s.data().join("mail/example.org/alice/cur");
    let seen = || {
        std::fs::read_dir(&maildir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .any(|n| n.ends_with(":2,S"))
    };
    crate::common::wait_until(
        Duration::from_secs(20),
        || format!("not marked seen:\n{}", screen()),
        || seen().then_some(()),
    );
    let _ = tmux(&["kill-server"]);
}
