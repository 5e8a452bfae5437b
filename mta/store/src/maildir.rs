//! Local delivery into Maildirs (`<data>/mail/<domain>/<user>/{tmp,new,cur}`).
//!
//! A message is written to `tmp/`, fsynced, renamed into `new/`, and `new/` is
//! fsynced, so a file in `new/` is always complete and durable. File names are
//! derived from the queue id and the recipient's index, never from the clock
//! or a counter, so delivering the same queue entry again after a crash lands
//! on the same name: the rename replaces the earlier copy instead of adding a
//! second one. Lines are stored with LF ends, as Maildir readers expect.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::time::{Duration, Instant};

use crate::body::Body;
use crate::fsutil::sync_dir;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The Maildirs under one root (`<data>/mail`). Clones share what they
/// know of each account's usage.
#[derive(Debug, Clone)]
pub struct Maildirs {
    root: PathBuf,
    hostname: String,
    /// Deliveries wait (deferred) while less than this would be left free:
    /// the queue needs room to go on accepting and recording.
    min_free_space: u64,
    /// Accounts' usage as last counted, and when (quota checks).
    usage: std::sync::Arc<std::sync::Mutex<HashMap<String, (Usage, Instant)>>>,
}

/// What an account's mail takes: every message in every folder (Maildir++
/// quota counts them all), in bytes as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub messages: u64,
}

/// How long a count of an account's usage is trusted: deliveries and the
/// IMAP server keep it up to date meanwhile; this bounds what a person
/// deleting files by hand leaves unseen.
const USAGE_FRESH: Duration = Duration::from_secs(300);

/// The size a Maildir file name records (`,S=<bytes>`), if any.
fn size_in_name(name: &str) -> Option<u64> {
    let base = name.split_once(":2,").map_or(name, |(b, _)| b);
    base.rsplit(',')
        .find_map(|field| field.strip_prefix("S="))?
        .parse()
        .ok()
}

/// Counts the messages of the Maildir at `dir` and its Maildir++ folders.
fn count_usage(dir: &Path) -> io::Result<Usage> {
    let mut usage = Usage::default();
    let mut folders = vec![dir.to_path_buf()];
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') && entry.path().join("cur").is_dir() {
            folders.push(entry.path());
        }
    }
    for folder in folders {
        for sub in ["cur", "new"] {
            let listing = match fs::read_dir(folder.join(sub)) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in listing.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if name.starts_with('.') {
                    continue;
                }
                let bytes = match size_in_name(&name) {
                    Some(n) => n,
                    None => entry.metadata().map_or(0, |m| m.len()),
                };
                usage.bytes += bytes;
                usage.messages += 1;
            }
        }
    }
    Ok(usage)
}

/// The outcome of one delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Written now.
    New(PathBuf),
    /// A previous attempt had already delivered it (found in `cur/`).
    AlreadyThere(PathBuf),
}

impl Maildirs {
    pub fn new(root: PathBuf, hostname: &str) -> Maildirs {
        // Maildir names may not contain '/' or ':' (the flag separator).
        let hostname = hostname.replace('/', "\\057").replace(':', "\\072");
        Maildirs {
            root,
            hostname,
            min_free_space: 0,
            usage: Default::default(),
        }
    }

    /// What `account`'s mail takes, counted at most every few minutes
    /// (deliveries add to the count; [`Maildirs::forget_usage`] makes the
    /// next call count again).
    pub fn usage(&self, account: &str) -> io::Result<Usage> {
        if let Some((usage, at)) = self.usage.lock().expect("usage").get(account)
            && at.elapsed() < USAGE_FRESH
        {
            return Ok(*usage);
        }
        let dir = self.path_of(account);
        let usage = match count_usage(&dir) {
            Ok(u) => u,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Usage::default(),
            Err(e) => return Err(e),
        };
        self.usage
            .lock()
            .expect("usage")
            .insert(account.to_string(), (usage, Instant::now()));
        Ok(usage)
    }

    /// `account`'s mail changed in a way not counted here (a client
    /// removed, copied or added messages): the next [`Maildirs::usage`]
    /// counts again.
    pub fn forget_usage(&self, account: &str) {
        self.usage.lock().expect("usage").remove(account);
    }

    /// Keeps `bytes` free on the file system of the Maildirs.
    pub fn with_min_free_space(self, bytes: u64) -> Maildirs {
        Maildirs {
            min_free_space: bytes,
            ..self
        }
    }

    /// The Maildir of an account (`local@domain`, lower case).
    pub fn path_of(&self, account: &str) -> PathBuf {
        let (local, domain) = account.rsplit_once('@').unwrap_or((account, "localhost"));
        self.root.join(domain).join(local)
    }

