//! `shoal new NAME`: scaffold a guest crate that builds with one cargo
//! command and runs with `shoal run`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

/// The template files every project gets, compiled in (see
/// `sdk/template/README.md`); `src/lib.rs` is the template's own.
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../sdk/template/Cargo.toml.tmpl"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../../../sdk/template/cargo-config.toml.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../../sdk/template/gitignore.tmpl"),
    ),
];

/// Where the SDK is in the checkout this binary was built from.
const BUILT_WITH_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Template {
    /// An HTTP component (`#[shoal_sdk::http]`).
    Http,
    /// An HTTP component that keeps state in a key-value store and reads
    /// config (`shoal_sdk::kv`, `shoal_sdk::config`).
    Kv,
}

impl Template {
    /// Its `src/lib.rs`.
    fn lib_rs(self) -> &'static str {
        match self {
            Template::Http => include_str!("../../../sdk/template/lib.rs.tmpl"),
            Template::Kv => include_str!("../../../sdk/template/kv-lib.rs.tmpl"),
        }
    }

    /// What `shoal run` needs beside the component, and what it is.
    fn run_flags_and_kind(self) -> (&'static str, &'static str) {
        match self {
            Template::Http => ("", "an HTTP component"),
            Template::Kv => (
                " --kv default --config greeting=hi",
                "an HTTP component with a key-value store and config",
            ),
        }
    }
}

/// Create a new component project.
#[derive(Args, Debug)]
pub(crate) struct New {
    /// The project's name: also its directory and crate name.
    name: String,

    /// What kind of component.
    #[arg(long, value_enum, default_value = "http")]
    template: Template,

    /// The Shoal SDK to depend on (default: the `sdk/` of the checkout
    /// `shoal` was built from).
    #[arg(long, value_name = "PATH", env = "SHOAL_SDK")]
    sdk: Option<PathBuf>,
}

impl New {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        validate_name(&self.name)?;
        let dir = PathBuf::from(&self.name);
        if dir.exists() {
            bail!(
                "`{}` already exists; choose another name, or remove it first (nothing was changed)",
                dir.display()
            );
        }
        let sdk = self
            .sdk
            .clone()
            .unwrap_or_else(|| PathBuf::from(BUILT_WITH_SDK));
        let sdk = sdk.canonicalize().ok().filter(|p| p.join("Cargo.toml").is_file()).with_context(|| {
            format!(
                "cannot find the Shoal SDK at `{}`; pass `--sdk PATH` (the `sdk/` folder of a Shoal checkout)",
                sdk.display()
            )
        })?;
        write_project(&dir, &self.name, &sdk, self.template)?;
        let (flags, kind) = self.template.run_flags_and_kind();
        eprintln!("created `{}`: {kind}. Next:", self.name);
        eprintln!("  cd {} && cargo build --release", self.name);
        eprintln!(
            "  shoal run target/wasm32-wasip2/release/{}.wasm{flags}",
            artifact(&self.name)
        );
        Ok(())
    }
}

fn validate_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "invalid project name `{name}`: start with a lowercase letter, then letters, digits, `-` or `_`"
        );
    }
    Ok(())
}

/// The name of the `.wasm` cargo builds for project `name`.
fn artifact(name: &str) -> String {
    name.replace('-', "_")
}

fn write_project(dir: &Path, name: &str, sdk: &Path, template: Template) -> anyhow::Result<()> {
    let sdk = sdk.to_string_lossy().replace('\\', "/");
    let lib_rs = ("src/lib.rs", template.lib_rs());
    for (path, template) in FILES.iter().chain([&lib_rs]) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        let text = template
            .replace("{{name}}", name)
            .replace("{{artifact}}", &artifact(name))
            .replace("{{sdk_path}}", &sdk);
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_crate_names() {
        assert!(validate_name("hello-api").is_ok());
        assert!(validate_name("h2_o").is_ok());
        for bad in ["", "Hello", "1x", "a b", "../x"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        for template in [Template::Http, Template::Kv] {
            let dir = tempfile::tempdir().unwrap();
            let project = dir.path().join("my-demo");
            write_project(&project, "my-demo", Path::new("/sdk"), template).unwrap();
            for path in FILES.iter().map(|(path, _)| *path).chain(["src/lib.rs"]) {
                let text = std::fs::read_to_string(project.join(path)).unwrap();
                assert!(!text.contains("{{"), "{template:?} {path}: {text}");
            }
            let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
            assert!(
                manifest.contains("name = \"my-demo\"") && manifest.contains("path = \"/sdk\"")
            );
            let lib = std::fs::read_to_string(project.join("src/lib.rs")).unwrap();
            assert_eq!(
                lib.contains("shoal_sdk::kv::Store"),
                template == Template::Kv,
                "{lib}"
            );
        }
        let kv = tempfile::tempdir().unwrap();
        write_project(
            &kv.path().join("p"),
            "my-demo",
            Path::new("/sdk"),
            Template::Kv,
        )
        .unwrap();
        let lib = std::fs::read_to_string(kv.path().join("p/src/lib.rs")).unwrap();
        assert!(lib.contains("release/my_demo.wasm --kv default"), "{lib}");
    }
}
