//! The house rules, read off the tree: each crate keeps to its concern and
//! each file and function stays small enough to read.
//!
//! * no source file over 1,000 lines (tests and fuzz targets included),
//!   no non-test function over 100;
//! * no import cycle between the modules of a crate (a module's `crate::`
//!   paths, and `super::` in a file directly under `src/`, comments
//!   included, name the modules it leans on);
//! * the GDBM C library is named by one crate only (`ripem-keydb`), rPGP
//!   only by the OpenPGP crate and the tools that make keys (key
//!   generator, benchmark, fuzz targets).
//!
//! Functions are measured as rustfmt lays them out: from the `fn` line to
//! the closing brace at the same indentation.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 1000;
const MAX_FUNCTION_LINES: usize = 100;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The crates of the workspace: (name of its directory, path).
fn crates() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("Cargo.toml").exists())
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), path))
        .collect();
    out.sort();
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The lines of a source file before its unit tests (`#[cfg(test)] mod`).
fn non_test_lines(text: &str, path: &Path) -> Vec<String> {
    if path.file_name().is_some_and(|name| name == "tests.rs") || path.components().any(|c| c.as_os_str() == "tests") {
        return Vec::new();
    }
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let cut = (0..lines.len())
        .find(|&i| lines[i].trim() == "#[cfg(test)]" && lines.get(i + 1).is_some_and(|next| next.contains("mod ")))
        .unwrap_or(lines.len());
    lines[..cut].to_vec()
}

/// `(name, lines)` of each function in `lines`.
fn functions(lines: &[String]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let rest = ["pub ", "pub(crate) ", "const ", "async ", "unsafe ", "extern \"C\" "]
            .iter()
            .fold(trimmed, |rest, prefix| rest.strip_prefix(prefix).unwrap_or(rest));
        let Some(signature) = rest.strip_prefix("fn ") else {
            continue;
        };
        if line.trim_end().ends_with(';') {
            continue;
        }
        let name: String = signature
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let closing = format!("{indent}}}");
        let end = (i..lines.len()).find(|&j| lines[j] == closing).unwrap_or(i);
        out.push((name, end - i + 1));
    }
    out
}

#[test]
fn files_and_functions_stay_small() {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for (_, dir) in crates() {
        rust_files(&dir.join("src"), &mut files);
        rust_files(&dir.join("tests"), &mut files);
    }
    rust_files(&root().join("tests"), &mut files);
    rust_files(&root().join("fuzz/fuzz_targets"), &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        let count = text.lines().count();
        if count > MAX_FILE_LINES {
            problems.push(format!("{}: {count} lines", path.display()));
        }
        for (name, length) in functions(&non_test_lines(&text, &path)) {
            if length > MAX_FUNCTION_LINES {
                problems.push(format!("{}: fn {name} is {length} lines", path.display()));
            }
        }
    }
    assert!(problems.is_empty(), "over the limits:\n{}", problems.join("\n"));
}

/// The top-level module a file of `src` belongs to (`""` for the crate root).
fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => String::new(),
        Some(name) => name.to_string(),
        None => first,
    }
}

/// The modules named by `crate::` paths in `text`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        if text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = text[at + 7..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    for braced in text.split("crate::{").skip(1) {
        for item in braced.split('}').next().unwrap_or("").split(',') {
            out.insert(item.trim().split("::").next().unwrap_or("").to_string());
        }
    }
    out
}

fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|seen| seen == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    visit(graph, start, &mut Vec::new(), &mut BTreeSet::new())
}

#[test]
fn no_import_cycles_between_modules() {
    let mut cycles = Vec::new();
    for (name, dir) in crates() {
        let src = dir.join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let module = top_module(&src, file);
            if module.is_empty() {
                continue;
            }
            let text = fs::read_to_string(file).unwrap();
            let mut text = non_test_lines(&text, file).join("\n");
            if file.parent() == Some(src.as_path()) {
                // In a file directly under src/, `super::` is the crate root.
                text = text.replace("super::", "crate::");
            }
            for target in crate_paths(&text) {
                let is_module = src.join(format!("{target}.rs")).exists() || src.join(&target).is_dir();
                if target != module && is_module {
                    graph.entry(module.clone()).or_default().insert(target);
                }
            }
        }
        for module in graph.keys() {
            if let Some(cycle) = cycle_from(&graph, module) {
                cycles.push(format!("{name}: {}", cycle.join(" -> ")));
                break;
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// Whether `text` holds the path `prefix` (e.g. `pgp::`) as a whole word.
fn names_path(text: &str, prefix: &str) -> bool {
    text.match_indices(prefix)
        .any(|(at, _)| !text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
}

/// The crates whose `Cargo.toml` names `dependency`.
fn crates_depending_on(dependency: &str) -> Vec<String> {
    crates()
        .into_iter()
        .filter(|(_, dir)| {
            fs::read_to_string(dir.join("Cargo.toml"))
                .unwrap()
                .lines()
                .any(|line| line.split(['.', ' ', '=']).next() == Some(dependency))
        })
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn gdbm_and_rpgp_each_live_in_one_crate() {
    assert_eq!(crates_depending_on("gdbm-sys"), ["keydb"]);
    assert_eq!(crates_depending_on("pgp"), ["bench", "keygen", "openpgp"]);
    for (name, dir) in crates() {
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &mut files);
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            if name != "keydb" {
                assert!(!names_path(&text, "gdbm_sys"), "{} names gdbm_sys", file.display());
            }
            if !["openpgp", "keygen", "bench"].contains(&name.as_str()) {
                assert!(!names_path(&text, "pgp::"), "{} names rPGP (pgp::)", file.display());
            }
        }
    }
}
