//! The module layering, checked: no import cycle between the top-level
//! modules (docs/architecture.md draws the layers). A `use crate::x`
//! that closes a loop fails this test with the loop and the files that
//! import across it, so the knot cannot grow back unnoticed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules its non-test code imports,
/// each with the files that do.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names after `crate::` in `code`.
fn crate_paths(code: &str) -> impl Iterator<Item = &str> {
    code.match_indices("crate::").map(move |(i, m)| {
        let rest = &code[i + m.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        &rest[..end]
    })
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g = Graph::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        // The crate root, the entry point and the skeleton sit above or
        // beside every layer.
        if matches!(top.as_str(), "lib" | "main" | "bpf") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Tests may reach anywhere: only the code before them counts.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for target in crate_paths(code) {
            let is_module = src.join(format!("{target}.rs")).exists() || src.join(target).is_dir();
            if target != top && is_module && target != "bpf" {
                g.entry(top.clone())
                    .or_default()
                    .entry(target.to_string())
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    g
}

/// The strongly connected components with more than one module.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = g.keys().chain(g.values().flat_map(|e| e.keys())).collect();
    // Reachability by repeated search: a few dozen modules at most.
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for next in g.get(&n).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) {
            continue;
        }
        let comp: Vec<String> = nodes
            .iter()
            .filter(|m| reached[n].contains(**m) && reached[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        done.extend(comp.iter().cloned());
        if comp.len() > 1 {
            out.push(comp);
        }
    }
    out
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let g = graph();
    let found = cycles(&g);
    let mut text = String::new();
    for comp in &found {
        text.push_str(&format!("cycle: {}\n", comp.join(", ")));
        for a in comp {
            for (b, files) in g.get(a).into_iter().flatten() {
                if comp.contains(b) {
                    let files: Vec<&str> = files.iter().map(String::as_str).collect();
                    text.push_str(&format!("  {a} -> {b}: {}\n", files.join(" ")));
                }
            }
        }
    }
    assert!(found.is_empty(), "{text}");
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    // The check itself must be able to fail.
    let mut g = Graph::new();
    let edge = |g: &mut Graph, a: &str, b: &str| {
        g.entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .insert("x.rs".into());
    };
    edge(&mut g, "capture", "schema");
    edge(&mut g, "output", "capture");
    assert!(cycles(&g).is_empty());
    edge(&mut g, "capture", "output");
    assert_eq!(
        cycles(&g),
        [vec!["capture".to_string(), "output".to_string()]]
    );
    assert_eq!(
        crate_paths("use crate::schema::{x}; crate::cli::y").collect::<Vec<_>>(),
        ["schema", "cli"]
    );
}
