//! Reading a file's paths and resolving them to the modules they name, for `main.rs`'s rules.
//! Source is tokenised, so comments, doc links and strings are never paths.

use std::collections::BTreeSet;
use std::path::Path;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// A module's path from the crate root: `["supervisor", "act", "tend"]`; the root is empty.
pub type Module = Vec<String>;

/// A path as written: the module it stands in, its segments and its line.
#[derive(Debug, PartialEq)]
pub struct Named {
    pub at: Module,
    pub path: Vec<String>,
    pub line: usize,
}

/// The module a file under `src/` is: `a/b.rs` and `a/b/mod.rs` are `a::b`, `lib.rs` the root.
pub fn file_module(rel: &Path) -> Module {
    let mut module: Module = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if module.last().is_some_and(|l| l == "mod") || module == ["lib"] {
        module.pop();
    }
    module
}

/// `tokens[at..]` starts with `::`.
fn separator_at(tokens: &[TokenTree], at: usize) -> bool {
    matches!(
        (tokens.get(at), tokens.get(at + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

/// Reads the path whose next segment is `tokens[at]` onto `path`; a `use` tree's `{…}` splits it
/// into one path per item. Returns the index after it.
fn path_at(
    tokens: &[TokenTree],
    mut at: usize,
    mut path: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    while let Some(TokenTree::Ident(segment)) = tokens.get(at) {
        path.push(segment.to_string());
        at += 1;
        if !separator_at(tokens, at) {
            break;
        }
        at += 2;
        if let Some(TokenTree::Group(group)) = tokens.get(at)
            && group.delimiter() == Delimiter::Brace
        {
            let items: Vec<TokenTree> = group.stream().into_iter().collect();
            for item in items.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ',')) {
                if !item.is_empty() {
                    path_at(item, 0, path.clone(), out);
                }
            }
            return at + 1;
        }
    }
    out.push(path);
    at
}

/// Every path starting `crate::`, `super::` or `self::` in `tokens`, which stand in module `at`.
pub fn named_paths(tokens: TokenStream, at: &Module, out: &mut Vec<Named>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            // An inline module: `super` inside it starts one level lower.
            TokenTree::Ident(word) if word == "mod" => {
                if let (Some(TokenTree::Ident(name)), Some(TokenTree::Group(body))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                    && body.delimiter() == Delimiter::Brace
                {
                    let mut inner = at.clone();
                    inner.push(name.to_string());
                    named_paths(body.stream(), &inner, out);
                    i += 3;
                    continue;
                }
            }
            // `$crate` in a macro is no path of ours.
            TokenTree::Ident(word)
                if (word == "crate" || word == "super" || word == "self")
                    && separator_at(&tokens, i + 1)
                    && !matches!(tokens.get(i.wrapping_sub(1)), Some(TokenTree::Punct(p)) if p.as_char() == '$') =>
            {
                let line = word.span().start().line;
                let mut paths = Vec::new();
                i = path_at(&tokens, i, Vec::new(), &mut paths);
                out.extend(paths.into_iter().map(|path| Named {
                    at: at.clone(),
                    path,
                    line,
                }));
                continue;
            }
            TokenTree::Group(group) => named_paths(group.stream(), at, out),
            _ => {}
        }
        i += 1;
    }
}

/// The absolute path that `path`, written in module `at`, names; `None` for a path that does not
/// start at this crate (`std::…`, a local name) or climbs above its root.
pub fn resolve(at: &[String], path: &[String]) -> Option<Module> {
    let (first, mut rest) = path.split_first()?;
    let mut base: Module = match first.as_str() {
        "crate" => Vec::new(),
        "self" => at.to_vec(),
        "super" => at.split_last()?.1.to_vec(),
        _ => return None,
    };
    while let Some((segment, tail)) = rest.split_first()
        && segment == "super"
    {
        base.pop()?;
        rest = tail;
    }
    // `use a::{self, …}` leaves a `self` naming `a` itself.
    base.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(base)
}

/// The deepest of `modules` that `path` is in (`store::users::User` → `store::users`).
pub fn deepest(modules: &BTreeSet<Module>, path: &[String]) -> Module {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains(m))
        .unwrap_or_default()
}

/// Where an edge `from` → `to` counts: the directory they part in and the two children of it
/// they are in; `None` when one is the other's ancestor (or the same module).
pub fn parting(from: &[String], to: &[String]) -> Option<(Module, String, String)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    let (a, b) = (from.get(common)?, to.get(common)?);
    Some((from[..common].to_vec(), a.clone(), b.clone()))
}

