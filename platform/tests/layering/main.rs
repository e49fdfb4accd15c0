//! One-way dependencies between the platform's modules, checked from the source text.
//!
//! Every file is a module (`store/users.rs` is `store::users`, `supervisor/act/mod.rs` is
//! `supervisor::act`). Every `crate::…`, `super::…` and `self::…` path in it, outside comments and
//! strings, is resolved from where it stands (inside an inline `mod tests { … }` too) to the
//! deepest file module it reaches: that is an edge. An edge counts in the directory where its two
//! ends part: `supervisor/act/tend.rs` → `supervisor::plan` is `act → plan` among the modules of
//! `supervisor/`, and → `supervisor::act::watch` is `tend → watch` among those of `supervisor/act/`.
//!
//! What counts as a cycle: a circle of imports between siblings. An edge between a module and its
//! own ancestor is in no directory: a `mod.rs` assembles its children and may use them, and a child
//! naming its parent's items (`use super::UploadError`) is how Rust shares a module's types. The
//! price: a circle through a parent's item (`tend` uses `act::X`, whose body uses `watch`, which
//! uses `tend`) is not seen, nor a sibling reached bare through a parent's glob (`use super::*`,
//! as the tests and `config/login.rs` have).
//!
//! Fails on (a) a cycle between top-level modules, (b) a lower layer importing `api`, (c) a cycle
//! between the sibling modules of any directory, at any depth (`store/applications` ↔
//! `store/subscriptions`, `supervisor/act/tend` ↔ `supervisor/act/watch`…), (d) `bollard`
//! outside `runtime::docker` and `runtime::swarm`. There are no known exceptions: what two sides
//! both need moves into `apps/` (the flows), a module below both (`edge`, `store/artifacts`) or
//! one of its own (`api/user_json`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;

use paths::{Module, Named, deepest, file_module, named_paths, parting, resolve};

mod paths;

/// Modules that must never import `api` (the HTTP handlers sit above them).
const BELOW_API: &[&str] = &[
    "auth",
    "proxy",
    "store",
    "supervisor",
    "runtime",
    "apps",
    "series",
];

/// Per directory (a module with children), its children → the siblings they name → first place.
type Directories = BTreeMap<Module, BTreeMap<String, BTreeMap<String, String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every edge of the crate, by the directory it counts in.
fn directories() -> Directories {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let rels: Vec<&Path> = files
        .iter()
        .map(|f| f.strip_prefix(&src).unwrap())
        .collect();
    let modules: BTreeSet<Module> = rels.iter().map(|rel| file_module(rel)).collect();
    let mut directories = Directories::new();
    for (file, rel) in files.iter().zip(&rels) {
        // The binary is a crate of its own; its `crate::` is not the library.
        if *rel == Path::new("main.rs") {
            continue;
        }
        let from = file_module(rel);
        let text = std::fs::read_to_string(file).unwrap();
        let tokens: TokenStream = text
            .parse()
            .unwrap_or_else(|e| panic!("src/{}: {e:?}", rel.display()));
        let mut named = Vec::new();
        named_paths(tokens, &from, &mut named);
        for Named { at, path, line } in named {
            let Some(target) = resolve(&at, &path) else {
                continue;
            };
            let to = deepest(&modules, &target);
            if let Some((directory, a, b)) = parting(&from, &to) {
                directories
                    .entry(directory)
                    .or_default()
                    .entry(a)
                    .or_default()
                    .entry(b)
                    .or_insert_with(|| format!("src/{}:{line}", rel.display()));
            }
        }
    }
    directories
}

/// Every pair `(a, b)` with a path a → … → b and one back.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<(String, String)> {
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(node) = todo.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|k| (k, reach(k))).collect();
    let mut pairs = BTreeSet::new();
    for (a, from_a) in &reached {
        for b in from_a {
            if *a < b && reached.get(b).is_some_and(|r| r.contains(*a)) {
                pairs.insert(((*a).clone(), b.clone()));
            }
        }
    }
    pairs
}

