//! Checking the ESP's FAT32 before init mounts it, and putting right what
//! an unclean shutdown leaves — what `fsck.fat -a` would (systemd runs it
//! on the ESP at boot; the appliance has no fsck.fat): the dirty flag
//! Linux sets while the volume is mounted, a free-cluster count not yet
//! written, clusters allocated to no file (a write cut off), a file whose
//! cluster chain does not match its size, a second FAT that differs from
//! the first.
//!
//! It repairs only what it can explain: a first FAT whose first entry is
//! not the media marker, directories nested deeper than it follows, or
//! more clusters "of no file" than a cut-off write leaves, and it writes
//! nothing and says why (a damaged volume is better left to a person
//! than freed). Memory is bounded: the first FAT (4 bytes per cluster:
//! 2 MiB for the 256 MiB ESP), a bit per cluster, one cluster at a time;
//! larger FATs are left alone. The fixes are written FAT first, directory
//! entries next, the free count, and the clean flag last, so a repair cut
//! off is done again at the next boot.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// The largest FAT checked (a 32 GiB volume of 4 KiB clusters).
const MAX_FAT: u64 = 32 << 20;
/// How deep directories are followed.
const MAX_DEPTH: usize = 16;
/// The most clusters of no file a repair frees: a write cut off leaves
/// what it had allocated (a kernel or an initramfs: a few thousand);
/// more means the tree could not be read, and freeing would destroy.
const MAX_LOST: u32 = 1 << 16;
const EOC: u32 = 0x0FFF_FFFF;
const BAD: u32 = 0x0FFF_FFF7;
/// Linux's "not cleanly unmounted" bit in the boot sector's state byte.
const DIRTY: u8 = 0x01;
const STATE: u64 = 0x41;