    /// The Maildir of `account`'s `folder` (Maildir++: `.<name>` inside
    /// the account's), or of its INBOX.
    pub fn folder_path(&self, account: &str, folder: Option<&str>) -> PathBuf {
        let inbox = self.path_of(account);
        match folder {
            Some(name) => inbox.join(format!(".{name}")),
            None => inbox,
        }
    }

    /// The unique file name of one copy:
    /// `<arrival>.M<µs>Q<id>R<index>.<host>,S=<size>,W=<IMAP size>`.
    pub fn file_name(
        &self,
        arrival_micros: u64,
        queue_id: &str,
        index: usize,
        size: StoredSize,
    ) -> String {
        format!(
            "{}.M{}Q{}R{}.{},S={},W={}",
            arrival_micros / 1_000_000,
            arrival_micros % 1_000_000,
            queue_id,
            index,
            self.hostname,
            size.bytes,
            size.crlf
        )
    }

    /// Delivers `head` (our added header lines, LF ends) followed by `body`
    /// (CRLF ends, converted to LF) to `account`'s `folder` (`None`: its
    /// INBOX; a folder is made when missing) under `name`. The file is
    /// complete and synced; its name in `new/` is durable after
    /// [`Maildirs::sync_new`].
    ///
    /// With `check_previous`, a copy that a mail client already moved to
    /// `cur/` counts as delivered; that scan is only needed for messages that
    /// may have been delivered before a crash.
    pub fn deliver(
        &self,
        account: &str,
        folder: Option<&str>,
        name: &str,
        head: &[u8],
        body: &Body,
        check_previous: bool,
    ) -> io::Result<Delivered> {
        let dir = self.folder_path(account, folder);
        self.ensure(&dir)?;
        let needed = self.min_free_space + head.len() as u64 + body.len();
        if let Some(free) = crate::queue::free_space(&dir)
            && free < needed
        {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "only {free} bytes free, and {} must stay free (min_free_space)",
                    self.min_free_space
                ),
            ));
        }
        let new_path = dir.join("new").join(name);
        if check_previous && let Some(found) = find_previous(&dir, name)? {
            return Ok(Delivered::AlreadyThere(found));
        }
        let tmp_path = dir.join("tmp").join(name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp_path)?;
        let mut w = BufWriter::with_capacity(64 * 1024, file);
        w.write_all(head)?;
        write_lf(body, &mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp_path, &new_path)?;
        if let Some((usage, _)) = self.usage.lock().expect("usage").get_mut(account) {
            usage.bytes += size_in_name(name).unwrap_or(head.len() as u64 + body.len());
            usage.messages += 1;
        }
        Ok(Delivered::New(new_path))
    }

    /// Makes the deliveries to `account` since the last call durable (fsync of
    /// `new/`). One call covers any number of deliveries, which is how a
    /// worker shares the cost across a batch.
    pub fn sync_new(&self, account: &str, folder: Option<&str>) -> io::Result<()> {
        sync_dir(&self.folder_path(account, folder).join("new"))
    }

    fn ensure(&self, dir: &Path) -> io::Result<()> {
        if dir.join("new").is_dir() && dir.join("cur").is_dir() && dir.join("tmp").is_dir() {
            return Ok(());
        }
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        // Make the new directories themselves durable, up to the root.
        sync_dir(dir)?;
        let mut p = dir.parent();
        while let Some(parent) = p {
            sync_dir(parent)?;
            if parent == self.root {
                break;
            }
            p = parent.parent();
        }
        Ok(())
    }
}

/// Size of `head` + `body` once CRLF became LF (reads a spooled body).
pub fn stored_size(head: &[u8], body: &Body) -> io::Result<StoredSize> {
    let mut count = Count::default();
    count.write_all(head)?;
    write_lf(body, &mut count)?;
    Ok(StoredSize {
        bytes: count.bytes,
        crlf: count.bytes + count.lines,
    })
}

/// The size of a message as stored (LF line ends) and as IMAP counts it
/// (RFC822.SIZE: every line end CRLF).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredSize {
    pub bytes: u64,
    pub crlf: u64,
}

/// The size as IMAP counts it that a Maildir file name records (`,W=`, as
/// Dovecot writes it), if any.
pub fn crlf_size_in_name(name: &str) -> Option<u64> {
    let base = name.split_once(":2,").map_or(name, |(b, _)| b);
    base.rsplit(',')
        .find_map(|field| field.strip_prefix("W="))?
        .parse()
        .ok()
}

/// Writes `body` with CRLF turned into LF, reading it a chunk at a time.
fn write_lf(body: &Body, w: &mut impl Write) -> io::Result<()> {
    let mut lf = LineEnds::default();
    let mut reader = body.reader()?;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            return lf.finish(w);
        }
        lf.write(w, &chunk[..n])?;
    }
}

/// Counts what is written, and its lines.
#[derive(Default)]
struct Count {
    bytes: u64,
    lines: u64,
}

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes += buf.len() as u64;
        self.lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// CRLF to LF over a stream of chunks (a CR that ends a chunk waits for
