//! The module-cycle check of `cargo xtask lint`: no crate of the workspace may have two
//! modules that import each other, directly or through others.
//!
//! How it reads a crate: every `.rs` file under `src/` (not `src/bin/`) is a module, named by
//! its path (`domain/mod.rs` is `domain`, `lib.rs` and `main.rs` the root). A module depends on
//! another when its code (outside a trailing `#[cfg(test)] mod`) names a path into it as
//! `crate::…` or `super::…`. A `pub use` re-export is not itself a dependency: a path through
//! it counts as a dependency on the module that defines the item, so a façade (`pub use
//! crate::shutdown::Shutdown` in `server`) does not hide or invent a cycle. A parent's `mod`
//! declarations are not dependencies either. The check reports each set of modules that
//! reach one another (a strongly connected component of more than one module).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The module cycles of the crate whose sources are in `src`, each as its modules, sorted.
pub fn cycles(src: &Path) -> anyhow::Result<Vec<Vec<String>>> {
    let mut modules = BTreeMap::new();
    for file in rust_files(src)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("could not read {}", file.display()))?;
        modules.insert(module_name(src, &file), code_of(&text));
    }
    Ok(Graph::new(&modules).cycles())
}

/// The `src` directories of the workspace's crates under `root` (`crates/*` and `tests`).
pub fn crate_sources(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).context("could not list crates/")? {
        let src = entry?.path().join("src");
        if src.is_dir() {
            sources.push(src);
        }
    }
    let tests = root.join("tests").join("src");
    if tests.is_dir() {
        sources.push(tests);
    }
    sources.sort();
    Ok(sources)
}

/// Every `.rs` file under `src`, but not the separate binaries of `src/bin`.
fn rust_files(src: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                if path != src.join("bin") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// The module path of `file` (`a::b`), the root being the empty string.
fn module_name(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file that counts: without its trailing test module and comment lines.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        if !trimmed.starts_with("//") {
            code.push_str(line);
            code.push('\n');
        }
    }
    code
}

/// Where a path starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Base {
    /// `crate::`
    Root,
    /// `super::`
    Parent,
    /// The module itself: `self::` or a child, in a `pub use` re-export.
    Module,
}

/// One path a module's code names: its segments after `crate::`, `super::` or, in a
/// re-export, `self::` or nothing.
#[derive(Debug, PartialEq)]
struct Reference {
    /// What the segments are relative to.
    base: Base,
    /// The path's segments (`domain`, `values`, `SiteNumber`).
    segments: Vec<String>,
    /// Written in a `pub use`: a re-export.
    reexport: bool,
}

/// Every `crate::…` and `super::…` path in `code`, and every path a `pub use` re-exports,
/// use trees expanded.
fn references(code: &str) -> Vec<Reference> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    for keyword in ["pub use ", "pub(crate) use "] {
        let mut from = 0;
        while let Some(offset) = code[from..].find(keyword) {
            from += offset + keyword.len();
            let rest = code[from..].trim_start();
            if rest.starts_with("crate::") || rest.starts_with("super::") {
                continue; // read below, with every other such path
            }
            let rest = rest.strip_prefix("self::").unwrap_or(rest);
            for segments in Tokens::new(rest).use_tree() {
                found.push(Reference {
                    base: Base::Module,
                    segments,
                    reexport: true,
                });
            }
        }
    }
    for (anchor, base) in [("crate::", Base::Root), ("super::", Base::Parent)] {
        let mut from = 0;
        while let Some(offset) = code[from..].find(anchor) {
            let start = from + offset;
            from = start + anchor.len();
            let preceded_by_path = start > 0
                && (bytes[start - 1].is_ascii_alphanumeric()
                    || bytes[start - 1] == b'_'
                    || bytes[start - 1] == b':');
            if preceded_by_path {
                continue;
            }
            let statement_start = code[..start].rfind([';', '{', '}']).map_or(0, |i| i + 1);
            let before = code[statement_start..start]
                .split_whitespace()
                .collect::<Vec<_>>();
            let reexport = before.first().is_some_and(|first| first.starts_with("pub"))
                && before.last() == Some(&"use");
            let mut tokens = Tokens::new(&code[from..]);
            for segments in tokens.use_tree() {
                found.push(Reference {
                    base,
                    segments,
                    reexport,
                });
            }
        }
    }
    found
}

/// A tiny reader of Rust paths and use trees (`a::{b, c::{d as e}, f::*}`).
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        Self { rest: text }
    }

    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        self.skip_space();
        let end = self
            .rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (ident, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(ident)
    }

    /// The paths of the use tree (or plain path) at the front, each as its segments.
    fn use_tree(&mut self) -> Vec<Vec<String>> {
        if self.eat("{") {
            let mut paths = Vec::new();
            loop {
                if self.eat("}") {
                    break;
                }
                let before = self.rest.len();
                paths.extend(self.use_tree());
                if !self.eat(",") {
                    self.eat("}");
                    break;
                }
                if self.rest.len() == before {
                    break;
                }
            }
            return paths;
        }
        if self.eat("*") {
            return vec![Vec::new()];
        }
        let Some(first) = self.ident() else {
            return vec![Vec::new()];
        };
        let first = first.to_owned();
        let save = self.rest;
        if self.eat("::") {
            let tails = self.use_tree();
            return tails
                .into_iter()
                .map(|tail| std::iter::once(first.clone()).chain(tail).collect())
                .collect();
        }
        self.rest = save;
        if self.eat("as") {
            self.ident();
        }
        vec![vec![first]]
    }
}

