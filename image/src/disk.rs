//! The disk layouts, written without root or loop devices: a UEFI board's
//! GPT with the EFI system partition (boot slots A and B, systemd-boot) and
//! the data partition (ext4, label `mailbox-data`); a Raspberry Pi's MBR
//! with the boot selector, slots A and B and the data (see
//! [`crate::tryboot`]). And the data partition's growth to the whole disk on
//! first boot, on either.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use gpt::disk::LogicalBlockSize;
use gpt::partition_types;

/// GPT name and file system label of the data partition.
pub const DATA_NAME: &str = "mailbox-data";
/// GPT name of the EFI system partition.
pub const ESP_NAME: &str = "EFI System";
const SECTOR: u64 = 512;
/// Partitions start on 1 MiB boundaries.
const ALIGN: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("partition table: {0}")]
    Gpt(#[from] gpt::GptError),
    #[error("the disk has no partition named {0:?}")]
    NoDataPartition(&'static str),
    #[error("MBR: {0}")]
    Mbr(String),
    #[error("the disk is too large for an MBR (2 TiB at most)")]
    TooLarge,
}

/// Where the partitions are, in bytes from the start of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub esp_offset: u64,
    pub esp_len: u64,
    pub data_offset: u64,
    pub data_len: u64,
}

/// Writes a disk image at `path`: GPT, the ESP from `esp` and the data
/// partition from the file system image `data`.
pub fn write_image(path: &Path, esp: &[u8], data: &Path) -> Result<Layout, DiskError> {
    let esp_len = (esp.len() as u64).div_ceil(ALIGN) * ALIGN;
    let data_len = std::fs::metadata(data)?.len().div_ceil(ALIGN) * ALIGN;
    let layout = Layout {
        esp_offset: ALIGN,
        esp_len,
        data_offset: ALIGN + esp_len,
        data_len,
    };
    // One more MiB at the end holds the backup GPT.
    let total = layout.data_offset + data_len + ALIGN;
    let file = create_sized(path, total)?;

    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(file, None)?;
    disk.add_partition_at(
        ESP_NAME,
        1,
        layout.esp_offset / SECTOR,
        esp_len / SECTOR,
        partition_types::EFI,
        0,
    )?;
    disk.add_partition_at(
        DATA_NAME,
        2,
        layout.data_offset / SECTOR,
        data_len / SECTOR,
        partition_types::LINUX_FS,
        0,
    )?;
    let mut file = disk.write()?;
    let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(
        u32::try_from(total / SECTOR - 1).unwrap_or(u32::MAX),
    );
    mbr.overwrite_lba0(&mut file)
        .map_err(|e| io::Error::other(e.to_string()))?;

    file.seek(SeekFrom::Start(layout.esp_offset))?;
    file.write_all(esp)?;
    file.seek(SeekFrom::Start(layout.data_offset))?;
    io::copy(&mut File::open(data)?, &mut file)?;
    file.sync_all()?;
    Ok(layout)
}

/// A new disk image of `bytes` (sparse).
fn create_sized(path: &Path, bytes: u64) -> io::Result<File> {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.set_len(bytes)?;
    Ok(file)
}

/// Reads the layout back from a disk image or device.
pub fn read_layout(path: &Path) -> Result<Layout, DiskError> {
    let disk = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open(path)?;
    let find = |name: &'static str| {
        disk.partitions()
            .values()
            .find(|p| p.name == name)
            .map(|p| {
                (
                    p.first_lba * SECTOR,
                    (p.last_lba - p.first_lba + 1) * SECTOR,
                )
            })
            .ok_or(DiskError::NoDataPartition(name))
    };
    let (esp_offset, esp_len) = find(ESP_NAME)?;
    let (data_offset, data_len) = find(DATA_NAME)?;
    Ok(Layout {
        esp_offset,
        esp_len,
        data_offset,
        data_len,
    })
}

/// The result of [`grow_data_partition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grown {
    /// GPT partition number (1-based).
    pub number: u32,
    pub start_bytes: u64,
    pub old_len_bytes: u64,
    pub new_len_bytes: u64,
}

