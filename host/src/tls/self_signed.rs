//! The self-signed pair a host makes when asked (`--tls-self-signed`,
//! `--ingress-tls-self-signed`): `DATA_DIR/tls-cert.pem` and
//! `DATA_DIR/tls-key.pem`, both 0600, kept across restarts and made again
//! only when the certificate no longer covers every name the host answers
//! to. Clients trust the certificate itself (`curl --cacert`, the CLI reads
//! it from the data dir).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::server::covers;

/// The certificate's file in the data dir.
pub(crate) const CERT_FILE: &str = "tls-cert.pem";
/// The private key's file in the data dir.
const KEY_FILE: &str = "tls-key.pem";

/// The paths of the self-signed certificate and key in `data_dir`, made
/// first if there is none, or if the one there does not cover all of
/// `names` (DNS names or IP addresses).
pub(crate) fn self_signed(data_dir: &Path, names: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert_path = data_dir.join(CERT_FILE);
    let key_path = data_dir.join(KEY_FILE);
    let kept = std::fs::read(&cert_path)
        .ok()
        .and_then(|pem| CertificateDer::from_pem_slice(&pem).ok())
        .is_some_and(|cert| names.iter().all(|name| covers(&cert, name)));
    if kept && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let made = make(names).context("cannot make a self-signed certificate")?;
    // The key first: a certificate is never on disk without its key.
    write_private(&key_path, made.signing_key.serialize_pem().as_bytes())?;
    write_private(&cert_path, made.cert.pem().as_bytes())?;
    tracing::info!(cert = %cert_path.display(), names = ?names, "made a self-signed certificate");
    eprintln!(
        "made a self-signed TLS certificate in {}; clients trust it with `--cacert {}`",
        cert_path.display(),
        cert_path.display()
    );
    Ok((cert_path, key_path))
}

fn make(names: &[String]) -> Result<rcgen::CertifiedKey<rcgen::KeyPair>, rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "shoal self-signed");
    let cert = params.self_signed(&key)?;
    Ok(rcgen::CertifiedKey {
        cert,
        signing_key: key,
    })
}

/// Writes `bytes` to `path` durably, readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        // A named temporary file is made 0600.
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("cannot write `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_kept_while_it_covers_every_name_and_made_again_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let (cert, key) = self_signed(dir.path(), &names).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first = std::fs::read(&cert).unwrap();
        let der = CertificateDer::from_pem_slice(&first).unwrap();
        assert!(covers(&der, "127.0.0.1") && covers(&der, "localhost"));
        assert!(!covers(&der, "evil.test") && !covers(&der, "10.0.0.1"));
        self_signed(dir.path(), &names[..1]).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first, "kept");
        let more = vec!["localhost".to_string(), "::1".to_string()];
        self_signed(dir.path(), &more).unwrap();
        let again = std::fs::read(&cert).unwrap();
        assert_ne!(again, first, "made again for a new name");
        let der = CertificateDer::from_pem_slice(&again).unwrap();
        assert!(covers(&der, "::1"));
    }
}
