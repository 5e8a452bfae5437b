//! Debian packages for the image (kernel, boot loader, CA bundle), fetched
//! with `apt-get download` into `target/cache/debs` (apt verifies them
//! against the signed archive) and unpacked with `dpkg-deb -x`. Nothing is
//! installed on the host.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use crate::{check, root};

fn cache() -> PathBuf {
    root().join("target/cache/debs")
}

/// The concrete package a metapackage (such as `linux-image-amd64`) points
/// to today.
pub fn resolve(meta: &str) -> anyhow::Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "--no-recommends", meta])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = meta.rsplit_once('-').map(|(p, _)| p).unwrap_or(meta);
    for line in text.lines() {
        if let Some(dep) = line.trim().strip_prefix("Depends: ")
            && dep.starts_with(prefix)
            && dep != meta
        {
            return Ok(dep.trim().to_string());
        }
    }
    if !crate::tools::is_root() {
        bail!("cannot resolve {meta}: run `sudo apt-get update` first");
    }
    check(Command::new("apt-get").args(["update", "-qq"]))?;
    let out = Command::new("apt-cache")
        .args(["depends", "--no-recommends", meta])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|d| d.starts_with(prefix) && *d != meta)
        .map(|d| d.trim().to_string())
        .with_context(|| format!("apt-cache does not know what {meta} depends on"))
}

/// Downloads (once) and unpacks a package; returns the directory it was
/// unpacked into.
pub fn unpacked(package: &str) -> anyhow::Result<PathBuf> {
    let dir = cache().join("root").join(package);
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache())?;
    let deb = match find_deb(package)? {
        Some(deb) => deb,
        None => {
            let ok = Command::new("apt-get")
                .args(["download", package])
                .current_dir(cache())
                .status()?
                .success();
            if !ok {
                if !crate::tools::is_root() {
                    bail!("apt-get download {package} failed; run `sudo apt-get update` first");
                }
                check(Command::new("apt-get").args(["update", "-qq"]))?;
                check(
                    Command::new("apt-get")
                        .args(["download", package])
                        .current_dir(cache()),
                )?;
            }
            find_deb(package)?
                .with_context(|| format!("apt-get download {package} left no .deb"))?
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    check(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    std::fs::write(dir.join(".complete"), deb.to_string_lossy().as_bytes())?;
    Ok(dir)
}

fn find_deb(package: &str) -> anyhow::Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    Ok(std::fs::read_dir(cache())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with(&prefix) && f.ends_with(".deb"))
        })
        .max())
}
