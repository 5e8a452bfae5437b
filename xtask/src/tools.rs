//! Host prerequisites of the tests, the image build and QEMU, each checked
//! by using it: swaks must be able to speak TLS and AUTH, the Python peers
//! must sign and verify, musl-gcc must compile, mkfs.ext4 must make a file
//! system that debugfs reads, QEMU must start the board's machine with its
//! firmware and devices. What is missing is installed from Debian's archive
//! (every package named, nothing left to "recommends"), PyPI (pinned in
//! `xtask/python/requirements.txt`) or rustup, then checked again;
//! `cargo xtask doctor` only reports.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::{check, debs, root};

/// How a missing prerequisite is installed.
#[derive(Clone, Copy, PartialEq)]
enum Fix {
    /// Debian packages (`apt-get install`, as root).
    Apt(&'static [&'static str]),
    /// The pinned Python packages (`xtask/python/requirements.txt`).
    Pip,
    RustupTarget(&'static str),
    RustupComponent(&'static str),
    /// The RFC 7208 test suite, from pyspf's source package on PyPI.
    SpfSuite,
}

impl Fix {
    fn command(self) -> String {
        match self {
            Fix::Apt(p) => format!("apt-get install {}", p.join(" ")),
            Fix::Pip => format!("python3 -m pip install -r {}", requirements().display()),
            Fix::RustupTarget(t) => format!("rustup target add {t}"),
            Fix::RustupComponent(c) => format!("rustup component add {c}"),
            Fix::SpfSuite => format!(
                "python3 -m pip download {PYSPF} --no-deps --no-binary :all: -d {}",
                spf_suite_dir().display()
            ),
        }
    }
}

/// One thing a task needs from the host.
pub struct Prereq {
    what: String,
    fix: Fix,
    /// Uses the thing; `Err` says what did not work.
    probe: Box<dyn Fn() -> Result<(), String>>,
}

impl Prereq {
    fn new(
        what: impl Into<String>,
        fix: Fix,
        probe: impl Fn() -> Result<(), String> + 'static,
    ) -> Self {
        Prereq {
            what: what.into(),
            fix,
            probe: Box::new(probe),
        }
    }
}

fn requirements() -> PathBuf {
    root().join("xtask/python/requirements.txt")
}

/// Runs `program args`, with `input` on stdin, for at most 30 s; its
/// standard output and error together, or why it failed.
fn run(program: &str, args: &[&str], input: &[u8]) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program} cannot be started: {e}"))?;
    // Writing may fail if the program exits without reading; its status says why.
    let _ = child.stdin.take().expect("piped").write_all(input);
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{program} did not finish within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        Err(format!(
            "{program} {}: {} {first}",
            args.join(" "),
            out.status
        ))
    }
}

fn python(module: &'static str) -> Prereq {
    Prereq::new(format!("Python package {module}"), Fix::Pip, move || {
        let probe = root().join("xtask/python/probe.py");
        run("python3", &[&probe.to_string_lossy(), module], b"").map(drop)
    })
}

/// The source package that carries the RFC 7208 test suite, and the
/// SHA-256 of the package and of the suite (a changed file is not used).
const PYSPF: &str = "pyspf==2.0.14";
const PYSPF_TARBALL: &str = "pyspf-2.0.14.tar.gz";
const PYSPF_SHA256: &str = "57a7ef01bda090173aafb6af0106251686ed73f03db4e911fcd34c57fc347186";
const SPF_SUITE_SHA256: &str = "901f561a6e2b1c1590a40a61b1ac7601226fd7045a7aae591a4d25421358d6f9";

/// Where the suite is kept (`mta/tests/it/spf_suite.rs` reads it there).
fn spf_suite_dir() -> PathBuf {
    root().join("target/cache/pyspf")
}

fn sha256_of(path: &std::path::Path) -> Result<String, String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("{:x}", sha2::Sha256::digest(bytes)))
}

/// The openspf RFC 7208 test suite as pyspf 2.0.14 ships it (its
/// `test/rfc7208-tests.yml`, BSD-licensed, with its licence beside it).
fn spf_suite() -> Prereq {
    Prereq::new(
        "the RFC 7208 SPF test suite (pyspf 2.0.14's test/rfc7208-tests.yml)",
        Fix::SpfSuite,
        || {
            let suite = spf_suite_dir().join("rfc7208-tests.yml");
            let sha = sha256_of(&suite)?;
            if sha != SPF_SUITE_SHA256 {
                return Err(format!("{} has SHA-256 {sha}", suite.display()));
            }
            Ok(())
        },
    )
}

