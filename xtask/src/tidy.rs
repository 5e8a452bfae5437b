//! The layout rules ARCHITECTURE.md states, checked on the source (like
//! rust-analyzer's tidy tests): the workspace crates depend on each other
//! one way only, no module of a crate imports a module that imports it back,
//! and no source file grows past 900 lines. `cargo xtask test` runs it
//! before the tests; a failure names the file and the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Which workspace crates each crate may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("mta/proto", &[]),
    ("mta/store", &[]),
    // `image`: the update bundle and the hand-off to init, shared with
    // the build (DESIGN.md: updates apply with the code that wrote the
    // first image).
    ("mta/app", &["mta-proto", "mta-store", "image"]),
    ("mta/web", &["mta-proto", "mta-store", "mta-app"]),
    ("mta", &["mta-proto", "mta-store", "mta-app", "mta-web"]),
    ("image", &[]),
    ("board", &[]),
    ("init", &["image"]),
    ("xtask", &["board", "image"]),
];

const WORKSPACE_CRATES: &[&str] = &[
    "mta-proto",
    "mta-store",
    "mta-app",
    "mta-web",
    "mta",
    "image",
    "board",
    "init",
    "xtask",
];

const MAX_LINES: usize = 900;

pub fn check(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for (dir, allowed) in ALLOWED {
        let manifest = root.join(dir).join("Cargo.toml");
        for dep in workspace_deps(&manifest)? {
            if !allowed.contains(&dep.as_str()) {
                problems.push(format!(
                    "{}: depends on {dep}; allowed: {allowed:?} (ARCHITECTURE.md, the crate picture)",
                    manifest.display()
                ));
            }
        }
        let src = root.join(dir).join("src");
        problems.extend(module_cycles(&src)?);
    }
    for file in rust_files(root)? {
        let lines = std::fs::read_to_string(&file)?.lines().count();
        if lines > MAX_LINES {
            problems.push(format!(
                "{}: {lines} lines; split it by concern (at most {MAX_LINES})",
                file.display()
            ));
        }
    }
    if !problems.is_empty() {
        bail!(
            "the code layout breaks its rules:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// The workspace crates in `[dependencies]` (not dev- or build-).
fn workspace_deps(manifest: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if !in_deps {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or("");
        if WORKSPACE_CRATES.contains(&name) {
            deps.push(name.to_string());
        }
    }
    Ok(deps)
}

/// Import cycles between the top-level modules of the crate at `src`:
/// `crate::a` used (outside tests and comments) in module `b` is an edge.
fn module_cycles(src: &Path) -> anyhow::Result<Vec<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src)? {
        let relative = file.strip_prefix(src).expect("under src");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        let text = std::fs::read_to_string(&file)?;
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let used: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !used.is_empty() && used != module {
                    edges.entry(module.clone()).or_default().insert(used);
                }
            }
        }
    }
    let mut cycles = Vec::new();
    for (a, uses) in &edges {
        for b in uses {
            if a < b && edges.get(b).is_some_and(|back| back.contains(a)) {
                cycles.push(format!(
                    "{}: modules {a} and {b} import each other",
                    src.display()
                ));
            }
        }
    }
    // Longer cycles: a module that reaches itself.
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = edges[start].iter().collect();
        while let Some(m) = todo.pop() {
            if m == start {
                if !cycles.iter().any(|c| c.contains(&format!(" {start} "))) {
                    cycles.push(format!(
                        "{}: module {start} imports itself through others",
                        src.display()
                    ));
                }
                break;
            }
            if seen.insert(m) {
                todo.extend(edges.get(m).into_iter().flatten());
            }
        }
    }
    Ok(cycles)
}

/// Every `.rs` file under `dir`, leaving out build output.
fn rust_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !matches!(name, "target" | ".git" | "__pycache__") {
                    todo.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn modules_that_import_each_other_are_found() {
        let dir = crate_with(&[
            ("a.rs", "use crate::b::X;\n"),
            ("b/mod.rs", "use crate::a::Y;\n"),
            ("c.rs", "use crate::a::Y;\n// crate::c in a comment\n"),
        ]);
        let cycles = module_cycles(dir.path()).unwrap();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert!(cycles[0].contains("modules a and b import each other"));
    }

    #[test]
    fn longer_cycles_and_test_only_uses() {
        let dir = crate_with(&[
            ("a.rs", "use crate::b::X;\n"),
            ("b.rs", "use crate::c::X;\n"),
            ("c.rs", "use crate::a::X;\n"),
            (
                "d.rs",
                "fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::e::X;\n}\n",
            ),
            ("e.rs", "use crate::d::f;\n"),
        ]);
        let cycles = module_cycles(dir.path()).unwrap();
        assert!(
            cycles.iter().any(|c| c.contains("imports itself")),
            "{cycles:?}"
        );
        assert!(
            !cycles
                .iter()
                .any(|c| c.contains(" d ") || c.contains(" e ")),
            "{cycles:?}"
        );
    }

    #[test]
    fn only_normal_workspace_dependencies_count() {
        let dir = crate_with(&[(
            "Cargo.toml",
            "[package]\nname = \"x\"\n[dependencies]\nmta-app.workspace = true\nserde = \"1\"\nimage = { path = \"../image\" }\n[dev-dependencies]\nmta = { path = \"..\" }\n",
        )]);
        assert_eq!(
            workspace_deps(&dir.path().join("Cargo.toml")).unwrap(),
            vec!["mta-app", "image"]
        );
    }

    #[test]
    fn the_workspace_keeps_its_rules() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        check(root).unwrap();
    }
}
