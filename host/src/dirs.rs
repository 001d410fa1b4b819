//! Where Shoal keeps things by default, following the XDG base directories,
//! and how its private directories and files are made (owner only).

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `$XDG_DATA_HOME/shoal`, else `~/.local/share/shoal`.
pub(crate) fn data_dir() -> Option<PathBuf> {
    xdg("XDG_DATA_HOME", ".local/share")
}

/// `$XDG_CACHE_HOME/shoal`, else `~/.cache/shoal`.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    xdg("XDG_CACHE_HOME", ".cache")
}

fn xdg(var: &str, under_home: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(under_home)))
        .map(|dir| dir.join("shoal"))
}

/// Makes `dir` (and any missing parent) readable by this user only (0700),
/// and takes group and other access away from a `dir` that already
/// exists: the data dir holds env values, tokens and the cluster key.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    make_private(dir)
}

/// Makes an empty `file` with mode 0600 if there is none, and takes group
/// and other access away from one that exists.
pub(crate) fn create_private_file(file: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => make_private(file),
        Err(error) => Err(error),
    }
}

/// Clears the group and other bits of `path`'s mode, if any are set.
fn make_private(path: &Path) -> std::io::Result<()> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & 0o077 != 0 {
        let mode = current & 0o700;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        tracing::info!(path = %path.display(), was = format!("{current:o}"), now = format!("{mode:o}"), "made private");
    }
    Ok(())
}
