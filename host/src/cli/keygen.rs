//! `shoal keygen`: a new cluster key, for a mesh that gossips beyond
//! loopback.

use std::path::PathBuf;

use clap::Args;

use crate::mesh::key::ClusterKey;

/// Make a new cluster key: into FILE (mode 0600), or print it. A key file
/// is a keyring (one key per line, the first seals); to roll a mesh to a
/// new key without downtime, see docs/key-rotation.md.
#[derive(Args, Debug)]
pub(crate) struct Keygen {
    /// Where to write it; it is never overwritten.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
}

impl Keygen {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        match self.file {
            Some(path) => {
                let key = ClusterKey::create(&path)?;
                eprintln!(
                    "wrote cluster key {} to {}; start every member with `--cluster-key-file {}`",
                    key.fingerprint(),
                    path.display(),
                    path.display()
                );
            }
            None => println!("{}", ClusterKey::generate().to_hex()),
        }
        Ok(())
    }
}
