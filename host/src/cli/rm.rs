//! `shoal rm NAME`: remove an app.

use clap::Args;

use crate::cli::AdminFlags;

/// Remove an app from a host.
#[derive(Args, Debug)]
pub(crate) struct Rm {
    /// The app to remove.
    name: String,

    #[command(flatten)]
    admin: AdminFlags,
}

impl Rm {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        self.admin.client()?.remove(&self.name)?;
        eprintln!("removed `{}`", self.name);
        Ok(())
    }
}