/// the next one); any other CR is kept.
#[derive(Default)]
struct LineEnds {
    pending_cr: bool,
}

impl LineEnds {
    fn write(&mut self, w: &mut impl Write, mut data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if std::mem::take(&mut self.pending_cr) && data.first() != Some(&b'\n') {
            w.write_all(b"\r")?;
        }
        if data.last() == Some(&b'\r') {
            self.pending_cr = true;
            data = &data[..data.len() - 1];
        }
        let mut start = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            if data[i] == b'\r' && data[i + 1] == b'\n' {
                w.write_all(&data[start..i])?;
                start = i + 1;
                i += 2;
            } else {
                i += 1;
            }
        }
        w.write_all(&data[start..])
    }

    fn finish(&mut self, w: &mut impl Write) -> io::Result<()> {
        if std::mem::take(&mut self.pending_cr) {
            w.write_all(b"\r")?;
        }
        Ok(())
    }
}

/// A copy delivered before (in `new/`, or moved to `cur/` by a client):
/// the same `<arrival>.M<µs>Q<id>R<index>.` — what names the message and
/// recipient — whatever follows (the host name may have changed since, the
/// client added flags).
fn find_previous(dir: &Path, name: &str) -> io::Result<Option<PathBuf>> {
    let identity = match name.match_indices('.').nth(1) {
        Some((at, _)) => &name[..=at],
        None => name,
    };
    let same = |file: &str| {
        file == name
            || (identity.len() < name.len() && file.starts_with(identity))
            || file
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(':'))
    };
    for sub in ["new", "cur"] {
        for entry in fs::read_dir(dir.join(sub))? {
            let entry = entry?;
            if same(&entry.file_name().to_string_lossy()) {
                return Ok(Some(entry.path()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_becomes_lf_and_size_matches() {
        let t = tempfile::tempdir().unwrap();
        let m = Maildirs::new(t.path().to_path_buf(), "mail.example.org");
        let head = b"Delivered-To: a@example.org\n";
        let body = b"Subject: x\r\n\r\nhello\r\nbare\rcr\r\n";
        let body = &Body::inline(body.to_vec());
        let size = stored_size(head, body).unwrap();
        let name = m.file_name(1_700_000_000_123_456, "ABC", 0, size);
        assert_eq!(
            name,
            format!(
                "1700000000.M123456QABCR0.mail.example.org,S={},W={}",
                size.bytes, size.crlf
            )
        );
        assert_eq!(crlf_size_in_name(&name), Some(size.bytes + 5));
        let Delivered::New(p) = m
            .deliver("a@example.org", None, &name, head, body, false)
            .unwrap()
        else {
            panic!()
        };
        let stored = fs::read(&p).unwrap();
        assert_eq!(
            stored,
            b"Delivered-To: a@example.org\nSubject: x\n\nhello\nbare\rcr\n"
        );
        assert_eq!(stored.len() as u64, size.bytes);
        assert!(p.starts_with(t.path().join("example.org/a/new")));
    }

    #[test]
    fn usage_counts_every_folder_and_follows_deliveries() {
        let t = tempfile::tempdir().unwrap();
        let m = Maildirs::new(t.path().to_path_buf(), "h");
        let account = "a@example.org";
        assert_eq!(m.usage(account).unwrap(), Usage::default());
        m.forget_usage(account);
        let body = &Body::inline(b"Subject: x\r\n\r\nhello\r\n".to_vec());
        let stored = stored_size(b"", body).unwrap();
        let size = stored.bytes;
        m.deliver(
            account,
            None,
            &m.file_name(1, "Q", 0, stored),
            b"",
            body,
            false,
        )
        .unwrap();
        let sent = m.path_of(account).join(".Sent");
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(sent.join(sub)).unwrap();
        }
        fs::write(sent.join("cur/1.x.h,S=1000:2,S"), b"short").unwrap();
        fs::write(sent.join("cur/2.y.h:2,"), b"12345").unwrap();
        // Counted from the disk once (the size a name records, or the
        // file's), then kept up to date by deliveries.
        assert_eq!(
            m.usage(account).unwrap(),
            Usage {
                bytes: size + 1000 + 5,
                messages: 3
            }
        );
        m.deliver(
            account,
            None,
            &m.file_name(2, "Q", 0, stored),
            b"",
            body,
            false,
        )
        .unwrap();
        assert_eq!(m.clone().usage(account).unwrap().bytes, 2 * size + 1005);
        fs::remove_file(sent.join("cur/1.x.h,S=1000:2,S")).unwrap();
        m.forget_usage(account);
        assert_eq!(
            m.usage(account).unwrap(),
            Usage {
                bytes: 2 * size + 5,
                messages: 3
            }
        );
    }

    #[test]
    fn redelivery_replaces_instead_of_duplicating() {
        let t = tempfile::tempdir().unwrap();
        let m = Maildirs::new(t.path().to_path_buf(), "h");
        m.deliver(
            "a@example.org",
            None,
            "n1",
            b"",
            &Body::inline(b"x\r\n".to_vec()),
            false,
        )
        .unwrap();
        m.deliver(
            "a@example.org",
            None,
            "n1",
            b"",
            &Body::inline(b"x\r\n".to_vec()),
            true,
        )
        .unwrap();
        assert_eq!(
            fs::read_dir(t.path().join("example.org/a/new"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn a_copy_moved_to_cur_counts_as_delivered() {
        let t = tempfile::tempdir().unwrap();
        let m = Maildirs::new(t.path().to_path_buf(), "h");
        let Delivered::New(p) = m
            .deliver(
                "a@example.org",
                None,
                "n1",
                b"",
                &Body::inline(b"x\r\n".to_vec()),
                false,
            )
            .unwrap()
        else {
            panic!()
        };
        let seen = t.path().join("example.org/a/cur/n1:2,S");
        fs::rename(&p, &seen).unwrap();
        assert_eq!(
            m.deliver(
                "a@example.org",
                None,
                "n1",
                b"",
                &Body::inline(b"x\r\n".to_vec()),
                true
            )
            .unwrap(),
            Delivered::AlreadyThere(seen)
        );
        assert_eq!(
            fs::read_dir(t.path().join("example.org/a/new"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_copy_delivered_under_another_host_name_counts_as_delivered() {
        // Delivered, then the owner named the host in the wizard and the
        // server stopped before the result was durable.
        let t = tempfile::tempdir().unwrap();
        let body = Body::inline(b"x\r\n".to_vec());
        let size = StoredSize { bytes: 2, crlf: 3 };
        let before = Maildirs::new(t.path().to_path_buf(), "mailbox.local");
        let name = before.file_name(1_795_988_179_066_600, "66171156F1EE0000", 0, size);
        let Delivered::New(first) = before
            .deliver("a@example.org", None, &name, b"", &body, false)
            .unwrap()
        else {
            panic!()
        };
        let after = Maildirs::new(t.path().to_path_buf(), "mail.example.org");
        let again = after.file_name(1_795_988_179_066_600, "66171156F1EE0000", 0, size);
        assert_ne!(name, again);
        assert_eq!(
            after
                .deliver("a@example.org", None, &again, b"", &body, true)
                .unwrap(),
            Delivered::AlreadyThere(first.clone())
        );
        // Also once a client moved it to cur/.
        let seen = t
            .path()
            .join("example.org/a/cur")
            .join(format!("{name}:2,S"));
        fs::rename(&first, &seen).unwrap();
        assert_eq!(
            after
                .deliver("a@example.org", None, &again, b"", &body, true)
                .unwrap(),
            Delivered::AlreadyThere(seen)
        );
        // Another recipient of the same message is another copy.
        let other = after.file_name(1_795_988_179_066_600, "66171156F1EE0000", 1, size);
        assert!(matches!(
            after
                .deliver("a@example.org", None, &other, b"", &body, true)
                .unwrap(),
            Delivered::New(_)
        ));
    }

    #[test]
    fn delivery_waits_rather_than_fill_the_disk() {
        let t = tempfile::tempdir().unwrap();
        let m = Maildirs::new(t.path().to_path_buf(), "h").with_min_free_space(u64::MAX / 4);
        let err = m
            .deliver(
                "a@example.org",
                None,
                "1.M1Q1R0.h,S=3",
                b"",
                &Body::inline(b"x\r\n".to_vec()),
                false,
            )
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(
            std::fs::read_dir(t.path().join("example.org/a/new"))
                .unwrap()
                .next()
                .is_none()
        );
        let m = Maildirs::new(t.path().to_path_buf(), "h").with_min_free_space(1);
        assert!(
            m.deliver(
                "a@example.org",
                None,
                "1.M1Q1R0.h,S=3",
                b"",
                &Body::inline(b"x\r\n".to_vec()),
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn line_ends_split_across_chunks_are_converted() {
        let mut out = Vec::new();
        let mut lf = LineEnds::default();
        for chunk in [&b"a\r"[..], b"\nb\r", b"c\r", b"", b"\r\n", b"\r"] {
            lf.write(&mut out, chunk).unwrap();
        }
        lf.finish(&mut out).unwrap();
        assert_eq!(out, b"a\nb\rc\r\n\r");
    }

    #[test]
    fn hostname_separators_are_escaped() {
        let m = Maildirs::new(PathBuf::from("/x"), "a/b:c");
        assert!(
            m.file_name(0, "Q", 1, StoredSize::default())
                .contains("a\\057b\\072c")
        );
    }
}
