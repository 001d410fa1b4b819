//! The references one file makes to modules of its own crate, read from its
//! tokens: the leaves of every `use` tree and every path in code that starts
//! with `crate`, `$crate`, `self`, `super`, or a name the file brought in
//! (a child module declared with `mod x;`, or a `use` leaf).
//!
//! Each reference comes out as an absolute module path (`["mesh",
//! "desired", "Record"]`); which file that lands in is the caller's
//! business. `mod x;` lines declare, they do not refer. Inside an inline
//! module (`mod tests { .. }`) `self` and `super` are relative to it, so a
//! test's `super::*` is its own file.

use std::collections::HashMap;

use crate::lexer::Token;

/// One reference, as written and as an absolute path from the crate root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub line: usize,
    pub written: String,
    pub path: Vec<String>,
}

/// What a file refers to, and the names it imports at file scope (with
/// their absolute paths), through which others' paths may pass as
/// re-exports.
#[derive(Debug, Default)]
pub struct FileRefs {
    pub references: Vec<Reference>,
    pub imports: HashMap<String, Vec<String>>,
}

/// The references in `tokens`, a file whose module path is `module`
/// (empty for the crate root).
pub fn scan(module: &[String], tokens: &[Token]) -> FileRefs {
    let mut scanner = Scanner {
        tokens,
        module: module.to_vec(),
        inline: Vec::new(),
        depth: 0,
        names: HashMap::new(),
        found: FileRefs::default(),
        bare: Vec::new(),
    };
    scanner.declare_children();
    let mut i = 0;
    while i < tokens.len() {
        i = scanner.step(i);
    }
    scanner.resolve_bare();
    scanner.found
}

/// A `use` leaf before resolution: its path, the name it binds, its line.
struct Leaf {
    segments: Vec<String>,
    name: Option<String>,
    line: usize,
}

struct Scanner<'t> {
    tokens: &'t [Token],
    module: Vec<String>,
    /// Inline modules open here, each with the brace depth outside it.
    inline: Vec<(String, usize)>,
    depth: usize,
    /// Every name a path may start with: child modules and `use` leaves
    /// from any scope of the file (a heuristic: scopes are not tracked).
    names: HashMap<String, Vec<String>>,
    found: FileRefs,
    /// Code paths starting with a plain name, resolved once every `use`
    /// of the file is known.
    bare: Vec<(usize, Vec<String>)>,
}

