//! The layout of `monitor/src` as the code has it: its stages (top-level modules), what each
//! file is for (its `//!` first sentence), and which stages each stage imports (`crate::x`
//! paths, `use crate::{x, ...}` groups included). docs/ARCHITECTURE.md holds the rules and the
//! generated module list; `tests/tests/architecture.rs` checks both against the code.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// `monitor/src` of this workspace.
pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitor/src")
}

/// Every `.rs` file under `dir`, as paths relative to it, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path.strip_prefix(base).expect("under base").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The stage a file belongs to: its top-level module (`attribution/resolver.rs` ->
/// `attribution`, `daemon.rs` -> `daemon`), or `None` for the crate roots.
pub fn stage_of(file: &Path) -> Option<String> {
    let first = file.components().next()?.as_os_str().to_string_lossy().into_owned();
    let stage = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(stage.as_str(), "lib" | "main")).then_some(stage)
}

/// The code of a file without its comments and string literals' contents (so that a doc
/// comment that names `crate::x` is not an import).
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| {
            let trimmed = l.trim_start();
            if trimmed.starts_with("//") { "" } else { l.split(" //").next().unwrap_or(l) }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file's code refers to through `crate::`.
pub fn crate_imports(text: &str) -> BTreeSet<String> {
    let code = code_only(text);
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if rest.starts_with('{') {
            // `crate::{a::b, c, d::{e, f}}`: the first segment of each top-level entry.
            let mut depth = 0usize;
            let mut entry = String::new();
            for c in rest.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => {
                        push_segment(&entry, &mut out);
                        entry.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 1 && c != '{' {
                    entry.push(c);
                } else if depth > 1 {
                    entry.push(' ');
                }
            }
            push_segment(&entry, &mut out);
        } else {
            push_segment(rest, &mut out);
        }
    }
    out
}

fn push_segment(text: &str, out: &mut BTreeSet<String>) {
    let name: String = text.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    if !name.is_empty() && name != "self" {
        out.insert(name);
    }
}

/// What each stage imports of the others, with the file that does.
pub fn stage_imports(dir: &Path) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let mut out: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for file in rust_files(dir) {
        let Some(stage) = stage_of(&file) else { continue };
        let text = std::fs::read_to_string(dir.join(&file)).expect("read source");
        let entry = out.entry(stage.clone()).or_default();
        for import in crate_imports(&text) {
            if import != stage {
                entry.entry(import).or_insert_with(|| file.clone());
            }
        }
    }
    out
}

/// The first sentence of a file's `//!` doc.
fn summary(text: &str) -> String {
    let doc: Vec<&str> = text.lines().map_while(|l| l.strip_prefix("//!")).map(str::trim).collect();
    let joined = doc.join(" ");
    let end = joined.find(". ").map(|i| i + 1).unwrap_or(joined.len());
    joined[..end].trim().to_string()
}

/// The module list of docs/ARCHITECTURE.md: each stage's files with what each is for.
pub fn module_list(dir: &Path) -> String {
    let mut out = String::new();
    let mut last_stage = None;
    for file in rust_files(dir) {
        let text = std::fs::read_to_string(dir.join(&file)).expect("read source");
        let stage = stage_of(&file).unwrap_or_else(|| "(crate root)".into());
        if last_stage.as_ref() != Some(&stage) {
            out.push_str(&format!("\n**{stage}**\n\n"));
            last_stage = Some(stage);
        }
        out.push_str(&format!("- `{}`: {}\n", file.display(), summary(&text)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_read_from_paths_and_groups() {
        let text = "use crate::{\n    attribution::{Owner, OwnerKind},\n    node::{self, runtimes},\n    findings::Finding,\n};\n\
                    // crate::daemon in a comment\nlet x = crate::events::decode(y);\n";
        let got: Vec<String> = crate_imports(text).into_iter().collect();
        assert_eq!(got, ["attribution", "events", "findings", "node"]);
        assert_eq!(stage_of(Path::new("attribution/resolver.rs")).as_deref(), Some("attribution"));
        assert_eq!(stage_of(Path::new("daemon.rs")).as_deref(), Some("daemon"));
        assert_eq!(stage_of(Path::new("lib.rs")), None);
    }
}
