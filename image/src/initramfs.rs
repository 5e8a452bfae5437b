//! Builds the initramfs: a cpio archive of files with their parent
//! directories, compressed with zstd (the Debian kernel has `CONFIG_RD_ZSTD`).

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use crate::cpio;

enum Node {
    File { mode: u32, data: Vec<u8> },
    CharDevice { mode: u32, major: u32, minor: u32 },
}

/// The root file system, assembled in memory.
#[derive(Default)]
pub struct Initramfs {
    nodes: BTreeMap<String, Node>,
    dirs: BTreeSet<String>,
}

impl Initramfs {
    pub fn new() -> Initramfs {
        Initramfs::default()
    }

    /// Adds a file; parent directories are created as needed. A later file
    /// at the same path replaces the earlier one (overlays win).
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        let path = normalise(path);
        self.parents(&path);
        self.nodes.insert(path, Node::File { mode, data });
    }

    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        let path = normalise(path);
        self.parents(&path);
        self.nodes
            .insert(path, Node::CharDevice { mode, major, minor });
    }

    pub fn dir(&mut self, path: &str) {
        let path = normalise(path);
        self.parents(&path);
        self.dirs.insert(path);
    }

    fn parents(&mut self, path: &str) {
        let mut p = path;
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            if p.is_empty() {
                break;
            }
            self.dirs.insert(p.to_string());
        }
    }

    /// The uncompressed cpio archive.
    pub fn cpio(&self) -> io::Result<Vec<u8>> {
        let mut w = cpio::Writer::new(Vec::new());
        // Directories first (sorted, so parents come before children).
        for d in &self.dirs {
            w.dir(d, 0o755)?;
        }
        for (path, node) in &self.nodes {
            match node {
                Node::File { mode, data } => w.file(path, *mode, data)?,
                Node::CharDevice { mode, major, minor } => {
                    w.char_device(path, *mode, *major, *minor)?
                }
            }
        }
        w.finish()
    }

    /// The archive compressed with zstd.
    pub fn compressed(&self, level: i32) -> io::Result<Vec<u8>> {
        let archive = self.cpio()?;
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), level)?;
        // The kernel's zstd decompressor wants a frame with a known window.
        encoder.include_checksum(true)?;
        io::Write::write_all(&mut encoder, &archive)?;
        encoder.finish()
    }
}

fn normalise(path: &str) -> String {
    path.trim_start_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_created_and_overlays_replace() {
        let mut i = Initramfs::new();
        i.file("/etc/ssl/certs/ca.crt", 0o644, b"a".to_vec());
        i.file("/etc/ssl/certs/ca.crt", 0o644, b"b".to_vec());
        let archive = i.cpio().unwrap();
        let text = String::from_utf8_lossy(&archive);
        let etc = text.find("etc\0").unwrap();
        let ssl = text.find("etc/ssl\0").unwrap();
        let certs = text.find("etc/ssl/certs\0").unwrap();
        assert!(etc < ssl && ssl < certs);
        assert_eq!(text.matches("etc/ssl/certs/ca.crt\0").count(), 1);
        let z = i.compressed(3).unwrap();
        assert_eq!(zstd::decode_all(&z[..]).unwrap(), archive);
    }
}
