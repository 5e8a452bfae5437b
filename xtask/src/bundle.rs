//! `cargo xtask bundle`: an update bundle for a board (see the `image`
//! crate's `bundle` module for the format), signed with the project's
//! update key.
//!
//! The key is made on first use, outside the repository (never
//! committed): `$MAILBOX_SIGNING_KEY`, or `~/.config/mailbox/update-signing.pk8`
//! (mode 0600). Every image built on this machine trusts its public key
//! (`/etc/mailbox/update-key.pub` in the initramfs).

use std::path::PathBuf;

use anyhow::Context;
use argh::FromArgs;

use crate::root;

/// build a signed update bundle for a board
#[derive(FromArgs)]
#[argh(subcommand, name = "bundle")]
pub struct BundleArgs {
    /// board to build for (default pc-x86_64)
    #[argh(option, default = "String::from(\"pc-x86_64\")")]
    board: String,
    /// the version the bundle installs (default the workspace's)
    #[argh(option)]
    version: Option<String>,
    /// where to write it (default target/bundles/mailbox-BOARD-VERSION.bundle)
    #[argh(option)]
    out: Option<PathBuf>,
    /// publish it into this directory, the one appliances poll (`[update] url`): the bundle, then BOARD.manifest announcing it
    #[argh(option)]
    publish: Option<PathBuf>,
}

pub fn run(args: BundleArgs) -> anyhow::Result<()> {
    let out = match &args.publish {
        Some(dir) if args.out.is_none() => {
            let version = args
                .version
                .clone()
                .unwrap_or_else(|| crate::image::version().to_string());
            Some(dir.join(format!("mailbox-{}-{version}.bundle", args.board)))
        }
        _ => args.out.clone(),
    };
    let bundle = build(&args.board, args.version, out)?;
    if let Some(dir) = &args.publish {
        publish(&bundle, dir, &args.board)?;
    }
    Ok(())
}

/// Puts `bundle` into the update directory `dir` (copied there unless it
/// is there already), then announces it: `BOARD.manifest`, the bundle's
/// signed head, replaced atomically once the bundle is whole, so a poller
/// never finds a manifest without its bundle.
pub fn publish(bundle: &std::path::Path, dir: &std::path::Path, board: &str) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::create_dir_all(dir)?;
    let mut head = vec![0u8; 12];
    let mut f = std::fs::File::open(bundle)?;
    f.read_exact(&mut head)?;
    let manifest_len = u32::from_le_bytes(head[8..12].try_into()?) as usize;
    head.resize(12 + manifest_len + 64, 0);
    f.read_exact(&mut head[12..])?;
    let text = String::from_utf8_lossy(&head[12..12 + manifest_len]).to_string();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("version "))
        .context("the bundle's manifest names no version")?
        .to_string();
    let name = format!("mailbox-{board}-{version}.bundle");
    let target = dir.join(&name);
    if std::fs::canonicalize(bundle)? != std::fs::canonicalize(dir)?.join(&name) {
        let aside = dir.join(format!(".{name}.tmp"));
        std::fs::copy(bundle, &aside)?;
        std::fs::File::open(&aside)?.sync_all()?;
        std::fs::rename(&aside, &target)?;
    }
    let manifest = dir.join(format!("{board}.manifest"));
    let aside = dir.join(format!(".{board}.manifest.tmp"));
    std::fs::write(&aside, &head)?;
    std::fs::File::open(&aside)?.sync_all()?;
    std::fs::rename(&aside, &manifest)?;
    println!(
        "bundle: published version {version} in {} ({} announces {name})",
        dir.display(),
        manifest.display()
    );
    Ok(())
}

/// Builds the bundle of `board` at `version` (default the workspace's)
/// into `out` (default under target/bundles); its path.
pub fn build(
    board: &str,
    version: Option<String>,
    out: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    let board = board::by_name(board).with_context(|| format!("unknown board {board:?}"))?;
    let version = version.unwrap_or_else(|| crate::image::version().to_string());
    anyhow::ensure!(
        image::bundle::version_key(&version).is_some(),
        "version {version:?} is not numbers and dots"
    );
    let (key, key_path) = crate::image::signing_key()?;
    let variant = crate::image::Variant::Normal;
    let files = crate::image::slot_files(board, true, &version, variant)?.named();
    let out = out.unwrap_or_else(|| {
        root()
            .join("target/bundles")
            .join(format!("mailbox-{}-{version}.bundle", board.name))
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
    let manifest = image::bundle::write(&mut w, &key, board.name, &version, &files)?;
    w.into_inner()?.sync_all()?;
    println!(
        "bundle: {} ({}; {} files; signed with {})",
        out.display(),
        crate::image::size(&out),
        manifest.files.len(),
        key_path.display()
    );
    Ok(out)
}
