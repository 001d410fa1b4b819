//! What a host leaves in its data dir for the CLI on the same machine:
//! `admin-url`, the URL its admin API answers on from here, beside `token`
//! and, with `--tls-self-signed`, `tls-cert.pem`. The CLI talks to that URL
//! by default and sends the data dir's token to that URL only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::tls;

/// The file holding the admin API's local URL.
pub(crate) const URL_FILE: &str = "admin-url";
/// The file holding the admin token.
pub(crate) const TOKEN_FILE: &str = "token";

/// The URL a client on this machine reaches an admin API bound to `bound`
/// on.
pub(crate) fn url_for(bound: SocketAddr, tls: bool) -> String {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, bound.port()))
}

/// Records `url` in `data_dir` for the CLI.
pub(crate) fn record(data_dir: &Path, url: &str) -> anyhow::Result<()> {
    let path = data_dir.join(URL_FILE);
    crate::store::write_durably(&path, url.as_bytes())
        .with_context(|| format!("cannot record the admin URL in `{}`", path.display()))
}

/// What a data dir tells the CLI about the host it belongs to.
#[derive(Debug, Default)]
pub(crate) struct Local {
    /// Where that host's admin API answers, if it has started once.
    pub url: Option<String>,
    /// Its token, if it keeps one there.
    pub token: Option<String>,
    /// Its self-signed certificate, if it made one.
    pub cert: Option<PathBuf>,
    /// The token file, for messages.
    pub token_file: PathBuf,
}

/// Reads what `data_dir` holds (nothing, if it is not a host's).
pub(crate) fn read(data_dir: &Path) -> Local {
    let text = |name: &str| {
        std::fs::read_to_string(data_dir.join(name))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    };
    let cert = data_dir.join(tls::CERT_FILE);
    Local {
        url: text(URL_FILE),
        token: text(TOKEN_FILE),
        cert: cert.exists().then_some(cert),
        token_file: data_dir.join(TOKEN_FILE),
    }
}

/// Whether two admin URLs name the same place: scheme, host and port,
/// with `localhost` read as loopback.
pub(crate) fn same_place(a: &str, b: &str) -> bool {
    match (place(a), place(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn place(url: &str) -> Option<(String, IpOrName, u16)> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some((scheme, IpOrName::of(uri.host()?), port))
}

#[derive(Debug, PartialEq, Eq)]
enum IpOrName {
    Loopback,
    Ip(IpAddr),
    Name(String),
}

impl IpOrName {
    fn of(host: &str) -> IpOrName {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => IpOrName::Loopback,
            Ok(ip) => IpOrName::Ip(ip),
            Err(_) if host.eq_ignore_ascii_case("localhost") => IpOrName::Loopback,
            Err(_) => IpOrName::Name(host.to_ascii_lowercase()),
        }
    }
}

/// Whether `url` stays on this machine (loopback or `localhost`).
pub(crate) fn is_loopback(url: &str) -> bool {
    place(url).is_some_and(|(_, host, _)| host == IpOrName::Loopback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_url_names_an_address_this_machine_reaches() {
        let any: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        assert_eq!(url_for(any, true), "https://127.0.0.1:7070");
        let one: SocketAddr = "10.1.2.3:7071".parse().unwrap();
        assert_eq!(url_for(one, false), "http://10.1.2.3:7071");
    }

    #[test]
    fn places_compare_scheme_host_and_port() {
        assert!(same_place(
            "http://127.0.0.1:7070",
            "http://localhost:7070/"
        ));
        assert!(same_place("https://[::1]:7070", "https://127.0.0.1:7070"));
        assert!(!same_place(
            "http://127.0.0.1:7070",
            "https://127.0.0.1:7070"
        ));
        assert!(!same_place(
            "http://127.0.0.1:7070",
            "http://127.0.0.1:7071"
        ));
        assert!(!same_place(
            "http://127.0.0.1:7070",
            "http://evil.test:7070"
        ));
        assert!(same_place(
            "https://Shoal.Example:443",
            "https://shoal.example"
        ));
        assert!(is_loopback("http://localhost:9") && !is_loopback("http://10.0.0.1:9"));
    }
}