impl Scanner<'_> {
    fn text(&self, i: usize) -> &str {
        self.tokens.get(i).map_or("", |t| t.text.as_str())
    }

    fn is_ident(&self, i: usize) -> bool {
        self.tokens.get(i).is_some_and(Token::is_ident)
    }

    /// The module the scan is in: the file's, plus the inline ones open.
    fn current(&self) -> Vec<String> {
        let mut current = self.module.clone();
        current.extend(self.inline.iter().map(|(name, _)| name.clone()));
        current
    }

    /// `mod x;` at file scope makes `x` a name paths may start with.
    fn declare_children(&mut self) {
        let mut depth = 0usize;
        for i in 0..self.tokens.len() {
            match self.text(i) {
                "{" => depth += 1,
                "}" => depth = depth.saturating_sub(1),
                "mod" if depth == 0 && self.is_ident(i + 1) && self.text(i + 2) == ";" => {
                    let name = self.text(i + 1).to_string();
                    let mut path = self.module.clone();
                    path.push(name.clone());
                    self.names.insert(name.clone(), path.clone());
                    self.found.imports.insert(name, path);
                }
                _ => {}
            }
        }
    }

    /// Handle the token at `i`; the index of the next one to look at.
    fn step(&mut self, i: usize) -> usize {
        let previous = if i == 0 { "" } else { self.text(i - 1) };
        match self.text(i) {
            "{" => self.depth += 1,
            "}" => {
                self.depth = self.depth.saturating_sub(1);
                if self.inline.last().is_some_and(|&(_, d)| d == self.depth) {
                    self.inline.pop();
                }
            }
            "mod" if self.is_ident(i + 1) && self.text(i + 2) == "{" => {
                self.inline.push((self.text(i + 1).to_string(), self.depth));
                return i + 2;
            }
            "use" => return self.use_declaration(i + 1),
            // `pub(in crate::a)` limits visibility; it refers to nothing.
            "pub" if self.text(i + 1) == "(" && self.text(i + 2) == "in" => {
                return (i..self.tokens.len())
                    .find(|&k| self.text(k) == ")")
                    .map_or(self.tokens.len(), |k| k + 1);
            }
            _ if self.is_ident(i)
                && self.text(i + 1) == "::"
                && previous != "::"
                && previous != "." =>
            {
                return self.code_path(i);
            }
            _ => {}
        }
        i + 1
    }

    fn use_declaration(&mut self, i: usize) -> usize {
        let mut leaves = Vec::new();
        let end = self.use_tree(i, Vec::new(), &mut leaves);
        for leaf in leaves {
            self.use_leaf(leaf);
        }
        end
    }

    /// Expand the use tree at `i` below `prefix` into `out`; the index
    /// after it.
    fn use_tree(&self, mut i: usize, mut prefix: Vec<String>, out: &mut Vec<Leaf>) -> usize {
        loop {
            match self.text(i) {
                "::" => {
                    // A leading `::` names an external crate.
                    prefix.push("::".into());
                    i += 1;
                }
                "{" => {
                    i += 1;
                    while i < self.tokens.len() && self.text(i) != "}" {
                        i = self.use_tree(i, prefix.clone(), out);
                        match self.text(i) {
                            "," => i += 1,
                            "}" => {}
                            _ => return i,
                        }
                    }
                    return i + 1;
                }
                "*" => {
                    prefix.push("*".into());
                    let line = self.tokens[i].line;
                    out.push(Leaf {
                        segments: prefix,
                        name: None,
                        line,
                    });
                    return i + 1;
                }
                _ if self.is_ident(i) => {
                    prefix.push(self.text(i).to_string());
                    let line = self.tokens[i].line;
                    i += 1;
                    if self.text(i) == "::" {
                        i += 1;
                        continue;
                    }
                    let mut name = None;
                    if self.text(i) == "as" && self.is_ident(i + 1) {
                        name = Some(self.text(i + 1).to_string()).filter(|n| n != "_");
                        i += 2;
                    } else if let Some(last) = prefix.last() {
                        name = Some(last.clone());
                    }
                    out.push(Leaf {
                        segments: prefix,
                        name,
                        line,
                    });
                    return i;
                }
                _ => return i,
            }
        }
    }

    fn use_leaf(&mut self, leaf: Leaf) {
        let mut segments = leaf.segments;
        let mut name = leaf.name;
        if segments.len() > 1 && segments.last().is_some_and(|s| s == "self") {
            segments.pop();
            if name.as_deref() == Some("self") {
                name = segments.last().cloned();
            }
        }
        let written = segments.join("::");
        if segments.last().is_some_and(|s| s == "*") {
            segments.pop();
            name = None;
        }
        let Some(path) = self.absolute(&segments) else {
            return;
        };
        if let Some(name) = name {
            if self.depth == 0 {
                self.found.imports.insert(name.clone(), path.clone());
            }
            self.names.insert(name, path.clone());
        }
        let line = leaf.line;
        self.found.references.push(Reference {
            line,
            written,
            path,
        });
    }

    /// A path in code starting at `i` (followed by `::`); the index after it.
    fn code_path(&mut self, i: usize) -> usize {
        let line = self.tokens[i].line;
        let mut segments = vec![self.text(i).to_string()];
        let mut k = i;
        while self.text(k + 1) == "::" && self.is_ident(k + 2) {
            segments.push(self.text(k + 2).to_string());
            k += 2;
        }
        match segments[0].as_str() {
            "crate" | "$crate" | "self" | "super" => self.push_absolute(line, &segments),
            _ => self.bare.push((line, segments)),
        }
        k + 1
    }

    fn resolve_bare(&mut self) {
        for (line, segments) in std::mem::take(&mut self.bare) {
            self.push_absolute(line, &segments);
        }
    }

    /// Records `segments` as a reference if it resolves to a module path.
    fn push_absolute(&mut self, line: usize, segments: &[String]) {
        if let Some(path) = self.absolute(segments) {
            let written = segments.join("::");
            self.found.references.push(Reference {
                line,
                written,
                path,
            });
        }
    }

    /// `segments` from the crate root, or `None` when they start outside
    /// the crate (`std::..`, `::http::..`, a local enum).
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let (mut path, rest) = match segments.first()?.as_str() {
            "crate" | "$crate" => (Vec::new(), &segments[1..]),
            "self" => (self.current(), &segments[1..]),
            "super" => (self.current(), segments),
            name => (self.names.get(name)?.clone(), &segments[1..]),
        };
        let mut rest = rest.iter().peekable();
        while rest.next_if(|s| *s == "super").is_some() {
            path.pop()?;
        }
        path.extend(rest.cloned());
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::tokens;

    fn paths(module: &[&str], source: &str) -> Vec<String> {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        let mut found: Vec<String> = scan(&module, &tokens(source))
            .references
            .into_iter()
            .map(|r| format!("{}:{}", r.line, r.path.join("::")))
            .collect();
        found.sort();
        found
    }

    #[test]
    fn grouped_use_is_expanded() {
        let source = "use crate::{a, b::{c, d::{self, E}}, f::*};";
        assert_eq!(
            paths(&[], source),
            ["1:a", "1:b::c", "1:b::d", "1:b::d::E", "1:f"]
        );
    }

    #[test]
    fn super_and_self_are_relative() {
        let source = "use super::x;\nuse self::y::Z;\nfn f() { super::super::place(1); }";
        assert_eq!(
            paths(&["mesh", "forward"], source),
            ["1:mesh::x", "2:mesh::forward::y::Z", "3:place"]
        );
    }

    #[test]
    fn inline_modules_shift_super() {
        let source =
            "mod tests {\n use super::*;\n use super::super::store::Store;\n}\nuse super::after;";
        assert_eq!(
            paths(&["node"], source),
            ["2:node", "3:store::Store", "5:after"]
        );
    }

    #[test]
    fn child_modules_and_imports_start_paths() {
        let source = "mod key;\nuse key::ClusterKey;\nuse crate::store;\nfn f() { store::open(); key::parse(); ClusterKey::new(); x.key::<u8>(); std::mem::take(); }";
        assert_eq!(
            paths(&["mesh"], source),
            [
                "2:mesh::key::ClusterKey",
                "3:store",
                "4:mesh::key::ClusterKey::new",
                "4:mesh::key::parse",
                "4:store::open"
            ]
        );
    }

    #[test]
    fn visibility_and_declarations_are_not_references() {
        let source = "pub(crate) mod a;\npub(in crate::b) fn f() {}\npub(super) struct S;";
        assert!(paths(&["m"], source).is_empty());
    }
}
