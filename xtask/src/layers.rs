//! `cargo xtask layers`: inside each crate every reference between modules
//! points down a declared stack of floors, and no files refer to each
//! other in a cycle.
//!
//! Each crate's floors are a table below, top to bottom. A name on a floor
//! is a module path prefix (`"mesh"`, or a deeper `"mesh::sim"`, which then
//! wins for the files under it); the crate root is `"main"` or `"lib"`. A
//! file may refer to modules on its own floor and on lower ones, never to a
//! higher floor, and every file must be on a floor. References are read
//! from the source (see `refs.rs`) and land in the deepest module file of
//! their path, following the `use` re-exports of the file they land in:
//! `crate::mesh::desired::Record` is `mesh/desired.rs`, `crate::mesh::Mesh`
//! is `mesh/mod.rs`, and `crate::Request`, re-exported by `lib.rs` from
//! `request`, is `request.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::{lexer, refs, source_tree};

/// A crate's floors, top to bottom. Modules on one floor may refer to each
/// other (files still may not form a cycle); to move a module, move its
/// name. Names of modules that do not exist yet are allowed, so a table
/// can lead the code.
pub type Floors = &'static [&'static [&'static str]];

/// The `shoal` binary, from the command line down to the leaves.
pub const HOST: Floors = &[
    &["main"],
    &["cli"],
    &["daemon", "sim"],
    &["admin", "ingress"],
    &["node"],
    &["mesh"],
    &["apps", "routes"],
    &["store", "kv"],
    &["desired"],
    &["spec", "replicas"],
    &[
        "accept",
        "connections",
        "nofile",
        "respond",
        "metrics",
        "units",
        "clock",
        "dirs",
        "telemetry",
        "shutdown",
        "progress",
        "compiler",
        "guest_logs",
        "executor",
        "tls",
    ],
];

/// The runtime, top to bottom.
pub const RUNTIME: Floors = &[
    &["lib"],
    &["app"],
    &["driver"],
    &["component"],
    &["engine"],
    &["instance", "cache"],
    &["outbound", "state"],
    &[
        "body",
        "error",
        "deadline",
        "scheduler",
        "guest_log",
        "host_memory",
        "limits",
        "policy",
        "denied",
        "ranges",
        "state::backend",
        "state::memory",
    ],
];

/// The guest SDK, top to bottom.
pub const SDK: Floors = &[
    &["lib"],
    &["serve", "router"],
    &["query", "fetch", "response"],
    &["request"],
    &["body", "writer"],
    &["error", "executor"],
    &["kv", "config"],
    &["bindings"],
];

/// A crate's source folder and the table of its floors.
pub struct Crate {
    pub src: &'static str,
    pub table: &'static str,
    pub floors: Floors,
}

pub const CRATES: &[Crate] = &[
    Crate {
        src: "host/src",
        table: "HOST",
        floors: HOST,
    },
    Crate {
        src: "runtime/src",
        table: "RUNTIME",
        floors: RUNTIME,
    },
    Crate {
        src: "sdk/src",
        table: "SDK",
        floors: SDK,
    },
];

const WHERE: &str = "floors are declared in xtask/src/layers.rs";

/// Check every crate of the workspace at `root`, printing each error.
pub fn run(root: &Path) -> Result<(), String> {
    let mut errors = Vec::new();
    let mut files = 0;
    for krate in CRATES {
        let tree = source_tree::read(&root.join(krate.src))?;
        files += tree.len();
        errors.extend(check(krate, &tree));
    }
    for error in &errors {
        eprintln!("{error}\n");
    }
    if errors.is_empty() {
        eprintln!("layers: {files} files, every reference points down, no cycles");
        Ok(())
    } else {
        Err(format!("layers: {} errors; {WHERE}", errors.len()))
    }
}

/// The errors of one crate whose source folder holds `files` (path
/// relative to the folder, text).
pub fn check(krate: &Crate, files: &[(String, String)]) -> Vec<String> {
    let graph = Graph::new(krate, files);
    let mut errors = graph.undeclared();
    errors.extend(graph.upward());
    errors.extend(graph.cycles());
    errors
}

struct File {
    /// As printed: `host/src/mesh/forward.rs`.
    shown: String,
    /// `mesh::forward`, or `main` / `lib` for the root.
    name: String,
    floor: Option<usize>,
    refs: refs::FileRefs,
}

/// A reference from one file to another.
struct Edge {
    from: usize,
    to: usize,
    line: usize,
    written: String,
}

struct Graph<'k> {
    krate: &'k Crate,
    files: Vec<File>,
    edges: Vec<Edge>,
}

