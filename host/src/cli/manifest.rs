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
//! kv = ["default"]              # key-value stores it may open
//! kv-quota = "64MiB"
//! config = { GREETING = "hi" }
//! secrets = { TOKEN = "@token.txt", API_KEY = "env:API_KEY" }  # never literal
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::cli::app_flags::defaults;
use crate::replicas::Replicas;
use crate::spec::AppSpec;
use crate::units::{parse_duration, parse_size, read_secret_env, read_secret_file};

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
    #[serde(default)]
    kv: Vec<String>,
    kv_quota: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Where each secret comes from: `@FILE` or `env:VAR`, never the value.
    #[serde(default)]
    secrets: BTreeMap<String, String>,
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
                spec.kv = app.kv.clone();
                spec.kv_quota = app
                    .kv_quota
                    .as_deref()
                    .map(parse_size)
                    .transpose()
                    .map_err(fail)?;
                spec.config = app.config.clone();
                spec.secrets = self.secrets(app).map_err(fail)?;
                Ok((self.dir.join(&app.component), spec))
            })
            .collect()
    }
}

impl Manifest {
    /// The secrets of `app`, read from their files (relative to the
    /// manifest) and environment variables.
    fn secrets(&self, app: &ManifestApp) -> Result<BTreeMap<String, String>, String> {
        let mut secrets = BTreeMap::new();
        for (key, source) in &app.secrets {
            let value = if let Some(file) = source.strip_prefix('@') {
                read_secret_file(key, &self.dir.join(file))?
            } else if let Some(var) = source.strip_prefix("env:") {
                read_secret_env(key, var)?
            } else {
                return Err(format!(
                    "secret `{key}` must be `\"@FILE\"` or `\"env:VAR\"`: a literal value in shoal.toml would land in git"
                ));
            };
            secrets.insert(key.clone(), value);
        }
        Ok(secrets)
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

    #[test]
    fn state_keys_are_read_and_literal_secrets_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token.txt"), "s3cr3t\n").unwrap();
        let mut manifest = Manifest::parse(
            "[[app]]\nname = \"a\"\ncomponent = \"a.wasm\"\nkv = [\"default\"]\nkv-quota = \"1MiB\"\nconfig = { GREETING = \"hi\" }\nsecrets = { TOKEN = \"@token.txt\", HOME_DIR = \"env:HOME\" }\n",
        )
        .unwrap();
        manifest.dir = dir.path().to_path_buf();
        let spec = &manifest.deployments().unwrap()[0].1;
        assert_eq!(spec.kv, vec!["default".to_string()]);
        assert_eq!(spec.kv_quota, Some(1 << 20));
        assert_eq!(spec.config["GREETING"], "hi");
        assert_eq!(spec.secrets["TOKEN"], "s3cr3t");
        assert_eq!(spec.secrets["HOME_DIR"], std::env::var("HOME").unwrap());
        let literal = Manifest::parse(
            "[[app]]\nname = \"a\"\ncomponent = \"a.wasm\"\nsecrets = { TOKEN = \"s3cr3t\" }\n",
        )
        .unwrap()
        .deployments()
        .unwrap_err();
        let told = format!("{literal:#}");
        assert!(told.contains("git") && !told.contains("s3cr3t"), "{told}");
    }
}
