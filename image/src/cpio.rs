//! Writer for cpio "newc" archives, the format the Linux kernel unpacks as
//! an initramfs (see the kernel's `initramfs-buffer-format`).

use std::io::{self, Write};

/// Streams entries into a newc archive. Call [`Writer::finish`] to write the
/// trailer.
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    next_inode: u32,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer {
            out,
            written: 0,
            next_inode: 1,
        }
    }

    /// A directory (`mode` without the type bits, such as 0o755).
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        self.entry(path, 0o040000 | mode, &[])
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, 0o100000 | mode, data)
    }

    /// A character device node (such as `/dev/console`, 5:1), so the kernel
    /// can give PID 1 a console before devtmpfs is mounted.
    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        let inode = self.next_inode;
        self.next_inode += 1;
        self.header_full(path, inode, 0o020000 | mode, 0, (major, minor))
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 0, 0)?;
        Ok(self.out)
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::other("cpio entries are limited to 4 GiB"))?;
        let inode = self.next_inode;
        self.next_inode += 1;
        self.header(path, inode, mode, size)?;
        self.put(data)?;
        self.pad()
    }

    fn header(&mut self, name: &str, inode: u32, mode: u32, size: u32) -> io::Result<()> {
        self.header_full(name, inode, mode, size, (0, 0))
    }

    fn header_full(
        &mut self,
        name: &str,
        inode: u32,
        mode: u32,
        size: u32,
        rdev: (u32, u32),
    ) -> io::Result<()> {
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let name_size = name.len() as u32 + 1;
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
        // devminor, rdevmajor, rdevminor, namesize, check
        let header = format!(
            "070701{inode:08X}{mode:08X}{:08X}{:08X}{nlink:08X}{:08X}{size:08X}{:08X}{:08X}{:08X}{:08X}{name_size:08X}{:08X}",
            0, 0, 0, 0, 0, rdev.0, rdev.1, 0
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Headers and data are aligned to 4 bytes.
    fn pad(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0; 3][..pad])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_is_read_back_by_gnu_cpio_layout_rules() {
        let mut w = Writer::new(Vec::new());
        w.dir("/etc", 0o755).unwrap();
        w.file("/etc/hostname", 0o644, b"mailbox\n").unwrap();
        w.file("/init", 0o755, b"#!").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        // Walk the archive the way the kernel does.
        let mut pos = 0;
        let mut names = Vec::new();
        loop {
            let h = std::str::from_utf8(&bytes[pos..pos + 110]).unwrap();
            assert_eq!(&h[..6], "070701");
            let field =
                |i: usize| u32::from_str_radix(&h[6 + i * 8..14 + i * 8], 16).unwrap() as usize;
            let (mode, size, name_size) = (field(1), field(6), field(11));
            let name = std::str::from_utf8(&bytes[pos + 110..pos + 110 + name_size - 1])
                .unwrap()
                .to_string();
            pos = (pos + 110 + name_size).div_ceil(4) * 4;
            let data = &bytes[pos..pos + size];
            pos = (pos + size).div_ceil(4) * 4;
            if name == "TRAILER!!!" {
                break;
            }
            if name == "etc/hostname" {
                assert_eq!(data, b"mailbox\n");
                assert_eq!(mode, 0o100644);
            }
            names.push(name);
        }
        assert_eq!(names, ["etc", "etc/hostname", "init"]);
        assert_eq!(pos, bytes.len());
    }
}