fn module(text: &str) -> Module {
    text.split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn file_modules() {
    let table = [
        ("lib.rs", ""),
        ("store/users.rs", "store::users"),
        ("store/mod.rs", "store"),
        ("package.rs", "package"),
        ("supervisor/act/mod.rs", "supervisor::act"),
        ("supervisor/act/tend.rs", "supervisor::act::tend"),
        ("supervisor/plan/tests/mod.rs", "supervisor::plan::tests"),
    ];
    for (file, expected) in table {
        assert_eq!(file_module(Path::new(file)), module(expected), "{file}");
    }
}

#[test]
fn paths_resolve_from_where_they_stand() {
    // (module the path is written in, path, what it names)
    let table = [
        (
            "supervisor::act::tend",
            "crate::supervisor::plan",
            Some("supervisor::plan"),
        ),
        (
            "supervisor::act::tend",
            "super::watch::run",
            Some("supervisor::act::watch::run"),
        ),
        (
            "supervisor::act::tend",
            "super::super::plan",
            Some("supervisor::plan"),
        ),
        (
            "supervisor::act::tend",
            "self::inner",
            Some("supervisor::act::tend::inner"),
        ),
        // A `mod.rs` is its directory's module: its `super` is the directory's parent.
        (
            "supervisor::plan",
            "super::backoff",
            Some("supervisor::backoff"),
        ),
        (
            "supervisor::probes::http::tests",
            "super::super::schedule",
            Some("supervisor::probes::schedule"),
        ),
        (
            "runtime::swarm",
            "super::tasks::self",
            Some("runtime::tasks"),
        ),
        ("store", "super::x", Some("x")),
        ("", "super::x", None),
        ("store", "super::super::x", None),
        ("store", "std::sync::Arc", None),
        ("store", "users::User", None),
    ];
    for (at, path, expected) in table {
        assert_eq!(
            resolve(&module(at), &module(path)),
            expected.map(module),
            "{path} in {at}"
        );
    }
}

#[test]
fn paths_name_the_deepest_module() {
    let modules: BTreeSet<Module> = ["", "store", "store::users", "supervisor", "supervisor::act"]
        .into_iter()
        .map(module)
        .collect();
    let table = [
        ("store::users::User", "store::users"),
        ("store::users", "store::users"),
        ("store::Store", "store"),
        ("supervisor::act::tend::run", "supervisor::act"),
        ("nowhere", ""),
    ];
    for (path, expected) in table {
        assert_eq!(deepest(&modules, &module(path)), module(expected), "{path}");
    }
}

#[test]
fn edges_count_where_their_ends_part() {
    // (from, to, the directory and the two children of it; None between ancestor and descendant)
    let table = [
        (
            "supervisor::act::tend",
            "supervisor::act::watch",
            Some(("supervisor::act", "tend", "watch")),
        ),
        (
            "supervisor::act::tend",
            "supervisor::plan",
            Some(("supervisor", "act", "plan")),
        ),
        (
            "supervisor::act::tend",
            "store::users",
            Some(("", "supervisor", "store")),
        ),
        (
            "apps::upload::load",
            "apps::upload::quota",
            Some(("apps::upload", "load", "quota")),
        ),
        ("supervisor::act::tend", "supervisor::act", None),
        ("supervisor::act::tend", "supervisor", None),
        ("supervisor::act", "supervisor::act::tend", None),
        ("store", "store", None),
    ];
    for (from, to, expected) in table {
        assert_eq!(
            parting(&module(from), &module(to)),
            expected.map(|(d, a, b)| (module(d), a.to_owned(), b.to_owned())),
            "{from} → {to}"
        );
    }
}

#[test]
fn paths_are_read_from_code_only() {
    // (source written in module `a::b`, the paths it names as `module: path`)
    let table: [(&str, &[&str]); 8] = [
        (
            "use super::{x, y::{self, Z}, w as v};",
            &[
                "a::b: super::x",
                "a::b: super::y::self",
                "a::b: super::y::Z",
                "a::b: super::w",
            ],
        ),
        (
            "// crate::x::y\n/// [`super::z`]\n/* self::q */ fn f() { g(\"crate::s::t\") }",
            &[],
        ),
        (
            "mod tests { use super::super::c; }",
            &["a::b::tests: super::super::c"],
        ),
        ("mod tests;\nuse super::c;", &["a::b: super::c"]),
        (
            "pub(crate) fn f(x: super::T) -> u8 { self.g(); crate::m::f::<u8>() }",
            &["a::b: super::T", "a::b: crate::m::f"],
        ),
        ("macro_rules! m { () => { $crate::x::y } }", &[]),
        ("use crate::store::*;", &["a::b: crate::store"]),
        ("use std::sync::Arc; use users::User;", &[]),
    ];
    for (source, expected) in table {
        let mut found = Vec::new();
        named_paths(source.parse().unwrap(), &module("a::b"), &mut found);
        let found: Vec<String> = found
            .iter()
            .map(|n| format!("{}: {}", n.at.join("::"), n.path.join("::")))
            .collect();
        assert_eq!(found, expected, "{source}");
    }
}

#[test]
fn paths_keep_their_line() {
    let mut found = Vec::new();
    named_paths(
        "//! doc\n\nuse super::x;\nfn f() {\n    crate::y::z();\n}"
            .parse()
            .unwrap(),
        &module("a"),
        &mut found,
    );
    let lines: Vec<usize> = found.iter().map(|n| n.line).collect();
    assert_eq!(lines, [3, 5]);
}
