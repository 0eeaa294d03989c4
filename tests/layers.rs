//! The layer order of src/, checked: every `crate::` path outside test modules must point to
//! its own part or to a part declared below it in lib.rs ("Layers, lowest first: …").
//!
//! Goal: no circles between the parts of src/, and none can come back unnoticed. Method: read
//! the sources as text (no build needed), find each file's part (its first directory or file
//! under src/), collect the parts its `crate::` paths name (`use crate::{a, b::c}` groups
//! included), skip `#[cfg(test)]` modules, and compare with the declared order. The exceptions
//! still being removed are listed in [`KNOWN_UPWARD`]; one that no longer occurs must be struck
//! from the list, so it only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Arrows that point upward today, each with why and what removes it.
const KNOWN_UPWARD: &[(&str, &str, &str)] = &[];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The parts named in lib.rs's "Layers, lowest first:" line, lowest first.
fn declared_order() -> Vec<String> {
    let lib = fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    let mut text = String::new();
    let mut in_line = false;
    for line in lib.lines() {
        let line = line.trim_start_matches("//!").trim();
        if let Some(rest) = line.strip_prefix("Layers, lowest first:") {
            in_line = true;
            text.push_str(rest);
        } else if in_line {
            if line.is_empty() {
                break;
            }
            text.push(' ');
            text.push_str(line);
        }
        if in_line && text.trim_end().ends_with('.') {
            break;
        }
    }
    assert!(
        !text.is_empty(),
        "lib.rs must declare the layers: \"Layers, lowest first: a, b, …\""
    );
    text.trim()
        .trim_end_matches('.')
        .split(',')
        .map(|part| part.trim().to_string())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `source` without its `#[cfg(test)]` items (a module's braces matched, or one line).
fn without_test_items(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // The item runs to the end of its braces, or of its line when it has none before `;`.
        let brace = after.find('{');
        let semi = after.find(';');
        let end = match (brace, semi) {
            (Some(b), Some(s)) if s < b => s + 1,
            (Some(b), _) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (i, c) in after[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, Some(s)) => s + 1,
            (None, None) => after.len(),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The parts of the crate that `source` names through `crate::` paths.
fn named_parts(source: &str) -> BTreeSet<String> {
    let mut parts = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in source.match_indices("crate::") {
        // `redraft::crate::` cannot occur; skip `$crate::` in macros.
        if source[..at].ends_with('$') {
            continue;
        }
        let rest = &source[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name = ident(item.trim());
                if !name.is_empty() && name != "self" {
                    parts.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                parts.insert(name);
            }
        }
    }
    parts
}

/// Every source file of src/: its path under src/ and its part (first directory or file).
fn files_with_parts() -> Vec<(PathBuf, String, String)> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files
        .into_iter()
        .map(|file| {
            let relative = file
                .strip_prefix(src_dir())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let part = relative
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            (file, relative, part)
        })
        .collect()
}

/// (from part, to part) → files with such a path.
fn arrows() -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut arrows: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (file, relative, part) in files_with_parts() {
        if relative == "lib.rs" || relative == "main.rs" {
            continue;
        }
        let source = without_test_items(&fs::read_to_string(&file).unwrap());
        for named in named_parts(&source) {
            if named != part {
                arrows
                    .entry((part.clone(), named))
                    .or_default()
                    .insert(relative.clone());
            }
        }
    }
    arrows
}

#[test]
fn parts_of_src_import_only_downward() {
    let order = declared_order();
    let rank = |part: &str| order.iter().position(|p| p == part);
    let mut problems = Vec::new();
    let arrows = arrows();
    for ((from, to), files) in &arrows {
        let (Some(from_rank), Some(to_rank)) = (rank(from), rank(to)) else {
            problems.push(format!(
                "{from} -> {to} ({files:?}): a part missing from lib.rs's layer line"
            ));
            continue;
        };
        let known = KNOWN_UPWARD.iter().any(|(f, t, _)| f == from && t == to);
        if to_rank > from_rank && !known {
            problems.push(format!(
                "{from} -> {to} points upward (declared order: {}), in {files:?}",
                order.join(", ")
            ));
        }
    }
    for (from, to, why) in KNOWN_UPWARD {
        if !arrows.contains_key(&(from.to_string(), to.to_string())) {
            problems.push(format!(
                "{from} -> {to} is listed as a known upward arrow ({why}) but no longer \
                 occurs: strike it from KNOWN_UPWARD"
            ));
        }
    }
    // Every part of src/ is placed in the order.
    for (_, _, part) in files_with_parts() {
        if part != "lib" && part != "main" && rank(&part).is_none() {
            problems.push(format!("part {part} is missing from lib.rs's layer line"));
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "layer violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_sees_paths_groups_and_skips_test_modules() {
    let source = "use crate::store::Request;\nuse crate::{node::Node, resp};\n\
                  fn f() { crate::raft::go() }\n\
                  #[cfg(test)]\nmod tests { use crate::server::x; }\n\
                  #[cfg(test)]\nuse crate::cluster::y;\n";
    let parts = named_parts(&without_test_items(source));
    let expected: BTreeSet<String> = ["store", "node", "resp", "raft"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(parts, expected);
}

/// The parts that may use openraft: the layers above `node` read its typed views
/// (`ClusterView`, `RaftStatus`) instead.
const OPENRAFT_PARTS: &[&str] = &["raft", "store", "node"];

#[test]
fn only_raft_store_and_node_use_openraft() {
    let mut problems = Vec::new();
    for (file, relative, part) in files_with_parts() {
        if part == "lib" || OPENRAFT_PARTS.contains(&part.as_str()) {
            continue;
        }
        let source = without_test_items(&fs::read_to_string(&file).unwrap());
        let code: String = source
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        if code.contains("openraft::") {
            problems.push(relative);
        }
    }
    assert!(
        problems.is_empty(),
        "openraft used outside {OPENRAFT_PARTS:?}: {problems:?}"
    );
}
