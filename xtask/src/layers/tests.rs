//! The layer check on source trees built in memory.

use super::*;

/// The errors of `files` (paths under `host/src`) against the host's floors.
fn host(files: &[(&str, &str)]) -> Vec<String> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect();
    check(&CRATES[0], &files)
}

const MAIN: (&str, &str) = ("main.rs", "mod cli;\nmod store;\nfn main() { cli::run(); }");
const CLI: (&str, &str) = ("cli/mod.rs", "mod deploy;\npub fn run() {}");
const DEPLOY: (&str, &str) = ("cli/deploy.rs", "pub struct Args;");

#[test]
fn a_tree_pointing_down_passes() {
    let cli = (
        "cli/mod.rs",
        "mod deploy;\npub fn run() { crate::store::open(); }",
    );
    assert_eq!(
        host(&[MAIN, cli, DEPLOY, ("store.rs", "pub fn open() {}")]),
        Vec::<String>::new()
    );
}

#[test]
fn an_upward_use_fails_naming_file_line_path_and_fix() {
    let store = (
        "store.rs",
        "//! Storage.\n\nuse crate::cli::deploy::Args;\n",
    );
    let errors = host(&[MAIN, CLI, DEPLOY, store]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = &errors[0];
    assert!(
        error
            .starts_with("host/src/store.rs:3: `crate::cli::deploy::Args` reaches up from `store`"),
        "{error}"
    );
    assert!(
        error.contains("to `cli::deploy` (floor 2 [cli])"),
        "{error}"
    );
    assert!(error.contains("move `cli::deploy` below `store` or invert the dependency; floors are declared in xtask/src/layers.rs"), "{error}");
}

#[test]
fn grouped_use_inline_paths_and_super_are_resolved() {
    let store = (
        "store.rs",
        "use crate::{units, cli::{self, deploy::{Args}}};\n\
         fn f() {\n    let _ = crate::cli::deploy::Args;\n    super::main();\n}",
    );
    let errors = host(&[MAIN, CLI, DEPLOY, store, ("units.rs", "")]);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].starts_with("host/src/store.rs:4: `super::main` reaches up from `store`"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("host/src/store.rs:1: `crate::cli` reaches up"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].starts_with("host/src/store.rs:1: `crate::cli::deploy::Args` reaches up"),
        "{}",
        errors[2]
    );
    assert!(
        errors[2].ends_with("(HOST) (also lines 3)"),
        "{}",
        errors[2]
    );
}

#[test]
fn comments_and_strings_are_ignored() {
    let store = (
        "store.rs",
        "//! See [`crate::cli::run`].\n/// Not `crate::cli::deploy::Args`\n/* use crate::cli;\n */\n\
         fn f() -> &'static str { let _c = '\"'; \"use crate::cli::run; super::main()\" }\n\
         const R: &str = r#\"crate::cli::run\"#;",
    );
    assert_eq!(host(&[MAIN, CLI, DEPLOY, store]), Vec::<String>::new());
}

#[test]
fn a_two_file_cycle_fails_naming_each_edge() {
    let units = (
        "units.rs",
        "use crate::metrics::Counter;\npub struct Bytes;",
    );
    let metrics = (
        "metrics.rs",
        "pub struct Counter;\n\nfn f(_: crate::units::Bytes) {}",
    );
    let errors = host(&[MAIN, units, metrics]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = &errors[0];
    assert!(
        error.starts_with("cycle between 2 files: host/src/metrics.rs, host/src/units.rs"),
        "{error}"
    );
    assert!(
        error.contains("\n  host/src/units.rs:1 `crate::metrics::Counter` -> host/src/metrics.rs"),
        "{error}"
    );
    assert!(
        error.contains("\n  host/src/metrics.rs:3 `crate::units::Bytes` -> host/src/units.rs"),
        "{error}"
    );
}

#[test]
fn a_child_using_its_parent_that_uses_it_is_a_cycle() {
    let mesh = (
        "mesh/mod.rs",
        "mod forward;\npub fn place() {}\nfn g() { forward::send(); }",
    );
    let forward = ("mesh/forward.rs", "pub fn send() { super::place(); }");
    let errors = host(&[MAIN, mesh, forward]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("host/src/mesh/forward.rs:1 `super::place` -> host/src/mesh/mod.rs"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("host/src/mesh/mod.rs:3 `forward::send` -> host/src/mesh/forward.rs"),
        "{}",
        errors[0]
    );
}

#[test]
fn mod_declarations_and_a_tests_super_glob_are_not_edges() {
    let mesh = ("mesh/mod.rs", "mod forward;\npub fn place() {}");
    let forward = (
        "mesh/forward.rs",
        "pub fn send() { super::place(); }\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::place;\n}",
    );
    assert_eq!(host(&[MAIN, mesh, forward]), Vec::<String>::new());
}

#[test]
fn a_test_module_referring_up_counts() {
    let store = (
        "store.rs",
        "#[cfg(test)]\nmod tests {\n    use crate::cli::run;\n}",
    );
    let errors = host(&[MAIN, CLI, DEPLOY, store]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("host/src/store.rs:3: `crate::cli::run`"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_re_export_lands_in_the_file_that_defines_it() {
    let mesh = ("mesh/mod.rs", "mod forward;\npub use forward::Forwarder;");
    let forward = ("mesh/forward.rs", "pub struct Forwarder;");
    // `store` may not use `mesh`; the error names the defining file.
    let store = ("store.rs", "use crate::mesh::Forwarder;");
    let errors = host(&[MAIN, mesh, forward, store]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("to `mesh::forward` (floor 6 [mesh])"),
        "{}",
        errors[0]
    );
}

#[test]
fn an_undeclared_module_names_the_file_and_the_table() {
    let errors = host(&[MAIN, ("gadget.rs", "")]);
    assert_eq!(
        errors,
        [
            "host/src/gadget.rs: module `gadget` is on no floor; add it to the HOST table in xtask/src/layers.rs"
        ]
    );
}

#[test]
fn files_belong_to_their_longest_prefix() {
    const FLOORS: Floors = &[&["main"], &["mesh::sim"], &["mesh"]];
    assert_eq!(floor_of(FLOORS, "mesh::sim::world"), Some(1));
    assert_eq!(floor_of(FLOORS, "mesh::simple"), Some(2));
    assert_eq!(floor_of(FLOORS, "mesh"), Some(2));
    assert_eq!(floor_of(FLOORS, "meshes"), None);
    assert_eq!(
        module_path("mesh/mod.rs"),
        (vec!["mesh".to_string()], "mesh".to_string())
    );
    assert_eq!(module_path("lib.rs"), (vec![], "lib".to_string()));
}

#[test]
fn no_name_is_on_two_floors() {
    for krate in CRATES {
        let mut names: Vec<&str> = krate
            .floors
            .iter()
            .flat_map(|f| f.iter().copied())
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            count,
            "a name is on two floors of {}",
            krate.table
        );
    }
}