/// The dependency graph of a crate's modules.
struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    /// The graph of `modules` (module name → its code).
    fn new(modules: &BTreeMap<String, String>) -> Self {
        let references: BTreeMap<&str, Vec<Reference>> = modules
            .iter()
            .map(|(name, code)| (name.as_str(), references(code)))
            .collect();
        let mut reexports = BTreeMap::new();
        for (&module, found) in &references {
            for reference in found.iter().filter(|r| r.reexport) {
                let path = absolute(module, reference);
                if let Some(name) = path.last() {
                    let defining = resolve(modules, &BTreeMap::new(), &path);
                    reexports.insert((module.to_owned(), name.clone()), defining);
                }
            }
        }
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (&module, found) in &references {
            for reference in found.iter().filter(|r| !r.reexport) {
                let target = resolve(modules, &reexports, &absolute(module, reference));
                if target != module {
                    edges.entry(module.to_owned()).or_default().insert(target);
                }
            }
        }
        Self { edges }
    }

    /// The sets of modules that reach one another (Tarjan's algorithm).
    fn cycles(&self) -> Vec<Vec<String>> {
        let mut state = Tarjan::default();
        for node in self.edges.keys() {
            if !state.index.contains_key(node) {
                state.visit(node, &self.edges);
            }
        }
        let mut cycles = state.components;
        for cycle in &mut cycles {
            cycle.sort();
        }
        cycles.sort();
        cycles
    }
}

/// A reference's path from the crate root.
fn absolute(module: &str, reference: &Reference) -> Vec<String> {
    let mut path: Vec<String> = Vec::new();
    if reference.base != Base::Root {
        path.extend(module.split("::").map(str::to_owned));
        if reference.base == Base::Parent {
            path.pop();
        }
        path.retain(|segment| !segment.is_empty());
    }
    path.extend(reference.segments.iter().cloned());
    path
}

/// The module a path from the root leads into: its longest prefix that is a module, or the
/// module that defines the item when that module re-exports it.
fn resolve(
    modules: &BTreeMap<String, String>,
    reexports: &BTreeMap<(String, String), String>,
    path: &[String],
) -> String {
    for length in (0..=path.len()).rev() {
        let candidate = path[..length].join("::");
        if modules.contains_key(&candidate) {
            let mut module = candidate;
            if let Some(item) = path.get(length) {
                let mut hops = 0;
                while let Some(defining) = reexports.get(&(module.clone(), item.clone())) {
                    if *defining == module || hops == 8 {
                        break;
                    }
                    module = defining.clone();
                    hops += 1;
                }
            }
            return module;
        }
    }
    String::new()
}

/// Tarjan's strongly-connected-components walk.
#[derive(Default)]
struct Tarjan {
    next: usize,
    index: BTreeMap<String, usize>,
    low: BTreeMap<String, usize>,
    stack: Vec<String>,
    on_stack: BTreeSet<String>,
    components: Vec<Vec<String>>,
}

impl Tarjan {
    fn visit(&mut self, node: &str, edges: &BTreeMap<String, BTreeSet<String>>) {
        self.index.insert(node.to_owned(), self.next);
        self.low.insert(node.to_owned(), self.next);
        self.next += 1;
        self.stack.push(node.to_owned());
        self.on_stack.insert(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if !self.index.contains_key(next) {
                self.visit(next, edges);
                let low = self.low[node].min(self.low[next]);
                self.low.insert(node.to_owned(), low);
            } else if self.on_stack.contains(next) {
                let low = self.low[node].min(self.index[next]);
                self.low.insert(node.to_owned(), low);
            }
        }
        if self.low[node] == self.index[node] {
            let mut component = Vec::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack.remove(&member);
                let done = member == node;
                component.push(member);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                self.components.push(component);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(modules: &[(&str, &str)]) -> Vec<Vec<String>> {
        let modules = modules
            .iter()
            .map(|(name, code)| ((*name).to_owned(), code_of(code)))
            .collect();
        Graph::new(&modules).cycles()
    }

    #[test]
    fn use_trees_expand_into_paths() {
        let found = references("use crate::a::{b::{C, D as E}, f, g::*};\nlet x = crate::h::i(1);");
        let paths: Vec<String> = found.iter().map(|r| r.segments.join("::")).collect();
        assert_eq!(paths, ["a::b::C", "a::b::D", "a::f", "a::g", "h::i"]);
    }

    #[test]
    fn two_modules_naming_each_other_are_a_cycle() {
        let cycles = graph(&[
            ("", "mod a;\nmod b;"),
            ("a", "use crate::b::Thing;"),
            ("b", "pub fn f() { crate::a::g() }"),
        ]);
        assert_eq!(cycles, [["a".to_owned(), "b".to_owned()]]);
    }

    #[test]
    fn a_reexport_resolves_to_the_module_that_defines_the_item() {
        // `server` re-exports `Shutdown` from `shutdown`, and uses `metrics`, which uses the
        // signal through the façade: no cycle, since `metrics` depends on `shutdown`.
        let cycles = graph(&[
            ("", "pub mod server;\npub mod shutdown;\npub mod metrics;"),
            (
                "server",
                "pub use crate::shutdown::Shutdown;\nuse crate::metrics::serve;",
            ),
            ("shutdown", "pub struct Shutdown;"),
            ("metrics", "use crate::server::Shutdown;"),
        ]);
        assert!(cycles.is_empty(), "{cycles:?}");
    }

    #[test]
    fn super_paths_and_test_modules() {
        let cycles = graph(&[
            ("a", "use super::b::X;"),
            (
                "b",
                "pub struct X;\n#[cfg(test)]\nmod tests {\n use crate::a::Y;\n}",
            ),
            ("c::d", "use super::e::Z;"),
            ("c::e", "use crate::c::d::W; // a cycle inside c"),
        ]);
        assert_eq!(cycles, [["c::d".to_owned(), "c::e".to_owned()]]);
    }
}
