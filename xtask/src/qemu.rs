//! Booting an image in QEMU: UEFI firmware, virtio disk/net/rng, the
//! watchdog, user networking with host forwards, and QMP for ACPI power-off.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use board::Board;

/// Where the guest's serial console goes.
pub enum Console {
    /// The terminal (`cargo xtask run`).
    Terminal,
    /// A file (tests read it).
    File(PathBuf),
}

pub struct Vm {
    pub disk: PathBuf,
    /// A writable copy of the firmware's variable store.
    pub vars: PathBuf,
    /// (host port on 127.0.0.1, guest port)
    pub forwards: Vec<(u16, u16)>,
    pub console: Console,
    pub qmp: Option<PathBuf>,
    /// Exit instead of rebooting (tests notice unexpected resets).
    pub no_reboot: bool,
}

/// KVM only when the CPU can do it: this machine has /dev/kvm without VMX,
/// and KVM hangs there.
pub fn accelerator() -> &'static str {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if virt && Path::new("/dev/kvm").exists() {
        "kvm"
    } else {
        "tcg"
    }
}

pub fn command(board: &Board, vm: &Vm) -> anyhow::Result<Command> {
    let q = board
        .qemu
        .as_ref()
        .context("this board cannot be emulated")?;
    if !vm.vars.exists() {
        std::fs::copy(q.firmware_vars, &vm.vars)
            .with_context(|| format!("copying the UEFI variable store {}", q.firmware_vars))?;
    }
    let mut cmd = Command::new(q.program);
    cmd.args(q.machine);
    cmd.args(["-accel", accelerator()]);
    cmd.arg("-drive").arg(format!(
        "if=pflash,format=raw,unit=0,readonly=on,file={}",
        q.firmware_code
    ));
    cmd.arg("-drive").arg(format!(
        "if=pflash,format=raw,unit=1,file={}",
        vm.vars.display()
    ));
    cmd.arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", vm.disk.display()));
    // restrict=on: the guest reaches nothing but the forwarded ports.
    let mut netdev = "user,id=net0,restrict=on".to_string();
    for (host, guest) in &vm.forwards {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
    }
    cmd.args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"]);
    cmd.args(q.devices);
    match &vm.console {
        Console::Terminal => {
            cmd.args(["-nographic", "-serial", "mon:stdio"]);
        }
        Console::File(path) => {
            cmd.args(["-display", "none", "-monitor", "none", "-serial"]);
            cmd.arg(format!("file:{}", path.display()));
        }
    }
    if let Some(qmp) = &vm.qmp {
        cmd.arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()));
    }
    if vm.no_reboot {
        cmd.arg("-no-reboot");
    }
    Ok(cmd)
}

/// Sends one QMP command (after the capabilities handshake).
pub fn qmp(socket: &Path, command: &str) -> anyhow::Result<()> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to QMP at {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?; // greeting
    writer.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
    line.clear();
    reader.read_line(&mut line)?;
    writer.write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())?;
    line.clear();
    reader.read_line(&mut line)?;
    if line.contains("\"error\"") {
        anyhow::bail!("QMP {command}: {}", line.trim());
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 for a host forward.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
