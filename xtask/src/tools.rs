//! Host tools the tests and benchmarks need, installed on demand from
//! Debian's archive (as root) or named with the exact command to run.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::bail;

use crate::{check, debs};

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    // SAFETY-free: read it from /proc instead of calling libc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|u| u.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

/// Installs Debian packages that provide the missing programs.
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    let line = format!("apt-get install -y {}", packages.join(" "));
    if !is_root() {
        bail!("missing tools; install them with: sudo apt-get update && sudo {line}");
    }
    // The package lists may be missing or stale on a fresh machine.
    check(Command::new("apt-get").args(["update", "-qq"]))?;
    check(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// swaks (an independent SMTP client), python3 (smtplib), and the Rust
/// components for linting.
pub fn ensure_test_tools() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !have("swaks") {
        missing.push("swaks");
    }
    if !have("python3") {
        missing.push("python3");
    }
    apt_install(&missing)?;
    // Independent peers: DKIM verification, an SMTP/LMTP server, DNS
    // servers (dnslib; dnspython signing zones for DNSSEC).
    ensure_python_module("import dkim", "dkimpy[ed25519]")?;
    ensure_python_module("import aiosmtpd", "aiosmtpd")?;
    ensure_python_module("import dnslib", "dnslib")?;
    ensure_python_module(
        "import dns._features, sys; sys.exit(not dns._features.have('dnssec'))",
        "dnspython[dnssec]",
    )?;
    for (component, probe) in [("rustfmt", "fmt"), ("clippy", "clippy")] {
        let ok = crate::cargo()
            .args([probe, "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            check(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

/// A Python package from PyPI (dkimpy verifies our DKIM signatures), unless
/// the `probe` statement already succeeds.
fn ensure_python_module(probe: &str, package: &str) -> anyhow::Result<()> {
    let present = Command::new("python3")
        .args(["-c", probe])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(extra)
            .arg(package)
            .status()
            .is_ok_and(|s| s.success())
    };
    // A Debian-managed Python refuses plain installs (PEP 668).
    if pip(&[]) || pip(&["--break-system-packages"]) {
        return Ok(());
    }
    bail!("cannot install the Python package {package}; run: python3 -m pip install '{package}'")
}

/// What `cargo xtask image` needs on the host: the board's Rust target, a
/// C compiler for musl (ring has C and assembly), e2fsprogs and strip.
pub fn ensure_image_tools(board: &board::Board) -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let has_target = installed.as_ref().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.trim() == board.rust_target)
    });
    if !has_target {
        check(Command::new("rustup").args(["target", "add", board.rust_target]))?;
    }
    let mut missing = Vec::new();
    if board.rust_target.contains("musl") && !have("musl-gcc") {
        missing.push("musl-tools");
    }
    if !have("mkfs.ext4") || !have("debugfs") {
        missing.push("e2fsprogs");
    }
    if !have("strip") {
        missing.push("binutils");
    }
    if !have("dpkg-deb") {
        missing.push("dpkg");
    }
    apt_install(&missing)
}

/// The emulator and UEFI firmware of a board.
pub fn ensure_qemu(board: &board::Board) -> anyhow::Result<()> {
    let Some(q) = &board.qemu else {
        bail!("board {} cannot be emulated", board.name);
    };
    if have(q.program) && std::path::Path::new(q.firmware_code).exists() {
        return Ok(());
    }
    apt_install(q.packages)
}

/// Postfix's `smtp-source` load generator, unpacked from Debian's postfix
/// package without installing a second MTA. Returns the program and the
/// library directory it needs in LD_LIBRARY_PATH.
pub fn smtp_source() -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = match debs::unpacked("postfix") {
        Ok(dir) => dir,
        Err(_) if !have("apt-get") => {
            bail!("smtp-source comes from Debian's postfix package; apt-get is not available here")
        }
        Err(e) => return Err(e),
    };
    let program = dir.join("usr/sbin/smtp-source");
    if !program.exists() {
        bail!("{} not found in the postfix package", program.display());
    }
    Ok((program, dir.join("usr/lib/postfix")))
}