/// The strongly connected groups (more than one member) of `graph`.
fn groups(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<Vec<String>> {
    let pairs = cycles(graph);
    let mut groups = BTreeSet::new();
    for (a, _) in &pairs {
        let mut group: BTreeSet<String> = pairs
            .iter()
            .filter_map(|(x, y)| {
                if x == a {
                    Some(y.clone())
                } else if y == a {
                    Some(x.clone())
                } else {
                    None
                }
            })
            .collect();
        group.insert(a.clone());
        groups.insert(group.into_iter().collect());
    }
    groups
}

/// The circles among the children of one directory, each as its edges and where they are written.
fn circles(
    directory: &Module,
    edges: &BTreeMap<String, BTreeMap<String, String>>,
) -> Vec<Vec<String>> {
    let graph: BTreeMap<String, BTreeSet<String>> = edges
        .iter()
        .map(|(from, to)| (from.clone(), to.keys().cloned().collect()))
        .collect();
    let dir = ["src"]
        .into_iter()
        .chain(directory.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("/");
    groups(&graph)
        .into_iter()
        .map(|group| {
            let dir = &dir;
            group
                .iter()
                .flat_map(|from| {
                    edges[from]
                        .iter()
                        .filter(|(to, _)| group.contains(*to))
                        .map(move |(to, place)| format!("{dir}: {from} → {to} at {place}"))
                })
                .collect()
        })
        .collect()
}

#[test]
fn lower_layers_never_import_the_api() {
    let directories = directories();
    let top = directories.get(&Module::new()).cloned().unwrap_or_default();
    let mut wrong = Vec::new();
    for module in BELOW_API {
        if let Some(place) = top.get(*module).and_then(|to| to.get("api")) {
            wrong.push(format!("{module} imports api at {place}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn top_level_modules_form_no_cycle() {
    let directories = directories();
    let root = Module::new();
    let found = circles(&root, directories.get(&root).unwrap());
    assert!(
        found.is_empty(),
        "modules importing each other in a circle: {found:#?}"
    );
}

#[test]
fn sibling_modules_form_no_cycle() {
    let found: Vec<Vec<String>> = directories()
        .iter()
        .filter(|(directory, _)| !directory.is_empty())
        .flat_map(|(directory, edges)| circles(directory, edges))
        .collect();
    assert!(
        found.is_empty(),
        "modules of one directory importing each other in a circle: {found:#?}"
    );
}

/// The nested files are read: a check that sees nothing passes for the wrong reason.
#[test]
fn nested_imports_are_seen() {
    let directories = directories();
    // (directory, from, to): each written with `super::` from a file below its top-level module.
    let expected = [
        ("supervisor", "plan", "backoff"), // supervisor/plan/mod.rs: super::backoff
        ("supervisor/probes", "http", "schedule"), // inline tests: super::super::schedule
        ("apps/upload", "load", "quota"),  // apps/upload/load.rs: super::quota
        ("runtime", "swarm", "docker"),    // runtime/swarm/mod.rs: super::docker
        ("supervisor", "act", "plan"),     // supervisor/act/tend.rs: crate::supervisor::plan
    ];
    for (directory, from, to) in expected {
        let directory: Module = directory.split('/').map(str::to_owned).collect();
        assert!(
            directories
                .get(&directory)
                .and_then(|d| d.get(from))
                .is_some_and(|d| d.contains_key(to)),
            "{directory:?}: no edge {from} → {to}"
        );
    }
}

/// Only the two runtimes speak to an engine's API; everything else goes through the `Runtime`
/// trait over plain data, so a third runtime changes no caller.
#[test]
fn only_the_runtimes_know_bollard() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = [src.join("runtime/docker"), src.join("runtime/swarm")];
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        if allowed.iter().any(|dir| file.starts_with(dir)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if code.contains("bollard") {
                let rel = file.strip_prefix(&src).unwrap().display();
                found.push(format!("src/{rel}:{}", number + 1));
            }
        }
    }
    assert!(found.is_empty(), "bollard outside the runtimes: {found:#?}");
}
