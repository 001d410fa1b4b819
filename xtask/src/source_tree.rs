//! Reading the `.rs` files of a folder for the source checks, which take
//! them as `(path, text)` pairs so their tests can build trees in memory.

use std::path::Path;

/// Every `.rs` file under `dir`, as (path relative to `dir` with `/`
/// separators, text), sorted by path; `target` and hidden folders are
/// skipped.
pub fn read(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    walk(dir, "", &mut files)?;
    files.sort();
    Ok(files)
}

fn walk(dir: &Path, prefix: &str, files: &mut Vec<(String, String)>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let relative = format!("{prefix}{name}");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(&path, &format!("{relative}/"), files)?;
            }
        } else if name.ends_with(".rs") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            files.push((relative, text));
        }
    }
    Ok(())
}