/// Fetches pyspf's source package from PyPI, checks it and takes the suite
/// and its licence out of it.
fn fetch_spf_suite() -> anyhow::Result<()> {
    let dir = spf_suite_dir();
    std::fs::create_dir_all(&dir)?;
    let tarball = dir.join(PYSPF_TARBALL);
    if sha256_of(&tarball).ok().as_deref() != Some(PYSPF_SHA256) {
        let _ = std::fs::remove_file(&tarball);
        check(
            Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args([PYSPF, "--no-deps", "--no-binary", ":all:", "-d"])
                .arg(&dir),
        )?;
    }
    let sha = sha256_of(&tarball).map_err(anyhow::Error::msg)?;
    if sha != PYSPF_SHA256 {
        bail!(
            "{} has SHA-256 {sha}, not {PYSPF_SHA256}",
            tarball.display()
        );
    }
    check(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&dir)
            .args(["--strip-components=2"])
            .args([
                "pyspf-2.0.14/test/rfc7208-tests.yml",
                "pyspf-2.0.14/test/rfc7208-tests.LICENSE",
            ]),
    )
}

/// What `cargo xtask bench --checks` needs: its DNS server and signer.
pub fn for_checks_bench() -> Vec<Prereq> {
    vec![python("dnslib"), python("dkimpy")]
}

/// Dovecot's IMAP server: the reference the IMAP tests and benchmark
/// compare with (a test peer, never on the appliance).
pub fn dovecot() -> Prereq {
    Prereq::new(
        "Dovecot's IMAP server (the reference the IMAP tests compare with)",
        Fix::Apt(&["dovecot-imapd"]),
        || {
            let out = run("dovecot", &["--version"], b"")?;
            if !std::path::Path::new("/usr/lib/dovecot/imap").exists() {
                return Err(format!(
                    "dovecot {} has no /usr/lib/dovecot/imap",
                    out.trim()
                ));
            }
            Ok(())
        },
    )
}

/// What `cargo xtask test` needs before the first test (the image and
/// QEMU prerequisites of `board` included: the last step boots it).
pub fn for_tests(board: &'static board::Board) -> Vec<Prereq> {
    let mut list = vec![
        Prereq::new(
            "swaks with TLS and AUTH",
            // Net::SSLeay and IO::Socket::SSL are only "recommended" by swaks.
            Fix::Apt(&["swaks", "libnet-ssleay-perl", "libio-socket-ssl-perl"]),
            || {
                let out = run("swaks", &["--support"], b"")?;
                for feature in ["TLS", "Basic AUTH"] {
                    if !out.contains(&format!("=== {feature} supported")) {
                        let why = out.lines().find(|l| l.contains(feature)).unwrap_or("");
                        return Err(format!("swaks cannot do {feature}: {}", why.trim()));
                    }
                }
                Ok(())
            },
        ),
        dovecot(),
        Prereq::new(
            "mbsync (isync: a real IMAP client the tests sync with)",
            Fix::Apt(&["isync"]),
            || run("mbsync", &["--version"], b"").map(drop),
        ),
        Prereq::new(
            "neomutt in tmux (a terminal mail program the tests drive)",
            Fix::Apt(&["neomutt", "tmux"]),
            || {
                run("neomutt", &["-v"], b"")?;
                run("tmux", &["-V"], b"").map(drop)
            },
        ),
        Prereq::new(
            "pebble (Let's Encrypt's ACME test server)",
            Fix::Apt(&["pebble"]),
            || {
                // `-version` is not in Debian's 2.4; an unreadable
                // configuration makes it say who it is and stop.
                let out = Command::new("pebble")
                    .args(["-config", "/nonexistent"])
                    .output()
                    .map_err(|e| format!("pebble cannot run: {e}"))?;
                let said = String::from_utf8_lossy(&out.stderr).to_string()
                    + &String::from_utf8_lossy(&out.stdout);
                if said.contains("Pebble") || said.contains("pebble") {
                    Ok(())
                } else {
                    Err(format!("pebble did not answer as expected: {said}"))
                }
            },
        ),
        Prereq::new(
            "chromium and chromedriver (the web tests' browser)",
            // A font, or pages (and their screenshots) show no text.
            Fix::Apt(&["chromium", "chromium-driver", "fonts-dejavu-core"]),
            || {
                run("chromedriver", &["--version"], b"")?;
                let page = "data:text/html,<p id=ok>rendered</p>";
                let dom = run(
                    "chromium",
                    &[
                        "--headless=new",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--dump-dom",
                        page,
                    ],
                    b"",
                )?;
                if !dom.contains("rendered") {
                    return Err(format!("headless chromium did not render a page: {dom}"));
                }
                if !std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists()
                {
                    return Err("no DejaVu font: pages would render without text".into());
                }
                Ok(())
            },
        ),
        Prereq::new("python3", Fix::Apt(&["python3"]), || {
            run(
                "python3",
                &["-c", "import sys; sys.exit(sys.version_info < (3, 9))"],
                b"",
            )
            .map(drop)
            .map_err(|e| format!("{e} (Python 3.9 or newer is needed)"))
        }),
        Prereq::new("pip", Fix::Apt(&["python3-pip"]), || {
            run("python3", &["-m", "pip", "--version"], b"").map(drop)
        }),
        python("dkimpy"),
        python("authres"),
        python("aiosmtpd"),
        python("dnslib"),
        python("dnspython"),
        python("yaml"),
        python("srslib"),
        spf_suite(),
    ];
    for (component, subcommand) in [("rustfmt", "fmt"), ("clippy", "clippy")] {
        list.push(Prereq::new(
            format!("cargo {subcommand}"),
            Fix::RustupComponent(component),
            move || {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                run(&cargo, &[subcommand, "--version"], b"").map(drop)
            },
        ));
    }
    list.extend(for_image(board));
    list.extend(for_qemu(board));
    list.extend(for_cross(crate::ARM_TARGET));
    list
}

