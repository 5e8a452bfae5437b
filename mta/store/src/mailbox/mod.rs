//! The IMAP view of one account's Maildir (groundwork of the IMAP server):
//! Maildir++ folders (`INBOX` is the Maildir itself, `Sent` is `.Sent/`,
//! `Archive.2026` is `.Archive.2026/`, "." the hierarchy separator, as
//! Dovecot lays them out), and in `<maildir>/imap.redb` what Maildir
//! cannot hold: each folder's UIDVALIDITY, the next UID and the highest
//! MODSEQ, every message's UID, flags and MODSEQ, and the UIDs expunged
//! since (for QRESYNC).
//!
//! Mail arrives in `new/` from the delivery workers at any time. A sync
//! gives each new file the next UID — committed to the index first, then
//! the file moves to `cur/` with its flags in its name (`:2,FS`), as
//! Dovecot does — so a crash at any point leaves every message once and
//! never reuses a UID: a file whose UID is committed keeps it wherever it
//! is found, and the next UID only grows.
//!
//! Not here: the IMAP protocol (`mta-proto`), MIME structure, sessions.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::fsutil::sync_dir;

/// Folder name → its record.
const FOLDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("folders");
/// (folder id, UID) → the message's record.
const MESSAGES: TableDefinition<(u32, u32), &[u8]> = TableDefinition::new("messages");
/// (folder id, file base name) → UID.
const BY_FILE: TableDefinition<(u32, &str), u32> = TableDefinition::new("by_file");
/// Folder names subscribed to (LSUB): name → nothing.
const SUBSCRIBED: TableDefinition<&str, u8> = TableDefinition::new("subscribed");
/// (folder id, UID) → the MODSEQ at which it was expunged.
const EXPUNGED: TableDefinition<(u32, u32), u64> = TableDefinition::new("expunged");
/// (folder id, UID) → its arrival time (8 bytes, little-endian unix
/// seconds) and header section as stored: a cache (a message's file never
/// changes), so what ENVELOPE and header searches need is read without
/// opening the file again.
const HEADERS: TableDefinition<(u32, u32), &[u8]> = TableDefinition::new("headers");

/// The key in FOLDERS under which the last UIDVALIDITY given is kept
/// (no folder name has a control character).
const LAST_VALIDITY: &str = "\u{0}uidvalidity";

/// The IMAP name of the Maildir itself.
pub const INBOX: &str = "INBOX";
/// The hierarchy separator (Maildir++'s).
pub const SEPARATOR: char = '.';

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FolderRecord {
    id: u32,
    uid_validity: u32,
    uid_next: u32,
    highest_modseq: u64,
}

/// The system flags Maildir keeps in file names (RFC 9051 §2.3.2; Maildir's
/// letters: D, F, R, S, T).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    pub seen: bool,
    pub answered: bool,
    pub flagged: bool,
    pub deleted: bool,
    pub draft: bool,
}

impl Flags {
    /// The flags of a Maildir file name's info (`…:2,FS`).
    pub fn of_file(name: &str) -> Flags {
        let letters = name.split_once(":2,").map_or("", |(_, f)| f);
        Flags {
            seen: letters.contains('S'),
            answered: letters.contains('R'),
            flagged: letters.contains('F'),
            deleted: letters.contains('T'),
            draft: letters.contains('D'),
        }
    }

    /// Maildir's info suffix for these flags, letters in ASCII order.
    pub fn info(self) -> String {
        let mut s = String::from(":2,");
        for (on, letter) in [
            (self.draft, 'D'),
            (self.flagged, 'F'),
            (self.answered, 'R'),
            (self.seen, 'S'),
            (self.deleted, 'T'),
        ] {
            if on {
                s.push(letter);
            }
        }
        s
    }
}

/// One message as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub uid: u32,
    /// The file's unique part (its name without the `:2,` info).
    pub base: String,
    pub flags: Flags,
    pub modseq: u64,
    /// Added (APPEND, COPY) but not yet seen by a session: the next sync
    /// reports it as new (IMAP4rev1's \Recent).
    pub unseen_by_sessions: bool,
}

