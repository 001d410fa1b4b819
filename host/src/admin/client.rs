//! The admin API client the CLI verbs use (blocking: the verbs are one-shot
//! commands), over HTTP or HTTPS (rustls). Errors say what the host said,
//! or how to start one.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::spec::AppSpec;

/// An app as `GET /v1/apps` lists it.
#[derive(Debug, Deserialize)]
pub(crate) struct AppInfo {
    pub name: String,
    pub version: u64,
    pub component: String,
    pub kind: String,
    pub route: Option<String>,
    pub hostname: Option<String>,
    pub status: String,
    pub requests: u64,
    #[serde(default)]
    pub replicas: String,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub ready_on: Vec<String>,
    #[serde(default)]
    pub kv: Vec<String>,
    #[serde(default)]
    pub kv_bytes: u64,
    #[serde(default)]
    pub kv_keys: u64,
}

/// A member as `GET /v1/nodes` lists it.
#[derive(Debug, Deserialize)]
pub(crate) struct NodeInfo {
    pub name: String,
    pub gossip: String,
    pub ingress: Option<String>,
    pub live: bool,
    pub me: bool,
    pub load: u32,
    pub apps: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Uploaded {
    pub sha256: String,
}

/// Which certificates an `https://` admin API may present.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    /// Those issued by the CA certificates in this PEM text (a
    /// self-signed certificate is its own CA).
    Ca(Vec<u8>),
    /// Those issued by the web's public roots.
    PublicRoots,
}

pub(crate) struct AdminClient {
    base: String,
    token: Option<String>,
    /// Why a token the CLI knows was not sent, added to a 401's message.
    withheld: Option<String>,
    agent: ureq::Agent,
}

impl AdminClient {
    pub(crate) fn new(
        base: &str,
        token: Option<String>,
        trust: Trust,
        withheld: Option<String>,
    ) -> AdminClient {
        let roots = match trust {
            Trust::Ca(pem) => {
                let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                        _ => None,
                    })
                    .collect();
                ureq::tls::RootCerts::Specific(Arc::new(certs))
            }
            Trust::PublicRoots => ureq::tls::RootCerts::WebPki,
        };
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(roots)
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .tls_config(tls)
            .build()
            .into();
        AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            withheld,
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// Turns a transport failure or an error status into a message.
    fn finish(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let mut response = result.map_err(|e| {
            let unreachable = matches!(e, ureq::Error::ConnectionFailed | ureq::Error::HostNotFound)
                || matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused);
            if unreachable {
                anyhow!(
                    "no Shoal host answers at {} ({e}); start one with `shoal host`, or point `--admin` / `SHOAL_ADMIN` at one",
                    self.base
                )
            } else {
                anyhow!("talking to the host at {} failed: {e}", self.base)
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        match &self.withheld {
            Some(why) if status == 401 => {
                Err(anyhow!("the host refused ({status}): {message}; {why}"))
            }
            _ => Err(anyhow!("the host refused ({status}): {message}")),
        }
    }

    /// GETs `path` and reads the JSON answer.
    pub(crate) fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let mut request = self.agent.get(self.url(path));
        if let Some(auth) = self.auth() {
            request = request.header("authorization", auth);
        }
        let mut response = self.finish(request.call())?;
        let text = response.body_mut().read_to_string()?;
        serde_json::from_str(&text)
            .with_context(|| format!("unexpected answer from {path}: {text}"))
    }

    /// Sends `body` to `path` and reads the JSON answer.
    pub(crate) fn send_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<T> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path))
            .header("content-type", content_type);
        if let Some(auth) = self.auth() {
            request = request.header("authorization", auth);
        }
        let request = request.body(body.to_vec())?;
        let mut response = self.finish(self.agent.run(request))?;
        let text = response.body_mut().read_to_string()?;
        serde_json::from_str(&text)
            .with_context(|| format!("unexpected answer from {path}: {text}"))
    }

    pub(crate) fn health(&self) -> anyhow::Result<serde_json::Value> {
        self.get_json("/v1/health")
    }

    pub(crate) fn has_component(&self, sha256: &str) -> anyhow::Result<bool> {
        match self.get_json::<serde_json::Value>(&format!("/v1/components/{sha256}")) {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains("404") => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn upload(&self, bytes: &[u8]) -> anyhow::Result<Uploaded> {
        self.send_json("POST", "/v1/components", "application/wasm", bytes)
    }

    pub(crate) fn deploy(&self, spec: &AppSpec) -> anyhow::Result<AppInfo> {
        self.send_json(
            "PUT",
            &format!("/v1/apps/{}", spec.name),
            "application/json",
            &serde_json::to_vec(spec)?,
        )
    }

    pub(crate) fn list(&self) -> anyhow::Result<Vec<AppInfo>> {
        self.get_json("/v1/apps")
    }

    pub(crate) fn nodes(&self) -> anyhow::Result<Vec<NodeInfo>> {
        self.get_json("/v1/nodes")
    }

    pub(crate) fn remove(&self, name: &str) -> anyhow::Result<()> {
        self.send_json::<serde_json::Value>(
            "DELETE",
            &format!("/v1/apps/{name}"),
            "application/json",
            b"",
        )
        .map(drop)
    }

    /// GETs `path` as raw bytes (`None` on 404).
    pub(crate) fn get_bytes(&self, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut request = self.agent.get(self.url(path));
        if let Some(auth) = self.auth() {
            request = request.header("authorization", auth);
        }
        let result = request.call();
        if let Ok(response) = &result
            && response.status() == 404
        {
            return Ok(None);
        }
        let mut response = self.finish(result)?;
        Ok(Some(response.body_mut().read_to_vec()?))
    }

    /// Prints the app's recent guest output; with `follow`, keeps printing
    /// new lines until interrupted.
    pub(crate) fn logs(
        &self,
        name: &str,
        follow: bool,
        mut line: impl FnMut(&str),
    ) -> anyhow::Result<()> {
        let path = format!(
            "/v1/apps/{name}/logs{}",
            if follow { "?follow=true" } else { "" }
        );
        let mut request = self.agent.get(self.url(&path));
        if let Some(auth) = self.auth() {
            request = request.header("authorization", auth);
        }
        let response = self.finish(request.call())?;
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for text in reader.lines() {
            line(&text?);
        }
        Ok(())
    }
}