/// Extends the data partition (the last one) to the end of the disk and
/// moves the backup GPT there. Returns `None` when it already fills the
/// disk (within 1 MiB). `device` is the whole disk (`/dev/vda`) or an image.
pub fn grow_data_partition<D: gpt::DiskDevice>(mut device: D) -> Result<Option<Grown>, DiskError> {
    // A GPT disk has a protective MBR: one partition of type 0xEE.
    let mut mbr = [0u8; 512];
    device.seek(SeekFrom::Start(0))?;
    device.read_exact(&mut mbr)?;
    if mbr[510..512] == [0x55, 0xAA] && mbr[446 + 4] != 0xEE {
        return grow_mbr_data(device);
    }
    device.seek(SeekFrom::Start(0))?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open_from_device(device)?;
    let mut parts: BTreeMap<u32, gpt::partition::Partition> = disk.partitions().clone();
    let (&number, data) = parts
        .iter_mut()
        .find(|(_, p)| p.name == DATA_NAME)
        .ok_or(DiskError::NoDataPartition(DATA_NAME))?;
    let disk_sectors = disk.device_mut().seek(SeekFrom::End(0))? / SECTOR;
    // Leave the last MiB for the backup GPT, end on an aligned boundary.
    let usable_end = (disk_sectors * SECTOR - ALIGN) / ALIGN * ALIGN / SECTOR;
    let old_len = data.last_lba - data.first_lba + 1;
    if usable_end <= data.last_lba + 1 + ALIGN / SECTOR {
        return Ok(None);
    }
    data.last_lba = usable_end - 1;
    let grown = Grown {
        number,
        start_bytes: data.first_lba * SECTOR,
        old_len_bytes: old_len * SECTOR,
        new_len_bytes: (data.last_lba - data.first_lba + 1) * SECTOR,
    };
    disk.update_partitions(parts)?;
    let mut device = disk.write()?;
    let mbr =
        gpt::mbr::ProtectiveMBR::with_lb_size(u32::try_from(disk_sectors - 1).unwrap_or(u32::MAX));
    mbr.overwrite_lba0(&mut device)
        .map_err(|e| io::Error::other(e.to_string()))?;
    device.flush()?;
    Ok(Some(grown))
}

/// MBR partition types of a Raspberry Pi disk: the boot selector and the
/// two slots are FAT32 (LBA), the data is Linux.
pub const PI_PARTITIONS: [u8; 4] = [0x0c, 0x0c, 0x0c, 0x83];

/// Where the partitions of a Raspberry Pi disk are: (offset, length) in
/// bytes of the boot selector, slot A, slot B and the data; and their
/// MBR types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiLayout {
    pub parts: [(u64, u64); 4],
    pub types: [u8; 4],
}

/// Writes a Raspberry Pi disk image at `path`: an MBR, the three FAT
/// partitions `fats` (selector, slot A, slot B) and the data partition from
/// the file system image `data`.
pub fn write_pi_image(
    path: &Path,
    fats: &[Vec<u8>; 3],
    data: &Path,
) -> Result<PiLayout, DiskError> {
    let mut parts = [(0u64, 0u64); 4];
    let mut at = ALIGN;
    for (n, fat) in fats.iter().enumerate() {
        let len = (fat.len() as u64).div_ceil(ALIGN) * ALIGN;
        parts[n] = (at, len);
        at += len;
    }
    let data_len = std::fs::metadata(data)?.len().div_ceil(ALIGN) * ALIGN;
    parts[3] = (at, data_len);
    let mut file = create_sized(path, at + data_len)?;
    // The disk identifier (Linux's PARTUUID prefix): differs per build.
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u32 ^ (d.as_secs() as u32).rotate_left(16))
        .unwrap_or(0x4d42_4f58);
    let mut mbr =
        mbrman::MBR::new_from(&mut file, SECTOR as u32, id.to_le_bytes()).map_err(mbr_error)?;
    for (n, &(offset, len)) in parts.iter().enumerate() {
        mbr[n + 1] = mbrman::MBRPartitionEntry {
            boot: if n == 0 {
                mbrman::BOOT_ACTIVE
            } else {
                mbrman::BOOT_INACTIVE
            },
            first_chs: mbrman::CHS::empty(),
            sys: PI_PARTITIONS[n],
            last_chs: mbrman::CHS::empty(),
            starting_lba: sectors(offset)?,
            sectors: sectors(len)?,
        };
    }
    mbr.write_into(&mut file).map_err(mbr_error)?;
    for (n, fat) in fats.iter().enumerate() {
        file.seek(SeekFrom::Start(parts[n].0))?;
        file.write_all(fat)?;
    }
    file.seek(SeekFrom::Start(parts[3].0))?;
    io::copy(&mut File::open(data)?, &mut file)?;
    file.sync_all()?;
    Ok(PiLayout {
        parts,
        types: PI_PARTITIONS,
    })
}

