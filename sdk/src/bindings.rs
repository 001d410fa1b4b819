//! Guest bindings of the key-value and config interfaces, generated from
//! `sdk/wit/` by the wit-bindgen that `wasip2` uses. Only what a component
//! calls becomes an import: a handler that never opens a store imports no
//! `wasi:keyvalue`, and runs on hosts that do not link it.
#![allow(missing_docs, clippy::all)]

wit_bindgen::generate!({
    path: "wit",
    world: "shoal:sdk/guest-state",
    // Every interface of the world is `wasi:keyvalue` or `wasi:config`,
    // which nothing else binds.
    generate_all,
});

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Each copied folder of `wit/deps/` and the folder of spin-sdk 7.0.0
    /// it was copied from.
    const COPIES: &[(&str, &str)] = &[
        ("wasi-keyvalue-0.2.0-draft2", "wasi-keyvalue-2024-10-17"),
        (
            "wasi-config-0.2.0-draft-2024-09-27",
            "wasi-runtime-config-2024-09-27",
        ),
    ];

    /// spin-sdk 7.0.0's `wit/deps/`, if cargo has unpacked the crate.
    fn spin_sdk_deps() -> Option<PathBuf> {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
        std::fs::read_dir(home.join("registry/src"))
            .ok()?
            .flatten()
            .map(|index| index.path().join("spin-sdk-7.0.0/wit/deps"))
            .find(|deps| deps.is_dir())
    }

    #[test]
    fn vendored_wit_matches_spin_sdk() {
        let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit/deps");
        let Some(theirs) = spin_sdk_deps() else {
            eprintln!("spin-sdk 7.0.0 is not in the cargo registry; not comparing the WIT");
            return;
        };
        for (copy, source) in COPIES {
            let mut names: Vec<_> = std::fs::read_dir(theirs.join(source))
                .unwrap()
                .flatten()
                .map(|f| f.file_name())
                .collect();
            names.sort();
            assert!(!names.is_empty(), "{source} is empty");
            for name in names {
                let theirs = std::fs::read(theirs.join(source).join(&name)).unwrap();
                let path = ours.join(copy).join(&name);
                let ours = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()));
                assert!(
                    ours == theirs,
                    "{} differs from spin-sdk 7.0.0's",
                    path.display()
                );
            }
        }
    }
}