/// Building for `target` (aarch64 musl) on this machine and running what
/// was built: the Rust target, Debian's cross C compiler with its C
/// library (ring has C and assembly; gcc drives the link, as
/// `.cargo/config.toml` says), and qemu-user to run the tests. Checked by
/// compiling a static C program and running it.
pub fn for_cross(target: &'static str) -> Vec<Prereq> {
    vec![
        rust_target(target),
        Prereq::new(
            "aarch64-linux-gnu-gcc and qemu-aarch64-static (cross builds and their tests)",
            Fix::Apt(&[
                "gcc-aarch64-linux-gnu",
                "libc6-dev-arm64-cross",
                "qemu-user-static",
            ]),
            || c_probe("aarch64-linux-gnu-gcc", Some("qemu-aarch64-static")),
        ),
    ]
}

/// The `strip` that understands `target`'s binaries (Debian's cross
/// binutils for ARM).
pub fn strip_program(target: &str) -> &'static str {
    if target == crate::ARM_TARGET {
        "aarch64-linux-gnu-strip"
    } else {
        "strip"
    }
}

/// A static C program compiled with `compiler` runs (under `runner`, for
/// another architecture) and prints what it should.
fn c_probe(compiler: &str, runner: Option<&str>) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = dir.path().join("probe");
    let out = out.to_string_lossy();
    run(
        compiler,
        &["-static", "-x", "c", "-o", &out, "-"],
        b"#include <stdio.h>\nint main(void) { return puts(\"probe ran\") < 0; }\n",
    )?;
    let said = match runner {
        Some(runner) => run(runner, &[&out], b"")?,
        None => run(&out, &[], b"")?,
    };
    if said.contains("probe ran") {
        Ok(())
    } else {
        Err(format!("the program {compiler} built did not run: {said}"))
    }
}

/// An installed Rust target.
fn rust_target(target: &'static str) -> Prereq {
    Prereq::new(
        format!("Rust target {target}"),
        Fix::RustupTarget(target),
        move || {
            let out = run("rustup", &["target", "list", "--installed"], b"")?;
            if out.lines().any(|l| l.trim() == target) {
                Ok(())
            } else {
                Err(format!("{target} is not installed"))
            }
        },
    )
}