/// A folder's state after a sync: what SELECT reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub name: String,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    /// By UID, ascending: message sequence number n is `messages[n - 1]`.
    pub messages: Vec<Message>,
    /// The UIDs this sync gave out: new to whoever asked (IMAP4rev1's
    /// \Recent; one session sees them so).
    pub recent: Vec<u32>,
}

/// One account's folders and their index.
pub struct Mailbox {
    maildir: PathBuf,
    db: redb::Database,
    /// Headers read and not yet cached: (folder, UID, header).
    pending: std::sync::Mutex<Vec<(String, u32, read::Cached)>>,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("records encode")
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> anyhow::Result<T> {
    postcard::from_bytes(bytes).context("a damaged record in the IMAP index")
}

/// The index's key of folder `name` (INBOX in any case is INBOX).
fn key(name: &str) -> &str {
    if name.eq_ignore_ascii_case(INBOX) {
        INBOX
    } else {
        name
    }
}

/// Seconds since the epoch, as UIDVALIDITY (a new folder, or an index made
/// anew, gets a value its clients have not seen).
fn now_u32() -> u32 {
    u32::try_from(crate::envelope::now_secs()).unwrap_or(u32::MAX)
}

impl Mailbox {
    /// The index of the Maildir at `maildir` (made on first use; a damaged
    /// one is set aside and rebuilt — its folders get new UIDVALIDITYs, so
    /// clients start over rather than trust UIDs that changed).
    pub fn open(maildir: &Path) -> anyhow::Result<Mailbox> {
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(maildir.join(sub))
                .with_context(|| format!("creating {}", maildir.join(sub).display()))?;
        }
        let (db, _) = crate::fsutil::open_database(
            &maildir.join("imap.redb"),
            "the IMAP index (UIDs start again with a new UIDVALIDITY)",
            4 << 20,
            |db| {
                let w = db.begin_write()?;
                w.open_table(FOLDERS)?;
                w.open_table(MESSAGES)?;
                w.open_table(BY_FILE)?;
                w.open_table(EXPUNGED)?;
                w.open_table(SUBSCRIBED)?;
                w.open_table(HEADERS)?;
                w.commit()?;
                Ok(())
            },
        )?;
        Ok(Mailbox {
            maildir: maildir.to_path_buf(),
            db,
            pending: Default::default(),
        })
    }

    /// The Maildir directory of folder `name`.
    pub fn dir_of(&self, name: &str) -> anyhow::Result<PathBuf> {
        if name.eq_ignore_ascii_case(INBOX) {
            return Ok(self.maildir.clone());
        }
        let valid = !name.is_empty()
            && !name.starts_with(SEPARATOR)
            && !name.ends_with(SEPARATOR)
            && !name.contains("..")
            && !name.contains('/')
            && !name.chars().any(char::is_control);
        if !valid {
            bail!("{name:?} is not a folder name");
        }
        Ok(self.maildir.join(format!("{SEPARATOR}{name}")))
    }

    /// The folders: INBOX and every Maildir++ folder on disk.
    pub fn folders(&self) -> anyhow::Result<Vec<String>> {
        let mut names = vec![INBOX.to_string()];
        for entry in fs::read_dir(&self.maildir)?.flatten() {
            let file = entry.file_name().to_string_lossy().to_string();
            if let Some(name) = file.strip_prefix(SEPARATOR)
                && !name.is_empty()
                && entry.path().join("cur").is_dir()
            {
                names.push(name.to_string());
            }
        }
        names[1..].sort();
        Ok(names)
    }

    /// Makes folder `name` (its Maildir, durable).
    pub fn create(&self, name: &str) -> anyhow::Result<()> {
        let dir = self.dir_of(name)?;
        if dir.join("cur").is_dir() {
            bail!("{name} exists already");
        }
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        sync_dir(&dir)?;
        sync_dir(&self.maildir)?;
        Ok(())
    }

