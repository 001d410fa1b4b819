//! `shoal rm NAME`: remove an app; its key-value data is kept until
//! `shoal rm --purge NAME`.

use clap::Args;

use serde::Deserialize;

use crate::cli::AdminFlags;
use crate::cli::kv::encode;
use crate::units::format_size as size;

#[derive(Deserialize)]
struct Purged {
    stores: u64,
    keys: u64,
    bytes: u64,
}

#[derive(Deserialize)]
struct Store {
    bytes: u64,
}

/// Remove an app from a host.
#[derive(Args, Debug)]
pub(crate) struct Rm {
    /// The app to remove.
    name: String,

    /// Also delete its key-value data (works on an app already removed).
    #[arg(long)]
    purge: bool,

    #[command(flatten)]
    admin: AdminFlags,
}

impl Rm {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        let client = self.admin.client()?;
        let removed = client.remove(&self.name);
        let kv_path = format!("/v1/kv/{}", encode(&self.name));
        if self.purge {
            match removed {
                Ok(()) => eprintln!("removed `{}`", self.name),
                // Purging the data of an app removed before is fine.
                Err(e) if e.to_string().contains("404") => {}
                Err(e) => return Err(e),
            }
            let purged: Purged = client.send_json("DELETE", &kv_path, "application/json", b"")?;
            eprintln!(
                "deleted the key-value data of `{}` ({} stores, {} keys, {})",
                self.name,
                purged.stores,
                purged.keys,
                size(purged.bytes)
            );
            return Ok(());
        }
        removed?;
        eprintln!("removed `{}`", self.name);
        let stores: Vec<Store> = client.get_json(&kv_path).unwrap_or_default();
        if !stores.is_empty() {
            let bytes: u64 = stores.iter().map(|s| s.bytes).sum();
            eprintln!(
                "its key-value data ({} stores, {}) is kept; `shoal rm --purge {}` deletes it",
                stores.len(),
                size(bytes),
                self.name
            );
        }
        Ok(())
    }
}
