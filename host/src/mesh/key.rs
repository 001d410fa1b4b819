//! The cluster key: 32 random bytes every member of a mesh shares. Gossip
//! datagrams and peer HTTP answers are sealed under it with
//! XChaCha20-Poly1305 (the `chacha20poly1305` crate), and peer requests
//! carry a sealed, timestamped token. A sub-key is derived per purpose
//! (sha256 of the key, a zero byte and the purpose), so a gossip packet
//! can never be replayed as a peer answer or the other way round.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// How far a peer token's clock may be from ours.
const TOKEN_SKEW_SECS: u64 = 120;
const NONCE: usize = 24;

/// Why a key or a sealed message was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "cluster key file `{path}` cannot be read ({source}); pass the file of an existing member, or make one with `shoal keygen FILE`"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cluster key file `{path}` cannot be written ({source}); choose another path, or remove the old file if it is yours"
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a cluster key is 64 hex characters; make one with `shoal keygen FILE`")]
    Malformed,
    #[error("not sealed with this mesh's cluster key (or altered on the way)")]
    Unsealed,
    #[error("peer token is malformed")]
    BadToken,
    #[error("peer token is for another request")]
    WrongRequest,
    #[error("peer token is {0} s away from this node's clock; keep members' clocks in sync (NTP)")]
    Stale(u64),
}

#[derive(Clone)]
pub struct ClusterKey {
    bytes: [u8; 32],
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterKey({})", self.fingerprint())
    }
}

impl ClusterKey {
    pub fn generate() -> ClusterKey {
        let mut bytes = [0u8; 32];
        // The OS random source only fails on a broken system.
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        ClusterKey { bytes }
    }

    pub fn from_hex(text: &str) -> Result<ClusterKey, KeyError> {
        let decoded = hex::decode(text.trim()).map_err(|_| KeyError::Malformed)?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|_| KeyError::Malformed)?;
        Ok(ClusterKey { bytes })
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    pub fn load(path: &Path) -> Result<ClusterKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ClusterKey::from_hex(&text)
    }

    /// Makes a new key in `path` (mode 0600); never overwrites.
    pub fn create(path: &Path) -> Result<ClusterKey, KeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let key = ClusterKey::generate();
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            file.write_all(format!("{}\n", key.to_hex()).as_bytes())?;
            file.sync_all()
        };
        write().map_err(|source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(key)
    }

    /// Safe to show: names the key without revealing it.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"shoal fingerprint");
        hasher.update(self.bytes);
        hex::encode(&hasher.finalize()[..6])
    }

    fn cipher(&self, purpose: &str) -> XChaCha20Poly1305 {
        let mut hasher = Sha256::new();
        hasher.update(self.bytes);
        hasher.update([0]);
        hasher.update(purpose.as_bytes());
        XChaCha20Poly1305::new(&hasher.finalize())
    }

    /// Nonce (random, 24 bytes) then ciphertext; `purpose` is bound in.
    pub fn seal(&self, purpose: &'static str, plaintext: &[u8]) -> Vec<u8> {
        Sealer::new(self, purpose).seal(plaintext)
    }

    pub fn open(&self, purpose: &'static str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        Sealer::new(self, purpose).open(sealed)
    }

    /// A header value authenticating one peer HTTP request.
    pub fn peer_token(&self, method: &str, path: &str) -> String {
        let now = unix_now();
        hex::encode(self.seal("peer-token", format!("{now} {method} {path}").as_bytes()))
    }

    pub fn verify_peer_token(&self, token: &str, method: &str, path: &str) -> Result<(), KeyError> {
        self.verify_peer_token_at(token, method, path, unix_now())
    }

    fn verify_peer_token_at(
        &self,
        token: &str,
        method: &str,
        path: &str,
        now: u64,
    ) -> Result<(), KeyError> {
        let sealed = hex::decode(token).map_err(|_| KeyError::BadToken)?;
        let text =
            String::from_utf8(self.open("peer-token", &sealed)?).map_err(|_| KeyError::BadToken)?;
        let mut parts = text.splitn(3, ' ');
        let secs: u64 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(KeyError::BadToken)?;
        if parts.next() != Some(method) || parts.next() != Some(path) {
            return Err(KeyError::WrongRequest);
        }
        let skew = now.abs_diff(secs);
        if skew > TOKEN_SKEW_SECS {
            return Err(KeyError::Stale(skew));
        }
        Ok(())
    }
}

/// A cipher for one purpose, kept to seal or open many messages.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    purpose: &'static str,
}

impl Sealer {
    pub fn new(key: &ClusterKey, purpose: &'static str) -> Sealer {
        Sealer {
            cipher: key.cipher(purpose),
            purpose,
        }
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let payload = Payload {
            msg: plaintext,
            aad: self.purpose.as_bytes(),
        };
        // Encryption fails only for messages over 256 GiB.
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .expect("message too long to seal");
        let mut sealed = Vec::with_capacity(NONCE + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < NONCE + 16 {
            return Err(KeyError::Unsealed);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE);
        let payload = Payload {
            msg: ciphertext,
            aad: self.purpose.as_bytes(),
        };
        self.cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| KeyError::Unsealed)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_ones_are_refused() {
        let key = ClusterKey::generate();
        let again = ClusterKey::from_hex(&format!(" {}\n", key.to_hex())).unwrap();
        assert_eq!(key.to_hex(), again.to_hex());
        assert_eq!(key.fingerprint().len(), 12);
        assert!(!format!("{key:?}").contains(&key.to_hex()));
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(62)] {
            assert!(
                matches!(ClusterKey::from_hex(bad), Err(KeyError::Malformed)),
                "{bad}"
            );
        }
    }

    #[test]
    fn create_writes_a_private_file_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let key = ClusterKey::create(&path).unwrap();
        assert_eq!(ClusterKey::load(&path).unwrap().to_hex(), key.to_hex());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let error = ClusterKey::create(&path).unwrap_err().to_string();
        assert!(error.contains("cannot be written"), "{error}");
        let missing = ClusterKey::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("shoal keygen"), "{missing}");
    }

    #[test]
    fn sealed_messages_open_only_with_the_key_and_purpose() {
        let key = ClusterKey::generate();
        let sealed = key.seal("gossip", b"hello");
        assert_eq!(key.open("gossip", &sealed).unwrap(), b"hello");
        assert!(key.open("peer-http", &sealed).is_err());
        assert!(ClusterKey::generate().open("gossip", &sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open("gossip", &tampered).is_err());
        assert!(key.open("gossip", b"short").is_err());
    }

    #[test]
    fn peer_tokens_name_one_request_at_one_time() {
        let key = ClusterKey::generate();
        let token = key.peer_token("GET", "/v1/peer/records");
        key.verify_peer_token(&token, "GET", "/v1/peer/records")
            .unwrap();
        assert!(matches!(
            key.verify_peer_token(&token, "GET", "/v1/peer/components/x"),
            Err(KeyError::WrongRequest)
        ));
        assert!(
            ClusterKey::generate()
                .verify_peer_token(&token, "GET", "/v1/peer/records")
                .is_err()
        );
        let later = unix_now() + 600;
        assert!(matches!(
            key.verify_peer_token_at(&token, "GET", "/v1/peer/records", later),
            Err(KeyError::Stale(_))
        ));
        assert!(key.verify_peer_token("zz", "GET", "/").is_err());
    }
}