/// What `cargo xtask image` needs: the board's Rust target, a C compiler
/// for it (ring has C and assembly), e2fsprogs, strip, and apt/dpkg to fetch
/// and unpack the kernel and boot loader packages.
pub fn for_image(board: &board::Board) -> Vec<Prereq> {
    let target = board.rust_target;
    let mut list = vec![rust_target(target)];
    if target == crate::ARM_TARGET {
        list.extend(for_cross(target).into_iter().skip(1));
    } else if target.contains("musl") {
        list.push(Prereq::new("musl-gcc", Fix::Apt(&["musl-tools"]), || {
            c_probe("musl-gcc", None)
        }));
    }
    list.push(Prereq::new(
        "e2fsprogs (mkfs.ext4, debugfs, e2fsck, dumpe2fs)",
        Fix::Apt(&["e2fsprogs"]),
        || {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            std::fs::write(dir.path().join("probe.txt"), "probe").map_err(|e| e.to_string())?;
            let img = dir.path().join("fs.img");
            let img = img.to_string_lossy();
            let content = dir.path().to_string_lossy().into_owned();
            run("mkfs.ext4", &["-q", "-d", &content, &img, "4M"], b"")?;
            run("e2fsck", &["-fn", &img], b"")?;
            run("dumpe2fs", &["-h", &img], b"")?;
            let cat = run("debugfs", &["-R", "cat /probe.txt", &img], b"")?;
            if cat.contains("probe") {
                Ok(())
            } else {
                Err(format!("debugfs did not read back the file: {cat}"))
            }
        },
    ));
    list.push(Prereq::new("strip", Fix::Apt(&["binutils"]), || {
        run("strip", &["--version"], b"").map(drop)
    }));
    if matches!(board.boot, board::BootMethod::PiTryboot(_)) {
        list.push(Prereq::new(
            "xz, fsck.fat and make (a Pi image is also written as .img.xz, its FATs are checked, a kernel module is built for it)",
            Fix::Apt(&["xz-utils", "dosfstools", "make"]),
            || {
                run("xz", &["--version"], b"")?;
                run("make", &["--version"], b"")?;
                run("fsck.fat", &["--help"], b"").map(drop)
            },
        ));
    }
    list.push(Prereq::new(
        "apt-get and dpkg-deb",
        Fix::Apt(&["apt", "dpkg"]),
        || {
            run("apt-get", &["--version"], b"")?;
            run("dpkg-deb", &["--version"], b"").map(drop)
        },
    ));
    list
}

/// The board's emulator and UEFI firmware: QEMU starts the machine with the
/// firmware, the network card (whose option ROM comes from another package)
/// and the board's devices, stopped before the first instruction, then quits.
pub fn for_qemu(board: &'static board::Board) -> Vec<Prereq> {
    let Some(q) = &board.qemu else {
        return Vec::new();
    };
    vec![
        Prereq::new(
            "fsck.fat (dosfstools: the ESP is checked after updates)",
            Fix::Apt(&["dosfstools"]),
            || run("fsck.fat", &["--help"], b"").map(drop),
        ),
        Prereq::new(
            format!("{} with {}", q.program, q.packages.join(" and ")),
            Fix::Apt(q.packages),
            move || {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                let vm = crate::qemu::Vm {
                    disk: dir.path().join("disk.img"),
                    vars: dir.path().join("vars.fd"),
                    forwards: Vec::new(),
                    console: crate::qemu::Console::File(dir.path().join("console")),
                    qmp: None,
                    no_reboot: true,
                };
                std::fs::write(&vm.disk, vec![0u8; 1 << 20]).map_err(|e| e.to_string())?;
                let cmd = crate::qemu::command(board, &vm).map_err(|e| format!("{e:#}"))?;
                // The same command with the monitor on stdin to say `quit`;
                // stopped (-S), so the accelerator does not matter.
                let mut args: Vec<String> = Vec::new();
                let mut given = cmd.get_args().map(|a| a.to_string_lossy().into_owned());
                while let Some(arg) = given.next() {
                    match arg.as_str() {
                        "-monitor" => drop(given.next()),
                        "kvm" => args.push("tcg".into()),
                        _ => args.push(arg),
                    }
                }
                let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
                args.extend(["-S", "-monitor", "stdio"]);
                run(q.program, &args, b"quit\n").map(drop)
            },
        ),
    ]
}

