//! The keyring: every cluster key this node accepts, the first of which
//! (the primary) seals. A mesh rolls to a new key without downtime the way
//! Serf's keyring does: add the new key as a second one everywhere, then
//! make it primary everywhere, then drop the old one, reloading each node
//! with SIGHUP at every step (`docs/key-rotation.md`).
//!
//! A key file holds one key per line (64 hex characters), primary first;
//! blank lines and lines starting with `#` are ignored, so a file written
//! by `shoal keygen FILE` is a keyring of one. [`Keyring`] is the handle
//! the mesh shares: a reload swaps the whole set at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::key::{ClusterKey, KeyError, Purpose};

/// The most keys a ring holds: each refused datagram is tried against all.
pub const MAX_KEYS: usize = 4;

/// Why a keyring was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    #[error(
        "cluster key file `{}` line {line} is not a key: {problem}; each line holds one key of 64 hex characters (make one with `shoal keygen`)",
        .path.display()
    )]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error(
        "cluster key file `{}` holds no key; copy it from a member of the mesh, or make one with `shoal keygen FILE`",
        .path.display()
    )]
    Empty { path: PathBuf },
    #[error(
        "cluster key file `{}` holds {count} keys, at most {MAX_KEYS} are allowed; drop the keys no member seals with any more",
        .path.display()
    )]
    TooMany { path: PathBuf, count: usize },
    #[error(
        "cluster key file `{}` holds key {fingerprint} twice (lines {first} and {again}); keep one",
        .path.display()
    )]
    Repeated {
        path: PathBuf,
        fingerprint: String,
        first: usize,
        again: usize,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "the cluster key came from SHOAL_CLUSTER_KEY, which cannot be read again; to roll keys without a restart, give them in a file with `--cluster-key-file`"
    )]
    NotReloadable,
}

/// A set of cluster keys, primary first; never empty, never over
/// [`MAX_KEYS`], no key twice.
#[derive(Clone, Debug)]
pub struct KeySet {
    keys: Vec<ClusterKey>,
}

impl KeySet {
    /// A set of one key.
    pub fn single(key: ClusterKey) -> KeySet {
        KeySet { keys: vec![key] }
    }

    /// Parses a key file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<KeySet, KeyringError> {
        let mut keys: Vec<(usize, ClusterKey)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let number = index + 1;
            let key = ClusterKey::from_hex(line).map_err(|error| KeyringError::Line {
                path: path.to_path_buf(),
                line: number,
                problem: problem_of(&error),
            })?;
            if let Some((first, _)) = keys
                .iter()
                .find(|(_, known)| known.fingerprint() == key.fingerprint())
            {
                return Err(KeyringError::Repeated {
                    path: path.to_path_buf(),
                    fingerprint: key.fingerprint(),
                    first: *first,
                    again: number,
                });
            }
            keys.push((number, key));
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty {
                path: path.to_path_buf(),
            });
        }
        if keys.len() > MAX_KEYS {
            return Err(KeyringError::TooMany {
                path: path.to_path_buf(),
                count: keys.len(),
            });
        }
        Ok(KeySet {
            keys: keys.into_iter().map(|(_, key)| key).collect(),
        })
    }

    /// Reads and parses a key file.
    pub fn load(path: &Path) -> Result<KeySet, KeyringError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        KeySet::parse(&text, path)
    }

    /// The key that seals.
    pub fn primary(&self) -> &ClusterKey {
        &self.keys[0]
    }

    /// Every key, primary first.
    #[cfg(test)]
    pub fn keys(&self) -> &[ClusterKey] {
        &self.keys
    }

    /// The fingerprints, primary first, for logs.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys.iter().map(ClusterKey::fingerprint).collect()
    }

    /// Opens what any key of the set sealed, trying the primary first.
    pub fn open_with_aad(
        &self,
        purpose: Purpose,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let mut refused = KeyError::Unsealed { purpose };
        for key in &self.keys {
            match key.open_with_aad(purpose, aad, sealed) {
                Ok(opened) => return Ok(opened),
                Err(error) => refused = error,
            }
        }
        Err(refused)
    }

    /// Accepts a peer token sealed under any key of the set. A token that
    /// opens under one key is judged by that key alone.
    pub fn verify_peer_token(&self, token: &str, method: &str, path: &str) -> Result<(), KeyError> {
        let mut refused = None;
        for key in &self.keys {
            match key.verify_peer_token(token, method, path) {
                Ok(()) => return Ok(()),
                Err(error @ KeyError::Unsealed { .. }) => refused = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(refused.unwrap_or(KeyError::Unsealed {
            purpose: Purpose::PeerToken,
        }))
    }
}

/// `Malformed`'s problem without its advice, which the line error repeats.
fn problem_of(error: &KeyError) -> String {
    match error {
        KeyError::Malformed { problem } => problem.clone(),
        other => other.to_string(),
    }
}

/// The keys in use, shared by gossip, the peer client and the peer API;
/// cloning is cheap. [`reload`](Keyring::reload) swaps the whole set, so
/// every datagram and request sees one set or the other, never a mix.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: Arc<RwLock<Arc<KeySet>>>,
    /// The file the keys came from; `None` for `SHOAL_CLUSTER_KEY`.
    source: Option<PathBuf>,
}