fn sectors(bytes: u64) -> Result<u32, DiskError> {
    u32::try_from(bytes / SECTOR).map_err(|_| DiskError::TooLarge)
}

fn mbr_error(e: mbrman::Error) -> DiskError {
    DiskError::Mbr(e.to_string())
}

/// Reads a Raspberry Pi disk's layout back (its first four MBR entries).
pub fn read_pi_layout(path: &Path) -> Result<PiLayout, DiskError> {
    let mut file = File::open(path)?;
    let mbr = mbrman::MBR::read_from(&mut file, SECTOR as u32).map_err(mbr_error)?;
    let mut layout = PiLayout {
        parts: [(0, 0); 4],
        types: [0; 4],
    };
    for n in 0..4 {
        let p = &mbr[n + 1];
        layout.parts[n] = (p.starting_lba as u64 * SECTOR, p.sectors as u64 * SECTOR);
        layout.types[n] = p.sys;
    }
    Ok(layout)
}

/// Grows the last partition of an MBR disk (the Pi's data) to the end of
/// the disk (MBR's limit: 2 TiB).
fn grow_mbr_data<D: Read + Write + Seek>(mut device: D) -> Result<Option<Grown>, DiskError> {
    device.seek(SeekFrom::Start(0))?;
    let mut mbr = mbrman::MBR::read_from(&mut device, SECTOR as u32).map_err(mbr_error)?;
    let disk_bytes = device.seek(SeekFrom::End(0))?;
    let Some(number) = (1..=4usize)
        .filter(|&n| mbr[n].is_used() && mbr[n].sys == 0x83)
        .max_by_key(|&n| mbr[n].starting_lba)
    else {
        return Err(DiskError::NoDataPartition(DATA_NAME));
    };
    let start = mbr[number].starting_lba as u64;
    let old_len = mbr[number].sectors as u64;
    let usable_end = (disk_bytes / ALIGN * ALIGN / SECTOR).min(u32::MAX as u64);
    if usable_end <= start + old_len + ALIGN / SECTOR {
        return Ok(None);
    }
    let new_len = usable_end - start;
    mbr[number].sectors = sectors(new_len * SECTOR)?;
    device.seek(SeekFrom::Start(0))?;
    mbr.write_into(&mut device).map_err(mbr_error)?;
    device.flush()?;
    Ok(Some(Grown {
        number: number as u32,
        start_bytes: start * SECTOR,
        old_len_bytes: old_len * SECTOR,
        new_len_bytes: new_len * SECTOR,
    }))
}

/// The label of the ext4 or FAT file system whose first 2 KiB are `head`.
pub fn fs_label(head: &[u8]) -> Option<String> {
    let text = |bytes: &[u8]| {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end])
            .trim_end()
            .to_string()
    };
    // ext2/3/4: the superblock at 1024, magic 0xEF53 at +56, label at +120.
    if head.get(1080..1082) == Some(&[0x53, 0xef]) {
        return Some(text(head.get(1144..1160)?));
    }
    // FAT32: "FAT32   " at 82, the label at 71; FAT12/16: at 54 and 43.
    if head.get(82..87) == Some(b"FAT32") {
        return Some(text(head.get(71..82)?));
    }
    if head.get(54..57) == Some(b"FAT") {
        return Some(text(head.get(43..54)?));
    }
    None
}

