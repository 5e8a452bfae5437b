//! `cargo xtask image`: a bootable disk image for a board.
//!
//! The userland (`init`, `mta`) is built for the board's static musl target;
//! the kernel, its modules, systemd-boot and the CA bundle come from Debian
//! packages (see `debs.rs`). The root file system is an initramfs; the disk
//! is a GPT with the ESP (boot slot A, room for B) and the data partition.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use argh::FromArgs;
use board::{Board, BootMethod};
use image::initramfs::Initramfs;

use crate::{cargo, check, debs, root, tools};

/// build a bootable disk image
#[derive(FromArgs)]
#[argh(subcommand, name = "image")]
pub struct ImageArgs {
    /// board to build for (default pc-x86_64)
    #[argh(option, default = "String::from(\"pc-x86_64\")")]
    board: String,
    /// build the userland with the release profile
    #[argh(switch)]
    release: bool,
}

/// What a build produced.
pub struct Built {
    pub image: PathBuf,
    pub compressed: PathBuf,
    pub initramfs_bytes: u64,
}

/// The ESP's size: two slots of kernel + initramfs with room to spare.
const ESP_BYTES: u64 = 256 << 20;
/// A Pi's boot selector (only `autoboot.txt`; FAT32 wants 65,525 clusters).
const PI_SELECTOR_BYTES: u64 = 64 << 20;
/// A Pi's boot slot: kernel (33 MB uncompressed on arm64), initramfs,
/// firmware and device trees, with room to spare.
const PI_SLOT_BYTES: u64 = 128 << 20;
/// The data partition as built; it grows to fill the disk on first boot.
const DATA_BYTES: u64 = 128 << 20;
/// The boot slot the first image boots from.
const FIRST_SLOT: &str = "a";

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let board = board::by_name(&args.board).with_context(|| {
        let names: Vec<&str> = board::BOARDS.iter().map(|b| b.name).collect();
        format!(
            "unknown board {:?} (known: {})",
            args.board,
            names.join(", ")
        )
    })?;
    let built = build(board, args.release)?;
    println!(
        "image:      {} ({})",
        built.image.display(),
        size(&built.image)
    );
    println!(
        "compressed: {} ({})",
        built.compressed.display(),
        size(&built.compressed)
    );
    println!(
        "initramfs:  {:.1} MiB",
        built.initramfs_bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// A file's size in MiB, for reports.
pub fn size(path: &Path) -> String {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The files of one boot slot, as an image or an update bundle holds them.
pub struct SlotFiles {
    pub vmlinuz: Vec<u8>,
    pub initrd: Vec<u8>,
    /// The board's firmware files besides (the Pi's: firmware, device
    /// trees, `config.txt`).
    pub firmware: Vec<(String, Vec<u8>)>,
    /// The boot entry (the Pi's `cmdline.txt`), with `@SLOT@` where the
    /// slot's letter goes.
    pub entry_template: String,
}

impl SlotFiles {
    /// As a bundle lists them.
    pub fn named(self) -> Vec<(String, Vec<u8>)> {
        let mut files = vec![
            ("vmlinuz".into(), self.vmlinuz),
            ("initrd.zst".into(), self.initrd),
        ];
        files.extend(self.firmware);
        files.push((
            image::bundle::ENTRY.into(),
            self.entry_template.into_bytes(),
        ));
        files
    }

    /// As slot `slot`'s partition holds them (the Pi's).
    fn in_pi_slot(&self, slot: &str) -> Vec<(String, Vec<u8>)> {
        let mut files = vec![
            ("vmlinuz".into(), self.vmlinuz.clone()),
            ("initrd.zst".into(), self.initrd.clone()),
        ];
        files.extend(self.firmware.iter().cloned());
        files.push((
            image::tryboot::CMDLINE.into(),
            image::bundle::entry_for(&self.entry_template, slot).into_bytes(),
        ));
        files
    }
}

/// Where images keep the public key updates must be signed with.
pub const UPDATE_KEY: &str = "/etc/mailbox/update-key.pub";

/// What goes in a slot besides the normal build: a broken server, for the
/// test of an update that does not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Normal,
    /// `/bin/mta` exits at once (it is `init`, which runs only as PID 1).
    MtaExits,
}

/// Builds the files of a boot slot for `board` at `version`.
pub fn slot_files(
    board: &Board,
    release: bool,
    version: &str,
    variant: Variant,
) -> anyhow::Result<SlotFiles> {
    tools::ensure(&tools::for_image(board))?;
    let binaries = build_userland(board, release)?;

    let (archive, kernel_root, kernel_version) = debs::kernel(board)?;
    let vmlinuz = std::fs::read(kernel_root.join(format!("boot/vmlinuz-{kernel_version}")))?;

    let mut rootfs = Initramfs::new();
    // The key updates must be signed with.
    let (key, _) = signing_key()?;
    let public = image::bundle::public_key(&key)?;
    let hex: String = public.iter().map(|b| format!("{b:02x}")).collect();
    rootfs.file(UPDATE_KEY, 0o644, format!("{hex}\n").into_bytes());
    rootfs.file("/init", 0o755, std::fs::read(&binaries.init)?);
    let server = match variant {
        Variant::Normal => &binaries.mta,
        Variant::MtaExits => &binaries.init,
    };
    rootfs.file("/bin/mta", 0o755, std::fs::read(server)?);
    rootfs.char_device("/dev/console", 0o600, 5, 1);
    for d in ["/proc", "/sys", "/run", "/tmp", "/data", "/boot", "/var"] {
        rootfs.dir(d);
    }

    let modules_dir = kernel_root.join("lib/modules").join(&kernel_version);
    let wanted: Vec<&str> = board
        .modules
        .iter()
        .chain(board.boot_modules)
        .copied()
        .collect();
    let modules = image::modules::select(&modules_dir, &wanted)?;
    let target = format!("/lib/modules/{kernel_version}");
    for m in &modules {
        rootfs.file(
            &format!("{target}/{}", m.path),
            0o644,
            std::fs::read(modules_dir.join(&m.path))?,
        );
    }
    rootfs.file(
        &format!("{target}/modules.dep"),
        0o644,
        image::modules::modules_dep(&modules).into_bytes(),
    );
    rootfs.file(
        &format!("{target}/modules.alias"),
        0o644,
        image::modules::modules_alias(&modules).into_bytes(),
    );
    if let Ok(builtin) = std::fs::read(modules_dir.join("modules.builtin")) {
        rootfs.file(&format!("{target}/modules.builtin"), 0o644, builtin);
    }

    rootfs.file(
        "/etc/modules",
        0o644,
        (board.boot_modules.join("\n") + "\n").into_bytes(),
    );
    rootfs.file(
        "/etc/os-release",
        0o644,
        os_release(board, version).into_bytes(),
    );
    rootfs.file("/etc/ssl/certs/ca-certificates.crt", 0o644, ca_bundle()?);
    for overlay in [
        root().join("overlays/common"),
        root().join("overlays").join(board.name),
    ] {
        add_tree(&mut rootfs, &overlay, &overlay)?;
    }
    if let BootMethod::PiTryboot(_) = board.boot {
        rootfs.file(
            image::tryboot::MODULE,
            0o644,
            crate::pi::tryboot_module(&archive, &kernel_version)?,
        );
    }
    let initrd = rootfs.compressed(12)?;
    let options = format!(
        "console=tty0 console={c} panic=10 mailbox.slot={s} mailbox.version={v} quiet",
        v = version,
        s = image::bundle::SLOT_MARK,
        c = board.console
    );
    let (entry_template, firmware) = match board.boot {
        // `sort-key` makes systemd-boot order the slots by `version`,
        // newest first: a freshly installed slot is the default (tried
        // three times), whatever its letter.
        BootMethod::SystemdBoot { .. } => (
            format!(
                "title Mailbox\nsort-key mailbox\nversion {version}\nlinux /mailbox/{s}/vmlinuz\ninitrd /mailbox/{s}/initrd.zst\noptions {options}\n",
                s = image::bundle::SLOT_MARK,
            ),
            Vec::new(),
        ),
        BootMethod::PiTryboot(pi) => (
            format!("{options}\n"),
            pi_firmware(&archive, &kernel_root, &kernel_version, &pi)?,
        ),
    };
    Ok(SlotFiles {
        vmlinuz,
        initrd,
        firmware,
        entry_template,
    })
}

/// A Pi slot's firmware files, device trees and `config.txt`.
fn pi_firmware(
    archive: &debs::Archive,
    kernel_root: &Path,
    kernel_version: &str,
    pi: &board::PiFirmware,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let firmware = archive.unpacked(pi.package)?.join("usr/lib/raspi-firmware");
    let dtbs = kernel_root.join(format!("usr/lib/linux-image-{kernel_version}/broadcom"));
    let mut files = Vec::new();
    for (dir, names) in [(&firmware, pi.files), (&dtbs, pi.dtbs)] {
        for name in names {
            let path = dir.join(name);
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            files.push((name.to_string(), bytes));
        }
    }
    files.push((
        image::tryboot::CONFIG.into(),
        format!(
            "{}kernel=vmlinuz\ninitramfs initrd.zst followkernel\n",
            pi.config
        )
        .into_bytes(),
    ));
    Ok(files)
}

/// The ESP of a UEFI board: systemd-boot and slot A as a trial entry.
fn esp(
    board: &Board,
    slot: SlotFiles,
    efi_boot_path: &str,
    binary: &str,
) -> anyhow::Result<Vec<u8>> {
    let boot_root = debs::Archive::of(board.debian_arch)?.unpacked("systemd-boot-efi")?;
    let systemd_boot = find_file(&boot_root, binary)?
        .with_context(|| format!("{binary} not found in systemd-boot-efi"))?;
    let entry = image::bundle::entry_for(&slot.entry_template, FIRST_SLOT);
    Ok(image::disk::fat_image(
        ESP_BYTES,
        "MAILBOX",
        &[
            (efi_boot_path.to_string(), std::fs::read(systemd_boot)?),
            (
                "loader/loader.conf".into(),
                b"timeout 0\neditor no\nconsole-mode keep\n".to_vec(),
            ),
            (
                format!(
                    "loader/entries/{}",
                    image::bls::fresh_entry(&format!("mailbox-{FIRST_SLOT}"))
                ),
                entry.into_bytes(),
            ),
            (format!("mailbox/{FIRST_SLOT}/vmlinuz"), slot.vmlinuz),
            (format!("mailbox/{FIRST_SLOT}/initrd.zst"), slot.initrd),
        ],
    )?)
}

/// A Pi's boot partitions: the selector with `autoboot.txt` (slot A
/// committed), slot A with everything, slot B empty.
pub fn pi_partitions(slot: &SlotFiles) -> anyhow::Result<[Vec<u8>; 3]> {
    use image::tryboot::{AUTOBOOT, SELECTOR_LABEL, autoboot, slot_label};
    let autoboot = autoboot(FIRST_SLOT).context("slot a")?;
    let selector = image::disk::fat_image(
        PI_SELECTOR_BYTES,
        SELECTOR_LABEL,
        &[(AUTOBOOT.into(), autoboot.into_bytes())],
    )?;
    let a = image::disk::fat_image(
        PI_SLOT_BYTES,
        slot_label("a").context("slot a")?,
        &slot.in_pi_slot(FIRST_SLOT),
    )?;
    let b = image::disk::fat_image(PI_SLOT_BYTES, slot_label("b").context("slot b")?, &[])?;
    Ok([selector, a, b])
}

pub fn build(board: &Board, release: bool) -> anyhow::Result<Built> {
    let slot = slot_files(board, release, version(), Variant::Normal)?;
    let initramfs_bytes = slot.initrd.len() as u64;

    let out_dir = root().join("target/images");
    std::fs::create_dir_all(&out_dir)?;
    let work = tempfile::tempdir_in(root().join("target"))?;
    let data = work.path().join("data.ext4");
    check(
        Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-b",
                "4096",
                "-T",
                "default",
                "-E",
                "root_owner=0:0",
                "-L",
            ])
            .arg(image::disk::DATA_NAME)
            .arg(&data)
            .arg(format!("{}k", DATA_BYTES / 1024)),
    )?;
    let name = format!("mailbox-{}-{}", board.name, version());
    let img = out_dir.join(format!("{name}.img"));
    match board.boot {
        BootMethod::SystemdBoot {
            efi_boot_path,
            binary,
        } => {
            let esp = esp(board, slot, efi_boot_path, binary)?;
            image::disk::write_image(&img, &esp, &data)?;
        }
        BootMethod::PiTryboot(pi) => {
            let parts = pi_partitions(&slot)?;
            image::disk::write_pi_image(&img, &parts, &data)?;
            let files = crate::pi::check_image(&img, &pi)?;
            println!(
                "{}: checked the MBR, autoboot.txt, config.txt, cmdline.txt, the {files} files of slot a, an empty slot b, the data partition, and each FAT with fsck.fat",
                board.name
            );
        }
    }

    let zst = out_dir.join(format!("{name}.img.zst"));
    {
        let mut encoder = zstd::stream::Encoder::new(std::fs::File::create(&zst)?, 10)?;
        encoder.multithread(2)?;
        std::io::copy(&mut std::fs::File::open(&img)?, &mut encoder)?;
        encoder.finish()?.sync_all()?;
    }
    let mut outputs = vec![img.clone(), zst.clone()];
    // Raspberry Pi Imager's usual format besides.
    if matches!(board.boot, BootMethod::PiTryboot(_)) {
        let xz = out_dir.join(format!("{name}.img.xz"));
        check(Command::new("xz").args(["-6", "-T2", "-k", "-f"]).arg(&img))?;
        outputs.push(xz);
    }
    let mut sums = String::new();
    for f in &outputs {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut std::fs::File::open(f)?, &mut hasher)?;
        let digest = hasher.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        sums.push_str(&format!(
            "{hex}  {}\n",
            f.file_name().unwrap().to_string_lossy()
        ));
    }
    std::fs::File::create(out_dir.join(format!("{name}.sha256")))?.write_all(sums.as_bytes())?;
    for f in &outputs[2..] {
        println!("also:       {} ({})", f.display(), size(f));
    }
    Ok(Built {
        image: img,
        compressed: zst,
        initramfs_bytes,
    })
}