/// What a reload changed.
#[derive(Debug, PartialEq, Eq)]
pub struct Reloaded {
    pub before: Vec<String>,
    pub after: Vec<String>,
}

impl Keyring {
    pub fn new(keys: KeySet, source: Option<PathBuf>) -> Keyring {
        Keyring {
            current: Arc::new(RwLock::new(Arc::new(keys))),
            source,
        }
    }

    /// A ring of one key read from nowhere (tests, the simulator).
    pub fn single(key: ClusterKey) -> Keyring {
        Keyring::new(KeySet::single(key), None)
    }

    /// The set in use now.
    pub fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the key file again and, if it parses, uses its keys from now
    /// on; on any error the keys in use stay.
    pub fn reload(&self) -> Result<Reloaded, KeyringError> {
        let path = self.source.as_deref().ok_or(KeyringError::NotReloadable)?;
        let keys = Arc::new(KeySet::load(path)?);
        let after = keys.fingerprints();
        let before = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|e| e.into_inner()),
            keys,
        );
        Ok(Reloaded {
            before: before.fingerprints(),
            after,
        })
    }

    /// The primary key's fingerprint.
    pub fn fingerprint(&self) -> String {
        self.current().primary().fingerprint()
    }

    /// Seals under the primary key.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> Vec<u8> {
        self.current().primary().seal(purpose, plaintext)
    }

    /// Opens what any key of the ring sealed.
    pub fn open(&self, purpose: Purpose, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.current()
            .open_with_aad(purpose, purpose.label().as_bytes(), sealed)
    }

    /// A peer token under the primary key.
    pub fn peer_token(&self, method: &str, path: &str) -> String {
        self.current().primary().peer_token(method, path)
    }

    /// Accepts a peer token made under any key of the ring.
    pub fn verify_peer_token(&self, token: &str, method: &str, path: &str) -> Result<(), KeyError> {
        self.current().verify_peer_token(token, method, path)
    }
}

