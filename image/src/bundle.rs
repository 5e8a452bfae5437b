//! The update bundle: one file holding a signed manifest and the files of a
//! boot slot, written by `cargo xtask bundle` and checked and installed on
//! the device with this same code.
//!
//! ```text
//! magic     8 bytes   "MBXUPD01"
//! length    4 bytes   the manifest's length, little-endian (at most 64 KiB)
//! manifest  text      lines, below
//! signature 64 bytes  Ed25519 over magic, length and manifest
//! payload             the files, in the manifest's order, back to back
//! ```
//!
//! The manifest (UTF-8, one field per line, nothing else allowed):
//!
//! ```text
//! format 1
//! board pc-x86_64
//! version 0.2.0
//! file vmlinuz 9211392 <SHA-256, 64 hex digits>
//! file initrd.zst 8876512 <…>
//! file entry.conf 190 <…>
//! ```
//!
//! The signature covers the manifest and the manifest the files' hashes:
//! a reader checks the signature, the board and the version before it
//! writes anything, then each file's hash as it streams through (a file
//! that does not match is removed and the bundle refused). `entry.conf` is
//! the slot's boot entry with `@SLOT@` where the slot's letter goes.

use std::io::{self, Read, Write};

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// What every bundle starts with.
pub const MAGIC: &[u8; 8] = b"MBXUPD01";
const MAX_MANIFEST: usize = 64 * 1024;
const MAX_FILES: usize = 64;
/// No slot file is larger (a kernel is ~10 MiB, an initramfs ~10 MiB).
pub const MAX_FILE: u64 = 512 << 20;
/// The boot entry template among the files.
pub const ENTRY: &str = "entry.conf";
/// Where the slot's letter goes in [`ENTRY`].
pub const SLOT_MARK: &str = "@SLOT@";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("this is not an update bundle (it does not start with MBXUPD01)")]
    NotABundle,
    #[error("the bundle is cut short: {0}")]
    Truncated(&'static str),
    #[error("the bundle's manifest is not valid: {0}")]
    Manifest(String),
    #[error(
        "the bundle is not signed by the key this appliance trusts (tampered with, or signed with another key)"
    )]
    BadSignature,
    #[error("the bundle is for board {found}, this appliance is {expected}")]
    WrongBoard { found: String, expected: String },
    #[error(
        "the bundle holds version {found}, older than the running {running} (force to install it anyway)"
    )]
    Downgrade { found: String, running: String },
    #[error("the bundle's file {0} does not match its signed hash (tampered with or damaged)")]
    BadHash(String),
    #[error("the signing key is not usable: {0}")]
    Key(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One file of the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// What a bundle says of itself (checked against its signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub board: String,
    pub version: String,
    pub files: Vec<FileEntry>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// A public key as images keep it (64 hex digits, `/etc/mailbox/update-key.pub`).
pub fn parse_public_key(text: &str) -> Option<[u8; 32]> {
    unhex(text.trim())
}

/// Whether `name` may be a slot file's name (no paths, nothing odd).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A version as numbers (`0.2.10` → [0, 2, 10]) to compare.
pub fn version_key(version: &str) -> Option<Vec<u64>> {
    version.split('.').map(|p| p.parse().ok()).collect()
}

impl Manifest {
    fn text(&self) -> String {
        let mut out = format!("format 1\nboard {}\nversion {}\n", self.board, self.version);
        for f in &self.files {
            out.push_str(&format!("file {} {} {}\n", f.name, f.size, hex(&f.sha256)));
        }
        out
    }

    fn parse(text: &str) -> Result<Manifest, BundleError> {
        let bad = |why: String| BundleError::Manifest(why);
        let mut lines = text.lines();
        if lines.next() != Some("format 1") {
            return Err(bad("it does not start with \"format 1\"".into()));
        }
        let field = |line: Option<&str>, name: &str| -> Result<String, BundleError> {
            line.and_then(|l| l.strip_prefix(name))
                .and_then(|v| v.strip_prefix(' '))
                .filter(|v| !v.is_empty() && !v.contains(' '))
                .map(str::to_string)
                .ok_or_else(|| bad(format!("no {name} line where expected")))
        };
        let board = field(lines.next(), "board")?;
        let version = field(lines.next(), "version")?;
        if version_key(&version).is_none() {
            return Err(bad(format!("version {version:?} is not numbers and dots")));
        }
        let mut files = Vec::new();
        for line in lines {
            let parts: Vec<&str> = line.split(' ').collect();
            let [kind, name, size, hash] = parts[..] else {
                return Err(bad(format!(
                    "line {line:?} is not \"file NAME SIZE SHA256\""
                )));
            };
            let size: u64 = size
                .parse()
                .map_err(|_| bad(format!("{name}: size {size:?} is not a number")))?;
            if kind != "file" || !valid_name(name) || size > MAX_FILE {
                return Err(bad(format!("line {line:?} names no acceptable file")));
            }
            let sha256 =
                unhex(hash).ok_or_else(|| bad(format!("{name}: {hash:?} is not a SHA-256")))?;
            if files.iter().any(|f: &FileEntry| f.name == name) {
                return Err(bad(format!("{name} is listed twice")));
            }
            files.push(FileEntry {
                name: name.to_string(),
                size,
                sha256,
            });
        }
        if files.is_empty() || files.len() > MAX_FILES {
            return Err(bad(format!(
                "{} files (1 to {MAX_FILES} expected)",
                files.len()
            )));
        }
        if !files.iter().any(|f| f.name == ENTRY) {
            return Err(bad(format!("no {ENTRY}")));
        }
        Ok(Manifest {
            board,
            version,
            files,
        })
    }

    /// Whether this appliance (`board`, running `running`) may install it.
    pub fn check(&self, board: &str, running: &str, force: bool) -> Result<(), BundleError> {
        if self.board != board {
            return Err(BundleError::WrongBoard {
                found: self.board.clone(),
                expected: board.to_string(),
            });
        }
        let (new, old) = (version_key(&self.version), version_key(running));
        if !force && new < old {
            return Err(BundleError::Downgrade {
                found: self.version.clone(),
                running: running.to_string(),
            });
        }
        Ok(())
    }

    /// The payload's length (what follows the signature).
    pub fn payload_len(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A new signing key (PKCS#8), for `cargo xtask bundle` to keep.
pub fn generate_key() -> Result<Vec<u8>, BundleError> {
    let rng = ring::rand::SystemRandom::new();
    Ed25519KeyPair::generate_pkcs8(&rng)
        .map(|k| k.as_ref().to_vec())
        .map_err(|e| BundleError::Key(e.to_string()))
}

/// The public key (32 bytes) of a PKCS#8 signing key: what images trust.
pub fn public_key(pkcs8: &[u8]) -> Result<[u8; 32], BundleError> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| BundleError::Key(e.to_string()))?;
    pair.public_key()
        .as_ref()
        .try_into()
        .map_err(|_| BundleError::Key("not an Ed25519 key".into()))
}

/// Writes a bundle of `files` (name, contents) for `board` at `version`,
/// signed with `pkcs8`.
pub fn write(
    out: &mut impl Write,
    pkcs8: &[u8],
    board: &str,
    version: &str,
    files: &[(String, Vec<u8>)],
) -> Result<Manifest, BundleError> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| BundleError::Key(e.to_string()))?;
    let manifest = Manifest {
        board: board.to_string(),
        version: version.to_string(),
        files: files
            .iter()
            .map(|(name, bytes)| FileEntry {
                name: name.clone(),
                size: bytes.len() as u64,
                sha256: sha256(bytes),
            })
            .collect(),
    };
    // What is written is what a reader accepts.
    let text = manifest.text();
    Manifest::parse(&text)?;
    let mut head = MAGIC.to_vec();
    head.extend_from_slice(&(text.len() as u32).to_le_bytes());
    head.extend_from_slice(text.as_bytes());
    let signature = pair.sign(&head);
    out.write_all(&head)?;
    out.write_all(signature.as_ref())?;
    for (_, bytes) in files {
        out.write_all(bytes)?;
    }
    Ok(manifest)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().try_into().expect("32 bytes")
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<(), BundleError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => BundleError::Truncated(what),
        _ => BundleError::Io(e),
    })
}

