//! One-way dependencies between the platform's modules, checked from the source text: every
//! `crate::…` path outside comments is an edge from the file's module to the module it names.
//! Fails on (a) a cycle between top-level modules, (b) a lower layer importing `api`, (c) a cycle
//! between the files of one top-level module (`store/applications` ↔ `store/subscriptions`…),
//! (d) `bollard` outside `runtime::docker` and `runtime::swarm`.
//! There are no known exceptions: what two sides both need moves into `apps/` (the flows), a
//! module below both (`edge`, `store/artifacts`) or one of its own (`api/user_json`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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

struct Edges {
    /// top-level module → module → first place it is named
    top: BTreeMap<String, BTreeMap<String, String>>,
    /// (top-level module, file) → files of the same module it names
    within: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

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

/// The identifiers following each `prefix` in `code` (`crate::store::users` → `store`).
fn names_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            names.extend(group.split(',').filter_map(|item| {
                let item = item.trim();
                let end = item
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(item.len());
                (end > 0).then(|| &item[..end])
            }));
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end > 0 {
            names.push(&rest[..end]);
        }
    }
    names
}

fn edges() -> Edges {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = Edges {
        top: BTreeMap::new(),
        within: BTreeMap::new(),
    };
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        // The crate root assembles everything; it is no layer.
        if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
            continue;
        }
        let top = parts[0].clone();
        // The file's sub-module inside its top-level module (`store/users.rs` → `users`).
        let own = parts.get(1).filter(|p| *p != "mod").cloned();
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for path in code.match_indices("crate::").map(|(at, _)| &code[at..]) {
                let segments: Vec<&str> = path
                    .trim_start_matches("crate::")
                    .split("::")
                    .map(|s| {
                        let end = s
                            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .unwrap_or(s.len());
                        &s[..end]
                    })
                    .collect();
                let Some(first) = segments.first().filter(|s| !s.is_empty()) else {
                    continue;
                };
                let place = format!("src/{}:{}", rel.display(), number + 1);
                if *first != top {
                    edges
                        .top
                        .entry(top.clone())
                        .or_default()
                        .entry((*first).to_owned())
                        .or_insert(place);
                } else if let (Some(own), Some(other)) = (&own, segments.get(1))
                    && own != other
                    && !other.is_empty()
                {
                    edges
                        .within
                        .entry(top.clone())
                        .or_default()
                        .entry(own.clone())
                        .or_default()
                        .insert((*other).to_owned());
                }
            }
            // `super::x` from a file one level down names a sibling file of the same module.
            if let Some(own) = &own
                && parts.len() == 2
            {
                for other in names_after(code, "super::") {
                    if other != own && other != "super" && other != "self" {
                        edges
                            .within
                            .entry(top.clone())
                            .or_default()
                            .entry(own.clone())
                            .or_default()
                            .insert(other.to_owned());
                    }
                }
            }
        }
    }
    edges
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

#[test]
fn lower_layers_never_import_the_api() {
    let edges = edges();
    let mut wrong = Vec::new();
    for module in BELOW_API {
        if let Some(place) = edges.top.get(*module).and_then(|to| to.get("api")) {
            wrong.push(format!("{module} imports api at {place}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn top_level_modules_form_no_cycle() {
    let edges = edges();
    let graph: BTreeMap<String, BTreeSet<String>> = edges
        .top
        .iter()
        .map(|(from, to)| (from.clone(), to.keys().cloned().collect()))
        .collect();
    let mut explained = Vec::new();
    for group in groups(&graph) {
        let inside: Vec<String> = group
            .iter()
            .flat_map(|from| {
                edges.top[from]
                    .iter()
                    .filter(|(to, _)| group.contains(*to))
                    .map(move |(to, place)| format!("{from} → {to} at {place}"))
            })
            .collect();
        explained.push(inside);
    }
    assert!(
        explained.is_empty(),
        "modules importing each other in a circle: {explained:#?}"
    );
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

#[test]
fn files_of_one_module_form_no_cycle() {
    let edges = edges();
    let found: Vec<(&String, Vec<String>)> = edges
        .within
        .iter()
        .flat_map(|(module, graph)| groups(graph).into_iter().map(move |g| (module, g)))
        .collect();
    assert!(
        found.is_empty(),
        "files importing each other in a circle: {found:#?}"
    );
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