#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("not a FAT32 volume: {0}")]
    NotFat32(&'static str),
    #[error("the FAT is too large to check here ({0} bytes)")]
    TooLarge(u64),
    #[error("damaged beyond what a power cut leaves ({0}); nothing was changed")]
    Implausible(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What was found (and, when repairing, put right).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Not cleanly unmounted.
    pub dirty: bool,
    /// The free-cluster count recorded, when it was wrong.
    pub free_recorded: Option<u32>,
    /// The free clusters counted.
    pub free: u32,
    /// Clusters allocated to no file, freed.
    pub lost: u32,
    /// Files whose size or cluster chain was made to agree.
    pub files: Vec<String>,
    /// Sectors of the second FAT made equal to the first.
    pub fat_copies: u32,
}

impl Report {
    /// Whether anything was wrong.
    pub fn found(&self) -> bool {
        self.dirty
            || self.free_recorded.is_some()
            || self.lost > 0
            || !self.files.is_empty()
            || self.fat_copies > 0
    }

    /// For the console.
    pub fn describe(&self) -> String {
        let mut what = Vec::new();
        if self.dirty {
            what.push("not cleanly unmounted".to_string());
        }
        if let Some(recorded) = self.free_recorded {
            what.push(format!(
                "free clusters {recorded} recorded, {} counted",
                self.free
            ));
        }
        if self.lost > 0 {
            what.push(format!("{} clusters of no file freed", self.lost));
        }
        for f in &self.files {
            what.push(format!("{f}: size and clusters made to agree"));
        }
        if self.fat_copies > 0 {
            what.push(format!("{} sectors of the second FAT", self.fat_copies));
        }
        what.join("; ")
    }
}

struct Geometry {
    sector: u64,
    cluster: u64,
    reserved: u64,
    fats: u64,
    fat_len: u64,
    data: u64,
    clusters: u32,
    root: u32,
    info: u64,
}

fn u16_at(b: &[u8], at: usize) -> u64 {
    u16::from_le_bytes([b[at], b[at + 1]]) as u64
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn geometry(boot: &[u8; 512]) -> Result<Geometry, FatError> {
    if boot[510..512] != [0x55, 0xAA] {
        return Err(FatError::NotFat32("no boot sector signature"));
    }
    let sector = u16_at(boot, 11);
    let per_cluster = boot[13] as u64;
    if !(512..=4096).contains(&sector) || !sector.is_power_of_two() {
        return Err(FatError::NotFat32("bad sector size"));
    }
    if per_cluster == 0 || !per_cluster.is_power_of_two() {
        return Err(FatError::NotFat32("bad cluster size"));
    }
    let reserved = u16_at(boot, 14);
    let fats = boot[16] as u64;
    let total = if u16_at(boot, 19) != 0 {
        u16_at(boot, 19)
    } else {
        u32_at(boot, 32) as u64
    };
    let fat_sectors = u32_at(boot, 36) as u64;
    if u16_at(boot, 22) != 0 || fat_sectors == 0 || fats == 0 || fats > 2 || reserved == 0 {
        return Err(FatError::NotFat32("not a FAT32 layout"));
    }
    let data_sector = reserved + fats * fat_sectors;
    let clusters = total.saturating_sub(data_sector) / per_cluster;
    let fat_len = fat_sectors * sector;
    if !(65525..=0x0FFF_FFF5).contains(&clusters) || (clusters + 2) * 4 > fat_len {
        return Err(FatError::NotFat32("cluster count"));
    }
    if fat_len > MAX_FAT {
        return Err(FatError::TooLarge(fat_len));
    }
    let root = u32_at(boot, 44);
    if root < 2 || root as u64 >= clusters + 2 {
        return Err(FatError::NotFat32("root cluster"));
    }
    Ok(Geometry {
        sector,
        cluster: per_cluster * sector,
        reserved: reserved * sector,
        fats,
        fat_len,
        data: data_sector * sector,
        clusters: clusters as u32,
        root,
        info: u16_at(boot, 48) * sector,
    })
}

/// The walk over the file tree: which clusters are in use.
struct Walk<'a, D> {
    dev: &'a mut D,
    g: &'a Geometry,
    fat: &'a mut [u32],
    used: Vec<u64>,
    report: &'a mut Report,
    /// Directory clusters changed (where, what), written after the FAT.
    changed: Vec<(u64, Vec<u8>)>,
    /// Why the tree could not be followed, if it could not.
    broken: Option<String>,
}

impl<D: Read + Write + Seek> Walk<'_, D> {
    fn valid(&self, c: u32) -> bool {
        c >= 2 && c < self.g.clusters + 2
    }

    fn is_used(&self, c: u32) -> bool {
        self.used[c as usize / 64] & (1 << (c % 64)) != 0
    }

    fn mark(&mut self, c: u32) {
        self.used[c as usize / 64] |= 1 << (c % 64);
    }

    /// Follows the chain from `start`, marking it; at most `limit`
    /// clusters. Its clusters; a chain that runs into a free, invalid or
    /// already used cluster ends (EOC) at the last good one. A
    /// directory's first cluster is its own even if the FAT lost it.
    fn chain(&mut self, start: u32, limit: u64, directory: bool) -> Vec<u32> {
        let mut clusters = Vec::new();
        let mut c = start;
        if directory && self.valid(c) && !self.is_used(c) && self.fat[c as usize] == 0 {
            self.fat[c as usize] = EOC;
        }
        loop {
            if !self.valid(c) || self.is_used(c) || self.fat[c as usize] == 0 {
                if let Some(&last) = clusters.last() {
                    self.fat[last as usize] = EOC;
                }
                return clusters;
            }
            self.mark(c);
            clusters.push(c);
            let next = self.fat[c as usize] & 0x0FFF_FFFF;
            if next >= 0x0FFF_FFF8 || clusters.len() as u64 >= limit {
                if next < 0x0FFF_FFF8 {
                    // Longer than its file: the rest is no one's.
                    self.fat[c as usize] = EOC;
                }
                return clusters;
            }
            c = next;
        }
    }

    fn read_cluster(&mut self, c: u32, buf: &mut [u8]) -> io::Result<u64> {
        let at = self.g.data + (c as u64 - 2) * self.g.cluster;
        self.dev.seek(SeekFrom::Start(at))?;
        self.dev.read_exact(buf)?;
        Ok(at)
    }

    fn directory(&mut self, first: u32, path: &str, depth: usize) -> io::Result<()> {
        if depth > MAX_DEPTH {
            self.broken = Some(format!(
                "{path}: directories nested deeper than {MAX_DEPTH}"
            ));
            return Ok(());
        }
        let clusters = self.chain(first, u64::MAX, true);
        let mut buf = vec![0u8; self.g.cluster as usize];
        let mut subdirs = Vec::new();
        for c in clusters {
            let at = self.read_cluster(c, &mut buf)?;
            let mut changed = false;
            let mut end = false;
            for i in (0..buf.len()).step_by(32) {
                let e = &buf[i..i + 32];
                if e[0] == 0 {
                    end = true;
                    break;
                }
                let attr = e[11];
                if e[0] == 0xE5 || attr == 0x0F || attr & 0x08 != 0 || e[0] == b'.' {
                    continue;
                }
                let name = String::from_utf8_lossy(&e[..11]).trim().to_string();
                let start = (u16_at(e, 20) << 16 | u16_at(e, 26)) as u32;
                if attr & 0x10 != 0 {
                    if !self.valid(start) {
                        self.broken = Some(format!("{path}/{name}: no first cluster"));
                    } else if !self.is_used(start) {
                        subdirs.push((start, format!("{path}/{name}")));
                    }
                    continue;
                }
                let size = u32_at(e, 28) as u64;
                let wanted = size.div_ceil(self.g.cluster);
                let chain = if start == 0 || wanted == 0 {
                    Vec::new()
                } else {
                    self.chain(start, wanted, false)
                };
                let have = chain.len() as u64;
                let fixed_start = if have == 0 { 0 } else { start };
                let fixed_size = if have < wanted {
                    (have * self.g.cluster) as u32
                } else {
                    size as u32
                };
                if fixed_start != start || fixed_size as u64 != size {
                    self.report.files.push(format!("{path}/{name}"));
                    let e = &mut buf[i..i + 32];
                    e[20..22].copy_from_slice(&((fixed_start >> 16) as u16).to_le_bytes());
                    e[26..28].copy_from_slice(&(fixed_start as u16).to_le_bytes());
                    e[28..32].copy_from_slice(&fixed_size.to_le_bytes());
                    changed = true;
                }
            }
            if changed {
                self.changed.push((at, buf.clone()));
            }
            if end {
                break;
            }
        }
        for (start, path) in subdirs {
            if !self.is_used(start) {
                self.directory(start, &path, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// Checks the FAT32 volume `dev` (a partition or an image); with
/// `repair`, puts right what it finds. What it found.
pub fn check<D: Read + Write + Seek>(dev: &mut D, repair: bool) -> Result<Report, FatError> {
    let mut boot = [0u8; 512];
    dev.seek(SeekFrom::Start(0))?;
    dev.read_exact(&mut boot)?;
    let g = geometry(&boot)?;
    let mut report = Report {
        dirty: boot[STATE as usize] & DIRTY != 0,
        ..Report::default()
    };
    // The first FAT, whole.
    let mut raw = vec![0u8; g.fat_len as usize];
    dev.seek(SeekFrom::Start(g.reserved))?;
    dev.read_exact(&mut raw)?;
    let entries = (g.clusters + 2) as usize;
    let mut fat: Vec<u32> = raw[..entries * 4]
        .chunks_exact(4)
        .map(|e| u32_at(e, 0) & 0x0FFF_FFFF)
        .collect();
    drop(raw);
    // The first entry holds the media byte: a first FAT without it is not
    // one to repair the volume from.
    if fat[0] != 0x0FFF_FF00 | boot[21] as u32 {
        return Err(FatError::Implausible(format!(
            "the first FAT starts with {:#x}",
            fat[0]
        )));
    }
    let before = fat.clone();
    let changed = {
        let mut walk = Walk {
            dev: &mut *dev,
            g: &g,
            fat: &mut fat,
            used: vec![0u64; entries.div_ceil(64)],
            report: &mut report,
            changed: Vec::new(),
            broken: None,
        };
        walk.directory(g.root, "", 0)?;
        if let Some(why) = walk.broken {
            return Err(FatError::Implausible(why));
        }
        // What no file holds is free.
        for c in 2..entries {
            let v = walk.fat[c];
            if v != 0 && v != BAD && !walk.is_used(c as u32) {
                walk.fat[c] = 0;
                walk.report.lost += 1;
            }
        }
        walk.changed
    };
    if report.lost > MAX_LOST {
        return Err(FatError::Implausible(format!(
            "{} clusters belong to no file",
            report.lost
        )));
    }
    report.free = fat[2..].iter().filter(|&&v| v == 0).count() as u32;
    // Which sectors of each FAT copy differ from the repaired table.
    let per_sector = (g.sector / 4) as usize;
    let mut sector = vec![0u8; g.sector as usize];
    let mut wanted = vec![0u8; g.sector as usize];
    for copy in 0..g.fats {
        for s in 0..g.fat_len / g.sector {
            let first = s as usize * per_sector;
            if first >= entries {
                break;
            }
            let at = g.reserved + copy * g.fat_len + s * g.sector;
            dev.seek(SeekFrom::Start(at))?;
            dev.read_exact(&mut sector)?;
            wanted.copy_from_slice(&sector);
            for (i, e) in wanted.chunks_exact_mut(4).enumerate() {
                if let Some(&v) = fat.get(first + i) {
                    // The top four bits are reserved: kept as found.
                    let top = u32_at(e, 0) & 0xF000_0000;
                    e.copy_from_slice(&(v | top).to_le_bytes());
                }
            }
            if wanted != sector {
                if copy > 0
                    && fat[first..(first + per_sector).min(entries)]
                        == before[first..(first + per_sector).min(entries)]
                {
                    report.fat_copies += 1;
                }
                if repair {
                    dev.seek(SeekFrom::Start(at))?;
                    dev.write_all(&wanted)?;
                }
            }
        }
    }
    // Then the directory entries that name them.
    if repair {
        for (at, cluster) in &changed {
            dev.seek(SeekFrom::Start(*at))?;
            dev.write_all(cluster)?;
        }
    }
    // The free count in FSInfo (when there is a valid one; "unknown" is
    // valid too).
    if g.info > 0 && g.info + 512 <= g.reserved {
        let mut info = [0u8; 512];
        dev.seek(SeekFrom::Start(g.info))?;
        dev.read_exact(&mut info)?;
        let valid = u32_at(&info, 0) == 0x4161_5252 && u32_at(&info, 484) == 0x6141_7272;
        let recorded = u32_at(&info, 488);
        if valid && recorded != report.free && recorded != 0xFFFF_FFFF {
            report.free_recorded = Some(recorded);
            info[488..492].copy_from_slice(&report.free.to_le_bytes());
            let hint = u32_at(&info, 492);
            if hint != 0xFFFF_FFFF && hint >= g.clusters + 2 {
                info[492..496].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
            }
            if repair {
                dev.seek(SeekFrom::Start(g.info))?;
                dev.write_all(&info)?;
            }
        }
    }
    // Clean, last.
    if report.dirty && repair {
        dev.seek(SeekFrom::Start(STATE))?;
        dev.write_all(&[boot[STATE as usize] & !DIRTY])?;
    }
    dev.flush()?;
    Ok(report)
}

#[cfg(all(test, feature = "build"))]
mod tests {
    use super::*;
    use crate::disk::tests::fsck;
    use crate::disk::{fat_image, fat_list};
    use std::io::Cursor;

    fn esp() -> Vec<u8> {
        fat_image(
            64 << 20,
            "MAILBOX",
            &[
                ("EFI/BOOT/BOOTX64.EFI".into(), vec![1u8; 100_000]),
                (
                    "loader/entries/mailbox-a.conf".into(),
                    b"title a\n".to_vec(),
                ),
                ("mailbox/a/vmlinuz".into(), vec![2u8; 300_000]),
                ("mailbox/b/initrd.zst".into(), vec![3u8; 200_000]),
            ],
        )
        .unwrap()
    }

    fn geometry_of(image: &[u8]) -> Geometry {
        geometry(image[..512].try_into().unwrap()).unwrap()
    }

    fn set_entry(image: &mut [u8], g: &Geometry, c: u32, v: u32) {
        for copy in 0..g.fats {
            let at = (g.reserved + copy * g.fat_len) as usize + c as usize * 4;
            image[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    }

    fn entry(image: &[u8], g: &Geometry, c: u32) -> u32 {
        u32_at(image, g.reserved as usize + c as usize * 4) & 0x0FFF_FFFF
    }

    /// The directory entry (offset in the image) of the file whose 8.3
    /// name starts with `name`.
    fn find(image: &[u8], g: &Geometry, name: &[u8]) -> usize {
        let data = g.data as usize;
        (data..image.len())
            .step_by(32)
            .find(|&at| image[at..].starts_with(name) && image[at + 11] & 0x10 == 0)
            .unwrap()
    }

    #[test]
    fn a_clean_volume_is_left_byte_for_byte() {
        let image = esp();
        let mut dev = Cursor::new(image.clone());
        let report = check(&mut dev, true).unwrap();
        assert!(!report.found(), "{report:?}");
        assert_eq!(dev.into_inner(), image);
    }

    #[test]
    fn what_a_power_cut_leaves_is_put_right_as_fsck_fat_would() {
        let mut image = esp();
        let g = geometry_of(&image);
        // Mounted when the power went: dirty, free count stale.
        image[STATE as usize] |= DIRTY;
        let info = g.info as usize;
        let free = u32_at(&image, info + 488);
        image[info + 488..info + 492].copy_from_slice(&(free + 7).to_le_bytes());
        // A file being written: clusters allocated, its entry not yet.
        let lost = g.clusters - 10;
        set_entry(&mut image, &g, lost, lost + 1);
        set_entry(&mut image, &g, lost + 1, EOC);
        // A file whose entry was written before all its clusters.
        let vmlinuz = find(&image, &g, b"VMLINUZ");
        let size = u32_at(&image, vmlinuz + 28);
        image[vmlinuz + 28..vmlinuz + 32].copy_from_slice(&(size + 5 * 4096).to_le_bytes());
        // The second FAT not yet written for one change.
        let at = (g.reserved + g.fat_len) as usize + (lost as usize - 100) * 4;
        image[at..at + 4].copy_from_slice(&EOC.to_le_bytes());
        let complaint = fsck(&image).expect("fsck.fat sees the damage");
        assert!(complaint.contains("Dirty bit"), "{complaint}");

        let mut dev = Cursor::new(image);
        let found = check(&mut dev, false).unwrap();
        assert!(found.found());
        assert_eq!(
            dev.get_ref()[STATE as usize] & DIRTY,
            DIRTY,
            "checking alone writes nothing"
        );
        let report = check(&mut dev, true).unwrap();
        assert_eq!(report, found);
        assert!(report.dirty);
        assert_eq!(report.free_recorded, Some(free + 7));
        assert_eq!(report.lost, 2);
        assert_eq!(report.files, ["/MAILBOX/A/VMLINUZ"]);
        assert_eq!(report.fat_copies, 1);
        let image = dev.into_inner();
        assert_eq!(fsck(&image), None);
        assert_eq!(entry(&image, &g, lost), 0);
        // What the files hold is untouched.
        assert_eq!(fat_list(&image, "mailbox/b").unwrap(), ["initrd.zst"]);
        assert!(!check(&mut Cursor::new(image), false).unwrap().found());
    }

    #[test]
    fn a_chain_longer_than_its_file_is_cut_and_its_rest_freed() {
        let mut image = esp();
        let g = geometry_of(&image);
        let conf = find(&image, &g, b"MAILBO~1CON");
        let start = (u16_at(&image, conf + 20) << 16 | u16_at(&image, conf + 26)) as u32;
        assert_eq!(entry(&image, &g, start), EOC, "one cluster");
        let extra = g.clusters - 20;
        set_entry(&mut image, &g, start, extra);
        set_entry(&mut image, &g, extra, EOC);
        assert!(fsck(&image).is_some());
        let mut dev = Cursor::new(image);
        let report = check(&mut dev, true).unwrap();
        assert_eq!(report.lost, 1, "{report:?}");
        let image = dev.into_inner();
        assert_eq!(fsck(&image), None);
        assert_eq!(entry(&image, &g, start), EOC);
    }

    #[test]
    fn a_torn_first_fat_is_not_repaired_from() {
        // The first sector of the first FAT lost (the root's entry with
        // it): repairing from it would free every file.
        let mut image = esp();
        let g = geometry_of(&image);
        image[STATE as usize] |= DIRTY;
        let at = g.reserved as usize;
        image[at..at + g.sector as usize].fill(0);
        let mut dev = Cursor::new(image.clone());
        assert!(matches!(
            check(&mut dev, true),
            Err(FatError::Implausible(_))
        ));
        assert_eq!(dev.into_inner(), image, "nothing written");
    }

    #[test]
    fn a_directory_whose_fat_entry_was_lost_keeps_its_files() {
        let mut image = esp();
        let g = geometry_of(&image);
        let entries = (g.data as usize..image.len())
            .step_by(32)
            .find(|&at| image[at..].starts_with(b"ENTRIES    ") && image[at + 11] & 0x10 != 0)
            .unwrap();
        let start = (u16_at(&image, entries + 20) << 16 | u16_at(&image, entries + 26)) as u32;
        set_entry(&mut image, &g, start, 0);
        let mut dev = Cursor::new(image);
        check(&mut dev, true).unwrap();
        let image = dev.into_inner();
        assert_eq!(fsck(&image), None);
        assert_eq!(
            fat_list(&image, "loader/entries").unwrap(),
            ["mailbox-a.conf"]
        );
    }

    #[test]
    fn what_is_not_fat32_is_refused() {
        let mut dev = Cursor::new(vec![0u8; 1 << 20]);
        assert!(matches!(check(&mut dev, true), Err(FatError::NotFat32(_))));
        assert_eq!(dev.into_inner(), vec![0u8; 1 << 20]);
    }
}
