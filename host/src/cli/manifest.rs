//! `shoal.toml`: one or more apps described in a file, so a deployment can
//! live in git. Unknown keys are an error.
//!
//! ```toml
//! [[app]]
//! name = "hello"
//! component = "target/wasm32-wasip2/release/hello.wasm"  # relative to this file
//! route = "/hello"              # default /NAME
//! hostname = "hello.example"    # optional
//! env = { GREETING = "hi" }
//! timeout = "30s"
//! memory = "128MiB"
//! max-concurrency = 100
//! max-queue = 1000
//! allow-outbound = ["api.example.com:443"]
//! replicas = 2                  # or "all"; default 1
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::cli::app_flags::defaults;
use crate::replicas::Replicas;
use crate::spec::AppSpec;
use crate::units::{parse_duration, parse_size};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    #[serde(rename = "app")]
    apps: Vec<ManifestApp>,
    #[serde(skip)]
    dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ManifestApp {
    name: String,
    component: PathBuf,
    route: Option<String>,
    hostname: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout: Option<String>,
    memory: Option<String>,
    max_concurrency: Option<u32>,
    max_queue: Option<u32>,
    #[serde(default)]
    allow_outbound: Vec<String>,
    #[serde(default)]
    replicas: Replicas,
}

impl Manifest {
    pub(crate) fn load(path: &Path) -> anyhow::Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        let mut manifest = Manifest::parse(&text)
            .with_context(|| format!("`{}` is not a valid shoal.toml", path.display()))?;
        manifest.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(manifest)
    }

    fn parse(text: &str) -> anyhow::Result<Manifest> {
        let manifest: Manifest = toml::from_str(text)?;
        anyhow::ensure!(
            !manifest.apps.is_empty(),
            "it describes no app; add an `[[app]]` table"
        );
        Ok(manifest)
    }

    /// Each app's component path (relative to the file) and spec.
    pub(crate) fn deployments(&self) -> anyhow::Result<Vec<(PathBuf, AppSpec)>> {
        self.apps
            .iter()
            .map(|app| {
                let fail = |e: String| anyhow::anyhow!("app `{}`: {e}", app.name);
                let mut spec = AppSpec::named(app.name.clone());
                spec.route = app.route.clone();
                spec.hostname = app.hostname.clone();
                spec.env = app.env.clone();
                spec.timeout_ms =
                    parse_duration(app.timeout.as_deref().unwrap_or(defaults::TIMEOUT))
                        .map_err(fail)?
                        .as_millis() as u64;
                spec.memory =
                    parse_size(app.memory.as_deref().unwrap_or(defaults::MEMORY)).map_err(fail)?;
                spec.max_concurrency = app.max_concurrency.unwrap_or(defaults::MAX_CONCURRENCY);
                spec.max_queue = app.max_queue.unwrap_or(defaults::MAX_QUEUE);
                spec.allow_outbound = app.allow_outbound.clone();
                spec.replicas = app.replicas;
                Ok((self.dir.join(&app.component), spec))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_are_read_with_defaults_and_unknown_keys_refused() {
        let manifest = Manifest::parse(
            "[[app]]\nname = \"a\"\ncomponent = \"a.wasm\"\nenv = { K = \"v\" }\nmemory = \"64MiB\"\n\n[[app]]\nname = \"b\"\ncomponent = \"b.wasm\"\nroute = \"/\"\n",
        )
        .unwrap();
        let apps = manifest.deployments().unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].1.memory, 64 << 20);
        assert_eq!(apps[0].1.timeout_ms, 30_000);
        assert_eq!(apps[1].1.route.as_deref(), Some("/"));
        let error =
            Manifest::parse("[[app]]\nname = \"a\"\ncomponent = \"a.wasm\"\nmemroy = \"1G\"\n")
                .unwrap_err();
        assert!(
            format!("{error:#}").contains("unknown field `memroy`"),
            "{error:#}"
        );
        assert!(Manifest::parse("").is_err());
    }
}
