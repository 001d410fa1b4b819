//! How the CLI verbs find the admin API: `--admin URL` or `SHOAL_ADMIN`,
//! else the URL the local host recorded in its data dir, else
//! `http://127.0.0.1:7070`; the token from `--token` or `SHOAL_TOKEN`, else
//! the local host's token file, sent only to that host's own URL; for
//! `https://`, the CA from `--cacert`, else the local host's self-signed
//! certificate when talking to it, else the web's public roots.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::admin::client::{AdminClient, Trust};
use crate::admin::local::{self, Local};

/// Where the CLI talks when nothing says otherwise.
const DEFAULT_ADMIN: &str = "http://127.0.0.1:7070";

#[derive(Args, Debug, Clone)]
pub(crate) struct AdminFlags {
    /// The admin API of the host to talk to (default: the URL the local
    /// host recorded in DATA_DIR/admin-url, else http://127.0.0.1:7070).
    #[arg(long = "admin", value_name = "URL", env = "SHOAL_ADMIN")]
    pub admin: Option<String>,

    /// The host's admin token (default: DATA_DIR/token, sent only to the
    /// host whose data dir it is).
    #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The local host's data directory, where its admin URL, token and
    /// self-signed certificate are found.
    #[arg(long, value_name = "DIR", env = "SHOAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Trust this CA certificate (PEM) for an `https://` admin API.
    #[arg(long, value_name = "FILE", env = "SHOAL_CACERT")]
    pub cacert: Option<PathBuf>,
}

impl AdminFlags {
    /// The admin URL this verb talks to.
    pub(crate) fn url(&self) -> String {
        let local = self.local();
        self.base(&local)
    }

    fn local(&self) -> Local {
        self.data_dir
            .clone()
            .or_else(crate::dirs::data_dir)
            .map(|dir| local::read(&dir))
            .unwrap_or_default()
    }

    fn base(&self, local: &Local) -> String {
        let given = self.admin.clone().or_else(|| local.url.clone());
        let base = given.unwrap_or_else(|| DEFAULT_ADMIN.to_string());
        let base = if base.contains("://") {
            base
        } else {
            format!("http://{base}")
        };
        base.trim_end_matches('/').to_string()
    }

    pub(crate) fn client(&self) -> anyhow::Result<AdminClient> {
        let local = self.local();
        let base = self.base(&local);
        let home = local
            .url
            .as_deref()
            .is_some_and(|u| local::same_place(u, &base));
        let (token, withheld) = match (&self.token, &local.token) {
            (Some(token), _) => (Some(token.clone()), None),
            (None, Some(token)) if home => (Some(token.clone()), None),
            (None, Some(_)) => (None, Some(withheld(&local, &base))),
            (None, None) => (None, None),
        };
        let https = base.starts_with("https://");
        if token.is_some() && !https && !local::is_loopback(&base) {
            anyhow::bail!(
                "not sending the admin token in clear to {base}: use `https://` (start the host with `--tls-self-signed` or `--tls-cert`)"
            );
        }
        let trust = match (&self.cacert, &local.cert) {
            (Some(file), _) => Trust::Ca(read_pem(file)?),
            (None, Some(cert)) if home && https => Trust::Ca(read_pem(cert)?),
            _ => Trust::PublicRoots,
        };
        Ok(AdminClient::new(&base, token, trust, withheld))
    }
}

/// Why the data dir's token was kept back, for a refusal's message.
fn withheld(local: &Local, base: &str) -> String {
    format!(
        "the token in `{}` belongs to the host at {}, so it was not sent to {base}; pass it with `--token` to send it there",
        local.token_file.display(),
        local.url.as_deref().unwrap_or("another address")
    )
}

fn read_pem(file: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| {
        format!(
            "cannot read the CA certificate `{}`; pass a PEM file with `--cacert`",
            file.display()
        )
    })
}
