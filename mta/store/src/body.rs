//! A queued message's content: small messages live in memory and in the
//! queue database; large ones are spooled to a file while they arrive, so
//! memory stays bounded whatever clients send. Either way a [`Body`] is read
//! as one stream: its `head` (our trace and signature fields, and for small
//! messages everything) followed by the file.
//!
//! This module does not decide where a message goes (the SMTP adapter
//! spools, the queue stores); it only reads what was stored.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// How much of a message is read to find its header section, at most.
pub const MAX_HEADER_READ: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    head: Vec<u8>,
    /// The rest of the message, in a file of this length.
    file: Option<(PathBuf, u64)>,
}

impl Body {
    /// A message held in memory.
    pub fn inline(bytes: Vec<u8>) -> Body {
        Body {
            head: bytes,
            file: None,
        }
    }

    /// `head`, then the content of the file at `path` (`len` bytes).
    pub fn spooled(head: Vec<u8>, path: PathBuf, len: u64) -> Body {
        Body {
            head,
            file: Some((path, len)),
        }
    }

    /// The length of the whole message.
    pub fn len(&self) -> u64 {
        self.head.len() as u64 + self.file.as_ref().map_or(0, |(_, len)| *len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The part held in memory.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The spool file, if the message has one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Bytes this value keeps in memory.
    pub fn memory(&self) -> usize {
        self.head.len()
    }

    /// The whole message as a stream.
    pub fn reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        let head = io::Cursor::new(self.head.as_slice());
        Ok(match &self.file {
            None => Box::new(head),
            Some((path, len)) => Box::new(head.chain(File::open(path)?.take(*len))),
        })
    }

    /// The whole message as an async stream (the file is read with
    /// tokio's file I/O, off the runtime's threads).
    pub async fn async_reader(
        &self,
    ) -> io::Result<std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send + '_>>> {
        use tokio::io::AsyncReadExt;
        let head = self.head.as_slice();
        Ok(match &self.file {
            None => Box::pin(head),
            Some((path, len)) => {
                let file = tokio::fs::File::open(path).await?;
                Box::pin(AsyncReadExt::chain(head, AsyncReadExt::take(file, *len)))
            }
        })
    }

    /// The message's first [`MAX_HEADER_READ`] bytes: enough for its
    /// header section, which is what a notice about it quotes.
    pub fn start(&self) -> io::Result<Vec<u8>> {
        let mut start = Vec::new();
        self.reader()?
            .take(MAX_HEADER_READ as u64)
            .read_to_end(&mut start)?;
        Ok(start)
    }

    /// `bytes` in front of the message (a DKIM signature).
    pub fn prepend(&mut self, bytes: &[u8]) {
        self.head.splice(0..0, bytes.iter().copied());
    }

    /// Leaves out the byte ranges `cut` (sorted, not overlapping, offsets
    /// into the whole message): forged header fields. A spooled message's
    /// file is written anew beside the old one, synced and renamed over
    /// it, so the file stays whole whenever the power goes.
    pub fn cut(&mut self, cut: &[std::ops::Range<u64>]) -> io::Result<()> {
        if cut.is_empty() {
            return Ok(());
        }
        let keep = |offset: u64| !cut.iter().any(|r| r.contains(&offset));
        let head_len = self.head.len() as u64;
        let mut n = 0u64;
        self.head.retain(|_| {
            let k = keep(n);
            n += 1;
            k
        });
        let Some((path, len)) = &mut self.file else {
            return Ok(());
        };
        use std::io::{BufWriter, Write};
        let fresh = path.with_extension("cut");
        let mut out = BufWriter::new(File::create(&fresh)?);
        let mut input = io::BufReader::new(File::open(&*path)?.take(*len));
        let mut written = 0u64;
        let mut at = head_len;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let got = input.read(&mut buf)?;
            if got == 0 {
                break;
            }
            for &b in &buf[..got] {
                if keep(at) {
                    out.write_all(&[b])?;
                    written += 1;
                }
                at += 1;
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&fresh, &*path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        *len = written;
        Ok(())
    }

    /// The whole message in memory (`mta queue show`, tests).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len() as usize);
        self.reader()?.read_to_end(&mut out)?;
        Ok(out)
    }

    /// The file's content mapped into memory, for code that needs the
    /// message as slices (DKIM signing): `[head, file]`. Mapped pages are
    /// the page cache's, which the kernel can drop under pressure, not
    /// memory of ours.
    pub fn mapped(&self) -> io::Result<Mapped<'_>> {
        let map = match &self.file {
            Some((path, len)) if *len > 0 => {
                let file = File::open(path)?;
                // SAFETY: spool files are written once, before the message
                // is queued, and never modified while queued.
                let map = unsafe { memmap2::Mmap::map(&file)? };
                if (map.len() as u64) < *len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} is shorter than recorded", path.display()),
                    ));
                }
                Some((map, *len as usize))
            }
            _ => None,
        };
        Ok(Mapped {
            head: &self.head,
            map,
        })
    }
}

/// See [`Body::mapped`].
pub struct Mapped<'a> {
    head: &'a [u8],
    map: Option<(memmap2::Mmap, usize)>,
}

impl Mapped<'_> {
    pub fn chunks(&self) -> Vec<&[u8]> {
        let mut out = vec![self.head];
        if let Some((map, len)) = &self.map {
            out.push(&map[..*len]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_ranges_leave_the_message_in_memory_and_in_its_file() {
        let mut inline = Body::inline(b"Ours: 1\r\nForged: x\r\nSubject: s\r\n\r\nbody".to_vec());
        inline.cut(&[9..20, 40..40]).unwrap();
        assert_eq!(
            inline.to_vec().unwrap(),
            b"Ours: 1\r\nSubject: s\r\n\r\nbody"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spooled");
        let message = b"Forged: x\r\nSubject: s\r\nForged: y\r\n\r\nbody".to_vec();
        std::fs::write(&path, &message).unwrap();
        let mut spooled =
            Body::spooled(b"Ours: 1\r\n".to_vec(), path.clone(), message.len() as u64);
        // Offsets count the head (9 bytes) first.
        spooled.cut(&[9..20, 32..43]).unwrap();
        assert_eq!(
            spooled.to_vec().unwrap(),
            b"Ours: 1\r\nSubject: s\r\n\r\nbody"
        );
        assert_eq!(spooled.len(), 27);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing left aside"
        );
    }

    #[test]
    fn a_spooled_body_reads_as_head_then_file() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("spool");
        std::fs::write(&path, b"Subject: x\r\n\r\nbody\r\ntrailing junk").unwrap();
        let body = Body::spooled(b"Received: a\r\n".to_vec(), path, 20);
        assert_eq!(body.len(), 33);
        assert_eq!(
            body.to_vec().unwrap(),
            b"Received: a\r\nSubject: x\r\n\r\nbody\r\n"
        );
        assert_eq!(body.start().unwrap(), body.to_vec().unwrap());
        let mapped = body.mapped().unwrap();
        assert_eq!(mapped.chunks().concat(), body.to_vec().unwrap());
        assert_eq!(Body::inline(b"x".to_vec()).to_vec().unwrap(), b"x");
    }
}
