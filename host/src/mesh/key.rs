//! The cluster key: 32 random bytes that every member of a mesh shares.
//!
//! Gossip datagrams and peer HTTP bodies are sealed under it with
//! XChaCha20-Poly1305, and every peer HTTP request carries a sealed,
//! timestamped token naming its method and path. Each use, a [`Purpose`],
//! gets its own sub-key, so a message sealed for one purpose never opens as
//! another. The key never appears in logs or `Debug` output: its
//! [`fingerprint`](ClusterKey::fingerprint) stands in for it.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::clock::unix_now;

/// Length of the random nonce prepended to every sealed message.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag appended to every sealed message.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a message: nonce and tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// What a message is sealed for. Each purpose has its own sub-key, derived
/// from its [`label`](Purpose::label), so nothing sealed for one opens as
/// another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Gossip datagrams.
    Gossip,
    /// Peer HTTP answers.
    PeerHttp,
    /// Peer request tokens. Kept apart from [`PeerHttp`](Purpose::PeerHttp)
    /// so that a sealed body seen on the wire can never be replayed as a
    /// token.
    PeerToken,
}

impl Purpose {
    /// The bytes its sub-key is derived from, and the associated data of
    /// [`seal`](ClusterKey::seal). Part of the wire format: never change one.
    pub const fn label(self) -> &'static str {
        match self {
            Purpose::Gossip => "gossip",
            Purpose::PeerHttp => "peer-http",
            Purpose::PeerToken => "peer-token",
        }
    }
}

/// How far a peer token's timestamp may be from this node's clock.
const TOKEN_MAX_SKEW_SECS: u64 = 120;

