//! Debian packages for the image (kernel, boot loader, firmware, CA
//! bundle), fetched with `apt-get download` into `target/cache/` (apt
//! verifies them against the signed archive) and unpacked with
//! `dpkg-deb -x`. Nothing is installed on the host.
//!
//! Packages of the host's architecture come through the host's apt.
//! Another architecture's (arm64 for the ARM boards) come through a private
//! apt configuration under `target/cache/apt-<arch>`: the host's Debian
//! archives and keys, that architecture only, and the `non-free-firmware`
//! component besides `main` (the Raspberry Pi firmware lives there). The
//! host's sources, architectures and package lists are left as they are.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{check, root};

/// Where the packages of one Debian architecture come from.
pub struct Archive {
    arch: String,
    /// The private apt configuration (`None`: the host's apt).
    config: Option<PathBuf>,
}

impl Archive {
    /// The host's own architecture, through the host's apt.
    pub fn host() -> Archive {
        Archive {
            arch: host_arch(),
            config: None,
        }
    }

    /// The archive for Debian architecture `arch` (private apt unless it is
    /// the host's).
    pub fn of(arch: &str) -> anyhow::Result<Archive> {
        if arch == host_arch() {
            return Ok(Archive::host());
        }
        let dir = root().join(format!("target/cache/apt-{arch}"));
        let config = private_config(&dir, arch)?;
        Ok(Archive {
            arch: arch.to_string(),
            config: Some(config),
        })
    }

    fn cache(&self) -> PathBuf {
        match self.config {
            None => root().join("target/cache/debs"),
            Some(_) => root().join(format!("target/cache/debs-{}", self.arch)),
        }
    }

    fn apt(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd
    }

    /// Refreshes the package lists: the private ones always may be; the
    /// host's only as root.
    fn update(&self) -> anyhow::Result<()> {
        if self.config.is_none() && !crate::tools::is_root() {
            bail!("apt does not know the package; run `sudo apt-get update` first");
        }
        check(self.apt("apt-get").args(["update", "-qq"]))
    }

    /// The lists are fetched once; `update` again when a package is not
    /// found.
    fn ensure_lists(&self) -> anyhow::Result<()> {
        if let Some(config) = &self.config {
            let lists = config.with_file_name("state/lists");
            let any = std::fs::read_dir(&lists)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
                })
                .unwrap_or(false);
            if !any {
                self.update()?;
            }
        }
        Ok(())
    }

    fn depends(&self, meta: &str) -> anyhow::Result<Option<String>> {
        let out = self
            .apt("apt-cache")
            .args(["depends", "--no-recommends", meta])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let prefix = meta.rsplit_once('-').map(|(p, _)| p).unwrap_or(meta);
        Ok(text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .map(|d| d.trim().trim_start_matches('<').trim_end_matches('>'))
            .map(|d| d.split(':').next().unwrap_or(d))
            .find(|d| d.starts_with(prefix) && *d != meta)
            .map(str::to_string))
    }

    /// The concrete package a metapackage (such as `linux-image-amd64`)
    /// points to today.
    pub fn resolve(&self, meta: &str) -> anyhow::Result<String> {
        self.ensure_lists()?;
        if let Some(dep) = self.depends(meta)? {
            return Ok(dep);
        }
        self.update()?;
        self.depends(meta)?.with_context(|| {
            format!(
                "apt-cache does not know what {meta} ({}) depends on",
                self.arch
            )
        })
    }

    /// Downloads (once) and unpacks a package; returns the directory it was
    /// unpacked into.
    pub fn unpacked(&self, package: &str) -> anyhow::Result<PathBuf> {
        let dir = self.cache().join("root").join(package);
        if dir.join(".complete").exists() {
            return Ok(dir);
        }
        let deb = self.deb(package)?;
        unpack(&[deb], &dir)?;
        Ok(dir)
    }

    /// Downloads a package once; the `.deb`.
    pub fn deb(&self, package: &str) -> anyhow::Result<PathBuf> {
        let cache = self.cache();
        std::fs::create_dir_all(&cache)?;
        Ok(match find_deb(&cache, package)? {
            Some(deb) => deb,
            None => {
                self.ensure_lists()?;
                let download = |archive: &Archive| {
                    archive
                        .apt("apt-get")
                        .args(["download", package])
                        .current_dir(&cache)
                        .status()
                        .map(|s| s.success())
                };
                if !download(self)? {
                    self.update()?;
                    if !download(self)? {
                        bail!("apt-get download {package} ({}) failed", self.arch);
                    }
                }
                find_deb(&cache, package)?
                    .with_context(|| format!("apt-get download {package} left no .deb"))?
            }
        })
    }
}

/// Unpacks `debs` together into `dir` (made afresh; marked complete at
/// the end, so an interrupted unpack is done again).
pub fn unpack(debs: &[PathBuf], dir: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut names = String::new();
    for deb in debs {
        check(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir))?;
        names.push_str(&format!("{}\n", deb.display()));
    }
    std::fs::write(dir.join(".complete"), names)?;
    Ok(())
}

/// The board's kernel package: its archive, where it is unpacked, and the
/// kernel version (its `lib/modules/<version>`).
pub fn kernel(board: &board::Board) -> anyhow::Result<(Archive, PathBuf, String)> {
    let archive = Archive::of(board.debian_arch)?;
    let kernel_root = archive.unpacked(&archive.resolve(board.kernel_package)?)?;
    let version = std::fs::read_dir(kernel_root.join("lib/modules"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .next()
        .context("the kernel package has no lib/modules/<version>")?;
    Ok((archive, kernel_root, version))
}

fn host_arch() -> String {
    Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "amd64".into())
}

fn find_deb(cache: &Path, package: &str) -> anyhow::Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    Ok(std::fs::read_dir(cache)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with(&prefix) && f.ends_with(".deb"))
        })
        .max())
}