struct Binaries {
    init: PathBuf,
    mta: PathBuf,
}

fn build_userland(board: &Board, release: bool) -> anyhow::Result<Binaries> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--target",
        board.rust_target,
        "-p",
        "init",
        "-p",
        "mta",
    ]);
    if release {
        cmd.arg("--release");
    }
    check(&mut cmd)?;
    let dir = root()
        .join("target")
        .join(board.rust_target)
        .join(if release { "release" } else { "debug" });
    let stripped = root().join("target/images/bin").join(board.name);
    std::fs::create_dir_all(&stripped)?;
    let mut out = Vec::new();
    for name in ["init", "mta"] {
        let dest = stripped.join(name);
        std::fs::copy(dir.join(name), &dest)?;
        // Debug information stays in target/; the image carries code only.
        check(Command::new(tools::strip_program(board.rust_target)).arg(&dest))?;
        out.push(dest);
    }
    Ok(Binaries {
        init: out[0].clone(),
        mta: out[1].clone(),
    })
}

fn os_release(board: &Board, version: &str) -> String {
    format!(
        "NAME=Mailbox\nID=mailbox\nPRETTY_NAME=\"Mailbox {v}\"\nVERSION={v}\nVERSION_ID={v}\nVARIANT_ID={b}\nHOME_URL=\"https://example.invalid/mailbox\"\n",
        v = version,
        b = board.name
    )
}

