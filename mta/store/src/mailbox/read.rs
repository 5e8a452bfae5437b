//! Reading a message: its file, and its header section through the
//! index's cache (table `headers`), which ENVELOPE and header searches
//! read instead of opening the file again.

use std::fs;
use std::io;
use std::path::PathBuf;

use anyhow::Context;
use redb::{ReadableDatabase, ReadableTable};

use super::{FOLDERS, FolderRecord, HEADERS, MESSAGES, Mailbox, Message, base_of, decode, key};

/// A header section longer than this is not kept in the cache (nor read
/// further: no real one is this long).
const MAX_HEADER: usize = 64 * 1024;
/// What a header read asks of the disk at a time.
const HEADER_CHUNK: usize = 8 * 1024;
/// Headers read and not yet in the cache: written together (one commit)
/// at this many, or at the next sync.
const PENDING_HEADERS: usize = 256;

/// A message's header section as cached: as stored (LF line ends), the
/// empty line included, and the file's modification time (its arrival).
#[derive(Debug, Clone)]
pub(super) struct Cached {
    arrived: i64,
    header: Vec<u8>,
}

impl Cached {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.header.len());
        out.extend_from_slice(&self.arrived.to_le_bytes());
        out.extend_from_slice(&self.header);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Cached> {
        let (arrived, header) = bytes.split_first_chunk::<8>()?;
        Some(Cached {
            arrived: i64::from_le_bytes(*arrived),
            header: header.to_vec(),
        })
    }
}

/// Where the header section of a Maildir file (LF line ends, or CRLF from
/// another writer) ends, after its empty line.
pub(super) fn header_end(bytes: &[u8]) -> Option<usize> {
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = bytes.windows(3).position(|w| w == b"\n\r\n").map(|i| i + 3);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When a message arrived: its file's modification time (unix seconds),
/// as Maildir readers such as Dovecot take it.
pub fn arrival(file: &fs::File) -> i64 {
    file.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

impl Mailbox {
    /// The header section of message `uid` of folder `name` (as stored:
    /// LF line ends; the empty line included) and when it arrived (unix
    /// seconds), from the cache or read from the file's start (and
    /// cached); `None` if the message is gone.
    pub fn header(&self, name: &str, uid: u32) -> anyhow::Result<Option<(Vec<u8>, i64)>> {
        // One read: the cache, else where the file is.
        let message = {
            let r = self.db.begin_read()?;
            let folders = r.open_table(FOLDERS)?;
            let Some(bytes) = folders.get(key(name))? else {
                return Ok(None);
            };
            let id = decode::<FolderRecord>(bytes.value())?.id;
            if let Some(v) = r.open_table(HEADERS)?.get((id, uid))?
                && let Some(c) = Cached::decode(v.value())
            {
                return Ok(Some((c.header, c.arrived)));
            }
            match r.open_table(MESSAGES)?.get((id, uid))? {
                Some(v) => decode::<Message>(v.value())?,
                None => return Ok(None),
            }
        };
        let message = &message;
        if let Some((_, _, c)) = self
            .pending
            .lock()
            .expect("pending headers")
            .iter()
            .find(|(n, uid, _)| *uid == message.uid && n == name)
        {
            return Ok(Some((c.header.clone(), c.arrived)));
        }
        let Some(mut file) = self.open_file(name, message)? else {
            return Ok(None);
        };
        let arrived = arrival(&file);
        let mut bytes = Vec::with_capacity(HEADER_CHUNK);
        let mut chunk = vec![0u8; HEADER_CHUNK];
        let complete = loop {
            use std::io::Read;
            let n = file.read(&mut chunk)?;
            // Where the empty line may start: the new bytes and the two
            // before them.
            let from = bytes.len().saturating_sub(2);
            bytes.extend_from_slice(&chunk[..n]);
            if let Some(end) = header_end(&bytes[from..]) {
                bytes.truncate(from + end);
                break true;
            }
            if n == 0 {
                break true;
            }
            if bytes.len() >= MAX_HEADER {
                break false;
            }
        };
        if complete {
            let full = {
                let mut pending = self.pending.lock().expect("pending headers");
                pending.push((
                    name.to_string(),
                    message.uid,
                    Cached {
                        arrived,
                        header: bytes.clone(),
                    },
                ));
                pending.len() >= PENDING_HEADERS
            };
            if full {
                self.flush_headers()?;
            }
        }
        Ok(Some((bytes, arrived)))
    }

    /// Writes the headers read since the last time into the cache (one
    /// commit, not synced: a cache lost in a crash is only read again).
    pub fn flush_headers(&self) -> anyhow::Result<()> {
        let batch = std::mem::take(&mut *self.pending.lock().expect("pending headers"));
        if batch.is_empty() {
            return Ok(());
        }
        let mut w = self.db.begin_write()?;
        w.set_durability(redb::Durability::None)?;
        {
            let folders = w.open_table(FOLDERS)?;
            let messages = w.open_table(MESSAGES)?;
            let mut headers = w.open_table(HEADERS)?;
            for (name, uid, cached) in batch {
                let Some(bytes) = folders.get(key(&name))? else {
                    continue;
                };
                let id = decode::<FolderRecord>(bytes.value())?.id;
                // Not for a message expunged meanwhile.
                if messages.get((id, uid))?.is_some() {
                    headers.insert((id, uid), cached.encode().as_slice())?;
                }
            }
        }
        w.commit()?;
        Ok(())
    }

    /// Message `message` of folder `name`, opened (one path lookup when
    /// its file is where its flags say), if it exists.
    pub fn open_file(&self, name: &str, message: &Message) -> anyhow::Result<Option<fs::File>> {
        let cur = self.dir_of(name)?.join("cur").join(format!(
            "{}{}",
            message.base,
            message.flags.info()
        ));
        match fs::File::open(&cur) {
            Ok(f) => return Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(format!("opening {}", cur.display())),
        }
        match self.file_of(name, message)? {
            Some(path) => match fs::File::open(&path) {
                Ok(f) => Ok(Some(f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).context(format!("opening {}", path.display())),
            },
            None => Ok(None),
        }
    }

    /// The file of message `uid` in folder `name`, if it exists.
    pub fn file_of(&self, name: &str, message: &Message) -> anyhow::Result<Option<PathBuf>> {
        let dir = self.dir_of(name)?;
        let cur = dir
            .join("cur")
            .join(format!("{}{}", message.base, message.flags.info()));
        if cur.exists() {
            return Ok(Some(cur));
        }
        for sub in ["cur", "new"] {
            for entry in fs::read_dir(dir.join(sub))?.flatten() {
                let file = entry.file_name().to_string_lossy().to_string();
                if base_of(&file) == message.base {
                    return Ok(Some(entry.path()));
                }
            }
        }
        Ok(None)
    }
}
