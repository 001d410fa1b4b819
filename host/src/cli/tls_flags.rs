//! The TLS flags of `shoal host`: a certificate and key, or a self-signed
//! pair made in the data dir, for the admin API (`--tls-*`) and apart for
//! the ingress (`--ingress-tls-*`); and the rule that an admin API off
//! loopback has TLS, so its token never crosses the network in clear.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use crate::tls::{self, ListenerTls, ServerTls};

#[derive(Args, Debug, Clone)]
pub(crate) struct TlsFlags {
    /// Serve the admin API over TLS with this certificate chain (PEM, leaf
    /// first); needs `--tls-key`.
    #[arg(
        long,
        value_name = "FILE",
        env = "SHOAL_TLS_CERT",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert` (PEM).
    #[arg(
        long,
        value_name = "FILE",
        env = "SHOAL_TLS_KEY",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// Serve the admin API over TLS with a self-signed certificate kept in
    /// DATA_DIR/tls-cert.pem (key in tls-key.pem, 0600), valid for
    /// localhost, loopback, this machine's name and the listen and
    /// advertised addresses.
    #[arg(long, conflicts_with = "tls_cert")]
    tls_self_signed: bool,

    /// Serve the ingress over TLS (HTTP/1.1 and HTTP/2 by ALPN) with this
    /// certificate chain (PEM, leaf first); needs `--ingress-tls-key`.
    #[arg(
        long,
        value_name = "FILE",
        env = "SHOAL_INGRESS_TLS_CERT",
        requires = "ingress_tls_key"
    )]
    ingress_tls_cert: Option<PathBuf>,

    /// The private key of `--ingress-tls-cert` (PEM).
    #[arg(
        long,
        value_name = "FILE",
        env = "SHOAL_INGRESS_TLS_KEY",
        requires = "ingress_tls_cert"
    )]
    ingress_tls_key: Option<PathBuf>,

    /// Serve the ingress over TLS with the self-signed certificate of
    /// `--tls-self-signed` (made if needed).
    #[arg(long, conflicts_with = "ingress_tls_cert")]
    ingress_tls_self_signed: bool,
}

impl TlsFlags {
    /// Loads (or makes) what the flags name, and refuses an admin API off
    /// loopback without TLS. `addresses` are the listen and advertised
    /// addresses a self-signed certificate must cover.
    pub(crate) fn load(
        &self,
        data_dir: &Path,
        admin: SocketAddr,
        addresses: &[IpAddr],
    ) -> anyhow::Result<ListenerTls> {
        let self_signed = || tls::self_signed(data_dir, &names(addresses));
        let admin_files = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ if self.tls_self_signed => Some(self_signed()?),
            _ => None,
        };
        let ingress_files = match (&self.ingress_tls_cert, &self.ingress_tls_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ if self.ingress_tls_self_signed => Some(self_signed()?),
            _ => None,
        };
        if admin_files.is_none() && !admin.ip().is_loopback() {
            anyhow::bail!(
                "the admin API on {admin} would take its token in clear from the network: give it TLS with `--tls-self-signed` (a certificate made in DATA_DIR/{}) or `--tls-cert FILE --tls-key FILE`, or keep it on loopback with `--admin 127.0.0.1:{}`",
                tls::CERT_FILE,
                admin.port()
            );
        }
        let admin = match admin_files {
            Some((cert, key)) => {
                let mut loaded = ServerTls::from_pem(&cert, &key, "`--tls-cert`, `--tls-key`")?;
                // Members reach the peer API, sealed on its own, in plain HTTP.
                loaded.plaintext_too = true;
                Some(Arc::new(loaded))
            }
            None => None,
        };
        let ingress = match ingress_files {
            Some((cert, key)) => Some(Arc::new(ServerTls::from_pem(
                &cert,
                &key,
                "`--ingress-tls-cert`, `--ingress-tls-key`",
            )?)),
            None => None,
        };
        Ok(ListenerTls { admin, ingress })
    }
}

/// What a self-signed certificate covers: localhost, loopback, this
/// machine's name, and `addresses` (unspecified ones left out).
fn names(addresses: &[IpAddr]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let dns_name = |h: &str| {
        !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    if dns_name(&hostname) && hostname != "localhost" {
        names.push(hostname);
    }
    for ip in addresses {
        let ip = ip.to_string();
        if !ip.parse::<IpAddr>().is_ok_and(|i| i.is_unspecified()) && !names.contains(&ip) {
            names.push(ip);
        }
    }
    names
}