impl<'k> Graph<'k> {
    fn new(krate: &'k Crate, sources: &[(String, String)]) -> Self {
        let mut files = Vec::new();
        let mut modules = HashMap::new();
        for (index, (path, text)) in sources.iter().enumerate() {
            let (module, name) = module_path(path);
            let mut refs = refs::scan(&module, &lexer::tokens(text));
            refs.references.sort_by_key(|r| r.line);
            let file = File {
                shown: format!("{}/{path}", krate.src),
                floor: floor_of(krate.floors, &name),
                refs,
                name,
            };
            files.push(file);
            modules.insert(module, index);
        }
        let mut graph = Graph {
            krate,
            files,
            edges: Vec::new(),
        };
        for from in 0..graph.files.len() {
            for reference in &graph.files[from].refs.references {
                let to = graph.land(&modules, &reference.path);
                if to != Some(from)
                    && let Some(to) = to
                {
                    let (line, written) = (reference.line, reference.written.clone());
                    graph.edges.push(Edge {
                        from,
                        to,
                        line,
                        written,
                    });
                }
            }
        }
        graph
    }

    /// The file `path` lands in: its deepest module file, then on through
    /// that file's imports (a re-export) when the next name is one.
    fn land(&self, modules: &HashMap<Vec<String>, usize>, path: &[String]) -> Option<usize> {
        let mut path = path.to_vec();
        let mut landed = None;
        for _ in 0..8 {
            let depth = (0..=path.len())
                .rev()
                .find(|&d| modules.contains_key(&path[..d]))?;
            let file = modules[&path[..depth]];
            landed = Some(file);
            let imported = path
                .get(depth)
                .and_then(|n| self.files[file].refs.imports.get(n));
            match imported {
                Some(target) if !path.starts_with(target) => {
                    let mut next = target.clone();
                    next.extend_from_slice(&path[depth + 1..]);
                    path = next;
                }
                _ => break,
            }
        }
        landed
    }

    fn undeclared(&self) -> Vec<String> {
        let table = self.krate.table;
        self.files
            .iter()
            .filter(|f| f.floor.is_none())
            .map(|f| {
                format!(
                    "{}: module `{}` is on no floor; add it to the {table} table in xtask/src/layers.rs",
                    f.shown, f.name
                )
            })
            .collect()
    }

    /// One error per pair of files with a reference up, at its first line.
    fn upward(&self) -> Vec<String> {
        let mut pairs: BTreeMap<(usize, usize), Vec<&Edge>> = BTreeMap::new();
        for edge in &self.edges {
            let (from, to) = (&self.files[edge.from], &self.files[edge.to]);
            if let (Some(a), Some(b)) = (from.floor, to.floor)
                && b < a
            {
                pairs.entry((edge.from, edge.to)).or_default().push(edge);
            }
        }
        pairs
            .values()
            .map(|edges| self.upward_error(edges))
            .collect()
    }

