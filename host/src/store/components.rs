//! Component bytes, stored content-addressed under `components/` as
//! `<sha256>.wasm`. Every read checks the bytes against the name: a file
//! that no longer matches (a bad disk, a hand edit) is moved to
//! `quarantine/` and reported as [`Corrupt`], so it is never compiled or
//! sent to a peer, and the caller fetches it again. Start-up sweeps
//! unreferenced files it wrote, and skips, with a warning, anything else
//! it finds there (a directory, a stranger's file).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::durable::write_durably;

/// Where component files live, and where corrupt ones are moved.
pub(crate) struct Components {
    dir: PathBuf,
    quarantine: PathBuf,
}

/// A component file whose bytes do not hash to its name.
#[derive(Debug, thiserror::Error)]
#[error(
    "component file `{}` is corrupt: its bytes hash to `{actual}`, not `{expected}`; it was moved to `{}`",
    .path.display(), .moved.display()
)]
pub(crate) struct Corrupt {
    pub expected: String,
    pub actual: String,
    pub path: PathBuf,
    pub moved: PathBuf,
}

/// Whether `text` is a sha256 as component files are named (64 lowercase
/// hex digits): nothing else ever becomes a path.
fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Components {
    /// The component files under `data_dir`, making their folders.
    pub(crate) fn open(data_dir: &Path) -> anyhow::Result<Components> {
        let components = Components {
            dir: data_dir.join("components"),
            quarantine: data_dir.join("quarantine"),
        };
        for dir in [&components.dir, &components.quarantine] {
            crate::dirs::create_private_dir(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        Ok(components)
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        is_sha256(sha256).then(|| self.dir.join(format!("{sha256}.wasm")))
    }

    pub(crate) fn has(&self, sha256: &str) -> bool {
        self.path(sha256).is_some_and(|path| path.is_file())
    }

    /// The bytes of `sha256`, checked against it. A file that does not
    /// match is moved aside and the error is a [`Corrupt`].
    pub(crate) fn read(&self, sha256: &str) -> anyhow::Result<Vec<u8>> {
        let path = self
            .path(sha256)
            .with_context(|| format!("`{sha256}` is not a sha256"))?;
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read component `{}`", path.display()))?;
        let actual = shoal_runtime::sha256_hex(&bytes);
        if actual == sha256 {
            return Ok(bytes);
        }
        let moved = self.quarantine.join(format!("{sha256}.wasm"));
        std::fs::rename(&path, &moved).with_context(|| {
            format!(
                "component file `{}` is corrupt (its bytes hash to `{actual}`) and cannot be moved aside; delete it",
                path.display()
            )
        })?;
        Err(Corrupt {
            expected: sha256.to_string(),
            actual,
            path,
            moved,
        }
        .into())
    }

    /// Stores `bytes` under `sha256`, durably, unless the file is there
    /// and sound (a corrupt one is replaced).
    pub(crate) fn put(&self, sha256: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self
            .path(sha256)
            .with_context(|| format!("`{sha256}` is not a sha256"))?;
        if path.is_file() {
            match self.read(sha256) {
                Ok(_) => return Ok(()),
                Err(error) if error.is::<Corrupt>() => {
                    tracing::warn!(error = %error, "replacing a corrupt component file");
                }
                Err(error) => return Err(error),
            }
        }
        write_durably(&path, bytes)
    }

    /// Deletes the component files shoal wrote that `keep` does not name,
    /// and leftover temporary files of uploads never acknowledged. Skips
    /// (with a warning) what shoal did not write; never fails on one
    /// entry. Returns how many files it deleted. Call at start only.
    pub(crate) fn sweep(&self, keep: &HashSet<String>) -> anyhow::Result<usize> {
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list `{}`", self.dir.display()))?;
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            let ours = is_file
                && (name.starts_with(".tmp") || name.strip_suffix(".wasm").is_some_and(is_sha256));
            if !ours {
                tracing::warn!(path = %path.display(), "skipping an entry of the component folder that shoal did not write; move it elsewhere");
                continue;
            }
            if keep.contains(name.trim_end_matches(".wasm")) {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot delete an unreferenced component file")
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_no_longer_matches_is_moved_aside_and_replaced_on_put() {
        let dir = tempfile::tempdir().unwrap();
        let components = Components::open(dir.path()).unwrap();
        let sha = shoal_runtime::sha256_hex(b"bytes");
        components.put(&sha, b"bytes").unwrap();
        assert_eq!(components.read(&sha).unwrap(), b"bytes");
        let file = dir.path().join(format!("components/{sha}.wasm"));
        std::fs::write(&file, b"other").unwrap();
        let error = components.read(&sha).unwrap_err();
        let corrupt = error.downcast_ref::<Corrupt>().expect("a Corrupt");
        assert_eq!(corrupt.actual, shoal_runtime::sha256_hex(b"other"));
        assert!(!components.has(&sha) && corrupt.moved.is_file());
        assert!(error.to_string().contains(&sha), "{error}");
        std::fs::write(&file, b"other").unwrap();
        components.put(&sha, b"bytes").unwrap();
        assert_eq!(components.read(&sha).unwrap(), b"bytes");
    }

    #[test]
    fn only_sha256_names_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        let components = Components::open(dir.path()).unwrap();
        for bad in ["..", "../token", &"A".repeat(64), ""] {
            assert!(!components.has(bad));
            assert!(components.read(bad).is_err());
            assert!(components.put(bad, b"x").is_err());
        }
    }

    #[test]
    fn the_sweep_deletes_only_what_shoal_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let components = Components::open(dir.path()).unwrap();
        let (kept, orphan) = ("a".repeat(64), "b".repeat(64));
        components.put(&kept, b"k").unwrap();
        components.put(&orphan, b"o").unwrap();
        let folder = dir.path().join("components");
        std::fs::create_dir(folder.join("backup")).unwrap();
        std::fs::write(folder.join("README"), b"mine").unwrap();
        std::fs::write(folder.join(".tmpXYZ"), b"half").unwrap();
        let keep = HashSet::from([kept.clone()]);
        assert_eq!(components.sweep(&keep).unwrap(), 2);
        assert!(folder.join("backup").is_dir() && folder.join("README").is_file());
        assert!(folder.join(format!("{kept}.wasm")).is_file());
    }
}
