//! `shoal deploy`: upload a component (unless the host has it) and deploy
//! it as an app; or deploy every app of a `shoal.toml`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::cli::manifest::Manifest;
use crate::cli::{AdminFlags, AppFlags};
use crate::replicas::Replicas;

/// Deploy a component as an app on a running host.
#[derive(Args, Debug)]
pub(crate) struct Deploy {
    /// The component to deploy.
    #[arg(
        value_name = "COMPONENT.wasm",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    component: Option<PathBuf>,

    /// Deploy the apps described in a file instead (see README).
    #[arg(short = 'f', long = "file", value_name = "shoal.toml")]
    file: Option<PathBuf>,

    /// Name of the app.
    #[arg(long, required_unless_present = "file")]
    name: Option<String>,

    /// Path prefix the app is served under (default `/NAME`).
    #[arg(long, value_name = "/PREFIX")]
    route: Option<String>,

    /// Serve the app for requests to this Host.
    #[arg(long, value_name = "HOST")]
    hostname: Option<String>,

    /// How many nodes of the mesh serve it: a number, or `all`.
    #[arg(long, value_name = "N|all", default_value = "1")]
    replicas: Replicas,

    #[command(flatten)]
    app: AppFlags,

    #[command(flatten)]
    admin: AdminFlags,
}

impl Deploy {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let deployments = match (&self.file, &self.component, &self.name) {
            (Some(file), _, _) => Manifest::load(file)?.deployments()?,
            (None, Some(component), Some(name)) => {
                let mut spec =
                    self.app
                        .spec(name.clone(), self.route.clone(), self.hostname.clone())?;
                spec.replicas = self.replicas;
                vec![(component.clone(), spec)]
            }
            _ => anyhow::bail!("give a component and `--name`, or `-f shoal.toml`"),
        };
        let client = self.admin.client()?;
        // Refuse an oversized upload before sending it: the host would cut
        // the connection mid-way.
        let max_upload = client
            .health()?
            .get("max_upload")
            .and_then(|v| v.as_u64())
            .unwrap_or(u64::MAX);
        for (path, mut spec) in deployments {
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "cannot read component `{}`; pass the path of a `.wasm` file",
                    path.display()
                )
            })?;
            spec.component = shoal_runtime::sha256_hex(&bytes);
            // The host checks again against its own limits; this catches a
            // bad name or route before a large upload.
            spec.validate(u64::MAX)
                .map_err(|e| anyhow::anyhow!("cannot deploy `{}`: {e}", spec.name))?;
            if !client.has_component(&spec.component)? {
                anyhow::ensure!(
                    bytes.len() as u64 <= max_upload,
                    "cannot upload `{}`: the upload is over the limit of {max_upload} bytes; start the host with a larger `--max-upload`",
                    path.display()
                );
                let uploaded = client
                    .upload(&bytes)
                    .with_context(|| format!("cannot upload `{}`", path.display()))?;
                spec.component = uploaded.sha256;
            }
            let app = client
                .deploy(&spec)
                .with_context(|| format!("cannot deploy `{}`", spec.name))?;
            let at = match (&app.route, &app.hostname) {
                (Some(route), Some(host)) => format!("{route} and host {host}"),
                (Some(route), None) => route.clone(),
                (None, Some(host)) => format!("host {host}"),
                (None, None) => "-".into(),
            };
            eprintln!(
                "deployed `{}` v{} ({}, sha256 {}) at {at}, on {}",
                app.name,
                app.version,
                app.kind,
                &app.component[..12],
                if app.nodes.is_empty() {
                    "no node yet".to_string()
                } else {
                    app.nodes.join(", ")
                }
            );
        }
        Ok(())
    }
}