    /// The folder's record, made when first seen.
    fn folder_record(
        &self,
        folders: &mut redb::Table<&str, &[u8]>,
        name: &str,
    ) -> anyhow::Result<FolderRecord> {
        if let Some(bytes) = folders.get(key(name))? {
            return decode(bytes.value());
        }
        let mut id = 0;
        for entry in folders.iter()? {
            let (k, v) = entry?;
            if k.value() != LAST_VALIDITY {
                id = id.max(decode::<FolderRecord>(v.value())?.id + 1);
            }
        }
        // Never a UIDVALIDITY given before, even to a folder deleted and
        // made again within the same second (its clients' UIDs would
        // look valid).
        let last = match folders.get(LAST_VALIDITY)? {
            Some(v) => decode::<u32>(v.value())?,
            None => 0,
        };
        let uid_validity = now_u32().max(last.saturating_add(1));
        folders.insert(LAST_VALIDITY, encode(&uid_validity).as_slice())?;
        let record = FolderRecord {
            id,
            uid_validity,
            uid_next: 1,
            highest_modseq: 1,
        };
        folders.insert(key(name), encode(&record).as_slice())?;
        Ok(record)
    }

    /// Brings the index up to date with folder `name` on disk and returns
    /// its state: files new to it get the next UIDs (in the order of their
    /// names, which start with their arrival time) and move to `cur/`;
    /// flags changed in file names get a new MODSEQ; files gone are
    /// expunged.
    pub fn sync(&self, name: &str) -> anyhow::Result<Folder> {
        self.sync_as(name, true)
    }

    /// As [`Mailbox::sync`], for a look that is not a session's own (IMAP
    /// STATUS): messages new to sessions stay so (`recent` lists them).
    pub fn sync_quietly(&self, name: &str) -> anyhow::Result<Folder> {
        self.sync_as(name, false)
    }

    fn sync_as(&self, name: &str, claim: bool) -> anyhow::Result<Folder> {
        self.flush_headers()?;
        let dir = self.dir_of(name)?;
        let mut on_disk: BTreeMap<String, (String, bool)> = BTreeMap::new();
        for (sub, in_new) in [("cur", false), ("new", true)] {
            let listing = match fs::read_dir(dir.join(sub)) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::NotFound => bail!("there is no folder {name}"),
                Err(e) => return Err(e).context(format!("reading {}", dir.join(sub).display())),
            };
            for entry in listing.flatten() {
                let file = entry.file_name().to_string_lossy().to_string();
                if file.starts_with('.') {
                    continue;
                }
                on_disk.insert(base_of(&file).to_string(), (file, in_new));
            }
        }