    fn upward_error(&self, edges: &[&Edge]) -> String {
        let first = edges[0];
        let (from, to) = (&self.files[first.from], &self.files[first.to]);
        let floor = |f: &File| {
            let n = f.floor.unwrap_or(0);
            format!("floor {} [{}]", n + 1, self.krate.floors[n].join(", "))
        };
        let mut error = format!(
            "{}:{}: `{}` reaches up from `{}` ({}) to `{}` ({}); move `{}` below `{}` or invert the dependency; {WHERE} ({})",
            from.shown,
            first.line,
            first.written,
            from.name,
            floor(from),
            to.name,
            floor(to),
            to.name,
            from.name,
            self.krate.table,
        );
        let mut lines: Vec<usize> = edges.iter().map(|e| e.line).collect();
        lines.dedup();
        if lines.len() > 1 {
            let lines: Vec<String> = lines[1..].iter().map(usize::to_string).collect();
            error.push_str(&format!(" (also lines {})", lines.join(", ")));
        }
        error
    }

    /// Every strongly connected component of more than one file, with the
    /// first reference of each edge inside it.
    fn cycles(&self) -> Vec<String> {
        let mut first: BTreeMap<(usize, usize), &Edge> = BTreeMap::new();
        for edge in &self.edges {
            first.entry((edge.from, edge.to)).or_insert(edge);
        }
        let mut next = vec![Vec::new(); self.files.len()];
        for &(from, to) in first.keys() {
            next[from].push(to);
        }
        let mut errors = Vec::new();
        for component in components(&next) {
            if component.len() < 2 {
                continue;
            }
            let mut names: Vec<&str> = component.iter().map(|&f| &*self.files[f].shown).collect();
            names.sort();
            let mut error = format!("cycle between {} files: {}", names.len(), names.join(", "));
            let mut inside: Vec<&Edge> = first
                .values()
                .filter(|e| component.contains(&e.from) && component.contains(&e.to))
                .copied()
                .collect();
            inside.sort_by_key(|e| (&self.files[e.from].shown, e.line));
            for edge in inside {
                let (a, b) = (&self.files[edge.from].shown, &self.files[edge.to].shown);
                error.push_str(&format!("\n  {a}:{} `{}` -> {b}", edge.line, edge.written));
            }
            error.push_str(&format!(
                "\n  break it: move what they share below them or invert one dependency; {WHERE}"
            ));
            errors.push(error);
        }
        errors
    }
}

/// A file's module path (relative to its source folder) and the name it
/// goes by in the tables: `main.rs` is the root `main`, `mesh/mod.rs` and
/// `mesh.rs` are `mesh`, `mesh/forward.rs` is `mesh::forward`.
fn module_path(path: &str) -> (Vec<String>, String) {
    let stem = path.strip_suffix(".rs").unwrap_or(path);
    if stem == "main" || stem == "lib" {
        return (Vec::new(), stem.to_string());
    }
    let mut module: Vec<String> = stem.split('/').map(String::from).collect();
    if module.len() > 1 && module.last().is_some_and(|s| s == "mod") {
        module.pop();
    }
    let name = module.join("::");
    (module, name)
}

/// The floor whose longest name is a prefix of module `name`.
fn floor_of(floors: Floors, name: &str) -> Option<usize> {
    let covers = |entry: &str| {
        name == entry
            || name
                .strip_prefix(entry)
                .is_some_and(|rest| rest.starts_with("::"))
    };
    floors
        .iter()
        .enumerate()
        .flat_map(|(n, floor)| {
            floor
                .iter()
                .filter(|e| covers(e))
                .map(move |e| (e.len(), n))
        })
        .max()
        .map(|(_, n)| n)
}

/// The strongly connected components of the graph `next` (Tarjan's).
fn components(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct Tarjan<'g> {
        next: &'g [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        counter: usize,
        found: Vec<Vec<usize>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.counter);
            self.low[v] = self.counter;
            self.counter += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in &self.next[v] {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(i) if self.on_stack[w] => self.low[v] = self.low[v].min(i),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                self.found.push(component);
            }
        }
    }
    let n = next.len();
    let mut tarjan = Tarjan {
        next,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on_stack: vec![false; n],
        counter: 0,
        found: Vec::new(),
    };
    for v in 0..n {
        if tarjan.index[v].is_none() {
            tarjan.visit(v);
        }
    }
    tarjan.found
}

#[cfg(test)]
mod tests;