#[cfg(feature = "build")]
pub use build::*;

#[cfg(feature = "build")]
mod build {
    use std::io::{self, Cursor, Write};

    /// A FAT32 file system image of `size` bytes holding `files` (paths with
    /// `/`, parents created).
    pub fn fat_image(size: u64, label: &str, files: &[(String, Vec<u8>)]) -> io::Result<Vec<u8>> {
        let mut image = Cursor::new(vec![0u8; size as usize]);
        let mut label_bytes = [b' '; 11];
        for (i, b) in label.bytes().take(11).enumerate() {
            label_bytes[i] = b.to_ascii_uppercase();
        }
        fatfs::format_volume(
            &mut image,
            fatfs::FormatVolumeOptions::new()
                .fat_type(fatfs::FatType::Fat32)
                .volume_label(label_bytes),
        )?;
        {
            let fs = fatfs::FileSystem::new(&mut image, fatfs::FsOptions::new())?;
            for (path, data) in files {
                let mut dir = fs.root_dir();
                let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                for part in &parts[..parts.len() - 1] {
                    dir = match dir.open_dir(part) {
                        Ok(d) => d,
                        Err(_) => dir.create_dir(part)?,
                    };
                }
                let mut file = dir.create_file(parts[parts.len() - 1])?;
                file.truncate()?;
                file.write_all(data)?;
            }
            fs.unmount()?;
        }
        let mut image = image.into_inner();
        repair(&mut image).ok_or_else(|| io::Error::other("the FAT image is not FAT32"))?;
        Ok(image)
    }

    /// What fatfs 0.3 gets wrong, put right so `fsck.fat` finds nothing:
    /// it writes a long-name slot before each directory's `.` and `..`
    /// (which must be its first two entries), gives `..` of a directory in
    /// the root the root's cluster (it must be 0), and leaves the
    /// free-cluster count unknown.
    fn repair(image: &mut [u8]) -> Option<()> {
        let u16_at = |img: &[u8], at: usize| u16::from_le_bytes([img[at], img[at + 1]]) as usize;
        let u32_at = |img: &[u8], at: usize| -> Option<usize> {
            Some(u32::from_le_bytes(img.get(at..at + 4)?.try_into().ok()?) as usize)
        };
        let sector = u16_at(image, 11);
        let per_cluster = *image.get(13)? as usize * sector;
        let reserved = u16_at(image, 14) * sector;
        let fats = *image.get(16)? as usize;
        let fat_len = u32_at(image, 36)? * sector;
        let root = u32_at(image, 44)?;
        let data = reserved + fats * fat_len;
        let cluster_at = |c: usize| data + (c - 2) * per_cluster;
        // Every directory below the root: its first cluster, and its
        // parent's.
        let mut dirs = vec![(root, 0)];
        let mut seen = 0;
        while seen < dirs.len() {
            let parent = dirs[seen].0;
            let start = cluster_at(parent);
            seen += 1;
            for slot in image.get(start..start + per_cluster)?.chunks(32) {
                if slot[0] == 0 {
                    break;
                }
                let (attr, name) = (slot[11], &slot[..11]);
                if slot[0] == 0xE5 || attr == 0x0F || attr & 0x10 == 0 || name[0] == b'.' {
                    continue;
                }
                let cluster = (u16::from_le_bytes([slot[20], slot[21]]) as usize) << 16
                    | u16::from_le_bytes([slot[26], slot[27]]) as usize;
                if cluster >= 2 && !dirs.iter().any(|(c, _)| *c == cluster) {
                    dirs.push((cluster, parent));
                }
            }
        }
        for &(dir, parent) in &dirs[1..] {
            let start = cluster_at(dir);
            let slots = image.get_mut(start..start + 4 * 32)?;
            let is_lfn = |s: &[u8]| s[11] == 0x0F;
            if is_lfn(&slots[0..32])
                && slots[32] == b'.'
                && is_lfn(&slots[64..96])
                && slots[96] == b'.'
            {
                let dot = slots[32..64].to_vec();
                let dotdot = slots[96..128].to_vec();
                slots[0..32].copy_from_slice(&dot);
                slots[32..64].copy_from_slice(&dotdot);
                // The two slots after them: deleted entries.
                slots[64..96].fill(0);
                slots[64] = 0xE5;
                slots[96..128].fill(0);
                slots[96] = 0xE5;
            }
            if parent == root && slots[32..34] == *b".." {
                for at in [32 + 20, 32 + 21, 32 + 26, 32 + 27] {
                    slots[at] = 0;
                }
            }
        }
        // The free-cluster count in the FSInfo sector.
        let clusters = (image.len() - data) / per_cluster;
        let fat = &image[reserved..reserved + fat_len];
        let free = (2..clusters + 2)
            .filter(|c| fat.get(c * 4..c * 4 + 4).is_some_and(|e| e == [0, 0, 0, 0]))
            .count() as u32;
        let info = u16_at(image, 48) * sector;
        image
            .get_mut(info + 488..info + 492)?
            .copy_from_slice(&free.to_le_bytes());
        Some(())
    }

