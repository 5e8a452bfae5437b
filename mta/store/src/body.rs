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