/// Reads the key file again on every SIGHUP while the process runs. The
/// handler is in place when this returns, so a SIGHUP never ends the host.
pub(crate) fn reload_on_hangup(keys: Keyring) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match keys.reload() {
                Ok(Reloaded { before, after }) => {
                    let (primary, others) = after.split_first().expect("a key set is never empty");
                    eprintln!(
                        "cluster keys reloaded: sealing with {primary}, also opening with [{}]",
                        others.join(", ")
                    );
                    tracing::info!(?before, ?after, "cluster keyring reloaded");
                }
                Err(error) => {
                    tracing::error!(%error, "cluster keyring not reloaded; the keys in use stay");
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_text(keys: &[&ClusterKey]) -> String {
        keys.iter().map(|k| format!("{}\n", k.to_hex())).collect()
    }

    #[test]
    fn a_key_file_is_a_ring_primary_first() {
        let (old, new) = (ClusterKey::generate(), ClusterKey::generate());
        let text = format!(
            "# rolling to {}\n\n{}",
            new.fingerprint(),
            ring_text(&[&old, &new])
        );
        let set = KeySet::parse(&text, Path::new("ring.key")).unwrap();
        assert_eq!(set.fingerprints(), [old.fingerprint(), new.fingerprint()]);
        assert_eq!(set.primary().fingerprint(), old.fingerprint());
        // `shoal keygen FILE` writes a ring of one.
        let one = KeySet::parse(&ring_text(&[&new]), Path::new("k")).unwrap();
        assert_eq!(one.keys().len(), 1);
    }

    #[test]
    fn bad_rings_are_refused_with_the_line_and_the_fix() {
        let key = ClusterKey::generate();
        let path = Path::new("ring.key");
        let error = KeySet::parse(&format!("{}\nabc\n", key.to_hex()), path).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains("found 3 characters"), "{message}");
        assert!(message.contains("shoal keygen"), "{message}");

        let message = KeySet::parse("# nothing\n\n", path)
            .unwrap_err()
            .to_string();
        assert!(message.contains("holds no key"), "{message}");

        let twice = ring_text(&[&key, &ClusterKey::generate(), &key]);
        let message = KeySet::parse(&twice, path).unwrap_err().to_string();
        assert!(message.contains("lines 1 and 3"), "{message}");
        assert!(!message.contains(&key.to_hex()), "{message}");

        let five: Vec<ClusterKey> = (0..5).map(|_| ClusterKey::generate()).collect();
        let text = ring_text(&five.iter().collect::<Vec<_>>());
        let message = KeySet::parse(&text, path).unwrap_err().to_string();
        assert!(message.contains("holds 5 keys"), "{message}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        let error = KeySet::load(&missing).unwrap_err();
        assert!(
            matches!(error, KeyringError::Key(KeyError::Read { .. })),
            "{error}"
        );
        assert!(error.to_string().contains("missing.key"), "{error}");

        let short = dir.path().join("short.key");
        std::fs::write(&short, "abcd\n").unwrap();
        let message = KeySet::load(&short).unwrap_err().to_string();
        assert!(message.contains("short.key"), "{message}");
        assert!(message.contains("found 4 characters"), "{message}");

        let error = ClusterKey::create(&dir.path().join("no-dir/cluster.key")).unwrap_err();
        assert!(matches!(error, KeyError::Write { .. }), "{error}");
    }

    #[test]
    fn the_primary_seals_and_any_key_opens() {
        let (old, new) = (ClusterKey::generate(), ClusterKey::generate());
        let rolling = Keyring::single(old.clone());
        let both = Keyring::new(
            KeySet::parse(&ring_text(&[&new, &old]), Path::new("k")).unwrap(),
            None,
        );
        let sealed_old = rolling.seal(Purpose::PeerHttp, b"records");
        let sealed_new = both.seal(Purpose::PeerHttp, b"records");
        assert_eq!(
            both.open(Purpose::PeerHttp, &sealed_old).unwrap(),
            b"records"
        );
        assert_eq!(
            both.open(Purpose::PeerHttp, &sealed_new).unwrap(),
            b"records"
        );
        assert!(
            new.open(Purpose::PeerHttp, &sealed_new).is_ok(),
            "sealed by the primary"
        );
        assert!(rolling.open(Purpose::PeerHttp, &sealed_new).is_err());
        let error = both
            .open(
                Purpose::PeerHttp,
                &ClusterKey::generate().seal(Purpose::PeerHttp, b"x"),
            )
            .unwrap_err();
        assert!(matches!(error, KeyError::Unsealed { .. }), "{error}");

        // Peer tokens likewise; a token that opens is judged by its key.
        let path = "/v1/peer/records";
        both.verify_peer_token(&rolling.peer_token("GET", path), "GET", path)
            .unwrap();
        let error = both
            .verify_peer_token(&rolling.peer_token("GET", path), "PUT", path)
            .unwrap_err();
        assert!(matches!(error, KeyError::WrongRequest { .. }), "{error}");
        let error = rolling
            .verify_peer_token(&both.peer_token("GET", path), "GET", path)
            .unwrap_err();
        assert!(matches!(error, KeyError::Unsealed { .. }), "{error}");
    }

    #[test]
    fn reload_swaps_the_set_or_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let (old, new) = (ClusterKey::generate(), ClusterKey::generate());
        std::fs::write(&path, ring_text(&[&old])).unwrap();
        let ring = Keyring::new(KeySet::load(&path).unwrap(), Some(path.clone()));
        let shared = ring.clone();

        std::fs::write(&path, ring_text(&[&old, &new])).unwrap();
        let reloaded = ring.reload().unwrap();
        assert_eq!(reloaded.before, [old.fingerprint()]);
        assert_eq!(reloaded.after, [old.fingerprint(), new.fingerprint()]);
        assert_eq!(shared.current().keys().len(), 2, "clones see the reload");

        std::fs::write(&path, "not a key\n").unwrap();
        let message = ring.reload().unwrap_err().to_string();
        assert!(message.contains("line 1"), "{message}");
        assert_eq!(
            shared.current().keys().len(),
            2,
            "a bad file changes nothing"
        );

        let from_env = Keyring::single(old);
        let error = from_env.reload().unwrap_err();
        assert!(matches!(error, KeyringError::NotReloadable), "{error}");
        assert!(error.to_string().contains("--cluster-key-file"), "{error}");
    }
}