/// Reads a bundle's manifest from `r` and checks its signature with the
/// trusted `public_key`; `r` is then at the first file.
pub fn read_manifest(r: &mut impl Read, public_key: &[u8; 32]) -> Result<Manifest, BundleError> {
    let mut magic = [0u8; 8];
    read_exact(r, &mut magic, "no magic").map_err(|_| BundleError::NotABundle)?;
    if &magic != MAGIC {
        return Err(BundleError::NotABundle);
    }
    let mut length = [0u8; 4];
    read_exact(r, &mut length, "no manifest length")?;
    let length = u32::from_le_bytes(length) as usize;
    if length > MAX_MANIFEST {
        return Err(BundleError::Manifest(format!(
            "{length} bytes (at most {MAX_MANIFEST})"
        )));
    }
    let mut text = vec![0u8; length];
    read_exact(r, &mut text, "the manifest")?;
    let mut signature = [0u8; 64];
    read_exact(r, &mut signature, "the signature")?;
    let mut signed = magic.to_vec();
    signed.extend_from_slice(&(length as u32).to_le_bytes());
    signed.extend_from_slice(&text);
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&signed, &signature)
        .map_err(|_| BundleError::BadSignature)?;
    let text = String::from_utf8(text)
        .map_err(|_| BundleError::Manifest("the manifest is not UTF-8".into()))?;
    Manifest::parse(&text)
}

/// Streams file `entry` from `r` into `out`, checking its hash; on a
/// mismatch what was written must be thrown away (the error says so).
pub fn copy_file(
    r: &mut impl Read,
    entry: &FileEntry,
    out: &mut impl Write,
) -> Result<(), BundleError> {
    let mut left = entry.size;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        read_exact(r, &mut buf[..n], "a file of the payload")?;
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    if hash.finish().as_ref() != entry.sha256 {
        return Err(BundleError::BadHash(entry.name.clone()));
    }
    Ok(())
}

