//! Kernel modules: which ones an image carries and how the device finds the
//! one a piece of hardware needs.
//!
//! At build time ([`select`], feature `build`) the board's module list is
//! closed over each module's `depends=` (read from its `.modinfo` section, as
//! depmod does) and written out as `modules.dep` and `modules.alias` in
//! depmod's formats. At boot, `init` reads those two files back ([`Index`])
//! and matches each device's modalias against the aliases (coldplug).

use std::collections::BTreeMap;

/// The module name as the kernel knows it: dashes become underscores.
pub fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// Parsed `modules.dep` and `modules.alias`.
#[derive(Debug, Default, Clone)]
pub struct Index {
    /// module name → (path relative to the modules directory, dependencies'
    /// paths, innermost first as modprobe loads them)
    deps: BTreeMap<String, (String, Vec<String>)>,
    aliases: Vec<(String, String)>,
}

impl Index {
    pub fn parse(modules_dep: &str, modules_alias: &str) -> Index {
        let mut deps = BTreeMap::new();
        for line in modules_dep.lines() {
            let Some((path, rest)) = line.split_once(':') else {
                continue;
            };
            let name = module_name_of(path);
            let list = rest.split_whitespace().map(str::to_string).collect();
            deps.insert(name, (path.to_string(), list));
        }
        let aliases = modules_alias
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("alias")).then_some(())?;
                Some((w.next()?.to_string(), canonical(w.next()?)))
            })
            .collect();
        Index { deps, aliases }
    }

    /// The modules whose alias patterns match a device's modalias.
    pub fn matching(&self, modalias: &str) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .aliases
            .iter()
            .filter(|(pattern, _)| glob_match(pattern.as_bytes(), modalias.as_bytes()))
            .map(|(_, m)| m.as_str())
            .collect();
        out.dedup();
        out
    }

    /// Paths to load for `module`, dependencies first; `None` if unknown.
    pub fn load_order(&self, module: &str) -> Option<Vec<String>> {
        let (path, deps) = self.deps.get(&canonical(module))?;
        // modules.dep lists dependencies so that the last one is loaded first.
        let mut order: Vec<String> = deps.iter().rev().cloned().collect();
        order.push(path.clone());
        Some(order)
    }
}

fn module_name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    canonical(stem)
}

