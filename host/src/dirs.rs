//! Where Shoal keeps things by default, following the XDG base directories.

use std::path::PathBuf;

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