    /// Reads a file of a FAT image (for tests and checks).
    pub fn fat_read(image: &[u8], path: &str) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let fs = fatfs::FileSystem::new(Cursor::new(image.to_vec()), fatfs::FsOptions::new())?;
        let mut out = Vec::new();
        fs.root_dir()
            .open_file(path.trim_start_matches('/'))?
            .read_to_end(&mut out)?;
        Ok(out)
    }

    /// The volume label of a FAT image.
    pub fn fat_label(image: &[u8]) -> io::Result<String> {
        let fs = fatfs::FileSystem::new(Cursor::new(image.to_vec()), fatfs::FsOptions::new())?;
        Ok(fs.volume_label().trim_end().to_string())
    }

    /// Lists the files of a directory in a FAT image (for tests and checks).
    pub fn fat_list(image: &[u8], dir: &str) -> io::Result<Vec<String>> {
        let fs = fatfs::FileSystem::new(Cursor::new(image.to_vec()), fatfs::FsOptions::new())?;
        let mut d = fs.root_dir();
        for part in dir.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
            d = d.open_dir(part)?;
        }
        Ok(d.iter()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| n != "." && n != "..")
            .collect())
    }
}

#[cfg(all(test, feature = "build"))]
pub(crate) mod tests {
    use super::*;

    /// What dosfstools' `fsck.fat -n` (named in xtask's prerequisites)
    /// says of `image` (None: clean).
    pub(crate) fn fsck(image: &[u8]) -> Option<String> {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("esp.fat");
        std::fs::write(&path, image).unwrap();
        let out = std::process::Command::new("fsck.fat")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("fsck.fat (dosfstools)");
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }

    #[test]
    fn the_fat_image_passes_fsck() {
        let esp = fat_image(
            64 << 20,
            "MAILBOX",
            &[
                ("EFI/BOOT/BOOTX64.EFI".into(), vec![1u8; 100_000]),
                ("loader/loader.conf".into(), b"timeout 0\n".to_vec()),
                (
                    "loader/entries/mailbox-a+3.conf".into(),
                    b"title x\n".to_vec(),
                ),
                ("mailbox/a/vmlinuz".into(), vec![2u8; 300_000]),
            ],
        )
        .unwrap();
        assert_eq!(fsck(&esp), None);
        assert_eq!(fat_list(&esp, "mailbox/a").unwrap(), ["vmlinuz"]);
    }

