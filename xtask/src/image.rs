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
    /// The boot entry, with `@SLOT@` where the slot's letter goes.
    pub entry_template: String,
}

impl SlotFiles {
    /// As a bundle lists them.
    pub fn named(self) -> Vec<(String, Vec<u8>)> {
        vec![
            ("vmlinuz".into(), self.vmlinuz),
            ("initrd.zst".into(), self.initrd),
            (
                image::bundle::ENTRY.into(),
                self.entry_template.into_bytes(),
            ),
        ]
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
    if board.boot != BootMethod::SystemdBoot {
        bail!(
            "board {} boots with {:?}, which this build cannot write yet",
            board.name,
            board.boot
        );
    }
    tools::ensure(&tools::for_image(board))?;
    let binaries = build_userland(board, release)?;

    let kernel_package = debs::resolve(board.kernel_package)?;
    let kernel_root = debs::unpacked(&kernel_package)?;
    let kernel_version = std::fs::read_dir(kernel_root.join("lib/modules"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .next()
        .context("the kernel package has no lib/modules/<version>")?;
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
    let initrd = rootfs.compressed(12)?;
    // `sort-key` makes systemd-boot order the slots by `version`, newest
    // first: a freshly installed slot is the default (tried three times),
    // whatever its letter.
    let entry_template = format!(
        "title Mailbox\nsort-key mailbox\nversion {v}\nlinux /mailbox/{s}/vmlinuz\ninitrd /mailbox/{s}/initrd.zst\noptions console=tty0 console={c} panic=10 mailbox.slot={s} mailbox.version={v} quiet\n",
        v = version,
        s = image::bundle::SLOT_MARK,
        c = board.console
    );
    Ok(SlotFiles {
        vmlinuz,
        initrd,
        entry_template,
    })
}

pub fn build(board: &Board, release: bool) -> anyhow::Result<Built> {
    let SlotFiles {
        vmlinuz,
        initrd,
        entry_template,
    } = slot_files(board, release, version(), Variant::Normal)?;
    let boot_root = debs::unpacked("systemd-boot-efi")?;
    let systemd_boot = find_file(&boot_root, board.systemd_boot_binary)?.with_context(|| {
        format!(
            "{} not found in systemd-boot-efi",
            board.systemd_boot_binary
        )
    })?;
    let entry = image::bundle::entry_for(&entry_template, FIRST_SLOT);
    let esp = image::disk::fat_image(
        ESP_BYTES,
        "MAILBOX",
        &[
            (
                board.efi_boot_path.to_string(),
                std::fs::read(systemd_boot)?,
            ),
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
            (format!("mailbox/{FIRST_SLOT}/vmlinuz"), vmlinuz),
            (format!("mailbox/{FIRST_SLOT}/initrd.zst"), initrd.clone()),
        ],
    )?;

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
    image::disk::write_image(&img, &esp, &data)?;

    let zst = out_dir.join(format!("{name}.img.zst"));
    {
        let mut encoder = zstd::stream::Encoder::new(std::fs::File::create(&zst)?, 10)?;
        encoder.multithread(2)?;
        std::io::copy(&mut std::fs::File::open(&img)?, &mut encoder)?;
        encoder.finish()?.sync_all()?;
    }
    let mut sums = String::new();
    for f in [&img, &zst] {
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
    Ok(Built {
        image: img,
        compressed: zst,
        initramfs_bytes: initrd.len() as u64,
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
        check(Command::new("strip").arg(&dest))?;
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
    let dir = debs::unpacked("ca-certificates")?.join("usr/share/ca-certificates/mozilla");
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
