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
}

pub fn run(args: BundleArgs) -> anyhow::Result<()> {
    let board =
        board::by_name(&args.board).with_context(|| format!("unknown board {:?}", args.board))?;
    let version = args
        .version
        .unwrap_or_else(|| crate::image::version().to_string());
    anyhow::ensure!(
        image::bundle::version_key(&version).is_some(),
        "version {version:?} is not numbers and dots"
    );
    let (key, key_path) = crate::image::signing_key()?;
    let variant = crate::image::Variant::Normal;
    let files = crate::image::slot_files(board, true, &version, variant)?.named();
    let out = args.out.unwrap_or_else(|| {
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
    Ok(())
}