    #[test]
    fn image_has_both_partitions_and_grows_to_the_disk() {
        let t = tempfile::tempdir().unwrap();
        let esp = fat_image(
            64 << 20,
            "MAILBOX",
            &[("loader/entries/a+3.conf".into(), b"title x\n".to_vec())],
        )
        .unwrap();
        assert_eq!(fat_list(&esp, "loader/entries").unwrap(), ["a+3.conf"]);
        let data = t.path().join("data.ext4");
        std::fs::write(&data, vec![7u8; 3 << 20]).unwrap();
        let img = t.path().join("disk.img");
        let layout = write_image(&img, &esp, &data).unwrap();
        assert_eq!(read_layout(&img).unwrap(), layout);
        let bytes = std::fs::read(&img).unwrap();
        assert_eq!(&bytes[510..512], &[0x55, 0xAA]);
        assert_eq!(&bytes[512..520], b"EFI PART");
        assert_eq!(bytes[layout.data_offset as usize], 7);

        // Nothing to grow on an exact-size disk; after enlarging, the data
        // partition takes the new room and the table stays valid.
        assert_eq!(
            grow_data_partition(File::options().read(true).write(true).open(&img).unwrap())
                .unwrap(),
            None
        );
        let f = File::options().read(true).write(true).open(&img).unwrap();
        f.set_len(bytes.len() as u64 + (64 << 20)).unwrap();
        let grown = grow_data_partition(f).unwrap().unwrap();
        assert_eq!(grown.number, 2);
        assert_eq!(grown.new_len_bytes, layout.data_len + (64 << 20));
        let after = read_layout(&img).unwrap();
        assert_eq!(after.data_len, grown.new_len_bytes);
        assert_eq!(after.esp_len, layout.esp_len);
    }

    #[test]
    fn a_pi_image_has_four_mbr_partitions_found_by_label_and_grows() {
        let t = tempfile::tempdir().unwrap();
        let fats = [
            fat_image(
                64 << 20,
                "MBXBOOT",
                &[("autoboot.txt".into(), b"x".to_vec())],
            )
            .unwrap(),
            fat_image(40 << 20, "MBXSLOTA", &[]).unwrap(),
            fat_image(40 << 20, "MBXSLOTB", &[]).unwrap(),
        ];
        assert_eq!(fs_label(&fats[0][..2048]).as_deref(), Some("MBXBOOT"));
        // A real ext4 (e2fsprogs is a prerequisite of the image build).
        let data = t.path().join("data.ext4");
        let ok = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", DATA_NAME])
            .arg(&data)
            .arg("8M")
            .status()
            .expect("mkfs.ext4");
        assert!(ok.success());
        let img = t.path().join("pi.img");
        let layout = write_pi_image(&img, &fats, &data).unwrap();
        assert_eq!(read_pi_layout(&img).unwrap(), layout);
        let bytes = std::fs::read(&img).unwrap();
        // An MBR, not a GPT: no protective 0xEE entry.
        assert_eq!(&bytes[510..512], &[0x55, 0xAA]);
        assert_eq!(bytes[446 + 4], 0x0c);
        assert_eq!(bytes[446], 0x80, "the selector is marked active");
        let head = |n: usize| {
            let at = layout.parts[n].0 as usize;
            bytes[at..at + 2048].to_vec()
        };
        assert_eq!(fs_label(&head(1)).as_deref(), Some("MBXSLOTA"));
        assert_eq!(fs_label(&head(3)).as_deref(), Some(DATA_NAME));
        assert_eq!(fs_label(&[0u8; 2048]), None);
        for n in 0..3 {
            assert_eq!(layout.parts[n + 1].0, layout.parts[n].0 + layout.parts[n].1);
        }

        // Nothing to grow on an exact-size disk; on a bigger card the data
        // partition takes the room and the boot partitions stay.
        let open = || File::options().read(true).write(true).open(&img).unwrap();
        assert_eq!(grow_data_partition(open()).unwrap(), None);
        open().set_len(bytes.len() as u64 + (96 << 20)).unwrap();
        let grown = grow_data_partition(open()).unwrap().unwrap();
        assert_eq!(grown.number, 4);
        assert_eq!(grown.new_len_bytes, layout.parts[3].1 + (96 << 20));
        let after = read_pi_layout(&img).unwrap();
        assert_eq!(after.parts[3].1, grown.new_len_bytes);
        assert_eq!(after.parts[..3], layout.parts[..3]);
        assert_eq!(grow_data_partition(open()).unwrap(), None);
    }
}
