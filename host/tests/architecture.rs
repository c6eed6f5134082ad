//! The shape of the code, checked: the rules `docs/design.md` states, so that
//! they hold after the next change too, not only on the day they were written.
//!
//! - The workspace's crates depend on each other one way: the library
//!   (`host/`) is the product alone, the harness drives it, the command line
//!   uses both (`docs/design.md`, "Crates").
//! - No two of the library's top-level modules import each other, directly
//!   or through others (the map in `host/src/lib.rs`).
//! - Comments cite the project's own documents, never a file outside the
//!   repository, and every `docs/protocol.md §n` they cite exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    todo.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The first path segments of every `crate::` path in code (not comments):
/// `crate::a::b` gives `a`; `crate::{a::b, c}` gives `a` and `c`.
fn crate_refs(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `regionsync_crate::`, `$crate::` and the like
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 || (depth == 1 && c == ',') {
                    let first = item.trim().split("::").next().unwrap_or("");
                    if !first.is_empty() {
                        out.insert(first.trim_matches('{').to_string());
                    }
                    item.clear();
                    if depth == 0 {
                        break;
                    }
                } else if depth >= 1 {
                    item.push(c);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Top-level module -> the other top-level modules it refers to.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "bin" {
            continue;
        }
        let refs = crate_refs(&std::fs::read_to_string(&file).unwrap());
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(refs.into_iter().filter(|r| *r != module));
    }
    // Keep only edges to modules (functions at the crate root are not modules).
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// A cycle in `graph`, if there is one, as the path around it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_reference_finder_reads_paths_and_groups() {
    let refs = crate_refs(
        "use crate::{a::X, b, c::{d, e}};\nlet x = crate::f::g();\n// crate::comment\n\
         $crate::macro_path; regionsync_crate::not_ours",
    );
    let want: BTreeSet<String> = ["a", "b", "c", "f"].iter().map(|s| s.to_string()).collect();
    assert_eq!(refs, want);
    let mut g = BTreeMap::new();
    g.insert("x".to_string(), BTreeSet::from(["y".to_string()]));
    g.insert("y".to_string(), BTreeSet::from(["x".to_string()]));
    assert_eq!(
        find_cycle(&g),
        Some(vec!["x".to_string(), "y".to_string(), "x".to_string()])
    );
}

/// The names of a manifest's normal dependencies (`[dependencies]` and
/// target-specific ones; not dev or build).
fn normal_dependencies(manifest: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut normal = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            normal = line.ends_with("dependencies]")
                && !line.ends_with("dev-dependencies]")
                && !line.ends_with("build-dependencies]");
            continue;
        }
        if normal && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
            out.insert(name.to_string());
        }
    }
    out
}

#[test]
fn the_crates_depend_on_each_other_one_way() {
    let root = workspace();
    let deps = |dir: &str| {
        normal_dependencies(&std::fs::read_to_string(root.join(dir).join("Cargo.toml")).unwrap())
    };
    let library = deps("host");
    assert!(
        library.contains("wasmtime") && library.contains("tonic"),
        "{library:?}"
    );
    // The command line's and the harness's own dependencies stay out of the
    // product: an embedder of the library links none of them.
    for outside in [
        "clap",
        "anyhow",
        "indicatif",
        "toml",
        "mimalloc",
        "libmimalloc-sys",
        "regionsync-cli",
        "regionsync-harness",
    ] {
        assert!(
            !library.contains(outside),
            "the library depends on {outside}"
        );
    }
    let harness = deps("harness");
    assert!(harness.contains("regionsync") && !harness.contains("regionsync-cli"));
    let cli = deps("cli");
    assert!(cli.contains("regionsync") && cli.contains("regionsync-harness"));
    for file in rust_files(&root.join("host/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for crate_name in ["regionsync_cli", "regionsync_harness", "anyhow::"] {
            assert!(
                !text.contains(crate_name),
                "{} names {crate_name}",
                file.display()
            );
        }
    }
}

#[test]
fn no_two_library_modules_import_each_other() {
    let graph = module_graph(&workspace().join("host/src"));
    assert!(graph.contains_key("service") && graph.contains_key("role"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between modules: {}\nfull graph: {graph:#?}",
            cycle.join(" -> ")
        );
    }
    // The service and the server know no role; only `role` assembles them.
    for face in ["service", "server", "admin"] {
        for role in ["leader", "follower", "role"] {
            assert!(
                !graph[face].contains(role),
                "`{face}` imports `{role}`: {:?}",
                graph[face]
            );
        }
    }
}

#[test]
fn comments_cite_the_projects_own_documents() {
    let root = workspace();
    let protocol = std::fs::read_to_string(root.join("docs/protocol.md")).unwrap();
    let sections: BTreeSet<String> = protocol
        .lines()
        .filter_map(|l| l.strip_prefix("## §"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(sections.len() >= 7, "{sections:?}");
    let mut problems = Vec::new();
    let mut files: Vec<PathBuf> = ["host", "cli", "harness", "guest", "tests", "proto", "wit"]
        .iter()
        .flat_map(|d| rust_files(&root.join(d)))
        .collect();
    files.push(root.join("README.md"));
    files.push(root.join("wit/policy.wit"));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        // Built by concatenation so that this file does not match itself.
        for outside in [
            concat!("../", "shared"),
            concat!("SPEC", ".md"),
            concat!("WASM", "-NOTES"),
        ] {
            if text.contains(outside) {
                problems.push(format!("{name} cites {outside}"));
            }
        }
        for (i, line) in text.lines().enumerate() {
            if line.contains(concat!("SPEC", " §")) {
                problems.push(format!("{name}:{}: cites the old spec", i + 1));
            }
            let mut rest = line;
            while let Some(at) = rest.find("protocol.md §") {
                rest = &rest[at + "protocol.md §".len()..];
                let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if !n.is_empty() && !sections.contains(&n) {
                    problems.push(format!("{name}:{}: cites a missing §{n}", i + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
