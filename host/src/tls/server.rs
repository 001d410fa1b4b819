//! A listener's TLS configuration: the rustls acceptor (ALPN h2 and
//! http/1.1) and the certificate it presents, and whether a certificate
//! covers a name.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The TLS of each of a host's listeners.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListenerTls {
    pub admin: Option<Arc<ServerTls>>,
    pub ingress: Option<Arc<ServerTls>>,
}

/// A listener's TLS: the acceptor and the certificate it presents.
pub(crate) struct ServerTls {
    pub(super) acceptor: tokio_rustls::TlsAcceptor,
    leaf: CertificateDer<'static>,
    /// Plaintext connections are served too (told apart by their first
    /// byte): the admin listener keeps the peer API, sealed on its own,
    /// reachable by members that speak plain HTTP.
    pub plaintext_too: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("plaintext_too", &self.plaintext_too)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the certificate chain (leaf first) and private key from PEM
    /// files; `what` names the flags in errors.
    pub(crate) fn from_pem(cert: &Path, key: &Path, what: &str) -> anyhow::Result<ServerTls> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .with_context(|| {
                format!(
                    "cannot read the certificate `{}` ({what}); give a PEM file with the certificate chain, leaf first",
                    cert.display()
                )
            })?;
        let Some(leaf) = chain.first().cloned() else {
            anyhow::bail!(
                "`{}` holds no certificate ({what}); give a PEM file with `-----BEGIN CERTIFICATE-----` blocks",
                cert.display()
            );
        };
        let private = PrivateKeyDer::from_pem_file(key).with_context(|| {
            format!(
                "cannot read the private key `{}` ({what}); give a PEM file with one PKCS#8, PKCS#1 or SEC1 key",
                key.display()
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("the TLS provider offers no protocol version")?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .with_context(|| {
                format!(
                    "the key `{}` does not fit the certificate `{}` ({what})",
                    key.display(),
                    cert.display()
                )
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            leaf,
            plaintext_too: false,
        })
    }

    /// The certificate presented, DER.
    pub(crate) fn leaf(&self) -> &[u8] {
        &self.leaf
    }

    /// Whether the certificate presented is valid for `name` (a DNS name
    /// or an IP address).
    pub(crate) fn covers(&self, name: &str) -> bool {
        covers(&self.leaf, name)
    }
}

/// Whether `cert` is valid for `name` (a DNS name or an IP address).
pub(super) fn covers(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    cert.verify_is_valid_for_subject_name(&name).is_ok()
}
