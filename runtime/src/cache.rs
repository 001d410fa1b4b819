//! The on-disk cache of compiled components, keyed by the component's
//! sha256 and the engine's compatibility hash, so a second start of the same
//! component on the same engine does not recompile.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;

/// A directory of `<engine-hash>/<sha256>.cwasm` files.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// A cache under `root` for artifacts compatible with `engine`.
    pub fn new(root: PathBuf, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        CompileCache {
            dir: root.join(format!("{:016x}", hasher.finish())),
        }
    }

    /// The directory artifacts of this engine live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.cwasm"))
    }

    /// The cached compilation of `sha256`, if there is a usable one. A file
    /// that fails to load (truncated, other version) is removed.
    pub(crate) fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was produced by `Component::serialize` of an engine
        // with the same compatibility hash (it is in that hash's directory),
        // written by this cache to a temporary file and renamed into place, so
        // it is never seen half-written. wasmtime checks its header and version.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %error, "dropping unusable compile cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores the compilation of `sha256`.
    pub(crate) fn store(&self, sha256: &str, component: &Component) -> Result<(), LoadError> {
        let bytes = component
            .serialize()
            .map_err(|e| self.error(format!("cannot serialize: {e}")))?;
        self.store_code(sha256, &bytes)
    }

    fn error(&self, reason: String) -> LoadError {
        LoadError::Cache {
            path: self.dir.display().to_string(),
            reason,
        }
    }

    /// Stores the serialized code of `sha256`: written to a temporary file,
    /// synced, then renamed into place.
    pub(crate) fn store_code(&self, sha256: &str, bytes: &[u8]) -> Result<(), LoadError> {
        let cache_error = |reason: String| self.error(reason);
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| cache_error(format!("cannot create: {e}")))?;
        let mut tmp =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| cache_error(e.to_string()))?;
        tmp.write_all(bytes)
            .map_err(|e| cache_error(e.to_string()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| cache_error(e.to_string()))?;
        tmp.persist(self.path(sha256))
            .map_err(|e| cache_error(e.to_string()))?;
        Ok(())
    }
}
