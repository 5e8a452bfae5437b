//! Kernel modules: explicit loads and coldplug (every device's `modalias`
//! matched against `modules.alias`, as udev would at boot).

use std::collections::HashSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::modules::Index;

use crate::console::log;

pub struct Loader {
    dir: PathBuf,
    index: Index,
    loaded: Mutex<HashSet<String>>,
    paths: Mutex<HashSet<String>>,
}

impl Loader {
    pub fn open() -> Loader {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().to_string())
            .unwrap_or_default();
        let dir = Path::new("/lib/modules").join(release);
        let dep = std::fs::read_to_string(dir.join("modules.dep")).unwrap_or_default();
        let alias = std::fs::read_to_string(dir.join("modules.alias")).unwrap_or_default();
        if dep.is_empty() {
            log!(
                "no module index in {}; only built-in drivers are available",
                dir.display()
            );
        }
        Loader {
            dir,
            index: Index::parse(&dep, &alias),
            loaded: Mutex::new(HashSet::new()),
            paths: Mutex::new(HashSet::new()),
        }
    }

    /// Loads modules by name with their dependencies; unknown names are
    /// assumed built in.
    pub fn load_explicit(&self, names: &[&str]) {
        for n in names {
            self.load(n);
        }
    }

    /// Loads what the present devices need, until nothing new appears
    /// (a bus driver makes new devices visible). Like udev, independent
    /// drivers load in parallel, so a slow probe (a SATA controller) does
    /// not hold up the disk the system runs from.
    pub fn coldplug(&self) -> usize {
        let mut total = 0;
        for _ in 0..6 {
            let mut wanted: Vec<String> = Vec::new();
            for alias in modaliases() {
                for m in self.index.matching(&alias) {
                    if !wanted.iter().any(|w| w == m) {
                        wanted.push(m.to_string());
                    }
                }
            }
            let loaded = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for m in &wanted {
                    let loaded = &loaded;
                    scope.spawn(move || {
                        if self.load(m) {
                            loaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    });
                }
            });
            let new = loaded.into_inner();
            total += new;
            if new == 0 {
                break;
            }
        }
        total
    }

    /// True when the module was loaded now.
    pub fn load(&self, name: &str) -> bool {
        let name = image::modules::canonical(name);
        {
            let mut loaded = self.loaded.lock().expect("loaded set");
            if !loaded.insert(name.clone()) {
                return false;
            }
        }
        let Some(order) = self.index.load_order(&name) else {
            return false;
        };
        let mut any = false;
        for path in order {
            // A dependency another module already pulled in.
            if !self.paths.lock().expect("paths").insert(path.clone()) {
                continue;
            }
            let full = self.dir.join(&path);
            match finit_module(&full) {
                Ok(()) => any = true,
                // Already there (the kernel waits for a concurrent load to
                // finish before saying so), or hardware this module is not
                // for (crc32c-intel on a CPU without SSE4.2).
                Err(nix::errno::Errno::EEXIST | nix::errno::Errno::ENODEV) => {}
                Err(e) => log!("loading {}: {e}", full.display()),
            }
        }
        any
    }
}

/// Loads the module file at `path` (one that depends on nothing but the
/// kernel itself).
pub fn load_file(path: &Path) -> nix::Result<()> {
    finit_module(path)
}

fn finit_module(path: &Path) -> nix::Result<()> {
    let file = std::fs::File::open(path)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let params = CString::new("").expect("no NUL");
    nix::kmod::finit_module(&file, &params, nix::kmod::ModuleInitFlags::empty())
}

/// The modalias of every device on every bus (`/sys/bus/*/devices/*`),
/// which is far less to read than all of /sys/devices.
fn modaliases() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(buses) = std::fs::read_dir("/sys/bus") else {
        return out;
    };
    for bus in buses.flatten() {
        let Ok(devices) = std::fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for dev in devices.flatten() {
            if let Ok(text) = std::fs::read_to_string(dev.path().join("modalias")) {
                let text = text.trim();
                if !text.is_empty() {
                    out.push(text.to_string());
                }
            }
        }
    }
    out
}