/// Reads a whole bundle from `r`, checking the signature and every file's
/// hash, writing nothing; its manifest. Anything after the last file is
/// an error.
pub fn verify(r: &mut impl Read, public_key: &[u8; 32]) -> Result<Manifest, BundleError> {
    let manifest = read_manifest(r, public_key)?;
    for entry in &manifest.files {
        copy_file(r, entry, &mut io::sink())?;
    }
    let mut extra = [0u8; 1];
    if r.read(&mut extra)? != 0 {
        return Err(BundleError::Manifest("bytes after the last file".into()));
    }
    Ok(manifest)
}

/// The boot entry of `slot` from the bundle's template.
pub fn entry_for(template: &str, slot: &str) -> String {
    template.replace(SLOT_MARK, slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<(String, Vec<u8>)> {
        vec![
            ("vmlinuz".into(), vec![7u8; 100_000]),
            ("initrd.zst".into(), b"initramfs".to_vec()),
            (ENTRY.into(), b"linux /mailbox/@SLOT@/vmlinuz\n".to_vec()),
        ]
    }

    fn bundle(key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, key, "pc-x86_64", "0.2.0", &files()).unwrap();
        out
    }

    #[test]
    fn a_signed_bundle_reads_back_and_checks() {
        let key = generate_key().unwrap();
        let public = public_key(&key).unwrap();
        let bytes = bundle(&key);
        let m = verify(&mut bytes.as_slice(), &public).unwrap();
        assert_eq!(m.board, "pc-x86_64");
        assert_eq!(m.files.len(), 3);
        assert_eq!(m.payload_len(), 100_000 + 9 + 30);
        m.check("pc-x86_64", "0.1.9", false).unwrap();
        m.check("pc-x86_64", "0.2.0", false).unwrap();
        assert!(matches!(
            m.check("pc-x86_64", "0.10.0", false),
            Err(BundleError::Downgrade { .. })
        ));
        m.check("pc-x86_64", "0.10.0", true).unwrap();
        assert!(matches!(
            m.check("rpi4", "0.1.0", false),
            Err(BundleError::WrongBoard { .. })
        ));
        // Streaming one file at a time gives the files back.
        let mut r = bytes.as_slice();
        let m = read_manifest(&mut r, &public).unwrap();
        let mut first = Vec::new();
        copy_file(&mut r, &m.files[0], &mut first).unwrap();
        assert_eq!(first, files()[0].1);
        assert_eq!(
            entry_for("linux /mailbox/@SLOT@/vmlinuz", "b"),
            "linux /mailbox/b/vmlinuz"
        );
    }

    #[test]
    fn any_byte_changed_or_another_key_is_refused() {
        let key = generate_key().unwrap();
        let public = public_key(&key).unwrap();
        let bytes = bundle(&key);
        // Every byte of the header, and bytes of each file.
        let manifest_end = 12 + u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize + 64;
        let mut positions: Vec<usize> = (0..manifest_end).collect();
        positions.extend([manifest_end, manifest_end + 50_000, bytes.len() - 1]);
        for at in positions {
            let mut tampered = bytes.clone();
            tampered[at] ^= 0x01;
            let result = verify(&mut tampered.as_slice(), &public);
            assert!(result.is_err(), "byte {at} changed and still accepted");
        }
        let other = public_key(&generate_key().unwrap()).unwrap();
        assert!(matches!(
            verify(&mut bytes.as_slice(), &other),
            Err(BundleError::BadSignature)
        ));
        // Cut short, or with more after it.
        assert!(matches!(
            verify(&mut &bytes[..bytes.len() - 1], &public),
            Err(BundleError::Truncated(_))
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(verify(&mut longer.as_slice(), &public).is_err());
        assert!(matches!(
            verify(&mut &b"GIF89a..."[..], &public),
            Err(BundleError::NotABundle)
        ));
        // A damaged file is named.
        let mut damaged = bytes.clone();
        damaged[manifest_end + 10] ^= 0xff;
        let e = verify(&mut damaged.as_slice(), &public).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the bundle's file vmlinuz does not match its signed hash (tampered with or damaged)"
        );
    }

    #[test]
    fn manifests_are_read_strictly() {
        let good =
            "format 1\nboard b\nversion 1.2\nfile entry.conf 3 ".to_string() + &"0".repeat(64);
        assert!(Manifest::parse(&(good.clone() + "\n")).is_ok());
        for bad in [
            "format 2\nboard b\nversion 1\n".to_string(),
            good.replace("entry.conf", "../etc/passwd"),
            good.replace("version 1.2", "version 1.2-beta"),
            good.replace(" 3 ", " 99999999999 "),
            good.clone() + "\nfile entry.conf 3 " + &"0".repeat(64),
            good.replace("entry.conf", "vmlinuz"),
        ] {
            assert!(Manifest::parse(&bad).is_err(), "accepted {bad:?}");
        }
    }
}