/// Components the private archives take packages from.
const COMPONENTS: &str = "main non-free-firmware";

/// Writes the private apt configuration for `arch` under `dir` (its own
/// state, cache and sources; the host's Debian archives and keys) and
/// returns its path.
fn private_config(dir: &Path, arch: &str) -> anyhow::Result<PathBuf> {
    for sub in [
        "state/lists/partial",
        "cache/archives/partial",
        "parts",
        "preferences",
    ] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let status = dir.join("state/status");
    if !status.exists() {
        std::fs::write(&status, "")?;
    }
    let sources = debian_sources()?;
    if sources.is_empty() {
        bail!(
            "the host's apt sources name no Debian archive (deb.debian.org or a mirror of it) to take {arch} packages from"
        );
    }
    let mut list = String::new();
    for s in &sources {
        list.push_str(&format!(
            "Types: deb\nURIs: {}\nSuites: {}\nComponents: {COMPONENTS}\nArchitectures: {arch}\nSigned-By: {}\n\n",
            s.uri, s.suites, s.signed_by
        ));
    }
    std::fs::write(dir.join("parts/debian.sources"), list)?;
    let d = dir.display();
    // As root, apt would download as the _apt user, which cannot write
    // here; the packages are checked against the archive's keys either way.
    let sandbox = if crate::tools::is_root() {
        "APT::Sandbox::User \"root\";\n"
    } else {
        ""
    };
    let config = format!(
        "APT::Architecture \"{arch}\";\nAPT::Architectures {{ \"{arch}\"; }};\n\
         Dir::State \"{d}/state\";\nDir::State::status \"{d}/state/status\";\n\
         Dir::Cache \"{d}/cache\";\nDir::Etc::SourceList \"/dev/null\";\n\
         Dir::Etc::SourceParts \"{d}/parts\";\nDir::Etc::Preferences \"/dev/null\";\n\
         Dir::Etc::PreferencesParts \"{d}/preferences\";\nAcquire::Languages \"none\";\n\
         Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled \"false\";\n\
         Acquire::IndexTargets::deb::DEP-11::DefaultEnabled \"false\";\n\
         Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled \"false\";\n{sandbox}"
    );
    let path = dir.join("apt.conf");
    std::fs::write(&path, config)?;
    Ok(path)
}

struct Source {
    uri: String,
    suites: String,
    signed_by: String,
}

/// The Debian archives the host's apt uses (deb822 `.sources` files and
/// one-line `.list` files), with their keys.
fn debian_sources() -> anyhow::Result<Vec<Source>> {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(("list", t));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().to_string();
            let kind = if name.ends_with(".sources") {
                "sources"
            } else if name.ends_with(".list") {
                "list"
            } else {
                continue;
            };
            texts.push((kind, std::fs::read_to_string(e.path())?));
        }
    }
    let mut out = Vec::new();
    for (kind, text) in texts {
        if kind == "sources" {
            for stanza in text.split("\n\n") {
                let field = |name: &str| {
                    stanza
                        .lines()
                        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                        .map(|v| v.trim().to_string())
                };
                let (Some(types), Some(uris), Some(suites)) =
                    (field("Types"), field("URIs"), field("Suites"))
                else {
                    continue;
                };
                if field("Enabled").as_deref() == Some("no")
                    || !types.split_whitespace().any(|t| t == "deb")
                {
                    continue;
                }
                let signed_by = field("Signed-By");
                for uri in uris.split_whitespace() {
                    if is_debian(uri, signed_by.as_deref()) {
                        out.push(Source {
                            uri: uri.into(),
                            suites: suites.clone(),
                            signed_by: keyring(signed_by.as_deref()),
                        });
                    }
                }
            }
        } else {
            for line in text.lines() {
                let mut words = line.split_whitespace();
                if words.next() != Some("deb") {
                    continue;
                }
                let mut rest: Vec<&str> = words.collect();
                // Options in brackets come first: `[arch=amd64 signed-by=…]`.
                let mut signed_by = None;
                if rest.first().is_some_and(|w| w.starts_with('[')) {
                    while let Some(w) = (!rest.is_empty()).then(|| rest.remove(0)) {
                        let opt = w.trim_matches(|c| c == '[' || c == ']');
                        if let Some(k) = opt.strip_prefix("signed-by=") {
                            signed_by = Some(k.to_string());
                        }
                        if w.ends_with(']') {
                            break;
                        }
                    }
                }
                if let [uri, suite, ..] = rest[..]
                    && is_debian(uri, signed_by.as_deref())
                {
                    out.push(Source {
                        uri: uri.into(),
                        suites: suite.into(),
                        signed_by: keyring(signed_by.as_deref()),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// An archive signed with Debian's keys (deb.debian.org, security, or a
/// mirror named with Debian's keyring).
fn is_debian(uri: &str, signed_by: Option<&str>) -> bool {
    signed_by.is_some_and(|k| k.contains("debian-archive-keyring"))
        || uri.contains("deb.debian.org")
        || uri.contains("security.debian.org")
}

/// The key file a source names, or Debian's (a key written inline in the
/// host's source is not copied: Debian's keyring signs Debian's archives).
fn keyring(signed_by: Option<&str>) -> String {
    match signed_by {
        Some(k) if k.starts_with('/') && !k.contains('\n') => k.to_string(),
        _ => "/usr/share/keyrings/debian-archive-keyring.gpg".into(),
    }
}