        let w = self.db.begin_write()?;
        let mut moves: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut recent = Vec::new();
        let folder = {
            let mut folders = w.open_table(FOLDERS)?;
            let mut messages = w.open_table(MESSAGES)?;
            let mut by_file = w.open_table(BY_FILE)?;
            let mut expunged = w.open_table(EXPUNGED)?;
            let created = folders.get(key(name))?.is_none();
            let mut record = self.folder_record(&mut folders, name)?;
            let id = record.id;

            let mut known: HashMap<String, Message> = HashMap::new();
            for entry in messages.range((id, 0)..=(id, u32::MAX))? {
                let (_, v) = entry?;
                let m: Message = decode(v.value())?;
                known.insert(m.base.clone(), m);
            }
            // Every change of this sync shares one MODSEQ (RFC 7162 allows
            // it: they happened at once).
            let mut changed = false;
            let next_modseq = record.highest_modseq + 1;
            // Gone from disk: expunged (a client of another server, or a
            // person, removed the file).
            let mut headers = w.open_table(HEADERS)?;
            for (base, m) in &known {
                if !on_disk.contains_key(base) {
                    headers.remove((id, m.uid))?;
                    messages.remove((id, m.uid))?;
                    by_file.remove((id, base.as_str()))?;
                    expunged.insert((id, m.uid), next_modseq)?;
                    changed = true;
                }
            }
            // New messages get their UIDs in the order they arrived, as
            // their names tell (and as Dovecot numbers them), not in the
            // names' string order: `M99000` came before `M123456`.
            let mut in_order: Vec<_> = on_disk.iter().collect();
            in_order.sort_by(|a, b| arrival_order(a.0, b.0));
            for (base, (file, in_new)) in in_order {
                let flags = Flags::of_file(file);
                if let Some(m) = known.get(base)
                    && m.unseen_by_sessions
                {
                    recent.push(m.uid);
                    if claim {
                        let seen = Message {
                            unseen_by_sessions: false,
                            ..m.clone()
                        };
                        messages.insert((id, m.uid), encode(&seen).as_slice())?;
                    }
                }
                match known.get(base) {
                    Some(m) if m.flags == flags => {}
                    Some(m) => {
                        let updated = Message {
                            flags,
                            modseq: next_modseq,
                            unseen_by_sessions: m.unseen_by_sessions && !claim,
                            ..m.clone()
                        };
                        messages.insert((id, m.uid), encode(&updated).as_slice())?;
                        changed = true;
                    }
                    None => {
                        let uid = record.uid_next;
                        record.uid_next = uid.checked_add(1).context("UIDs are used up")?;
                        let m = Message {
                            uid,
                            base: base.clone(),
                            flags,
                            modseq: next_modseq,
                            unseen_by_sessions: !claim,
                        };
                        messages.insert((id, uid), encode(&m).as_slice())?;
                        by_file.insert((id, base.as_str()), uid)?;
                        recent.push(uid);
                        changed = true;
                    }
                }
                if *in_new {
                    let to = format!("{base}{}", flags.info());
                    moves.push((dir.join("new").join(file), dir.join("cur").join(to)));
                }
            }
            if changed {
                record.highest_modseq = next_modseq;
            }
            let unchanged = !changed && moves.is_empty() && (recent.is_empty() || !claim);
            if unchanged && !created {
                (record, false)
            } else {
                folders.insert(key(name), encode(&record).as_slice())?;
                (record, true)
            }
        };
        let (folder, write) = folder;
        // The UIDs are durable before any file moves: a file found in
        // `cur/` or `new/` after a crash keeps the UID its name maps to.
        // A sync that found nothing new writes nothing (an IDLE session
        // looks twice a second).
        if write {
            w.commit()?;
        } else {
            w.abort()?;
        }
        for (from, to) in &moves {
            match fs::rename(from, to) {
                Ok(()) => {}
                // Expunged or moved meanwhile: the next sync sees it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context(format!("moving {}", from.display())),
            }
        }
        if !moves.is_empty() {
            sync_dir(&dir.join("cur"))?;
            sync_dir(&dir.join("new"))?;
        }
        let mut state = self.state(name, &folder)?;
        state.recent = recent;
        Ok(state)
    }

    fn state(&self, name: &str, record: &FolderRecord) -> anyhow::Result<Folder> {
        let r = self.db.begin_read()?;
        let messages = r.open_table(MESSAGES)?;
        let mut list = Vec::new();
        for entry in messages.range((record.id, 0)..=(record.id, u32::MAX))? {
            let (_, v) = entry?;
            list.push(decode::<Message>(v.value())?);
        }
        Ok(Folder {
            name: name.to_string(),
            uid_validity: record.uid_validity,
            uid_next: record.uid_next,
            highest_modseq: record.highest_modseq,
            messages: list,
            recent: Vec::new(),
        })
    }

    /// Message `uid` of folder `name` as the index has it (no sync: FETCH
    /// reads what SELECT or NOOP listed).
    pub fn message(&self, name: &str, uid: u32) -> anyhow::Result<Option<Message>> {
        let r = self.db.begin_read()?;
        let folders = r.open_table(FOLDERS)?;
        let Some(bytes) = folders.get(key(name))? else {
            return Ok(None);
        };
        let record: FolderRecord = decode(bytes.value())?;
        let messages = r.open_table(MESSAGES)?;
        match messages.get((record.id, uid))? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Sets the flags of message `uid` in folder `name` (the file is
    /// renamed, the index gets a new MODSEQ); the new MODSEQ.
    pub fn set_flags(&self, name: &str, uid: u32, flags: Flags) -> anyhow::Result<u64> {
        let dir = self.dir_of(name)?;
        let w = self.db.begin_write()?;
        let (modseq, from, to) = {
            let mut folders = w.open_table(FOLDERS)?;
            let mut messages = w.open_table(MESSAGES)?;
            let mut record = self.folder_record(&mut folders, name)?;
            let Some(bytes) = messages.get((record.id, uid))?.map(|v| v.value().to_vec()) else {
                bail!("no message with UID {uid} in {name}");
            };
            let m: Message = decode(&bytes)?;
            let from = self.file_of(name, &m)?;
            record.highest_modseq += 1;
            let updated = Message {
                flags,
                modseq: record.highest_modseq,
                ..m.clone()
            };
            messages.insert((record.id, uid), encode(&updated).as_slice())?;
            folders.insert(key(name), encode(&record).as_slice())?;
            let to = dir.join("cur").join(format!("{}{}", m.base, flags.info()));
            (record.highest_modseq, from, to)
        };
        let Some(from) = from else {
            bail!("message {uid} of {name} is gone");
        };
        // The file first: if the commit is lost, the next sync reads the
        // flags from the name and gives them a MODSEQ then.
        fs::rename(&from, &to)?;
        sync_dir(&dir.join("cur"))?;
        w.commit()?;
        Ok(modseq)
    }

    /// Removes messages `uids` of folder `name` (their files, then their
    /// records, noted as expunged with a new MODSEQ); the UIDs removed.
    pub fn expunge(&self, name: &str, uids: &[u32]) -> anyhow::Result<Vec<u32>> {
        let dir = self.dir_of(name)?;
        let w = self.db.begin_write()?;
        let mut removed = Vec::new();
        {
            let mut folders = w.open_table(FOLDERS)?;
            let mut messages = w.open_table(MESSAGES)?;
            let mut by_file = w.open_table(BY_FILE)?;
            let mut expunged = w.open_table(EXPUNGED)?;
            let mut headers = w.open_table(HEADERS)?;
            let mut record = self.folder_record(&mut folders, name)?;
            let modseq = record.highest_modseq + 1;
            for uid in uids {
                let Some(bytes) = messages.get((record.id, *uid))?.map(|v| v.value().to_vec())
                else {
                    continue;
                };
                let m: Message = decode(&bytes)?;
                // The file first: a crash before the commit leaves a record
                // whose file is gone, which the next sync expunges.
                if let Some(file) = self.file_of(name, &m)? {
                    match fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e).context(format!("removing {}", file.display())),
                    }
                }
                messages.remove((record.id, *uid))?;
                headers.remove((record.id, *uid))?;
                by_file.remove((record.id, m.base.as_str()))?;
                expunged.insert((record.id, *uid), modseq)?;
                removed.push(*uid);
            }
            if !removed.is_empty() {
                record.highest_modseq = modseq;
                folders.insert(key(name), encode(&record).as_slice())?;
            }
        }
        sync_dir(&dir.join("cur"))?;
        w.commit()?;
        Ok(removed)
    }

    /// Adds a message to folder `name` (`bytes` with LF line ends, as
    /// Maildir keeps them) with `flags`, arrived at `arrival` (unix
    /// seconds: the file's time); its UID. The UID is committed before
    /// the file appears in `cur/`: a crash in between leaves a record
    /// the next sync expunges, never a reused UID.
    pub fn append(
        &self,
        name: &str,
        bytes: &[u8],
        flags: Flags,
        arrival: i64,
        unique: &str,
    ) -> anyhow::Result<u32> {
        let dir = self.dir_of(name)?;
        if !dir.join("cur").is_dir() {
            bail!("there is no folder {name}");
        }
        // Sizes in the name, as delivery writes them: stored, and as IMAP
        // counts it (every line end CRLF).
        let lines = bytes.iter().filter(|b| **b == b'\n').count();
        let base = format!(
            "{}.{unique},S={},W={}",
            arrival.max(0),
            bytes.len(),
            bytes.len() + lines
        );
        let tmp = dir.join("tmp").join(&base);
        {
            use std::io::Write;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            f.write_all(bytes)?;
            f.sync_all()?;
            let when =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(arrival.max(0) as u64);
            f.set_modified(when)?;
        }
        let w = self.db.begin_write()?;
        let uid = {
            let mut folders = w.open_table(FOLDERS)?;
            let mut messages = w.open_table(MESSAGES)?;
            let mut by_file = w.open_table(BY_FILE)?;
            let mut record = self.folder_record(&mut folders, name)?;
            let uid = record.uid_next;
            record.uid_next = uid.checked_add(1).context("UIDs are used up")?;
            record.highest_modseq += 1;
            let m = Message {
                uid,
                base: base.clone(),
                flags,
                modseq: record.highest_modseq,
                unseen_by_sessions: true,
            };
            messages.insert((record.id, uid), encode(&m).as_slice())?;
            by_file.insert((record.id, base.as_str()), uid)?;
            folders.insert(key(name), encode(&record).as_slice())?;
            uid
        };
        w.commit()?;
        fs::rename(
            &tmp,
            dir.join("cur").join(format!("{base}{}", flags.info())),
        )?;
        sync_dir(&dir.join("cur"))?;
        Ok(uid)
    }

    /// Copies messages `uids` of folder `from` into folder `to` (hard
    /// links: the same file twice costs nothing); the (old, new) UIDs.
    pub fn copy(&self, from: &str, uids: &[u32], to: &str) -> anyhow::Result<Vec<(u32, u32)>> {
        let target = self.dir_of(to)?;
        if !target.join("cur").is_dir() {
            bail!("there is no folder {to}");
        }
        let source = self.sync_quietly(from)?;
        let mut links = Vec::new();
        for uid in uids {
            let Some(m) = source.messages.iter().find(|m| m.uid == *uid) else {
                continue;
            };
            let Some(file) = self.file_of(from, m)? else {
                continue;
            };
            links.push((m.clone(), file));
        }
        let w = self.db.begin_write()?;
        let mut pairs = Vec::new();
        let mut made = Vec::new();
        {
            let mut folders = w.open_table(FOLDERS)?;
            let mut messages = w.open_table(MESSAGES)?;
            let mut by_file = w.open_table(BY_FILE)?;
            let mut record = self.folder_record(&mut folders, to)?;
            record.highest_modseq += 1;
            for (m, file) in links {
                let mut base = m.base.clone();
                while by_file.get((record.id, base.as_str()))?.is_some() {
                    base.push('c');
                }
                let uid = record.uid_next;
                record.uid_next = uid.checked_add(1).context("UIDs are used up")?;
                let copy = Message {
                    uid,
                    base: base.clone(),
                    flags: m.flags,
                    modseq: record.highest_modseq,
                    unseen_by_sessions: true,
                };
                messages.insert((record.id, uid), encode(&copy).as_slice())?;
                by_file.insert((record.id, base.as_str()), uid)?;
                made.push((
                    file,
                    target.join("cur").join(format!("{base}{}", m.flags.info())),
                ));
                pairs.push((m.uid, uid));
            }
            folders.insert(key(to), encode(&record).as_slice())?;
        }
        // The links first: a record without its file would be expunged by
        // the next sync, a copy reported done must exist.
        for (file, link) in &made {
            match fs::hard_link(file, link) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) => {
                    fs::copy(file, link).with_context(|| format!("copying {}", file.display()))?;
                }
            }
        }
        sync_dir(&target.join("cur"))?;
        w.commit()?;
        Ok(pairs)
    }

    /// Moves messages `uids` of folder `from` into folder `to`; the (old,
    /// new) UIDs. Each file is renamed into the target (atomic: a message
    /// is always in one folder), then one transaction moves the records:
    /// after a crash between the two, the next syncs give the moved file
    /// a new UID in the target and expunge its old record.
    pub fn move_to(&self, from: &str, uids: &[u32], to: &str) -> anyhow::Result<Vec<(u32, u32)>> {
        let (source, target) = (self.dir_of(from)?, self.dir_of(to)?);
        if !target.join("cur").is_dir() {
            bail!("there is no folder {to}");
        }
        let state = self.sync_quietly(from)?;
        let w = self.db.begin_write()?;
        let mut pairs = Vec::new();
        {
            let mut folders = w.open_table(FOLDERS)?;
            let mut messages = w.open_table(MESSAGES)?;
            let mut by_file = w.open_table(BY_FILE)?;
            let mut expunged = w.open_table(EXPUNGED)?;
            let mut headers = w.open_table(HEADERS)?;
            let mut src = self.folder_record(&mut folders, from)?;
            let mut dst = self.folder_record(&mut folders, to)?;
            src.highest_modseq += 1;
            dst.highest_modseq += 1;
            for uid in uids {
                let Some(m) = state.messages.iter().find(|m| m.uid == *uid) else {
                    continue;
                };
                let Some(file) = self.file_of(from, m)? else {
                    continue;
                };
                let mut base = m.base.clone();
                while by_file.get((dst.id, base.as_str()))?.is_some() {
                    base.push('m');
                }
                fs::rename(
                    &file,
                    target.join("cur").join(format!("{base}{}", m.flags.info())),
                )
                .with_context(|| format!("moving {}", file.display()))?;
                let new_uid = dst.uid_next;
                dst.uid_next = new_uid.checked_add(1).context("UIDs are used up")?;
                let moved = Message {
                    uid: new_uid,
                    base: base.clone(),
                    flags: m.flags,
                    modseq: dst.highest_modseq,
                    unseen_by_sessions: true,
                };
                messages.insert((dst.id, new_uid), encode(&moved).as_slice())?;
                by_file.insert((dst.id, base.as_str()), new_uid)?;
                messages.remove((src.id, m.uid))?;
                headers.remove((src.id, m.uid))?;
                by_file.remove((src.id, m.base.as_str()))?;
                expunged.insert((src.id, m.uid), src.highest_modseq)?;
                pairs.push((m.uid, new_uid));
            }
            folders.insert(key(from), encode(&src).as_slice())?;
            folders.insert(key(to), encode(&dst).as_slice())?;
        }
        sync_dir(&target.join("cur"))?;
        sync_dir(&source.join("cur"))?;
        w.commit()?;
        Ok(pairs)
    }

    /// Removes folder `name` with its messages (INBOX cannot go).
    pub fn delete(&self, name: &str) -> anyhow::Result<()> {
        if name.eq_ignore_ascii_case(INBOX) {
            bail!("INBOX cannot be deleted");
        }
        let dir = self.dir_of(name)?;
        if !dir.join("cur").is_dir() {
            bail!("there is no folder {name}");
        }
        let w = self.db.begin_write()?;
        {
            let mut folders = w.open_table(FOLDERS)?;
            let removed = folders.remove(key(name))?.map(|v| v.value().to_vec());
            if let Some(bytes) = removed {
                let record: FolderRecord = decode(&bytes)?;
                let mut messages = w.open_table(MESSAGES)?;
                let mut by_file = w.open_table(BY_FILE)?;
                let mut expunged = w.open_table(EXPUNGED)?;
                let mut headers = w.open_table(HEADERS)?;
                headers.retain_in((record.id, 0)..=(record.id, u32::MAX), |_, _| false)?;
                messages.retain_in((record.id, 0)..=(record.id, u32::MAX), |_, _| false)?;
                expunged.retain_in((record.id, 0)..=(record.id, u32::MAX), |_, _| false)?;
                by_file.retain(|(id, _), _| id != record.id)?;
            }
        }
        // The directory goes first (renamed aside, then removed): a crash
        // leaves the folder whole or gone from the listing.
        let aside = self
            .maildir
            .join(format!("deleted.{}", crate::envelope::now_micros()));
        fs::rename(&dir, &aside)?;
        sync_dir(&self.maildir)?;
        w.commit()?;
        let _ = fs::remove_dir_all(&aside);
        Ok(())
    }

    /// Renames folder `from` to `to` (and the folders below it).
    pub fn rename(&self, from: &str, to: &str) -> anyhow::Result<()> {
        if from.eq_ignore_ascii_case(INBOX) {
            bail!("renaming INBOX is not served yet");
        }
        let (old, new) = (self.dir_of(from)?, self.dir_of(to)?);
        if !old.join("cur").is_dir() {
            bail!("there is no folder {from}");
        }
        if new.exists() || to.eq_ignore_ascii_case(INBOX) {
            bail!("{to} exists already");
        }
        let below: Vec<String> = self
            .folders()?
            .into_iter()
            .filter(|f| f.starts_with(&format!("{from}{SEPARATOR}")))
            .collect();
        let w = self.db.begin_write()?;
        {
            let mut folders = w.open_table(FOLDERS)?;
            for (a, b) in std::iter::once((from.to_string(), to.to_string())).chain(
                below
                    .iter()
                    .map(|f| (f.clone(), format!("{to}{}", &f[from.len()..]))),
            ) {
                let bytes = folders.remove(a.as_str())?.map(|v| v.value().to_vec());
                if let Some(bytes) = bytes {
                    folders.insert(b.as_str(), bytes.as_slice())?;
                }
            }
        }
        fs::rename(&old, &new)?;
        for f in &below {
            let renamed = format!("{to}{}", &f[from.len()..]);
            fs::rename(self.dir_of(f)?, self.dir_of(&renamed)?)?;
        }
        sync_dir(&self.maildir)?;
        w.commit()?;
        Ok(())
    }

    /// Subscribes to folder `name` (or not).
    pub fn subscribe(&self, name: &str, on: bool) -> anyhow::Result<()> {
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(SUBSCRIBED)?;
            if on {
                t.insert(key(name), 1)?;
            } else {
                t.remove(key(name))?;
            }
        }
        w.commit()?;
        Ok(())
    }

    /// The folders subscribed to.
    pub fn subscriptions(&self) -> anyhow::Result<Vec<String>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(SUBSCRIBED)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            out.push(entry?.0.value().to_string());
        }
        Ok(out)
    }

    /// The UIDs expunged from folder `name` after `modseq` (QRESYNC's
    /// VANISHED (EARLIER)).
    pub fn expunged_since(&self, name: &str, modseq: u64) -> anyhow::Result<Vec<u32>> {
        let r = self.db.begin_read()?;
        let folders = r.open_table(FOLDERS)?;
        let Some(bytes) = folders.get(key(name))? else {
            return Ok(Vec::new());
        };
        let record: FolderRecord = decode(bytes.value())?;
        let expunged = r.open_table(EXPUNGED)?;
        let mut uids = Vec::new();
        for entry in expunged.range((record.id, 0)..=(record.id, u32::MAX))? {
            let (k, v) = entry?;
            if v.value() > modseq {
                uids.push(k.value().1);
            }
        }
        Ok(uids)
    }
}

mod names;
use names::{arrival_order, base_of};
mod read;
pub use read::arrival;
#[cfg(test)]
mod tests;