/// Why a cluster key, a sealed message or a peer token was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("cluster key is not 64 hex characters ({problem}); make a new one with `shoal keygen`")]
    Malformed { problem: String },
    #[error(
        "cannot read cluster key file `{}`; copy it from a member of the mesh, or make a new one with `shoal keygen FILE`",
        .path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cluster key file `{}` already exists; use it with `--cluster-key-file {}`, or remove it first",
        .path.display(), .path.display()
    )]
    Exists { path: PathBuf },
    #[error(
        "cannot write cluster key file `{}`; check that its folder exists and is writable",
        .path.display()
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{}` message failed authentication (altered, or sealed under another cluster key); check that every member uses the same `--cluster-key-file`",
        .purpose.label()
    )]
    Unsealed { purpose: Purpose },
    #[error("peer token is malformed ({problem}); is the caller a shoal node of the same version?")]
    BadToken { problem: &'static str },
    #[error("peer token was issued for `{issued}`, not for `{expected}`")]
    WrongRequest { issued: String, expected: String },
    #[error(
        "peer token is {skew_secs} s away from this node's clock (at most {TOKEN_MAX_SKEW_SECS} s allowed); keep members' clocks in sync (NTP)"
    )]
    Stale { skew_secs: u64 },
}

/// The shared secret of a mesh, with its per-purpose ciphers ready.
///
/// Cloning is cheap. `Debug` shows the fingerprint, never the key.
#[derive(Clone)]
pub struct ClusterKey {
    bytes: [u8; 32],
    // Derived once here: gossip seals thousands of datagrams a second, and
    // a derivation costs a SHA-256 plus a key setup each time.
    gossip: XChaCha20Poly1305,
    peer_http: XChaCha20Poly1305,
    peer_token: XChaCha20Poly1305,
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClusterKey")
            .field(&format_args!("fingerprint {}", self.fingerprint()))
            .finish()
    }
}

impl ClusterKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> ClusterKey {
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes);
        ClusterKey::from_bytes(bytes)
    }

    fn from_bytes(bytes: [u8; 32]) -> ClusterKey {
        ClusterKey {
            gossip: derive_cipher(&bytes, Purpose::Gossip),
            peer_http: derive_cipher(&bytes, Purpose::PeerHttp),
            peer_token: derive_cipher(&bytes, Purpose::PeerToken),
            bytes,
        }
    }

    /// Parses 64 hex characters; surrounding whitespace (a trailing newline)
    /// is ignored.
    pub fn from_hex(text: &str) -> Result<ClusterKey, KeyError> {
        parse_hex(text).map_err(|problem| KeyError::Malformed { problem })
    }

    /// The 64 lowercase hex characters of the key. Secret: never log it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// Makes a new key and writes it to `path` (mode 0600, hex and a
    /// newline, synced to disk). Never overwrites an existing file.
    pub fn create(path: &Path) -> Result<ClusterKey, KeyError> {
        let key = ClusterKey::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                KeyError::Write {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        file.write_all(format!("{}\n", key.to_hex()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        tracing::debug!(path = %path.display(), fingerprint = %key.fingerprint(), "cluster key created");
        Ok(key)
    }

    /// Names the key without revealing it: the first 12 hex characters of
    /// `sha256("shoal fingerprint" || key)`. Safe to log and show.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"shoal fingerprint")
            .chain_update(self.bytes)
            .finalize();
        hex::encode(&digest[..6])
    }

    fn cipher(&self, purpose: Purpose) -> &XChaCha20Poly1305 {
        match purpose {
            Purpose::Gossip => &self.gossip,
            Purpose::PeerHttp => &self.peer_http,
            Purpose::PeerToken => &self.peer_token,
        }
    }

    /// Seals `plaintext` for `purpose`: a random 24-byte nonce, then the
    /// XChaCha20-Poly1305 ciphertext and tag under the purpose's sub-key,
    /// with the purpose's label also bound in as associated data.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> Vec<u8> {
        self.seal_with_aad(purpose, purpose.label().as_bytes(), plaintext)
    }

    /// Opens what [`seal`](ClusterKey::seal) made for the same purpose.
    pub fn open(&self, purpose: Purpose, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.open_with_aad(purpose, purpose.label().as_bytes(), sealed)
    }

    /// [`seal`](ClusterKey::seal) with caller-chosen associated data, e.g. a
    /// wire format's version tag, so that it is authenticated too.
    pub fn seal_with_aad(&self, purpose: Purpose, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let ciphertext = self
            .cipher(purpose)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // XChaCha20 refuses only messages past 256 GiB.
            .expect("a message to seal is under 256 GiB");
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Opens what [`seal_with_aad`](ClusterKey::seal_with_aad) made with the
    /// same purpose and associated data.
    pub fn open_with_aad(
        &self,
        purpose: Purpose,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(KeyError::Unsealed { purpose });
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher(purpose)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| KeyError::Unsealed { purpose })
    }

    /// A header value authenticating one peer HTTP request:
    /// hex of the sealed `"{unix_secs} {method} {path}"`.
    pub fn peer_token(&self, method: &str, path: &str) -> String {
        self.peer_token_at(method, path, unix_now())
    }

    fn peer_token_at(&self, method: &str, path: &str, now: u64) -> String {
        let text = format!("{now} {method} {path}");
        hex::encode(self.seal(Purpose::PeerToken, text.as_bytes()))
    }

    /// Accepts a token made by [`peer_token`](ClusterKey::peer_token) under
    /// this key, for this method and path, within 120 s of this node's clock
    /// (either way).
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
        let sealed =
            hex::decode(token.trim()).map_err(|_| KeyError::BadToken { problem: "not hex" })?;
        let opened = self.open(Purpose::PeerToken, &sealed)?;
        let text = std::str::from_utf8(&opened).map_err(|_| KeyError::BadToken {
            problem: "not UTF-8",
        })?;
        // A method has no space; the path takes the rest.
        let mut parts = text.splitn(3, ' ');
        let issued_at: u64 =
            parts
                .next()
                .and_then(|secs| secs.parse().ok())
                .ok_or(KeyError::BadToken {
                    problem: "no timestamp",
                })?;
        let (Some(issued_method), Some(issued_path)) = (parts.next(), parts.next()) else {
            return Err(KeyError::BadToken {
                problem: "no method and path",
            });
        };
        if issued_method != method || issued_path != path {
            return Err(KeyError::WrongRequest {
                issued: format!("{issued_method} {issued_path}"),
                expected: format!("{method} {path}"),
            });
        }
        let skew_secs = now.abs_diff(issued_at);
        if skew_secs > TOKEN_MAX_SKEW_SECS {
            return Err(KeyError::Stale { skew_secs });
        }
        Ok(())
    }
}

/// The sub-key for `purpose` is `sha256(key || 0x00 || label)`. The key is
/// 32 uniformly random secret bytes and every input has that fixed-length
/// prefix, so the hash acts as a PRF keyed by the cluster key (the role HKDF
/// plays, without another dependency); the zero byte and fixed key length make
/// the input unambiguous, so distinct purposes give independent sub-keys.
/// Length extension does not apply: sub-keys are never revealed.
fn derive_cipher(key: &[u8; 32], purpose: Purpose) -> XChaCha20Poly1305 {
    let subkey = Sha256::new()
        .chain_update(key)
        .chain_update([0u8])
        .chain_update(purpose.label().as_bytes())
        .finalize();
    XChaCha20Poly1305::new(&subkey)
}

fn parse_hex(text: &str) -> Result<ClusterKey, String> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(format!("found {} characters", text.chars().count()));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|error| match error {
        hex::FromHexError::InvalidHexCharacter { c, index } => {
            format!(
                "`{}` at position {} is not a hex digit",
                c.escape_debug(),
                index + 1
            )
        }
        other => other.to_string(),
    })?;
    Ok(ClusterKey::from_bytes(bytes))
}

fn fill_random(buf: &mut [u8]) {
    // Fails only when the OS has no entropy source at all; nothing sensible
    // can run on such a system.
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}

#[cfg(test)]
mod tests {
    use super::Purpose::{Gossip, PeerHttp, PeerToken};
    use super::*;

    const PURPOSES: [Purpose; 3] = [Gossip, PeerHttp, PeerToken];

    #[test]
    fn hex_round_trips_and_whitespace_is_trimmed() {
        let key = ClusterKey::generate();
        let hex = key.to_hex();
        assert_eq!(hex.len(), 64);
        let again = ClusterKey::from_hex(&format!("  {hex}\n")).unwrap();
        assert_eq!(again.to_hex(), hex);
        assert_eq!(again.fingerprint(), key.fingerprint());
        assert_ne!(ClusterKey::generate().to_hex(), hex);
    }

    #[test]
    fn bad_hex_is_refused_with_the_reason_and_the_fix() {
        let long = "a".repeat(66);
        let cases = [
            ("", "found 0 characters"),
            ("abc", "found 3 characters"),
            (long.as_str(), "found 66 characters"),
        ];
        for (text, problem) in cases {
            let message = ClusterKey::from_hex(text).unwrap_err().to_string();
            assert!(message.contains(problem), "{message}");
            assert!(message.contains("shoal keygen"), "{message}");
        }
        let mut bad = "0".repeat(63);
        bad.push('g');
        let message = ClusterKey::from_hex(&bad).unwrap_err().to_string();
        assert!(message.contains("`g` at position 64"), "{message}");
    }

    #[test]
    fn debug_shows_the_fingerprint_not_the_key() {
        let key = ClusterKey::generate();
        let fingerprint = key.fingerprint();
        assert_eq!(fingerprint.len(), 12);
        assert!(fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!key.to_hex().starts_with(&fingerprint));
        let debug = format!("{key:?}");
        assert!(debug.contains(&fingerprint), "{debug}");
        assert!(!debug.contains(&key.to_hex()[..16]), "{debug}");
    }

    #[test]
    fn create_writes_a_private_file_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let key = ClusterKey::create(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", key.to_hex())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            ClusterKey::from_hex(&written).unwrap().to_hex(),
            key.to_hex()
        );

        let error = ClusterKey::create(&path).unwrap_err();
        assert!(matches!(error, KeyError::Exists { .. }), "{error}");
        assert!(error.to_string().contains("cluster.key"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), written);
    }

    #[test]
    fn sealed_messages_open_with_the_same_key_and_purpose_only() {
        let key = ClusterKey::generate();
        for purpose in PURPOSES {
            let sealed = key.seal(purpose, b"hello mesh");
            assert_eq!(sealed.len(), b"hello mesh".len() + SEAL_OVERHEAD);
            assert_eq!(key.open(purpose, &sealed).unwrap(), b"hello mesh");
            // A clone (and a key parsed from the same hex) opens it too.
            let same = ClusterKey::from_hex(&key.to_hex()).unwrap();
            assert_eq!(same.clone().open(purpose, &sealed).unwrap(), b"hello mesh");
            for other in PURPOSES.into_iter().filter(|&other| other != purpose) {
                assert!(
                    key.open(other, &sealed).is_err(),
                    "{purpose:?} as {other:?}"
                );
            }
        }
        let sealed = key.seal(Gossip, b"hello mesh");
        let error = ClusterKey::generate().open(Gossip, &sealed).unwrap_err();
        assert!(
            matches!(error, KeyError::Unsealed { purpose: Gossip }),
            "{error}"
        );
        assert!(error.to_string().starts_with("`gossip` message"), "{error}");
        assert!(error.to_string().contains("--cluster-key-file"), "{error}");
        // Fresh nonces: the same message seals differently each time.
        assert_ne!(key.seal(Gossip, b"hello mesh"), sealed);
        assert!(key.open(Gossip, &sealed[..SEAL_OVERHEAD - 1]).is_err());
        assert_eq!(key.open(Gossip, &key.seal(Gossip, b"")).unwrap(), b"");
    }

    /// Sealed once under a fixed key with the string labels: sub-keys and
    /// associated data are part of the wire format, so these always open.
    #[test]
    fn sealed_messages_match_fixed_vectors() {
        let key = ClusterKey::from_hex(&"5a".repeat(32)).unwrap();
        let [gossip, peer_http, peer_token, datagram] = [
            "31a905a7b47f52f14dd5e1154b0d61058caa2f433b6a83ff88c090a2afac4c7f47d5929a50f16d4f043f4dfda45221d6e725848217acb90e4b",
            "37344f8233adc522910d9d4dab9fa715c7c6c80bf3492f26196e4f802b40671dd39eb36be13545f9301b7ac4f548029e63a52ac847128a7527",
            "e03d188ac5079d7767edeb701dcace69e70cacda898937d62abc0b61de639ec7536b0fc188b4598d7cbb9eea16d07bd732d5896284aed66225",
            "b6f31fbdf80dace377a3c424c9afe926febf0608ed27b58aa35fbfe34c48d94250e8a2b70511b7c01b970bc77ad7b37200cfdc3c80a2e8e695",
        ]
        .map(|sealed| hex::decode(sealed).unwrap());
        let plain = b"shoal wire vector".to_vec();
        assert_eq!(key.open(Gossip, &gossip).unwrap(), plain);
        assert_eq!(key.open(PeerHttp, &peer_http).unwrap(), plain);
        assert_eq!(key.open(PeerToken, &peer_token).unwrap(), plain);
        let opened = key.open_with_aad(Gossip, b"SHG1", &datagram).unwrap();
        assert_eq!(opened, plain);
        let labels = PURPOSES.map(Purpose::label);
        assert_eq!(labels, ["gossip", "peer-http", "peer-token"]);
    }

    #[test]
    fn any_altered_byte_fails_to_open() {
        let key = ClusterKey::generate();
        let sealed = key.seal(Gossip, b"state");
        for index in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x01;
            assert!(key.open(Gossip, &tampered).is_err(), "byte {index}");
        }
        let sealed = key.seal_with_aad(Gossip, b"SHG1", b"state");
        assert_eq!(
            key.open_with_aad(Gossip, b"SHG1", &sealed).unwrap(),
            b"state"
        );
        assert!(key.open_with_aad(Gossip, b"SHG2", &sealed).is_err());
        assert!(key.open(Gossip, &sealed).is_err());
    }

    #[test]
    fn peer_tokens_name_one_request_at_one_time() {
        let key = ClusterKey::generate();
        let path = "/v1/peer/components/hello";
        let token = key.peer_token("GET", path);
        key.verify_peer_token(&token, "GET", path).unwrap();

        let error = key
            .verify_peer_token(&token, "GET", "/v1/peer/records")
            .unwrap_err();
        assert!(matches!(error, KeyError::WrongRequest { .. }), "{error}");
        let error = key.verify_peer_token(&token, "PUT", path).unwrap_err();
        assert!(matches!(error, KeyError::WrongRequest { .. }), "{error}");

        let error = ClusterKey::generate()
            .verify_peer_token(&token, "GET", path)
            .unwrap_err();
        assert!(matches!(error, KeyError::Unsealed { .. }), "{error}");

        // A sealed peer HTTP body is not a token, even with a token's text.
        let body = hex::encode(key.seal(PeerHttp, format!("{} GET {path}", unix_now()).as_bytes()));
        assert!(key.verify_peer_token(&body, "GET", path).is_err());

        for bad in ["", "zz", "00ff"] {
            assert!(key.verify_peer_token(bad, "GET", path).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn peer_tokens_expire_after_two_minutes_either_way() {
        let key = ClusterKey::generate();
        let issued = 1_700_000_000;
        let token = key.peer_token_at("GET", "/v1/peer/records", issued);
        for now in [issued, issued + 120, issued - 120] {
            key.verify_peer_token_at(&token, "GET", "/v1/peer/records", now)
                .unwrap();
        }
        for now in [issued + 121, issued - 121, 0] {
            let error = key
                .verify_peer_token_at(&token, "GET", "/v1/peer/records", now)
                .unwrap_err();
            assert!(matches!(error, KeyError::Stale { .. }), "{error}");
            assert!(error.to_string().contains("NTP"), "{error}");
        }
    }

    #[test]
    fn malformed_token_text_is_refused() {
        let key = ClusterKey::generate();
        for text in ["", "soon GET /", "1700000000", "1700000000 GET"] {
            let token = hex::encode(key.seal(PeerToken, text.as_bytes()));
            let error = key
                .verify_peer_token_at(&token, "GET", "/", 1_700_000_000)
                .unwrap_err();
            assert!(
                matches!(error, KeyError::BadToken { .. }),
                "{text:?}: {error}"
            );
        }
    }
}