/// Debian's Mozilla CA certificates, concatenated as update-ca-certificates
/// would.
fn ca_bundle() -> anyhow::Result<Vec<u8>> {
    let dir = debs::Archive::host()
        .unpacked("ca-certificates")?
        .join("usr/share/ca-certificates/mozilla");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    files.sort();
    if files.len() < 50 {
        bail!("only {} certificates in {}", files.len(), dir.display());
    }
    let mut out = Vec::new();
    for f in files {
        out.extend(std::fs::read(f)?);
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    Ok(out)
}

fn add_tree(rootfs: &mut Initramfs, base: &Path, dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let rel = format!("/{}", path.strip_prefix(base)?.to_string_lossy());
        if path.is_dir() {
            add_tree(rootfs, base, &path)?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
            rootfs.file(&rel, mode, std::fs::read(&path)?);
        }
    }
    Ok(())
}

fn find_file(dir: &Path, name: &str) -> anyhow::Result<Option<PathBuf>> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name)? {
                return Ok(Some(found));
            }
        } else if path.file_name().is_some_and(|f| f == name) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// The update signing key is kept outside the repository (never
/// committed): `$MAILBOX_SIGNING_KEY`, or
/// `~/.config/mailbox/update-signing.pk8` (mode 0600), made on first use;
/// every image built here trusts its public key.
/// Where the signing key is kept.
fn key_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MAILBOX_SIGNING_KEY") {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME").context("HOME is not set (or set MAILBOX_SIGNING_KEY)")?;
    Ok(PathBuf::from(home).join(".config/mailbox/update-signing.pk8"))
}

/// The signing key (PKCS#8) and where it is; made on first use.
pub fn signing_key() -> anyhow::Result<(Vec<u8>, PathBuf)> {
    let path = key_path()?;
    match std::fs::read(&path) {
        Ok(key) => {
            image::bundle::public_key(&key)
                .with_context(|| format!("{} is not an update signing key", path.display()))?;
            Ok((key, path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = image::bundle::generate_key()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(&key)?;
            f.sync_all()?;
            eprintln!(
                "xtask: made a new update signing key at {} (keep it: images built here trust only it)",
                path.display()
            );
            Ok((key, path))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