/// fnmatch(3) without flags, which is what modprobe uses for aliases:
/// `*`, `?` and `[...]` classes.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star_p, mut star_t) = (None, 0);
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star_p = Some(p);
                    star_t = t;
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star_p {
            Some(sp) => {
                p = sp + 1;
                star_t += 1;
                t = star_t;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches one byte against the class starting at `pattern[start] == '['`.
/// Returns (matched, index after the class), or `None` if unterminated.
fn class_match(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() && (pattern[i] != b']' || first) {
        first = false;
        if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            if (pattern[i]..=pattern[i + 2]).contains(&c) {
                matched = true;
            }
            i += 3;
        } else {
            if pattern[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    if i >= pattern.len() {
        return None;
    }
    Some((matched != negate, i + 1))
}

#[cfg(feature = "build")]
pub use build::*;

#[cfg(feature = "build")]
mod build {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use object::{Object, ObjectSection};

    use super::canonical;

    #[derive(Debug, thiserror::Error)]
    pub enum ModuleError {
        #[error("kernel module {0:?} is neither in {1} nor built into the kernel")]
        Unknown(String, PathBuf),
        #[error("reading {0}: {1}")]
        Io(PathBuf, std::io::Error),
        #[error("{0} has no readable .modinfo section")]
        NoModinfo(PathBuf),
    }

    /// One module chosen for the image.
    #[derive(Debug, Clone)]
    pub struct Module {
        pub name: String,
        /// Path relative to the modules directory (`kernel/fs/ext4/ext4.ko`).
        pub path: String,
        pub depends: Vec<String>,
        pub aliases: Vec<String>,
    }

    /// The modules in `wanted` and everything they depend on, from a
    /// `/lib/modules/<version>` directory. Modules built into the kernel
    /// (`modules.builtin`) are skipped; unknown names are an error.
    pub fn select(dir: &Path, wanted: &[&str]) -> Result<Vec<Module>, ModuleError> {
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        walk(dir, dir, &mut files)?;
        let builtin: BTreeSet<String> = std::fs::read_to_string(dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .map(super::module_name_of)
            .collect();
        let mut chosen: BTreeMap<String, Module> = BTreeMap::new();
        let mut todo: Vec<String> = wanted.iter().map(|w| canonical(w)).collect();
        while let Some(name) = todo.pop() {
            if chosen.contains_key(&name) || builtin.contains(&name) {
                continue;
            }
            let Some(path) = files.get(&name) else {
                return Err(ModuleError::Unknown(name, dir.to_path_buf()));
            };
            let info = modinfo(&dir.join(path))?;
            let depends: Vec<String> = info
                .iter()
                .filter_map(|(k, v)| (k == "depends").then_some(v))
                .flat_map(|v| v.split(',').filter(|s| !s.is_empty()).map(canonical))
                .collect();
            let aliases = info
                .iter()
                .filter(|&(k, _v)| k == "alias")
                .map(|(_k, v)| v.clone())
                .collect();
            todo.extend(depends.iter().cloned());
            chosen.insert(
                name.clone(),
                Module {
                    name,
                    path: path.clone(),
                    depends,
                    aliases,
                },
            );
        }
        Ok(chosen.into_values().collect())
    }

    /// `modules.dep` in depmod's format: every (transitive) dependency, the
    /// one to load first last.
    pub fn modules_dep(modules: &[Module]) -> String {
        let by_name: BTreeMap<&str, &Module> =
            modules.iter().map(|m| (m.name.as_str(), m)).collect();
        let mut out = String::new();
        for m in modules {
            let mut order = Vec::new();
            let mut seen = BTreeSet::new();
            post_order(m, &by_name, &mut seen, &mut order);
            order.pop(); // the module itself
            order.reverse();
            let deps: Vec<&str> = order
                .iter()
                .map(|d| by_name[d.as_str()].path.as_str())
                .collect();
            out.push_str(&format!("{}: {}\n", m.path, deps.join(" ")));
        }
        out
    }

    fn post_order(
        m: &Module,
        by_name: &BTreeMap<&str, &Module>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(m.name.clone()) {
            return;
        }
        for d in &m.depends {
            if let Some(dm) = by_name.get(d.as_str()) {
                post_order(dm, by_name, seen, out);
            }
        }
        out.push(m.name.clone());
    }

    /// `modules.alias` in depmod's format.
    pub fn modules_alias(modules: &[Module]) -> String {
        let mut out = String::new();
        for m in modules {
            for a in &m.aliases {
                out.push_str(&format!("alias {a} {}\n", m.name));
            }
        }
        out
    }

    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<String, String>,
    ) -> Result<(), ModuleError> {
        let entries = std::fs::read_dir(dir).map_err(|e| ModuleError::Io(dir.to_path_buf(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ModuleError::Io(dir.to_path_buf(), e))?;
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if let Some(file) = path.file_name().and_then(|f| f.to_str())
                && let Some(stem) = file.strip_suffix(".ko")
            {
                let rel = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .to_string();
                out.insert(canonical(stem), rel);
            }
        }
        Ok(())
    }

    /// The `key=value` strings of a module's `.modinfo` section.
    pub fn modinfo(path: &Path) -> Result<Vec<(String, String)>, ModuleError> {
        let data = std::fs::read(path).map_err(|e| ModuleError::Io(path.to_path_buf(), e))?;
        let file =
            object::File::parse(&*data).map_err(|_| ModuleError::NoModinfo(path.to_path_buf()))?;
        let section = file
            .section_by_name(".modinfo")
            .ok_or_else(|| ModuleError::NoModinfo(path.to_path_buf()))?;
        let bytes = section
            .data()
            .map_err(|_| ModuleError::NoModinfo(path.to_path_buf()))?;
        Ok(bytes
            .split(|&b| b == 0)
            .filter_map(|s| std::str::from_utf8(s).ok())
            .filter_map(|s| s.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_like_modprobe() {
        assert!(glob_match(
            b"pci:v00001AF4d00001000sv*sd*bc*sc*i*",
            b"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(!glob_match(
            b"pci:v00001AF4d00001001sv*",
            b"pci:v00001AF4d00001000sv00001AF4"
        ));
        assert!(glob_match(
            b"virtio:d00000001v*",
            b"virtio:d00000001v00001AF4"
        ));
        assert!(glob_match(b"acpi*:PNP0C0C:*", b"acpi:PNP0C0C:"));
        assert!(glob_match(b"a[0-9]c", b"a5c"));
        assert!(!glob_match(b"a[!0-9]c", b"a5c"));
        assert!(glob_match(b"*", b""));
        assert!(!glob_match(b"a?", b"a"));
    }

    #[test]
    fn index_orders_dependencies_first() {
        let dep = "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko\nkernel/fs/jbd2/jbd2.ko:\n";
        let alias = "alias fs-ext4 ext4\nalias virtio:d00000002v* virtio_blk\n";
        let i = Index::parse(dep, alias);
        assert_eq!(
            i.load_order("ext4").unwrap(),
            [
                "kernel/lib/crc16.ko",
                "kernel/fs/mbcache.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/ext4/ext4.ko"
            ]
        );
        assert_eq!(i.matching("virtio:d00000002v00001AF4"), ["virtio_blk"]);
    }
}