/// Checks every prerequisite; installs what is missing (Debian packages as
/// root, Python packages with pip, Rust parts with rustup) and checks again.
/// Fails with the doctor's report when something is still missing.
pub fn ensure(list: &[Prereq]) -> anyhow::Result<()> {
    let missing: Vec<&Prereq> = list.iter().filter(|p| (p.probe)().is_err()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    for p in &missing {
        eprintln!(
            "xtask: missing {}; installing ({})",
            p.what,
            p.fix.command()
        );
    }
    let mut packages: Vec<&str> = Vec::new();
    for p in &missing {
        if let Fix::Apt(names) = p.fix {
            add_unique(&mut packages, names);
        }
    }
    // Debian first: pip may come from it.
    if !packages.is_empty() && is_root() {
        apt_install(&packages)?;
    }
    for p in &missing {
        match p.fix {
            Fix::Apt(_) => {}
            Fix::Pip => {}
            Fix::RustupTarget(t) => check(Command::new("rustup").args(["target", "add", t]))?,
            Fix::RustupComponent(c) => check(Command::new("rustup").args(["component", "add", c]))?,
            Fix::SpfSuite => {}
        }
    }
    if missing.iter().any(|p| p.fix == Fix::Pip) {
        pip_install()?;
    }
    // After pip: the download needs it.
    if missing.iter().any(|p| p.fix == Fix::SpfSuite) {
        fetch_spf_suite()?;
    }
    if report(list) > 0 {
        bail!("prerequisites are missing (listed above)");
    }
    Ok(())
}

/// Prints one line per prerequisite and the commands that install the
/// missing ones; returns how many are missing.
pub fn report(list: &[Prereq]) -> usize {
    let mut fixes: Vec<String> = Vec::new();
    let mut apt: Vec<&str> = Vec::new();
    let mut missing = 0;
    for p in list {
        match (p.probe)() {
            Ok(()) => eprintln!("  ok       {}", p.what),
            Err(why) => {
                missing += 1;
                eprintln!("  MISSING  {}: {}", p.what, why.trim());
                match p.fix {
                    Fix::Apt(names) => add_unique(&mut apt, names),
                    fix if !fixes.contains(&fix.command()) => fixes.push(fix.command()),
                    _ => {}
                }
            }
        }
    }
    if missing > 0 {
        eprintln!("\n{missing} missing. `cargo xtask test` run as root installs them; by hand:");
        if !apt.is_empty() {
            eprintln!(
                "  sudo apt-get update && sudo apt-get install --no-install-recommends {}",
                apt.join(" ")
            );
        }
        for fix in fixes {
            eprintln!("  {fix}");
        }
    }
    missing
}

fn add_unique(list: &mut Vec<&'static str>, names: &[&'static str]) {
    for name in names {
        if !list.contains(name) {
            list.push(name);
        }
    }
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

/// Installs Debian packages, each named: recommended packages are not
/// pulled in, so whatever a tool needs must be in the list.
fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    // The package lists may be missing or stale on a fresh machine.
    check(Command::new("apt-get").args(["update", "-qq"]))?;
    check(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The pinned Python packages.
fn pip_install() -> anyhow::Result<()> {
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
            .arg("-r")
            .arg(requirements())
            .status()
            .is_ok_and(|s| s.success())
    };
    // A Debian-managed Python refuses plain installs (PEP 668).
    if pip(&[]) || pip(&["--break-system-packages"]) {
        return Ok(());
    }
    bail!(
        "cannot install the Python packages; run: python3 -m pip install -r {}",
        requirements().display()
    )
}

/// Postfix's `smtp-source` load generator, unpacked from Debian's postfix
/// package without installing a second MTA. Returns the program and the
/// library directory it needs in LD_LIBRARY_PATH.
pub fn smtp_source() -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = match debs::Archive::host().unpacked("postfix") {
        Ok(dir) => dir,
        Err(e) if run("apt-get", &["--version"], b"").is_err() => {
            bail!(
                "smtp-source comes from Debian's postfix package; apt-get is not available here ({e:#})"
            )
        }
        Err(e) => return Err(e),
    };
    let program = dir.join("usr/sbin/smtp-source");
    if !program.exists() {
        bail!("{} not found in the postfix package", program.display());
    }
    Ok((program, dir.join("usr/lib/postfix")))
}
